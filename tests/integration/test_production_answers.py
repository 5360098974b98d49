"""Answers the router cannot hold a slot for, and results that never reach their order (issue 10,
items 2 and 3), against a real router, front and worker pool."""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path

import pytest

from tests.integration.wsclient import RawClient, update_of

PRODUCERS = textwrap.dedent('''
    from worker import Producer

    class Counter(Producer):
        patterns = ["counter-*"]
        def produce(self, object_id):
            return {"id": object_id}, 1

    class Stuck(Producer):
        """Always version 1, whatever version was announced."""
        patterns = ["stuck"]
        def produce(self, object_id):
            return {"stuck": True}, 1
''')


@pytest.fixture
def producers(tmp_path: Path) -> Path:
    (tmp_path / "p.py").write_text(PRODUCERS)
    return tmp_path


def error(code: str | None = None):
    return lambda f: f.get("action") == "error" and (code is None or f.get("code") == code)


async def test_a_hash_naming_patterns_does_not_stop_production(cluster, producers):
    """One 128-byte frame naming "counter-*" as a dependency must not take the only worker's slot."""
    cluster.start_workers(producers, 1)
    async with RawClient(cluster.ws_url, "mallory") as mallory, RawClient(cluster.ws_url, "app") as app:
        await mallory.send("object-consumer-register", pattern="x", version_known=0)
        await mallory.send("object-patch", id="x", version_new={"counter-*": 1, "dep:*": 1}, value={})
        await mallory.send("object-consumer-register", pattern="x", version_known=0)  # (a round trip)
        for n in range(3):  # the worker still produces, object after object
            await app.send("object-consumer-register", pattern=f"counter-{n}", version_known=0)
            frame = await app.expect(update_of(f"counter-{n}"), timeout=60)
            assert frame["value"] == {"id": f"counter-{n}"}
        assert (await mallory.expect(error()))["code"] == "invalid-dependency"


async def test_a_refused_answer_frees_the_producer_slot(cluster):
    """A websocket producer whose answer the router refuses gets its next order at once."""
    async with RawClient(cluster.ws_url, "p") as p, RawClient(cluster.ws_url, "c") as c:
        await p.send("object-producer-register", pattern="a")
        await p.send("object-producer-register", pattern="b")
        await c.send("object-consumer-register", pattern="a", version_known=0)
        await c.send("object-consumer-register", pattern="b", version_known=0)
        first = await p.expect(lambda f: f.get("action") == "object-produce")
        await p.send("object-patch", id=first["id"], version_new=True, value={})
        await p.expect(error())
        second = await p.expect(lambda f: f.get("action") == "object-produce" and f["id"] != first["id"])
        await p.send("object-patch", id=second["id"], version_new=1, value={"ok": 1})
        await c.expect(update_of(second["id"]))
        told = await c.expect(error())
        assert told["request"] == "object-produce" and told["id"] == first["id"]


async def test_a_version_announced_beyond_the_producer_ends_in_error_not_a_loop(cluster, producers):
    cluster.start_workers(producers, 1)
    async with RawClient(cluster.ws_url, "viewer") as viewer, RawClient(cluster.ws_url, "liar") as liar:
        await viewer.send("object-consumer-register", pattern="stuck", version_known=0)
        await viewer.expect(update_of("stuck"), timeout=60)
        await liar.send("object-patch", id="stuck", version_new=10 ** 18, value=True)
        told = await viewer.expect(error("production-behind"), timeout=90)
        assert told["id"] == "stuck"
        await viewer.send("object-consumer-register", pattern="SeapigServer::Objects", version_known=0)

        async def entry() -> dict:
            deadline = time.monotonic() + 30
            while True:
                frame = await viewer.expect(update_of("SeapigServer::Objects"), timeout=30)
                if "value" in frame and "stuck" in frame["value"]:
                    return frame["value"]["stuck"]
                assert time.monotonic() < deadline
                await viewer.send("object-consumer-unregister", pattern="SeapigServer::Objects")
                await viewer.send("object-consumer-register", pattern="SeapigServer::Objects", version_known=0)

        stuck = await entry()
        assert stuck["state"].get("error") is True and "older than ordered" in stuck["last_error"]
        productions = stuck["productions"]
        assert productions < 20
        await asyncio.sleep(3)  # no spinning meanwhile: the count does not move
        await viewer.send("object-consumer-unregister", pattern="SeapigServer::Objects")
        await viewer.send("object-consumer-register", pattern="SeapigServer::Objects", version_known=0)
        assert (await entry())["productions"] == productions
