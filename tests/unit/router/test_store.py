"""The pure object store, driven in-process: every must-have of seapig-protocol.md §9."""

from __future__ import annotations

import orjson
import pytest

from router.store import ObjectStore, Session


class Harness:
    """Sessions talking to one store; frames delivered to each session are collected per session."""

    def __init__(self, retain: int = 2, **options) -> None:
        self.store = ObjectStore(retain=retain, **options)
        self.inbox: dict[Session, list[dict]] = {}
        self.frames_sent = 0

    def client(self, name: str = "c") -> Session:
        s = self.store.open(name)
        self.inbox[s] = []
        self.send(s, "client-options-set", options={"name": name})
        return s

    def send(self, session: Session, action: str, **fields) -> None:
        msg = {"action": action, **{k.replace("_", "-"): v for k, v in fields.items()}}
        self.store.handle_raw(session, orjson.dumps(msg), self.store.now)
        self._route()

    def close(self, session: Session) -> None:
        self.store.close(session)
        self._route()

    def _route(self) -> None:
        for frame, sessions in self.store.take_outbox():
            self.frames_sent += 1
            for s in sessions:
                self.inbox[s].append(orjson.loads(frame))

    def take(self, session: Session) -> list[dict]:
        out, self.inbox[session] = self.inbox[session], []
        return out


@pytest.fixture
def h() -> Harness:
    return Harness()


def produce(oid, inferred=None):
    return {"action": "object-produce", "id": oid, "version-inferred": inferred}


def update_value(oid, new, value):
    return {"action": "object-update", "id": oid, "version-old": 0, "version-new": new, "value": value}


def destroy(oid):
    return {"action": "object-destroy", "id": oid}


# ---- registration and spawning -----------------------------------------------------------------

def test_register_alone_sends_nothing(h):
    c = h.client()
    h.send(c, "object-consumer-register", pattern="a", version_known=0)
    h.send(c, "object-producer-register", pattern="b")
    assert h.take(c) == []
    assert h.store.objects == {}


@pytest.mark.parametrize("consumer,producer", [("a", "a"), ("a", "*"), ("a*", "a"), ("*", "a")])
def test_consumer_and_producer_trigger_production(h, consumer, producer):
    c = h.client()
    h.send(c, "object-consumer-register", pattern=consumer, version_known=0)
    h.send(c, "object-producer-register", pattern=producer)
    assert h.take(c) == [produce("a")]


def test_wildcard_consumer_and_wildcard_producer_produce_nothing(h):
    c = h.client()
    h.send(c, "object-consumer-register", pattern="x-*", version_known=0)
    h.send(c, "object-producer-register", pattern="x-*")
    assert h.take(c) == []


def test_wildcards_are_anchored(h):
    c, p = h.client(), h.client("p")
    h.send(c, "object-consumer-register", pattern="foo-*", version_known=0)
    h.send(p, "object-producer-register", pattern="xfoo-1")
    assert h.take(p) == []  # seapig's unanchored regex matched this
    h.send(p, "object-producer-register", pattern="foo-1x")
    assert h.take(p) == [produce("foo-1x")]
    assert "xfoo-1" not in h.store.objects


def test_produce_on_subscribe_then_update_by_value_and_patch(h):
    c, p = h.client("browser"), h.client("worker")
    h.send(c, "object-consumer-register", pattern="cars", version_known=0)
    h.send(p, "object-producer-register", pattern="cars")
    assert h.take(p) == [produce("cars")]
    big = {"list": list(range(200))}
    h.send(p, "object-patch", id="cars", version_new=1, value=big)
    assert h.take(c) == [update_value("cars", 1, big)]
    big2 = {"list": list(range(200)) + [200]}
    h.send(p, "object-patch", id="cars", version_new=2, value=big2)
    [msg] = h.take(c)
    assert msg["version-old"] == 1 and msg["version-new"] == 2
    assert msg["patch"] == [{"op": "add", "path": "/list/200", "value": 200}]


def test_empty_object_is_valid_data(h):
    c = h.client()
    h.send(c, "object-consumer-register", pattern="e", version_known=0)
    h.send(c, "object-producer-register", pattern="e")
    h.take(c)
    h.send(c, "object-patch", id="e", version_new=1, value={})
    assert h.take(c) == [update_value("e", 1, {})]


