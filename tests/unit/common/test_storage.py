"""Collection storage on a real SQLite file (PostgreSQL: tests/integration/test_collections_postgres.py): the
undo rows that rebuild earlier versions, their bounds, and what cannot be rebuilt."""

from __future__ import annotations

import pytest

from common.collection import check_update
from common.storage import base
from common.storage.sqlite import SqliteStore


@pytest.fixture
def store(tmp_path) -> SqliteStore:
    return SqliteStore(str(tmp_path / "c.sqlite3"))


def write(store, **update) -> int:
    return store.apply("items/x", check_update(**update), ticket=None)[0]


def test_every_recent_version_can_be_rebuilt(store):
    values = {1: {}}
    for n in range(6):
        version = write(store, insert=[{"id": f"i{n}", "n": n}], remove=[f"i{n - 2}"])
        values[version] = store.read("items/x")[1]
    version = write(store, reset=True, insert=[{"id": "z"}])
    values[version] = store.read("items/x")[1]
    current, items, found = store.values_at("items/x", list(values) + [99, -1, "x"])
    assert current == version and items == values[version]
    assert found == {v: values[v] for v in values if v < version}


def test_nothing_older_than_a_gap_or_a_too_large_undo(store, monkeypatch):
    monkeypatch.setattr(base, "UNDO_KEPT", 3)
    for n in range(6):
        write(store, insert=[{"id": f"i{n}"}])  # versions 2..7; undo rows kept: 5, 6, 7
    assert sorted(store.values_at("items/x", [2, 3, 4, 5, 6])[2]) == [4, 5, 6]
    monkeypatch.setattr(base, "MAX_UNDO_BYTES", 10)
    write(store, reset=True)  # version 8: its undo (every item) is too large to keep
    write(store, insert=[{"id": "a"}])  # version 9
    assert sorted(store.values_at("items/x", [6, 7, 8])[2]) == [8]
