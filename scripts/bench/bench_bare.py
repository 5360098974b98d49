"""The reference for the fan-out benchmarks: a bare ``websockets.broadcast`` server, nothing else.

Run: ``python scripts/bench/bench_bare.py --port P``. A connection on path ``/master`` is the sender:
every frame it sends is broadcast, unchanged, to every other connection (``text=True``, the bytes
are not decoded). Other connections only receive (what they send is read and ignored). Same
settings as the front: no compression, no per-connection queue limit on the sender.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

subscribers: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    if ws.request is not None and ws.request.path == "/master":
        try:
            while True:
                broadcast(subscribers, await ws.recv(decode=False), text=True)
        except ConnectionClosed:
            return
    subscribers.add(ws)
    try:
        async for _ in ws:
            pass
    finally:
        subscribers.discard(ws)


async def main(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=None,
                     ping_interval=10, ping_timeout=50, close_timeout=3):
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(parser.parse_args().port))
