"""The store's credit gate (issue 13 item 1): the sessions of one front held latest-wins while it is out of credit.

Pure: the router closes a front's gate when it has K SENDS unacknowledged and releases it on ACK; here the
store alone is driven, the way tests/unit/router/test_store.py drives a paused session.
"""

from __future__ import annotations

import jsonpatch

import orjson

from router.store import OPEN_GATE, Gate, Session
from tests.unit.router.harness import Harness


class Holder:
    """A client applying what it gets: each patch against the version it holds, never backwards."""

    def __init__(self) -> None:
        self.version, self.value = 0, {}

    def apply(self, frames: list[dict]) -> None:
        for f in frames:
            if f.get("action") != "object-update":
                continue
            assert f["version-new"] > self.version
            if "value" in f:
                self.value = f["value"]
            else:
                assert f["version-old"] == self.version
                self.value = jsonpatch.apply_patch(self.value, f["patch"])
            self.version = f["version-new"]


def setup(h: Harness, gate: Gate, watchers: int = 3) -> tuple[Session, list[Session], Session]:
    p = h.client("p")  # a worker: the open gate
    held = [h.client(f"w{i}", gate) for i in range(watchers)]
    other = h.client("other")  # a session of another front
    h.send(p, "object-producer-register", pattern="*")
    for c in (*held, other):
        h.send(c, "object-consumer-register", pattern="o", version_known=0)
    return p, held, other


def test_closed_gate_holds_latest_wins_and_release_sends_the_newest_once():
    h, gate = Harness(retain=3), Gate()
    p, held, other = setup(h, gate)
    h.send(p, "object-patch", id="o", version_new=1, value={"n": 1})
    holders = {s: Holder() for s in held}
    for s in held:
        holders[s].apply(h.take(s))
    h.store.hold(gate)
    for n in range(2, 50):
        h.send(p, "object-patch", id="o", version_new=n, value={"n": n, "pad": [n] * (n % 3)})
    assert all(h.take(s) == [] for s in held)  # nothing for the held front ...
    assert [f["version-new"] for f in h.take(other)] == list(range(1, 50))  # ... the other sees every version
    assert gate.stale == {"o": None}  # one entry per object, however many versions
    h.store.release(gate)
    h.route()
    for s in held:
        frames = h.take(s)
        assert len(frames) == 1 and frames[0]["version-new"] == 49
        holders[s].apply(frames)
        assert holders[s].value == {"n": 49, "pad": [49]}
    assert not gate.closed and gate.stale == {}


def test_release_patches_from_the_version_held_when_retained():
    h, gate = Harness(retain=5), Gate()
    p, held, _ = setup(h, gate, watchers=1)
    rows = [{"id": i} for i in range(40)]
    h.send(p, "object-patch", id="o", version_new=1, value={"rows": rows})
    holder = Holder()
    holder.apply(h.take(held[0]))
    h.store.hold(gate)
    rows[3] = {"id": 3, "x": 1}
    h.send(p, "object-patch", id="o", version_new=2, value={"rows": rows})
    h.store.release(gate)
    h.route()
    [frame] = h.take(held[0])
    assert frame["version-old"] == 1 and "patch" in frame
    holder.apply([frame])
    assert holder.value == {"rows": rows}


def test_a_paused_session_behind_a_closed_gate_waits_for_both():
    h, gate = Harness(), Gate()
    p, (slow, fast), _ = setup(h, gate, watchers=2)
    h.send(p, "object-patch", id="o", version_new=1, value={"n": 1})
    h.take(slow), h.take(fast)
    h.store.pause(slow)
    h.store.hold(gate)
    h.send(p, "object-patch", id="o", version_new=2, value={"n": 2})
    h.store.resume(slow)  # the client drained, but its front is still out of credit
    h.route()
    assert h.take(slow) == [] and h.take(fast) == []
    h.send(p, "object-patch", id="o", version_new=3, value={"n": 3})
    h.store.pause(slow)
    h.store.release(gate)  # credit back: the paused one stays held, the other is brought up to date
    h.route()
    assert [f["version-new"] for f in h.take(fast)] == [3] and h.take(slow) == []
    h.store.resume(slow)
    h.route()
    assert [f["version-new"] for f in h.take(slow)] == [3]


def test_release_skips_objects_gone_and_sessions_that_left():
    h, gate = Harness(), Gate()
    p, (a, b), other = setup(h, gate, watchers=2)
    h.send(p, "object-patch", id="o", version_new=1, value={"n": 1})
    h.take(a), h.take(b)
    h.store.hold(gate)
    h.send(p, "object-patch", id="o", version_new=2, value={"n": 2})
    h.send(a, "object-consumer-unregister", pattern="o")
    h.store.close(b)
    h.send(other, "object-consumer-unregister", pattern="o")  # the object is gone
    h.store.release(gate)
    h.route()
    assert [f for f in h.take(a) if f.get("action") == "object-update"] == []


def test_a_new_subscriber_behind_a_closed_gate_gets_the_value_on_release():
    h, gate = Harness(), Gate()
    p, _, _ = setup(h, gate, watchers=1)
    h.send(p, "object-patch", id="o", version_new=1, value={"n": 1})
    h.store.hold(gate)
    late = h.client("late", gate)
    h.send(late, "object-consumer-register", pattern="o", version_known=0)
    assert [f for f in h.take(late) if f.get("action") == "object-update"] == []
    h.store.release(gate)
    h.route()
    assert [f["version-new"] for f in h.take(late)] == [1]


def test_the_open_gate_is_never_closed():
    h = Harness()
    h.store.hold(OPEN_GATE)
    assert not OPEN_GATE.closed


def test_a_push_in_batch_mode_never_overtakes_the_deferred_one():
    """Batch mode defers an object's push to the place of its first change in the outbox; a direct push of the
    same object later in the batch (a release, a resume, a new consumer) must not be overtaken by it, or a
    client gets a patch from a version it does not hold yet (seen in the chaos test: 'it holds 115')."""
    h, gate = Harness(), Gate()
    master, [watcher], _ = setup(h, gate, watchers=1)
    h.send(master, "object-patch", id="o", version_new=1, value={"n": 1})
    holder = Holder()
    holder.apply(h.take(watcher))
    assert holder.version == 1
    h.store.hold(gate)

    def batch(session: Session, action: str, **fields) -> None:  # what the router does while behind
        msg = {"action": action, **{k.replace("_", "-"): v for k, v in fields.items()}}
        h.store.handle_raw(session, orjson.dumps(msg), h.store.now, coalesce=True)

    batch(master, "object-patch", id="o", version_new=2, value={"n": 2})  # deferred: the watcher is held
    h.store.release(gate)  # credit back mid-batch: the watcher is pushed version 2 now
    batch(master, "object-patch", id="o", version_new=3, value={"n": 3})  # deferred again
    late = h.open("late")
    batch(late, "object-consumer-register", pattern="o", version_known=0)  # a new consumer mid-batch
    batch(master, "object-patch", id="o", version_new=4, value={"n": 4})
    h.route()
    holder.apply(h.take(watcher))
    assert (holder.version, holder.value) == (4, {"n": 4})
    newcomer = Holder()
    newcomer.apply(h.take(late))
    assert (newcomer.version, newcomer.value) == (4, {"n": 4})
