"""The worker's side of the ZeroMQ envelope (common/wire.py): HELLO, one session, liveness.

``RouterLink`` owns the DEALER socket. The worker loop feeds it every multipart message from the
router (``on_message``) and calls ``tick`` on timeouts; both return events:

- ``Ready``: a new session is open (after WELCOME, or after a DROP): register everything again;
- ``Lost``: the session is gone (router restarted, RESET, silence, DROP): orders received on it are
  void, and their answers must not be sent;
- ``Frame``: one seapig JSON frame the router sent to our session (a SENDS message carries any
  number of them, yielded in order).

A restart of the router is seen as RESET, a WELCOME/PONG with another epoch, or no traffic for
PEER_TIMEOUT; each leads to a new HELLO and a new session. Sends never block: with IMMEDIATE set,
nothing is queued while the router is unreachable (a HELLO queued for minutes would be replayed
to a later router), and a failed send is simply retried by the protocol (HELLO) or lost (the router
requeues what a dead session was producing).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

import zmq

from common import codec, wire

log = logging.getLogger("worker.link")

# Plain ints: pyzmq's send_multipart computes ``SNDMORE | flags`` per part with enum.Flag (slow).
_MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
_NOBLOCK = int(zmq.NOBLOCK)
_POLLIN = int(zmq.POLLIN)

HELLO_RETRY = 0.1
"""Seconds between HELLO attempts while no connection to the router exists."""
REOPEN_DELAY = 1.0
"""Seconds to wait before opening a new session after the router dropped ours."""


@dataclass(frozen=True, slots=True)
class Ready:
    sid: bytes


@dataclass(frozen=True, slots=True)
class Lost:
    reason: str


@dataclass(frozen=True, slots=True)
class Frame:
    raw: bytes


Event = Ready | Lost | Frame

CONNECTING, OPEN, DROPPED = "connecting", "open", "dropped"


class RouterLink:
    """One DEALER to the router carrying one producer session (a worker's, or the notifier's)."""

    def __init__(self, ctx: zmq.Context, url: str, name: str, role: str = "worker") -> None:
        self.url = url
        self.socket = ctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, wire.peer_identity(role))
        self.socket.setsockopt(zmq.IMMEDIATE, 1)
        self.socket.setsockopt(zmq.LINGER, 0)
        # ZMTP heartbeats notice a router host that vanished without closing TCP.
        self.socket.setsockopt(zmq.HEARTBEAT_IVL, int(wire.HEARTBEAT_INTERVAL * 2000))
        self.socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(wire.PEER_TIMEOUT * 1000))
        self._hello = [wire.HELLO, codec.dumps({"role": role, "name": name, "pid": os.getpid(),
                                                "host": socket.gethostname()})]
        self.state = CONNECTING
        self.epoch: bytes | None = None
        self._sid_serial = 1
        self.sid = b"1"
        self._last_rx = 0.0
        self._next_hello = 0.0
        self._next_ping = 0.0
        self._reopen_at = 0.0

    @property
    def is_open(self) -> bool:
        return self.state == OPEN

    def start(self, now: float) -> None:
        self.socket.connect(self.url)
        log.info("= connecting to router %s as %s", self.url, self.socket.getsockopt(zmq.IDENTITY).decode())
        self._send_hello(now)

    def send(self, raw: bytes) -> bool:
        """Send one seapig frame on our session; False if it could not be sent."""
        if self.state != OPEN:
            return False
        return self._send([wire.MSG, self.sid, raw])

    def send_many(self, raws: list[bytes]) -> bool:
        """Send seapig frames of our session, in order, in ONE message ``[MSG, sid, raw, sid, raw...]``
        (one wake-up of the router for the batch); False if they could not be sent."""
        if self.state != OPEN or not raws:
            return False
        frames = [wire.MSG]
        sid = self.sid
        for raw in raws:
            frames.append(sid)
            frames.append(raw)
        return self._send(frames)

    def close(self) -> None:
        """End the session (the router unregisters everything) and close the socket."""
        if self.state == OPEN:
            self._send([wire.CLOSE, self.sid])
            self.socket.close(linger=1000)
        else:
            self.socket.close(linger=0)

    def deadline(self) -> float:
        """When ``tick`` next has something to do."""
        if self.state == CONNECTING:
            return self._next_hello
        deadline = min(self._next_ping, self._last_rx + wire.PEER_TIMEOUT)
        if self.state == DROPPED:
            return min(deadline, self._reopen_at)
        return deadline

    def tick(self, now: float) -> list[Event]:
        """Heartbeats, HELLO retries, router silence, delayed re-opens."""
        if self.state == CONNECTING:
            if now >= self._next_hello:
                self._send_hello(now)
            return []
        if now - self._last_rx > wire.PEER_TIMEOUT:
            return self._restart(now, f"no traffic from the router for {wire.PEER_TIMEOUT} s")
        events: list[Event] = []
        if self.state == DROPPED and now >= self._reopen_at:
            events.append(self._open())
        if now >= self._next_ping:
            self._send([wire.PING])
            self._next_ping = now + wire.HEARTBEAT_INTERVAL
        return events

    def receive(self, now: float) -> list[Event]:
        """Read every message waiting on the socket (never blocks) and return what happened."""
        events: list[Event] = []
        sock = self.socket
        # Asking EVENTS is cheaper than the zmq.Again exception that ends a recv loop.
        while sock.getsockopt(zmq.EVENTS) & _POLLIN:
            try:
                frames = sock.recv_multipart(_NOBLOCK)
            except zmq.Again:
                break
            if frames:
                events.extend(self.on_message(frames, now))
        return events

    def on_message(self, frames: list[bytes], now: float) -> list[Event]:
        """Handle one message from the router."""
        self._last_rx = now
        kind = frames[0]
        if kind == wire.SENDS:
            return self._frames(wire.pairs(frames))
        if kind == wire.SEND:
            if len(frames) < 3:
                return []
            return self._frames([(frames[1], wire.pack_sids(frames[2:]))])
        if kind == wire.PONG:
            epoch = frames[1] if len(frames) > 1 else None
            if self.state != CONNECTING and epoch != self.epoch:
                return self._restart(now, f"router epoch changed ({_show(self.epoch)} -> {_show(epoch)})")
            return []
        if kind == wire.WELCOME:
            return self._welcome(frames[1] if len(frames) > 1 else b"", now)
        if kind == wire.RESET:
            return self._restart(now, "the router does not know us (RESET)")
        if kind == wire.DROP:
            sid = frames[1] if len(frames) > 1 else b""
            reason = frames[2].decode(errors="replace") if len(frames) > 2 else ""
            if self.state == OPEN and sid == self.sid:
                log.warning("! the router dropped our session: %s; reopening in %.0f s", reason, REOPEN_DELAY)
                self.state = DROPPED
                self._reopen_at = now + REOPEN_DELAY
                return [Lost(f"dropped by the router: {reason}")]
            return []
        log.warning("! unknown message from the router: %r", frames[:1])
        return []

    def _frames(self, pairs: list[tuple[bytes, bytes]]) -> list[Event]:
        """A Frame event for each (frame, packed sids) pair that names our session, in order."""
        if self.state != OPEN:
            return []
        sid = self.sid
        events: list[Event] = []
        for frame, packed in pairs:
            if packed == sid or sid in wire.unpack_sids(packed):
                events.append(Frame(frame))
            else:
                log.debug("< frame for a session we do not have: %r", packed)
        return events

    def _welcome(self, epoch: bytes, now: float) -> list[Event]:
        if self.state != CONNECTING and epoch == self.epoch:
            return []  # the answer to a HELLO we repeated
        events: list[Event] = []
        if self.state == OPEN:
            events.append(Lost(f"router epoch changed ({_show(self.epoch)} -> {_show(epoch)})"))
        log.info("= welcomed by the router (epoch %s)", _show(epoch))
        self.epoch = epoch
        self._next_ping = now
        events.append(self._open())
        return events

    def _open(self) -> Ready:
        if self.state == DROPPED:
            self._sid_serial += 1
            self.sid = str(self._sid_serial).encode()
        self.state = OPEN
        self._send([wire.OPEN, self.sid])
        return Ready(self.sid)

    def _restart(self, now: float, reason: str) -> list[Event]:
        log.warning("! %s: saying HELLO again", reason)
        was_open = self.state == OPEN
        self._send_hello(now)
        return [Lost(reason)] if was_open else []

    def _send_hello(self, now: float) -> None:
        self.state = CONNECTING
        sent = self._send(self._hello)
        # Sent: give the router PEER_TIMEOUT to answer. Not sent: no connection yet, retry soon.
        self._next_hello = now + (wire.PEER_TIMEOUT if sent else HELLO_RETRY)

    def _send(self, frames: list[bytes]) -> bool:
        send = self.socket.send
        try:
            # The first part decides (ZeroMQ queues a multipart message whole or not at all).
            for part in frames[:-1]:
                send(part, _MORE_NOBLOCK)
            send(frames[-1], _NOBLOCK)
            return True
        except zmq.Again:
            return False


def _show(epoch: bytes | None) -> str:
    return "none" if epoch is None else epoch.decode(errors="replace")
