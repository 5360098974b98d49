"""Dependencies, in-process: names, --deps parsing, the Seconds ticker, the SQLite backend on a real file."""

from __future__ import annotations

import sqlite3

import pytest

import common
from common import codec, protocol
from common.deps import api, config, names, sqlite
from common.deps.errors import DatabaseUnavailable, InvalidName, UnknownBackend
from worker.notifier.process import upload_frame, upload_messages
from worker.notifier.ticker import Ticker


# ---- names ----------------------------------------------------------------------------------------

def test_names_become_prefixed_object_ids():
    assert names.object_id("cars") == "dep:cars"
    assert names.name_of("dep:cars") == "cars"
    assert names.name_of("cars") is None
    assert names.name_of("dep:") is None
    assert names.check_names(("a", "b", "a")) == ["a", "b"]
    assert names.check_names((["a", "b"],)) == ["a", "b"]


@pytest.mark.parametrize("bad, message", [
    ("", "must not be empty"),
    ("a*", "'\\*'"),
    ("x" * (names.MAX_NAME_LENGTH + 1), "at most"),
    (3, "must be a string"),
    ("line\nbreak", "control characters"),
])
def test_bad_names_are_refused_with_a_reason(bad, message):
    with pytest.raises(InvalidName, match=message):
        names.check_name(bad)


def test_seconds_ids_and_versions():
    assert names.seconds_period("Seconds:60") == 60
    for bad in ("Seconds:0", "Seconds:-1", "Seconds:1.5", "Seconds:", "Seconds:01", "Seconds:x", "seconds:1",
                "Seconds:٣"):
        assert names.seconds_period(bad) is None, bad
    assert names.seconds(60, 3600.5) == {"Seconds:60": 60}
    assert names.next_tick(60, 3600.5) == 3660
    with pytest.raises(InvalidName):
        names.seconds(0, 1.0)


# ---- --deps / SEASYNC_DEPS -----------------------------------------------------------------------

@pytest.mark.parametrize("url, kind, where", [
    (None, "sqlite", "/srv/app/seasync-deps.sqlite3"),
    ("", "sqlite", "/srv/app/seasync-deps.sqlite3"),
    ("deps.db", "sqlite", "/srv/app/deps.db"),
    ("/var/lib/deps.db", "sqlite", "/var/lib/deps.db"),
    ("sqlite:///var/lib/deps.db", "sqlite", "/var/lib/deps.db"),
    ("sqlite:data/deps.db", "sqlite", "/srv/app/data/deps.db"),
    ("postgresql://u:secret@db/app", "postgres", "postgresql://u:secret@db/app"),
    ("postgres://db/app?sslmode=require", "postgres", "postgres://db/app?sslmode=require"),
])
def test_deps_locations(url, kind, where):
    assert config.parse(url, cwd="/srv/app") == config.Target(kind, where)


def test_unknown_backends_and_redaction():
    with pytest.raises(UnknownBackend, match="unknown dependency backend 'mysql'"):
        config.parse("mysql://db/app")
    with pytest.raises(UnknownBackend, match="names no file"):
        config.parse("sqlite::memory:")
    assert config.parse("postgresql://u:secret@db/app").describe() == "postgresql://u:***@db/app"
    assert config.redact("host=db password=secret dbname=app") == "host=db password=*** dbname=app"


# ---- Seconds ticker -------------------------------------------------------------------------------

def test_ticker_advances_each_period_once_per_boundary():
    ticker = Ticker()
    assert ticker.deadline() is None
    assert ticker.add(1, 100.2) == 100
    assert ticker.add(10, 100.2) == 10
    assert ticker.deadline() == pytest.approx(101.001)
    assert ticker.due(100.9) == []
    assert ticker.due(101.0005) == [("Seconds:1", 101)]
    assert ticker.due(101.5) == []
    assert sorted(ticker.due(110.0)) == [("Seconds:1", 110), ("Seconds:10", 11)]
    ticker.remove(1)
    assert ticker.due(125.0) == [("Seconds:10", 12)]


def test_ticker_never_goes_back():
    ticker = Ticker()
    assert ticker.add(1, 100.5, at_least=105) == 105  # a producer's clock ahead of ours
    assert ticker.due(101.5) == []
    assert ticker.due(106.0) == [("Seconds:1", 106)]
    assert ticker.due(50.0) == []  # the clock stepped back


# ---- the SQLite backend ---------------------------------------------------------------------------

