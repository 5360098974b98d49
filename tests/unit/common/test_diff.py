"""common.diff: make_patch is correct and type-strict (checked against jsonpatch), small for small
edits, and apply_patch raises only PatchError on any input and then leaves the document as it was."""

from __future__ import annotations

import random
from typing import Any

import jsonpatch
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from common.diff import PatchError, apply_patch, json_equal, make_patch, patch_is_smaller

# ---------------------------------------------------------------------------------------------
# Helpers and strategies


def canon(value: Any) -> bytes:
    """Type-strict canonical form: 1, 1.0 and true encode differently; key order does not matter."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def copy(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


# Values that Python's == confuses (1 == 1.0 == True, 0 == 0.0 == -0.0 == False) are drawn often.
CONFUSABLE = [0, 1, -1, 0.0, 1.0, -0.0, -1.0, True, False, None, "", "0", "1", "true"]
KEYS = st.one_of(
    st.sampled_from(["a", "b", "id", "~", "/", "~0", "~1", "a/b", "m~n", "", "0", "-", "é", "日本", "🙂"]),
    st.text(max_size=5),
)
SCALARS = st.one_of(
    st.sampled_from(CONFUSABLE),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=8) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=40,
)
DOCS = st.dictionaries(KEYS, VALUES, max_size=6)

# Lists of few distinct values make the list differ's look-ahead meet many false anchors.
SMALL_POOL = st.sampled_from([0, 1, True, 1.0, "x"])
POOL_DOCS = st.fixed_dictionaries(
    {"l": st.lists(SMALL_POOL, max_size=30), "m": st.lists(st.lists(SMALL_POOL, max_size=3), max_size=12)}
)

# Containers above the differ's small-container size (16) take the chunked-scan paths.
WIDE_DOCS = st.fixed_dictionaries(
    {
        "d": st.dictionaries(KEYS, SCALARS | st.lists(SMALL_POOL, max_size=3), min_size=17, max_size=40),
        "l": st.lists(
            SMALL_POOL | st.dictionaries(st.sampled_from("abc"), SMALL_POOL, max_size=2), min_size=17, max_size=80
        ),
    }
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_patch(old: dict, new: dict) -> list[dict]:
    """make_patch(old, new) turns old into new type-strictly, with jsonpatch and with ours."""
    before_old, before_new = canon(old), canon(new)
    patch = make_patch(old, new)
    assert canon(old) == before_old and canon(new) == before_new, "make_patch mutated its input"
    assert {op["op"] for op in patch} <= {"add", "remove", "replace"}
    wire = orjson.loads(orjson.dumps(patch))  # what a client receives
    assert canon(jsonpatch.apply_patch(copy(old), wire)) == canon(new)
    ours = apply_patch(copy(old), wire)
    assert canon(ours) == canon(new)
    assert json_equal(ours, new)
    return patch


def pointer(tokens: list[Any]) -> str:
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


def containers(value: Any, tokens: list[Any] | None = None) -> list[tuple[list[Any], Any]]:
    """Every (path tokens, container) inside value, the value itself first."""
    tokens = tokens or []
    found: list[tuple[list[Any], Any]] = []
    if isinstance(value, dict):
        found.append((tokens, value))
        for k, v in value.items():
            found.extend(containers(v, tokens + [k]))
    elif isinstance(value, list):
        found.append((tokens, value))
        for i, v in enumerate(value):
            found.extend(containers(v, tokens + [i]))
    return found


def all_pointers(value: Any) -> list[str]:
    """Every valid pointer into value, plus the list-end and one-past-the-end forms."""
    out = [""]
    for tokens, c in containers(value):
        keys = list(c) if isinstance(c, dict) else [*range(len(c)), "-", len(c)]
        out.extend(pointer(tokens + [k]) for k in keys)
    return out


def mutate(doc: dict, data: st.DataObject, edits: int) -> dict:
    """A copy of doc with `edits` random leaf-level edits (list insert/delete/set, key add/delete/set)."""
    new = copy(doc)
    for _ in range(edits):
        _, target = data.draw(st.sampled_from(containers(new)))
        if isinstance(target, list):
            kind = data.draw(st.sampled_from(["insert", "delete", "set"] if target else ["insert"]))
            if kind == "insert":
                target.insert(data.draw(st.integers(0, len(target))), data.draw(VALUES))
            elif kind == "delete":
                del target[data.draw(st.integers(0, len(target) - 1))]
            else:
                target[data.draw(st.integers(0, len(target) - 1))] = data.draw(SCALARS)
        else:
            kind = data.draw(st.sampled_from(["add", "delete", "set"] if target else ["add"]))
            if kind == "add":
                target[data.draw(KEYS)] = data.draw(VALUES)
            elif kind == "delete":
                del target[data.draw(st.sampled_from(sorted(target)))]
            else:
                target[data.draw(st.sampled_from(sorted(target)))] = data.draw(SCALARS)
    return new


def rows_doc(n: int = 1000) -> dict:
    rnd = random.Random(7)
    tags = ["red", "green", "blue", "new", "sale"]
    rows = [
        {
            "id": i,
            "name": f"row {i}",
            "price": round(rnd.uniform(1, 100), 2),
            "qty": rnd.randint(0, 50),
            "active": rnd.random() < 0.5,
            "tags": rnd.sample(tags, 2),
        }
        for i in range(n)
    ]
    return {"title": "stock", "rows": rows}


# ---------------------------------------------------------------------------------------------
# make_patch: properties


@SETTINGS
@given(DOCS, DOCS)
def test_patch_between_any_two_documents_reproduces_the_new_one(old, new):
    check_patch(old, new)


@SETTINGS
@given(POOL_DOCS, POOL_DOCS)
def test_patch_between_lists_of_confusable_values_is_type_strict(old, new):
    check_patch(old, new)


@SETTINGS
@given(WIDE_DOCS, WIDE_DOCS)
def test_patch_between_wide_documents_reproduces_the_new_one(old, new):
    check_patch(old, new)


@SETTINGS
@given(DOCS | WIDE_DOCS)
def test_patch_between_equal_documents_is_empty(doc):
    assert make_patch(doc, copy(doc)) == []
    assert make_patch(doc, doc) == []


@SETTINGS
@given(DOCS | WIDE_DOCS, st.data())
def test_one_edit_gives_at_most_one_op(doc, data):
    new = mutate(doc, data, 1)
    patch = check_patch(doc, new)
    assert len(patch) <= 1, patch


@SETTINGS
@given(DOCS | WIDE_DOCS, st.integers(2, 5), st.data())
def test_a_few_edits_give_a_small_patch(doc, edits, data):
    new = mutate(doc, data, edits)
    patch = check_patch(doc, new)
    assert len(patch) <= 2 * edits, patch


@SETTINGS
@given(POOL_DOCS, st.integers(1, 4), st.data())
def test_a_few_edits_in_lists_of_repeated_values_give_a_small_patch(doc, edits, data):
    new = mutate(doc, data, edits)
    patch = check_patch(doc, new)
    assert len(patch) <= 2 * edits, patch


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_scattered_edits_in_a_long_list_cost_one_op_per_row(data):
    doc = rows_doc(300)
    new = copy(doc)
    rows = new["rows"]
    expected = 0
    # Edits at least 10 rows apart, applied from the end so positions stay meaningful.
    starts = sorted(data.draw(st.sets(st.integers(0, 28), min_size=1, max_size=6)), reverse=True)
    for slot in starts:
        at = slot * 10 + data.draw(st.integers(0, 5))
        kind = data.draw(st.sampled_from(["insert", "insert 7", "delete", "delete 4", "change", "type"]))
        if kind.startswith("insert"):
            count = int(kind[7:] or 1)
            new_row = {"id": -at, "name": "new", "price": 1.0, "active": True, "tags": []}
            rows[at:at] = [new_row | {"qty": k} for k in range(count)]
        elif kind.startswith("delete"):
            count = int(kind[7:] or 1)
            del rows[at : at + count]
        elif kind == "change":
            count = 1
            rows[at]["qty"] += 1
        else:
            count = 1
            rows[at]["active"] = int(rows[at]["active"])
        expected += count
    patch = check_patch(doc, new)
    assert len(patch) == expected, patch


# ---------------------------------------------------------------------------------------------
# make_patch: explicit cases


def test_insert_at_the_front_of_1000_rows_is_one_add():
    doc = rows_doc()
    new = copy(doc)
    row = {"id": -1, "name": "first", "price": 1.0, "qty": 1, "active": True, "tags": []}
    new["rows"].insert(0, row)
    assert check_patch(doc, new) == [{"op": "add", "path": "/rows/0", "value": row}]


def test_delete_in_the_middle_of_1000_rows_is_one_remove():
    doc = rows_doc()
    new = copy(doc)
    del new["rows"][500]
    assert check_patch(doc, new) == [{"op": "remove", "path": "/rows/500"}]


def test_one_field_changed_in_1000_rows_is_one_replace():
    doc = rows_doc()
    new = copy(doc)
    new["rows"][700]["qty"] = 1234
    assert check_patch(doc, new) == [{"op": "replace", "path": "/rows/700/qty", "value": 1234}]


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ({"a": 1}, {"a": True}, "/a"),
        ({"a": 1}, {"a": 1.0}, "/a"),
        ({"a": True}, {"a": 1}, "/a"),
        ({"a": 0}, {"a": False}, "/a"),
        ({"a": 0.0}, {"a": -0.0}, "/a"),
        ({"a": {"b": [2, 1]}}, {"a": {"b": [2, 1.0]}}, "/a/b/1"),
        ({"a": [{"x": 1}]}, {"a": [{"x": True}]}, "/a/0/x"),
    ],
)
def test_a_type_change_alone_gives_a_replace(old, new, path):
    assert check_patch(old, new) == [{"op": "replace", "path": path, "value": _at(new, path)}]


def _at(doc: Any, path: str) -> Any:
    for token in path.split("/")[1:]:
        doc = doc[int(token)] if isinstance(doc, list) else doc[token]
    return doc


def test_type_changes_inside_lists_are_not_missed():
    check_patch({"a": [1, 0]}, {"a": [True, False]})
    check_patch({"a": [[1, 0]] * 3}, {"a": [[1, 0], [True, 0], [1, 0]]})
    big = list(range(1000))
    changed = big[:]
    changed[1] = True  # 1 == True: only the encoding check sees it
    assert check_patch({"l": big}, {"l": changed}) == [{"op": "replace", "path": "/l/1", "value": True}]
    floats = [float(i) for i in range(1000)]
    assert len(check_patch({"l": floats}, {"l": floats[:500] + [500] + floats[501:]})) == 1


def test_a_list_that_only_changes_key_order_needs_no_patch():
    old = {"l": [{"a": 1, "b": 2}] * 50}
    new = {"l": [{"b": 2, "a": 1} for _ in range(50)]}
    assert make_patch(old, new) == []


@pytest.mark.parametrize("key", ["a/b", "m~n", "~1", "~0", "/", "~", "", "~/~/", "0/-"])
def test_keys_are_escaped_as_json_pointer_tokens(key):
    escaped = key.replace("~", "~0").replace("/", "~1")
    assert check_patch({}, {key: 1}) == [{"op": "add", "path": "/" + escaped, "value": 1}]
    assert check_patch({key: 1}, {}) == [{"op": "remove", "path": "/" + escaped}]
    assert check_patch({"x": {key: [1]}}, {"x": {key: [2]}}) == [
        {"op": "replace", "path": f"/x/{escaped}/0", "value": 2}
    ]


def test_a_patch_bigger_than_the_value_becomes_one_replace():
    old = {"l": list(range(50))}
    new = {"l": list(range(100, 150))}
    assert check_patch(old, new) == [{"op": "replace", "path": "/l", "value": new["l"]}]


def test_a_large_dict_with_a_few_changes_gives_only_those():
    old = {f"k{i}": {"n": i} for i in range(2000)}
    new = copy(old)
    new["k5"]["n"] = -5
    new["k1999"] = 1.5
    del new["k7"]
    new["k/new"] = {}
    patch = check_patch(old, new)
    assert sorted(op["path"] for op in patch) == ["/k1999", "/k5/n", "/k7", "/k~1new"]


def test_documents_deeper_than_the_recursion_limit_still_diff():
    def deep(leaf: Any, depth: int = 5000) -> Any:
        value: Any = leaf
        for _ in range(depth):
            value = [value]
        return value

    old, new = {"d": deep(1), "same": 1}, {"d": deep(2), "same": 1}
    patch = make_patch(old, new)
    assert patch == [{"op": "replace", "path": "/d", "value": new["d"]}]
    assert json_equal(apply_patch({"d": deep(1), "same": 1}, patch), new)
    assert not json_equal(old, new)
    assert json_equal(new, {"d": deep(2), "same": 1})


def test_patch_is_smaller_compares_encoded_sizes():
    assert patch_is_smaller([{"op": "remove", "path": "/a"}], {"a": "x" * 100})
    assert not patch_is_smaller([{"op": "remove", "path": "/a"}], {"a": 1})


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1, True),
        (1, 1.0, False),
        (1, True, False),
        (0, False, False),
        (0.0, -0.0, False),
        ([1, {"a": [True]}], [1, {"a": [True]}], True),
        ([1, {"a": [True]}], [1, {"a": [1]}], False),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),
        ({"a": None}, {}, False),
        ([], {}, False),
        ("1", 1, False),
    ],
)
def test_json_equal_is_type_strict(a, b, equal):
    assert json_equal(a, b) is equal
    assert json_equal(b, a) is equal


@SETTINGS
@given(VALUES, VALUES)
def test_json_equal_matches_canonical_encoding(a, b):
    assert json_equal(a, b) == (canon(a) == canon(b))
    assert json_equal(a, copy(a))


# ---------------------------------------------------------------------------------------------
# apply_patch: RFC 6902 operations


def test_apply_all_operations_in_place():
    doc = {"a": [1, 2, 3], "b": {"c": "x"}, "k/~": 0}
    original = doc
    result = apply_patch(
        doc,
        [
            {"op": "add", "path": "/a/1", "value": 9},
            {"op": "add", "path": "/a/-", "value": 4},
            {"op": "remove", "path": "/a/0"},
            {"op": "replace", "path": "/b/c", "value": None},
            {"op": "move", "from": "/b", "path": "/moved"},
            {"op": "copy", "from": "/a", "path": "/copied"},
            {"op": "test", "path": "/k~1~0", "value": 0.0},  # RFC 6902: numbers compare by value
            {"op": "add", "path": "/k~1~0", "value": True},
        ],
    )
    assert result is original
    assert canon(doc) == canon({"a": [9, 2, 3, 4], "moved": {"c": None}, "copied": [9, 2, 3, 4], "k/~": True})
    doc["copied"].append(5)
    assert doc["a"] == [9, 2, 3, 4], "copy must not alias its source"


def test_replacing_the_root_returns_the_new_value():
    doc = {"a": 1}
    assert apply_patch(doc, [{"op": "replace", "path": "", "value": {"b": 2}}]) == {"b": 2}
    assert doc == {"a": 1}
    patch = [{"op": "add", "path": "", "value": [1]}, {"op": "add", "path": "/0", "value": 0}]
    assert apply_patch({"a": 1}, patch) == [0, 1]


def test_an_empty_patch_changes_nothing():
    doc = {"a": 1}
    assert apply_patch(doc, []) is doc


def test_move_to_its_own_place_is_a_no_op():
    assert apply_patch({"a": [1]}, [{"op": "move", "from": "/a", "path": "/a"}]) == {"a": [1]}


BAD_PATCHES = [
    ({}, "nope", "must be a list"),
    ({}, {"op": "add"}, "must be a list"),
    ({}, [1], "must be an object"),
    ({}, [None], "must be an object"),
    ({}, [{"path": "/a", "value": 1}], "missing 'op'"),
    ({}, [{"op": "frobnicate", "path": "/a"}], "unknown op"),
    ({}, [{"op": 1, "path": "/a"}], "'op' must be a string"),
    ({}, [{"op": "add", "value": 1}], "needs a 'path'"),
    ({}, [{"op": "add", "path": "/a"}], "needs a 'value'"),
    ({}, [{"op": "add", "path": 5, "value": 1}], "must be a string"),
    ({}, [{"op": "add", "path": "a", "value": 1}], "start with '/'"),
    ({}, [{"op": "add", "path": "/a~2", "value": 1}], "bad '~' escape"),
    ({}, [{"op": "add", "path": "/a~", "value": 1}], "bad '~' escape"),
    ({}, [{"op": "add", "path": "/a/b", "value": 1}], "not found"),
    ({"a": 1}, [{"op": "add", "path": "/a/b", "value": 1}], "cannot add"),
    ({"a": "s"}, [{"op": "add", "path": "/a/b/c", "value": 1}], "inside a str"),
    ({"a": [1]}, [{"op": "add", "path": "/a/2", "value": 1}], "out of range"),
    ({"a": [1]}, [{"op": "add", "path": "/a/01", "value": 1}], "not a list index"),
    ({"a": [1]}, [{"op": "add", "path": "/a/-1", "value": 1}], "not a list index"),
    ({"a": [1]}, [{"op": "add", "path": "/a/+1", "value": 1}], "not a list index"),
    ({"a": [1]}, [{"op": "add", "path": "/a/ 1", "value": 1}], "not a list index"),
    ({"a": [1]}, [{"op": "add", "path": "/a/\u0663", "value": 1}], "not a list index"),
    ({"a": [1]}, [{"op": "add", "path": "/a/" + "9" * 5000, "value": 1}], "out of range"),
    ({"a": [1]}, [{"op": "add", "path": "/a/x", "value": 1}], "not a list index"),
    ({"a": [1]}, [{"op": "add", "path": "/a/", "value": 1}], "not a list index"),
    ({}, [{"op": "remove", "path": "/a"}], "not found"),
    ({}, [{"op": "remove", "path": ""}], "whole document"),
    ({"a": []}, [{"op": "remove", "path": "/a/0"}], "out of range"),
    ({"a": [1]}, [{"op": "remove", "path": "/a/-"}], "only valid for add"),
    ({"a": 1}, [{"op": "remove", "path": "/a/b"}], "cannot remove"),
    ({}, [{"op": "replace", "path": "/a", "value": 1}], "not found"),
    ({"a": [1]}, [{"op": "replace", "path": "/a/1", "value": 1}], "out of range"),
    ({"a": [1]}, [{"op": "replace", "path": "/a/-", "value": 1}], "only valid for add"),
    ({"a": True}, [{"op": "replace", "path": "/a/0", "value": 1}], "cannot replace"),
    ({}, [{"op": "replace", "path": "/a"}], "needs a 'value'"),
    ({"a": {}}, [{"op": "move", "path": "/b"}], "needs a 'from'"),
    ({"a": {}}, [{"op": "move", "from": "/a", "path": "/a/b"}], "own children"),
    ({"a": {}}, [{"op": "move", "from": "/x", "path": "/b"}], "not found"),
    ({"a": {}}, [{"op": "move", "from": "/x", "path": "/x"}], "not found"),
    ({"a": {}}, [{"op": "move", "from": 3, "path": "/b"}], "must be a string"),
    ({"a": {}}, [{"op": "copy", "from": "/x", "path": "/b"}], "not found"),
    ({"a": {}}, [{"op": "copy", "from": "/a", "path": "/x/y"}], "not found"),
    ({"a": 1}, [{"op": "test", "path": "/a", "value": 2}], "test failed"),
    ({"a": 1}, [{"op": "test", "path": "/a", "value": True}], "test failed"),
    ({"a": [1]}, [{"op": "test", "path": "/a", "value": [1, 1]}], "test failed"),
    ({"a": 1}, [{"op": "test", "path": "/b", "value": 1}], "not found"),
    ({"a": 1}, [{"op": "test", "path": "/a"}], "needs a 'value'"),
]


@pytest.mark.parametrize(("doc", "patch", "message"), BAD_PATCHES)
def test_every_bad_patch_raises_patch_error_and_leaves_the_document_alone(doc, patch, message):
    before = canon(doc)
    with pytest.raises(PatchError, match=message) as caught:
        apply_patch(doc, patch)
    assert isinstance(caught.value, ValueError)
    assert canon(doc) == before


def test_a_failing_op_rolls_back_the_ops_before_it():
    doc = {"a": [1, 2, 3], "b": {"c": 1, "d": 2}, "e": "x"}
    before = canon(doc)
    patch = [
        {"op": "add", "path": "/a/0", "value": 0},
        {"op": "remove", "path": "/a/3"},
        {"op": "replace", "path": "/b/c", "value": [1]},
        {"op": "add", "path": "/b/c/-", "value": 2},
        {"op": "remove", "path": "/b/d"},
        {"op": "move", "from": "/e", "path": "/a/1"},
        {"op": "copy", "from": "/b", "path": "/f"},
        {"op": "add", "path": "/b/new", "value": 1},
        {"op": "replace", "path": "", "value": {"whole": 1}},
        {"op": "add", "path": "/whole2", "value": 1},
        {"op": "remove", "path": "/missing"},
    ]
    with pytest.raises(PatchError, match=r"^op 10 \(remove /missing\): member 'missing' not found$"):
        apply_patch(doc, patch)
    assert canon(doc) == before


def test_a_copy_bomb_is_refused_and_rolled_back():
    doc = {"x": list(range(100))}
    patch = [{"op": "copy", "from": "", "path": f"/c{i}"} for i in range(30)]
    with pytest.raises(PatchError, match="copies more than"):
        apply_patch(doc, patch)
    assert doc == {"x": list(range(100))}
    # A legitimate copy of a large value is fine.
    big = {"rows": [{"n": i, "tags": ["a", "b"]} for i in range(10_000)]}
    assert apply_patch(big, [{"op": "copy", "from": "/rows", "path": "/copy"}])["copy"] == big["rows"]


def test_error_messages_name_the_op_and_stay_short():
    with pytest.raises(PatchError) as caught:
        apply_patch({}, [{"op": "add", "path": "/a", "value": 1}, {"op": "remove", "path": "/" + "x" * 10_000}])
    assert str(caught.value).startswith("op 1 (remove /xxx")
    assert len(str(caught.value)) < 250


# ---------------------------------------------------------------------------------------------
# apply_patch: fuzzing


GARBAGE = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2))
ODD_POINTERS = st.sampled_from(
    ["", "/", "//", "/-", "/0", "/00", "/01", "/-1", "/1e2", "/ 1", "/~", "/~2", "/a~", "a", "-", "/\u0663", "/9" * 3,
     "/99999999999999999999999", "/a/b/c/d"]
)  # fmt: skip


@st.composite
def doc_and_patch(draw: st.DrawFn) -> tuple[Any, Any]:
    doc = draw(DOCS | st.builds(lambda v: {"v": v}, VALUES))
    pointers = st.sampled_from(all_pointers(doc)) | ODD_POINTERS | st.text(max_size=6)
    op = st.fixed_dictionaries(
        {},
        optional={
            "op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "nope"]) | GARBAGE,
            "path": pointers | GARBAGE,
            "from": pointers | GARBAGE,
            "value": VALUES,
        },
    )
    op = op | st.builds(
        lambda kind, path, frm, value: {"op": kind, "path": path, "from": frm, "value": value},
        st.sampled_from(["add", "remove", "replace", "move", "copy", "test"]),
        pointers,
        pointers,
        VALUES,
    )
    patch = draw(st.lists(op | GARBAGE, max_size=6) | GARBAGE)
    return doc, patch


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc_and_patch())
def test_apply_patch_raises_only_patch_error_and_rolls_back(case):
    doc, patch = case
    before = canon(doc)
    reference_doc = copy(doc)
    try:
        result = apply_patch(doc, patch)
    except PatchError as e:
        assert "internal error" not in str(e)
        assert canon(doc) == before
        outcome = None
        event("apply_patch: PatchError")
    else:
        outcome = canon(result)
        event("apply_patch: applied")
    # Without `test` (whose number rules differ: jsonpatch uses Python's ==), jsonpatch agrees.
    if isinstance(patch, list) and all(isinstance(op, dict) and op.get("op") != "test" for op in patch):
        try:
            reference = canon(jsonpatch.apply_patch(reference_doc, patch, in_place=True))
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
            reference = None
        except (TypeError, KeyError, IndexError, AttributeError, ValueError):
            event("jsonpatch crashed")
            return  # jsonpatch itself crashes on some garbage: nothing to compare
        event("compared with jsonpatch")
        assert outcome == reference
