"""The router's own state, published as ordinary objects (seapig's ``SeapigServer::*`` plus seasync's).

An internal session registers as the producer of the introspection ids, like any other producer: the
objects exist only while someone consumes them, and the viewer or ``sync-observer`` watch them with
the normal protocol (diffs included). Data is rebuilt at most once a second (``refresh``) and uploaded
only when it changed, with seapig's ``[session, counter]`` versions; and at once when a consumer
registers, so that its first update already counts it (as seapig answers). Shapes: docs/INTROSPECTION.md.

This module is pure like the store: the router shell passes the time in and routes frames.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, Callable, Iterable

from common import codec, protocol
from common.protocol import (CONNECTIONS, CONSUMERS, INTROSPECTION_IDS, INTROSPECTION_PREFIXES, OBJECTS, PRODUCERS,
                             SEASYNC_STATISTICS, STATISTICS, WORKERS)
from router.store import ObjectStore, Session, SyncObject
from router.timeslots import Statistics

IDS = INTROSPECTION_IDS
REGISTRATION_IDS = (OBJECTS, CONSUMERS, CONNECTIONS)
"""The objects that show consumer registrations: rebuilt when a consumer registers on them (see consumer_added)."""
RESERVED_PREFIXES = INTROSPECTION_PREFIXES  # nobody else may upload or produce these

INTERNAL_NAME = "SeapigInternalClient"
RATE_WINDOW = 60  # seconds of per-second rates kept in Statistics

REDACTED = "***"
SECRET_KEY = re.compile(r"token|secret|passw|pwd|key|auth|credential|cookie|session|bearer|signature|private",
                        re.IGNORECASE)
"""Option names whose values are credentials (matched anywhere in the name, any case: ``token``,
``api_key``, ``X-Auth``, ``db_password``...): over-redacting a harmless option costs a viewer a
value, under-redacting leaks a credential to every client allowed to read the introspection."""


def redact(value: Any, extra: frozenset[str] = frozenset()) -> Any:
    """``value`` with every dict entry whose key looks like a credential (``SECRET_KEY``, or a name in
    ``extra``, compared case-insensitively) replaced by ``"***"``, at any depth (lists included).

    The one place client-supplied options pass before they are published: a client's options are
    the only introspected data a client chooses, and the hook reads credentials from them."""
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and (SECRET_KEY.search(k) or k.lower() in extra)
                else redact(v, extra) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, extra) for v in value]
    return value


def declared_secrets(hook: Any) -> frozenset[str]:
    """The option names the --auth hook declares secret (``hook.secret_options``), lower-cased."""
    names: Iterable[Any] = getattr(hook, "secret_options", ()) or ()
    if isinstance(names, str):
        names = (names,)
    return frozenset(str(n).lower() for n in names)


_TRAFFIC_KEYS = {d: (f"messages_{d}", f"bytes_{d}") for d in ("in", "out")}


class Counters:
    """Traffic totals and per-second rates, fed by the router shell."""

    KEYS = ("messages_in", "messages_out", "bytes_in", "bytes_out", "productions", "unchanged")

    def __init__(self) -> None:
        self.totals = dict.fromkeys(self.KEYS, 0)
        self._second: int | None = None
        self._current = dict.fromkeys(self.KEYS, 0)
        self.rates: dict[str, deque[int]] = {k: deque([0] * RATE_WINDOW, maxlen=RATE_WINDOW) for k in self.KEYS}

    def add(self, key: str, amount: int, now: float) -> None:
        self.roll(now)
        self.totals[key] += amount
        self._current[key] += amount

    def traffic(self, direction: str, messages: int, nbytes: int, now: float) -> None:
        """Count ``messages`` frames of ``nbytes`` bytes, ``direction`` "in" or "out" (one roll per call:
        this runs for every message the router handles)."""
        self.roll(now)
        count_key, bytes_key = _TRAFFIC_KEYS[direction]  # (no key built per call)
        totals, current = self.totals, self._current
        totals[count_key] += messages
        current[count_key] += messages
        totals[bytes_key] += nbytes
        current[bytes_key] += nbytes

    def roll(self, now: float) -> None:
        """Close the finished seconds (a quiet second counts as zero)."""
        second = int(now)
        if self._second is None:
            self._second = second
        while self._second < second:
            for key in self.KEYS:
                self.rates[key].append(self._current[key])
                self._current[key] = 0
            self._second += 1
            if second - self._second > RATE_WINDOW:
                self._second = second


class Introspection:
    """Produces the introspection objects from the store's state."""

    def __init__(self, store: ObjectStore, handle: Any, session_version: int, peer_name: Callable[[Session], str],
                 now: float = 0.0) -> None:
        self.store = store
        self.counters = Counters()
        self.statistics = Statistics(now)  # seapig's time slots, fed per frame by the router shell
        self._fresh_at: dict[str, float] = {}  # id -> store time of its last rebuild for a new consumer
        self.session_version = session_version
        self._peer_name = peer_name
        self._counter = -1  # the first upload is [session, 0], as in seapig
        self._uploaded: dict[str, bytes] = {}  # id -> canonical bytes of the last upload
        self._sizes: dict[str, tuple[dict, int]] = {}
        self._public: dict[int, tuple[dict, dict]] = {}  # id(session) -> (its options, redacted copy)
        self.session = store.open(handle)
        store.handle(self.session, dict(protocol.options_set({"name": INTERNAL_NAME})))
        for prefix in RESERVED_PREFIXES:
            store.reserve(prefix, self.session)
        for object_id in IDS:
            # handle() takes parse()'s shape: the builder's frame with every field the store reads
            store.handle(self.session, {**protocol.producer_register(object_id), "version-known": None})
        # the store calls consumer_added through the hook its owner gave it (router.Router wires it)

    # ---- driven by the router shell ---------------------------------------------------------

    def on_frame(self, frame: bytes, now: float) -> None:
        """A frame the store addressed to the internal session: answer production orders at once."""
        message = codec.loads(frame)
        if message.get("action") == "object-produce" and message.get("id") in IDS:
            self._upload(message["id"], now, force=True)

    def consumer_added(self, obj: SyncObject) -> None:
        """A consumer registered on an existing object, and is about to be sent its value: for an object
        that lists registrations, rebuild it first, so that the consumer's first update counts it.

        At most once per object per store time (the router sets it once per batch): a client that
        registers and unregisters in a loop costs one rebuild per batch, not one per message; a
        registration later in the same batch waits for the next refresh to be listed."""
        object_id = obj.id
        if object_id not in REGISTRATION_IDS or self._fresh_at.get(object_id) == self.store.now:
            return
        self._fresh_at[object_id] = self.store.now
        self._upload(object_id, self.store.now, force=False)

    def roll(self, now: float) -> None:
        """Close the statistics slots that ended (the router calls it with the time, once per batch)."""
        self.statistics.roll(now)
        self.statistics.connections(len(self.store.sessions) - 1)  # the internal session is no connection

    def refresh(self, now: float) -> None:
        """Called about once a second: upload the watched objects whose data changed."""
        self.counters.roll(now)
        self.roll(now)
        if len(self._public) > len(self.store.sessions):  # forget the redacted options of gone sessions
            live = {id(s) for s in self.store.sessions}
            self._public = {k: v for k, v in self._public.items() if k in live}
        for object_id in IDS:
            if object_id in self.store.objects:
                self._upload(object_id, now, force=False)

    # ---- building -------------------------------------------------------------------------------

    def _upload(self, object_id: str, now: float, force: bool) -> None:
        if object_id not in self.store.objects:
            return  # gone since it was ordered (its last consumer left in the same batch): nothing to make
        data = self.build(object_id, now)
        if object_id == OBJECTS:
            # Its own entry describes the object these uploads make: every upload moves its version and
            # counters, which must not count as a change (each upload would trigger the next).
            own = data[OBJECTS]
            encoded = codec.dumps_sorted({**data, OBJECTS: {"consumers": own["consumers"], "producers": own["producers"]}})
        else:
            encoded = codec.dumps_sorted(data)
        changed = self._uploaded.get(object_id) != encoded
        if not (force or changed):
            return
        if changed:
            self._counter += 1
            self._uploaded[object_id] = encoded
        version = [self.session_version, self._counter]
        self.store.handle(self.session, {**protocol.upload(object_id, version, data), "patch": None})

    def build(self, object_id: str, now: float) -> dict:
        builder = {
            OBJECTS: self._objects, CONSUMERS: self._consumers, PRODUCERS: self._producers,
            CONNECTIONS: self._connections, STATISTICS: self._seapig_statistics, WORKERS: self._workers,
            SEASYNC_STATISTICS: self._statistics,
        }[object_id]
        return builder(now)

    def _objects(self, now: float) -> dict:
        for gone in self._sizes.keys() - self.store.objects.keys():
            del self._sizes[gone]
        # Its own entry is included, as seapig does (see _upload for why it does not loop).
        return {oid: self._object_entry(obj) for oid, obj in self.store.objects.items()}

    def _object_entry(self, obj: SyncObject) -> dict:
        state: dict[str, bool] = {"current": obj.state == "current"}
        if obj.id == OBJECTS:
            # This very snapshot is the answer that makes it current, and nobody ever sees it otherwise;
            # its versions are the ones held before this upload (seapig's first value: known 0).
            state = {"current": True}
        elif obj.in_flight:
            state["producing"] = True
        if obj.queued:
            state["enqueued"] = True
        if obj.waiting:
            state["waiting"] = True
        if obj.state == "delayed":
            state["delayed"] = True
        if obj.state == "lingering":  # seasync: kept current with nobody watching (sync-router --linger)
            state["lingering"] = True
        if obj.state == "error":  # not ordered again until its version moves (see ObjectStore._result_behind)
            state["error"] = True
        return {
            "id": obj.id, "state": state,
            "version_highest_known": obj.known, "version_highest_inferred": obj.inferred,
            "consumers": [s.client_id for s in obj.consumers],
            "producers": [s.client_id for s in obj.producers],
            "productions": obj.productions, "unchanged": obj.unchanged,
            "production_ms": obj.production_ms, "produced_at": obj.produced_at,
            "errors": obj.errors, "last_error": obj.last_error, "size": self._size(obj),
        }

    def _size(self, obj: SyncObject) -> int | None:
        """Encoded size of the latest data, computed once per data version."""
        latest = obj.latest
        if latest is None:
            return None
        cached = self._sizes.get(obj.id)
        if cached is None or cached[0] is not latest[1]:
            cached = self._sizes[obj.id] = (latest[1], len(codec.dumps(latest[1])))
        return cached[1]

    def options(self, session: Session) -> dict:
        """A session's options as introspection may publish them: credentials redacted (``redact``).

        Every introspection object reads options through here and nowhere else. The copy is kept
        while the session's options are the same object (a client-options-set replaces them), so the
        once-a-second rebuild does not redo it for every session."""
        cached = self._public.get(id(session))
        if cached is None or cached[0] is not session.options:
            cached = self._public[id(session)] = (session.options,
                                                  redact(session.options, declared_secrets(self.store.authenticate)))
        return cached[1]

    def _consumers(self, now: float) -> dict:
        return {p: [s.client_id for s in sessions] for p, sessions in self.store.consumer_patterns.items()}

    def _producers(self, now: float) -> dict:
        return {p: [s.client_id for s in sessions] for p, sessions in self.store.producer_patterns.items()}

    def _connections(self, now: float) -> dict:
        """seapig's shape: keyed by connection number (a string), each with a ``clients`` map of
        ``name:N`` -> {id, options, produces, consumes, producing [id, version] or null}, which the
        original viewer and seapig's scenarios read; seasync's own fields sit beside ``clients``."""
        out = {}
        for s in self.store.sessions:
            # seapig's one "producing" entry (the oldest order); "orders" counts them when prefetch > 1
            producing = None
            for order in s.producing.values():
                producing = {"id": order.obj.id, "version_inferred": order.inferred, "since": order.since}
                break
            consumes, produces = list(s.consumes), list(s.produces)
            options = self.options(s)
            out[str(s.index)] = {"id": s.client_id, "options": options, "consumes": consumes,
                                 "produces": produces, "producing": producing, "orders": len(s.producing),
                                 "peer": self._peer_name(s),
                                 # uploads counted for this session (workers: also in the workers object); only
                                 # on sessions that produced, so a websocket consumer's entry never changes for it
                                 **({"productions": s.productions, "unchanged": s.unchanged}
                                    if s.productions or s.unchanged else {}),
                                 # subtree subscriptions: id -> the JSON Pointer watched (only when there are some)
                                 **({"paths": dict(s.paths)} if s.paths else {}),
                                 "clients": {s.client_id: {
                                     "id": s.client_id, "options": options,
                                     "produces": produces, "consumes": consumes,
                                     "producing": [producing["id"], producing["version_inferred"]] if producing else None,
                                 }}}
        return out

    def _seapig_statistics(self, now: float) -> dict:
        self.roll(now)
        return self.statistics.snapshot()

    def _statistics(self, now: float) -> dict:
        """seasync's own totals and per-second rates (``SeasyncServer::Statistics``)."""
        self.counters.roll(now)
        stats: dict[str, Any] = {
            "objects": len(self.store.objects), "sessions": len(self.store.sessions),
            "queue": len(self.store.queue),
            "errors": sum(obj.errors for obj in self.store.objects.values()),
        }
        stats.update(self.counters.totals)
        stats["rates"] = {k: list(v) for k, v in self.counters.rates.items()}
        return stats

    def _workers(self, now: float) -> dict:
        out = {}
        for s in self.store.sessions:
            if s.name != "worker":
                continue
            options = self.options(s)
            stats = options.get("stats") if isinstance(options.get("stats"), dict) else {}
            producing = None
            for order in s.producing.values():  # the oldest order
                producing = {"id": order.obj.id, "since": order.since}
                break
            out[s.client_id] = {"id": s.client_id, "pid": stats.get("pid"), "host": stats.get("host"),
                                "cpu_percent": stats.get("cpu_percent"), "rss": stats.get("rss"),
                                "producing": producing, "orders": len(s.producing), "prefetch": s.prefetch,
                                "productions": s.productions, "unchanged": s.unchanged, "errors": s.errors}
        return out

