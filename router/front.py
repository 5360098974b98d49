"""The websocket front: one session per websocket, frames relayed verbatim to and from the router.

The front keeps no object state. It multiplexes its websocket sessions over one ZeroMQ DEALER
(envelope in ``common.wire``): a frame a client sends is relayed untouched (the router parses and
validates) as a (sid, bytes) pair of ``[MSG, sid, bytes, sid, bytes, ...]``, one such message for
all the frames received in one event-loop iteration (see ``_post``), and each (frame, sids) pair of ``[SENDS, frame, sids, ...]`` from the
router is written to each listed session, pairs in order. When the router restarts or vanishes (the
decisions are ``common.peer.Peer``'s, shared with the workers), every websocket is closed with 1012 so
that clients reconnect and resync with the versions they already hold.

Fan-out (see ``FanOut``): server-to-client frames are unmasked, so the complete websocket frame
(header + payload) is the same bytes for every recipient. It is built once per SEND and written
straight to each connection's transport; ``websockets.broadcast`` instead builds a Frame object,
serializes it and walks the protocol's write queue once per connection (profiled: about 2/3 of its
per-delivery CPU). Messages the router sends in one burst are coalesced into one write per
connection. Pings, pongs and the closing handshake stay with websockets.

Slow consumers (see ``Backpressure``): a connection whose write buffer passes a high-water mark is
reported to the router with ``[PAUSE, sid]``; the router holds its updates and, on ``[RESUME, sid]``
(sent once the buffer drains below the low-water mark), sends only the latest state of what changed.
Past a hard limit (buffer size or time paused) the connection is closed with 1008 "consumer too
slow", so the front's memory stays bounded and the other clients never wait for it.

Plain HTTP GETs on the same port (anything that is not a websocket upgrade) are answered with the
files of ``router/static/``: ``/`` is the viewer page, ``/seasync.js`` the browser client.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import ipaddress
import itertools
import logging
import os
import random
import socket
import struct
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import zmq
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from common import codec
from common.peer import Dropped, Event, Lost, Peer, Send, Sends, Welcomed
from common.wire import (
    CLOSE, DEFAULT_ROUTER, HEARTBEAT_INTERVAL, MSG, OPEN, PAUSE, RESUME, RefusalLog, peer_identity,
    secure_peer, unpack_sids,
)

log = logging.getLogger("seasync.front")

WELCOME_WAIT = 5.0        # a websocket opened while the router is away waits this long, then 1013
DRAIN_BATCH = 256         # router messages handled per wake-up (ecosystem.md §4)
CLOSE_TIMEOUT = 3.0       # closing handshake; keeps shutdown under honcho's 5 s SIGKILL
STOP_TIMEOUT = 4.0        # how long shutdown waits for websocket handlers to finish
CONGESTION_CHECK = 0.05   # how often paused connections are checked for drain or timeout
SLOW_CLOSE_GRACE = 30.0   # a slow consumer's close frame waits behind its buffer this long, then abort

CLOSE_POLICY = 1008       # the router dropped the session, or the client reads too slowly
CLOSE_RESTART = 1012      # the router restarted: reconnect and resync
CLOSE_TRY_AGAIN = 1013    # no router yet, or too many connections
CLOSE_INTERNAL = 1011     # keepalive ping timeout (as websockets' own keepalive)
CLOSE_GOING_AWAY = 1001   # the front stops
SLOW_REASON = "consumer too slow"

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class FrontConfig:
    """Where the front listens, which router it serves, and its limits."""

    router: str = DEFAULT_ROUTER
    host: str = "127.0.0.1"
    port: int = 3001
    max_frame: int = 1 << 20
    secret: str = ""
    max_connections: int = 10_000
    pause_above: int = 256 << 10     # write buffer (bytes) above which the router is told to PAUSE
    resume_below: int = 64 << 10     # ... and below which it is told to RESUME
    slow_max_buffer: int = 16 << 20  # a write buffer above this closes the connection (1008)
    slow_timeout: float = 30.0       # so does being paused for longer than this (seconds)
    send_buffer: int = 0             # SO_SNDBUF of each websocket (0: the kernel's autotuning)
    ping_interval: float = 10.0      # like seapig: ping every 10 s ...
    ping_timeout: float = 50.0       # ... and close a client whose pong is this late (60 s after its ping)
    allowed_origins: tuple[str, ...] = ()  # browser origins beyond the front's own and loopback ones ("*": any)
    allowed_hosts: tuple[str, ...] = ()    # Host names beyond --host, loopback and this machine's ("*": any)


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


def listen_backlog(max_connections: int) -> int:
    """Room in the listen queue for every client reconnecting at once (the kernel caps it at
    net.core.somaxconn). asyncio's default of 100 overflowed when 2,000 clients came back together:
    each SYN dropped waited out TCP's 1 s retransmission timer (1 s, then 3 s, per client)."""
    return max(100, min(max_connections, 65535))


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


