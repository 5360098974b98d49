"""The store's side of writable collections (issue 15), in-process: one update in flight per collection,
the bounded queues, the order of answers, the retry of a ticket and the timeout of a silent worker."""

from __future__ import annotations

from router import store as store_module
from router.limits import Limits
from tests.unit.router.test_store import Harness


def worker(h: Harness, name: str = "w"):
    s = h.store.open(name)
    h.inbox[s] = []
    h.send(s, "client-options-set", options={"name": name, "collections": ["items/*"]})
    return s


def writer(h: Harness, name: str = "c"):
    s = h.store.open(name, guarded=True)
    h.inbox[s] = []
    h.send(s, "client-options-set", options={"name": name})
    return s


def write(h: Harness, s, ref, cid: str = "items/a", item: str = "x") -> None:
    h.send(s, "collection-update", id=cid, ref=ref, insert=[{"id": item}])


def applies(h: Harness, w) -> list[dict]:
    return [f for f in h.take(w) if f["action"] == "collection-apply"]


def test_one_update_in_flight_per_collection_in_arrival_order() -> None:
    h = Harness(instance="r1")
    w, c = worker(h), writer(h)
    write(h, c, 1)
    write(h, c, 2)
    write(h, c, 3, cid="items/b")  # another collection: not behind items/a
    sent = applies(h, w)
    assert [(f["id"], f["ticket"]) for f in sent] == [("items/a", "r1:1"), ("items/b", "r1:3")]
    h.send(w, "collection-applied", id="items/a", ticket="r1:1", version=2, value={"x": {"id": "x"}})
    assert h.take(c) == [{"action": "collection-updated", "id": "items/a", "ref": 1, "version": 2}]
    assert [f["ticket"] for f in applies(h, w)] == ["r1:2"]


def test_bounded_per_session_and_per_collection() -> None:
    h = Harness()
    worker(h)
    c = writer(h)
    for i in range(store_module.MAX_SESSION_WRITES + 1):
        write(h, c, i)
    errors = [f for f in h.take(c) if f["action"] == "error"]
    assert [(e["code"], e["ref"]) for e in errors] == [("too-many-writes", store_module.MAX_SESSION_WRITES)]
    others = [writer(h, f"o{i}") for i in range(store_module.MAX_COLLECTION_QUEUE // 100 + 1)]
    for o in others:
        for i in range(100):
            write(h, o, i)
    busy = [f for o in others for f in h.take(o) if f.get("code") == "collection-busy"]
    assert busy and all(f["request"] == "collection-update" for f in busy)


def test_worker_gone_retries_the_same_ticket_first_in_line() -> None:
    h = Harness(instance="r1")
    w1, c = worker(h, "w1"), writer(h)
    write(h, c, 1)
    write(h, c, 2)
    assert [f["ticket"] for f in applies(h, w1)] == ["r1:1"]
    w2 = worker(h, "w2")
    h.close(w1)
    assert [f["ticket"] for f in applies(h, w2)] == ["r1:1"]
    h.send(w2, "collection-applied", id="items/a", ticket="r1:1", version=2, value={})
    assert [f["ticket"] for f in applies(h, w2)] == ["r1:2"]


def test_no_worker_left_the_waiting_writers_get_no_collection() -> None:
    h = Harness()
    w, c = worker(h), writer(h)
    write(h, c, 1)
    write(h, c, 2)
    h.close(w)
    assert h.take(c) == []  # waiting for a worker, for the order timeout
    h.store.expire_orders(h.store.now + h.store.limits.order_timeout + 1)
    h._route()
    assert [(f["code"], f["ref"]) for f in h.take(c)] == [("no-collection", 1), ("no-collection", 2)]


def test_a_silent_worker_is_taken_back_after_the_order_timeout() -> None:
    h = Harness(limits=Limits(order_timeout=5.0), instance="r1")
    w1, c = worker(h, "w1"), writer(h)
    write(h, c, 1)
    assert applies(h, w1)
    w2 = worker(h, "w2")
    h.store.expire_orders(h.store.now + 6.0)
    h._route()
    assert [f["ticket"] for f in applies(h, w2)] == ["r1:1"]  # the least busy worker, same ticket
    h.send(w1, "collection-applied", id="items/a", ticket="r1:1", version=2, value={})  # late: ignored
    assert h.take(c) == []
    h.send(w2, "collection-applied", id="items/a", ticket="r1:1", version=2, value={})
    assert [f["action"] for f in h.take(c)] == ["collection-updated"]


def test_a_client_announcing_collections_is_not_a_worker() -> None:
    h = Harness()
    fake = writer(h, "fake")
    h.send(fake, "client-options-set", options={"collections": ["items/*"]})
    c = writer(h)
    write(h, c, 1)
    assert [f["code"] for f in h.take(c)] == ["no-collection"]
    assert applies(h, fake) == []


def test_an_update_whose_worker_died_waits_for_the_next_worker() -> None:
    """The only worker dies mid-update: the update waits (up to the order timeout) for a worker to join
    (a pool replaces a dead process in seconds) instead of failing; past the timeout, no-collection."""
    h = Harness(limits=Limits(order_timeout=5.0), instance="r1")
    w1, c = worker(h, "w1"), writer(h)
    write(h, c, 1)
    h.close(w1)
    assert h.take(c) == []
    w2 = worker(h, "w2")
    assert [f["ticket"] for f in applies(h, w2)] == ["r1:1"]
    h.close(w2)
    h.store.expire_orders(h.store.now + 6.0)
    h._route()
    assert [f["code"] for f in h.take(c)] == ["no-collection"]
