"""Property-based fuzzing of a real front: random and mutated frames must change nothing for anyone else.

A real router, front and worker pool run (the ``cluster`` fixture plus ``sync-worker``). Each hypothesis
example opens a websocket to the front and throws a batch of frames at it: random bytes (binary frames),
random text, random JSON, valid seapig messages with one field mutated (wrong types, huge numbers, deep
nesting, long strings, unknown actions, patterns full of ``*``, versions of every type), coherent little
scenarios (subscribe then upload then patch with patches that do not apply) and oversized frames. Then:

- a probe frame on the same connection must be answered (the router got through the batch: no hang);
- router, front and pool are still alive;
- a well-behaved pair of clients on the side still works: a keep-current master bumps ``canary`` and a
  dependency ``canary-dep`` (re-producing ``canary-sq`` in a worker), and a watcher sees every version,
  in order, with no resync.

Bounded and seeded: ``SEASYNC_FUZZ_EXAMPLES`` (default 120 examples, about a minute) and
``SEASYNC_FUZZ_SEED`` (default: hypothesis' derandomized mode, the same examples on every run; the seed
is printed). ``SEASYNC_FUZZ_SHRINK=1`` lets hypothesis shrink a failure (slow against real processes).
The figures (frames fuzzed, bytes, answers, connections closed by the front) are printed at the end.

``FOUND`` keeps every frame sequence that broke something, each replayed by its own test (a bug still
open is a strict xfail, listed in ``OPEN``; ``SEASYNC_FUZZ_KNOWN_BUGS=0`` then leaves its family out of the
random run so that the run keeps guarding everything else meanwhile).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import textwrap
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from common.client import Client
from tests.integration.wsclient import ResyncLog

EXAMPLES = int(os.environ.get("SEASYNC_FUZZ_EXAMPLES", "200"))
KNOWN_BUGS = os.environ.get("SEASYNC_FUZZ_KNOWN_BUGS", "1") == "1"
"""Generate the frame families of every bug in FOUND. Set SEASYNC_FUZZ_KNOWN_BUGS=0 to leave them out while
one is open again (pinned by its xfail test), so that the random run keeps guarding everything else."""
SEED = os.environ.get("SEASYNC_FUZZ_SEED")
MAX_FRAME = 1 << 20  # sync-front's default --max-frame
PROBE_TIMEOUT = 20.0  # the router must get through any batch within this (generous on a loaded 2-core box)
CANARY_TIMEOUT = 30.0
MAX_ERROR_FRAME = 8192  # an error frame echoes a few hundred characters of each field, never the input whole

settings.register_profile(
    "seasync-fuzz",
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=SEED is None,
    database=None,
    phases=[Phase.explicit, Phase.generate] + ([Phase.shrink] if os.environ.get("SEASYNC_FUZZ_SHRINK") else []),
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

PRODUCERS = textwrap.dedent('''
    import json, pathlib
    from worker import Producer

    STATE = pathlib.Path(__file__).with_name("state")

    class CanarySquare(Producer):
        """Depends on canary-dep; its data is what state/canary.json says about it."""
        patterns = ["canary-sq"]
        def produce(self, object_id):
            k = json.loads((STATE / "canary.json").read_text())["k"]
            return {"k": k, "sq": k * k}, {"canary-dep": k}

    class Small(Producer):
        patterns = ["fz-w-*"]
        def produce(self, object_id):
            return {"id": object_id, "n": len(object_id)}, 1

    class DependsOnFuzz(Producer):
        """Declares a dependency the fuzzer may upload to (or patch, or destroy)."""
        patterns = ["fz-dep-user-*"]
        def produce(self, object_id):
            return {"id": object_id}, {"fz-dep": 1}

    class Failing(Producer):
        patterns = ["fz-fail-*"]
        def produce(self, object_id):
            raise RuntimeError("fuzz: this producer always fails")
''')


# ---- strategies --------------------------------------------------------------------------------------------

SPLICE = "\x00splice\x00"
"""Placeholder for raw JSON text that cannot be built as a Python value (huge numbers, deep nesting)."""


@dataclass(frozen=True)
class Raw:
    """A field value given as raw JSON text, spliced in after encoding."""

    text: str

    def __repr__(self) -> str:
        return f"Raw({self.text[:60]!r}{'...' if len(self.text) > 60 else ''} len={len(self.text)})"


class Frame:
    """One websocket frame: text (str) or binary (bytes). A plain class: its repr stays short in reports."""

    __slots__ = ("payload", "note")

    def __init__(self, payload: str | bytes, note: str = "") -> None:
        self.payload = payload
        self.note = note

    def __repr__(self) -> str:
        shown = self.payload if len(self.payload) <= 300 else self.payload[:300]
        more = f"... ({len(self.payload)} long)" if len(self.payload) > 300 else ""
        return f"Frame({self.note}: {shown!r}{more})"


def encode(message: dict) -> str:
    """JSON text of ``message``, with every ``Raw`` value spliced in verbatim."""
    raws: list[str] = []

    def swap(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return SPLICE
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    text = json.dumps(swap(message), ensure_ascii=False)
    quoted = json.dumps(SPLICE)
    for raw in raws:
        text = text.replace(quoted, raw, 1)
    return text


def nested(depth: int, kind: str = "[") -> str:
    """Raw JSON nested ``depth`` levels: ``[[[...]]]`` or ``{"a":{"a":...}}``."""
    if kind == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "{}" + "}" * depth


# Ids the cluster knows about (worker patterns, introspection, a failing producer) plus the fuzzer's own.
KNOWN_IDS = ["fz-1", "fz-2", "fz-w-1", "fz-w-2", "fz-dep", "fz-dep-user-1", "fz-fail-1",
             "SeapigServer::Objects", "SeapigServer::Connections", "SeapigServer::Consumers",
             "SeapigServer::Producers", "SeapigServer::Statistics", "SeasyncServer::Workers"]

ids = st.one_of(
    st.sampled_from(KNOWN_IDS),
    st.text(min_size=1, max_size=40).map(lambda s: "fz-" + s.replace("*", "")),
    st.builds(lambda c, n: c * n, st.sampled_from("ab"), st.sampled_from([1, 50, 300, 1000, 1024, 1025])),
).filter(lambda s: not s.startswith("canary"))

# Found (fixed in ced8285): more than two '*' against a long id backtracked for hours.
MAX_STARS = 1000 if KNOWN_BUGS else 2
many_stars = st.builds(lambda c, k, tail: ("*" + c) * k + "*" + tail,
                       st.sampled_from("ab"), st.integers(1, 60), st.sampled_from(["", "b", "c", "x*"]))
patterns = st.one_of(
    ids,
    many_stars,
    st.text(alphabet="*ab-", min_size=1, max_size=200),
    st.sampled_from(["*", "**", "fz-*", "fz-w-*", "SeapigServer::*", "fz-dep*"]),
).filter(lambda s: not s.startswith("canary") and s.count("*") <= MAX_STARS)

huge_numbers = st.sampled_from([
    "1" + "0" * 30, "-" + "9" * 25, "1e308", "1e400", "-1e400", "1" * 5000, "0.0000000000000000001",
    "18446744073709551616", "-9223372036854775809", "9223372036854775807", "1E-400", "-0", "0e0",
]).map(Raw)
# Found (fixed in ced8285): 255 to 1024 levels decoded but could not be encoded again.
DEPTHS = [50, 200, 253, 254, 255, 256, 300, 600, 1023, 1024, 1025, 4000] if KNOWN_BUGS else [50, 200, 240, 1025, 4000]
deep_values = st.builds(nested, st.sampled_from(DEPTHS), st.sampled_from(["[", "{"])).map(Raw)
long_strings = st.sampled_from([1000, 70_000, 400_000]).map(lambda n: "x" * n)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30))
json_values = st.recursive(json_scalars,
                           lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=10), kids, max_size=5),
                           max_leaves=25)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=6)

versions = st.one_of(
    st.none(), st.just(0), st.booleans(), st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10),
    st.lists(st.integers(-5, 2**40), max_size=4), st.lists(json_values, max_size=3),
    st.dictionaries(ids, st.integers(0, 10), max_size=3),
    st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    huge_numbers, deep_values,
)

pointers = st.one_of(
    st.sampled_from(["", "/", "/a", "/a/b", "/0", "/-", "/a/-", "/a/0", "/~", "/~2", "/a~1b", "/99999999999999999999",
                     "/a/" + "0/" * 50 + "0", "a"]),
    st.lists(st.sampled_from(["a", "b", "0", "1", "-", "~0", "~1", ""]), max_size=6).map(lambda ts: "".join("/" + t for t in ts)),
)
patch_ops = st.one_of(
    st.fixed_dictionaries({"op": st.sampled_from(["add", "replace", "test"]), "path": pointers, "value": json_values}),
    st.fixed_dictionaries({"op": st.just("remove"), "path": pointers}),
    st.fixed_dictionaries({"op": st.sampled_from(["move", "copy"]), "from": pointers, "path": pointers}),
    st.fixed_dictionaries({"op": st.text(max_size=8), "path": json_values}),
    json_values,
)
patches = st.lists(patch_ops, max_size=8)
copy_bombs = st.integers(18, 40).map(lambda k: [{"op": "copy", "from": "", "path": f"/c{i}"} for i in range(k)])


def valid_messages(object_id: st.SearchStrategy = ids) -> st.SearchStrategy[dict]:
    """Well-formed seapig 0.2 client messages."""
    return st.one_of(
        st.fixed_dictionaries({"action": st.just("client-options-set"),
                               "options": st.fixed_dictionaries({"name": st.text(max_size=20)}, optional={
                                   "heartbeat": st.booleans(), "extra": json_values})}),
        st.fixed_dictionaries({"action": st.sampled_from(["object-consumer-register", "object-producer-register"]),
                               "pattern": patterns, "version-known": versions}),
        st.fixed_dictionaries({"action": st.sampled_from(["object-consumer-unregister", "object-producer-unregister"]),
                               "pattern": patterns}),
        st.fixed_dictionaries({"action": st.just("object-patch"), "id": object_id, "version-new": versions},
                              optional={"value": st.one_of(json_objects, st.booleans())}),
        st.fixed_dictionaries({"action": st.just("object-patch"), "id": object_id, "version-new": versions,
                               "version-old": versions, "patch": patches}),
        st.fixed_dictionaries({"action": st.just("object-patch"), "id": object_id, "error": st.text(max_size=50)}),
    )


odd_values = st.one_of(json_values, huge_numbers, deep_values, long_strings, versions, patterns, patches)


@st.composite
def mutated_messages(draw: st.DrawFn) -> Frame:
    """A valid message with one field changed, removed, or added."""
    message = dict(draw(valid_messages()))
    how = draw(st.sampled_from(["replace", "delete", "add", "action"]))
    key = draw(st.sampled_from(sorted(message)))
    if how == "replace":
        message[key] = draw(odd_values)
    elif how == "delete":
        del message[key]
    elif how == "add":
        message[draw(st.sampled_from(["value", "patch", "version-old", "error", "id", "pattern", "zzz"]))] = draw(odd_values)
    else:
        message["action"] = draw(st.one_of(st.text(max_size=30), json_values, st.sampled_from(
            ["object-update", "object-produce", "object-destroy", "heartbeat", "error", "OBJECT-PATCH"])))
    return Frame(encode(message), f"mutated ({how} {key})")


@st.composite
def scenarios(draw: st.DrawFn) -> list[Frame]:
    """Coherent little sequences that reach deep into the store: the object exists, then gets abuse."""
    object_id = draw(ids)
    register = {"action": "object-consumer-register", "pattern": object_id, "version-known": 0}
    base = draw(json_objects)
    kind = draw(st.sampled_from(["patch", "deep", "bomb", "stars", "options", "producer", "string-bomb", "deps"]))
    frames = [register, {"action": "object-patch", "id": object_id, "version-new": 1, "value": base}]
    if kind == "patch":
        frames.append({"action": "object-patch", "id": object_id, "version-old": draw(st.one_of(st.just(1), versions)),
                       "version-new": draw(st.one_of(st.just(2), versions)), "patch": draw(patches)})
    elif kind == "deep":
        frames.append({"action": "object-patch", "id": object_id, "version-new": 2,
                       "value": {"deep": draw(deep_values)}})
    elif kind == "bomb":
        frames.append({"action": "object-patch", "id": object_id, "version-old": 1, "version-new": 2,
                       "patch": draw(copy_bombs)})
    elif kind == "string-bomb":  # issue 10 item 1: few members, many bytes (the member budget did not see it)
        frames[1] = {"action": "object-patch", "id": object_id, "version-new": 1,
                     "value": {"s": "x" * draw(st.sampled_from([50_000, 200_000]))}}
        frames.append({"action": "object-patch", "id": object_id, "version-old": 1, "version-new": 2,
                       "patch": [{"op": "copy", "from": "/s", "path": f"/c{i}"}
                                 for i in range(draw(st.sampled_from([100, 1000])))]})
    elif kind == "deps":  # issue 10 item 4: one version naming thousands of dependencies the workers produce
        frames.append({"action": "object-patch", "id": object_id, "version-new": {
            f"fz-w-dep-{i}": 1 for i in range(draw(st.sampled_from([1001, 5000])))}, "value": {}})
    elif kind == "stars":
        long_id = draw(st.sampled_from("ab")) * draw(st.sampled_from([300, 1000]))
        frames = [{"action": "object-consumer-register", "pattern": long_id, "version-known": 0},
                  {"action": "object-patch", "id": long_id, "version-new": 1, "value": {}},
                  {"action": "object-consumer-register", "pattern": draw(many_stars.filter(
                      lambda p: p.count("*") <= MAX_STARS)), "version-known": 0}]
    elif kind == "options":
        frames = [{"action": "client-options-set", "options": {"name": "fuzz", "x": draw(deep_values)}},
                  {"action": "object-consumer-register", "pattern": "SeapigServer::Connections", "version-known": 0}]
    else:
        frames = [{"action": "object-producer-register", "pattern": object_id, "version-known": draw(versions)},
                  register, {"action": "object-patch", "id": object_id, "version-new": draw(versions),
                             "value": draw(st.one_of(json_objects, st.booleans()))},
                  {"action": "object-producer-unregister", "pattern": draw(patterns)}]
    return [Frame(encode(f), f"scenario {kind}") for f in frames]


frames_one = st.one_of(
    st.binary(max_size=200).map(lambda b: Frame(b, "random bytes")),
    st.text(max_size=200).map(lambda t: Frame(t, "random text")),
    json_values.map(lambda v: Frame(encode(v), "random JSON")),
    valid_messages().map(lambda m: Frame(encode(m), "valid")),
    mutated_messages(),
    st.one_of(  # one branch for both: megabyte frames are slow to send, keep them a small share
        st.builds(lambda extra: Frame('{"action":"object-patch","id":"fz-big","version-new":1,"value":{"s":"'
                                      + "x" * (MAX_FRAME + extra) + '"}}', "oversized"), st.sampled_from([1, 1000])),
        st.builds(lambda n: Frame(encode({"action": "client-options-set", "options": {"s": "y" * n}}), "large"),
                  st.sampled_from([MAX_FRAME - 100, 500_000]))),
    st.binary(min_size=1, max_size=50).map(lambda b: Frame(b"\xff\xfe" + b, "invalid UTF-8 text")),
)
batches = st.lists(st.one_of(frames_one.map(lambda f: [f]), scenarios()), min_size=1, max_size=15).map(
    lambda groups: [f for g in groups for f in g])


# ---- the side clients and the loop they run on --------------------------------------------------------------

class LoopThread:
    """An asyncio loop in a thread: hypothesis drives the test synchronously, the clients live here."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Canary:
    """A master bumping ``canary`` and ``canary-dep`` (re-producing ``canary-sq``) and a watcher of both."""

    url: str
    state: Path
    k: int = 1
    seen: dict[str, list] = field(default_factory=lambda: {"canary": [], "canary-sq": []})

    async def start(self) -> None:
        self.write_state()
        self.writer = Client(self.url, name="canary-master")
        self.watcher = Client(self.url, name="canary-watch")
        await self.writer.connect()
        await self.watcher.connect()
        self.master = self.writer.master("canary", value={"k": self.k}, version=self.k)
        self.dep = self.writer.master("canary-dep", value={}, version=self.k)
        for object_id in self.seen:
            consumer = self.watcher.consume(object_id)
            consumer.on_change(lambda change: self.seen[change.id].append(change.version))
        await self.wait()

    def write_state(self) -> None:
        tmp = self.state / "canary.json.tmp"
        tmp.write_text(json.dumps({"k": self.k}))
        tmp.replace(self.state / "canary.json")

    async def bump(self) -> None:
        self.k += 1
        self.write_state()
        self.master.value["k"] = self.k
        await self.master.bump(self.k)
        await self.dep.bump(self.k)
        await self.wait()

    async def wait(self) -> None:
        k = self.k
        await self.watcher.consume("canary").wait(lambda v: v == {"k": k}, timeout=CANARY_TIMEOUT)
        await self.watcher.consume("canary-sq").wait(lambda v: v == {"k": k, "sq": k * k}, timeout=CANARY_TIMEOUT)

    def check_history(self) -> None:
        """Every version seen exactly once, in order."""
        assert self.seen["canary"] == list(range(1, self.k + 1)), self.seen["canary"]
        assert self.seen["canary-sq"] == [{"canary-dep": k} for k in range(1, self.k + 1)], self.seen["canary-sq"]

    async def close(self) -> None:
        await self.writer.close()
        await self.watcher.close()


