"""Sessions talking to one in-process ObjectStore, the way the router shell drives it: each message is
handled, then the outbox is routed into the inboxes of the sessions it names (decoded), for the test to take."""

from __future__ import annotations

import orjson

from router.store import OPEN_GATE, Gate, ObjectStore, Session


class Harness:
    def __init__(self, **options) -> None:
        self.store = ObjectStore(**options)
        self.inbox: dict[Session, list[dict]] = {}

    def client(self, name: str = "c", gate: Gate = OPEN_GATE, guarded: bool = False, **options) -> Session:
        """A session that has said its name (``options`` are added to its client-options-set)."""
        s = self.open(name, gate=gate, guarded=guarded)
        self.send(s, "client-options-set", options={"name": name, **options})
        return s

    def open(self, name: str, gate: Gate = OPEN_GATE, guarded: bool = False) -> Session:
        """A session that has sent nothing yet."""
        s = self.store.open(name, guarded=guarded, gate=gate)
        self.inbox[s] = []
        return s

    def send(self, session: Session, action: str, **fields) -> None:
        """One message; ``version_known=`` is sent as ``version-known`` (underscores become dashes)."""
        msg = {"action": action, **{k.replace("_", "-"): v for k, v in fields.items()}}
        self.raw(session, orjson.dumps(msg))

    def raw(self, session: Session, raw: bytes) -> None:
        self.store.handle_raw(session, raw, self.store.now)
        self.route()

    def tick(self, now: float) -> None:
        self.store.tick(now)
        self.route()

    def route(self) -> None:
        for frame, sessions in self.store.take_outbox():
            for s in sessions:
                self.inbox[s].append(orjson.loads(frame))

    def take(self, session: Session) -> list[dict]:
        out, self.inbox[session] = self.inbox[session], []
        return out
