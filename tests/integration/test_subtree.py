"""Subtree subscriptions (issue 17 item 1) through a real cluster: a 10,000-row object, one watcher per row
for 200 rows (raw websocket clients) and a Python client with ``consume(id, path=...)``. Each update reaches
only the watchers whose row changed, as a patch rebased to the row; an array shift reaches those after it."""

from __future__ import annotations

import asyncio

from common.client import Client
from tests.integration.wsclient import RawClient, update_of

ROWS = 10_000
WATCHED = 200
WAIT = 30.0


async def test_each_update_reaches_only_the_watchers_of_what_changed(cluster) -> None:
    owner = Client(cluster.ws_url, name="owner", reconnect_delay=0.2)
    await owner.connect()
    master = owner.master("table", value={"rows": [{"n": i} for i in range(ROWS)], "title": "t"}, version=[1, 0])
    watchers = [RawClient(cluster.ws_url, name=f"row{i}") for i in range(WATCHED)]
    reader = Client(cluster.ws_url, name="reader", reconnect_delay=0.2)
    try:
        await asyncio.gather(*(w.connect() for w in watchers))
        for i, w in enumerate(watchers):
            await w.send("object-consumer-register", pattern="table", version_known=0, path=f"/rows/{i}")
        firsts = await asyncio.gather(*(w.expect(update_of("table"), WAIT) for w in watchers))
        assert [f["value"] for f in firsts] == [{"n": i} for i in range(WATCHED)]
        assert all(f["path"] == f"/rows/{i}" for i, f in enumerate(firsts))
        await reader.connect()
        row7 = reader.consume("table", path="/rows/7")
        assert await row7.wait(timeout=WAIT) == {"n": 7}
        absent_reader = Client(cluster.ws_url, name="absent", reconnect_delay=0.2)
        await absent_reader.connect()
        try:  # a subtree absent from the object is held as None, which is data: wait() returns it
            absent = absent_reader.consume("table", path=f"/rows/{ROWS + 5}")
            assert await absent.wait(timeout=WAIT) is None
            assert absent.valid
        finally:
            await absent_reader.close()

        master.value["rows"][5]["n"] = 500
        master.value["rows"][150]["n"] = 15000
        master.value["rows"][9000]["n"] = -1  # nobody watches it
        assert await master.bump() == [1, 1]
        got5 = await watchers[5].expect(update_of("table"), WAIT)
        got150 = await watchers[150].expect(update_of("table"), WAIT)
        assert got5["patch"] == [{"op": "replace", "path": "/n", "value": 500}] and got5["version-old"] == [1, 0]
        assert got150["patch"] == [{"op": "replace", "path": "/n", "value": 15000}]
        # a title change touches no row: nobody of them hears of it, and the reader's row is still row 7
        master.value["title"] = "new"
        assert await master.bump() == [1, 2]
        master.value["rows"][7]["n"] = 70
        assert await master.bump() == [1, 3]
        await row7.wait(lambda v: v == {"n": 70}, timeout=WAIT)
        assert row7.version == [1, 3] and row7.last_patch == [{"op": "replace", "path": "/n", "value": 70}]
        await asyncio.sleep(1.0)
        for i, w in enumerate(watchers):
            frames = [f for f in w.frames if f.get("action") == "object-update"]
            assert frames == ([{"action": "object-update", "id": "table", "path": "/rows/7", "version-old": [1, 2],
                                "version-new": [1, 3], "patch": [{"op": "replace", "path": "/n", "value": 70}]}]
                              if i == 7 else []), (i, frames)
            w.frames.clear()

        # removing row 0 shifts every row after it: each watcher gets its new row, whole
        del master.value["rows"][0]
        assert await master.bump() == [1, 4]
        shifted = await asyncio.gather(*(w.expect(update_of("table"), WAIT) for w in watchers[:10]))
        assert [f["patch"] for f in shifted] == [[{"op": "replace", "path": "", "value": {"n": i + 1 if i + 1 not in
                                                  (5, 7) else (500 if i + 1 == 5 else 70)}}] for i in range(10)]
    finally:
        await asyncio.gather(*(w.close() for w in watchers), return_exceptions=True)
        await reader.close()
        await owner.close()
