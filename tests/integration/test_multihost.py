"""seasync across hosts (issue 16): router, worker pools, front and clients on separate network
namespaces (scripts/netns_cluster.py), links cut with ``ip link set ... down`` for 6 s and healed.

The hosts: ``router`` (the router), ``work1`` and ``work2`` (a pool of two workers each; the notifier
on work2), ``front`` (the websocket front), ``client`` (every websocket client of the tests, run by an
asyncio loop in a thread that lives in that namespace). A cut link loses packets both ways without a
FIN or a RST, so each side only learns of it from its own timeouts: the ZMTP heartbeat (3 s) of the
DEALERs, the router's peer timeout, the front's websocket close handshake.

Producers record every production in a file of the (shared) producer directory, with the host and
the dependency version, so that "no order lost or done twice" is read from what the hosts did.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from common import bump
from scripts.netns_cluster import NetnsCluster, unavailable
from tests.integration.wsclient import RawClient, update_of

_REASON = unavailable()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"no network namespaces: {_REASON}")

PRODUCERS = textwrap.dedent('''
    import json, os, pathlib, time
    from worker import Producer
    from common import versions

    HOST = os.environ.get("NETNS_HOST", "?")
    LOG = pathlib.Path(__file__).with_name("productions.log")

    def record(object_id, version):
        line = json.dumps({"id": object_id, "version": version, "host": HOST, "pid": os.getpid(),
                           "at": time.time()})
        with open(LOG, "a") as f:  # one write of one short line: O_APPEND keeps lines whole
            f.write(line + "\\n")

    class Item(Producer):
        """Any host: which one produced it is in the value."""
        patterns = ["item-*"]
        def produce(self, object_id):
            time.sleep(0.2)  # long enough for the orders of a burst to spread over both hosts
            record(object_id, 1)
            return {"id": object_id, "host": HOST, "pid": os.getpid()}, 1

    class Doc(Producer):
        """Any host; follows the dependency "doc-src" (bumped by the test, told by the notifier)."""
        patterns = ["doc-*"]
        def produce(self, object_id):
            version = versions("doc-src")
            record(object_id, version)
            return {"n": version["dep:doc-src"], "host": HOST}, version

    class Local(Producer):
        """Only this host's pool produces HOST-*; it follows the dependency "HOST-src"."""
        patterns = [HOST + "-*"]
        def produce(self, object_id):
            version = versions(HOST + "-src")
            record(object_id, version)
            return {"n": version["dep:" + HOST + "-src"], "host": HOST}, version
