"""The benchmark's lean websocket client (scripts/bench/bench_wsclient.py, scripts/bench/bench_clients.py).

It replaced the ``websockets`` client in the measuring processes, so it must speak RFC 6455 to real
servers (a ``websockets`` server, raw servers that split or break frames on purpose, the front) and
account for what ``scripts/bench/bench.py`` reads: versions held, skipped versions, patch bases,
latencies and close codes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Awaitable, Callable

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Response
from websockets.sync.client import connect as sync_connect

from scripts.bench.bench_clients import ClientProcs
from scripts.bench.bench_wsclient import GUID, HandshakeError, WsProtocol, open_connection

Received = tuple[WsProtocol, list[bytes], list[int]]


async def connect(url: str) -> Received:
    got: list[bytes] = []
    closed: list[int] = []
    conn = await open_connection(url, lambda raw, now: got.append(bytes(raw)), closed.append, timeout=10)
    return conn, got, closed


async def test_frames_of_every_size_fragments_ping_and_close_from_a_websockets_server():
    seen: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        seen.append(await ws.recv())  # a masked client frame: websockets rejects unmasked ones
        await ws.send("small")
        await ws.send("m" * 1000)  # 16-bit length
        await ws.send("L" * 70_000)  # 64-bit length
        await ws.send(["frag", "mented", "!"])  # three frames, FIN on the last
        await (await ws.ping(b"are you there"))  # answered by a pong with the same payload
        await ws.send("after the ping")
        await ws.close(4001, "bye")

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        conn, got, closed = await connect(f"ws://127.0.0.1:{port}/path")
        conn.send_text(b'{"hello":1}')
        assert await asyncio.wait_for(conn.wait_closed(), 10) == 4001
    assert seen == ['{"hello":1}']
    assert got == [b"small", b"m" * 1000, b"L" * 70_000, b"fragmented!", b"after the ping"]
    assert closed == [4001]


async def test_a_client_close_is_a_closing_handshake():
    codes: list[int | None] = []

    async def handler(ws: ServerConnection) -> None:
        async for _ in ws:
            pass
        codes.append(ws.close_code)

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        conn, _, closed = await connect(f"ws://127.0.0.1:{port}")
        conn.close()
        assert await asyncio.wait_for(conn.wait_closed(), 10) == 1000
        await asyncio.sleep(0.1)
    assert codes == [1000]
    assert closed == [1000]


async def test_a_refused_upgrade_is_a_handshake_error():
    def refuse(connection: ServerConnection, request: object) -> Response:
        return Response(503, "Service Unavailable", Headers(), b"busy\n")

    async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=refuse) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(HandshakeError, match="503"):
            await connect(f"ws://127.0.0.1:{port}")


def accept_for(request: bytes) -> bytes:
    key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:"))
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def response(accept: bytes) -> bytes:
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")


def frame(payload: bytes, opcode: int = 1, fin: bool = True, masked: bool = False) -> bytes:
    n = len(payload)
    first = bytes([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = first + bytes([mask_bit | n])
    elif n < 65536:
        head = first + bytes([mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        head = first + bytes([mask_bit | 127]) + n.to_bytes(8, "big")
    return head + (b"\0\0\0\0" if masked else b"") + payload


async def until_close(reader: asyncio.StreamReader) -> None:
    """Read the client's frames (only short control frames here) until its close frame or EOF."""
    buf = b""
    while True:
        data = await reader.read(65536)
        if not data:
            return
        buf += data
        while len(buf) >= 6 and len(buf) >= 6 + (buf[1] & 0x7F):
            if buf[0] & 0x0F == 8:
                return
            buf = buf[6 + (buf[1] & 0x7F):]


