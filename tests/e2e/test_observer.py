"""`sync-observer` against a real cluster: headless with textual's pilot, and once in a real terminal (tmux).

The cluster is real (router, front, a worker pool loading a producer file); objects become visible because
a Python client consumes them. Every check waits for a condition with a deadline, never for a fixed time.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest

from common.client import Client
from scripts.observer import LiveTable, ObjectDetail, ObserverApp
from tests.cluster import REPO

pytestmark = pytest.mark.asyncio

PRODUCER = '''
from worker import Producer


class Thing(Producer):
    patterns = ["thing-*"]

    def produce(self, object_id):
        return {"id": object_id, "n": int(object_id.rsplit("-", 1)[1])}, 1
'''


@pytest.fixture
def producers(tmp_path: Path) -> Path:
    directory = tmp_path / "producers"
    directory.mkdir()
    (directory / "thing.py").write_text(PRODUCER)
    return directory


async def until(pilot: Any, condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Let the app run until ``condition()`` is truthy; fail saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.05)


def worker_pids(pool_pid: int) -> set[str]:
    """The pids of the pool's worker processes (the pool process itself is not a worker)."""
    try:
        return {str(p.pid) for p in psutil.Process(pool_pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def highlighted_lines(detail: ObjectDetail) -> list[str]:
    return [line for line in detail.json_text.plain.splitlines() if line.startswith("▌")]


async def test_observer_shows_objects_workers_and_a_live_object(cluster, producers):
    pool = cluster.start_workers(producers, 1)
    async with Client(cluster.ws_url, name="app") as client:
        client.consume("thing-1")
        client.consume("thing-2")
        status = client.master("status", value={"count": 0, "items": ["a"]})
        client.consume("status")

        observer = ObserverApp(cluster.ws_url)
        async with observer.run_test(size=(80, 24)) as pilot:
            table = observer.query_one("#objects-table", LiveTable)
            await until(pilot, lambda: table.cell_text("thing-1", "state") == "current",
                        "thing-1 to show as current in the objects table")
            await until(pilot, lambda: {"thing-1", "thing-2", "status"} <= set(table.keys), "every watched object")
            assert table.cell_text("thing-1", "runs") == "1"
            assert table.cell_text("thing-1", "cp") == "1/1"  # the app consumes it, the worker produces it
            assert not [key for key in table.keys if key.startswith("SeapigServer::")]  # internal ones hidden

            # the workers tab shows the worker process
            await pilot.press("2")
            workers = observer.query_one("#workers-table", LiveTable)
            pids = await until(pilot, lambda: worker_pids(pool.pid), "the pool to fork its worker")
            await until(pilot, lambda: {workers.cell_text(k, "pid") for k in workers.keys} & pids,
                        f"a worker row with one of the pids {pids}")

            # Enter on an object watches its JSON, and the next change is highlighted
            await pilot.press("1")
            table.focus()
            table.move_cursor(row=table.get_row_index("status"))
            await pilot.press("enter")
            detail = observer.query_one(ObjectDetail)
            await until(pilot, lambda: detail.value == {"count": 0, "items": ["a"]}, "the JSON of status")
            assert detail.has_class("-open") and '"count": 0' in detail.json_text.plain
            status.value["count"] = 1
            await status.bump()
            await until(pilot, lambda: detail.value["count"] == 1, "the detail pane to follow a bump")
            assert detail.changed == {"/count"}
            assert highlighted_lines(detail) == ['▌  "count": 1,']
            assert detail.version == status.version

            # "/" filters with * wildcards (common.patterns semantics: whole id, so "q" matches nothing)
            await pilot.press("slash", "q")
            field = observer.query_one("#filter")
            assert field.value == "q" and observer.is_running  # typed into the field, did not quit
            await until(pilot, lambda: table.keys == [], "an exact-id filter that matches nothing")
            await pilot.press("backspace", *"thing-*", "enter")
            await until(pilot, lambda: table.keys == ["thing-1", "thing-2"], "the filter to narrow the table")
            assert observer.focused is table

            # Escape closes the detail (and stops consuming), then clears the filter
            await pilot.press("escape")
            assert not detail.has_class("-open") and observer.watched is None
            await pilot.press("escape")
            await until(pilot, lambda: "status" in table.keys, "the filter to be cleared")

            await pilot.press("q")
        assert observer.return_code == 0


async def test_observer_says_when_the_front_is_gone_and_recovers(cluster, producers):
    cluster.start_workers(producers, 1)
    async with Client(cluster.ws_url, name="app") as client:
        client.consume("thing-5")
        observer = ObserverApp(cluster.ws_url)
        async with observer.run_test(size=(80, 24)) as pilot:
            table = observer.query_one("#objects-table", LiveTable)
            await until(pilot, lambda: table.cell_text("thing-5", "state") == "current", "thing-5 in the table")
            status = observer.query_one("#status")

            cluster.front.stop()
            await until(pilot, lambda: status.has_class("-down"), "the status line to turn to disconnected")
            assert observer.screen.has_class("-disconnected")
            assert "thing-5" in table.keys  # the last known data stays on screen, dimmed

            cluster.start_front()  # same port: the client reconnects by itself
            await until(pilot, lambda: observer.connected and not status.has_class("-down"),
                        "the observer to reconnect", timeout=60)
            await until(pilot, lambda: table.cell_text("thing-5", "state") == "current", "fresh data after reconnect")
            await pilot.press("q")
        assert observer.return_code == 0


async def test_observer_in_a_real_terminal(cluster, producers, tmp_path):
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux is not installed (scripts/test.sh installs it)")
    cluster.start_workers(producers, 1)
    socket_name = f"seasync-observer-test-{os.getpid()}"
    rc_file = tmp_path / "observer.rc"

    def tmux_cmd(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([tmux, "-L", socket_name, "-f", "/dev/null", *args],
                              capture_output=True, text=True, timeout=30)

    async def screen_shows(*needles: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = tmux_cmd("capture-pane", "-p", "-t", "observer").stdout
            if all(needle in screen for needle in needles):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"the pane never showed {needles}; it shows:\n{screen}")
            await asyncio.sleep(0.1)

    async with Client(cluster.ws_url, name="app") as client:
        await client.consume("thing-7").wait(timeout=30)
        command = (f"cd {REPO} && {sys.executable} -m scripts.observer --url {cluster.ws_url}; "
                   f"echo $? > {rc_file}")
        env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(REPO)}
        started = subprocess.run([tmux, "-L", socket_name, "-f", "/dev/null", "new-session", "-d",
                                  "-x", "80", "-y", "24", "-s", "observer", command],
                                 capture_output=True, text=True, timeout=30, env=env)
        assert started.returncode == 0, started.stderr
        try:
            screen = await screen_shows("thing-7", "current", "Quit")
            lines = screen.splitlines()
            assert any(line.split()[:3] == ["id", "state", "version"] for line in lines), screen  # table header
            assert "1 Objects" in screen and "2 Workers" in screen  # the tabs
            assert "q Quit" in lines[-1] and "/ Filter" in lines[-1], screen  # the footer keys, last line
            assert lines[0].lstrip().startswith("●") and cluster.ws_url in lines[0], screen  # connected

            tmux_cmd("send-keys", "-t", "observer", "q")
            deadline = time.monotonic() + 30
            while not (rc_file.exists() and rc_file.read_text().strip()):
                assert time.monotonic() < deadline, "the observer did not exit after q"
                await asyncio.sleep(0.1)
            assert rc_file.read_text().strip() == "0"
        finally:
            tmux_cmd("kill-server")
