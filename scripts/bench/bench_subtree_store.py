"""The router store alone (no sockets): CPU per update of one row of a big object, for N subtree sessions.

Run: ``PYTHONPATH=$PWD .venv/bin/python scripts/bench/bench_subtree_store.py [--rows 10000] [--updates 200]
[--watchers 0 1000 10000]``.

One object of ``--rows`` rows uploaded by a master as patches that change one row each; a whole-object consumer
(keeping it alive) and N sessions each watching its own row (``path: /rows/i``). The figure is the process
CPU per upload handled and pushed (``handle_raw`` + ``take_outbox``), the best of three runs: what the
watchers add over the 0 row is the per-session cost of a push (see docs/PERFORMANCE.md, stop 23).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from router.store import ObjectStore, Session  # noqa: E402


def send(store: ObjectStore, session: Session, **fields: Any) -> None:
    store.handle_raw(session, orjson.dumps({k.replace("_", "-"): v for k, v in fields.items()}), store.now)


def run(watchers: int, rows: int, updates: int) -> float:
    """Microseconds of CPU per update."""
    store = ObjectStore()
    master, keeper = store.open("master"), store.open("keeper")
    send(store, master, action="object-producer-register", pattern="table")
    send(store, keeper, action="object-consumer-register", pattern="table")
    send(store, master, action="object-patch", id="table", version_new=1,
         value={"rows": [{"n": 0, "pad": "x" * 16} for _ in range(rows)]})
    for i in range(watchers):
        send(store, store.open(f"w{i}"), action="object-consumer-register", pattern="table", version_known=0,
             path=f"/rows/{i}")
    store.take_outbox()
    rng = random.Random(1)
    uploads = [orjson.dumps({"action": "object-patch", "id": "table", "version-old": u - 1, "version-new": u,
                             "patch": [{"op": "replace", "path": f"/rows/{rng.randrange(max(watchers, 1))}/n",
                                        "value": u}]})
               for u in range(2, updates + 2)]
    started = time.process_time()
    for raw in uploads:
        store.handle_raw(master, raw, store.now)
        store.take_outbox()
    return (time.process_time() - started) / updates * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--watchers", type=int, nargs="+", default=[0, 1000, 10_000])
    args = parser.parse_args()
    for n in args.watchers:
        best = min(run(n, args.rows, args.updates) for _ in range(3))
        print(f"| {n:,} path sessions | {best / 1000:.1f} ms |")


if __name__ == "__main__":
    main()
