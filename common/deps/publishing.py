"""What both feeds (sqlite.py, postgres.py) share when they hand unreported rows to the notifier (pure).

``publish_unreported(send)`` reads rows in batches and calls ``send(rows)`` once per batch; ``send``
uploads them in order and returns how many (a prefix) it handed to the socket: the notifier packs many
uploads in one ZeroMQ message, and a full link takes none of a message, so it may stop in the middle.
Only that prefix is marked reported.
"""

from __future__ import annotations

from collections.abc import Callable

Rows = list[tuple[str, int]]
Send = Callable[[Rows], int]
"""``send(rows)``: how many of ``rows``, a prefix, were handed to the socket."""


def handed_over(send: Send, rows: Rows) -> int:
    """``send(rows)`` (not called for no rows): how many of them it handed over. A count outside
    ``0..len(rows)`` is a bug of the caller, refused before anything is marked reported."""
    if not rows:
        return 0
    sent = send(rows)
    if isinstance(sent, bool) or not isinstance(sent, int) or not 0 <= sent <= len(rows):
        raise ValueError(f"publish_unreported: send() must return how many of its {len(rows)} rows it "
                         f"handed over (0 to {len(rows)}), not {sent!r}")
    return sent
