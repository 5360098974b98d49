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

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator, Union

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from common import codec, protocol
from common.diff import PatchError, apply_patch, make_patch
from common.patterns import check_id, check_pattern, is_wildcard, matches
from common.versioning import Version, check_version, is_newer, is_null, same

__all__ = ["Change", "ChangeStream", "Client", "ClosedError", "Consumer", "Master", "WildcardConsumer", "next_version"]

log = logging.getLogger("seasync.client")

Callback = Callable[[Any], Union[None, Awaitable[None]]]
"""A user callback: a plain function or an ``async def``; its return value is ignored."""

ProduceFn = Callable[[str, Version], Any]
"""``fn(object_id, version_inferred) -> (data, version)``, sync or async. See ``Client.master``."""

# Past this many frames waiting to be written, bump() waits for the socket to catch up.
_SEND_HIGH_WATER = 256
# A connection that stayed open this long (seconds) resets the reconnect backoff.
_STABLE_CONNECTION = 10.0


class ClosedError(RuntimeError):
    """The client was closed, or the consumer was unconsumed, while you were waiting on it."""


@dataclass(frozen=True, slots=True)
class Change:
    """One change of an object, as given to ``on_change`` callbacks and yielded by ``changes()``.

    ``value`` is the consumer's live dict (it keeps changing with later patches); ``patch`` is the RFC 6902
    patch that produced this change, or ``None`` when a full value arrived or several changes were coalesced
    into one (``coalesced`` says how many). ``destroyed`` is True when the object went away (``value`` is then
    None): a wildcard consumer lost this child, or an exact consumer was unconsumed.
    """

    id: str
    value: dict | None
    version: Version
    patch: list | None = None
    destroyed: bool = False
    coalesced: int = 1


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
    - ``destroyed``: True once unconsumed, or dropped by the server (wildcard children);
    - ``received_at``: ``time.time()`` of the last update, or None;
    - ``last_patch``: the patch of the last update, or None if it was a full value.

    The same ``Consumer`` object is shared by an exact subscription and any wildcard of this client covering
    the id, because the server sends each id to a connection once.
    """

    def __init__(self, client: Client, object_id: str) -> None:
        self._client = client
        self.id = object_id
        self.value: dict | None = None
        self.version: Version = None
        self.destroyed = False
        self.received_at: float | None = None
        self.last_patch: list | None = None
        self._valid = False
        self._exact = False  # the user consumes this id directly
        self._temp_exact = False  # registered directly only to resync a wildcard child
        self._resyncing = False  # waiting for a full value, or a patch from the version we hold
        self._parents: list[WildcardConsumer] = []
        self._on_change = _Callbacks()
        self._on_status = _Callbacks()
        self._streams: weakref.WeakSet[ChangeStream] = weakref.WeakSet()
        self._wakers: set[Callable[[], None]] = set()

    def __repr__(self) -> str:
        state = "destroyed" if self.destroyed else "valid" if self._valid else "invalid"
        return f"<Consumer {self.id!r} version={self.version!r} {state}>"

    @property
    def valid(self) -> bool:
        """True while connected and holding data the server considers current."""
        return self._valid

    def on_change(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(change: Change)`` on every new version (and on destroy). Returns an unsubscribe function.

        Sync callbacks run immediately, in order, as each frame is handled; async ones are started as tasks
        (by then ``change.value`` may already hold later data). Exceptions are logged, never raised.
        """
        return self._on_change.add(callback)

    def on_status(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(consumer)`` whenever ``valid`` or ``destroyed`` changes. Returns an unsubscribe function."""
        return self._on_status.add(callback)

    def changes(self, *, initial: bool = True) -> ChangeStream:
        """Iterate over changes: ``async for change in consumer.changes(): ...``.

        Changes are recorded from this call on. With ``initial`` (the default) the current state comes first
        if there is data. A slow reader does not queue every version: when several changes happen before it
        asks for the next one, it gets a single ``Change`` with the latest state (``coalesced`` > 1, ``patch``
        None). Validity changes are not yielded (use ``on_status``). The iteration ends after a ``destroyed``
        change, or when the client is closed.
        """

        def make(object_id: str, count: int, patch: list | None, destroyed: bool) -> Change:
            if destroyed:
                stream.close()
                return Change(self.id, None, self.version, None, True, count)
            return Change(self.id, self.value, self.version, patch if count == 1 else None, False, count)

        stream = ChangeStream(self._streams, make)
        if self.destroyed or self._client.closed:
            stream.close()
        elif initial and self.value is not None:
            stream.push(self.id, None)
        return stream

    async def wait(self, predicate: Callable[[dict], Any] | None = None, timeout: float | None = None) -> dict:
        """Wait until the consumer is valid and ``predicate(value)`` is true (just valid if no predicate).

        Returns the value. Raises ``TimeoutError`` (saying the state it last saw) after ``timeout`` seconds,
        or ``ClosedError`` if the consumer is unconsumed or the client closed meanwhile. Handy in tests::

            await cars.wait(lambda v: len(v["list"]) == 3, timeout=10)
        """

        def check() -> dict | None:
            if self.destroyed or self._client.closed:
                raise ClosedError(f"consumer {self.id!r} was closed while waiting")
            if self._valid and self.value is not None and (predicate is None or predicate(self.value)):
                return self.value
            return None

        def describe() -> str:
            what = "valid data" if predicate is None else "the predicate"
            return f"{what} on {self.id!r} (last: valid={self._valid}, version={self.version!r}, value={self.value!r:.200})"

        return await _wait_until(self._wakers, check, timeout, describe)

    # ---- driven by the client -------------------------------------------------------------------

    def _wake(self) -> None:
        for waker in tuple(self._wakers):
            waker()
        for parent in self._parents:
            parent._wake()

    def _set_valid(self, valid: bool) -> None:
        if valid != self._valid:
            self._valid = valid
            self._on_status.fire(self._client, self)
            self._wake()

    def _update(self, value: dict, version: Version, patch: list | None) -> None:
        """New data arrived (already applied): record it and tell everyone."""
        self.value = value
        self.version = version
        self.last_patch = patch
        self.received_at = time.time()
        self._resyncing = False
        self._set_valid(self._client.connected)
        change = Change(self.id, value, version, patch)
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
        self._valid = False
        change = Change(self.id, None, self.version, None, True)
        self._on_change.fire(self._client, change)
        self._on_status.fire(self._client, self)
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
                          patch if count == 1 and not destroyed else None, False, count)

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
    """The version after ``version`` for ``Master.bump``: ``[a, b]`` -> ``[a, b + 1]``, ``n`` -> ``n + 1``.

    A list's last element is incremented. Hash (dependency) versions and None have no successor: pass an
    explicit version to ``bump`` for those.
    """
    if isinstance(version, bool):
        raise ValueError("a version cannot be a boolean")
    if isinstance(version, (int, float)):
        return version + 1
    if isinstance(version, list) and version and isinstance(version[-1], (int, float)) \
            and not isinstance(version[-1], bool):
        return [*version[:-1], version[-1] + 1]
    raise ValueError(f"cannot bump version {version!r} automatically; pass bump(version=...)")


def _default_version() -> list[int]:
    return [int(time.time() * 1000), 0]


class Master:
    """An object this client provides to the server: made by ``client.master(...)``.

    Two modes (do not mix them):

    - **keep current** (``value=`` given, exact id only): ``value`` is yours to mutate; ``await bump()`` makes
      a new version and uploads it as a patch against the last uploaded value when that is smaller, else
      as the full value. When the server asks for the object (a consumer appeared, or after a reconnect) the
      client uploads the last bumped value by itself. Edits not yet bumped are never sent.
    - **produce on demand** (``produce=`` given, exact id or wildcard): the server sends a production order when
      someone wants an object; the client calls ``produce(object_id, version_inferred)`` and uploads the
      ``(data, version)`` it returns. ``data`` is a dict, ``False`` for a stall (the version exists but has
      no data yet), ``True`` (the version exists, data unknown) or ``None`` to decline (the server gives the
      order to another producer). If the function raises, the router is told (an ``error`` field) and the
      client carries on.

    Attributes: ``pattern``, ``value`` and ``version`` (keep-current mode), ``last_upload`` (``"patch"``,
    ``"value"`` or None: how the last bump or answer went out), ``versions`` (produce mode: last version
    produced per id, forgotten when the server destroys the object), ``closed``.
    """

    def __init__(self, client: Client, pattern: str, value: dict | None, version: Version,
                 produce: ProduceFn | None) -> None:
        self._client = client
        self.pattern = pattern
        self.produce = produce
        self.value = value
        self.version: Version = version
        self.versions: dict[str, Version] = {}
        self.closed = False
        self._shadow: dict | None = None  # the data of self.version, as uploaded (or to be uploaded)
        self._server_base: Version = None  # the version the server last got from us, as a patch base
        self._last_was_patch = False
        self.last_upload: str | None = None
        self._wanted = True  # False after object-destroy: nobody consumes it, so bumps are not uploaded
        if produce is None:
            self._shadow = _snapshot(value)[0]

    def __repr__(self) -> str:
        mode = "produce" if self.produce else f"version={self.version!r}"
        return f"<Master {self.pattern!r} {mode}>"

    @property
    def id(self) -> str:
        """The object id (same as ``pattern`` for an exact master)."""
        return self.pattern

    async def bump(self, version: Version = None) -> Version:
        """Make a new version of ``value`` and upload it; returns the new version.

        The new version is ``version`` if given, else the next one after the current (see ``next_version``).
        While disconnected, or while nobody consumes the object, nothing is sent: the server asks for the
        value when it needs it. Raises ``TypeError`` if ``value`` is not JSON-serialisable.
        """
        self._check_keep_current()
        new_version = check_version(version) if version is not None else next_version(self.version)
        if is_null(new_version):
            raise ValueError("a master's version cannot be 0 or None")
        snapshot, raw = _snapshot(self.value)
        old_shadow, old_version = self._shadow, self.version
        self._shadow, self.version = snapshot, new_version
        client = self._client
        if not client.connected or not self._wanted or self.closed:
            return new_version
        message = protocol.upload(self.pattern, new_version, snapshot)
        self._last_was_patch = False
        if old_shadow is not None and self._server_base is not None and same(self._server_base, old_version):
            patch = make_patch(old_shadow, snapshot)
            if len(codec.dumps(patch)) < len(raw):
                message = protocol.upload_patch(self.pattern, old_version, new_version, patch)
                self._last_was_patch = True
        self.last_upload = "patch" if self._last_was_patch else "value"
        self._server_base = new_version
        client._send(message)
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

    def _registration(self) -> dict:
        if self.produce is None:
            known = self.version
        elif is_wildcard(self.pattern):
            known = 0
        else:
            known = self.versions.get(self.pattern, 0)
        return protocol.producer_register(self.pattern, known)

    def _upload_current(self) -> None:
        """Answer a production order (or a refused patch) in keep-current mode: the full last-bumped value."""
        self._wanted = True
        self._last_was_patch = False
        self.last_upload = "value"
        self._server_base = self.version
        self._client._send(protocol.upload(self.pattern, self.version, self._shadow))

    def _destroyed(self, object_id: str) -> None:
        if self.produce is None:
            self._wanted = False
            self._server_base = None
        else:
            self.versions.pop(object_id, None)


def _snapshot(value: Any) -> tuple[dict, bytes]:
    """An independent copy of ``value`` (an orjson round trip, much cheaper than deepcopy) and its JSON."""
    if not isinstance(value, dict):
        raise TypeError(f"a master's value must be a dict, not {type(value).__name__}")
    raw = codec.dumps(value)
    return codec.loads(raw), raw


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

    ``Client(url, name="python", options=None, reconnect_delay=1.0)``: ``name`` and ``options`` go to the
    server in ``client-options-set`` (``name`` shows in introspection as ``name:N``); ``reconnect_delay`` is
    the first wait before reconnecting, doubled after each failed attempt up to ``max_reconnect_delay``.

    Create consumers and masters before or after ``connect()``; they are (re)registered on every connect.
    Use ``async with Client(url) as client:`` or ``await client.connect()`` ... ``await client.close()``.
    """

    def __init__(self, url: str, name: str = "python", options: dict | None = None,
                 reconnect_delay: float = 1.0, *, max_reconnect_delay: float = 5.0,
                 open_timeout: float = 10.0, close_timeout: float = 5.0) -> None:
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
        self._entries: dict[str, Consumer] = {}
        self._wildcards: dict[str, WildcardConsumer] = {}
        self._masters: dict[str, Master] = {}
        self._link: _Link | None = None
        self._run_task: asyncio.Task | None = None
        self._first_open: asyncio.Future | None = None
        self._connected_event: asyncio.Event | None = None
        self._closed = False
        self._tasks: set[asyncio.Task] = set()  # user async callbacks
        self._productions: set[asyncio.Task] = set()
        self._on_error = _Callbacks()
        self._on_connection = _Callbacks()
        self._handlers: dict[str, Callable[[dict], None]] = {
            "object-update": self._handle_update,
            "object-destroy": self._handle_destroy,
            "object-produce": self._handle_produce,
            "error": self._handle_error,
            "heartbeat": lambda message: None,
        }

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
        fails fast. With ``wait=False``, return at once and keep trying in the background.
        After the first successful connection the client always reconnects by itself.
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
        ``ClosedError``.
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
            entry._set_valid(False)
            entry._close_streams()
        for wildcard in tuple(self._wildcards.values()):
            wildcard._close()
        if self._first_open is not None and not self._first_open.done():
            self._first_open.set_exception(ClosedError("client closed before it connected"))
            self._first_open.exception()  # retrieved: no "never retrieved" warning
        for pending in tuple(self._tasks):
            pending.cancel()

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

    def consume(self, pattern: str, *, value: dict | None = None,
                version: Version = None) -> Consumer | WildcardConsumer:
        """Subscribe to an object id (returns a ``Consumer``) or a ``*`` pattern (returns a ``WildcardConsumer``).

        Pre-seed an exact consumer with ``value`` and ``version`` (both or neither), e.g. the state a page was
        rendered with: the server then sends nothing if that version is still current, or just a patch.
        Consuming the same pattern twice returns the same object. Works before ``connect()`` too.
        """
        check_pattern(pattern)
        if self._closed:
            raise ClosedError("this client was closed")
        if is_wildcard(pattern):
            if value is not None or version is not None:
                raise ValueError("a wildcard consumer cannot be pre-seeded")
            wildcard = self._wildcards.get(pattern)
            if wildcard is None:
                wildcard = WildcardConsumer(self, pattern)
                self._wildcards[pattern] = wildcard
                for entry in self._entries.values():
                    if entry.value is not None and matches(pattern, entry.id):
                        wildcard._adopt(entry)
                self._send(protocol.consumer_register(pattern))
            return wildcard
        if (value is None) != is_null(version):
            raise ValueError("pre-seed a consumer with both value= and version=, or neither")
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"value must be a dict, not {type(value).__name__}")
        entry = self._entries.get(pattern)
        if entry is None:
            entry = Consumer(self, pattern)
            self._entries[pattern] = entry
        if entry._exact:
            return entry
        if value is not None and entry.value is None:
            entry.value, entry.version = value, check_version(version)
        entry._exact = True
        if not entry._temp_exact:
            self._send(self._consumer_registration(entry))
        entry._temp_exact = False
        if self.connected and entry.value is not None and not entry._resyncing:
            entry._set_valid(True)
        return entry

    async def unconsume(self, consumer: Consumer | WildcardConsumer | str) -> None:
        """Stop consuming (sends ``object-consumer-unregister``); accepts the consumer or its pattern.

        The consumer becomes ``destroyed``, its iterators end. If a wildcard of this client still covers an
        unconsumed id, that ``Consumer`` lives on as the wildcard's child.
        """
        pattern = consumer if isinstance(consumer, str) else \
            consumer.pattern if isinstance(consumer, WildcardConsumer) else consumer.id
        if is_wildcard(pattern):
            wildcard = self._wildcards.pop(pattern, None)
            if wildcard is None:
                return
            self._send(protocol.consumer_unregister(pattern))
            for child in tuple(wildcard.children.values()):
                wildcard.children.pop(child.id, None)
                if wildcard in child._parents:
                    child._parents.remove(wildcard)
                self._forget_if_orphan(child)
            wildcard._close()
        else:
            entry = self._entries.get(pattern)
            if entry is None or not entry._exact:
                return
            entry._exact = False
            self._send(protocol.consumer_unregister(pattern))
            self._forget_if_orphan(entry)
        await self._flush()

    def _forget_if_orphan(self, entry: Consumer) -> None:
        if entry._parents or entry._exact:
            return
        if entry._temp_exact:
            entry._temp_exact = False
            self._send(protocol.consumer_unregister(entry.id))
        if self._entries.get(entry.id) is entry:
            del self._entries[entry.id]
        entry._destroy()

    @staticmethod
    def _consumer_registration(entry: Consumer) -> dict:
        known = entry.version if entry.value is not None and not is_null(entry.version) else 0
        return protocol.consumer_register(entry.id, known)

    # ---- masters ---------------------------------------------------------------------------------

    def master(self, pattern: str, value: dict | None = None, version: Version = None, *,
               produce: ProduceFn | None = None) -> Master:
        """Offer to provide an object: keep-current mode with ``value=``, produce-on-demand with ``produce=``.

        Keep-current (exact id only): ``version`` defaults to ``[now_ms, 0]``; the master registers with that
        version, so the server knows the object exists and asks for it when someone consumes it.

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
            master = Master(self, pattern, None, None, produce)
        else:
            if value is None:
                raise ValueError("a master needs value= (keep it current with bump()) or produce= (on demand)")
            check_id(pattern)
            version = _default_version() if version is None else check_version(version)
            if is_null(version):
                raise ValueError("a master's version cannot be 0")
            master = Master(self, pattern, value, version, None)
        self._masters[pattern] = master
        self._send(master._registration())
        return master

    async def unmaster(self, master: Master | str) -> None:
        """Stop providing (sends ``object-producer-unregister``; the router requeues any production of ours)."""
        pattern = master if isinstance(master, str) else master.pattern
        found = self._masters.pop(pattern, None)
        if found is None:
            return
        found.closed = True
        self._send(protocol.producer_unregister(pattern))
        await self._flush()

    # ---- sending ---------------------------------------------------------------------------------

    def _send(self, message: protocol.ClientFrame) -> bool:
        """Queue one frame on the open connection; False (dropped) while disconnected.

        Nothing is lost by dropping: every registration is sent again on connect, and masters upload
        again when the server asks.
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

    # ---- the connection loop ---------------------------------------------------------------------

    async def _run(self, fail_fast: bool) -> None:
        delay = self.reconnect_delay
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
                log.warning("cannot connect to %s (%s); retrying in %.1f s", self.url, str(exc) or type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_reconnect_delay)
                continue
            first = False
            opened = time.monotonic()
            await self._session(ws)
            if self._closed:
                return
            # a connection that held for a while starts the backoff again; one dropped at once keeps growing it
            if time.monotonic() - opened > _STABLE_CONNECTION:
                delay = self.reconnect_delay
            log.warning("connection to %s lost; reconnecting in %.1f s", self.url, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_reconnect_delay)

    async def _session(self, ws: ClientConnection) -> None:
        """One connection's life: registrations first, then read frames until it closes."""
        link = _Link(ws)
        self._link = link
        self.connections += 1
        try:
            for message in self._handshake():
                self._send(message)
            self._mark_connected()
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

    def _handshake(self) -> list[dict]:
        """What a connection opens with: options, exact consumers (with held versions), wildcards, masters
        (with their versions; a wildcard producer re-announces each id it produced with ``value: true``).

        Exact consumers go before wildcards so the server knows what this client holds before a wildcard
        makes it push data.
        """
        messages: list[protocol.ClientFrame] = [protocol.options_set({"name": self.name, **self.options})]
        for entry in self._entries.values():
            entry._temp_exact = False  # the wildcard re-registration resyncs those
            if entry._exact:
                messages.append(self._consumer_registration(entry))
        for pattern in self._wildcards:
            messages.append(protocol.consumer_register(pattern))
        for master in self._masters.values():
            master._wanted = True
            messages.append(master._registration())
            if master.produce is not None and is_wildcard(master.pattern):
                # what this producer made before: the server may have lost it (a router restart)
                messages.extend(protocol.upload(object_id, version, True)
                                for object_id, version in master.versions.items())
        return messages

    def _mark_connected(self) -> None:
        if self._connected_event is not None:
            self._connected_event.set()
        for entry in tuple(self._entries.values()):
            if entry._exact and entry.value is not None:
                entry._resyncing = False
                entry._set_valid(True)
        for wildcard in tuple(self._wildcards.values()):
            wildcard._status_changed()
        self._on_connection.fire(self, True)

    def _mark_disconnected(self) -> None:
        if self._connected_event is not None:
            self._connected_event.clear()
        for entry in tuple(self._entries.values()):
            entry._set_valid(False)
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
        if not isinstance(message, dict):
            log.warning("ignoring a frame that is not a JSON object: %.200r", raw)
            return
        handler = self._handlers.get(message.get("action"))  # type: ignore[arg-type]
        if handler is None:
            log.warning("ignoring a frame with unknown action %.100r", message.get("action"))
            return
        try:
            handler(message)
        except Exception:
            log.exception("failed to handle frame %.300r", raw)

    def _handle_update(self, message: dict) -> None:
        object_id = message.get("id")
        if not isinstance(object_id, str):
            log.warning("object-update without a string id: %.300r", message)
            return
        entry = self._entries.get(object_id)
        if entry is None:
            if not any(matches(p, object_id) for p in self._wildcards):
                log.debug("object-update for %r, which this client does not consume", object_id)
                return
            entry = Consumer(self, object_id)
            self._entries[object_id] = entry
        version_new = message.get("version-new")
        version_old = message.get("version-old", 0)
        patch: list | None = None
        if "value" in message:
            value = message["value"]
            if not isinstance(value, dict):
                log.warning("%s: object-update value is not an object: %.200r", object_id, value)
                return
        elif "patch" in message:
            patch = message["patch"]
            if not isinstance(patch, list):
                log.warning("%s: object-update patch is not a list: %.200r", object_id, patch)
                return
            if is_null(version_old):
                base: dict = {}
            elif entry.value is not None and same(version_old, entry.version):
                base = entry.value
            else:
                self._lost_update(entry, version_old, version_new)
                return
            try:
                value = apply_patch(base, patch)  # in place; left unchanged if it fails
                if not isinstance(value, dict):
                    raise PatchError(f"the result is a {type(value).__name__}, not an object")
            except PatchError as exc:
                log.error("%s: patch %r -> %r does not apply (%s); asking for the full value",
                          object_id, version_old, version_new, exc)
                self._resync_full(entry)
                return
        else:
            log.warning("%s: object-update with neither value nor patch: %.200r", object_id, message)
            return
        if self._wildcards:
            for wildcard in self._wildcards.values():
                if object_id not in wildcard.children and matches(wildcard.pattern, object_id):
                    wildcard._adopt(entry)
        if patch is None and entry.value is not None and same(version_new, entry.version) and value == entry.value:
            entry._resyncing = False
            entry._set_valid(self.connected)  # a resend of what we hold: confirmed, but not a change
        else:
            entry._update(value, version_new, patch)
        if entry._temp_exact and not entry._exact:
            entry._temp_exact = False
            self._send(protocol.consumer_unregister(object_id))

    def _lost_update(self, entry: Consumer, version_old: Version, version_new: Version) -> None:
        """A patch from a version we do not hold: never apply it; ask the server to resend from ours."""
        if entry._resyncing:
            log.debug("%s: skipping patch %r -> %r while resyncing", entry.id, version_old, version_new)
            return
        log.warning("%s: patch from version %r but this client holds %r (an update was lost); resyncing",
                    entry.id, version_old, entry.version)
        self._resync(entry)

    def _resync(self, entry: Consumer) -> None:
        """Re-register the id directly with the version held, so the server sends a proper patch or the value."""
        entry._resyncing = True
        entry._set_valid(False)
        if not entry._exact:
            entry._temp_exact = True  # a wildcard child: a temporary direct subscription, dropped once synced
        self._send(self._consumer_registration(entry))

    def _resync_full(self, entry: Consumer) -> None:
        """The data held does not match the server's: drop it and re-subscribe from scratch.

        Re-registering with ``version-known: 0`` is not enough, since the server remembers what it sent while a
        subscription covers the id; so every pattern of this client covering the id is unregistered and
        registered again (a wildcard's other children then get full values, which are not reported as changes).
        """
        entry.value = entry.version = None
        entry._resyncing = True
        entry._set_valid(False)
        patterns = [w.pattern for w in entry._parents]
        if entry._exact or entry._temp_exact:
            patterns.insert(0, entry.id)
        for pattern in patterns:
            self._send(protocol.consumer_unregister(pattern))
        if entry._temp_exact:
            entry._temp_exact = False
            patterns.remove(entry.id)
        for pattern in patterns:
            self._send(protocol.consumer_register(pattern))

    def _handle_destroy(self, message: dict) -> None:
        object_id = message.get("id")
        if not isinstance(object_id, str):
            log.warning("object-destroy without a string id: %.300r", message)
            return
        entry = self._entries.get(object_id)
        if entry is not None and entry._parents:
            for wildcard in tuple(entry._parents):
                wildcard._drop(entry)
            self._forget_if_orphan(entry)
        for master in self._masters_for(object_id):
            master._destroyed(object_id)

    def _masters_for(self, object_id: str) -> list[Master]:
        """The masters covering an id: the exact one first, then wildcards in registration order."""
        found = [self._masters[object_id]] if object_id in self._masters else []
        found += [m for p, m in self._masters.items() if p != object_id and matches(p, object_id)]
        return found

    def _handle_produce(self, message: dict) -> None:
        object_id = message.get("id")
        if not isinstance(object_id, str):
            log.warning("object-produce without a string id: %.300r", message)
            return
        inferred = message.get("version-inferred")
        masters = self._masters_for(object_id)
        if not masters:
            log.warning("asked to produce %r, which this client does not master; declining", object_id)
            self._send(protocol.cancel(object_id))
            return
        master = masters[0]
        if master.produce is None:
            if inferred is not None and is_newer(master.version, inferred):
                log.warning("%s: the server wants version %r, newer than this master's %r; sending ours",
                            object_id, inferred, master.version)
            master._upload_current()
            return
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
        if "version-new" in message:
            master.versions[object_id] = message["version-new"]
        log.debug("produced %r in %.1f ms", object_id, (time.perf_counter() - started) * 1000)
        link.queue.put_nowait(frame)

    def _handle_error(self, message: dict) -> None:
        log.warning("server error: %s (%s)", message.get("message"),
                    ", ".join(f"{k}={v!r}" for k, v in message.items() if k not in ("action", "message")))
        object_id = message.get("id")
        master = self._masters.get(object_id) if isinstance(object_id, str) else None
        if master is not None and master.produce is None and master._last_was_patch \
                and message.get("request") == "object-patch":
            log.info("%s: the server refused our patch; uploading the full value", object_id)
            master._upload_current()
        self._on_error.fire(self, message)

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

