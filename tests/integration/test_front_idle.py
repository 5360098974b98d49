"""What an idle connection costs the front (issue 13 item 2, "idle connections"): an in-process Front
behind the scripted router of test_front.py, inspected directly. No timing assertions."""

from __future__ import annotations

import asyncio
import gc
import types

from websockets.asyncio.client import connect

from common.wire import OPEN, SENDS, pack_sids
from router.front.server import Front, FrontConfig
from tests.cluster import free_port, repo_secret, wait_port
from tests.integration.test_front import WAIT, ScriptedRouter


def _reaches(root: object, text: str, depth: int = 4) -> bool:
    """Whether a string containing ``text`` is reachable from ``root`` within ``depth`` references."""
    seen: set[int] = set()
    layer = [root]
    for _ in range(depth):
        nxt = []
        for obj in layer:
            for ref in gc.get_referents(obj):
                if isinstance(ref, (str, bytes)) and len(ref) >= len(text) and (
                        text in ref if isinstance(ref, str) else text.encode() in ref):
                    return True
                if id(ref) not in seen and not isinstance(ref, (type, types.ModuleType)):
                    seen.add(id(ref))
                    nxt.append(ref)
        layer = nxt
    return False


async def _front(router: ScriptedRouter, **options) -> tuple[Front, asyncio.Task[None], str]:
    port = free_port()
    front = Front(FrontConfig(router=router.url, port=port, secret=repo_secret(), **options))
    task = asyncio.create_task(front.run())
    await router.welcome()
    await asyncio.to_thread(wait_port, port)
    return front, task, f"ws://127.0.0.1:{port}"


async def test_an_open_session_keeps_no_handshake_headers_and_still_works():
    """The handshake's headers (~3 KB per connection) are let go once the session is open; the session still gets frames and answers keepalive pings."""
    router = ScriptedRouter(secret=repo_secret())
    front, task, url = await _front(router, ping_interval=0.2, ping_timeout=5.0)
    try:
        async with connect(url + "/some/path", compression=None, open_timeout=WAIT,
                           additional_headers={"X-Big": "x" * 2000}) as ws:
            (sid,) = await router.expect(OPEN)
            conn = front._sessions[sid]
            assert not _reaches(conn, "x" * 2000), "the handshake's headers are still held"
            assert conn.path == "/some/path"
            await router.send(SENDS, b'{"action":"object-update"}', pack_sids([sid]))
            async with asyncio.timeout(WAIT):
                assert await ws.recv() == '{"action":"object-update"}'
            # pings go out and are acknowledged (the client answers them): the session stays open
            # (a sweep pings only a connection whose last ping was answered: a second ping means a pong came)
            async with asyncio.timeout(WAIT):
                while conn.ping_at == 0.0:
                    await asyncio.sleep(0.05)
                first = conn.ping_at
                while conn.ping_at == first or conn.ping is not None:
                    await asyncio.sleep(0.05)
            assert sid in front._sessions
    finally:
        front.stop()
        await asyncio.wait_for(task, WAIT)
        await router.close()


async def test_a_connection_opened_under_half_an_interval_ago_is_pinged_by_the_next_sweep():
    """A reconnect storm must not also be a ping storm: a sweep skips connections whose handshake (a proof
    of life, and a write to the client) is under half an interval old; the sweep after pings them."""
    from router.front.server import _Ping

    router = ScriptedRouter(secret=repo_secret())
    interval = 3600.0  # no sweep of its own during the test: the test sweeps by hand
    front, task, url = await _front(router, ping_interval=interval, ping_timeout=7200.0)
    try:
        async with connect(url, compression=None, open_timeout=WAIT) as ws:
            (sid,) = await router.expect(OPEN)
            conn = front._sessions[sid]
            young = conn.opened + interval / 2 - 1
            front._keepalive(conn, young, 7200.0, _Ping())
            assert conn.ping is None  # skipped: too young
            due = conn.opened + interval / 2 + 1
            front._keepalive(conn, due, 7200.0, _Ping())
            assert conn.ping is not None  # the next sweep pings it; the client answers
            async with asyncio.timeout(WAIT):
                while conn.ping is not None:
                    await asyncio.sleep(0.05)
            assert ws.state.name == "OPEN" and sid in front._sessions
    finally:
        front.stop()
        await asyncio.wait_for(task, WAIT)
        await router.close()


async def test_the_congestion_loop_sleeps_until_a_connection_is_paused(monkeypatch):
    """An empty front must not poll: the slow-consumer check (every CONGESTION_CHECK) runs only while a
    connection is paused; before, it woke 20 times a second with nothing to do."""
    import router.front.server as server

    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def counting_sleep(delay: float, *args):
        sleeps.append(delay)
        await real_sleep(0)

    front = Front(FrontConfig())
    monkeypatch.setattr(server.asyncio, "sleep", counting_sleep)
    task = asyncio.create_task(front._congestion_loop())
    try:
        for _ in range(50):  # many loop iterations with nothing paused
            await real_sleep(0)
        assert sleeps == []

        class Gone:  # a paused connection already closed: the check forgets it
            sid = b"1"
            protocol = type("P", (), {"state": server.State.CLOSED})()

        front._paused[b"1"] = Gone()  # type: ignore[assignment]
        front._any_paused.set()       # what _on_congestion(PAUSE) does
        async with asyncio.timeout(WAIT):
            while not sleeps or front._paused:
                await real_sleep(0)
        assert server.CONGESTION_CHECK in sleeps
        n = len(sleeps)
        for _ in range(50):  # nothing paused again: asleep again
            await real_sleep(0)
        assert len(sleeps) == n
    finally:
        task.cancel()


async def test_a_connection_that_sends_nothing_is_dropped_at_the_upgrade_deadline(monkeypatch):
    """A TCP connection that never sends a byte is dropped when the upgrade deadline passes (it must not
    hold one of the --max-connections upgrade slots for as long as the client likes)."""
    import router.front.connection as connection

    monkeypatch.setattr(connection, "OPEN_TIMEOUT", 0.3)
    router = ScriptedRouter(secret=repo_secret())
    front, task, url = await _front(router)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
        async with asyncio.timeout(WAIT):
            try:
                assert await reader.read() == b""  # dropped by the front (aborted: EOF or a reset)
            except ConnectionResetError:
                pass
        writer.close()
        async with asyncio.timeout(WAIT):
            while front._upgrading:
                await asyncio.sleep(0.05)
    finally:
        front.stop()
        await asyncio.wait_for(task, WAIT)
        await router.close()