STATIC_DIR = Path(__file__).with_name("static")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}


def static_file(path: str, root: Path = STATIC_DIR) -> Path | None:
    """The file of ``root`` that a request path names, or None (a 404).

    ``/`` is ``index.html``; the query string is ignored. The directory is flat: a name with a
    slash, a backslash or a leading dot is refused, so no path can leave ``root``.
    """
    path = urllib.parse.unquote(path.split("?", 1)[0].split("#", 1)[0])
    name = path[1:] if path.startswith("/") else path
    name = name or "index.html"
    if "/" in name or "\\" in name or "\0" in name or name.startswith("."):
        return None
    file = root / name
    if file.suffix not in CONTENT_TYPES or not file.is_file():
        return None
    return file


def _plain_response(status: int, reason: str, body: bytes, kind: str, **extra: str) -> Response:
    headers = Headers([
        ("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-cache"),
        ("X-Content-Type-Options", "nosniff"), ("Connection", "close"), *extra.items(),
    ])
    return Response(status, reason, headers, body)


def http_response(request: Request) -> Response | None:
    """``process_request`` hook: None lets a websocket upgrade through; a plain GET gets a file or a 404."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None
    file = static_file(request.path)
    try:
        body = file.read_bytes() if file is not None else None
    except OSError as exc:
        log.warning("cannot read %s: %s", file, exc)
        body = None
    log.debug("http GET %s -> %d", request.path, 200 if body is not None else 404)
    if file is None or body is None:
        return _plain_response(404, "Not Found", b"not found\n", "text/plain; charset=utf-8")
    return _plain_response(200, "OK", body, CONTENT_TYPES[file.suffix])


def busy_response() -> Response:
    """The answer to a connection beyond --max-connections: 503, retry later."""
    return _plain_response(503, "Service Unavailable", b"too many connections, try again later\n",
                           "text/plain; charset=utf-8", **{"Retry-After": "5"})


DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
ANY_INTERFACE = ("", "0.0.0.0", "::", "[::]")


def split_host(value: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a Host header (``example.com:3001``, ``[::1]:3001``, ``127.0.0.1``), the
    name lower-cased and without brackets; None if it is not one."""
    value = value.strip().lower()
    if value.startswith("["):
        name, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else ""
    else:
        name, _, port_text = value.partition(":") if value.count(":") <= 1 else (value, "", "")
    if not name or any(c in name for c in "/@?#\\ "):
        return None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return None
        return name.rstrip("."), int(port_text)
    return name.rstrip("."), None


