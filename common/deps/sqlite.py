"""The SQLite backend: dependency versions in one local file, nothing to install.

Schema (created on first use)::

    seasync_counter(id = 1, value)                 the last version handed out
    seasync_dependencies(name, current_version, reported_version, updated_at)

``bump`` runs ``BEGIN IMMEDIATE`` (the file's write lock), moves the counter to
``max(counter + 1, now in microseconds)`` and gives that value to every name of the call: two
processes bumping at once are serialized by the lock, so they never get the same version, and the
counter never goes down.

Why the clock: the file is in WAL mode with ``synchronous=NORMAL``, so a commit survives any process
crash but not necessarily a power loss, which may undo the last few commits. An fsync per bump would
cost 1-3 ms on ordinary disks; instead, a version is never below the wall clock in microseconds, so
after a power loss (the machine is down for far longer than the lost versions ran ahead of the clock)
new versions are still above every version already handed out. Versions stay exact in JavaScript
(below 2**53) until the year 2255.

The notifier reads the rows whose ``current_version`` differs from ``reported_version``,
publishes them, then records them as reported. It learns of a bump two ways: a *nudge* (an empty
datagram ``bump`` sends, best effort, to an abstract Unix socket named after the file, which the
notifier binds: sub-millisecond), and a poll of ``PRAGMA data_version`` every 50 ms (the safety
net when the nudge is lost, or on a system without abstract sockets).

A file replaced or deleted while processes have it open (``rm`` and a restore from a backup): each
connection would go on with the deleted file, its bumps and reads going nowhere, silently. So every
holder (the notifier's feed, each thread of an application or worker) compares the file's identity
(device and inode) with the one it opened at most once per POLL_INTERVAL, and reopens the path
(creating an empty database if it is gone) with a log line when it changed: one ``stat`` per poll
interval, nothing per bump. Replacing a database that is in use still risks losing what was written
in between (SQLite's WAL files sit beside it under the same name): stop the processes to restore.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import sqlite3
import threading
import time

from common.deps.errors import DatabaseUnavailable
from common.deps.publishing import Send, handed_over

log = logging.getLogger("seasync.deps")

BUSY_TIMEOUT = 10.0
"""Seconds a bump waits for another writer of the file before giving up."""
POLL_INTERVAL = 0.05
"""Seconds between two ``PRAGMA data_version`` checks in the notifier."""
BATCH = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seasync_counter (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO seasync_counter (id, value) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS seasync_dependencies (
    name TEXT PRIMARY KEY,
    current_version INTEGER NOT NULL,
    reported_version INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seasync_dependencies_unreported
    ON seasync_dependencies (name) WHERE current_version <> reported_version;
CREATE INDEX IF NOT EXISTS seasync_dependencies_updated ON seasync_dependencies (updated_at);
"""

_UPSERT = ("INSERT INTO seasync_dependencies (name, current_version, updated_at) VALUES (?, ?, ?) "
           "ON CONFLICT (name) DO UPDATE SET current_version = excluded.current_version, "
           "updated_at = excluded.updated_at")


def _unavailable(path: str, exc: BaseException) -> DatabaseUnavailable:
    text = str(exc)
    if "locked" in text or "busy" in text:
        hint = (f"another process held its write lock for more than {BUSY_TIMEOUT:.0f} s; "
                "retry, or look for a stuck process")
    elif isinstance(exc, sqlite3.DatabaseError) and "not a database" in text:
        hint = "the file is not a SQLite database: point --deps / SEASYNC_DEPS at another file"
    else:
        hint = "check that the file and its directory exist and are writable, or set --deps / SEASYNC_DEPS"
    return DatabaseUnavailable(f"cannot use the dependency database {path}: {text}; {hint}")


FileIdentity = tuple[int, int] | None

REPLACED_AWAY: list[sqlite3.Connection] = []
"""Connections to a file that was replaced or deleted: kept referenced, never closed. Closing the last
connection of a WAL database checkpoints it and deletes ``<path>-wal`` and ``<path>-shm`` by name,
which are by then the files of the database that replaced it. One descriptor per replacement."""


def file_identity(path: str) -> FileIdentity:
    """(device, inode) of the file at ``path``, None if there is none: what changes when it is replaced."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def open_tracked(path: str) -> tuple[sqlite3.Connection, FileIdentity]:
    """``connect(path)`` and the identity of the file it opened (checked on both sides of the open, so
    a replacement during the open is not mistaken for the file we hold)."""
    while True:
        before = file_identity(path)
        conn = connect(path)
        after = file_identity(path)
        if before is None or before == after:
            return conn, after
        conn.close()


class Watch:
    """When to look at the file's identity again: at most once per ``interval`` (time passed in)."""

    def __init__(self, path: str, identity: FileIdentity, now: float, interval: float = POLL_INTERVAL) -> None:
        self.path, self.identity, self.interval = path, identity, interval
        self.next_check = now + interval

    def replaced(self, now: float) -> bool:
        """True if the file is no longer the one opened (replaced, or deleted); stat at most once per interval."""
        if now < self.next_check:
            return False
        self.next_check = now + self.interval
        return file_identity(self.path) != self.identity


