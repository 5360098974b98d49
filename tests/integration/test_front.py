"""The real `sync-front` process against a scripted router (a real zmq ROUTER driven by the test).

The scripted router answers PING with PONG (so the front stays welcomed) and hands every other
envelope to the test, which checks it strictly: an unexpected envelope fails the test.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import zmq
import zmq.asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.frames import Frame, Opcode

from common.wire import (
    ACK, CLOSE, DROP, HELLO, MSG, OPEN, PAUSE, PING, PONG, RESET, RESUME, SENDS, WELCOME, pack_sids, pairs,
    secure_router,
)
from router import front as front_module
from router.front import Backpressure, Congestion, text_frame
from tests.cluster import Proc, free_port, repo_secret, wait_port

WAIT = 20.0  # generous: a loaded 2-core machine


class ScriptedRouter:
    """A real ROUTER socket standing in for sync-router; the test decides every answer."""

    def __init__(self, secret: str = "") -> None:
        self.acks: list[list[bytes]] = []
        self.sync_ctx = zmq.Context()  # the CURVE authenticator needs a plain context (same libzmq one)
        self.ctx = zmq.asyncio.Context.shadow(self.sync_ctx.underlying)
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.auth = secure_router(self.sync_ctx, self.sock, secret) if secret else None
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.epoch = b"epoch-1"
        self.answer_pings = True
        self.peer: bytes | None = None
        self.inbox: asyncio.Queue[list[bytes]] = asyncio.Queue()
        self.task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            ident, *frames = await self.sock.recv_multipart()
            self.peer = ident
            if frames[:1] == [PING]:
                if self.answer_pings:
                    await self.send(PONG, self.epoch)
                continue
            self.inbox.put_nowait(frames)

    async def send(self, *frames: bytes) -> None:
        assert self.peer is not None, "no peer has spoken yet"
        await self.sock.send_multipart([self.peer, *frames])

    async def next(self, skip_hello: bool = True) -> list[bytes]:
        """The next envelope (repeated HELLOs skipped unless asked for; credit ACKs always: the front
        acknowledges every SENDS it has written, see test_front_credit.py)."""
        async with asyncio.timeout(WAIT):
            while True:
                frames = await self.inbox.get()
                if frames[0] == b"ack":
                    self.acks.append(frames[1:])
                elif not (skip_hello and frames[0] == HELLO):
                    return frames

    async def expect(self, kind: bytes) -> list[bytes]:
        """The next envelope, which must be of this kind; returns the frames after the kind."""
        frames = await self.next(skip_hello=kind != HELLO)
        assert frames[0] == kind, f"expected {kind!r}, got {frames!r}"
        return frames[1:]

    async def welcome(self, epoch: bytes | None = None) -> dict:
        """Wait for HELLO, answer WELCOME; returns the HELLO body."""
        (body,) = await self.expect(HELLO)
        if epoch is not None:
            self.epoch = epoch
        await self.send(WELCOME, self.epoch)
        return json.loads(body)

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.sock.close(linger=0)
        if self.auth is not None:
            self.auth.stop()
        self.sync_ctx.term()


class Front:
    """A running `python -m router.front.cli` and its websocket URL."""

    def __init__(self, proc: Proc, port: int) -> None:
        self.proc = proc
        self.url = f"ws://127.0.0.1:{port}"

    async def ws(self, path: str = "/", **kw) -> ClientConnection:
        return await connect(self.url + path, compression=None, open_timeout=WAIT,
                             close_timeout=WAIT, **kw)


@pytest.fixture
async def router(request) -> AsyncIterator[ScriptedRouter]:
    r = ScriptedRouter(secret=getattr(request, "param", None) or repo_secret())  # the front's default secret
    try:
        yield r
    finally:
        await r.close()


@pytest.fixture
async def start_front(request, router) -> AsyncIterator[Callable[..., Awaitable[Front]]]:
    procs: list[Proc] = []

    async def start(*extra: str) -> Front:
        port = free_port()
        proc = Proc("front", ["-m", "router.front.cli", "--router", router.url,
                              "--host", "127.0.0.1", "--port", str(port), "-v", *extra])
        procs.append(proc)
        await asyncio.to_thread(wait_port, port)
        return Front(proc, port)

    try:
        yield start
    finally:
        for proc in procs:
            proc.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            for proc in procs:
                print(f"===== front log\n{proc.output()}")


@pytest.fixture
async def front(router, start_front) -> Front:
    """A front that has been welcomed by the scripted router."""
    f = await start_front()
    await router.welcome()
    return f


async def closed(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Wait until the server closes this websocket; returns (code, reason)."""
    async with asyncio.timeout(WAIT):
        await ws.wait_closed()
    return ws.close_code, ws.close_reason


