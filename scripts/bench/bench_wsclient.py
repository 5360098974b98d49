"""A lean websocket client connection for the benchmark's client processes (``bench_clients.py``).

The benchmark's clients are measuring instruments sharing 2 cores with the servers they measure, so
their CPU per frame is taken from the servers in every end-to-end figure. The ``websockets`` client
costs 22-28 µs of user CPU per received frame here (a sans-I/O parser built on generators, an
assembler, a reader task and a future per ``recv``, and asyncio's 256 KiB ``recv`` per read, which
glibc serves with mmap/munmap). Here one epoll set per process holds the sockets of open connections
and one asyncio reader callback drains it (``Reactor``): each ready socket is read into one shared
buffer and its frames are parsed in place (``WsProtocol``), each message's bytes handed to a callback.
It implements what the benchmark needs of RFC 6455, and checks it:

- the opening handshake written by hand: ``GET`` with ``Upgrade: websocket`` and a random
  ``Sec-WebSocket-Key``; the answer must be ``101`` with ``Upgrade: websocket``, ``Connection:
  Upgrade`` and the matching ``Sec-WebSocket-Accept``, and no extension (none is offered);
- client frames masked with a random key (text messages, pongs, close);
- server frames: unmasked, FIN/RSV/opcode checked, 7-, 16- and 64-bit lengths, fragmented messages
  reassembled, ping answered with a pong, close answered with a close echoing its code;
- protocol errors fail the connection with 1002 (the close code recorded is the one sent).

``close_code`` follows ``websockets``: the code of the close frame received (1005 when it had none),
1006 when the connection was lost without one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import select
import socket
import time
import weakref
from collections.abc import Callable
from urllib.parse import urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 65536  # a handshake response longer than this is not a websocket server's
CLOSE_TIMEOUT = 5.0  # how long the server may take to close TCP after the closing handshake

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
CONNECTING, OPEN, CLOSING, CLOSED = range(4)

OnMessage = Callable[[bytes | bytearray, float], None]  # (payload, perf_counter when its bytes were read)
OnClosed = Callable[[int], None]  # close code


class HandshakeError(Exception):
    """The server did not accept the websocket upgrade (not an OSError: not worth a retry)."""


def parse_url(url: str) -> tuple[str, int, str]:
    """(host, port, path) of a ``ws://`` URL."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"only ws:// URLs are supported: {url!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname, parts.port or 80, path