@dataclass
class Figures:
    examples: int = 0
    frames: int = 0
    bytes: int = 0
    answers: int = 0
    errors: int = 0
    codes: set = field(default_factory=set)  # the stable codes of the error frames received
    largest_error: int = 0  # bytes of the largest error frame received: echoed fields are cut (issue 10 item 11)
    closed_by_front: int = 0
    started: float = field(default_factory=time.monotonic)


async def throw(url: str, frames: list[Frame], probe: str, figures: Figures, probe_timeout: float) -> None:
    """Send ``frames`` on a fresh websocket (reconnecting if the front closes it), then wait for the probe's answer."""
    answered = asyncio.Event()

    async def read(ws) -> None:
        try:
            async for raw in ws:
                figures.answers += 1
                message = json.loads(raw)
                if message.get("action") == "error":
                    figures.errors += 1
                    figures.largest_error = max(figures.largest_error, len(raw))
                    figures.codes.add(message.get("code"))
                    if message.get("request") == probe:
                        answered.set()
        except ConnectionClosed:
            pass

    async def open_ws():
        ws = await connect(url, max_size=None, compression=None, open_timeout=10, ping_interval=None)
        return ws, asyncio.create_task(read(ws))

    ws, reader = await open_ws()
    try:
        for frame in frames + [Frame(json.dumps({"action": probe}), "probe")]:
            for _attempt in (1, 2):
                try:
                    if isinstance(frame.payload, bytes) and frame.note == "invalid UTF-8 text":
                        await ws.send(frame.payload, text=True)
                    else:
                        await ws.send(frame.payload)
                    break
                except ConnectionClosed:
                    figures.closed_by_front += 1
                    await reader
                    ws, reader = await open_ws()
            if frame.note != "probe":
                figures.frames += 1
                figures.bytes += len(frame.payload)
        # The front may close a connection after the probe went out (an oversized frame read late): send it again.
        deadline = time.monotonic() + probe_timeout
        while not answered.is_set():
            try:
                await asyncio.wait_for(answered.wait(), timeout=min(1.0, max(0.01, deadline - time.monotonic())))
            except TimeoutError:
                pass
            if answered.is_set():
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer to the probe within {probe_timeout} s: the router or the front hangs")
            if reader.done():
                figures.closed_by_front += 1
                ws, reader = await open_ws()
                await ws.send(json.dumps({"action": probe}))
    finally:
        await ws.close()
        await asyncio.gather(reader, return_exceptions=True)


