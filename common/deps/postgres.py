"""The PostgreSQL backend: bumps inside the application's own transactions, NOTIFY to the notifier.

Schema (``sync-notifier init`` creates it; the notifier and ``bump`` on its own connection create it
on first use)::

    SEQUENCE seasync_dependency_version_seq            every version comes from it
    TABLE    seasync_dependencies(name, current_version, reported_version, updated_at)
    FUNCTION seasync_bump(VARIADIC names text[])       -> (dep_name, dep_version) rows
    FUNCTION seasync_bump_trigger()                     for ``sync-notifier install-trigger TABLE NAME...``
    FUNCTION seasync_table_dependency(regclass)         a table's ``table:SCHEMA.TABLE`` (tracked())
    FUNCTION seasync_track_trigger()                    for ``sync-notifier install-trigger [--all|TABLE]``

``seasync_bump`` upserts each name with ``current_version = nextval(seq)`` and runs
``NOTIFY seasync_dependencies, 'VERSION NAME'``. Both take effect when the caller's transaction
commits, and vanish if it rolls back. The payload lets the notifier upload the version the moment the
notification arrives; it marks rows reported afterwards, with the same query that finds bumps it missed. ``nextval`` in ``ON CONFLICT DO UPDATE`` is evaluated after the row lock is
taken, so two transactions bumping the same name get versions in their commit order: a version never
goes down, even when the transaction that called ``nextval`` first commits last. Names are locked in
sorted order, so two multi-name bumps cannot deadlock each other.

The notifier LISTENs, and claims unreported rows with ``FOR UPDATE SKIP LOCKED`` so that it never
waits on an application transaction holding a row (that transaction NOTIFYs again when it commits);
it marks them reported, in the same transaction, once their uploads were handed to the socket.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from common.deps.config import redact
from common.deps.errors import DatabaseUnavailable, DependencyError, SchemaMissing
from common.deps.publishing import Send, handed_over

log = logging.getLogger("seasync.deps")
T = TypeVar("T")

CHANNEL = "seasync_dependencies"
BATCH = 1000
CONNECT_TIMEOUT = 5
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}
_UNDEFINED = ("42883", "42P01")  # undefined_function, undefined_table

SCHEMA_TAG = "seasync dependencies schema 2"
"""Stored as the comment of seasync_bump: a database with another tag gets the schema (re)applied."""

SCHEMA = f"""
CREATE SEQUENCE IF NOT EXISTS seasync_dependency_version_seq;
CREATE TABLE IF NOT EXISTS seasync_dependencies (
    name text PRIMARY KEY,
    current_version bigint NOT NULL,
    reported_version bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS seasync_dependencies_unreported
    ON seasync_dependencies (name) WHERE current_version <> reported_version;
CREATE INDEX IF NOT EXISTS seasync_dependencies_updated ON seasync_dependencies (updated_at);

CREATE OR REPLACE FUNCTION seasync_bump(VARIADIC names text[])
RETURNS TABLE (dep_name text, dep_version bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    n text;
BEGIN
    FOR n IN SELECT DISTINCT u FROM unnest(names) AS u ORDER BY u LOOP
        IF n IS NULL OR n = '' OR position('*' IN n) > 0 THEN
            RAISE EXCEPTION 'seasync: invalid dependency name %', quote_nullable(n)
                USING HINT = 'a name is a non-empty string without *';
        END IF;
        INSERT INTO seasync_dependencies AS d (name, current_version, updated_at)
        VALUES (n, nextval('seasync_dependency_version_seq'), clock_timestamp())
        ON CONFLICT (name) DO UPDATE
            SET current_version = nextval('seasync_dependency_version_seq'), updated_at = clock_timestamp()
        RETURNING d.name, d.current_version INTO dep_name, dep_version;
        PERFORM pg_notify('{CHANNEL}', dep_version::text || ' ' || dep_name);
        RETURN NEXT;
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION seasync_bump(text[]) IS '{SCHEMA_TAG}';

CREATE OR REPLACE FUNCTION seasync_bump_trigger() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM seasync_bump(VARIADIC TG_ARGV);
    RETURN NULL;
END
$fn$;

-- the dependency name of a table, for tracked() and the triggers alike: table:SCHEMA.TABLE of its
-- partition root (a write through the parent or to one partition bumps the same name); '*' and
-- control characters, which no dependency name may hold, become '_'
CREATE OR REPLACE FUNCTION seasync_table_dependency(rel regclass) RETURNS text
LANGUAGE sql STABLE AS $fn$
    SELECT 'table:' || regexp_replace(n.nspname || '.' || c.relname, '[*[:cntrl:]]', '_', 'g')
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = coalesce(pg_partition_root(rel), rel)
$fn$;

-- sync-notifier install-trigger TABLE / --all: bumps the table's dependency once per transaction
-- (its writes all become visible at the same commit as the version, so one bump describes them all)
CREATE OR REPLACE FUNCTION seasync_track_trigger() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    flag text := 'seasync_track.r' || coalesce(pg_partition_root(TG_RELID), TG_RELID)::oid;
BEGIN
    IF coalesce(current_setting(flag, true), '') = '1' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config(flag, '1', true);
    PERFORM seasync_bump(seasync_table_dependency(TG_RELID));
    RETURN NULL;
END
$fn$;
"""

_BUMP = "SELECT dep_name, dep_version FROM seasync_bump(VARIADIC %s::text[])"
_VERSIONS = "SELECT name, current_version FROM seasync_dependencies WHERE name = ANY(%s::text[])"
_ADVANCE = f"""
WITH raised AS (
    INSERT INTO seasync_dependencies AS d (name, current_version, updated_at) VALUES (%s, %s, clock_timestamp())
    ON CONFLICT (name) DO UPDATE
        SET current_version = GREATEST(d.current_version, EXCLUDED.current_version), updated_at = clock_timestamp()
    RETURNING d.name, d.current_version)
SELECT name, current_version, pg_notify('{CHANNEL}', current_version::text || ' ' || name) FROM raised
"""
_CLAIM = f"""
SELECT name, current_version FROM seasync_dependencies WHERE current_version <> reported_version
ORDER BY name LIMIT {BATCH} FOR UPDATE SKIP LOCKED
"""
_MARK = """
UPDATE seasync_dependencies AS d SET reported_version = d.current_version
FROM unnest(%s::text[]) AS sent(name) WHERE d.name = sent.name
"""


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise DependencyError("the PostgreSQL backend needs psycopg 3: pip install 'seasync[postgres]' "
                              "(or pip install 'psycopg[binary]')") from None
    return psycopg


def _unavailable(dsn: str, exc: BaseException) -> DatabaseUnavailable:
    detail = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    return DatabaseUnavailable(f"cannot reach the dependency database {redact(dsn)}: {detail}. Is PostgreSQL "
                               "running, and does --deps / SEASYNC_DEPS name the right server and database?")


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)


def _schema_missing(exc: BaseException) -> SchemaMissing:
    return SchemaMissing(f"the database has no seasync dependency tables ({' '.join(str(exc).split())}): "
                         "run `sync-notifier init` with --deps / SEASYNC_DEPS pointing at it, or start "
                         "sync-notifier once")


@contextmanager
def _schema_errors() -> Iterator[None]:
    """An undefined table or function means the schema was never installed: say so (SchemaMissing, with
    what to run) instead of PostgreSQL's own error; anything else passes through."""
    try:
        yield
    except Exception as exc:
        if _sqlstate(exc) in _UNDEFINED:
            raise _schema_missing(exc) from exc
        raise


def connect(dsn: str, notifier: bool = False) -> Any:
    """An autocommit connection with TCP keepalives (a vanished server is noticed in about 10 s)."""
    psycopg = _psycopg()
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT, **_KEEPALIVES)
    except psycopg.Error as exc:
        raise _unavailable(dsn, exc) from None
    if notifier:
        conn.execute("SET statement_timeout = '10s'")
    return conn


def ensure_schema(conn: Any, dsn: str) -> bool:
    """Create the schema unless it is there; True if it was created. Safe to run from many processes."""
    psycopg = _psycopg()
    try:
        tag = conn.execute("SELECT obj_description(to_regprocedure('seasync_bump(text[])'), 'pg_proc')").fetchone()[0]
        if tag == SCHEMA_TAG:
            return False
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('seasync schema'))")
            conn.execute(SCHEMA)
        log.info("= created the seasync dependency tables in %s", redact(dsn))
        return True
    except psycopg.OperationalError as exc:
        raise _unavailable(dsn, exc) from None
    except psycopg.Error as exc:
        raise DependencyError(f"cannot create the seasync dependency tables in {redact(dsn)}: "
                              f"{' '.join(str(exc).split())}; run `sync-notifier init` once as a role "
                              "that may create tables and functions") from None


