"""Latest wins between the router and a front that is slower than it (issue 13 item 1), real processes.

The watchers' front is made slower than the router with the test-only ``--write-delay`` (each burst it
writes blocks its loop, as a CPU-bound front would) and a small ``--credit``; the master uploads through a
second, plain front at a pace the router takes one version at a time (so the router's own batch coalescing,
COALESCE_FROM, never starts: what coalesces here is the credit). Not timed: every client must end at the final
version, apply every patch to the version it holds, never go backwards, and get far fewer updates than were
uploaded (without credit, each would get every version: the backlog is queued between router and front).
"""

from __future__ import annotations

import asyncio
import time

import jsonpatch
import orjson
import pytest

from common.wire import SENDS, pack_sids
from tests.cluster import Cluster, free_port, wait_port
from tests.integration import test_front as scripted
from tests.integration.wsclient import RawClient, update_of

router, start_front = scripted.router, scripted.start_front  # the scripted router and its fronts (fixtures)
open_session, recv = scripted.open_session, scripted.recv

WATCHERS = 12


class Holder:
    """Applies a watcher's updates for one id, checking each patch base and the order."""

    def __init__(self) -> None:
        self.version = 0
        self.value: dict = {}
        self.updates = 0

    def apply(self, frame: dict) -> None:
        assert frame["version-new"] > self.version, f"version went from {self.version} to {frame['version-new']}"
        if "value" in frame:
            self.value = frame["value"]
        else:
            assert frame["version-old"] == self.version, f"patch from {frame['version-old']}, held {self.version}"
            self.value = jsonpatch.apply_patch(self.value, frame["patch"])
        self.version = frame["version-new"]
        self.updates += 1


def value_of(n: int) -> dict:
    return {"n": n, "rows": [{"id": i, "v": n if i == n % 5 else 0} for i in range(5)]}


async def master_front(cluster: Cluster) -> str:
    """A second front, not slowed, for the master: its uploads reach the router at their own pace."""
    port = free_port()
    cluster._start("front-master", ["-m", "router.front.cli", "--router", cluster.router_url, "--host", "127.0.0.1",
                                    "--port", str(port)])
    await asyncio.to_thread(wait_port, port)
    return f"ws://127.0.0.1:{port}"


async def watch_and_upload(cluster: Cluster, object_id: str, total: int, pause: float) -> list[Holder]:
    master_url = await master_front(cluster)
    watchers = [RawClient(cluster.ws_url, f"w{i}") for i in range(WATCHERS)]
    for w in watchers:
        await w.connect()
        await w.send("object-consumer-register", pattern=object_id, version_known=0)
    async with RawClient(master_url, "master") as master:
        await master.send("object-producer-register", pattern=object_id, version_known=0)
        await master.expect(lambda f: f.get("action") == "object-produce", timeout=30)
        for n in range(1, total + 1):
            await master._ws.send(orjson.dumps({"action": "object-patch", "id": object_id, "version-new": n,
                                                "value": value_of(n)}).decode())
            await asyncio.sleep(pause)
        holders = [Holder() for _ in watchers]
        for w, held in zip(watchers, holders):
            while held.version < total:
                held.apply(await w.expect(update_of(object_id), timeout=60))
            assert held.value == value_of(total)
            assert not [f for f in w.frames if f.get("action") == "error"]
    for w in watchers:
        await w.close()
    return holders


@pytest.mark.parametrize("cluster", [("--credit", "1", "--write-delay", "0.05")], indirect=True)
async def test_a_front_behind_its_router_gets_the_latest_state_not_the_backlog(cluster):
    total = 600  # about 2 ms apart: the router sends each alone; the front writes a burst per 50 ms at best
    holders = await watch_and_upload(cluster, "flood", total, pause=0.002)
    updates = sum(h.updates for h in holders)
    print(f"credit flood: {total} versions x {WATCHERS} watchers uploaded, {updates} updates delivered")
    assert updates < total * WATCHERS / 4  # far fewer than every version to every watcher


@pytest.mark.parametrize("cluster", [("--credit", "1", "--write-delay", "0.05")], indirect=True)
async def test_a_trickle_under_the_credit_is_delivered_version_by_version(cluster):
    total = 8  # each version long after the front wrote the previous one: credit is back every time
    holders = await watch_and_upload(cluster, "trickle", total, pause=0.5)
    assert [h.updates for h in holders] == [total] * WATCHERS


