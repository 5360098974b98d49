"""Store semantics seapig's clients expect (issue 12 items 4 and 5), in-process.

Item 4: an upload that cannot apply, from the session holding the order, is a cancelled production: the
error frame stays (additive), and the object is ordered again with the same inferred version, at once the
first time and behind the failure backoff after repeats (no full-speed loop).
Item 5: an order never asks for a dependency version older than the one the object's data was built from.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.versioning import OLDER, MIXED, compare
from router.store import QUICK_CANCELS
from tests.unit.router.test_store_semantics import Harness, errors, produce

# Every kind of upload that cannot apply, answering an order for "o" held at version 1 = {"v": 1}.
UNAPPLICABLE = {
    "patch-not-a-list": {"version-old": 1, "version-new": 2, "patch": {"v": 1}},
    "patch-not-a-list-unknown-base": {"version-old": 7, "version-new": 2, "patch": {"v": 1}},  # the RSpec's
    "base-not-retained": {"version-old": 7, "version-new": 2, "patch": [{"op": "replace", "path": "/v", "value": 2}]},
    "operations-fail": {"version-old": 1, "version-new": 2, "patch": [{"op": "remove", "path": "/missing"}]},
    "result-not-an-object": {"version-old": 1, "version-new": 2, "patch": [{"op": "replace", "path": "", "value": 3}]},
}
SILENT = {"base-not-retained"}  # seapig answers a patch on a base nobody holds with nothing but the new order


def ordered_once(retry_base: float = 1.0, **options):
    """A consumer of "o", its producer, and "o" at version 1 then ordered again at version 2."""
    h = Harness(retry_base=retry_base, **options)
    p, c = h.client("p"), h.client("c")
    h.send(p, "object-producer-register", pattern="o")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    assert h.take(p) == [produce("o")]
    h.send(p, "object-patch", id="o", version_new=1, value={"v": 1})
    h.send(p, "object-producer-register", pattern="o", version_known=2)  # announces 2: ordered at 2
    assert h.take(p) == [produce("o", 2)]
    h.take(c)
    return h, p, c


@pytest.mark.parametrize("kind", list(UNAPPLICABLE))
def test_an_upload_that_cannot_apply_cancels_and_requeues_with_the_same_inferred_version(kind):
    h, p, c = ordered_once()
    h.send(p, "object-patch", id="o", **UNAPPLICABLE[kind])
    frames = h.take(p)
    assert frames[-1] == produce("o", 2)  # ordered again at once, same version-inferred
    if kind in SILENT:
        assert frames == [produce("o", 2)]
    else:  # the error frame is kept, with a stable code, before the new order
        [error] = errors(frames)
        assert error["request"] == "object-patch" and error["id"] == "o" and error["code"].startswith("patch-")
    obj = h.store.objects["o"]
    assert obj.latest == (1, {"v": 1}) and obj.failures == 0 and obj.state == "producing"
    assert h.take(c) == []  # a cancel, not a failed production: consumers are not told
    h.send(p, "object-patch", id="o", version_new=2, value={"v": 2})
    assert h.take(c)[-1]["version-new"] == 2 and obj.state == "current"


@pytest.mark.parametrize("kind", list(UNAPPLICABLE))
def test_an_upload_that_cannot_apply_from_another_session_changes_nothing(kind):
    h, p, c = ordered_once()
    other = h.client("other")
    h.send(other, "object-patch", id="o", **UNAPPLICABLE[kind])
    assert [f for f in h.take(other) if f["action"] != "error"] == []
    assert h.take(p) == []  # the real producer keeps its order: nothing requeued, nothing doubled
    assert h.store.objects["o"].state == "producing" and h.store.objects["o"].cancels == 0


@pytest.mark.parametrize("kind", list(UNAPPLICABLE))
def test_a_producer_that_always_cancels_is_backed_off_not_looped(kind):
    """The first cancel is requeued at once (a base race clears on the next try); the next ones in a row
    wait the failure backoff, doubling: the producer cannot spin the router at full speed."""
    h, p, c = ordered_once(retry_base=1.0)
    for _ in range(QUICK_CANCELS):
        h.send(p, "object-patch", id="o", **UNAPPLICABLE[kind])
        assert h.take(p)[-1] == produce("o", 2)
    waits = []
    for _repeat in range(4):
        h.send(p, "object-patch", id="o", **UNAPPLICABLE[kind])
        assert [f for f in h.take(p) if f["action"] == "object-produce"] == []  # not at once any more
        due = h.store.delayed["o"]
        waits.append(due - h.store.now)
        h.tick(due - 0.01)
        assert h.take(p) == []
        h.tick(due)
        assert h.take(p) == [produce("o", 2)]  # then the same order again
    assert waits == [1.0, 2.0, 4.0, 8.0]
    h.send(p, "object-patch", id="o", version_new=2, value={"v": 2})  # a good answer resets the count
    assert h.store.objects["o"].cancels == 0


def test_an_explicit_cancel_still_requeues_at_once_every_time():
    """seapig's deliberate cancel (an object-patch with only the id) is not an upload that cannot apply."""
    h, p, c = ordered_once()
    for _ in range(QUICK_CANCELS + 3):
        h.send(p, "object-patch", id="o")
        assert h.take(p) == [produce("o", 2)]