@pytest.fixture
def db(tmp_path) -> str:
    return str(tmp_path / "deps.sqlite3")


def test_sqlite_versions_rise_and_are_shared_by_one_bump(db):
    store = sqlite.Store(db)
    assert store.versions(["a"]) == {}
    first = store.bump(["a", "b"], now=1.0)
    assert first["a"] == first["b"]
    second = store.bump(["a"], now=1.0)
    assert second["a"] > first["a"]
    assert store.versions(["a", "b", "c"]) == {"a": second["a"], "b": first["b"]}


def test_announcements_carry_object_versions_only_rising_and_are_no_dependencies(db):
    assert names.announced_id("announce:items/a") == "items/a"
    assert names.announced_id("announce:") is None and names.announced_id("items/a") is None
    assert api.announce("items/a", 7, url=db) == 7
    assert api.announce("items/a", 3, url=db) == 7  # an older announcement moves nothing
    assert api.announce("items/a", 9, url=db) == 9
    feed = sqlite.Feed(db)
    feed.open()
    try:
        sent: list = []
        assert feed.publish_unreported(take_all(sent)) == 1
        assert sent == [("announce:items/a", 9)]
    finally:
        feed.close()
    for call in (lambda: api.bump("announce:items/a", url=db), lambda: api.versions("announce:items/a", url=db)):
        with pytest.raises(InvalidName, match="carry object versions"):
            call()
    for bad in (0, -1, 2 ** 63, True, 1.5, "3"):
        with pytest.raises(InvalidName, match="positive 64-bit integer"):
            api.announce("items/a", bad, url=db)
    with pytest.raises(ValueError):
        api.announce("items/*", 1, url=db)


def test_sqlite_versions_never_fall_below_the_clock(db):
    store = sqlite.Store(db)
    assert store.bump(["a"], now=2_000_000_000.0)["a"] == 2_000_000_000_000_000
    assert store.bump(["a"], now=1.0)["a"] == 2_000_000_000_000_001  # the clock went back: +1


def test_upload_messages_pack_rows_and_say_how_many_a_refused_message_leaves_handed_over():
    """The notifier's batches (worker/notifier/process.py): rows in order, ``per_message`` frames each,
    rows already uploaded (``skip``) without a frame; ``first`` of a message is how many rows were handed
    over if that message is refused (the feed marks that prefix reported)."""
    rows = [("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5), ("announce:items/x", 6)]
    skip = {"a": 1, "c": 3, "d": 9}  # "d" was uploaded at another version: it needs a frame
    messages = list(upload_messages(rows, skip, per_message=2))
    assert [first for first, _ in messages] == [1, 4]
    assert [[codec.loads(raw) for raw in raws] for _, raws in messages] == [
        [protocol.upload("dep:b", 2, {}), protocol.upload("dep:d", 4, {})],
        [protocol.upload("dep:e", 5, {}), protocol.upload("items/x", 6, True)],  # an announcement
    ]
    assert list(upload_messages([("a", 1)], {"a": 1})) == []  # nothing to send: every row handed over
    assert list(upload_messages([])) == []
    assert upload_frame("dep:announce:items/x", 6, announce=False) == codec.dumps(
        protocol.upload("dep:announce:items/x", 6, {}))  # asked for as a dependency: answered as one


def take_all(sent: list):
    """A ``send`` for ``publish_unreported`` that hands over every row (recording them in ``sent``)."""
    def send(rows: list) -> int:
        sent.extend(rows)
        return len(rows)
    return send


def test_sqlite_feed_marks_only_what_was_sent(db):
    store = sqlite.Store(db)
    feed = sqlite.Feed(db)
    feed.open()
    try:
        v = store.bump(["a", "b"], now=1.0)["a"]
        assert feed.drain() == (True, [])  # the nudge arrived (it names no version)
        assert feed.drain() == (False, [])
        assert feed.changed() and not feed.changed()

        assert feed.publish_unreported(lambda rows: 0) == 0  # the router is unreachable
        sent: list = []
        assert feed.publish_unreported(take_all(sent)) == 2
        assert sorted(sent) == [("a", v), ("b", v)]
        assert feed.publish_unreported(lambda rows: pytest.fail("nothing left to send")) == 0

        # A bump landing between the read and the mark stays unreported.
        def bump_meanwhile(rows: list) -> int:
            store.bump(["a"], now=1.0)
            return len(rows)
        store.bump(["a"], now=1.0)
        assert feed.publish_unreported(bump_meanwhile) == 1
        latest = store.versions(["a"])["a"]
        assert feed.publish_unreported(take_all(sent)) == 1
        assert sent[-1] == ("a", latest)

        assert feed.current("a") == latest and feed.current("never") == 0
        assert sorted(n for n, _ in feed.recent(60.0, now=2.0)) == ["a", "b"]
        assert feed.recent(60.0, now=100.0) == []
    finally:
        feed.close()


def test_sqlite_feed_marks_the_prefix_a_full_link_took_and_refuses_a_wrong_count(db):
    """The notifier packs uploads in messages; a full link takes only the first ones: exactly those
    rows are marked reported, the pass stops, and the rest go out on the next one (none lost)."""
    store = sqlite.Store(db)
    bumped = store.bump([f"n{i}" for i in range(2 * sqlite.BATCH + 10)], now=1.0)
    feed = sqlite.Feed(db)
    feed.open()
    try:
        offered: list = []

        def link_full_after(rows: list) -> int:
            offered.append(len(rows))
            return 250
        assert feed.publish_unreported(link_full_after) == 250
        assert offered == [sqlite.BATCH]  # the pass stopped at the full link
        for wrong in (-1, sqlite.BATCH + 1, True, 2.0):
            with pytest.raises(ValueError, match="must return how many"):
                feed.publish_unreported(lambda rows, wrong=wrong: wrong)
        sent: list = []
        assert feed.publish_unreported(take_all(sent)) == len(bumped) - 250
        assert feed.publish_unreported(lambda rows: pytest.fail("nothing left to send")) == 0
        assert len(sent) == len(set(sent)) == len(bumped) - 250  # each unreported row sent once
    finally:
        feed.close()


def test_sqlite_errors_say_what_to_do(tmp_path):
    with pytest.raises(DatabaseUnavailable, match="does not exist"):
        sqlite.Store(str(tmp_path / "missing" / "deps.sqlite3")).bump(["a"], now=1.0)
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DatabaseUnavailable, match="not a SQLite database"):
        sqlite.Store(str(garbage)).versions(["a"])


def test_sqlite_bump_waits_for_another_writer_then_gives_up(db, monkeypatch):
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT", 0.2)
    store = sqlite.Store(db)
    store.bump(["a"], now=1.0)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseUnavailable, match="write lock"):
            sqlite.Store(db).bump(["a"], now=1.0)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


