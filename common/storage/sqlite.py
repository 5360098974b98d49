"""SQLite collections: one local file in WAL mode; ``BEGIN IMMEDIATE`` takes the file's write lock, so
updates from every worker and from application code are applied one at a time."""

from __future__ import annotations

import sqlite3
from typing import Any

from common.storage.base import CollectionStore

BUSY_TIMEOUT = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seasync_collections (id TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS seasync_collection_tickets (
    ticket TEXT PRIMARY KEY, collection TEXT NOT NULL, version INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS seasync_collection_tickets_by ON seasync_collection_tickets (collection, version);
CREATE TABLE IF NOT EXISTS seasync_collection_undo (
    collection TEXT NOT NULL, version INTEGER NOT NULL, body TEXT, PRIMARY KEY (collection, version));
"""


class SqliteStore(CollectionStore):
    upsert_item = ("INSERT INTO {table} (item_id, pos, body) VALUES (?, ?, ?) "
                   "ON CONFLICT (item_id) DO UPDATE SET body = excluded.body")

    def _connect(self) -> Any:
        conn = sqlite3.connect(self.where, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # an update is told durable: it must survive a power loss
        conn.executescript(_SCHEMA)
        return conn

    def _begin(self, cur: Any, collection_id: str) -> None:
        cur.execute("BEGIN IMMEDIATE")

    def _begin_read(self, cur: Any) -> None:
        cur.execute("BEGIN")
