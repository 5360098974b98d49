"""A client process started while the server may be down: ``offline_client.py URL STATE_DIR ID``.

Prints its consumer's state as one JSON line at start (before any connection), then one on every change
of value, validity or staleness, until it is killed. Used by tests/integration/test_client_offline.py.
"""

from __future__ import annotations

import asyncio
import json
import sys

from common.client import Client


async def main(url: str, state_dir: str, object_id: str) -> None:
    client = Client(url, name="dash", state_dir=state_dir, reconnect_delay=0.2, max_reconnect_delay=0.5)
    consumer = client.consume(object_id)
    stream = consumer.changes()
    first = await stream.__anext__()  # the persisted state comes first, marked stale

    def report(*_: object) -> None:
        print(json.dumps({"value": consumer.value, "version": consumer.version, "stale": consumer.stale,
                          "connected": client.connected, "last_patch": consumer.last_patch,
                          "first_change": {"stale": first.stale, "version": first.version}}), flush=True)

    initial: list[object] = []
    consumer.on_change(initial.append, initial=True)
    assert len(initial) == 1 and initial[0].stale, initial  # callbacks can get the persisted state first too
    report()
    consumer.on_change(report)
    consumer.on_status(report)
    await client.connect(wait=False)
    try:
        await asyncio.Event().wait()
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
