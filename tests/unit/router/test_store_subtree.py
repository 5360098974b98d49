"""Subtree subscriptions in the store (issue 17 item 1): a consumer registered with a ``path`` holds that
subtree; an update not touching it is not sent (its held version still advances); frames are computed once
per (version, held version, path) and shared by every session with that path."""

from __future__ import annotations

import orjson

from tests.unit.router.harness import Harness

ROWS = {"rows": [{"n": i} for i in range(5)], "title": "t"}


def start(h: Harness, *paths, version_known=0):
    m = h.client("m")
    h.send(m, "object-producer-register", pattern="big")
    clients = []
    for i, path in enumerate(paths):
        c = h.client(f"c{i}")
        fields = {"path": path} if path is not None else {}
        h.send(c, "object-consumer-register", pattern="big", version_known=version_known, **fields)
        clients.append(c)
    h.take(m)
    return m, clients


def upload(h, m, version, value):
    h.send(m, "object-patch", id="big", version_new=version, value=value)


def test_each_client_gets_its_subtree_and_only_its_changes():
    h = Harness(retain=8)
    m, (c1, c3, whole) = start(h, "/rows/1", "/rows/3", None)
    upload(h, m, 1, ROWS)
    assert h.take(c1) == [{"action": "object-update", "id": "big", "path": "/rows/1", "version-old": 0,
                           "version-new": 1, "value": {"n": 1}}]
    assert h.take(c3)[0]["value"] == {"n": 3} and h.take(whole)[0]["value"] == ROWS
    changed = orjson.loads(orjson.dumps(ROWS))
    changed["rows"][3]["n"] = 33
    upload(h, m, 2, changed)
    assert h.take(c1) == []  # row 1 untouched: nothing sent
    assert h.take(c3) == [{"action": "object-update", "id": "big", "path": "/rows/3", "version-old": 1,
                           "version-new": 2, "patch": [{"op": "replace", "path": "/n", "value": 33}]}]
    assert len(h.take(whole)) == 1
    changed["rows"][1]["n"] = 11
    upload(h, m, 3, changed)
    # c1 holds version 2 (advanced with nothing sent): its patch is from 2
    assert h.take(c1) == [{"action": "object-update", "id": "big", "path": "/rows/1", "version-old": 2,
                           "version-new": 3, "patch": [{"op": "replace", "path": "/n", "value": 11}]}]


def test_an_absent_subtree_is_null_and_an_ancestor_replaced_is_a_whole_replacement():
    h = Harness()
    m, (c,) = start(h, "/rows/9")
    upload(h, m, 1, ROWS)
    assert h.take(c)[0]["value"] is None
    upload(h, m, 2, {"rows": [{"n": i} for i in range(10)]})
    (frame,) = h.take(c)
    assert frame["version-old"] == 1 and frame["patch"] == [{"op": "replace", "path": "", "value": {"n": 9}}]
    upload(h, m, 3, {})
    assert h.take(c)[0]["patch"] == [{"op": "replace", "path": "", "value": None}]


def test_one_frame_per_path_shared_and_a_new_register_replaces_the_path():
    h = Harness()
    m, (a, b) = start(h, "/rows/2", "/rows/2")
    upload(h, m, 1, ROWS)
    h.route()
    assert h.take(a) == h.take(b)
    changed = orjson.loads(orjson.dumps(ROWS))
    changed["rows"][2]["n"] = 22
    h.store.handle_raw(m, orjson.dumps({"action": "object-patch", "id": "big", "version-new": 2, "value": changed}),
                       h.store.now)
    (delivery,) = [d for d in h.store.take_outbox() if a in d[1]]
    assert set(delivery[1]) == {a, b}  # one frame, both sessions
    h.send(a, "object-consumer-register", pattern="big", version_known=0, path="/title")
    assert h.take(a)[0]["value"] == "t"
    h.send(a, "object-consumer-register", pattern="big", version_known=0)
    assert h.take(a)[0]["value"] == changed  # without a path: the whole object again


def test_resync_with_the_version_held_gets_nothing_or_a_patch():
    h = Harness(retain=8)
    m, (c,) = start(h, "/rows/1")
    upload(h, m, 1, ROWS)
    h.take(c)
    back = h.client("back")
    h.send(back, "object-consumer-register", pattern="big", version_known=1, path="/rows/1")
    assert h.take(back) == []  # current
    changed = orjson.loads(orjson.dumps(ROWS))
    changed["rows"][1]["n"] = 7
    upload(h, m, 2, changed)
    late = h.client("late")
    h.send(late, "object-consumer-register", pattern="big", version_known=1, path="/rows/1")
    assert h.take(late)[0]["patch"] == [{"op": "replace", "path": "/n", "value": 7}]


def test_a_path_needs_an_exact_id_and_a_pointer():
    h = Harness()
    c = h.client("c")
    h.send(c, "object-consumer-register", pattern="big*", path="/rows/1")
    h.send(c, "object-consumer-register", pattern="big", path="rows")
    codes = [f["code"] for f in h.take(c)]
    assert codes == ["path-with-pattern", "invalid-path"]
    assert "big*" not in c.consumes and "big" not in c.consumes



def test_introspection_shows_the_paths_watched():
    from router.introspection import Introspection
    h = Harness()
    m, (c, whole) = start(h, "/rows/1", None)
    connections = Introspection(h.store, ("", "introspection"), 1, lambda s: "peer")._connections(0.0)
    assert connections[str(c.index)]["paths"] == {"big": "/rows/1"}
    assert "paths" not in connections[str(whole.index)]


def test_a_subtree_and_the_whole_object_follow_the_same_patch_or_value_rule():
    """From a retained version: a patch, unless it is no smaller than the value and the value is not small
    (PATCH_ALWAYS_BELOW); the same for a subtree as for the whole object (both subscriptions see the same
    document when the path is the root of what changed)."""
    from router.store import PATCH_ALWAYS_BELOW

    h = Harness(retain=8)
    m, (sub, whole) = start(h, "/doc", None)
    small = {"doc": {"k": "a"}}
    upload(h, m, 1, small)
    h.take(sub), h.take(whole)
    upload(h, m, 2, {"doc": {"k": "b"}})  # small values: patches, whatever their size
    assert "patch" in h.take(sub)[0] and "patch" in h.take(whole)[0]
    big = {"doc": {f"k{i}": "x" * 20 for i in range(PATCH_ALWAYS_BELOW // 10)}}
    upload(h, m, 3, big)
    h.take(sub), h.take(whole)
    replaced = {"doc": {f"j{i}": "y" * 20 for i in range(PATCH_ALWAYS_BELOW // 10)}}  # every key replaced
    upload(h, m, 4, replaced)
    to_sub, to_whole = h.take(sub)[0], h.take(whole)[0]
    assert to_sub["value"] == replaced["doc"] and to_whole["value"] == replaced  # the values, not patches
    nudged = {"doc": {**replaced["doc"], "j0": "z"}}
    upload(h, m, 5, nudged)
    assert "patch" in h.take(sub)[0] and "patch" in h.take(whole)[0]  # a small change of a big value: patches