''')

WORKERS = 2
CUT = 6.0          # seconds a link stays down (the partition)
RESUME = 5.0       # the issue: productions resume within 5 s of the heal
DEADLINE = 60.0    # generous waits for conditions on a loaded 2-core machine


def wait_until(predicate, what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def version_number(version: Any, key: str) -> int:
    return version.get(key, 0) if isinstance(version, dict) else 0


class Watcher:
    """A seapig client on the client host that holds one object and resynchronises the way PROTOCOL §13
    says: on close it keeps data and version, reconnects and registers with ``version-known``. It
    records every update (full or patch), every close it was given, and anything that went backwards."""

    def __init__(self, url: str, name: str, object_id: str, key: str) -> None:
        self.url, self.name, self.object_id, self.key = url, name, object_id, key
        self.version: Any = 0
        self.value: Any = None
        self.updates: list[dict] = []     # {"kind": "value"|"patch", "old":..., "new":..., "after_reconnect": bool}
        self.closes: list[tuple[int | None, str]] = []
        self.backwards: list[str] = []
        self.connections = 0
        self._fresh = False
        self._stop = False

    @property
    def n(self) -> int:
        return version_number(self.version, self.key)

    def on_frame(self, frame: dict) -> None:
        if frame.get("action") != "object-update" or frame.get("id") != self.object_id:
            return
        import jsonpatch

        new, old = frame.get("version-new"), frame.get("version-old")
        if "patch" in frame:
            if old != self.version:
                self.backwards.append(f"patch from {old} while holding {self.version}")
                return
            self.value = jsonpatch.apply_patch(self.value, frame["patch"])
            kind = "patch"
        else:
            self.value = frame.get("value")
            kind = "value"
        if version_number(new, self.key) <= self.n and self.version != 0:
            self.backwards.append(f"{self.version} -> {new}")
        self.updates.append({"kind": kind, "old": old, "new": new, "after_reconnect": self._fresh})
        self._fresh = False
        self.version = new

    async def run(self) -> None:
        while not self._stop:
            try:
                async with connect(self.url, compression=None, open_timeout=5) as ws:
                    self.connections += 1
                    self._fresh = self.connections > 1
                    await ws.send(json.dumps({"action": "client-options-set", "options": {"name": self.name}}))
                    await ws.send(json.dumps({"action": "object-consumer-register", "pattern": self.object_id,
                                              "version-known": self.version}))
                    try:
                        async for raw in ws:
                            self.on_frame(json.loads(raw))
                    except ConnectionClosed:
                        pass
                    rcvd = ws.close_code, ws.close_reason or ""
                    if not self._stop:
                        self.closes.append(rcvd)
            except (TimeoutError, OSError, ConnectionClosed, Exception):  # noqa: BLE001 - retried
                pass
            if not self._stop:
                await asyncio.sleep(1.0)  # PROTOCOL §13: reconnect after 1-2 s

    def stop(self) -> None:
        self._stop = True


@pytest.fixture
def net(request, tmp_path: Path, monkeypatch):
    """The five hosts and a cluster on them; every process's log is printed when the test fails."""
    producers = tmp_path / "producers"
    producers.mkdir()
    (producers / "multihost_producers.py").write_text(PRODUCERS)
    deps = str(tmp_path / "deps.sqlite3")
    monkeypatch.setenv("SEASYNC_DEPS", deps)  # bump() in this process, the workers and the notifier
    c = NetnsCluster()
    try:
        c.up()
        c.producers, c.deps = producers, deps
        c.start_router()
        c.start_front()
        c.pools = {host: c.start_workers(host, producers, WORKERS, env=c.env(NETNS_HOST=host, SEASYNC_DEPS=deps))
                   for host in ("work1", "work2")}
        c.notifier = c.start_notifier("work2", deps)
        c.client = c.host_thread("client")
        yield c
    finally:
        rep = getattr(request.node, "rep_call", None)
        failed = rep is not None and rep.failed
        logs = c.logs() if failed else ""
        c.close()
        assert not c.leftovers(), f"namespaces left behind: {c.leftovers()}"
        if failed:
            print(logs)


def productions(net: NetnsCluster) -> list[dict]:
    path = net.producers / "productions.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pool_pids(net: NetnsCluster) -> set[int]:
    """The worker processes of both pools (once each pool has started all of its workers)."""
    def pids() -> set[int]:
        return {p.pid for pool in net.pools.values() for p in psutil.Process(pool.pid).children()}
    wait_until(lambda: len(pids()) == WORKERS * len(net.pools), "every pool started its workers")
    return pids()


async def _workers_with_session(url: str) -> set[int]:
    async with RawClient(url, "workers") as client:  # a new watcher: the first update is whole
        await client.send("object-consumer-register", pattern="SeasyncServer::Workers", version_known=0)
        frame = await client.expect(update_of("SeasyncServer::Workers"), timeout=10)
    return {w.get("pid") for w in (frame.get("value") or {}).values()}


def wait_all_workers_joined(net: NetnsCluster) -> None:
    """Every worker process of both pools has a session at the router (SeasyncServer::Workers)."""
    pids = pool_pids(net)
    seen: set[int] = set()
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            seen = net.client.run(_workers_with_session(net.ws_url), 30)
        except (AssertionError, OSError, ConnectionClosed, TimeoutError):
            pass
        if pids <= seen:
            return
        assert time.monotonic() < deadline, f"workers with a session: {seen}, pools: {pids}"
        time.sleep(0.5)


def start_watchers(net: NetnsCluster, object_ids: list[str], key: str) -> list[Watcher]:
    watchers = [Watcher(net.ws_url, f"watch-{i}", oid, key) for i, oid in enumerate(object_ids)]
    net.watch_futures = [net.client.submit(w.run()) for w in watchers]
    return watchers


def stop_watchers(net: NetnsCluster, watchers: list[Watcher]) -> None:
    for w in watchers:
        w.stop()
    for future in net.watch_futures:
        future.cancel()  # cancels the task on the client host's loop: its websocket closes


class Bumper:
    """Bumps a dependency every ``period`` seconds from a thread (the SQLite file is shared by the
    hosts: the notifier on work2 sees each bump and tells the router)."""

    def __init__(self, name: str, period: float = 0.5) -> None:
        self.name, self.period = name, period
        self.last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.last = bump(self.name)[f"dep:{self.name}"]
            self._stop.wait(self.period)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.last


def cut(net: NetnsCluster, host: str, seconds: float = CUT) -> float:
    """The host's link down for ``seconds``, then up; returns the wall-clock time of the heal."""
    net.link_down(host)
    try:
        time.sleep(seconds)
    finally:
        net.link_up(host)
    return time.time()


# ---- 1. watchers on the client host see objects produced on both worker hosts --------------------

def test_watchers_see_objects_produced_on_both_worker_hosts(net):
    wait_all_workers_joined(net)

    async def watch(ids: list[str]) -> dict[str, dict]:
        async with RawClient(net.ws_url, "items") as client:
            for oid in ids:
                await client.send("object-consumer-register", pattern=oid, version_known=0)
            return {oid: (await client.expect(update_of(oid), timeout=DEADLINE))["value"] for oid in ids}

    ids = [f"item-{i}" for i in range(16)]
    values = net.client.run(watch(ids), DEADLINE + 10)
    hosts = {v["host"] for v in values.values()}
    assert hosts == {"work1", "work2"}, f"produced on {hosts}"
    # and each object was produced once, by the host its value names
    made = productions(net)
    assert sorted(p["id"] for p in made if p["id"].startswith("item-")) == sorted(ids)
    assert all(values[p["id"]]["host"] == p["host"] for p in made if p["id"] in values)


# ---- 2. a worker host cut off for 6 s --------------------------------------------------------------

def test_a_worker_host_cut_off_for_6_s_produces_again_no_order_lost_or_done_twice(net):
    wait_all_workers_joined(net)
    v0 = bump("work1-src")["dep:work1-src"]
    only_work1, anywhere = start_watchers(net, ["work1-a", "doc-2"], "dep:work1-src")
    anywhere.key = "dep:doc-src"
    try:
        wait_until(lambda: only_work1.n == v0, "the watcher holds work1-a before the cut")
        net.link_down("work1")
        try:
            for _ in range(3):  # orders for work1-a that only work1 can do, while it is unreachable
                time.sleep(CUT / 4)
                last = bump("work1-src")["dep:work1-src"]
            d = bump("doc-src")["dep:doc-src"]  # the other worker host keeps producing meanwhile
            wait_until(lambda: anywhere.n == d, "doc-2 produced by work2 during the cut", timeout=CUT)
            time.sleep(max(0.0, CUT / 4))
        finally:
            net.link_up("work1")
        healed = time.time()
        wait_until(lambda: only_work1.n == last, f"work1-a at version {last} after the heal")
        assert only_work1.value == {"n": last, "host": "work1"}
        made = [p for p in productions(net) if p["id"] == "work1-a"]
        after = [p for p in made if p["at"] >= healed]
        assert after, f"no production of work1-a after the heal: {made}"
        resumed = after[0]["at"] - healed
        print(f"work1 produced again {resumed:.2f} s after the heal")
        assert resumed < RESUME, f"productions resumed {resumed:.1f} s after the heal (the issue: within {RESUME} s)"
        # no order done twice: each version of work1-a produced at most once, the last exactly once
        done = [version_number(p["version"], "dep:work1-src") for p in made]
        assert len(done) == len(set(done)), f"versions produced more than once: {done}"
        assert done.count(last) == 1
        assert all(p["host"] == "work1" for p in made)
        assert not only_work1.backwards and not anywhere.backwards
        wait_all_workers_joined(net)  # every worker process of the cut host has a session again
    finally:
        stop_watchers(net, [only_work1, anywhere])
    assert all(p.alive() for p in net.procs)


# ---- 3. the front host cut off for 6 s --------------------------------------------------------------

def test_the_front_host_cut_off_for_6_s_closes_clearly_and_clients_resync_by_patch(net):
    """A second front on the client host keeps one consumer of each doc meanwhile (as the other fronts
    of a real deployment would): an object nobody consumes is let go, and a client coming back to it
    then gets a full value (PROTOCOL §11), which is right but not the resync by patch under test."""
    net.start("front2", "client", ["-m", "router.front_cli", "--router", net.router_url,
                                   "--host", net.addr("client"), "--port", "7103"])
    net.wait_port("client", net.addr("client"), 7103)
    v0 = bump("doc-src")["dep:doc-src"]
    keepers = [Watcher(f"ws://{net.addr('client')}:7103", f"keep-{oid}", oid, "dep:doc-src")
               for oid in ("doc-1", "doc-3")]
    keep_futures = [net.client.submit(k.run()) for k in keepers]
    watchers = start_watchers(net, ["doc-1", "doc-1", "doc-3"], "dep:doc-src")
    try:
        wait_until(lambda: all(k.n == v0 for k in keepers), "the keepers hold the docs")
        wait_until(lambda: all(w.n == v0 for w in watchers), "every watcher holds its doc before the cut")
        net.link_down("front")
        try:
            for _ in range(3):  # the data moves on while the front is unreachable
                time.sleep(CUT / 3)
                last = bump("doc-src")["dep:doc-src"]
        finally:
            net.link_up("front")
        wait_until(lambda: all(w.n == last and w.connections >= 2 for w in watchers),
                   f"every watcher reconnected and at version {last}")
        for w in watchers:
            # a clear close: the front's 1012 (its router link was lost), not a silent dead socket
            assert w.closes and w.closes[0][0] == 1012, f"{w.name} was closed with {w.closes}"
            resync = [u for u in w.updates if u["after_reconnect"]]
            assert resync and resync[0]["kind"] == "patch", f"{w.name} resynchronised with {resync}"
            assert version_number(resync[0]["old"], "dep:doc-src") == v0
            assert w.value == {"n": last, "host": w.value["host"]}
            assert not w.backwards, w.backwards
        assert all(not k.closes and not k.backwards for k in keepers)  # the other front was not involved
    finally:
        stop_watchers(net, watchers)
        for k in keepers:
            k.stop()
        for future in keep_futures:
            future.cancel()
    assert all(p.alive() for p in net.procs)


# ---- 4. the router host cut off for 6 s while bumps continue ---------------------------------------

def test_the_router_host_cut_off_for_6_s_every_process_rejoins_and_watchers_end_at_the_last_bump(net):
    wait_all_workers_joined(net)
    v0 = bump("doc-src")["dep:doc-src"]
    watchers = start_watchers(net, ["doc-1", "doc-2", "doc-3", "doc-3"], "dep:doc-src")
    bumper = None
    try:
        wait_until(lambda: all(w.n >= v0 for w in watchers), "every watcher holds its doc before the cut")
        bumper = Bumper("doc-src")
        before = bumper.last
        cut(net, "router")
        during = bumper.last
        # bumps go on after the heal: they reach the watchers only through a rejoined notifier
        wait_until(lambda: bumper.last >= during + 4, "bumps after the heal")
        last = bumper.stop()
        bumper = None
        assert during > before
        wait_until(lambda: all(w.n == last for w in watchers), f"every watcher at the last bump {last}")
        for w in watchers:
            assert not w.backwards, w.backwards
        wait_all_workers_joined(net)  # every worker process of both hosts rejoined by itself
        assert any("closing" in line and "websockets" in line for line in net.procs[1].output().splitlines())
    finally:
        if bumper is not None:
            bumper.stop()
        stop_watchers(net, watchers)
    assert all(p.alive() for p in net.procs)


# ---- 5. a process without the secret on another host cannot join -----------------------------------

def _refused(router, reason: str, address: str) -> bool:
    return any("refused a peer" in line and reason in line and f"from {address}:" in line
               for line in router.output().splitlines())


def _start_other_secret_worker(net: NetnsCluster, cwd: Path):
    """A worker pool on the client host with no SEASYNC_SECRET: it creates a secret file of its own in
    ``cwd`` (the default of a fresh install), so its CURVE keys come from another secret."""
    return net.start_workers("client", net.producers, 1, cwd=cwd,
                             env=net.env(SEASYNC_SECRET=None, NETNS_HOST="client", SEASYNC_DEPS=net.deps))


def _start_open_front(net: NetnsCluster):
    """A front on the client host started with --insecure (SEASYNC_INSECURE=1): no CURVE at all."""
    return net.start("open-front", "client",
                     ["-m", "router.front_cli", "--router", net.router_url, "--host", net.addr("client"),
                      "--port", "7102"], env=net.env(SEASYNC_SECRET=None, SEASYNC_INSECURE="1"))


def test_a_process_without_the_secret_on_another_host_cannot_join_and_says_why(net, tmp_path):
    own = tmp_path / "elsewhere"
    own.mkdir()
    router, client_addr = net.procs[0], net.addr("client")

    intruder = _start_other_secret_worker(net, own)
    wait_until(lambda: _refused(router, "wrong cluster secret", client_addr),
               "the router logs the worker with another secret, and its address")
    intruder.wait_for("hold the same cluster secret?")  # it says why in its own log, and keeps trying

    async def produced(oid: str, timeout: float) -> bool:
        async with RawClient(net.ws_url, "probe") as client:
            await client.send("object-consumer-register", pattern=oid, version_known=0)
            try:
                await client.expect(update_of(oid), timeout=timeout)
                return True
            except AssertionError:
                return False

    assert net.client.run(produced("work1-probe", DEADLINE), DEADLINE + 10)  # the cluster itself works
    assert not net.client.run(produced("client-probe", 5.0), 30)  # only the intruder could produce it
    assert not [p for p in productions(net) if p["host"] == "client"]
    assert intruder.alive()
    intruder.stop()

    # a front without any secret (--insecure) is not welcomed either, and says why; the router's own
    # line about it is not reliable (see the xfail test below), so it is not asserted here
    open_front = _start_open_front(net)
    open_front.wait_for("hold the same cluster secret?")
    assert "welcomed by the router" not in open_front.output()
    assert open_front.alive()
    assert all(p.alive() for p in net.procs if p not in (intruder,))


@pytest.mark.xfail(strict=False, reason=(
    "common/wire.py RouterGuard: a peer without CURVE on another host mostly reads the router's greeting "
    "first and hangs up, so the router sees the handshake broken off (NO_DETAIL: now logged as 'it broke off "
    "the handshake: no cluster secret ...') and often cannot read the peer's address any more (the "
    "descriptor is gone when the monitor thread handles ACCEPTED); libzmq 4.3.5 without the draft API gives "
    "monitor events no address. Failures and disconnects are now matched in order (two refused peers at "
    "once no longer overwrite each other's reason); what is left is the address."))
def test_two_refused_peers_at_once_are_each_named_with_their_own_reason(tmp_path):
    own = tmp_path / "elsewhere"
    own.mkdir()
    producers = tmp_path / "producers"
    producers.mkdir()
    (producers / "multihost_producers.py").write_text(PRODUCERS)
    with NetnsCluster() as net:
        net.producers, net.deps = producers, str(tmp_path / "deps.sqlite3")
        router = net.start_router()
        _start_other_secret_worker(net, own)
        _start_open_front(net)
        try:
            wait_until(lambda: _refused(router, "wrong cluster secret", net.addr("client")), "wrong secret named")
            wait_until(lambda: _refused(router, "no cluster secret", net.addr("client")), "no secret named",
                       timeout=25.0)
        except AssertionError:
            print(net.logs())
            raise


# ---- the tool's teardown ---------------------------------------------------------------------------

_HOLDER = '''
import sys, time
sys.path.insert(0, {repo!r})
from scripts.netns_cluster import NetnsCluster
with NetnsCluster() as net:
    net.start_router()
    print(net.run, flush=True)
    time.sleep(120)
'''


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_the_tool_leaves_no_namespace_behind_when_interrupted_or_killed(sig):
    """SIGTERM (handler) and SIGINT (KeyboardInterrupt through the with block) remove everything at once;
    after SIGKILL nothing can run, and the next run's sweep removes what the dead one left."""
    import signal
    import subprocess
    import sys

    from scripts.netns_cluster import REPO, namespaces, sweep_stale

    holder = subprocess.Popen([sys.executable, "-c", _HOLDER.format(repo=str(REPO))], stdout=subprocess.PIPE,
                              text=True)
    try:
        run = holder.stdout.readline().strip()
        assert run, "the holder did not build its hosts"
        assert [n for n in namespaces() if n.startswith(run + "-")]
        holder.send_signal(getattr(signal, sig))
        holder.wait(30)
        if sig == "SIGKILL":
            assert [n for n in namespaces() if n.startswith(run + "-")]  # nothing could run in the holder
            sweep_stale()
        left = [n for n in namespaces() if n.startswith(run + "-")]
        assert not left, f"left behind after {sig}: {left}"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        sweep_stale()
