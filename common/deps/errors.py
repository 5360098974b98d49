"""The exceptions of ``bump``, ``versions``, the notifier and the CLIs; each message says what to do."""

from __future__ import annotations


class DependencyError(Exception):
    """Base class of every dependency error."""


class InvalidName(DependencyError, ValueError):
    """A dependency name that cannot be used (empty, too long, not a string, with ``*``)."""


class UnknownBackend(DependencyError, ValueError):
    """A ``--deps`` / ``SEASYNC_DEPS`` value naming no backend seasync has."""


class DatabaseUnavailable(DependencyError):
    """The dependency database cannot be reached or opened (server down, bad path, locked too long)."""


class SchemaMissing(DependencyError):
    """The PostgreSQL database has no seasync tables yet (``sync-notifier init`` creates them)."""
