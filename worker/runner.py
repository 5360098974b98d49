"""The producer thread: all user code of a worker process runs here, one call at a time.

Why a thread for the producers rather than for the heartbeat: a ZeroMQ socket must stay in one
thread, and the worker's socket has more to do than PING while a production runs (answer PONGs,
notice RESET or a router restart, handle SIGTERM). So the main thread owns the socket and the whole
protocol, and hands producer calls to this thread. Running imports, ``__init__``, ``produce`` and
``close`` all in this same thread means producers need no locks and thread-bound resources (a
sqlite3 connection) work. The thread is a daemon: a production stuck forever cannot keep the
process from exiting.

Calls are queued (the worker hands over every order it holds at once, so the thread goes from one
production to the next without waiting for the main loop) and each one is a plain ``Call`` record
rather than a ``concurrent.futures.Future``: the main thread only reads ``done``/``started`` after
it was woken, so no lock or condition variable is needed per call (a Future costs both).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("seasync.worker.runner")


class Call:
    """One queued call. Written by the producer thread only, read by the main thread.

    ``started`` (monotonic) is set when the call begins running, so a timeout counts from then and
    not from when it was queued; ``done`` is set last, after ``result`` or ``error``."""

    __slots__ = ("fn", "args", "started", "done", "result", "error", "cancelled")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.started: float | None = None
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.cancelled = False  # set by the main thread: skip it if it has not started yet

    @property
    def running(self) -> bool:
        return self.started is not None and not self.done


class ProducerThread:
    """Runs submitted calls in order in one daemon thread; ``on_done`` is called after each one."""

    def __init__(self, on_done: Callable[[], None]) -> None:
        self._on_done = on_done
        self._calls: queue.SimpleQueue[Call] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="producers", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Call:
        """Queue ``fn(*args)``; the returned Call holds its result or exception once ``done``."""
        call = Call(fn, args)
        self._calls.put(call)
        return call

    def _run(self) -> None:
        get, on_done, clock = self._calls.get, self._on_done, time.monotonic
        while True:
            call = get()
            if not call.cancelled:
                call.started = clock()
                try:
                    call.result = call.fn(*call.args)
                except BaseException as exc:  # reported through the call, never lost
                    call.error = exc
            call.done = True
            try:
                on_done()
            except Exception:
                log.exception("! wake-up callback failed")
