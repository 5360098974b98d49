"""A stateful property test of the pure store: random sessions, registrations, uploads and disconnects.

Every client is modelled by what it would hold after applying the frames it received. Invariants:
no object alive without interest, no dead object queued or being produced, a patch is only ever sent
against the version the client holds, and every consumer holding the latest version holds its data.
"""

from __future__ import annotations

import orjson
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from common.diff import apply_patch
from common.versioning import same
from router.store import ObjectStore

IDS = ["a", "b", "c", "dep"]
PATTERNS = IDS + ["*", "a*", "d*"]
versions = st.one_of(st.integers(0, 6), st.lists(st.integers(0, 3), min_size=1, max_size=2),
                     st.fixed_dictionaries({}, optional={"dep": st.integers(0, 6), "b": st.integers(0, 6)}))
values = st.one_of(st.just(False), st.just(True), st.dictionaries(st.sampled_from("xyz"), st.integers(0, 3), max_size=3))


def canon(value) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = ObjectStore(retain=2)
        self.coalesce = False  # batch mode, passed with each message as the router does
        self.sessions = []
        self.held: dict = {}  # (session, id) -> (version, data)

    def _route(self) -> None:
        for frame, sessions in self.store.take_outbox():
            msg = orjson.loads(frame)
            for s in sessions:
                self._receive(s, msg)

    def _receive(self, s, msg) -> None:
        key = (s, msg.get("id"))
        if msg["action"] == "object-update":
            if "value" in msg:
                assert msg["version-old"] == 0
                self.held[key] = (msg["version-new"], msg["value"])
            else:
                version, data = self.held.get(key, (0, {}))
                assert same(version, msg["version-old"]), f"patch for {msg['version-old']} sent to a client at {version}"
                self.held[key] = (msg["version-new"], apply_patch(orjson.loads(orjson.dumps(data)), msg["patch"]))
        elif msg["action"] == "object-destroy":
            self.held.pop(key, None)

    @rule()
    def open_session(self) -> None:
        if len(self.sessions) < 5:
            self.sessions.append(self.store.open(len(self.sessions)))

    @precondition(lambda self: self.sessions)
    @rule(data=st.data())
    def close_session(self, data) -> None:
        s = data.draw(st.sampled_from(self.sessions))
        self.sessions.remove(s)
        self.store.close(s)
        self._route()
        for key in [k for k in self.held if k[0] is s]:
            del self.held[key]

    def _send(self, s, msg) -> None:
        self.store.handle_raw(s, orjson.dumps(msg), self.store.now, self.coalesce)
        self._route()

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), pattern=st.sampled_from(PATTERNS), register=st.booleans(), consumer=st.booleans())
    def registration(self, data, pattern, register, consumer) -> None:
        s = data.draw(st.sampled_from(self.sessions))
        role = "consumer" if consumer else "producer"
        action = f"object-{role}-{'register' if register else 'unregister'}"
        msg = {"action": action, "pattern": pattern}
        if register and consumer:
            held = self.held.get((s, pattern))
            msg["version-known"] = held[0] if held else 0
        self._send(s, msg)

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), oid=st.sampled_from(IDS), version=versions, value=values)
    def upload(self, data, oid, version, value) -> None:
        s = data.draw(st.sampled_from(self.sessions))
        if value is True or value is False or version:
            self._send(s, {"action": "object-patch", "id": oid, "version-new": version, "value": value})

    @precondition(lambda self: self.sessions)
    @rule(data=st.data())
    def answer_production(self, data) -> None:
        busy = [s for s in self.sessions if s.producing]
        if busy:
            s = data.draw(st.sampled_from(busy))
            order = data.draw(st.sampled_from(list(s.producing.values())))
            obj, inferred = order.obj, order.inferred
            version = inferred if inferred is not None else 1
            self._send(s, {"action": "object-patch", "id": obj.id, "version-new": version,
                           "value": {"v": canon(version).decode()}})

    @precondition(lambda self: any(s.producing for s in self.sessions))
    @rule(data=st.data())
    def cancel_production(self, data) -> None:
        s = data.draw(st.sampled_from([s for s in self.sessions if s.producing]))
        self._send(s, {"action": "object-patch", "id": data.draw(st.sampled_from(list(s.producing)))})

    @rule(on=st.booleans())
    def coalescing(self, on) -> None:
        """The router coalesces while it is behind: pushes then wait for the outbox to be taken."""
        self.coalesce = on

    @precondition(lambda self: len(self.sessions) >= 1)
    @rule(data=st.data(), oid=st.sampled_from(IDS), count=st.integers(2, 4))
    def uploads_in_one_batch(self, data, oid, count) -> None:
        """Several versions of one object handled before the outbox is taken (one router batch)."""
        s = data.draw(st.sampled_from(self.sessions))
        for n in range(count):
            self.store.handle_raw(s, orjson.dumps({"action": "object-patch", "id": oid, "version-new": 100 + n,
                                                   "value": {"n": n}}), self.store.now, self.coalesce)
        self._route()

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), prefetch=st.integers(1, 3))
    def set_prefetch(self, data, prefetch) -> None:
        """A producer may hold several orders at once (seasync's "prefetch" option)."""
        s = data.draw(st.sampled_from(self.sessions))
        self._send(s, {"action": "client-options-set", "options": {"prefetch": prefetch}})

    @invariant()
    def alive_objects_have_interest(self) -> None:
        for obj in self.store.objects.values():
            assert self.store._alive(obj), obj.id

    @invariant()
    def queue_and_productions_only_for_live_objects(self) -> None:
        assert set(self.store.queue) <= set(self.store.objects)
        for s in self.sessions:
            assert len(s.producing) <= 3  # the largest prefetch drawn (it may have been lowered since)
            for object_id, order in s.producing.items():
                assert self.store.objects.get(object_id) is order.obj

    @invariant()
    def no_queued_object_waits_while_one_of_its_producers_is_free(self) -> None:
        for object_id in self.store.queue:
            idle = [s for s in self.store.objects[object_id].producers if s.has_slot and object_id not in s.producing]
            assert not idle, f"{object_id} is queued while {idle} could produce it"

    @invariant()
    def consumers_at_latest_version_hold_latest_data(self) -> None:
        for obj in self.store.objects.values():
            latest = obj.latest
            for s in obj.consumers:
                held = self.held.get((s, obj.id))
                if latest and held and same(held[0], latest[0]):
                    assert canon(held[1]) == canon(latest[1])
                if latest:
                    assert same(s.held.get(obj.id), latest[0]), "a consumer was not brought to the latest version"


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
