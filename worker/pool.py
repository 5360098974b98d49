"""The supervisor: keeps N worker processes alive, and stops them cleanly.

Each worker is a subprocess (``python -m worker.process``), not a multiprocessing child: it starts
from a clean interpreter (no inherited sockets or threads), its exit code and signal are plain to
read, and its log lines carry its own pid. A worker that dies is restarted; one that keeps dying
soon after starting is restarted with a growing delay (0.5 s doubling up to 30 s), so a broken
producer file cannot make the pool spin. SIGTERM/SIGINT are forwarded to the workers; the pool
exits 0 once they are gone, SIGKILLing any still alive after 5 s. Each worker is told the pool's
pid and stops by itself if the pool disappears.

A worker that exits with ``EXIT_ABANDONED`` gave up on a hung production (it already told the router
and closed its session): it is replaced at once, without backoff. A worker that dies any other way
(SIGKILL, a crash) could not say goodbye, so the pool tells the router for it (``worker/gone.py``):
the order it held is given to another worker within a fraction of a second instead of after the
router's peer timeout.

Watchdog: each worker writes a byte to a pipe from its main loop every half second. Producer code that
holds the GIL (a C call, a catastrophic regex) freezes that loop too, so the worker cannot enforce its
own production timeout; a worker silent for the production timeout plus WATCHDOG_GRACE is SIGKILLed
(then reported to the router and replaced, as above).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from worker.gone import announce_gone_in_background
from worker.process import DEFAULT_PREFETCH, DEFAULT_PRODUCTION_TIMEOUT, EXIT_ABANDONED, SECRET_ENV

log = logging.getLogger("seasync.worker.pool")

STOP_TIMEOUT = 5.0
QUICK_DEATH = 10.0
"""A worker that dies sooner than this after starting counts towards the restart backoff."""
MAX_BACKOFF = 30.0
POLL_INTERVAL = 0.1
WATCHDOG_GRACE = 5.0
"""Seconds past the production timeout before a worker whose loop gives no sign of life is killed."""


@dataclass
class _Slot:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_deaths: int = 0
    start_at: float = 0.0
    watchdog: int | None = None  # read end of the worker's sign-of-life pipe
    last_beat: float = 0.0


class Pool:
    """N worker processes for one router and one producers directory."""

    def __init__(self, count: int, router: str, producers: Path, verbose: bool = False,
                 production_timeout: float = DEFAULT_PRODUCTION_TIMEOUT, secret: str = "",
                 prefetch: int = DEFAULT_PREFETCH) -> None:
        self.router = router
        self.prefetch = prefetch
        self.secret = secret
        self.producers = producers
        self.verbose = verbose
        self.production_timeout = production_timeout
        self.slots = [_Slot(index) for index in range(1, count + 1)]
        self.stopping = False
        self._ctx: zmq.Context | None = None  # made on the first death to report

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        log.info("= starting %d worker(s): router %s, producers %s", len(self.slots), self.router, self.producers)
        while not self.stopping:
            now = time.monotonic()
            for slot in self.slots:
                if slot.proc is not None and slot.proc.poll() is None:
                    self._watch(slot, now)
                if slot.proc is not None and slot.proc.poll() is not None:
                    self._on_death(slot, now)
                if slot.proc is None and now >= slot.start_at and not self.stopping:
                    self._start(slot, now)
            time.sleep(POLL_INTERVAL)
        self._stop_all()
        if self._ctx is not None:
            self._ctx.term()
        return 0

    def _command(self, slot: _Slot, watchdog_fd: int | None) -> list[str]:
        command = [sys.executable, "-m", "worker.process", "--router", self.router,
                   "--producers", str(self.producers), "--name", f"worker.{slot.index}",
                   "--parent-pid", str(os.getpid()), "--production-timeout", str(self.production_timeout)]
        if self.prefetch != DEFAULT_PREFETCH:
            command += ["--prefetch", str(self.prefetch)]
        if watchdog_fd is not None:
            command += ["--watchdog-fd", str(watchdog_fd)]
        return command + (["-v"] if self.verbose else [])

    def _start(self, slot: _Slot, now: float) -> None:
        env = dict(os.environ)
        # The workers must import this package whatever their working directory.
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env[SECRET_ENV] = self.secret  # even "" (--insecure): the worker must not look for a secret file
        write_end = None
        if self.production_timeout > 0:
            slot.watchdog, write_end = os.pipe()
            os.set_blocking(slot.watchdog, False)
        try:
            slot.proc = subprocess.Popen(self._command(slot, write_end), env=env,
                                         pass_fds=() if write_end is None else (write_end,))
        finally:
            if write_end is not None:
                os.close(write_end)  # the worker holds it now; EOF here once the worker is gone
        slot.started = slot.last_beat = now
        log.info("= worker.%d started (pid %d)", slot.index, slot.proc.pid)

    def _watch(self, slot: _Slot, now: float) -> None:
        """Read the worker's signs of life; SIGKILL it if its loop has been frozen for too long."""
        if slot.watchdog is None or slot.proc is None:
            return
        try:
            if os.read(slot.watchdog, 4096):
                slot.last_beat = now
        except BlockingIOError:
            pass
        silent = now - slot.last_beat
        if silent > self.production_timeout + WATCHDOG_GRACE:
            log.error("! worker.%d (pid %d) gave no sign of life for %.0f s (producer code holding the GIL?): "
                      "killing it", slot.index, slot.proc.pid, silent)
            slot.proc.kill()
            slot.proc.wait()

    def _on_death(self, slot: _Slot, now: float) -> None:
        assert slot.proc is not None
        if slot.watchdog is not None:
            os.close(slot.watchdog)
            slot.watchdog = None
        code = slot.proc.returncode
        if code == EXIT_ABANDONED:
            log.warning("! worker.%d (pid %d) gave up on a hung production: replacing it",
                        slot.index, slot.proc.pid)
            slot.proc = None
            slot.start_at = now
            return
        if code != 0 and not self.stopping:  # it could not close its session: tell the router now
            if self._ctx is None:
                self._ctx = zmq.Context()
            announce_gone_in_background(self._ctx, self.router, slot.proc.pid, f"worker.{slot.index}", self.secret)
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        if now - slot.started < QUICK_DEATH:
            slot.quick_deaths += 1
            delay = min(MAX_BACKOFF, 0.5 * 2 ** (slot.quick_deaths - 1))
        else:
            slot.quick_deaths = 0
            delay = 0.0
        log.warning("! worker.%d (pid %d) died (%s): restarting it in %.1f s",
                    slot.index, slot.proc.pid, how, delay)
        slot.proc = None
        slot.start_at = now + delay

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self.stopping:
            self.stopping = True
            log.info("= %s received: stopping the workers", signal.Signals(signum).name)

    def _stop_all(self) -> None:
        live = [slot.proc for slot in self.slots if slot.proc is not None and slot.proc.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in live:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("! worker pid %d did not stop in %.0f s: SIGKILL", proc.pid, STOP_TIMEOUT)
                proc.kill()
                proc.wait()
        log.info("= all workers stopped")
