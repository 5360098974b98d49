"""The ZeroMQ envelope between the router and its peers (fronts and workers).

The router binds one ROUTER socket; every front and every worker process connects one DEALER.
Inside the envelope travel the *same* JSON messages a websocket client sends (seapig 0.2):
to the router, a worker is just a producer session and a browser is a consumer session.
A peer multiplexes any number of sessions over its one DEALER, each named by a short
byte string (``sid``) that is unique within that peer.

Peer -> router (multipart frames, as the DEALER sends them)::

    [HELLO, json{"role": "front"|"worker", "name": str, "pid": int, "host": str}]
    [OPEN, sid]                  a session starts (a websocket connected, a worker is ready)
    [MSG, sid, raw_json, ...]    client messages, the bytes exactly as received: one or more
                                 (sid, raw_json) pairs, handled in order (a busy peer batches
                                 what it has into one ZeroMQ message: one wake-up, not one each);
                                 a pair (PACKED, pack_pairs(...)) stands for the pairs it packs
    [CLOSE, sid]                 the session ended: everything it registered is unregistered
    [PAUSE, sid]                 the client reads too slowly: hold its updates (they are coalesced)
    [RESUME, sid]                its connection drained: send it the latest state of what changed
    [PING]                       liveness, sent every HEARTBEAT_INTERVAL seconds
    [ACK, b"n"]                  credit (a front that said "credit": K in HELLO): it has written the
                                 frames of n more SENDS messages to its websockets (n in ASCII digits)

Router -> peer::

    [WELCOME, epoch]             answer to HELLO; ``epoch`` names this router incarnation
    [SENDS, frame, b"sid,sid,..", frame, b"sid,..", ...]
                                 the router's frames: one or more (frame, packed sids) pairs,
                                 written in order; the ids packed in one part (one ZeroMQ part
                                 instead of thousands for a fan-out; sids never hold ","), and
                                 everything one flush has for a peer in one message; to a peer
                                 whose HELLO said "packed": true, [SENDS, PACKED, pack_pairs(...)]
    [DROP, sid, reason]          the router closes one session (the peer must close it)
    [RESET]                      the router does not know this peer (it restarted): HELLO again
    [PONG, epoch]                answer to PING

Security: by default every process has a cluster secret (``--secret``, env SEASYNC_SECRET, or the
``./.seasync-secret`` file created on first start: ``common.secret``), every link is ZeroMQ
CURVE-encrypted and the router accepts only peers that derived their key from the same secret
(``secure_router`` / ``secure_peer``), so neither a stranger on the network nor another local process
can pose as a worker. The router logs every peer refused for a missing or wrong secret (rate-limited).

Packed pairs: receiving a ZeroMQ part costs ~1 µs in pyzmq, so many small pairs travel in one part
(``pack_pairs``), unpacked where they arrive (``pairs``, ``flat``). Both ends know it without breaking an
older one: a peer announces ``"packed": true`` in HELLO and the router then packs its SENDS; the router
accepts packed MSGs from anyone, and a peer packs its MSGs once a packed SENDS showed that its router can
read them (``Peer.router_packs``, reset when it joins again).

Credit (latest wins between router and front): a front that announces ``"credit": K`` in HELLO
acknowledges SENDS messages (ACK) once it has written them; the router keeps at most K unacknowledged
SENDS in flight to it, and while it has none left it holds that front's updates, per object only the
newest, sent (as a patch from what each session holds) when an ACK returns credit. A peer that
announces no credit (a worker, an older front) gets every SENDS at once, as before. A front sends its ACKs
ahead of client messages still waiting for room in ZeroMQ (a flooding master's), so credit does not wait
behind uploads; the router flushes every FLUSH_FRAMES client frames however they are packed into MSGs.

Liveness: a peer that sends nothing for PEER_TIMEOUT seconds is considered dead and all of its
sessions are closed (their productions requeued). A peer that hears nothing from the router
for PEER_TIMEOUT, or sees a different epoch, treats the router as restarted: a front closes
its websockets (clients reconnect and resync with their known versions), a worker says HELLO
again and re-registers its producers. The peer side of this exists once, in common/peer.py.

Reconnection: a peer keeps its identity for its whole life, and its DEALER reconnects by itself when
TCP drops (ZMTP heartbeats, a router paused or a network partition longer than the heartbeat timeout);
the router's ROUTER socket hands the identity over to the newest connection (ROUTER_HANDOVER), so the
new connection's HELLO is heard even while the old one is not yet known to be dead.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Iterable, Sequence

import zmq
from zmq.utils import z85

from common.logs import LogLimit

log = logging.getLogger("seasync.router")

HELLO = b"hello"
OPEN = b"open"
MSG = b"msg"
CLOSE = b"close"
PING = b"ping"
PAUSE = b"pause"
RESUME = b"resume"
ACK = b"ack"

WELCOME = b"welcome"
SENDS = b"sends"
DROP = b"drop"
RESET = b"reset"
PONG = b"pong"

MAX_CREDIT = 1024
"""The largest credit a peer may announce in HELLO (more is taken as this: unacked SENDS the router keeps)."""

HEARTBEAT_INTERVAL = 0.5
PEER_TIMEOUT = 3.0

DEFAULT_ROUTER = "tcp://127.0.0.1:5556"


def pack_sids(sids: list[bytes]) -> bytes:
    return b",".join(sids)


def unpack_sids(packed: bytes) -> list[bytes]:
    return packed.split(b",")


PACKED = b","
"""The first part of a packed pair: its second part holds many (a, b) pairs in one ZeroMQ part (see
``pack_pairs``). Never a real first part: a sid cannot contain "," (the router refuses such an OPEN) and
a router frame is a JSON object."""
_LENGTH = struct.Struct(">I")
MAX_PACKED_PART = 1 << 24
"""The longest part one entry of a packed pair may claim (16 MiB); the router's frames are far smaller."""


