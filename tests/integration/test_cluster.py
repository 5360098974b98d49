"""The whole cluster: real sync-router, sync-front and sync-worker processes, driven over websockets."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.integration.wsclient import RawClient, update_of

PRODUCERS = textwrap.dedent('''
    import json, os, pathlib, time
    from worker import Producer

    STATE = pathlib.Path(__file__).with_name("state")

    class Doc(Producer):
        """Data and version read from state/doc.json; the version names dependency "src"."""
        patterns = ["doc"]
        def produce(self, object_id):
            src = json.loads((STATE / "doc.json").read_text())
            return src["data"], {"src": src["version"]}

    class Item(Producer):
        patterns = ["item-*"]
        def produce(self, object_id):
            return {"id": object_id, "n": int(object_id.split("-")[1])}, 1

    class Slow(Producer):
        """The first production hangs (and records its pid so the test can kill it)."""
        patterns = ["slow"]
        def produce(self, object_id):
            marker = STATE / "slow.pid"
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                time.sleep(120)
            return {"done": True, "by": os.getpid()}, 1
''')


@pytest.fixture
def producers(tmp_path: Path) -> Path:
    (tmp_path / "state").mkdir()
    (tmp_path / "test_producers.py").write_text(PRODUCERS)
    write_doc(tmp_path, 1, {"rows": [{"id": i, "name": f"row {i}"} for i in range(20)]})
    return tmp_path


def write_doc(directory: Path, version: int, data: dict) -> None:
    tmp = directory / "state" / "doc.json.tmp"
    tmp.write_text(json.dumps({"version": version, "data": data}))
    tmp.replace(directory / "state" / "doc.json")


async def test_produce_on_subscribe_and_patch_on_dependency_change(cluster, producers):
    cluster.start_workers(producers, 1)
    async with RawClient(cluster.ws_url) as watcher, RawClient(cluster.ws_url, "app") as app:
        await watcher.send("object-consumer-register", pattern="doc", version_known=0)
        first = await watcher.expect(update_of("doc"))
        assert first["version-old"] == 0 and first["version-new"] == {"src": 1}
        assert first["value"]["rows"][3] == {"id": 3, "name": "row 3"}

        data = first["value"]
        data["rows"][3]["name"] = "changed"
        write_doc(producers, 2, data)
        await app.send("object-patch", id="src", version_new=2, value={})  # what a bump does
        second = await watcher.expect(update_of("doc"))
        assert second["version-old"] == {"src": 1} and second["version-new"] == {"src": 2}
        assert second["patch"] == [{"op": "replace", "path": "/rows/3/name", "value": "changed"}]


async def test_wildcard_family_and_destroy_on_last_unsubscribe(cluster, producers):
    cluster.start_workers(producers, 2)
    async with RawClient(cluster.ws_url) as c, RawClient(cluster.ws_url, "wild") as w:
        await w.send("object-consumer-register", pattern="item-*", version_known=0)
        for n in (1, 2, 3):
            await c.send("object-consumer-register", pattern=f"item-{n}", version_known=0)
        for n in (1, 2, 3):
            frame = await c.expect(update_of(f"item-{n}"))
            assert frame["value"] == {"id": f"item-{n}", "n": n}
        seen = {(await w.expect(lambda f: f.get("action") == "object-update"))["id"] for _ in range(3)}
        assert seen == {"item-1", "item-2", "item-3"}

        await c.send("object-consumer-unregister", pattern="item-2")
        destroyed = await w.expect(lambda f: f.get("action") == "object-destroy")
        assert destroyed["id"] == "item-2"
        # a later subscriber sees only the objects still alive
        async with RawClient(cluster.ws_url, "late") as late:
            await late.send("object-consumer-register", pattern="item-*", version_known=0)
            frames = await late.quiet(1.0)
            assert sorted(f["id"] for f in frames) == ["item-1", "item-3"]


async def test_worker_killed_mid_production_object_still_arrives(cluster, producers):
    cluster.start_workers(producers, 2)
    async with RawClient(cluster.ws_url) as c:
        await c.send("object-consumer-register", pattern="slow", version_known=0)
        marker = producers / "state" / "slow.pid"
        deadline = time.monotonic() + 30
        while not marker.exists() or not marker.read_text():
            assert time.monotonic() < deadline, cluster.logs()
            time.sleep(0.1)
        hung_pid = int(marker.read_text())
        os.kill(hung_pid, signal.SIGKILL)
        frame = await c.expect(update_of("slow"), timeout=30)
        assert frame["value"]["done"] is True and frame["value"]["by"] != hung_pid


async def test_front_restarted_clients_resync_from_known_version(cluster, producers):
    cluster.start_workers(producers, 1)
    async with RawClient(cluster.ws_url) as c:
        await c.send("object-consumer-register", pattern="doc", version_known=0)
        first = await c.expect(update_of("doc"))
    cluster.front.kill()
    cluster.front.popen.wait()
    cluster.start_front()
    async with RawClient(cluster.ws_url) as c, RawClient(cluster.ws_url, "app") as app:
        # holding the current version: nothing is resent
        await c.send("object-consumer-register", pattern="doc", version_known=first["version-new"])
        assert await c.quiet(1.0) == []
        data = first["value"]
        data["rows"].append({"id": 20, "name": "new"})
        write_doc(producers, 2, data)
        await app.send("object-patch", id="src", version_new=2, value={})
        frame = await c.expect(update_of("doc"))
        assert frame["version-old"] == {"src": 1}
        assert frame["patch"] == [{"op": "add", "path": "/rows/20", "value": {"id": 20, "name": "new"}}]


async def test_producer_file_dropped_in_while_running(cluster, producers):
    cluster.start_workers(producers, 1)
    async with RawClient(cluster.ws_url) as c:
        await c.send("object-consumer-register", pattern="fresh", version_known=0)
        await c.send("object-consumer-register", pattern="doc", version_known=0)
        await c.expect(update_of("doc"))  # the pool is up and registered
        (producers / "fresh_one.py").write_text(textwrap.dedent('''
            from worker import Producer
            class Fresh(Producer):
                patterns = ["fresh"]
                def produce(self, object_id):
                    return {"hello": "from a new file"}, 7
        '''))
        frame = await c.expect(update_of("fresh"), timeout=30)
        assert frame["value"] == {"hello": "from a new file"} and frame["version-new"] == 7


async def test_bad_frames_get_errors_and_change_nothing(cluster, producers):
    cluster.start_workers(producers, 1)
    async with RawClient(cluster.ws_url) as c:
        await c._ws.send("{not json")
        err = await c.expect(lambda f: f.get("action") == "error")
        assert "JSON" in err["message"]
        await c.send("object-teleport", id="x")
        err = await c.expect(lambda f: f.get("action") == "error")
        assert "unknown action" in err["message"]
        await c.send("object-consumer-register", pattern="doc", version_known=0)
        assert (await c.expect(update_of("doc")))["version-new"] == {"src": 1}
    assert cluster.router.alive() and cluster.front.alive()


async def test_router_restarted_fronts_and_workers_reconnect_clients_resync(cluster, producers):
    from common.client import Client

    cluster.start_workers(producers, 1)
    async with Client(cluster.ws_url, name="survivor", reconnect_delay=0.2) as client:
        doc = client.consume("doc")
        await doc.wait(timeout=30)
        assert doc.version == {"src": 1}
        cluster.router.kill()  # SIGKILL: all state is gone
        cluster.router.popen.wait()
        cluster.start_router()
        # the new router knows nothing: the front closes its websockets (1012), the client reconnects
        # and re-registers with the version it holds; the worker re-registers its producers.
        data = dict(doc.value)
        data["rows"] = data["rows"] + [{"id": 99, "name": "after restart"}]
        write_doc(producers, 2, data)
        deadline = time.monotonic() + 60
        while doc.version != {"src": 2}:
            assert time.monotonic() < deadline, cluster.logs()
            # The front may close this connection too (1012) if it notices the restart only now: retry.
            try:
                async with RawClient(cluster.ws_url, "app") as app:
                    await app.send("object-patch", id="src", version_new=2, value={})  # not newer: ignored
                    await doc.wait(lambda value: value["rows"][-1]["id"] == 99, timeout=2)
            except (ConnectionClosed, TimeoutError):
                pass
        assert doc.value["rows"][-1] == {"id": 99, "name": "after restart"}
        assert doc.valid