def test_version_not_newer_is_ignored_silently(h):
    c = h.client()
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.send(c, "object-producer-register", pattern="o")
    h.take(c)
    h.send(c, "object-patch", id="o", version_new={"a": {"b": 2}}, value={"v": 1})
    assert h.take(c) == [update_value("o", {"a": {"b": 2}}, {"v": 1})]
    h.send(c, "object-patch", id="o", version_new={"a": {"b": 1}}, value={"v": 2})
    h.send(c, "object-patch", id="o", version_new={"a": {"b": 2}}, value={"v": 3})
    assert h.take(c) == []


def test_small_objects_always_get_a_patch_from_a_retained_version(h):
    c = h.client()
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.send(c, "object-producer-register", pattern="o")
    h.take(c)
    h.send(c, "object-patch", id="o", version_new=1, value={"v": 1})
    h.send(c, "object-patch", id="o", version_new=2, value={"v": 2})
    assert h.take(c)[-1] == {"action": "object-update", "id": "o", "version-old": 1, "version-new": 2,
                             "patch": [{"op": "replace", "path": "/v", "value": 2}]}


def test_big_value_replaced_wholesale_goes_as_value_not_patch(h):
    c = h.client()
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.send(c, "object-producer-register", pattern="o")
    h.take(c)
    h.send(c, "object-patch", id="o", version_new=1, value={f"k{i}": i for i in range(100)})
    new = {f"n{i}": i for i in range(100)}
    h.send(c, "object-patch", id="o", version_new=2, value=new)
    assert h.take(c)[-1] == update_value("o", 2, new)


# ---- stalls, announcements, cancels -----------------------------------------------------------

def test_stall_is_recorded_not_forwarded_and_unstall_patches_from_last_data(h):
    c = h.client()
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.send(c, "object-producer-register", pattern="o")
    h.take(c)
    h.send(c, "object-patch", id="o", version_new=1, value=False)
    assert h.take(c) == []
    h.send(c, "object-patch", id="o", version_new=2, value={"x": 2})
    assert h.take(c) == [update_value("o", 2, {"x": 2})]
    h.send(c, "object-patch", id="o", version_new=3, value=False)
    assert h.take(c) == []
    h.send(c, "object-patch", id="o", version_new=4, value={"f": 3})
    [msg] = h.take(c)
    assert msg["version-old"] == 2 and msg["version-new"] == 4
    assert msg["patch"] == [{"op": "add", "path": "/f", "value": 3}, {"op": "remove", "path": "/x"}]


def test_stall_counts_as_current(h):
    c = h.client()
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.send(c, "object-producer-register", pattern="o")
    h.take(c)
    h.send(c, "object-patch", id="o", version_new=1, value=False)
    assert h.store.objects["o"].state == "current"
    assert h.take(c) == []


def test_cancel_requeues(h):
    c = h.client()
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.send(c, "object-producer-register", pattern="o")
    h.take(c)
    h.send(c, "object-patch", id="o")
    assert h.take(c) == [produce("o")]


def test_unregister_producer_cancels_and_requeues(h):
    c = h.client()
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.send(c, "object-producer-register", pattern="o")
    h.take(c)
    h.send(c, "object-producer-unregister", pattern="o")
    assert h.take(c) == []
    h.send(c, "object-producer-register", pattern="o")
    assert h.take(c) == [produce("o")]


def test_disconnect_of_producer_requeues_to_another(h):
    c, p1, p2 = h.client(), h.client("p1"), h.client("p2")
    h.send(p1, "object-producer-register", pattern="o")
    h.send(p2, "object-producer-register", pattern="o")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    assert h.take(p1) == [produce("o")]
    h.close(p1)
    assert h.take(p2) == [produce("o")]
    h.send(p2, "object-patch", id="o", version_new=1, value={"a": 1})
    assert h.take(c) == [update_value("o", 1, {"a": 1})]


def test_true_data_raises_inferred_and_orders_production(h):
    c, m = h.client(), h.client("master")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.send(m, "object-producer-register", pattern="o", version_known=[5, 0])
    assert h.take(m) == [produce("o", [5, 0])]
    h.send(m, "object-patch", id="o", version_new=[5, 0], value={"m": 1})
    assert h.take(c) == [update_value("o", [5, 0], {"m": 1})]
    assert h.store.objects["o"].state == "current"


def test_upload_nobody_wants_is_answered_with_destroy(h):
    m = h.client("master")
    h.send(m, "object-producer-register", pattern="lonely", version_known=[1700, 0])
    assert h.take(m) == [destroy("lonely")]
    h.send(m, "object-patch", id="lonely", version_new=[1700, 1], value={"a": 1})
    assert h.take(m) == [destroy("lonely")]
    assert h.store.objects == {}


