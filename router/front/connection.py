"""One websocket as an asyncio Protocol around websockets' sans-I/O ``ServerProtocol``.

Why not websockets' asyncio server: per connection it runs a handler task and a ``recv()``
coroutine, an assembler with its queue, and futures for the handshake, for connection loss and for
each ping; a reconnect storm paid for all of it (profiled at 257 µs of front CPU per reconnect, ours
~15 %). The front needs none of it: each client frame goes to the router as it arrives, each write is
a whole frame built once (``FanOut``), one keepalive sweep pings everyone. The sans-I/O protocol
still does everything RFC 6455 asks of a server (the upgrade's HTTP parsing and checks, frame
parsing, unmasking, size limits across fragments, pong answers, the closing handshake, failing the
connection on a protocol error); this module is the I/O around it and the few deadlines it leaves to
its caller (the opening handshake, the closing handshake).

Everything runs on the event loop's thread: a frame written by ``FanOut`` or the keepalive never
interleaves with one the protocol writes (pongs, close), each goes to ``transport.write`` whole.
"""

from __future__ import annotations

import asyncio
import http
import logging
from typing import Protocol

from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from router.front import handshake
from router.front.web import RequestHeaders

log = logging.getLogger("seasync.front")
_ws_log = logging.getLogger("websockets.server")  # the sans-I/O protocol's own lines (-vv)

OPEN_TIMEOUT = 10.0   # a connection that has not completed its upgrade by then is dropped (websockets' default)
CLOSE_TIMEOUT = 3.0   # closing handshake; keeps shutdown under honcho's 5 s SIGKILL
_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)


class Sessions(Protocol):
    """What a connection asks of the front (router/front/server.py ``Front``)."""

    def accepted(self, conn: Conn) -> bool:
        """A TCP connection is there (its upgrade not yet read); False: drop it (too many upgrades at once)."""

    def request(self, conn: Conn, path: str, headers: RequestHeaders) -> Response | None:
        """The answer to an HTTP request instead of the upgrade (403, 503, a static file), or None."""

    def opened(self, conn: Conn) -> None:
        """The upgrade is answered with 101: the websocket is open."""

    def message(self, conn: Conn, data: bytes) -> asyncio.Future[None] | None:
        """A client message (a text frame's UTF-8 bytes, untouched); a future while the router link is full."""

    def lost(self, conn: Conn) -> None:
        """The TCP connection is gone (after the closing handshake, an abort, or a reset)."""

    def overfull(self, conn: Conn) -> None:
        """Frames the protocol itself wrote (pongs) took the write buffer past ``max_buffer``: a client
        that sends pings and reads nothing must not grow the front's memory."""


