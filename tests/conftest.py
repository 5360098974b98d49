"""Fixtures that start real clusters. A failing test prints every process's log."""

from __future__ import annotations

import pytest

from tests import postgres
from tests.cluster import Cluster


@pytest.fixture
def cluster(request):
    """A running router and front on free ports; start workers with cluster.start_workers().

    Front options can be given as an indirect parameter:
    ``@pytest.mark.parametrize("cluster", [("--pause-above", "1000")], indirect=True)``."""
    c = Cluster()
    try:
        c.start_router()
        c.start_front(*getattr(request, "param", ()))
        yield c
    finally:
        c.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(c.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL server for the whole run (tests/postgres.py); each test makes its own
    database on it (``pg_server.create_database()``). Skipped where PostgreSQL cannot run."""
    reason = postgres.available()
    if reason:
        pytest.skip(reason)
    server = postgres.Server()
    try:
        yield server
    finally:
        server.destroy()