# ---- lifetime ---------------------------------------------------------------------------------

def test_object_without_direct_producer_or_consumer_is_destroyed_for_wildcard_consumer(h):
    c = h.client()
    h.send(c, "object-consumer-register", pattern="test-*", version_known=0)
    h.send(c, "object-producer-register", pattern="test-object")
    assert h.take(c) == [produce("test-object")]
    h.send(c, "object-producer-unregister", pattern="test-object")
    assert h.take(c) == [destroy("test-object")]
    assert h.store.queue == {}


def test_despawn_on_last_unsubscribe_purges_queue_and_tells_producers(h):
    c, p = h.client(), h.client("p")
    h.send(p, "object-producer-register", pattern="busy")
    h.send(p, "object-producer-register", pattern="o-*")
    h.send(c, "object-consumer-register", pattern="busy", version_known=0)
    h.send(c, "object-consumer-register", pattern="o-1", version_known=0)
    assert h.take(p) == [produce("busy")]
    assert list(h.store.queue) == ["o-1"]
    h.send(c, "object-consumer-unregister", pattern="o-1")
    assert h.take(p) == [destroy("o-1")]
    assert list(h.store.queue) == []
    h.send(p, "object-patch", id="busy", version_new=1, value={})
    assert h.take(p) == []  # nothing dead is ordered


def test_wildcard_consumer_sees_cached_objects_and_new_ones(h):
    w, c, p = h.client("w"), h.client("c"), h.client("p")
    h.send(p, "object-producer-register", pattern="car-*")
    h.send(c, "object-consumer-register", pattern="car-1", version_known=0)
    h.send(p, "object-patch", id="car-1", version_new=1, value={"n": 1})
    h.send(w, "object-consumer-register", pattern="car-*", version_known=0)
    assert h.take(w) == [update_value("car-1", 1, {"n": 1})]
    h.send(c, "object-consumer-register", pattern="car-2", version_known=0)
    h.take(p)
    h.send(p, "object-patch", id="car-2", version_new=1, value={"n": 2})
    assert h.take(w) == [update_value("car-2", 1, {"n": 2})]
    h.send(c, "object-consumer-unregister", pattern="car-2")
    assert h.take(w) == [destroy("car-2")]


# ---- queue -----------------------------------------------------------------------------------

def test_one_order_at_a_time_per_producer_fifo(h):
    c, p = h.client(), h.client("p")
    h.send(p, "object-producer-register", pattern="*")
    for oid in ("a", "b", "c"):
        h.send(c, "object-consumer-register", pattern=oid, version_known=0)
    assert h.take(p) == [produce("a")]
    h.send(p, "object-patch", id="a", version_new=1, value={})
    assert h.take(p) == [produce("b")]
    h.send(p, "object-patch", id="b", version_new=1, value={})
    assert h.take(p) == [produce("c")]


def test_load_balances_across_free_producers(h):
    c, p1, p2 = h.client(), h.client("p1"), h.client("p2")
    h.send(p1, "object-producer-register", pattern="*")
    h.send(p2, "object-producer-register", pattern="*")
    h.send(c, "object-consumer-register", pattern="a", version_known=0)
    h.send(c, "object-consumer-register", pattern="b", version_known=0)
    assert h.take(p1) == [produce("a")]
    assert h.take(p2) == [produce("b")]


# ---- dependencies ----------------------------------------------------------------------------

def test_dependency_bump_reproduces_dependent(h):
    c = h.client()
    h.send(c, "object-consumer-register", pattern="t1", version_known=0)
    h.send(c, "object-producer-register", pattern="t1")
    h.take(c)
    h.send(c, "object-patch", id="t1", version_new={"t2": 0}, value={"v": 1})
    assert h.take(c) == [update_value("t1", {"t2": 0}, {"v": 1})]
    h.send(c, "object-patch", id="t2", version_new=1, value={"x": 2})
    assert h.take(c) == [produce("t1", {"t2": 1})]


def test_dependency_at_same_or_lower_version_does_not_reproduce(h):
    c = h.client()
    h.send(c, "object-consumer-register", pattern="t1", version_known=0)
    h.send(c, "object-producer-register", pattern="t1")
    h.take(c)
    h.send(c, "object-patch", id="t1", version_new={"t2": 2}, value={"v": 1})
    h.take(c)
    h.send(c, "object-patch", id="t2", version_new=1, value={"x": 2})
    h.send(c, "object-patch", id="t2", version_new=2, value={"x": 2})
    assert h.take(c) == []


