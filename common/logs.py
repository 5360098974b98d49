"""One log setup, format, namespace and line convention for every seasync process.

Format: ``HH:MM:SS LEVEL   logger[pid]: message`` on stderr (honcho prefixes each line with the
process name; the pid tells a pool's workers apart).

Namespace: every logger is ``seasync.<process>[.<part>]``: ``seasync.router``, ``seasync.front``,
``seasync.worker`` (``seasync.worker.pool``, ``seasync.worker.link``...), ``seasync.notifier``,
``seasync.observer``; the libraries' own are ``seasync.client``, ``seasync.peer``, ``seasync.deps``.
``logging.getLogger("seasync")`` therefore sees everything seasync writes.

Line prefixes, so one can grep a log by what happened:

- ``<`` a message received from a peer (``< object-produce Foo``),
- ``>`` a message sent to a peer (``> registered Foo:*``),
- ``=`` a change of state of this process (``= welcomed by the router``, ``= stopping``),
- ``!`` something went wrong or was refused (``! the router restarted``, ``! refused ...``).

Lines that repeat without bound (refused peers, bad envelopes) go through a ``LogLimit``.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)-7s %(name)s[%(process)d]: %(message)s"
DATEFMT = "%H:%M:%S"
ROOT = "seasync"


def setup(verbose: int = 0) -> None:
    """Log to stderr at INFO, or DEBUG with -v; replaces any handler set before (a worker process
    forked from its pool sets it up again, and must not write each line twice)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, datefmt=DATEFMT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose > 0 else logging.INFO)


class LogLimit:
    """A budget for log lines per kind, so a flood (bad envelopes, a misconfigured peer retrying every
    few hundred milliseconds) cannot fill the log, while each kind still gets its own lines.

    Pure (time passed in): ``allow`` says whether a line of ``kind`` may be written now, and how many
    lines of that kind were left out since the last one written (reported on the next line);
    ``line`` does the same and returns the text to log, with that count appended."""

    def __init__(self, burst: int = 10, period: float = 10.0) -> None:
        self.burst = burst
        self.period = period
        self._windows: dict[str, list[float | int]] = {}  # kind -> [window start, written, suppressed]

    def allow(self, kind: str, now: float) -> int | None:
        """None: leave this line out; otherwise the number of lines left out before it."""
        window = self._windows.get(kind)
        if window is None or now - window[0] >= self.period:
            suppressed = int(window[2]) if window is not None else 0
            self._windows[kind] = [now, 1, 0]
            if len(self._windows) > 1000:  # kinds are a fixed set; never let the table grow anyway
                self._windows = {kind: self._windows[kind]}
            return suppressed
        if window[1] < self.burst:
            window[1] += 1
            suppressed, window[2] = int(window[2]), 0
            return suppressed
        window[2] += 1
        return None

    def line(self, kind: str, text: str, now: float) -> str | None:
        """``text`` to log now (with the count of lines left out before it), or None to leave it out."""
        suppressed = self.allow(kind, now)
        if suppressed is None:
            return None
        return f"{text} ({suppressed} more like this not logged)" if suppressed else text
