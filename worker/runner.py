"""The producer thread: all user code of a worker process runs here, one call at a time.

Why a thread for the producers rather than for the heartbeat: a ZeroMQ socket must stay in one
thread, and the worker's socket has more to do than PING while a production runs (answer PONGs,
notice RESET or a router restart, handle SIGTERM). So the main thread owns the socket and the whole
protocol, and hands producer calls to this thread. Running imports, ``__init__``, ``produce`` and
``close`` all in this same thread means producers need no locks and thread-bound resources (a
sqlite3 connection) work. The thread is a daemon: a production stuck forever cannot keep the
process from exiting.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("worker.runner")


class ProducerThread:
    """Runs submitted calls in order in one daemon thread; ``on_done`` is called after each one."""

    def __init__(self, on_done: Callable[[], None]) -> None:
        self._on_done = on_done
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="producers", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``fn(*args)``; the future holds its result or exception."""
        future: Future[T] = Future()
        self._calls.put((lambda: fn(*args), future))
        return future

    def _run(self) -> None:
        while True:
            call, future = self._calls.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as exc:  # reported through the future, never lost
                    future.set_exception(exc)
            try:
                self._on_done()
            except Exception:
                log.exception("wake-up callback failed")
