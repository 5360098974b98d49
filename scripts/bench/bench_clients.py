"""Benchmark websocket clients that live in their own processes, driven by the benchmark over a pipe.

Each ``ClientGroup`` is one ``multiprocessing`` (spawn) process holding N asyncio websocket
connections, so the clients' CPU never shares the interpreter of the server being measured. The
connections are the lean ``bench_wsclient.WsProtocol``, not the ``websockets`` client: the clients
share the 2 cores with the servers they measure, so every µs they spend per frame is taken from the
servers (the ``websockets`` client cost 2-3× more CPU per received frame and 3× more per handshake).
A connection keeps, per object id, the version it holds and counts what it receives: deliveries,
bytes, patches and full values, skipped versions (integer versions that jump), patches whose base
is not the version held, and the latency of every update that carries a timestamp ``t``
(``time.perf_counter()`` of the sender: CLOCK_MONOTONIC, comparable across processes), taken
against the time the bytes of the update were read off the socket.

Latencies are kept as a histogram of 0.1 ms bins, so merging many processes is exact to 0.1 ms.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import orjson

try:
    from scripts.bench.bench_wsclient import WsProtocol, open_connection
except ImportError:  # run from the scripts directory
    from bench_wsclient import WsProtocol, open_connection  # type: ignore[no-redef]

BIN = 1e-4  # latency histogram bin: 0.1 ms
CONNECT_CHUNK = 250  # connections opened concurrently (the listen backlog is finite)
PROBE = "seasync-sync-probe:1"
"""The seasync clients' sync probe (docs/PROTOCOL.md §9): its error answer comes after every frame the
registrations before it caused, so a client that holds current versions (and is sent nothing) knows it
is in sync."""


@dataclass
class Stats:
    """What one process's connections received since the last reset (merged with ``+``)."""

    deliveries: int = 0
    updates: int = 0
    patches: int = 0
    values: int = 0
    bytes: int = 0
    value_bytes: int = 0
    patch_bytes: int = 0
    skipped: int = 0
    bad_base: int = 0
    other: int = 0
    closed: int = 0
    close_codes: Counter = field(default_factory=Counter)
    latency: Counter = field(default_factory=Counter)  # bin -> count

    def __add__(self, other: "Stats") -> "Stats":
        out = Stats()
        for name in ("deliveries", "updates", "patches", "values", "bytes", "value_bytes", "patch_bytes",
                     "skipped", "bad_base", "other", "closed"):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        out.close_codes = self.close_codes + other.close_codes
        out.latency = self.latency + other.latency
        return out

    def percentile(self, q: float) -> float | None:
        """Latency percentile in ms (None without samples)."""
        total = sum(self.latency.values())
        if not total:
            return None
        rank = q / 100 * total
        seen = 0
        for b in sorted(self.latency):
            seen += self.latency[b]
            if seen >= rank:
                return (b + 0.5) * BIN * 1e3
        return max(self.latency) * BIN * 1e3

    @property
    def samples(self) -> int:
        return sum(self.latency.values())


def _timestamp(msg: dict) -> float | None:
    value = msg.get("value")
    if isinstance(value, dict):
        t = value.get("t")
        return t if isinstance(t, float) else None
    patch = msg.get("patch")
    if type(patch) is list:
        for op in patch:
            if type(op) is dict and op.get("path") == "/t":
                t = op.get("value")
                return t if isinstance(t, float) else None
    return None


