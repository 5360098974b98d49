"""Logging for the pool and its worker processes, and tracebacks that start at the user's code."""

from __future__ import annotations

import logging
import os
import sys
from types import TracebackType


def setup_logging(verbose: bool) -> None:
    """Log to stderr in the common seasync format (common/logs.py), plus the pid: the pool and
    its workers share one output stream (one honcho process)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s[%(process)d]: %(message)s",
                                           datefmt="%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


_WORKER_DIR = os.path.dirname(os.path.abspath(__file__))


def user_traceback(exc: BaseException) -> tuple[type[BaseException], BaseException, TracebackType | None]:
    """``exc_info`` for ``exc`` without the leading frames of the worker and importlib, so a
    logged producer error starts at the user's own code."""
    tb = exc.__traceback__
    while tb is not None and (tb.tb_frame.f_code.co_filename.startswith("<frozen")
                              or os.path.dirname(tb.tb_frame.f_code.co_filename) == _WORKER_DIR):
        tb = tb.tb_next
    return type(exc), exc, tb
