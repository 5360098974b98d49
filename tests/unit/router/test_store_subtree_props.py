"""Subtree subscriptions in the store (issue 17 item 1), second suite (helper "subtree", written against its own
implementation and run against the one merged): a consumer registered with a ``path`` gets that
subtree and the object's patches rebased onto it, one frame per (version, path) shared by its consumers;
an update that does not touch its subtree is not sent, but its held version advances."""

from __future__ import annotations

from typing import Any

import orjson

from router.store import Session
from tests.unit.router import harness


class Harness(harness.Harness):
    """A store with a master of ``doc`` that uploads whole values."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.master = self.open("master")
        self.send(self.master, "object-producer-register", pattern="doc")
        self.keeper = self.open("keeper")  # keeps the object alive (uploads for an object nobody wants are dropped)
        self.send(self.keeper, "object-consumer-register", pattern="doc")
        self.version = 0

    def upload(self, value: dict[str, Any]) -> None:
        self.take(self.master)
        self.version += 1
        self.send(self.master, "object-patch", id="doc", version_new=self.version, value=value)

    def watch(self, name: str, path: str | None = None, known: object = 0, pattern: str = "doc") -> Session:
        s = self.open(name)
        self.register(s, path, known, pattern)
        return s

    def register(self, s: Session, path: str | None, known: object = 0, pattern: str = "doc") -> None:
        fields: dict[str, Any] = {"pattern": pattern, "version_known": known}
        if path is not None:
            fields["path"] = path
        self.send(s, "object-consumer-register", **fields)


def rows(n: int, changed: dict[int, int] | None = None) -> dict[str, Any]:
    changed = changed or {}
    return {"rows": [{"id": i, "v": changed.get(i, 0)} for i in range(n)]}


def test_path_consumers_get_their_subtree_and_only_their_changes() -> None:
    h = Harness()
    h.upload(rows(50))
    watchers = [h.watch(f"w{i}", f"/rows/{i}") for i in range(10)]
    whole = h.watch("whole")
    for i, w in enumerate(watchers):
        [frame] = h.take(w)
        assert frame["value"] == {"id": i, "v": 0} and frame["path"] == f"/rows/{i}"
        assert frame["version-new"] == 1
    h.take(whole)
    h.upload(rows(50, {3: 7}))
    for i, w in enumerate(watchers):
        frames = h.take(w)
        if i == 3:
            assert frames == [{"action": "object-update", "id": "doc", "path": "/rows/3", "version-old": 1,
                               "version-new": 2, "patch": [{"op": "replace", "path": "/v", "value": 7}]}]
        else:
            assert frames == []
        assert w.held["doc"] == 2  # advanced all the same: a resync asks from the right place
    assert h.take(whole)[0]["patch"] == [{"op": "replace", "path": "/rows/3/v", "value": 7}]


def test_one_frame_per_version_and_path_shared_by_its_consumers() -> None:
    h = Harness()
    h.upload(rows(5))
    same = [h.watch(f"s{i}", "/rows/2") for i in range(3)]
    for s in same:
        h.take(s)
    h.store.handle_raw(h.master, orjson.dumps({"action": "object-patch", "id": "doc", "version-new": 2,
                                               "value": rows(5, {2: 1})}), h.store.now)
    deliveries = [d for d in h.store.take_outbox() if any(s in d.sessions for s in same)]
    assert len(deliveries) == 1 and set(deliveries[0].sessions) == set(same)


def test_absent_subtree_is_null_then_appears() -> None:
    h = Harness()
    h.upload(rows(2))
    w = h.watch("w", "/rows/5")
    assert h.take(w)[0]["value"] is None
    h.upload(rows(3))  # still absent
    assert h.take(w) == []
    h.upload(rows(6))  # the append creates /rows/5
    [frame] = h.take(w)
    assert frame["patch"] == [{"op": "replace", "path": "", "value": {"id": 5, "v": 0}}]


def test_version_known_with_path_gets_a_patch_or_nothing() -> None:
    h = Harness()
    h.upload(rows(5))
    h.upload(rows(5, {1: 1}))
    back = h.watch("back", "/rows/4", known=1)  # held v1 of /rows/4, which did not change since
    assert h.take(back) == []
    assert back.held["doc"] == 2
    back2 = h.watch("back2", "/rows/1", known=1)
    assert h.take(back2)[0]["patch"] == [{"op": "replace", "path": "/v", "value": 1}]
    current = h.watch("current", "/rows/1", known=2)
    assert h.take(current) == []


def test_a_new_register_replaces_the_path_and_unregister_forgets_it() -> None:
    h = Harness()
    h.upload(rows(5))
    w = h.watch("w", "/rows/1")
    h.take(w)
    h.register(w, "/rows/2")  # one registration per (session, id): the new path replaces the old
    assert h.take(w)[0]["value"] == {"id": 2, "v": 0}
    h.upload(rows(5, {1: 9}))
    assert h.take(w) == []
    h.register(w, None)  # without a path: the whole object
    assert h.take(w)[0]["value"] == rows(5, {1: 9})
    assert "doc" not in w.paths
    h.register(w, "/rows/0", known=2)
    h.send(w, "object-consumer-unregister", pattern="doc")
    assert "doc" not in w.paths and "doc" not in w.held


def test_unregistering_the_path_under_a_wildcard_sends_the_whole_value() -> None:
    h = Harness()
    h.upload(rows(3))
    w = h.watch("w", pattern="d*")
    h.register(w, "/rows/1", known=1)
    assert h.take(w)[0]["value"] == rows(3)  # (the wildcard's value, then the path's: it held v1 of the path)
    h.upload(rows(3, {0: 1}))
    assert h.take(w) == []  # the path wins for that id: /rows/1 did not change
    h.send(w, "object-consumer-unregister", pattern="doc")
    assert h.take(w) == [{"action": "object-update", "id": "doc", "version-old": 0, "version-new": 2,
                          "value": rows(3, {0: 1})}]


def test_bad_paths_are_clear_errors() -> None:
    h = Harness()
    s = h.open("s")
    for pattern, path, code in (("doc", "rows/1", "invalid-path"), ("doc", 17, "invalid-path"),
                                ("doc", "/a~2", "invalid-path"), ("do*", "/rows", "path-with-pattern"),
                                ("doc", "/" + "x" * 2000, "invalid-path")):
        h.send(s, "object-consumer-register", pattern=pattern, path=path)
        [frame] = h.take(s)
        assert frame["action"] == "error" and frame["code"] == code
    assert not s.consumes and not s.paths


def test_a_held_version_no_longer_retained_sends_the_subtree_value() -> None:
    """A front out of credit (its gate closed) while several versions pass: the versions its sessions hold are
    dropped from the history, so no patch can be made: each gets its subtree's value (correct, if larger than
    needed for a session whose subtree did not change: knowing that would need the subtree each holds)."""
    from router.store import Gate

    h = Harness(retain=2)
    h.upload(rows(5))
    gate = Gate()
    same, moved = h.open("same", gate=gate), h.open("moved", gate=gate)
    h.register(same, "/rows/1")
    h.register(moved, "/rows/2")
    h.take(same), h.take(moved)
    h.store.hold(gate)
    for n in range(1, 5):
        h.upload(rows(5, {0: n, 2: 1}))
    h.store.release(gate)
    h.route()
    [frame] = h.take(moved)
    assert frame["value"] == {"id": 2, "v": 1} and frame["version-new"] == 5
    [frame] = h.take(same)
    assert frame["value"] == {"id": 1, "v": 0} and frame["version-new"] == 5
    assert same.held["doc"] == 5


# ---- property: whatever the updates, a path consumer ends holding the subtree of the latest version --------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from common.diff import apply_patch  # noqa: E402
from common.subtree import resolve, tokens_of as parse_path  # noqa: E402

LEAVES = st.one_of(st.integers(0, 3), st.sampled_from(["a", None]))
ROW = st.one_of(LEAVES, st.dictionaries(st.sampled_from(["v", "w"]), LEAVES, max_size=2),
                st.lists(LEAVES, max_size=3))
DOC = st.fixed_dictionaries({"rows": st.lists(ROW, max_size=6)},
                            optional={"meta": st.dictionaries(st.sampled_from(["x", "1"]), ROW, max_size=2),
                                      "rows2": st.dictionaries(st.sampled_from(["0", "1", "2"]), ROW, max_size=3)})
PATH = st.sampled_from(["/rows/0", "/rows/2", "/rows/5", "/rows/1/v", "/meta", "/meta/1", "/rows2/1", "/rows/-"])
STEP = st.one_of(st.tuples(st.just("upload"), DOC), st.tuples(st.just("insert"), st.tuples(st.integers(0, 6), ROW)),
                 st.tuples(st.just("delete"), st.integers(0, 6)), st.tuples(st.just("edit"), st.tuples(st.integers(0, 6), ROW)), st.tuples(st.just("hold"), st.integers(0, 1)),
                 st.tuples(st.just("release"), st.integers(0, 1)), st.tuples(st.just("rejoin"), st.integers(0, 3)))


class Holder:
    """A client's view of one path: applies the frames as a client does, checking each patch has a base."""

    def __init__(self) -> None:
        self.has = False
        self.value: Any = None
        self.version: Any = 0  # the version of the last frame received (a skipped update does not move it)

    def apply(self, frame: dict[str, Any]) -> None:
        assert frame["action"] == "object-update", frame
        if "value" in frame:
            self.value, self.has = frame["value"], True
        else:
            assert self.has, frame
            self.value = apply_patch(orjson.loads(orjson.dumps(self.value)), frame["patch"])
        self.version = frame["version-new"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(paths=st.lists(PATH, min_size=1, max_size=4), first=DOC, steps=st.lists(STEP, max_size=12),
       retain=st.integers(1, 3))
def test_path_consumers_always_converge_to_the_latest_subtree(paths: list[str], first: dict[str, Any],
                                                              steps: list[tuple[str, Any]], retain: int) -> None:
    from router.store import Gate

    h = Harness(retain=retain)
    h.upload(first)
    latest = first
    gates = [Gate(), Gate()]
    sessions = [h.open(f"c{n}", gate=gates[n % 2]) for n in range(len(paths))]
    holders = [Holder() for _ in paths]
    for s, path in zip(sessions, paths):
        h.register(s, path)

    def drain() -> None:
        for s, holder in zip(sessions, holders):
            for frame in h.take(s):
                holder.apply(frame)

    drain()
    for kind, arg in steps:
        if kind in ("insert", "delete", "edit"):  # an edit of the rows in place: make_patch's index operations
            latest = orjson.loads(orjson.dumps(latest))
            rows_now = latest["rows"]
            at = arg[0] if kind != "delete" else arg
            if kind == "insert":
                rows_now.insert(min(at, len(rows_now)), arg[1])
            elif rows_now and kind == "delete":
                del rows_now[at % len(rows_now)]
            elif rows_now:
                rows_now[at % len(rows_now)] = arg[1]
            h.upload(latest)
        elif kind == "upload":
            h.upload(arg)
            latest = arg
        elif kind == "hold":
            h.store.hold(gates[arg])
        elif kind == "release":
            h.store.release(gates[arg])
            h.route()
        elif kind == "rejoin" and arg < len(sessions) and not sessions[arg].gate.closed:
            # a client reconnecting with the version it holds of its subtree (here: the same session)
            s = sessions[arg]
            h.register(s, paths[arg], known=holders[arg].version)
        drain()
    for gate in gates:
        h.store.release(gate)
    h.route()
    drain()
    for holder, path in zip(holders, paths):
        assert holder.has
        assert holder.value == resolve(latest, parse_path(path)), (path, holder.value, latest)


def test_introspection_shows_each_sessions_paths() -> None:
    from common import protocol
    from router.introspection import Introspection

    h = Harness()
    h.upload(rows(3))
    w = h.watch("w", "/rows/1")
    intro = Introspection(h.store, ("", "introspection"), 1, lambda s: "peer", now=h.store.now)
    connections = intro.build(protocol.CONNECTIONS, h.store.now)
    assert connections[str(w.index)]["paths"] == {"doc": "/rows/1"}
    assert "paths" not in connections[str(h.keeper.index)]