# ---- item 5: inferred versions are never lower than what is already held ----------------------

def dependency_setup():
    """The issue's scenario: "o" current at {a: 1, b: 1}, "a" known at 2 (so "o" waits on "b")."""
    h = Harness(retry_base=1.0)
    c, p, d = h.client("c"), h.client("p"), h.client("d")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.send(p, "object-producer-register", pattern="o")
    h.send(d, "object-producer-register", pattern="a")
    h.send(d, "object-producer-register", pattern="b")
    assert h.take(p) == [produce("o")]
    h.send(p, "object-patch", id="o", version_new={"a": 1, "b": 1}, value={"v": 1})
    h.send(d, "object-patch", id="a", version_new=2, value={})
    h.take(d)
    return h, c, p, d


def test_the_issue_scenario_orders_the_newest_of_held_and_known():
    h, c, p, d = dependency_setup()
    h.send(d, "object-patch", id="b", version_new=10, value={})
    assert h.take(p) == [produce("o", {"a": 2, "b": 10})]
    h.send(p, "object-patch", id="o", version_new={"a": 5, "b": 5}, value={"v": 2})  # stale b, fresh a
    obj = h.store.objects["o"]
    assert obj.known == {"a": 5, "b": 5}
    assert obj.inferred == {"a": 5, "b": 10}  # not {a: 2, b: 10}: never below what is held
    h.tick(100.0)
    assert h.take(p) == []  # "a" is only known at 2: waiting for it, as seapig, not ordering a:2
    assert obj.state == "waiting for dependencies"
    h.send(d, "object-patch", id="a", version_new=5, value={})
    h.tick(200.0)
    assert h.take(p) == [produce("o", {"a": 5, "b": 10})]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "o"]), st.integers(1, 12), st.integers(1, 12)),
                min_size=1, max_size=25))
def test_no_order_ever_asks_below_what_the_object_holds(steps):
    """Over any sequence of dependency uploads and (possibly stale, possibly mixed) answers, each order
    for "o" names every dependency at a version no older than the one "o" holds for it."""
    h = Harness(retry_base=0.0)
    c, p, d = h.client("c"), h.client("p"), h.client("d")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.send(p, "object-producer-register", pattern="o")
    h.send(d, "object-producer-register", pattern="*")
    h.send(p, "object-patch", id="o", version_new={"a": 1, "b": 1}, value={"v": 0})
    for now, (who, x, y) in enumerate(steps, start=1):
        if who == "o":
            h.send(p, "object-patch", id="o", version_new={"a": x, "b": y}, value={"v": now})
        else:
            h.send(d, "object-patch", id=who, version_new=x, value={})
        h.tick(float(now))
        held = h.store.objects["o"].known
        for frame in h.take(p):
            if frame["action"] == "object-produce" and isinstance(frame["version-inferred"], dict):
                for dep, version in frame["version-inferred"].items():
                    if dep in held:
                        assert compare(held[dep], version) not in (OLDER, MIXED), (frame, held)
        inferred = h.store.objects["o"].inferred
        assert all(compare(held[k], inferred[k]) not in (OLDER, MIXED) for k in held if k in inferred)
    orjson.dumps(h.store.objects["o"].inferred)


def test_each_cancel_is_logged():
    lines = []
    h, p, c = ordered_once(log=lambda fmt, *args, **_: lines.append(fmt % args))
    h.send(p, "object-patch", id="o", **UNAPPLICABLE["operations-fail"])
    h.send(p, "object-patch", id="o", **UNAPPLICABLE["base-not-retained"])
    assert len(lines) == 2 and all(line.startswith("order of o cancelled by") for line in lines)
