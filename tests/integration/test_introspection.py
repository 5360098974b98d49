"""The router's introspection objects, watched over the normal protocol like any object."""

from __future__ import annotations

import pytest

from tests.cluster import Cluster
from tests.integration.wsclient import RawClient, update_of

pytestmark = pytest.mark.asyncio


@pytest.fixture
def fixed_session_cluster():
    c = Cluster()
    try:
        c.start_router(env={"SEAPIG_SERVER_SESSION": "1"})
        c.start_front()
        yield c
    finally:
        c.stop()


def apply(value: dict, frame: dict) -> dict:
    from common.diff import apply_patch
    return frame["value"] if "value" in frame else apply_patch(value, frame["patch"])


async def test_objects_and_connections_follow_the_store(fixed_session_cluster):
    cluster = fixed_session_cluster
    async with RawClient(cluster.ws_url, "viewer") as viewer, RawClient(cluster.ws_url, "app") as app:
        await viewer.send("object-consumer-register", pattern="SeapigServer::Objects", version_known=0)
        first = await viewer.expect(update_of("SeapigServer::Objects"))
        assert first["version-new"] == [1, 0]  # seapig's [session, counter]
        assert list(first["value"]) == ["SeapigServer::Objects"]  # itself, as seapig lists it

        await app.send("object-producer-register", pattern="thing")
        await app.send("object-consumer-register", pattern="thing", version_known=0)
        await app.expect(lambda f: f.get("action") == "object-produce")
        objects = first["value"]
        while "thing" not in objects:
            objects = apply(objects, await viewer.expect(update_of("SeapigServer::Objects")))
        entry = objects["thing"]
        assert entry["state"] == {"current": False, "producing": True}
        assert entry["consumers"] == entry["producers"] and entry["consumers"][0].startswith("app:")

        await app.send("object-patch", id="thing", version_new=3, value={"a": 1})
        while objects["thing"]["version_highest_known"] != 3:
            objects = apply(objects, await viewer.expect(update_of("SeapigServer::Objects")))
        assert objects["thing"]["state"] == {"current": True}
        assert objects["thing"]["productions"] == 1 and objects["thing"]["size"] == len(b'{"a":1}')

        await viewer.send("object-consumer-register", pattern="SeapigServer::Connections", version_known=0)
        connections = (await viewer.expect(update_of("SeapigServer::Connections")))["value"]
        names = {c["options"].get("name") for c in connections.values()}
        assert {"viewer", "app", "SeapigInternalClient"} <= names
        conn, entry = next((k, c) for k, c in connections.items() if c["options"].get("name") == "app")
        # the shape seapig's viewer reads (its Connections tab): connection -> clients -> registrations
        assert connections[conn]["clients"][entry["id"]]["consumes"] == ["thing"]
        assert connections[conn]["clients"][entry["id"]]["produces"] == ["thing"]

        await app.send("object-consumer-unregister", pattern="thing")
        while "thing" in objects:
            objects = apply(objects, await viewer.expect(update_of("SeapigServer::Objects")))


async def test_workers_report_their_process(cluster, tmp_path):
    (tmp_path / "p.py").write_text(
        "from worker import Producer\n"
        "class P(Producer):\n    patterns = ['p']\n"
        "    def produce(self, object_id):\n        return {}, 1\n")
    pool = cluster.start_workers(tmp_path, 2)
    async with RawClient(cluster.ws_url, "viewer") as viewer:
        await viewer.send("object-consumer-register", pattern="SeasyncServer::Workers", version_known=0)
        workers = (await viewer.expect(update_of("SeasyncServer::Workers")))["value"]
        while len([w for w in workers.values() if w["pid"]]) < 2:
            workers = apply(workers, await viewer.expect(update_of("SeasyncServer::Workers")))
        for w in workers.values():
            assert w["pid"] != pool.pid and w["rss"] > 0 and w["host"]
        assert all(w["producing"] is None for w in workers.values())


async def test_introspection_ids_are_reserved_for_the_router(cluster):
    async with RawClient(cluster.ws_url, "viewer") as viewer, RawClient(cluster.ws_url, "mallory") as mallory:
        await mallory.send("object-producer-register", pattern="*")
        await viewer.send("object-consumer-register", pattern="SeapigServer::Statistics", version_known=0)
        first = await viewer.expect(update_of("SeapigServer::Statistics"))
        await mallory.send("object-patch", id="SeapigServer::Statistics", version_new=[9e15, 0], value={"fake": 1})
        refused = await mallory.expect(lambda f: f.get("action") == "error")
        assert "produced by the router" in refused["message"]
        assert all(f.get("action") != "object-produce" for f in mallory.frames)  # "*" is never asked for it
        # the router's own refreshes still arrive
        later = await viewer.expect(update_of("SeapigServer::Statistics"))
        assert later["version-new"][0] == first["version-new"][0]