class Conn(asyncio.Protocol):
    """One websocket: the sans-I/O protocol, its transport, and what the front keeps per session.

    ``protocol.state`` says whether frames may still be written (only while OPEN); ``sid`` is b""
    until the front gives it a session. The protocol is made with the first bytes: an upgrade that
    ``handshake.parse_upgrade`` reads is answered without it, and it starts OPEN.
    """

    __slots__ = ("sessions", "protocol", "transport", "max_size", "max_buffer", "sid", "path", "paused_since",
                 "pending", "closing", "ping", "ping_at", "opened", "_fragments", "_timer")

    def __init__(self, sessions: Sessions, max_size: int, max_buffer: int) -> None:
        """``max_size``: the largest client message (bytes, fragments included); ``max_buffer``: the write
        buffer above which the protocol's own writes are reported (``Sessions.overfull``)."""
        self.sessions = sessions
        self.max_size = max_size
        self.max_buffer = max_buffer
        self.protocol: ServerProtocol = None  # type: ignore[assignment]  # made by the first bytes
        self.opened = 0.0                     # loop time of its handshake (the keepalive skips new ones)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set by connection_made
        self.sid = b""
        self.path = ""                        # the request's path (for logs)
        self.paused_since: float | None = None  # set while the router holds this session's updates
        self.pending: list[bytes] = []        # frames of the current burst, written once at its end
        self.closing = False                  # the front started closing it (slow, timeout, drop)
        self.ping: bytes | None = None        # payload of the keepalive ping awaiting its pong
        self.ping_at = 0.0                    # ... and when it was sent (loop time)
        self._fragments: list[bytes] | None = None  # a fragmented message being received
        self._timer: asyncio.TimerHandle | None = None  # the opening or closing handshake's deadline

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.sessions.accepted(self):
            transport.abort()
            return
        self._timer = asyncio.get_running_loop().call_later(OPEN_TIMEOUT, self._open_timeout)

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        if protocol is None:  # the first bytes: the upgrade request, whole in one read most of the time
            if self._quick_upgrade(data):
                return
            protocol = self._protocol(State.CONNECTING)
        protocol.receive_data(data)
        events = protocol.events_received()
        if self._write_out() and self.transport.get_write_buffer_size() > self.max_buffer:
            self.sessions.overfull(self)  # pongs, the echo of a close, the EOF after a protocol error
        for event in events:
            if type(event) is Frame:
                self._frame(event)
            elif isinstance(event, Request):
                self._request(event)

    def eof_received(self) -> None:
        if self.protocol is None:
            return None  # (nothing received: the transport closes)
        self.protocol.receive_eof()
        self.protocol.events_received()
        self._write_out()
        # returning None: the transport closes (a websocket never writes after the peer's EOF)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.protocol is not None:
            self.protocol.receive_eof()  # idempotent: the state is CLOSED from here
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.pending = []
        self.sessions.lost(self)

    # ---------------------------------------------------------------- what the front calls

    def close(self, code: int, reason: str, grace: float | None = None) -> None:
        """Start the closing handshake: a close frame after what is buffered, the TCP connection aborted
        if the client has not closed it ``grace`` seconds later (the protocol's default: CLOSE_TIMEOUT)."""
        if self.protocol is not None and self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self._write_out(grace)
        elif self.protocol is None or self.protocol.state is State.CONNECTING:
            self.transport.abort()

    def ping_with(self, data: bytes, frame: bytes, now: float) -> None:
        """Write the keepalive sweep's ping (``frame``, whole, payload ``data``) and expect its pong."""
        self.ping, self.ping_at = data, now
        self.transport.write(frame)

    def abort_if_open(self) -> None:
        """The end of a closing handshake's grace: drop the buffer with the TCP connection."""
        self._timer = None
        if self.protocol.state is not State.CLOSED and not self.transport.is_closing():
            log.warning("! aborting %s: it did not complete the closing handshake in time",
                        self.sid.decode() or "a connection")
            self.transport.abort()

    # ---------------------------------------------------------------- inside

    def _protocol(self, state: State) -> ServerProtocol:
        self.protocol = ServerProtocol(max_size=self.max_size, logger=_ws_log, state=state)
        return self.protocol

    def _answer(self, path: str, headers: RequestHeaders) -> Response | None:
        """The front's answer instead of the upgrade (403, 503, static), None for the handshake."""
        self.path = path[:200]
        try:
            return self.sessions.request(self, path, headers)
        except Exception:  # a bug must not leave the client waiting
            log.exception("! failed to answer a request for %.200r", path)
            return ServerProtocol().reject(http.HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n")

    def _quick_upgrade(self, data: bytes) -> bool:
        """An upgrade as nearly every client sends it (router/front/handshake.py), answered here; False:
        anything else, for websockets' parser."""
        upgrade = handshake.parse_upgrade(data)
        if upgrade is None:
            return False
        response = self._answer(upgrade.path, upgrade.headers)
        if response is not None:  # refused (403, 503): the answer, then the end of the connection
            self._protocol(State.CONNECTING)
            self.transport.write(response.serialize())
            self.transport.close()
            return True
        self._protocol(State.OPEN)
        self.transport.write(handshake.switching_protocols(upgrade.key))
        self._opened()
        return True

    def _opened(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.opened = asyncio.get_running_loop().time()
        self.sessions.opened(self)

    def _request(self, request: Request) -> None:
        """The upgrade request, parsed by websockets: the front's answer if it has one, else the handshake."""
        response = self._answer(request.path, request.headers)
        if response is None:
            response = self.protocol.accept(request)  # 101, or 400/426 for a bad upgrade
        self.protocol.send_response(response)
        self._write_out()
        if self.protocol.state is State.OPEN:
            self._opened()
        elif self.protocol.handshake_exc is not None:
            log.debug("= refused an upgrade from %s: %s", self.transport.get_extra_info("peername"),
                      self.protocol.handshake_exc)

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode in _DATA:
            data = bytes(frame.data)  # (bytes already: no copy)
            if frame.fin and self._fragments is None:
                self._message(data)
            elif self._fragments is None:
                self._fragments = [data]  # (the protocol bounds the whole message by max_size)
            else:
                self._fragments.append(data)
                if frame.fin:
                    whole, self._fragments = b"".join(self._fragments), None
                    self._message(whole)
        elif opcode is Opcode.PONG:
            if frame.data == self.ping:
                self.ping = None
        # PING (answered by the protocol) and CLOSE (echoed by it) need nothing more here

    def _message(self, data: bytes) -> None:
        # (the state may be CLOSING already: a close frame parsed in the same read comes after this one)
        congested = self.sessions.message(self, data)
        if congested is not None and not congested.done():  # the router link is full: stop reading
            self.transport.pause_reading()
            congested.add_done_callback(self._resume_reading)

    def _resume_reading(self, _: asyncio.Future[None]) -> None:
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def _write_out(self, grace: float | None = None) -> bool:
        """Write what the protocol has to send (True if anything); once it expects the TCP connection to
        close, give the client until the deadline to do so."""
        transport = self.transport
        writes = self.protocol.data_to_send()
        for data in writes:
            if data:
                transport.write(data)
            elif transport.can_write_eof():  # the protocol's EOF: a server half-closes first
                try:
                    transport.write_eof()
                except OSError:
                    pass
            else:
                transport.close()
        if self.protocol.close_expected() and (self._timer is None or grace is not None):
            if self._timer is not None:
                self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_later(
                CLOSE_TIMEOUT if grace is None else grace, self.abort_if_open)
        return bool(writes)

    def _open_timeout(self) -> None:
        self._timer = None
        if self.protocol is None or self.protocol.state is State.CONNECTING:  # (None: not a byte received)
            log.debug("= dropped a connection that did not complete its upgrade in %.0f s", OPEN_TIMEOUT)
            self.transport.abort()
