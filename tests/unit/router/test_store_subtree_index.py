"""Subtree pushes by index (stop 23): a push groups and rebases only the path sessions whose path the object's
patch can touch; the others get nothing and their held version advances, as before. The reference for the
property is the unindexed computation (every path session grouped and rebased): a store class that groups
them all, driven by the same steps, must deliver the very same frames to every session."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.diff import apply_patch, make_patch
from common.subtree import resolve, tokens_of
from router.store import Gate, ObjectStore, Session, SubtreeKey, SyncObject
from tests.unit.router import harness
from tests.unit.router.test_store_subtree_props import DOC, ROW


class Unindexed(ObjectStore):
    """The computation before the index: every path session is grouped by (held version, path) and its
    frame computed (``_subtree_frame``: the rebased patch, the value, or b"")."""

    def _group_subtrees(self, obj: SyncObject, data: dict[str, Any], subtrees: Any, groups: Any) -> None:
        for key, (held, members, paths) in subtrees.items():
            for session, path in zip(members, paths):
                groups.setdefault(SubtreeKey(key, path), (held, []))[1].append(session)


class Side(harness.Harness):
    """A store of one class with a master of ``doc`` and a keeper (an upload nobody wants is dropped)."""

    def __init__(self, store_class: type[ObjectStore] = ObjectStore, coalesce: bool = False, **options: Any) -> None:
        self.store = store_class(**options)
        self.inbox = {}
        self.coalesce = coalesce  # batch mode: the shell's while it is behind (pushes when the outbox is taken)
        self.master = self.open("master")
        self.send(self.master, "object-producer-register", pattern="doc")
        self.keeper = self.open("keeper")
        self.send(self.keeper, "object-consumer-register", pattern="doc")
        self.version = 0
        self.latest: dict[str, Any] = {}
        self.values: dict[int, dict[str, Any]] = {}  # every version uploaded

    def raw(self, session: Session, raw: bytes) -> None:
        self.store.handle_raw(session, raw, self.store.now, coalesce=self.coalesce)
        self.route()

    def upload(self, value: dict[str, Any], as_patch: bool = False, back: int = 1) -> None:
        """The new value, whole or (``as_patch``) as a patch from the version ``back`` versions before the
        new one (1: the latest), as masters send it. A patch whose base is not retained is cancelled."""
        self.take(self.master)
        self.version += 1
        base = self.values.get(self.version - back)
        if as_patch and base is not None:
            self.send(self.master, "object-patch", id="doc", version_old=self.version - back,
                      version_new=self.version, patch=make_patch(base, value))
        else:
            self.send(self.master, "object-patch", id="doc", version_new=self.version, value=value)
        if self.store.objects["doc"].latest[0] != self.version:  # (cancelled: not retained)
            self.version -= 1
            return
        self.latest = orjson.loads(orjson.dumps(value))
        self.values[self.version] = self.latest

    def watch(self, name: str, path: str, known: object = 0, gate: Gate | None = None) -> Session:
        s = self.open(name, gate=gate) if gate is not None else self.open(name)
        self.send(s, "object-consumer-register", pattern="doc", version_known=known, path=path)
        return s


def rows(n: int, changed: dict[int, int] | None = None) -> dict[str, Any]:
    changed = changed or {}
    return {"rows": [{"id": i, "v": changed.get(i, 0)} for i in range(n)]}


def watchers(side: Side, n: int) -> list[Session]:
    out = [side.watch(f"w{i}", f"/rows/{i}") for i in range(n)]
    for w in out:
        side.take(w)
    return out


def test_one_row_changed_reaches_its_watcher_only_and_every_held_version_advances():
    side = Side()
    side.upload(rows(100))
    ws = watchers(side, 100)
    side.upload(rows(100, {42: 1}), as_patch=True)
    for i, w in enumerate(ws):
        assert side.take(w) == ([{"action": "object-update", "id": "doc", "path": "/rows/42", "version-old": 1,
                                  "version-new": 2, "patch": [{"op": "replace", "path": "/v", "value": 1}]}]
                                if i == 42 else [])
        assert w.held["doc"] == 2


def test_a_row_inserted_shifts_the_watchers_at_and_after_it_only():
    side = Side()
    side.upload(rows(20))
    ws = watchers(side, 20)
    value = rows(20)
    value["rows"].insert(5, {"id": "new", "v": 0})
    side.upload(value, as_patch=True)
    for i, w in enumerate(ws):
        frames = side.take(w)
        if i < 5:
            assert frames == []
        else:
            [frame] = frames
            assert frame["patch"] == [{"op": "replace", "path": "", "value": value["rows"][i]}]


def test_a_row_removed_shifts_the_watchers_after_it_and_an_append_moves_nobody():
    side = Side()
    side.upload(rows(20))
    ws = watchers(side, 21)  # /rows/20 is absent (null) until the append
    value = rows(20)
    del value["rows"][17]
    side.upload(value, as_patch=True)
    for i, w in enumerate(ws):
        frames = side.take(w)
        if i < 17 or i == 20:
            assert frames == [], i  # (/rows/20: absent before, absent after)
        else:
            assert [f["patch"] for f in frames] == [[{"op": "replace", "path": "",
                                                      "value": resolve(value, ["rows", str(i)])}]]
    value["rows"] += [{"id": "a", "v": 0}, {"id": "b", "v": 0}]
    side.upload(value, as_patch=True)
    for i, w in enumerate(ws):
        frames = side.take(w)
        if i in (19, 20):  # the two appended rows: /rows/19 and /rows/20 appear
            assert [f["patch"] for f in frames] == [[{"op": "replace", "path": "", "value": value["rows"][i]}]]
        else:
            assert frames == [], i


def test_an_ancestor_replaced_reaches_every_watcher_under_it():
    side = Side()
    side.upload({"rows": [1, 2, 3], "meta": {"a": 1}})
    ws = watchers(side, 3)
    meta = side.watch("meta", "/meta/a")
    side.take(meta)
    side.upload({"rows": {"0": 9, "1": 8}, "meta": {"a": 1}})  # /rows an object now: replaced whole
    assert [side.take(w)[0]["patch"][0]["value"] for w in ws] == [9, 8, None]
    assert side.take(meta) == []


def test_the_index_stays_bounded_by_the_paths_its_consumers_watch():
    side = Side()
    side.upload(rows(3))
    w = side.watch("w", "/rows/0")
    for n in range(1000):  # one session moving through a thousand paths, an update after each
        side.send(w, "object-consumer-register", pattern="doc", version_known=0, path=f"/rows/{n}")
        side.upload(rows(3, {0: n}))
        side.take(w)
    index = side.store.objects["doc"].path_index
    assert index is not None and len(index) <= 2 * 2 + 64 + 1


def test_a_session_resumed_in_the_same_version_gets_its_frame_from_the_versions_one_diff():
    side = Side()
    side.upload(rows(50))
    ws = watchers(side, 3)
    side.store.pause(ws[1])
    side.upload(rows(50, {1: 5, 2: 6}), as_patch=True)
    assert side.take(ws[0]) == [] and side.take(ws[1]) == []
    side.store.resume(ws[1])
    side.route()
    assert [f["patch"] for f in side.take(ws[1])] == [[{"op": "replace", "path": "/v", "value": 5}]]
    assert [f["patch"] for f in side.take(ws[2])] == [[{"op": "replace", "path": "/v", "value": 6}]]
    assert len(side.store.objects["doc"].patches) == 1  # v1 -> v2, diffed once for both pushes


def away(side: Side, versions: list[dict[str, Any]], as_patch: bool = True) -> tuple[Session, Session]:
    """Two watchers behind a gate held while ``versions`` are uploaded (retain=2: what they hold is
    dropped), then released: (the watcher of /rows/1, the watcher of /rows/2)."""
    gate = Gate()
    same, moved = side.watch("same", "/rows/1", gate=gate), side.watch("moved", "/rows/2", gate=gate)
    side.take(same), side.take(moved)
    side.store.hold(gate)
    for value in versions:
        side.upload(value, as_patch=as_patch)
    side.store.release(gate)
    side.route()
    return same, moved


def test_a_subtree_unchanged_since_a_version_no_longer_retained_is_not_sent_again():
    side = Side(retain=2)
    side.upload(rows(5))
    same, moved = away(side, [rows(5, {0: n, 2: 1}) for n in range(1, 5)])
    [frame] = side.take(moved)
    assert frame["value"] == {"id": 2, "v": 1} and frame["version-new"] == 5
    assert side.take(same) == [] and same.held["doc"] == 5 and moved.held["doc"] == 5
    # a client coming back with that version (not retained): nothing either, its subtree did not change
    back = side.watch("back", "/rows/1", known=1)
    assert side.take(back) == [] and back.held["doc"] == 5
    shifted = side.watch("shifted", "/rows/2", known=1)
    assert side.take(shifted)[0]["value"] == {"id": 2, "v": 1}


def test_unknown_changes_send_the_value_as_before():
    """Whole values uploaded (the change between versions is not known without a diff the router does not
    make), or a patch from an older version: the subtree's value, as without the index."""
    side = Side(retain=2)
    side.upload(rows(5))
    same, _ = away(side, [rows(5, {0: n}) for n in range(1, 5)], as_patch=False)
    assert side.take(same)[0]["value"] == {"id": 1, "v": 0}
    side = Side(retain=2)
    side.upload(rows(5))
    side.upload(rows(5, {0: 1}))
    gate = Gate()
    same = side.watch("same", "/rows/1", gate=gate)
    side.take(same)
    side.store.hold(gate)
    side.take(side.master)
    side.send(side.master, "object-patch", id="doc", version_old=1, version_new=3,  # from v1, not the latest
              patch=[{"op": "replace", "path": "/rows/0/v", "value": 2}])
    side.version = 3
    side.latest = side.values[3] = rows(5, {0: 2})
    side.upload(rows(5, {0: 3}), as_patch=True)  # (v4 from v3, v2 dropped)
    assert [v for v, _ in side.store.objects["doc"].history] == [3, 4]
    side.store.release(gate)
    side.route()
    assert side.take(same)[0]["value"] == {"id": 1, "v": 0}


