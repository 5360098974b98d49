"""Writable collections (issue 15) through a real cluster: router, front, worker pool, SQLite storage."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from common.diff import apply_patch
from tests.integration.wsclient import RawClient, update_of

PRODUCERS = '''
from worker import Collection

class Items(Collection):
    patterns = ["items/*"]
    url = {url!r}
'''


def write_producers(directory: Path, url: str) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "collections_producers.py").write_text(PRODUCERS.format(url=url))
    return directory


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "collections.sqlite3")


@pytest.fixture
def producers(tmp_path: Path, db: str) -> Path:
    return write_producers(tmp_path / "producers", db)


def is_answer(ref):
    return lambda f: f.get("ref") == ref and f.get("action") in ("collection-updated", "error")


async def update(client: RawClient, cid: str, ref, timeout: float = 30.0, **fields) -> dict:
    await client.send("collection-update", id=cid, ref=ref, **fields)
    return await client.expect(is_answer(ref), timeout)


class Watcher:
    """A plain consumer that keeps the value from the updates it gets (value or RFC 6902 patch)."""

    def __init__(self, client: RawClient, cid: str) -> None:
        self.client, self.cid = client, cid
        self.value: dict | None = None
        self.version = None
        self.patches: list = []

    async def until(self, version, timeout: float = 30.0) -> dict:
        while self.version != version:
            frame = await self.client.expect(update_of(self.cid), timeout)
            if frame.get("patch") is not None:
                self.patches.append(frame["patch"])
                self.value = apply_patch(self.value, frame["patch"])
            else:
                self.patches.append(None)
                self.value = frame["value"]
            self.version = frame["version-new"]
        return self.value


async def watch(cluster, cid: str) -> Watcher:
    client = RawClient(cluster.ws_url, name="watcher")
    await client.connect()
    await client.send("object-consumer-register", pattern=cid, version_known=0)
    watcher = Watcher(client, cid)
    await watcher.until(1)  # a collection never written: {} at version 1
    return watcher


async def test_update_table(cluster, producers: Path, db: str) -> None:
    """Every row of shared-state's update table: the writer's version, the value, the patch watchers got."""
    cluster.start_workers(producers, 1)
    watcher = await watch(cluster, "items/t")
    assert watcher.value == {}
    async with RawClient(cluster.ws_url, name="writer") as writer:
        a, b, c = {"id": "a", "n": 1}, {"id": "b", "n": 2}, {"id": "c", "n": 3}
        rows = [  # (update, value after, version after)
            ({"insert": [a, b]}, {"a": a, "b": b}, 2),
            ({}, {"a": a, "b": b}, 2),  # noop: the version does not move
            ({"remove": ["a"]}, {"b": b}, 3),
            ({"remove": ["b"], "insert": [{"id": "b", "n": 20}, c]}, {"b": {"id": "b", "n": 20}, "c": c}, 4),
            ({"reset": True, "remove": ["zzz"]}, {}, 5),
            ({"reset": True, "insert": [a]}, {"a": a}, 6),
        ]
        for index, (fields, value, version) in enumerate(rows):
            answer = await update(writer, "items/t", index, **fields)
            assert answer == {"action": "collection-updated", "id": "items/t", "ref": index, "version": version}
            if version != watcher.version:
                assert await watcher.until(version) == value
                assert watcher.patches[-1] is not None  # a patch from what it held, not the whole value
        assert watcher.patches[-1] == [{"op": "remove", "path": "/b"}] or watcher.value == {"a": a}
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM seasync_collections WHERE id = 'items/t'").fetchone() == (6,)
    await watcher.client.close()


async def test_two_writers_converge_no_write_lost(cluster, producers: Path, db: str) -> None:
    """Two clients insert 200 items each at once, and remove each other's: both watchers end with the same
    contents, equal to a replay of every update in the order of the versions the router answered."""
    cluster.start_workers(producers, 2)
    w1, w2 = await watch(cluster, "items/race"), await watch(cluster, "items/race")
    answered: dict[int, dict] = {}

    async def writer(name: str, other: str) -> None:
        async with RawClient(cluster.ws_url, name=name) as client:
            pending = []
            for i in range(200):
                fields = {"insert": [{"id": f"{name}-{i}", "by": name}]}
                if i % 4 == 3:
                    fields["remove"] = [f"{other}-{i - 2}"]  # maybe inserted already, maybe not yet
                await client.send("collection-update", id="items/race", ref=[name, i], **fields)
                pending.append(fields)
                if len(pending) >= 50:  # stay under the per-session bound of waiting updates
                    for ref_i in range(i - len(pending) + 1, i + 1):
                        answer = await client.expect(is_answer([name, ref_i]), 60)
                        assert answer["action"] == "collection-updated", answer
                        answered[answer["version"]] = pending[ref_i - (i - len(pending) + 1)]
                    pending = []

    await asyncio.gather(writer("x", "y"), writer("y", "x"))
    assert sorted(answered) == list(range(2, 402))  # one version per update: none lost, none twice
    replay: dict = {}
    for version in sorted(answered):
        fields = answered[version]
        for item_id in fields.get("remove", []):
            replay.pop(item_id, None)
        for item in fields["insert"]:
            replay[item["id"]] = item
    assert await w1.until(401, 60) == replay
    assert await w2.until(401, 60) == replay
    removed = {item_id for f in answered.values() for item_id in f.get("remove", [])}
    never_removed = {f"{n}-{i}" for n in "xy" for i in range(200)} - removed
    assert len(never_removed) == 300 and never_removed <= replay.keys()  # no insert lost
    await w1.client.close()
    await w2.client.close()


@pytest.mark.parametrize("cluster", [("--max-frame", str(4 << 20))], indirect=True)
async def test_bad_updates_clear_error_nothing_applied(cluster, producers: Path, db: str) -> None:
    """Item without id, non-string id, a 2 MB item, 100,000 ids, an unknown collection: an error frame with
    a stable code and the ref to the writer; the collection does not move; a watcher gets nothing."""
    cluster.start_workers(producers, 1)
    watcher = await watch(cluster, "items/bad")
    async with RawClient(cluster.ws_url, name="writer") as writer:
        assert (await update(writer, "items/bad", "ok", insert=[{"id": "a"}]))["version"] == 2
        await watcher.until(2)
        cases = [
            ("no-id", {"insert": [{"text": "x"}]}, "invalid-item"),
            ("int-id", {"insert": [{"id": 7}]}, "invalid-item"),
            ("big", {"insert": [{"id": "big", "blob": "x" * (2 << 20)}]}, "item-too-large"),
            ("many", {"remove": ["a"] * 100_000}, "update-too-large"),
        ]
        for ref, fields, code in cases:
            answer = await update(writer, "items/bad", ref, **fields)
            assert answer["action"] == "error" and answer["code"] == code, answer
            assert answer["request"] == "collection-update" and answer["id"] == "items/bad" and answer["message"]
        answer = await update(writer, "nothing/here", "none", insert=[{"id": "a"}])
        assert answer["code"] == "no-collection" and answer["ref"] == "none"
        assert (await update(writer, "items/bad", "after", insert=[{"id": "b"}]))["version"] == 3
        assert await watcher.until(3) == {"a": {"id": "a"}, "b": {"id": "b"}}
    await watcher.client.close()


async def test_item_over_the_front_frame_limit(cluster, producers: Path) -> None:
    """A 10 MB item is over the front's frame limit (1 MiB by default): the front closes the writer's
    websocket with 1009 (message too big), the router never sees it, other clients are unaffected."""
    cluster.start_workers(producers, 1)
    watcher = await watch(cluster, "items/huge")
    writer = RawClient(cluster.ws_url, name="writer")
    await writer.connect()
    await writer.send("collection-update", id="items/huge", ref=1, insert=[{"id": "h", "blob": "x" * (10 << 20)}])
    for _ in range(200):
        if writer.closed:
            break
        await asyncio.sleep(0.1)
    assert writer.closed and writer._ws.close_code == 1009
    async with RawClient(cluster.ws_url, name="other") as other:
        assert (await update(other, "items/huge", 2, insert=[{"id": "s"}]))["version"] == 2
    assert await watcher.until(2) == {"s": {"id": "s"}}
    await watcher.client.close()


KILLING = '''
import os, pathlib, signal
from worker import Collection

MARK = pathlib.Path(__file__).with_name("killed")

class Killing(Collection):
    """The first update of kill/after dies right after its commit, of kill/before right before it."""
    patterns = ["kill/*"]
    url = {url!r}

    def apply(self, object_id, update, ticket):
        first = not MARK.exists()
        if first:
            MARK.write_text(str(os.getpid()))
        if first and object_id == "kill/before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = super().apply(object_id, update, ticket)
        if first and object_id == "kill/after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result
'''


@pytest.mark.parametrize("when", ["before", "after"])
async def test_worker_killed_mid_update(cluster, tmp_path: Path, db: str, when: str) -> None:
    """A worker SIGKILLed before or after its commit: the update goes to another worker with the same
    ticket and is applied exactly once; the writer gets collection-updated; watchers see it once."""
    directory = tmp_path / "producers"
    directory.mkdir()
    (directory / "killing.py").write_text(KILLING.format(url=db))
    cluster.start_workers(directory, 2)
    cid = f"kill/{when}"
    watcher = await watch(cluster, cid)
    async with RawClient(cluster.ws_url, name="writer") as writer:
        answer = await update(writer, cid, "k", timeout=60, insert=[{"id": "a"}])
        assert answer == {"action": "collection-updated", "id": cid, "ref": "k", "version": 2}
        assert (directory / "killed").exists()
        assert (await update(writer, cid, "next", timeout=60, insert=[{"id": "b"}]))["version"] == 3
    assert await watcher.until(3, 60) == {"a": {"id": "a"}, "b": {"id": "b"}}
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM seasync_collections WHERE id = ?", (cid,)).fetchone() == (3,)
    await watcher.client.close()


async def test_restart_every_process_contents_kept(cluster, producers: Path, db: str) -> None:
    """Router, front and workers stopped; application code writes meanwhile (update_collection, straight
    into storage); everything restarted: a client that held version 3 is brought to version 4 with a patch.
    The router retains nothing across a restart: its order names the version held (versions-held), the
    worker rebuilds version 3 from the collection's undo rows and answers it as a base."""
    from common import update_collection

    cluster.start_workers(producers, 1)
    watcher = await watch(cluster, "items/keep")
    async with RawClient(cluster.ws_url, name="writer") as writer:
        await update(writer, "items/keep", 1, insert=[{"id": "a"}, {"id": "b"}])
        await update(writer, "items/keep", 2, remove=["a"])
    assert await watcher.until(3) == {"b": {"id": "b"}}
    await watcher.client.close()
    cluster.stop()
    assert update_collection("items/keep", insert=[{"id": "c"}], url=db) == 4  # the cluster is down
    cluster.start_router()
    cluster.start_front()
    cluster.start_workers(producers, 1)
    client = RawClient(cluster.ws_url, name="back")
    await client.connect()
    await client.send("object-consumer-register", pattern="items/keep", version_known=3)
    frame = await client.expect(update_of("items/keep"), 60)
    assert frame["version-old"] == 3 and frame["version-new"] == 4
    assert frame["patch"] == [{"op": "add", "path": "/c", "value": {"id": "c"}}]
    # a client holding a version older than every undo row kept (or never held: 0) gets the value
    async with RawClient(cluster.ws_url, name="fresh") as fresh:
        await fresh.send("object-consumer-register", pattern="items/keep", version_known=0)
        frame = await fresh.expect(update_of("items/keep"), 60)
        assert frame["version-new"] == 4 and frame["value"] == {"b": {"id": "b"}, "c": {"id": "c"}}
    assert (await update(client, "items/keep", 3, insert=[{"id": "d"}]))["version"] == 5
    frame = await client.expect(update_of("items/keep"), 60)
    assert frame["version-new"] == 5 and frame["patch"] == [{"op": "add", "path": "/d", "value": {"id": "d"}}]
    await client.close()


