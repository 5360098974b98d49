"""Access control through a real router started with --auth, and the registration limit."""

from __future__ import annotations

import pytest

from tests.cluster import Cluster
from tests.integration.wsclient import RawClient, update_of


@pytest.fixture
def guarded_cluster():
    c = Cluster()
    try:
        c.start_router("--auth", "tests.integration.auth_hook:authenticate", "--max-registrations", "5")
        c.start_front()
        yield c
    finally:
        c.stop()


def error(frame: dict) -> bool:
    return frame.get("action") == "error"


async def test_hook_decides_who_consumes_and_produces(guarded_cluster):
    url = guarded_cluster.ws_url
    async with RawClient(url, "admin", token="admin") as admin, RawClient(url, "reader", token="reader") as reader, \
            RawClient(url, "anon") as anon:
        assert (await anon.expect(error))["message"] == "authentication failed"

        await admin.send("object-producer-register", pattern="public-*")
        await reader.send("object-consumer-register", pattern="public-news", version_known=0)
        await admin.expect(lambda f: f.get("action") == "object-produce")
        await admin.send("object-patch", id="public-news", version_new=1, value={"headline": "hi"})
        assert (await reader.expect(update_of("public-news")))["value"] == {"headline": "hi"}

        await reader.send("object-patch", id="public-news", version_new=2, value={"headline": "forged"})
        assert "not allowed to produce" in (await reader.expect(error))["message"]
        await reader.send("object-consumer-register", pattern="private", version_known=0)
        assert "not allowed to consume" in (await reader.expect(error))["message"]
        await anon.send("object-consumer-register", pattern="public-news", version_known=0)
        assert (await anon.expect(error))["request"] == "object-consumer-register"
        assert await anon.quiet(0.5) == []  # nothing leaked to the refused client


async def test_registration_limit(guarded_cluster):
    async with RawClient(guarded_cluster.ws_url, token="admin") as c:
        for n in range(6):
            await c.send("object-consumer-register", pattern=f"o-{n}", version_known=0)
        err = await c.expect(error)
        assert "limit" in err["message"] and err["pattern"] == "o-5"


async def test_a_wildcard_consumer_gets_only_the_ids_the_hook_allows(guarded_cluster):
    url = guarded_cluster.ws_url
    async with RawClient(url, "admin", token="admin") as admin, RawClient(url, "viewer", token="viewer") as viewer:
        for oid in ("admin-keys", "public-news"):
            await admin.send("object-producer-register", pattern=oid)
        await viewer.send("object-consumer-register", pattern="*", version_known=0)
        await viewer.send("object-consumer-register", pattern="public-news", version_known=0)
        order = await admin.expect(lambda f: f.get("action") == "object-produce")
        assert order["id"] == "public-news"  # "*" does not even make admin-keys exist
        for oid in ("admin-keys", "public-news"):
            await admin.send("object-patch", id=oid, version_new=1, value={"secret": oid})
        assert (await viewer.expect(update_of("public-news")))["value"] == {"secret": "public-news"}
        await admin.send("object-patch", id="admin-keys", version_new=2, value={"secret": "k2"})
        await admin.send("object-patch", id="public-news", version_new=2, value={"n": 2})
        await viewer.expect(update_of("public-news", **{"version-new": 2}))
        assert not [f for f in viewer.frames if f.get("id") == "admin-keys"]

        # a writer may not name a dependency it may not read, nor upload what it does not produce
        await viewer.send("object-patch", id="public-news", version_new=3, value={"forged": 1})
        assert (await viewer.expect(error))["request"] == "object-patch"
        await admin.send("object-patch", id="public-other", version_new=1, value={})
        assert (await admin.expect(error))["code"] == "not-a-producer"

        # the token is revoked: re-sending the options drops every registration at once
        await viewer.send("client-options-set", options={"name": "viewer", "token": "revoked"})
        assert (await viewer.expect(error))["message"] == "authentication failed"
        dropped = await viewer.expect(lambda f: error(f) and f.get("code") == "access-revoked")
        assert dropped["pattern"] in ("*", "public-news")
        await viewer.quiet(0.5)
        admin.frames.clear()
        await admin.send("object-consumer-register", pattern="public-news", version_known=0)
        await admin.expect(lambda f: f.get("action") == "object-produce" and f["id"] == "public-news")
        await admin.send("object-patch", id="public-news", version_new=4, value={"n": 4})
        await admin.expect(update_of("public-news", **{"version-new": 4}))
        assert await viewer.quiet(0.5) == []
