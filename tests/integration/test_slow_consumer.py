"""A client that stops reading, against a whole cluster (router + front) while a master uploads
many large versions of an object.

What must hold: the front's memory stays bounded (it tells the router to PAUSE the session instead
of buffering every version), a normal client on the side gets every version in turn, and the slow
client, once it reads again, is brought to the latest state with patches on the right bases (the
router coalesced what it missed), or, past a hard limit, is closed with 1008 "consumer too slow".
"""

from __future__ import annotations

import asyncio
import os
import time

import jsonpatch
import orjson
import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.cluster import Cluster

pytestmark = pytest.mark.timeout(300)

WAIT = 60.0
BLOB = 256 * 1024       # bytes per version: 200 versions are 50 MiB
VERSIONS = 200
RSS_BOUND = 24 << 20    # what the front may grow by while 50 MiB go to a client that does not read


def register(object_id: str) -> bytes:
    return orjson.dumps({"action": "object-consumer-register", "pattern": object_id, "version-known": 0})


def upload(object_id: str, version: int) -> bytes:
    blob = os.urandom(BLOB // 2).hex()  # incompressible and different every time: every patch is big
    return orjson.dumps({"action": "object-patch", "id": object_id, "version-new": version,
                         "value": {"n": version, "blob": blob}})


class Holder:
    """A client's copy of one object: applies updates and checks every patch's base."""

    def __init__(self) -> None:
        self.version = 0
        self.data: dict = {}
        self.updates = 0

    def apply(self, raw: bytes) -> None:
        msg = orjson.loads(raw)
        assert msg["action"] == "object-update", msg
        if "patch" in msg:
            assert msg["version-old"] == self.version, f"patch for {msg['version-old']}, held {self.version}"
            self.data = jsonpatch.apply_patch(self.data, msg["patch"])
        else:
            self.data = msg["value"]
        assert msg["version-new"] > self.version, "a version went backwards"
        self.version = msg["version-new"]
        self.updates += 1


async def ws(cluster: Cluster, **kw) -> ClientConnection:
    return await connect(cluster.ws_url, compression=None, max_size=None, open_timeout=WAIT,
                         close_timeout=WAIT, ping_interval=None, **kw)


async def recv(conn: ClientConnection) -> bytes:
    async with asyncio.timeout(WAIT):
        return await conn.recv(decode=False)


class RssWatch:
    """The front's peak RSS while a block runs, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._task: asyncio.Task | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            await asyncio.sleep(0.02)

    async def __aenter__(self) -> "RssWatch":
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    @property
    def growth(self) -> int:
        return self.peak - self.base


async def feed(cluster: Cluster, object_id: str, normal: ClientConnection, held: Holder) -> None:
    """The master uploads VERSIONS versions, each after the normal client received the previous one."""
    master = await ws(cluster)
    try:
        for version in range(1, VERSIONS + 1):
            await master.send(upload(object_id, version), text=True)
            while held.version < version:
                held.apply(await recv(normal))
    finally:
        await master.close()


async def setup_clients(cluster: Cluster, object_id: str) -> tuple[ClientConnection, ClientConnection]:
    # max_queue=2: the slow client's library stops reading its socket after two frames
    slow = await ws(cluster, max_queue=2)
    normal = await ws(cluster)
    for conn in (slow, normal):
        await conn.send(register(object_id), text=True)
    return slow, normal


async def wait_for_log(cluster: Cluster, text: str) -> None:
    assert cluster.front is not None
    deadline = time.monotonic() + WAIT
    while text not in cluster.front.output():
        assert time.monotonic() < deadline, f"no {text!r} in the front's log"
        await asyncio.sleep(0.1)


async def test_slow_client_is_paused_then_gets_the_latest_state(cluster):
    slow, normal = await setup_clients(cluster, "big")
    held = Holder()
    async with RssWatch(cluster.front.pid) as rss:
        await feed(cluster, "big", normal, held)
        await wait_for_log(cluster, "pause ")

    # the normal client got every version, one by one, while the other one did not read
    assert held.version == VERSIONS and held.updates == VERSIONS
    assert rss.growth < RSS_BOUND, f"front grew by {rss.growth >> 20} MiB"

    # the slow client reads again: what was written to it, then the latest state (coalesced)
    mine = Holder()
    while mine.version < VERSIONS:
        mine.apply(await recv(slow))
    assert mine.data == held.data
    print(f"front grew {rss.growth / 2**20:.1f} MiB; the slow client got {mine.updates} updates for {VERSIONS} versions")
    assert mine.updates < VERSIONS, "nothing was coalesced"
    await wait_for_log(cluster, "resume ")

    # both stay subscribed and current
    master = await ws(cluster)
    await master.send(upload("big", VERSIONS + 1), text=True)
    held.apply(await recv(normal))
    mine.apply(await recv(slow))
    assert mine.version == held.version == VERSIONS + 1 and mine.data == held.data
    for conn in (master, slow, normal):
        await conn.close()
    assert cluster.front.alive() and cluster.router.alive()


@pytest.mark.parametrize("cluster", [
    pytest.param(("--slow-timeout", "1"), id="paused-too-long"),
    pytest.param(("--pause-above", str(1 << 30), "--slow-max-buffer", str(2 << 20)), id="buffer-too-big"),
], indirect=True)
async def test_slow_client_past_the_limit_is_closed_with_1008(cluster):
    slow, normal = await setup_clients(cluster, "big")
    held = Holder()
    mine = Holder()

    async def read_after_close() -> None:
        """Once the front gave up on it, the slow client reads: what was buffered, then the close frame."""
        await wait_for_log(cluster, "consumer too slow")
        with pytest.raises(ConnectionClosed):
            while True:
                mine.apply(await recv(slow))

    async with RssWatch(cluster.front.pid) as rss:
        await asyncio.gather(feed(cluster, "big", normal, held), read_after_close())

    assert held.version == VERSIONS and held.updates == VERSIONS
    assert rss.growth < RSS_BOUND, f"front grew by {rss.growth >> 20} MiB"
    print(f"front grew {rss.growth / 2**20:.1f} MiB; the slow client got {mine.updates} updates before the close")
    assert (slow.close_code, slow.close_reason) == (1008, "consumer too slow")
    assert mine.version < VERSIONS

    # the router forgot the session; the normal client carries on
    master = await ws(cluster)
    await master.send(upload("big", VERSIONS + 1), text=True)
    held.apply(await recv(normal))
    assert held.version == VERSIONS + 1
    # the slow client can come back and resync from what it holds
    back = await ws(cluster)
    await back.send(orjson.dumps({"action": "object-consumer-register", "pattern": "big",
                                  "version-known": mine.version}), text=True)
    while mine.version < VERSIONS + 1:
        mine.apply(await recv(back))
    assert mine.data == held.data
    for conn in (master, back, normal):
        await conn.close()