def test_dependency_kept_alive_and_spawned_when_it_has_a_producer(h):
    c = h.client()
    h.send(c, "object-consumer-register", pattern="t1", version_known=0)
    h.send(c, "object-producer-register", pattern="t1")
    h.send(c, "object-producer-register", pattern="t2")
    assert h.take(c) == [produce("t1")]
    h.send(c, "object-patch", id="t1", version_new={"t2": 2}, value={"v": 1})
    assert h.take(c) == [update_value("t1", {"t2": 2}, {"v": 1}), produce("t2")]
    h.send(c, "object-patch", id="t2", version_new=1, value={"x": 2})
    assert h.take(c) == []
    h.send(c, "object-consumer-register", pattern="t2", version_known=0)
    assert h.take(c) == [update_value("t2", 1, {"x": 2})]
    h.send(c, "object-consumer-unregister", pattern="t2")
    assert "t2" in h.store.objects  # t1 still depends on it
    h.send(c, "object-consumer-unregister", pattern="t1")
    assert h.store.objects == {}


def test_waiting_for_dependencies_then_produced_when_they_arrive(h):
    c, p, n = h.client(), h.client("p"), h.client("notifier")
    h.send(p, "object-producer-register", pattern="report")
    h.send(c, "object-consumer-register", pattern="report", version_known=0)
    h.take(p)
    h.send(p, "object-patch", id="report", version_new={"db": 1}, value={"r": 1})
    h.send(n, "object-patch", id="db", version_new=3, value={})
    assert h.take(p) == [produce("report", {"db": 3})]
    # the producer answers with a stale read: stored and forwarded, production ordered again after the
    # failure backoff (a result older than its order must not loop at full speed)
    h.send(p, "object-patch", id="report", version_new={"db": 2}, value={"r": 2})
    assert h.take(c)[-1]["version-new"] == {"db": 2}
    assert h.take(p) == []
    h.store.tick(h.store.now + h.store.retry_base); h._route()
    assert h.take(p) == [produce("report", {"db": 3})]
    h.send(p, "object-patch", id="report", version_new={"db": 3}, value={"r": 3})
    assert h.take(p) == []
    assert h.store.objects["report"].state == "current"


def test_newer_version_arriving_first_drops_queued_order(h):
    c, p, m = h.client(), h.client("p"), h.client("m")
    h.send(p, "object-producer-register", pattern="busy")
    h.send(p, "object-producer-register", pattern="o")
    h.send(c, "object-consumer-register", pattern="busy", version_known=0)
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    assert h.take(p) == [produce("busy")]
    assert list(h.store.queue) == ["o"]
    h.send(m, "object-patch", id="o", version_new=[3, 0], value={"done": True})
    assert list(h.store.queue) == [] and h.store.objects["o"].state == "current"
    h.send(p, "object-patch", id="busy", version_new=1, value={})
    assert h.take(p) == []


def test_concurrent_production_of_different_inferred_versions(h):
    c, p1, p2, n = h.client(), h.client("p1"), h.client("p2"), h.client("n")
    h.send(p1, "object-producer-register", pattern="o")
    h.send(p2, "object-producer-register", pattern="o")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    assert h.take(p1) == [produce("o")]
    h.send(p1, "object-patch", id="o", version_new={"d": 1}, value={"v": 1})
    h.send(n, "object-patch", id="d", version_new=2, value={})
    assert h.take(p1) == [produce("o", {"d": 2})]
    h.send(n, "object-patch", id="d", version_new=3, value={})
    assert h.take(p2) == [produce("o", {"d": 3})]
    h.send(n, "object-patch", id="d", version_new=3, value={})
    assert h.take(p1) == [] and h.take(p2) == []


# ---- resync and encode-once -------------------------------------------------------------------

def test_resync_with_version_known(h):
    c, p = h.client(), h.client("p")
    h.send(p, "object-producer-register", pattern="o")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.send(p, "object-patch", id="o", version_new=1, value={"a": 1})
    h.send(p, "object-patch", id="o", version_new=2, value={"a": 2})
    h.take(c)
    for known, expected in [(2, []), (1, "patch"), (7, "value"), (0, "value")]:
        d = h.client("d")
        h.send(d, "object-consumer-register", pattern="o", version_known=known)
        got = h.take(d)
        if expected == []:
            assert got == []
        elif expected == "patch":
            assert got == [{"action": "object-update", "id": "o", "version-old": 1, "version-new": 2,
                             "patch": [{"op": "replace", "path": "/a", "value": 2}]}]
        else:
            assert got == [update_value("o", 2, {"a": 2})]