# ---- the public API -------------------------------------------------------------------------------

def test_public_api(db, monkeypatch):
    monkeypatch.setenv("SEASYNC_DEPS", db)
    import common.versioning as version_module  # the version-ordering module, imported alongside
    assert version_module.is_newer(1, 2)
    assert common.versions("x") == {"dep:x": 0}
    bumped = common.bump("x", "y")
    assert common.versions("x", "y") == bumped
    assert set(bumped) == {"dep:x", "dep:y"}
    assert api.seconds(1).keys() == {"Seconds:1"}


def test_configure_overrides_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SEASYNC_DEPS", str(tmp_path / "from-env.sqlite3"))
    api.configure(str(tmp_path / "configured.sqlite3"))
    try:
        api.bump("z")
    finally:
        api.configure(None)
    assert (tmp_path / "configured.sqlite3").exists() and not (tmp_path / "from-env.sqlite3").exists()
    with pytest.raises(UnknownBackend):
        api.configure("mongodb://db")


def test_sqlite_store_follows_a_replaced_file(tmp_path, monkeypatch):
    """A bump after the file was replaced (rm + restore) lands in the new file, not the deleted one,
    and the identity is looked at no more than once per poll interval (issue 10 item 6)."""
    import os
    import sqlite3
    import time

    from common.deps import sqlite as backend

    stats = []
    real_identity = getattr(backend, "file_identity", lambda path: None)
    monkeypatch.setattr(backend, "file_identity", lambda path: stats.append(path) or real_identity(path),
                        raising=False)
    path = str(tmp_path / "deps.sqlite3")
    store = backend.Store(path)
    store.bump(["a"], time.time())
    opened = len(stats)
    for _ in range(100):
        store.versions(["a"])
    assert len(stats) - opened <= 1  # 100 calls within one interval: at most one stat

    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    sqlite3.connect(path).close()  # the "restored" file: another inode, the schema comes with the reopen
    time.sleep(backend.POLL_INTERVAL * 2)
    version = store.bump(["b"], time.time())["b"]
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT current_version FROM seasync_dependencies WHERE name = 'b'").fetchone() == (version,)
