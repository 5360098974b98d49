"""Benchmark bump -> websocket client latency on a real cluster, for SQLite and PostgreSQL.

Run: ``.venv/bin/python scripts/bench/bench_bump.py [--samples N] [--gap S] [--backend direct|sqlite|postgres|all]``.

For each backend it starts a router, a front, one worker, a notifier (and for PostgreSQL a throwaway
server, tests/postgres.py), subscribes a websocket client to an object whose version is
``versions("bench")``, then repeats: note the time, ``bump("bench")``, wait for the client's
``object-update`` carrying that version. The latency therefore covers the bump call itself (commit
included), the notifier, the router, one production in the worker, the front and the websocket.
Bumps are ``--gap`` seconds apart, so each one is measured alone (no coalescing).

``direct`` is the baseline without any database or notifier: a second websocket client uploads the
dependency's new version itself (``object-patch dep:bench``), as the notifier would; the producer reads
the version from a file. The difference to the other rows is the cost of the backend and the notifier.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common.deps import api  # noqa: E402
from tests import postgres  # noqa: E402
from tests.cluster import Cluster, Proc  # noqa: E402
from tests.integration.wsclient import RawClient, update_of  # noqa: E402

PRODUCER = textwrap.dedent('''
    from common import versions
    from worker import Producer

    class Bench(Producer):
        patterns = ["bench"]
        def produce(self, object_id):
            version = versions("bench")
            return {"bumped": version["dep:bench"]}, version

    class BenchDirect(Producer):
        patterns = ["bench-direct"]
        def produce(self, object_id):
            import pathlib
            version = int((pathlib.Path(__file__).parent / "direct-version").read_text())
            return {"bumped": version}, {"dep:bench": version}
''')


async def measure(cluster: Cluster, url: str, samples: int, gap: float, warmup: int) -> tuple[list[float], list[float]]:
    latencies, calls = [], []
    async with RawClient(cluster.ws_url, "bench") as client:
        await client.send("object-consumer-register", pattern="bench", version_known=0)
        await client.expect(update_of("bench"), timeout=60)
        for i in range(warmup + samples):
            start = time.perf_counter()
            version = api.bump("bench", url=url)
            called = time.perf_counter()
            await client.expect(update_of("bench", version_new=version), timeout=30)
            done = time.perf_counter()
            if i >= warmup:
                latencies.append((done - start) * 1000)
                calls.append((called - start) * 1000)
            client.frames.clear()
            await asyncio.sleep(gap)
    return latencies, calls


async def measure_direct(cluster: Cluster, workdir: Path, samples: int, gap: float,
                         warmup: int) -> tuple[list[float], list[float]]:
    latencies, calls = [], []
    state = workdir / "direct-version"
    state.write_text("1")
    async with RawClient(cluster.ws_url, "bench") as client, RawClient(cluster.ws_url, "uploader") as uploader:
        await client.send("object-consumer-register", pattern="bench-direct", version_known=0)
        await client.expect(update_of("bench-direct"), timeout=60)
        for i in range(warmup + samples):
            version = i + 2
            start = time.perf_counter()
            state.write_text(str(version))
            await uploader.send("object-patch", id="dep:bench", version_new=version, value={})
            called = time.perf_counter()
            await client.expect(update_of("bench-direct", version_new={"dep:bench": version}), timeout=30)
            done = time.perf_counter()
            if i >= warmup:
                latencies.append((done - start) * 1000)
                calls.append((called - start) * 1000)
            client.frames.clear()
            uploader.frames.clear()
            await asyncio.sleep(gap)
    return latencies, calls


def run_backend(name: str, url: str, samples: int, gap: float, warmup: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="seasync-bench-"))
    (workdir / "bench_producer.py").write_text(PRODUCER)
    os.environ["SEASYNC_DEPS"] = url  # inherited by the worker
    cluster = Cluster()
    try:
        cluster.start_router()
        cluster.start_front()
        cluster.start_workers(workdir, 1)
        if name == "direct":
            latencies, calls = asyncio.run(measure_direct(cluster, workdir, samples, gap, warmup))
        else:
            cluster.procs.append(Proc("notifier", ["-m", "worker.notifier.cli", "--router",
                                                   cluster.router_url, "--deps", url]))
            latencies, calls = asyncio.run(measure(cluster, url, samples, gap, warmup))
    except BaseException:
        cluster.stop()
        print(cluster.logs(), file=sys.stderr)
        raise
    cluster.stop()
    report(name, latencies, calls)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def report(name: str, latencies: list[float], calls: list[float]) -> None:
    print(f"{name:9s} bump->client ms: p50 {pct(latencies, 50):6.2f}  p90 {pct(latencies, 90):6.2f}  "
          f"p99 {pct(latencies, 99):6.2f}  max {max(latencies):6.2f}  mean {statistics.fmean(latencies):6.2f}   "
          f"(bump call alone: p50 {pct(calls, 50):.2f}  p99 {pct(calls, 99):.2f};  n={len(latencies)})",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between two bumps")
    parser.add_argument("--backend", choices=["direct", "sqlite", "postgres", "all"], default="all")
    args = parser.parse_args()
    if args.backend in ("direct", "all"):
        path = os.path.join(tempfile.mkdtemp(prefix="seasync-bench-"), "deps.sqlite3")
        run_backend("direct", path, args.samples, args.gap, args.warmup)
    if args.backend in ("sqlite", "all"):
        path = os.path.join(tempfile.mkdtemp(prefix="seasync-bench-"), "deps.sqlite3")
        run_backend("sqlite", path, args.samples, args.gap, args.warmup)
    if args.backend in ("postgres", "all"):
        reason = postgres.available()
        if reason:
            print(f"postgres  skipped: {reason}")
            return
        server = postgres.Server()
        try:
            run_backend("postgres", server.create_database(), args.samples, args.gap, args.warmup)
        finally:
            server.destroy()


if __name__ == "__main__":
    main()