async def recv(ws: ClientConnection) -> str | bytes:
    async with asyncio.timeout(WAIT):
        return await ws.recv()


async def open_session(front: Front, router: ScriptedRouter, path: str = "/", **kw) -> tuple[ClientConnection, bytes]:
    ws = await front.ws(path, **kw)
    (sid,) = await router.expect(OPEN)
    return ws, sid


async def test_hello_then_websockets_only_after_welcome(router, start_front):
    f = await start_front()
    (body,) = await router.expect(HELLO)
    hello = json.loads(body)
    assert hello["role"] == "front"
    assert hello["pid"] == f.proc.pid
    assert isinstance(hello["name"], str) and isinstance(hello["host"], str)
    assert router.peer.startswith(b"front:") and router.peer.endswith(str(f.proc.pid).encode())

    ws = await f.ws("/seapig")          # the handshake succeeds, the session waits for the router
    await ws.send('{"early": true}')
    # The front re-sends HELLO until welcomed; envelopes keep their order on the DEALER, so an
    # OPEN sent before the welcome would show up here and fail the strict expect().
    await router.expect(HELLO)
    await router.send(WELCOME, router.epoch)
    (sid,) = await router.expect(OPEN)
    assert await router.expect(MSG) == [sid, b'{"early": true}']
    await ws.close()
    assert await router.expect(CLOSE) == [sid]


async def test_no_router_refuses_with_1013(router, start_front):
    f = await start_front()
    await router.expect(HELLO)          # and never answered
    ws = await f.ws()
    assert (await closed(ws))[0] == 1013
    assert f.proc.alive()


async def test_sessions_relay_exact_bytes(router, front):
    ws, sid = await open_session(front, router, "/seapig")
    assert sid.isdigit()
    text = '{"action":  "object-consumer-register", "pattern": "é☃ \\u00e9", "known-version": 3 }'
    await ws.send(text)
    assert await router.expect(MSG) == [sid, text.encode()]
    await ws.send(b"\x00\xffbinary\x80")
    assert await router.expect(MSG) == [sid, b"\x00\xffbinary\x80"]
    await ws.send("not json at all")    # the router validates, the front only relays
    assert await router.expect(MSG) == [sid, b"not json at all"]

    ws2, sid2 = await open_session(front, router, "/")
    assert sid2.isdigit() and sid2 != sid
    await ws2.send("{}")
    assert await router.expect(MSG) == [sid2, b"{}"]

    await ws.close()
    assert await router.expect(CLOSE) == [sid]
    await ws2.close()
    assert await router.expect(CLOSE) == [sid2]


async def test_send_reaches_exactly_the_listed_sessions(router, front):
    sessions = [await open_session(front, router, f"/seapig/{i}") for i in range(4)]
    (ws_a, a), (ws_b, b), (ws_c, c), (ws_d, d) = sessions
    frame = '{"action":"object-update","id":"x","version-new":1,"patch":[]}'
    await router.send(SENDS, frame.encode(), pack_sids([a, b"999999", b, c]))   # an unknown sid is ignored
    for ws in (ws_a, ws_b, ws_c):
        assert await recv(ws) == frame  # a text frame: received as str
    await router.send(SENDS, b'"for d only"', pack_sids([d]))
    assert await recv(ws_d) == '"for d only"'  # d did not get the first frame