def test_one_frame_for_many_watchers(h):
    p = h.client("p")
    h.send(p, "object-producer-register", pattern="o")
    watchers = [h.client(f"w{i}") for i in range(50)]
    for w in watchers:
        h.send(w, "object-consumer-register", pattern="o", version_known=0)
    h.send(p, "object-patch", id="o", version_new=1, value={"a": 1})
    before = h.frames_sent
    h.send(p, "object-patch", id="o", version_new=2, value={"a": 2})
    assert h.frames_sent - before == 1  # one encoded frame, 50 recipients
    assert all(h.take(w)[-1]["version-new"] == 2 for w in watchers)


def test_patch_upload_against_retained_version(h):
    c, m = h.client(), h.client("m")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.send(m, "object-producer-register", pattern="o")
    h.send(m, "object-patch", id="o", version_new=[1, 0], value={"a": 1})
    h.send(m, "object-patch", id="o", version_old=[1, 0], version_new=[1, 1],
           patch=[{"op": "add", "path": "/b~1c", "value": 2}])
    assert h.store.objects["o"].latest == ([1, 1], {"a": 1, "b/c": 2})
    h.take(m)
    h.send(m, "object-patch", id="o", version_old=[9, 9], version_new=[1, 2],
           patch=[{"op": "add", "path": "/z", "value": 2}])
    assert h.take(m) == []  # unknown base: a silent cancel, as in seapig
    h.send(m, "object-patch", id="o", version_old=[1, 1], version_new=[1, 2],
           patch=[{"op": "remove", "path": "/nope"}])
    assert h.take(m)[0]["action"] == "error"  # a patch that cannot apply is bad input
    assert h.store.objects["o"].latest[0] == [1, 1]


# ---- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    b"not json", b"[1,2]", b'{"action":"nope"}', b'{"no":"action"}',
    b'{"action":"object-consumer-register"}', b'{"action":"object-consumer-register","pattern":""}',
    b'{"action":"object-consumer-register","pattern":5}',
    b'{"action":"object-patch","id":"a*","version-new":1,"value":{}}',
    b'{"action":"object-patch","id":"a","version-new":true,"value":{}}',
    b'{"action":"object-patch","id":"a","value":{}}',
    b'{"action":"object-patch","id":"a","version-new":1,"value":[1]}',
    b'{"action":"client-options-set","options":3}',
])
def test_bad_input_gets_an_error_frame_and_changes_nothing(h, raw):
    c = h.client()
    h.store.handle_raw(c, raw, h.store.now)
    h._route()
    [frame] = h.take(c)
    assert frame["action"] == "error" and frame["message"]
    assert h.store.objects == {} and h.store.queue == {}


# ---- failures and hot objects -----------------------------------------------------------------

def test_failed_production_is_retried_with_backoff_and_watchers_told():
    h = Harness()
    h.store.retry_base = 1.0
    c, p = h.client(), h.client("p")
    h.send(p, "object-producer-register", pattern="o")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    assert h.take(p) == [produce("o")]
    h.send(p, "object-patch", id="o", error="ValueError: boom")
    [err] = h.take(c)
    assert err["action"] == "error" and err["id"] == "o" and "boom" in err["message"]
    assert h.take(p) == []  # not straight back to the failing producer
    assert h.store.objects["o"].state == "delayed"
    h.store.tick(0.9); h._route()
    assert h.take(p) == []
    h.store.tick(1.0); h._route()
    assert h.take(p) == [produce("o")]
    h.send(p, "object-patch", id="o", error="ValueError: boom")
    h.store.tick(2.5); h._route()  # second failure: 2 s backoff
    assert h.take(p) == []
    h.store.tick(3.0); h._route()
    assert h.take(p) == [produce("o")]
    h.send(p, "object-patch", id="o", version_new=1, value={"ok": True})
    assert h.take(c)[-1]["value"] == {"ok": True}
    assert h.store.objects["o"].failures == 0


def test_min_interval_serializes_and_coalesces_a_hot_object():
    h = Harness()
    h.store.min_interval = 1.0
    c, p1, p2, n = h.client(), h.client("p1"), h.client("p2"), h.client("n")
    h.send(p1, "object-producer-register", pattern="hot")
    h.send(p2, "object-producer-register", pattern="hot")
    h.send(c, "object-consumer-register", pattern="hot", version_known=0)
    assert h.take(p1) == [produce("hot")]
    h.send(p1, "object-patch", id="hot", version_new={"d": 1}, value={"v": 1})
    for v in range(2, 50):  # a storm of bumps while the object was just produced
        h.send(n, "object-patch", id="d", version_new=v, value={})
    assert h.take(p1) == [] and h.take(p2) == []  # within the minimum interval: nothing ordered
    h.store.tick(1.0); h._route()
    orders = h.take(p1) + h.take(p2)
    assert orders == [produce("hot", {"d": 49})]  # one production, for the last state
    h.send(n, "object-patch", id="d", version_new=50, value={})
    assert h.take(p1) == [] and h.take(p2) == []  # at most one in flight


