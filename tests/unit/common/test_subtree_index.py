"""The index of subscribed paths (common/subtree.PathIndex, stop 23): a push rebases the object's patch only
to the paths ``touched`` names. The property that makes it safe: every path ``rebase`` would send something
to, and every path whose subtree changed, is in ``touched`` (it may name more: rebase decides for those)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings, strategies as st

from common.diff import make_patch
from common.subtree import PathIndex, rebase, resolve, tokens_of
from tests.unit.common.test_subtree import edited_rows, objects, paths_in


def index_of(*paths: str) -> PathIndex:
    index = PathIndex()
    for path in paths:
        index.add(path, 0)
    return index


ROWS = [f"/rows/{i}" for i in range(6)]


def test_equal_under_and_above_an_operation_are_touched_and_nothing_else():
    index = index_of(*ROWS, "/rows/2/n", "/meta", "/meta/a/b")
    assert index.touched([{"op": "replace", "path": "/rows/2/n", "value": 1}]) == {"/rows/2", "/rows/2/n"}
    assert index.touched([{"op": "replace", "path": "/meta/a", "value": 1}]) == {"/meta", "/meta/a/b"}
    assert index.touched([{"op": "replace", "path": "/rows", "value": []}]) == set(ROWS) | {"/rows/2/n"}
    assert index.touched([{"op": "add", "path": "/other", "value": 1}]) == set()
    assert index.touched([]) == set()


def test_an_add_or_remove_in_an_array_touches_the_elements_at_and_after_it():
    index = index_of(*ROWS, "/rows/4/n", "/rows/x")
    assert index.touched([{"op": "add", "path": "/rows/3", "value": {}}]) == {"/rows/3", "/rows/4", "/rows/4/n",
                                                                               "/rows/5"}
    assert index.touched([{"op": "remove", "path": "/rows/5"}]) == {"/rows/5"}
    assert index.touched([{"op": "add", "path": "/rows/-", "value": {}}]) == set()  # an append moves nothing
    assert index.touched([{"op": "add", "path": "/rows/9", "value": {}}]) == set()  # after every watched one
    # a replace moves nothing; a key that is not an index ("01", "x") is no element
    assert index.touched([{"op": "replace", "path": "/rows/1", "value": 0}]) == {"/rows/1"}
    assert index.touched([{"op": "add", "path": "/rows/01", "value": 0}]) == set()


def test_a_move_or_copy_touches_every_element_of_the_arrays_of_both_pointers():
    index = index_of(*ROWS, "/meta/k")
    assert index.touched([{"op": "move", "from": "/rows/5", "path": "/rows/-"}]) == set(ROWS)
    assert index.touched([{"op": "copy", "from": "/meta/k", "path": "/other"}]) == {"/meta/k"}
    assert index.touched([{"op": "move", "from": "/meta/k", "path": "/rows/0"}]) == set(ROWS) | {"/meta/k"}


def test_the_root_or_a_pointer_it_cannot_read_touches_everything():
    index = index_of(*ROWS)
    assert index.touched([{"op": "replace", "path": "", "value": {}}]) is None
    assert index.touched([{"op": "replace", "path": "rows", "value": {}}]) is None
    assert index.touched([{"op": "replace", "value": {}}]) is None  # (no path: "", the root)
    assert index.touched([{"op": "move", "from": 3, "path": "/x"}]) is None


def test_tokens_are_compared_escaped_as_the_patch_writes_them():
    index = index_of("/a~1b/c", "/a~0b", "/a")
    old = {"a/b": {"c": 1}, "a~b": 1, "a": 1}
    new = {"a/b": {"c": 2}, "a~b": 1, "a": 1}
    assert index.touched(make_patch(old, new)) == {"/a~1b/c"}
    assert index.touched([{"op": "remove", "path": "/a~0b"}]) == {"/a~0b"}


def test_adding_a_path_twice_indexes_it_once():
    index = index_of("/rows/1", "/rows/1", "/rows")
    assert len(index) == 2 and index.touched([{"op": "remove", "path": "/rows/1"}]) == {"/rows/1", "/rows"}


def test_record_keeps_the_last_change_of_each_path():
    index = index_of("/rows/1", "/rows/2")  # (indexed at serial 0: changes before are not known)
    index.record([{"op": "replace", "path": "/rows/1/v", "value": 1}], 1)
    index.record([], 2)  # an upload of the same data
    index.record([{"op": "replace", "path": "/other", "value": 1}], 3)
    assert index.unchanged_since("/rows/1", 1) and not index.unchanged_since("/rows/1", 0)
    assert index.unchanged_since("/rows/2", 0)
    index.add("/rows/3", 3)  # a path indexed now: unknown before the latest version
    assert index.unchanged_since("/rows/3", 3) and not index.unchanged_since("/rows/3", 2)
    assert not index.unchanged_since("/not-indexed", 3)
    index.record(None, 4)  # a change not known (a value uploaded): every path may have changed
    assert not index.unchanged_since("/rows/2", 3) and index.unchanged_since("/rows/2", 4)
    index.record([{"op": "add", "path": "/rows/0", "value": 1}], 5)  # shifts /rows/1 and /rows/2
    assert not index.unchanged_since("/rows/1", 4) and not index.unchanged_since("/rows/2", 4)
    assert not index.unchanged_since("/rows/3", 4) and index.unchanged_since("/rows/3", 5)


# ---- properties ----------------------------------------------------------------------------------------

def check_covers(index: PathIndex, patch: list[dict[str, Any]], paths: list[str], old: Any, new: Any) -> None:
    touched = index.touched(patch)
    if touched is None:
        return
    for path in paths:
        if path not in touched:
            assert rebase(patch, path, new) == [], (path, patch)
            if old is not None:
                assert resolve(old, tokens_of(path)) == resolve(new, tokens_of(path)), (path, patch)


@settings(max_examples=400, deadline=None)
@given(objects, objects, st.data())
def test_every_path_the_patch_changes_is_touched(old, new, data):
    """For common.diff's patches (what the store diffs): a path left out has the same subtree before and
    after, and rebase sends it nothing."""
    candidates = sorted(set(paths_in(old) + paths_in(new) + ["/nope", "/rows/0/a", "/rows/7", "/0/1"]))
    paths = data.draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=12, unique=True))
    patch = make_patch(copy.deepcopy(old), new)
    check_covers(index_of(*paths), patch, paths, old, new)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.fixed_dictionaries({"n": st.integers(0, 3)}), min_size=1, max_size=30), st.data())
def test_rows_inserted_and_removed_touch_every_watcher_they_shift(rows, data):
    new_rows = edited_rows(rows, data)
    old, new = {"rows": rows}, {"rows": new_rows}
    paths = [f"/rows/{i}" for i in range(max(len(rows), len(new_rows)) + 1)] + ["/rows/0/n", "/rows/3/n"]
    check_covers(index_of(*paths), make_patch(copy.deepcopy(old), new), paths, old, new)


POINTERS = st.sampled_from(["", "/rows", "/rows/0", "/rows/1", "/rows/2/n", "/rows/-", "/rows/01", "/meta",
                            "/meta/0", "/meta/a", "/x~1y", "/0"])
OPS = st.fixed_dictionaries({"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test"]),
                             "path": POINTERS}, optional={"from": POINTERS, "value": st.integers(0, 2)})


@settings(max_examples=400, deadline=None)
@given(st.lists(OPS, max_size=4), objects, st.lists(POINTERS.filter(bool), min_size=1, max_size=8, unique=True))
def test_any_operations_touch_every_path_rebase_answers(patch, new, paths):
    """Patches common.diff never makes (move, copy, test, appends, index-like keys of objects): whatever
    rebase sends something to is touched."""
    check_covers(index_of(*paths), patch, paths, None, new)
