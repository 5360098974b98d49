"""The Python client (common/client/) against a real router + front, and against a scripted server.

Cluster tests: every master and consumer is a ``Client`` of its own over real websockets, so no worker is
needed. Scripted-server tests: a real websocket server run by the test sends frames a correct router
never sends (junk, patches from a wrong base, patches that do not apply) to check that the client
survives them and resynchronises with the right registrations.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from websockets.asyncio.server import ServerConnection, serve

from common import codec
from common.client import Change, Client, ClosedError, Consumer, WildcardConsumer
from common.versioning import is_newer

WAIT = 30.0  # generous: a loaded 2-core machine


@pytest.fixture
async def connect(cluster) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """Make connected clients on the cluster's front; all are closed at the end."""
    made: list[Client] = []

    async def make(name: str = "test", **kwargs) -> Client:
        kwargs.setdefault("reconnect_delay", 0.2)
        kwargs.setdefault("max_reconnect_delay", 1.0)
        client = Client(cluster.ws_url, name=name, **kwargs)
        await client.connect()
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


def record(consumer: Consumer | WildcardConsumer) -> list[Change]:
    changes: list[Change] = []
    consumer.on_change(changes.append)
    return changes


def assert_strictly_newer(versions: list) -> None:
    for older, newer in zip(versions, versions[1:]):
        assert is_newer(older, newer), f"version {newer!r} after {older!r} in {versions!r}"


# ---- against a real cluster --------------------------------------------------------------------


async def test_keep_current_master_and_patch_updates(connect):
    watcher = await connect("watcher")
    owner = await connect("owner")
    cars = watcher.consume("cars")
    changes = record(cars)
    master = owner.master("cars", value={"list": list(range(100))}, version=[1, 0])

    value = await cars.wait(timeout=WAIT)
    assert value == {"list": list(range(100))}
    assert cars.version == [1, 0] and cars.valid and changes[0].patch is None

    master.value["list"].append(100)
    assert await master.bump() == [1, 1]
    assert master.last_upload == "patch"
    await cars.wait(lambda v: len(v["list"]) == 101, timeout=WAIT)
    assert cars.version == [1, 1]
    assert changes[-1].patch == [{"op": "add", "path": "/list/100", "value": 100}]

    await master.set({"other": True})  # a patch would be bigger than this small value
    assert master.last_upload == "value"
    await cars.wait(lambda v: v == {"other": True}, timeout=WAIT)
    assert_strictly_newer([c.version for c in changes])
    assert [c.version for c in changes] == [[1, 0], [1, 1], [1, 2]]


async def test_numeric_version_bumps_by_one(connect):
    watcher = await connect("watcher")
    owner = await connect("owner")
    counter = watcher.consume("counter")
    master = owner.master("counter", value={"n": 0}, version=7)
    await counter.wait(timeout=WAIT)
    master.value["n"] = 1
    assert await master.bump() == 8
    await counter.wait(lambda v: v["n"] == 1, timeout=WAIT)
    assert counter.version == 8


async def test_preseeded_consumer_gets_nothing_until_the_next_version(connect):
    owner = await connect("owner")
    first = await connect("first")
    master = owner.master("page", value={"rows": list(range(50))}, version=[5, 0])
    await first.consume("page").wait(timeout=WAIT)  # the object is now cached at [5, 0]

    rendered = await connect("rendered")
    page = rendered.consume("page", value={"rows": list(range(50))}, version=[5, 0])
    assert page.valid and page.received_at is None  # valid at once: the server had nothing newer

    master.value["rows"].append(50)
    await master.bump()
    await page.wait(lambda v: len(v["rows"]) == 51, timeout=WAIT)
    assert page.version == [5, 1]
    assert page.last_patch == [{"op": "add", "path": "/rows/50", "value": 50}]  # a patch, never a full value


