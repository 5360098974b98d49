"""PostgreSQL collections (psycopg 3): each update is one transaction holding a per-collection advisory
lock, so writers in any process are applied one at a time per collection, and commit is durable."""

from __future__ import annotations

from typing import Any

from common.storage.base import CollectionStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seasync_collections (id TEXT PRIMARY KEY, version BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS seasync_collection_tickets (
    ticket TEXT PRIMARY KEY, collection TEXT NOT NULL, version BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS seasync_collection_tickets_by ON seasync_collection_tickets (collection, version);
CREATE TABLE IF NOT EXISTS seasync_collection_undo (
    collection TEXT NOT NULL, version BIGINT NOT NULL, body TEXT, PRIMARY KEY (collection, version));
"""


class PostgresStore(CollectionStore):
    param = "%s"
    upsert_item = ("INSERT INTO {table} (item_id, pos, body) VALUES (?, ?, ?) "
                   "ON CONFLICT (item_id) DO UPDATE SET body = excluded.body")

    def _connect(self) -> Any:
        import psycopg
        conn = psycopg.connect(self.where, connect_timeout=10)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('seasync collections schema'))")
            cur.execute(_SCHEMA)
        conn.commit()
        return conn

    def _begin(self, cur: Any, collection_id: str) -> None:
        # (psycopg opens the transaction at the first statement)
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("seasync collection " + collection_id,))