class MalformedPack(ValueError):
    """A packed pair whose lengths do not add up (a bug or a hostile peer): the message is refused."""


def pack_pairs(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """(a, b) pairs as one part: per pair a's length (4 bytes, big-endian), a, b's length, b. Receiving
    one part is ~1 µs cheaper than receiving two per pair (pyzmq's per-part cost), so a busy peer's MSG
    and the router's SENDS of many small answers go as [KIND, PACKED, pack_pairs(...)]."""
    length = _LENGTH.pack
    out: list[bytes] = []
    for a, b in items:
        out += (length(len(a)), a, length(len(b)), b)
    return b"".join(out)


def pack_flat(parts: Sequence[bytes]) -> bytes:
    """``pack_pairs`` of pairs laid out flat (a, b, a, b, ...), as envelopes hold them."""
    it = iter(parts)
    return pack_pairs(zip(it, it))


def unpack_pairs(blob: bytes) -> list[bytes]:
    """The parts ``pack_pairs`` packed, flat (a, b, a, b, ...); MalformedPack if they do not add up."""
    unpack, size, end = _LENGTH.unpack_from, _LENGTH.size, len(blob)
    out: list[bytes] = []
    i = 0
    try:
        while i < end:
            (n,) = unpack(blob, i)
            i += size
            if n > MAX_PACKED_PART or i + n > end:
                raise MalformedPack(f"a packed part claims {n} bytes, {end - i} are left")
            out.append(blob[i:i + n])
            i += n
    except struct.error:
        raise MalformedPack(f"a packed pair is cut short at byte {i} of {end}") from None
    if len(out) % 2:
        raise MalformedPack("a packed pair has an odd number of parts")
    return out


def flat(frames: list[bytes], start: int = 1) -> list[bytes]:
    """``frames`` with every packed pair from ``start`` on replaced by the parts it packs (the list itself
    when there is none: the common case costs one scan in C). MalformedPack for a damaged one."""
    if PACKED not in frames[start::2]:
        return frames
    out = frames[:start]
    for i in range(start, len(frames) - 1, 2):
        if frames[i] == PACKED:
            out += unpack_pairs(frames[i + 1])
        else:
            out += (frames[i], frames[i + 1])
    return out


def pairs(frames: list[bytes], start: int = 1) -> list[tuple[bytes, bytes]]:
    """The (a, b) pairs of ``frames[start:]`` (MSG's (sid, raw), SENDS' (frame, sids)), packed ones
    unpacked; a lone trailing part, which no well-formed message has, is ignored."""
    it = iter(flat(frames, start)[start:])
    return list(zip(it, it))


def peer_identity(role: str) -> bytes:
    """A ZeroMQ identity that is unique per process and readable in logs."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}".encode()


def _keypair(secret: str, role: bytes) -> tuple[bytes, bytes]:
    """A CURVE (public, secret) key pair derived from the shared cluster secret."""
    secret_key = z85.encode(hashlib.sha256(role + b"\0" + secret.encode()).digest())
    return zmq.curve_public(secret_key), secret_key


REFUSAL_LOG_INTERVAL = 10.0
"""Seconds between two log lines about peers refused for the same reason (a misconfigured peer
retries every few hundred milliseconds: one line each would flood the log)."""

NO_SECRET = "no cluster secret (it connects without CURVE: started with --insecure or an empty SEASYNC_SECRET?)"
WRONG_SECRET = "wrong cluster secret (its keys come from another secret: another SEASYNC_SECRET or .seasync-secret file?)"
BROKE_OFF = ("it broke off the handshake: no cluster secret (a peer without one hangs up when it sees the "
             "router's CURVE greeting: started with --insecure or an empty SEASYNC_SECRET?), or not a seasync peer")
MAX_PENDING_FAILURES = 64
"""Handshake failures remembered until their DISCONNECTED (more at once: the oldest reasons are dropped)."""


class RouterGuard:
    """The CURVE authenticator of a router socket and the monitor that logs refused peers.

    A peer with the wrong secret fails the CURVE handshake itself (its keys do not match the
    router's), and a peer without a secret speaks another mechanism: neither ever reaches the ZAP
    callback, so the socket's monitor events are what says it (HANDSHAKE_FAILED_*). A peer without a
    secret often sees the router's greeting first and hangs up: the router then sees the handshake broken
    off (NO_DETAIL), not a mechanism mismatch. The events carry no descriptor: failures are matched with
    the disconnects that follow them in order (two refused peers' failures may both come before either
    disconnect). The address is read from the accepted descriptor, best effort."""

    EVENTS = (zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
              | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)

    def __init__(self, ctx: zmq.Context, sock: zmq.Socket, peer_public: bytes) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        guard = self
        self.refusals = LogLimit(burst=1, period=REFUSAL_LOG_INTERVAL)
        self._lock = threading.Lock()
        self._addresses: dict[int, str] = {}   # accepted descriptor -> peer address
        self._failed: collections.deque[str] = collections.deque(maxlen=MAX_PENDING_FAILURES)  # until their DISCONNECTED

        class _SamePeerKey:
            def callback(self, domain: str, key: bytes) -> bool:
                ok = key == z85.decode(peer_public) or key == peer_public
                if not ok:
                    guard.refuse(WRONG_SECRET + " (unknown CURVE key)", f"from {guard.zap_address}")
                return ok

        class _Authenticator(ThreadAuthenticator):
            async def handle_zap_message(self, msg: list[bytes]) -> None:
                guard.zap_address = msg[3].decode(errors="replace") if len(msg) > 3 else "?"
                await super().handle_zap_message(msg)

        self.zap_address = "?"
        self.auth = _Authenticator(ctx)
        self.auth.start()
        self.auth.configure_curve_callback(domain="*", credentials_provider=_SamePeerKey())
        # a plain PAIR socket (``sock`` may be an asyncio one, whose poll needs an event loop)
        address = f"inproc://seasync-curve-monitor-{os.getpid()}-{id(self)}"
        sock.monitor(address, self.EVENTS)
        self._monitor = zmq.Context.shadow(ctx.underlying).socket(zmq.PAIR)
        self._monitor.connect(address)
        self._sock = sock
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="curve-monitor", daemon=True)
        self._thread.start()

    def refuse(self, reason: str, address: str) -> None:
        with self._lock:
            line = self.refusals.line(reason, f"! refused a peer {address}: {reason}", time.monotonic())
        if line is not None:
            log.warning("%s; every process of the cluster needs the same secret", line)

    def _watch(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        mon = self._monitor
        try:
            while not self._stopping.is_set():
                if not mon.poll(200):
                    continue
                event = recv_monitor_message(mon)
                self._on_event(event["event"], event["value"], event["endpoint"].decode(errors="replace"))
        except zmq.ZMQError:
            pass  # the context is going away
        finally:
            mon.close(linger=0)

    def _on_event(self, kind: int, value: int, endpoint: str) -> None:
        if kind == zmq.EVENT_ACCEPTED:
            self._addresses[value] = _peer_address(value)
        elif kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            self._failed.append(NO_SECRET if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH else WRONG_SECRET)
        elif kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:  # (HANDSHAKE_FAILED_AUTH: the ZAP callback said it)
            self._failed.append(BROKE_OFF)
        elif kind == zmq.EVENT_DISCONNECTED:
            address = self._addresses.pop(value, "?")
            if self._failed:
                self.refuse(self._failed.popleft(), f"on {endpoint}" + (f" from {address}" if address != "?" else ""))

    def stop(self) -> None:
        """Stop the monitor and the authenticator (before the context is terminated)."""
        self._stopping.set()
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:
            pass  # the socket is already closed
        self._thread.join(2.0)
        self.auth.stop()


def _peer_address(fd: int) -> str:
    """``host:port`` of the peer of an accepted descriptor (read through a duplicate, never closing
    libzmq's own); "?" if it is already gone."""
    try:
        dup = os.dup(fd)
    except OSError:
        return "?"
    try:
        with socket.socket(fileno=dup) as s:
            name = s.getpeername()
    except OSError:
        return "?"
    if isinstance(name, tuple):
        return f"{name[0]}:{name[1]}"
    return str(name) or "a local socket"


def secure_router(ctx: zmq.Context, sock: zmq.Socket, secret: str) -> RouterGuard:
    """Make ``sock`` a CURVE server that admits only peers holding ``secret``; returns its guard
    (keep a reference and ``stop()`` it on exit, before the context is terminated)."""
    server_public, server_secret = _keypair(secret, b"seasync-router")
    peer_public, _ = _keypair(secret, b"seasync-peer")
    guard = RouterGuard(ctx, sock, peer_public)
    sock.curve_server = True
    sock.curve_publickey = server_public
    sock.curve_secretkey = server_secret
    return guard


def secure_peer(sock: zmq.Socket, secret: str) -> None:
    """Make ``sock`` (a front's or worker's DEALER) a CURVE client of a router holding ``secret``.

    Call before ``connect``."""
    server_public, _ = _keypair(secret, b"seasync-router")
    peer_public, peer_secret = _keypair(secret, b"seasync-peer")
    sock.curve_serverkey = server_public
    sock.curve_publickey = peer_public
    sock.curve_secretkey = peer_secret