class Harness:
    """The cluster under fuzz, the side clients, and the figures."""

    def __init__(self, cluster: Any, directory: Path) -> None:
        (directory / "state").mkdir()
        (directory / "fuzz_producers.py").write_text(PRODUCERS)
        self.cluster = cluster
        self.pool = cluster.start_workers(directory, 2)
        self.runner = LoopThread()
        self.resyncs = ResyncLog()
        logging.getLogger("seasync.client").addHandler(self.resyncs)
        self.canary = Canary(cluster.ws_url, directory / "state")
        self.figures = Figures()
        self.hung = False
        self.procs = {"router": cluster.router, "front": cluster.front, "worker pool": self.pool}
        self.runner.run(self.canary.start(), timeout=60)

    def throw(self, frames: list[Frame], probe_timeout: float = PROBE_TIMEOUT) -> None:
        """One batch, then the checks: probe answered, every process alive, the canary moves on."""
        self.figures.examples += 1
        probe = f"fuzz-probe-{self.figures.examples}"
        try:
            self.runner.run(throw(self.cluster.ws_url, frames, probe, self.figures, probe_timeout),
                            timeout=probe_timeout + 60)
        except AssertionError:
            self.hung = True
            raise
        for name, proc in self.procs.items():
            assert proc.alive(), f"the {name} died"
        assert self.figures.largest_error <= MAX_ERROR_FRAME, f"an error frame of {self.figures.largest_error} bytes"
        self.runner.run(self.canary.bump(), timeout=CANARY_TIMEOUT * 2 + 10)

    def final_checks(self) -> None:
        self.canary.check_history()
        assert self.resyncs.lines == [], self.resyncs.lines
        internal = [line for line in self.cluster.router.output().splitlines() + self.cluster.front.output().splitlines()
                    if "internal error" in line or "Traceback" in line or "failed to handle" in line]
        assert internal == [], "\n".join(internal[:20])

    def summary(self) -> str:
        f = self.figures
        return (f"{f.examples} examples, {f.frames} frames fuzzed ({f.bytes} bytes), {f.answers} frames received "
                f"({f.errors} errors), {f.closed_by_front} connections closed by the front, "
                f"{self.canary.k - 1} canary rounds, {time.monotonic() - f.started:.1f} s")

    def close(self) -> None:
        if self.hung:  # a router stuck in C code cannot handle SIGTERM: do not make the teardown wait for it
            self.cluster.router.kill()
        logging.getLogger("seasync.client").removeHandler(self.resyncs)
        try:
            self.runner.run(self.canary.close(), timeout=20)
        except Exception:
            pass
        self.runner.stop()


