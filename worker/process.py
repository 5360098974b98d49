"""One worker process: a producer session with the router, producing one object at a time.

The main thread runs the loop below and owns the ZeroMQ socket (through ``RouterLink``); every
call into producer code goes to the producer thread (``worker/runner.py`` says why). The loop
waits on the socket and on a wake-up pipe (written when producer code returns and when a signal
arrives), so heartbeats keep flowing however long ``produce()`` takes.

Between productions, and about once a second when idle, the producers directory is rescanned;
changed files are reloaded (in the producer thread) and patterns that appeared or disappeared are
registered or unregistered. An in-flight production always finishes first.

A hung producer: a production (or a reload) still running after ``--production-timeout`` seconds is
abandoned. A Python thread cannot be interrupted, so the process gives up on itself: it answers the
router with a ``TimeoutError`` error (a cancel: the router retries with backoff and tells the watchers),
closes its session and exits with ``EXIT_ABANDONED``; the pool starts a fresh process at once.
Producer code that never lets go of the GIL (a C call, a catastrophic regex) freezes this loop as well:
for that case the loop writes a byte to the pool's watchdog pipe every half second, and the pool kills
a worker whose pipe stays silent past the timeout (``worker/pool.py``).

Started by the pool as ``python -m worker.process --router URL --producers DIR``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import zmq

from common import codec, wire
from worker import production
from worker.discovery import Catalog, scan
from worker.link import Frame, Lost, Ready, RouterLink
from worker.logs import setup_logging
from worker.registry import ProducerTable
from worker.runner import ProducerThread
from worker.wakeup import WakePipe

log = logging.getLogger("worker.process")

RESCAN_INTERVAL = 1.0
"""Seconds between two scans of the producers directory."""
ERROR_DELAY = 1.0
"""Seconds to hold a failed production's answer, so a failing producer does not spin."""
STOP_GRACE = 3.0
"""Seconds a stopping worker waits for the current production (the pool SIGKILLs after 5 s)."""
MAX_WAIT = 0.5
STATS_INTERVAL = 2.0
"""Seconds between two reports of this process's pid, host, CPU and memory (shown by introspection)."""
DEFAULT_PRODUCTION_TIMEOUT = 60.0
"""Seconds a production may run before the worker process abandons it and exits (0: no limit)."""
EXIT_ABANDONED = 75
"""Exit code of a worker that gave up on a hung production (the pool replaces it at once)."""
WATCHDOG_BEAT = 0.5
"""Seconds between two signs of life written to the pool's watchdog pipe."""
SECRET_ENV = "SEASYNC_SECRET"
"""The cluster secret reaches worker processes through the environment, not argv (which ps shows)."""


@dataclass
class _Job:
    """What the producer thread is doing: a production (object_id set) or a reload."""

    future: Future[Any]
    session: int
    started: float
    object_id: str | None = None

    def what(self) -> str:
        return f"production of {self.object_id}" if self.object_id is not None else "reloading the producers"


