"""What both collection backends share: bounds, table names, and the one apply algorithm over DB-API."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from common import codec
from common.collection import Update, UpdateError, apply_undo, apply_update, undo_of

MAX_COLLECTION_ITEMS = 100_000
"""Items one collection may hold: an update that would pass it is refused whole (``collection-full``)."""
MAX_COLLECTION_BYTES = 8 << 20
"""Encoded bytes of a collection's value (below the router's 16 MB max_object, so an applied update is
always deliverable): an update that would pass it is refused whole (``collection-full``)."""
MAX_ITEM_BYTES = 1 << 20
"""Encoded bytes of one item (``item-too-large``)."""
TICKETS_KEPT = 10_000
"""Tickets remembered per collection (a retry comes within seconds; older ones are pruned)."""
UNDO_KEPT = 256
"""Versions per collection whose value can be rebuilt (an undo row each; older ones are pruned)."""
MAX_UNDO_BYTES = 1 << 20
"""An update whose undo encodes larger (a reset of a big collection) keeps an empty row: no value before
it can be rebuilt, and clients holding one get the whole value, as without undo rows."""


class StorageError(Exception):
    """The database cannot be reached or refused the transaction (code ``storage-unavailable``)."""

    code = "storage-unavailable"


def table_name(collection_id: str) -> str:
    """A safe SQL identifier for any id: a hash (ids hold any characters; the registry keeps the real id)."""
    return "seasync_c_" + hashlib.sha256(collection_id.encode()).hexdigest()[:32]


class CollectionStore:
    """One database; one connection per thread. Subclasses give ``_connect``, ``_begin`` and the SQL dialect."""

    param = "?"
    upsert_item = ""

    def __init__(self, where: str) -> None:
        self.where = where
        self._local = threading.local()

    # -- backend hooks
    def _connect(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _begin(self, cur: Any, collection_id: str) -> None:  # pragma: no cover - abstract
        """Start the write transaction and lock the collection (serializes writers across processes)."""
        raise NotImplementedError

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = self._connect()
            except Exception as exc:
                raise StorageError(f"collections database {self.where!r} unavailable: {exc}") from exc
            self._local.conn = conn
        return conn

    def _q(self, sql: str) -> str:
        return sql.replace("?", self.param)

    # -- reads and writes
    def read(self, collection_id: str) -> tuple[int, dict[str, Any]]:
        """(version, value) as stored; a collection never written is ``(1, {})``."""
        conn = self._conn()
        try:
            cur = conn.cursor()
            self._begin_read(cur)
            version, items = self._read(cur, collection_id)
            conn.commit()
            return version, items
        except StorageError:
            raise
        except Exception as exc:
            self._reset(conn)
            raise StorageError(f"reading {collection_id!r}: {type(exc).__name__}: {exc}") from exc

    def _begin_read(self, cur: Any) -> None:
        pass

    def _read(self, cur: Any, collection_id: str) -> tuple[int, dict[str, Any]]:
        cur.execute(self._q("SELECT version FROM seasync_collections WHERE id = ?"), (collection_id,))
        row = cur.fetchone()
        if row is None:
            return 1, {}
        cur.execute(f"SELECT item_id, body FROM {table_name(collection_id)} ORDER BY pos")
        return int(row[0]), {item_id: codec.loads(body) for item_id, body in cur.fetchall()}

    def values_at(self, collection_id: str, versions: list[int]) -> tuple[int, dict[str, Any], dict[int, dict[str, Any]]]:
        """(version, value, {v: value at v}) in one snapshot, for each of ``versions`` older than the current
        one whose value can be rebuilt from the undo rows (every row after it kept, none empty)."""
        conn = self._conn()
        try:
            cur = conn.cursor()
            self._begin_read(cur)
            version, items = self._read(cur, collection_id)
            wanted = sorted({v for v in versions if isinstance(v, int) and 0 < v < version}, reverse=True)
            found: dict[int, dict[str, Any]] = {}
            if wanted:
                cur.execute(self._q("SELECT version, body FROM seasync_collection_undo WHERE collection = ? "
                                    "AND version > ? ORDER BY version DESC"), (collection_id, wanted[-1]))
                value, expected = items, version
                for row_version, body in cur.fetchall():
                    if int(row_version) != expected or body is None:
                        break  # a gap (pruned) or an undo too large: nothing older can be rebuilt
                    value = apply_undo(value, codec.loads(body))
                    expected -= 1
                    if expected in wanted:
                        found[expected] = value
            conn.commit()
            return version, items, found
        except StorageError:
            raise
        except Exception as exc:
            self._reset(conn)
            raise StorageError(f"reading {collection_id!r}: {type(exc).__name__}: {exc}") from exc

    def apply(self, collection_id: str, update: Update, ticket: str | None) -> tuple[int, dict[str, Any]]:
        """Apply ``update`` in one transaction; returns (version, value) after it. A ``ticket`` already
        applied (a retry after a worker died having committed) returns the current state, applied once.
        Raises UpdateError (refused: nothing changed) or StorageError."""
        for item in update.insert:  # checked before any I/O: cheap refusals first
            if len(codec.dumps(item)) > MAX_ITEM_BYTES:
                raise UpdateError(f"item {item['id'][:100]!r} encodes to more than {MAX_ITEM_BYTES} bytes",
                                  "item-too-large")
        conn = self._conn()
        try:
            cur = conn.cursor()
            self._begin(cur, collection_id)
            version, items = self._read(cur, collection_id)
            if ticket is not None:
                cur.execute(self._q("SELECT 1 FROM seasync_collection_tickets WHERE ticket = ?"), (ticket,))
                if cur.fetchone() is not None:
                    conn.rollback()
                    return version, items
            if update.empty:
                conn.rollback()
                return version, items
            new = apply_update(items, update)
            undo = codec.dumps(undo_of(items, update))
            if len(new) > MAX_COLLECTION_ITEMS:
                raise UpdateError(f"the collection would hold {len(new)} items; at most {MAX_COLLECTION_ITEMS}",
                                  "collection-full")
            size = len(codec.dumps(new))
            if size > MAX_COLLECTION_BYTES:
                raise UpdateError(f"the collection would encode to {size} bytes; at most {MAX_COLLECTION_BYTES}",
                                  "collection-full")
            table = table_name(collection_id)
            cur.execute(f"CREATE TABLE IF NOT EXISTS {table} (item_id TEXT PRIMARY KEY, pos BIGINT NOT NULL, "
                        f"body TEXT NOT NULL)")
            if update.reset:
                cur.execute(f"DELETE FROM {table}")
            else:
                for item_id in update.remove:
                    cur.execute(self._q(f"DELETE FROM {table} WHERE item_id = ?"), (item_id,))
            cur.execute(f"SELECT COALESCE(MAX(pos), 0) FROM {table}")
            pos = int(cur.fetchone()[0])
            for item in update.insert:
                pos += 1
                cur.execute(self._q(self.upsert_item.format(table=table)),
                            (item["id"], pos, codec.dumps(item).decode()))
            version += 1
            cur.execute(self._q("INSERT INTO seasync_collections (id, version) VALUES (?, ?) "
                                "ON CONFLICT (id) DO UPDATE SET version = excluded.version"), (collection_id, version))
            cur.execute(self._q("INSERT INTO seasync_collection_undo (collection, version, body) VALUES (?, ?, ?) "
                                "ON CONFLICT (collection, version) DO UPDATE SET body = excluded.body"),
                        (collection_id, version, undo.decode() if len(undo) <= MAX_UNDO_BYTES else None))
            cur.execute(self._q("DELETE FROM seasync_collection_undo WHERE collection = ? AND version <= ?"),
                        (collection_id, version - UNDO_KEPT))
            if ticket is not None:
                cur.execute(self._q("INSERT INTO seasync_collection_tickets (ticket, collection, version) "
                                    "VALUES (?, ?, ?)"), (ticket, collection_id, version))
                cur.execute(self._q("DELETE FROM seasync_collection_tickets WHERE collection = ? AND version <= ?"),
                            (collection_id, version - TICKETS_KEPT))
            conn.commit()
            return version, new
        except UpdateError:
            conn.rollback()
            raise
        except Exception as exc:
            self._reset(conn)
            raise StorageError(f"updating {collection_id!r}: {type(exc).__name__}: {exc}") from exc

    def _reset(self, conn: Any) -> None:
        """After a failed transaction: roll back, and drop the connection (reconnect next time)."""
        try:
            conn.rollback()
        except Exception:
            pass
        try:
            conn.close()
        except Exception:
            pass
        self._local.conn = None