def test_paused_session_gets_only_the_latest_state_when_it_resumes():
    h = Harness(retain=2)
    slow, fast, p = h.client("slow"), h.client("fast"), h.client("p")
    h.send(p, "object-producer-register", pattern="o")
    for c in (slow, fast):
        h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.send(p, "object-patch", id="o", version_new=1, value={"n": 1})
    h.take(slow), h.take(fast)
    h.store.pause(slow)
    for n in range(2, 10):
        h.send(p, "object-patch", id="o", version_new=n, value={"n": n})
    assert h.take(slow) == []
    assert [f["version-new"] for f in h.take(fast)] == list(range(2, 10))  # others see no delay
    h.store.resume(slow)
    h._route()
    [frame] = h.take(slow)  # one frame, the latest state; version 1 is no longer retained
    assert frame == update_value("o", 9, {"n": 9})


def test_history_gives_a_patch_to_a_client_several_versions_behind():
    h = Harness(retain=5)
    c, p = h.client(), h.client("p")
    h.send(p, "object-producer-register", pattern="o")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    rows = [{"id": i, "name": f"row {i}"} for i in range(50)]
    for v in range(1, 6):
        rows[v]["name"] = f"changed {v}"
        h.send(p, "object-patch", id="o", version_new=v, value={"rows": rows})
    late = h.client("late")
    h.send(late, "object-consumer-register", pattern="o", version_known=1)
    [frame] = h.take(late)
    assert frame["version-old"] == 1 and len(frame["patch"]) == 4
    h.store.retain_bytes = 10  # older versions beyond the previous one no longer fit
    h.send(p, "object-patch", id="o", version_new=6, value={"rows": rows[:10]})
    assert [v for v, _ in h.store.objects["o"].history] == [5, 6]


def test_registration_limit_per_session():
    h = Harness()
    h.store.max_registrations = 3
    c = h.client()
    for oid in ("a", "b", "c", "d"):
        h.send(c, "object-consumer-register", pattern=oid, version_known=0)
    [err] = h.take(c)
    assert err["action"] == "error" and "limit" in err["message"] and err["pattern"] == "d"
    assert list(c.consumes) == ["a", "b", "c"]


class ReadOnly:
    def may_consume(self, pattern):
        return pattern.startswith("public-")

    def may_produce(self, pattern):
        return False


def test_auth_hook_decides_per_pattern():
    h = Harness(authenticate=lambda options: ReadOnly() if options.get("token") == "t0k" else None)
    worker = h.store.open("worker")  # not guarded: workers join with the cluster secret
    h.inbox[worker] = []
    h.send(worker, "object-producer-register", pattern="*")
    anonymous = h.store.open("anon", guarded=True)
    h.inbox[anonymous] = []
    h.send(anonymous, "client-options-set", options={"name": "x"})
    assert h.take(anonymous)[0]["message"] == "authentication failed"
    h.send(anonymous, "object-consumer-register", pattern="public-1", version_known=0)
    assert h.take(anonymous)[0]["action"] == "error"
    reader = h.store.open("reader", guarded=True)
    h.inbox[reader] = []
    h.send(reader, "client-options-set", options={"name": "r", "token": "t0k"})
    h.send(reader, "object-consumer-register", pattern="public-1", version_known=0)
    h.send(reader, "object-consumer-register", pattern="secret", version_known=0)
    h.send(reader, "object-patch", id="public-1", version_new=1, value={"forged": True})
    errors = h.take(reader)
    assert [e["message"] for e in errors] == ["not allowed to consume 'secret'", "not allowed to produce 'public-1'"]
    assert h.take(worker) == [produce("public-1")]
    assert list(reader.consumes) == ["public-1"]


# ---- prefetch: several orders per producer session ---------------------------------------------

def test_producer_holds_one_order_by_default_as_seapig(h):
    c, p = h.client("c"), h.client("p")
    h.send(p, "object-producer-register", pattern="x*")
    for oid in ("x1", "x2", "x3"):
        h.send(c, "object-consumer-register", pattern=oid, version_known=0)
    assert h.take(p) == [produce("x1")]
    h.send(p, "object-patch", id="x1", version_new=1, value={})
    assert h.take(p) == [produce("x2")]