async def test_produce_on_demand_with_a_wildcard_master(connect):
    calls: list[tuple[str, object]] = []

    async def produce(object_id: str, inferred):
        calls.append((object_id, inferred))
        await asyncio.sleep(0)
        return {"id": object_id, "wheels": 4}, [1, len(calls)]

    producer = await connect("producer")
    producer.master("car-*", produce=produce)
    watcher = await connect("watcher")
    one, two = watcher.consume("car-1"), watcher.consume("car-2")
    assert await one.wait(timeout=WAIT) == {"id": "car-1", "wheels": 4}
    assert await two.wait(timeout=WAIT) == {"id": "car-2", "wheels": 4}
    assert sorted(object_id for object_id, _ in calls) == ["car-1", "car-2"]
    assert all(inferred is None for _, inferred in calls)  # a first production has no inferred version


async def test_produce_sync_function_and_exact_master(connect):
    producer = await connect("producer")
    master = producer.master("answer", produce=lambda object_id, inferred: ({"v": 42}, 3))
    watcher = await connect("watcher")
    assert await watcher.consume("answer").wait(timeout=WAIT) == {"v": 42}
    assert master.versions == {"answer": 3}


async def test_exception_in_produce_does_not_kill_the_client(connect):
    attempts: list[str] = []

    def produce(object_id: str, inferred):
        attempts.append(object_id)
        if len(attempts) == 1:
            raise RuntimeError("database is down")
        return {"ok": True}, [2, len(attempts)]

    producer = await connect("producer")
    producer.master("flaky", produce=produce)
    watcher = await connect("watcher")
    errors: list[dict] = []
    watcher.on_error(errors.append)
    flaky = watcher.consume("flaky")
    assert await flaky.wait(timeout=WAIT) == {"ok": True}
    assert len(attempts) >= 2
    assert producer.connected and producer.connections == 1
    # the router tells consumers a production failed (additive error frame)
    assert any("database is down" in e.get("message", "") for e in errors), errors


async def test_wildcard_consumer_sees_children_and_destroy(connect):
    owner = await connect("owner")
    one = owner.master("car-1", value={"n": 1}, version=[1, 0])
    owner.master("car-2", value={"n": 2}, version=[1, 0])
    owner.master("bike-1", value={"n": 3}, version=[1, 0])
    watcher = await connect("watcher")
    cars = watcher.consume("car-*")
    assert isinstance(cars, WildcardConsumer)
    changes = record(cars)
    stream = cars.changes()

    data = await cars.wait(lambda d: len(d) == 2, timeout=WAIT)
    assert data == {"car-1": {"n": 1}, "car-2": {"n": 2}}
    assert set(cars) == {"car-1", "car-2"} and cars["car-1"].valid
    assert watcher.consume("car-2") is cars["car-2"]  # one Consumer per id, shared

    one.value["n"] = 10
    await one.bump()
    await cars.wait(lambda d: d.get("car-1") == {"n": 10}, timeout=WAIT)

    await owner.unmaster(one)  # nobody provides car-1 any more: the router destroys it
    await cars.wait(lambda d: "car-1" not in d, timeout=WAIT)
    assert "car-1" not in cars.children
    assert changes[-1] == Change("car-1", None, [1, 1], None, True)

    seen: dict[str, Change] = {}
    async with asyncio.timeout(WAIT):
        async for change in stream:  # coalesced per id: car-1 ends destroyed, car-2 as it is
            seen[change.id] = change
            if len(seen) == 2:
                break
    assert seen["car-1"].destroyed and not seen["car-2"].destroyed
    assert seen["car-2"].value == {"n": 2}
    await stream.aclose()


async def test_changes_iterator_coalesces_for_a_slow_reader(connect):
    owner = await connect("owner")
    watcher = await connect("watcher")
    master = owner.master("ticker", value={"n": 0}, version=[1, 0])
    ticker = watcher.consume("ticker")
    await ticker.wait(timeout=WAIT)
    stream = ticker.changes()
    first = await anext(stream)
    assert first.value == {"n": 0} and first.coalesced == 1

    for n in range(1, 11):
        master.value["n"] = n
        await master.bump()
    await ticker.wait(lambda v: v["n"] == 10, timeout=WAIT)
    change = await anext(stream)  # everything since the first read, as one change
    assert change.value == {"n": 10} and change.version == [1, 10]
    assert change.coalesced == 10 and change.patch is None
    await stream.aclose()


