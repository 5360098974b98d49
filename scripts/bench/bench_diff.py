"""Benchmark common.diff.make_patch against jsonpatch.make_patch on realistic documents.

Run: ``.venv/bin/python scripts/bench/bench_diff.py [--runs N]``. Prints one row per case: median
diff time, op count and encoded patch size for ours and for jsonpatch, and our target.
The new document is always an independent object (an orjson round trip of the old one, then
edited), as when the router diffs its stored snapshot against a freshly decoded upload.
Every patch is checked by applying it with jsonpatch and comparing type-strictly.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jsonpatch
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common.diff import json_equal, make_patch  # noqa: E402

TAGS = ["red", "green", "blue", "large", "small", "new", "sale", "limited", "eco", "imported"]


def rows_doc(n: int = 1000, seed: int = 1) -> dict[str, Any]:
    """About 126 B per row: id, name, price, qty, active, tags."""
    rnd = random.Random(seed)
    rows = [
        {
            "id": i,
            "name": f"Product {i:05d} " + "".join(rnd.choices("abcdefghijklmnopqrstuvwxyz", k=20)),
            "price": round(rnd.uniform(1, 1000), 2),
            "qty": rnd.randint(0, 500),
            "active": rnd.random() < 0.5,
            "tags": rnd.sample(TAGS, 3),
        }
        for i in range(n)
    ]
    return {"title": "inventory", "updated": 1700000000, "rows": rows}


def keys_doc(n: int = 10_000, seed: int = 2) -> dict[str, Any]:
    rnd = random.Random(seed)
    return {f"key-{i:05d}": {"n": rnd.randint(0, 10**6), "ok": rnd.random() < 0.5} for i in range(n)}


def copy(doc: Any) -> Any:
    return orjson.loads(orjson.dumps(doc))


def cases() -> list[tuple[str, dict, dict, float | None, int | None]]:
    """(name, old, new, target ms, target patch bytes)."""
    base = rows_doc()
    out = []

    new = copy(base)
    new["rows"][500]["price"] = 12.34
    out.append(("1k rows: one field changed", base, new, 0.3, 100))

    new = copy(base)
    new["rows"].insert(0, {"id": -1, "name": "Product new", "price": 1.5, "qty": 3, "active": True, "tags": ["new"]})
    out.append(("1k rows: row inserted at front", base, new, 0.5, 200))

    new = copy(base)
    del new["rows"][500]
    out.append(("1k rows: row deleted in middle", base, new, 0.5, 200))

    new = copy(base)
    new["rows"][100]["active"] = 1 if new["rows"][100]["active"] else 0  # bool -> int only
    out.append(("1k rows: bool -> int (type only)", base, new, None, None))

    out.append(("1k rows: no change", base, copy(base), None, None))

    new = copy(base)
    rnd = random.Random(3)
    for _ in range(5):
        del new["rows"][rnd.randrange(len(new["rows"]))]
        new["rows"].insert(rnd.randrange(len(new["rows"])), copy(base["rows"][0]) | {"id": -2})
        new["rows"][rnd.randrange(len(new["rows"]))]["qty"] += 1
    out.append(("1k rows: 15 scattered edits", base, new, None, None))

    big = keys_doc()
    new = copy(big)
    for i in random.Random(4).sample(range(len(big)), 10):
        new[f"key-{i:05d}"]["n"] += 1
    out.append(("10k keys: 10 leaves changed", big, new, 3.0, None))

    return out


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    """Median wall time of ``fn`` with GC off while timing; results are freed outside the timer."""
    times = []
    gc.collect()
    for _ in range(runs):
        gc.disable()
        t0 = time.perf_counter()
        result = fn()
        t1 = time.perf_counter()
        gc.enable()
        del result
        times.append((t1 - t0) * 1e3)
    return statistics.median(times)


def check(old: dict, new: dict, patch: list) -> None:
    result = jsonpatch.apply_patch(old, patch)  # copies old
    if not json_equal(result, new):
        raise SystemExit("patch does not turn old into new")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=101, help="timed runs per case (ours)")
    parser.add_argument("--ref-runs", type=int, default=5, help="timed runs per case (jsonpatch)")
    args = parser.parse_args()

    head = (
        f"{'case':34} {'doc B':>8} | {'ours ms':>8} {'ops':>4} {'patch B':>8} {'target':>18} |"
        f" {'jsonpatch ms':>12} {'ops':>4} {'patch B':>8}"
    )
    print(head)
    print("-" * len(head))
    for name, old, new, t_ms, t_bytes in cases():
        ours = make_patch(old, new)
        check(old, new, ours)
        ref = jsonpatch.make_patch(old, new).patch
        check(old, new, ref)
        # timed within this iteration (and without default arguments, which would time another call shape)
        ms = median_ms(lambda: make_patch(old, new), args.runs)  # noqa: B023
        ref_ms = median_ms(lambda: jsonpatch.make_patch(old, new), args.ref_runs)  # noqa: B023
        size, ref_size = len(orjson.dumps(ours)), len(orjson.dumps(ref))
        target = ""
        if t_ms is not None:
            ok = ms <= t_ms and (t_bytes is None or size <= t_bytes)
            target = f"<={t_ms}ms" + (f" <={t_bytes}B" if t_bytes else "") + (" ok" if ok else " MISS")
        print(
            f"{name:34} {len(orjson.dumps(old)):>8} | {ms:8.3f} {len(ours):>4} {size:>8} {target:>18} |"
            f" {ref_ms:12.2f} {len(ref):>4} {ref_size:>8}"
        )


if __name__ == "__main__":
    main()
