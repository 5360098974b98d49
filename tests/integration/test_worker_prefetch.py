"""``sync-worker --prefetch N``: a worker holding several orders at once, against the scripted router.

The scripted router (test_worker.py) gives orders the way the real router does once a worker announced
``"prefetch": N``: several (frame, sids) pairs in one SENDS message. The worker must answer each order,
in order, possibly several answers in one MSG, and keep every guarantee it has with one order: failed
answers held back without holding back the others, a production timeout per production, answers of a
lost session dropped.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common import codec, wire
from tests.cluster import Proc
from tests.integration.test_worker import GOOD, ScriptedRouter, pid_of, seapig_of

TIMEOUT = 30.0

SLOW = textwrap.dedent('''
    """Producers whose productions take a while, or forever, or fail."""
    import os, pathlib, time
    from worker import Producer

    STATE = pathlib.Path(__file__).with_name("state")

    class Nap(Producer):
        """Sleeps 0.8 s: three in a row take longer than a 1.5 s production timeout."""
        patterns = ["nap-*"]
        def produce(self, object_id):
            time.sleep(0.8)
            return {"napped": object_id}, 1

    class Hang(Producer):
        """Hangs (it records that it started)."""
        patterns = ["hang-*"]
        def produce(self, object_id):
            (STATE / f"{object_id}.started").write_text(str(os.getpid()))
            time.sleep(600)
            return {}, 1

    class Slow(Producer):
        patterns = ["slow"]
        def produce(self, object_id):
            (STATE / f"{object_id}.started").write_text(str(os.getpid()))
            time.sleep(4)
            return {"slept": True}, 1

    class Boom(Producer):
        patterns = ["boom"]
        def produce(self, object_id):
            raise ValueError("kaboom")
''')

PATTERNS = {"static", "item-*", "thing", "stall", "nap-*", "hang-*", "slow", "boom"}


@pytest.fixture
def router() -> Iterator[ScriptedRouter]:
    r = ScriptedRouter()
    yield r
    r.close()


@pytest.fixture
def producers(tmp_path: Path) -> Path:
    directory = tmp_path / "producers"
    directory.mkdir()
    (directory / "good.py").write_text(GOOD)
    (directory / "slow.py").write_text(SLOW)
    (directory / "state").mkdir()
    return directory


@pytest.fixture
def start_pool(request, router: ScriptedRouter) -> Iterator[Callable[..., Proc]]:
    procs: list[Proc] = []

    def start(directory: Path, *extra: str) -> Proc:
        proc = Proc("worker", ["-m", "worker.cli", "--router", router.url, "--workers", "1",
                               "--producers", str(directory), "-v", *extra])
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for proc in procs:
            print(f"===== {proc.name} ({' '.join(proc.args)})\n{proc.output()}")


def order(object_id: str) -> bytes:
    return codec.dumps({"action": "object-produce", "id": object_id, "version-inferred": None})


def give(router: ScriptedRouter, worker: bytes, ids: list[str], sid: bytes = b"1") -> int:
    """Send every order in ONE SENDS message, as the router flushes; returns a mark for wait_answers."""
    since = router.mark()
    parts: list[bytes] = []
    for object_id in ids:
        parts += [order(object_id), sid]
    router.send(worker, wire.SENDS, *parts)
    return since


def answers(router: ScriptedRouter, worker: bytes, since: int) -> list[tuple[int, dict]]:
    """(message number, object-patch) of every answer since ``since``, in the order they came."""
    with router._cond:
        messages = list(enumerate(router.messages[since:]))
    return [(n, m) for n, (i, f) in messages if i == worker for m in seapig_of(f) if m["action"] == "object-patch"]


def wait_answers(router: ScriptedRouter, worker: bytes, since: int, count: int) -> list[tuple[int, dict]]:
    deadline = time.monotonic() + TIMEOUT
    while len(got := answers(router, worker, since)) < count:
        assert time.monotonic() < deadline, f"{len(got)} answers of {count}: {got}"
        time.sleep(0.02)
    return got


def ready_worker(router: ScriptedRouter) -> tuple[bytes, dict]:
    """The worker's identity once its patterns are registered, and the options it announced."""
    worker = router.wait_hello()
    router.wait_registered(worker, PATTERNS)
    options = router.wait_seapig(worker, lambda m: m["action"] == "client-options-set")["options"]
    return worker, options


