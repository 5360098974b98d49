"""The client's persisted state: one SQLite file per client name in ``state_dir``.

What is kept is state, not a log: per consumed id its last value and version, per keep-current master
its latest value, version and whether it still has to be uploaded (changed while offline). The shell
(``common/client/shell.py``) loads it once at start and writes batches from a thread, so a write never
blocks the event loop for long. Anything wrong with the file (corrupt, unreadable, another format) is a
warning and an empty start, never a crash: the server has the truth, the file only saves a round trip.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

from common import codec

__all__ = ["StateFile"]

log = logging.getLogger("seasync.client")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS consumers (id TEXT PRIMARY KEY, version TEXT NOT NULL, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS masters (id TEXT PRIMARY KEY, version TEXT NOT NULL, value TEXT NOT NULL,
                                    pending INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_FORMAT = "seasync-client-state/1"

Batch = dict[tuple[str, str], Any]
"""``{("consumer" | "master", id): row or None (delete)}``: the last state of each key wins."""


class StateFile:
    """One client's state file. ``load()`` then ``write(batch)`` (from any one thread at a time)."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path = path
        self._db = db
        self._lock = threading.Lock()

    @classmethod
    def open(cls, state_dir: str | Path, name: str) -> StateFile | None:
        """Open (or create) ``state_dir/<name>.sqlite3``; None, with a warning, if that cannot be done."""
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "client"
        state_dir = Path(state_dir).expanduser()
        path = state_dir / f"{safe}.sqlite3"
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            return cls(path, cls._connect(path))
        except (OSError, sqlite3.Error, ValueError) as exc:
            log.warning("client state %s is unusable (%s); moving it aside and starting empty", path, exc)
        try:
            if path.exists():
                path.replace(path.with_name(path.name + ".corrupt"))
            return cls(path, cls._connect(path))
        except (OSError, sqlite3.Error, ValueError) as exc:
            log.warning("cannot keep client state in %s (%s); running without persisted state", path, exc)
            return None

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('format', ?)", (_FORMAT,))
            elif row[0] != _FORMAT:
                raise ValueError(f"unknown state format {row[0]!r}")
            db.execute("SELECT id, version, value FROM consumers LIMIT 1").fetchall()  # the columns we need
            db.execute("SELECT id, version, value, pending FROM masters LIMIT 1").fetchall()
        except BaseException:
            db.close()
            raise
        return db

    def load(self) -> tuple[dict[str, tuple[Any, dict]], dict[str, tuple[Any, dict, bool]]]:
        """``({id: (version, value)}, {id: (version, value, pending)})``; rows that do not decode are skipped."""
        consumers: dict[str, tuple[Any, dict]] = {}
        masters: dict[str, tuple[Any, dict, bool]] = {}
        try:
            with self._lock:
                consumer_rows = self._db.execute("SELECT id, version, value FROM consumers").fetchall()
                master_rows = self._db.execute("SELECT id, version, value, pending FROM masters").fetchall()
        except sqlite3.Error as exc:
            log.warning("cannot read client state %s (%s); starting empty", self.path, exc)
            return consumers, masters
        for object_id, version, value in consumer_rows:
            decoded = _decode(self.path, object_id, version, value)
            if decoded is not None:
                consumers[object_id] = decoded
        for object_id, version, value, pending in master_rows:
            decoded = _decode(self.path, object_id, version, value)
            if decoded is not None:
                masters[object_id] = (decoded[0], decoded[1], bool(pending))
        return consumers, masters

    def write(self, batch: Batch) -> None:
        """Apply one batch in one transaction. Errors are logged: persistence is best effort."""
        try:
            with self._lock:
                self._db.execute("BEGIN")
                try:
                    for (table, object_id), row in batch.items():
                        if row is None:
                            self._db.execute(f"DELETE FROM {table}s WHERE id = ?", (object_id,))
                        elif table == "consumer":
                            version, value = row
                            self._db.execute("INSERT OR REPLACE INTO consumers VALUES (?, ?, ?)",
                                             (object_id, codec.dumps(version).decode(), codec.dumps(value).decode()))
                        else:
                            version, value, pending = row
                            self._db.execute("INSERT OR REPLACE INTO masters VALUES (?, ?, ?, ?)",
                                             (object_id, codec.dumps(version).decode(), codec.dumps(value).decode(),
                                              int(pending)))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except (sqlite3.Error, TypeError, ValueError) as exc:
            log.warning("cannot write client state %s (%s); the change is kept in memory only", self.path, exc)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _decode(path: Path, object_id: str, version: str, value: str) -> tuple[Any, dict] | None:
    try:
        decoded_version, decoded_value = codec.loads(version), codec.loads(value)
    except (ValueError, TypeError) as exc:
        log.warning("client state %s: skipping %r (%s)", path, object_id, exc)
        return None
    if not isinstance(decoded_value, dict) or isinstance(decoded_version, bool):
        log.warning("client state %s: skipping %r (not an object and a version)", path, object_id)
        return None
    return decoded_version, decoded_value
