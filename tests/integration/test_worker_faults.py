"""Worker faults against real processes: a hung producer is abandoned, a killed worker's order is redone at once.

The first test talks to the worker pool through the scripted router of test_worker.py (to see the exact
frames the worker sends); the others run a whole cluster (router, front, pool) and watch over websockets.
"""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from common import wire
from tests.cluster import Cluster, Proc
from tests.integration.test_worker import ScriptedRouter, pid_of
from tests.integration.wsclient import RawClient, update_of

HANG = textwrap.dedent('''
    import os, pathlib, time
    from worker import Producer

    STATE = pathlib.Path(__file__).with_name("state")

    class Hang(Producer):
        """The first production of each id hangs (it records the pid of the worker doing it)."""
        patterns = ["hang-*"]
        def produce(self, object_id):
            marker = STATE / f"{object_id}.pid"
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                time.sleep(600)
            return {"id": object_id, "by": os.getpid()}, 1

    class HoldsTheGil(Producer):
        """The first production blocks in C code without releasing the GIL: the worker's loop freezes too."""
        patterns = ["gil-*"]
        def produce(self, object_id):
            marker = STATE / f"{object_id}.pid"
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                import ctypes
                ctypes.PyDLL(None).sleep(600)
            return {"id": object_id, "by": os.getpid()}, 1

    class Quick(Producer):
        patterns = ["quick"]
        def produce(self, object_id):
            return {"quick": True}, 1
''')


@pytest.fixture
def producers(tmp_path: Path) -> Path:
    (tmp_path / "state").mkdir()
    (tmp_path / "hang.py").write_text(HANG)
    return tmp_path


def wait_marker(producers: Path, object_id: str, timeout: float = 30.0) -> int:
    """The pid of the worker that started the hanging production of ``object_id``."""
    marker = producers / "state" / f"{object_id}.pid"
    deadline = time.monotonic() + timeout
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline, f"nobody started producing {object_id}"
        time.sleep(0.05)
    return int(marker.read_text())


