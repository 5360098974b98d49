"""Benchmark subtree subscriptions (issue 17 item 1) on a real cluster: router, front, a master, 1,000 watchers.

Run: ``.venv/bin/python scripts/bench/bench_subtree.py [--rows 10000] [--clients 1000] [--updates 100]``.

One object of ``--rows`` rows (``{"rows": [{"n": ..., "pad": ...}, ...]}``), uploaded by a Python-client master
as patches; ``--clients`` websocket watchers, run twice: each watching one row (``path: /rows/i``), then each
watching the whole object. Every update changes one watched row. Rows: deliveries per update, bytes sent per
update, and front and router CPU per update (psutil), for both runs side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

import orjson
import psutil
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common.client import Client  # noqa: E402
from tests.cluster import Cluster  # noqa: E402


class Watchers:
    """``n`` lean websocket clients in this process, counting the object-update frames and bytes they get."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.frames = 0
        self.bytes = 0
        self.versions: dict[int, object] = {}
        self.sockets: list = []
        self.tasks: list[asyncio.Task] = []

    async def start(self, n: int, path_of) -> None:
        async def one(i: int) -> None:
            ws = await connect(self.url, compression=None, max_size=None, open_timeout=30)
            self.sockets.append(ws)
            register = {"action": "object-consumer-register", "pattern": "table", "version-known": 0}
            if path_of is not None:
                register["path"] = path_of(i)
            await ws.send(orjson.dumps(register).decode())
            async for raw in ws:
                self.frames += 1
                self.bytes += len(raw)
                self.versions[i] = orjson.loads(raw).get("version-new")

        for start in range(0, n, 100):
            self.tasks += [asyncio.create_task(one(i)) for i in range(start, min(n, start + 100))]
            await asyncio.sleep(0.2)

    async def until(self, check, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise RuntimeError("the watchers did not get there in time")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        for ws in self.sockets:
            await ws.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def run(args: argparse.Namespace, mode: str) -> dict[str, float]:
    cluster = Cluster()
    cluster.start_router()
    cluster.start_front()
    owner = Client(cluster.ws_url, name="bench-master")
    watchers = Watchers(cluster.ws_url)
    try:
        await owner.connect()
        rows = [{"n": 0, "pad": "x" * 16} for _ in range(args.rows)]
        master = owner.master("table", value={"rows": rows}, version=[1, 0])
        await watchers.start(args.clients, (lambda i: f"/rows/{i}") if mode == "path" else None)
        await watchers.until(lambda: len(watchers.versions) == args.clients)
        frames0, bytes0 = watchers.frames, watchers.bytes
        front, router = cluster.procs[1].pid, cluster.procs[0].pid
        f0, r0 = cpu(front), cpu(router)
        started = time.perf_counter()
        rng = random.Random(1)
        for u in range(1, args.updates + 1):
            row = rng.randrange(args.clients)
            master.value["rows"][row]["n"] = u
            version = await master.bump()
            # the watcher of that row (or, watching the whole object, every watcher) holds the new version
            if mode == "path":
                await watchers.until(lambda row=row, version=version: watchers.versions.get(row) == version)
            else:
                await watchers.until(lambda version=version: all(v == version for v in watchers.versions.values()))
        took = time.perf_counter() - started
        return {"deliveries": (watchers.frames - frames0) / args.updates,
                "bytes": (watchers.bytes - bytes0) / args.updates,
                "front_ms": (cpu(front) - f0) * 1000 / args.updates,
                "router_ms": (cpu(router) - r0) * 1000 / args.updates,
                "per_s": args.updates / took}
    finally:
        await watchers.close()
        await owner.close()
        cluster.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=100)
    args = parser.parse_args()
    results = {mode: await run(args, mode) for mode in ("path", "whole")}
    print(f"| {args.rows:,} rows, {args.clients:,} watchers, {args.updates} updates of one row | each watches "
          f"its row (path) | each watches the whole object |")
    print("|---|---|---|")
    for key, label, fmt in (("deliveries", "deliveries per update", "{:,.1f}"),
                            ("bytes", "bytes sent per update", "{:,.0f}"),
                            ("front_ms", "front CPU per update", "{:.2f} ms"),
                            ("router_ms", "router CPU per update", "{:.2f} ms"),
                            ("per_s", "updates/s (each waited for)", "{:,.0f}")):
        print(f"| {label} | {fmt.format(results['path'][key])} | {fmt.format(results['whole'][key])} |")


if __name__ == "__main__":
    asyncio.run(main())
