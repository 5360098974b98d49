"""What CURVE (the default cluster secret) costs per ZeroMQ message: plain vs CURVE links, one process.

A DEALER sends N messages of a given size to a ROUTER over loopback TCP, pipelined (no wake-up per
message, as on the router's busy paths); the figure is the process CPU (both ends and ZeroMQ's I/O
threads) per message, the median of 3 runs. ``python scripts/bench/bench_curve.py [--sizes 100,1000,10000]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import zmq

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from common import wire  # noqa: E402


def run(secure: bool, n: int, size: int) -> tuple[float, float]:
    """(µs of CPU per message, MB/s) for n messages of size bytes."""
    ctx = zmq.Context()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    for s in (router, dealer):
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.RCVHWM, 0)
    guard = wire.secure_router(ctx, router, "bench") if secure else None
    if secure:
        wire.secure_peer(dealer, "bench")
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer.connect(f"tcp://127.0.0.1:{port}")
    dealer.send(b"x")
    router.recv_multipart()  # connected (and handshaken)
    payload = b"p" * size
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        dealer.send(payload)
    for _ in range(n):
        router.recv_multipart()
    c1, t1 = time.process_time(), time.perf_counter()
    router.close()
    dealer.close()
    if guard is not None:
        guard.stop()
    ctx.term()
    return (c1 - c0) / n * 1e6, n * size / (t1 - t0) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="message sizes in bytes, comma-separated")
    parser.add_argument("--bytes", type=int, default=100_000_000, help="bytes sent per run (at most 200,000 messages)")
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        n = max(1000, min(200_000, args.bytes // size))
        results = {secure: sorted(run(secure, n, size) for _ in range(3)) for secure in (False, True)}
        plain, curve = results[False][1], results[True][1]
        print(f"{size:>6} B: plain {plain[0]:.2f} µs CPU/message, CURVE {curve[0]:.2f} "
              f"(+{curve[0] - plain[0]:.2f} µs, +{(curve[0] - plain[0]) * 1000 / size:.1f} ns/byte)", flush=True)


if __name__ == "__main__":
    main()