class Client:
    """One websocket connection (opened again on ``reconnect``) and the versions it holds."""

    __slots__ = ("conn", "held", "group", "probed")

    def __init__(self, group: "ClientGroup") -> None:
        self.group = group
        self.conn: WsProtocol | None = None
        self.held: dict[str, Any] = {}
        self.probed = False  # the server answered the sync probe: everything registered before it is current

    def on_message(self, raw: bytes, now: float) -> None:
        """Account one server message; ``now`` is when its bytes were read off the socket."""
        s = self.group.stats
        s.deliveries += 1
        s.bytes += len(raw)
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            s.other += 1
            return
        oid = msg.get("id") if type(msg) is dict else None
        if type(oid) is not str or msg.get("action") != "object-update":
            s.other += 1
            if type(msg) is dict and msg.get("action") == "error" and msg.get("pattern") == PROBE:
                self.probed = True
            return
        s.updates += 1
        vnew = msg.get("version-new")
        held = self.held.get(oid, 0)
        if "patch" in msg:
            s.patches += 1
            s.patch_bytes += len(raw)
            if held != 0 and msg.get("version-old") != held:
                s.bad_base += 1
        else:
            s.values += 1
            s.value_bytes += len(raw)
        if held != 0 and type(vnew) is int and type(held) is int and vnew > held + 1:
            s.skipped += vnew - held - 1
        self.held[oid] = vnew
        t = _timestamp(msg)
        if t is not None:
            s.latency[int((now - t) / BIN)] += 1

    def on_closed(self, code: int) -> None:
        s = self.group.stats
        s.closed += 1
        s.close_codes[code] += 1


class ClientGroup:
    """The asyncio side of one client process: executes commands from the benchmark."""

    def __init__(self, pipe: Connection, url: str) -> None:
        self.pipe = pipe
        self.url = url
        self.clients: list[Client] = []
        self.stats = Stats()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            command, *args = await loop.run_in_executor(None, self.pipe.recv)
            if command == "exit":
                await self._close_all()
                self.pipe.send(("ok",))
                return
            try:
                result = await getattr(self, "cmd_" + command)(*args)
            except Exception as exc:  # report, keep serving
                result = ("error", f"{type(exc).__name__}: {exc}")
            self.pipe.send(result)

    async def _open(self, client: Client, frames: list[bytes]) -> None:
        for attempt in range(5):  # a storm of handshakes can overflow the listen backlog: retry
            try:
                client.conn = await open_connection(self.url, client.on_message, client.on_closed, timeout=60)
                break
            except OSError:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        for frame in frames:
            client.conn.send_text(frame)

    def _frames(self, client: Client, subscribe: list[str], probe: bool = False) -> list[bytes]:
        out = [orjson.dumps({"action": "client-options-set", "options": {"name": "bench"}})]
        for oid in subscribe:
            out.append(orjson.dumps({"action": "object-consumer-register", "pattern": oid,
                                     "version-known": client.held.get(oid, 0)}))
        if probe:
            client.probed = False
            out.append(orjson.dumps({"action": "object-consumer-unregister", "pattern": PROBE}))
        return out

    async def _open_all(self, clients: list[Client], subscribe: list[str], probe: bool = False) -> int:
        failed = 0
        for i in range(0, len(clients), CONNECT_CHUNK):
            chunk = clients[i:i + CONNECT_CHUNK]
            results = await asyncio.gather(*(self._open(c, self._frames(c, subscribe, probe)) for c in chunk),
                                           return_exceptions=True)
            failed += sum(isinstance(r, BaseException) for r in results)
        return failed

    async def cmd_connect(self, n: int, subscribe: list[str], max_queue: int = 16) -> tuple:
        """Open ``n`` connections, each subscribing to ``subscribe`` with the versions it holds.

        ``max_queue`` is accepted for compatibility and unused: a message is accounted as soon as
        it is read, so there is no queue (the socket is read only as fast as messages are handled).
        """
        start = time.perf_counter()
        new = [Client(self) for _ in range(n)]
        failed = await self._open_all(new, subscribe)
        self.clients.extend(c for c in new if c.conn is not None)
        return ("ok", n - failed, time.perf_counter() - start)

    async def cmd_disconnect(self) -> tuple:
        """Close every connection (their versions stay held, for ``reconnect``)."""
        await self._close_all()
        return ("ok",)

    async def cmd_reconnect(self, subscribe: list[str], probe: bool = False) -> tuple:
        """Open every connection again at once, registering the versions held (then the sync probe)."""
        await self._close_all()
        start = time.perf_counter()
        failed = await self._open_all(self.clients, subscribe, probe)
        return ("ok", len(self.clients) - failed, time.perf_counter() - start)

    async def cmd_wait_probed(self, timeout: float) -> tuple:
        """Wait until every connection got the answer to its sync probe (see ``PROBE``)."""
        start = time.perf_counter()
        while True:
            behind = sum(not c.probed for c in self.clients)
            elapsed = time.perf_counter() - start
            if not behind or elapsed > timeout:
                return ("ok" if not behind else "timeout", len(self.clients) - behind, elapsed,
                        time.perf_counter())
            await asyncio.sleep(0.005)

    async def _close_all(self) -> None:
        conns = [c.conn for c in self.clients if c.conn is not None]
        for conn in conns:
            conn.close()
        await asyncio.gather(*(conn.wait_closed() for conn in conns), return_exceptions=True)

    async def cmd_wait(self, oid: str, version: Any, timeout: float) -> tuple:
        """Wait until every connection holds ``version`` of ``oid`` (an int: at least that version).

        Each poll drops the connections that got there from the front of the list and stops at the
        first one that has not: a poll costs little while all are behind (a full scan of 500
        connections every 5 ms would cost the process ~1 µs per frame it receives).
        """
        start = time.perf_counter()
        behind = self.clients
        while True:
            i = 0
            while i < len(behind) and _reached(behind[i].held.get(oid, 0), version):
                i += 1
            behind = behind[i:] if i else behind
            elapsed = time.perf_counter() - start
            if not behind or elapsed > timeout:
                behind = [c for c in behind if not _reached(c.held.get(oid, 0), version)]
                return ("ok" if not behind else "timeout", len(self.clients) - len(behind), elapsed,
                        time.perf_counter())
            await asyncio.sleep(0.005)

    async def cmd_stats(self, reset: bool = True) -> tuple:
        stats = self.stats
        if reset:
            self.stats = Stats()
        return ("ok", stats)

    async def cmd_held(self, oid: str) -> tuple:
        return ("ok", Counter(orjson.dumps(c.held.get(oid, 0)) for c in self.clients))


