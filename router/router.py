"""The router process: a ZeroMQ ROUTER loop around the pure ObjectStore.

It reads envelopes from fronts and workers (see common/wire.py), feeds the store, and writes the store's
outbox back: one SENDS message per peer per flush, carrying (frame, sessions of that peer) pairs. It uses a
plain blocking poll loop: on 2 cores the sync loop is about 3x faster than asyncio for ZeroMQ
(ecosystem.md §4), and the router has nothing else to wait on.

Credit (common/wire.py): a front that announced ``"credit": K`` has at most K SENDS unacknowledged; at K its
sessions' gate in the store is closed (latest wins, one level above a paused client) until an ACK returns credit.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import zmq

from common import codec, wire
from common.logs import LogLimit
from router.introspection import Introspection
from router.store import Gate, ObjectStore, Session

log = logging.getLogger("seasync.router")

INTERNAL = (b"", b"introspection")  # the store address of the router's own introspection session
BATCH = 512  # messages handled before the outbox is flushed
FLUSH_FRAMES = 512
"""Client frames handled before the outbox is flushed, however they are packed: a front merges all that a
flooding master sent in one loop iteration into one MSG, and a batch of 512 such messages held every push
(once per drain in batch mode) behind seconds of uploads, so watchers on that front got a few versions a
second. A flush every 512 frames still coalesces each object's versions into one push."""
MAX_PAIRS = 1024  # (frame, sessions) pairs in one SENDS message
# plain ints: pyzmq's send_multipart computes ``SNDMORE | flags`` per part with enum.Flag, which cost
# two thirds of its time for a SEND to 2,000 sessions (see docs/PERFORMANCE.md)
_MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
_NOBLOCK = int(zmq.NOBLOCK)
COALESCE_FROM = 64
"""Client messages waiting in one batch from which versions that arrive together are coalesced."""
CREDIT_TIMEOUT = 10.0
"""Seconds a front may hold its credit without acknowledging anything before the router gives it back."""
HEARTBEAT_EVERY = 10.0  # seapig's optional client heartbeat action
UPDATE_PREFIX = codec.dumps({"action": "object-update"})[:-1]
"""How every object-update frame starts (common/protocol.py encodes "action" first): one bytes compare."""
LOG_BURST, LOG_PERIOD = 10, 10.0
"""At most LOG_BURST lines of one kind of refusal per LOG_PERIOD seconds (see LogLimit)."""
ZMTP_HEARTBEAT_IVL, ZMTP_HEARTBEAT_TIMEOUT = 1.0, 10.0
"""The ROUTER's own ZMTP heartbeats close TCP links of peers that vanished (a host gone, a partition), so
dead pipes do not pile up; the peers' sessions are closed by the envelope's timeout long before."""


@dataclass
class Peer:
    """A connected front or worker process and the sessions it multiplexes."""

    identity: bytes
    role: str
    name: str
    last_seen: float
    sessions: dict[bytes, Session] = field(default_factory=dict)
    refused: int = 0  # sessions refused past limits.max_sessions_per_peer
    credit: int = 0  # SENDS messages it may have unacknowledged (its HELLO's "credit"; 0: no credit, never held)
    in_flight: int = 0  # SENDS sent and not acknowledged yet
    gate: Gate = field(default_factory=Gate)  # its sessions' gate in the store, closed while out of credit
    held_since: float = 0.0  # when the gate last closed, or the last ACK since (monotonic)
    packed: bool = False  # its HELLO said it reads packed SENDS (common/wire.py, pack_pairs)


