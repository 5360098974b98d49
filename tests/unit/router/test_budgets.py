"""Every input dimension has a budget (DESIGN principle 7, issue 10 items 1 and 4, item 11): in-process.

Each test grows one dimension past its limit and checks the refusal (an error frame with a stable code,
nothing else changed) and that the memory accounting comes back when the session goes.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import FrozenInstanceError, replace

import orjson
import pytest

from common import patterns, protocol
from common.diff import PatchError, PatchTooLarge, apply_patch
from router import limits as budget
from router.limits import Limits
from tests.unit.router.test_store import Harness, produce


def errors(h: Harness, session, code: str | None = None) -> list[dict]:
    return [m for m in h.take(session) if m["action"] == "error" and (code is None or m.get("code") == code)]


def with_limits(h: Harness, **changes) -> Harness:
    h.store.limits = replace(h.store.limits, **changes)
    return h


def copies(n: int, source: str = "/s") -> list[dict]:
    return [{"op": "copy", "from": source, "path": f"/c{i}"} for i in range(n)]


# ---- item 1: a patch is bounded by the size of its result ---------------------------------------------

def test_copy_bomb_is_refused_before_it_is_built():
    doc = {"s": "x" * 500_000}
    size = len(orjson.dumps(doc))
    with pytest.raises(PatchTooLarge, match="more than 4000000 bytes"):
        apply_patch(doc, copies(1000), max_size=4_000_000, size=size)
    assert doc == {"s": "x" * 500_000}  # rolled back: nothing of the refused patch is left


def test_patch_within_the_bound_applies_and_the_bound_is_an_upper_bound():
    doc = {"s": "x" * 1000}
    size = len(orjson.dumps(doc))
    result = apply_patch(doc, copies(3) + [{"op": "add", "path": "/n", "value": [1, 2, 3]}],
                         max_size=10_000, size=size)
    assert len(orjson.dumps(result)) <= 10_000 and result["c2"] == "x" * 1000


def test_the_bound_holds_across_patches_a_subtree_copied_into_itself_stops_growing():
    """One copy per patch doubling a list: each patch is small, the result is what is bounded."""
    doc: dict = {"a": [0] * 100}
    limit = 50_000
    refused = 0
    for _ in range(20):
        try:
            doc = apply_patch(doc, [{"op": "copy", "from": "/a", "path": "/a/-"}], max_size=limit,
                              size=len(orjson.dumps(doc)))
        except PatchTooLarge:
            refused += 1
        assert len(orjson.dumps(doc)) <= limit
    assert refused > 0


def test_the_patch_itself_counts_values_it_brings():
    with pytest.raises(PatchTooLarge):
        apply_patch({}, [{"op": "add", "path": "/v", "value": "y" * 2000}], max_size=1000, size=2)


def test_without_a_bound_apply_patch_is_unchanged():
    doc = {"s": "x" * 100}
    assert apply_patch(doc, copies(10))["c9"] == "x" * 100


def test_patch_too_large_is_a_patch_error():
    assert issubclass(PatchTooLarge, PatchError)


def _uploaded(h: Harness, max_object: int):
    with_limits(h, max_object=max_object)
    c, p = h.client("c"), h.client("p")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.send(p, "object-producer-register", pattern="o")
    assert h.take(p) == [produce("o")]
    h.send(p, "object-patch", id="o", version_new=1, value={"s": "x" * 500_000})
    h.take(c)
    return c, p


def test_store_refuses_a_copy_bomb_upload_and_keeps_the_object():
    h = Harness()
    c, p = _uploaded(h, 2_000_000)
    h.send(c, "object-patch", id="o", version_old=1, version_new=2, patch=copies(1000))
    [err] = errors(h, c, budget.OBJECT_TOO_LARGE)
    assert err["id"] == "o" and "2000000 bytes" in err["message"]
    assert h.take(c) == [] and h.take(p) == []
    obj = h.store.objects["o"]
    assert obj.known == 1 and obj.latest[1] == {"s": "x" * 500_000} and len(obj.history) == 1


def test_store_bounds_an_object_grown_one_copy_per_frame():
    h = Harness()
    c, _ = _uploaded(h, 2_000_000)
    for version in range(2, 12):
        h.send(c, "object-patch", id="o", version_old=version - 1, version_new=version,
               patch=[{"op": "copy", "from": "/s", "path": f"/c{version}"}])
    assert max(h.store.objects["o"].sizes) <= 2_000_000 + 100
    assert errors(h, c, budget.OBJECT_TOO_LARGE)


def test_store_refused_patch_answering_an_order_frees_it_and_counts_as_failed():
    h = Harness()
    c, p = _uploaded(h, 2_000_000)
    h.send(c, "object-patch", id="o", version_new=2, value=True)  # newer version announced: ordered
    assert h.take(p) == [produce("o", 2)]
    h.send(p, "object-patch", id="o", version_old=1, version_new=2, patch=copies(10))
    assert errors(h, p, budget.OBJECT_TOO_LARGE)
    assert h.store.sessions and "o" not in p.producing  # the slot is free
    obj = h.store.objects["o"]
    assert obj.errors == 1 and obj.failures == 1 and "o" in h.store.delayed  # retried after a backoff
    [failed] = errors(h, c)
    assert failed["request"] == "object-produce" and failed["id"] == "o"


def test_store_refuses_a_value_larger_than_max_object():
    h = Harness()
    with_limits(h, max_object=10_000)
    c = h.client()
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.send(c, "object-patch", id="o", version_new=1, value={"s": "x" * 20_000})
    assert errors(h, c, budget.OBJECT_TOO_LARGE)
    assert "o" not in h.store.objects or h.store.objects["o"].latest is None


# ---- item 4: versions ------------------------------------------------------------------------------------

def test_version_known_too_large_is_refused_and_not_held():
    h = Harness()
    c = h.client()
    huge = list(range(100_000))  # ~0.6 MB encoded, ~8x that as Python ints
    h.send(c, "object-consumer-register", pattern="o", version_known=huge)
    [err] = errors(h, c, budget.VERSION_TOO_LARGE)
    assert err["request"] == "object-consumer-register" and err["pattern"] == "o"
    assert "o" not in c.held and "o" not in c.consumes


def test_a_version_naming_too_many_dependencies_creates_nothing():
    h = Harness()
    c, p = h.client("c"), h.client("p")
    h.send(p, "object-producer-register", pattern="*")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.take(p)
    before = len(h.store.objects)
    deps = {f"dep-{i}": 1 for i in range(20_000)}
    h.send(c, "object-patch", id="o", version_new=deps, value={})
    assert errors(h, c, budget.TOO_MANY_DEPENDENCIES)
    assert len(h.store.objects) == before and not h.store.dependents


def test_versions_held_per_session_are_budgeted_and_returned_on_unregister():
    h = Harness()
    with_limits(h, max_session_versions=10_000)
    c = h.client()
    version = list(range(1000))  # ~3.9 kB encoded
    for oid in ("a", "b", "c"):
        h.send(c, "object-consumer-register", pattern=oid, version_known=version)
    assert [e["pattern"] for e in errors(h, c, budget.SESSION_VERSIONS)] == ["c"]
    h.send(c, "object-consumer-unregister", pattern="a")
    h.send(c, "object-consumer-register", pattern="c", version_known=version)
    assert errors(h, c) == []
    h.send(c, "object-consumer-register", pattern="c", version_known=version)  # again: replaces, not adds
    assert errors(h, c) == [] and c.version_bytes == 2 * len(orjson.dumps(version))


# ---- item 4: patterns ------------------------------------------------------------------------------------

def test_pattern_length_per_session_is_budgeted_and_returned_on_close():
    h = Harness()
    with_limits(h, max_session_pattern_chars=3000)
    c = h.client()
    for i in range(4):
        h.send(c, "object-consumer-register", pattern=f"{i}-" + "a" * 900 + "*", version_known=0)
    assert len(errors(h, c, budget.PATTERN_LIMIT)) == 1 and len(c.consumes) == 3
    assert h.store.pattern_chars == c.pattern_chars > 0 and h.store.wildcards == 3
    h.close(c)
    assert h.store.pattern_chars == 0 and h.store.wildcards == 0


def test_stars_per_pattern_are_budgeted():
    h = Harness()
    c = h.client()
    h.send(c, "object-consumer-register", pattern="*a" * 17, version_known=0)
    assert errors(h, c, budget.PATTERN_LIMIT) and not c.consumes
    h.send(c, "object-consumer-register", pattern="*a" * 16, version_known=0)
    assert errors(h, c) == [] and c.consumes


def test_distinct_wildcards_in_all_are_budgeted_and_counted_once():
    h = Harness()
    with_limits(h, max_wildcards=2)
    a, b = h.client("a"), h.client("b")
    for s in (a, b):  # the same patterns from two sessions cost one entry each
        h.send(s, "object-consumer-register", pattern="x-*", version_known=0)
        h.send(s, "object-consumer-register", pattern="y-*", version_known=0)
    assert errors(h, a) == errors(h, b) == []
    h.send(b, "object-consumer-register", pattern="z-*", version_known=0)
    [err] = errors(h, b, budget.PATTERN_LIMIT)
    assert "2 distinct wildcard patterns" in err["message"]
    h.send(b, "object-consumer-register", pattern="exact", version_known=0)  # exact ids are another budget
    assert errors(h, b) == []


def test_distinct_patterns_and_their_length_in_all_are_budgeted():
    h = Harness()
    with_limits(h, max_patterns=3, max_pattern_chars=1_000_000)
    c = h.client()
    for oid in ("a", "b", "c", "d"):
        h.send(c, "object-consumer-register", pattern=oid, version_known=0)
    assert len(errors(h, c, budget.PATTERN_LIMIT)) == 1
    h2 = with_limits(Harness(), max_pattern_chars=2500)
    d = h2.client()
    for i in range(3):
        h2.send(d, "object-consumer-register", pattern=f"{i}" + "k" * 1000, version_known=0)
    assert len(errors(h2, d, budget.PATTERN_LIMIT)) == 1


def test_the_pattern_cache_is_bounded_in_bytes():
    """10,000 long wildcard registrations cost 26 kB each in a cache never freed: now bounded."""
    long_patterns = [f"{i}" + "*a" * 500 for i in range(3000)]
    target = "0" + "a" * 600
    patterns.matches(long_patterns[0], target)  # warm up whatever is imported lazily
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for pattern in long_patterns:
            patterns.matches(pattern, target)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 5_000_000, f"the pattern cache kept {grown} bytes"


def test_short_patterns_are_still_cached():
    patterns.matches("cache-me-*", "cache-me-1")
    assert patterns._parts("cache-me-*") is patterns._parts("cache-me-*")


# ---- item 4: objects a session may cause to exist ----------------------------------------------------------

def test_objects_caused_by_one_session_are_budgeted_and_returned_on_despawn():
    h = Harness()
    with_limits(h, max_session_objects=5)
    c, p = h.client("c"), h.client("p")
    h.send(p, "object-producer-register", pattern="*")
    for i in range(8):
        h.send(c, "object-consumer-register", pattern=f"o{i}", version_known=0)
    assert len(errors(h, c, budget.OBJECT_LIMIT)) == 3 and c.objects == 5
    assert len(h.store.objects) == 5
    h.send(c, "object-consumer-unregister", pattern="o0")
    assert c.objects == 4
    h.send(c, "object-consumer-register", pattern="o7", version_known=0)
    assert "o7" in h.store.objects and errors(h, c, budget.OBJECT_LIMIT) == []


def test_dependencies_spawned_by_uploads_count_against_the_uploader():
    h = Harness()
    with_limits(h, max_session_objects=50)
    c, p = h.client("c"), h.client("p")
    h.send(p, "object-producer-register", pattern="dep-*")
    for i in range(10):
        h.send(c, "object-consumer-register", pattern=f"o{i}", version_known=0)
    for i in range(10):
        h.send(c, "object-patch", id=f"o{i}", version_new={f"dep-{i}-{k}": 1 for k in range(10)}, value={})
    assert errors(h, c, budget.OBJECT_LIMIT)
    assert c.objects == 50 and len(h.store.objects) == 50
    h.close(c)
    assert h.store.objects == {} and not h.store.dependents


def test_an_upload_refused_by_the_object_budget_gets_the_error_and_no_destroy():
    h = Harness()
    with_limits(h, max_objects=1)
    c, w = h.client("c"), h.client("w")
    h.send(w, "object-consumer-register", pattern="a", version_known=0)
    h.send(w, "object-consumer-register", pattern="b", version_known=0)
    h.send(c, "object-patch", id="a", version_new=1, value={})
    h.send(c, "object-patch", id="b", version_new=1, value={})
    assert [m.get("code", m["action"]) for m in h.take(c)] == [budget.OBJECT_LIMIT]
    assert list(h.store.objects) == ["a"]


def test_objects_in_all_are_budgeted():
    h = Harness()
    with_limits(h, max_objects=3)
    p = h.client("p")
    h.send(p, "object-producer-register", pattern="*")
    for name in ("a", "b"):
        c = h.client(name)
        for i in range(2):
            h.send(c, "object-consumer-register", pattern=f"{name}{i}", version_known=0)
    assert len(h.store.objects) == 3 and errors(h, c, budget.OBJECT_LIMIT)


# ---- item 4: a time limit on every order ----------------------------------------------------------------

def test_an_order_held_past_the_limit_goes_to_another_producer():
    h = Harness()
    with_limits(h, order_timeout=60.0)
    c, silent, other = h.client("c"), h.client("silent"), h.client("other")
    h.send(silent, "client-options-set", options={"name": "silent", "prefetch": 1000})
    h.send(silent, "object-producer-register", pattern="o*")
    for i in range(3):
        h.send(c, "object-consumer-register", pattern=f"o{i}", version_known=0)
    assert len(silent.producing) == 3
    h.send(other, "client-options-set", options={"name": "other", "prefetch": 3})
    h.send(other, "object-producer-register", pattern="o*")
    assert h.take(other) == []  # every order is held by the silent producer
    h.store.expire_orders(59.0); h._route()
    assert errors(h, silent) == []
    h.store.expire_orders(61.0); h._route()
    taken_back = errors(h, silent, budget.ORDER_TIMEOUT)
    assert sorted(e["id"] for e in taken_back) == ["o0", "o1", "o2"]
    assert {e["id"] for e in errors(h, c)} == {"o0", "o1", "o2"}  # watchers: a failed production
    h.store.tick(62.0); h._route()  # past the first retry's backoff (0.5 s)
    assert sorted(m["id"] for m in h.take(other)) == ["o0", "o1", "o2"]
    assert h.take(silent) == []  # not asked again for what it sits on
    h.send(silent, "object-patch", id="o1", version_new=1, value={"late": True})  # a late answer still counts
    assert h.store.objects["o1"].known == 1 and "o1" not in silent.producing


def test_order_timeout_zero_means_never():
    h = Harness()
    with_limits(h, order_timeout=0.0)
    c, p = h.client("c"), h.client("p")
    h.send(p, "object-producer-register", pattern="o")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.store.expire_orders(1e9); h._route()
    assert "o" in p.producing and errors(h, p) == []


# ---- item 11: echoed fields are cut in one place ----------------------------------------------------------

def test_an_error_never_echoes_a_huge_field():
    h = Harness()
    c = h.client()
    h.store.handle_raw(c, orjson.dumps({"action": "object-patch", "id": "i" * 1_000_000, "version-new": 1,
                                        "value": {}}), h.store.now)
    [(frame, _)] = h.store.take_outbox()
    assert len(frame) < 1000 and orjson.loads(frame)["id"].startswith("iii")


def test_a_valid_id_is_echoed_whole():
    oid = "v" * 1024
    assert orjson.loads(protocol.error("x", code="c", request="object-patch", id=oid))["id"] == oid
    frame = orjson.loads(protocol.error("m" * 100_000, request="r" * 10_000, code="c"))
    assert len(frame["message"]) < 2100 and len(frame["request"]) < 300 and frame["code"] == "c"


def test_limits_are_one_frozen_place_with_generous_defaults():
    limits = Limits()
    assert limits.max_object >= 1 << 20 and limits.order_timeout > 60.0
    with pytest.raises(FrozenInstanceError):
        limits.max_object = 1  # type: ignore[misc]
    assert len(set(budget.CODES)) == len(budget.CODES)


def test_a_closed_session_is_not_kept_alive_by_the_objects_it_spawned():
    import gc

    h = Harness()
    c, p, w = h.client("c"), h.client("p"), h.client("w")
    h.send(p, "object-producer-register", pattern="o")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)  # c spawns o
    h.send(w, "object-consumer-register", pattern="o", version_known=0)  # w keeps it alive
    assert c.objects == 1
    h.close(c)
    h.inbox.pop(c)
    gc.collect()
    holders = [r for r in gc.get_referrers(c) if r is not h.store.objects["o"].__class__]
    assert not any(isinstance(r, dict) and r is not locals() and c in r.values() for r in holders)
    assert not isinstance(h.store.objects["o"].cause, type(c))
    h.close(w)
    assert "o" not in h.store.objects


def test_an_expired_order_is_dropped_when_its_object_goes():
    h = Harness()
    with_limits(h, order_timeout=10.0)
    c, p = h.client("c"), h.client("p")
    h.send(p, "object-producer-register", pattern="o")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.store.expire_orders(11.0); h._route()
    assert "o" in p.producing  # the silent producer's slot stays taken
    h.close(c)  # nobody needs o any more: the order it sits on is gone with it
    assert "o" not in h.store.objects and "o" not in p.producing


@pytest.mark.parametrize("late", [
    {"error": "ValueError: late"},  # a failed production
    {"value": 5, "version_new": 1},  # an answer the parser refuses
])
def test_a_late_answer_to_an_expired_order_frees_the_slot(late):
    """The slot an expired order keeps taken is freed by the producer's late answer, whatever it is
    (a failure, or one refused): a producer is never left with a slot nobody can free."""
    h = Harness()
    with_limits(h, order_timeout=10.0)
    c, p = h.client("c"), h.client("p")
    h.send(p, "object-producer-register", pattern="o")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.store.expire_orders(11.0); h._route()
    assert "o" in p.producing
    h.send(p, "object-patch", id="o", **late)
    assert "o" not in p.producing
