"""Writable collections stored in PostgreSQL (a throwaway server, tests/postgres.py): the same transaction
rules as SQLite, concurrent writers from several threads, and a real cluster writing through a worker."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from common.collection import check_update
from common.storage.postgres import PostgresStore
from tests.integration.test_collections import RawClient, update, watch, write_producers


@pytest.fixture
def pg_url(pg_server) -> str:
    return pg_server.create_database()


def test_concurrent_writers_each_applied_once(pg_url: str) -> None:
    """Four threads (one connection each) insert 50 items each into one collection: 200 versions, 200
    items, none lost; a ticket applied twice moves nothing."""
    store = PostgresStore(pg_url)

    def write(name: str) -> None:
        for i in range(50):
            store.apply("items/pg", check_update(insert=[{"id": f"{name}-{i}"}]), ticket=f"t:{name}:{i}")

    threads = [threading.Thread(target=write, args=(n,)) for n in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    version, items = store.read("items/pg")
    assert version == 201 and len(items) == 200
    assert store.apply("items/pg", check_update(insert=[{"id": "again"}]), ticket="t:a:0") == (201, items)
    assert store.apply("items/pg", check_update(remove=["a-0"], insert=[{"id": "z"}]), ticket=None)[0] == 202


async def test_cluster_with_postgres_storage(cluster, tmp_path: Path, pg_url: str) -> None:
    cluster.start_workers(write_producers(tmp_path / "producers", pg_url), 2)
    watcher = await watch(cluster, "items/p")
    async with RawClient(cluster.ws_url, name="writer") as writer:
        assert (await update(writer, "items/p", 1, timeout=60, insert=[{"id": "a"}]))["version"] == 2
        assert (await update(writer, "items/p", 2, timeout=60, reset=True, insert=[{"id": "b"}]))["version"] == 3
    assert await watcher.until(3, 60) == {"b": {"id": "b"}}
    assert PostgresStore(pg_url).read("items/p") == (3, {"b": {"id": "b"}})
    await watcher.client.close()


async def test_an_application_write_on_postgres_reaches_watchers(cluster, tmp_path: Path, pg_url: str) -> None:
    """Storage and dependencies both in PostgreSQL: update_collection's announcement is a NOTIFY the
    notifier hears, so the watcher gets the patch; announcing an older version moves nothing."""
    from common import update_collection
    from common.deps.api import announce
    from tests.cluster import Proc

    notifier = Proc("notifier", ["-m", "worker.notifier.cli", "--router", cluster.router_url, "--deps", pg_url, "-v"])
    cluster.procs.append(notifier)
    cluster.start_workers(write_producers(tmp_path / "producers", pg_url), 1)
    watcher = await watch(cluster, "items/pgapp")
    assert update_collection("items/pgapp", insert=[{"id": "a"}], url=pg_url, deps=pg_url) == 2
    assert await watcher.until(2, 60) == {"a": {"id": "a"}}
    assert watcher.patches[-1] == [{"op": "add", "path": "/a", "value": {"id": "a"}}]
    assert announce("items/pgapp", 1, url=pg_url) == 2  # the row only rises
    assert notifier.alive()
    await watcher.client.close()


def test_earlier_versions_rebuilt_from_postgres_undo_rows(pg_url: str) -> None:
    """The undo rows on PostgreSQL: every recent version's value rebuilt from the current one."""
    store = PostgresStore(pg_url)
    values = {1: {}}
    for step in (dict(insert=[{"id": "a"}, {"id": "b"}]), dict(remove=["a"]), dict(reset=True, insert=[{"id": "c"}])):
        version, value = store.apply("items/undo", check_update(**step), ticket=None)
        values[version] = value
    current, items, found = store.values_at("items/undo", [1, 2, 3])
    assert (current, items) == (4, values[4]) and found == {v: values[v] for v in (1, 2, 3)}
