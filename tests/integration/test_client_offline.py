"""The Python client offline (issue 14): persisted state in ``state_dir``, ``.stale``, masters that catch up.

Real processes: the cluster (router + front) is stopped and started again by the test; the client that
starts while the server is down is a second process sharing the first one's ``state_dir``
(tests/integration/offline_client.py, which prints its consumer's state as JSON lines).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from common.client import Client
from tests.cluster import Cluster

WAIT = 30.0  # generous: a loaded 2-core machine
REPO = Path(__file__).resolve().parents[2]


def stop_cluster(cluster: Cluster) -> None:
    assert cluster.front is not None and cluster.router is not None
    cluster.front.stop()
    cluster.router.stop()


def start_cluster(cluster: Cluster) -> None:
    cluster.start_router()
    cluster.start_front()


async def wait_for(check, what: str) -> None:
    async with asyncio.timeout(WAIT):
        while not check():
            await asyncio.sleep(0.05)


class Lines:
    """The JSON lines a child process prints, read with a deadline."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def next(self) -> dict:
        assert self.proc.stdout is not None
        async with asyncio.timeout(WAIT):
            line = await self.proc.stdout.readline()
        assert line, "the offline client exited early"
        return json.loads(line)

    async def until(self, predicate) -> dict:
        while True:
            state = await self.next()
            if predicate(state):
                return state


async def test_restart_offline_sees_persisted_state_then_catches_up_with_a_patch(cluster, tmp_path):
    owner = Client(cluster.ws_url, name="owner", reconnect_delay=0.2, max_reconnect_delay=0.5)
    await owner.connect()
    doc = owner.master("doc", value={"n": 1, "text": "x" * 300}, version=[1, 0])
    first = Client(cluster.ws_url, name="dash", state_dir=tmp_path)
    await first.connect()
    await first.consume("doc").wait(lambda v: v["n"] == 1, timeout=WAIT)
    await first.close()  # exits: its state is on disk

    stop_cluster(cluster)
    await wait_for(lambda: not owner.connected, "the owner to see the cluster go")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("offline_client.py")), cluster.ws_url, str(tmp_path), "doc",
        stdout=asyncio.subprocess.PIPE, env=env)
    lines = Lines(proc)
    try:
        at_start = await lines.next()  # printed before the first connection attempt
        assert at_start["value"] == {"n": 1, "text": "x" * 300} and at_start["version"] == [1, 0]
        assert at_start["stale"] is True and at_start["connected"] is False
        assert at_start["first_change"] == {"stale": True, "version": [1, 0]}  # watchers get it first, stale

        await asyncio.to_thread(start_cluster, cluster)
        await owner.wait_connected(WAIT)
        await lines.until(lambda s: s["connected"] and not s["stale"])  # registered with [1, 0]: confirmed
        # the restarted router has [1, 0] as data again (the owner's upload) before the change, so it can
        # send a patch; a watcher of its own tells when
        async with Client(cluster.ws_url, name="check") as check:
            await check.consume("doc").wait(lambda v: v["n"] == 1, timeout=WAIT)
        doc.value["n"] = 2
        await doc.bump()
        caught_up = await lines.until(lambda s: s["version"] == [1, 1])
        assert caught_up["value"] == {"n": 2, "text": "x" * 300}
        assert caught_up["last_patch"] is not None and caught_up["stale"] is False
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await owner.close()


async def test_a_master_changed_offline_reaches_a_watcher_after_reconnect(cluster, tmp_path):
    author = Client(cluster.ws_url, name="author", state_dir=tmp_path, reconnect_delay=0.2, max_reconnect_delay=0.5)
    await author.connect()
    note = author.master("note", value={"text": "draft"})
    watcher = Client(cluster.ws_url, name="watcher", reconnect_delay=0.2, max_reconnect_delay=0.5)
    await watcher.connect()
    seen = watcher.consume("note")
    await seen.wait(lambda v: v["text"] == "draft", timeout=WAIT)
    started = note.version

    stop_cluster(cluster)
    await wait_for(lambda: not author.connected and not watcher.connected, "both to see the cluster go")
    assert seen.stale and not seen.valid
    note.value["text"] = "written offline"
    await note.bump()
    assert note.pending
    await author.close()  # a restart while still offline keeps the pending change
    author = Client(cluster.ws_url, name="author", state_dir=tmp_path, reconnect_delay=0.2, max_reconnect_delay=0.5)
    note = author.master("note", value={"text": "the value the program starts with"})
    assert note.value == {"text": "written offline"} and note.pending
    assert __import__("common.versioning", fromlist=["is_newer"]).is_newer(started, note.version)
    await author.connect(wait=False)
    try:
        await asyncio.to_thread(start_cluster, cluster)
        await seen.wait(lambda v: v["text"] == "written offline", timeout=WAIT)
        assert seen.version == note.version and not seen.stale
        await wait_for(lambda: not note.pending, "the pending change to be uploaded")
    finally:
        await author.close()
        await watcher.close()