def test_prefetch_option_gives_that_many_orders_at_once(h):
    c, p = h.client("c"), h.client("p")
    h.send(p, "client-options-set", options={"name": "p", "prefetch": 2})
    h.send(p, "object-producer-register", pattern="x*")
    for oid in ("x1", "x2", "x3", "x4"):
        h.send(c, "object-consumer-register", pattern=oid, version_known=0)
    assert h.take(p) == [produce("x1"), produce("x2")]
    h.send(p, "object-patch", id="x2", version_new=1, value={})  # answers may come in any order
    assert h.take(p) == [produce("x3")]
    h.send(p, "client-options-set", options={"name": "p", "prefetch": 4})  # more room: filled at once
    assert h.take(p) == [produce("x4")]
    assert sorted(p.producing) == ["x1", "x3", "x4"]


def test_prefetch_never_orders_the_same_object_twice_on_one_session(h):
    c, p, q = h.client("c"), h.client("p"), h.client("q")
    h.send(p, "client-options-set", options={"name": "p", "prefetch": 3})
    h.send(p, "object-producer-register", pattern="x")
    h.send(c, "object-consumer-register", pattern="x", version_known=0)
    assert h.take(p) == [produce("x")]
    h.send(c, "object-patch", id="x", version_new=5, value=True)  # a newer version is announced meanwhile
    assert h.take(p) == []  # x is in flight here already: not ordered twice to the same session
    h.send(q, "object-producer-register", pattern="x")  # another producer may take the newer version
    assert [m["id"] for m in h.take(q)] == ["x"]


@pytest.mark.parametrize("prefetch", [0, -1, "3", 2.0, True, None])
def test_invalid_prefetch_means_one(h, prefetch):
    c, p = h.client("c"), h.client("p")
    h.send(p, "client-options-set", options={"name": "p", "prefetch": prefetch})
    h.send(p, "object-producer-register", pattern="x*")
    for oid in ("x1", "x2"):
        h.send(c, "object-consumer-register", pattern=oid, version_known=0)
    assert h.take(p) == [produce("x1")]


def test_disconnect_requeues_every_prefetched_order(h):
    c, p, q = h.client("c"), h.client("p"), h.client("q")
    h.send(p, "client-options-set", options={"name": "p", "prefetch": 3})
    h.send(p, "object-producer-register", pattern="x*")
    for oid in ("x1", "x2"):
        h.send(c, "object-consumer-register", pattern=oid, version_known=0)
    h.send(q, "object-producer-register", pattern="x*")
    assert len(h.take(p)) == 2 and h.take(q) == []
    h.close(p)
    assert [m["id"] for m in h.take(q)] == ["x1"]  # q holds one order at a time
    h.send(q, "object-patch", id="x1", version_new=1, value={})
    assert [m["id"] for m in h.take(q)] == ["x2"]


# ---- coalescing while the router is behind -----------------------------------------------------

def test_versions_arriving_together_are_pushed_once_when_coalescing():
    h = Harness(retain=8)  # the router's default: the version the client holds is still retained
    c, m = h.client("c"), h.client("m")
    h.send(c, "object-consumer-register", pattern="x", version_known=0)
    h.send(m, "object-producer-register", pattern="x")
    h.take(m)
    h.send(m, "object-patch", id="x", version_new=1, value={"n": 1})
    assert h.take(c) == [update_value("x", 1, {"n": 1})]
    for n in (2, 3, 4):  # batch mode: what the router asks for when a batch of many messages is waiting
        h.store.handle_raw(m, orjson.dumps({"action": "object-patch", "id": "x", "version-new": n, "value": {"n": n}}),
                           h.store.now, coalesce=True)
    h._route()
    assert h.take(c) == [{"action": "object-update", "id": "x", "version-old": 1, "version-new": 4,
                          "patch": [{"op": "replace", "path": "/n", "value": 4}]}]


def test_versions_are_all_pushed_when_not_coalescing(h):
    c, m = h.client("c"), h.client("m")
    h.send(c, "object-consumer-register", pattern="x", version_known=0)
    h.send(m, "object-producer-register", pattern="x")
    h.take(m)
    for n in (1, 2, 3):
        h.store.handle_raw(m, orjson.dumps({"action": "object-patch", "id": "x", "version-new": n, "value": {"n": n}}),
                           h.store.now)
    h._route()
    assert [msg["version-new"] for msg in h.take(c)] == [1, 2, 3]