def test_a_row_inserted_while_away_sends_the_rows_it_shifted():
    side = Side(retain=2)
    side.upload(rows(5))
    value = rows(5)
    value["rows"].insert(2, {"id": "new", "v": 0})
    same, moved = away(side, [rows(5, {4: 1}), rows(5, {4: 2}), value])
    assert side.take(same) == []  # /rows/1: before the insert
    assert side.take(moved)[0]["value"] == {"id": "new", "v": 0}


# ---- property: the index delivers exactly what the unindexed computation delivers ----------------------------

# (the documents and rows of test_store_subtree_props.py; more paths here, the root's neighbours included)
PATH = st.sampled_from(["/rows/0", "/rows/1", "/rows/2", "/rows/5", "/rows/1/v", "/rows/0/0", "/rows", "/meta",
                        "/meta/1", "/rows2/1", "/rows/-", "/nope"])
STEP = st.one_of(st.tuples(st.just("upload"), DOC), st.tuples(st.just("patch"), DOC),
                 st.tuples(st.just("older"), DOC),  # a patch from the version before the latest
                 st.tuples(st.just("insert"), st.tuples(st.integers(0, 6), ROW)),
                 st.tuples(st.just("delete"), st.integers(0, 6)),
                 st.tuples(st.just("edit"), st.tuples(st.integers(0, 6), ROW)),
                 st.tuples(st.just("hold"), st.integers(0, 1)), st.tuples(st.just("release"), st.integers(0, 1)),
                 st.tuples(st.just("pause"), st.integers(0, 7)), st.tuples(st.just("resume"), st.integers(0, 7)),
                 st.tuples(st.just("rejoin"), st.integers(0, 7)), st.tuples(st.just("move"), st.tuples(
                     st.integers(0, 7), PATH)))