async def test_sends_with_packed_session_ids_reaches_exactly_those(router, front):
    (ws_a, a), (ws_b, b), (ws_c, c) = [await open_session(front, router) for _ in range(3)]
    frame = '{"action":"object-update","id":"y","version-new":2,"patch":[]}'
    await router.send(SENDS, frame.encode(), pack_sids([a, b"424242", c]))  # what the real router sends
    assert await recv(ws_a) == frame and await recv(ws_c) == frame
    await router.send(SENDS, b'"for b only"', pack_sids([b]))
    assert await recv(ws_b) == '"for b only"'  # b did not get the first frame


async def test_multi_pair_sends_writes_each_pair_in_order(router, front):
    """One SENDS carrying several (frame, sids) pairs: each pair goes to its sessions, in order."""
    (ws_a, a), (ws_b, b), (ws_c, c) = [await open_session(front, router) for _ in range(3)]
    await router.send(SENDS, b'"1 to a,b"', pack_sids([a, b]), b'"2 to c"', pack_sids([c]),
                      b'"3 to all"', pack_sids([a, b"777", b, c]), b'"4 to a"', pack_sids([a]))
    assert [await recv(ws_a) for _ in range(3)] == ['"1 to a,b"', '"3 to all"', '"4 to a"']
    assert [await recv(ws_b) for _ in range(2)] == ['"1 to a,b"', '"3 to all"']
    assert [await recv(ws_c) for _ in range(2)] == ['"2 to c"', '"3 to all"']
    await router.send(SENDS, b'"odd"', pack_sids([a]), b"lone trailing part")  # malformed: ignored
    await router.send(SENDS, b'"after"', pack_sids([a]))
    assert await recv(ws_a) == '"after"'
    assert front.proc.alive()


async def test_drop_closes_one_session_with_1008(router, front):
    (ws_a, a), (ws_b, b) = [await open_session(front, router) for _ in range(2)]
    await router.send(DROP, a, b"invalid message")
    assert await closed(ws_a) == (1008, "invalid message")
    assert await router.expect(CLOSE) == [a]
    await router.send(SENDS, b'"still here"', pack_sids([a, b]))
    assert await recv(ws_b) == '"still here"'
    await ws_b.send("{}")
    assert await router.expect(MSG) == [b, b"{}"]


@pytest.mark.parametrize("how", ["reset", "welcome-epoch", "pong-epoch", "silence"])
async def test_router_restart_closes_all_with_1012_then_hello(router, front, how):
    wss = [(await open_session(front, router))[0] for _ in range(3)]
    if how == "reset":
        await router.send(RESET)
    elif how == "welcome-epoch":
        await router.send(WELCOME, b"epoch-2")
    elif how == "pong-epoch":
        router.epoch = b"epoch-2"       # the next PONG tells the front the router changed
    else:
        router.answer_pings = False     # the router vanished
    for ws in wss:
        assert (await closed(ws))[0] == 1012
    await router.expect(HELLO)          # sessions forgotten: no CLOSE envelopes in between
    router.answer_pings = True
    router.epoch = b"epoch-3"
    await router.send(WELCOME, router.epoch)
    ws, sid = await open_session(front, router)
    await ws.send("{}")
    assert await router.expect(MSG) == [sid, b"{}"]


async def test_malformed_router_messages_are_ignored(router, front):
    ws, sid = await open_session(front, router)
    for junk in ([b"bogus"], [b"send", b"x", b"1"], [SENDS], [SENDS, b"x"], [DROP], [WELCOME],
                 [WELCOME, b"a", b"b"], [PONG], [RESET, b"extra"], [b"\xff" * 10, b"x"], [DROP, b"\xff\xfe", b"\xff" * 300]):
        await router.send(*junk)
    await router.send(SENDS, b'"alive"', pack_sids([sid]))
    assert await recv(ws) == '"alive"'
    assert front.proc.alive()


