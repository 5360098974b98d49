"""The asyncio shell of the Python client: the connection loop, the user-facing handles, persisted state.

The protocol decisions are ``ClientState``'s (common/client/state.py); this module turns its frames into
websocket writes and its events into callbacks, ``changes()`` items and ``wait()`` wake-ups. See the package
docstring (common/client/__init__.py) for the tour.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
import weakref
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator, Union

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from common import codec, protocol
from common.client.persist import StateFile
from common.collection import UpdateError, check_update
from common.collection import changes as item_changes
from common.client.state import ClientState, EntryState, Event, MasterState, backoff
from common.client.state import next_version as _next_version
from common.patterns import check_id, check_pattern, is_wildcard
from common.subtree import check_path
from common.versioning import Version, check_version, is_null

__all__ = ["Change", "ChangeStream", "Client", "ClosedError", "Collection", "CollectionError", "Consumer", "Master", "WildcardConsumer", "next_version"]

log = logging.getLogger("seasync.client")

Callback = Callable[[Any], Union[None, Awaitable[None]]]
"""A user callback: a plain function or an ``async def``; its return value is ignored."""

ProduceFn = Callable[[str, Version], Any]
"""``fn(object_id, version_inferred) -> (data, version)``, sync or async. See ``Client.master``."""

# Past this many frames waiting to be written, bump() waits for the socket to catch up.
_SEND_HIGH_WATER = 256
# A connection that stayed open this long (seconds) resets the reconnect backoff (the JS client too).
STABLE_CONNECTION = 10.0
# Persisted state is written at most this often (seconds): one transaction for every change meanwhile.
_STATE_BATCH = 0.1


class ClosedError(RuntimeError):
    """The client was closed, or the consumer was unconsumed, while you were waiting on it."""


@dataclass(frozen=True, slots=True)
class Change:
    """One change of an object, as given to ``on_change`` callbacks and yielded by ``changes()``.

    ``value`` is the consumer's live dict (it keeps changing with later patches); ``patch`` is the RFC 6902
    patch that produced this change, or ``None`` when a full value arrived or several changes were coalesced
    into one (``coalesced`` says how many). ``destroyed`` is True when the object went away (``value`` is then
    None): a wildcard consumer lost this child, or an exact consumer was unconsumed. ``stale`` is True for
    data the server has not confirmed since the link came up (persisted, or held from before a drop).
    """

    id: str
    value: dict | None
    version: Version
    patch: list | None = None
    destroyed: bool = False
    coalesced: int = 1
    stale: bool = False


class _Callbacks:
    """Registered user callbacks; ``add`` returns a function that removes the callback again."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[Callback] = []

    def add(self, callback: Callback) -> Callable[[], None]:
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        self._items.append(callback)

        def remove() -> None:
            try:
                self._items.remove(callback)
            except ValueError:
                pass

        return remove

    def fire(self, client: Client, arg: Any) -> None:
        for callback in tuple(self._items):
            client._call(callback, arg)


class ChangeStream:
    """The async iterator returned by ``changes()``; it records changes from the moment it is created.

    Coalescing: an id that changes again before the reader takes it keeps its place in line and counts
    one more change; the reader then gets only the latest state (``Change.coalesced`` > 1). So a slow
    reader never makes memory grow, and never sees a state older than the current one. Call ``aclose()``
    (or let it be garbage-collected) when you stop reading early.
    """

    __slots__ = ("_pending", "_event", "_closed", "_make", "_owners", "__weakref__")

    def __init__(self, owners: weakref.WeakSet, make: Callable[[str, int, list | None, bool], Change]) -> None:
        self._pending: dict[str, list] = {}  # id -> [count, last patch, destroyed]
        self._event = asyncio.Event()
        self._closed = False
        self._make = make
        self._owners = owners
        owners.add(self)

    def __aiter__(self) -> ChangeStream:
        return self

    async def __anext__(self) -> Change:
        while not self._pending:
            if self._closed:
                self._owners.discard(self)
                raise StopAsyncIteration
            self._event.clear()
            await self._event.wait()
        object_id = next(iter(self._pending))
        count, patch, destroyed = self._pending.pop(object_id)
        return self._make(object_id, count, patch, destroyed)

    async def aclose(self) -> None:
        """Stop recording; a pending or later ``__anext__`` ends the iteration."""
        self._pending.clear()
        self.close()

    def push(self, object_id: str, patch: list | None, destroyed: bool = False) -> None:
        """Record one change of ``object_id`` (coalesced with any unread one of the same id)."""
        if self._closed:
            return
        entry = self._pending.get(object_id)
        if entry is None:
            self._pending[object_id] = [1, patch, destroyed]
        else:
            entry[0] += 1
            entry[1] = patch
            entry[2] = destroyed
        self._event.set()

    def close(self) -> None:
        """End after what is pending has been read."""
        self._closed = True
        self._event.set()


async def _wait_until(wakers: set[Callable[[], None]], check: Callable[[], Any],
                      timeout: float | None, describe: Callable[[], str]) -> Any:
    """Re-run ``check`` on every wake-up until it returns something other than None."""
    event = asyncio.Event()
    waker = event.set
    wakers.add(waker)
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = check()
                if result is not None:
                    return result
                event.clear()
                await event.wait()
    except TimeoutError:
        raise TimeoutError(f"timed out after {timeout} s waiting for {describe()}") from None
    finally:
        wakers.discard(waker)


