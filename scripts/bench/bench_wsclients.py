"""Client CPU per handshake and per received frame: the benchmark's lean client (bench_wsclient.py)
against picows.

Run: ``python scripts/bench/bench_wsclients.py [--clients N] [--frames M] [--runs R]`` (picows must be
importable; it is not a dependency). Why: the benchmark's websocket clients share the 2 cores with the
servers they measure, so their CPU per frame is taken from the servers in every end-to-end figure; a
kept library is preferable to a hand-written handshake and framing only if it costs no more.

One ``bench_bare.py`` server broadcasts every frame its ``/master`` connection sends to every other
connection. For each kind, one client process opens N connections (250 at a time), reporting the
user+system CPU (getrusage) per connection opened, then the CPU it spent from the moment all are
open to the moment it received all N x M frames; the sender, in this process, sends the same
schedule each time (bursts of 20 frames, 5 ms apart). The kinds alternate, R runs each; the table
gives the median and the range, in µs per connection and per frame.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

PAYLOAD = json.dumps({"action": "object-update", "id": "bench:1", "version": 1,
                      "value": {"n": 1, "text": "x" * 120}}).encode()
BURST, GAP = 20, 0.005


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _lean(url: str, clients: int, expected: int) -> tuple[float, int]:
    from scripts.bench.bench_wsclient import open_connection

    got = [0]
    done = asyncio.Event()

    def on_message(payload: bytes | bytearray, when: float) -> None:
        got[0] += 1
        if got[0] >= expected:
            done.set()

    async def one() -> object:
        return await open_connection(url, on_message, lambda code: None)

    return await _measure(await _open(one, clients), got, done, lambda c: c.close())


async def _picows(url: str, clients: int, expected: int) -> tuple[float, int]:
    from picows import WSListener, WSMsgType, ws_connect

    got = [0]
    done = asyncio.Event()

    class Listener(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: object, frame: object) -> None:
            if frame.msg_type == WSMsgType.TEXT:  # type: ignore[attr-defined]
                frame.get_payload_as_bytes()  # type: ignore[attr-defined]  # as the lean client hands bytes
                got[0] += 1
                if got[0] >= expected:
                    done.set()

    async def one() -> object:
        return (await ws_connect(Listener, url))[0]

    return await _measure(await _open(one, clients), got, done, lambda t: t.disconnect())


async def _open(one: object, clients: int) -> tuple[list, float]:
    """Open ``clients`` connections, 250 at a time (as bench_clients.py); the CPU spent per connection."""
    start = _cpu()
    conns: list = []
    for i in range(0, clients, 250):
        conns += await asyncio.gather(*(one() for _ in range(min(250, clients - i))))  # type: ignore[operator]
    return conns, (_cpu() - start) / clients


async def _measure(opened: tuple[list, float], got: list[int], done: asyncio.Event,
                   close: object) -> tuple[float, float, int]:
    conns, handshake = opened
    start = _cpu()
    print("ready", flush=True)
    try:
        await asyncio.wait_for(done.wait(), 120)
    except TimeoutError:
        pass
    spent = _cpu() - start
    for conn in conns:
        close(conn)  # type: ignore[operator]
    return handshake, spent, got[0]


def client_main(kind: str, url: str, clients: int, expected: int) -> None:
    run = _lean if kind == "lean" else _picows
    handshake, spent, got = asyncio.run(run(url, clients, expected))
    print(json.dumps({"handshake": handshake, "cpu": spent, "frames": got}), flush=True)


async def _send(url: str, frames: int) -> None:
    from websockets.asyncio.client import connect

    async with connect(url + "master", compression=None) as ws:
        for i in range(frames):
            await ws.send(PAYLOAD, text=True)
            if i % BURST == BURST - 1:
                await asyncio.sleep(GAP)


def one_run(kind: str, url: str, clients: int, frames: int) -> tuple[float, float]:
    proc = subprocess.Popen([sys.executable, __file__, "--client", kind, "--url", url, "--clients", str(clients),
                             "--frames", str(frames)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    asyncio.run(_send(url, frames))
    result = json.loads(proc.stdout.readline())
    proc.wait(30)
    if result["frames"] != clients * frames:
        raise RuntimeError(f"{kind}: received {result['frames']} of {clients * frames} frames")
    return result["handshake"] * 1e6, result["cpu"] / result["frames"] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--client", choices=["lean", "picows"])
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.client:
        client_main(args.client, args.url, args.clients, args.clients * args.frames)
        return
    from tests.cluster import Proc, free_port, wait_port

    port = args.port or free_port()
    bare = Proc("bare", [str(REPO / "scripts" / "bench" / "bench_bare.py"), "--port", str(port)])
    try:
        wait_port(port)
        url = f"ws://127.0.0.1:{port}/"
        results: dict[str, list[tuple[float, float]]] = {"lean": [], "picows": []}
        for _ in range(args.runs):
            for kind in results:
                results[kind].append(one_run(kind, url, args.clients, args.frames))
        print(f"{args.clients} clients x {args.frames} frames of {len(PAYLOAD)} bytes, {args.runs} runs each")
        print(f"{'client':<8} {'µs/handshake':>13} {'range':>13} {'µs/frame':>9} {'range':>13}")
        for kind, values in results.items():
            hs, fr = [v[0] for v in values], [v[1] for v in values]
            print(f"{kind:<8} {statistics.median(hs):>13.0f} {min(hs):>6.0f}–{max(hs):<6.0f} "
                  f"{statistics.median(fr):>9.2f} {min(fr):>6.2f}–{max(fr):.2f}")
    finally:
        bare.stop()


if __name__ == "__main__":
    main()
