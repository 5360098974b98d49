"""One log format for every seasync process."""

from __future__ import annotations

import logging


def setup(verbose: int = 0) -> None:
    """Log to stderr at INFO, or DEBUG with -v (honcho prefixes each line with the process name)."""
    level = logging.DEBUG if verbose > 0 else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
