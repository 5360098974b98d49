"""The floor under the front's rows: a bare asyncio ``Protocol`` websocket server, no ``websockets`` at all.

Run: ``python scripts/bench/bench_floor.py --port P [--ping-interval 10]``. It does the least any Python
websocket server must do, so that a row can say how much of the front's cost is the front's own:

- the opening handshake: read up to the blank line, find ``Sec-WebSocket-Key``, write one canned 101
  with its ``Sec-WebSocket-Accept`` (one SHA-1); no header parsing, no admission, no objects per header;
- client frames: unmasked in one big-integer XOR, then: a pong is counted, a ping answered, a close
  echoed; a text frame from the connection on path ``/master`` is written to every other connection
  (the frame built once, one ``transport.write`` each: the write-loop floor of the fan-out); a text
  frame naming the seasync clients' sync probe is answered with the probe's error frame (so the storm
  row's clients know they are done); any other text frame is read and dropped;
- keepalive: one loop for all connections writes the same ping frame to each every ``--ping-interval``
  seconds (the pong read back and parsed is the other half of the round trip).

It keeps no sessions, checks nothing and talks to no router: it is a measuring stick, not a server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal

# RFC 6455's accept key and masking, once for the benchmarks (stdlib only: this stays a bare server);
# masking is an XOR, so the client's ``mask`` unmasks
from scripts.bench.bench_wsclient import accept_value, mask as unmask

HEAD_101 = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: ")
PROBE = b"seasync-sync-probe:1"
PROBE_ANSWER = b'{"action":"error","code":"bad-pattern","pattern":"seasync-sync-probe:1","error":"probe"}'
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 1, 8, 9, 10


def server_frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked, final server frame."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big") + payload


class Floor:
    """The state of the whole server: open connections and counters."""

    def __init__(self) -> None:
        self.conns: set[FloorConn] = set()
        self.pongs = 0


class FloorConn(asyncio.Protocol):
    def __init__(self, floor: Floor) -> None:
        self.floor = floor
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.open = False
        self.master = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.floor.conns.discard(self)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            head, buf = buf[:end], buf[end + 4:]
            at = head.lower().find(b"sec-websocket-key:")
            if at < 0:
                self.transport.close()
                return
            line_end = head.find(b"\r\n", at)
            key = head[at + 18:line_end if line_end >= 0 else len(head)].strip()
            accept = accept_value(key)
            self.transport.write(HEAD_101 + accept + b"\r\n\r\n")
            self.open = True
            self.master = head.startswith(b"GET /master ")
            if not self.master:
                self.floor.conns.add(self)
        self.buf = self._frames(buf)

    def _frames(self, buf: bytes) -> bytes:
        """Handle every complete frame of ``buf``; the incomplete rest is returned."""
        while len(buf) >= 6:
            b0, b1 = buf[0], buf[1]
            n, at = b1 & 0x7F, 2
            if n == 126:
                if len(buf) < 8:
                    break
                n, at = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 14:
                    break
                n, at = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < at + 4 + n:
                break
            key = buf[at:at + 4]
            payload = buf[at + 4:at + 4 + n]
            buf = buf[at + 4 + n:]
            opcode = b0 & 0x0F
            if opcode == OP_PONG:
                self.floor.pongs += 1
            elif opcode == OP_TEXT:
                payload = unmask(payload, key)
                if self.master:
                    frame = server_frame(OP_TEXT, payload)
                    for conn in self.floor.conns:
                        conn.transport.write(frame)
                elif PROBE in payload:
                    self.transport.write(server_frame(OP_TEXT, PROBE_ANSWER))
            elif opcode == OP_PING:
                self.transport.write(server_frame(OP_PONG, unmask(payload, key)))
            elif opcode == OP_CLOSE:
                self.transport.write(server_frame(OP_CLOSE, unmask(payload, key)[:2]))
                self.floor.conns.discard(self)
                self.transport.close()
                return b""
        return buf


async def pinger(floor: Floor, interval: float) -> None:
    """One sweep for all: the same ping frame written to each connection."""
    while True:
        await asyncio.sleep(interval)
        frame = server_frame(OP_PING, os.urandom(4))
        for conn in list(floor.conns):
            conn.transport.write(frame)


async def main(port: int, interval: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    floor = Floor()
    server = await loop.create_server(lambda: FloorConn(floor), "127.0.0.1", port, backlog=65535)
    task = asyncio.create_task(pinger(floor, interval)) if interval > 0 else None
    await stop.wait()
    if task is not None:
        task.cancel()
    server.close()
    for conn in list(floor.conns):
        conn.transport.abort()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ping-interval", type=float, default=10.0)
    options = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(options.port, options.ping_interval))
