"""The front process: websocket sessions, keepalive, slow consumers, and the router's decisions.

The package's overview is router/front/__init__.py; fan-out is router/front/fanout.py, the
router link router/front/link.py, HTTP and admission router/front/web.py.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import socket
import time
from dataclasses import dataclass

import zmq
from websockets.http11 import Response
from websockets.protocol import State

from common.logs import LogLimit
from common.peer import Dropped, Event, Lost, Peer, Send, Sends, Welcomed
from common.wire import (
    ACK,
    CLOSE,
    DEFAULT_ROUTER,
    HEARTBEAT_INTERVAL,
    OPEN,
    PAUSE,
    REFUSAL_LOG_INTERVAL,
    RESUME,
    peer_identity,
    secure_peer,
    unpack_sids,
)
from router.front.connection import Conn
from router.front.fanout import Backpressure, Congestion, FanOut
from router.front.link import RouterLink
from router.front.web import Admission, RequestHeaders, busy_response, forbidden_response, http_response

log = logging.getLogger("seasync.front")

WELCOME_WAIT = 5.0        # a websocket opened while the router is away waits this long, then 1013
STOP_TIMEOUT = 4.0        # how long shutdown waits for the websockets to close
CONGESTION_CHECK = 0.05   # how often paused connections are checked for drain or timeout
SLOW_CLOSE_GRACE = 30.0   # a slow consumer's close frame waits behind its buffer this long, then abort

CLOSE_POLICY = 1008       # the router dropped the session, or the client reads too slowly
CLOSE_RESTART = 1012      # the router restarted: reconnect and resync
CLOSE_TRY_AGAIN = 1013    # no router yet, or too many connections
CLOSE_INTERNAL = 1011     # keepalive ping timeout (as websockets' own keepalive)
CLOSE_GOING_AWAY = 1001   # the front stops
SLOW_REASON = "consumer too slow"



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
    credit: int = 8                  # SENDS the router may have in flight to us (0: no credit, old behaviour)
    write_delay: float = 0.0         # testing only: seconds each burst blocks the loop (a front slower than its router)


def listen_backlog(max_connections: int) -> int:
    """Room in the listen queue for every client reconnecting at once (the kernel caps it at
    net.core.somaxconn). asyncio's default of 100 overflowed when 2,000 clients came back together:
    each SYN dropped waited out TCP's 1 s retransmission timer (1 s, then 3 s, per client)."""
    return max(100, min(max_connections, 65535))


