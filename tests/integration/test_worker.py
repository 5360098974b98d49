"""The real ``sync-worker`` pool against a scripted router.

The router side is a real ``zmq.ROUTER`` bound on a free port, run by the test: a thread answers
HELLO with WELCOME and PING with PONG (as the router does) and records every message; the test
sends the rest (object-produce orders, RESET) and waits for the worker's answers. The worker pool
runs as a real process tree (``python -m worker.cli``) loading producers from a temp directory.
"""

from __future__ import annotations

import os
import queue
import signal
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from common import codec, wire
from tests.cluster import REPO, Proc, free_port, repo_secret

TIMEOUT = 30.0

Message = tuple[bytes, list[bytes]]  # (peer identity, frames)


class ScriptedRouter:
    """A real ROUTER socket playing the router's part of the envelope, in a background thread."""

    def __init__(self) -> None:
        self.url = f"tcp://127.0.0.1:{free_port()}"
        self.epoch = b"epoch-1"
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._outbox: queue.SimpleQueue[list[bytes]] = queue.SimpleQueue()
        self._ctx = zmq.Context()
        self._socket = self._ctx.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        secret = repo_secret()  # the one the workers started by these tests use
        self._guard = wire.secure_router(self._ctx, self._socket, secret) if secret else None
        self._socket.bind(self.url)
        self._running = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self._running:
            if self._socket.poll(20):
                while True:
                    try:
                        identity, *frames = self._socket.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if frames[0] == wire.HELLO:
                        self._socket.send_multipart([identity, wire.WELCOME, self.epoch])
                    elif frames[0] == wire.PING:
                        self._socket.send_multipart([identity, wire.PONG, self.epoch])
                    with self._cond:
                        self.messages.append((identity, frames))
                        self._cond.notify_all()
            while not self._outbox.empty():
                self._socket.send_multipart(self._outbox.get())

    def close(self) -> None:
        self._running = False
        self._thread.join(5)
        self._socket.close()
        if self._guard is not None:
            self._guard.stop()
        self._ctx.term()

    def send(self, identity: bytes, *frames: bytes) -> None:
        self._outbox.put([identity, *frames])

    def mark(self) -> int:
        """A position in the message log: wait_for(since=mark) only looks at later messages."""
        with self._cond:
            return len(self.messages)

    def wait_for(self, predicate: Callable[[bytes, list[bytes]], bool], since: int = 0,
                 what: str = "a message", timeout: float = TIMEOUT) -> Message:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for identity, frames in self.messages[since:]:
                    if predicate(identity, frames):
                        return identity, frames
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {what} from the worker after {timeout} s")
                self._cond.wait(remaining)

    def wait_hello(self, since: int = 0, exclude: set[bytes] = frozenset()) -> bytes:
        identity, frames = self.wait_for(lambda i, f: f[0] == wire.HELLO and i not in exclude, since, "HELLO")
        return identity

    def wait_seapig(self, identity: bytes, predicate: Callable[[dict], bool], since: int = 0,
                    what: str = "seapig message") -> dict:
        """The first seapig message from ``identity`` (in any MSG pair) whose JSON matches ``predicate``."""
        def match(i: bytes, f: list[bytes]) -> bool:
            return i == identity and any(predicate(m) for m in seapig_of(f))
        _, frames = self.wait_for(match, since, what)
        return next(m for m in seapig_of(frames) if predicate(m))

    def seapig(self, identity: bytes, since: int = 0) -> list[dict]:
        """Every seapig message from ``identity``, in order (a MSG may carry several)."""
        with self._cond:
            return [m for i, f in self.messages[since:] if i == identity for m in seapig_of(f)]

    def registered(self, identity: bytes, since: int = 0) -> set[str]:
        """Patterns registered and not unregistered by ``identity`` since ``since``."""
        patterns: set[str] = set()
        for message in self.seapig(identity, since):
            if message["action"] == "object-producer-register":
                patterns.add(message["pattern"])
            elif message["action"] == "object-producer-unregister":
                patterns.discard(message["pattern"])
        return patterns

    def wait_registered(self, identity: bytes, patterns: set[str], since: int = 0) -> None:
        deadline = time.monotonic() + TIMEOUT
        while self.registered(identity, since) != patterns:
            if time.monotonic() > deadline:
                raise AssertionError(f"registered {self.registered(identity, since)}, expected {patterns}")
            time.sleep(0.05)

    def produce(self, identity: bytes, object_id: str, sid: bytes = b"1", inferred=None) -> dict:
        """Order one production on the worker's session and return its object-patch answer."""
        since = self.mark()
        frame = codec.dumps({"action": "object-produce", "id": object_id, "version-inferred": inferred})
        self.send(identity, wire.SENDS, frame, sid)
        return self.wait_seapig(identity, lambda m: m["action"] == "object-patch" and m["id"] == object_id,
                                since, f"object-patch for {object_id}")

    def count(self, identity: bytes, kind: bytes, since: int = 0) -> int:
        with self._cond:
            return sum(1 for i, f in self.messages[since:] if i == identity and f[0] == kind)


