"""Router capacity at 10x, 100x and 1,000x today's test sizes, with the store driven in-process.

Why in-process: at 1,000x (100,000 objects, 20,000 sessions) real websocket clients and worker
processes would not fit on this 2-core machine next to the router, and what is measured here is the
router's own share: the pure ObjectStore (router/store.py) that the router loop drives, with the same
frames it gets from fronts and workers. Socket, CURVE and front costs are not in these figures (see
docs/PERFORMANCE.md for those, measured over sockets at today's sizes); docs/SCALING.md combines both.

Each scale runs in a fresh subprocess (clean RSS). Per scale ``s``: ``100*s`` objects, ``20*s``
consumer sessions of 10 exact-id subscriptions each (``200*s`` subscriptions, 2 consumers per object),
``min(2*s, 200)`` producer sessions on the wildcard ``obj-*`` (one order at a time each, as seapig).
Phases: build (every consumer registers: each object is spawned, ordered, produced once), then rounds
of new versions uploaded by the producers (each one diffed once and fanned out to its consumers),
bounded to a few seconds. Printed: a Markdown table row per scale.

Run: ``.venv/bin/python scripts/bench_capacity.py [--scales 10,100,1000] [--seconds 4]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

BASE_OBJECTS = 100
BASE_CONSUMERS = 20
SUBS_PER_CONSUMER = 10


def rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


def run_scale(scale: int, seconds: float, build_budget: float = 60.0) -> dict:
    import orjson

    from router.store import ObjectStore

    n_objects = BASE_OBJECTS * scale
    n_consumers = BASE_CONSUMERS * scale
    n_producers = min(2 * scale, 200)
    store = ObjectStore()
    store.now = time.monotonic()
    base_rss = rss_mb()
    deliveries = 0
    productions = 0
    producers = [store.open(f"p{i}") for i in range(n_producers)]
    producer_set = set(producers)
    for p in producers:
        store.handle_raw(p, orjson.dumps({"action": "client-options-set", "options": {"name": "worker"}}))
        store.handle_raw(p, orjson.dumps({"action": "object-producer-register", "pattern": "obj-*"}))

    def value(i: int, n: int) -> dict:
        return {"id": i, "n": n, "title": f"object {i}", "tags": ["a", "b", "c"], "text": "x" * 64}

    def pump() -> int:
        """Deliver the outbox; answer every order (the producers); returns the orders answered."""
        nonlocal deliveries, productions
        answered = 0
        while store.has_output:
            orders = []
            for frame, sessions in store.take_outbox():
                deliveries += len(sessions)
                for s in sessions:
                    if s in producer_set:
                        msg = orjson.loads(frame)
                        if msg.get("action") == "object-produce":
                            orders.append((s, msg["id"]))
            for s, oid in orders:
                i = int(oid[4:])
                store.now = time.monotonic()
                store.handle_raw(s, orjson.dumps({"action": "object-patch", "id": oid, "version-new": 1,
                                                  "value": value(i, 1)}))
                answered += 1
            productions += answered
        return answered

    t0 = time.perf_counter()
    for c in range(n_consumers):
        s = store.open(f"c{c}")
        store.handle_raw(s, orjson.dumps({"action": "client-options-set", "options": {"name": f"c{c}"}}))
        for k in range(SUBS_PER_CONSUMER):
            i = (c * SUBS_PER_CONSUMER + k) % n_objects  # 2 consumers per object
            store.now = time.monotonic()
            store.handle_raw(s, orjson.dumps({"action": "object-consumer-register", "pattern": f"obj-{i}",
                                              "version-known": 0}))
        if c % 50 == 0:
            pump()
            if time.perf_counter() - t0 > build_budget:  # the spawn path is quadratic: stop, say how far
                break
    pump()
    build = time.perf_counter() - t0
    n_objects = min(n_objects, len(store.objects))
    built_productions = productions
    build_rss = rss_mb()
    complete = c == n_consumers - 1

    # rounds of new versions: every object gets version n, uploaded by a producer; diff once, fan out
    deliveries = 0
    versions = 0
    t0 = time.perf_counter()
    n = 1
    while time.perf_counter() - t0 < seconds:
        n += 1
        for i in range(n_objects):
            store.now = time.monotonic()
            store.handle_raw(producers[i % n_producers], orjson.dumps(
                {"action": "object-patch", "id": f"obj-{i}", "version-new": n, "value": value(i, n)}))
            versions += 1
            if i % 1000 == 999:
                pump()
            if time.perf_counter() - t0 >= seconds:
                break
        pump()
    fan = time.perf_counter() - t0
    return {
        "scale": scale, "complete": complete, "target_objects": BASE_OBJECTS * scale, "objects": len(store.objects), "sessions": len(store.sessions),
        "subscriptions": sum(len(o.consumers) for o in store.objects.values()),
        "build_s": build, "productions_per_s": built_productions / build if build else 0.0,
        "versions_per_s": versions / fan, "deliveries_per_s": deliveries / fan,
        "rss_mb": build_rss, "store_mb": build_rss - base_rss, "after_rounds_mb": rss_mb() - base_rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scales", default="10,100,1000")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the fan-out phase per scale")
    parser.add_argument("--build-budget", type=float, default=60.0,
                        help="seconds the build may take per scale; past it the scale is measured as far as it got")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a single scale, in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_scale(args.one, args.seconds, args.build_budget)))
        return
    print("| scale | objects | sessions | subscriptions | build (s) | productions/s (spawn+order+answer) "
          "| versions/s uploaded | deliveries/s fanned out | store memory (MB) | after rounds (MB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for scale in (int(x) for x in args.scales.split(",")):
        out = subprocess.run([sys.executable, __file__, "--one", str(scale), "--seconds", str(args.seconds),
                              "--build-budget", str(args.build_budget)],
                             capture_output=True, text=True, check=False,
                             env={**os.environ, "PYTHONHASHSEED": "0"})
        if out.returncode != 0:
            print(f"| {scale}x | failed: {out.stderr.strip()[-300:]} |")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        reached = "" if r["complete"] else f" (build stopped at {args.build_budget:.0f} s of {r['target_objects']:,})"
        print(f"| {scale}x | {r['objects']:,}{reached} | {r['sessions']:,} | {r['subscriptions']:,} | {r['build_s']:.2f} "
              f"| {r['productions_per_s']:,.0f} | {r['versions_per_s']:,.0f} | {r['deliveries_per_s']:,.0f} "
              f"| {r['store_mb']:.0f} | {r['after_rounds_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
