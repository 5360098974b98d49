"""JSON encoding: orjson everywhere, one place to change options."""

from __future__ import annotations

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


def dumps(value: Any) -> bytes:
    """Encode to compact UTF-8 JSON bytes (what goes on every wire)."""
    return orjson.dumps(value)


def dumps_sorted(value: Any) -> bytes:
    """Canonical encoding (sorted keys): used as a hashable key for versions."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def loads(data: bytes | str) -> Any:
    """Decode JSON; raises JSONDecodeError (a ValueError) on malformed input."""
    return orjson.loads(data)
