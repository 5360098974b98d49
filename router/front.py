"""The websocket front: one session per websocket, frames relayed verbatim to and from the router.

The front keeps no object state. It multiplexes its websocket sessions over one ZeroMQ DEALER
(envelope in ``common.wire``): a frame a client sends becomes ``[MSG, sid, bytes]`` untouched (the
router parses and validates), and ``[SEND, frame, sid...]`` from the router is written once per
listed session with ``broadcast``. When the router restarts or vanishes, every websocket is
closed with 1012 so that clients reconnect and resync with the versions they already hold.

Plain HTTP GETs on the same port (anything that is not a websocket upgrade) are answered with the
files of ``router/static/``: ``/`` is the viewer page, ``/seasync.js`` the browser client.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
import urllib.parse
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.asyncio
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from common import codec
from common.wire import (
    CLOSE, DEFAULT_ROUTER, DROP, HEARTBEAT_INTERVAL, HELLO, MSG, OPEN, PEER_TIMEOUT, PING, PONG,
    RESET, SEND, WELCOME, peer_identity,
)

log = logging.getLogger("seasync.front")

WELCOME_WAIT = 5.0        # a websocket opened while the router is away waits this long, then 1013
HELLO_RETRY = PEER_TIMEOUT  # re-send HELLO this often until welcomed (queued HELLOs pile up otherwise)
DRAIN_BATCH = 256         # router messages handled per wake-up (ecosystem.md §4)
KEEPALIVE_INTERVAL = 10.0  # like seapig: ping every 10 s ...
KEEPALIVE_TIMEOUT = 50.0   # ... and drop a client whose pong is 60 s overdue
CLOSE_TIMEOUT = 3.0       # closing handshake; keeps shutdown under honcho's 5 s SIGKILL
STOP_TIMEOUT = 4.0        # how long shutdown waits for websocket handlers to finish

CLOSE_POLICY = 1008       # the router dropped the session
CLOSE_RESTART = 1012      # the router restarted: reconnect and resync
CLOSE_TRY_AGAIN = 1013    # no router yet
CLOSE_GOING_AWAY = 1001   # the front stops


@dataclass(frozen=True)
class FrontConfig:
    """Where the front listens and which router it serves."""

    router: str = DEFAULT_ROUTER
    host: str = "127.0.0.1"
    port: int = 3001
    max_frame: int = 1 << 20


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
    if file is None or body is None:
        status, reason, body, kind = 404, "Not Found", b"not found\n", "text/plain; charset=utf-8"
    else:
        status, reason, kind = 200, "OK", CONTENT_TYPES[file.suffix]
    log.debug("http GET %s -> %d", request.path, status)
    headers = Headers([
        ("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-cache"),
        ("X-Content-Type-Options", "nosniff"), ("Connection", "close"),
    ])
    return Response(status, reason, headers, body)


def close_reason(raw: bytes) -> str:
    """A websocket close reason from router bytes: valid UTF-8, at most the 123 bytes allowed."""
    return raw[:123].decode("utf-8", errors="ignore")


class Front:
    """The front process: ``await Front(config).run()`` serves until ``stop()`` is called."""

    def __init__(self, config: FrontConfig) -> None:
        self.config = config
        self.identity = peer_identity("front")
        self._sessions: dict[bytes, ServerConnection] = {}
        self._sids = itertools.count(1)
        self._epoch: bytes | None = None          # the router incarnation we are welcomed by
        self._welcomed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._last_heard = time.monotonic()
        self._hello_at = float("-inf")
        self._closing: set[asyncio.Task[None]] = set()  # websocket closes in flight
        self._dealer: zmq.asyncio.Socket | None = None

    # ---------------------------------------------------------------- lifecycle

    def stop(self) -> None:
        """Ask ``run`` to shut down (safe to call from a signal handler, idempotent)."""
        self._stopping.set()

    async def run(self) -> None:
        """Connect to the router, serve websockets until stopped, then close everything."""
        ctx = zmq.asyncio.Context()
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.IDENTITY, self.identity)
        dealer.setsockopt(zmq.LINGER, 0)
        self._dealer = dealer
        try:
            dealer.connect(self.config.router)
            server = await serve(
                self._handle, self.config.host, self.config.port,
                process_request=lambda _connection, request: http_response(request),
                compression=None, max_size=self.config.max_frame,
                ping_interval=KEEPALIVE_INTERVAL, ping_timeout=KEEPALIVE_TIMEOUT,
                close_timeout=CLOSE_TIMEOUT,
            )
            log.info("listening on ws://%s:%d, router %s as %s", self.config.host,
                     self.config.port, self.config.router, self.identity.decode())
            self._send_hello()
            loops = [asyncio.create_task(self._receive_loop()),
                     asyncio.create_task(self._heartbeat_loop())]
            await self._stopping.wait()
            await self._shutdown(server, loops)
        finally:
            linger = 1000 if self._epoch is not None else 0
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

    async def _handle(self, ws: ServerConnection) -> None:
        """One websocket = one session: OPEN, a MSG per frame, CLOSE however it ends."""
        peer = ws.remote_address
        if not await self._wait_welcome(ws):
            if ws.state is State.OPEN:
                log.info("refused %s: router not available", peer)
                await ws.close(CLOSE_TRY_AGAIN, "router not available, try again")
            return
        sid = str(next(self._sids)).encode()
        self._sessions[sid] = ws
        log.info("open %s from %s path=%s", sid.decode(), peer, ws.request.path if ws.request else "?")
        try:
            self._send([OPEN, sid])
            while True:
                frame = await ws.recv(decode=False)  # text frames stay UTF-8 bytes, untouched
                if self._sessions.get(sid) is ws:
                    await self._send([MSG, sid, frame])
        except ConnectionClosed:
            pass
        finally:
            if self._sessions.get(sid) is ws:
                self._end_session(sid)
            log.info("close %s code=%s %s", sid.decode(), ws.close_code, ws.close_reason or "")

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
        if self._sessions.pop(sid, None) is not None:
            self._send([CLOSE, sid])

    def _close_ws(self, ws: ServerConnection, code: int, reason: str) -> None:
        """Start a closing handshake without waiting for it."""
        task = asyncio.create_task(ws.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # ---------------------------------------------------------------- router

    def _send(self, frames: list[bytes]) -> Awaitable[object]:
        """Queue a message to the router; await the result for backpressure, or don't."""
        assert self._dealer is not None
        if self._dealer.closed:  # a handler outliving shutdown: the router is gone for us
            future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            future.set_result(None)
            return future
        future = self._dealer.send_multipart(frames)
        future.add_done_callback(_log_send_failure)
        return future

    def _send_hello(self) -> None:
        self._hello_at = time.monotonic()
        self._send([HELLO, codec.dumps({
            "role": "front", "name": f"front@{self.config.host}:{self.config.port}",
            "pid": os.getpid(), "host": socket.gethostname(),
        })])

    async def _receive_loop(self) -> None:
        """Handle router messages; after each await, drain what is already queued (batching)."""
        assert self._dealer is not None
        dealer = self._dealer
        while True:
            self._dispatch(await dealer.recv_multipart())
            for _ in range(DRAIN_BATCH):
                if not dealer.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    break
                try:
                    frames = dealer.recv_multipart(zmq.NOBLOCK).result()
                except zmq.Again:
                    break
                self._dispatch(frames)

    async def _heartbeat_loop(self) -> None:
        """PING while welcomed, HELLO until welcomed, and notice a silent router."""
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            now = time.monotonic()
            if self._epoch is None:
                if now - self._hello_at >= HELLO_RETRY:
                    self._send_hello()
            elif now - self._last_heard > PEER_TIMEOUT:
                self._router_lost(f"no router traffic for {PEER_TIMEOUT:g} s")
            else:
                self._send([PING])

    def _dispatch(self, frames: list[bytes]) -> None:
        """One router message. Malformed ones are logged and ignored, never fatal."""
        self._last_heard = time.monotonic()
        try:
            kind = frames[0]
            if kind == SEND and len(frames) >= 2:
                sessions = self._sessions
                broadcast([ws for ws in map(sessions.get, frames[2:]) if ws is not None],
                          frames[1], text=True)
            elif kind == DROP and len(frames) in (2, 3):
                self._drop(frames[1], close_reason(frames[2]) if len(frames) == 3 else "")
            elif kind == WELCOME and len(frames) == 2:
                self._welcome(frames[1])
            elif kind == PONG and len(frames) == 2:
                if self._epoch is not None and frames[1] != self._epoch:
                    self._router_lost("router epoch changed")
            elif kind == RESET and len(frames) == 1:
                self._router_lost("router sent RESET")
            else:
                log.warning("ignoring malformed router message: %.200r", frames)
        except Exception:  # a bug or a frame we did not foresee must not stop the loop
            log.exception("failed to handle router message: %.200r", frames)

    def _welcome(self, epoch: bytes) -> None:
        if self._epoch is None:
            self._epoch = epoch
            self._welcomed.set()
            log.info("router welcomed us, epoch %r", epoch)
        elif epoch != self._epoch:
            self._router_lost("router epoch changed")
        # the same epoch again answers a repeated HELLO: nothing to do

    def _drop(self, sid: bytes, reason: str) -> None:
        ws = self._sessions.get(sid)
        if ws is None:
            return
        log.info("router drops %s: %s", sid.decode(errors="replace"), reason)
        self._end_session(sid)
        self._close_ws(ws, CLOSE_POLICY, reason)

    def _router_lost(self, why: str) -> None:
        """The router restarted or vanished: close every websocket (1012) and HELLO again."""
        if self._epoch is None:
            return  # not welcomed: a HELLO is already on its way (and retried)
        sessions, self._sessions = self._sessions, {}
        log.warning("%s: closing %d websockets, saying HELLO again", why, len(sessions))
        self._epoch = None
        self._welcomed.clear()
        for ws in sessions.values():
            self._close_ws(ws, CLOSE_RESTART, "router restarted")
        self._send_hello()


def _log_send_failure(future: asyncio.Future[object]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("send to router failed: %s", future.exception())