async def test_writes_need_the_hooks_may_write(tmp_path: Path, db: str, producers: Path) -> None:
    """Under --auth: may_write(id) decides; a hook without may_write refuses every write; refused writes
    change nothing and the allowed writer's updates go on."""
    from tests.cluster import Cluster

    c = Cluster()
    try:
        c.start_router("--auth", "tests.integration.collection_auth:authenticate")
        c.start_front()
        c.start_workers(producers, 1)
        editor = RawClient(c.ws_url, name="editor", token="editor")
        reader = RawClient(c.ws_url, name="reader", token="reader")
        await editor.connect()
        await reader.connect()
        await reader.send("object-consumer-register", pattern="items/shared", version_known=0)
        await reader.expect(update_of("items/shared", version_new=1), 60)
        refused = await update(reader, "items/shared", "r", insert=[{"id": "x"}])
        assert refused["code"] == "forbidden" and refused["ref"] == "r"
        refused = await update(editor, "items/other", "o", insert=[{"id": "x"}])
        assert refused["code"] == "forbidden"
        assert (await update(editor, "items/shared", "e", timeout=60, insert=[{"id": "y"}]))["version"] == 2
        frame = await reader.expect(update_of("items/shared", version_new=2), 60)
        assert frame["patch"] == [{"op": "add", "path": "/y", "value": {"id": "y"}}]
        # a client cannot pose as a worker
        await reader.send("collection-applied", id="items/shared", ticket="x", version=9, value={})
        assert (await reader.expect(lambda f: f.get("request") == "collection-applied"))["code"] == "forbidden"
        await editor.close()
        await reader.close()
    finally:
        c.stop()


