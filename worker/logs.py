"""Tracebacks that start at the user's code (the log setup itself is common/logs.py's, for every process)."""

from __future__ import annotations

import os
from types import TracebackType


_WORKER_DIR = os.path.dirname(os.path.abspath(__file__))


def user_traceback(exc: BaseException) -> tuple[type[BaseException], BaseException, TracebackType | None]:
    """``exc_info`` for ``exc`` without the leading frames of the worker and importlib, so a
    logged producer error starts at the user's own code."""
    tb = exc.__traceback__
    while tb is not None and (tb.tb_frame.f_code.co_filename.startswith("<frozen")
                              or os.path.dirname(tb.tb_frame.f_code.co_filename) == _WORKER_DIR):
        tb = tb.tb_next
    return type(exc), exc, tb