def seapig_of(frames: list[bytes]) -> list[dict]:
    """The JSON messages of a ``[MSG, sid, raw, sid, raw...]`` message (none for any other kind)."""
    if frames[0] != wire.MSG:
        return []
    return [codec.loads(raw) for _, raw in wire.pairs(frames)]


def pid_of(identity: bytes) -> int:
    """Worker identities are ``worker:<host>:<pid>`` (common.wire.peer_identity)."""
    return int(identity.rsplit(b":", 1)[1])


GOOD = '''
"""Producers that behave."""
from worker import Producer

class Static(Producer):
    patterns = ["static"]
    def produce(self, object_id):
        return {"hello": "world"}, 7

class Family(Producer):
    patterns = ["item-*", "thing"]
    def produce(self, object_id):
        return {"id": object_id, "length": len(object_id)}, [1, 2]

class Stall(Producer):
    patterns = ["stall"]
    def produce(self, object_id):
        return False, 3
'''

BAD = '''
"""Producers that fail in every way the worker must survive."""
import time
from worker import Producer

class Boom(Producer):
    patterns = ["boom"]
    def produce(self, object_id):
        raise ValueError("kaboom")

class NotJson(Producer):
    patterns = ["set"]
    def produce(self, object_id):
        return {"s": {1, 2}}, 1

class NotADict(Producer):
    patterns = ["list"]
    def produce(self, object_id):
        return [1, 2], 1

class NoVersion(Producer):
    patterns = ["noversion"]
    def produce(self, object_id):
        return {}, None

class Slow(Producer):
    patterns = ["slow"]
    def produce(self, object_id):
        time.sleep(4)
        return {"slept": True}, 1
'''

PATTERNS = {"static", "item-*", "thing", "stall", "boom", "set", "list", "noversion", "slow"}


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
    (directory / "bad.py").write_text(BAD)
    (directory / "broken.py").write_text("this is not python\n")
    (directory / "_helper.py").write_text("raise RuntimeError('helpers are never imported directly')\n")
    return directory


@pytest.fixture
def start_pool(request, router: ScriptedRouter) -> Iterator[Callable[..., Proc]]:
    """Start ``python -m worker.cli`` against the scripted router; logs are printed if the test fails."""
    procs: list[Proc] = []

    def start(directory: Path, workers: int = 1) -> Proc:
        proc = Proc("worker", ["-m", "worker.cli", "--router", router.url, "--workers", str(workers),
                               "--producers", str(directory), "-v"])
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for proc in procs:
            print(f"===== {proc.name} ({' '.join(proc.args)})\n{proc.output()}")


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_worker_says_hello_opens_a_session_and_registers_every_pattern(router, producers, start_pool):
    pool = start_pool(producers)
    worker = router.wait_hello()
    hello = router.wait_for(lambda i, f: i == worker and f[0] == wire.HELLO)[1]
    assert codec.loads(hello[1])["role"] == "worker"
    assert codec.loads(hello[1])["pid"] == pid_of(worker)
    router.wait_for(lambda i, f: i == worker and f == [wire.OPEN, b"1"], what="OPEN 1")
    router.wait_registered(worker, PATTERNS)
    first = router.seapig(worker)[0]
    assert first["action"] == "client-options-set" and first["options"]["name"] == "worker"
    stats = first["options"]["stats"]  # shown by the SeasyncServer::Workers introspection object
    assert stats["pid"] == pid_of(worker) and stats["rss"] > 0 and stats["cpu_percent"] >= 0
    assert all(sid == b"1" for i, f in router.messages if i == worker and f[0] == wire.MSG
               for sid, _ in wire.pairs(f))
    output = pool.output()
    assert "broken.py" in output and "Traceback" in output  # logged with its traceback, and skipped
    assert "helpers are never imported" not in output