async def test_oversized_frame_closes_that_client_with_1009(router, start_front):
    f = await start_front("--max-frame", "1000")
    await router.welcome()
    ws, sid = await open_session(f, router)
    await ws.send("x" * 1000)
    assert await router.expect(MSG) == [sid, b"x" * 1000]
    await ws.send("x" * 1001)
    assert (await closed(ws))[0] == 1009
    assert await router.expect(CLOSE) == [sid]
    ws2, sid2 = await open_session(f, router)
    await ws2.send("{}")
    assert await router.expect(MSG) == [sid2, b"{}"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_stops_cleanly(router, front, sig):
    (ws_a, a), (ws_b, b) = [await open_session(front, router) for _ in range(2)]
    front.proc.kill(sig)
    assert (await closed(ws_a))[0] == 1001
    assert (await closed(ws_b))[0] == 1001
    assert sorted([await router.expect(CLOSE), await router.expect(CLOSE)]) == sorted([[a], [b]])
    rc = await asyncio.to_thread(front.proc.popen.wait, WAIT)
    assert rc == 0
    assert "Traceback" not in front.proc.output()


async def test_client_leaving_mid_wait_does_not_open_a_session(router, start_front):
    f = await start_front()
    await router.expect(HELLO)
    ws = await f.ws()
    await ws.close()
    await router.send(WELCOME, router.epoch)
    ws2, sid2 = await open_session(f, router)     # the first client never got an OPEN
    await ws2.close()
    assert await router.expect(CLOSE) == [sid2]
    with pytest.raises(ConnectionClosed):
        await ws.recv()


# ---------------------------------------------------------------- client messages, batched per loop iteration


HANDSHAKE = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


async def raw_client(front: Front) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP client past the opening handshake, so the test decides how frames share a write."""
    port = int(front.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HANDSHAKE)
    async with asyncio.timeout(WAIT):
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    return reader, writer


def masked(opcode: Opcode, payload: bytes) -> bytes:
    return Frame(opcode, payload).serialize(mask=True)


async def test_messages_arriving_together_go_as_one_msg_with_many_pairs(router, front):
    _, writer = await raw_client(front)
    (sid,) = await router.expect(OPEN)
    texts = [b'{"n":%d}' % i for i in range(50)]
    writer.write(b"".join(masked(Opcode.TEXT, t) for t in texts))  # one write: one read at the front
    got: list[bytes] = []
    envelopes = 0
    while len(got) < len(texts):
        frames = await router.expect(MSG)
        envelopes += 1
        assert len(frames) % 2 == 0
        for s, raw in pairs([MSG, *frames]):
            assert s == sid
            got.append(raw)
    assert got == texts
    assert envelopes < len(texts)  # batched (all 50 were read at once)
    writer.close()
    assert await router.expect(CLOSE) == [sid]


async def test_a_close_never_overtakes_the_messages_before_it(router, front):
    """Clients send frames and a close frame in one write: every MSG pair reaches the router before
    that session's CLOSE, in order (the same-iteration case is in the next test)."""
    clients = []
    for _ in range(5):
        _, writer = await raw_client(front)
        clients.append(writer)
        await router.expect(OPEN)
    for i, writer in enumerate(clients):
        writer.write(b"".join(masked(Opcode.TEXT, b'"%d-%d"' % (i, n)) for n in range(30))
                     + masked(Opcode.CLOSE, b"\x03\xe8"))
        writer.close()  # and the TCP connection, as a client that leaves at once
    received: dict[bytes, list[bytes]] = {}
    closed_sids: set[bytes] = set()
    while len(closed_sids) < len(clients):
        frames = await router.next()
        if frames[0] == CLOSE:
            closed_sids.add(frames[1])
            continue
        assert frames[0] == MSG, frames
        for s, raw in pairs(frames):
            assert s not in closed_sids, "a MSG after its session's CLOSE"
            received.setdefault(s, []).append(raw)
    assert sorted(received) == sorted(closed_sids)
    for msgs in received.values():
        i = msgs[0][1:2]
        assert msgs == [b'"%s-%d"' % (i, n) for n in range(30)]


async def test_connections_that_never_upgrade_are_bounded_and_do_not_keep_the_front(router, start_front):
    """A flood of TCP connections that send nothing must not take every socket: at most --max-connections
    upgrades in progress, others dropped at once; when the silent ones go, a websocket is served again."""
    front = await start_front("--max-connections", "3")
    await router.welcome()
    port = int(front.url.rsplit(":", 1)[1])
    silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HANDSHAKE)
        async with asyncio.timeout(WAIT):
            try:
                assert await reader.read() == b""  # dropped: no answer, the connection ends (or is reset)
            except ConnectionResetError:
                pass
        writer.close()
    finally:
        for _, w in silent:
            w.close()
    async with asyncio.timeout(WAIT):
        while True:  # (the front sees the silent ones go a moment later)
            try:
                ws = await front.ws()
                break
            except (InvalidHandshake, ConnectionClosed, OSError, TimeoutError):
                await asyncio.sleep(0.1)
    (sid,) = await router.expect(OPEN)
    await ws.close()
    assert await router.expect(CLOSE) == [sid]


