"""Budgets over a real router and front (issue 10, items 1 and 4): the copy bomb, sessions per peer and the
time limit on a production order, each against the process that used to pay for it."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.exceptions import ConnectionClosed

from router import limits as budget
from tests.cluster import Cluster
from tests.integration.wsclient import RawClient, update_of


def rss(pid: int, field: str = "VmRSS") -> int:
    """Resident memory of a process in bytes (Linux): now (VmRSS) or its peak so far (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field}")


def error_with(code: str):
    return lambda frame: frame.get("action") == "error" and frame.get("code") == code


@pytest.fixture
def make_cluster():
    started: list[Cluster] = []

    def start(*router_args: str) -> Cluster:
        c = Cluster()
        started.append(c)
        c.start_router(*router_args)
        c.start_front()
        return c

    yield start
    for c in started:
        c.stop()


async def test_copy_bomb_leaves_the_router_small_and_the_object_intact(cluster):
    """The issue's repro: {"s": <500 kB>} then one 47 kB patch of 1,000 copies of /s (1.5 GB before)."""
    value = {"s": "x" * 500_000}
    async with RawClient(cluster.ws_url, "bomber") as bomber, RawClient(cluster.ws_url, "watcher") as watcher:
        await watcher.send("object-consumer-register", pattern="bomb", version_known=0)
        await bomber.send("object-consumer-register", pattern="bomb", version_known=0)
        await bomber.send("object-patch", id="bomb", version_new=1, value=value)
        assert (await watcher.expect(update_of("bomb", version_new=1)))["value"] == value
        before = rss(cluster.router.pid)
        patch = [{"op": "copy", "from": "/s", "path": f"/c{i}"} for i in range(1000)]
        for version in (2, 3, 4):  # several frames: the bound is on the result, not per frame
            await bomber.send("object-patch", id="bomb", version_old=1, version_new=version, patch=patch)
            err = await bomber.expect(error_with(budget.OBJECT_TOO_LARGE), timeout=60)
            assert err["id"] == "bomb" and "bytes" in err["message"]
        await bomber.send("object-consumer-register", pattern="probe", version_known=0)  # the router got through
        await bomber.send("object-consumer-unregister", pattern="nothing")
        await bomber.expect(lambda f: f.get("action") == "error" and f.get("pattern") == "nothing", timeout=60)
        grown = rss(cluster.router.pid, "VmHWM") - before  # the peak: a result built then refused counts
        assert cluster.router.alive() and cluster.front.alive()
        assert grown < 64 << 20, f"the router's peak grew by {grown >> 20} MB"
        assert [f for f in watcher.frames if f.get("action") == "object-update"] == []  # nothing was pushed
        async with RawClient(cluster.ws_url, "late") as late:  # the object is intact
            await late.send("object-consumer-register", pattern="bomb", version_known=0)
            got = await late.expect(update_of("bomb"))
            assert got["version-new"] == 1 and got["value"] == value


async def test_sessions_per_peer_are_bounded_and_come_back_when_a_session_goes(make_cluster):
    cluster = make_cluster("--max-sessions-per-peer", "3")
    clients = [RawClient(cluster.ws_url, f"c{i}") for i in range(3)]
    for c in clients:
        await c.connect()
        await c.send("object-consumer-register", pattern="x", version_known=0)
    over = RawClient(cluster.ws_url, "over")
    await over.connect()
    deadline = time.monotonic() + 30
    while not over.closed and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert over.closed and over._ws.close_code == 1008
    assert over._ws.close_reason.startswith(budget.SESSION_LIMIT)
    await clients[0].close()
    deadline = time.monotonic() + 30  # the front tells the router the session closed: its place is free again
    while True:
        again = RawClient(cluster.ws_url, "again")
        await again.connect()
        await again.send("object-consumer-unregister", pattern="nothing")
        try:
            await again.expect(lambda f: f.get("action") == "error", timeout=5)
            break
        except (AssertionError, ConnectionClosed):  # still full: the front closes it (1008) before it answers
            assert time.monotonic() < deadline, "no session place came back"
        finally:
            await again.close()
    for c in clients[1:]:
        assert not c.closed
        await c.close()
    assert "sessions: dropping the new ones" in cluster.router.output()


async def test_an_order_a_websocket_producer_never_answers_goes_to_another_producer(make_cluster):
    cluster = make_cluster("--order-timeout", "2")
    url = cluster.ws_url
    async with RawClient(url, "silent", prefetch=1000) as silent, RawClient(url, "watcher") as watcher:
        await silent.send("object-producer-register", pattern="held-*")
        await watcher.send("object-consumer-register", pattern="held-1", version_known=0)
        await silent.expect(lambda f: f.get("action") == "object-produce" and f.get("id") == "held-1")
        async with RawClient(url, "worker") as worker:
            await worker.send("object-producer-register", pattern="held-*")
            taken = await silent.expect(error_with(budget.ORDER_TIMEOUT), timeout=30)
            assert taken["id"] == "held-1"
            await worker.expect(lambda f: f.get("action") == "object-produce" and f.get("id") == "held-1",
                                timeout=30)
            await worker.send("object-patch", id="held-1", version_new=1, value={"by": "worker"})
            assert (await watcher.expect(update_of("held-1"), timeout=30))["value"] == {"by": "worker"}