async def raw_server(answer: Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]) -> asyncio.Server:
    """A TCP server that reads the upgrade request and lets ``answer`` write bytes by hand."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await answer(await reader.readuntil(b"\r\n\r\n"), writer)
            await asyncio.wait_for(until_close(reader), 5)
        except (asyncio.TimeoutError, OSError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def with_raw_server(answer: Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]) -> Received | Exception:
    server = await raw_server(answer)
    try:
        port = server.sockets[0].getsockname()[1]
        try:
            conn, got, closed = await connect(f"ws://127.0.0.1:{port}")
        except Exception as exc:
            return exc
        await asyncio.wait_for(conn.wait_closed(), 10)
        return conn, got, closed
    finally:
        server.close()


async def test_a_wrong_accept_is_a_handshake_error():
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(response(base64.b64encode(b"x" * 20)))

    assert isinstance(await with_raw_server(answer), HandshakeError)


async def test_frames_split_anywhere_are_reassembled():
    messages = [b"a", b"b" * 300, b"c" * 70_000]
    stream = frame(b"", opcode=9) + b"".join(frame(m) for m in messages)
    stream += frame(b"fr", fin=False) + frame(b"", opcode=9) + frame(b"ag", opcode=0)
    stream += frame(b"\x03\xe8", opcode=8)

    async def answer(request: bytes, writer: asyncio.StreamWriter) -> None:
        data = response(accept_for(request)) + stream
        for i in range(0, len(data), 7):  # the head and every frame split across reads
            writer.write(data[i:i + 7])
            await writer.drain()
            if i < 400:
                await asyncio.sleep(0.001)

    conn, got, closed = await with_raw_server(answer)
    assert got == [*messages, b"frag"]
    assert closed == [1000]


@pytest.mark.parametrize("bad", [frame(b"masked", masked=True), frame(b"rsv", opcode=0x41),
                                 frame(b"cont", opcode=0), frame(b"x" * 200, opcode=9), frame(b"op", opcode=3)])
async def test_a_protocol_error_fails_the_connection_with_1002(bad: bytes):
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(response(accept_for(request)) + frame(b"before") + bad + frame(b"after"))

    conn, got, closed = await with_raw_server(answer)
    assert got == [b"before"]
    assert closed == [1002]


async def test_a_close_without_code_is_1005_and_a_lost_connection_1006():
    async def close_empty(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(response(accept_for(request)) + frame(b"", opcode=8))

    async def hang_up(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(response(accept_for(request)) + frame(b"bye"))
        await writer.drain()
        writer.close()

    assert (await with_raw_server(close_empty))[2] == [1005]
    assert (await with_raw_server(hang_up))[1:] == ([b"bye"], [1006])


def upload(ws, version: int) -> None:
    ws.send(orjson.dumps({"action": "object-patch", "id": "bench", "version-new": version,
                          "value": {"t": time.perf_counter(), "n": version}}).decode())


def test_client_processes_account_for_versions_and_resync_through_the_front(cluster):
    """The storm scenario's sequence, small: subscribe, drop, the object moves on, reconnect."""
    procs = ClientProcs(cluster.ws_url, 2)
    try:
        connected, _ = procs.connect(6, ["bench"])
        assert connected == 6
        with sync_connect(cluster.ws_url, compression=None) as master:
            master.send(orjson.dumps({"action": "object-consumer-register", "pattern": "bench",
                                      "version-known": 0}).decode())
            time.sleep(0.3)
            upload(master, 1)
            assert procs.wait("bench", 1, 30)[:2] == (True, 6)
            upload(master, 2)
            upload(master, 3)
            ok, reached, _ = procs.wait("bench", 3, 30)
            assert (ok, reached) == (True, 6)
            st = procs.stats()
            assert st.updates == st.samples and st.bad_base == 0 and st.closed == 0
            assert st.updates >= 6 and st.updates + st.skipped == 18  # coalesced versions count as skipped

            procs.call("disconnect")
            assert procs.stats().close_codes == {1000: 6}
            upload(master, 4)
            upload(master, 5)
            time.sleep(0.3)
            results = procs.call("reconnect", args=(["bench"],))
            assert sum(r[1] for r in results) == 6
            ok, reached, _ = procs.wait("bench", 5, 30)
            assert (ok, reached) == (True, 6)
            st = procs.stats()
            assert st.bad_base == 0 and st.patches >= 6 and st.values == 0
            assert sum(count for held, count in procs_held(procs).items() if held == b"5") == 6
    finally:
        procs.close()


def procs_held(procs: ClientProcs) -> dict[bytes, int]:
    total: dict[bytes, int] = {}
    for r in procs.call("held", args=("bench",)):
        for held, count in r[1].items():
            total[held] = total.get(held, 0) + count
    return total
