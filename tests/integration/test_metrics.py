"""The router's Prometheus endpoint, scraped over HTTP from a real router."""

from __future__ import annotations

import time
import urllib.request

from tests.cluster import Cluster, free_port, wait_port
from tests.integration.wsclient import RawClient, update_of


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def scrape_until(port: int, ready, timeout: float = 20.0) -> dict[str, float]:
    """Scrape until ``ready(values)``: a counter is bumped just after the write it counts, so a client
    can see a frame (and scrape, from another thread's point of view) a moment before it is counted."""
    deadline = time.monotonic() + timeout
    values = scrape(port)
    while not ready(values) and time.monotonic() < deadline:
        time.sleep(0.05)
        values = scrape(port)
    return values


async def test_router_and_front_metrics_follow_the_traffic():
    port, front_port = free_port(), free_port()
    cluster = Cluster()
    try:
        cluster.start_router("--metrics-port", str(port))
        cluster.start_front("--metrics-port", str(front_port))
        wait_port(port)
        wait_port(front_port)
        before = scrape(port)
        assert before["seasync_router_objects"] == 0 and before["seasync_router_productions_total"] == 0
        async with RawClient(cluster.ws_url, "producer") as p, RawClient(cluster.ws_url, "watcher") as w:
            await p.send("object-producer-register", pattern="m")
            await w.send("object-consumer-register", pattern="m", version_known=0)
            await p.expect(lambda f: f.get("action") == "object-produce")
            await p.send("object-patch", id="m", version_new=1, value={"a": 1})
            await w.expect(update_of("m"))
            after = scrape(port)
            assert after["seasync_router_objects"] == 1
            assert after["seasync_router_productions_total"] == 1
            assert after["seasync_router_production_seconds_count"] == 1
            assert after["seasync_router_messages_in_total"] >= 5
            assert after["seasync_router_bytes_out_total"] > 0
            assert after["seasync_router_sessions"] >= 3  # two clients and the router's own
            front = scrape_until(front_port, lambda v: v["seasync_front_messages_out_total"] >= 2)
            assert front["seasync_front_connections"] == 2
            assert front["seasync_front_messages_in_total"] >= 5  # options, registrations, the upload
            assert front["seasync_front_messages_out_total"] >= 2  # the produce order and the update
            assert front["seasync_front_bytes_out_total"] > front["seasync_front_messages_out_total"]
    finally:
        cluster.stop()


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def test_idle_metrics_connections_are_bounded_and_timed_out():
    """Issue 10 item 12: 60 connections that never send a request neither cost a thread each nor
    stay open for ever, and the endpoint still answers once they are gone."""
    import socket
    import time

    from router.metrics import SCRAPE_THREADS

    port = free_port()
    cluster = Cluster()
    idle: list[socket.socket] = []
    try:
        router = cluster.start_router("--metrics-port", str(port))
        wait_port(port)
        scrape(port)
        before = _threads(router.pid)
        for _ in range(60):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        time.sleep(1.0)  # let the server accept (and start whatever threads it starts for) all of them
        assert _threads(router.pid) <= before + SCRAPE_THREADS
        deadline = time.monotonic() + 60
        for s in idle:  # each is closed by the router (EOF or reset), none waits for us
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                assert s.recv(1024) == b""
            except ConnectionResetError:
                pass
        assert scrape(port)["seasync_router_objects"] == 0
        assert router.alive()
    finally:
        for s in idle:
            s.close()
        cluster.stop()
