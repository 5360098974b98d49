"""The targets table of issue 13 (item 2): one scenario per row, called from scripts/bench/bench.py.

Rows: idle connections (front memory and CPU per connection, against the bare ``websockets`` server),
the reconnect storm of clients holding current versions (convergence, productions, full values), bump →
client at 1,000 watchers, bumps into the router (with coalescing, nobody depending, and through the
notifier), router memory per object and per subscription (in process, tracemalloc), and two fronts
behind one router. Each takes ``args.quick`` for a variant that runs in seconds. Figures go through
``bench.row`` so they land in the same table as every other scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import orjson
import zmq

from scripts.bench import bench as B
from scripts.bench.bench_clients import ClientProcs, Stats
from tests.cluster import Proc, free_port, repo_secret, wait_port

CLIENT_PROCS = 4


def load() -> str:
    """The load average next to every figure: the machine is shared."""
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


# ---------------------------------------------------------------- idle connections


async def idle(args: argparse.Namespace) -> None:
    """10,000 idle websockets: front memory and CPU per connection per second (keepalive included)."""
    n = 2000 if args.quick else 10_000
    window = 10.5 if args.quick else 30.5  # whole keepalive sweeps (--ping-interval 10 s), plus a margin
    figures: dict[str, tuple[float, float, float]] = {}
    for kind in ("seasync", "bare", "floor") + (() if args.quick else ("seasync-ping30",)):
        # "floor": a bare asyncio Protocol pinging every 10 s (bench_floor.py), the round trip's own cost;
        # the last: the same front pinging every 30 s (--ping-interval 30), to show what the interval buys
        interval = 30.0 if kind.endswith("30") else 10.0  # every server here pings every 10 s but the last
        server = B.Server(kind.split("-")[0], front_args=("--ping-interval", "30") if interval == 30.0 else ())
        procs = ClientProcs(server.url, CLIENT_PROCS)
        try:
            await asyncio.sleep(1.0)
            pid = server.fan_pid
            c0 = B.cpu_seconds(pid)
            await asyncio.sleep(window)
            base = (B.cpu_seconds(pid) - c0) / window  # CPU s/s of the empty server (router link, timers)
            before = B.rss(pid)
            connected, seconds = await B.call(procs.connect, n, [])
            # older than half a ping interval before the window opens: the front's sweep leaves younger
            # connections for the next one (a storm is not a ping storm), which would hide a third of the cost
            await asyncio.sleep(interval / 2 + 1.0)
            after = B.rss(pid)
            prof = B.Profiler(args.profile, f"idle{n}-{kind}", {"front": pid})
            c0 = B.cpu_seconds(pid)
            await asyncio.sleep(window)
            busy = (B.cpu_seconds(pid) - c0) / window
            prof.stop()
            per_mem = (after - before) / connected
            per_cpu = busy * 1e6 / connected  # µs of CPU per connection per second, the empty server's share included
            figures[kind] = (per_mem, per_cpu, (busy - base) * 1e6 / connected)
            print(f"  {kind}: {connected} connections in {seconds:.1f} s; RSS {before / 2**20:.1f} → "
                  f"{after / 2**20:.1f} MiB: {per_mem / 1000:.1f} KB per connection; idle CPU {busy * 100:.2f}% of a "
                  f"core ({base * 100:.2f}% empty): {per_cpu:.2f} µs per connection per second "
                  f"({figures[kind][2]:.2f} above the empty server) over {window:.0f} s [{load()}]", flush=True)
        finally:
            await B.call(procs.close)
            server.stop()
    s, b, f = figures["seasync"], figures["bare"], figures["floor"]
    slow = f"{figures['seasync-ping30'][1]:.2f} µs" if "seasync-ping30" in figures else "not run (--quick)"
    B.row(f"idle connections ({n:,}), memory", f"{s[0] / 1000:.1f} KB of front memory per connection (bare "
          f"websockets server {b[0] / 1000:.1f} KB) [{load()}]", "≤ 12 KB", s[0] <= 12_000,
          "not CPU-bound: RSS growth of the front (the transport, the Conn, websockets' sans-I/O protocol and its parser)")
    B.row(f"idle connections ({n:,}), CPU", f"{s[1]:.2f} µs of front CPU per connection per second, empty "
          f"server's timers included (bare websockets server, one ping task each: {b[1]:.2f} µs)",
          "≤ 2 µs", s[1] <= 2.0,
          f"one keepalive sweep every 10 s: per connection a ping written and its pong read and parsed (two "
          f"system calls on loopback); floor in this run (bare asyncio Protocol, same pings): {f[1]:.2f} µs "
          f"({f[2]:.2f} above its empty self); with --ping-interval 30: {slow}")


# ---------------------------------------------------------------- reconnect storm

STORM_PRODUCER = textwrap.dedent('''
    """A producer for the storm row: the version is in a file, every production is counted in another."""
    import pathlib

    from worker import Producer

    HERE = pathlib.Path(__file__).parent


    class Storm(Producer):
        patterns = ["bench-storm"]

        def produce(self, object_id):
            with open(HERE / "productions", "a") as f:
                f.write("x")
            v = int((HERE / "storm.version").read_text())
            return {"v": v, "pad": "x" * 400}, v
''')


def productions(d: Path) -> int:
    try:
        return (d / "productions").stat().st_size
    except FileNotFoundError:
        return 0


def router_has_linger() -> bool:
    out = subprocess.run([sys.executable, "-m", "router.cli", "--help"], capture_output=True, text=True,
                         cwd=B.REPO, timeout=60)
    return "--linger" in out.stdout


async def storm_floor(n: int) -> tuple[float, float, float]:
    """The same storm against bench_floor.py (accept, a canned 101, the probe answered, nothing else):
    (seconds until every client had its probe answered, seconds of handshakes, server µs of CPU each)."""
    server = B.Server("floor")
    procs = ClientProcs(server.url, CLIENT_PROCS)
    try:
        await B.call(procs.connect, n, [])
        await B.call(procs.call, "disconnect")
        await asyncio.sleep(1.0)
        c0 = B.cpu_seconds(server.fan_pid)
        start = time.perf_counter()
        results = await B.call(procs.call, "reconnect", args=(["bench-storm"], True))
        waited = await B.call(procs.call, "wait_probed", args=(60,))
        cpu = B.cpu_seconds(server.fan_pid) - c0
        handshakes = max(r[2] for r in results)
        done = max(r[3] for r in waited)
        converged = sum(r[1] for r in waited)
    finally:
        await B.call(procs.close)
        server.stop()
    if converged != n:
        raise RuntimeError(f"floor storm: only {converged}/{n} answered")
    print(f"  floor (bare asyncio Protocol): {n} reconnected and answered {done - start:.2f} s after the storm began "
          f"(handshakes {handshakes:.2f} s); {cpu * 1e6 / n:.0f} µs of server CPU per reconnect [{load()}]", flush=True)
    return done - start, handshakes, cpu * 1e6 / n


async def storm(args: argparse.Namespace) -> None:
    """10,000 clients holding the current version all reconnect at once: converged, 0 productions."""
    n = 2000 if args.quick else 10_000
    floor_took, _, floor_us = await storm_floor(n)
    variants = [("a watcher stays", ())]
    if router_has_linger():
        variants.append(("everyone leaves, --linger 5", ("--linger", "5")))
    for label, router_args in variants:
        d = Path(tempfile.mkdtemp(prefix="seasync-bench-"))
        (d / "bench_storm.py").write_text(STORM_PRODUCER)
        (d / "storm.version").write_text("1")
        # room for the keeper and for old connections still closing while their clients come back
        server = B.Server("seasync", front_args=("--max-connections", str(2 * n + 100)), router_args=router_args)
        server.start_workers(d, 1)
        procs = ClientProcs(server.url, CLIENT_PROCS)
        keeper = None
        try:
            connected, _ = await B.call(procs.connect, n, ["bench-storm"])
            ok, reached, _ = await B.call(procs.wait, "bench-storm", 1, 120)
            if not ok:
                raise RuntimeError(f"only {reached}/{n} got the first version")
            if not router_args:  # without --linger the object lives while someone watches it
                keeper = await B.Watcher(server.url).__aenter__()
                await keeper.subscribe(["bench-storm"])
                await keeper.until(lambda: "bench-storm" in keeper.held, 60)  # noqa: B023 (awaited here)
            await B.call(procs.call, "disconnect")
            await asyncio.sleep(1.0)
            await B.call(procs.stats)
            made = productions(d)
            prof = B.Profiler(args.profile, f"storm{n}", {"front": server.fan_pid, "router": server.router_pid})
            f0, r0 = B.cpu_seconds(server.fan_pid), B.cpu_seconds(server.router_pid)
            start = time.perf_counter()
            results = await B.call(procs.call, "reconnect", args=(["bench-storm"], True))
            handshakes = max(r[2] for r in results)
            reconnected = sum(r[1] for r in results)
            waited = await B.call(procs.call, "wait_probed", args=(60,))
            done = max(r[3] for r in waited)
            converged = sum(r[1] for r in waited)
            front_cpu, router_cpu = B.cpu_seconds(server.fan_pid) - f0, B.cpu_seconds(server.router_pid) - r0
            prof.stop()
            ok, held, _ = await B.call(procs.wait, "bench-storm", 1, 10)
            st: Stats = await B.call(procs.stats)
            again = productions(d) - made
        finally:
            if keeper is not None:
                await keeper.__aexit__()
            await B.call(procs.close)
            server.stop()
        took = done - start
        print(f"  {label}: {reconnected}/{n} reconnected, {converged}/{n} confirmed current {took:.2f} s after the "
              f"storm began (handshakes {handshakes:.2f} s); {again} productions, {st.values} full values, "
              f"{st.patches} patches; front {front_cpu * 1e6 / n:.0f} µs and router {router_cpu * 1e6 / n:.0f} µs "
              f"of CPU per reconnect [{load()}]", flush=True)
        B.row(f"reconnect storm, {n:,} clients holding current versions ({label})",
              f"all converged in {took:.2f} s; {again} productions, {st.values} full values, {st.patches} patches; "
              f"front {front_cpu * 1e6 / n:.0f} µs, router {router_cpu * 1e6 / n:.0f} µs CPU per reconnect [{load()}]",
              "≤ 2 s, 0 productions, 0 full values",
              converged == n and took <= 2.0 and again == 0 and st.values == 0,
              f"websocket handshakes: the 4 client processes and the front share 2 cores; floor in this run (bare "
              f"asyncio Protocol, canned 101, bench_floor.py): {floor_took:.2f} s, {floor_us:.0f} µs per reconnect")


# ---------------------------------------------------------------- bump -> client at 1,000 watchers

FAN_PRODUCER = textwrap.dedent('''
    """A producer for the bump row: version and the bump's time stamp come from a file the benchmark writes."""
    import pathlib

    from worker import Producer

    HERE = pathlib.Path(__file__).parent


    class Fan(Producer):
        patterns = ["bench-fan"]

        def produce(self, object_id):
            v, t = (HERE / "fan.version").read_text().split()
            return {"v": int(v), "t": float(t), "pad": "x" * 60}, {"dep:fan": int(v)}