@pytest.mark.parametrize("how", ["split", "pipelined"])
async def test_an_upgrade_in_pieces_or_with_a_frame_behind_it_opens_a_session(router, front, how):
    """Most upgrades arrive whole in one read and take the front's fast path (router/front/handshake.py);
    one split across reads, or with the client's first frame in the same read, goes through websockets'
    parser: the same 101, the same session, the frame not lost."""
    port = int(front.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    frame = masked(Opcode.TEXT, b'{"first":1}')
    if how == "split":
        writer.write(HANDSHAKE[:40])
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(HANDSHAKE[40:])
    else:
        writer.write(HANDSHAKE + frame)
    async with asyncio.timeout(WAIT):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101") and b"Sec-WebSocket-Accept: " in head
    (sid,) = await router.expect(OPEN)
    if how == "split":
        writer.write(frame)
    assert await router.expect(MSG) == [sid, b'{"first":1}']
    writer.close()
    assert await router.expect(CLOSE) == [sid]


async def test_a_client_that_sends_pings_and_reads_nothing_is_closed_as_too_slow(router, start_front):
    """Pongs are writes the client causes: one that pings and never reads must not grow the front's
    buffer without limit; past --slow-max-buffer it is closed as a slow consumer (the router hears CLOSE),
    and a well-behaved session on the same front goes on."""
    front = await start_front("--send-buffer", "4096", "--pause-above", "16384", "--resume-below", "4096",
                              "--slow-max-buffer", "65536")
    await router.welcome()
    good = await front.ws()
    (good_sid,) = await router.expect(OPEN)
    port = int(front.url.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # little room: the front's buffer fills
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(HANDSHAKE)
    async with asyncio.timeout(WAIT):
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    (sid,) = await router.expect(OPEN)
    ping = masked(Opcode.PING, b"p" * 125)
    try:
        for _ in range(40):  # 40 × 100 pings: 508 KB of pongs, never read
            writer.write(ping * 100)
            await writer.drain()
        assert await router.expect(CLOSE) == [sid]
        await router.send(SENDS, b'{"still":"here"}', pack_sids([good_sid]))
        async with asyncio.timeout(WAIT):
            assert await good.recv() == '{"still":"here"}'
    finally:
        writer.close()
        await good.close()


class LinkPair:
    """A RouterLink on a real DEALER, and the ROUTER it talks to (in process, over inproc)."""

    def __init__(self, hwm: int = 1000) -> None:
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.RCVHWM, hwm)
        self.router.bind("inproc://router")
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.SNDHWM, hwm)
        self.dealer.connect("inproc://router")
        self.received: list[list[bytes]] = []  # what the link handed to its owner
        self.drains = 0
        self.link = front_module.RouterLink(self.dealer, self.received.append, self._drained)

    def _drained(self) -> None:
        self.drains += 1

    async def fill(self) -> int:
        """Post session 1's messages b"0", b"1", ... until ZeroMQ is full (the router side does not read):
        how many went before the one that had to wait (which is in the link's backlog)."""
        sent = 0
        while self.link.post(b"1", b"%d" % sent) is None:
            sent += 1
            await asyncio.sleep(0)
            assert sent < 10_000, "ZeroMQ never refused a message"
        return sent

    def envelopes(self) -> list[list[bytes]]:
        """Everything the router side has received so far (identity stripped)."""
        out = []
        while self.router.poll(0):
            out.append(self.router.recv_multipart()[1:])
        return out

    def close(self) -> None:
        self.link.close(0)
        self.router.close(0)
        self.ctx.term()


