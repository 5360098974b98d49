"""``bump`` and ``versions``: what application code and producers call.

The database is chosen by the ``url`` argument, else by ``configure(url)``, else by the
``SEASYNC_DEPS`` environment variable, else the SQLite file ``./seasync-deps.sqlite3``
(see ``common/deps/config.py``). Each backend keeps one connection per thread and process, so a
call costs one short query (tens of microseconds on SQLite, one round trip on PostgreSQL).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from common.deps import config, names
from common.deps.errors import DependencyError, InvalidName
from common.patterns import check_id

_lock = threading.Lock()
_stores: dict[config.Target, Any] = {}
_targets: dict[str | None, config.Target] = {}
_configured: str | None = None


def configure(url: str | None) -> None:
    """Set this process's dependency database (overrides ``SEASYNC_DEPS``; None goes back to it)."""
    global _configured
    if url is not None:
        config.parse(url)  # fail now, not at the first bump
    with _lock:
        _configured = url
        _targets.clear()


def _store(url: str | None) -> Any:
    key = url if url is not None else _configured if _configured is not None else os.environ.get(config.ENV_VAR)
    target = _targets.get(key)
    if target is None:
        target = config.parse(key)
        with _lock:
            _targets[key] = target
    store = _stores.get(target)
    if store is None:
        with _lock:
            store = _stores.get(target)
            if store is None:
                if target.kind == "sqlite":
                    from common.deps import sqlite
                    store = sqlite.Store(target.where)
                else:
                    from common.deps import postgres
                    store = postgres.Store(target.where)
                _stores[target] = store
    return store


def bump(*dependency_names: str, connection: Any = None, url: str | None = None) -> dict[str, int]:
    """Give each named dependency a new version; every object built from it is produced again.

    Call it after your write is committed, or pass ``connection=`` (a PostgreSQL connection or cursor:
    psycopg 3, psycopg2, Django's) to bump inside that transaction: the new versions then exist exactly
    when it commits, and not at all if it rolls back.

    Returns the new versions as a dependency hash, e.g. ``{"dep:list-of-bicycles": 13}``.
    Raises InvalidName, UnknownBackend, DatabaseUnavailable or SchemaMissing (all DependencyError).
    """
    checked = names.check_bumpable(names.check_names(dependency_names))
    if connection is not None:
        found = _postgres_only(url).bump_in(connection, checked)
    else:
        found = _store(url).bump(checked, time.time())
    return {names.object_id(n): found[n] for n in checked}


def versions(*dependency_names: str, connection: Any = None, url: str | None = None) -> dict[str, int]:
    """The current versions of the named dependencies, as a version a producer returns.

    ``{"dep:list-of-bicycles": 12, "dep:owners": 0}`` (0 for a name never bumped). Call it **before**
    reading the data it describes. A bump landing in between then costs one extra production; read
    after the data, it could label old data with the new version, and that change would never reach
    the watchers.
    """
    checked = names.check_bumpable(names.check_names(dependency_names))
    if connection is not None:
        found = _postgres_only(url).versions_in(connection, checked)
    else:
        found = _store(url).versions(checked)
    return {names.object_id(n): found.get(n, 0) for n in checked}


def announce(object_id: str, version: int, url: str | None = None) -> int:
    """Tell the router, through ``sync-notifier``, that ``object_id`` exists at ``version`` (an integer
    version): it is produced again if it is watched and the router holds an older version. What
    ``update_collection`` calls after writing storage; any producer whose integer version moves outside
    the router can use it. The row ``announce:OBJECT-ID`` only rises; returns its version."""
    if isinstance(version, bool) or not isinstance(version, int) or not 0 < version < 2 ** 63:
        raise InvalidName(f"an announced version is a positive 64-bit integer, not {version!r:.40}")
    name = names.check_name(names.ANNOUNCE_PREFIX + check_id(object_id))
    return int(_store(url).advance(name, version, time.time()))


def seconds(period: int) -> dict[str, int]:
    """A time dependency: ``{"Seconds:N": floor(now / N)}``. A producer returning it (alone or merged
    into another hash) is produced again every N seconds while ``sync-notifier`` runs."""
    return names.seconds(period, time.time())


def _postgres_only(url: str | None) -> Any:
    if url is not None and config.parse(url).kind != "postgres":
        raise DependencyError("connection= is for the PostgreSQL backend; with SQLite, call bump() "
                              "after your own commit")
    from common.deps import postgres
    return postgres
