"""The rules of a collection update (shared-state's table), written once in common/collection.py."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from common.collection import Change, UpdateError, apply_update, changes, check_update

A, B, C = {"id": "a", "v": 1}, {"id": "b", "v": 2}, {"id": "c", "v": 3}
BASE = {"a": A, "b": B}

# shared-state's update table: (update fields, resulting value)
TABLE = [
    ("noop", {}, BASE),
    ("insert", {"insert": [C]}, {"a": A, "b": B, "c": C}),
    ("insert replaces the item of its id", {"insert": [{"id": "a", "v": 9}]}, {"a": {"id": "a", "v": 9}, "b": B}),
    ("remove", {"remove": ["a"]}, {"b": B}),
    ("remove an id that is not there", {"remove": ["zz"]}, BASE),
    ("remove runs before insert", {"remove": ["a"], "insert": [{"id": "a", "v": 5}]}, {"b": B, "a": {"id": "a", "v": 5}}),
    ("reset", {"reset": True}, {}),
    ("reset ignores remove", {"reset": True, "remove": ["c"], "insert": [C]}, {"c": C}),
    ("reset + insert", {"reset": True, "insert": [A, C]}, {"a": A, "c": C}),
]


@pytest.mark.parametrize("name,fields,expected", TABLE, ids=[row[0] for row in TABLE])
def test_update_table(name: str, fields: dict, expected: dict) -> None:
    before = {k: dict(v) for k, v in BASE.items()}
    update = check_update(fields.get("insert"), fields.get("remove"), fields.get("reset", False))
    assert apply_update(BASE, update) == expected
    assert BASE == before  # the old value is never changed: a failed write leaves nothing behind
    assert update.empty == (name == "noop")


@pytest.mark.parametrize("fields,code", [
    ({"insert": [{"v": 1}]}, "invalid-item"),
    ({"insert": [{"id": 7}]}, "invalid-item"),
    ({"insert": [{"id": ""}]}, "invalid-item"),
    ({"insert": ["a"]}, "invalid-item"),
    ({"remove": [None]}, "invalid-item"),
    ({"insert": {"id": "a"}}, "invalid-update"),
    ({"remove": "a"}, "invalid-update"),
    ({"reset": 1}, "invalid-update"),
    ({"insert": [{"id": str(i)} for i in range(10_001)]}, "update-too-large"),
])
def test_bad_updates_are_refused_with_a_code(fields: dict, code: str) -> None:
    with pytest.raises(UpdateError) as info:
        check_update(fields.get("insert"), fields.get("remove"), fields.get("reset", False))
    assert info.value.code == code


def test_changes_name_each_item_once() -> None:
    new = {"b": {"id": "b", "v": 20}, "c": C}
    assert list(changes(BASE, new)) == [Change("a", None, A), Change("b", new["b"], B), Change("c", C, None)]
    assert list(changes(BASE, BASE)) == []
    assert list(changes(None, {"a": A})) == [Change("a", A, None)]


items = st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 3)).map(
    lambda d: {k: {"id": k, "v": v} for k, v in d.items()})


@given(items, st.lists(st.sampled_from("abcdef")), st.lists(st.sampled_from("abcdef")), st.booleans())
def test_changes_replay_to_the_new_value(old: dict, insert: list, remove: list, reset: bool) -> None:
    new = apply_update(old, check_update([{"id": i, "v": 9} for i in insert], remove, reset))
    replayed = dict(old)
    for change in changes(old, new):
        if change.new is None:
            del replayed[change.id]
        else:
            replayed[change.id] = change.new
    assert replayed == new


def test_the_wire_form_is_checked_whole_at_parse() -> None:
    from common import codec, protocol
    frame = protocol.collection_update("items/x", insert=[A], remove=["b"], ref={"n": 1})
    assert protocol.parse(codec.dumps(frame)) == frame
    for bad, code in [({**frame, "insert": [{"v": 1}]}, "invalid-item"), ({**frame, "id": "items/*"}, "invalid-id"),
                      ({**frame, "ref": "x" * 2000}, "ref-too-large")]:
        with pytest.raises(protocol.ProtocolError) as info:
            protocol.parse(codec.dumps(bad))
        assert info.value.code == code


@given(st.lists(st.tuples(st.lists(st.sampled_from("abcde"), max_size=4), st.lists(st.sampled_from("abcde"), max_size=3),
                          st.booleans(), st.integers(0, 9)), min_size=1, max_size=12))
def test_undo_rebuilds_every_earlier_value(steps):
    """Applying the undos of the later updates, newest first, to the last value gives each earlier value."""
    from common.collection import apply_undo, undo_of
    values, undos = [{}], []
    for inserted, removed, reset, n in steps:
        update = check_update(insert=[{"id": i, "n": n} for i in inserted], remove=removed, reset=reset)
        undos.append(undo_of(values[-1], update))
        values.append(apply_update(values[-1], update))
    rebuilt = values[-1]
    for back in range(len(undos) - 1, -1, -1):
        rebuilt = apply_undo(rebuilt, undos[back])
        assert rebuilt == values[back]
