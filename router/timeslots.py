"""seapig's traffic statistics: closed time slots on four scales, with log10 histograms (pure: no clock).

``SeapigServer::Statistics`` is what the original viewer's Statistics tab draws, so its shape is
seapig's, to the field (docs/INTROSPECTION.md): four scales (``seconds``, ``minutes``, ``hours``,
``days``), each with six entities, each with one array entry per *closed* slot, oldest first.

Cheap by construction, because the router feeds it for every frame it handles: an event is two
``list.append`` of raw values (``in_sizes``/``in_times``, ``out_sizes``/``out_recipients``). ``roll``
(called by the router loop with the time, once per batch) counts them when the slot in progress
ends, or when FOLD_AT of them wait, with C-level ``sum``/``max`` and one histogram count for all;
a closed slot's totals are appended to the seconds arrays and folded into the minute's
accumulators, a closed minute into the hour's, an hour into the day's: the coarser scales cost
nothing per event. The raw lists never hold more than FOLD_AT values plus one batch of frames.

Time is passed in (unix seconds), like the store's ``now``: events between two ``roll`` calls count
in the slot that was in progress at the first one.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any, cast

SCALES = (("seconds", 1, 300), ("minutes", 60, 300), ("hours", 3600, 240), ("days", 86400, 365))
"""(name, slot length in seconds, slots kept): seapig's four time scales."""
MULTIPLIER = 10
FOLD_AT = 4096
"""Raw values kept before they are counted (bounds the memory a flood can take between two slots)."""
"""Histogram resolution: bucket = floor(log10(value) × MULTIPLIER), so ten buckets per decade."""

CONNECTIONS = "connections-count"
IN_COUNT = "message-incoming-count"
IN_SIZE = "message-incoming-size"
OUT_COUNT = "message-outgoing-count"
OUT_SIZE = "message-outgoing-size"
IN_TIME = "message-incoming-processing-time"
ENTITIES = (CONNECTIONS, IN_COUNT, IN_SIZE, OUT_COUNT, OUT_SIZE, IN_TIME)
DISTRIBUTIONS = (IN_SIZE, OUT_SIZE, IN_TIME)

_log10 = math.log10
_SMALL = 1 << 16
# bucket of every integer below _SMALL: a frame size is one list index away from its bucket
_INT_BUCKETS = [0] + [int(_log10(v) * MULTIPLIER) for v in range(1, _SMALL)]
_NS = 1 << 17
# the µs bucket of every handling time below 131 µs, in integer ns (the router measures ns)
_NS_BUCKETS = [0] * 1000 + [int(_log10(ns / 1000) * MULTIPLIER) for ns in range(1000, _NS)]


def bucket(value: float) -> int:
    """seapig's histogram bucket of ``value``: floor(log10(value) × 10); values below 1 go in bucket 0."""
    if value < 1:
        return 0
    if type(value) is int and value < _SMALL:
        return _INT_BUCKETS[value]
    return int(_log10(value) * MULTIPLIER)


def _metrics(entity: str) -> dict[str, Any]:
    """The ``metrics`` descriptor the viewer reads (``histogram.multiplier`` unguarded)."""
    if entity == CONNECTIONS:
        return {"last": {"show": True, "retain": True}}
    if entity in DISTRIBUTIONS:
        return {"count": {"show": False}, "sum": {"show": True}, "average": {"show": True},
                "maximum": {"show": True}, "histogram": {"show": True, "multiplier": MULTIPLIER}}
    return {"count": {"show": True}}


