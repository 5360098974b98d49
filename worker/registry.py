"""Which producer instance answers which object id: the worker's pattern table.

Pure data: built from producer instances in load order, then read by the worker loop for every
``object-produce``. Exact ids are a dict lookup; wildcards are tried in load order.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from common.patterns import is_wildcard, matches
from worker.producer import Producer


class ProducerTable:
    """Patterns -> producer instances. The first producer to claim a pattern keeps it."""

    def __init__(self, producers: Iterable[Producer] = ()) -> None:
        self._exact: dict[str, Producer] = {}
        self._wildcards: dict[str, Producer] = {}
        self.conflicts: list[str] = []
        for producer in producers:
            for pattern in producer.patterns:
                table = self._wildcards if is_wildcard(pattern) else self._exact
                owner = table.get(pattern)
                if owner is None:
                    table[pattern] = producer
                elif owner is not producer:
                    self.conflicts.append(
                        f"pattern {pattern!r} is claimed by both {_name(owner)} and {_name(producer)}; "
                        f"{_name(owner)} keeps it")

    @property
    def patterns(self) -> frozenset[str]:
        """Every pattern to register with the router."""
        return frozenset(self._exact) | frozenset(self._wildcards)

    @property
    def collection_patterns(self) -> frozenset[str]:
        """The patterns served by writable collections (announced in the client options: issue 15)."""
        from worker.collection import Collection
        return frozenset(p for table in (self._exact, self._wildcards) for p, producer in table.items()
                         if isinstance(producer, Collection))

    def find(self, object_id: str) -> Producer | None:
        """The producer for ``object_id``: an exact pattern first, else the first matching wildcard."""
        producer = self._exact.get(object_id)
        if producer is not None:
            return producer
        for pattern, producer in self._wildcards.items():
            if matches(pattern, object_id):
                return producer
        return None

    def __len__(self) -> int:
        return len(self._exact) + len(self._wildcards)


def _name(producer: Producer) -> str:
    """``Class (file.py)`` for log lines."""
    cls = type(producer)
    path = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return f"{cls.__qualname__} ({os.path.basename(path) if path else cls.__module__})"
