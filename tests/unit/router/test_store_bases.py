"""Earlier versions after a restart (issue 15): an order names the versions its watchers hold when the object
retains nothing (``versions-held``); a worker's answer may carry their data (``bases``), which the store keeps
as history so those watchers get a patch. Never from a websocket session, never once history exists."""

from __future__ import annotations

from tests.unit.router.harness import Harness


def setup(h: Harness, held: list[int], producer_is_client: bool = False):
    watchers = []
    for i, version in enumerate(held):  # watchers first: the object is spawned and ordered when a producer comes
        c = h.client(f"c{i}")
        h.send(c, "object-consumer-register", pattern="items/a", version_known=version)
        watchers.append(c)
    worker = h.open("w", guarded=producer_is_client)
    h.send(worker, "client-options-set", options={"name": "w"})
    h.send(worker, "object-producer-register", pattern="items/*")
    return worker, watchers


def test_the_order_names_the_versions_held_and_bases_turn_into_patches():
    h = Harness()
    worker, (c1, c2, c3) = setup(h, [3, 2, 0])
    (order,) = h.take(worker)
    assert order["action"] == "object-produce" and sorted(order["versions-held"]) == [2, 3]
    h.send(worker, "object-patch", id="items/a", version_new=4, value={"a": 1, "b": 2, "c": 3},
           bases=[{"version": 2, "value": {"a": 1}}, {"version": 3, "value": {"a": 1, "b": 2}}])
    assert h.take(c1) == [{"action": "object-update", "id": "items/a", "version-old": 3, "version-new": 4,
                           "patch": [{"op": "add", "path": "/c", "value": 3}]}]
    (update,) = h.take(c2)
    assert update["version-old"] == 2 and len(update["patch"]) == 2
    assert h.take(c3)[0]["value"] == {"a": 1, "b": 2, "c": 3}


def test_no_hint_and_no_base_once_the_object_retains_history():
    h = Harness()
    worker, (c1,) = setup(h, [3])
    h.take(worker)
    h.send(worker, "object-patch", id="items/a", version_new=4, value={"a": 1})
    h.take(c1)
    late = h.client("late")
    h.send(late, "object-consumer-register", pattern="items/a", version_known=2)
    assert h.take(late)[0]["value"] == {"a": 1}  # 2 is not retained: the value, as always
    n = h.client("n")
    h.send(n, "object-patch", id="items/a", version_new=5, value=True)  # announce: ordered again
    (order,) = h.take(worker)
    assert "versions-held" not in order  # the object retains version 4: nothing to rebuild
    h.send(worker, "object-patch", id="items/a", version_new=5, value={"a": 2},
           bases=[{"version": 3, "value": {"x": 1}}])
    assert h.take(c1)[0]["version-old"] == 4  # the base was not adopted: the patch is from what c1 holds


def test_bases_from_a_websocket_session_are_ignored():
    h = Harness()
    master, (c1,) = setup(h, [3], producer_is_client=True)
    h.take(master)
    h.send(master, "object-patch", id="items/a", version_new=4, value={"a": 1, "evil": True},
           bases=[{"version": 3, "value": {"evil": True}}])
    assert h.take(c1)[0]["value"] == {"a": 1, "evil": True}  # the whole value: a base could lie to c1


def test_bases_out_of_order_or_not_older_are_cut():
    h = Harness()
    worker, (c1, c2) = setup(h, [3, 5])
    h.take(worker)
    h.send(worker, "object-patch", id="items/a", version_new=4, value={"a": 1},
           bases=[{"version": 3, "value": {}}, {"version": 5, "value": {"a": 9}}])
    assert h.take(c1)[0]["value"] == {"a": 1}  # the newest base is not older than 4: none kept below it
    assert h.take(c2)[0]["value"] == {"a": 1}


def test_a_malformed_bases_is_refused_with_a_code():
    h = Harness()
    worker, (c1,) = setup(h, [3])
    h.take(worker)
    h.send(worker, "object-patch", id="items/a", version_new=4, value={"a": 1}, bases=[{"version": 3}])
    (error,) = h.take(worker)
    assert error["action"] == "error" and error["code"] == "invalid-bases"
    assert [m["action"] for m in h.take(c1)] == ["error"]  # told the production failed; no update
