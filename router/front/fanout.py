"""Fan-out: router frames written to websockets, and the slow-consumer policy (pure parts first).

Server-to-client frames are unmasked, so the complete websocket frame (header + payload) is the
same bytes for every recipient: ``text_frame`` builds it once per frame, ``FanOut`` writes it
straight to each connection's transport, one write per connection and burst. ``Backpressure``
decides, without I/O, when a connection is paused, resumed or closed as too slow.
"""

from __future__ import annotations

import enum
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from websockets.protocol import State

from router.front.connection import Conn

# ---------------------------------------------------------------- pure helpers


def text_frame(payload: bytes) -> bytes:
    """The complete server-to-client websocket text frame (FIN, unmasked, no extension) for ``payload``.

    The same bytes are valid on every connection negotiated without extensions (``compression=None``).
    """
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


class Congestion(enum.Enum):
    """What the front does about one connection's write buffer."""

    NONE = 0
    PAUSE = 1
    RESUME = 2
    CLOSE = 3


@dataclass(frozen=True)
class Backpressure:
    """The slow-consumer policy: thresholds only, no I/O (``decide`` is pure)."""

    pause_above: int
    resume_below: int
    max_buffer: int
    timeout: float

    def decide(self, buffered: int, paused_since: float | None, now: float) -> Congestion:
        """The action for a connection holding ``buffered`` unsent bytes, paused since ``paused_since``."""
        if buffered > self.max_buffer:
            return Congestion.CLOSE
        if paused_since is None:
            return Congestion.PAUSE if buffered > self.pause_above else Congestion.NONE
        if buffered < self.resume_below:
            return Congestion.RESUME
        if now - paused_since > self.timeout:
            return Congestion.CLOSE
        return Congestion.NONE



# ---------------------------------------------------------------- fan-out


class FanOut:
    """Writes router frames to connections: one encoding per frame, one write per connection and burst.

    Why writing to the transport directly is safe: everything here and in the connection's protocol
    runs on the event loop thread, and each writes whole frames (router/front/connection.py), so
    frames never interleave mid-frame. A frame is written only while the protocol is OPEN: once a
    close frame is queued (CLOSING) nothing more is written after it. The front never sends
    fragmented messages itself.
    """

    def __init__(self, sessions: dict[bytes, Conn], policy: Backpressure,
                 congested: Callable[[Conn, Congestion], None]) -> None:
        self._sessions = sessions
        self._policy = policy
        self._congested = congested
        self._burst: list[tuple[bytes, list[bytes]]] = []
        self._watch = min(policy.pause_above, policy.max_buffer)  # a buffer above this is looked at
        self.deliveries = 0  # frames written to connections (Prometheus: messages out)
        self.bytes_out = 0

    def add(self, payload: bytes, sids: list[bytes]) -> None:
        """Queue one SEND of the current burst (written by ``flush``)."""
        self._burst.append((payload, sids))

    def flush(self) -> None:
        """Write the burst: a lone SEND straight to every transport, several coalesced per connection."""
        burst, self._burst = self._burst, []
        if len(burst) == 1:
            self._write_one(text_frame(burst[0][0]), burst[0][1])
        elif burst:
            self._write_many(burst)

    def _write_one(self, data: bytes, sids: Iterable[bytes]) -> None:
        get = self._sessions.get
        watch = self._watch
        written = 0
        for sid in sids:
            conn = get(sid)
            if conn is None or conn.protocol.state is not State.OPEN:
                continue
            transport = conn.transport
            transport.write(data)
            written += 1
            if transport.get_write_buffer_size() > watch:
                self.check(conn)
        self.deliveries += written
        self.bytes_out += written * len(data)

    def _write_many(self, burst: list[tuple[bytes, list[bytes]]]) -> None:
        get = self._sessions.get
        touched: list[Conn] = []
        for payload, sids in burst:
            data = text_frame(payload)
            for sid in sids:
                conn = get(sid)
                if conn is None:
                    continue
                if not conn.pending:
                    touched.append(conn)
                conn.pending.append(data)
        watch = self._watch
        written = 0
        for conn in touched:
            frames, conn.pending = conn.pending, []
            if conn.protocol.state is not State.OPEN:
                continue
            transport = conn.transport
            data = frames[0] if len(frames) == 1 else b"".join(frames)
            transport.write(data)
            written += len(frames)
            self.bytes_out += len(data)
            if transport.get_write_buffer_size() > watch:
                self.check(conn)
        self.deliveries += written

    def check(self, conn: Conn) -> None:
        """Apply the slow-consumer policy to a connection whose write buffer is above the watch mark."""
        action = self._policy.decide(conn.transport.get_write_buffer_size(), conn.paused_since,
                                     time.monotonic())
        if action is not Congestion.NONE:
            self._congested(conn, action)