def _log_replaced(path: str, who: str) -> None:
    gone = not os.path.exists(path)
    log.warning("! the dependency database %s was %s while %s had it open: reopening it%s", path,
                "deleted" if gone else "replaced", who, " (a new, empty one)" if gone else "")


def connect(path: str) -> sqlite3.Connection:
    """Open the file (creating it and the schema if needed) in autocommit mode; raises DatabaseUnavailable."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise DatabaseUnavailable(f"cannot create the dependency database {path}: the directory {directory} "
                                  "does not exist; create it, or set --deps / SEASYNC_DEPS to another file")
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    except sqlite3.Error as exc:
        raise _unavailable(path, exc) from None
    # Two processes creating the file at once: switching to WAL takes an exclusive lock and SQLite
    # answers "locked" at once there, without waiting for the busy timeout; so retry until it passes.
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            conn.execute("PRAGMA synchronous = NORMAL")
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'seasync_dependencies'").fetchone():
                conn.execute("PRAGMA journal_mode = WAL")  # persistent: readers never block the writer
                conn.executescript(f"BEGIN IMMEDIATE;\n{_SCHEMA}\nCOMMIT;")
            return conn
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            busy = "locked" in str(exc) or "busy" in str(exc)
            if not busy or time.monotonic() >= deadline:
                conn.close()
                raise _unavailable(path, exc) from None
            time.sleep(0.01)


def bump(conn: sqlite3.Connection, path: str, names: list[str], now: float) -> int:
    """Give every name one new version (the same for all of them) and return it."""
    floor = int(now * 1_000_000)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            (version,) = conn.execute("UPDATE seasync_counter SET value = max(value + 1, ?) WHERE id = 1 "
                                      "RETURNING value", (floor,)).fetchall()[0]
            conn.executemany(_UPSERT, [(name, version, now) for name in names])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise _unavailable(path, exc) from None
    return version


def advance(conn: sqlite3.Connection, path: str, name: str, version: int, now: float) -> int:
    """Raise one row to at least ``version`` (an ``announce:`` row: the version is the object's, not
    the counter's) and return the row's version."""
    try:
        (found,) = conn.execute(
            "INSERT INTO seasync_dependencies (name, current_version, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET current_version = max(current_version, excluded.current_version), "
            "updated_at = excluded.updated_at RETURNING current_version", (name, version, now)).fetchall()[0]
        if conn.in_transaction:
            conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise _unavailable(path, exc) from None
    return int(found)


def versions(conn: sqlite3.Connection, path: str, names: list[str]) -> dict[str, int]:
    """Current versions of the names that were ever bumped (the others are absent)."""
    found: dict[str, int] = {}
    try:
        for start in range(0, len(names), 500):
            chunk = names[start:start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(conn.execute(f"SELECT name, current_version FROM seasync_dependencies "
                                      f"WHERE name IN ({marks})", chunk).fetchall())
    except sqlite3.Error as exc:
        raise _unavailable(path, exc) from None
    return found


def nudge_address(path: str) -> str:
    """The abstract Unix socket the notifier of this file listens on (no file, no path-length limit)."""
    digest = hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:32]
    return f"\0seasync-deps-{digest}"


FORKED_AWAY: list[sqlite3.Connection] = []
"""Connections a forked child inherited: kept referenced rather than closed, since SQLite must not use
a connection across fork() (closing is a use)."""


class Store:
    """What application code uses: one connection per thread (and per process, after a fork)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._address = nudge_address(path)
        self._nudger: tuple[int, socket.socket | None] | None = None

    def _conn(self) -> sqlite3.Connection:
        held = getattr(self._local, "conn", None)
        if held is not None:
            if held[0] == os.getpid():
                if not held[2].replaced(time.monotonic()):
                    return held[1]
                _log_replaced(self.path, f"process {os.getpid()}")
                REPLACED_AWAY.append(held[1])
            else:
                FORKED_AWAY.append(held[1])  # the parent's: never closed (nor garbage-collected) here
        conn, identity = open_tracked(self.path)
        self._local.conn = (os.getpid(), conn, Watch(self.path, identity, time.monotonic()))
        return conn

    def bump(self, names: list[str], now: float) -> dict[str, int]:
        version = bump(self._conn(), self.path, names, now)
        self._nudge()
        return {name: version for name in names}

    def versions(self, names: list[str]) -> dict[str, int]:
        return versions(self._conn(), self.path, names)

    def advance(self, name: str, version: int, now: float) -> int:
        found = advance(self._conn(), self.path, name, version, now)
        self._nudge()
        return found

    def _nudge(self) -> None:
        """Wake the notifier now rather than at its next poll; losing this datagram costs <= 50 ms."""
        nudger = self._nudger
        if nudger is None or nudger[0] != os.getpid():
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.setblocking(False)
            except (OSError, AttributeError):
                sock = None
            nudger = self._nudger = (os.getpid(), sock)
        if nudger[1] is not None:
            try:
                nudger[1].sendto(b"", self._address)
            except OSError:
                pass  # no notifier running (or its queue is full): the poll covers it


class Feed:
    """The notifier's view of the file: change detection, unreported rows, catch-up queries."""

    poll_interval = POLL_INTERVAL

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None
        self.listener: socket.socket | None = None
        self._data_version: int | None = None
        self._watch: Watch | None = None
        self.reopened = 0  # times the file was found replaced or deleted and opened again

    def open(self) -> None:
        self.conn, identity = open_tracked(self.path)
        self._watch = Watch(self.path, identity, time.monotonic())
        self._data_version = self._read_data_version()
        try:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            listener.setblocking(False)
            listener.bind(nudge_address(self.path))
            self.listener = listener
        except OSError as exc:
            log.warning("! cannot listen for bump nudges (%s): is another notifier running on %s? "
                        "relying on polling every %.0f ms", exc, self.path, POLL_INTERVAL * 1000)
        log.info("= dependency database sqlite:%s", self.path)

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def fileno(self) -> int | None:
        return self.listener.fileno() if self.listener is not None else None

    def drain(self) -> tuple[bool, list[tuple[str, int]]]:
        """Read every pending nudge: whether there was one (nudges name no versions)."""
        return self._drain(), []

    def _drain(self) -> bool:
        got = False
        while self.listener is not None:
            try:
                self.listener.recv(64)
                got = True
            except BlockingIOError:
                break
            except OSError:
                break
        return got

    def changed(self) -> bool:
        """True if another connection committed since the last call (``PRAGMA data_version``), or the
        file was replaced (then it is reopened: its rows may all be new to us)."""
        if self._watch is not None and self.conn is not None and self._watch.replaced(time.monotonic()):
            _log_replaced(self.path, "the notifier")
            REPLACED_AWAY.append(self.conn)
            self.conn = None
            self.conn, identity = open_tracked(self.path)
            self._watch = Watch(self.path, identity, time.monotonic())
            self._data_version = self._read_data_version()
            self.reopened += 1
            return True
        version = self._read_data_version()
        if version != self._data_version:
            self._data_version = version
            return True
        return False

    def _read_data_version(self) -> int:
        try:
            return self._db().execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise _unavailable(self.path, exc) from None

    def _db(self) -> sqlite3.Connection:
        if self.conn is None:
            raise DatabaseUnavailable(f"the dependency database {self.path} is not open")
        return self.conn

    def publish_unreported(self, send: Send) -> int:
        """Send every row not reported yet, BATCH rows per call of ``send`` (which returns how many of
        them, a prefix, it handed to the socket), then mark those reported; returns how many were sent.

        The rows are read without a lock and marked with a compare (``current_version`` unchanged), so
        a bump that lands in between stays unreported and goes out on the next pass. A send that took
        only part of its rows ends the pass (the link is full): the rest stay unreported.
        """
        conn = self._db()
        total = 0
        try:
            while True:
                rows = conn.execute("SELECT name, current_version FROM seasync_dependencies "
                                    "WHERE current_version <> reported_version LIMIT ?", (BATCH,)).fetchall()
                sent = handed_over(send, rows)
                if sent:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        conn.executemany("UPDATE seasync_dependencies SET reported_version = ? "
                                         "WHERE name = ? AND current_version = ?",
                                         [(version, name, version) for name, version in rows[:sent]])
                        conn.execute("COMMIT")
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise
                total += sent
                if sent < BATCH:
                    return total
        except sqlite3.Error as exc:
            raise _unavailable(self.path, exc) from None

    def recent(self, window: float, now: float) -> list[tuple[str, int]]:
        """Rows bumped within ``window`` seconds: re-sent after a restart, in case a send was lost."""
        try:
            return self._db().execute("SELECT name, current_version FROM seasync_dependencies "
                                      "WHERE updated_at > ?", (now - window,)).fetchall()
        except sqlite3.Error as exc:
            raise _unavailable(self.path, exc) from None

    def current(self, name: str) -> int:
        found = versions(self._db(), self.path, [name])
        return found.get(name, 0)