def test_an_order_is_answered_with_the_value_and_version(router, producers, start_pool):
    start_pool(producers)
    worker = router.wait_hello()
    router.wait_registered(worker, PATTERNS)
    assert router.produce(worker, "static") == {
        "action": "object-patch", "id": "static", "version-new": 7, "value": {"hello": "world"}}
    assert router.produce(worker, "item-42") == {
        "action": "object-patch", "id": "item-42", "version-new": [1, 2], "value": {"id": "item-42", "length": 7}}
    assert router.produce(worker, "thing")["value"] == {"id": "thing", "length": 5}
    stall = router.produce(worker, "stall")
    assert stall["value"] is False and stall["version-new"] == 3


def test_a_raising_producer_gets_an_error_answer_and_the_worker_stays_up(router, producers, start_pool):
    pool = start_pool(producers)
    worker = router.wait_hello()
    router.wait_registered(worker, PATTERNS)
    started = time.monotonic()
    answer = router.produce(worker, "boom")
    assert time.monotonic() - started >= 0.8  # held back ~1 s, so a failing producer does not spin
    assert answer == {"action": "object-patch", "id": "boom", "error": "ValueError: kaboom"}
    assert "value" not in answer  # seapig: no value means "cancel, requeue"
    assert router.produce(worker, "static")["value"] == {"hello": "world"}
    assert pool.alive()
    assert router.count(worker, wire.HELLO) == 1
    assert "kaboom" in pool.output() and "Traceback" in pool.output()


def test_output_that_cannot_be_sent_gets_an_error_answer(router, producers, start_pool):
    start_pool(producers)
    worker = router.wait_hello()
    router.wait_registered(worker, PATTERNS)
    answer = router.produce(worker, "set")
    assert "value" not in answer and "not JSON serializable" in answer["error"]
    answer = router.produce(worker, "list")
    assert "value" not in answer and "data must be a dict" in answer["error"]
    answer = router.produce(worker, "noversion")
    assert "value" not in answer and "version" in answer["error"]
    assert router.produce(worker, "static")["version-new"] == 7


def test_heartbeats_continue_during_a_long_production(router, producers, start_pool):
    start_pool(producers)
    worker = router.wait_hello()
    router.wait_registered(worker, PATTERNS)
    since = router.mark()
    answer = router.produce(worker, "slow")  # 4 s: longer than PEER_TIMEOUT
    assert answer["value"] == {"slept": True}
    assert router.count(worker, wire.PING, since) >= 3
    assert router.count(worker, wire.HELLO) == 1  # no reconnect: the session stayed up


def test_files_added_or_removed_while_running_are_registered_or_unregistered(router, producers, start_pool):
    start_pool(producers)
    worker = router.wait_hello()
    router.wait_registered(worker, PATTERNS)
    write_atomically(producers / "late.py", textwrap.dedent('''
        from worker import Producer
        class Late(Producer):
            patterns = ["late-*"]
            def produce(self, object_id):
                return {"late": object_id}, 1
    '''))
    router.wait_registered(worker, PATTERNS | {"late-*"})
    assert router.produce(worker, "late-1")["value"] == {"late": "late-1"}
    (producers / "bad.py").unlink()
    router.wait_registered(worker, {"static", "item-*", "thing", "stall", "late-*"})
    # An edit is picked up too: the same file now produces another version.
    write_atomically(producers / "good.py", GOOD.replace("7", "8"))
    deadline = time.monotonic() + TIMEOUT
    while router.produce(worker, "static")["version-new"] != 8:
        assert time.monotonic() < deadline, "good.py was not reloaded"
        time.sleep(0.2)


def test_a_router_restart_makes_the_worker_say_hello_and_register_again(router, producers, start_pool):
    start_pool(producers)
    worker = router.wait_hello()
    router.wait_registered(worker, PATTERNS)
    since = router.mark()
    router.send(worker, wire.RESET)
    router.wait_hello(since)
    router.wait_for(lambda i, f: i == worker and f[0] == wire.OPEN, since, "OPEN after RESET")
    router.wait_registered(worker, PATTERNS, since)
    # A new epoch (seen in PONG) means another router incarnation: again.
    since = router.mark()
    router.epoch = b"epoch-2"
    router.wait_hello(since)
    router.wait_registered(worker, PATTERNS, since)
    assert router.produce(worker, "static")["version-new"] == 7


