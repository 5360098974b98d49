"""Subtree subscriptions, pure (common/subtree.py): pointers, and patches rebased to a path. The property:
applying the rebased patch to the old subtree gives the new subtree, for random objects, changes and paths."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings, strategies as st

from common.diff import apply_patch, make_patch
from common.subtree import PathError, check_path, rebase, resolve, tokens_of


def test_pointers_are_checked_and_normalized():
    assert check_path("") is None
    assert check_path("/rows/17") == "/rows/17"
    assert check_path("/a~1b/~0c") == "/a~1b/~0c" and tokens_of("/a~1b/~0c") == ["a/b", "~c"]
    for bad, why in ((3, "string"), ("rows", "start with"), ("/a~2", "~"), ("/" + "x" * 2000, "characters"),
                     ("/a" * 65, "levels")):
        with pytest.raises(PathError, match=why):
            check_path(bad)


def test_resolve_absent_is_none():
    data = {"rows": [{"n": 1}], "m": {"k": 2}}
    assert resolve(data, ["rows", "0", "n"]) == 1
    assert resolve(data, ["rows", "1"]) is None and resolve(data, ["rows", "01"]) is None
    assert resolve(data, ["m", "k", "x"]) is None and resolve(data, []) is data


def test_untouched_ancestor_and_shifts():
    old = {"rows": [{"n": i} for i in range(5)], "title": "t"}
    new = copy.deepcopy(old)
    new["rows"][3]["n"] = 33
    patch = make_patch(old, new)
    assert rebase(patch, "/rows/1", new) == []  # another row: nothing to send
    assert rebase(patch, "/rows/3", new) == [{"op": "replace", "path": "/n", "value": 33}]
    new2 = copy.deepcopy(old)
    new2["rows"].append({"n": 5})
    assert rebase(make_patch(old, new2), "/rows/1", new2) == []  # an append moves nothing
    new3 = copy.deepcopy(old)
    del new3["rows"][0]
    assert rebase(make_patch(old, new3), "/rows/1", new3) == [{"op": "replace", "path": "", "value": {"n": 2}}]
    assert rebase(make_patch(old, new3), "/rows/0", new3) == [{"op": "replace", "path": "", "value": {"n": 1}}]
    assert rebase([{"op": "remove", "path": "/rows/4"}], "/rows/4", {"rows": old["rows"][:4]}) == \
        [{"op": "replace", "path": "", "value": None}]  # the last element: nothing moved in
    assert rebase([{"op": "replace", "path": "/rows", "value": []}], "/rows/1", {"rows": []}) == \
        [{"op": "replace", "path": "", "value": None}]
    assert rebase([{"op": "remove", "path": "/title"}], "/title", {}) == [{"op": "replace", "path": "", "value": None}]


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from(["a", "b", "x/y", "~"]))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(st.sampled_from(["a", "b", "c", "0", "1", "x/y", "~t"]), inner, max_size=4)),
    max_leaves=20)
objects = st.dictionaries(st.sampled_from(["a", "b", "rows", "0", "x/y"]), json_value, max_size=4)


def paths_in(data, prefix="", out=None):
    out = [] if out is None else out
    if isinstance(data, dict):
        for k, v in data.items():
            p = prefix + "/" + k.replace("~", "~0").replace("/", "~1")
            out.append(p)
            paths_in(v, p, out)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            p = f"{prefix}/{i}"
            out.append(p)
            paths_in(v, p, out)
    return out


@settings(max_examples=400, deadline=None)
@given(objects, objects, st.data())
def test_the_rebased_patch_turns_the_old_subtree_into_the_new(old, new, data):
    candidates = sorted(set(paths_in(old) + paths_in(new) + ["/nope", "/rows/0/a"]))
    path = data.draw(st.sampled_from(candidates))
    patch = make_patch(copy.deepcopy(old), new)
    ops = rebase(patch, path, new)
    tokens = tokens_of(path)
    before, after = resolve(old, tokens), resolve(new, tokens)
    if not ops:
        assert before == after, (path, patch)
        return
    result = apply_patch(copy.deepcopy(before), copy.deepcopy(ops))
    assert result == after, (path, patch, ops)


def edited_rows(rows: list[dict], data: st.DataObject) -> list[dict]:
    """``rows`` with one to three rows removed or inserted (their diff inserts and removes elements)."""
    new_rows = list(rows)
    for _ in range(data.draw(st.integers(1, 3))):
        if new_rows and data.draw(st.booleans()):
            del new_rows[data.draw(st.integers(0, len(new_rows) - 1))]
        else:
            new_rows.insert(data.draw(st.integers(0, len(new_rows))), {"n": data.draw(st.integers(4, 9))})
    return new_rows


@settings(max_examples=300, deadline=None)
@given(st.lists(st.fixed_dictionaries({"n": st.integers(0, 3)}), min_size=1, max_size=30), st.data())
def test_rows_inserted_and_removed_shift_the_watchers_after_them(rows, data):
    """Long arrays, where the diff inserts and removes elements: a watcher of /rows/i always ends on row i."""
    new_rows = edited_rows(rows, data)
    old, new = {"rows": rows}, {"rows": new_rows}
    patch = make_patch(copy.deepcopy(old), new)
    for i in range(max(len(rows), len(new_rows)) + 1):
        path = f"/rows/{i}"
        ops = rebase(patch, path, new)
        before, after = resolve(old, ["rows", str(i)]), resolve(new, ["rows", str(i)])
        if not ops:
            assert before == after, (path, patch)
        else:
            assert apply_patch(copy.deepcopy(before), copy.deepcopy(ops)) == after, (path, patch, ops)