def test_a_hung_production_is_answered_with_a_timeout_error_and_the_worker_replaced(producers):
    router = ScriptedRouter()
    pool = Proc("worker", ["-m", "worker.cli", "--router", router.url, "--workers", "1",
                           "--producers", str(producers), "--production-timeout", "1.5"])
    try:
        worker = router.wait_hello()
        router.wait_registered(worker, {"hang-*", "gil-*", "quick"})
        started = time.monotonic()
        answer = router.produce(worker, "hang-1")
        took = time.monotonic() - started
        assert answer == {"action": "object-patch", "id": "hang-1",
                          "error": "TimeoutError: production of hang-1 took more than 1.5 s"}
        assert 1.4 <= took < 20, took
        router.wait_for(lambda i, f: i == worker and f == [wire.CLOSE, b"1"], what="CLOSE of the hung worker")
        replacement = router.wait_hello(exclude={worker})
        router.wait_registered(replacement, {"hang-*", "gil-*", "quick"})
        assert router.produce(replacement, "quick")["value"] == {"quick": True}
        deadline = time.monotonic() + 10
        while True:  # the hung process is gone, not lingering with its stuck thread
            try:
                os.kill(pid_of(worker), 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, "the hung worker process did not exit"
            time.sleep(0.05)
        # the pool replaced it at once (no crash backoff) and did not report it as a crash to the router
        output = pool.output()
        assert "production of hang-1 took more than 1.5 s: abandoning it" in output
        assert "gave up on a hung production: replacing it" in output
        assert "told the router" not in output
        assert router.count(worker, wire.HELLO) == 1
    finally:
        pool.stop()
        router.close()
        print(pool.output())


async def test_a_hung_production_goes_to_another_worker_and_watchers_hear_why(cluster, producers):
    cluster.start_workers(producers, 2, "--production-timeout", "2")
    async with RawClient(cluster.ws_url) as c:
        await c.send("object-consumer-register", pattern="hang-1", version_known=0)
        hung_pid = wait_marker(producers, "hang-1")
        error = await c.expect(lambda f: f.get("action") == "error", timeout=30)
        assert error["id"] == "hang-1" and error["request"] == "object-produce"
        assert error["message"] == "production failed: TimeoutError: production of hang-1 took more than 2 s"
        update = await c.expect(update_of("hang-1"), timeout=30)
        assert update["value"]["by"] != hung_pid
    assert cluster.router.alive() and cluster.front.alive()
    assert "gave up on a hung production" in cluster.logs()


async def test_a_worker_frozen_by_producer_code_holding_the_gil_is_killed_by_the_pool(cluster, producers):
    pool = cluster.start_workers(producers, 2, "--production-timeout", "1")
    async with RawClient(cluster.ws_url) as c:
        await c.send("object-consumer-register", pattern="gil-1", version_known=0)
        frozen_pid = wait_marker(producers, "gil-1")
        # The router gives the order to another worker once the frozen one is silent for PEER_TIMEOUT...
        update = await c.expect(update_of("gil-1"), timeout=30)
        assert update["value"]["by"] != frozen_pid
    # ... and the pool's watchdog kills the frozen process (it could not enforce its own timeout).
    deadline = time.monotonic() + 30
    while psutil.pid_exists(frozen_pid) and psutil.Process(frozen_pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, pool.output()
        time.sleep(0.1)
    deadline = time.monotonic() + 30
    while f"pid {frozen_pid}) gave no sign of life" not in pool.output():
        assert time.monotonic() < deadline, pool.output()
        time.sleep(0.1)


async def test_a_worker_killed_mid_production_has_its_order_redone_within_about_a_second(cluster, producers):
    cluster.start_workers(producers, 2)
    async with RawClient(cluster.ws_url) as c:
        # both workers up and registered: a produced object proves one is, wait for the second's HELLO in the log
        await c.send("object-consumer-register", pattern="quick", version_known=0)
        await c.expect(update_of("quick"), timeout=30)
        deadline = time.monotonic() + 30
        while cluster.router.output().count(" joined (worker.") < 2:
            assert time.monotonic() < deadline, cluster.logs()
            time.sleep(0.05)
        await c.send("object-consumer-register", pattern="hang-2", version_known=0)
        hung_pid = wait_marker(producers, "hang-2")
        killed_at = time.monotonic()
        os.kill(hung_pid, signal.SIGKILL)
        update = await c.expect(update_of("hang-2"), timeout=30)
        redone_in = time.monotonic() - killed_at
        print(f"order redone {redone_in:.2f} s after the SIGKILL")
        assert update["value"]["by"] != hung_pid
        # Without the pool's report the router waits PEER_TIMEOUT (3 s) of silence; with it, a fraction of a second.
        assert redone_in < wire.PEER_TIMEOUT - 0.5, redone_in
    assert "said hello again" in cluster.router.output()
    assert "told the router that worker." in cluster.logs()


async def test_with_a_cluster_secret_workers_join_and_a_killed_one_is_still_reported_at_once(producers):
    """CURVE links (sync-router --secret): the workers and the pool's report of a dead worker use the secret."""
    cluster = Cluster()
    secret = ("--secret", "correct horse battery staple")
    try:
        cluster.start_router(*secret)
        cluster.start_front(*secret)
        cluster.start_workers(producers, 2, *secret)
        async with RawClient(cluster.ws_url) as c:
            await c.send("object-consumer-register", pattern="quick", version_known=0)
            await c.expect(update_of("quick"), timeout=30)
            deadline = time.monotonic() + 30
            while cluster.router.output().count(" joined (worker.") < 2:
                assert time.monotonic() < deadline, cluster.logs()
                time.sleep(0.05)
            await c.send("object-consumer-register", pattern="hang-3", version_known=0)
            hung_pid = wait_marker(producers, "hang-3")
            killed_at = time.monotonic()
            os.kill(hung_pid, signal.SIGKILL)
            update = await c.expect(update_of("hang-3"), timeout=30)
            assert update["value"]["by"] != hung_pid
            assert time.monotonic() - killed_at < wire.PEER_TIMEOUT - 0.5
        assert "said hello again" in cluster.router.output()
    finally:
        cluster.stop()