def test_coalesced_push_keeps_its_place_and_skips_destroyed_objects(h):
    c, m = h.client("c"), h.client("m")
    h.send(c, "object-consumer-register", pattern="x", version_known=0)
    h.send(c, "object-consumer-register", pattern="y", version_known=0)
    h.send(m, "object-producer-register", pattern="*")
    h.take(m)
    for oid, n in (("x", 1), ("y", 1), ("x", 2)):
        h.store.handle_raw(m, orjson.dumps({"action": "object-patch", "id": oid, "version-new": n, "value": {"n": n}}),
                           h.store.now, coalesce=True)
    h.store.handle_raw(c, orjson.dumps({"action": "object-consumer-unregister", "pattern": "y"}), h.store.now,
                       coalesce=True)
    h._route()
    assert h.take(c) == [update_value("x", 2, {"n": 2})]  # y died before the push: not sent at all


def test_a_dependency_bumped_many_times_in_a_batch_raises_its_dependents_once(h):
    """Batch mode: 50 versions of one dependency in one batch re-check its dependents once, when the outbox
    is taken, at the newest version: one order per dependent, for the last version, none for the others."""
    c, n, w = h.client("c"), h.client("n"), h.client("w")
    h.send(n, "object-producer-register", pattern="dep:*")
    h.send(w, "client-options-set", options={"name": "w", "prefetch": 4})
    h.send(w, "object-producer-register", pattern="t*")
    for oid in ("t1", "t2"):
        h.send(c, "object-consumer-register", pattern=oid, version_known=0)
    for order in h.take(w):
        h.send(w, "object-patch", id=order["id"], version_new={"dep:d": 1}, value={"v": 1})
    h.send(n, "object-patch", id="dep:d", version_new=1, value={})
    h.take(c), h.take(n)
    assert h.take(w) == []
    for v in range(2, 52):
        h.store.handle_raw(n, orjson.dumps({"action": "object-patch", "id": "dep:d", "version-new": v, "value": {}}),
                           h.store.now, coalesce=True)
        assert h.store.has_output
    h._route()
    orders = h.take(w)
    assert sorted(o["id"] for o in orders) == ["t1", "t2"]
    assert all(o["version-inferred"] == {"dep:d": 51} for o in orders)
    for order in orders:
        h.send(w, "object-patch", id=order["id"], version_new={"dep:d": 51}, value={"v": 51})
    assert [(m["id"], m["version-new"]) for m in h.take(c)] == [("t1", {"dep:d": 51}), ("t2", {"dep:d": 51})]
    assert h.take(w) == []


def test_prefetch_prefers_an_idle_producer(h):
    c, p, q = h.client("c"), h.client("p"), h.client("q")
    for s in (p, q):
        h.send(s, "client-options-set", options={"name": "w", "prefetch": 4})
        h.send(s, "object-producer-register", pattern="x*")
    h.send(c, "object-consumer-register", pattern="x1", version_known=0)
    h.send(c, "object-consumer-register", pattern="x2", version_known=0)
    assert [m["id"] for m in h.take(p)] == ["x1"]
    assert [m["id"] for m in h.take(q)] == ["x2"]  # q was idle: it gets x2 rather than p's second slot
    h.send(c, "object-consumer-register", pattern="x3", version_known=0)
    assert [m["id"] for m in h.take(p)] == ["x3"]  # both busy: the first with room


def test_producer_freed_within_a_batch_takes_the_oldest_queued_object_first(h):
    c, p = h.client("c"), h.client("p")
    h.send(p, "object-producer-register", pattern="x*")
    h.send(c, "object-consumer-register", pattern="x1", version_known=0)
    h.send(c, "object-consumer-register", pattern="x2", version_known=0)
    assert [m["id"] for m in h.take(p)] == ["x1"]
    # one batch of messages (the outbox is taken once at its end): p answers x1, then x3 is queued
    h.store.handle_raw(p, orjson.dumps({"action": "object-patch", "id": "x1", "version-new": 1, "value": {}}), h.store.now)
    h.store.handle_raw(c, orjson.dumps({"action": "object-consumer-register", "pattern": "x3", "version-known": 0}), h.store.now)
    h._route()
    assert [m["id"] for m in h.take(p)] == ["x2"]  # x2 was queued before x3
    h.send(p, "object-patch", id="x2", version_new=1, value={})
    assert [m["id"] for m in h.take(p)] == ["x3"]