async def test_wait_times_out_and_unconsume_ends_waiters(connect):
    watcher = await connect("watcher")
    nobody = watcher.consume("nobody-produces-this")
    with pytest.raises(TimeoutError, match="nobody-produces-this"):
        await nobody.wait(timeout=0.5)

    waiter = asyncio.create_task(nobody.wait(timeout=WAIT))
    stream = nobody.changes()
    reader = asyncio.create_task(anext(stream))
    await asyncio.sleep(0.1)
    await watcher.unconsume(nobody)
    with pytest.raises(ClosedError):
        await waiter
    assert (await reader).destroyed
    assert nobody.destroyed


async def test_unwanted_master_uploads_its_latest_value_when_asked_again(connect):
    owner = await connect("owner")
    master = owner.master("doc", value={"rev": 0}, version=[3, 0])
    first = await connect("first")
    doc = first.consume("doc")
    await doc.wait(timeout=WAIT)
    await first.unconsume(doc)  # nobody consumes "doc": the router drops it
    for rev in range(1, 4):
        master.value["rev"] = rev
        await master.bump()

    second = await connect("second")
    again = second.consume("doc")
    assert await again.wait(lambda v: v["rev"] == 3, timeout=WAIT) == {"rev": 3}
    assert again.version == [3, 3]


async def test_reconnect_resyncs_without_duplicate_or_backward_versions(cluster, connect):
    owner = await connect("owner")
    watcher = await connect("watcher")
    master = owner.master("live", value={"n": 0, "pad": "x" * 200}, version=[9, 0])
    live = watcher.consume("live")
    changes = record(live)
    statuses: list[bool] = []
    live.on_status(lambda c: statuses.append(c.valid))
    await live.wait(timeout=WAIT)
    for n in range(1, 4):
        master.value["n"] = n
        await master.bump()
    await live.wait(lambda v: v["n"] == 3, timeout=WAIT)

    cluster.front.kill(signal.SIGKILL)
    cluster.front.popen.wait(WAIT)
    async with asyncio.timeout(WAIT):
        while watcher.connected or owner.connected:
            await asyncio.sleep(0.05)
    assert not live.valid

    master.value["n"] = 4  # bumped while disconnected: sent when the router asks after the reconnect
    await master.bump()
    await asyncio.to_thread(cluster.start_front)
    await watcher.wait_connected(WAIT)
    await owner.wait_connected(WAIT)

    await live.wait(lambda v: v["n"] == 4, timeout=WAIT)
    for n in range(5, 8):
        master.value["n"] = n
        await master.bump()
    await live.wait(lambda v: v["n"] == 7, timeout=WAIT)

    versions = [c.version for c in changes]
    assert_strictly_newer(versions)
    assert versions == [[9, n] for n in range(8)]
    assert live.valid and watcher.connections == 2
    assert False in statuses and statuses[-1] is True


async def test_wildcard_reconnect_keeps_children_without_duplicate_changes(cluster, connect):
    owner = await connect("owner")
    master = owner.master("item-1", value={"n": 0}, version=[1, 0])
    watcher = await connect("watcher")
    items = watcher.consume("item-*")
    changes = record(items)
    await items.wait(lambda d: d.get("item-1") == {"n": 0}, timeout=WAIT)

    cluster.front.kill(signal.SIGKILL)
    cluster.front.popen.wait(WAIT)
    async with asyncio.timeout(WAIT):
        while watcher.connected:
            await asyncio.sleep(0.05)
    assert not items.valid and not items["item-1"].valid
    await asyncio.to_thread(cluster.start_front)
    await watcher.wait_connected(WAIT)
    await owner.wait_connected(WAIT)
    await items.wait(lambda d: "item-1" in d, timeout=WAIT)  # valid again: the server re-sent it

    master.value["n"] = 1
    await master.bump()
    await items.wait(lambda d: d.get("item-1") == {"n": 1}, timeout=WAIT)
    assert [(c.id, c.version) for c in changes] == [("item-1", [1, 0]), ("item-1", [1, 1])]


async def test_connect_to_nothing_fails_fast():
    from tests.cluster import free_port

    client = Client(f"ws://127.0.0.1:{free_port()}")
    with pytest.raises(OSError):
        await client.connect()
    await client.close()