class Worker:
    """The loop of one worker process."""

    def __init__(self, router: str, producers_dir: Path, name: str, parent_pid: int | None = None,
                 production_timeout: float = DEFAULT_PRODUCTION_TIMEOUT, secret: str = "",
                 watchdog_fd: int | None = None) -> None:
        self.producers_dir = producers_dir
        self.parent_pid = parent_pid
        self.watchdog_fd = watchdog_fd
        if watchdog_fd is not None:
            os.set_blocking(watchdog_fd, False)  # a pool slow to read must never stall this loop
        self.next_beat = 0.0
        self.production_timeout = production_timeout
        self.abandoned = False  # a job was left running in the producer thread: exit without waiting for it
        self.exit_code = 0
        self.ctx = zmq.Context()
        self.link = RouterLink(self.ctx, router, name)
        if secret:
            wire.secure_peer(self.link.socket, secret)  # CURVE, before the link connects
        self.catalog = Catalog(producers_dir)
        self.table = ProducerTable()
        self.wakeup = WakePipe()
        self.thread = ProducerThread(self.wakeup.wake)
        self.session = 0  # bumped on every new session: answers for an older one are dropped
        self.registered: set[str] = set()
        self.orders: deque[tuple[int, str]] = deque()
        self.job: _Job | None = None
        self.delayed: tuple[float, int, bytes] | None = None  # (due, session, frame)
        self.next_scan = 0.0
        self.next_stats = 0.0
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # starts the measurement
        self.stopping = False

    # ---- main loop ---------------------------------------------------------------------------

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.wakeup.catch_signals()
        if not self.producers_dir.is_dir():
            log.warning("! producers directory %s does not exist (yet)", self.producers_dir)
        poller = zmq.Poller()
        poller.register(self.link.socket, zmq.POLLIN)
        poller.register(self.wakeup.fd, zmq.POLLIN)
        self.link.start(time.monotonic())
        stop_deadline: float | None = None
        while True:
            now = time.monotonic()
            if self.stopping and stop_deadline is None:
                stop_deadline = now + STOP_GRACE
                self.orders.clear()
                self.delayed = None
                if self.job is not None:
                    log.info("= stopping: waiting up to %.0f s for the current job", STOP_GRACE)
            if stop_deadline is not None and (self.job is None or now >= stop_deadline):
                break
            if self._abandon_hung_job(now):
                break
            timeout = max(0.0, min(self._deadline(now), now + MAX_WAIT) - now)
            ready = dict(poller.poll(timeout * 1000))
            now = time.monotonic()
            if ready.get(self.wakeup.fd):
                self.wakeup.drain()
            if ready.get(self.link.socket):
                self._receive(now)
            self._on_events(self.link.tick(now))
            self._finish_job(now)
            self._send_delayed(now)
            self._check_parent()
            self._beat(now)
            if now >= self.next_stats and self.link.is_open:
                self.next_stats = now + STATS_INTERVAL
                self._send_options()
            if not self.stopping:
                self._start_next_job(now)
        self._shutdown()
        return self.exit_code

    def _deadline(self, now: float) -> float:
        deadline = self.link.deadline()
        if self.delayed is not None:
            deadline = min(deadline, self.delayed[0])
        if self.job is None and self.delayed is None and not self.stopping:
            deadline = min(deadline, now if self.orders else self.next_scan)
        if self.job is not None and self.production_timeout > 0:
            deadline = min(deadline, self.job.started + self.production_timeout)
        return deadline

    def _receive(self, now: float) -> None:
        self._on_events(self.link.receive(now))

    def _on_events(self, events: list) -> None:
        for event in events:
            if isinstance(event, Frame):
                self._on_frame(event.raw)
            elif isinstance(event, Ready):
                self.session += 1
                self.registered = set()
                self._send_options()
                self._sync_registrations()
            elif isinstance(event, Lost):
                self.session += 1
                if self.orders or self.delayed or (self.job and self.job.object_id):
                    log.info("= session lost (%s): pending orders dropped", event.reason)
                self.orders.clear()
                self.delayed = None

    def _send_options(self) -> None:
        """seapig's client options, with this process's load under "stats" (SeasyncServer::Workers)."""
        with self.process.oneshot():
            stats = {"pid": self.process.pid, "host": socket.gethostname(),
                     "cpu_percent": self.process.cpu_percent(None), "rss": self.process.memory_info().rss}
        self.link.send(codec.dumps({"action": "client-options-set", "options": {"name": "worker", "stats": stats}}))

    def _on_frame(self, raw: bytes) -> None:
        try:
            message = codec.loads(raw)
        except codec.JSONDecodeError as exc:
            log.warning("! undecodable frame from the router (%s): %.200r", exc, raw)
            return
        action = message.get("action") if isinstance(message, dict) else None
        if action == "object-produce":
            object_id = message.get("id")
            if isinstance(object_id, str) and object_id:
                log.debug("< object-produce %s (inferred %s)", object_id,
                          codec.dumps(message.get("version-inferred")).decode())
                self.orders.append((self.session, object_id))
            else:
                log.warning("! object-produce without a valid id: %.200r", raw)
        elif action == "error":
            log.warning("! the router reports an error: %s", message.get("message", raw.decode(errors="replace")))
        else:
            log.debug("< %s (ignored)", action)

    # ---- jobs --------------------------------------------------------------------------------

    def _start_next_job(self, now: float) -> None:
        if self.job is not None or self.delayed is not None:
            return
        if now >= self.next_scan:
            self.next_scan = now + RESCAN_INTERVAL
            found = scan(self.producers_dir)
            if self.catalog.changed(found):
                self.job = _Job(self.thread.submit(self.catalog.load, found), self.session, now)
                return
        while self.orders:
            session, object_id = self.orders.popleft()
            if session != self.session:
                continue
            producer = self.table.find(object_id)
            if producer is None:
                log.warning("! no producer for %r (its pattern went away?)", object_id)
                answer = production.failure(object_id, LookupError(f"no producer for {object_id!r} in this worker"))
                self.delayed = (now + ERROR_DELAY, session, answer.frame)
                return
            self.job = _Job(self.thread.submit(production.produce, producer, object_id), session, now, object_id)
            return

    def _finish_job(self, now: float) -> None:
        job = self.job
        if job is None or not job.future.done():
            return
        self.job = None
        try:
            result = job.future.result()
        except BaseException:  # production.produce and Catalog.load catch user errors themselves
            log.exception("! worker bug while running producer code")
            if job.object_id is not None:
                self.delayed = (now + ERROR_DELAY, job.session,
                                production.failure(job.object_id, RuntimeError("worker error")).frame)
            return
        if isinstance(result, ProducerTable):
            self.table = result
            self._sync_registrations()
            self.next_scan = now + RESCAN_INTERVAL
        elif job.session != self.session:
            log.info("= dropping the answer for %s: it was ordered by a session that is gone", job.object_id)
        elif result.error is not None:
            self.delayed = (now + ERROR_DELAY, job.session, result.frame)
        else:
            self.link.send(result.frame)

    def _abandon_hung_job(self, now: float) -> bool:
        """True if the current job overran the production timeout: answered with an error, the loop must end."""
        job = self.job
        if job is None or self.production_timeout <= 0 or job.future.done() \
                or now - job.started <= self.production_timeout:
            return False
        limit = f"{self.production_timeout:g}"
        log.error("! %s took more than %s s: abandoning it; this process exits and the pool replaces it",
                  job.what(), limit)
        if job.object_id is not None and job.session == self.session:
            answer = production.failure(job.object_id, TimeoutError(f"{job.what()} took more than {limit} s"))
            self.link.send(answer.frame)  # at once: the router applies its own retry backoff
        self.exit_code = EXIT_ABANDONED
        return True

    def _send_delayed(self, now: float) -> None:
        if self.delayed is not None and now >= self.delayed[0]:
            _, session, frame = self.delayed
            self.delayed = None
            if session == self.session:
                self.link.send(frame)

    def _sync_registrations(self) -> None:
        """Register the patterns the router does not have yet, unregister the ones gone."""
        if not self.link.is_open:
            return
        wanted = set(self.table.patterns)
        for pattern in sorted(self.registered - wanted):
            self.link.send(codec.dumps({"action": "object-producer-unregister", "pattern": pattern}))
            log.info("> unregistered %s", pattern)
        for pattern in sorted(wanted - self.registered):
            self.link.send(codec.dumps({"action": "object-producer-register", "pattern": pattern}))
            log.info("> registered %s", pattern)
        self.registered = wanted

    # ---- stopping ----------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self.stopping:
            self.stopping = True
            log.info("= %s received: stopping", signal.Signals(signum).name)

    def _beat(self, now: float) -> None:
        """Tell the pool's watchdog that this loop is alive (at most every WATCHDOG_BEAT seconds)."""
        if self.watchdog_fd is None or now < self.next_beat:
            return
        self.next_beat = now + WATCHDOG_BEAT
        try:
            os.write(self.watchdog_fd, b".")
        except BlockingIOError:
            pass  # the pool is behind reading: it has heard from us recently anyway
        except OSError:
            self.watchdog_fd = None  # the pool is gone; _check_parent stops us

    def _check_parent(self) -> None:
        if self.parent_pid is not None and os.getppid() != self.parent_pid and not self.stopping:
            log.warning("! the pool (pid %d) is gone: stopping", self.parent_pid)
            self.stopping = True

    def _shutdown(self) -> None:
        if self.job is not None:
            self.abandoned = True
            if self.exit_code != EXIT_ABANDONED:
                log.warning("! abandoning %s: it did not finish in %.0f s", self.job.what(), STOP_GRACE)
        self.link.close()
        self.ctx.term()
        if self.job is None:
            closing = self.thread.submit(self.catalog.close)
            try:
                closing.result(timeout=1.0)
            except Exception:
                log.warning("! producers did not close in time")
        log.info("= stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.process",
                                     description="One seasync worker process (normally started by sync-worker).",
                                     epilog=f"The cluster secret, if any, is read from {SECRET_ENV} "
                                            "(never from the command line, which ps shows).")
    parser.add_argument("--router", default=wire.DEFAULT_ROUTER)
    parser.add_argument("--producers", type=Path, default=Path("producers"))
    parser.add_argument("--name", default=f"worker@{socket.gethostname()}")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="stop when this process (the pool) is no longer our parent")
    parser.add_argument("--watchdog-fd", type=int, default=None,
                        help="file descriptor (a pipe from the pool) to write a sign of life to")
    parser.add_argument("--production-timeout", type=float, default=DEFAULT_PRODUCTION_TIMEOUT,
                        help="seconds before a production is abandoned and this process exits (0: no limit)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    producers_dir = args.producers.resolve()
    sys.path.insert(0, str(producers_dir))  # producer files may import their neighbours
    # Neighbours are re-imported on reload; a .pyc (keyed on mtime in seconds and size) could
    # hand back the code of a same-size edit made within the same second.
    sys.dont_write_bytecode = True
    worker = Worker(args.router, producers_dir, args.name, args.parent_pid, args.production_timeout,
                    os.environ.get(SECRET_ENV, ""), args.watchdog_fd)
    code = worker.run()
    if worker.abandoned:
        # The producer thread is still inside user code, maybe holding locks that interpreter
        # finalization would wait for: leave without finalizing.
        logging.shutdown()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
