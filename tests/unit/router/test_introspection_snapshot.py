"""The introspection objects' first answers, in-process over the pure store (no clock, no sockets):
the snapshot a consumer gets counts its registration, and rebuilding for new consumers has a budget."""

from __future__ import annotations

import orjson

from common import protocol
from common.diff import apply_patch
from router.introspection import CONNECTIONS, OBJECTS, Introspection
from router.store import ObjectStore, Session

INTERNAL = ("", "introspection")


class Router:
    """The router shell's part: route the store's outbox, answer the internal session's orders."""

    def __init__(self) -> None:
        self.store = ObjectStore(on_consumer_added=lambda obj: self.intro.consumer_added(obj))
        self.store.tick(1000.0)
        self.intro = Introspection(self.store, INTERNAL, 1, lambda s: "peer", now=self.store.now)
        self.inbox: dict[Session, list[dict]] = {}
        self.builds: list[str] = []
        build = self.intro.build
        self.intro.build = lambda oid, now: (self.builds.append(oid), build(oid, now))[1]  # type: ignore[method-assign]
        self.flush()

    def client(self, name: str) -> Session:
        s = self.store.open(("peer", name))
        self.send(s, "client-options-set", options={"name": name})
        return s

    def send(self, session: Session, action: str, **fields) -> None:
        raw = orjson.dumps({"action": action, **{k.replace("_", "-"): v for k, v in fields.items()}})
        self.store.handle(session, protocol.parse(raw))
        self.flush()

    def flush(self) -> None:
        while self.store.has_output:
            internal = []
            for frame, sessions in self.store.take_outbox():
                for s in sessions:
                    if s.address is INTERNAL:
                        internal.append(frame)
                    else:
                        self.inbox.setdefault(s, []).append(orjson.loads(frame))
            for frame in internal:
                self.intro.on_frame(frame, self.store.now)

    def updates(self, session: Session, object_id: str) -> list[dict]:
        return [f for f in self.inbox.get(session, []) if f.get("action") == "object-update" and f["id"] == object_id]


def names(ids: list[str]) -> list[str]:
    return sorted(i.split(":")[0] for i in ids)


def test_the_first_update_lists_the_consumer_spawning_it_and_each_later_one():
    r = Router()
    a = r.client("a")
    r.send(a, "object-consumer-register", pattern=OBJECTS, version_known=0)
    [first] = r.updates(a, OBJECTS)
    assert first["version-old"] == 0 and names(first["value"][OBJECTS]["consumers"]) == ["a"]
    r.store.tick(r.store.now + 1)  # the next batch
    b = r.client("b")
    r.send(b, "object-consumer-register", pattern=OBJECTS, version_known=0)
    [first_b] = r.updates(b, OBJECTS)
    assert "value" in first_b and names(first_b["value"][OBJECTS]["consumers"]) == ["a", "b"]
    # the one already watching is brought to the same version by a patch
    value = first["value"]
    for frame in r.updates(a, OBJECTS)[1:]:
        value = apply_patch(value, frame["patch"])
    assert value == first_b["value"]


def test_connections_lists_the_consumer_of_an_existing_object():
    r = Router()
    a = r.client("a")
    r.send(a, "object-consumer-register", pattern=CONNECTIONS, version_known=0)
    r.store.tick(r.store.now + 1)
    b = r.client("b")
    r.send(b, "object-consumer-register", pattern=CONNECTIONS, version_known=0)
    [first_b] = r.updates(b, CONNECTIONS)
    mine = [c for conn in first_b["value"].values() for cid, c in conn["clients"].items() if cid.startswith("b:")]
    assert mine and mine[0]["consumes"] == [CONNECTIONS]


def test_registrations_in_one_batch_cost_one_rebuild():
    """A client registering and unregistering in a loop must not make the router rebuild the whole
    object space once per message: at most once per object per batch (store time)."""
    r = Router()
    a, b = r.client("a"), r.client("b")
    r.send(a, "object-consumer-register", pattern=OBJECTS, version_known=0)
    r.store.tick(r.store.now + 1)
    r.builds.clear()
    for _ in range(50):
        r.send(b, "object-consumer-register", pattern=OBJECTS, version_known=0)
        r.send(b, "object-consumer-unregister", pattern=OBJECTS)
    assert r.builds.count(OBJECTS) == 1
    r.store.tick(r.store.now + 1)
    r.send(b, "object-consumer-register", pattern=OBJECTS, version_known=0)
    assert r.builds.count(OBJECTS) == 2


def test_an_introspection_object_gone_before_its_order_is_answered_is_not_made():
    """Found by the fuzz: a consumer registering and unregistering SeapigServer::Objects in one batch left
    an order for an object that no longer existed when the router answered it; building its own entry
    raised KeyError and took the router down. Now the order of a gone object is simply not answered."""
    r = Router()
    c = r.client("c")
    for raw in ({"action": "object-consumer-register", "pattern": OBJECTS, "version-known": 0},
                {"action": "object-consumer-unregister", "pattern": OBJECTS}):
        r.store.handle(c, protocol.parse(orjson.dumps(raw)))  # one batch: no flush in between
    r.flush()
    assert OBJECTS not in r.store.objects
    r.send(c, "object-consumer-register", pattern=OBJECTS, version_known=0)  # and it still works after
    assert OBJECTS in r.updates(c, OBJECTS)[-1]["value"]