class Router:
    def __init__(self, bind: str, make_store: Callable[..., ObjectStore] = ObjectStore,
                 peer_timeout: float = wire.PEER_TIMEOUT, secret: str = "") -> None:
        """``make_store(log=, on_production=, on_consumer_added=)`` builds the store (ObjectStore with the
        options of the command line bound): the router gives it its hooks, the store has no setters."""
        self.bind = bind
        self.metrics: Any = None  # the production-time histogram, when --metrics-port serves one
        # the log: what the store refused or gave up on (it does no I/O itself)
        self.epoch = f"{int(time.time())}-{secrets.token_hex(4)}".encode()
        # the epoch also names this router instance in collection tickets (unique across restarts)
        self.store = make_store(log=log.warning, on_production=self._production,
                                on_consumer_added=self._consumer_added, instance=self.epoch.decode())
        self.peer_timeout = peer_timeout
        self.peers: dict[bytes, Peer] = {}
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        # A peer's DEALER that lost its TCP link (ZMTP heartbeat timeout during a pause or partition)
        # reconnects under the same identity, often before this side has seen the old link die: without
        # handover the new connection is refused in silence and every later HELLO of that peer is lost.
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.sock.setsockopt(zmq.HEARTBEAT_IVL, int(ZMTP_HEARTBEAT_IVL * 1000))
        self.sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(ZMTP_HEARTBEAT_TIMEOUT * 1000))
        self.refusals = LogLimit(LOG_BURST, LOG_PERIOD)
        self.arrivals = LogLimit(burst=100)  # joins and departures: a pool starting is worth seeing whole
        self.auth = wire.secure_router(self.ctx, self.sock, secret) if secret else None
        self.sock.bind(bind)
        self._stopping = False
        session_version = int(os.environ.get("SEAPIG_SERVER_SESSION") or time.time() * 1000)
        self.introspection = Introspection(self.store, INTERNAL, session_version, self._peer_name, now=time.time())
        self.statistics = self.introspection.statistics
        self.counters = self.introspection.counters
        self._productions_seen = 0
        self._unchanged_seen = 0
        self._now = time.time()  # the store time of the batch being handled
        self._coalesce = False  # batch mode for the store: many messages waiting (see _drain)
        self._unflushed = 0  # client frames handled since the last flush (FLUSH_FRAMES)

    def _production(self, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.observe(seconds)

    def _consumer_added(self, obj: Any) -> None:
        self.introspection.consumer_added(obj)

    def stop(self, *_: object) -> None:
        self._stopping = True

    def run(self) -> None:
        """Serve until stop() (SIGINT/SIGTERM)."""
        log.info("= router listening on %s (epoch %s)", self.bind, self.epoch.decode())
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        self._next = {"check": time.monotonic(), "heartbeat": time.monotonic(), "refresh": time.monotonic()}
        while not self._stopping:
            try:
                self._step(poller)
            except Exception:  # our own bug, whatever the input: logged, and the loop goes on (DESIGN principle 3)
                allowed = self.refusals.allow("internal error", time.monotonic())
                if allowed is not None:
                    log.exception("! internal error in the router loop; it goes on")
        self.sock.close(0)
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()
        log.info("= router stopped")

    def _step(self, poller: zmq.Poller) -> None:
        """One turn of the loop: a batch of messages, the timers that are due, a flush."""
        due = self._next
        if poller.poll(250):
            self._drain()
        now = time.monotonic()
        if now >= due["check"]:
            self._expire_peers(now)
            self._check_credit(now)
            due["check"] = now + wire.HEARTBEAT_INTERVAL
        if now >= due["heartbeat"]:
            self.store.heartbeat()
            due["heartbeat"] = now + HEARTBEAT_EVERY
        if self.store.delayed or self.store.lingering:
            self.store.tick(time.time())
        if now >= due["refresh"]:
            due["refresh"] = now + 1.0
            self.store.expire_orders(time.time())  # orders held past --order-timeout go to another producer
            self.introspection.refresh(self.store.now)
        self._flush()

    # ---- input --------------------------------------------------------------------------------

    def _drain(self) -> None:
        self._now = time.time()  # the store time of this batch: passed with each message
        self.introspection.roll(self._now)
        batch = self._receive_batch()
        batch = self._unpacked(self._answer_pings(batch))
        # Many client messages waiting at once (a flood, or the router behind): versions of one object
        # that arrive together are coalesced into one push of the newest. A trickle: every version goes
        # out, as in seapig.
        waiting = sum(len(frames) // 2 - 1 if frames[1] == wire.MSG else 1 for frames in batch)
        self._coalesce = waiting >= COALESCE_FROM
        for frames in batch:
            try:
                # the clock is read per message: a batch can take seconds under load, and a peer whose
                # messages wait in it must not look silent for that long (_expire_peers)
                self._dispatch(frames, time.monotonic())
            except Exception:  # the store must never take the router down
                log.exception("! internal error while handling %r", frames[:3])
            if len(self.store.outbox) > BATCH:
                self._flush()

    def _answer_pings(self, batch: list[list[bytes]]) -> list[list[bytes]]:
        """PONG every known peer's PING at once, ahead of the batch it arrived in: a peer takes a silent
        router for restarted, and the rest of a big batch may take a while. Returns the other messages."""
        if not any(frames[1] == wire.PING for frames in batch):
            return batch
        rest = []
        now = time.monotonic()
        for frames in batch:
            peer = self.peers.get(frames[0]) if frames[1] == wire.PING else None
            if peer is None:  # not a PING, or from a peer not known yet (its HELLO may be in this batch)
                rest.append(frames)
                continue
            peer.last_seen = now
            self._pong(frames[0])
        return rest

    def _unpacked(self, batch: list[list[bytes]]) -> list[list[bytes]]:
        """The batch with every packed MSG pair unpacked (so the waiting messages are counted right); a
        damaged one is refused whole, logged within budget, and the rest of the batch goes on."""
        out = []
        for frames in batch:
            if frames[1] == wire.MSG:
                try:
                    frames = wire.flat(frames, 2)
                except wire.MalformedPack as exc:
                    self._refuse("envelope", time.monotonic(), "ignoring a MSG from %s: %s", _show(frames[0]), exc)
                    continue
            out.append(frames)
        return out

    def _pong(self, identity: bytes) -> None:
        self.sock.send_multipart([identity, wire.PONG, self.epoch])

    def _receive_batch(self) -> list[list[bytes]]:
        """Up to BATCH waiting messages (never blocks)."""
        # zmq.Frame's ``more`` instead of get(RCVMORE) per part: ~1 µs saved per part (measured: a 4-part
        # message 5.1 -> 3.5 µs to receive), the router's largest per-message cost after parsing
        recv = self.sock.recv
        batch: list[list[bytes]] = []
        try:
            while len(batch) < BATCH:
                part = recv(_NOBLOCK, copy=False)
                frames = [part.bytes]
                while part.more:
                    part = recv(_NOBLOCK, copy=False)
                    frames.append(part.bytes)
                if len(frames) >= 2:
                    batch.append(frames)
        except zmq.Again:
            pass
        return batch

    def _dispatch(self, frames: list[bytes], now: float) -> None:
        identity, kind = frames[0], frames[1]
        if kind == wire.HELLO:
            self._hello(identity, frames[2] if len(frames) > 2 else b"{}", now)
            return
        peer = self.peers.get(identity)
        if peer is None:
            self._refuse("reset", now, "RESET to %s: an envelope %s from a peer that has not said HELLO "
                         "(it restarted, or we dropped it)", _show(identity), _show(kind))
            self.sock.send_multipart([identity, wire.RESET])
            return
        peer.last_seen = now
        if kind == wire.MSG and len(frames) >= 4:
            self._messages(identity, peer, frames)
        elif kind == wire.PING:  # a peer whose HELLO came in the same batch (see _answer_pings)
            self._pong(identity)
        elif kind == wire.OPEN and len(frames) >= 3:
            if b"," in frames[2]:
                self._refuse("open", now, "ignoring OPEN of session id %s from %s: ids cannot contain ','",
                             _show(frames[2]), _show(identity))
            elif frames[2] not in peer.sessions:
                if len(peer.sessions) >= self.store.limits.max_sessions_per_peer:
                    self._refuse_session(identity, peer, frames[2])
                    return
                # websocket clients pass the --auth hook; workers and the notifier join with the cluster secret
                peer.sessions[frames[2]] = self.store.open((identity, frames[2]), guarded=peer.role == "front",
                                                           gate=peer.gate)
        elif kind in (wire.PAUSE, wire.RESUME) and len(frames) >= 3:
            session = peer.sessions.get(frames[2])
            if session is not None:
                (self.store.pause if kind == wire.PAUSE else self.store.resume)(session)
        elif kind == wire.ACK:
            if len(frames) == 3 and peer.credit and frames[2].isdigit() and len(frames[2]) < 10:
                self._acked(peer, int(frames[2]))
            else:  # malformed, or from a peer that announced no credit: nothing to give back
                self._refuse("ack", now, "ignoring an ACK %s from %s (credit %d)", _show(b",".join(frames[2:3])),
                             _show(identity), peer.credit)
        elif kind == wire.CLOSE and len(frames) >= 3:
            session = peer.sessions.pop(frames[2], None)
            if session is not None:
                self.store.close(session)
        else:
            self._refuse("envelope", now, "ignoring a malformed envelope %s (%d parts) from %s", _show(kind),
                         len(frames) - 1, _show(identity))

    def _acked(self, peer: Peer, count: int) -> None:
        """The front wrote ``count`` more SENDS: credit back; once under its credit, its held sessions get
        the newest version of what changed meanwhile (one coalesced SENDS, not the backlog)."""
        peer.in_flight = max(0, peer.in_flight - count)
        peer.held_since = time.monotonic()
        if peer.gate.closed and peer.in_flight < peer.credit:
            self.store.release(peer.gate)

    def _refuse_session(self, identity: bytes, peer: Peer, sid: bytes) -> None:
        """Sessions per peer are a budget (router/limits.py): the one past it is dropped at once (a front
        closes its websocket with 1008 and this reason), and logged once per 1,000 refusals."""
        limit = self.store.limits.max_sessions_per_peer
        if peer.refused % 1000 == 0:
            log.warning("! %s %s opened more than %d sessions: dropping the new ones (%d so far)", peer.role,
                        identity.decode(errors="replace"), limit, peer.refused + 1)
        peer.refused += 1
        self.sock.send_multipart([identity, wire.DROP, sid, f"session-limit: {limit} sessions per peer".encode()])

    def _messages(self, identity: bytes, peer: Peer, frames: list[bytes]) -> None:
        """A MSG: one or more (sid, raw) pairs, in order."""
        count = size = 0
        # seapig's per-frame statistics: two appends of raw values, counted once per batch (router/timeslots.py)
        sizes, times, clock = self.statistics.in_sizes.append, self.statistics.in_times.append, time.perf_counter_ns
        handle_raw, now, coalesce = self.store.handle_raw, self._now, self._coalesce
        it = iter(frames[2:])  # (unpacked by _drain)
        for sid, raw in zip(it, it):
            session = peer.sessions.get(sid)
            if session is None:
                self._refuse("session", time.monotonic(), "DROP of session %s of %s: not open (never "
                             "opened, or closed)", _show(sid), _show(identity))
                self.sock.send_multipart([identity, wire.DROP, sid, b"unknown session"])
                continue
            count += 1
            size += len(raw)
            started = clock()
            try:  # (the store answers and logs its own errors: this is a last line of defence)
                handle_raw(session, raw, now, coalesce)
            except Exception:  # the store must never take the router down, nor lose the rest of the batch
                log.exception("! internal error while handling %.200r", raw)
            sizes(len(raw))
            times(clock() - started)  # ns
            self._unflushed += 1
            if self._unflushed >= FLUSH_FRAMES:
                self._flush()
        self.counters.traffic("in", count, size, now)

    def _hello(self, identity: bytes, raw: bytes, now: float) -> None:
        try:
            info = codec.loads(raw)
            info = info if isinstance(info, dict) else {}
        except ValueError:
            info = {}
        old = self.peers.pop(identity, None)
        if old is not None and old.sessions:
            self._drop_peer(old, "said hello again: it lost us, or restarted", now)
        peer = Peer(identity, str(info.get("role", "?"))[:64], str(info.get("name", ""))[:200], now,
                    credit=_credit(info.get("credit")), packed=info.get("packed") is True)
        self.peers[identity] = peer
        self._refuse("hello", now, "%s %s joined (%s)", peer.role, _show(identity), peer.name, level=logging.INFO,
                     limit=self.arrivals)
        self.sock.send_multipart([identity, wire.WELCOME, self.epoch])

    def _expire_peers(self, now: float) -> None:
        for peer in [p for p in self.peers.values() if now - p.last_seen > self.peer_timeout]:
            del self.peers[peer.identity]
            self._drop_peer(peer, f"silent for {now - peer.last_seen:.1f} s; if it is alive, its next "
                                  "envelope gets a RESET and it says HELLO again", now)

    def _check_credit(self, now: float) -> None:
        """A front that keeps pinging but acknowledges nothing for CREDIT_TIMEOUT (a bug, ACKs lost) would hold
        its clients for ever: give it its credit back (logged), so at worst it is sent what an old front is."""
        for peer in self.peers.values():
            if peer.gate.closed and now - peer.held_since > CREDIT_TIMEOUT:
                self._refuse("credit", now, "! %s %s acknowledged nothing for %.0f s with %d SENDS in flight: "
                             "giving its credit back", peer.role, _show(peer.identity), now - peer.held_since,
                             peer.in_flight)
                peer.in_flight = 0
                peer.held_since = now
                self.store.release(peer.gate)

    def _drop_peer(self, peer: Peer, why: str, now: float) -> None:
        self._refuse("gone", now, "%s %s gone (%s): closing its %d sessions", peer.role, _show(peer.identity),
                     why, len(peer.sessions), limit=self.arrivals)
        for session in peer.sessions.values():
            self.store.close(session)
        peer.sessions.clear()

    # ---- output -------------------------------------------------------------------------------

    def _flush(self) -> None:
        """Everything the store has to send: one SENDS message per peer with (frame, sessions) pairs,
        in the store's order; the peer writes each frame to each of its listed sessions."""
        self._unflushed = 0
        now = self.store.now
        delta = self.store.productions_total - self._productions_seen
        if delta:
            self.counters.add("productions", delta, now)
            self._productions_seen = self.store.productions_total
        delta = self.store.unchanged_total - self._unchanged_seen
        if delta:
            self.counters.add("unchanged", delta, now)
            self._unchanged_seen = self.store.unchanged_total
        while self.store.has_output:
            internal: list[bytes] = []
            by_peer: dict[bytes, list[bytes]] = {}  # identity -> [frame, packed sids, frame, ...]
            deliveries = size = 0
            out_sizes, out_recipients = self.statistics.out_sizes.append, self.statistics.out_recipients.append
            for frame, sessions in self.store.take_outbox():
                if len(sessions) == 1:  # an answer to one session (most entries): no grouping to do
                    address = sessions[0].address
                    if address is INTERNAL:
                        internal.append(frame)
                        continue
                    parts = by_peer.get(address[0])
                    if parts is None:
                        parts = by_peer[address[0]] = []
                    parts += (frame, address[1])
                    recipients = 1
                else:
                    recipients = self._group(frame, sessions, by_peer, internal)
                deliveries += recipients
                size += len(frame) * recipients
                if recipients and frame.startswith(UPDATE_PREFIX):  # seapig counts object-update frames
                    out_sizes(len(frame))
                    out_recipients(recipients)
            for identity, parts in by_peer.items():
                self._send_to_peer(identity, parts)
                peer = self.peers.get(identity)
                if peer is not None and peer.credit:
                    peer.in_flight += (len(parts) + 2 * MAX_PAIRS - 1) // (2 * MAX_PAIRS)  # SENDS messages
                    if peer.in_flight >= peer.credit:
                        if not peer.gate.closed:
                            peer.held_since = time.monotonic()
                        self.store.hold(peer.gate)  # O(1): later updates wait in the gate, latest wins
            self.counters.traffic("out", deliveries, size, now)
            for frame in internal:  # the introspection session answers production orders at once
                self.introspection.on_frame(frame, now)

    @staticmethod
    def _group(frame: bytes, sessions: Sequence[Session], by_peer: dict[bytes, list[bytes]],
               internal: list[bytes]) -> int:
        """Add one (frame, packed sids) pair per peer among ``sessions`` to ``by_peer``; the count of sids."""
        sids_of: dict[bytes, list[bytes]] = {}
        for session in sessions:
            if session.address is INTERNAL:
                internal.append(frame)
                continue
            identity, sid = session.address
            sids_of.setdefault(identity, []).append(sid)
        recipients = 0
        for identity, sids in sids_of.items():
            by_peer.setdefault(identity, []).extend((frame, wire.pack_sids(sids)))
            recipients += len(sids)
        return recipients

    def _send_to_peer(self, identity: bytes, parts: list[bytes]) -> None:
        """Send [SENDS, frame, sids, frame, sids, ...] in messages of at most MAX_PAIRS pairs; to a peer that
        reads packed pairs, each message's pairs packed in one part (one part to receive, not 2 per pair)."""
        peer = self.peers.get(identity)
        if peer is None:
            return
        send = self.sock.send  # parts sent one by one with int flags (see _MORE_NOBLOCK)
        try:
            for start in range(0, len(parts), 2 * MAX_PAIRS):
                chunk = parts[start:start + 2 * MAX_PAIRS]
                if peer.packed and len(chunk) > 2:
                    chunk = [wire.PACKED, wire.pack_flat(chunk)]
                send(identity, _MORE_NOBLOCK)
                send(wire.SENDS, _MORE_NOBLOCK)
                for part in chunk[:-1]:
                    send(part, _MORE_NOBLOCK)
                send(chunk[-1], _NOBLOCK)
        except zmq.ZMQError as exc:
            log.warning("! could not send to %r: %s", identity, exc)

    def _refuse(self, kind: str, now: float, fmt: str, *args: object, level: int = logging.WARNING,
                limit: LogLimit | None = None) -> None:
        """Log what was refused (or happened to a peer) and why, within the budget of its kind."""
        suppressed = (limit or self.refusals).allow(kind, now)
        if suppressed is None:
            return
        if suppressed:
            fmt += " (%d more like this not logged)"
            args = (*args, suppressed)
        log.log(level, fmt, *args)

    def _peer_name(self, session: Session) -> str:
        if session.address is INTERNAL:
            return "router"
        return session.address[0].decode(errors="replace")


def serve(bind: str, make_store: Callable[..., ObjectStore] = ObjectStore, secret: str = "", metrics_port: int = 0,
          metrics_host: str = "127.0.0.1") -> None:
    """Run a router around the store ``make_store`` builds (see Router) until SIGINT/SIGTERM (with
    Prometheus metrics if a port is given)."""
    router = Router(bind, make_store, secret=secret)
    if metrics_port:
        from router.metrics import serve_metrics

        router.metrics = serve_metrics(router, metrics_port, metrics_host)
        log.info("= Prometheus metrics on http://%s:%d/metrics", metrics_host, metrics_port)
    if not secret and not _is_loopback(bind):
        log.warning("! listening on %s with --insecure (no cluster secret): anyone who reaches this address can "
                    "join as a worker or a front. Drop --insecure (or set SEASYNC_SECRET on every process).", bind)
    signal.signal(signal.SIGTERM, router.stop)
    signal.signal(signal.SIGINT, router.stop)
    router.run()


def _credit(value: object) -> int:
    """A HELLO's "credit": a positive int (bounded by wire.MAX_CREDIT); anything else means no credit."""
    if type(value) is not int or value <= 0:
        return 0
    return min(value, wire.MAX_CREDIT)


def _is_loopback(address: str) -> bool:
    host = address.split("://", 1)[-1].rsplit(":", 1)[0]
    return address.startswith(("ipc://", "inproc://")) or host in ("127.0.0.1", "localhost", "[::1]", "::1")


def _show(raw: bytes) -> str:
    """Peer-controlled bytes (an identity, a session id, an envelope kind) cut short for a log line."""
    return repr(raw[:48])[1:] + ("..." if len(raw) > 48 else "")