''')


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def bump_fan(args: argparse.Namespace) -> None:
    """A dependency upload → production → 1,000 watchers: latency of every delivery."""
    n = 1000
    samples = 30 if args.quick else 150
    d = Path(tempfile.mkdtemp(prefix="seasync-bench-"))
    (d / "bench_fan.py").write_text(FAN_PRODUCER)
    write_atomic(d / "fan.version", f"1 {time.perf_counter()}")
    server = B.Server("seasync")
    server.start_workers(d, 1)
    procs = ClientProcs(server.url, CLIENT_PROCS)
    try:
        connected, _ = await B.call(procs.connect, n, ["bench-fan"])
        ok, reached, _ = await B.call(procs.wait, "bench-fan", {"dep:fan": 1}, 120)
        if not ok:
            raise RuntimeError(f"only {reached}/{n} got the first version")
        async with B.Watcher(server.url) as uploader:
            await uploader.send({"action": "object-patch", "id": "dep:fan", "version-new": 1, "value": {}})
            await asyncio.sleep(0.5)
            await B.call(procs.stats)
            for v in range(2, samples + 7):
                if v == 7:
                    await B.call(procs.stats)  # the first five warm up
                t = time.perf_counter()
                write_atomic(d / "fan.version", f"{v} {t}")
                await uploader.send({"action": "object-patch", "id": "dep:fan", "version-new": v, "value": {}})
                ok, reached, _ = await B.call(procs.wait, "bench-fan", {"dep:fan": v}, 30)
                if not ok:
                    raise RuntimeError(f"bump {v}: only {reached}/{n} got it")
                await asyncio.sleep(0.05)
        st: Stats = await B.call(procs.stats)
    finally:
        await B.call(procs.close)
        server.stop()
    p50, p99 = st.percentile(50), st.percentile(99)
    print(f"  {samples} bumps × {n} watchers: {st.samples} deliveries, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
          f"max {max(st.latency) * 0.1:.1f} ms [{load()}]", flush=True)
    # the same fan-out without the production (a master's upload), and the bare broadcast server's
    plain: dict[str, tuple[float, float]] = {}
    for kind in ("seasync", "bare", "floor"):  # floor: a bare asyncio write loop (bench_floor.py)
        server, procs, master = await B.setup_fanout(kind, n)
        try:
            last = await master.paced(10, 3 if args.quick else 10)
            await B.call(procs.wait, B.OID, last, 30)
            fan: Stats = await B.call(procs.stats)
            plain[kind] = (fan.percentile(50), fan.percentile(99))
            print(f"  {kind}: an upload (no production) at 10/s to {n} clients: p50 {plain[kind][0]:.2f} ms, p99 "
                  f"{plain[kind][1]:.2f} ms [{load()}]", flush=True)
        finally:
            await B.teardown(server, procs, master)
    user, system = B.send_floor(n)
    B.row(f"bump → client at {n:,} watchers", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms over {st.samples:,} deliveries "
          f"({samples} bumps); without the production (an upload) p50 {plain['seasync'][0]:.2f}, p99 "
          f"{plain['seasync'][1]:.2f} ms; bare broadcast p50 {plain['bare'][0]:.2f}, p99 {plain['bare'][1]:.2f} ms "
          f"[{load()}]", "p50 ≤ 2 ms, p99 ≤ 10 ms", p50 <= 2 and p99 <= 10,
          f"one send() per watcher ({user + system:.1f} µs each here: {(user + system) * n / 1000:.1f} ms for "
          f"{n}) while the 4 client processes parse on the same 2 cores; floor in this run (a bare asyncio "
          f"write loop, bench_floor.py): p50 {plain['floor'][0]:.2f}, p99 {plain['floor'][1]:.2f} ms")


# ---------------------------------------------------------------- bumps into the router


class Uploader:
    """A peer of the router that sends what the notifier sends (``object-patch dep:NAME``, data ``{}``) over
    the notifier's own link (worker.link.RouterLink), as fast as the DEALER takes them."""

    def __init__(self, router_url: str) -> None:
        from worker.link import Frame, RouterLink
        from common import wire

        self.Frame = Frame
        self.ctx = zmq.Context()
        self.link = RouterLink(self.ctx, router_url, "bench-uploader", role="notifier")
        secret = repo_secret()
        if secret:
            wire.secure_peer(self.link.socket, secret)
        self.destroys = 0
        self.frames = 0
        self.link.start(time.monotonic())
        deadline = time.monotonic() + 30
        while not self.link.is_open:
            if time.monotonic() > deadline:
                raise RuntimeError("the uploader was not welcomed by the router")
            self.pump(0.05)

    def pump(self, timeout: float = 0.0) -> None:
        if self.link.socket.poll(timeout * 1000, zmq.POLLIN):
            for event in self.link.receive(time.monotonic()):
                if isinstance(event, self.Frame):
                    self.frames += 1
                    if event.raw.startswith(b'{"action":"object-destroy"'):
                        self.destroys += 1
        self.link.tick(time.monotonic())

    def send_all(self, raws: list[bytes], batch: int, before: Callable[[int], None] | None = None) -> None:
        """Send ``raws`` in messages of ``batch`` frames; ``before(i)`` runs before frame i's message."""
        i = sent = 0
        while i < len(raws):
            if before is not None:
                before(i)
            if self.link.send_many(raws[i:i + batch]):
                i += batch
                sent += 1
                if sent % 256 == 0:
                    self.pump()  # the link's heartbeats: a long send must not look like a silent router
            else:
                self.pump(0.001)  # the DEALER's queue is full: let the router catch up
        self.pump()

    def close(self) -> None:
        self.link.close()
        self.ctx.term()


def upload(oid: str, version: int) -> bytes:
    from common import codec, protocol
    return codec.dumps(protocol.upload(oid, version, {}))


async def bumps(args: argparse.Namespace) -> None:
    """Bumps into the router: nobody depends on them, and many of one dependency (coalesced)."""
    n = 20_000 if args.quick else 100_000
    # 1. nobody depends: the router answers each with object-destroy (the upload's id is not wanted)
    server = B.Server("seasync")
    prof = B.Profiler(args.profile, "bumps-free", {"router": server.router_pid})
    try:
        up = Uploader(server.cluster.router_url)
        for batch in (1, 100):
            raws = [upload(f"dep:free-{batch}-{i}", 1) for i in range(n)]
            up.destroys = 0
            r0 = B.cpu_seconds(server.router_pid)
            start = time.perf_counter()
            up.send_all(raws, batch)
            deadline = time.monotonic() + 120
            while up.destroys < n and time.monotonic() < deadline:
                up.pump(0.05)
            took = time.perf_counter() - start
            router_us = (B.cpu_seconds(server.router_pid) - r0) * 1e6 / n
            rate = up.destroys / took
            print(f"  nobody depends, {batch} upload(s) per message: {up.destroys}/{n} answered in {took:.2f} s: "
                  f"{rate:,.0f} bumps/s, router {router_us:.1f} µs CPU per bump [{load()}]", flush=True)
            B.row(f"bumps into the router, nobody depends ({batch} per message)",
                  f"{rate:,.0f} bumps/s; router {router_us:.1f} µs CPU per bump [{load()}]", "≥ 100,000/s",
                  rate >= 100_000, "the router: one Python process parsing and answering each upload")
        up.close()
    finally:
        prof.stop()
        server.stop()
    # 2. with coalescing: k objects depend on dep:co, bumped n times flat out
    k = 100
    d = B.producers_dir()
    server = B.Server("seasync")
    server.start_workers(d, 2, 64)
    prof = B.Profiler(args.profile, "bumps-coalesced", {"router": server.router_pid})
    try:
        up = Uploader(server.cluster.router_url)
        async with B.Watcher(server.url) as watcher:
            ids = [f"tp-{i}" for i in range(k)]
            await watcher.subscribe(ids)
            await watcher.until(lambda: len(watcher.held) == k, 120)
            up.send_all([upload("dep:tp", 1)], 1)
            await asyncio.sleep(0.5)
            frames0 = watcher.frames
            raws = [upload("dep:tp", v) for v in range(2, n + 2)]

            def before(i: int) -> None:  # the producer never answers with a version not uploaded yet... or
                if i % 64 == 0:          # at most 64 ahead: the version file leads the uploads
                    B.set_version(d, "tp", min(n + 1, i + 2 + 63))

            r0 = B.cpu_seconds(server.router_pid)
            start = time.perf_counter()
            await asyncio.to_thread(up.send_all, raws, 1, before)
            key = orjson.dumps({"dep:tp": n + 1}, option=orjson.OPT_SORT_KEYS)
            await watcher.until(lambda: watcher.reached[key] >= k, 120)
            took = time.perf_counter() - start
            router_us = (B.cpu_seconds(server.router_pid) - r0) * 1e6 / n
            made = watcher.frames - frames0
        up.close()
    finally:
        prof.stop()
        server.stop()
    rate = n / took
    print(f"  {k} objects depend on one dependency bumped {n} times: all at the last version {took:.2f} s after "
          f"the first bump: {rate:,.0f} bumps/s, {made} updates delivered ({made / k:.0f} per object), router "
          f"{router_us:.1f} µs CPU per bump [{load()}]", flush=True)
    B.row("bumps into the router, coalesced", f"{rate:,.0f} bumps/s of one dependency of {k} objects; {made / k:.0f} "
          f"re-productions per object for {n:,} bumps; router {router_us:.1f} µs CPU per bump [{load()}]",
          "≥ 20,000/s", rate >= 20_000, "the router parses every upload; re-productions wait for the worker")
    await notifier_bumps(args)


async def notifier_bumps(args: argparse.Namespace) -> None:
    """The notifier's side: ``bump()`` of many names into SQLite, until the notifier reported them all."""
    n = 20_000 if args.quick else 100_000
    d = Path(tempfile.mkdtemp(prefix="seasync-bench-"))
    path = str(d / "deps.sqlite3")
    server = B.Server("seasync")
    notifier = Proc("notifier", ["-m", "worker.notifier.cli", "--router", server.cluster.router_url, "--deps", path])
    server.cluster.procs.append(notifier)
    prof = B.Profiler(args.profile, "bumps-notifier", {"notifier": notifier.pid, "router": server.router_pid})
    try:
        from common.deps import api
        api.bump("warmup", url=path)
        await asyncio.sleep(2.0)
        names = [f"free{i}" for i in range(n)]
        db = sqlite3.connect(path)
        n0, r0 = B.cpu_seconds(notifier.pid), B.cpu_seconds(server.router_pid)
        start = time.perf_counter()
        for i in range(0, n, 10_000):
            api.bump(*names[i:i + 10_000], url=path)
        bumped = time.perf_counter() - start
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            left = db.execute("SELECT count(*) FROM seasync_dependencies WHERE current_version <> reported_version"
                              ).fetchone()[0]
            if not left:
                break
            await asyncio.sleep(0.01)
        took = time.perf_counter() - start
        notifier_us = (B.cpu_seconds(notifier.pid) - n0) * 1e6 / n
        await asyncio.sleep(1.0)
        router_us = (B.cpu_seconds(server.router_pid) - r0) * 1e6 / n
        db.close()
    finally:
        prof.stop()
        server.stop()
    rate = n / took
    print(f"  notifier: {n} bumps committed in {bumped:.2f} s, all reported {took:.2f} s after the first: "
          f"{rate:,.0f} bumps/s; notifier {notifier_us:.1f} µs, router {router_us:.1f} µs CPU per bump [{load()}]",
          flush=True)
    B.row("bumps through the notifier (SQLite), nobody depends", f"{rate:,.0f} bumps/s from bump() to reported; "
          f"notifier {notifier_us:.1f} µs, router {router_us:.1f} µs CPU per bump [{load()}]", "≥ 100,000/s",
          rate >= 100_000, "bump()'s SQLite transactions and the notifier's per-row work")


# ---------------------------------------------------------------- router memory


def router_memory(args: argparse.Namespace) -> None:
    """Router memory per live object (besides its value) and per (session, object) subscription, in process."""
    from common import codec
    from router.store import ObjectStore

    objects, sessions = (10_000, 1_000) if args.quick else (100_000, 10_000)
    per_session = objects // sessions
    store = ObjectStore()
    now = 1000.0
    producer = store.open(("p",))
    store.handle_raw(producer, codec.dumps({"action": "client-options-set", "options": {"name": "p", "prefetch": 64}}),
                     now)
    store.handle_raw(producer, codec.dumps({"action": "object-producer-register", "pattern": "o-*"}), now)
    store.take_outbox()
    gc.collect()
    tracemalloc.start()
    m0 = tracemalloc.get_traced_memory()[0]
    consumers = [store.open(("c", i)) for i in range(sessions)]
    for s in consumers:
        store.handle_raw(s, b'{"action":"client-options-set","options":{"name":"bench"}}', now)
    store.take_outbox()
    gc.collect()
    m1 = tracemalloc.get_traced_memory()[0]

    def subscribe(offset: int) -> None:
        """Each session subscribes ``per_session`` ids; the producer answers every order at once."""
        for i in range(objects):
            s = consumers[i // per_session]
            oid = f"o-{(i + offset) % objects}"
            store.handle_raw(s, codec.dumps({"action": "object-consumer-register", "pattern": oid,
                                             "version-known": 0}), now)
            if i % 64 == 63 or i == objects - 1:
                for delivery in store.take_outbox():
                    if delivery.sessions and delivery.sessions[0] is producer:
                        order = codec.loads(delivery.frame)
                        if order.get("action") == "object-produce":
                            oid = order["id"]
                            store.handle_raw(producer, codec.dumps(
                                {"action": "object-patch", "id": oid, "version-new": 1,
                                 "value": {"id": oid, "n": 1}}), now)
                store.take_outbox()

    subscribe(0)
    gc.collect()
    m2 = tracemalloc.get_traced_memory()[0]
    assert len(store.objects) == objects, len(store.objects)
    subscribe(per_session // 2 + 1)  # every session subscribes as many existing objects again
    gc.collect()
    m3 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    sample = next(iter(store.objects.values()))
    _, data = sample.latest
    value = sys.getsizeof(data) + sum(sys.getsizeof(v) for v in data.values()) + sys.getsizeof(sample.full_frame)
    per_object = (m2 - m1) / objects  # one object and its first subscription
    per_sub = (m3 - m2) / objects
    besides = per_object - value - per_sub
    print(f"  {objects:,} objects, {sessions:,} sessions: sessions {(m1 - m0) / sessions:,.0f} B each; objects with "
          f"one subscriber {per_object:,.0f} B each (value and its frame {value} B, the subscription {per_sub:.0f} B): "
          f"{besides:,.0f} B per object besides its value; {per_sub:.0f} B per further subscription", flush=True)
    B.row("router memory per live object", f"{besides:,.0f} B besides its value ({objects:,} objects, "
          f"{sessions:,} sessions; tracemalloc of the store)", "≤ 2 KiB", besides <= 2048,
          "SyncObject and its per-object dicts and lists; not CPU-bound")
    B.row("router memory per subscription", f"{per_sub:.0f} B per (session, object) subscription",
          "≤ 200 B", per_sub <= 200, "four dict entries: session.consumes, session.held, obj.consumers, the "
          "pattern index")


# ---------------------------------------------------------------- two fronts


async def two_fronts(args: argparse.Namespace) -> None:
    """Deliveries/s of one object to N clients through one front, then split over two fronts."""
    n = 500 if args.quick else 1000
    seconds = 2.0 if args.quick else 4.0
    rates: dict[int, float] = {}
    for fronts in (1, 2, 1, 2):
        server = B.Server("seasync")
        urls = [server.url]
        extra: Proc | None = None
        if fronts == 2:
            port = free_port()
            extra = Proc("front2", ["-m", "router.front.cli", "--router", server.cluster.router_url,
                                    "--host", "127.0.0.1", "--port", str(port)])
            server.cluster.procs.append(extra)
            wait_port(port)
            urls.append(f"ws://127.0.0.1:{port}")
        groups = [ClientProcs(url, CLIENT_PROCS // fronts) for url in urls]
        try:
            for g in groups:
                await B.call(g.connect, n // fronts, [B.OID])
            master = await B.Master(server).__aenter__()
            await asyncio.sleep(0.5)
            await master.send()
            for g in groups:
                await B.call(g.wait, B.OID, 1, 60)
                await B.call(g.stats)
            cpus = [B.cpu_seconds(server.fan_pid)] + ([B.cpu_seconds(extra.pid)] if extra else [])
            start = time.perf_counter()
            last = await master.flat_out(seconds)
            done = 0.0
            for g in groups:
                ok, reached, at = await B.call(g.wait, B.OID, last, 30)
                done = max(done, at)
            delivered = 0
            for g in groups:
                st: Stats = await B.call(g.stats)
                delivered += st.updates
            rate = delivered / (done - start)
            used = [B.cpu_seconds(server.fan_pid) - cpus[0]] + ([B.cpu_seconds(extra.pid) - cpus[1]] if extra else [])
            rates[fronts] = max(rates.get(fronts, 0.0), rate)
            print(f"  {fronts} front(s), {n} clients: {delivered} deliveries of {last} versions in {done - start:.2f} s: "
                  f"{rate:,.0f} deliveries/s; front CPU {', '.join(f'{u / (done - start) * 100:.0f}%' for u in used)} "
                  f"of a core [{load()}]", flush=True)
            await master.__aexit__()
        finally:
            for g in groups:
                await B.call(g.close)
            server.stop()
    ratio = rates[2] / rates[1]
    B.row("two fronts behind one router", f"{ratio:.2f}× the deliveries/s of one front ({rates[1]:,.0f} → "
          f"{rates[2]:,.0f}/s, {n} clients, the master uploading flat out for {seconds:.0f} s) [{load()}]", "≥ 1.6× where cores allow",
          ratio >= 1.6, "2 cores for 2 fronts, the router, the master and 4 client processes: no core is free")


SCENARIOS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "idle": idle,
    "storm-current": storm,
    "bump-fan": bump_fan,
    "bumps": bumps,
    "router-memory": router_memory,
    "two-fronts": two_fronts,
}