def test_a_dropped_session_is_reopened_under_a_new_sid(router, producers, start_pool):
    start_pool(producers)
    worker = router.wait_hello()
    router.wait_registered(worker, PATTERNS)
    since = router.mark()
    router.send(worker, wire.DROP, b"1", b"testing")
    router.wait_for(lambda i, f: i == worker and f == [wire.OPEN, b"2"], since, "OPEN 2")
    router.wait_registered(worker, PATTERNS, since)
    assert router.produce(worker, "static", sid=b"2")["version-new"] == 7
    assert router.count(worker, wire.HELLO) == 1


def test_a_pattern_claimed_twice_is_logged_and_the_first_file_keeps_it(router, producers, start_pool):
    (producers / "zz_duplicate.py").write_text(textwrap.dedent('''
        from worker import Producer
        class Duplicate(Producer):
            patterns = ["static"]
            def produce(self, object_id):
                return {"from": "duplicate"}, 1
    '''))
    pool = start_pool(producers)
    worker = router.wait_hello()
    router.wait_registered(worker, PATTERNS)
    assert router.produce(worker, "static")["value"] == {"hello": "world"}
    assert "'static' is claimed by both Static (good.py) and Duplicate (zz_duplicate.py)" in pool.output()


def test_two_workers_and_a_killed_one_is_replaced(router, producers, start_pool):
    pool = start_pool(producers, workers=2)
    first = router.wait_hello()
    second = router.wait_hello(exclude={first})
    assert pid_of(first) != pid_of(second)
    since = router.mark()
    os.kill(pid_of(first), signal.SIGKILL)
    replacement = router.wait_hello(since, exclude={first, second})
    router.wait_registered(replacement, PATTERNS)
    assert router.produce(replacement, "static")["value"] == {"hello": "world"}
    assert pool.alive()
    assert "died (killed by SIGKILL)" in pool.output()


def test_sigterm_closes_the_sessions_and_exits_0(router, producers, start_pool):
    pool = start_pool(producers, workers=2)
    first = router.wait_hello()
    second = router.wait_hello(exclude={first})
    router.wait_registered(first, PATTERNS)
    router.wait_registered(second, PATTERNS)
    assert pool.stop(timeout=15) == 0
    for worker in (first, second):
        router.wait_for(lambda i, f: i == worker and f == [wire.CLOSE, b"1"], what="CLOSE")  # noqa: B023
    for worker in (first, second):
        with pytest.raises(ProcessLookupError):
            os.kill(pid_of(worker), 0)


def test_the_example_producers(router, start_pool):
    start_pool(REPO / "producers")
    worker = router.wait_hello()
    router.wait_registered(worker, {"hello", "counter-*", "hello-shout", "machine", "todos/*"})
    hello = router.produce(worker, "hello")
    assert hello["value"] == {"message": "Hello, world!"}
    assert router.produce(worker, "hello-shout") == {
        "action": "object-patch", "id": "hello-shout", "version-new": {"hello": hello["version-new"]},
        "value": {"message": "HELLO, WORLD!"}}
    assert router.produce(worker, "counter-4")["value"] == {"n": 4, "squares": [0, 1, 4, 9]}
    assert router.produce(worker, "counter-x")["value"] is False  # a stall
    machine = router.produce(worker, "machine")
    assert abs(machine["version-new"]["Seconds:1"] - time.time()) < 60  # a time dependency
    assert set(machine["value"]) == {"cpu_percent", "cpu_count", "memory", "load"}
    assert 0 < machine["value"]["memory"]["available"] <= machine["value"]["memory"]["total"]


def test_workers_stop_by_themselves_when_the_pool_is_killed(router, producers, start_pool):
    pool = start_pool(producers)
    worker = router.wait_hello()
    router.wait_registered(worker, PATTERNS)
    pool.kill(signal.SIGKILL)  # the pool only: its worker is orphaned
    router.wait_for(lambda i, f: i == worker and f == [wire.CLOSE, b"1"], what="CLOSE from the orphan")
