"""Benchmark tracked() reads (issue 17 item 4): cost per query against plain psycopg, and UPDATE -> watcher.

Run: ``.venv/bin/python scripts/bench/bench_tracked.py [--queries N] [--samples N]``. Starts a throwaway
PostgreSQL (tests/postgres.py); the latency part adds a router, a front, one worker and the notifier,
installs the tracking triggers, then repeats: note the time, UPDATE a row in another session
(autocommit), wait for the watcher's ``object-update``.
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

from common.deps import tracked  # noqa: E402
from common.deps.tracked import clear_cache, collecting  # noqa: E402
from tests import postgres  # noqa: E402
from tests.cluster import Cluster  # noqa: E402
from tests.integration.test_tracked import PRODUCERS  # noqa: E402
from tests.integration.wsclient import RawClient, update_of  # noqa: E402

QUERY = "SELECT id, name FROM bike_names WHERE id = %s"


def per_query(url: str, n: int) -> tuple[float, float, float]:
    """µs per query: plain, tracked (a new production each time: versions read), tracked first sight."""
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        start = time.perf_counter()
        for i in range(n):
            conn.execute(QUERY, (i % 2 + 1,)).fetchall()
        plain = (time.perf_counter() - start) / n * 1e6
        start = time.perf_counter()
        for i in range(n):
            with collecting():
                tracked(conn).execute(QUERY, (i % 2 + 1,)).fetchall()
        kept = (time.perf_counter() - start) / n * 1e6
        start = time.perf_counter()
        for i in range(min(n, 200)):
            clear_cache()
            with collecting():
                tracked(conn).execute(QUERY, (i % 2 + 1,)).fetchall()
        first = (time.perf_counter() - start) / min(n, 200) * 1e6
    return plain, kept, first


async def latency(url: str, samples: int) -> list[float]:
    import psycopg
    import os
    os.environ["SEASYNC_DEPS"] = url
    directory = Path(tempfile.mkdtemp(prefix="bench-tracked-")) / "producers"
    directory.mkdir()
    (directory / "tracked_producers.py").write_text(PRODUCERS)
    cluster = Cluster()
    out: list[float] = []
    try:
        cluster.start_router()
        cluster.start_front()
        cluster.start_workers(directory, 1)
        from tests.integration.test_dependencies import start_notifier
        start_notifier(cluster, url)
        async with RawClient(cluster.ws_url) as watcher:
            await watcher.send("object-consumer-register", pattern="bikes", version_known=0)
            await watcher.expect(update_of("bikes"), timeout=60)
            with psycopg.connect(url, autocommit=True) as conn:
                for i in range(samples + 3):
                    watcher.frames.clear()
                    start = time.perf_counter()
                    conn.execute("UPDATE bikes SET name = %s WHERE id = 1", (f"n{i}",))
                    await watcher.expect(update_of("bikes"), timeout=30)
                    if i >= 3:
                        out.append((time.perf_counter() - start) * 1000)
                    await asyncio.sleep(0.05)
    finally:
        cluster.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    server = postgres.Server()
    try:
        import psycopg
        url = server.create_database()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE bikes (id int PRIMARY KEY, name text NOT NULL)")
            conn.execute("INSERT INTO bikes VALUES (1, 'brompton'), (2, 'moulton')")
            conn.execute("CREATE VIEW bike_names AS SELECT id, name FROM bikes")
        from common.deps import postgres as backend
        with psycopg.connect(url, autocommit=True) as conn:
            backend.ensure_schema(conn, url)
            backend.install_tracking(conn, "bikes")
        plain, kept, first = per_query(url, args.queries)
        print(f"per query: plain {plain:.0f} µs, tracked {kept:.0f} µs (+{kept - plain:.0f} µs: the versions "
              f"read), first sight of a statement {first:.0f} µs (the plan, in a savepoint)")
        lat = asyncio.run(latency(url, args.samples))
        lat.sort()
        print(f"UPDATE -> watcher patch: p50 {statistics.median(lat):.1f} ms, "
              f"p90 {lat[int(len(lat) * 0.9) - 1]:.1f} ms ({len(lat)} samples)")
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
