"""Wasted productions (issue 17 item 3) through a real router and front: a producer uploading the same data
with a new version is counted in introspection and in /metrics; with ``--skip-unchanged`` its watcher gets
nothing for it, and the next real change arrives as a patch from the version the watcher holds."""

from __future__ import annotations

import copy

import pytest

from common.diff import apply_patch
from tests.cluster import Cluster, free_port, wait_port
from tests.integration.test_metrics import scrape_until
from tests.integration.wsclient import RawClient, update_of

pytestmark = pytest.mark.asyncio

OBJECTS = "SeapigServer::Objects"
STATISTICS = "SeasyncServer::Statistics"


def apply(value: dict, frame: dict) -> dict:
    return frame["value"] if "value" in frame else apply_patch(copy.deepcopy(value), frame["patch"])


async def follow(viewer: RawClient, object_id: str, value: dict, until) -> dict:
    """Apply updates of an introspection object until ``until(value)``."""
    while not until(value):
        value = apply(value, await viewer.expect(update_of(object_id)))
    return value


async def run(skip: bool) -> tuple[list[dict], dict, dict, dict[str, float]]:
    """Producer uploads v1, v2 (same data), v3 (changed); returns the watcher's updates, its final value,
    the object's and the statistics' introspection entries, and the metrics once they count it."""
    port = free_port()
    cluster = Cluster()
    try:
        cluster.start_router("--metrics-port", str(port), *(["--skip-unchanged"] if skip else []))
        cluster.start_front()
        wait_port(port)
        async with RawClient(cluster.ws_url, "producer") as p, RawClient(cluster.ws_url, "watcher") as w, \
                RawClient(cluster.ws_url, "viewer") as viewer:
            await p.send("object-producer-register", pattern="doc")
            await w.send("object-consumer-register", pattern="doc", version_known=0)
            await p.expect(lambda f: f.get("action") == "object-produce")
            await p.send("object-patch", id="doc", version_new=1, value={"rows": [1, 2, 3], "title": "t"})
            first = await w.expect(update_of("doc"))
            await p.send("object-patch", id="doc", version_new=2, value={"rows": [1, 2, 3], "title": "t"})
            await p.send("object-patch", id="doc", version_new=3, value={"rows": [1, 2, 3, 4], "title": "t"})
            updates = [first]
            value = first["value"]
            while value.get("rows") != [1, 2, 3, 4]:  # in order: the router keeps a session's frames in order
                frame = await w.expect(update_of("doc"))
                assert "patch" in frame and frame["version-old"] == updates[-1]["version-new"], frame
                value = apply(value, frame)
                updates.append(frame)

            await viewer.send("object-consumer-register", pattern=OBJECTS, version_known=0)
            objects = await follow(viewer, OBJECTS, (await viewer.expect(update_of(OBJECTS)))["value"],
                                   lambda v: v.get("doc", {}).get("version_highest_known") == 3)
            await viewer.send("object-consumer-register", pattern=STATISTICS, version_known=0)
            stats = await follow(viewer, STATISTICS, (await viewer.expect(update_of(STATISTICS)))["value"],
                                 lambda v: v.get("unchanged") == 1)
            metrics = scrape_until(port, lambda m: m.get("seasync_productions_unchanged_total") == 1)
            return updates, value, objects["doc"], {**stats, **metrics}
    finally:
        cluster.stop()


async def test_an_unchanged_production_is_counted_and_by_default_sent_as_an_empty_patch():
    updates, value, entry, seen = await run(skip=False)
    assert [(u.get("version-old"), u["version-new"], u.get("patch")) for u in updates[1:]] == [
        (1, 2, []), (2, 3, [{"op": "add", "path": "/rows/3", "value": 4}])]
    assert value == {"rows": [1, 2, 3, 4], "title": "t"}
    assert entry["unchanged"] == 1 and entry["productions"] == 1  # one answered order, three uploads
    assert seen["unchanged"] == 1  # SeasyncServer::Statistics: the total
    assert seen["seasync_productions_unchanged_total"] == 1


async def test_with_skip_unchanged_the_watcher_gets_nothing_for_it_and_the_next_change_applies():
    updates, value, entry, seen = await run(skip=True)
    [first, change] = updates
    assert first["version-new"] == 1
    assert (change["version-old"], change["version-new"]) == (1, 3)  # from what it holds: 2 was never sent
    assert value == {"rows": [1, 2, 3, 4], "title": "t"}
    assert entry["unchanged"] == 1
    assert seen["seasync_productions_unchanged_total"] == 1
