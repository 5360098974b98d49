"""What watchers see when a master uploads faster than one version at a time (real router and front).

seapig sends every version to every consumer, so a burst reaches a watcher whole. Under a flood
(64+ client messages waiting in one router batch) seasync pushes only the newest version of what
arrived together: whatever the timing, a watcher must then get versions in increasing order, each
patch against exactly the version it holds, and end with the final state.
"""

from __future__ import annotations

import jsonpatch
import orjson

from tests.integration.wsclient import RawClient, update_of


class Holder:
    """Applies a watcher's updates for one id, checking each patch base."""

    def __init__(self) -> None:
        self.version = 0
        self.value: dict = {}
        self.versions: list[int] = []

    def apply(self, frame: dict) -> None:
        if "value" in frame:
            self.value = frame["value"]
        else:
            assert frame["version-old"] == self.version, f"patch from {frame['version-old']}, held {self.version}"
            self.value = jsonpatch.apply_patch(self.value, frame["patch"])
        assert frame["version-new"] > self.version, f"version went from {self.version} to {frame['version-new']}"
        self.version = frame["version-new"]
        self.versions.append(self.version)


async def test_small_burst_reaches_the_watcher_whole(cluster):
    async with RawClient(cluster.ws_url, "watcher") as watcher, RawClient(cluster.ws_url, "master") as master:
        await watcher.send("object-consumer-register", pattern="burst", version_known=0)
        await master.send("object-producer-register", pattern="burst", version_known=0)
        await master.expect(lambda f: f.get("action") == "object-produce")  # the watcher is registered
        for n in range(1, 21):  # back to back, without waiting: they reach the router in one or two batches
            await master.send("object-patch", id="burst", version_new=n, value={"n": n, "pad": "x" * n})
        held = Holder()
        while held.version < 20:
            held.apply(await watcher.expect(update_of("burst")))
        assert held.versions == list(range(1, 21))  # every version, as seapig sends them
        assert held.value == {"n": 20, "pad": "x" * 20}


async def test_flood_ends_at_the_final_state_with_every_patch_on_the_version_held(cluster):
    total = 5000
    async with RawClient(cluster.ws_url, "watcher") as watcher, RawClient(cluster.ws_url, "master") as master:
        await watcher.send("object-consumer-register", pattern="flood", version_known=0)
        await master.send("object-producer-register", pattern="flood", version_known=0)
        await master.expect(lambda f: f.get("action") == "object-produce")
        frames = [orjson.dumps({"action": "object-patch", "id": "flood", "version-new": n,
                                "value": {"n": n, "list": list(range(n % 7))}}).decode() for n in range(1, total + 1)]
        for frame in frames:  # as fast as the connection takes them
            await master._ws.send(frame)
        held = Holder()
        while held.version < total:
            held.apply(await watcher.expect(update_of("flood"), timeout=60))
        assert held.value == {"n": total, "list": list(range(total % 7))}
        print(f"flood: {total} versions uploaded, {len(held.versions)} updates seen")
        assert not [f for f in watcher.frames if f.get("action") == "error"]
