"""A self-pipe that wakes a ZeroMQ poll loop: from a signal (``signal.set_wakeup_fd``) or another thread."""

from __future__ import annotations

import os
import signal


class WakePipe:
    """Register ``fd`` with the poller; ``wake()`` makes the poll return; ``drain()`` after it did.

    Wakes are coalesced: a thread that finishes many calls in a row writes one byte until the loop
    drains it, not one system call each. The loop must look at what changed *after* ``drain()``."""

    def __init__(self) -> None:
        self.fd, self._write_fd = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._write_fd, False)
        self._pending = False  # a byte was written and not drained yet

    def catch_signals(self) -> None:
        """Wake on every signal too, so handlers run promptly while the loop waits (main thread only)."""
        signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)

    def wake(self) -> None:
        if self._pending:
            return  # the loop has not drained the last byte: it is going to wake up anyway
        self._pending = True
        try:
            os.write(self._write_fd, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the loop is going to wake up anyway

    def drain(self) -> None:
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass
        # Cleared after reading: a wake() between the read and here skipped its write, but what it
        # announced is already visible to the loop, which looks after drain().
        self._pending = False
