"""One worker process: a producer session with the router, producing one object at a time (in order).

The main thread runs the loop below and owns the ZeroMQ socket (through ``RouterLink``); every
call into producer code goes to the producer thread (``worker/runner.py`` says why). The loop
waits on the socket and on a wake-up pipe (written when producer code returns and when a signal
arrives), so heartbeats keep flowing however long ``produce()`` takes.

Pipelining (``--prefetch N``): the worker announces ``"prefetch": N`` in its client options, and
the router may then hold up to N orders on its session at once. Every order received is handed to
the producer thread at once, which runs them one after the other without waiting for this loop;
the answers finished by the time the loop wakes up go back together in one ZeroMQ message. Each
production's timeout counts from when *it* started running. A failed answer is held back
ERROR_DELAY seconds (so a failing producer does not spin) without holding back the others.

About once a second the producers directory is rescanned; changed files are reloaded (in the
producer thread) and patterns that appeared or disappeared are registered or unregistered. A reload
waits until the productions handed over are finished, and no new one starts before it is done.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import zmq

from common import codec, logs, protocol, wire
from common.secret import cluster_secret
from worker import collection, production
from worker.discovery import Catalog, scan
from worker.link import Frame, Lost, Ready, RouterLink
from worker.registry import ProducerTable
from worker.runner import Call, ProducerThread
from worker.wakeup import WakePipe

log = logging.getLogger("seasync.worker.process")

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
"""Seconds between two signs of life written to the pool's watchdog pipe (and two checks that the pool
is still our parent: not on every loop iteration, which a busy worker runs thousands of times a second)."""
DEFAULT_PREFETCH = 1
"""Orders the router may give this worker at once: seapig's one per producer session by default."""
SECRET_ENV = "SEASYNC_SECRET"  # common.secret.SECRET_ENV
"""The cluster secret reaches worker processes through the environment, not argv (which ps shows)."""


@dataclass(slots=True)
class _Job:
    """A call handed to the producer thread: a production (object_id set) or a reload."""

    call: Call
    session: int
    object_id: str | None = None
    apply: bool = False  # a collection-apply, not a production

    def what(self) -> str:
        return f"production of {self.object_id}" if self.object_id is not None else "reloading the producers"


