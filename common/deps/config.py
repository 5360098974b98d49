"""Where dependency versions live: parsing ``--deps`` / ``SEASYNC_DEPS`` (pure, no I/O).

Accepted forms:

- unset or empty: the SQLite file ``seasync-deps.sqlite3`` in the current directory;
- ``sqlite:///absolute/path.sqlite3``, ``sqlite:relative/path.sqlite3``, or a plain path;
- ``postgresql://user:password@host:port/dbname`` (or ``postgres://...``): a PostgreSQL server,
  passed to libpq as is (so every libpq parameter, ``?sslmode=...`` included, works).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from common.deps.errors import UnknownBackend

ENV_VAR = "SEASYNC_DEPS"
DEFAULT_FILE = "seasync-deps.sqlite3"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed location: ``kind`` is "sqlite" (``where`` is an absolute path) or "postgres" (a DSN)."""

    kind: str
    where: str

    def describe(self) -> str:
        """For log lines and error messages: the path, or the DSN without its password."""
        if self.kind == "sqlite":
            return f"sqlite:{self.where}"
        return redact(self.where)


def redact(dsn: str) -> str:
    """A DSN with its password replaced by ``***`` (for logs and error messages)."""
    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)(\S+)", r"\1***", dsn)


def parse(url: str | None, cwd: str | None = None) -> Target:
    """Parse a dependency database location (see the module docstring); relative paths use ``cwd``."""
    url = (url or "").strip()
    base = cwd or os.getcwd()
    if not url:
        return Target("sqlite", os.path.join(base, DEFAULT_FILE))
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else None
    if scheme is None:
        return Target("sqlite", os.path.normpath(os.path.join(base, url)))
    if scheme in ("postgresql", "postgres"):
        return Target("postgres", url)
    if scheme in ("sqlite", "sqlite3"):
        path = url[match.end():]
        if path.startswith("//"):
            path = path[2:]  # sqlite:///abs -> /abs, sqlite://rel -> rel
        if not path or path == ":memory:":
            raise UnknownBackend(f"{url!r} names no file: use sqlite:///absolute/path.sqlite3 or "
                                 "sqlite:relative/path.sqlite3 (an in-memory database would not be "
                                 "shared with the notifier)")
        return Target("sqlite", os.path.normpath(os.path.join(base, path)))
    raise UnknownBackend(f"unknown dependency backend {scheme!r} in {url!r}: set --deps / {ENV_VAR} to "
                         "a SQLite file (sqlite:///path/deps.sqlite3, the default is ./"
                         f"{DEFAULT_FILE}) or a PostgreSQL URL (postgresql://user@host/dbname)")


def from_env(url: str | None = None) -> Target:
    """``url`` if given, else ``$SEASYNC_DEPS``, else the default file."""
    return parse(url if url is not None else os.environ.get(ENV_VAR))
