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
                                 what it has into one ZeroMQ message: one wake-up, not one each)
    [CLOSE, sid]                 the session ended: everything it registered is unregistered
    [PAUSE, sid]                 the client reads too slowly: hold its updates (they are coalesced)
    [RESUME, sid]                its connection drained: send it the latest state of what changed
    [PING]                       liveness, sent every HEARTBEAT_INTERVAL seconds

Router -> peer::

    [WELCOME, epoch]             answer to HELLO; ``epoch`` names this router incarnation
    [SENDS, frame, b"sid,sid,..", frame, b"sid,..", ...]
                                 the router's frames: one or more (frame, packed sids) pairs,
                                 written in order; the ids packed in one part (one ZeroMQ part
                                 instead of thousands for a fan-out; sids never hold ","), and
                                 everything one flush has for a peer in one message
    [DROP, sid, reason]          the router closes one session (the peer must close it)
    [RESET]                      the router does not know this peer (it restarted): HELLO again
    [PONG, epoch]                answer to PING

Security: when a cluster secret is configured (``--secret``, env SEASYNC_SECRET), every link is
ZeroMQ CURVE-encrypted and the router accepts only peers that derived their key from the same
secret (``secure_router`` / ``secure_peer``), so a stranger on the network cannot pose as a worker.

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

import hashlib
import os
import socket
from typing import Any

import zmq
from zmq.utils import z85

HELLO = b"hello"
OPEN = b"open"
MSG = b"msg"
CLOSE = b"close"
PING = b"ping"
PAUSE = b"pause"
RESUME = b"resume"

WELCOME = b"welcome"
SENDS = b"sends"
DROP = b"drop"
RESET = b"reset"
PONG = b"pong"

HEARTBEAT_INTERVAL = 0.5
PEER_TIMEOUT = 3.0

DEFAULT_ROUTER = "tcp://127.0.0.1:5556"


def pack_sids(sids: list[bytes]) -> bytes:
    return b",".join(sids)


def unpack_sids(packed: bytes) -> list[bytes]:
    return packed.split(b",")


def pairs(frames: list[bytes], start: int = 1) -> list[tuple[bytes, bytes]]:
    """The (a, b) pairs of ``frames[start:]`` (MSG's (sid, raw), SENDS' (frame, sids)); a lone
    trailing part, which no well-formed message has, is ignored."""
    it = iter(frames[start:])
    return list(zip(it, it))


def peer_identity(role: str) -> bytes:
    """A ZeroMQ identity that is unique per process and readable in logs."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}".encode()


def _keypair(secret: str, role: bytes) -> tuple[bytes, bytes]:
    """A CURVE (public, secret) key pair derived from the shared cluster secret."""
    secret_key = z85.encode(hashlib.sha256(role + b"\0" + secret.encode()).digest())
    return zmq.curve_public(secret_key), secret_key


def secure_router(ctx: zmq.Context, sock: zmq.Socket, secret: str) -> Any:
    """Make ``sock`` a CURVE server that admits only peers holding ``secret``; returns the authenticator
    (keep a reference and ``stop()`` it on exit)."""
    from zmq.auth.thread import ThreadAuthenticator

    server_public, server_secret = _keypair(secret, b"seasync-router")
    peer_public, _ = _keypair(secret, b"seasync-peer")

    class _SamePeerKey:
        def callback(self, domain: str, key: bytes) -> bool:
            return key == z85.decode(peer_public) or key == peer_public

    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=_SamePeerKey())
    sock.curve_server = True
    sock.curve_publickey = server_public
    sock.curve_secretkey = server_secret
    return auth


def secure_peer(sock: zmq.Socket, secret: str) -> None:
    """Make ``sock`` (a front's or worker's DEALER) a CURVE client of a router holding ``secret``.

    Call before ``connect``."""
    server_public, _ = _keypair(secret, b"seasync-router")
    peer_public, peer_secret = _keypair(secret, b"seasync-peer")
    sock.curve_serverkey = server_public
    sock.curve_publickey = peer_public
    sock.curve_secretkey = peer_secret