@pytest.mark.parametrize("damage", ["garbage", "wrong-schema", "bad-rows", "unwritable-dir"])
async def test_corrupt_or_unreadable_state_dir_warns_and_starts_empty(tmp_path, caplog, damage):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    path = state_dir / "dash.sqlite3"
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    elif damage == "wrong-schema":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE consumers (other_column INTEGER)")
        db.commit()
        db.close()
    elif damage == "bad-rows":
        client = Client("ws://127.0.0.1:9", name="dash", state_dir=state_dir)
        await client.close()
        db = sqlite3.connect(path)
        db.execute("INSERT INTO consumers VALUES ('doc', '[1, 0]', 'not json')")
        db.execute("INSERT INTO consumers VALUES ('other', '[1, 0]', '[1, 2]')")
        db.commit()
        db.close()
    else:
        state_dir = tmp_path / "a-file"
        state_dir.write_text("not a directory")
    caplog.set_level(logging.WARNING, "seasync.client")
    client = Client("ws://127.0.0.1:9", name="dash", state_dir=state_dir)  # nothing listens there
    try:
        doc = client.consume("doc")
        assert doc.value is None and doc.version is None and not doc.stale
        assert "client state" in caplog.text
        await client.connect(wait=False)
        client.master("mine", value={"a": 1}, version=[1, 0])
        await client.master("mine").bump()
    finally:
        await client.close()  # nothing crashes, and writing the state again works or warns


async def test_an_offline_bump_of_an_old_timestamp_version_moves_to_now():
    client = Client("ws://127.0.0.1:9", name="late")  # never connected: the bump stays pending
    try:
        master = client.master("doc", value={"a": 1}, version=[1_000_000_000_000, 5])  # 2001
        version = await master.bump()
        assert version[0] > 1_000_000_000_000 and version[1] == 0 and master.pending
        counted = client.master("other", value={"a": 1}, version=[1, 5])
        assert await counted.bump() == [1, 6]  # not a timestamp: counted up as before
    finally:
        await client.close()


def start_second_front(cluster: Cluster, port: int):
    from tests.cluster import wait_port

    proc = cluster._start("front2", ["-m", "router.front_cli", "--router", cluster.router_url,
                                     "--host", "127.0.0.1", "--port", str(port)])
    wait_port(port)
    return proc


@pytest.mark.parametrize("offline_is_newer", [True, False], ids=["offline-change-newer", "offline-change-older"])
async def test_two_masters_one_offline_end_at_the_newer_version_never_a_mix(cluster, tmp_path, offline_is_newer):
    from tests.cluster import free_port

    port = free_port()
    front2 = start_second_front(cluster, port)
    online = Client(cluster.ws_url, name="online", reconnect_delay=0.2, max_reconnect_delay=0.5)
    offline = Client(f"ws://127.0.0.1:{port}", name="offline", state_dir=tmp_path, reconnect_delay=0.2,
                     max_reconnect_delay=0.5)
    watcher = Client(cluster.ws_url, name="watcher", reconnect_delay=0.2, max_reconnect_delay=0.5)
    start = [1_000_000_000_000, 0]
    a = online.master("pair", value={"by": "start", "n": 0}, version=start)
    b = offline.master("pair", value={"by": "start", "n": 0}, version=start)
    for client in (online, offline, watcher):
        await client.connect()
    seen = watcher.consume("pair")
    try:
        await seen.wait(lambda v: v["by"] == "start", timeout=WAIT)
        front2.stop()
        await wait_for(lambda: not offline.connected, "the offline master to lose its front")
        first, second = (a, b) if offline_is_newer else (b, a)
        first.value.update(by="first", n=1, pad="x" * 50)
        await first.bump([1_000_000_001_000, 0])
        second.value.update(by="second", n=2)
        await second.bump([1_000_000_002_000, 0])
        assert b.pending
        if first is a:
            await seen.wait(lambda v: v["by"] == "first", timeout=WAIT)
        front2 = start_second_front(cluster, port)
        await offline.wait_connected(WAIT)
        await wait_for(lambda: not b.pending, "the offline change to be uploaded")
        # the offline master's own connection consumes it too: the value it gets comes after the router
        # handled its upload (one session's frames are handled in order), so this is the settled state
        settled = offline.consume("pair")
        value = await settled.wait(timeout=WAIT)
        winner = {"by": "second", "n": 2}  # whole: the loser's "pad" (offline-change-older) never mixes in
        assert value == winner and settled.version == [1_000_000_002_000, 0]
        await seen.wait(lambda v: v == winner, timeout=WAIT)
        assert seen.version == [1_000_000_002_000, 0]
    finally:
        for client in (online, offline, watcher):
            await client.close()