@pytest.fixture
async def link_pair() -> AsyncIterator[LinkPair]:
    pair = LinkPair()
    try:
        yield pair
    finally:
        pair.close()


async def test_link_sends_an_iteration_in_order_with_client_messages_merged(link_pair):
    """Client messages between two other envelopes go as one MSG; a CLOSE made in the same
    iteration goes after the MSG holding that session's messages, never before."""
    link = link_pair.link
    link.send([OPEN, b"1"])
    assert link.post(b"1", b"a") is None and link.post(b"2", b"x") is None
    link.post(b"1", b"b")
    link.send([CLOSE, b"1"])
    link.post(b"2", b"y")
    assert link_pair.envelopes() == []  # nothing before the end of the iteration
    await asyncio.sleep(0)
    assert link_pair.envelopes() == [[OPEN, b"1"], [MSG, b"1", b"a", b"2", b"x", b"1", b"b"], [CLOSE, b"1"],
                                     [MSG, b"2", b"y"]]
    link.post(b"2", b"z")
    await asyncio.sleep(0)
    assert link_pair.envelopes() == [[MSG, b"2", b"z"]]


async def test_link_receives_everything_that_arrives(link_pair):
    link_pair.link.send([HELLO, b"{}"])
    await asyncio.sleep(0)
    (ident, _, _), = [link_pair.router.recv_multipart()]
    for i in range(1000):  # more than one drain batch
        link_pair.router.send_multipart([ident, SENDS, b"%d" % i, b"1"])
    async with asyncio.timeout(WAIT):
        while len(link_pair.received) < 1000:
            await asyncio.sleep(0.01)
    assert link_pair.received == [[SENDS, b"%d" % i, b"1"] for i in range(1000)]
    assert link_pair.drains >= 1000 // front_module.DRAIN_BATCH


async def test_link_makes_handlers_wait_while_zeromq_is_full():
    pair = LinkPair(hwm=1)
    try:
        link = pair.link
        sent = await pair.fill()
        wait = link.post(b"2", b"more")
        assert wait is not None and not wait.done()
        await asyncio.sleep(0.05)
        assert not wait.done()           # nothing drained: the handlers keep waiting
        got: list[bytes] = []
        async with asyncio.timeout(WAIT):
            while not wait.done():       # the router reads: room again, the backlog goes, waiters wake
                got += [raw for _, raw in pairs(pair.router.recv_multipart()[1:])]
                await asyncio.sleep(0)
        got += [raw for env in pair.envelopes() for _, raw in pairs(env)]
        await asyncio.sleep(0)
        got += [raw for env in pair.envelopes() for _, raw in pairs(env)]
        assert got == [b"%d" % i for i in range(sent + 1)] + [b"more"]  # nothing lost, in order
        assert link.post(b"1", b"after") is None
    finally:
        pair.close()


async def test_an_ack_goes_ahead_of_client_messages_waiting_for_room():
    """Credit must not wait behind a flooding master: an ACK made while client messages wait for room in
    ZeroMQ reaches the router before them (it belongs to no session: no order of one depends on it)."""
    pair = LinkPair(hwm=1)
    try:
        link = pair.link
        sent = await pair.fill()
        link.post(b"1", b"waiting")  # in the link's backlog, behind what ZeroMQ holds
        link.send_ahead([ACK, b"3"])
        await asyncio.sleep(0)
        got: list[list[bytes]] = []
        async with asyncio.timeout(WAIT):
            while not any(env[-1] == b"waiting" for env in got):
                if pair.router.poll(10):
                    got.append(pair.router.recv_multipart()[1:])
                await asyncio.sleep(0)
        kinds = [env[0] for env in got]
        assert kinds.count(ACK) == 1 and kinds.index(ACK) < len(kinds) - 1  # before the waiting MSG
        raws = [raw for env in got if env[0] == MSG for _, raw in pairs(env)]
        assert raws == [b"%d" % i for i in range(sent + 1)] + [b"waiting"]  # the messages: all, in order
    finally:
        pair.close()


