"""Introspection objects exactly as seapig shapes them (issue 12, points 1 to 3), over real processes.

Written from what seapig's clients read: its RSpec introspection scenarios (the first update of
``SeapigServer::Objects`` lists the object itself with the new consumer), its own scenarios looking a
client up by id and name in ``SeapigServer::Connections``, and its viewer's Statistics tab.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from common.diff import apply_patch
from tests.cluster import Cluster
from tests.integration.wsclient import RawClient, update_of

pytestmark = pytest.mark.asyncio

OBJECTS = "SeapigServer::Objects"
CONNECTIONS = "SeapigServer::Connections"
STATISTICS = "SeapigServer::Statistics"


@pytest.fixture
def seapig_cluster():
    c = Cluster()
    try:
        c.start_router(env={"SEAPIG_SERVER_SESSION": "1"})
        c.start_front()
        yield c
    finally:
        c.stop()


def apply(value: dict, frame: dict) -> dict:
    return frame["value"] if "value" in frame else apply_patch(value, frame["patch"])


def own_ids(client: RawClient, connections: dict) -> list[str]:
    """The ids (name:N) of the clients named like ``client``, found the way seapig's scenarios do."""
    return [cid for connection in connections.values() for cid, c in connection["clients"].items()
            if c["options"].get("name") == client.name]


async def first_update(client: RawClient, object_id: str) -> dict:
    frame = await client.expect(update_of(object_id))
    assert frame["version-old"] == 0 and "value" in frame, frame  # a full value, at once
    return frame


# ---- 1. the first update counts the registering consumer -------------------------------------------------

async def test_objects_first_update_lists_itself_with_the_new_consumer(seapig_cluster):
    async with RawClient(seapig_cluster.ws_url, "viewer") as viewer:
        await viewer.send("object-consumer-register", pattern=OBJECTS, version_known=0)
        frame = await first_update(viewer, OBJECTS)
        assert frame["version-new"] == [1, 0]
        entry = frame["value"][OBJECTS]
        assert entry["id"] == OBJECTS
        assert len(entry["consumers"]) == 1 and entry["consumers"][0].startswith("viewer:")
        assert entry["producers"] == ["SeapigInternalClient:1"]
        assert entry["state"]["current"] is True
        assert "version_highest_known" in entry and "version_highest_inferred" in entry

        # A second consumer of the existing object: its first update lists it too, not a second later.
        async with RawClient(seapig_cluster.ws_url, "second") as second:
            await second.send("object-consumer-register", pattern=OBJECTS, version_known=0)
            consumers = (await first_update(second, OBJECTS))["value"][OBJECTS]["consumers"]
            assert sorted(c.split(":")[0] for c in consumers) == ["second", "viewer"]

        # and a wildcard consumer covering it
        async with RawClient(seapig_cluster.ws_url, "third") as third:
            await third.send("object-consumer-register", pattern="SeapigServer::Obj*", version_known=0)
            consumers = (await first_update(third, OBJECTS))["value"][OBJECTS]["consumers"]
            assert sorted(c.split(":")[0] for c in consumers) == ["third", "viewer"]


async def test_consumers_first_value_lists_the_registering_pattern(seapig_cluster):
    consumers = "SeapigServer::Consumers"
    async with RawClient(seapig_cluster.ws_url, "one") as one, RawClient(seapig_cluster.ws_url, "two") as two:
        await one.send("object-consumer-register", pattern=consumers, version_known=0)
        value = (await first_update(one, consumers))["value"]
        assert [c.split(":")[0] for c in value[consumers]] == ["one"]
        await two.send("object-consumer-register", pattern=consumers, version_known=0)
        value = (await first_update(two, consumers))["value"]
        assert sorted(c.split(":")[0] for c in value[consumers]) == ["one", "two"]


async def test_objects_updates_do_not_loop_on_its_own_entry(seapig_cluster):
    """Its own entry changes with every upload (versions, counters): that alone triggers none."""
    async with RawClient(seapig_cluster.ws_url, "viewer") as viewer:
        await viewer.send("object-consumer-register", pattern=OBJECTS, version_known=0)
        await first_update(viewer, OBJECTS)
        await asyncio.sleep(3.5)  # three refreshes
        assert [f for f in viewer.frames if f.get("id") == OBJECTS] == []


async def test_connections_first_value_lists_the_subscriber_as_seapig_writes_it(seapig_cluster):
    url = seapig_cluster.ws_url
    async with RawClient(url, "me", colour="blue") as me, RawClient(url, "app") as app:
        await app.send("object-producer-register", pattern="thing")
        await app.send("object-consumer-register", pattern="thing", version_known=0)
        await app.expect(lambda f: f.get("action") == "object-produce")

        await me.send("object-consumer-register", pattern=CONNECTIONS, version_known=0)
        connections = (await first_update(me, CONNECTIONS))["value"]
        assert connections and all(key.isdigit() for key in connections)  # keyed by connection number
        for connection in connections.values():
            for cid, client in connection["clients"].items():
                assert cid == client["id"] and ":" in cid
                assert set(client) == {"id", "options", "produces", "consumes", "producing"}
        [me_id] = own_ids(me, connections)
        mine = next(c["clients"][me_id] for c in connections.values() if me_id in c["clients"])
        assert mine["options"] == {"name": "me", "colour": "blue"}
        assert mine["consumes"] == [CONNECTIONS] and mine["produces"] == [] and mine["producing"] is None
        [app_id] = own_ids(app, connections)
        theirs = next(c["clients"][app_id] for c in connections.values() if app_id in c["clients"])
        assert theirs["produces"] == ["thing"] and theirs["consumes"] == ["thing"]
        assert theirs["producing"][0] == "thing" and len(theirs["producing"]) == 2  # [id, version]

        # a later subscriber to the existing object finds itself in its first value
        async with RawClient(url, "late") as late:
            await late.send("object-consumer-register", pattern=CONNECTIONS, version_known=0)
            connections = (await first_update(late, CONNECTIONS))["value"]
            [late_id] = own_ids(late, connections)
            assert late_id.startswith("late:")


