"""Object ids and ``*`` wildcard patterns.

A pattern without ``*`` is an exact id. In a wildcard, ``*`` matches any run of characters (empty included)
and everything else is literal. Unlike seapig (an unanchored lazy regex, so ``foo-*`` matched ``xfoo-1``),
the whole id must match: ``foo-*`` matches ``foo-1`` and ``foo-`` but never ``xfoo-1``.
"""

from __future__ import annotations

MAX_ID_LENGTH = 1024


class PatternError(ValueError):
    """A string that cannot be an id or a pattern."""


def is_wildcard(pattern: str) -> bool:
    return "*" in pattern


def check_pattern(value: object, what: str = "pattern") -> str:
    """Return ``value`` if it is a valid id or pattern, else raise PatternError saying why."""
    if not isinstance(value, str):
        raise PatternError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise PatternError(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise PatternError(f"{what} is longer than {MAX_ID_LENGTH} characters")
    return value


def check_id(value: object) -> str:
    """An object id: a pattern without ``*``."""
    object_id = check_pattern(value, "id")
    if is_wildcard(object_id):
        raise PatternError("an object id cannot contain '*' (that is a pattern)")
    return object_id


_PARTS: dict[str, tuple[str, ...]] = {}
"""Cache of split patterns, bounded in entries and in bytes: only patterns up to _CACHED_LENGTH long are
kept (a 1,024-character pattern of stars splits into 512 strings, 26 kB), at most _CACHED_ENTRIES of them,
oldest dropped first. (An unbounded-size lru_cache of 65,536 entries held 775 MB for 3 sessions.)"""
_CACHED_ENTRIES = 4096
_CACHED_LENGTH = 256


def _parts(pattern: str) -> tuple[str, ...]:
    parts = _PARTS.get(pattern)
    if parts is None:
        parts = tuple(pattern.split("*"))
        if len(pattern) <= _CACHED_LENGTH:
            if len(_PARTS) >= _CACHED_ENTRIES:
                del _PARTS[next(iter(_PARTS))]
            _PARTS[pattern] = parts
    return parts


def matches(pattern: str, object_id: str) -> bool:
    """True if ``object_id`` is covered by ``pattern`` (exact equality, or an anchored wildcard match).

    Linear in the id's length whatever the number of ``*``: the literal parts between stars are found
    left to right with ``str.find`` (taking the leftmost place for each is always safe when ``*`` is the
    only special character), where a regex would backtrack polynomially on ``*a*a*a...*b``.
    """
    if "*" not in pattern:
        return pattern == object_id
    first, *middle, last = _parts(pattern)
    if len(object_id) < len(first) + len(last) or not object_id.startswith(first) or not object_id.endswith(last):
        return False
    position, end = len(first), len(object_id) - len(last)
    for part in middle:
        found = object_id.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return True