async def test_an_application_write_reaches_watchers(cluster, producers: Path, db: str, tmp_path: Path) -> None:
    """update_collection writes storage, then announces the version through the dependency database: the
    notifier tells the router, which has the collection produced again, and the watcher gets a patch
    (before, it saw the write only at the collection's next production)."""
    from common import update_collection
    from tests.cluster import Proc

    deps = str(tmp_path / "deps.sqlite3")
    notifier = Proc("notifier", ["-m", "worker.notifier.cli", "--router", cluster.router_url, "--deps", deps, "-v"])
    cluster.procs.append(notifier)
    cluster.start_workers(producers, 1)
    watcher = await watch(cluster, "items/app")
    assert update_collection("items/app", insert=[{"id": "a", "text": "milk"}], url=db, deps=deps) == 2
    assert await watcher.until(2, timeout=60) == {"a": {"id": "a", "text": "milk"}}
    assert watcher.patches[-1] == [{"op": "add", "path": "/a", "value": {"id": "a", "text": "milk"}}]
    # a routed update after it builds on it; an application write after that again reaches the watcher
    async with RawClient(cluster.ws_url, name="writer") as writer:
        assert (await update(writer, "items/app", 1, insert=[{"id": "b"}]))["version"] == 3
    await watcher.until(3)
    assert update_collection("items/app", remove=["a"], url=db, deps=deps) == 4
    assert await watcher.until(4, timeout=60) == {"b": {"id": "b"}}
    assert watcher.patches[-1] == [{"op": "remove", "path": "/a"}]
    assert notifier.alive()
    await watcher.client.close()