class Worker:
    """The loop of one worker process."""

    def __init__(self, router: str, producers_dir: Path, name: str, parent_pid: int | None = None,
                 production_timeout: float = DEFAULT_PRODUCTION_TIMEOUT, secret: str = "",
                 watchdog_fd: int | None = None, prefetch: int = DEFAULT_PREFETCH) -> None:
        self.producers_dir = producers_dir
        self.parent_pid = parent_pid
        self.watchdog_fd = watchdog_fd
        if watchdog_fd is not None:
            os.set_blocking(watchdog_fd, False)  # a pool slow to read must never stall this loop
        self.next_chores = 0.0
        self.production_timeout = production_timeout
        self.prefetch = max(1, prefetch)
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
        # received, not handed to the producer thread yet: (session, id, the collection-apply frame or None)
        # (session, id, the collection-apply message or None, the order's versions-held or None)
        self.orders: deque[tuple[int, str, dict | None, list | None]] = deque()
        self.jobs: deque[_Job] = deque()  # handed over, in the order the producer thread runs them
        self.delayed: deque[tuple[float, int, bytes]] = deque()  # (due, session, frame) of failed answers
        self.outbox: list[bytes] = []  # frames to send at the end of this loop iteration, in one message
        self.reload: dict | None = None  # a scan that differs from what is loaded, waiting for the jobs
        self.next_scan = 0.0
        self.next_stats = 0.0
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # starts the measurement
        self.stopping = False
        self.debug = log.isEnabledFor(logging.DEBUG)

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
        link, sock, wake_fd, clock = self.link, self.link.socket, self.wakeup.fd, time.monotonic
        link.start(clock())
        stop_deadline: float | None = None
        while True:
            now = clock()
            if self.stopping and stop_deadline is None:
                stop_deadline = now + STOP_GRACE
                self._drop_pending()
            if stop_deadline is not None and (not self.jobs or now >= stop_deadline):
                break
            if self._abandon_hung_job(now):
                break
            for fd, _ in poller.poll(max(0.0, self._deadline(now) - now) * 1000):
                if fd is sock:
                    self._on_events(link.receive(clock()))
                elif fd == wake_fd:
                    self.wakeup.drain()
            now = clock()
            if now >= link.deadline():
                self._on_events(link.tick(now))
            self._collect(now)
            if self.delayed:
                self._send_delayed(now)
            if now >= self.next_chores:
                self._chores(now)
            if not self.stopping:
                self._start_jobs(now)
            if self.outbox:
                self._flush()
        self._shutdown()
        return self.exit_code

    def _deadline(self, now: float) -> float:
        deadline = min(self.link.deadline(), self.next_chores, now + MAX_WAIT)
        if not self.stopping:
            deadline = min(deadline, self.next_scan)
        if self.delayed:
            deadline = min(deadline, self.delayed[0][0])
        if self.production_timeout > 0:
            job = self._running()
            if job is not None and job.call.started is not None:
                deadline = min(deadline, job.call.started + self.production_timeout)
        return deadline

    def _chores(self, now: float) -> None:
        """What need not run on every wake-up: the parent check, the watchdog beat, the load report."""
        self.next_chores = now + WATCHDOG_BEAT
        self._check_parent()
        self._beat()
        if now >= self.next_stats and self.link.is_open:
            self.next_stats = now + STATS_INTERVAL
            self._send_options()

    def _flush(self) -> None:
        """Send what this iteration produced in one message (lost if the session is not open)."""
        frames, self.outbox = self.outbox, []
        self.link.send_many(frames)

    def _on_events(self, events: list) -> None:
        for event in events:
            if isinstance(event, Frame):
                self._on_frame(event.raw)
            elif isinstance(event, Ready):
                self._void_session()
                self.registered = set()
                self._send_options()
                self._sync_registrations()
            elif isinstance(event, Lost):
                if self.orders or self.delayed or any(job.object_id for job in self.jobs):
                    log.info("= session lost (%s): pending orders dropped", event.reason)
                self._void_session()

    def _void_session(self) -> None:
        """A new session: orders and answers of the old one are void (the router requeued them)."""
        self.session += 1
        self.orders.clear()
        self.delayed.clear()
        self.outbox.clear()
        for job in self.jobs:
            if job.object_id is not None:
                job.call.cancelled = True  # not started yet: not worth running

    def _send_options(self) -> None:
        """seapig's client options, with this process's load under "stats" (SeasyncServer::Workers),
        and how many orders the router may give us at once."""
        with self.process.oneshot():
            stats = {"pid": self.process.pid, "host": socket.gethostname(),
                     "cpu_percent": self.process.cpu_percent(None), "rss": self.process.memory_info().rss}
        options = {"name": "worker", "stats": stats, "prefetch": self.prefetch,
                   "collections": sorted(self.table.collection_patterns)}
        self.outbox.append(codec.dumps(protocol.options_set(options)))

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
                if self.debug:
                    log.debug("< object-produce %s (inferred %s)", object_id,
                              codec.dumps(message.get("version-inferred")).decode())
                held = message.get("versions-held")
                self.orders.append((self.session, object_id, None, held if isinstance(held, list) else None))
            else:
                log.warning("! object-produce without a valid id: %.200r", raw)
        elif action == "collection-apply":  # a write to a collection, in the same line as the productions
            object_id = message.get("id")
            if isinstance(object_id, str) and object_id:
                self.orders.append((self.session, object_id, message, None))
            else:
                log.warning("! collection-apply without a valid id: %.200r", raw)
        elif action == "error":
            log.warning("! the router reports an error: %s", message.get("message", raw.decode(errors="replace")))
        elif self.debug:
            log.debug("< %s (ignored)", action)

    # ---- jobs --------------------------------------------------------------------------------

    def _running(self) -> _Job | None:
        """The job the producer thread is on (or is about to start): the oldest one not done."""
        for job in self.jobs:
            if not job.call.done:
                return job
        return None

    def _start_jobs(self, now: float) -> None:
        """Hand the pending orders to the producer thread (up to ``prefetch`` in its hands: more would
        mean the router broke its side of the deal), unless a reload must run first."""
        reloading = bool(self.jobs) and self.jobs[0].object_id is None
        if now >= self.next_scan:
            self.next_scan = now + RESCAN_INTERVAL
            if self.reload is None and not reloading:
                found = scan(self.producers_dir)
                if self.catalog.changed(found):
                    self.reload = found
        if self.reload is not None:
            if self.jobs:
                return  # the productions handed over finish first, with the code they started with
            self.jobs.append(_Job(self.thread.submit(self.catalog.load, self.reload), self.session))
            self.reload = None
            return
        if reloading:
            return
        while self.orders and len(self.jobs) < self.prefetch:
            session, object_id, apply, held = self.orders.popleft()
            if session != self.session:
                continue
            producer = self.table.find(object_id)
            if apply is not None:
                if not isinstance(producer, collection.Collection):
                    frame = codec.dumps({"action": "collection-applied", "id": object_id, "ticket": apply.get("ticket"),
                                         "error": f"no collection {object_id!r} in this worker",
                                         "code": "no-collection"})
                    self.outbox.append(frame)
                    continue
                self.jobs.append(_Job(self.thread.submit(collection.apply, producer, apply), session, object_id, True))
                continue
            if producer is None:
                log.warning("! no producer for %r (its pattern went away?)", object_id)
                answer = production.failure(object_id, LookupError(f"no producer for {object_id!r} in this worker"))
                self.delayed.append((now + ERROR_DELAY, session, answer.frame))
                continue
            self.jobs.append(_Job(self.thread.submit(production.produce, producer, object_id, held), session,
                                  object_id))

    def _collect(self, now: float) -> None:
        """Take every finished job off the front of the line: answers go to the outbox (in order)."""
        jobs = self.jobs
        while jobs and jobs[0].call.done:
            job = jobs.popleft()
            call = job.call
            if call.started is None:
                continue  # cancelled before it ran
            if call.error is not None:  # production.produce and Catalog.load catch user errors themselves
                log.error("! worker bug while running producer code", exc_info=call.error)
                if job.object_id is not None and job.session == self.session and not job.apply:
                    self.delayed.append((now + ERROR_DELAY, job.session,
                                         production.failure(job.object_id, RuntimeError("worker error")).frame))
                continue
            result = call.result
            if job.object_id is None:
                self.table = result
                self._sync_registrations()
                self._send_options()  # its collection patterns may have changed
                self.next_scan = now + RESCAN_INTERVAL
            elif job.session != self.session:
                log.info("= dropping the answer for %s: it was ordered by a session that is gone", job.object_id)
            elif result.error is not None:
                self.delayed.append((now + ERROR_DELAY, job.session, result.frame))
            else:
                self.outbox.append(result.frame)

    def _abandon_hung_job(self, now: float) -> bool:
        """True if the running job overran the production timeout: answered with an error, the loop must end."""
        if self.production_timeout <= 0 or not self.jobs:
            return False
        job = self._running()
        if job is None or job.call.started is None or now - job.call.started <= self.production_timeout:
            return False
        limit = f"{self.production_timeout:g}"
        log.error("! %s took more than %s s: abandoning it; this process exits and the pool replaces it",
                  job.what(), limit)
        self._collect(now)  # the answers finished before it still go out
        # a hung collection-apply gets no answer: the router sends its ticket to another worker when this
        # session closes, and the database lock plus the stored ticket make it apply at most once
        if job.object_id is not None and job.session == self.session and not job.apply:
            answer = production.failure(job.object_id, TimeoutError(f"{job.what()} took more than {limit} s"))
            self.outbox.append(answer.frame)  # at once: the router applies its own retry backoff
        self._flush()
        self.exit_code = EXIT_ABANDONED
        return True

    def _send_delayed(self, now: float) -> None:
        delayed = self.delayed
        while delayed and now >= delayed[0][0]:
            _, session, frame = delayed.popleft()
            if session == self.session:
                self.outbox.append(frame)

    def _sync_registrations(self) -> None:
        """Register the patterns the router does not have yet, unregister the ones gone."""
        if not self.link.is_open:
            return
        wanted = set(self.table.patterns)
        for pattern in sorted(self.registered - wanted):
            self.outbox.append(codec.dumps(protocol.producer_unregister(pattern)))
            log.info("> unregistered %s", pattern)
        for pattern in sorted(wanted - self.registered):
            self.outbox.append(codec.dumps(protocol.producer_register(pattern)))
            log.info("> registered %s", pattern)
        self.registered = wanted

    # ---- stopping ----------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self.stopping:
            self.stopping = True
            log.info("= %s received: stopping", signal.Signals(signum).name)

    def _drop_pending(self) -> None:
        """Stopping: forget what has not started (the router requeues it when our session closes)."""
        self.orders.clear()
        self.delayed.clear()
        self.reload = None
        for job in self.jobs:
            job.call.cancelled = True
        if any(job.call.running for job in self.jobs):
            log.info("= stopping: waiting up to %.0f s for the current job", STOP_GRACE)

    def _beat(self) -> None:
        """Tell the pool's watchdog that this loop is alive (every WATCHDOG_BEAT seconds)."""
        if self.watchdog_fd is None:
            return
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
        running = self._running()
        if running is not None:
            self.abandoned = True
            if self.exit_code != EXIT_ABANDONED:
                log.warning("! abandoning %s: it did not finish in %.0f s", running.what(), STOP_GRACE)
        if self.outbox:
            self._flush()
        self.link.close()
        self.ctx.term()
        if running is None:
            closing = self.thread.submit(self.catalog.close)
            deadline = time.monotonic() + 1.0
            while not closing.done and time.monotonic() < deadline:
                time.sleep(0.01)
            if not closing.done:
                log.warning("! producers did not close in time")
        log.info("= stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.process",
                                     description="One seasync worker process (normally started by sync-worker).",
                                     epilog=f"The cluster secret is read from {SECRET_ENV} (never from the command "
                                            "line, which ps shows; empty: none), else from ./.seasync-secret.")
    parser.add_argument("--router", default=wire.DEFAULT_ROUTER)
    parser.add_argument("--producers", type=Path, default=Path("producers"))
    parser.add_argument("--name", default=f"worker@{socket.gethostname()}")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="stop when this process (the pool) is no longer our parent")
    parser.add_argument("--watchdog-fd", type=int, default=None,
                        help="file descriptor (a pipe from the pool) to write a sign of life to")
    parser.add_argument("--production-timeout", type=float, default=DEFAULT_PRODUCTION_TIMEOUT,
                        help="seconds before a production is abandoned and this process exits (0: no limit)")
    parser.add_argument("--prefetch", type=int, default=DEFAULT_PREFETCH,
                        help="production orders the router may give this worker at once (>= 1)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logs.setup(args.verbose)
    producers_dir = args.producers.resolve()
    sys.path.insert(0, str(producers_dir))  # producer files may import their neighbours
    # Neighbours are re-imported on reload; a .pyc (keyed on mtime in seconds and size) could
    # hand back the code of a same-size edit made within the same second.
    sys.dont_write_bytecode = True
    # the pool always sets SECRET_ENV (empty for --insecure); run by hand, the default file applies
    secret = cluster_secret(None)
    worker = Worker(args.router, producers_dir, args.name, args.parent_pid, args.production_timeout,
                    secret, args.watchdog_fd, args.prefetch)
    code = worker.run()
    if worker.abandoned:
        # The producer thread is still inside user code, maybe holding locks that interpreter
        # finalization would wait for: leave without finalizing.
        logging.shutdown()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
