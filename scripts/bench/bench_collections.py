"""Benchmark writable collections (issue 15) on a real cluster: router, front, workers, SQLite storage.

Run: ``.venv/bin/python scripts/bench/bench_collections.py [--updates N] [--workers W] [--window K]``.

Rows:
- ``one collection``: N updates (one item inserted each) into one collection, K in flight per writer
  (the router applies them one at a time: the figure is the serial apply path, commit included);
- ``100 collections``: the same N spread over 100 collections (applied in parallel by the workers);
- ``update -> watcher``: one update at a time into a watched collection, the time from sending it to
  the watcher's patch carrying its version (p50/p99).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.cluster import Cluster  # noqa: E402
from tests.integration.wsclient import RawClient, update_of  # noqa: E402

PRODUCER = '''
from worker import Collection

class Bench(Collection):
    patterns = ["bench/*"]
    url = {url!r}
'''


async def throughput(cluster: Cluster, ids: list[str], updates: int, window: int) -> float:
    async with RawClient(cluster.ws_url, "writer") as client:
        started = time.perf_counter()
        sent = done = 0
        while done < updates:
            while sent < updates and sent - done < window:
                await client.send("collection-update", id=ids[sent % len(ids)], ref=sent,
                                  insert=[{"id": f"i{sent}", "n": sent}])
                sent += 1
            answer = await client.expect(lambda f: f.get("action") in ("collection-updated", "error"), 60)
            if answer["action"] == "error":
                raise RuntimeError(answer)
            done += 1
        return updates / (time.perf_counter() - started)


async def latency(cluster: Cluster, samples: int) -> list[float]:
    out = []
    async with RawClient(cluster.ws_url, "watcher") as watcher, RawClient(cluster.ws_url, "writer") as writer:
        await watcher.send("object-consumer-register", pattern="bench/watched", version_known=0)
        await watcher.expect(update_of("bench/watched"), 60)
        for i in range(samples):
            started = time.perf_counter()
            await writer.send("collection-update", id="bench/watched", ref=i, insert=[{"id": f"w{i}"}])
            frame = await watcher.expect(update_of("bench/watched"), 60)
            out.append((time.perf_counter() - started) * 1000)
            assert frame.get("patch") is not None
            await writer.expect(lambda f, ref=i: f.get("ref") == ref, 60)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        producers = Path(tmp) / "producers"
        producers.mkdir()
        (producers / "bench_collections.py").write_text(PRODUCER.format(url=str(Path(tmp) / "c.sqlite3")))
        cluster = Cluster()
        try:
            cluster.start_router()
            cluster.start_front()
            cluster.start_workers(producers, args.workers)
            time.sleep(2)
            one = asyncio.run(throughput(cluster, ["bench/one"], args.updates, args.window))
            many = asyncio.run(throughput(cluster, [f"bench/c{i}" for i in range(100)], args.updates, args.window))
            lat = sorted(asyncio.run(latency(cluster, args.samples)))
        finally:
            cluster.stop()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
    print(f"| one collection | {one:.0f} updates/s |")
    print(f"| 100 collections | {many:.0f} updates/s |")
    print(f"| update -> watcher | p50 {p(0.5):.2f} ms, p99 {p(0.99):.2f} ms ({len(lat)} samples, "
          f"median {statistics.median(lat):.2f}) |")


if __name__ == "__main__":
    main()
