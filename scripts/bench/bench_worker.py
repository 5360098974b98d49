"""The worker process alone: CPU per production against a scripted router that keeps it busy.

Run: ``.venv/bin/python scripts/bench/bench_worker.py [--prefetch N] [--seconds S] [--profile FILE]``.
Before/after a change: ``git archive HEAD | tar -x -C /tmp/old`` and compare runs with ``--repo /tmp/old``
(``--single --no-option`` for a worker that predates multi-pair SENDS and --prefetch), interleaved.

A real ``sync-worker --workers 1`` pool runs a trivial producer (the one of ``scripts/bench/bench.py``'s
throughput scenario: it reads its version from a file) against a ROUTER socket played by this script,
which keeps ``--prefetch`` orders outstanding on the worker's session (a new one for each answer, all the
new ones of a wake-up in one SENDS message, as the router flushes). The router's own cost is out of
the picture: the figure is the worker process's CPU (user + system, psutil) per production, which on
2 cores shared with the router and the front bounds what the whole cluster can produce.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import zmq

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from common import codec, wire  # noqa: E402
from tests.cluster import Proc, free_port  # noqa: E402

PRODUCERS = textwrap.dedent('''
    import pathlib
    from worker import Producer

    HERE = pathlib.Path(__file__).parent

    class Trivial(Producer):
        patterns = ["tp-*"]

        def produce(self, object_id):
            v = int((HERE / "tp.version").read_text())
            return {"v": v}, {"dep:tp": v}
''')


class ScriptedRouter:
    """Just enough of the router: WELCOME, PONG, and a window of orders kept full."""

    def __init__(self, window: int, ids: int, multi: bool, secret: str = "") -> None:
        self.url = f"tcp://127.0.0.1:{free_port()}"
        self.ctx = zmq.Context()
        self.socket = self.ctx.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.guard = wire.secure_router(self.ctx, self.socket, secret) if secret else None  # CURVE, as sync-router
        self.socket.bind(self.url)
        self.window = window
        self.multi = multi  # several orders in one SENDS message (a worker that knows the new envelope)
        self.ids = [f"tp-{i}" for i in range(ids)]
        self.next_id = 0
        self.worker: bytes | None = None
        self.sid = b"1"
        self.registered = False
        self.outstanding: set[str] = set()
        self.answers = 0
        self.errors = 0
        self.messages_in = 0

    def serve(self, until: float) -> None:
        """Run the loop until ``until`` (monotonic)."""
        while time.monotonic() < until:
            if not self.socket.poll(50):
                continue
            while True:
                try:
                    identity, *frames = self.socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._on_message(identity, frames)
            self._fill()

    def _on_message(self, identity: bytes, frames: list[bytes]) -> None:
        kind = frames[0]
        if kind == wire.HELLO:
            self.worker = identity
            self.socket.send_multipart([identity, wire.WELCOME, b"bench"])
        elif kind == wire.PING:
            self.socket.send_multipart([identity, wire.PONG, b"bench"])
        elif kind == wire.OPEN:
            self.sid = frames[1]
        elif kind == wire.MSG:
            self.messages_in += 1
            for _, raw in wire.pairs(frames):
                self._on_seapig(codec.loads(raw))

    def _on_seapig(self, message: dict) -> None:
        action = message.get("action")
        if action == "object-producer-register" and message.get("pattern") == "tp-*":
            self.registered = True
        elif action == "object-patch":
            self.outstanding.discard(message["id"])
            self.answers += 1
            if "error" in message:
                self.errors += 1

    def _fill(self) -> None:
        if not self.registered or self.worker is None:
            return
        orders: list[bytes] = []
        while len(self.outstanding) < self.window:
            object_id = self.ids[self.next_id % len(self.ids)]
            self.next_id += 1
            if object_id in self.outstanding:
                continue
            self.outstanding.add(object_id)
            orders.append(codec.dumps({"action": "object-produce", "id": object_id, "version-inferred": None}))
        if not orders:
            return
        if self.multi:
            parts: list[bytes] = [self.worker, wire.SENDS]
            for frame in orders:
                parts += [frame, self.sid]
            self.socket.send_multipart(parts)
        else:
            for frame in orders:
                self.socket.send_multipart([self.worker, wire.SENDS, frame, self.sid])

    def close(self) -> None:
        self.socket.close()
        if self.guard is not None:
            self.guard.stop()
        self.ctx.term()


def worker_process(pool: Proc, timeout: float = 30.0) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = psutil.Process(pool.pid).children()
        if children:
            return children[0]
        time.sleep(0.05)
    raise TimeoutError("the pool started no worker")


def cpu(proc: psutil.Process) -> tuple[float, float]:
    """(user, system) CPU seconds."""
    times = proc.cpu_times()
    return times.user, times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prefetch", type=int, default=1, help="orders kept outstanding (and sync-worker --prefetch)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds (after 1 s of warm-up)")
    parser.add_argument("--single", action="store_true", help="one SENDS message per order (instead of one for all of them)")
    parser.add_argument("--no-option", action="store_true", help="do not pass --prefetch to sync-worker")
    parser.add_argument("--repo", type=Path, default=REPO,
                        help="run the worker from this checkout (e.g. an older one, for a before/after)")
    parser.add_argument("--profile", type=Path, help="py-spy the worker process into this file (flamegraph SVG, "
                                                     "or collapsed stacks if it ends in .txt)")
    parser.add_argument("--gil", action="store_true", help="profile only the thread holding the GIL")
    parser.add_argument("--insecure", action="store_true",
                        help="plain ZeroMQ links (sync-worker --insecure); default: CURVE with a secret, as a default install")
    args = parser.parse_args()
    secret = "" if args.insecure else secrets.token_urlsafe(32)
    d = Path(tempfile.mkdtemp(prefix="seasync-bench-worker-"))
    (d / "bench_worker_producers.py").write_text(PRODUCERS)
    (d / "tp.version").write_text("1")
    router = ScriptedRouter(args.prefetch, max(64, 4 * args.prefetch), multi=not args.single, secret=secret)
    extra = [] if args.no_option else ["--prefetch", str(args.prefetch)]
    pool = Proc("worker", ["-m", "worker.cli", "--router", router.url, "--workers", "1",
                           "--producers", str(d), *extra], env={"PYTHONPATH": str(args.repo), "SEASYNC_SECRET": secret}, cwd=args.repo)
    try:
        worker = worker_process(pool)
        deadline = time.monotonic() + 30
        while not router.registered:
            assert time.monotonic() < deadline, pool.output()
            router.serve(time.monotonic() + 0.1)
        router.serve(time.monotonic() + 1.0)  # warm-up
        spy = None
        if args.profile:
            fmt = ["--format", "raw"] if args.profile.suffix == ".txt" else []
            if args.gil:
                fmt.append("--gil")
            spy = subprocess.Popen([str(REPO / ".venv" / "bin" / "py-spy"), "record", "-p", str(worker.pid),
                                    "-o", str(args.profile), "-r", "200", "-d", str(int(args.seconds)), *fmt],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c0, a0, m0, t0 = cpu(worker), router.answers, router.messages_in, time.perf_counter()
        router.serve(time.monotonic() + args.seconds)
        c1, a1, m1, t1 = cpu(worker), router.answers, router.messages_in, time.perf_counter()
        if spy is not None:
            spy.wait()
        n = a1 - a0
        user, system = c1[0] - c0[0], c1[1] - c0[1]
        print(f"prefetch {args.prefetch}: {n / (t1 - t0):,.0f} productions/s, worker "
              f"{(user + system) * 1e6 / max(n, 1):.1f} µs CPU per production ({user * 1e6 / max(n, 1):.0f} user "
              f"+ {system * 1e6 / max(n, 1):.0f} system; {(user + system) / (t1 - t0):.0%} of a core), "
              f"{n / max(m1 - m0, 1):.2f} answers per message, {router.errors} errors", flush=True)
    finally:
        pool.stop()
        router.close()


if __name__ == "__main__":
    main()
