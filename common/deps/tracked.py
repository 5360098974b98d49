"""Dependencies that track themselves: ``tracked(conn)`` reads PostgreSQL and remembers which tables.

    from common.deps import tracked

    class Bikes(Producer):
        patterns = ["bikes"]
        def produce(self, object_id):
            rows = tracked(self.conn).execute("SELECT id, name FROM bikes").fetchall()
            return {"rows": rows}, {}          # the worker merges {"dep:table:public.bikes": N} in

``sync-notifier install-trigger --all`` makes every write to a table bump ``table:SCHEMA.TABLE``
inside the writing transaction (once per transaction), so a plain-SQL producer stays live with no
``versions()`` and no ``bump()``.

Which tables a statement reads comes from its **query plan** (``EXPLAIN (FORMAT JSON, VERBOSE)``),
not from parsing its text: the plan names the base tables behind views, inlined SQL functions,
CTEs and subqueries, resolved through ``search_path`` exactly as the server runs them; a parser sees
only the names written (a view is not a table any trigger can watch). The price is one round trip
(plus a savepoint) the first time a statement text is seen; the result is cached per text (bounded,
LRU), with partition pruning off so that every partition shows, each mapped to its partition root.
What the plan cannot show: tables read inside a non-inlined function (PL/pgSQL): logged once.

Each execution then reads the versions of the statement's tables through the caller's connection
**before** the statement runs (the rule of ``versions()``: a write in between costs one extra
production, never a stale label); a table already read in this production keeps its first (lowest)
version, and costs nothing more.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from common.deps import names
from common.deps.errors import DependencyError, SchemaMissing

log = logging.getLogger("seasync.deps.tracked")

TABLE_PREFIX = "table:"
"""A tracked table's dependency name is ``table:SCHEMA.TABLE`` (its router object ``dep:table:...``)."""
CACHE_SIZE = 1024
"""Statement texts whose tables are remembered (per process); the oldest is forgotten first."""