@pytest.fixture
def harness(cluster, tmp_path):
    h = Harness(cluster, tmp_path)
    try:
        yield h
    finally:
        h.close()


@pytest.mark.timeout(900)
@pytest.mark.filterwarnings("ignore:Generating overly large repr")  # the strategies' own repr: harmless
def test_random_and_mutated_frames_change_nothing_for_well_behaved_clients(harness):
    @settings(settings.get_profile("seasync-fuzz"))
    @given(batches)
    def fuzz(frames: list[Frame]) -> None:
        harness.throw(frames)

    if SEED is not None:
        fuzz = seed(int(SEED))(fuzz)
    print(f"\nfuzz: seed {SEED if SEED is not None else 'derandomized'}, {EXAMPLES} examples")
    try:
        fuzz()
    finally:
        print(f"fuzz figures: {harness.summary()}")
    harness.final_checks()


def _frames(*messages: dict) -> list[Frame]:
    return [Frame(encode(m), "known") for m in messages]


def _register(pattern: str) -> dict:
    return {"action": "object-consumer-register", "pattern": pattern, "version-known": 0}


FOUND = {
    # common/patterns.py: '*' compiles to '.*' and fullmatch backtracks polynomially (n^k): the router hangs.
    "many-stars pattern vs a long id": _frames(
        _register("a" * 300), {"action": "object-patch", "id": "a" * 300, "version-new": 1, "value": {}},
        _register("*a" * 8 + "*b")),
    # common/diff.py apply_patch: each 'copy' of the root doubled the document (fixed: MAX_COPIED_VALUES).
    "copy bomb patch": _frames(
        _register("fz-bomb"), {"action": "object-patch", "id": "fz-bomb", "version-new": 1, "value": {"x": list(range(100))}},
        {"action": "object-patch", "id": "fz-bomb", "version-old": 1, "version-new": 2,
         "patch": [{"op": "copy", "from": "", "path": f"/c{i}"} for i in range(30)]}),
    # orjson decodes 1024 levels but encodes only 254: the store keeps a value it cannot send.
    "value nested 300 deep": _frames(
        _register("fz-deep"),
        {"action": "object-patch", "id": "fz-deep", "version-new": 1, "value": {"d": Raw(nested(300))}}),
    # router/store.py: dependency keys were not checked as ids: the router spawned "fz-w-*" and ordered it
    # from the workers, whose answers were refused at parse time, holding every producer slot.
    "dependency keys that are patterns": _frames(
        _register("fz-x"),
        {"action": "object-patch", "id": "fz-x", "version-new": {"fz-w-*": 1, "fz-*": 1, "a" * 1100: 1}, "value": {}}),
    # router/store.py: a version announced beyond what the producer returns was ordered again at once, forever.
    "version announced beyond the producer": _frames(
        _register("fz-w-1"), {"action": "object-patch", "id": "fz-w-1", "version-new": 1e18, "value": True}),
    # issue 10 item 1: a 500 kB string copied 1,000 times by one 47 kB patch took the router to 1.5 GB.
    "string copy bomb": _frames(
        _register("fz-sbomb"), {"action": "object-patch", "id": "fz-sbomb", "version-new": 1, "value": {"s": "x" * 500_000}},
        {"action": "object-patch", "id": "fz-sbomb", "version-old": 1, "version-new": 2,
         "patch": [{"op": "copy", "from": "/s", "path": f"/c{i}"} for i in range(1000)]}),
    # issue 10 item 4: one frame naming 20,000 dependencies (produced by the workers) made 20,002 objects.
    "version naming 20,000 dependencies": _frames(
        _register("fz-many-deps"), {"action": "object-patch", "id": "fz-many-deps", "value": {},
                                    "version-new": {f"fz-w-dep-{i}": 1 for i in range(20_000)}}),
    # issue 10 item 4: a 0.9 MB version-known, held by the router at 7.8 times its size.
    "version-known of 0.9 MB": _frames(
        {"action": "object-consumer-register", "pattern": "fz-known", "version-known": list(range(130_000))}),
    # issue 10 item 11: a 1 MB id came back whole in the error frame.
    "1 MB id echoed": _frames({"action": "object-patch", "id": "i" * 1_000_000 + "*", "version-new": 1, "value": {}}),
    # the same through client options, encoded by the SeapigServer::Connections introspection object.
    "options nested 300 deep, then introspection": _frames(
        {"action": "client-options-set", "options": {"name": "fuzz", "x": Raw(nested(300))}},
        _register("SeapigServer::Connections")),
}


REFUSED_WITH = {
    "string copy bomb": "object-too-large",
    "version naming 20,000 dependencies": "too-many-dependencies",
    "version-known of 0.9 MB": "version-too-large",
}
"""The budget (router/limits.py) that must refuse a FOUND sequence, by the code of its error frame: these
inputs did not crash anything, they made the router hold far more than was sent."""

OPEN: set[str] = set()
"""Names of FOUND whose bug is not fixed: strict xfails (a fix shows as XPASS: then drop the name here).
All three found so far are fixed (ced8285), so their families are generated by default."""


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason="open bug, reported")) if name in OPEN else name
    for name in sorted(FOUND)])
def test_frames_found_by_fuzzing(harness, name):
    """Each frame sequence found by the fuzzer (or by reading the code it points at) must be harmless."""
    harness.throw(FOUND[name], probe_timeout=5.0)
    harness.final_checks()
    if name in REFUSED_WITH:
        assert REFUSED_WITH[name] in harness.figures.codes, harness.figures.codes
