"""The store's answers to hostile or unlucky sequences (issue 10, items 2, 3, 7, 13, 14, 15), in-process.

Each test names the defence it proves; each fails without it.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import protocol
from common.patterns import MAX_ID_LENGTH
from common.versioning import (
    EQUAL,
    MIXED,
    NEWER,
    OLDER,
    VersionError,
    below_floor,
    check_version,
    compare,
)
from tests.unit.router.harness import Harness


def produce(oid, inferred=None):
    return {"action": "object-produce", "id": oid, "version-inferred": inferred}


def errors(frames):
    return [f for f in frames if f["action"] == "error"]


def ids_of(frames, action="object-update"):
    return [f["id"] for f in frames if f["action"] == action]


# ---- item 2: a dependency key is an id; a refused answer never holds a slot ---------------------

@pytest.mark.parametrize("key", ["counter-*", "dep:*", "*", "", "x" * (MAX_ID_LENGTH + 1)])
def test_a_dependency_key_is_checked_like_an_id(key):
    with pytest.raises(VersionError) as refused:
        check_version({"ok": 1, key: 1})
    assert refused.value.code == "invalid-dependency"
    with pytest.raises(VersionError):
        check_version({"ok": {key: 1}})  # nested hashes name ids too
    raw = orjson.dumps({"action": "object-patch", "id": "o", "version-new": {key: 1}, "value": {}})
    with pytest.raises(protocol.ProtocolError) as parsed:
        protocol.parse(raw)
    assert parsed.value.context["code"] == "invalid-dependency" and parsed.value.context["id"] == "o"


def test_a_hash_naming_patterns_spawns_and_orders_nothing():
    h = Harness()
    worker, writer, c = h.client("worker"), h.client("writer"), h.client()
    h.send(worker, "object-producer-register", pattern="counter-*")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    h.send(writer, "object-patch", id="o", version_new={"counter-*": 1, "dep:*": 1}, value={})
    [err] = h.take(writer)
    assert err["action"] == "error" and err["code"] == "invalid-dependency"
    assert set(h.store.objects) == set() and h.take(worker) == []


@pytest.mark.parametrize("answer", [
    {"version-new": True, "value": {}},  # invalid version
    {"version-new": 2, "value": [1]},  # invalid value
    {"version-new": {"x*": 1}, "value": {}},  # invalid dependency key
    # (a patch that cannot apply is a cancel, requeued at once: tests/unit/router/test_store_requeue.py)
    {"version-new": 2, "error": 5},  # 'error' is not a string
])
def test_an_answer_the_router_refuses_frees_the_order_as_a_failed_production(answer):
    h = Harness(retry_base=1.0)
    p, c = h.client("p"), h.client()
    h.send(p, "object-producer-register", pattern="a")
    h.send(p, "object-producer-register", pattern="b")
    h.send(c, "object-consumer-register", pattern="a", version_known=0)
    h.send(c, "object-consumer-register", pattern="b", version_known=0)
    assert h.take(p) == [produce("a")]  # one order at a time: "b" waits behind it
    h.send(p, "object-patch", id="a", **answer)
    frames = h.take(p)
    assert errors(frames) and frames[-1] == produce("b")  # refused, and the slot is free at once
    [told] = errors(h.take(c))
    assert told["request"] == "object-produce" and told["id"] == "a"
    assert h.store.objects["a"].failures == 1 and h.store.objects["a"].state == "delayed"
    h.send(p, "object-patch", id="b", version_new=1, value={})
    h.tick(1.0)  # "a" is retried after the backoff
    assert h.take(p) == [produce("a")]


def test_an_answer_refused_by_the_reserved_check_frees_the_order():
    h = Harness()
    internal, p, c = h.client("internal"), h.client("p"), h.client()
    h.store.reserve("Sys::", internal)
    h.send(p, "object-producer-register", pattern="o")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    assert h.take(p) == [produce("o")]
    h.store.reserve("o", internal)  # the id became reserved while the order was out
    h.send(p, "object-patch", id="o", version_new=1, value={})
    assert "produced by the router" in errors(h.take(p))[0]["message"]
    assert p.producing == {}


# ---- item 3: a result older than its order backs off, then the object is in error -------------

def test_a_result_older_than_its_order_backs_off_then_marks_the_object_in_error():
    h = Harness(retry_base=1.0, retry_max=4.0, max_behind=3)
    p, c, liar = h.client("p"), h.client(), h.client("liar")
    h.send(p, "object-producer-register", pattern="o")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    assert h.take(p) == [produce("o")]
    h.send(liar, "object-patch", id="o", version_new=10 ** 18, value=True)
    h.send(p, "object-patch", id="o", version_new=1, value={"v": 1})  # answers the first order (null): met
    assert h.take(p) == [produce("o", 10 ** 18)]
    now = 0.0
    for attempt in range(3):
        h.send(p, "object-patch", id="o", version_new=1, value={"v": 1})  # never reaches 1e18
        assert h.take(p) == []  # not straight back: the failure backoff
        if attempt < 2:
            now += 4.0
            h.tick(now)
            assert h.take(p) == [produce("o", 10 ** 18)]
    obj = h.store.objects["o"]
    assert obj.state == "error" and "older than ordered" in obj.last_error
    [err] = errors(h.take(c))
    assert err["code"] == "production-behind" and err["id"] == "o"
    h.tick(now + 1000.0)
    assert h.take(p) == []  # no spinning, ever
    h.send(liar, "object-patch", id="o", version_new=2 * 10 ** 18, value=True)  # its version moves: tried again
    assert h.take(p) == [produce("o", 2 * 10 ** 18)]
    h.send(p, "object-patch", id="o", version_new=2 * 10 ** 18, value={"v": 2})
    assert obj.state == "current" and obj.behind == 0 and obj.broken is None


def test_a_producer_meeting_its_orders_is_never_backed_off():
    h = Harness()
    p, c, n = h.client("p"), h.client(), h.client("notifier")
    h.send(p, "object-producer-register", pattern="o")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    assert h.take(p) == [produce("o")]
    h.send(p, "object-patch", id="o", version_new={"d": 0}, value={"v": 0})
    for v in range(1, 20):
        h.send(n, "object-patch", id="d", version_new=v, value={})
        assert h.take(p) == [produce("o", {"d": v})]
        h.send(p, "object-patch", id="o", version_new={"d": v}, value={"v": v})
    obj = h.store.objects["o"]
    assert obj.state == "current" and obj.failures == obj.behind == 0


# ---- item 7: access decided per object id ------------------------------------------------------

class NoAdmin:
    """The documented example hook (router/auth.py): may consume unless it starts with "admin-"."""

    def __init__(self, produces: str = "", calls: list | None = None) -> None:
        self.produces = produces
        self.calls = calls if calls is not None else []

    def may_consume(self, name: str) -> bool:
        self.calls.append(name)
        return not name.startswith("admin-")

    def may_produce(self, name: str) -> bool:
        return name == "*" or (bool(self.produces) and name.startswith(self.produces))


def guarded_harness(access_of) -> Harness:
    h = Harness(authenticate=lambda options: access_of.get(options.get("token")))
    return h


@pytest.mark.parametrize("consumer_first", [True, False])
def test_a_wildcard_consumer_receives_only_the_ids_the_hook_allows(consumer_first):
    calls: list = []
    h = guarded_harness({"r": NoAdmin(calls=calls)})
    worker = h.client("worker")
    reader = h.client("reader", guarded=True, token="r")
    steps = [lambda: h.send(reader, "object-consumer-register", pattern="*", version_known=0),
             lambda: [h.send(worker, "object-producer-register", pattern=oid) for oid in ("admin-keys", "public-1")]]
    for step in (steps if consumer_first else steps[::-1]):
        step()
    assert sorted(oid for oid in h.store.objects) == ["public-1"]  # "*" keeps no admin id alive
    for f in h.take(worker):
        h.send(worker, "object-patch", id=f["id"], version_new=1, value={"secret": f["id"]})
    assert ids_of(h.take(reader)) == ["public-1"]
    h.send(worker, "object-patch", id="admin-keys", version_new=2, value={"secret": "k"})
    h.send(worker, "object-patch", id="public-1", version_new=2, value={"n": 2})
    assert ids_of(h.take(reader)) == ["public-1"]
    assert calls.count("admin-keys") == 1  # asked once per id, then cached


def test_the_decision_cache_is_bounded():
    from router import store as store_module
    calls: list = []
    h = guarded_harness({"r": NoAdmin(calls=calls)})
    reader = h.client("reader", guarded=True, token="r")
    for n in range(store_module.MAX_DECISIONS + 10):
        h.store._may(reader, "consume", f"o-{n}")
    assert len(reader.decisions) <= store_module.MAX_DECISIONS


def test_a_wildcard_producer_is_offered_only_the_ids_the_hook_allows():
    h = guarded_harness({"w": NoAdmin(produces="mine-")})
    writer = h.client("writer", guarded=True, token="w")
    c = h.client()
    h.send(writer, "object-producer-register", pattern="*")
    h.send(c, "object-consumer-register", pattern="admin-x", version_known=0)
    h.send(c, "object-consumer-register", pattern="mine-1", version_known=0)
    assert h.take(writer) == [produce("mine-1")]
    assert "admin-x" not in h.store.objects  # nobody may produce it: not even spawned


def test_dependency_keys_of_an_upload_pass_the_hook():
    h = guarded_harness({"w": NoAdmin(produces="public-")})
    worker, writer, c = h.client("worker"), h.client("writer", guarded=True, token="w"), h.client()
    h.send(worker, "object-producer-register", pattern="*")
    h.send(c, "object-consumer-register", pattern="public-mine", version_known=0)
    h.send(writer, "object-producer-register", pattern="public-mine")
    h.take(worker)
    h.send(writer, "object-patch", id="public-mine", version_new={"admin-payroll": 1}, value={})
    [err] = errors(h.take(writer))
    assert err["code"] == "forbidden-dependency" and "admin-payroll" in err["message"]
    h.send(writer, "object-producer-register", pattern="public-other", version_known={"admin-payroll": 1})
    assert errors(h.take(writer))[0]["code"] == "forbidden-dependency"
    assert "admin-payroll" not in h.store.objects and h.take(worker) == []
    h.send(writer, "object-patch", id="public-mine", version_new={"public-dep": 1}, value={"ok": 1})
    assert h.take(c)[-1]["value"] == {"ok": 1}


def test_under_a_hook_an_upload_needs_a_producer_registration():
    """Item 15: without a hook anyone may upload (seapig); with one, only a registered producer."""
    h = guarded_harness({"w": NoAdmin(produces="public-")})
    writer, c = h.client("writer", guarded=True, token="w"), h.client()
    h.send(c, "object-consumer-register", pattern="public-1", version_known=0)
    h.send(writer, "object-patch", id="public-1", version_new=[0], value={"forged": True})
    [err] = errors(h.take(writer))
    assert err["code"] == "not-a-producer"
    assert h.take(c) == []
    h.send(writer, "object-producer-register", pattern="public-*")
    h.send(writer, "object-patch", id="public-1", version_new=[0], value={"mine": True})
    assert h.take(c)[-1]["value"] == {"mine": True}


# ---- item 13: a failed re-authentication drops what it no longer allows -----------------------

def test_a_revoked_token_stops_every_registration_at_once():
    tokens = {"r": NoAdmin(produces="public-")}
    h = guarded_harness(tokens)
    worker = h.client("worker")
    reader = h.client("reader", guarded=True, token="r")
    h.send(worker, "object-producer-register", pattern="public-1")
    h.send(reader, "object-consumer-register", pattern="*", version_known=0)
    h.send(reader, "object-consumer-register", pattern="public-1", version_known=0)
    h.send(reader, "object-producer-register", pattern="public-2")
    h.send(worker, "object-patch", id="public-1", version_new=1, value={"n": 1})
    assert ids_of(h.take(reader)) == ["public-1"]
    del tokens["r"]  # revoked
    h.send(reader, "client-options-set", options={"name": "reader", "token": "r"})
    frames = h.take(reader)
    assert frames[0]["message"] == "authentication failed"
    assert {f.get("pattern") for f in errors(frames) if f.get("code") == "access-revoked"} == {"*", "public-1", "public-2"}
    assert reader.consumes == {} and reader.produces == {}
    h.send(worker, "object-patch", id="public-1", version_new=2, value={"n": 2})
    assert h.take(reader) == []


def test_a_narrower_re_authentication_drops_the_ids_it_no_longer_allows():
    class Only1(NoAdmin):
        def may_consume(self, name):
            return name in ("*", "public-1")

    tokens = {"wide": NoAdmin(), "narrow": Only1()}
    h = guarded_harness(tokens)
    worker = h.client("worker")
    reader = h.client("reader", guarded=True, token="wide")
    for oid in ("public-1", "public-2"):
        h.send(worker, "object-producer-register", pattern=oid)
    h.send(reader, "object-consumer-register", pattern="*", version_known=0)
    h.send(reader, "client-options-set", options={"token": "narrow"})
    assert ids_of(h.take(reader), "object-destroy") == ["public-2"]
    assert list(reader.consumes) == ["*"]
    for oid in ("public-1", "public-2"):
        h.send(worker, "object-patch", id=oid, version_new=1, value={})
    assert ids_of(h.take(reader)) == ["public-1"]


# ---- item 14: versions never go backwards, for every sequence ----------------------------------

COMPARE_TABLE = [
    # latest, candidate, result
    (None, None, EQUAL), (None, 0, NEWER), (0, None, OLDER), (None, 1, NEWER), (0, 0, EQUAL),
    (1, 2, NEWER), (2, 1, OLDER), (1, 1.0, EQUAL), (1.5, 1, OLDER),
    (9, [0], NEWER), ([0], 9, OLDER), ([1, 2], [1, 3], NEWER), ([1, 2], [1, 2, 0], NEWER),
    ([1, 2, 0], [1, 2], OLDER), ([1, 3], [1, 2, 0], OLDER), ([2], [1, 9, 9], OLDER), ([1], [1.0], EQUAL),
    ([[1, 2]], [[1, 3]], NEWER), ([5], {"a": 0}, NEWER), ({"a": 0}, [5], OLDER), ({"a": 0}, 1e18, OLDER),
    # hashes, same keys: newer only if some key is newer and none older
    ({"a": 1}, {"a": 2}, NEWER), ({"a": 2}, {"a": 1}, OLDER), ({"a": 1, "b": 1}, {"b": 1, "a": 1}, EQUAL),
    ({"a": 1, "b": 1}, {"a": 2, "b": 1}, NEWER), ({"a": 2, "b": 1}, {"a": 1, "b": 2}, MIXED),
    ({"a": {"x": 1}}, {"a": {"x": 2}}, NEWER), ({"a": {"x": 1, "y": 2}}, {"a": {"x": 2, "y": 1}}, MIXED),
    ({"a": [1, 2]}, {"a": [1, 3]}, NEWER), ({"a": 1}, {"a": [0]}, NEWER),
    # hashes, key sets differ: the common keys decide; all equal (or none): the candidate (a new declaration)
    ({"a": 1}, {"a": 2, "b": 0}, NEWER), ({"a": 2, "b": 0}, {"a": 1}, OLDER),
    ({"a": 1, "b": 1}, {"a": 1}, NEWER), ({"a": 1}, {"a": 1, "b": 1}, NEWER),
    ({"a": 1}, {"b": 0}, NEWER), ({"b": 0}, {"a": 1}, NEWER),  # not an order by itself: see below_floor
    ({"a": 2, "b": 1}, {"a": 1, "c": 5}, OLDER), ({"a": 1, "b": 2, "c": 0}, {"a": 2, "b": 1}, MIXED),
]


@pytest.mark.parametrize("latest,candidate,expected", COMPARE_TABLE)
def test_compare(latest, candidate, expected):
    assert compare(latest, candidate) == expected


FLOOR_TABLE = [
    ({"a": 1}, {"a": 0}, True), ({"a": 1}, {"a": 1}, False), ({"a": 1}, {"b": 0}, False),
    ({"a": 1, "b": 5}, {"b": 4, "c": 9}, True), ({"a": {"x": 1, "y": 2}}, {"a": {"x": 2, "y": 1}}, True),
    ({"a": [1, 2]}, {"a": [1, 2, 0]}, False), ({}, {"a": 0}, False),
]


@pytest.mark.parametrize("floor,candidate,below", FLOOR_TABLE)
def test_below_floor(floor, candidate, below):
    assert below_floor(floor, candidate) is below


numbers = st.integers(0, 3)
scalars = st.one_of(numbers, st.lists(numbers, min_size=1, max_size=3))
KEYS = ("a", "b", "c")
same_key_hashes = st.fixed_dictionaries({k: numbers for k in KEYS})
any_hashes = st.dictionaries(st.sampled_from(KEYS), numbers, min_size=1, max_size=3)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.tuples(scalars, scalars, scalars), st.tuples(same_key_hashes, same_key_hashes, same_key_hashes)))
def test_compare_is_a_strict_order_on_scalars_and_on_hashes_of_one_key_set(triple):
    a, b, c = triple
    flipped = {NEWER: OLDER, OLDER: NEWER, EQUAL: EQUAL, MIXED: MIXED}
    assert compare(b, a) == flipped[compare(a, b)]  # antisymmetric
    if compare(a, b) == NEWER and compare(b, c) == NEWER:
        assert compare(a, c) == NEWER  # transitive
    if compare(a, b) == EQUAL:
        assert compare(a, c) == compare(b, c)


def test_the_issue_sequence_does_not_go_back():
    """A master uploading {a:1}, {b:0}, {a:0}: the watcher never gets a:0 after a:1."""
    h = Harness()
    master, watcher = h.client("master"), h.client("watcher")
    h.send(watcher, "object-consumer-register", pattern="o", version_known=0)
    for n, version in enumerate([{"a": 1}, {"b": 0}, {"a": 0}]):
        h.send(master, "object-patch", id="o", version_new=version, value={"n": n})
    assert [f["version-new"] for f in h.take(watcher)] == [{"a": 1}, {"b": 0}]
    assert h.store.objects["o"].known == {"b": 0}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(any_hashes, scalars), min_size=1, max_size=12))
def test_what_a_watcher_receives_never_goes_backwards(uploads):
    """Whatever the sequence of versions and key sets uploaded, each version a watcher receives is newer
    than (or, for the same inputs, equal to) every one it received before: never older, never mixed."""
    h = Harness()
    master, watcher = h.client("master"), h.client("watcher")
    h.send(watcher, "object-consumer-register", pattern="o", version_known=0)
    for n, version in enumerate(uploads):
        h.send(master, "object-patch", id="o", version_new=version, value={"n": n})
    received = [f["version-new"] for f in h.take(watcher) if f["action"] == "object-update"]
    for i, earlier in enumerate(received):
        for later in received[i + 1:]:
            assert compare(earlier, later) in (NEWER, EQUAL), (earlier, later, received)


def test_the_production_error_path_frees_the_order_for_any_caller():
    """The path other checks (budgets) call when they refuse an answer: the order ends, the slot is free,
    the refusal is logged through the shell's logger."""
    logged = []
    h = Harness(log=lambda fmt, *args, **_: logged.append(fmt % args))
    p, c = h.client("p"), h.client()
    for oid in ("a", "b"):
        h.send(p, "object-producer-register", pattern=oid)
        h.send(c, "object-consumer-register", pattern=oid, version_known=0)
    assert h.take(p) == [produce("a")]
    h.store._answer_refused(p, "a", "answer refused: too big")
    h.route()
    assert h.take(p) == [produce("b")] and "a" not in p.producing
    assert "production failed: answer refused: too big" in errors(h.take(c))[0]["message"]
    assert logged and "a" in logged[0]
    h.store._report_production_error(p, "b", "too big")  # the same, called directly
    h.route()
    assert p.producing == {}
