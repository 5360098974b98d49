"""The Python client's collection API (issue 15) against a real cluster: router, front, worker pool, SQLite."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from common.client import Client, ClosedError, CollectionError

PRODUCERS = '''
import time

from common.collection import UpdateError
from worker import Collection

class Items(Collection):
    patterns = ["items/*"]
    url = {url!r}

class Picky(Collection):
    """Refuses items marked bad (an apply override): the error comes from the worker."""
    patterns = ["picky/*"]
    url = {url!r}

    def apply(self, object_id, update, ticket):
        if any(item.get("bad") for item in update.insert):
            raise UpdateError("bad items are refused", "invalid-item")
        return super().apply(object_id, update, ticket)

class Slow(Collection):
    """Takes seconds to apply: an update stays in flight."""
    patterns = ["slow/*"]
    url = {url!r}

    def apply(self, object_id, update, ticket):
        time.sleep(3)
        return super().apply(object_id, update, ticket)
'''


@pytest.fixture
def producers(tmp_path: Path) -> Path:
    directory = tmp_path / "producers"
    directory.mkdir()
    (directory / "client_collections.py").write_text(PRODUCERS.format(url=str(tmp_path / "collections.sqlite3")))
    return directory


async def test_two_clients_write_concurrently_and_converge(cluster, producers: Path) -> None:
    """Two clients insert 50 items each at once (and remove some of their own): both see every write, their
    versions are all distinct, and both end with the same contents."""
    cluster.start_workers(producers, 2)
    async with Client(cluster.ws_url, name="one") as one, Client(cluster.ws_url, name="two") as two:
        colls = [one.collection("items/shared"), two.collection("items/shared")]
        await asyncio.gather(*(c.wait(timeout=30) for c in colls))
        assert one.collection("items/shared") is colls[0]

        async def writer(coll, name: str) -> list:
            versions = []
            for i in range(50):
                remove = [f"{name}-{i - 1}"] if i % 5 == 4 else []
                versions.append(await coll.update(insert=[{"id": f"{name}-{i}", "by": name}], remove=remove))
            return versions

        v1, v2 = await asyncio.gather(writer(colls[0], "one"), writer(colls[1], "two"))
        assert len(set(v1) | set(v2)) == 100  # every write made its own version
        assert v1 == sorted(v1) and v2 == sorted(v2)
        last = max(v1 + v2)
        await asyncio.gather(*(c.wait(lambda _v, c=c: c.version == last, timeout=30) for c in colls))
        expected = {f"{n}-{i}" for n in ("one", "two") for i in range(50) if i % 5 != 3}
        for coll in colls:
            assert set(coll.ids()) == expected
            assert len(coll) == 80 and coll.has("one-0") and not coll.has("one-3")
            assert coll.get("two-49") == {"id": "two-49", "by": "two"}
        assert colls[0].items() == colls[1].items()


async def test_error_raises_with_its_code(cluster, producers: Path) -> None:
    cluster.start_workers(producers, 1)
    async with Client(cluster.ws_url, name="writer") as client:
        coll = client.collection("picky/errors")
        await coll.wait(timeout=30)  # a worker serves it
        with pytest.raises(CollectionError) as caught:  # from the router
            await client.collection("nobody-serves/this").update(insert=[{"id": "a"}], timeout=30)
        assert caught.value.code == "no-collection"
        with pytest.raises(CollectionError) as caught:  # from the worker's apply
            await coll.update(insert=[{"id": "a"}, {"id": "b", "bad": True}], timeout=30)
        assert caught.value.code == "invalid-item" and "bad items" in str(caught.value)
        with pytest.raises(CollectionError) as caught:  # checked before sending, with the server's code
            await coll.update(insert=[{"no": "id"}])
        assert caught.value.code == "invalid-item"
        assert await coll.update(insert=[{"id": "a"}], timeout=30) == 2  # nothing applied before; it goes on
        assert await coll.update(timeout=30) == 2  # a noop keeps the version


async def test_on_change_insert_replace_remove(cluster, producers: Path) -> None:
    cluster.start_workers(producers, 1)
    async with Client(cluster.ws_url, name="writer") as writer, Client(cluster.ws_url, name="reader") as reader:
        seen: list[tuple] = []
        watched = reader.collection("items/events")
        watched.on_change(lambda item_id, new, old: seen.append((item_id, new, old)))
        await watched.wait(timeout=30)
        coll = writer.collection("items/events")

        async def reach(version) -> None:
            await watched.wait(lambda _v: watched.version == version, timeout=30)

        await reach(await coll.update(insert=[{"id": "a", "n": 1}, {"id": "b", "n": 2}]))
        assert seen == [("a", {"id": "a", "n": 1}, None), ("b", {"id": "b", "n": 2}, None)]
        seen.clear()
        await reach(await coll.update(insert=[{"id": "a", "n": 10}]))
        assert seen == [("a", {"id": "a", "n": 10}, {"id": "a", "n": 1})]
        seen.clear()
        await reach(await coll.update(remove=["b"]))
        assert seen == [("b", None, {"id": "b", "n": 2})]
        seen.clear()
        await reach(await coll.update(reset=True, insert=[{"id": "c"}]))
        assert seen == [("a", None, {"id": "a", "n": 10}), ("c", {"id": "c"}, None)]


async def test_drop_before_answer_is_outcome_unknown_and_not_resent(cluster, producers: Path) -> None:
    """The worker takes seconds to apply; the link drops meanwhile: outcome-unknown, and the client does not
    resend it after reconnecting (the update applied once: version 2). While disconnected, an update waits
    for the connection."""
    cluster.start_workers(producers, 1)
    async with Client(cluster.ws_url, name="writer", reconnect_delay=0.2) as client:
        coll = client.collection("slow/drop")
        await coll.wait(timeout=30)
        pending = asyncio.ensure_future(coll.update(insert=[{"id": "a"}], timeout=30))
        await asyncio.sleep(0.5)
        assert not pending.done()
        assert client._link is not None
        await client._link.ws.close()  # the link drops (as if the network did)
        with pytest.raises(CollectionError) as caught:
            await pending
        assert caught.value.code == "outcome-unknown"
        assert not client.connected
        version = await coll.update(insert=[{"id": "b"}], timeout=30)  # waits for the reconnection
        assert version == 3  # "a" applied once (2), not resent
        await coll.wait(lambda _v: coll.version == 3, timeout=30)
        assert coll.ids() == ["a", "b"]


async def test_update_while_disconnected_times_out_or_ends_with_close() -> None:
    """No server at all: an update waits for the connection up to its timeout (nothing sent), and a close
    ends a wait without a timeout."""
    client = Client("ws://127.0.0.1:9/", name="offline", reconnect_delay=0.1)
    await client.connect(wait=False)
    coll = client.collection("items/offline")
    with pytest.raises(TimeoutError):
        await coll.update(insert=[{"id": "a"}], timeout=0.3)
    waiting = asyncio.ensure_future(coll.update(insert=[{"id": "a"}], timeout=None))
    await asyncio.sleep(0.2)
    await client.close()
    with pytest.raises(ClosedError):
        await asyncio.wait_for(waiting, 5)