def parse_origin(value: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an Origin header (``https://app.example.com``, ports defaulted by
    scheme), lower-cased; None for ``null`` or anything that is not ``scheme://host[:port]``."""
    parts = urllib.parse.urlsplit(value.strip())
    if parts.scheme not in DEFAULT_PORTS or parts.path not in ("", "/") or parts.query or parts.username:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return None
    return parts.scheme, host, port if port is not None else DEFAULT_PORTS[parts.scheme]


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_loopback_name(name: str) -> bool:
    """``localhost`` (and ``*.localhost``, which browsers resolve to loopback themselves) or a loopback IP."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Admission:
    """Which browser pages may open a websocket, and which Host names the front answers to (pure).

    Origin: a request without one is not from a browser page (the Python client, sync-observer,
    curl) and is admitted. A browser always sends it, so a page of another site that tries to
    read and write every object through a visitor's browser is refused, unless it is the front's
    own origin (the viewer page it serves), a loopback origin on any port (a local page: any local
    process can connect without a browser anyway), or listed in ``--allowed-origins``.

    Host (DNS rebinding: an attacker's name that resolves to 127.0.0.1 makes the browser treat the
    front as the attacker's own site): the name must be one the front serves: an IP literal (no DNS
    involved, so no rebinding), a loopback name, ``--host``, this machine's names when it listens on
    every interface, or ``--allowed-hosts``. A request without Host is not a browser's and passes.
    """

    hosts: frozenset[str]
    origins: frozenset[tuple[str, str, int]]
    any_host: bool = False
    any_origin: bool = False

    @classmethod
    def for_front(cls, host: str, allowed_hosts: Iterable[str] = (), allowed_origins: Iterable[str] = (),
                  machine_names: Iterable[str] = ()) -> "Admission":
        """The admission of a front listening on ``host``; raises ValueError for a malformed origin."""
        names = {n.strip().lower().strip("[]").rstrip(".") for n in allowed_hosts if n.strip()}
        if host.lower() in ANY_INTERFACE:
            names.update(n.lower() for n in machine_names if n)
        else:
            names.add(host.lower().strip("[]"))
        origins: set[tuple[str, str, int]] = set()
        any_origin = False
        for entry in allowed_origins:
            entry = entry.strip()
            if not entry:
                continue
            if entry == "*":
                any_origin = True
                continue
            parsed = parse_origin(entry)
            if parsed is None:
                raise ValueError(f"{entry!r} is not an origin like https://app.example.com[:port]")
            origins.add(parsed)
        return cls(frozenset(names - {"*"}), frozenset(origins), any_host="*" in names, any_origin=any_origin)

    def refusal(self, headers: Headers) -> tuple[str, str] | None:
        """``(code, message)`` if the request must be refused (403), else None."""
        hosts = headers.get_all("Host")
        if len(hosts) > 1:
            return "host-not-allowed", "more than one Host header"
        host = split_host(hosts[0]) if hosts else None
        if hosts and host is None:
            return "host-not-allowed", "malformed Host header"
        if host is not None and not self.any_host and not self.serves(host[0]):
            return "host-not-allowed", (f"this server does not answer to the name {host[0]!r} (a DNS rebinding "
                                        "guard; list it with sync-front --allowed-hosts)")
        origins = headers.get_all("Origin")
        if not origins:
            return None
        if len(origins) > 1:
            return "origin-not-allowed", "more than one Origin header"
        if self.any_origin:
            return None
        origin = parse_origin(origins[0])
        if origin is not None and (is_loopback_name(origin[1]) or origin in self.origins
                                   or (host is not None and origin[1] == host[0]
                                       and origin[2] == (host[1] or DEFAULT_PORTS[origin[0]]))):
            return None
        return "origin-not-allowed", (f"pages from {origins[0][:200]!r} may not connect (a cross-site guard; "
                                      "list the origin with sync-front --allowed-origins)")

    def serves(self, name: str) -> bool:
        return is_ip_literal(name) or is_loopback_name(name) or name in self.hosts


def forbidden_response(code: str, message: str) -> Response:
    """403 with a JSON error body, like the error frames of the protocol (stable ``code``)."""
    body = codec.dumps({"action": "error", "code": code, "message": message}) + b"\n"
    return _plain_response(403, "Forbidden", body, "application/json")


def close_reason(raw: bytes) -> str:
    """A websocket close reason from router bytes: valid UTF-8, at most the 123 bytes allowed."""
    return raw[:123].decode("utf-8", errors="ignore")


# ---------------------------------------------------------------- fan-out


class Conn:
    """One session's websocket, with what the fast write path needs at hand."""

    __slots__ = ("sid", "ws", "protocol", "transport", "paused_since", "pending", "closing", "ping")

    def __init__(self, sid: bytes, ws: ServerConnection) -> None:
        self.sid = sid
        self.ws = ws
        self.protocol = ws.protocol          # its .state says whether frames may still be written
        self.transport = ws.transport
        self.paused_since: float | None = None  # set while the router holds this session's updates
        self.pending: list[bytes] = []       # frames of the current burst, written once at its end
        self.closing = False                 # a slow-consumer close is under way
        self.ping: bytes | None = None       # payload of the keepalive ping awaiting its pong


class FanOut:
    """Writes router frames to connections: one encoding per frame, one write per connection and burst.

    Why writing to the transport directly is safe: everything here and in websockets runs on the
    event loop thread; websockets 17.4 serializes each frame to one ``bytes`` and hands it to
    ``transport.write`` whole (``Connection.send_data``), so frames never interleave mid-frame. A
    frame is written only while the protocol is OPEN: once websockets has queued a close frame
    (CLOSING) nothing more is written after it. The front never sends fragmented messages itself.
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
                self._check(conn)
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
                self._check(conn)
        self.deliveries += written

    def _check(self, conn: Conn) -> None:
        action = self._policy.decide(conn.transport.get_write_buffer_size(), conn.paused_since,
                                     time.monotonic())
        if action is not Congestion.NONE:
            self._congested(conn, action)


# ---------------------------------------------------------------- the router link


_MORE = int(zmq.SNDMORE) | int(zmq.NOBLOCK)  # ints: pyzmq ORs enum flags in Python, per part
_LAST = int(zmq.NOBLOCK)
_NOBLOCK = int(zmq.NOBLOCK)
_POLLIN = int(zmq.POLLIN)
_EVENTS = int(zmq.EVENTS)


class RouterLink:
    """The front's DEALER to the router, driven by the event loop itself (no zmq.asyncio).

    Why: zmq.asyncio costs a future, callbacks and EVENTS queries per message each way, and an
    envelope sent the moment it is made wakes ZeroMQ's I/O thread once per envelope (profiled in
    a reconnect storm: the OPEN send alone was 12% of the front's CPU). Here every envelope queued
    during one loop iteration is sent at its end, back to back, and the client messages between
    two other envelopes are merged into one ``[MSG, sid, raw, sid, raw, ...]``; the queue is one
    list, so the order of envelopes (a session's MSGs, then its CLOSE) is the order they were made.
    Incoming messages are received with NOBLOCK when the socket's FD is readable.

    ZeroMQ's FD is edge-triggered: it signals that the socket's state changed, and any operation
    on the socket (send, recv, reading EVENTS) may consume that signal. So a drain always goes on
    until EVENTS shows no message waiting (or reschedules itself), and after sending, EVENTS is
    read and a drain scheduled if a message waits.

    Backpressure: an envelope ZeroMQ refuses (its queue to the router is full, SNDHWM) stays in a
    backlog with everything after it, sent when the socket signals again. While there is a
    backlog, ``post`` returns a future to await (resolved once the backlog is in ZeroMQ), so a
    websocket handler adds at most one message to it: the front never buffers without limit.
    """

    def __init__(self, sock: zmq.Socket, on_message: Callable[[list[bytes]], None],
                 on_drained: Callable[[], None]) -> None:
        self.sock = sock
        self._on_message = on_message
        self._on_drained = on_drained            # after each drain: the end of a burst
        self._loop = asyncio.get_running_loop()
        self._queue: list[list[bytes]] = []     # envelopes of this iteration, in order
        self._msg: list[bytes] | None = None     # the MSG envelope being filled (last of _queue)
        self._backlog: collections.deque[list[bytes]] = collections.deque()  # refused by ZeroMQ (HWM)
        self._waiter: asyncio.Future[None] | None = None  # handlers waiting for the backlog to go
        self._flush_due = False
        self._read_due = False
        self._fd = sock.getsockopt(zmq.FD)
        self._loop.add_reader(self._fd, self._readable)
        self._read_soon()  # anything already queued raised no edge we could see

    # ------------------------------------------------------------ outgoing

    def send(self, frames: list[bytes]) -> None:
        """Queue one envelope; it goes at the end of this loop iteration, after those before it."""
        self._queue.append(frames)
        self._msg = None
        self._flush_soon()

    def post(self, sid: bytes, raw: bytes) -> asyncio.Future[None] | None:
        """Queue a client message (a pair of the current MSG); a future to await if congested."""
        msg = self._msg
        if msg is None:
            msg = self._msg = [MSG]
            self._queue.append(msg)
        msg.append(sid)
        msg.append(raw)
        self._flush_soon()
        if not self._backlog:
            return None
        if self._waiter is None:
            self._waiter = self._loop.create_future()
        return self._waiter

    def drop(self) -> None:
        """Forget every envelope not yet in ZeroMQ (they belong to a router incarnation now gone)."""
        self._queue, self._msg = [], None
        self._backlog.clear()
        self._release()

    def flush(self) -> None:
        """Send what this iteration queued (after any backlog), then look for incoming messages."""
        self._flush_due = False
        queue, self._queue, self._msg = self._queue, [], None
        if self.sock.closed:  # a handler outliving shutdown: the router is gone for us
            return
        self._backlog.extend(queue)
        self._send_backlog()

    def _flush_soon(self) -> None:
        if not self._flush_due:
            self._flush_due = True
            self._loop.call_soon(self.flush)

    def _send_backlog(self) -> None:
        backlog = self._backlog
        send = self.sock.send
        try:
            while backlog:
                frames = backlog[0]
                last = len(frames) - 1
                try:  # ZeroMQ may refuse only a message's first part (HWM counts whole messages)
                    send(frames[0], _MORE if last else _LAST)
                except zmq.Again:
                    break  # the socket signals when it is writable again: _readable
                backlog.popleft()
                for i in range(1, last + 1):
                    send(frames[i], _MORE if i < last else _LAST)
        except zmq.ZMQError as exc:  # the context is terminating, or a bug: never kill the loop
            log.error("send to router failed: %s", exc)
            backlog.clear()
        if not backlog:
            self._release()
        if self.sock.getsockopt(_EVENTS) & _POLLIN:  # our sends may have taken the FD's edge
            self._read_soon()

    def _release(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------ incoming

    def _read_soon(self) -> None:
        if not self._read_due:
            self._read_due = True
            self._loop.call_soon(self._readable)

    def _readable(self) -> None:
        """The FD fired (or a drain is due): receive until no message waits, then send any backlog."""
        self._read_due = False
        sock = self.sock
        if sock.closed:
            return
        recv = sock.recv_multipart
        events = sock.getsockopt
        on_message = self._on_message
        try:
            for _ in range(DRAIN_BATCH):
                # EVENTS, not an Again exception, ends the drain (cheaper); no POLLIN in EVENTS
                # also means the FD's edge is re-armed: the next message will fire it
                if not events(_EVENTS) & _POLLIN:
                    break
                on_message(recv(_NOBLOCK))
            else:
                self._read_soon()  # more is waiting: the rest next iteration, after the websockets
        except zmq.Again:  # EVENTS said a message waited; never seen, harmless
            pass
        except zmq.ZMQError as exc:
            log.error("receive from router failed: %s", exc)
        finally:
            self._on_drained()
        if self._backlog:
            self._send_backlog()

    def close(self, linger: int) -> None:
        """Send what is queued (as far as ZeroMQ takes it), stop reading, close the socket."""
        if self.sock.closed:
            return
        self.flush()
        self._loop.remove_reader(self._fd)
        self.sock.close(linger=linger)
        self.drop()


# ---------------------------------------------------------------- the process


class Front:
    """The front process: ``await Front(config).run()`` serves until ``stop()`` is called."""

    def __init__(self, config: FrontConfig) -> None:
        self.config = config
        self.identity = peer_identity("front")
        self.policy = Backpressure(config.pause_above, config.resume_below, config.slow_max_buffer,
                                   config.slow_timeout)
        self._sessions: dict[bytes, Conn] = {}
        self._paused: dict[bytes, Conn] = {}
        self._fanout = FanOut(self._sessions, self.policy, self._on_congestion)
        self._sids = itertools.count(1)
        self.messages_in = self.bytes_in = 0  # client frames received (Prometheus, router/metrics.py)
        self._connections = 0                     # websockets handled right now (for --max-connections)
        self._peer = Peer({"role": "front", "name": f"front@{config.host}:{config.port}",
                           "pid": os.getpid(), "host": socket.gethostname()},
                          config.router, log, random.random)  # the envelope's protocol (common/peer.py)
        self._welcomed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._closing: set[asyncio.Task[None]] = set()  # websocket closes in flight
        self._link: RouterLink | None = None
        self.admission = Admission.for_front(config.host, config.allowed_hosts, config.allowed_origins,
                                             _machine_names())
        self._refusals = RefusalLog()

    # ---------------------------------------------------------------- lifecycle

    def stop(self) -> None:
        """Ask ``run`` to shut down (safe to call from a signal handler, idempotent)."""
        self._stopping.set()

    async def run(self) -> None:
        """Connect to the router, serve websockets until stopped, then close everything."""
        ctx = zmq.Context()
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.IDENTITY, self.identity)
        dealer.setsockopt(zmq.LINGER, 0)
        # no receive limit: a ROUTER drops what does not fit in a peer's queue, silently, and a
        # dropped SEND is a version gap at the clients; a busy front buffers instead
        dealer.setsockopt(zmq.RCVHWM, 0)
        if self.config.secret:
            secure_peer(dealer, self.config.secret)
        link = None
        try:
            dealer.connect(self.config.router)
            link = self._link = RouterLink(dealer, self._dispatch, self._flush)
            server = await serve(
                self._handle, self.config.host, self.config.port,
                process_request=self._process_request,
                compression=None, max_size=self.config.max_frame,
                ping_interval=None,  # one keepalive loop for all (see _keepalive_loop), no task each
                close_timeout=CLOSE_TIMEOUT,
                backlog=listen_backlog(self.config.max_connections),
            )
            log.info("listening on ws://%s:%d, router %s as %s (max %d connections)", self.config.host,
                     self.config.port, self.config.router, self.identity.decode(),
                     self.config.max_connections)
            self._on_peer(self._peer.start(time.monotonic()))
            loops = [asyncio.create_task(self._heartbeat_loop()),
                     asyncio.create_task(self._congestion_loop()),
                     asyncio.create_task(self._keepalive_loop())]
            await self._stopping.wait()
            await self._shutdown(server, loops)
        finally:
            linger = 1000 if self._peer.welcomed else 0
            if link is not None:
                link.close(linger)
            dealer.close(linger=linger)
            ctx.term()

    async def _shutdown(self, server: Server, loops: list[asyncio.Task[None]]) -> None:
        """Close websockets with 1001 (their handlers send CLOSE), then stop the router loops."""
        log.info("stopping: closing %d websockets", len(self._sessions))
        server.close(code=CLOSE_GOING_AWAY, reason="server stopping")
        try:
            await asyncio.wait_for(server.wait_closed(), STOP_TIMEOUT)
        except TimeoutError:
            log.warning("some websocket handlers did not finish within %.0f s", STOP_TIMEOUT)
        for sid in list(self._sessions):
            self._end_session(sid)
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)

    # ---------------------------------------------------------------- websockets

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """403 for a Host the front does not serve or a page from a foreign Origin (``Admission``);
        static files for plain GETs; 503 for an upgrade beyond --max-connections."""
        refused = self.admission.refusal(request.headers)
        if refused is not None:
            code, message = refused
            peer = connection.remote_address
            line = self._refusals.refused(code, f"from {peer[0] if peer else '?'} (Host {request.headers.get('Host', '')[:100]!r}, "
                                                f"Origin {request.headers.get('Origin', '')[:100]!r})", time.monotonic())
            if line is not None:
                log.warning("%s (403)", line)
            return forbidden_response(code, message)
        response = http_response(request)
        if response is None and self._connections >= self.config.max_connections:
            log.warning("refused a connection: %d connections is the limit (--max-connections)",
                        self.config.max_connections)
            return busy_response()
        return response

    async def _handle(self, ws: ServerConnection) -> None:
        """One websocket = one session: OPEN, a MSG per frame, CLOSE however it ends."""
        self._connections += 1
        try:
            if self._connections > self.config.max_connections:  # handshakes raced past the check
                await ws.close(CLOSE_TRY_AGAIN, "too many connections, try again later")
                return
            await self._session(ws)
        finally:
            self._connections -= 1

    async def _session(self, ws: ServerConnection) -> None:
        peer = ws.remote_address
        if not await self._wait_welcome(ws):
            if ws.state is State.OPEN:
                log.info("refused %s: router not available", peer)
                await ws.close(CLOSE_TRY_AGAIN, "router not available, try again")
            return
        if self.config.send_buffer:
            _set_send_buffer(ws, self.config.send_buffer)
        sid = str(next(self._sids)).encode()
        conn = Conn(sid, ws)
        self._sessions[sid] = conn
        log.debug("open %s from %s path=%s", sid.decode(), peer, ws.request.path if ws.request else "?")
        try:
            self._send([OPEN, sid])
            while True:
                frame = await ws.recv(decode=False)  # text frames stay UTF-8 bytes, untouched
                self.messages_in += 1
                self.bytes_in += len(frame)
                if self._sessions.get(sid) is conn:
                    congested = self._post(sid, frame)
                    if congested is not None:  # the router link is full: wait for room
                        await congested
        except ConnectionClosed:
            pass
        finally:
            if self._sessions.get(sid) is conn:
                self._end_session(sid)
            log.debug("close %s code=%s %s", sid.decode(), ws.close_code, ws.close_reason or "")

    async def _wait_welcome(self, ws: ServerConnection) -> bool:
        """True once the router is welcomed; False after WELCOME_WAIT or if the client left."""
        if self._welcomed.is_set():
            return True
        waiters = [asyncio.create_task(self._welcomed.wait()),
                   asyncio.create_task(ws.wait_closed())]
        await asyncio.wait(waiters, timeout=WELCOME_WAIT, return_when=asyncio.FIRST_COMPLETED)
        for task in waiters:
            task.cancel()
        return self._welcomed.is_set() and ws.state is State.OPEN

    def _end_session(self, sid: bytes) -> None:
        """Forget a session and tell the router, exactly once per session."""
        self._paused.pop(sid, None)
        if self._sessions.pop(sid, None) is not None:
            self._send([CLOSE, sid])

    def _close_ws(self, ws: ServerConnection, code: int, reason: str) -> asyncio.Task[None]:
        """Start a closing handshake without waiting for it."""
        task = asyncio.create_task(ws.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return task

    # ---------------------------------------------------------------- slow consumers

    def _on_congestion(self, conn: Conn, action: Congestion) -> None:
        """Act on the policy's decision for one connection."""
        if action is Congestion.PAUSE:
            conn.paused_since = time.monotonic()
            self._paused[conn.sid] = conn
            log.info("pause %s: %d bytes waiting to be written", conn.sid.decode(),
                     conn.transport.get_write_buffer_size())
            self._send([PAUSE, conn.sid])
        elif action is Congestion.RESUME:
            conn.paused_since = None
            self._paused.pop(conn.sid, None)
            log.info("resume %s", conn.sid.decode())
            self._send([RESUME, conn.sid])
        elif action is Congestion.CLOSE and not conn.closing:
            self._close_slow(conn)

    def _close_slow(self, conn: Conn) -> None:
        """Close with 1008: the close frame goes behind what is buffered; abort if it never drains.

        From here no frame is written (the protocol is CLOSING), so the buffer cannot grow further.
        """
        conn.closing = True
        self._end_session(conn.sid)  # the router forgets it now, not after the (slow) handshake
        buffered = conn.transport.get_write_buffer_size()
        paused = time.monotonic() - conn.paused_since if conn.paused_since is not None else 0.0
        log.warning("closing %s: %s (%d bytes buffered, paused %.1f s)", conn.sid.decode(), SLOW_REASON,
                    buffered, paused)
        self._close_ws(conn.ws, CLOSE_POLICY, SLOW_REASON)
        asyncio.get_running_loop().call_later(SLOW_CLOSE_GRACE, _abort_if_open, conn)

    async def _congestion_loop(self) -> None:
        """Resume paused connections that drained; close those paused too long."""
        while True:
            await asyncio.sleep(CONGESTION_CHECK)
            if not self._paused:
                continue
            now = time.monotonic()
            for conn in list(self._paused.values()):
                if conn.protocol.state is not State.OPEN:
                    self._paused.pop(conn.sid, None)
                    continue
                action = self.policy.decide(conn.transport.get_write_buffer_size(), conn.paused_since, now)
                if action is not Congestion.NONE:
                    self._on_congestion(conn, action)

    # ---------------------------------------------------------------- keepalive

    async def _keepalive_loop(self) -> None:
        """Ping every session each ``ping_interval``; close one whose last ping is unanswered too long.

        websockets' own keepalive runs one task per connection (about 2 KiB each); this loop does
        the same for all of them. A ping is registered in ``pending_pings`` exactly as
        ``Connection.ping`` does, so websockets' pong handling acknowledges it; the ping frame is
        written by websockets itself (``protocol.send_ping`` + ``send_data``), whole. The same sweep
        (every CLOSE_TIMEOUT when pings are off) aborts connections stuck in a closing handshake.
        """
        interval, timeout = self.config.ping_interval, self.config.ping_timeout
        pinging = interval > 0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval if pinging else CLOSE_TIMEOUT)
            now = loop.time()
            for conn in list(self._sessions.values()):
                try:
                    if conn.protocol.state is not State.OPEN:
                        self._end_stuck_close(conn, loop)
                    elif pinging:
                        self._keepalive(conn, now, timeout, loop)
                except Exception:  # one broken connection must not stop the pings of the others
                    log.exception("keepalive of %s failed", conn.sid.decode())

    def _end_stuck_close(self, conn: Conn, loop: asyncio.AbstractEventLoop) -> None:
        """A closing handshake the client started (or websockets, on a protocol error) waits for the
        client to close TCP, with no deadline while the handler only reads: give it CLOSE_TIMEOUT."""
        if not conn.closing:
            conn.closing = True
            loop.call_later(CLOSE_TIMEOUT, _abort_if_open, conn)

    def _keepalive(self, conn: Conn, now: float, timeout: float, loop: asyncio.AbstractEventLoop) -> None:
        ws = conn.ws
        if conn.closing:
            return
        pending = ws.pending_pings.get(conn.ping) if conn.ping is not None else None
        if pending is not None:  # no pong yet
            if now - pending[1] > timeout:
                conn.closing = True
                log.info("closing %s: keepalive ping timeout (%.0f s)", conn.sid.decode(), timeout)
                self._end_session(conn.sid)
                self._close_ws(ws, CLOSE_INTERNAL, "keepalive ping timeout")
                loop.call_later(CLOSE_TIMEOUT, _abort_if_open, conn)
            return
        data = random.getrandbits(32).to_bytes(4, "big")
        while data in ws.pending_pings:
            data = random.getrandbits(32).to_bytes(4, "big")
        ws.pending_pings[data] = (loop.create_future(), now)
        conn.ping = data
        conn.protocol.send_ping(data)
        ws.send_data()

    # ---------------------------------------------------------------- router

    def _post(self, sid: bytes, frame: bytes) -> asyncio.Future[None] | None:
        """A client message for the router (see ``RouterLink.post``)."""
        if self._link is None:
            return None
        return self._link.post(sid, frame)

    def _send(self, frames: list[bytes]) -> None:
        """An envelope for the router, sent after everything queued before it (order per session)."""
        if self._link is not None:
            self._link.send(frames)

    def _flush(self) -> None:
        """The end of a burst of router messages: write the SENDs it held (coalesced per connection)."""
        try:
            self._fanout.flush()
        except Exception:  # a bug must not stop the loop
            log.exception("failed to write a burst of frames")

    async def _heartbeat_loop(self) -> None:
        """Run the peer machine's timers: HELLO retries until welcomed, then PINGs and the silence check."""
        while True:
            delay = self._peer.deadline() - time.monotonic()
            await asyncio.sleep(min(HEARTBEAT_INTERVAL, max(0.01, delay)))
            try:
                self._on_peer(self._peer.tick(time.monotonic()))
            except Exception:  # a bug must not stop the heartbeats
                log.exception("peer tick failed")

    def _dispatch(self, frames: list[bytes]) -> None:
        """One router message. Malformed ones are logged and ignored (by the peer machine), never fatal."""
        try:
            events = self._peer.on_message(frames, time.monotonic())
            if len(events) == 1 and type(events[0]) is Sends:  # the hot path: frames for the burst
                add = self._fanout.add
                for frame, packed in events[0].pairs:
                    add(frame, unpack_sids(packed))
                return
            self._flush()
            self._on_peer(events)
        except Exception:  # a bug or a frame we did not foresee must not stop the loop
            log.exception("failed to handle router message: %.200r", frames)

    def _on_peer(self, events: list[Event]) -> None:
        """Carry out what the peer machine decided, in order."""
        for event in events:
            if isinstance(event, Send):
                self._send(event.frames)
            elif isinstance(event, Sends):
                for frame, packed in event.pairs:
                    self._fanout.add(frame, unpack_sids(packed))
            elif isinstance(event, Dropped):
                self._drop(event.sid, close_reason(event.reason))
            elif isinstance(event, Welcomed):
                self._welcomed.set()
            elif isinstance(event, Lost):
                self._router_lost(event.reason)

    def _drop(self, sid: bytes, reason: str) -> None:
        conn = self._sessions.get(sid)
        if conn is None:
            return
        log.info("router drops %s: %s", sid.decode(errors="replace"), reason)
        self._end_session(sid)
        self._close_ws(conn.ws, CLOSE_POLICY, reason)

    def _router_lost(self, why: str) -> None:
        """The router restarted or vanished: close every websocket (1012); the machine's HELLO follows."""
        sessions = dict(self._sessions)
        self._sessions.clear()  # cleared in place: the fan-out shares this dict
        self._paused.clear()
        log.warning("! %s: closing %d websockets", why, len(sessions))
        self._welcomed.clear()
        if self._link is not None:
            self._link.drop()  # envelopes of sessions the new router will not know: their clients resync
        for conn in sessions.values():
            self._close_ws(conn.ws, CLOSE_RESTART, "router restarted")


def _set_send_buffer(ws: ServerConnection, size: int) -> None:
    """A smaller kernel send buffer makes a slow reader show up sooner in the transport's buffer."""
    sock = ws.transport.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    except OSError as exc:
        log.warning("cannot set SO_SNDBUF to %d: %s", size, exc)


def _abort_if_open(conn: Conn) -> None:
    """The end of a closing handshake's grace: drop the buffer with the TCP connection."""
    if conn.protocol.state is not State.CLOSED:
        log.warning("aborting %s: it did not complete the closing handshake in time", conn.sid.decode())
        conn.transport.abort()


def _machine_names() -> list[str]:
    """This machine's names, which a front listening on every interface answers to."""
    names = [socket.gethostname()]
    try:
        names.append(socket.getfqdn())
    except OSError:
        pass
    return names
