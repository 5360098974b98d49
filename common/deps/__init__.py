"""Dependencies: durable, named versions that application code bumps and producers depend on.

    from common import bump, versions

    class Bicycles(Producer):                     # a producer
        patterns = ["bicycles"]
        def produce(self, object_id):
            version = versions("list-of-bicycles")     # first the version, then the data
            return {"rows": load_bicycles()}, version  # {"dep:list-of-bicycles": 12}

    save_bicycle(...); bump("list-of-bicycles")   # application code, after its commit

Every dependency ``NAME`` is the router object ``dep:NAME`` (data ``{}``); ``sync-notifier``
produces those objects and uploads each new version, which makes the router produce again every
object whose version names it. ``Seconds:N`` objects (see ``seconds``) advance every N seconds.
Backends: SQLite (``common/deps/sqlite.py``, the default) and PostgreSQL (``postgres.py``).
"""

from common.deps.api import bump, configure, seconds, versions
from common.deps.errors import (DatabaseUnavailable, DependencyError, InvalidName, SchemaMissing,
                                UnknownBackend)
from common.deps.names import PREFIX
from common.deps.tracked import tracked

__all__ = ["bump", "versions", "seconds", "tracked", "configure", "PREFIX", "DependencyError", "InvalidName",
           "UnknownBackend", "DatabaseUnavailable", "SchemaMissing"]