def accept_value(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` a server must answer to ``key`` (RFC 6455, 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def handshake_request(host: str, port: int, path: str, key: bytes) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
            f"User-Agent: seasync-bench\r\n\r\n").encode()


def check_response(head: bytes, key: bytes) -> None:
    """Raise HandshakeError unless ``head`` (status line and headers) accepts the upgrade."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1."):
        raise HandshakeError(f"not an HTTP response: {lines[0][:80]!r}")
    if status[1] != "101":
        raise HandshakeError(f"server rejected the upgrade: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise HandshakeError(f"malformed header line {line[:80]!r}")
        name = name.strip().lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        raise HandshakeError(f"bad Upgrade header: {headers.get('upgrade')!r}")
    if "upgrade" not in [v.strip().lower() for v in headers.get("connection", "").split(",")]:
        raise HandshakeError(f"bad Connection header: {headers.get('connection')!r}")
    if headers.get("sec-websocket-accept", "").encode() != accept_value(key):
        raise HandshakeError("wrong Sec-WebSocket-Accept")
    if headers.get("sec-websocket-extensions"):
        raise HandshakeError("an extension was not offered: " + headers["sec-websocket-extensions"])


def mask(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``key`` (one big-integer XOR: client frames are small)."""
    n = len(payload)
    if not n:
        return b""
    pad = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(pad, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One whole (FIN) client frame, masked with a fresh random key as RFC 6455 requires."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    return head + key + mask(payload, key)


def close_payload(code: int) -> bytes:
    return code.to_bytes(2, "big") if code != 1005 else b""


READ_SIZE = 65536
_read_buffer = bytearray(READ_SIZE)  # shared: a read is parsed before the next one (one thread)


class WsProtocol:
    """One client websocket: handshake, then every server message passed to ``on_message``.

    It has the methods of an ``asyncio.BufferedProtocol`` (whose reads land in ``_read_buffer``)
    and is driven by a ``RawTransport``.
    """

    def __init__(self, host: str, port: int, path: str, on_message: OnMessage, on_closed: OnClosed) -> None:
        self.request_args = (host, port, path)
        self.on_message = on_message
        self.on_closed = on_closed
        self.key = base64.b64encode(os.urandom(16))
        self.state = CONNECTING
        self.transport: RawTransport | None = None
        self.buf = bytearray()  # bytes of an incomplete head or frame
        self.need = 0  # buffered bytes needed before parsing again
        self.fragments: list[bytes] | None = None  # a fragmented message being reassembled
        self.close_code: int | None = None  # received (or 1002 sent on a protocol error)
        self.close_sent = False
        self.reading = False  # frames are parsed: from the handshake until a close frame or an error
        self.timer: asyncio.TimerHandle | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int] = loop.create_future()

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: RawTransport) -> None:
        self.transport = transport
        self.transport.write(handshake_request(*self.request_args, self.key))

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_read_buffer[:nbytes])

    def data_received(self, data: bytes | bytearray) -> None:
        """Bytes from the socket: the handshake response, then frames (an incomplete rest is kept)."""
        if self.buf:
            self.buf += data
            if len(self.buf) < self.need:
                return
            data = bytes(self.buf)
            self.buf.clear()
        if self.state == CONNECTING:
            data = self._handshake(data)
            if not data:
                return
        if self.reading:
            self._frames(data, time.perf_counter())

    def eof_received(self) -> bool | None:
        return None  # close the transport: the server closed its side

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self.reading = False
        if self.timer is not None:
            self.timer.cancel()
        code = self.close_code if self.close_code is not None else 1006
        if not self.opened.done():
            self.opened.set_exception(HandshakeError(f"connection lost during the handshake ({exc or 'EOF'})"))
            self.opened.exception()  # retrieved: a failed open is reported by the caller
        else:
            self.on_closed(code)
        if not self.closed.done():
            self.closed.set_result(code)

    # ------------------------------------------------------------ API

    def send_text(self, payload: bytes) -> None:
        if self.state == OPEN:
            self.transport.write(client_frame(OP_TEXT, payload))

    def close(self, code: int = 1000) -> None:
        """Start the closing handshake; ``closed`` resolves when TCP is closed (or aborted)."""
        if self.state == CONNECTING:
            self._abort()
        elif self.state == OPEN:
            self._send_close(code)

    async def wait_closed(self) -> int:
        return await self.closed

    # ------------------------------------------------------------ internals

    def _handshake(self, data: bytes) -> bytes:
        """Consume the response head; returns the bytes after it (frames), b"" while incomplete."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > MAX_HEAD:
                self._fail_open(HandshakeError("handshake response too long"))
            else:
                self.buf += data
                self.need = len(data) + 1
            return b""
        try:
            check_response(data[:end], self.key)
        except HandshakeError as exc:
            self._fail_open(exc)
            return b""
        self.state = OPEN
        self.reading = True
        self.opened.set_result(None)
        return data[end + 4:]

    def _fail_open(self, exc: Exception) -> None:
        self.opened.set_exception(exc)
        self._abort()

    def _frames(self, data: bytes, now: float) -> None:
        """Parse every whole frame of ``data``; keep the incomplete rest for the next read."""
        pos, n = 0, len(data)
        while True:
            avail = n - pos
            if avail < 2:
                need = 2
                break
            b0, b1 = data[pos], data[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                head = 4
                if avail < head:
                    need = head
                    break
                length = int.from_bytes(data[pos + 2:pos + 4], "big")
            elif length == 127:
                head = 10
                if avail < head:
                    need = head
                    break
                length = int.from_bytes(data[pos + 2:pos + 10], "big")
            if head + length > avail:
                need = head + length
                break
            if b1 & 0x80 or b0 & 0x70:
                return self._protocol_error()  # masked server frame, or RSV bits without extensions
            end = pos + head + length
            payload = data[pos + head:end]
            pos = end
            opcode = b0 & 0x0F
            if opcode == OP_TEXT or opcode == OP_BINARY:
                if self.fragments is not None:
                    return self._protocol_error()
                if b0 & 0x80:
                    self.on_message(payload, now)
                else:
                    self.fragments = [payload]
            elif opcode == OP_CONT:
                if self.fragments is None:
                    return self._protocol_error()
                self.fragments.append(payload)
                if b0 & 0x80:
                    whole, self.fragments = b"".join(self.fragments), None
                    self.on_message(whole, now)
            elif not b0 & 0x80 or length > 125:
                return self._protocol_error()  # control frames are whole and short
            elif opcode == OP_PING:
                if not self.close_sent:
                    self.transport.write(client_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                return self._close_received(payload)
            elif opcode != OP_PONG:
                return self._protocol_error()
            if not self.reading:
                return  # the connection failed in a callback
        if pos < n:
            self.buf += data[pos:]
            self.need = need  # bytes from the start of the buffered rest

    def _close_received(self, payload: bytes) -> None:
        """The server's close (or its answer to ours): echo it once; the server then closes TCP."""
        if len(payload) == 1:
            return self._protocol_error()
        self.reading = False
        self.close_code = int.from_bytes(payload[:2], "big") if payload else 1005
        if not self.close_sent:
            self._send_close(self.close_code)
        self.state = CLOSING

    def _send_close(self, code: int) -> None:
        self.close_sent = True
        self.state = CLOSING
        self.transport.write(client_frame(OP_CLOSE, close_payload(code)))
        self.timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._abort)

    def _protocol_error(self) -> None:
        self.reading = False
        self.close_code = 1002
        if not self.close_sent:
            self._send_close(1002)
        self.transport.close()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class RawTransport:
    """The transport of one connection in a ``Reactor``: the three calls ``WsProtocol`` makes."""

    __slots__ = ("reactor", "sock", "fd", "protocol", "out", "closing")

    def __init__(self, reactor: "Reactor", sock: socket.socket, protocol: WsProtocol) -> None:
        self.reactor = reactor
        self.sock: socket.socket | None = sock
        self.fd = sock.fileno()
        self.protocol = protocol
        self.out = bytearray()  # what the socket did not take yet
        self.closing = False

    def write(self, data: bytes) -> None:
        if self.sock is None or self.closing:
            return
        if self.out:
            self.out += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            return self.lost(exc)
        if sent < len(data):
            self.out += data[sent:]
            self.reactor.epoll.modify(self.fd, select.EPOLLIN | select.EPOLLOUT)

    def close(self) -> None:
        """Close once what was written is sent."""
        self.closing = True
        if not self.out:
            self.lost(None)

    def abort(self) -> None:
        self.lost(None)

    def read(self, buf: bytearray) -> None:
        try:
            n = self.sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            return self.lost(exc)
        if n:
            self.protocol.buffer_updated(n)
        else:  # the server closed its side
            self.protocol.eof_received()
            self.close()

    def flush(self) -> None:
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            return self.lost(exc)
        del self.out[:sent]
        if not self.out:
            self.reactor.epoll.modify(self.fd, select.EPOLLIN)
            if self.closing:
                self.lost(None)

    def lost(self, exc: Exception | None) -> None:
        """Close the socket now; the protocol hears of it on the next loop iteration (as asyncio does)."""
        if self.sock is None:
            return
        self.reactor.detach(self)
        self.sock.close()
        self.sock = None
        self.out.clear()
        self.reactor.loop.call_soon(self.protocol.connection_lost, exc)


class Reactor:
    """The sockets of every open connection in one epoll set, drained by one asyncio reader callback.

    asyncio runs a handle, a transport method and a protocol method per readable socket per loop
    iteration; here one callback per iteration reads every ready socket into one shared buffer
    (``recv_into``: no allocation per read): ~1 µs less per read than asyncio's ``BufferedProtocol``
    path, which is itself ~10 µs less than its plain ``Protocol`` path (``recv(256 KiB)``).
    Connecting, timers and the benchmark's commands stay on the asyncio loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epoll = select.epoll()
        self.transports: dict[int, RawTransport] = {}
        loop.add_reader(self.epoll.fileno(), self._ready)

    def attach(self, sock: socket.socket, protocol: WsProtocol) -> RawTransport:
        transport = RawTransport(self, sock, protocol)
        self.transports[transport.fd] = transport
        self.epoll.register(transport.fd, select.EPOLLIN)
        protocol.connection_made(transport)
        return transport

    def detach(self, transport: RawTransport) -> None:
        if self.transports.pop(transport.fd, None) is not None:
            self.epoll.unregister(transport.fd)

    def _ready(self) -> None:
        buf = _read_buffer
        get = self.transports.get
        for fd, events in self.epoll.poll(0):
            transport = get(fd)
            if transport is None:
                continue
            try:
                if events & select.EPOLLOUT:
                    transport.flush()
                if events & ~select.EPOLLOUT and transport.sock is not None:
                    transport.read(buf)
            except Exception as exc:  # a bug or bad input must cost one connection, not the process
                transport.lost(exc)


_reactors: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Reactor]" = weakref.WeakKeyDictionary()
_addresses: dict[tuple[str, int], tuple] = {}


def reactor() -> Reactor:
    loop = asyncio.get_running_loop()
    if loop not in _reactors:
        _reactors[loop] = Reactor(loop)
    return _reactors[loop]


async def _address(host: str, port: int) -> tuple:
    """(family, sockaddr) of ``host:port``, resolved once per process."""
    if (host, port) not in _addresses:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        _addresses[host, port] = (infos[0][0], infos[0][4])
    return _addresses[host, port]


async def open_connection(url: str, on_message: OnMessage, on_closed: OnClosed, timeout: float = 60.0) -> WsProtocol:
    """Connect and complete the handshake within ``timeout`` (TimeoutError, an OSError, if not)."""
    host, port, path = parse_url(url)
    loop = asyncio.get_running_loop()

    async def attempt() -> WsProtocol:
        family, address = await _address(host, port)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, address)
        except BaseException:
            sock.close()
            raise
        proto = WsProtocol(host, port, path, on_message, on_closed)
        reactor().attach(sock, proto)
        try:
            await asyncio.shield(proto.opened)
        except asyncio.CancelledError:
            proto.close()
            raise
        return proto

    return await asyncio.wait_for(attempt(), timeout)
