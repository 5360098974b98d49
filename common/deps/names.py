"""Dependency names and the object ids that carry them (pure: no I/O, no clock).

A *dependency* is a name the application bumps (``"list-of-bicycles"``). On the router it is the
object ``dep:list-of-bicycles``, whose data is always ``{}`` and whose version is the dependency's
durable version; a producer that declares ``{"dep:list-of-bicycles": 12}`` as its version is
re-produced whenever that object's version rises. One prefix, :data:`PREFIX`, names them all, so
the notifier registers a single wildcard (``dep:*``).

*Time dependencies* ``Seconds:N`` (seapig's spelling) have version ``floor(now / N)``: they advance
every N seconds while the notifier runs.
"""

from __future__ import annotations

import math

from common.deps.errors import InvalidName
from common.patterns import MAX_ID_LENGTH


PREFIX = "dep:"
"""The prefix of every dependency object id: ``dep:NAME``."""
PATTERN = PREFIX + "*"
ANNOUNCE_PREFIX = "announce:"
"""Rows ``announce:OBJECT-ID`` of the dependency table carry a version *of an object* (``announce``): the
notifier tells the router "OBJECT-ID exists at this version", so it is produced again without anyone
connecting (an application write to a collection). They are not dependencies: bump() refuses them."""
SECONDS_PREFIX = "Seconds:"
SECONDS_PATTERN = SECONDS_PREFIX + "*"
MAX_NAME_LENGTH = MAX_ID_LENGTH - len(PREFIX)
MAX_SECONDS = 10 ** 9
"""The longest period a ``Seconds:N`` object accepts (about 31 years)."""


def check_name(name: object) -> str:
    """Return ``name`` if it can name a dependency, else raise InvalidName saying why."""
    if not isinstance(name, str):
        raise InvalidName(f"a dependency name must be a string, not {type(name).__name__} ({name!r})")
    if not name:
        raise InvalidName("a dependency name must not be empty")
    if "*" in name:
        raise InvalidName(f"a dependency name cannot contain '*' (wildcards are for patterns): {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"a dependency name is at most {MAX_NAME_LENGTH} characters; "
                          f"{name[:40]!r}... has {len(name)}")
    if any(ord(c) < 32 for c in name):
        raise InvalidName(f"a dependency name cannot contain control characters: {name!r}")
    return name


def check_names(names: tuple[object, ...]) -> list[str]:
    """Validate names and drop duplicates (order kept); at least one is required."""
    if not names:
        raise InvalidName("name at least one dependency, e.g. bump(\"list-of-bicycles\")")
    if len(names) == 1 and isinstance(names[0], (list, tuple, set)):
        names = tuple(names[0])  # bump(["a", "b"]) reads as bump("a", "b")
    return list(dict.fromkeys(check_name(n) for n in names))


def object_id(name: str) -> str:
    """The router object id of a dependency: ``dep:NAME``."""
    return PREFIX + name


def name_of(object_id: str) -> str | None:
    """The dependency name of an object id, or None if it is not a valid dependency id."""
    if not object_id.startswith(PREFIX):
        return None
    try:
        return check_name(object_id[len(PREFIX):])
    except InvalidName:
        return None


def seconds_period(object_id: str) -> int | None:
    """N for a valid ``Seconds:N`` id (a positive integer, no sign or leading zero), else None."""
    if not object_id.startswith(SECONDS_PREFIX):
        return None
    text = object_id[len(SECONDS_PREFIX):]
    if not text.isascii() or not text.isdigit() or text.startswith("0") or len(text) > 10:
        return None
    period = int(text)
    return period if period <= MAX_SECONDS else None


def seconds_version(period: int, now: float) -> int:
    """The version of ``Seconds:period`` at wall-clock time ``now``: ``floor(now / period)``."""
    return math.floor(now / period)


def next_tick(period: int, now: float) -> float:
    """The wall-clock time at which ``Seconds:period`` next advances."""
    return (seconds_version(period, now) + 1) * period


def seconds(period: int, now: float) -> dict[str, int]:
    """The dependency hash ``{"Seconds:N": floor(now / N)}`` (the public helper passes the clock)."""
    if isinstance(period, bool) or not isinstance(period, int) or not 0 < period <= MAX_SECONDS:
        raise InvalidName(f"Seconds:N needs a whole number of seconds between 1 and {MAX_SECONDS}, not {period!r}")
    return {f"{SECONDS_PREFIX}{period}": seconds_version(period, now)}


def announced_id(name: str) -> str | None:
    """The object id an ``announce:`` row speaks for, or None for a plain dependency."""
    return name[len(ANNOUNCE_PREFIX):] or None if name.startswith(ANNOUNCE_PREFIX) else None


def check_bumpable(names: list[str]) -> list[str]:
    """``names`` if none is reserved for announcements (their versions come from ``announce``)."""
    for name in names:
        if name.startswith(ANNOUNCE_PREFIX):
            raise InvalidName(f"{name[:60]!r}: names starting with {ANNOUNCE_PREFIX!r} carry object versions "
                              f"(announce()), they cannot be bumped or depended on")
    return names
