"""Which ``Seconds:N`` objects the notifier keeps advancing, and when (pure: time is passed in).

An object is added when the router orders its production (someone depends on it) and removed when
the router destroys it. ``due(now)`` returns the objects whose version ``floor(now / N)`` has moved
past the last one uploaded; a clock stepped backwards never makes a version go down.
"""

from __future__ import annotations

from common.deps.names import SECONDS_PREFIX, next_tick, seconds_version

SLACK = 0.001
"""Seconds past a boundary at which to wake, so that floor(now / N) has surely moved."""


class Ticker:
    def __init__(self) -> None:
        self._sent: dict[int, int] = {}  # period -> last version uploaded
        self._due: dict[int, float] = {}  # period -> wall-clock time of its next boundary

    def __contains__(self, period: int) -> bool:
        return period in self._sent

    def __len__(self) -> int:
        return len(self._sent)

    def add(self, period: int, now: float, at_least: int = 0) -> int:
        """Start advancing ``Seconds:period``; returns the version to upload now."""
        version = max(seconds_version(period, now), at_least, self._sent.get(period, 0))
        self._sent[period] = version
        self._due[period] = next_tick(period, now)
        return version

    def remove(self, period: int) -> None:
        self._sent.pop(period, None)
        self._due.pop(period, None)

    def clear(self) -> None:
        self._sent.clear()
        self._due.clear()

    def deadline(self) -> float | None:
        """Wall-clock time of the next boundary, or None if nothing is ticking."""
        return min(self._due.values()) + SLACK if self._due else None

    def due(self, now: float) -> list[tuple[str, int]]:
        """``(object id, version)`` for every object whose version moved since its last upload."""
        out = []
        for period, at in self._due.items():
            if now < at:
                continue
            version = seconds_version(period, now)
            if version > self._sent[period]:
                self._sent[period] = version
                out.append((f"{SECONDS_PREFIX}{period}", version))
            self._due[period] = next_tick(period, now)
        return out
