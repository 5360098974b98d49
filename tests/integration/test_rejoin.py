"""Every peer rejoins by itself after a pause or a partition of its link to the router (DESIGN principle 8).

Real processes: a router, a front, a pool of two workers and a notifier (SQLite). The router is stopped
(SIGSTOP) for 4, 6, 10 and 30 s, or the links of every peer go through a proxy that black-holes them for
6 s (no socket closed, nothing delivered). Past the peers' ZMTP heartbeat timeout (3 s) their DEALERs drop
TCP and reconnect under the same identity while the router still holds the old link: before
ROUTER_HANDOVER the router refused the new connection in silence, and the worker or the notifier never
produced again. After the pause each must be back: the front serves a new websocket, a worker
produces an object nobody asked for before, a bump sent through the notifier reaches a watcher, and
every worker process has a session again (SeasyncServer::Workers lists its pid).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from websockets.exceptions import ConnectionClosed

from common import bump
from tests.blackhole import BlackHole
from tests.cluster import Cluster, repo_secret, wait_port
from tests.integration.wsclient import RawClient, update_of

PRODUCERS = textwrap.dedent('''
    import json, pathlib, time
    from worker import Producer
    from common import versions

    STATE = pathlib.Path(__file__).with_name("state")

    class Doc(Producer):
        """Data from state/doc.json; the version is the dependency "doc-src" (the notifier's)."""
        patterns = ["doc"]
        def produce(self, object_id):
            version = versions("doc-src")
            return json.loads((STATE / "doc.json").read_text()), version

    class Item(Producer):
        patterns = ["item-*"]
        def produce(self, object_id):
            return {"id": object_id, "at": time.time()}, 1
''')

WORKERS = 2
REJOIN_WITHIN = 60.0  # after the pause: generous for a loaded 2-core machine (rejoining takes ~1 s)
ATTEMPT = 6.0
_serial = itertools.count()


@pytest.fixture
def producers(tmp_path: Path) -> Path:
    directory = tmp_path / "producers"
    (directory / "state").mkdir(parents=True)
    (directory / "rejoin_producers.py").write_text(PRODUCERS)
    write_doc(directory, "first")
    return directory


@pytest.fixture
def deps(tmp_path: Path, monkeypatch) -> str:
    path = str(tmp_path / "deps.sqlite3")
    monkeypatch.setenv("SEASYNC_DEPS", path)  # the workers, the notifier and bump() below
    return path


def write_doc(directory: Path, title: str) -> None:
    tmp = directory / "state" / "doc.json.tmp"
    tmp.write_text(json.dumps({"title": title}))
    tmp.replace(directory / "state" / "doc.json")


@pytest.fixture
def peers(request, producers, deps):
    """A router; a front, a worker pool of one and a notifier connected to ``peers.router_url``, which is
    the router itself or, for ``indirect`` parameter "proxy", a BlackHole in front of it."""
    c = Cluster()
    proxy = None
    try:
        c.start_router()
        url = c.router_url
        if getattr(request, "param", None) == "proxy":
            # a client's FIN is "lost" for 5 s: the router still holds the old link when the new one comes
            proxy = BlackHole(c.router_port, lose_fin=5.0)
            url = proxy.url
        c.front = c._start("front", ["-m", "router.front.cli", "--router", url, "--host", "127.0.0.1",
                                     "--port", str(c.front_port)])
        wait_port(c.front_port)
        c.pool = c._start("worker", ["-m", "worker.cli", "--router", url, "--workers", str(WORKERS),
                                     "--producers", str(producers)])
        c._start("notifier", ["-m", "worker.notifier.cli", "--router", url, "--deps", deps])
        c.proxy = proxy
        c.producers = producers
        yield c
    finally:
        c.stop()
        if proxy is not None:
            proxy.close()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(c.logs())


async def serve_once(c: Cluster, timeout: float = ATTEMPT) -> None:
    """One round trip through every peer: the front (a new websocket), the worker (a new object) and the
    notifier (a bump of the doc's dependency, seen by the watcher as a patch)."""
    n = next(_serial)
    async with RawClient(c.ws_url, f"probe-{n}") as client:
        await client.send("object-consumer-register", pattern=f"item-{n}", version_known=0)
        await client.expect(update_of(f"item-{n}"), timeout=timeout)
        await client.send("object-consumer-register", pattern="doc", version_known=0)
        await client.expect(update_of("doc"), timeout=timeout)
        write_doc(c.producers, f"bump {n}")
        version = bump("doc-src")["dep:doc-src"]
        frame = await client.expect(update_of("doc", version_new={"dep:doc-src": version}), timeout=timeout)
        assert frame["patch"] == [{"op": "replace", "path": "/title", "value": f"bump {n}"}]


async def all_workers_joined(c: Cluster, timeout: float = ATTEMPT) -> None:
    """Every worker process of the pool has a session at the router (the introspection lists its pid)."""
    pids = {p.pid for p in psutil.Process(c.pool.pid).children()}
    assert len(pids) == WORKERS
    deadline = time.monotonic() + timeout
    while True:
        async with RawClient(c.ws_url, "workers") as client:  # a new watcher: the first update is whole
            await client.send("object-consumer-register", pattern="SeasyncServer::Workers", version_known=0)
            frame = await client.expect(update_of("SeasyncServer::Workers"), timeout=timeout)
        seen = {w.get("pid") for w in (frame.get("value") or {}).values()}
        if pids <= seen:
            return
        assert time.monotonic() < deadline, f"workers with a session: {seen}, pool: {pids}"
        await asyncio.sleep(0.5)


async def serves_again(c: Cluster) -> float:
    """Seconds until one round trip through every peer succeeds (fails after REJOIN_WITHIN)."""
    start = time.monotonic()
    failures = []
    while time.monotonic() - start < REJOIN_WITHIN:
        try:
            await serve_once(c)
            await all_workers_joined(c)
            return time.monotonic() - start
        except (AssertionError, ConnectionClosed, OSError, TimeoutError) as exc:
            failures.append(f"{time.monotonic() - start:.1f} s: {type(exc).__name__}: {str(exc)[:200]}")
            await asyncio.sleep(0.5)
    raise AssertionError(f"the cluster did not serve again within {REJOIN_WITHIN} s:\n" + "\n".join(failures[-5:]))


@pytest.mark.parametrize("peers, pause", [(None, 4), (None, 6), (None, 10), (None, 30),
                                          ("proxy", 6), ("proxy", 10)],
                         indirect=["peers"], ids=["process-4s", "process-6s", "process-10s", "process-30s",
                                                  "host-6s", "host-10s"])
async def test_every_peer_rejoins_after_the_router_is_paused(peers, pause):
    """process: SIGSTOP of the router alone (its kernel still acknowledges, so the peers' FINs and new
    connections are all there on SIGCONT, and which ZeroMQ sees first is a race). host: the router's
    whole host frozen (a VM paused): the router stopped and its links cut meanwhile, the peers' FINs
    arriving late (the proxy loses them for 5 s), so the router holds the old links when the new ones come."""
    await serves_again(peers)  # everyone joined
    if peers.proxy is not None:
        peers.proxy.block()
    peers.router.kill(signal.SIGSTOP)
    try:
        await asyncio.sleep(pause)
    finally:
        peers.router.kill(signal.SIGCONT)
        if peers.proxy is not None:
            peers.proxy.resume()
    took = await serves_again(peers)
    print(f"served again {took:.1f} s after a {pause} s pause")
    assert all(p.alive() for p in peers.procs)


@pytest.mark.parametrize("peers", ["proxy"], indirect=True)
async def test_every_peer_rejoins_after_a_6_s_partition(peers):
    await serves_again(peers)
    before = peers.proxy.connections
    peers.proxy.block()
    try:
        await asyncio.sleep(6)
    finally:
        peers.proxy.resume()
    took = await serves_again(peers)
    print(f"served again {took:.1f} s after a 6 s partition; {peers.proxy.connections - before} reconnections")
    assert all(p.alive() for p in peers.procs)
    assert peers.proxy.connections > before  # the DEALERs did drop TCP and reconnect: the case under test


def test_a_peer_reconnecting_under_its_identity_is_heard_while_its_old_link_lingers():
    """The root cause, deterministic: a DEALER that reconnects (its ZMTP heartbeat dropped TCP) keeps its
    identity, and the router may not have seen the old connection die yet. The new connection must take
    the identity over (ROUTER_HANDOVER): its HELLO is answered, and the old link no longer gets replies."""
    import zmq

    from common import codec, wire

    c = Cluster()
    ctx = zmq.Context()
    socks = []
    try:
        c.start_router()
        identity = b"worker:test-host:4242"
        hello = [wire.HELLO, codec.dumps({"role": "worker", "name": "twice", "pid": 4242, "host": "test-host"})]
        for _ in range(2):  # the old link stays connected: the router holds it
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.IDENTITY, identity)
            sock.setsockopt(zmq.LINGER, 0)
            wire.secure_peer(sock, repo_secret())  # the router of a default install admits only the secret
            sock.connect(c.router_url)
            socks.append(sock)
            sock.send_multipart(hello)
            assert sock.poll(20_000), f"no WELCOME on connection {len(socks)}\n{c.logs()}"
            assert sock.recv_multipart()[0] == wire.WELCOME
        old, new = socks
        new.send_multipart([wire.PING])
        assert new.poll(20_000) and new.recv_multipart()[0] == wire.PONG
        assert not old.poll(500)  # replies go to the newest connection only
    finally:
        for sock in socks:
            sock.close(0)
        ctx.term()
        c.stop()


def test_the_router_says_what_it_refused_within_a_budget():
    """Envelopes from a peer that never said HELLO get a RESET each, and the router's log says so, at most
    LOG_BURST lines however many arrive (a flood cannot fill the log)."""
    import zmq

    from common import wire
    from router.router import LOG_BURST

    c = Cluster()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    try:
        c.start_router()
        sock.setsockopt(zmq.IDENTITY, b"stranger")
        sock.setsockopt(zmq.LINGER, 0)
        wire.secure_peer(sock, repo_secret())  # a stranger holding the secret: past CURVE, not yet known
        sock.connect(c.router_url)
        for _ in range(300):
            sock.send_multipart([wire.PING])
        resets = 0
        while resets < 300 and sock.poll(20_000):
            assert sock.recv_multipart() == [wire.RESET]
            resets += 1
        assert resets == 300
        lines = [line for line in c.router.output().splitlines() if "RESET to" in line]
        assert 1 <= len(lines) <= LOG_BURST, c.router.output()
        assert "'stranger'" in lines[0] and "has not said HELLO" in lines[0]
    finally:
        sock.close(0)
        ctx.term()
        c.stop()
