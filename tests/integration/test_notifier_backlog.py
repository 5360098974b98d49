"""The notifier under a backlog (issue 13 item 2, "bumps into the router"): real router, real notifier,
SQLite. A pass over unreported rows that finds the link full goes on when the link has room, not at
the next rescan (RESCAN_INTERVAL, 5 s: thousands of bumps took minutes, a few hundred per rescan);
and a pass's uploads go out many per ZeroMQ message (stop 22), none lost when the link fills up."""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from common.deps import api
from tests.cluster import Proc
from tests.integration.wsclient import RawClient, update_of

BATCH = 10_000
PAUSE = 2.0  # seconds the router is stopped: well under the peers' 3 s silence (common/wire.py)
DEADLINE = 60.0  # generous for the uploads; without the fix, ~20 rescans 5 s apart are needed


def unreported(path: str) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM seasync_dependencies WHERE current_version <> reported_version"
                          ).fetchone()[0]


async def test_a_full_link_does_not_hold_the_backlog_until_the_next_rescan(cluster, tmp_path: Path):
    path = str(tmp_path / "deps.sqlite3")
    api.bump("warm-up", url=path)
    notifier = Proc("notifier", ["-m", "worker.notifier.cli", "--router", cluster.router_url, "--deps", path, "-v"])
    cluster.procs.append(notifier)
    deadline = time.monotonic() + DEADLINE
    while unreported(path):  # the notifier is up and has reported the first row
        assert time.monotonic() < deadline, notifier.output()
        await asyncio.sleep(0.1)
    # the router pauses (well under the peers' 3 s silence), so the notifier's link fills up
    cluster.router.kill(signal.SIGSTOP)
    try:
        # how many uploads fill the link depends on the kernel's socket buffers: bump until it is full,
        # for at most PAUSE seconds (past the peers' silence limit the notifier would reconnect)
        bumped, paused_until = 0, time.monotonic() + PAUSE
        while "the router link is full" not in notifier.output() and time.monotonic() < paused_until:
            api.bump(*(f"n{i}" for i in range(bumped, bumped + BATCH)), url=path)
            bumped += BATCH
            await asyncio.sleep(0.2)
        filled = "the router link is full" in notifier.output()
    finally:
        cluster.router.kill(signal.SIGCONT)
    deadline = time.monotonic() + DEADLINE
    while (left := unreported(path)):
        assert time.monotonic() < deadline, f"{left} of {bumped} bumps not reported\n{notifier.output()[-3000:]}"
        await asyncio.sleep(0.1)
    assert notifier.alive()
    if not filled:  # buffers that took every upload for PAUSE seconds: the rest cannot be observed here
        pytest.skip(f"this kernel's socket buffers took {bumped} uploads without filling")
    # the link did fill up, and the pass went on when it had room (not at a rescan)
    assert "the router link has room again" in notifier.output()


async def test_a_pass_uploads_many_rows_per_message_and_every_dependent_sees_the_last_version(cluster, tmp_path: Path):
    """5,000 names bumped at once: watchers of some of them see the new version, every row is reported,
    and the uploads went out in messages of many (one wake-up of the router per message, not per row)."""
    path = str(tmp_path / "deps.sqlite3")
    names = [f"many-{i}" for i in range(5_000)]
    watched = [names[0], names[2_500], names[-1]]
    notifier = Proc("notifier", ["-m", "worker.notifier.cli", "--router", cluster.router_url, "--deps", path, "-v"])
    cluster.procs.append(notifier)
    async with RawClient(cluster.ws_url) as watcher:
        for name in watched:
            await watcher.send("object-consumer-register", pattern=f"dep:{name}", version_known=0)
        version = api.bump(*names, url=path)[f"dep:{names[0]}"]
        for name in watched:
            await watcher.expect(update_of(f"dep:{name}", version_new=version), timeout=60)
    deadline = time.monotonic() + DEADLINE
    while (left := unreported(path)):
        assert time.monotonic() < deadline, f"{left} of {len(names)} bumps not reported\n{notifier.output()[-3000:]}"
        await asyncio.sleep(0.1)
    assert notifier.stop() == 0
    stopped = re.search(r"stopped \((\d+) uploads in (\d+) messages\)", notifier.output())
    assert stopped, notifier.output()[-3000:]
    uploads, messages = int(stopped[1]), int(stopped[2])
    assert uploads >= len(names)
    assert messages * 20 <= uploads, f"{uploads} uploads in {messages} messages"
