"""The peer side of the ZeroMQ envelope (common/wire.py), once, as a pure state machine.

Fronts, workers and the notifier all join the router the same way: HELLO until a WELCOME names the
router's incarnation (its epoch), PING every HEARTBEAT_INTERVAL, and start over (HELLO again, every
session void) when the router says RESET, when a WELCOME or PONG names another epoch, or when it has
been silent for PEER_TIMEOUT. Those decisions live here, and only here, so that a pause or partition
heals the same way for every peer; the processes are thin socket glue around it.

Sans-I/O: methods take the router's messages (the frames after the routing id) and the time (``now``,
monotonic seconds) and return events, in order; no socket, no clock, no randomness (the jitter of the
HELLO retries comes from an injected ``rand``). It logs through the logger it is given.

- ``Send(frames)``: an envelope for the router (HELLO, PING, OPEN, MSG, CLOSE), to send now, in order;
- ``Welcomed(epoch)``: joined (a front may accept websockets; a session may be opened);
- ``Lost(reason)``: that router incarnation is gone for us: every session is void;
- ``Sends(pairs)``: the (frame, packed sids) pairs of a SENDS, to write in order;
- ``Dropped(sid, reason)``: the router closed one session.

``Peer`` is the envelope (a front multiplexes its websockets over it); ``OneSession`` adds the one
producer session of a worker or the notifier (OPEN once welcomed, reopened after a DROP) and turns
SENDS into ``Frame`` events for that session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common import codec
from common.wire import (
    CLOSE,
    DROP,
    HEARTBEAT_INTERVAL,
    HELLO,
    MSG,
    PACKED,
    OPEN,
    PEER_TIMEOUT,
    PING,
    PONG,
    RESET,
    SENDS,
    WELCOME,
    MalformedPack,
    pack_flat,
    pairs,
    unpack_sids,
)

HELLO_RETRY_MIN = 0.1
"""Seconds before the first HELLO retry; each retry waits twice as long, up to HELLO_RETRY_MAX."""
HELLO_RETRY_MAX = 1.0
"""The longest wait between two HELLOs: a router back after a long pause is rejoined within about this."""
NO_ANSWER_WARN = 10.0
"""Seconds without a WELCOME before the joining side says so (then again after twice as long, ...)."""
NO_ANSWER_WARN_MAX = 300.0
REOPEN_DELAY = 1.0
"""Seconds before a session the router dropped is opened again (``OneSession``)."""


def backoff(attempt: int, rand: float, base: float = HELLO_RETRY_MIN, cap: float = HELLO_RETRY_MAX) -> float:
    """Seconds to wait before retry ``attempt`` (0 for the first): ``base * 2**attempt`` capped at ``cap``,
    scaled by a jitter in [0.5, 1) from ``rand`` in [0, 1) so that peers cut off together do not retry in
    lock-step. Pure: the caller draws ``rand``."""
    delay = min(cap, base * 2.0 ** min(attempt, 30))
    return delay * (0.5 + 0.5 * min(max(rand, 0.0), 1.0))


@dataclass(frozen=True, slots=True)
class Send:
    frames: list[bytes]


@dataclass(frozen=True, slots=True)
class Welcomed:
    epoch: bytes


@dataclass(frozen=True, slots=True)
class Lost:
    reason: str


@dataclass(frozen=True, slots=True)
class Sends:
    pairs: list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Dropped:
    sid: bytes
    reason: bytes


@dataclass(frozen=True, slots=True)
class Ready:
    """``OneSession``: a new session is open: register everything again."""
    sid: bytes


@dataclass(frozen=True, slots=True)
class Frame:
    """``OneSession``: one seapig frame the router sent to our session."""
    raw: bytes


Event = Send | Welcomed | Lost | Sends | Dropped | Ready | Frame

CONNECTING, WELCOMED = "connecting", "welcomed"


def _show(epoch: bytes | None) -> str:
    return "none" if epoch is None else epoch[:64].decode(errors="replace")


class Peer:
    """The envelope's state for one DEALER: joining, heartbeats, and every way of losing the router."""

    def __init__(self, info: dict[str, Any], url: str, log: logging.Logger | None = None,
                 rand: Callable[[], float] = lambda: 0.5, timeout: float = PEER_TIMEOUT,
                 interval: float = HEARTBEAT_INTERVAL) -> None:
        self.url = url
        self.log = log or logging.getLogger("seasync.peer")
        self.timeout = timeout
        self.interval = interval
        self._rand = rand
        self._hello = [HELLO, codec.dumps({**info, "packed": True})]  # it reads packed SENDS (common/wire.py)
        self.router_packs = False  # a packed SENDS came: this router reads packed MSGs too (see pack_msg)
        self.state = CONNECTING
        self.epoch: bytes | None = None
        self._last_rx = 0.0
        self._next_ping = 0.0
        self._next_hello = 0.0
        self._hellos = 0               # HELLOs sent since we started joining
        self._joining_since = 0.0
        self._next_warn = 0.0

    @property
    def welcomed(self) -> bool:
        return self.state == WELCOMED

    def start(self, now: float) -> list[Event]:
        """The first HELLO."""
        return self._join(now)

    def deadline(self) -> float:
        """When ``tick`` next has something to do."""
        if self.state == CONNECTING:
            return min(self._next_hello, self._next_warn)
        return min(self._next_ping, self._last_rx + self.timeout)

    def tick(self, now: float) -> list[Event]:
        """HELLO retries (and the no-answer warning) while joining; PINGs and the silence check once joined."""
        if self.state == CONNECTING:
            if now >= self._next_warn:
                waited = now - self._joining_since
                self.log.warning("! no answer from the router at %s after %.0f s: is it running, and does it "
                                 "hold the same cluster secret?", self.url, waited)
                self._next_warn = now + min(NO_ANSWER_WARN_MAX, max(NO_ANSWER_WARN, waited))
            if now >= self._next_hello:
                return self._hello_now(now)
            return []
        if now - self._last_rx >= self.timeout:
            return self._restart(now, f"no traffic from the router at {self.url} for {now - self._last_rx:.1f} s")
        if now >= self._next_ping:
            self._next_ping = now + self.interval
            return [Send([PING])]
        return []

    def on_message(self, frames: list[bytes], now: float) -> list[Event]:
        """One message from the router. Malformed ones are logged and ignored, never fatal."""
        kind = frames[0] if frames else b""
        n = len(frames)
        if kind == SENDS and n >= 3 and n % 2:
            if self.state != WELCOMED:
                return []  # for sessions of an incarnation we already gave up
            self._last_rx = now
            if PACKED in frames[1::2]:
                self.router_packs = True
            try:
                return [Sends(pairs(frames))]
            except MalformedPack as exc:  # (still a SENDS: a front acknowledges it, or its credit leaks)
                self.log.warning("! ignoring the frames of a SENDS from the router: %s", exc)
                return [Sends([])]
        if kind == PONG and n == 2:
            if self.state != WELCOMED:
                return []
            self._last_rx = now
            if frames[1] != self.epoch:
                return self._restart(now, f"router epoch changed ({_show(self.epoch)} -> {_show(frames[1])})")
            return []
        if kind == WELCOME and n == 2:
            return self._welcome(frames[1], now)
        if kind == RESET and n == 1:
            if self.state != WELCOMED:
                return []  # an envelope sent before our HELLO was answered: the HELLO is on its way
            return self._restart(now, "the router does not know us (RESET)")
        if kind == DROP and n in (2, 3):
            if self.state != WELCOMED:
                return []
            self._last_rx = now
            return [Dropped(frames[1], frames[2] if n == 3 else b"")]
        self.log.warning("! ignoring a malformed message from the router: %.200r", frames[:4])
        return []

    def _welcome(self, epoch: bytes, now: float) -> list[Event]:
        if self.state == WELCOMED:
            if epoch == self.epoch:
                self._last_rx = now
                return []  # the answer to a HELLO we repeated
            # a HELLO of ours was answered by another incarnation: which of our envelopes it saw is
            # unknown, so start over cleanly
            return self._restart(now, f"router epoch changed ({_show(self.epoch)} -> {_show(epoch)})")
        self.state = WELCOMED
        self.epoch = epoch
        self._last_rx = now
        self._next_ping = now + self.interval
        self.log.info("= welcomed by the router at %s (epoch %s)", self.url, _show(epoch))
        return [Welcomed(epoch)]

    def _restart(self, now: float, reason: str) -> list[Event]:
        self.log.warning("! %s: saying HELLO again", reason)
        return [Lost(reason), *self._join(now)]

    def pack_msg(self, frames: list[bytes]) -> list[bytes]:
        """A MSG envelope ``[MSG, sid, raw, ...]`` as ``[MSG, PACKED, pack_pairs(...)]`` when this router reads
        packed pairs and there are several (one part for the router to receive, not two per frame)."""
        if not self.router_packs or len(frames) <= 3:
            return frames
        return [frames[0], PACKED, pack_flat(frames[1:])]

    def _join(self, now: float) -> list[Event]:
        self.state = CONNECTING
        self.router_packs = False  # maybe another router: it says again by packing a SENDS
        self._hellos = 0
        self._joining_since = now
        self._next_warn = now + NO_ANSWER_WARN
        return self._hello_now(now)

    def _hello_now(self, now: float) -> list[Event]:
        self._next_hello = now + backoff(self._hellos, self._rand())
        self._hellos += 1
        return [Send(self._hello)]


