"""Object versions: validation, ordering and equality (seapig 0.2 semantics, made a little stricter).

A version is ``0``/``None`` ("no data"), a number, a list of numbers (e.g. ``[1700000000000, 3]``), or a
*dependency hash* ``{"object-id": version, ...}`` whose values are versions themselves.

Ordering, from the original: rank the types None < number < list < hash; a higher rank is newer. Numbers
compare by value, lists lexicographically (then by length), element by element with this same rule.

Hashes are where seapig's rule ("any common key newer, else fewer keys") is not an order at all. seasync's
rule, chosen because hash versions describe *which dependency versions an object was built from*:

- the candidate is newer if some common key is newer and none is older (it was built from fresher inputs);
- it is older if some common key is older and none is newer;
- if some keys are newer and others older, neither is newer: the router keeps the stored version and, since
  the object's inferred version then differs from it, orders a new production that reads every input fresh;
- if every common key is equal but the key sets differ, the candidate is newer (the producer changed what it
  depends on; the newest declaration wins).

Comparing common keys only is not transitive once key sets change ({a:1} < {b:0} < {a:0}), and no rule on two
versions alone can be while accepting a dependency added or dropped alongside a bump. So the store also keeps
each object's *floor* (the highest version of every dependency its data was built from: ``raise_floor``) and
refuses a hash below it (``below_floor``): over any sequence, what a watcher receives never goes backwards.

Equality is by value, type-aware only between kinds: ``1 == 1.0`` (the same version), but ``[1]`` is not ``1``.
"""

from __future__ import annotations

import math
from typing import Any, TypeAlias, Union

from common.patterns import PatternError, check_id

Version: TypeAlias = Union[None, int, float, list["Version"], dict[str, "Version"]]
"""The one version alias (worker.producer re-exports it): null (None or 0), a number, a list or a hash
(recursive: list items and hash values are versions themselves)."""

_MAX_DEPTH = 16


class VersionError(ValueError):
    """A value that cannot be a version; ``code`` is the stable error code sent with it, when it has one."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def check_version(value: Any, _depth: int = 0) -> Version:
    """Return ``value`` if it is a valid version, else raise VersionError saying why."""
    if _depth > _MAX_DEPTH:
        raise VersionError("version is nested too deeply")
    if value is None:
        return None
    if isinstance(value, bool):
        raise VersionError("a version cannot be true/false (use a number, a list of numbers or a hash)")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise VersionError("a version number must be finite")
        return value
    if isinstance(value, list):
        for item in value:
            if item is None or isinstance(item, dict):
                raise VersionError("a list version holds numbers (or lists of numbers) only")
            check_version(item, _depth + 1)
        return value
    if isinstance(value, dict):
        for key, item in value.items():
            # A key is an id the router will spawn, order from producers and check with the access hook:
            # it passes the same checks as any id, here, so no answer about it can be refused later.
            try:
                check_id(key)
            except PatternError as exc:
                raise VersionError(f"a dependency hash maps object ids to versions: key {key!r:.80}: {exc}",
                                   code="invalid-dependency") from None
            check_version(item, _depth + 1)
        return value
    raise VersionError(f"a version must be a number, a list or a hash, not {type(value).__name__}")


def _rank(value: Version) -> int:
    if value is None:
        return 0
    if isinstance(value, (int, float)):
        return 1
    if isinstance(value, list):
        return 2
    return 3


# compare() results: which side is newer.
OLDER, EQUAL, NEWER, MIXED = -1, 0, 1, 2


def compare(latest: Version, candidate: Version) -> int:
    """NEWER if ``candidate`` is newer than ``latest``, OLDER if older, EQUAL, or MIXED (hash conflict)."""
    rank_a, rank_b = _rank(latest), _rank(candidate)
    if rank_a != rank_b:
        return NEWER if rank_b > rank_a else OLDER
    if rank_a == 0:
        return EQUAL
    # Equal ranks from here: both numbers (1), both lists (2) or both hashes (3). mypy cannot narrow through
    # _rank's int, so the branches read them through Any-typed names (a plain rebinding: no check, no call).
    old: Any = latest
    new: Any = candidate
    if rank_a == 1:
        return NEWER if new > old else OLDER if new < old else EQUAL
    if rank_a == 2:
        for a, b in zip(old, new):
            c = compare(a, b)
            if c != EQUAL:
                return c
        if len(new) == len(old):
            return EQUAL
        return NEWER if len(new) > len(old) else OLDER
    newer = older = False
    for key in old.keys() & new.keys():
        a, b = old[key], new[key]
        if type(a) is int and type(b) is int:  # the usual case, without the recursion
            c = NEWER if b > a else OLDER if b < a else EQUAL
        else:
            c = compare(a, b)
        if c == NEWER:
            newer = True
        elif c == OLDER:
            older = True
        elif c == MIXED:
            newer = older = True
    if newer and older:
        return MIXED
    if newer:
        return NEWER
    if older:
        return OLDER
    return EQUAL if old.keys() == new.keys() else NEWER


def is_newer(latest: Version, candidate: Version) -> bool:
    """True if ``candidate`` should replace ``latest``."""
    return compare(latest, candidate) == NEWER


def newest(a: Version, b: Version) -> Version:
    """The newer of two versions (``a`` when neither is newer)."""
    return b if is_newer(a, b) else a


MAX_FLOOR_KEYS = 4096
"""Dependencies remembered per object by raise_floor; past that it restarts from the latest version."""


def below_floor(floor: dict[str, Version], candidate: dict[str, Version]) -> bool:
    """True if ``candidate`` names a dependency at a version older than (or not comparable with) the one
    recorded in ``floor``: data built from it would go backwards for that dependency.

    ``compare`` alone cannot be transitive for hashes whose key sets change ({a:1} < {b:0} < {a:0} by the
    common-key rule), so the store keeps, per object, the highest version of every dependency its data
    has been built from (``raise_floor``) and refuses hashes below it.
    """
    for key, version in candidate.items():
        held = floor.get(key)
        if held is not None:
            if type(held) is int and type(version) is int:
                if version < held:
                    return True
            elif compare(held, version) in (OLDER, MIXED):
                return True
    return False


def raise_floor(floor: dict[str, Version], version: dict[str, Version]) -> None:
    """Record in ``floor`` (in place) every dependency version of an accepted hash ``version``."""
    if len(floor) + len(version) > MAX_FLOOR_KEYS:
        floor.clear()
    for key, item in version.items():
        held = floor.get(key)
        floor[key] = item if held is None else newest(held, item)


def is_null(version: Version) -> bool:
    """``None`` and ``0`` both mean "no data" in seapig."""
    return version is None or (type(version) in (int, float) and version == 0)


def same(a: Version, b: Version) -> bool:
    """Version equality: by value, with 1 == 1.0, but no cross-kind equality such as [1] == 1."""
    return _rank(a) == _rank(b) and a == b


def version_key(version: Version) -> Any:
    """A hashable key such that ``same(a, b)`` implies equal keys (floats that are integers become ints)."""
    if isinstance(version, dict):
        items = sorted(version.items()) if len(version) > 1 else list(version.items())
        if all(type(v) is int for _, v in items):  # the usual hash of dependency counters: no recursion
            return ("H", *items)
        return ("H", *((k, version_key(v)) for k, v in items))
    if isinstance(version, float) and version.is_integer():
        return int(version)
    if isinstance(version, list):
        return ("L", *(version_key(v) for v in version))
    return version
