"""Dependencies end to end: bump / versions, sync-notifier, sync-bump, triggers, Seconds:N.

Real processes everywhere: router, front, worker pool, notifier, a websocket client, and for the
PostgreSQL tests a throwaway PostgreSQL server started once for the module (tests/postgres.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jsonpatch
import pytest

from common import bump, versions, wire
from common.deps import DatabaseUnavailable, InvalidName, UnknownBackend
from tests.cluster import REPO, Cluster, Proc, free_port
from tests.integration.wsclient import RawClient, update_of

PRODUCERS = textwrap.dedent('''
    import json, os, pathlib
    from worker import Producer
    from common import versions
    from common.deps import seconds

    STATE = pathlib.Path(__file__).with_name("state")

    class Doc(Producer):
        """Data from state/doc.json; the version is the dependency "doc-src" (read first)."""
        patterns = ["doc"]
        def produce(self, object_id):
            version = versions("doc-src")
            return json.loads((STATE / "doc.json").read_text()), version

    class Bikes(Producer):
        """Rows of the PostgreSQL table bikes; the version is the dependency "bikes"."""
        patterns = ["bikes"]
        def __init__(self):
            self.conn = None
        def produce(self, object_id):
            import psycopg
            if self.conn is None or self.conn.closed:  # reconnect after a database restart
                self.conn = psycopg.connect(os.environ["SEASYNC_DEPS"], autocommit=True)
            version = versions("bikes")
            rows = self.conn.execute("SELECT id, name FROM bikes ORDER BY id").fetchall()
            return {"bikes": [{"id": i, "name": n} for i, n in rows]}, version

    class Burst(Producer):
        """Slow on purpose (250 ms); counts its productions in state/burst.log."""
        patterns = ["burst"]
        def produce(self, object_id):
            import time
            version = versions("burst")
            data = json.loads((STATE / "burst.json").read_text())
            time.sleep(0.25)
            with open(STATE / "burst.log", "a") as log:
                log.write("x")
            return data, version

    class Ticking(Producer):
        """Produced again every second by depending on Seconds:1."""
        patterns = ["ticking"]
        def produce(self, object_id):
            version = seconds(1)
            return {"second": version["Seconds:1"]}, version
''')


@pytest.fixture
def producers(tmp_path: Path) -> Path:
    directory = tmp_path / "producers"
    (directory / "state").mkdir(parents=True)
    (directory / "deps_producers.py").write_text(PRODUCERS)
    write_doc(directory, {"title": "first"})
    return directory


def write_doc(directory: Path, data: dict) -> None:
    tmp = directory / "state" / "doc.json.tmp"
    tmp.write_text(json.dumps(data))
    tmp.replace(directory / "state" / "doc.json")


def start_notifier(cluster: Cluster, deps: str, *extra: str) -> Proc:
    proc = Proc("notifier", ["-m", "worker.notifier.cli", "--router", cluster.router_url,
                             "--deps", deps, "-v", *extra])
    cluster.procs.append(proc)
    return proc


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "SEASYNC_DEPS"}
    full_env.setdefault("PYTHONPATH", str(REPO))
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=60,
                          cwd=str(REPO), env=full_env)


def is_doc_update(version: int):
    return update_of("doc", version_new={"dep:doc-src": version})


# ---- SQLite (the default backend) ---------------------------------------------------------------

@pytest.fixture
def sqlite_deps(tmp_path: Path, monkeypatch) -> str:
    path = str(tmp_path / "deps.sqlite3")
    monkeypatch.setenv("SEASYNC_DEPS", path)
    return path


async def test_sqlite_bump_reproduces_the_dependent_and_the_watcher_gets_a_patch(cluster, producers, sqlite_deps):
    cluster.start_workers(producers, 1)
    start_notifier(cluster, sqlite_deps)
    async with RawClient(cluster.ws_url) as watcher:
        await watcher.send("object-consumer-register", pattern="doc", version_known=0)
        first = await watcher.expect(update_of("doc"))
        assert first["version-new"] == {"dep:doc-src": 0} and first["value"] == {"title": "first"}

        write_doc(producers, {"title": "second"})
        new = bump("doc-src")["dep:doc-src"]
        second = await watcher.expect(is_doc_update(new))
        assert second["version-old"] == {"dep:doc-src": 0}
        assert second["patch"] == [{"op": "replace", "path": "/title", "value": "second"}]

        write_doc(producers, {"title": "third"})
        result = run_cli("worker.notifier.bump_cli", "doc-src", env={"SEASYNC_DEPS": sqlite_deps})
        assert result.returncode == 0, result.stderr
        object_id, version = result.stdout.split()
        assert object_id == "dep:doc-src" and int(version) > new
        third = await watcher.expect(is_doc_update(int(version)))
        assert third["patch"] == [{"op": "replace", "path": "/title", "value": "third"}]


async def test_sqlite_versions_survive_a_restart_of_every_process(producers, sqlite_deps):
    first = Cluster()
    try:
        first.start_router()
        first.start_front()
        first.start_workers(producers, 1)
        start_notifier(first, sqlite_deps)
        async with RawClient(first.ws_url) as watcher:
            await watcher.send("object-consumer-register", pattern="doc", version_known=0)
            await watcher.expect(update_of("doc"))
            for n in range(3):
                write_doc(producers, {"title": f"edit {n}"})
                before = bump("doc-src")["dep:doc-src"]
                held = await watcher.expect(is_doc_update(before))
    finally:
        first.stop()

    assert versions("doc-src") == {"dep:doc-src": before}
    second = Cluster()
    try:
        second.start_router()
        second.start_front()
        second.start_workers(producers, 1)
        start_notifier(second, sqlite_deps)
        async with RawClient(second.ws_url) as returning, RawClient(second.ws_url) as fresh:
            # A client that kept its data and version is current: nothing to send.
            await returning.send("object-consumer-register", pattern="doc", version_known=held["version-new"])
            await fresh.send("object-consumer-register", pattern="doc", version_known=0)
            again = await fresh.expect(update_of("doc"))
            assert again["version-new"] == {"dep:doc-src": before} and again["value"] == {"title": "edit 2"}
            assert not [f for f in await returning.quiet(0.5) if f.get("action") == "object-update"]

            write_doc(producers, {"title": "after restart"})
            after = bump("doc-src")["dep:doc-src"]
            assert after > before
            patch = await returning.expect(is_doc_update(after))
            assert patch["version-old"] == {"dep:doc-src": before}
            assert patch["patch"] == [{"op": "replace", "path": "/title", "value": "after restart"}]
    finally:
        second.stop()


BUMPER = textwrap.dedent('''
    import sys
    from common import bump
    names = sys.argv[2:]
    for _ in range(int(sys.argv[1])):
        for version in bump(*names).values():
            print(version)
''')


def concurrent_bumps(deps: str, processes: int, count: int) -> list[int]:
    env = {**os.environ, "SEASYNC_DEPS": deps, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", BUMPER, str(count), "shared"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(processes)]
    seen: list[int] = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        mine = [int(line) for line in out.split()]
        assert mine == sorted(mine) and len(mine) == count  # each process sees its versions rise
        seen += mine
    return seen


def test_sqlite_concurrent_bumps_never_share_a_version(sqlite_deps):
    seen = concurrent_bumps(sqlite_deps, 2, 200)
    assert len(set(seen)) == 400
    assert versions("shared") == {"dep:shared": max(seen)}


async def test_seconds_dependency_advances_every_second(cluster, producers, sqlite_deps):
    cluster.start_workers(producers, 1)
    start_notifier(cluster, sqlite_deps)
    async with RawClient(cluster.ws_url) as watcher:
        await watcher.send("object-consumer-register", pattern="ticking", version_known=0)
        seen = []
        for _ in range(3):
            frame = await watcher.expect(update_of("ticking"))
            seen.append(frame["version-new"]["Seconds:1"])
        assert seen == sorted(seen) and len(set(seen)) == 3


async def test_sqlite_notifier_catches_up_after_a_kill(cluster, producers, sqlite_deps):
    cluster.start_workers(producers, 1)
    notifier = start_notifier(cluster, sqlite_deps)
    async with RawClient(cluster.ws_url) as watcher:
        await watcher.send("object-consumer-register", pattern="doc", version_known=0)
        await watcher.expect(update_of("doc"))
        notifier.kill(signal.SIGKILL)
        notifier.popen.wait(10)
        write_doc(producers, {"title": "while the notifier was down"})
        missed = bump("doc-src")["dep:doc-src"]
        start_notifier(cluster, sqlite_deps)
        frame = await watcher.expect(is_doc_update(missed), timeout=30)
        assert frame["patch"] == [{"op": "replace", "path": "/title", "value": "while the notifier was down"}]


def _replace_file(path: str, with_wal: bool) -> None:
    """``rm`` the database (``with_wal``: ``rm deps.sqlite3*``, its WAL files too) and restore it from
    a backup taken just before: a new file (inode) at the same path, while every process still has the
    old one open."""
    import sqlite3

    backup_path = path + ".backup"
    src, dst = sqlite3.connect(path), sqlite3.connect(backup_path)
    src.backup(dst)
    src.close()
    dst.close()
    before = os.stat(path).st_ino
    os.remove(path)
    if with_wal:
        for suffix in ("-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    os.rename(backup_path, path)
    assert os.stat(path).st_ino != before


@pytest.mark.parametrize("with_wal", [True, False], ids=["rm-with-wal", "rm-main-file"])
async def test_sqlite_a_replaced_database_file_is_noticed_and_reopened(cluster, producers, sqlite_deps, with_wal):
    """Issue 10 item 6: rm + restore of the file while the notifier and the workers have it open."""
    cluster.start_workers(producers, 1)
    notifier = start_notifier(cluster, sqlite_deps)
    async with RawClient(cluster.ws_url) as watcher:
        await watcher.send("object-consumer-register", pattern="doc", version_known=0)
        await watcher.expect(update_of("doc"))
        first = bump("doc-src")["dep:doc-src"]  # the test process holds the file open too
        await watcher.expect(is_doc_update(first))

        _replace_file(sqlite_deps, with_wal)
        write_doc(producers, {"title": "after the restore"})
        result = run_cli("worker.notifier.bump_cli", "doc-src", env={"SEASYNC_DEPS": sqlite_deps})
        assert result.returncode == 0, result.stderr
        restored = int(result.stdout.split()[1])
        frame = await watcher.expect(is_doc_update(restored), timeout=30)
        assert frame["patch"] == [{"op": "replace", "path": "/title", "value": "after the restore"}]
        assert "was replaced while the notifier had it open: reopening" in notifier.output()

        write_doc(producers, {"title": "bumped in process"})
        again = bump("doc-src")["dep:doc-src"]  # this process's connection was reopened too
        assert again > restored
        frame = await watcher.expect(is_doc_update(again), timeout=30)
        assert frame["patch"] == [{"op": "replace", "path": "/title", "value": "bumped in process"}]


async def test_sqlite_notifier_frozen_past_the_router_timeout_resends(cluster, producers, sqlite_deps):
    """SIGSTOP: the router drops the notifier's session; on SIGCONT the notifier first sends the bump on
    the dead session (lost), then opens a new one and re-sends recent versions."""
    cluster.start_workers(producers, 1)
    notifier = start_notifier(cluster, sqlite_deps)
    async with RawClient(cluster.ws_url) as watcher:
        await watcher.send("object-consumer-register", pattern="doc", version_known=0)
        await watcher.expect(update_of("doc"))
        notifier.kill(signal.SIGSTOP)
        try:
            await watcher.quiet(wire.PEER_TIMEOUT + 2.0)
            write_doc(producers, {"title": "while frozen"})
            version = bump("doc-src")["dep:doc-src"]
        finally:
            notifier.kill(signal.SIGCONT)
        frame = await watcher.expect(is_doc_update(version), timeout=30)
        assert frame["patch"] == [{"op": "replace", "path": "/title", "value": "while frozen"}]


async def test_a_burst_of_bumps_is_coalesced_and_the_last_state_wins(cluster, producers, sqlite_deps):
    (producers / "state" / "burst.json").write_text(json.dumps({"n": 0}))
    cluster.start_workers(producers, 1)
    start_notifier(cluster, sqlite_deps)
    async with RawClient(cluster.ws_url) as watcher:
        await watcher.send("object-consumer-register", pattern="burst", version_known=0)
        await watcher.expect(update_of("burst"))
        state = producers / "state"
        started = time.monotonic()
        for n in range(1, 1001):
            (state / "burst.json.tmp").write_text(json.dumps({"n": n}))
            (state / "burst.json.tmp").replace(state / "burst.json")
            last = bump("burst")["dep:burst"]
        elapsed = time.monotonic() - started
        final = await watcher.expect(update_of("burst", version_new={"dep:burst": last}), timeout=60)
        assert final == {"action": "object-update", "id": "burst", "version-old": final["version-old"],
                         "version-new": {"dep:burst": last}, "patch": [{"op": "replace", "path": "/n", "value": 1000}]}
        updates = [f for f in await watcher.quiet(1.0) if f.get("action") == "object-update"]
        assert all(f["version-new"]["dep:burst"] < last for f in updates)  # nothing after the last one
    productions = len((state / "burst.log").read_text())
    # One production at a time, 250 ms each: while one runs, newer bumps only raise the version wanted.
    assert productions <= elapsed / 0.25 + 3 and productions < 100, (productions, elapsed)


# ---- command-line errors ----------------------------------------------------------------------

@pytest.mark.parametrize("args, code, message", [
    (["", ], 2, "must not be empty"),
    (["cars*"], 2, "cannot contain '*'"),
    (["x" * 2000], 2, "at most"),
    (["cars", "--deps", "mysql://db/app"], 2, "unknown dependency backend 'mysql'"),
    (["cars", "--deps", "/nonexistent/dir/deps.sqlite3"], 1, "does not exist"),
])
def test_sync_bump_errors_are_clear_and_exit_non_zero(args, code, message):
    result = run_cli("worker.notifier.bump_cli", *args)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_sync_bump_with_the_database_down():
    down = f"postgresql://nobody@127.0.0.1:{free_port()}/app"
    result = run_cli("worker.notifier.bump_cli", "cars", "--deps", down)
    assert result.returncode == 1
    assert "cannot reach the dependency database" in result.stderr and "Is PostgreSQL running" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(DatabaseUnavailable, match="Is PostgreSQL running"):
        bump("cars", url=down)


def test_library_errors():
    with pytest.raises(InvalidName, match="must not be empty"):
        bump("")
    with pytest.raises(InvalidName, match="'\\*'"):
        versions("a*b")
    with pytest.raises(InvalidName, match="at least one"):
        bump()
    with pytest.raises(UnknownBackend, match="redis"):
        bump("cars", url="redis://localhost/0")


def test_trigger_commands_need_postgres(sqlite_deps):
    result = run_cli("worker.notifier.cli", "install-trigger", "--deps", sqlite_deps, "bikes", "bikes")
    assert result.returncode == 2 and "for PostgreSQL" in result.stderr


# ---- PostgreSQL ----------------------------------------------------------------------------------

@pytest.fixture
def pg_deps(pg_server, monkeypatch) -> str:
    """A fresh database with a table ``bikes``; SEASYNC_DEPS points at it."""
    import psycopg
    url = pg_server.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bikes (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO bikes VALUES (1, 'brompton'), (2, 'moulton')")
    monkeypatch.setenv("SEASYNC_DEPS", url)
    return url


def bikes_update(version: int | None = None):
    if version is None:
        return update_of("bikes")
    return update_of("bikes", version_new={"dep:bikes": version})


async def test_postgres_rolled_back_bump_changes_nothing_committed_one_patches(cluster, producers, pg_deps):
    import psycopg
    cluster.start_workers(producers, 1)
    start_notifier(cluster, pg_deps)
    async with RawClient(cluster.ws_url) as watcher:
        await watcher.send("object-consumer-register", pattern="bikes", version_known=0)
        first = await watcher.expect(bikes_update())
        assert first["value"]["bikes"][0] == {"id": 1, "name": "brompton"}
        before = versions("bikes")

        with psycopg.connect(pg_deps) as conn:
            conn.execute("UPDATE bikes SET name = 'rolled back' WHERE id = 1")
            inside = bump("bikes", connection=conn)
            assert inside["dep:bikes"] > (before["dep:bikes"] or 0)
            conn.rollback()
        assert versions("bikes") == before
        assert not [f for f in await watcher.quiet(1.0) if f.get("action") == "object-update"]

        with psycopg.connect(pg_deps) as conn:
            with conn.cursor() as cursor:
                cursor.execute("UPDATE bikes SET name = 'committed' WHERE id = 1")
                committed = bump("bikes", connection=cursor)["dep:bikes"]
            conn.commit()
        assert versions("bikes") == {"dep:bikes": committed}
        frame = await watcher.expect(bikes_update(committed))
        assert frame["version-old"] == first["version-new"]
        assert frame["patch"] == [{"op": "replace", "path": "/bikes/0/name", "value": "committed"}]


async def test_postgres_notifier_killed_and_restarted_catches_up(cluster, producers, pg_deps):
    import psycopg
    cluster.start_workers(producers, 1)
    notifier = start_notifier(cluster, pg_deps)
    async with RawClient(cluster.ws_url) as watcher:
        await watcher.send("object-consumer-register", pattern="bikes", version_known=0)
        first = await watcher.expect(bikes_update())
        notifier.kill(signal.SIGKILL)
        notifier.popen.wait(10)
        with psycopg.connect(pg_deps, autocommit=True) as conn:
            conn.execute("UPDATE bikes SET name = 'while down' WHERE id = 2")
        bump("bikes")
        with psycopg.connect(pg_deps, autocommit=True) as conn:
            conn.execute("INSERT INTO bikes VALUES (3, 'dahon')")
        missed = bump("bikes")["dep:bikes"]
        start_notifier(cluster, pg_deps)
        frame = await watcher.expect(bikes_update(missed), timeout=30)
        assert frame["version-old"] == first["version-new"]
        assert jsonpatch.apply_patch(first["value"], frame["patch"]) == {"bikes": [
            {"id": 1, "name": "brompton"}, {"id": 2, "name": "while down"}, {"id": 3, "name": "dahon"}]}


async def test_postgres_trigger_bumps_on_a_plain_sql_update(cluster, producers, pg_deps):
    import psycopg
    result = run_cli("worker.notifier.cli", "install-trigger", "--deps", pg_deps, "bikes", "bikes")
    assert result.returncode == 0, result.stderr
    cluster.start_workers(producers, 1)
    start_notifier(cluster, pg_deps)
    async with RawClient(cluster.ws_url) as watcher:
        await watcher.send("object-consumer-register", pattern="bikes", version_known=0)
        await watcher.expect(bikes_update())
        with psycopg.connect(pg_deps, autocommit=True) as conn:
            conn.execute("UPDATE bikes SET name = 'by trigger' WHERE id = 2")
        frame = await watcher.expect(lambda f: f.get("action") == "object-update" and f.get("id") == "bikes")
        assert frame["patch"] == [{"op": "replace", "path": "/bikes/1/name", "value": "by trigger"}]
        assert frame["version-new"] == versions("bikes")

    result = run_cli("worker.notifier.cli", "remove-trigger", "--deps", pg_deps, "bikes")
    assert result.returncode == 0 and "removed" in result.stdout
    before = versions("bikes")
    with psycopg.connect(pg_deps, autocommit=True) as conn:
        conn.execute("UPDATE bikes SET name = 'no trigger' WHERE id = 2")
    assert versions("bikes") == before


async def test_postgres_notifier_survives_a_database_restart(cluster, producers, pg_server, pg_deps):
    cluster.start_workers(producers, 1)
    notifier = start_notifier(cluster, pg_deps)
    async with RawClient(cluster.ws_url) as watcher:
        await watcher.send("object-consumer-register", pattern="bikes", version_known=0)
        await watcher.expect(bikes_update())
        pg_server.stop()
        with pytest.raises(DatabaseUnavailable):
            bump("bikes")
        pg_server.start()
        import psycopg
        with psycopg.connect(pg_deps, autocommit=True) as conn:
            conn.execute("UPDATE bikes SET name = 'after restart' WHERE id = 1")
        version = bump("bikes")["dep:bikes"]
        frame = await watcher.expect(bikes_update(version), timeout=30)
        assert frame["patch"] == [{"op": "replace", "path": "/bikes/0/name", "value": "after restart"}]
    assert notifier.alive()
    assert "lost the dependency database" in notifier.output()


def test_postgres_concurrent_bumps_never_share_a_version(pg_deps):
    bump("shared")  # create the schema once, before the race
    seen = concurrent_bumps(pg_deps, 2, 200)
    assert len(set(seen)) == 400
    assert versions("shared") == {"dep:shared": max(seen)}


def drain_until(feed, count: int, timeout: float = 20.0) -> list[tuple[str, int]]:
    """Notifications are delivered asynchronously after COMMIT: collect ``count`` of them."""
    hints: list[tuple[str, int]] = []
    deadline = time.monotonic() + timeout
    while len(hints) < count and time.monotonic() < deadline:
        hints += feed.drain()[1]
        time.sleep(0.01)
    return hints


def test_postgres_feed_announces_versions_and_claims_each_once(pg_deps):
    """The notifier's side in-process: NOTIFY payloads name the versions; rows are marked reported once,
    never while an application transaction holds them, and a rolled-back bump announces nothing."""
    import psycopg
    from common.deps import postgres as backend

    feed = backend.Feed(pg_deps)
    feed.open()
    try:
        assert feed.drain() == (False, [])
        a = bump("a", "b")
        assert drain_until(feed, 2) == sorted((n.removeprefix("dep:"), v) for n, v in a.items())
        with psycopg.connect(pg_deps) as conn:
            bump("a", connection=conn)
            conn.rollback()
        marker = bump("marker")["dep:marker"]  # notifications arrive in commit order: after this one, none
        assert drain_until(feed, 1) == [("marker", marker)]

        sent: list = []

        def take_all(rows: list) -> int:
            sent.extend(rows)
            return len(rows)
        assert feed.publish_unreported(lambda rows: 0) == 0  # the router is unreachable: nothing marked
        assert feed.publish_unreported(take_all) == 3
        assert feed.publish_unreported(lambda rows: pytest.fail("already reported")) == 0

        with psycopg.connect(pg_deps) as app:  # an open transaction holds row "a"
            held = bump("a", connection=app)["dep:a"]
            b = bump("b")["dep:b"]
            assert feed.publish_unreported(take_all) == 1
            assert sent[-1] == ("b", b)
            app.commit()
        assert feed.publish_unreported(take_all) == 1
        assert sent[-1] == ("a", held)

        # a full link takes only the first rows: those are marked, the rest go out on the next pass
        many = bump(*(f"m{i}" for i in range(2 * backend.BATCH + 10)))
        assert feed.publish_unreported(lambda rows: 300) == 300
        with pytest.raises(ValueError, match="must return how many"):
            feed.publish_unreported(lambda rows: len(rows) + 1)
        del sent[:]
        assert feed.publish_unreported(take_all) == len(many) - 300
        assert len(set(sent)) == len(sent) == len(many) - 300
        assert feed.publish_unreported(lambda rows: pytest.fail("already reported")) == 0
        assert feed.current("a") == held and feed.current("never") == 0
    finally:
        feed.close()


def test_postgres_tables_dropped_under_a_running_app_say_what_to_run(pg_deps):
    """An application whose dependency tables vanished (the database replaced, a migration gone wrong)
    gets SchemaMissing naming `sync-notifier init`, from bump() and from versions(), not PostgreSQL's own
    undefined-table error."""
    import psycopg

    from common.deps import SchemaMissing
    from common.deps.postgres import Store

    store = Store(pg_deps)
    assert store.advance("bikes", 3, time.time()) == 3
    with psycopg.connect(pg_deps, autocommit=True) as conn:
        conn.execute("DROP TABLE seasync_dependencies CASCADE")
    with pytest.raises(SchemaMissing, match="sync-notifier init"):
        store.advance("bikes", 4, time.time())
    with pytest.raises(SchemaMissing, match="sync-notifier init"):
        store.versions(["bikes"])


def test_postgres_schema_is_reapplied_when_its_tag_differs(pg_deps):
    import psycopg
    from common.deps import postgres as backend

    with psycopg.connect(pg_deps, autocommit=True) as conn:
        assert backend.ensure_schema(conn, pg_deps) is True
        assert backend.ensure_schema(conn, pg_deps) is False
        conn.execute("COMMENT ON FUNCTION seasync_bump(text[]) IS 'an older schema'")
        assert backend.ensure_schema(conn, pg_deps) is True