# ---- against a scripted server -----------------------------------------------------------------


class ScriptedServer:
    """A real websocket server on a free port; the test sends frames and reads what the client sent."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[dict] = asyncio.Queue()
        self.ws: ServerConnection | None = None
        self.connected = asyncio.Event()

    async def start(self) -> str:
        self.server = await serve(self._handler, "127.0.0.1", 0, compression=None)
        port = self.server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"ws://127.0.0.1:{port}"

    async def _handler(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.connected.set()
        async for raw in ws:
            self.received.put_nowait(codec.loads(raw))

    async def send(self, frame: dict | str) -> None:
        assert self.ws is not None
        await self.ws.send(frame if isinstance(frame, str) else codec.dumps(frame).decode())

    async def expect(self, **fields) -> dict:
        """The next frame the client sent, which must contain ``fields``."""
        async with asyncio.timeout(WAIT):
            message = await self.received.get()
        assert {k: message.get(k) for k in fields} == fields, message
        return message

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[ScriptedServer, Client]]:
    server = ScriptedServer()
    url = await server.start()
    client = Client(url, name="scripted", options={"heartbeat": True}, reconnect_delay=0.2)
    yield server, client
    await client.close()
    await server.close()


def update(object_id: str, old, new, **body) -> dict:
    return {"action": "object-update", "id": object_id, "version-old": old, "version-new": new, **body}


async def test_bad_frames_are_logged_and_lost_updates_resync(scripted, caplog):
    server, client = scripted
    x = client.consume("x")
    errors: list[dict] = []
    client.on_error(errors.append)
    await client.connect()
    await server.expect(action="client-options-set", options={"name": "scripted", "heartbeat": True})
    await server.expect(action="object-consumer-register", pattern="x", **{"version-known": 0})

    for junk in ("not json", "[1, 2]", '{"action": "bogus"}', '{"action": "object-update"}',
                 '{"action": "object-update", "id": "x", "version-new": 1}',
                 '{"action": "object-update", "id": "x", "version-new": 1, "value": [1]}',
                 '{"action": "object-produce"}', '{"action": "heartbeat"}'):
        await server.send(junk)
    await server.send(update("x", 0, 1, value={"a": 1}))
    assert await x.wait(timeout=WAIT) == {"a": 1}

    # a patch from a version the client does not hold: not applied, re-register with the held version
    await server.send(update("x", 5, 6, patch=[{"op": "replace", "path": "/a", "value": 6}]))
    await server.expect(action="object-consumer-register", pattern="x", **{"version-known": 1})
    assert x.value == {"a": 1} and x.version == 1 and not x.valid
    assert "an update was lost" in caplog.text
    await server.send(update("x", 1, 2, patch=[{"op": "replace", "path": "/a", "value": 2}]))
    assert await x.wait(timeout=WAIT) == {"a": 2}

    # a patch that does not apply: the data is dropped and the id registered again with a version no server
    # holds, so the full value comes; nothing is unregistered (which could despawn the object)
    await server.send(update("x", 2, 3, patch=[{"op": "remove", "path": "/missing"}]))
    await server.expect(action="object-consumer-register", pattern="x", **{"version-known": [-1, -1]})
    assert x.value is None and not x.valid
    await server.send(update("x", 0, 3, value={"a": 3}))
    assert await x.wait(timeout=WAIT) == {"a": 3}

    await server.send({"action": "error", "message": "something is off", "pattern": "x"})
    async with asyncio.timeout(WAIT):
        while not errors:
            await asyncio.sleep(0.01)
    assert errors[0]["message"] == "something is off"
    assert client.connected and client.connections == 1


async def test_wildcard_child_resyncs_with_a_temporary_exact_subscription(scripted):
    server, client = scripted
    items = client.consume("w-*")
    await client.connect()
    await server.expect(action="client-options-set")
    await server.expect(action="object-consumer-register", pattern="w-*", **{"version-known": 0})
    await server.send(update("w-1", 0, [1, 0], value={"n": 0}))
    await items.wait(timeout=WAIT)

    await server.send(update("w-1", [1, 7], [1, 8], patch=[]))
    await server.expect(action="object-consumer-register", pattern="w-1", **{"version-known": [1, 0]})
    assert not items["w-1"].valid
    await server.send(update("w-1", [1, 0], [1, 8], patch=[{"op": "replace", "path": "/n", "value": 8}]))
    await server.expect(action="object-consumer-unregister", pattern="w-1")  # synced: drop the temporary one
    assert await items.wait(lambda d: d.get("w-1") == {"n": 8}, timeout=WAIT)

    await server.send({"action": "object-destroy", "id": "w-1"})
    await items.wait(lambda d: not d and not items.children, timeout=0.1 + WAIT)
    assert items.children == {}


async def test_produce_orders_declined_or_failing_are_answered(scripted):
    server, client = scripted
    calls: list[tuple[str, object]] = []

    async def produce(object_id: str, inferred):
        calls.append((object_id, inferred))
        if object_id == "p-bad":
            raise ValueError("no such row")
        if object_id == "p-stall":
            return False, 4
        if object_id == "p-skip":
            return None, None
        return {"id": object_id}, {"Postgres::cars": 8}

    master = client.master("p-*", produce=produce)
    keep = client.master("kept", value={"k": 1}, version=[4, 2])
    await client.connect()
    await server.expect(action="client-options-set")
    await server.expect(action="object-producer-register", pattern="p-*", **{"version-known": 0})
    await server.expect(action="object-producer-register", pattern="kept", **{"version-known": [4, 2]})

    await server.send({"action": "object-produce", "id": "p-1", "version-inferred": {"Postgres::cars": 8}})
    await server.expect(action="object-patch", id="p-1", value={"id": "p-1"},
                        **{"version-new": {"Postgres::cars": 8}})
    assert calls == [("p-1", {"Postgres::cars": 8})] and master.versions == {"p-1": {"Postgres::cars": 8}}
    await server.send({"action": "object-produce", "id": "p-bad", "version-inferred": None})
    message = await server.expect(action="object-patch", id="p-bad", error="ValueError: no such row")
    assert "value" not in message and "version-new" not in message
    await server.send({"action": "object-produce", "id": "p-stall", "version-inferred": None})
    await server.expect(action="object-patch", id="p-stall", value=False, **{"version-new": 4})
    await server.send({"action": "object-produce", "id": "p-skip", "version-inferred": None})
    assert await server.expect(action="object-patch", id="p-skip") == {"action": "object-patch", "id": "p-skip"}
    await server.send({"action": "object-produce", "id": "unknown", "version-inferred": None})
    await server.expect(action="object-patch", id="unknown")

    # keep-current: a production order gets the full value; a refused patch is followed by the value
    await server.send({"action": "object-produce", "id": "kept", "version-inferred": None})
    await server.expect(action="object-patch", id="kept", value={"k": 1}, **{"version-new": [4, 2]})
    keep.value["k"] = 2
    keep.value["big"] = "y" * 100
    await keep.bump()
    keep.value["k"] = 3
    await keep.bump()
    await server.expect(action="object-patch", id="kept", **{"version-new": [4, 3]})
    await server.expect(action="object-patch", id="kept", patch=[{"op": "replace", "path": "/k", "value": 3}],
                        **{"version-old": [4, 3], "version-new": [4, 4]})
    await server.send({"action": "error", "message": "patch base version-old is not retained",
                       "request": "object-patch", "id": "kept"})
    await server.expect(action="object-patch", id="kept", value=keep.value, **{"version-new": [4, 4]})

    # the connection drops: everything is registered again, and what the wildcard master made is re-announced
    server.connected.clear()
    await server.ws.close()
    await server.connected.wait()
    await server.expect(action="client-options-set")
    await server.expect(action="object-producer-register", pattern="p-*", **{"version-known": 0})
    await server.expect(action="object-patch", id="p-1", value=True, **{"version-new": {"Postgres::cars": 8}})
    await server.expect(action="object-patch", id="p-stall", value=True, **{"version-new": 4})
    await server.expect(action="object-producer-register", pattern="kept", **{"version-known": [4, 4]})
    assert client.connections == 2