async def acks_until(router, count: int) -> int:
    """Wait until the scripted router has been acknowledged ``count`` SENDS (or more); returns the total."""
    async with asyncio.timeout(20):
        while sum(int(n) for (n,) in router.acks) < count:
            frames = await router.inbox.get()
            if frames[0] == b"ack":
                router.acks.append(frames[1:])
    return sum(int(n) for (n,) in router.acks)


async def test_the_front_announces_its_credit_and_acknowledges_each_sends_once_written(router, start_front):
    f = await start_front("--credit", "3")
    hello = await router.welcome()
    assert hello["credit"] == 3
    ws, sid = await open_session(f, router)
    for n in range(5):
        await router.send(SENDS, f'"{n}"'.encode(), pack_sids([sid]))
    assert [await recv(ws) for _ in range(5)] == [f'"{n}"' for n in range(5)]
    assert await acks_until(router, 5) == 5  # every SENDS acknowledged, none twice


async def test_a_front_without_credit_announces_none_and_never_acknowledges(router, start_front):
    f = await start_front("--credit", "0")
    hello = await router.welcome()
    assert "credit" not in hello
    ws, sid = await open_session(f, router)
    await router.send(SENDS, b'"x"', pack_sids([sid]))
    assert await recv(ws) == '"x"'
    await ws.send("{}")
    assert await router.expect(b"msg") == [sid, b"{}"]  # (an ACK would be set aside in router.acks)
    assert router.acks == []


# ---- the router's side, in process with a real ROUTER socket (tests/integration/test_router_batches.py's peer)

from tests.integration.test_router_batches import Peer as RouterPeer, burst, updates_for, watch_x  # noqa: E402
from common import wire  # noqa: E402
from router.router import CREDIT_TIMEOUT  # noqa: E402


@pytest.fixture
def credit_peer():
    p = RouterPeer()
    yield p
    p.close()


def hello_with_credit(peer: RouterPeer, credit: object, *sids: bytes) -> None:
    peer.sock.send_multipart([wire.HELLO, orjson.dumps({"role": "front", "name": "test", "credit": credit})])
    peer.step()
    assert peer.received()[0][0] == wire.WELCOME
    for sid in sids:
        peer.sock.send_multipart([wire.OPEN, sid])


def test_the_router_holds_a_front_out_of_credit_and_sends_the_newest_when_it_acks(credit_peer):
    peer = credit_peer
    hello_with_credit(peer, 1, b"w", b"m")
    watch_x(peer, b"w", b"m")  # the order to the master was one SENDS: the credit of 1 is used up
    for n in (1, 2, 3):  # three batches: without credit, three SENDS to the watcher
        burst(peer, b"m", range(n, n + 1))
        peer.step()
        assert updates_for(peer, b"w") == []
    peer.sock.send_multipart([wire.ACK, b"1"])
    peer.step()
    [update] = updates_for(peer, b"w")
    assert update["version-new"] == 3 and update["value"] == {"n": 3}  # the newest, once
    burst(peer, b"m", range(4, 5))
    peer.step()
    assert updates_for(peer, b"w") == []  # the release was one SENDS: out of credit again
    peer.sock.send_multipart([wire.ACK, b"1"])
    peer.step()
    [update] = updates_for(peer, b"w")
    assert update["version-old"] == 3 and update["version-new"] == 4  # a patch from the version held


def test_a_front_that_never_acknowledges_gets_its_credit_back(credit_peer):
    peer = credit_peer
    hello_with_credit(peer, 1, b"w", b"m")
    watch_x(peer, b"w", b"m")
    burst(peer, b"m", range(1, 3))
    peer.step()
    assert updates_for(peer, b"w") == []
    peer.router._check_credit(time.monotonic() + CREDIT_TIMEOUT + 1)  # as the loop's check does, later
    peer.router._flush()
    assert [u["version-new"] for u in updates_for(peer, b"w")] == [2]


@pytest.mark.parametrize("credit", [0, -3, "8", True, None])
def test_a_hello_without_a_positive_int_credit_is_never_held(credit_peer, credit):
    peer = credit_peer
    hello_with_credit(peer, credit, b"w", b"m")
    watch_x(peer, b"w", b"m")
    for n in (1, 2, 3):
        burst(peer, b"m", range(n, n + 1))
        peer.step()
        assert [u["version-new"] for u in updates_for(peer, b"w")] == [n]
    peer.sock.send_multipart([wire.ACK, b"5"])  # an ACK from a peer without credit: logged, ignored
    peer.sock.send_multipart([wire.ACK, b"not a number"])
    burst(peer, b"m", range(4, 5))
    peer.step()
    assert [u["version-new"] for u in updates_for(peer, b"w")] == [4]