def _reached(held: Any, version: Any) -> bool:
    if type(version) is int and type(held) is int:
        return held >= version
    return held == version


def _child(pipe: Connection, url: str) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(ClientGroup(pipe, url).serve())


class ClientProcs:
    """Several client processes, commanded together; every call waits for all of them."""

    def __init__(self, url: str, processes: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs = []
        for _ in range(processes):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_child, args=(theirs, url), daemon=True)
            proc.start()
            self.pipes.append(ours)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def call(self, command: str, *per_process_args: Any, args: tuple = ()) -> list[tuple]:
        """Send ``command`` to every process (``per_process_args[i]`` to process i, else ``args``)."""
        for i, pipe in enumerate(self.pipes):
            pipe.send((command, *(per_process_args[i] if per_process_args else args)))
        out = [pipe.recv() for pipe in self.pipes]
        for r in out:
            if r[0] == "error":
                raise RuntimeError(f"client process: {command}: {r[1]}")
        return out

    def connect(self, total: int, subscribe: list[str], max_queue: int = 16) -> tuple[int, float]:
        """Open ``total`` connections spread evenly; returns (connected, slowest seconds)."""
        n = len(self.pipes)
        shares = [total // n + (1 if i < total % n else 0) for i in range(n)]
        results = self.call("connect", *[(s, subscribe, max_queue) for s in shares])
        return sum(r[1] for r in results), max(r[2] for r in results)

    def wait(self, oid: str, version: Any, timeout: float) -> tuple[bool, int, float]:
        """(all reached, how many reached, the perf_counter when the last process saw it done)."""
        results = self.call("wait", args=(oid, version, timeout))
        return all(r[0] == "ok" for r in results), sum(r[1] for r in results), max(r[3] for r in results)

    def stats(self, reset: bool = True) -> Stats:
        total = Stats()
        for r in self.call("stats", args=(reset,)):
            total = total + r[1]
        return total

    def close(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("exit",))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
