"""The asyncio Python client for seasync (the seapig 0.2 websocket protocol).

Use it to watch live objects, to keep an object of your own up to date on the server, or to produce
objects on demand::

    from common.client import Client

    async with Client("ws://127.0.0.1:3001", name="dashboard") as client:
        cars = client.consume("cars")                    # one object ("car-*" for a wildcard)
        await cars.wait(timeout=10)                      # until it has data
        print(cars.version, cars.value)

        # keep an object current ("mode A"): mutate its value, then bump
        status = client.master("status", value={"up": True})
        status.value["load"] = 0.3
        await status.bump()                              # uploads a patch, or the value if that is smaller

        # produce objects on demand ("mode B"): the router asks when someone consumes one
        async def make_car(object_id, version_inferred):
            return {"id": object_id}, [int(time.time() * 1000), 0]
        client.master("car-*", produce=make_car)

        async for change in cars.changes():              # every new version (coalesced if you are slow)
            print(change.version, change.value)

        # a writable collection (a Collection producer serves "todos/*"): read, write, per-item changes
        todos = client.collection("todos/list")
        todos.on_change(lambda item_id, new, old: print(item_id, new, old))   # new None: removed
        version = await todos.update(insert=[{"id": "t1", "text": "milk"}], remove=["t0"])
        # CollectionError(.code) if refused; code "outcome-unknown" if the link dropped first (never resent)

Offline: ``Client(url, name="dashboard", state_dir="/var/lib/dashboard")`` keeps the last value and version
of every consumed id and every keep-current master on disk; started while the server is down (use
``await client.connect(wait=False)``), ``consume(id)`` has the persisted data at once with ``stale`` True,
and the client catches up with a patch when the server is back; masters changed offline upload then.

The package is three layers:

- ``common/client/state.py``: ``ClientState``, the protocol state (registrations, values and versions
  held, the handshake, resync, masters), sans I/O; the JS client follows the same rules, checked by one
  shared table of scenarios (tests/fixtures/client_scenarios.json);
- ``common/client/shell.py``: the asyncio connection, the user-facing handles (``Consumer``,
  ``WildcardConsumer``, ``Master``, ``Change``, ``ChangeStream``);
- ``common/client/persist.py``: the SQLite file of ``state_dir``.

What the client does for you:

- it reconnects by itself (``reconnect_delay`` doubling up to ``max_reconnect_delay``) and, on every
  connect, sends ``client-options-set`` then re-registers every consumer with the version it holds and every
  master with its version, so the server sends only what changed while it was away;
- it applies incoming RFC 6902 patches, and never applies one whose base (``version-old``) is not the version
  it holds: it marks the object invalid and asks the server for a resync instead;
- it never lets a bad server frame, a failing callback or a failing producer function stop it: they are logged
  (logger ``seasync.client``) and, for producers, reported to the router.

Everything runs on one asyncio event loop and nothing here is thread-safe. Sync callbacks and sync producer
functions run *on* the loop: keep them short, or make them ``async`` and use ``asyncio.to_thread``.

Object values are JSON objects (``dict``). A consumer's ``value`` is updated **in place** when a patch
arrives, so a reference you kept changes with it; copy it if you need an old state.
"""

from common.client.shell import (
                                 Change,
                                 ChangeStream,
                                 Client,
                                 ClosedError,
                                 Collection,
                                 CollectionError,
                                 Consumer,
                                 Master,
                                 WildcardConsumer,
                                 next_version,
)
from common.client.state import ClientState

__all__ = ["Change", "ChangeStream", "Client", "ClientState", "ClosedError", "Collection", "CollectionError", "Consumer", "Master",
           "WildcardConsumer", "next_version"]