class Holder:
    """A client's view of its path: applies the frames as a client does."""

    def __init__(self) -> None:
        self.has = False
        self.value: Any = None

    def apply(self, frame: dict[str, Any]) -> bool:
        """Apply ``frame``; False if it was a value frame bringing what the client held already (redundant:
        the reference may send one where the index knows nothing changed, and the other way round)."""
        before, had = self.value, self.has
        if "value" in frame:
            self.value, self.has = frame["value"], True
        else:
            assert self.has, frame
            self.value = apply_patch(orjson.loads(orjson.dumps(self.value)), frame["patch"])
        return not (had and "value" in frame and self.value == before)


def edited(latest: dict[str, Any], kind: str, arg: Any) -> dict[str, Any]:
    """``latest`` with a row inserted, deleted or replaced in place (the diff's index operations)."""
    value = orjson.loads(orjson.dumps(latest))
    rows_now = value["rows"]
    if kind == "insert":
        rows_now.insert(min(arg[0], len(rows_now)), arg[1])
    elif rows_now and kind == "delete":
        del rows_now[arg % len(rows_now)]
    elif rows_now:
        rows_now[arg[0] % len(rows_now)] = arg[1]
    return value


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(paths=st.lists(PATH, min_size=2, max_size=8), first=DOC, steps=st.lists(STEP, max_size=20),
       retain=st.integers(1, 3), coalesce=st.booleans())