async def test_clients_sending_at_once_all_get_their_answers(router, front):
    """The scripted router echoes each (sid, raw) pair of every MSG to its session."""
    sessions = [await open_session(front, router) for _ in range(10)]

    async def echo() -> None:
        while True:
            frames = await router.expect(MSG)
            reply: list[bytes] = []
            for s, raw in pairs([MSG, *frames]):
                reply += (raw, pack_sids([s]))
            await router.send(SENDS, *reply)

    async def client(ws: ClientConnection, sid: bytes) -> None:
        texts = [f'"{sid.decode()}:{n}"' for n in range(20)]
        for text in texts:
            await ws.send(text)
        assert [await recv(ws) for _ in texts] == texts

    echoing = asyncio.create_task(echo())
    try:
        await asyncio.gather(*(client(ws, sid) for ws, sid in sessions))
    finally:
        echoing.cancel()
        await asyncio.gather(echoing, return_exceptions=True)


# ---------------------------------------------------------------- fan-out and slow consumers


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_is_what_websockets_would_write(size):
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)


def test_backpressure_policy():
    policy = Backpressure(pause_above=100, resume_below=10, max_buffer=1000, timeout=5.0)
    assert policy.decide(100, None, 0.0) is Congestion.NONE
    assert policy.decide(101, None, 0.0) is Congestion.PAUSE
    assert policy.decide(50, 0.0, 1.0) is Congestion.NONE        # paused, not drained yet
    assert policy.decide(9, 0.0, 1.0) is Congestion.RESUME
    assert policy.decide(50, 0.0, 5.5) is Congestion.CLOSE       # paused for too long
    assert policy.decide(9, 0.0, 5.5) is Congestion.RESUME       # ... unless it drained
    assert policy.decide(1001, None, 0.0) is Congestion.CLOSE    # far too much, paused or not
    assert policy.decide(1001, 0.0, 0.1) is Congestion.CLOSE


async def test_burst_is_written_in_order_to_each_session(router, front):
    """Many SENDs arriving at once (coalesced into one write per connection) keep their order."""
    (ws_a, a), (ws_b, b) = [await open_session(front, router) for _ in range(2)]
    for i in range(300):
        await router.send(SENDS, b'{"n":%d}' % i, pack_sids(((a, b) if i % 3 else (a,))))
    await router.send(SENDS, b'"big"' + b" " * 70000, pack_sids([b]))  # a 64-bit length header in the same burst
    for i in range(300):
        assert await recv(ws_a) == '{"n":%d}' % i
    for i in range(300):
        if i % 3:
            assert await recv(ws_b) == '{"n":%d}' % i
    assert (await recv(ws_b)).startswith('"big"')


BIG = b'"' + b"x" * (256 * 1024) + b'"'


async def test_a_client_that_does_not_read_is_paused_then_resumed(router, front):
    ws, sid = await open_session(front, router, max_queue=1)   # its library stops reading at once
    other, other_sid = await open_session(front, router)
    sent = 0
    # the router keeps sending until the front says PAUSE (kernel buffers take a few MiB first)
    while True:
        await router.send(SENDS, BIG, pack_sids([sid, other_sid]))
        sent += 1
        assert await recv(other) == BIG.decode()       # the other client is not held up
        try:
            frames = await asyncio.wait_for(router.next(), 0.05)
        except TimeoutError:
            assert sent < 400, "no PAUSE after 100 MiB"
            continue
        assert frames == [PAUSE, sid]
        break
    await router.send(SENDS, BIG, pack_sids([sid]))  # frames still in flight are written anyway
    for _ in range(sent + 1):
        assert await recv(ws) == BIG.decode()
    assert await router.expect(RESUME) == [sid]
    await router.send(SENDS, b'"after"', pack_sids([sid]))
    assert await recv(ws) == '"after"'


