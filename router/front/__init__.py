"""The websocket front (``sync-front``): one session per websocket, frames relayed verbatim to and from the router.

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

Modules: ``server`` (the ``Front`` process: sessions, keepalive, slow consumers), ``connection``
(``Conn``, one websocket's I/O), ``fanout``
(``FanOut``, ``Backpressure``), ``link`` (the I/O ``RouterLink``; its protocol is common/peer.py),
``web`` (static files, ``Admission`` by Host and Origin), ``cli`` (``sync-front``).
The names below are the package's public surface (``from router.front import Front, FrontConfig``).
"""

from router.front.connection import CLOSE_TIMEOUT, OPEN_TIMEOUT, Conn, Sessions
from router.front.fanout import Backpressure, Congestion, FanOut, text_frame
from router.front.link import DRAIN_BATCH, RouterLink
from router.front.server import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    CLOSE_RESTART,
    CLOSE_TRY_AGAIN,
    CONGESTION_CHECK,
    SLOW_CLOSE_GRACE,
    SLOW_REASON,
    STOP_TIMEOUT,
    WELCOME_WAIT,
    Front,
    FrontConfig,
    close_reason,
    listen_backlog,
)
from router.front.web import (
    CONTENT_TYPES,
    LOOPBACK,
    STATIC_DIR,
    Admission,
    busy_response,
    forbidden_response,
    http_response,
    is_ip_literal,
    is_loopback,
    is_loopback_name,
    parse_origin,
    split_host,
    static_file,
)

__all__ = [
    "Admission", "Backpressure", "CLOSE_GOING_AWAY", "CLOSE_INTERNAL", "CLOSE_POLICY", "CLOSE_RESTART",
    "CLOSE_TIMEOUT", "CLOSE_TRY_AGAIN", "CONGESTION_CHECK", "CONTENT_TYPES", "Congestion", "Conn",
    "DRAIN_BATCH", "FanOut", "Front", "FrontConfig", "LOOPBACK", "OPEN_TIMEOUT", "RouterLink", "SLOW_CLOSE_GRACE",
    "SLOW_REASON", "STATIC_DIR", "STOP_TIMEOUT", "Sessions", "WELCOME_WAIT", "busy_response", "close_reason",
    "forbidden_response", "http_response", "is_ip_literal", "is_loopback", "is_loopback_name",
    "listen_backlog", "parse_origin", "split_host", "static_file", "text_frame",
]