# ---- 3. SeapigServer::Statistics -------------------------------------------------------------------------

SCALES = {"seconds": (1, 300), "minutes": (60, 300), "hours": (3600, 240), "days": (86400, 365)}
COUNTS = ("message-incoming-count", "message-outgoing-count")
DISTRIBUTIONS = ("message-incoming-size", "message-outgoing-size", "message-incoming-processing-time")
DIST_METRICS = {"count": {"show": False}, "sum": {"show": True}, "average": {"show": True},
                "maximum": {"show": True}, "histogram": {"show": True, "multiplier": 10}}


def check_shape(stats: dict) -> None:
    assert set(stats) >= set(SCALES)
    for name, (seconds, keep) in SCALES.items():
        scale = stats[name]
        assert (scale["seconds"], scale["keep"]) == (seconds, keep)
        assert scale["timestamp"] % seconds == 0 and abs(scale["timestamp"] - time.time()) < seconds + 30
        entities = scale["entities"]
        assert set(entities) == {"connections-count", *COUNTS, *DISTRIBUTIONS}
        assert entities["connections-count"]["metrics"] == {"last": {"show": True, "retain": True}}
        assert len(entities["connections-count"]["last"]) <= keep
        for e in COUNTS:
            assert entities[e]["metrics"] == {"count": {"show": True}} and len(entities[e]["count"]) <= keep
        for e in DISTRIBUTIONS:
            entity = entities[e]
            assert entity["metrics"] == DIST_METRICS
            lengths = {len(entity[f]) for f in ("count", "sum", "average", "maximum", "histogram")}
            assert len(lengths) == 1 and lengths.pop() <= keep  # one entry per closed slot in each array
            for count, total, average, maximum, histogram in zip(
                    entity["count"], entity["sum"], entity["average"], entity["maximum"], entity["histogram"]):
                assert sum(histogram) == count
                if count:
                    assert average == pytest.approx(total / count) and maximum <= total
                else:
                    assert (average, maximum, histogram) == (None, None, [])


def bucket_total(stats: dict, entity: str, bucket: int) -> int:
    return sum(h[bucket] for h in stats["seconds"]["entities"][entity]["histogram"] if len(h) > bucket)


async def test_statistics_in_seapig_shape_count_frames_by_size_and_recipients(seapig_cluster):
    url = seapig_cluster.ws_url
    # frames of about 45 kB: histogram bucket floor(log10(45e3) * 10) = 46 (39.8 to 50.1 kB), which no other
    # frame of this test reaches; small enough that a watcher is never paused as a slow reader (latest wins)
    uploads, blob, bucket = 4, 45_000, 46
    async with RawClient(url, "app") as app, RawClient(url, "w1") as w1, RawClient(url, "w2") as w2, \
            RawClient(url, "viewer") as viewer:
        await viewer.send("object-consumer-register", pattern=STATISTICS, version_known=0)
        stats = (await first_update(viewer, STATISTICS))["value"]
        check_shape(stats)  # every scale and entity from the first value on

        await app.send("object-producer-register", pattern="big")
        for watcher in (w1, w2):
            await watcher.send("object-consumer-register", pattern="big", version_known=0)
        # the router has a watcher's registration (frames of different sockets may arrive in any order,
        # and an upload of an object nobody watches is dropped)
        await app.expect(lambda f: f.get("action") == "object-produce" and f.get("id") == "big")
        for version in range(1, uploads + 1):
            await app.send("object-patch", id="big", version_old=0, version_new=version,
                           value={"blob": secrets.token_hex(blob // 2)})
            for watcher in (w1, w2):
                await watcher.expect(update_of("big", **{"version-new": version}))

        deadline = time.monotonic() + 30
        while True:  # the slots close every second: wait until the burst's slots have
            incoming, outgoing = (bucket_total(stats, e, bucket) for e in ("message-incoming-size", "message-outgoing-size"))
            if incoming >= uploads and outgoing >= 2 * uploads or time.monotonic() > deadline:
                break
            stats = apply(stats, await viewer.expect(update_of(STATISTICS)))
        check_shape(stats)
        assert incoming == uploads  # every client frame, by its size
        assert outgoing == 2 * uploads  # object-update frames, once per recipient
        seconds = stats["seconds"]["entities"]
        assert seconds["message-incoming-processing-time"]["count"] == seconds["message-incoming-count"]["count"]
        assert max(seconds["message-incoming-processing-time"]["maximum"], key=lambda v: v or 0) > 0
        assert sum(seconds["message-outgoing-count"]["count"]) >= 2 * uploads
        assert max(seconds["message-incoming-size"]["maximum"], key=lambda v: v or 0) > blob
        # four clients connected for the last second at least (the router's own session is not one)
        while stats["seconds"]["entities"]["connections-count"]["last"][-1] != 4:
            stats = apply(stats, await viewer.expect(update_of(STATISTICS)))


async def test_seasync_totals_and_rates_move_to_their_own_object(seapig_cluster):
    async with RawClient(seapig_cluster.ws_url, "viewer") as viewer:
        await viewer.send("object-consumer-register", pattern="SeasyncServer::Statistics", version_known=0)
        stats = (await first_update(viewer, "SeasyncServer::Statistics"))["value"]
        assert {"objects", "sessions", "queue", "errors", "messages_in", "messages_out", "bytes_in",
                "bytes_out", "productions", "rates"} <= set(stats)
        assert len(stats["rates"]["messages_in"]) == 60