_READ = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*\(*\s*(select|with|table|values)\b", re.I | re.S)
_RESOLVE = """
SELECT DISTINCT seasync_table_dependency(c.oid),
       EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgname = 'seasync_track' AND t.tgrelid = c.oid)
FROM unnest(%s::text[], %s::text[]) AS x(s, r)
JOIN pg_namespace n ON n.nspname = x.s
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = x.r
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND c.relname NOT LIKE 'seasync\\_%%'
"""
_UNDEFINED = ("42883", "42P01")

_cache: OrderedDict[tuple[Any, ...], tuple[str, ...]] = OrderedDict()
_warned: set[str] = set()
_reads: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar("seasync_tracked_reads",
                                                                                default=None)


@contextlib.contextmanager
def collecting() -> Iterator[dict[str, int]]:
    """Collect, as ``{dep:table:...: version}``, what tracked reads see inside the block (the worker
    wraps each ``produce()`` in one, so a producer never names its tables)."""
    reads: dict[str, int] = {}
    token = _reads.set(reads)
    try:
        yield reads
    finally:
        _reads.reset(token)


def merge(version: Any, reads: dict[str, int]) -> Any:
    """``version`` with the tracked reads merged in. A name in both keeps the lower version (both were
    read before the data, so the lower one is the safe label). Only a hash version can take them."""
    if not reads:
        return version
    if not isinstance(version, dict):
        raise DependencyError(f"this production read tables through tracked() ({', '.join(sorted(reads))}), "
                              f"so its version must be a dependency hash (return {{}} or versions(...)), "
                              f"not {version!r}")
    merged = dict(reads)
    for key, value in version.items():
        held = merged.get(key)
        merged[key] = value if held is None or not isinstance(value, int) or isinstance(value, bool) \
            else min(held, value)
    return merged


def table_dependency(schema: str, table: str) -> str:
    """The dependency name of a table (the SQL function seasync_table_dependency is the one the
    triggers use; this spelling is for docs and tests)."""
    return f"{TABLE_PREFIX}{schema}.{table}"


def tracked(target: Any) -> Any:
    """Wrap a psycopg 3 connection or cursor so that every read records the tables it reads."""
    if isinstance(target, (TrackedCursor, TrackedConnection)):
        return target
    if hasattr(target, "fetchall") and hasattr(target, "connection"):
        return TrackedCursor(target)
    if hasattr(target, "cursor") and hasattr(target, "transaction") and hasattr(target, "info"):
        return TrackedConnection(target)
    raise TypeError(f"tracked() takes a psycopg 3 connection or cursor, not {type(target).__name__}")


def clear_cache() -> None:
    """Forget every statement's tables (after a schema change that moves tables behind a view)."""
    _cache.clear()


class TrackedConnection:
    """A psycopg 3 connection whose ``execute`` and ``cursor()`` track reads; the rest is the connection's."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.dependencies: dict[str, int] = {}

    def cursor(self, *args: Any, **kwargs: Any) -> TrackedCursor:
        return TrackedCursor(self._conn.cursor(*args, **kwargs), self.dependencies)

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> TrackedCursor:
        return self.cursor().execute(query, params, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __enter__(self) -> TrackedConnection:
        self._conn.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._conn.__exit__(*exc)


class TrackedCursor:
    """A psycopg 3 cursor whose ``execute`` first records the tables the statement reads."""

    def __init__(self, cursor: Any, dependencies: dict[str, int] | None = None) -> None:
        self._cursor = cursor
        self.dependencies: dict[str, int] = {} if dependencies is None else dependencies

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> TrackedCursor:
        self._track(query, params)
        self._cursor.execute(query, params, **kwargs)
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    def __enter__(self) -> TrackedCursor:
        self._cursor.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._cursor.__exit__(*exc)

    def _track(self, query: Any, params: Any) -> None:
        conn = self._cursor.connection
        text = query.as_string(conn) if hasattr(query, "as_string") else \
            query.decode() if isinstance(query, bytes) else str(query)
        if not _READ.match(text):
            return  # writes, SET, SHOW...: not reads a version can describe
        info = conn.info
        key = (info.host, info.port, info.dbname, text)
        deps = _cache.get(key)
        if deps is None:
            deps = _resolve(conn, text, params)
            if deps is None:
                return  # the statement fails: its own execute says why
            _cache[key] = deps
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
        else:
            _cache.move_to_end(key)
        if not deps:
            return
        reads = _reads.get()
        wanted = [d for d in deps if names.object_id(d) not in self.dependencies
                  or (reads is not None and names.object_id(d) not in reads)]
        if not wanted:
            return
        from common.deps import postgres
        found = postgres.versions_in(self._cursor.connection, wanted)
        for name in wanted:
            key_ = names.object_id(name)
            self.dependencies.setdefault(key_, found.get(name, 0))
            if reads is not None:
                reads.setdefault(key_, found.get(name, 0))


def _relations(plan: Any, rels: set[tuple[str, str]], functions: set[str]) -> None:
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            rels.add((plan.get("Schema") or "public", plan["Relation Name"]))
        if "Function Name" in plan:
            functions.add(f"{plan.get('Schema') or ''}.{plan['Function Name']}".lstrip("."))
        for value in plan.values():
            if isinstance(value, (dict, list)):
                _relations(value, rels, functions)
    elif isinstance(plan, list):
        for item in plan:
            _relations(item, rels, functions)


def _resolve(conn: Any, text: str, params: Any) -> tuple[str, ...] | None:
    """The dependency names of the tables ``text`` reads, from its plan; None if it cannot be planned.

    Runs in a transaction (a savepoint inside the caller's) that is always rolled back: a failed
    EXPLAIN leaves the caller's transaction as it was, and the planner settings changed here go too."""
    import psycopg
    rels: set[tuple[str, str]] = set()
    functions: set[str] = set()
    rows: list[tuple[str, bool]] = []
    try:
        with conn.transaction():
            with conn.cursor() as cur:
                cur.execute("SELECT set_config('enable_partition_pruning', 'off', true), "
                            "set_config('constraint_exclusion', 'off', true)")
                cur.execute("EXPLAIN (FORMAT JSON, VERBOSE) " + text, params)
                _relations(cur.fetchone()[0], rels, functions)
                if rels:
                    ordered = sorted(rels)
                    cur.execute(_RESOLVE, ([s for s, _ in ordered], [r for _, r in ordered]))
                    rows = [(str(n), bool(t)) for n, t in cur.fetchall()]
            raise psycopg.Rollback()
    except psycopg.Error as exc:
        if getattr(exc, "sqlstate", None) in _UNDEFINED and rels:
            raise SchemaMissing("tracked() needs the seasync functions in this database: run "
                                "`sync-notifier install-trigger --all` (or `sync-notifier init`) with "
                                "--deps pointing at it") from None
        log.debug("= cannot plan %.200r: %s", text, exc)
        return None
    for function in sorted(functions):
        if function not in _warned:
            _warned.add(function)
            log.warning("! a tracked statement reads the function %s: tables it reads inside are not in "
                        "the plan, so not tracked (name them with versions() if they matter)", function)
    for name, triggered in rows:
        if not triggered and name not in _warned:
            _warned.add(name)
            log.warning("! %s is read through tracked() but has no seasync trigger: writes to it re-produce "
                        "nothing; run `sync-notifier install-trigger --all`", name)
    return tuple(sorted({name for name, _ in rows}))