class OneSession:
    """A ``Peer`` carrying one producer session (a worker's, or the notifier's).

    Events out: ``Send``, ``Ready`` (a session is open: register again), ``Lost`` (the session is gone:
    orders received on it are void and their answers must not be sent), ``Frame`` (one frame for it).
    """

    def __init__(self, peer: Peer, reopen_delay: float = REOPEN_DELAY) -> None:
        self.peer = peer
        self.reopen_delay = reopen_delay
        self.sid = b"1"
        self._serial = 0
        self.is_open = False
        self._reopen_at: float | None = None  # set while a dropped session waits to be opened again

    def start(self, now: float) -> list[Event]:
        return self.peer.start(now)

    def deadline(self) -> float:
        deadline = self.peer.deadline()
        if self._reopen_at is None or not self.peer.welcomed:
            return deadline  # (not welcomed: the session is opened on WELCOME, not at _reopen_at)
        return min(deadline, self._reopen_at)

    def tick(self, now: float) -> list[Event]:
        events = self._session(self.peer.tick(now))
        if self._reopen_at is not None and now >= self._reopen_at and self.peer.welcomed:
            events.extend(self._open())
        return events

    def on_message(self, frames: list[bytes], now: float) -> list[Event]:
        return self._session(self.peer.on_message(frames, now), now)

    def messages(self, raws: list[bytes]) -> list[bytes] | None:
        """The envelope ``[MSG, sid, raw, sid, raw...]`` for frames of our session (one wake-up of the router
        for the batch), or None while no session is open (the frames are lost: the router requeues)."""
        if not self.is_open or not raws:
            return None
        frames = [MSG]
        sid = self.sid
        for raw in raws:
            frames.append(sid)
            frames.append(raw)
        return self.peer.pack_msg(frames)

    def close(self) -> list[bytes] | None:
        """The CLOSE envelope that ends our session (the router unregisters everything), if one is open."""
        if not self.is_open:
            return None
        self.is_open = False
        return [CLOSE, self.sid]

    def _session(self, events: list[Event], now: float = 0.0) -> list[Event]:
        out: list[Event] = []
        for event in events:
            if isinstance(event, Sends):
                if self.is_open:
                    sid = self.sid
                    for frame, packed in event.pairs:
                        if packed == sid or sid in unpack_sids(packed):
                            out.append(Frame(frame))
            elif isinstance(event, Welcomed):
                out.extend(self._open())
            elif isinstance(event, Lost):
                if self.is_open:
                    self.is_open = False
                    out.append(event)
            elif isinstance(event, Dropped):
                if self.is_open and event.sid == self.sid:
                    reason = event.reason[:200].decode(errors="replace")
                    self.peer.log.warning("! the router dropped our session: %s; reopening in %.0f s",
                                          reason, self.reopen_delay)
                    self.is_open = False
                    self._reopen_at = now + self.reopen_delay
                    out.append(Lost(f"dropped by the router: {reason}"))
            else:
                out.append(event)
        return out

    def _open(self) -> list[Event]:
        if self._reopen_at is not None or self._serial == 0:
            # after a DROP, a new id: frames still in flight for the dropped session are not ours (a new
            # router incarnation knows no session, the id may stay)
            self._serial += 1
            self.sid = str(self._serial).encode()
        self._reopen_at = None
        self.is_open = True
        return [Send([OPEN, self.sid]), Ready(self.sid)]
