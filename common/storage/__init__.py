"""Storage of writable collections (issue 15): a table per collection id, a registry of versions, tickets.

``SEASYNC_COLLECTIONS`` chooses the database: the SQLite file ``./seasync-collections.sqlite3`` by default, a
``postgresql://`` URL for PostgreSQL. Both backends share the rules in ``common/storage/base.py``: one
transaction per update (items, version counter and the router's ticket together), so an update is all there
or not at all, the version never goes backwards, and a ticket retried on another worker is not applied twice.
Kept out of ``common/deps`` (the dependency versions): other data, other file, other lifetime.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from common.storage.base import CollectionStore, StorageError

log = logging.getLogger("seasync.storage")

ENV_VAR = "SEASYNC_COLLECTIONS"
DEFAULT = "./seasync-collections.sqlite3"

_lock = threading.Lock()
_stores: dict[str, CollectionStore] = {}


def open_store(url: str | None = None) -> CollectionStore:
    """The store of ``url`` (else ``SEASYNC_COLLECTIONS``, else the default SQLite file), one per process and URL."""
    key = url or os.environ.get(ENV_VAR) or DEFAULT
    with _lock:
        store = _stores.get(key)
        if store is None:
            if key.startswith(("postgresql://", "postgres://")):
                from common.storage.postgres import PostgresStore
                store = PostgresStore(key)
            else:
                from common.storage.sqlite import SqliteStore
                store = SqliteStore(key[len("sqlite://"):] if key.startswith("sqlite://") else key)
            _stores[key] = store
    return store


def update_collection(collection_id: str, insert: list[dict[str, Any]] | None = None,
                      remove: list[str] | None = None, reset: bool = False, url: str | None = None,
                      deps: str | None = None) -> int:
    """Write to a collection from application code and return the new version.

    The write goes straight into storage (one transaction, so it works with the router down, like
    ``bump()``); then the new version is announced through the dependency database (``deps``, else
    ``SEASYNC_DEPS``: the one ``sync-notifier`` reads), so every watcher gets the patch within a
    notifier's wake-up. If that database is down, the write stands and is logged; watchers then see
    it at the collection's next production."""
    from common.collection import check_update
    from common.deps.api import announce
    from common.deps.errors import DependencyError
    update = check_update(insert, remove, reset)
    version, _ = open_store(url).apply(collection_id, update, ticket=None)
    try:
        announce(collection_id, version, url=deps)
    except DependencyError as exc:
        log.warning("! collection %r is at version %d, but its watchers were not told: %s", collection_id,
                    version, exc)
    return version


__all__ = ["CollectionStore", "StorageError", "open_store", "update_collection", "ENV_VAR", "DEFAULT"]