class Distribution:
    """count, sum, maximum and histogram of the values seen in one slot."""

    __slots__ = ("count", "sum", "maximum", "histogram")

    def __init__(self) -> None:
        self.count = 0
        self.sum: float = 0  # stays an int for sizes
        self.maximum: float | None = None
        self.histogram: list[int] = []

    def add(self, value: float, times: int = 1) -> None:
        """``times`` events of ``value`` (one frame sent to ``times`` recipients costs one call)."""
        self.count += times
        self.sum += value * times
        if self.maximum is None or value > self.maximum:
            self.maximum = value
        b = bucket(value)
        histogram = self.histogram
        if b >= len(histogram):
            histogram.extend([0] * (b + 1 - len(histogram)))
        histogram[b] += times

    def add_many(self, values: Sequence[float]) -> None:
        """A batch of single events (the raw values the router appended)."""
        if not values:
            return
        self.count += len(values)
        self.sum += sum(values)
        top = max(values)
        if self.maximum is None or top > self.maximum:
            self.maximum = top
        buckets: Iterable[int]
        if type(top) is int and top < _SMALL and min(values) >= 0:
            # sizes: a C-level table lookup each (the router's batches are all ints or all floats,
            # so an int maximum means ints; the cast is for mypy, once per batch)
            buckets = map(_INT_BUCKETS.__getitem__, cast("Sequence[int]", values))
        else:
            buckets = [int(_log10(v) * MULTIPLIER) if v >= 1 else 0 for v in values]  # bucket(), inlined
        histogram = self.histogram
        for b, n in Counter(buckets).items():
            if b >= len(histogram):
                histogram.extend([0] * (b + 1 - len(histogram)))
            histogram[b] += n

    def add_ns_many(self, values: list[int]) -> None:
        """A batch of durations in integer ns, counted in µs (a table lookup each below 131 µs)."""
        if not values:
            return
        self.count += len(values)
        self.sum += sum(values) / 1000
        top = max(values) / 1000
        if self.maximum is None or top > self.maximum:
            self.maximum = top
        buckets: Iterable[int]
        if top * 1000 < _NS and min(values) >= 0:
            buckets = map(_NS_BUCKETS.__getitem__, values)
        else:
            buckets = [bucket(v / 1000) for v in values]
        histogram = self.histogram
        for b, n in Counter(buckets).items():
            if b >= len(histogram):
                histogram.extend([0] * (b + 1 - len(histogram)))
            histogram[b] += n

    def merge(self, other: "Distribution") -> None:
        """Fold a closed finer slot into this coarser one."""
        if not other.count:
            return
        self.count += other.count
        self.sum += other.sum
        if self.maximum is None or (other.maximum is not None and other.maximum > self.maximum):
            self.maximum = other.maximum
        histogram = self.histogram
        if len(other.histogram) > len(histogram):
            histogram.extend([0] * (len(other.histogram) - len(histogram)))
        for i, n in enumerate(other.histogram):
            histogram[i] += n


class Slot:
    """The accumulators of one slot in progress: what happened since it started."""

    __slots__ = ("connections", "in_count", "out_count", "in_size", "out_size", "in_time")

    def __init__(self, connections: int) -> None:
        self.connections = connections  # retained: a slot starts from the previous value
        self.in_count = 0
        self.out_count = 0
        self.in_size = Distribution()
        self.out_size = Distribution()
        self.in_time = Distribution()

    def merge(self, finer: "Slot") -> None:
        self.connections = finer.connections
        self.in_count += finer.in_count
        self.out_count += finer.out_count
        self.in_size.merge(finer.in_size)
        self.out_size.merge(finer.out_size)
        self.in_time.merge(finer.in_time)


class Scale:
    """One time scale: the slot in progress and the arrays of the closed ones (at most ``keep``)."""

    def __init__(self, name: str, seconds: int, keep: int, start: int, connections: int) -> None:
        self.name, self.seconds, self.keep = name, seconds, keep
        self.start = start  # unix seconds of the slot in progress (a multiple of `seconds`)
        self.slot = Slot(connections)
        self.arrays: dict[str, dict[str, deque[Any]]] = {}
        for entity in ENTITIES:
            fields = ("last",) if entity == CONNECTIONS else (
                ("count", "sum", "average", "maximum", "histogram") if entity in DISTRIBUTIONS else ("count",))
            self.arrays[entity] = {f: deque(maxlen=keep) for f in fields}

    def close(self) -> Slot:
        """Append the slot in progress to the arrays and start the next one; returns the closed slot."""
        slot, arrays = self.slot, self.arrays
        arrays[CONNECTIONS]["last"].append(slot.connections)
        arrays[IN_COUNT]["count"].append(slot.in_count)
        arrays[OUT_COUNT]["count"].append(slot.out_count)
        for entity, dist in ((IN_SIZE, slot.in_size), (OUT_SIZE, slot.out_size), (IN_TIME, slot.in_time)):
            a = arrays[entity]
            a["count"].append(dist.count)
            a["sum"].append(dist.sum)
            a["average"].append(dist.sum / dist.count if dist.count else None)
            a["maximum"].append(dist.maximum)
            a["histogram"].append(dist.histogram)
        self.slot = Slot(slot.connections)
        self.start += self.seconds
        return slot

    def snapshot(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "keep": self.keep, "timestamp": self.start,
                "entities": {entity: {**{f: list(map(list, values)) if f == "histogram" else list(values)
                                         for f, values in fields.items()},
                                      "metrics": _metrics(entity)}
                             for entity, fields in self.arrays.items()}}


