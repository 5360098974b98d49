"""What one new object costs the store as the number of exact-id registrations grows (docs/SCALING.md).

Counted, not timed: the pattern matches a spawn performs. The store's own comment says lookups by id
stay O(distinct wildcard patterns); scripts/bench/bench_capacity.py found the spawn path scanning every
distinct pattern, exact ids included, so building N watched objects is O(N^2) (100,000 objects: ~20 min
of router CPU). Now ``_spawn`` looks exact ids up by key and matches only the wildcards.
"""

from __future__ import annotations

import orjson

import router.store as store_module
from router.store import ObjectStore


def _register(store: ObjectStore, session, pattern: str) -> None:
    store.handle_raw(session, orjson.dumps({"action": "object-consumer-register", "pattern": pattern,
                                            "version-known": 0}), 0.0)


def test_a_new_object_costs_matches_of_the_wildcards_not_of_every_exact_id(monkeypatch):
    store = ObjectStore()
    producer = store.open("p")  # without a producer an object nobody can make is not kept
    store.handle_raw(producer, orjson.dumps({"action": "object-producer-register", "pattern": "obj-*"}), 0.0)
    consumer = store.open("c")
    for i in range(2000):
        _register(store, consumer, f"obj-{i}")
    _register(store, consumer, "other-*")  # one wildcard
    calls = 0
    real = store_module.matches

    def counting(pattern: str, object_id: str) -> bool:
        nonlocal calls
        calls += 1
        return real(pattern, object_id)

    monkeypatch.setattr(store_module, "matches", counting)
    _register(store, consumer, "obj-new")  # spawns one object
    assert "obj-new" in store.objects
    assert calls <= 10, f"{calls} pattern matches for one new object (2,000 exact ids, 2 wildcards registered)"