def bump_in(connection: Any, names: list[str]) -> dict[str, int]:
    """Bump inside the caller's transaction (a psycopg 3 or psycopg2 connection or cursor, or any
    DB-API cursor of PostgreSQL): the versions exist, and the notifier hears of them, at COMMIT."""
    return dict(_run(connection, _BUMP, names))


def versions_in(connection: Any, names: list[str]) -> dict[str, int]:
    """Read versions through the caller's connection (e.g. in the same snapshot as the data)."""
    return dict(_run(connection, _VERSIONS, names))


def _run(connection: Any, query: str, names: list[str]) -> list[tuple[str, int]]:
    cursor = connection if hasattr(connection, "fetchall") else connection.cursor()
    try:
        with _schema_errors():
            cursor.execute(query, (names,))
            return [(str(name), int(version)) for name, version in cursor.fetchall()]
    finally:
        if cursor is not connection:
            cursor.close()


class Store:
    """What application code uses without a connection of its own: one autocommit connection per
    thread (and per process, after a fork), reconnected once if the server dropped it."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._local = threading.local()
        self._schema_checked = False

    def _conn(self) -> Any:
        held = getattr(self._local, "conn", None)  # psycopg never closes a parent's connection in a child
        if held is not None and held[0] == os.getpid() and not held[1].closed:
            return held[1]
        conn = connect(self.dsn)
        if not self._schema_checked:
            ensure_schema(conn, self.dsn)
            self._schema_checked = True
        self._local.conn = (os.getpid(), conn)
        return conn

    def _call(self, query: str, names: list[str]) -> dict[str, int]:
        return dict(self._with_connection(lambda conn: _run(conn, query, names)))

    def _with_connection(self, work: Callable[[Any], T]) -> T:
        """``work(connection)``, reconnecting once if the server dropped the connection we held."""
        psycopg = _psycopg()
        for attempt in (1, 2):
            conn = self._conn()
            try:
                return work(conn)
            except psycopg.OperationalError as exc:
                broken = conn.broken
                self._local.conn = None
                conn.close()
                if attempt == 2 or not broken:
                    raise _unavailable(self.dsn, exc) from None
                log.info("= the connection to %s was lost; reconnecting", redact(self.dsn))
        raise AssertionError("unreachable")

    def bump(self, names: list[str], now: float) -> dict[str, int]:
        return self._call(_BUMP, names)

    def versions(self, names: list[str]) -> dict[str, int]:
        return self._call(_VERSIONS, names)

    def advance(self, name: str, version: int, now: float) -> int:
        """One statement (autocommit): the row raised to at least ``version`` and the notifier told."""
        def work(conn: Any) -> int:
            with _schema_errors():
                return int(conn.execute(_ADVANCE, (name, version)).fetchone()[1])
        return self._with_connection(work)


def _table_identifier(table: str) -> Any:
    from psycopg import sql
    parts = table.split(".")
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise DependencyError(f"{table!r} is not a table name (TABLE or SCHEMA.TABLE)")
    return sql.Identifier(*parts)


def install_trigger(conn: Any, table: str, names: list[str]) -> None:
    """Make every INSERT, UPDATE, DELETE or TRUNCATE on ``table`` bump ``names`` in that transaction
    (one statement-level trigger named ``seasync_bump``; installing again replaces it)."""
    psycopg = _psycopg()
    from psycopg import sql
    ident = _table_identifier(table)
    args = sql.SQL(", ").join(sql.Literal(n) for n in names)
    try:
        with conn.transaction():
            conn.execute(sql.SQL("DROP TRIGGER IF EXISTS seasync_bump ON {}").format(ident))
            conn.execute(sql.SQL("CREATE TRIGGER seasync_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                                 "ON {} FOR EACH STATEMENT EXECUTE FUNCTION seasync_bump_trigger({})")
                         .format(ident, args))
    except psycopg.errors.UndefinedTable:
        raise DependencyError(f"there is no table {table!r} in this database (for another schema, "
                              "write SCHEMA.TABLE)") from None


TRACK_TRIGGER = "seasync_track"
_ALL_TABLES = r"""
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_%%' AND c.relname NOT LIKE 'seasync\_%%'
  AND (%s::text[] IS NULL OR n.nspname = ANY(%s::text[]))