def test_with_prefetch_4_orders_given_at_once_are_answered_in_order(router, producers, start_pool):
    start_pool(producers, "--prefetch", "4")
    worker, options = ready_worker(router)
    assert options["prefetch"] == 4 and options["name"] == "worker"
    since = router.mark()
    # Pairs for other sessions of this peer (there are none) are skipped; packed lists naming ours are not.
    router.send(worker, wire.SENDS, order("item-1"), b"1", order("item-x"), b"7", order("item-2"), b"7,1",
                order("item-3"), b"1", order("static"), b"9,1,8")
    got = wait_answers(router, worker, since, 4)
    assert [m["id"] for _, m in got] == ["item-1", "item-2", "item-3", "static"]
    assert [m["value"] for _, m in got[:3]] == [{"id": f"item-{n}", "length": 6} for n in (1, 2, 3)]
    assert got[3][1]["version-new"] == 7
    messages = {n for n, _ in got}
    print(f"4 answers in {len(messages)} message(s)")
    assert 1 <= len(messages) <= 4
    # Again, with a message of one pair mixed in.
    since = router.mark()
    router.send(worker, wire.SENDS, order("thing"), b"1")
    give(router, worker, ["item-4", "stall"])
    got = wait_answers(router, worker, since, 3)
    assert [m["id"] for _, m in got] == ["thing", "item-4", "stall"]
    time.sleep(0.3)
    assert "item-x" not in [m["id"] for _, m in answers(router, worker, 0)]


def test_a_failing_production_does_not_hold_back_the_orders_behind_it(router, producers, start_pool):
    pool = start_pool(producers, "--prefetch", "4")
    worker, _ = ready_worker(router)
    since = give(router, worker, ["boom", "item-1", "item-2", "static"])
    got = wait_answers(router, worker, since, 4)
    # The error is held back (ERROR_DELAY) so a failing producer does not spin; the others are not.
    assert [m["id"] for _, m in got] == ["item-1", "item-2", "static", "boom"]
    assert got[3][1] == {"action": "object-patch", "id": "boom", "error": "ValueError: kaboom"}
    assert pool.alive() and router.count(worker, wire.HELLO) == 1


def test_each_production_is_timed_from_its_own_start_not_from_when_it_was_ordered(router, producers, start_pool):
    start_pool(producers, "--prefetch", "4", "--production-timeout", "1.5")
    worker, _ = ready_worker(router)
    # Three 0.8 s productions given at once: the third ends 2.4 s after the order, yet none overran.
    since = give(router, worker, ["nap-1", "nap-2", "nap-3"])
    got = wait_answers(router, worker, since, 3)
    assert [m.get("value") for _, m in got] == [{"napped": f"nap-{n}"} for n in (1, 2, 3)]
    assert router.count(worker, wire.CLOSE) == 0


def test_a_hung_production_among_prefetched_orders_hits_the_production_timeout(router, producers, start_pool):
    pool = start_pool(producers, "--prefetch", "4", "--production-timeout", "1.5")
    worker, _ = ready_worker(router)
    since = give(router, worker, ["item-1", "hang-1", "item-2"])
    got = wait_answers(router, worker, since, 2)
    assert [m["id"] for _, m in got] == ["item-1", "hang-1"]
    assert got[1][1] == {"action": "object-patch", "id": "hang-1",
                         "error": "TimeoutError: production of hang-1 took more than 1.5 s"}
    # The worker gives up on itself: its session closes (the router requeues item-2) and the pool replaces it.
    router.wait_for(lambda i, f: i == worker and f == [wire.CLOSE, b"1"], since, "CLOSE of the hung worker")
    replacement = router.wait_hello(exclude={worker})
    router.wait_registered(replacement, PATTERNS)
    assert "item-2" not in [m["id"] for _, m in answers(router, worker, since)]
    assert "production of hang-1 took more than 1.5 s: abandoning it" in pool.output()
    assert pid_of(replacement) != pid_of(worker)


def test_answers_ordered_by_a_lost_session_are_dropped(router, producers, start_pool):
    pool = start_pool(producers, "--prefetch", "4")
    worker, _ = ready_worker(router)
    since = give(router, worker, ["slow", "static"])
    state = producers / "state" / "slow.started"
    deadline = time.monotonic() + TIMEOUT
    while not state.exists():
        assert time.monotonic() < deadline, "slow never started"
        time.sleep(0.02)
    router.send(worker, wire.DROP, b"1", b"testing")  # while slow runs, static waits behind it
    router.wait_for(lambda i, f: i == worker and f == [wire.OPEN, b"2"], since, "OPEN 2")
    deadline = time.monotonic() + TIMEOUT
    while "dropping the answer for slow" not in pool.output():
        assert time.monotonic() < deadline, "the answer for slow was not dropped"
        time.sleep(0.05)
    # static was not started for the dead session; the new session works.
    assert router.produce(worker, "thing", sid=b"2")["value"] == {"id": "thing", "length": 5}
    assert [m["id"] for _, m in answers(router, worker, since)] == ["thing"]


def test_by_default_a_worker_takes_one_order_at_a_time(router, producers, start_pool):
    start_pool(producers)
    worker, options = ready_worker(router)
    assert options["prefetch"] == 1  # the router gives it one order at a time (seapig)
    # Even given more, it answers each before starting the next: one answer per message, in order.
    since = give(router, worker, ["item-1", "item-2", "item-3"])
    got = wait_answers(router, worker, since, 3)
    assert [m["id"] for _, m in got] == ["item-1", "item-2", "item-3"]
    assert len({n for n, _ in got}) == 3