def close_reason(raw: bytes) -> str:
    """A websocket close reason from router bytes: valid UTF-8, at most the 123 bytes allowed."""
    return raw[:123].decode("utf-8", errors="ignore")


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
        self._any_paused = asyncio.Event()  # wakes _congestion_loop: an empty front does not poll
        self._fanout = FanOut(self._sessions, self.policy, self._on_congestion)
        self._sids = itertools.count(1)
        self.messages_in = self.bytes_in = 0  # client frames received (Prometheus, router/metrics.py)
        self._connections = 0                     # websockets open right now (for --max-connections)
        self._waiting: dict[Conn, list[bytes]] = {}  # open while the router is away: their messages so far
        self._upgrading: set[Conn] = set()        # TCP connections whose upgrade is not answered yet
        self._all_lost = asyncio.Event()          # set when the last open websocket is gone (shutdown)
        self._peer = Peer({"role": "front", "name": f"front@{config.host}:{config.port}",
                           "pid": os.getpid(), "host": socket.gethostname(),
                           **({"credit": config.credit} if config.credit > 0 else {})},
                          config.router, log, random.random)  # the envelope's protocol (common/peer.py)
        self._welcomed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._link: RouterLink | None = None
        self._unacked = 0  # SENDS messages of the current burst, acknowledged once written (credit)
        self.admission = Admission.for_front(config.host, config.allowed_hosts, config.allowed_origins,
                                             _machine_names())
        self._refusals = LogLimit(burst=1, period=REFUSAL_LOG_INTERVAL)  # one line per code and interval

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
            link = self._link = RouterLink(dealer, self._dispatch, self._flush, self._peer.pack_msg)
            max_frame, max_buffer = self.config.max_frame, self.config.slow_max_buffer
            server = await asyncio.get_running_loop().create_server(
                lambda: Conn(self, max_frame, max_buffer), self.config.host, self.config.port,
                backlog=listen_backlog(self.config.max_connections))
            log.info("= listening on ws://%s:%d, router %s as %s (max %d connections)", self.config.host,
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

    async def _shutdown(self, server: asyncio.Server, loops: list[asyncio.Task[None]]) -> None:
        """Stop listening, close websockets with 1001 (each tells the router CLOSE as it goes), then stop
        the router loops."""
        log.info("= stopping: closing %d websockets", len(self._sessions))
        server.close()
        for conn in [*self._sessions.values(), *self._waiting]:
            conn.close(CLOSE_GOING_AWAY, "server stopping")
        if self._connections:
            self._all_lost.clear()
            try:
                await asyncio.wait_for(self._all_lost.wait(), STOP_TIMEOUT)
            except TimeoutError:
                log.warning("! %d websockets did not close within %.0f s", self._connections, STOP_TIMEOUT)
        for sid in list(self._sessions):
            self._end_session(sid)
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)

    # ---------------------------------------------------------------- websockets

    # (the calls of router/front/connection.py's Conn: the ``Sessions`` it is written against)

    def request(self, conn: Conn, path: str, headers: RequestHeaders) -> Response | None:
        """403 for a Host the front does not serve or a page from a foreign Origin (``Admission``);
        static files for plain GETs; 503 for an upgrade beyond --max-connections; None: the upgrade."""
        refused = self.admission.refusal(headers)
        if refused is not None:
            code, message = refused
            peer = conn.transport.get_extra_info("peername")
            line = self._refusals.line(code, f"! refused a request from {peer[0] if peer else '?'} (Host "
                                             f"{headers.get('Host', '')[:100]!r}, Origin "
                                             f"{headers.get('Origin', '')[:100]!r}): {code} (403)",
                                       time.monotonic())
            if line is not None:
                log.warning("%s", line)
            return forbidden_response(code, message)
        response = http_response(path, headers)
        if response is None and self._connections >= self.config.max_connections:
            log.warning("! refused a connection: %d connections is the limit (--max-connections)",
                        self.config.max_connections)
            return busy_response()
        return response

    def accepted(self, conn: Conn) -> bool:
        """Upgrades in progress are bounded too (--max-connections of them; each is dropped 10 s after
        connecting at the latest): a flood of TCP connections that never send must not take every socket."""
        if len(self._upgrading) >= self.config.max_connections:
            line = self._refusals.line("upgrades", f"! dropped a connection: {len(self._upgrading)} upgrades "
                                                   "in progress is the limit (--max-connections)", time.monotonic())
            if line is not None:
                log.warning("%s", line)
            return False
        self._upgrading.add(conn)
        return True

    def opened(self, conn: Conn) -> None:
        """One websocket = one session, once the router is there (until then it waits, WELCOME_WAIT)."""
        self._upgrading.discard(conn)
        self._connections += 1
        if self._welcomed.is_set():
            self._start_session(conn)
            return
        self._waiting[conn] = []
        asyncio.get_running_loop().call_later(WELCOME_WAIT, self._welcome_timeout, conn)

    def message(self, conn: Conn, data: bytes) -> asyncio.Future[None] | None:
        """A client frame: a MSG for the router (``RouterLink.post``; a future while the link is full)."""
        self.messages_in += 1
        self.bytes_in += len(data)
        sid = conn.sid
        if sid and self._sessions.get(sid) is conn and self._link is not None:
            return self._link.post(sid, data)
        early = self._waiting.get(conn)
        if early is not None:  # kept for the session (one read's worth: reading pauses until then)
            early.append(data)
            conn.transport.pause_reading()
        return None

    def lost(self, conn: Conn) -> None:
        """The TCP connection is gone: the session ends (CLOSE to the router, once)."""
        if not conn.opened:
            self._upgrading.discard(conn)
            return  # never upgraded (a static file, a refusal, a bad request)
        self._connections -= 1
        self._waiting.pop(conn, None)
        if conn.sid and self._sessions.get(conn.sid) is conn:
            self._end_session(conn.sid)
        if conn.sid and log.isEnabledFor(logging.DEBUG):
            log.debug("= close %s code=%s %s", conn.sid.decode(), conn.protocol.close_code,
                      conn.protocol.close_reason or "")
        if not self._connections:
            self._all_lost.set()

    def overfull(self, conn: Conn) -> None:
        """The slow-consumer policy, for a buffer the protocol's pongs filled (see ``Sessions.overfull``)."""
        self._fanout.check(conn)

    # ---------------------------------------------------------------- sessions

    def _start_session(self, conn: Conn) -> None:
        if self.config.send_buffer:
            _set_send_buffer(conn, self.config.send_buffer)
        conn.sid = sid = str(next(self._sids)).encode()
        self._sessions[sid] = conn
        if log.isEnabledFor(logging.DEBUG):
            log.debug("= open %s from %s path=%s", sid.decode(), conn.transport.get_extra_info("peername"),
                      conn.path)
        self._send([OPEN, sid])

    def _admit_waiting(self) -> None:
        """The router is there: the websockets that waited for it get their sessions, and their messages."""
        waiting, self._waiting = self._waiting, {}
        for conn, early in waiting.items():
            if conn.protocol.state is not State.OPEN:
                continue
            self._start_session(conn)
            for data in early:
                self._post(conn.sid, data)
            if early:
                conn.transport.resume_reading()

    def _welcome_timeout(self, conn: Conn) -> None:
        if self._waiting.pop(conn, None) is not None and conn.protocol.state is State.OPEN:
            log.info("! refused %s: router not available", conn.transport.get_extra_info("peername"))
            conn.close(CLOSE_TRY_AGAIN, "router not available, try again")

    def _end_session(self, sid: bytes) -> None:
        """Forget a session and tell the router, exactly once per session."""
        self._paused.pop(sid, None)
        if self._sessions.pop(sid, None) is not None:
            self._send([CLOSE, sid])

    # ---------------------------------------------------------------- slow consumers

    def _on_congestion(self, conn: Conn, action: Congestion) -> None:
        """Act on the policy's decision for one connection."""
        if action is Congestion.PAUSE:
            conn.paused_since = time.monotonic()
            self._paused[conn.sid] = conn
            self._any_paused.set()
            log.info("> pause %s: %d bytes waiting to be written", conn.sid.decode(),
                     conn.transport.get_write_buffer_size())
            self._send([PAUSE, conn.sid])
        elif action is Congestion.RESUME:
            conn.paused_since = None
            self._paused.pop(conn.sid, None)
            log.info("> resume %s", conn.sid.decode())
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
        log.warning("! closing %s: %s (%d bytes buffered, paused %.1f s)", conn.sid.decode(), SLOW_REASON,
                    buffered, paused)
        conn.close(CLOSE_POLICY, SLOW_REASON, SLOW_CLOSE_GRACE)

    async def _congestion_loop(self) -> None:
        """Resume paused connections that drained; close those paused too long.

        Polls every CONGESTION_CHECK only while a connection is paused; with none it waits for the
        next PAUSE (``_any_paused``): at 20 wake-ups a second this loop was most of an idle front's CPU."""
        while True:
            if not self._paused:
                self._any_paused.clear()
                await self._any_paused.wait()
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

        websockets' own keepalive runs one task per connection (about 2 KiB each); this loop does the
        same for all of them, and every connection it pings gets the same frame (``_Ping``). Connections
        opened under half an interval ago wait for the next sweep (see ``_keepalive``). Closing
        handshakes have their own deadline (router/front/connection.py), not this sweep.
        """
        interval, timeout = self.config.ping_interval, self.config.ping_timeout
        if interval <= 0:
            return
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            ping = _Ping()
            for conn in list(self._sessions.values()):
                try:
                    self._keepalive(conn, now, timeout, ping)
                except Exception:  # one broken connection must not stop the pings of the others
                    log.exception("! keepalive of %s failed", conn.sid.decode())

    def _keepalive(self, conn: Conn, now: float, timeout: float, ping: "_Ping") -> None:
        if conn.closing or conn.protocol.state is not State.OPEN:
            return
        if conn.ping is not None:  # no pong yet
            if now - conn.ping_at > timeout:
                conn.closing = True
                log.info("= closing %s: keepalive ping timeout (%.0f s)", conn.sid.decode(), timeout)
                self._end_session(conn.sid)
                conn.close(CLOSE_INTERNAL, "keepalive ping timeout")
            return
        if now - conn.opened < self.config.ping_interval / 2:
            # its handshake is proof of life and was a write to it, under half an interval ago: its first
            # ping goes with the next sweep (at most 1.5 intervals after the handshake, within the 20 s a
            # seapig Ruby client waits at the default 10 s). A reconnect storm is not also a ping storm.
            return
        conn.ping_with(ping.data, ping.frame, now)

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
            if self.config.write_delay:
                time.sleep(self.config.write_delay)  # testing only (--write-delay): a CPU-bound front
            self._fanout.flush()
        except Exception:  # a bug must not stop the loop
            log.exception("! failed to write a burst of frames")
        if self._unacked:  # written: the router may send as many more (credit, common/wire.py)
            if self.config.credit > 0 and self._peer.welcomed and self._link is not None:
                self._link.send_ahead([ACK, str(self._unacked).encode()])
            self._unacked = 0

    async def _heartbeat_loop(self) -> None:
        """Run the peer machine's timers: HELLO retries until welcomed, then PINGs and the silence check."""
        while True:
            delay = self._peer.deadline() - time.monotonic()
            await asyncio.sleep(min(HEARTBEAT_INTERVAL, max(0.01, delay)))
            try:
                self._on_peer(self._peer.tick(time.monotonic()))
            except Exception:  # a bug must not stop the heartbeats
                log.exception("! peer tick failed")

    def _dispatch(self, frames: list[bytes]) -> None:
        """One router message. Malformed ones are logged and ignored (by the peer machine), never fatal."""
        try:
            events = self._peer.on_message(frames, time.monotonic())
            if len(events) == 1 and type(events[0]) is Sends:  # the hot path: frames for the burst
                self._unacked += 1
                add = self._fanout.add
                for frame, packed in events[0].pairs:
                    add(frame, unpack_sids(packed))
                return
            self._flush()
            self._on_peer(events)
        except Exception:  # a bug or a frame we did not foresee must not stop the loop
            log.exception("! failed to handle router message: %.200r", frames)

    def _on_peer(self, events: list[Event]) -> None:
        """Carry out what the peer machine decided, in order."""
        for event in events:
            if isinstance(event, Send):
                self._send(event.frames)
            elif isinstance(event, Sends):
                self._unacked += 1
                for frame, packed in event.pairs:
                    self._fanout.add(frame, unpack_sids(packed))
            elif isinstance(event, Dropped):
                self._drop(event.sid, close_reason(event.reason))
            elif isinstance(event, Welcomed):
                self._welcomed.set()
                self._admit_waiting()
            elif isinstance(event, Lost):
                self._router_lost(event.reason)

    def _drop(self, sid: bytes, reason: str) -> None:
        conn = self._sessions.get(sid)
        if conn is None:
            return
        log.info("< router drops %s: %s", sid.decode(errors="replace"), reason)
        self._end_session(sid)
        conn.close(CLOSE_POLICY, reason)

    def _router_lost(self, why: str) -> None:
        """The router restarted or vanished: close every websocket (1012); the machine's HELLO follows."""
        sessions = dict(self._sessions)
        self._sessions.clear()  # cleared in place: the fan-out shares this dict
        self._paused.clear()
        self._unacked = 0  # SENDS of a router incarnation gone: the new one starts with full credit
        log.warning("! %s: closing %d websockets", why, len(sessions))
        self._welcomed.clear()
        if self._link is not None:
            self._link.drop()  # envelopes of sessions the new router will not know: their clients resync
        for conn in sessions.values():
            conn.close(CLOSE_RESTART, "router restarted")


class _Ping:
    """One keepalive sweep's ping, shared by every connection it pings: server frames are unmasked, so
    one payload and one frame serve them all (a connection has at most one ping pending, and a pong
    is matched by its payload)."""

    __slots__ = ("data", "frame")

    def __init__(self) -> None:
        self.data = random.getrandbits(32).to_bytes(4, "big")
        self.frame = bytes((0x89, 4)) + self.data  # FIN + ping, unmasked, 4-byte payload


def _set_send_buffer(conn: Conn, size: int) -> None:
    """A smaller kernel send buffer makes a slow reader show up sooner in the transport's buffer."""
    sock = conn.transport.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    except OSError as exc:
        log.warning("! cannot set SO_SNDBUF to %d: %s", size, exc)


def _machine_names() -> list[str]:
    """This machine's names, which a front listening on every interface answers to."""
    names = [socket.gethostname()]
    try:
        names.append(socket.getfqdn())
    except OSError:
        pass
    return names