ORDER BY 1, 2
"""


def all_tables(conn: Any, schemas: list[str] | None = None) -> list[str]:
    """Every table (plain or partitioned) of ``schemas`` (default: every schema not the system's), as
    SCHEMA.TABLE, without seasync's own tables (a trigger on them would bump forever)."""
    rows = conn.execute(_ALL_TABLES, (schemas or None, schemas or None)).fetchall()
    return [f"{s}.{t}" for s, t in rows]


def install_tracking(conn: Any, table: str) -> str:
    """Make every write to ``table`` (INSERT, UPDATE, DELETE, TRUNCATE) bump its ``table:SCHEMA.TABLE``
    dependency in the writing transaction, for tracked(); installing again replaces the trigger.
    Returns the dependency name."""
    psycopg = _psycopg()
    from psycopg import sql
    ident = _table_identifier(table)
    try:
        with conn.transaction():
            conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(TRACK_TRIGGER), ident))
            conn.execute(sql.SQL("CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {} "
                                 "FOR EACH STATEMENT EXECUTE FUNCTION seasync_track_trigger()")
                         .format(sql.Identifier(TRACK_TRIGGER), ident))
            return str(conn.execute("SELECT seasync_table_dependency(%s::regclass)", (table,)).fetchone()[0])
    except psycopg.errors.UndefinedTable:
        raise DependencyError(f"there is no table {table!r} in this database (for another schema, "
                              "write SCHEMA.TABLE)") from None
    except psycopg.errors.WrongObjectType:
        raise DependencyError(f"{table!r} is not a table (a view is tracked through the tables it reads: "
                              "install the trigger on those)") from None


