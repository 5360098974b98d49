"""``sync-router --linger S`` through real processes: a page reload (its session gone, a new one registering)
within the linger finds the object current and costs no production; without it, it is produced again."""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path

import pytest

from tests.cluster import Cluster
from tests.integration.wsclient import RawClient, update_of

PRODUCERS = textwrap.dedent('''
    import pathlib
    from worker import Producer

    LOG = pathlib.Path(__file__).with_name("productions.log")

    class Counted(Producer):
        """Every production appends its id to productions.log, so the test counts them."""
        patterns = ["counted-*"]
        def produce(self, object_id):
            with LOG.open("a") as f:
                f.write(object_id + "\\n")
            return {"id": object_id}, 1
''')


def productions(directory: Path) -> list[str]:
    log = directory / "productions.log"
    return log.read_text().split() if log.exists() else []


@pytest.mark.parametrize("linger,expected", [("30", 1), ("0", 2)])
async def test_a_reload_within_the_linger_costs_no_production(tmp_path, linger, expected):
    (tmp_path / "linger_producers.py").write_text(PRODUCERS)
    cluster = Cluster()
    try:
        cluster.start_router("--linger", linger)
        cluster.start_front()
        cluster.start_workers(tmp_path, 1)
        async with RawClient(cluster.ws_url) as c:
            await c.send("object-consumer-register", pattern="counted-1", version_known=0)
            first = await c.expect(update_of("counted-1"))
            # the page goes and comes back: unregistered, then registered again holding what it had (one
            # connection, so the router sees the two in this order)
            await c.send("object-consumer-unregister", pattern="counted-1")
            await c.send("object-consumer-register", pattern="counted-1", version_known=first["version-new"])
            # the client holds the current version either way: nothing is sent; what differs is the cost
            assert await c.quiet(1.5) == []
            deadline = time.monotonic() + 20
            while len(productions(tmp_path)) < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        assert productions(tmp_path) == ["counted-1"] * expected
    finally:
        cluster.stop()
