"""Linger (issue 17 item 2, ``sync-router --linger S``): an object whose last watcher leaves is kept, current,
for S seconds, so a watcher coming back costs no production. Pure: the store alone, time given to it."""

from __future__ import annotations

import orjson

from router.store import Session
from tests.unit.router import harness


class Harness(harness.Harness):
    """A store with a producer of ``doc-*`` and its own clock."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.now = 100.0
        self.producer = self.open("producer")
        self.send(self.producer, "object-producer-register", pattern="doc-*")

    def send(self, session: Session, action: str, **fields) -> None:
        self.store.handle_raw(session, orjson.dumps({"action": action, **{k.replace("_", "-"): v
                                                                           for k, v in fields.items()}}), self.now)
        self.route()

    def answer_orders(self, value: dict | None = None) -> int:
        """Answer every order the producer holds (version = inferred + 1 for a number); the count."""
        orders = [f for f in self.take(self.producer) if f["action"] == "object-produce"]
        for order in orders:
            version = order["version-inferred"] if order["version-inferred"] is not None else 1
            self.send(self.producer, "object-patch", id=order["id"], version_new=version,
                      value=value or {"n": version})
        return len(orders)

    def tick(self, seconds: float) -> None:  # (seconds from now, not a time)
        self.now += seconds
        super().tick(self.now)

    def watch(self, name: str, object_id: str = "doc-1", known: object = 0) -> Session:
        s = self.open(name)
        self.send(s, "object-consumer-register", pattern=object_id, version_known=known)
        return s


def test_a_watcher_back_within_the_linger_gets_current_and_costs_no_production():
    h = Harness(linger=30.0)
    first = h.watch("tab")
    assert h.answer_orders() == 1
    [update] = h.take(first)
    assert update["value"] == {"n": 1}
    h.store.close(first)  # a page reload: the old tab goes away...
    h.route()
    assert h.store.objects["doc-1"].state == "lingering"
    h.tick(10.0)
    again = h.watch("tab-reloaded", known=1)  # ... and the new one holds what the old one had
    assert h.answer_orders() == 0
    assert h.take(again) == []  # current: nothing to send
    assert h.store.objects["doc-1"].state == "current"
    fresh = h.watch("new-tab")  # a watcher holding nothing gets the cached value, still no production
    assert [f["value"] for f in h.take(fresh)] == [{"n": 1}]
    assert h.answer_orders() == 0 and h.store.productions_total == 1


def test_after_the_linger_the_object_is_gone_and_produced_again():
    h = Harness(linger=5.0)
    first = h.watch("tab")
    h.answer_orders()
    h.send(first, "object-consumer-unregister", pattern="doc-1")
    h.tick(4.0)
    assert "doc-1" in h.store.objects
    h.tick(2.0)
    assert "doc-1" not in h.store.objects and not h.store.lingering
    assert [f["action"] for f in h.take(h.producer)] == ["object-destroy"]  # told when it is really dropped
    h.watch("later")
    assert h.answer_orders() == 1


def test_without_linger_the_object_goes_at_once_as_in_seapig():
    h = Harness()
    first = h.watch("tab")
    h.answer_orders()
    h.send(first, "object-consumer-unregister", pattern="doc-1")
    assert "doc-1" not in h.store.objects


def test_a_lingering_object_whose_version_moves_is_dropped_not_produced():
    h = Harness(linger=30.0)
    h.send(h.producer, "object-producer-register", pattern="dep-a")
    h.send(h.producer, "object-patch", id="dep-a", version_new=1, value={})
    tab = h.watch("tab")
    orders = [f for f in h.take(h.producer) if f["action"] == "object-produce"]
    h.send(h.producer, "object-patch", id=orders[0]["id"], version_new={"dep-a": 1}, value={"n": 1})
    assert h.store.objects["doc-1"].state == "current"
    h.send(tab, "object-consumer-unregister", pattern="doc-1")
    assert h.store.objects["doc-1"].state == "lingering"
    h.send(h.producer, "object-patch", id="dep-a", version_new=2, value={})  # its dependency moves
    assert "doc-1" not in h.store.objects
    assert not [f for f in h.take(h.producer) if f["action"] == "object-produce" and f["id"] == "doc-1"]


def test_lingering_values_are_bounded_in_bytes_oldest_dropped_first():
    h = Harness(linger=60.0, linger_bytes=400)
    tabs = [h.watch(f"tab{i}", f"doc-{i}") for i in range(3)]
    while h.answer_orders({"pad": "x" * 100}):  # one order at a time (seapig's one slot per producer)
        pass
    for tab in tabs:
        h.store.close(tab)
    assert list(h.store.lingering) == ["doc-1", "doc-2"]  # doc-0 went first: each value is ~190 bytes, 3 are over 400
    assert "doc-0" not in h.store.objects


def test_the_object_limit_drops_a_lingering_object_before_refusing_a_new_one():
    from router.limits import Limits
    h = Harness(linger=60.0, limits=Limits(max_objects=1))
    tab = h.watch("tab", "doc-0")
    h.answer_orders()
    h.store.close(tab)
    assert list(h.store.lingering) == ["doc-0"]
    other = h.watch("other", "doc-1")
    assert "doc-1" in h.store.objects and "doc-0" not in h.store.objects
    assert not [f for f in h.take(other) if f["action"] == "error"]
