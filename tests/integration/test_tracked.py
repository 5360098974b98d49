"""Dependencies that track themselves (issue 17 item 4): tracked() reads, the table triggers, end to end.

A real PostgreSQL (tests/postgres.py) for everything; the end-to-end tests add a router, a front, a
worker, the notifier and a websocket client.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from common.deps import tracked
from common.deps.tracked import collecting, merge
from tests.integration.test_dependencies import run_cli, start_notifier
from tests.integration.wsclient import RawClient, update_of

PRODUCERS = textwrap.dedent('''
    import os, pathlib
    import psycopg
    from common.deps import tracked
    from worker import Producer

    class Bikes(Producer):
        """Plain SQL: no versions(), no bump(); counts its productions in bikes.log."""
        patterns = ["bikes"]
        def __init__(self):
            self.conn = psycopg.connect(os.environ["SEASYNC_DEPS"], autocommit=True)
        def produce(self, object_id):
            rows = tracked(self.conn).execute("SELECT id, name FROM bike_names ORDER BY id").fetchall()
            with open(pathlib.Path(__file__).with_name("bikes.log"), "a") as log:
                log.write("x")
            return {"bikes": [{"id": i, "name": n} for i, n in rows]}, {}
''')


@pytest.fixture
def db(pg_server, monkeypatch) -> str:
    """A fresh database: bikes, owners, a view over bikes, a partitioned table; SEASYNC_DEPS = it."""
    import psycopg
    url = pg_server.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bikes (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO bikes VALUES (1, 'brompton'), (2, 'moulton')")
        conn.execute("CREATE TABLE owners (id int PRIMARY KEY, name text)")
        conn.execute("CREATE VIEW bike_names AS SELECT id, name FROM bikes")
        conn.execute("CREATE TABLE rides (day int, km int) PARTITION BY RANGE (day)")
        conn.execute("CREATE TABLE rides_1 PARTITION OF rides FOR VALUES FROM (0) TO (100)")
        conn.execute("CREATE TABLE rides_2 PARTITION OF rides FOR VALUES FROM (100) TO (200)")
    monkeypatch.setenv("SEASYNC_DEPS", url)
    return url


def install_all(url: str) -> str:
    result = run_cli("worker.notifier.cli", "install-trigger", "--all", "--deps", url)
    assert result.returncode == 0, result.stderr
    return result.stdout


def version_of(conn, name: str) -> int:
    row = conn.execute("SELECT current_version FROM seasync_dependencies WHERE name = %s", (name,)).fetchone()
    return row[0] if row else 0


def test_install_all_is_idempotent_skips_our_tables_and_every_write_bumps_once_per_transaction(db):
    import psycopg
    first = install_all(db)
    assert install_all(db) == first  # again: the same triggers, replaced
    assert "public.bikes now bumps table:public.bikes" in first
    assert "public.rides_1 now bumps table:public.rides" in first  # a partition bumps its root
    assert "seasync_" not in first and "bike_names" not in first  # our tables and views: none
    with psycopg.connect(db, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'seasync_track'").fetchone()[0] == 5
        before = version_of(conn, "table:public.bikes")
        base = conn.execute("SELECT nextval('seasync_dependency_version_seq')").fetchone()[0]
        with conn.transaction():
            conn.execute("UPDATE bikes SET name = 'a' WHERE id = 1")
            conn.execute("UPDATE bikes SET name = 'b' WHERE id = 2")
            conn.execute("INSERT INTO bikes VALUES (3, 'dahon')")
        middle = version_of(conn, "table:public.bikes")
        assert middle > before
        # one bump per transaction: three statements took one version of the sequence
        assert middle == base + 1
        assert conn.execute("SELECT last_value FROM seasync_dependency_version_seq").fetchone()[0] == middle
        conn.execute("TRUNCATE bikes")
        assert version_of(conn, "table:public.bikes") > middle
        rides = version_of(conn, "table:public.rides")
        conn.execute("INSERT INTO rides_2 VALUES (150, 3)")  # straight into a partition
        assert version_of(conn, "table:public.rides") > rides
        with conn.transaction():  # rolled back: no version
            conn.execute("INSERT INTO owners VALUES (1, 'x')")
            raise psycopg.Rollback()
        assert version_of(conn, "table:public.owners") == 0


def test_tracked_reads_name_the_base_tables_from_the_plan(db):
    import psycopg
    install_all(db)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE owners SET name = 'n'")  # a version for owners
        owners = version_of(conn, "table:public.owners")
        with collecting() as reads:
            # a view, a join in a CTE, a parameter, partitions pruned by the literal
            tracked(conn).execute("SELECT * FROM bike_names WHERE id = %s", (1,)).fetchall()
            cur = tracked(conn.cursor())
            cur.execute("WITH o AS (SELECT * FROM owners) SELECT * FROM o JOIN rides ON true WHERE day = 5")
            cur.fetchall()
            tracked(conn).execute("SHOW search_path")  # not a read: ignored
        assert reads == {"dep:table:public.bikes": 0, "dep:table:public.owners": owners,
                         "dep:table:public.rides": 0}
        assert merge({"dep:x": 1}, reads) == {**reads, "dep:x": 1}


def test_a_failing_statement_leaves_the_callers_transaction_alone(db):
    import psycopg
    install_all(db)
    with psycopg.connect(db) as conn:  # a transaction
        conn.execute("INSERT INTO owners VALUES (7, 'mine')")
        with pytest.raises(psycopg.errors.UndefinedTable):
            tracked(conn).execute("SELECT * FROM no_such_table")
        conn.rollback()
        conn.execute("INSERT INTO owners VALUES (8, 'kept')")
        with collecting() as reads:
            tracked(conn).execute("SELECT * FROM owners").fetchall()  # planned in a savepoint
        conn.execute("INSERT INTO owners VALUES (9, 'still in the transaction')")
        conn.commit()
        assert conn.execute("SELECT count(*) FROM owners").fetchone()[0] == 2
        assert list(reads) == ["dep:table:public.owners"]


def test_merge_needs_a_hash_version():
    assert merge(5, {}) == 5
    with pytest.raises(Exception, match="dependency hash"):
        merge(5, {"dep:table:public.bikes": 1})
    assert merge({"dep:table:public.bikes": 9}, {"dep:table:public.bikes": 4}) == {"dep:table:public.bikes": 4}


@pytest.fixture
def producers(tmp_path: Path) -> Path:
    directory = tmp_path / "producers"
    directory.mkdir()
    (directory / "tracked_producers.py").write_text(PRODUCERS)
    return directory


async def test_update_in_another_session_patches_the_watcher_and_other_tables_reproduce_nothing(
        cluster, producers, db):
    import psycopg
    install_all(db)
    cluster.start_workers(producers, 1)
    start_notifier(cluster, db)
    log = producers / "bikes.log"
    async with RawClient(cluster.ws_url) as watcher:
        await watcher.send("object-consumer-register", pattern="bikes", version_known=0)
        first = await watcher.expect(update_of("bikes"), timeout=30)
        assert first["value"]["bikes"][0] == {"id": 1, "name": "brompton"}
        assert list(first["version-new"]) == ["dep:table:public.bikes"]

        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("UPDATE bikes SET name = 'by another session' WHERE id = 2")
        frame = await watcher.expect(update_of("bikes"), timeout=30)
        assert frame["patch"] == [{"op": "replace", "path": "/bikes/1/name", "value": "by another session"}]
        assert log.read_text() == "xx"

        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("INSERT INTO owners VALUES (1, 'not read by bikes')")
            marker = version_of(conn, "table:public.owners")
        assert marker > 0
        # the notifier has announced the owners bump (a watcher of its dep object sees it) ...
        await watcher.send("object-consumer-register", pattern="dep:table:public.owners", version_known=0)
        await watcher.expect(update_of("dep:table:public.owners", version_new=marker), timeout=30)
        # ... and bikes was not produced again
        assert not [f for f in await watcher.quiet(1.0) if f.get("id") == "bikes"]
        assert log.read_text() == "xx"


def test_install_trigger_usage_errors(db):
    for args in ((), ("bikes", "--all")):
        result = run_cli("worker.notifier.cli", "install-trigger", *args, "--deps", db)
        assert result.returncode == 2 and "name a TABLE, or pass --all" in result.stderr
    result = run_cli("worker.notifier.cli", "install-trigger", "bike_names", "--deps", db)
    assert result.returncode == 1 and "is not a table" in result.stderr


def test_a_tracked_production_with_a_number_version_fails_with_a_message_not_the_worker():
    from common import codec
    from common.deps import tracked as _  # noqa: F401
    from common.deps.tracked import _reads
    from worker.production import produce
    from worker.producer import Producer

    class Numbered(Producer):
        patterns = ["n"]
        def produce(self, object_id):
            _reads.get()["dep:table:public.bikes"] = 3  # what a tracked read records
            return {"a": 1}, 5

    class Hashed(Numbered):
        def produce(self, object_id):
            super().produce(object_id)
            return {"a": 1}, {}

    answer = produce(Numbered(), "n")
    assert answer.error and "dependency hash" in answer.error
    ok = produce(Hashed(), "n")
    assert ok.error is None and codec.loads(ok.frame)["version-new"] == {"dep:table:public.bikes": 3}
