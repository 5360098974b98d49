"""The store's memory per live object (issue 13 item 2, "router memory"): measured with tracemalloc.

Not a timing assertion: bytes allocated by the store for objects it keeps, on any machine.
"""

from __future__ import annotations

import gc
import tracemalloc

import orjson

from router.store import ObjectStore, kept

OBJECTS = 300


def _live_objects(store: ObjectStore, n: int, updates: int) -> None:
    """``n`` objects, each watched by its own client and uploaded ``updates`` times by one master."""
    master = store.open("master")
    for i in range(n):
        oid = f"o-{i}"
        client = store.open(f"c{i}")
        store.handle_raw(client, orjson.dumps({"action": "object-consumer-register", "pattern": oid,
                                               "version-known": 0}), 0.0)
        for v in range(1, updates + 1):
            store.handle_raw(master, orjson.dumps({"action": "object-patch", "id": oid, "version-new": v,
                                                   "value": {"id": oid, "n": v}}), 0.0)
        store.take_outbox()


def _bytes_per_object(updates: int) -> float:
    store = ObjectStore()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _live_objects(store, OBJECTS, updates)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(store.objects) == OBJECTS
    return (after - before) / OBJECTS


def test_a_small_live_object_costs_far_less_than_an_encoder_buffer():
    """orjson hands back its (4 KiB) output buffer: the frames an object keeps (its latest value, its patch
    from the version its watchers held) must be kept at their own size, or each costs 4 KiB."""
    # an object, its session and its subscription: about 3 KB; with orjson's buffers kept, 6 KB and 10 KB
    assert _bytes_per_object(updates=1) < 4000
    assert _bytes_per_object(updates=3) < 4500


def test_kept_frames_are_equal_copies():
    frame = orjson.dumps({"action": "object-update", "id": "x", "version-new": 1, "value": {}})
    copy = kept(frame)
    assert copy == frame and type(copy) is bytes
