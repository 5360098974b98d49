"""Every budget of the router in one place (DESIGN principle 7: every input has a budget).

Each field bounds one dimension a client or peer can grow: sizes, counts, time held. The store and the
router shell read them from the one ``Limits`` they are given; ``sync-router`` sets each from an option.
A refusal is an error frame with a stable ``code`` (see ``CODES``) to the session that asked, and nothing
else changes. The defaults are generous enough for real use and for the benchmarks; they are there so
that no single session (or peer) can take the router's memory or time.
"""

from __future__ import annotations

from dataclasses import dataclass

# Stable codes of the error frames a budget answers with (docs/PROTOCOL.md §14).
OBJECT_TOO_LARGE = "object-too-large"
VERSION_TOO_LARGE = "version-too-large"
TOO_MANY_DEPENDENCIES = "too-many-dependencies"
SESSION_VERSIONS = "session-versions-limit"
REGISTRATION_LIMIT = "registration-limit"
PATTERN_LIMIT = "pattern-limit"
OBJECT_LIMIT = "object-limit"
ORDER_TIMEOUT = "order-timeout"
SESSION_LIMIT = "session-limit"

CODES = (OBJECT_TOO_LARGE, VERSION_TOO_LARGE, TOO_MANY_DEPENDENCIES, SESSION_VERSIONS, REGISTRATION_LIMIT,
         PATTERN_LIMIT, OBJECT_LIMIT, ORDER_TIMEOUT, SESSION_LIMIT)


@dataclass(frozen=True)
class Limits:
    """The router's budgets. Sizes are bytes as encoded (compact JSON), lengths are characters."""

    max_object: int = 16 << 20
    """An object's value, uploaded whole or built by a patch (a patch is refused before it is built)."""
    max_version: int = 64 << 10
    """One version (``version-known``, ``version-new``, ``version-old``)."""
    max_dependencies: int = 1000
    """Keys of one dependency hash: the objects one version may name, and so cause to exist."""
    max_session_versions: int = 4 << 20
    """Versions one session holds registered with ``version-known`` (lists and hashes), summed."""
    max_registrations: int = 10_000
    """Patterns one session may register (consumers and producers together)."""
    max_session_pattern_chars: int = 1 << 20
    """Total length of the patterns one session registers."""
    max_stars: int = 16
    """``*`` in one pattern: matching costs one search per star, for every object spawned."""
    max_patterns: int = 1_000_000
    """Distinct patterns registered in all sessions together."""
    max_wildcards: int = 100_000
    """Distinct wildcard patterns in all: every spawn matches the id against each of them."""
    max_pattern_chars: int = 64 << 20
    """Total length of the distinct patterns registered in all."""
    max_session_objects: int = 100_000
    """Objects one session's messages may cause to exist (spawned and still alive)."""
    max_objects: int = 1_000_000
    """Objects alive in all."""
    max_sessions_per_peer: int = 20_000
    """Sessions one front (or any peer) may open; the sessions past it are dropped."""
    order_timeout: float = 300.0
    """Seconds a producer may hold a production order; then it is taken back, counted as a failed
    production and given to another producer (the worker's own --production-timeout is 60 s)."""
