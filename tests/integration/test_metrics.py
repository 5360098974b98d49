"""The router's Prometheus endpoint, scraped over HTTP from a real router."""

from __future__ import annotations

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
            front = scrape(front_port)
            assert front["seasync_front_connections"] == 2
            assert front["seasync_front_messages_in_total"] >= 5  # options, registrations, the upload
            assert front["seasync_front_messages_out_total"] >= 2  # the produce order and the update
            assert front["seasync_front_bytes_out_total"] > front["seasync_front_messages_out_total"]
    finally:
        cluster.stop()