def remove_trigger(conn: Any, table: str, trigger: str = "seasync_bump") -> bool:
    """Drop the trigger ``install_trigger`` made; False if there was none."""
    psycopg = _psycopg()
    from psycopg import sql
    ident = _table_identifier(table)
    try:
        exists = conn.execute("SELECT 1 FROM pg_trigger WHERE tgname = %s AND tgrelid = %s::regclass",
                              (trigger, table)).fetchone()
    except psycopg.errors.UndefinedTable:
        raise DependencyError(f"there is no table {table!r} in this database") from None
    if exists:
        conn.execute(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(trigger), ident))
    return bool(exists)


class Feed:
    """The notifier's view of the database: LISTEN, unreported rows, catch-up queries."""

    poll_interval = 5.0  # a cheap query now and then notices a dead connection

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: Any = None

    def open(self) -> None:
        self.conn = connect(self.dsn, notifier=True)
        ensure_schema(self.conn, self.dsn)
        self._guard(lambda: self.conn.execute(f"LISTEN {CHANNEL}"))
        log.info("= dependency database %s: listening", redact(self.dsn))

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    def fileno(self) -> int | None:
        return self._guard(lambda: self.conn.fileno())  # raises DatabaseUnavailable once libpq dropped it

    def _guard(self, fn: Callable[[], Any]) -> Any:
        psycopg = _psycopg()
        if self.conn is None:
            raise DatabaseUnavailable(f"not connected to {redact(self.dsn)}")
        try:
            return fn()
        except psycopg.Error as exc:  # connection lost, or the schema changed under us: reconnect
            raise _unavailable(self.dsn, exc) from None

    def drain(self) -> tuple[bool, list[tuple[str, int]]]:
        """Consume pending notifications (including those read during our own queries): whether there
        were any, and the ``(name, version)`` each one announces."""
        notes = self._guard(lambda: list(self.conn.notifies(timeout=0)))
        hints = []
        for note in notes:
            version, _, name = note.payload.partition(" ")
            if version.isdigit() and name:
                hints.append((name, int(version)))
        return bool(notes), hints

    def changed(self) -> bool:
        """A health check: raises DatabaseUnavailable if the connection is gone."""
        self._guard(lambda: self.conn.execute("SELECT 1").fetchone())
        return False

    def publish_unreported(self, send: Send) -> int:
        """Claim unreported rows, BATCH at a time (locked until the transaction ends, so their versions
        cannot move under us), send them, and mark reported in the same transaction the prefix that
        ``send`` says it handed to the socket; returns how many were sent. A send that took only part of
        its rows ends the pass (the link is full): the rest stay unreported."""
        def work() -> int:
            total = 0
            while True:
                with self.conn.transaction():
                    rows = [(str(name), int(version)) for name, version in self.conn.execute(_CLAIM).fetchall()]
                    sent = handed_over(send, rows)
                    if sent:
                        self.conn.execute(_MARK, ([name for name, _ in rows[:sent]],))
                total += sent
                if sent < len(rows) or len(rows) < BATCH:
                    return total
        return self._guard(work)

    def recent(self, window: float, now: float) -> list[tuple[str, int]]:
        return self._guard(lambda: self.conn.execute(
            "SELECT name, current_version FROM seasync_dependencies "
            "WHERE updated_at > clock_timestamp() - make_interval(secs => %s)", (window,)).fetchall())

    def current(self, name: str) -> int:
        row = self._guard(lambda: self.conn.execute(
            "SELECT current_version FROM seasync_dependencies WHERE name = %s", (name,)).fetchone())
        return int(row[0]) if row else 0