class Statistics:
    """The four scales, fed by the router: ``incoming``/``outgoing`` per frame, ``roll`` with the time."""

    def __init__(self, now: float, connections: int = 0) -> None:
        self.scales = [Scale(name, seconds, keep, int(now) // seconds * seconds, connections)
                       for name, seconds, keep in SCALES]
        self._finest = self.scales[0]
        # The hot path: raw values since the last roll, appended by the router (or the two methods
        # below); lists cleared in place, so an `append` bound once stays valid.
        self.in_sizes: list[int] = []  # bytes of each client frame
        self.in_times: list[int] = []  # ns spent handling it (time.perf_counter_ns differences)
        self.out_sizes: list[int] = []  # bytes of each object-update frame
        self.out_recipients: list[int] = []  # sessions it was written to

    def incoming(self, size: int, micros: float) -> None:
        """A client frame of ``size`` bytes, handled in ``micros`` µs (kept to the ns)."""
        self.in_sizes.append(size)
        self.in_times.append(round(micros * 1000))

    def outgoing(self, size: int, recipients: int) -> None:
        """An ``object-update`` frame of ``size`` bytes written to ``recipients`` sessions."""
        self.out_sizes.append(size)
        self.out_recipients.append(recipients)

    def _fold(self) -> None:
        """Count the raw values in the slot in progress."""
        slot = self._finest.slot
        if self.in_sizes:
            slot.in_count += len(self.in_sizes)
            slot.in_size.add_many(self.in_sizes)
            slot.in_time.add_ns_many(self.in_times)
            self.in_sizes.clear()
            self.in_times.clear()
        if self.out_sizes:
            recipients = self.out_recipients
            slot.out_count += sum(recipients)
            if max(recipients) == 1:  # each frame to one session: a plain batch
                slot.out_size.add_many(self.out_sizes)
            else:
                add = slot.out_size.add
                for size, n in zip(self.out_sizes, recipients):
                    add(size, n)
            self.out_sizes.clear()
            recipients.clear()

    def connections(self, count: int) -> None:
        """The number of connections now (the slot keeps the last value it was told)."""
        self._finest.slot.connections = count

    # ---- time -----------------------------------------------------------------------------------------

    def roll(self, now: float) -> None:
        """Close every slot that ended by ``now``, finest first, each folded into the next scale's slot.

        A quiet stretch closes empty slots (at most ``keep`` of them are kept per scale: the rest
        would fall off the arrays anyway)."""
        t = int(now)
        if t < self._finest.start + 1 and len(self.in_sizes) < FOLD_AT and len(self.out_sizes) < FOLD_AT:
            return  # the common case, once per batch: nothing to close, little waiting
        self._fold()  # what happened since the last roll belongs to the slot that was in progress
        for i, scale in enumerate(self.scales):
            if t < scale.start + scale.seconds:
                break  # the coarser scales' slots are still in progress too
            coarser = self.scales[i + 1] if i + 1 < len(self.scales) else None
            closed = scale.close()
            if coarser is not None:
                coarser.slot.merge(closed)
            ended = (t - scale.start) // scale.seconds  # quiet slots after it that ended too
            if ended > 0:
                for _ in range(min(ended, scale.keep)):
                    closed = scale.close()
                    if coarser is not None:
                        coarser.slot.merge(closed)
                scale.start = t // scale.seconds * scale.seconds

    def snapshot(self) -> dict[str, Any]:
        """The ``SeapigServer::Statistics`` value (closed slots only: call ``roll`` first); fresh lists,
        so the store may keep it as is."""
        return {scale.name: scale.snapshot() for scale in self.scales}