class Consumer:
    """One object id as this client sees it: made by ``client.consume("id")``, or a wildcard's child.

    Attributes (read them, do not assign):

    - ``id``: the object id;
    - ``value``: the latest data (a dict), or None before any data arrived;
    - ``version``: the version of ``value`` (None before data);
    - ``valid``: True while connected and holding data the server considers current; False while
      disconnected, before the first data, or while resynchronising after a lost update;
    - ``stale``: True while the data held (from before a disconnection, or from ``state_dir``) has not been
      confirmed or updated by the server since the link came up; False without data;
    - ``error``: the last production error the server reported for this id (None; cleared by the next update);
    - ``destroyed``: True once unconsumed, or dropped by the server (wildcard children);
    - ``received_at``: ``time.time()`` of the last update, or None;
    - ``last_patch``: the patch of the last update, or None if it was a full value.

    The same ``Consumer`` object is shared by an exact subscription and any wildcard of this client covering
    the id, because the server sends each id to a connection once.
    """

    def __init__(self, client: Client, state: EntryState) -> None:
        self._client = client
        self._state = state
        self.id = state.id
        self.destroyed = False
        self.received_at: float | None = None
        self._parents: list[WildcardConsumer] = []
        self._on_change = _Callbacks()
        self._on_status = _Callbacks()
        self._streams: weakref.WeakSet[ChangeStream] = weakref.WeakSet()
        self._wakers: set[Callable[[], None]] = set()
        self._seen: tuple[bool, bool, str | None, bool] = (False, False, None, False)  # last reported

    def __repr__(self) -> str:
        state = "destroyed" if self.destroyed else "valid" if self.valid else "invalid"
        return f"<Consumer {self.id!r} version={self.version!r} {state}{' stale' if self.stale else ''}>"

    @property
    def value(self) -> Any:
        """The latest data, updated in place by patches (with ``path=``: the subtree, any JSON)."""
        state = self._state
        if state.path is not None:
            return state.value["value"] if state.value is not None else None
        return state.value

    @property
    def version(self) -> Version:
        """The version of ``value``."""
        return self._state.version

    @property
    def last_patch(self) -> list | None:
        """The patch of the last update, or None if it was a full value."""
        return self._state.last_patch

    @property
    def error(self) -> str | None:
        """The last production error the server reported for this id; cleared by the next update."""
        return self._state.error

    @property
    def valid(self) -> bool:
        """True while connected and holding data the server considers current."""
        return not self.destroyed and self._client._state.valid(self.id) and \
            self._client._state.entries.get(self.id) is self._state

    @property
    def stale(self) -> bool:
        """True while the data held is not confirmed by the server since the link came up (see the class)."""
        return not self.destroyed and self._state.value is not None and \
            not (self._client._state.connected and self._state.confirmed)

    def on_change(self, callback: Callback, *, initial: bool = False) -> Callable[[], None]:
        """Call ``callback(change: Change)`` on every new version (and on destroy). Returns an unsubscribe function.

        Sync callbacks run immediately, in order, as each frame is handled; async ones are started as tasks
        (by then ``change.value`` may already hold later data). Exceptions are logged, never raised.
        With ``initial``, the callback first gets the data held now, if any (e.g. persisted, ``change.stale``).
        """
        remove = self._on_change.add(callback)
        if initial and self.value is not None and not self.destroyed:
            self._client._call(callback, Change(self.id, self.value, self.version, None, False, 1, self.stale))
        return remove

    def on_status(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(consumer)`` whenever ``valid``, ``stale``, ``error`` or ``destroyed`` changes.

        Returns an unsubscribe function.
        """
        return self._on_status.add(callback)

    def changes(self, *, initial: bool = True) -> ChangeStream:
        """Iterate over changes: ``async for change in consumer.changes(): ...``.

        Changes are recorded from this call on. With ``initial`` (the default) the current state comes first
        if there is data (``change.stale`` says if it is persisted or pre-disconnection data not confirmed
        yet). A slow reader does not queue every version: when several changes happen before it asks for the
        next one, it gets a single ``Change`` with the latest state (``coalesced`` > 1, ``patch`` None).
        Validity changes are not yielded (use ``on_status``). The iteration ends after a ``destroyed``
        change, or when the client is closed.
        """

        def make(object_id: str, count: int, patch: list | None, destroyed: bool) -> Change:
            if destroyed:
                stream.close()
                return Change(self.id, None, self.version, None, True, count)
            return Change(self.id, self.value, self.version, patch if count == 1 else None, False, count, self.stale)

        stream = ChangeStream(self._streams, make)
        if self.destroyed or self._client.closed:
            stream.close()
        elif initial and self.value is not None:
            stream.push(self.id, None)
        return stream

    async def wait(self, predicate: Callable[[dict], Any] | None = None, timeout: float | None = None) -> Any:
        """Wait until the consumer is valid and ``predicate(value)`` is true (just valid if no predicate).

        Returns the value (with ``path=``: the subtree, which may be None when absent). Raises
        ``TimeoutError`` (saying the state it last saw) after ``timeout`` seconds, or ``ClosedError`` if
        the consumer is unconsumed or the client closed meanwhile. Handy in tests::

            await cars.wait(lambda v: len(v["list"]) == 3, timeout=10)
        """

        def check() -> tuple[Any] | None:  # in a tuple: a path consumer's subtree may be None, and is data
            if self.destroyed or self._client.closed:
                raise ClosedError(f"consumer {self.id!r} was closed while waiting")
            held = self._state.value is not None  # (with path=, the box holding the subtree)
            if self.valid and held and (predicate is None or predicate(self.value)):
                return (self.value,)
            return None

        def describe() -> str:
            what = "valid data" if predicate is None else "the predicate"
            return f"{what} on {self.id!r} (last: valid={self.valid}, version={self.version!r}, value={self.value!r:.200})"

        return (await _wait_until(self._wakers, check, timeout, describe))[0]

    # ---- driven by the client -------------------------------------------------------------------

    def _wake(self) -> None:
        for waker in tuple(self._wakers):
            waker()
        for parent in self._parents:
            parent._wake()

    def _status(self) -> None:
        """Fire ``on_status`` if anything it reports changed."""
        seen = (self.valid, self.stale, self.error, self.destroyed)
        if seen != self._seen:
            self._seen = seen
            self._on_status.fire(self._client, self)
        self._wake()

    def _changed(self, patch: list | None) -> None:
        """New data arrived (already applied in the state): tell everyone."""
        self.received_at = time.time()
        self._status()
        change = Change(self.id, self.value, self.version, patch)
        self._on_change.fire(self._client, change)
        for stream in tuple(self._streams):
            stream.push(self.id, patch)
        for parent in tuple(self._parents):
            parent._child_changed(change)
        self._wake()

    def _destroy(self) -> None:
        """Dropped for good (unconsumed, or a wildcard child the server destroyed)."""
        if self.destroyed:
            return
        self.destroyed = True
        change = Change(self.id, None, self.version, None, True)
        self._on_change.fire(self._client, change)
        self._status()
        for stream in tuple(self._streams):
            stream.push(self.id, None, destroyed=True)
            stream.close()
        self._wake()

    def _close_streams(self) -> None:
        for stream in tuple(self._streams):
            stream.close()
        self._wake()


class WildcardConsumer:
    """All objects whose id matches a ``*`` pattern: made by ``client.consume("car-*")``.

    ``children`` maps each id the server sent to its ``Consumer``; a child is added when its first data
    arrives and removed when the server destroys the object. The wildcard itself is ``valid`` while the
    client is connected. It behaves like a read-only mapping of ids to children (``wc["car-1"]``,
    ``"car-1" in wc``, ``len(wc)``, iteration over ids).

    After a reconnect the server sends every matching object again; a child that vanished while the
    client was away is not announced by the protocol, so it stays in ``children`` with ``valid`` False.
    """

    def __init__(self, client: Client, pattern: str) -> None:
        self._client = client
        self.pattern = pattern
        self.children: dict[str, Consumer] = {}
        self.destroyed = False
        self._on_change = _Callbacks()
        self._on_status = _Callbacks()
        self._streams: weakref.WeakSet[ChangeStream] = weakref.WeakSet()
        self._wakers: set[Callable[[], None]] = set()

    def __repr__(self) -> str:
        return f"<WildcardConsumer {self.pattern!r} children={len(self.children)}>"

    def __getitem__(self, object_id: str) -> Consumer:
        return self.children[object_id]

    def __contains__(self, object_id: object) -> bool:
        return object_id in self.children

    def __iter__(self) -> Iterator[str]:
        return iter(self.children)

    def __len__(self) -> int:
        return len(self.children)

    @property
    def valid(self) -> bool:
        """True while the client is connected (the subscription is live)."""
        return self._client.connected and not self.destroyed

    @property
    def data(self) -> dict[str, dict]:
        """``{id: value}`` for every child that is currently valid."""
        return {oid: child.value for oid, child in self.children.items() if child.valid and child.value is not None}

    def on_change(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(change: Change)`` when any child changes or is destroyed (``change.destroyed``).

        Same rules as ``Consumer.on_change``. Returns an unsubscribe function.
        """
        return self._on_change.add(callback)

    def on_status(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(wildcard_consumer)`` when the wildcard's own ``valid`` changes (connect/disconnect)."""
        return self._on_status.add(callback)

    def changes(self, *, initial: bool = True) -> ChangeStream:
        """Iterate over child changes, coalesced per id for slow readers (see ``Consumer.changes``).

        With ``initial``, every child that has data comes first. A destroyed child yields a ``Change`` with
        ``destroyed=True``; if it reappears before you read it, you see only its new state. The iteration ends
        when the wildcard is unconsumed or the client closed.
        """

        def make(object_id: str, count: int, patch: list | None, destroyed: bool) -> Change:
            child = self.children.get(object_id)
            if child is None:
                return Change(object_id, None, None, None, True, count)
            return Change(object_id, child.value, child.version,
                          patch if count == 1 and not destroyed else None, False, count, child.stale)

        stream = ChangeStream(self._streams, make)
        if self.destroyed or self._client.closed:
            stream.close()
        elif initial:
            for object_id, child in self.children.items():
                if child.value is not None:
                    stream.push(object_id, None)
        return stream

    async def wait(self, predicate: Callable[[dict[str, dict]], Any] | None = None,
                   timeout: float | None = None) -> dict[str, dict]:
        """Wait until ``predicate(data)`` is true, where ``data`` is ``{id: value}`` of the valid children.

        Without a predicate, waits for at least one valid child. Returns ``data``. Raises ``TimeoutError``
        or ``ClosedError`` like ``Consumer.wait``::

            await cars.wait(lambda d: {"car-1", "car-2"} <= d.keys(), timeout=10)
        """

        def check() -> dict | None:
            if self.destroyed or self._client.closed:
                raise ClosedError(f"wildcard consumer {self.pattern!r} was closed while waiting")
            data = self.data
            if (predicate is None and data) or (predicate is not None and predicate(data)):
                return data
            return None

        def describe() -> str:
            return f"children of {self.pattern!r} (last: {self.data!r:.300})"

        return await _wait_until(self._wakers, check, timeout, describe)

    # ---- driven by the client -------------------------------------------------------------------

    def _wake(self) -> None:
        for waker in tuple(self._wakers):
            waker()

    def _adopt(self, child: Consumer) -> None:
        if child.id not in self.children:
            self.children[child.id] = child
            child._parents.append(self)

    def _child_changed(self, change: Change) -> None:
        self._on_change.fire(self._client, change)
        for stream in tuple(self._streams):
            stream.push(change.id, change.patch)
        self._wake()

    def _drop(self, child: Consumer) -> None:
        """The server destroyed this child (or the wildcard is going away)."""
        if self.children.pop(child.id, None) is None:
            return
        if self in child._parents:
            child._parents.remove(self)
        self._on_change.fire(self._client, Change(child.id, None, child.version, None, True))
        for stream in tuple(self._streams):
            stream.push(child.id, None, destroyed=True)
        self._wake()

    def _status_changed(self) -> None:
        self._on_status.fire(self._client, self)
        self._wake()

    def _close(self) -> None:
        self.destroyed = True
        for stream in tuple(self._streams):
            stream.close()
        self._wake()


def next_version(version: Version) -> Version:
    """The version after ``version`` for ``Master.bump``: ``[ms, n]`` -> ``[now_ms, 0]`` if the clock moved
    past ``ms``, else ``[ms, n + 1]``; other lists get their last element incremented; ``n`` -> ``n + 1``.

    The clock makes a change made offline newer than uploads other masters made before it (the newer
    version wins on reconnect). Hash (dependency) versions and None have no successor: pass an explicit
    version to ``bump`` for those.
    """
    return _next_version(version, int(time.time() * 1000))


def _default_version() -> list[int]:
    return [int(time.time() * 1000), 0]


class Master:
    """An object this client provides to the server: made by ``client.master(...)``.

    Two modes (do not mix them):

    - **keep current** (``value=`` given, exact id only): ``value`` is yours to mutate; ``await bump()`` makes
      a new version and uploads it as a patch against the last uploaded value when that is smaller, else
      as the full value. When the server asks for the object (a consumer appeared, or after a reconnect) the
      client uploads the last bumped value by itself. Edits not yet bumped are never sent. A bump made while
      disconnected is kept (and persisted with ``state_dir``) and uploaded on reconnect; if the server moved
      on meanwhile, the newer version wins (state, not an operation log).
    - **produce on demand** (``produce=`` given, exact id or wildcard): the server sends a production order when
      someone wants an object; the client calls ``produce(object_id, version_inferred)`` and uploads the
      ``(data, version)`` it returns. ``data`` is a dict, ``False`` for a stall (the version exists but has
      no data yet), ``True`` (the version exists, data unknown) or ``None`` to decline (the server gives the
      order to another producer). If the function raises, the router is told (an ``error`` field) and the
      client carries on.

    Attributes: ``pattern``, ``value`` and ``version`` (keep-current mode), ``pending`` (a bump not uploaded
    yet), ``last_upload`` (``"patch"``, ``"value"`` or None: how the last bump or answer went out),
    ``versions`` (produce mode: last version produced per id, forgotten when the server destroys the
    object), ``closed``.
    """

    def __init__(self, client: Client, state: MasterState, value: dict | None,
                 produce: ProduceFn | None) -> None:
        self._client = client
        self._state = state
        self.pattern = state.pattern
        self.produce = produce
        self.value = value

    def __repr__(self) -> str:
        mode = "produce" if self.produce else f"version={self.version!r}"
        return f"<Master {self.pattern!r} {mode}>"

    @property
    def id(self) -> str:
        """The object id (same as ``pattern`` for an exact master)."""
        return self.pattern

    @property
    def version(self) -> Version:
        """The version of the last bump (keep-current mode)."""
        return self._state.version

    @property
    def versions(self) -> dict[str, Version]:
        """Produce mode: the last version produced per id."""
        return self._state.versions

    @property
    def last_upload(self) -> str | None:
        """``"patch"`` or ``"value"``: how the last bump or answer went out; None before any."""
        return self._state.last_upload

    @property
    def pending(self) -> bool:
        """True while a bump made offline waits to be uploaded."""
        return self._state.pending

    @property
    def closed(self) -> bool:
        """True once unmastered."""
        return self._state.closed

    async def bump(self, version: Version = None) -> Version:
        """Make a new version of ``value`` and upload it; returns the new version.

        The new version is ``version`` if given, else the next one after the current (see ``next_version``).
        While disconnected the change is kept (``pending``) and uploaded on reconnect; while nobody consumes
        the object nothing is sent (the server asks for the value when it needs it). Raises ``TypeError`` if
        ``value`` is not JSON-serialisable.
        """
        self._check_keep_current()
        new_version = check_version(version) if version is not None else next_version(self.version)
        if is_null(new_version):
            raise ValueError("a master's version cannot be 0 or None")
        if not isinstance(self.value, dict):
            raise TypeError(f"a master's value must be a dict, not {type(self.value).__name__}")
        client = self._client
        frames = client._state.bump(self.pattern, self.value, new_version)
        client._persist_master(self)
        for frame in frames:
            client._send(frame)
        if frames:
            await client._backpressure()
        return new_version

    async def set(self, value: dict, version: Version = None) -> Version:
        """Replace ``value`` and ``bump()``; returns the new version."""
        self._check_keep_current()
        if not isinstance(value, dict):
            raise TypeError(f"value must be a dict, not {type(value).__name__}")
        self.value = value
        return await self.bump(version)

    def _check_keep_current(self) -> None:
        if self.produce is not None:
            raise RuntimeError(f"master {self.pattern!r} produces on demand; bump()/set() are for value= masters")


class CollectionError(RuntimeError):
    """A collection update that did not apply, or whose outcome is unknown; ``code`` says which.

    ``code`` is the server's stable error code (docs/PROTOCOL.md §14: ``no-collection``, ``invalid-item``,
    ``collection-full``, ``forbidden``...), or ``outcome-unknown`` when the connection dropped (or the
    ``timeout`` passed) after the update was sent and before its answer: it may or may not have applied, and
    the client never resends it (read the collection to find out).
    """

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


CollectionCallback = Callable[[str, Union[dict, None], Union[dict, None]], Union[None, Awaitable[None]]]
"""``callback(item_id, new, old)``: ``new`` None = removed, ``old`` None = inserted, both = replaced."""


class Collection:
    """A writable collection (issue 15), made by ``client.collection(id)``: a consumer of the object plus writes.

    The value of a collection is ``{item_id: item}``, every item a dict with a string ``"id"``. Reading
    (``get``, ``has``, ``items``, ``len``, ``in``, iteration over ids) is the data held, as any consumer's;
    ``update()`` writes and returns the version that includes the write, which the data held reaches soon
    after (every writer and watcher gets the same sequence of versions).
    """

    def __init__(self, client: Client, consumer: Consumer) -> None:
        self._client = client
        self.consumer = consumer
        self.id = consumer.id
        self._callbacks: list[CollectionCallback] = []
        self._seen: dict[str, Any] = _copy_items(consumer.value)  # the items as last reported to on_change
        consumer.on_change(self._consumer_changed)

    def __repr__(self) -> str:
        return f"<Collection {self.id!r} items={len(self)} version={self.version!r}>"

    @property
    def version(self) -> Version:
        """The version of the data held (None before data)."""
        return self.consumer.version

    @property
    def valid(self) -> bool:
        return self.consumer.valid

    def _items(self) -> dict[str, Any]:
        value = self.consumer.value
        return value if isinstance(value, dict) else {}

    def get(self, item_id: str, default: Any = None) -> dict | None:
        """The item with this id, or ``default``."""
        return self._items().get(item_id, default)

    def has(self, item_id: str) -> bool:
        return item_id in self._items()

    def items(self) -> list[dict]:
        """The items held (a list of dicts, in the collection's order)."""
        return list(self._items().values())

    def ids(self) -> list[str]:
        return list(self._items())

    def __len__(self) -> int:
        return len(self._items())

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items()))

    async def wait(self, predicate: Callable[[dict], Any] | None = None, timeout: float | None = None) -> dict:
        """``Consumer.wait`` on the collection's value (``{item_id: item}``)."""
        return await self.consumer.wait(predicate, timeout)

    def on_change(self, callback: CollectionCallback) -> Callable[[], None]:
        """Call ``callback(item_id, new, old)`` for every item that changed with each new version of the
        collection (``common.collection.changes`` between the value before and after): removals first, then
        inserts and replacements. Sync callbacks run at once, async ones become tasks; failures are logged.
        Returns an unsubscribe function."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        self._callbacks.append(callback)

        def remove() -> None:
            try:
                self._callbacks.remove(callback)
            except ValueError:
                pass

        return remove

    async def update(self, insert: list[dict] | None = None, remove: list[str] | None = None, reset: bool = False,
                     timeout: float | None = 30.0) -> Version:
        """Write to the collection: ``remove`` (ids) first, then ``insert`` (items; one with an id held replaces
        it); ``reset`` clears the collection first (``remove`` is then ignored). All of it applies or nothing.

        Returns the version of the collection that first includes the write. Raises ``CollectionError``
        (``code``) when the server refuses it (nothing applied), or ``CollectionError(code="outcome-unknown")``
        when the connection drops (or ``timeout`` passes) after it was sent: it is never resent. While
        disconnected, waits for the connection up to ``timeout`` (then ``TimeoutError``: nothing was sent).
        """
        client = self._client
        if client.closed:
            raise ClosedError("this client was closed")
        try:
            check_update(insert, remove, reset)
        except UpdateError as exc:
            raise CollectionError(str(exc), exc.code) from None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not client.connected:
            if client.closed:
                raise ClosedError("this client was closed while the update waited for a connection")
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"not connected within {timeout} s: the update of {self.id!r} was not sent")
            try:  # woken at least every second to notice close()
                await client.wait_connected(1.0 if remaining is None else min(remaining, 1.0))
            except TimeoutError:
                pass
        if client.closed:
            raise ClosedError("this client was closed")
        ref, frame = client._state.collection_update(self.id, insert, remove, reset)
        future: asyncio.Future = loop.create_future()
        client._writes[ref] = future
        client._send(frame)
        try:
            remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
            async with asyncio.timeout(remaining):
                return await asyncio.shield(future)
        except TimeoutError:
            if future.done() and not future.cancelled():
                return future.result()
            raise CollectionError(f"no answer to the update of {self.id!r} within {timeout} s: it may or may not "
                                  "have applied", "outcome-unknown") from None
        finally:
            client._writes.pop(ref, None)
            client._state.forget_write(ref)

    def _consumer_changed(self, change: Change) -> None:
        if change.destroyed:
            return
        new = _copy_items(change.value)
        old, self._seen = self._seen, new
        if not self._callbacks:
            return
        for item in item_changes(old, new):
            for callback in tuple(self._callbacks):
                self._client._call(_spread(callback), tuple(item))


def _spread(callback: CollectionCallback) -> Callback:
    def call(args: Any) -> Any:
        return callback(*args)
    return call


def _copy_items(value: dict | None) -> dict[str, Any]:
    """A deep copy (the consumer's value changes in place with later patches)."""
    return codec.loads(codec.dumps(value)) if isinstance(value, dict) else {}


class _Link:
    """One open websocket: the ordered queue of frames to write and the task writing them."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.writer = asyncio.create_task(self._write(), name="seasync-client-writer")

    async def _write(self) -> None:
        try:
            while True:
                frame = await self.queue.get()
                try:
                    await self.ws.send(frame, text=True)
                finally:
                    self.queue.task_done()
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("writing to the websocket failed; closing it")
            await self.ws.close()
        finally:
            self.closed.set()

    async def flush(self, timeout: float | None) -> None:
        """Wait until every queued frame was handed to the socket, the link closed, or ``timeout``."""
        join = asyncio.ensure_future(self.queue.join())
        closed = asyncio.ensure_future(self.closed.wait())
        try:
            await asyncio.wait((join, closed), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            join.cancel()
            closed.cancel()

    async def stop(self) -> None:
        self.writer.cancel()
        try:
            await self.writer
        except asyncio.CancelledError:
            pass


class Client:
    """One connection to a seasync front (or a seapig server), with reconnection and resync built in.

    ``Client(url, name="python", options=None, reconnect_delay=1.0, *, state_dir=None)``: ``name`` and
    ``options`` go to the server in ``client-options-set`` (``name`` shows in introspection as ``name:N``);
    ``reconnect_delay`` is the first wait before reconnecting, doubled after each failed attempt up to
    ``max_reconnect_delay``.

    ``state_dir``: a directory where the client keeps, in ``<name>.sqlite3``, the last value and version of
    every id it consumes and the latest value and version of every keep-current master (with its bumps not
    uploaded yet). A client started while the server is down then has its consumers' data at once
    (``stale`` True), registers with the versions held so the server sends only a patch, and uploads the
    masters' offline changes on reconnect. Writes are batched in a thread; a corrupt or unreadable file is a
    warning and an empty start.

    Create consumers and masters before or after ``connect()``; they are (re)registered on every connect.
    Use ``async with Client(url) as client:`` or ``await client.connect()`` ... ``await client.close()``.
    """

    def __init__(self, url: str, name: str = "python", options: dict | None = None,
                 reconnect_delay: float = 1.0, *, max_reconnect_delay: float = 5.0,
                 open_timeout: float = 10.0, close_timeout: float = 5.0,
                 state_dir: str | os.PathLike[str] | None = None) -> None:
        if reconnect_delay <= 0:
            raise ValueError("reconnect_delay must be positive")
        self.url = url
        self.name = name
        self.options = dict(options or {})
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max(max_reconnect_delay, reconnect_delay)
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.connections = 0  # how many times a connection opened (1 after the first connect)
        self._state = ClientState(name, self.options)
        self._entries: dict[str, Consumer] = {}
        self._wildcards: dict[str, WildcardConsumer] = {}
        self._masters: dict[str, Master] = {}
        self._collections: dict[str, Collection] = {}
        self._writes: dict[int, asyncio.Future] = {}  # ref -> the future of a collection update in flight
        self._link: _Link | None = None
        self._run_task: asyncio.Task | None = None
        self._first_open: asyncio.Future | None = None
        self._connected_event: asyncio.Event | None = None
        self._closed = False
        self._tasks: set[asyncio.Task] = set()  # user async callbacks
        self._productions: set[asyncio.Task] = set()
        self._on_error = _Callbacks()
        self._on_connection = _Callbacks()
        # persisted state: loaded once; changes are batched and written by a thread
        self._file: StateFile | None = None
        self._saved_consumers: dict[str, tuple[Version, dict]] = {}
        self._saved_masters: dict[str, tuple[Version, dict, bool]] = {}
        self._dirty: dict[tuple[str, str], Any] = {}
        self._writer: asyncio.Task | None = None
        self._dirty_event: asyncio.Event | None = None
        if state_dir is not None:
            self._file = StateFile.open(os.fspath(state_dir), name)
            if self._file is not None:
                self._saved_consumers, self._saved_masters = self._file.load()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self.connected else "disconnected"
        return f"<Client {self.url} {state} consumers={len(self._entries) + len(self._wildcards)} masters={len(self._masters)}>"

    # ---- connection -------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a websocket is open."""
        return self._link is not None

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    async def connect(self, *, wait: bool = True) -> None:
        """Start the connection loop.

        With ``wait`` (the default), return once connected, or raise the first attempt's error (``OSError``,
        ``websockets.exceptions.InvalidHandshake``, ``TimeoutError``...) without retrying, so a wrong URL
        fails fast. With ``wait=False``, return at once and keep trying in the background (the way to start
        offline with ``state_dir``). After the first successful connection the client always reconnects.
        """
        if self._closed:
            raise ClosedError("this client was closed; make a new one")
        if self._run_task is not None:
            raise RuntimeError("connect() was already called")
        loop = asyncio.get_running_loop()
        self._connected_event = asyncio.Event()
        self._first_open = loop.create_future()
        self._run_task = loop.create_task(self._run(fail_fast=wait), name=f"seasync-client {self.url}")
        if wait:
            try:
                await asyncio.shield(self._first_open)
            except BaseException:
                if not self._first_open.done() or self._first_open.exception() is not None:
                    self._run_task.cancel()
                    self._run_task = None
                raise

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until a connection is open (after ``connect(wait=False)`` or a drop); ``TimeoutError`` if not."""
        if self._connected_event is None:
            raise RuntimeError("call connect() first")
        async with asyncio.timeout(timeout):
            await self._connected_event.wait()

    async def close(self) -> None:
        """Flush what is queued, close the connection and stop reconnecting. Safe to call twice.

        Consumers become invalid, their ``changes()`` iterators end and pending ``wait()`` calls raise
        ``ClosedError``. With ``state_dir``, the last state is written before this returns.
        """
        if self._closed:
            return
        self._closed = True
        link = self._link
        if link is not None:
            await link.flush(self.close_timeout)
            try:
                await link.ws.close()
            except Exception:
                log.debug("closing the websocket failed", exc_info=True)
        task, self._run_task = self._run_task, None
        if task is not None:
            # Let a live session end by itself (it fires the disconnect callbacks); a sleeping retry is cancelled.
            done, _ = await asyncio.wait((task,), timeout=self.close_timeout if link is not None else 0)
            if done and not task.cancelled() and task.exception() is not None:
                log.error("the connection loop failed", exc_info=task.exception())
            if not done:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        for production in tuple(self._productions):
            production.cancel()
        for entry in tuple(self._entries.values()):
            entry._status()
            entry._close_streams()
        for wildcard in tuple(self._wildcards.values()):
            wildcard._close()
        if self._first_open is not None and not self._first_open.done():
            self._first_open.set_exception(ClosedError("client closed before it connected"))
            self._first_open.exception()  # retrieved: no "never retrieved" warning
        for pending in tuple(self._tasks):
            pending.cancel()
        await self._close_file()

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    def on_error(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(frame: dict)`` for every ``error`` frame from the server (they are also logged).

        An error frame looks like ``{"action": "error", "code": "<stable code>", "message": "...",
        "id"/"pattern"/"request": ...}`` (the codes: docs/PROTOCOL.md §14).
        Returns an unsubscribe function.
        """
        return self._on_error.add(callback)

    def on_connection(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(connected: bool)`` whenever the connection opens or drops. Returns an unsubscribe function."""
        return self._on_connection.add(callback)

    # ---- consumers -------------------------------------------------------------------------------

    def consume(self, pattern: str, *, value: dict | None = None, version: Version = None,
                path: str | None = None) -> Consumer | WildcardConsumer:
        """Subscribe to an object id (returns a ``Consumer``) or a ``*`` pattern (returns a ``WildcardConsumer``).

        Pre-seed an exact consumer with ``value`` and ``version`` (both or neither), e.g. the state a page was
        rendered with: the server then sends nothing if that version is still current, or just a patch.
        With ``state_dir``, an id consumed before starts with the value persisted (``stale`` until confirmed).
        Consuming the same pattern twice returns the same object. Works before ``connect()`` too.

        ``path`` (a JSON Pointer such as ``"/rows/17"``, exact ids only): watch only that subtree; the
        consumer's ``value`` is then the subtree (any JSON, None while absent) and updates come only when
        something under it changes. Not pre-seeded nor persisted.
        """
        check_pattern(pattern)
        held = self._state.entries.get(pattern)
        if path is None and held is not None and held.exact and held.path is not None:
            raise ValueError(f"{pattern!r} is consumed with path={held.path!r}: unconsume it first")
        if path is not None:
            path = check_path(path)
            if is_wildcard(pattern):
                raise ValueError("path= needs an exact id, not a pattern with '*'")
            if value is not None or version is not None:
                raise ValueError("a consumer with path= cannot be pre-seeded")
            held = self._state.entries.get(pattern)
            if held is not None and held.exact and held.path != path:
                raise ValueError(f"{pattern!r} is consumed already with path={held.path!r}: unconsume it first")
        if self._closed:
            raise ClosedError("this client was closed")
        if is_wildcard(pattern):
            if value is not None or version is not None:
                raise ValueError("a wildcard consumer cannot be pre-seeded")
            wildcard = self._wildcards.get(pattern)
            if wildcard is None:
                wildcard = self._wildcards[pattern] = WildcardConsumer(self, pattern)
                self._apply(*self._state.consume(pattern))
            return wildcard
        if (value is None) != is_null(version):
            raise ValueError("pre-seed a consumer with both value= and version=, or neither")
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"value must be a dict, not {type(value).__name__}")
        if value is not None:
            version = check_version(version)
        elif path is None and pattern in self._saved_consumers and pattern not in self._state.entries:
            version, value = self._saved_consumers[pattern]
        frames, events = self._state.consume(pattern, value, version, path)
        entry = self._handle(pattern)
        self._apply(frames, events)
        self._persist_consumer(pattern)
        return entry

    async def unconsume(self, consumer: Consumer | WildcardConsumer | str) -> None:
        """Stop consuming (sends ``object-consumer-unregister``); accepts the consumer or its pattern.

        The consumer becomes ``destroyed``, its iterators end (and its persisted state is dropped). If a
        wildcard of this client still covers an unconsumed id, that ``Consumer`` lives on as the wildcard's child.
        """
        pattern = consumer if isinstance(consumer, str) else \
            consumer.pattern if isinstance(consumer, WildcardConsumer) else consumer.id
        if is_wildcard(pattern):
            wildcard = self._wildcards.pop(pattern, None)
            if wildcard is None:
                return
            frames, events = self._state.unconsume(pattern)
            for child in tuple(wildcard.children.values()):
                wildcard.children.pop(child.id, None)
                if wildcard in child._parents:
                    child._parents.remove(wildcard)
            self._apply(frames, events)
            wildcard._close()
        else:
            was_exact = pattern in self._state.entries and self._state.entries[pattern].exact
            self._apply(*self._state.unconsume(pattern))
            if was_exact:
                self._mark_dirty(("consumer", pattern), None)
        await self._flush()

    def _handle(self, object_id: str) -> Consumer:
        """The handle of a held id (made on first sight)."""
        entry = self._entries.get(object_id)
        state = self._state.entries[object_id]
        if entry is None or entry._state is not state:
            entry = self._entries[object_id] = Consumer(self, state)
        return entry

    # ---- collections -----------------------------------------------------------------------------

    def collection(self, collection_id: str) -> Collection:
        """A writable collection (consumes the id): read it, ``await update(...)`` it, ``on_change`` per item.

        Asking again returns the same object (sharing the consumer of ``consume(collection_id)``)."""
        check_id(collection_id)
        existing = self._collections.get(collection_id)
        if existing is not None and not existing.consumer.destroyed:
            return existing
        consumer = self.consume(collection_id)
        assert isinstance(consumer, Consumer)
        found = self._collections[collection_id] = Collection(self, consumer)
        return found

    # ---- masters ---------------------------------------------------------------------------------

    def master(self, pattern: str, value: dict | None = None, version: Version = None, *,
               produce: ProduceFn | None = None) -> Master:
        """Offer to provide an object: keep-current mode with ``value=``, produce-on-demand with ``produce=``.

        Keep-current (exact id only): ``version`` defaults to ``[now_ms, 0]``; the master registers with that
        version, so the server knows the object exists and asks for it when someone consumes it. With
        ``state_dir``, a master of this id persisted before and given no explicit ``version`` starts from its
        persisted value and version (the ``value`` given is then ignored), with its offline changes still to upload.

        Produce-on-demand (exact id or wildcard): ``produce(object_id, version_inferred)`` (sync or async)
        returns ``(data, version)``; see ``Master``. ``version_inferred`` is None, or the version the server
        wants reached (e.g. a dependency hash whose entries moved).

        One master per pattern: asking again returns the existing one (the arguments are then ignored).
        """
        check_pattern(pattern)
        if self._closed:
            raise ClosedError("this client was closed")
        existing = self._masters.get(pattern)
        if existing is not None:
            return existing
        if produce is not None:
            if value is not None or version is not None:
                raise ValueError("give value=/version= (keep current) or produce= (on demand), not both")
            if not callable(produce):
                raise TypeError("produce must be callable")
            frames = self._state.master(pattern, produce=True)
            master = Master(self, self._state.masters[pattern], None, produce)
        else:
            if value is None:
                raise ValueError("a master needs value= (keep it current with bump()) or produce= (on demand)")
            check_id(pattern)
            if not isinstance(value, dict):
                raise TypeError(f"a master's value must be a dict, not {type(value).__name__}")
            pending = False
            saved = self._saved_masters.get(pattern)
            if saved is not None and version is None:  # an explicit version says which state the program means
                version, value, pending = saved
            version = _default_version() if version is None else check_version(version)
            if is_null(version):
                raise ValueError("a master's version cannot be 0")
            frames = self._state.master(pattern, value, version, pending=pending)
            master = Master(self, self._state.masters[pattern], value, None)
        self._masters[pattern] = master
        for frame in frames:
            self._send(frame)
        if produce is None:
            self._persist_master(master)
        return master

    async def unmaster(self, master: Master | str) -> None:
        """Stop providing (sends ``object-producer-unregister``; the router requeues any production of ours)."""
        pattern = master if isinstance(master, str) else master.pattern
        found = self._masters.pop(pattern, None)
        if found is None:
            return
        for frame in self._state.unmaster(pattern):
            self._send(frame)
        self._mark_dirty(("master", pattern), None)
        await self._flush()

    # ---- sending ---------------------------------------------------------------------------------

    def _send(self, message: protocol.ClientFrame) -> bool:
        """Queue one frame on the open connection; False (dropped) while disconnected.

        Nothing is lost by dropping: every registration is sent again on connect, and masters upload
        again when the server asks (or on connect, for a change made offline).
        """
        link = self._link
        if link is None:
            return False
        link.queue.put_nowait(codec.dumps(message))
        return True

    async def _flush(self) -> None:
        link = self._link
        if link is not None:
            await link.flush(self.close_timeout)

    async def _backpressure(self) -> None:
        link = self._link
        if link is not None and link.queue.qsize() > _SEND_HIGH_WATER:
            await link.flush(None)

    # ---- persisted state -------------------------------------------------------------------------

    def _persist_consumer(self, object_id: str) -> None:
        state = self._state.entries.get(object_id)
        if self._file is not None and state is not None and state.exact and state.value is not None \
                and state.path is None:
            self._mark_dirty(("consumer", object_id), (state.version, state.value))

    def _persist_master(self, master: Master) -> None:
        state = master._state
        if self._file is not None and not state.produce and not state.closed and state.shadow is not None:
            self._mark_dirty(("master", master.pattern), (state.version, state.shadow, state.pending))

    def _mark_dirty(self, key: tuple[str, str], row: Any) -> None:
        """Queue a row for the writer; values are encoded by the writer thread (the latest state wins)."""
        if self._file is None:
            return
        if row is not None:
            row = codec.dumps(list(row))  # a snapshot now: the live value keeps changing in place
        self._dirty[key] = row
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # before the loop runs: written by the first writer run or by close()
        if self._writer is None or self._writer.done():
            self._dirty_event = asyncio.Event()
            self._writer = loop.create_task(self._write_state(), name="seasync-client-state")
        assert self._dirty_event is not None
        self._dirty_event.set()

    async def _write_state(self) -> None:
        """Write what changed in batches: at most one write every ``_STATE_BATCH`` s, in a thread."""
        assert self._dirty_event is not None
        while not self._closed:
            await self._dirty_event.wait()
            self._dirty_event.clear()
            await asyncio.sleep(_STATE_BATCH)
            await self._write_dirty()

    async def _write_dirty(self) -> None:
        batch, self._dirty = self._dirty, {}
        if batch and self._file is not None:
            await asyncio.to_thread(self._file.write, _decode_batch(batch))

    async def _close_file(self) -> None:
        if self._file is None:
            return
        if self._writer is not None:
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass
        for master in self._masters.values():
            self._persist_master(master)
        await self._write_dirty()
        file, self._file = self._file, None
        file.close()

    # ---- the connection loop ---------------------------------------------------------------------

    async def _run(self, fail_fast: bool) -> None:
        attempt = 0
        first = True
        while not self._closed:
            try:
                ws = await ws_connect(self.url, compression=None, max_size=None, open_timeout=self.open_timeout,
                                      close_timeout=self.close_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if first and fail_fast:
                    if not self._first_open.done():
                        self._first_open.set_exception(exc)
                    return
                delay = backoff(attempt, self.reconnect_delay, self.max_reconnect_delay)
                attempt += 1
                log.warning("cannot connect to %s (%s); retrying in %.1f s", self.url, str(exc) or type(exc).__name__, delay)
                await asyncio.sleep(delay)
                continue
            first = False
            opened = time.monotonic()
            await self._session(ws)
            if self._closed:
                return
            # a connection that held for a while starts the backoff again; one dropped at once keeps growing it
            if time.monotonic() - opened > STABLE_CONNECTION:
                attempt = 0
            delay = backoff(attempt, self.reconnect_delay, self.max_reconnect_delay)
            attempt += 1
            log.warning("connection to %s lost; reconnecting in %.1f s", self.url, delay)
            await asyncio.sleep(delay)

    async def _session(self, ws: ClientConnection) -> None:
        """One connection's life: registrations first, then read frames until it closes."""
        link = _Link(ws)
        self._link = link
        self.connections += 1
        try:
            frames, events = self._state.connect()
            for frame in frames:
                self._send(frame)
            if self._connected_event is not None:
                self._connected_event.set()
            self._apply([], events)
            for master in self._masters.values():
                self._persist_master(master)  # pending uploads went out
            for wildcard in tuple(self._wildcards.values()):
                wildcard._status_changed()
            self._on_connection.fire(self, True)
            if not self._first_open.done():
                self._first_open.set_result(None)
            async for raw in ws:
                self._dispatch(raw)
        except ConnectionClosed as exc:
            log.debug("connection closed: %s", exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the connection to %s failed", self.url)
        finally:
            self._link = None
            await link.stop()
            for production in tuple(self._productions):
                production.cancel()
            self._mark_disconnected()
            if not self._closed:
                try:
                    await ws.close()
                except Exception:
                    pass

    def _mark_disconnected(self) -> None:
        if self._connected_event is not None:
            self._connected_event.clear()
        self._apply([], self._state.disconnect())
        for wildcard in tuple(self._wildcards.values()):
            wildcard._status_changed()
        self._on_connection.fire(self, False)

    # ---- incoming frames -------------------------------------------------------------------------

    def _dispatch(self, raw: str | bytes) -> None:
        """Handle one server frame; anything wrong with it is logged, never raised."""
        try:
            message = codec.loads(raw)
        except (ValueError, TypeError) as exc:
            log.warning("ignoring a frame that is not JSON (%s): %.200r", exc, raw)
            return
        try:
            frames, events = self._state.receive(message)
            self._apply(frames, events)
        except Exception:
            log.exception("failed to handle frame %.300r", raw)

    def _apply(self, frames: list[dict], events: list[Event]) -> None:
        """Send what the state said to send, then tell the handles what happened."""
        for frame in frames:
            self._send(frame)
        for event in events:
            kind = event.kind
            if kind == "changed":
                assert event.id is not None
                handle = self._handle(event.id)
                handle._changed(event.patch)
                self._persist_consumer(event.id)
            elif kind == "status":
                known = self._entries.get(event.id)  # type: ignore[arg-type]
                if known is not None:
                    known._status()
            elif kind == "destroyed":
                gone = self._entries.get(event.id)  # type: ignore[arg-type]
                if gone is not None and event.id not in self._state.entries:
                    del self._entries[event.id]  # type: ignore[arg-type]
                    gone._destroy()
            elif kind == "adopted":
                wildcard = self._wildcards.get(event.pattern)  # type: ignore[arg-type]
                if wildcard is not None:
                    wildcard._adopt(self._handle(event.id))  # type: ignore[arg-type]
            elif kind == "dropped":
                parent = self._wildcards.get(event.pattern)  # type: ignore[arg-type]
                child = self._entries.get(event.id)  # type: ignore[arg-type]
                if parent is not None and child is not None:
                    parent._drop(child)
            elif kind == "produce":
                self._start_production(event)
            elif kind == "error":
                frame = event.frame or {}
                log.warning("server error: %s (%s)", frame.get("message"),
                            ", ".join(f"{k}={v!r}" for k, v in frame.items() if k not in ("action", "message")))
                self._on_error.fire(self, frame)
            elif kind in ("written", "unknown"):
                self._write_answered(event)
            elif kind == "ignored":
                log.warning("ignoring a frame%s: %s", f" for {event.id!r}" if event.id else "",
                            (event.frame or {}).get("reason"))

    def _write_answered(self, event: Event) -> None:
        frame = event.frame or {}
        future = self._writes.pop(frame.get("ref"), None)  # type: ignore[arg-type]
        if future is None or future.done():
            return
        if event.kind == "unknown":
            future.set_exception(CollectionError(
                f"the connection dropped before the answer to the update of {event.id!r}: it may or may not "
                "have applied (never resent)", "outcome-unknown"))
        elif frame.get("action") == "collection-updated":
            future.set_result(frame.get("version"))
        else:
            code = frame.get("code")
            future.set_exception(CollectionError(str(frame.get("message", "collection update failed")),
                                                 code if isinstance(code, str) else "error"))

    def _start_production(self, event: Event) -> None:
        master = self._masters.get(event.pattern)  # type: ignore[arg-type]
        if master is None or master.produce is None:
            return
        object_id = event.id
        assert object_id is not None
        inferred = (event.frame or {}).get("version-inferred")
        link = self._link
        task = asyncio.get_running_loop().create_task(self._produce(master, object_id, inferred, link),
                                                       name=f"seasync-produce {object_id}")
        self._productions.add(task)
        task.add_done_callback(self._productions.discard)

    async def _produce(self, master: Master, object_id: str, inferred: Version, link: _Link | None) -> None:
        """Run the user's produce function and upload its result on the connection that asked."""
        started = time.perf_counter()
        try:
            result = master.produce(object_id, inferred)  # type: ignore[misc]
            if inspect.isawaitable(result):
                result = await result
            message = protocol.production_answer(object_id, result)  # the one set of rules (the worker's too)
            frame = codec.dumps(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("producing %r failed", object_id)
            message = protocol.failure(object_id, f"{type(exc).__name__}: {exc}")
            frame = codec.dumps(message)
        if link is None or self._link is not link:
            return  # the connection that asked is gone; the router requeued the order
        self._state.produced(master.pattern, object_id, message)
        log.debug("produced %r in %.1f ms", object_id, (time.perf_counter() - started) * 1000)
        link.queue.put_nowait(frame)

    # ---- user callbacks --------------------------------------------------------------------------

    def _call(self, callback: Callback, arg: Any) -> None:
        """Run a user callback; an async one becomes a task. Failures are logged, never raised."""
        try:
            result = callback(arg)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._callback_done)
        except Exception:
            log.exception("callback %r failed", callback)

    def _callback_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("async callback failed", exc_info=task.exception())


def _decode_batch(batch: dict[tuple[str, str], Any]) -> dict[tuple[str, str], Any]:
    return {key: None if row is None else tuple(codec.loads(row)) for key, row in batch.items()}

