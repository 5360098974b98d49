"""ClientState (common/client/state.py) against the real ObjectStore, in-process: no socket, no clock.

Each client is a ``ClientState`` wired to a store session the way h11's ``ConnectionPair`` wires a client
to a server: frames one side returns are handed to the other until nothing moves. This is where the
reconnect, resync and offline-master rules are checked fast and exactly.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from common import codec
from common.client.state import (
    RESYNC_VERSION,
    ClientState,
    Event,
    backoff,
    next_version,
)
from router.store import ObjectStore


class Pair:
    """One store and the clients linked to it."""

    def __init__(self) -> None:
        self.store = ObjectStore()
        self.sessions: dict[ClientState, Any] = {}
        self.events: dict[ClientState, list[Event]] = {}
        self.sent: dict[ClientState, list[dict]] = {}
        self.states: dict[int, ClientState] = {}  # id(session) -> its client
        self._now = "now" in inspect.signature(self.store.handle_raw).parameters

    def client(self, name: str) -> ClientState:
        state = ClientState(name)
        self.events[state] = []
        self.sent[state] = []
        return state

    def connect(self, state: ClientState) -> None:
        session = self.sessions[state] = self.store.open(None)
        self.states[id(session)] = state
        frames, events = state.connect()
        self.events[state].extend(events)
        self.to_server(state, frames)

    def disconnect(self, state: ClientState) -> None:
        self.store.close(self.sessions.pop(state))
        self.events[state].extend(state.disconnect())
        self.pump()

    def to_server(self, state: ClientState, frames: list[dict]) -> None:
        if state not in self.sessions:
            return  # offline: dropped, as the shell does
        for frame in frames:
            self.sent[state].append(frame)
            raw = codec.dumps(frame)
            if self._now:
                self.store.handle_raw(self.sessions[state], raw, 0.0)  # type: ignore[call-arg]
            else:
                self.store.handle_raw(self.sessions[state], raw)
        self.pump()

    def pump(self) -> None:
        for _ in range(1000):
            out = self.store.take_outbox()
            if not out:
                return
            for raw, sessions in out:
                for session in sessions:
                    state = self.states[id(session)]
                    if self.sessions.get(state) is not session:
                        continue
                    frames, events = state.receive(codec.loads(raw))
                    self.events[state].extend(events)
                    self.to_server(state, frames)
        raise AssertionError("the pair did not settle")

    def do(self, state: ClientState, result: Any) -> None:
        """Send what a user action returned (frames, or (frames, events))."""
        frames, events = result if isinstance(result, tuple) else (result, [])
        self.events[state].extend(events)
        self.to_server(state, frames)


@pytest.fixture
def pair() -> Pair:
    return Pair()


def updates(pair: Pair, state: ClientState) -> list[dict]:
    return [e for e in pair.events[state] if e.kind == "changed"]


def test_reconnect_with_the_version_held_gets_a_patch_then_is_not_stale(pair):
    owner, watcher, keeper = pair.client("owner"), pair.client("watcher"), pair.client("keeper")
    pair.connect(owner)
    pair.do(owner, owner.master("doc", {"n": 0, "big": "x" * 200}, [1, 0]))
    pair.connect(keeper)
    pair.do(keeper, keeper.consume("doc"))  # keeps the object alive while the watcher is away
    pair.connect(watcher)
    pair.do(watcher, watcher.consume("doc"))
    assert watcher.entries["doc"].value == {"n": 0, "big": "x" * 200}
    assert not watcher.stale("doc") and watcher.valid("doc")

    pair.disconnect(watcher)
    assert watcher.stale("doc") and not watcher.valid("doc")
    pair.do(owner, owner.bump("doc", {"n": 1, "big": "x" * 200}, [1, 1]))
    pair.connect(watcher)
    entry = watcher.entries["doc"]
    assert entry.value == {"n": 1, "big": "x" * 200} and entry.version == [1, 1]
    assert entry.last_patch is not None  # caught up with a patch, not the value
    assert not watcher.stale("doc")


def test_reconnect_when_current_is_confirmed_by_the_sync_probe(pair):
    owner, watcher = pair.client("owner"), pair.client("watcher")
    pair.connect(owner)
    pair.do(owner, owner.master("doc", {"n": 0}, [1, 0]))
    pair.connect(watcher)
    pair.do(watcher, watcher.consume("doc"))
    pair.disconnect(watcher)
    pair.events[watcher].clear()
    pair.connect(watcher)
    assert updates(pair, watcher) == []  # nothing was resent
    assert not watcher.stale("doc") and watcher.valid("doc")
    assert not any(e.kind == "error" for e in pair.events[watcher])  # the probe's answer is not the user's


def test_seeded_consumer_is_stale_until_confirmed(pair):
    owner, watcher = pair.client("owner"), pair.client("watcher")
    pair.connect(owner)
    pair.do(owner, owner.master("doc", {"n": 0}, [1, 0]))
    pair.do(watcher, watcher.consume("doc", {"n": 0}, [1, 0]))  # from disk, before any connection
    assert watcher.stale("doc")
    pair.connect(watcher)
    assert not watcher.stale("doc") and updates(pair, watcher) == []


def test_a_patch_that_does_not_apply_resyncs_without_despawning(pair):
    owner, watcher = pair.client("owner"), pair.client("watcher")
    pair.connect(owner)
    pair.do(owner, owner.master("doc", {"n": 0, "big": "x" * 200}, [1, 0]))
    pair.connect(watcher)
    pair.do(watcher, watcher.consume("doc"))
    obj = pair.store.objects["doc"]
    del watcher.entries["doc"].value["n"]  # the data held is wrong: the next patch cannot apply
    pair.sent[watcher].clear()
    pair.do(owner, owner.bump("doc", {"n": 1, "big": "x" * 200}, [1, 1]))
    assert pair.sent[watcher] == [{"action": "object-consumer-register", "pattern": "doc",
                                   "version-known": RESYNC_VERSION}]
    assert watcher.entries["doc"].value == {"n": 1, "big": "x" * 200} and watcher.valid("doc")
    assert pair.store.objects["doc"] is obj  # never despawned, so never re-produced


def test_wildcard_child_lost_update_uses_a_temporary_exact_registration(pair):
    owner, watcher = pair.client("owner"), pair.client("watcher")
    pair.connect(owner)
    pair.do(owner, owner.master("w-1", {"n": 0}, [1, 0]))
    pair.connect(watcher)
    pair.do(watcher, watcher.consume("w-*"))
    assert list(watcher.wildcards["w-*"]) == ["w-1"]
    frames, _ = watcher.receive({"action": "object-update", "id": "w-1", "version-old": [1, 7],
                                 "version-new": [1, 8], "patch": []})
    assert frames == [{"action": "object-consumer-register", "pattern": "w-1", "version-known": [1, 0]}]
    assert watcher.entries["w-1"].temp_exact


def _two_masters(pair: Pair) -> tuple[ClientState, ClientState, ClientState]:
    a, b, watcher = pair.client("a"), pair.client("b"), pair.client("watcher")
    for state in (a, b, watcher):
        pair.connect(state)
    pair.do(a, a.master("doc", {"by": "a", "n": 0}, [1_000_000_000_000, 0]))
    pair.do(b, b.master("doc", {"by": "a", "n": 0}, [1_000_000_000_000, 0]))
    pair.do(watcher, watcher.consume("doc"))
    assert watcher.entries["doc"].value == {"by": "a", "n": 0}
    return a, b, watcher


def test_an_offline_master_change_newer_than_the_server_wins_on_reconnect(pair):
    a, b, watcher = _two_masters(pair)
    pair.disconnect(b)
    # a bumps at t=1000 s; b, offline, bumps later, at t=2000 s (next_version takes the clock)
    pair.do(a, a.bump("doc", {"by": "a", "n": 1}, next_version(a.masters["doc"].version, 1_000_000_001_000)))
    pair.do(b, b.bump("doc", {"by": "b", "n": 7}, next_version(b.masters["doc"].version, 1_000_000_002_000)))
    assert b.masters["doc"].pending
    assert watcher.entries["doc"].value == {"by": "a", "n": 1}
    pair.connect(b)
    assert not b.masters["doc"].pending
    entry = watcher.entries["doc"]
    assert entry.version == [1_000_000_002_000, 0] and entry.value == {"by": "b", "n": 7}


def test_an_offline_master_change_older_than_the_server_loses_whole(pair):
    a, b, watcher = _two_masters(pair)
    pair.disconnect(b)
    pair.do(b, b.bump("doc", {"by": "b", "n": 7}, next_version(b.masters["doc"].version, 1_000_000_001_000)))
    pair.do(a, a.bump("doc", {"by": "a", "n": 1}, next_version(a.masters["doc"].version, 1_000_000_002_000)))
    pair.connect(b)
    entry = watcher.entries["doc"]
    assert entry.version == [1_000_000_002_000, 0] and entry.value == {"by": "a", "n": 1}  # never a mix


def test_next_version_moves_a_timestamp_version_to_now_only_forward():
    assert next_version([1_000_000_000_000, 3], 1_000_000_005_000) == [1_000_000_005_000, 0]
    assert next_version([1_000_000_009_000, 3], 1_000_000_005_000) == [1_000_000_009_000, 4]  # clock behind
    assert next_version([1, 0], 1_000_000_005_000) == [1, 1]  # not a timestamp: counted
    assert next_version(4) == 5 and next_version([2, 3]) == [2, 4]
    with pytest.raises(ValueError):
        next_version({"h": 1})


def test_backoff_doubles_up_to_its_maximum():
    assert [backoff(n, 1.0, 5.0) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff(10_000, 0.2, 1.0) == 1.0


# ---- collection updates (issue 15) ---------------------------------------------------------------

def test_collection_update_refs_answers_and_errors_are_matched_by_ref() -> None:
    state = ClientState("writer")
    state.connect()
    ref1, frame1 = state.collection_update("todos/a", insert=[{"id": "x"}])
    ref2, frame2 = state.collection_update("todos/a", remove=["x"], reset=False)
    assert ref1 != ref2
    assert frame1 == {"action": "collection-update", "id": "todos/a", "insert": [{"id": "x"}], "remove": [],
                      "reset": False, "ref": ref1}
    assert frame2["remove"] == ["x"] and frame2["ref"] == ref2
    answered = {"action": "collection-updated", "id": "todos/a", "ref": ref2, "version": 3}
    assert state.receive(answered) == ([], [Event("written", "todos/a", frame=answered)])
    refused = {"action": "error", "request": "collection-update", "id": "todos/a", "ref": ref1,
               "code": "collection-full", "message": "full"}
    assert state.receive(refused) == ([], [Event("written", "todos/a", frame=refused)])
    assert state.writes == {}
    _, events = state.receive(answered)  # answered twice: not waited for any more
    assert [e.kind for e in events] == ["ignored"]


def test_collection_update_checked_before_sending_and_unknown_on_disconnect() -> None:
    from common.collection import UpdateError

    state = ClientState("writer")
    state.connect()
    with pytest.raises(UpdateError) as caught:
        state.collection_update("todos/a", insert=[{"no": "id"}])
    assert caught.value.code == "invalid-item"
    ref, _ = state.collection_update("todos/a", insert=[{"id": "x"}])
    events = state.disconnect()
    assert Event("unknown", "todos/a", frame={"ref": ref}) in events
    assert state.writes == {}
    frames, _ = state.connect()
    assert not [f for f in frames if f["action"] == "collection-update"], "never resent"
