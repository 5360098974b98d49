"""Writable collections (issue 15) through a real cluster: router, front, worker pool, SQLite storage."""

from __future__ import annotations

import asyncio
import sqlite3
import textwrap
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