async def test_a_client_with_the_original_seapig_rules_reads_a_collection(cluster, producers: Path) -> None:
    """A consumer following seapig-client-js 0.2's rules (tests/e2e/js/seapig_slave.mjs: clear on a value,
    a 1.x JSON-Patch library's ops only) reads a collection as a plain object through inserts, replaces,
    removes, ids that need JSON Pointer escaping, and a reset: it ends equal to storage, no update lost."""
    import json
    import os
    import shutil

    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is missing: the seapig-client rules cannot be checked")
        pytest.skip("node is not installed")
    script = Path(__file__).parents[1] / "e2e" / "js" / "seapig_slave.mjs"
    cluster.start_workers(producers, 1)
    slave = await asyncio.create_subprocess_exec(node, "--experimental-websocket", str(script), cluster.ws_url,
                                                 "items/seapig", stdout=asyncio.subprocess.PIPE)
    held: list[dict] = []

    async def until(version) -> dict:
        while not held or held[-1].get("version") != version:
            line = await asyncio.wait_for(slave.stdout.readline(), 30)
            assert line, f"the seapig-rules client ended: {held[-3:]}"
            held.append(json.loads(line))
            assert "error" not in held[-1] and "lost" not in held[-1], held[-1]
        return held[-1]["object"]

    try:
        assert await until(1) == {}
        async with RawClient(cluster.ws_url, name="writer") as writer:
            steps = [dict(insert=[{"id": "a", "n": 1}, {"id": "a/b"}, {"id": "t~x"}]),
                     dict(insert=[{"id": "a", "n": 2}]),
                     dict(remove=["a/b"], insert=[{"id": "c", "list": [1, 2, 3]}]),
                     dict(reset=True, insert=[{"id": "z"}])]
            for ref, step in enumerate(steps):
                version = (await update(writer, "items/seapig", ref, **step))["version"]
                await until(version)
        assert held[-1]["object"] == {"z": {"id": "z"}}
        assert [h["version"] for h in held] == [1, 2, 3, 4, 5]  # every version, none skipped
        assert held[2]["object"]["a"] == {"id": "a", "n": 2} and "a/b" in held[2]["object"]
    finally:
        slave.kill()
        await slave.wait()