def test_the_index_delivers_what_the_unindexed_computation_delivers(paths: list[str], first: dict[str, Any],
                                                                   steps: list[tuple[str, Any]], retain: int,
                                                                   coalesce: bool) -> None:
    """Every frame that changes what a client holds is the very frame the reference sends; the frames left
    out of the comparison are value frames bringing what the client held already (the reference reuses a
    frame cached while the held version was retained, the index knows an unchanged subtree from its last
    change). Every session's held version is the reference's, and what each client holds is the subtree of
    the version its session holds."""
    sides = [Side(ObjectStore, retain=retain, coalesce=coalesce), Side(Unindexed, retain=retain, coalesce=coalesce)]
    gates = [[Gate(), Gate()] for _ in sides]
    sessions = [[side.watch(f"c{n}", path, gate=gates[k][n % 2]) for n, path in enumerate(paths)]
                for k, side in enumerate(sides)]
    holders = [[Holder() for _ in paths] for _ in sides]
    now = list(paths)

    def step(k: int, side: Side, kind: str, arg: Any) -> None:
        mine = sessions[k]
        if kind in ("insert", "delete", "edit"):
            side.upload(edited(side.latest, kind, arg), as_patch=True)
        elif kind in ("upload", "patch", "older"):
            side.upload(arg, as_patch=kind != "upload", back=2 if kind == "older" else 1)
        elif kind == "hold":
            side.store.hold(gates[k][arg])
        elif kind == "release":
            side.store.release(gates[k][arg])
        elif kind == "pause" and arg < len(mine):
            side.store.pause(mine[arg])
        elif kind == "resume" and arg < len(mine):
            side.store.resume(mine[arg])
        elif kind == "rejoin" and arg < len(mine) and not mine[arg].gate.closed:
            # a client registering again with the version its session holds (what it holds is its subtree)
            side.send(mine[arg], "object-consumer-register", pattern="doc", version_known=mine[arg].held.get("doc", 0),
                      path=now[arg])
        elif kind == "move" and arg[0] < len(mine) and not mine[arg[0]].gate.closed:
            side.send(mine[arg[0]], "object-consumer-register", pattern="doc", version_known=0, path=arg[1])
            holders[k][arg[0]] = Holder()
        side.route()

    def compare() -> None:
        for n in range(len(paths)):
            ours, reference = ([f for f in sides[k].take(sessions[k][n]) if holders[k][n].apply(f)] for k in (0, 1))
            assert ours == reference, (now[n], ours, reference)
            assert sessions[0][n].held.get("doc") == sessions[1][n].held.get("doc")
            held = sessions[0][n].held.get("doc")
            if held is not None and holders[0][n].has:
                assert holders[0][n].value == resolve(sides[0].values[held], tokens_of(now[n])), now[n]

    for side in sides:
        side.upload(first)
    compare()
    for kind, arg in steps:
        for k, side in enumerate(sides):
            step(k, side, kind, arg)
        if kind == "move" and arg[0] < len(paths) and not sessions[0][arg[0]].gate.closed:
            now[arg[0]] = arg[1]
        compare()
    for k, side in enumerate(sides):
        for gate in gates[k]:
            side.store.release(gate)
        for s in sessions[k]:
            side.store.resume(s)
        side.route()
    compare()
    for holder, path in zip(holders[0], now):
        assert holder.value == resolve(sides[0].latest, tokens_of(path)), (path, holder.value)