async def test_a_client_paused_too_long_is_closed_with_1008(router, start_front):
    f = await start_front("--slow-timeout", "0.5")
    await router.welcome()
    ws, sid = await open_session(f, router, max_queue=1)
    while True:
        await router.send(SENDS, BIG, pack_sids([sid]))
        try:
            frames = await asyncio.wait_for(router.next(), 0.05)
        except TimeoutError:
            continue
        assert frames == [PAUSE, sid]
        break
    assert await router.expect(CLOSE) == [sid]  # the front gave up on it (after 0.5 s) and told the router
    with pytest.raises(ConnectionClosed):
        while True:
            await recv(ws)                       # what was buffered, then the close frame
    assert (ws.close_code, ws.close_reason) == (1008, "consumer too slow")
    assert "closing %s: consumer too slow" % sid.decode() in f.proc.output()


# ---------------------------------------------------------------- limits and security


async def test_connections_beyond_the_limit_get_503(router, start_front):
    f = await start_front("--max-connections", "2")
    await router.welcome()
    (ws_a, a), (ws_b, b) = [await open_session(f, router) for _ in range(2)]
    with pytest.raises(InvalidStatus) as refused:
        await f.ws()
    assert refused.value.response.status_code == 503
    await ws_a.close()
    assert await router.expect(CLOSE) == [a]
    ws_c, c = await open_session(f, router)       # room again
    await ws_c.send("{}")
    assert await router.expect(MSG) == [c, b"{}"]
    assert "2 connections is the limit" in f.proc.output()


@pytest.mark.parametrize("router", ["s3cret"], indirect=True)
async def test_secret_joins_a_curve_router(router, start_front):
    f = await start_front("--secret", "s3cret")
    await router.welcome()
    ws, sid = await open_session(f, router)
    await ws.send("{}")
    assert await router.expect(MSG) == [sid, b"{}"]


async def test_warns_loudly_when_listening_beyond_loopback_without_auth(router, start_front):
    f = await start_front("--host", "0.0.0.0")
    await router.welcome()
    assert "anyone who can reach this address can connect" in f.proc.output()
    assert "--auth" in f.proc.output()


# ---------------------------------------------------------------- keepalive (one loop for every session)


async def test_a_client_that_never_answers_pings_is_closed(router, start_front):
    f = await start_front("--ping-interval", "0.2", "--ping-timeout", "0.5")
    await router.welcome()
    port = int(f.url.rsplit(":", 1)[1])
    # a raw TCP client: completes the opening handshake, then never reads nor answers again
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    async with asyncio.timeout(WAIT):
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    (sid,) = await router.expect(OPEN)
    assert await router.expect(CLOSE) == [sid]
    assert f"closing {sid.decode()}: keepalive ping timeout" in f.proc.output()
    writer.close()


async def test_a_client_that_sends_close_but_keeps_tcp_open_is_aborted(router, start_front):
    """The closing handshake waits for the client's TCP close; a client that never sends it must not
    hold its session (and a connection slot) forever."""
    f = await start_front("--ping-interval", "0.2")
    await router.welcome()
    reader, writer = await raw_client(f)
    (sid,) = await router.expect(OPEN)
    writer.write(masked(Opcode.CLOSE, b"\x03\xe8"))
    assert await router.expect(CLOSE) == [sid]
    async with asyncio.timeout(WAIT):
        while await reader.read(4096):  # the close frame, then the front drops the TCP connection
            pass
    writer.close()


async def test_clients_that_answer_pings_stay_connected(router, start_front):
    f = await start_front("--ping-interval", "0.1", "--ping-timeout", "0.5")
    await router.welcome()
    ws, sid = await open_session(f, router)
    await asyncio.sleep(2.0)  # about 20 pings, each answered by the client's websockets library
    await ws.send("{}")
    assert await router.expect(MSG) == [sid, b"{}"]
    await router.send(SENDS, b'"still open"', pack_sids([sid]))
    assert await recv(ws) == '"still open"'
    assert "keepalive ping timeout" not in f.proc.output()
