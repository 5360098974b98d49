"""The client's protocol state, sans I/O: what is consumed and mastered, what is held, what to send.

``ClientState`` is the part of the client that the Python shell (``common/client/shell.py``) and the JS
client (``router/static/seasync.js``) must agree on, written once as data in, data out: user actions and
server frames go in, frames to send and ``Event``s for the user-facing handles come out. It never touches
a socket, a clock or a file, so every reconnect, resync and master case runs in-process, against the real
``ObjectStore`` too (tests/unit/common/test_client_state.py), and the same table of scenarios
(tests/fixtures/client_scenarios.json) is run against it by pytest and against seasync.js by node.

Rules decided here once for both clients (see the scenario table):

- a patch from a version we do not hold is never applied: the id is re-registered with the version held;
- a patch that does not apply (the data held is wrong) drops the data and re-registers the id alone with an
  impossible version (``RESYNC_VERSION``), so the server sends the full value; no pattern is unregistered,
  which could despawn the object and force a re-production;
- 0 and None are the same "no version";
- a production error the server reports for a consumed id is kept on it (``error``) until the next update;
- ``stale``: data held but not confirmed since the link came up. After the handshake (and after a
  registration made while connected with data held) the client sends a *sync probe*, an unregistration of
  a pattern it never registered; the server answers it with an error frame after everything it had to
  send for the registrations before it, which proves the data held is current.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common import codec, protocol
from common.collection import check_update
from common.diff import PatchError, apply_patch, make_patch
from common.patterns import is_wildcard, matches
from common.versioning import Version, is_newer, is_null, same

__all__ = [
    "RESYNC_VERSION",
    "SYNC_PREFIX",
    "ClientState",
    "EntryState",
    "Event",
    "MasterState",
    "backoff",
    "next_version",
    "same_version",
]

RESYNC_VERSION: list[Version] = [-1, -1]
"""A version no server holds: registering an id with it makes the server send the full value."""

_TIMESTAMP_MS = 10**11  # a first version element this large is a time in ms (1973 on), as _default_version makes

SYNC_PREFIX = "seasync-sync-probe:"
"""The pattern of a sync probe is this prefix and a counter; such ids are never registered."""


def same_version(a: Version, b: Version) -> bool:
    """Version equality for a client: ``same`` plus 0 == None (both mean "no version" on the wire)."""
    if is_null(a) and is_null(b):
        return True
    return same(a, b)


def next_version(version: Version, now_ms: int | None = None) -> Version:
    """The version after ``version``: ``[a, b]`` -> ``[a, b + 1]``, ``n`` -> ``n + 1``.

    With ``now_ms`` (the shell passes the clock), a ``[timestamp_ms, n]`` version (the default a master starts
    from: a first element of at least 10**11, i.e. a time in ms) whose timestamp is older than ``now_ms``
    becomes ``[now_ms, 0]``: a change made offline for a day is then newer than what other
    masters uploaded meanwhile, before it was made (the newer version wins when it is uploaded).
    Hash (dependency) versions and None have no successor: pass an explicit version to ``bump``.
    """
    if isinstance(version, bool):
        raise ValueError("a version cannot be a boolean")  # noqa: TRY004 (ValueError, as before the split)
    if isinstance(version, (int, float)):
        return version + 1
    if isinstance(version, list) and version and isinstance(version[-1], (int, float)) \
            and not isinstance(version[-1], bool):
        if now_ms is not None and len(version) == 2 and type(version[0]) is int \
                and _TIMESTAMP_MS <= version[0] < now_ms:
            return [now_ms, 0]
        return [*version[:-1], version[-1] + 1]
    raise ValueError(f"cannot bump version {version!r} automatically; pass bump(version=...)")


def backoff(attempt: int, base: float, maximum: float) -> float:
    """The wait before reconnect attempt ``attempt`` (0 = the first retry): doubling from ``base`` up to ``maximum``.

    Both clients count attempts since the last connection that stayed open ``STABLE`` seconds, so a
    server that accepts and drops at once is not hammered.
    """
    delay: float = base * 2.0 ** min(max(attempt, 0), 30)
    return min(delay, max(maximum, base))


@dataclass(frozen=True, slots=True)
class Event:
    """Something the handles must hear about: ``kind`` is one of

    ``changed`` (``id``; ``patch`` or None for a full value), ``status`` (``id``: valid, stale or error
    changed), ``destroyed`` (``id``: forgotten), ``adopted``/``dropped`` (``pattern`` took or lost child
    ``id``), ``produce`` (``pattern`` must produce ``id``; ``frame`` is the order), ``error`` (``frame``),
    ``written`` (a collection update of ours was answered: ``frame`` is the ``collection-updated`` or the
    ``error`` frame, with its ``ref``), ``unknown`` (``frame`` ``{"ref": ref}``: the link dropped before the
    answer, the update may or may not have applied; it is never resent).
    """

    kind: str
    id: str | None = None
    pattern: str | None = None
    patch: list[Any] | None = None
    frame: dict[str, Any] | None = None


@dataclass(slots=True)
class EntryState:
    """One id held by this client: consumed directly, or a wildcard's child (or both)."""

    id: str
    value: dict[str, Any] | None = None
    version: Version = None
    exact: bool = False  # the user consumes this id directly
    temp_exact: bool = False  # registered directly only to resync a wildcard child
    resyncing: bool = False  # waiting for a full value, or a patch from the version held
    confirmed: bool = False  # the server confirmed or updated it since the link came up
    probe: int = 0  # the sync probe whose answer confirms it (0: none pending)
    error: str | None = None  # the last production error the server reported for it
    last_patch: list[Any] | None = None
    parents: list[str] = field(default_factory=list[Any])  # wildcard patterns holding it as a child
    # a subtree subscription: the JSON Pointer watched; ``value`` is then a box {"value": subtree}, so the
    # subtree may be any JSON (null while absent) and patches apply under "/value"
    path: str | None = None


@dataclass(slots=True)
class MasterState:
    """An object (or pattern) this client provides. Keep-current masters hold ``value`` and ``version``."""

    pattern: str
    produce: bool
    version: Version = None
    shadow: dict[str, Any] | None = None  # the data of ``version``, as bumped (uploaded, or to be uploaded)
    versions: dict[str, Version] = field(default_factory=dict[str, Any])  # produce mode: last version per id
    server_base: Version = None  # the version the server last got from us, as a patch base
    last_was_patch: bool = False
    last_upload: str | None = None
    wanted: bool = True  # False after object-destroy: nobody consumes it, bumps are not uploaded
    pending: bool = False  # bumped while it could not be uploaded: uploaded on the next connect
    closed: bool = False


Frame = protocol.ClientFrame
"""A frame this client sends (common/protocol.py builds every one)."""
Out = tuple[list[Frame], list[Event]]


class ClientState:
    """The protocol state of one client. Every method returns the frames to send (and events, for some).

    Frames returned while ``connected`` is False are to be dropped: every registration is made again by
    ``connect()``, and masters upload when the server asks.
    """

    def __init__(self, name: str = "python", options: dict[str, Any] | None = None) -> None:
        self.name = name
        self.options = dict(options or {})
        self.connected = False
        self.entries: dict[str, EntryState] = {}
        self.wildcards: dict[str, dict[str, None]] = {}  # pattern -> ids of its children, in order
        self.masters: dict[str, MasterState] = {}
        self.writes: dict[int, str] = {}  # ref of a collection update sent on this link -> collection id
        self._probes = 0
        self._refs = 0

    # ---- reading -------------------------------------------------------------------------------

    def valid(self, object_id: str) -> bool:
        """Connected and holding data the server considers current: an exact consumer's data as soon as the
        link is up (it re-registers with its version), a wildcard child's once resent (it may have vanished)."""
        entry = self.entries.get(object_id)
        return entry is not None and self.connected and entry.value is not None and not entry.resyncing \
            and (entry.exact or entry.confirmed)

    def stale(self, object_id: str) -> bool:
        """Holding data the server has not confirmed (or updated) since the link came up."""
        entry = self.entries.get(object_id)
        return entry is not None and entry.value is not None and not (self.connected and entry.confirmed)

    # ---- the link ------------------------------------------------------------------------------

    def connect(self) -> Out:
        """The link is up: the handshake frames (options, exact consumers with the versions held, wildcards,
        masters with their versions and pending uploads, then a sync probe).

        Exact consumers go before wildcards so the server knows what this client holds before a wildcard
        makes it push data.
        """
        self.connected = True
        frames: list[Frame] = [protocol.options_set({"name": self.name, **self.options})]
        events: list[Event] = []
        for entry in self.entries.values():
            entry.temp_exact = False  # the wildcard re-registration resyncs those
            if entry.exact:
                entry.resyncing = False  # registered again with what it holds (children: by the wildcard's resend)
            entry.confirmed = False
            if entry.exact:
                frames.append(self._registration(entry))
        frames.extend(protocol.consumer_register(p, 0) for p in self.wildcards)
        for master in self.masters.values():
            master.wanted = True
            frames.append(self._producer_registration(master))
            if master.produce and is_wildcard(master.pattern):
                # what this producer made before: the server may have lost it (a router restart)
                frames.extend(protocol.upload(object_id, version, True)
                              for object_id, version in master.versions.items())
            elif not master.produce and master.pending:
                frames.append(self._upload_current(master))  # changed offline: the newer version wins
        held = [e for e in self.entries.values() if e.exact and e.value is not None]
        if held:  # children are confirmed by the wildcard's resend, or stay invalid (they may have vanished)
            frames.append(self._probe_frame())
            for entry in held:
                entry.probe = self._probes
        events.extend(Event("status", entry.id) for entry in self.entries.values())
        return frames, events

    def disconnect(self) -> list[Event]:
        """The link is down: everything held is stale, nothing is valid."""
        self.connected = False
        events = []
        for entry in self.entries.values():
            entry.confirmed = False
            entry.probe = 0
            events.append(Event("status", entry.id))
        writes, self.writes = self.writes, {}
        events.extend(Event("unknown", object_id, frame={"ref": ref}) for ref, object_id in writes.items())
        return events

    def _probe_frame(self) -> Frame:
        self._probes += 1
        return protocol.consumer_unregister(f"{SYNC_PREFIX}{self._probes}")

    # ---- consumers -----------------------------------------------------------------------------

    def consume(self, pattern: str, value: dict[str, Any] | None = None, version: Version = None,
                path: str | None = None) -> Out:
        """Consume an id (optionally seeded with data held from elsewhere) or a wildcard pattern; ``path``
        (exact ids): only that subtree (a JSON Pointer, checked by the caller)."""
        if is_wildcard(pattern):
            if pattern in self.wildcards:
                return [], []
            children = self.wildcards[pattern] = {}
            events = []
            for entry in self.entries.values():
                if entry.value is not None and matches(pattern, entry.id):
                    children[entry.id] = None
                    entry.parents.append(pattern)
                    events.append(Event("adopted", entry.id, pattern))
            return [protocol.consumer_register(pattern, 0)], events
        found = self.entries.get(pattern)
        entry = self.entries[pattern] = EntryState(pattern) if found is None else found
        if entry.exact:
            return [], []
        if path is not None and entry.value is None and not entry.temp_exact:
            entry.path = path
        if value is not None and entry.value is None:
            entry.value, entry.version = value, version
        entry.exact = True
        frames = []
        if not entry.temp_exact:
            frames.append(self._registration(entry))
            if self.connected and entry.value is not None and not entry.confirmed:
                frames.append(self._probe_frame())
                entry.probe = self._probes
        entry.temp_exact = False
        return frames, [Event("status", entry.id)]

    def unconsume(self, pattern: str) -> Out:
        """Stop consuming ``pattern``; ids no longer covered are forgotten (``destroyed`` events)."""
        frames: list[Frame] = []
        events: list[Event] = []
        if is_wildcard(pattern):
            children = self.wildcards.pop(pattern, None)
            if children is None:
                return frames, events
            frames.append(protocol.consumer_unregister(pattern))
            for object_id in children:
                entry = self.entries.get(object_id)
                if entry is not None and pattern in entry.parents:
                    entry.parents.remove(pattern)
                    self._forget_if_orphan(entry, frames, events)
            return frames, events
        entry = self.entries.get(pattern)
        if entry is None or not entry.exact:
            return frames, events
        entry.exact = False
        frames.append(protocol.consumer_unregister(pattern))
        self._forget_if_orphan(entry, frames, events)
        return frames, events

    def _forget_if_orphan(self, entry: EntryState, frames: list[Frame], events: list[Event]) -> None:
        if entry.parents or entry.exact:
            return
        if entry.temp_exact:
            entry.temp_exact = False
            frames.append(protocol.consumer_unregister(entry.id))
        if self.entries.get(entry.id) is entry:
            del self.entries[entry.id]
        events.append(Event("destroyed", entry.id))

    @staticmethod
    def _registration(entry: EntryState) -> Frame:
        known = entry.version if entry.value is not None and not is_null(entry.version) else 0
        return protocol.consumer_register(entry.id, known, entry.path)

    # ---- collections ---------------------------------------------------------------------------

    def collection_update(self, object_id: str, insert: Any = None, remove: Any = None,
                          reset: Any = False) -> tuple[int, Frame]:
        """A write to a collection: its ``ref`` (a counter of this client) and the frame to send. Raises
        ``common.collection.UpdateError`` (with the server's code) for an update the server would refuse.

        Call it only while connected: the ref waits for its answer (a ``written`` event), or for the link to
        drop (an ``unknown`` event)."""
        update = check_update(insert, remove, reset)
        self._refs += 1
        ref = self._refs
        if self.connected:
            self.writes[ref] = object_id
        return ref, protocol.collection_update(object_id, update.insert, update.remove, update.reset, ref)

    def forget_write(self, ref: int) -> None:
        """Stop waiting for the answer to ``ref`` (the writer gave up on it)."""
        self.writes.pop(ref, None)

    def _written(self, message: dict[str, Any]) -> Out:
        ref = message.get("ref")
        object_id = self.writes.pop(ref, None) if isinstance(ref, int) and not isinstance(ref, bool) else None
        if object_id is None:
            return [], [Event("ignored", frame={"reason": f"collection-updated for a ref not waiting ({ref!r})"})]
        return [], [Event("written", object_id, frame=message)]

    # ---- masters -------------------------------------------------------------------------------

    def master(self, pattern: str, value: dict[str, Any] | None = None, version: Version = None, *,
               produce: bool = False, pending: bool = False) -> list[Frame]:
        """Provide ``pattern``: keep-current with ``value``/``version`` (``pending``: changed while offline,
        to upload on connect), or on demand (``produce``)."""
        if pattern in self.masters:
            return []
        master = MasterState(pattern, produce)
        if not produce:
            master.version, master.shadow, master.pending = version, _copy(value), pending
        self.masters[pattern] = master
        frames = [self._producer_registration(master)]
        if pending and not produce and self.connected:
            frames.append(self._upload_current(master))
        return frames

    def unmaster(self, pattern: str) -> list[Frame]:
        master = self.masters.pop(pattern, None)
        if master is None:
            return []
        master.closed = True
        return [protocol.producer_unregister(pattern)]

    def bump(self, pattern: str, value: dict[str, Any], version: Version) -> list[Frame]:
        """A keep-current master has a new version: a patch against what the server has, if smaller, else
        the value; nothing (``pending``) while offline or while nobody consumes it."""
        master = self.masters[pattern]
        raw = codec.dumps(value)
        snapshot = codec.loads(raw)
        old_shadow, old_version = master.shadow, master.version
        master.shadow, master.version = snapshot, version
        if not self.connected or master.closed:
            master.pending = True
            return []
        if not master.wanted:
            return []
        message: Frame = protocol.upload(pattern, version, snapshot)
        master.last_was_patch = False
        if old_shadow is not None and master.server_base is not None and same_version(master.server_base, old_version):
            patch = make_patch(old_shadow, snapshot)
            if len(codec.dumps(patch)) < len(raw):
                message = protocol.upload_patch(pattern, old_version, version, patch)
                master.last_was_patch = True
        master.last_upload = "patch" if master.last_was_patch else "value"
        master.server_base = version
        master.pending = False
        return [message]

    def produced(self, pattern: str, object_id: str, message: dict[str, Any]) -> None:
        """A produce-on-demand master answered an order with ``message`` (recorded for the next handshake)."""
        master = self.masters.get(pattern)
        if master is not None and "version-new" in message:
            master.versions[object_id] = message["version-new"]

    def masters_for(self, object_id: str) -> list[MasterState]:
        """The masters covering an id: the exact one first, then wildcards in registration order."""
        found = [self.masters[object_id]] if object_id in self.masters else []
        found += [m for p, m in self.masters.items() if p != object_id and matches(p, object_id)]
        return found

    @staticmethod
    def _producer_registration(master: MasterState) -> Frame:
        if not master.produce:
            known = master.version
        elif is_wildcard(master.pattern):
            known = 0
        else:
            known = master.versions.get(master.pattern, 0)
        return {**protocol.producer_register(master.pattern), "version-known": known}  # known 0 or null too: sent

    @staticmethod
    def _upload_current(master: MasterState) -> Frame:
        """The full last-bumped value (an order in keep-current mode, a refused patch, a pending change)."""
        master.wanted = True
        master.last_was_patch = False
        master.last_upload = "value"
        master.server_base = master.version
        master.pending = False
        return protocol.upload(master.pattern, master.version, master.shadow if master.shadow is not None else {})

    # ---- incoming frames -----------------------------------------------------------------------

    def receive(self, message: Any) -> Out:
        """Handle one decoded server frame. Bad frames are ignored (an ``ignored`` event says why)."""
        if not isinstance(message, dict):
            return [], [Event("ignored", frame={"reason": "not a JSON object"})]
        action = message.get("action")
        if action == "object-update":
            return self._update(message)
        if action == "object-destroy":
            return self._destroy(message)
        if action == "object-produce":
            return self._produce(message)
        if action == "error":
            return self._error(message)
        if action == "collection-updated":
            return self._written(message)
        if action == "heartbeat":
            return [], []
        return [], [Event("ignored", frame={"reason": f"unknown action {action!r}"})]

    def _update(self, message: dict[str, Any]) -> Out:
        object_id = message.get("id")
        if not isinstance(object_id, str):
            return [], [Event("ignored", frame={"reason": "object-update without a string id"})]
        entry = self.entries.get(object_id)
        created = False
        if entry is None:
            if not any(matches(p, object_id) for p in self.wildcards):
                return [], []
            entry = EntryState(object_id)
            created = True
        version_new = message.get("version-new")
        version_old = message.get("version-old", 0)
        patch: list[Any] | None = None
        frames: list[Frame] = []
        events: list[Event] = []
        boxed = entry.path is not None  # a subtree: any JSON, held as {"value": subtree}
        if "value" in message:
            value = {"value": message["value"]} if boxed else message["value"]
            if not isinstance(value, dict):
                return [], [Event("ignored", object_id, frame={"reason": "object-update value is not an object"})]
        elif "patch" in message:
            patch = message["patch"]
            if not isinstance(patch, list):
                return [], [Event("ignored", object_id, frame={"reason": "object-update patch is not a list"})]
            if boxed:
                patch = _under_box(patch)
            if is_null(version_old):
                base: dict[str, Any] = {}
            elif entry.value is not None and (same_version(version_old, entry.version) or (
                    boxed and is_newer(entry.version, version_old))):
                # (a subtree: the versions between were not sent, nothing under the path moved in them)
                base = entry.value
            else:
                if created:
                    self.entries[object_id] = entry  # a wildcard's new child: resynced like the others
                return self._resync(entry, full=entry.value is None)
            try:
                value = apply_patch(base, patch)  # in place; left unchanged if it fails
                if not isinstance(value, dict):
                    raise PatchError(f"the result is a {type(value).__name__}, not an object")
            except PatchError as exc:
                if created:
                    self.entries[object_id] = entry
                frames, events = self._resync(entry, full=True)
                events.append(Event("ignored", object_id, frame={"reason": f"patch does not apply: {exc}"}))
                return frames, events
        else:
            return [], [Event("ignored", object_id, frame={"reason": "object-update with neither value nor patch"})]
        if created:
            self.entries[object_id] = entry
        for pattern, children in self.wildcards.items():
            if object_id not in children and matches(pattern, object_id):
                children[object_id] = None
                entry.parents.append(pattern)
                events.append(Event("adopted", object_id, pattern))
        entry.resyncing = False
        entry.confirmed = self.connected
        entry.probe = 0
        if patch is None and entry.value is not None and same_version(version_new, entry.version) \
                and value == entry.value:
            events.append(Event("status", object_id))  # a resend of what we hold: confirmed, not a change
        else:
            entry.value, entry.version = value, version_new
            entry.last_patch = message["patch"] if boxed and patch is not None else patch
            entry.error = None
            events.append(Event("changed", object_id, patch=entry.last_patch))
        if entry.temp_exact and not entry.exact:
            entry.temp_exact = False
            frames.append(protocol.consumer_unregister(object_id))
        return frames, events

    def _resync(self, entry: EntryState, full: bool) -> Out:
        """Re-register the id alone: with the version held (a lost update), or with ``RESYNC_VERSION`` when
        the data held is wrong, so the server resends from what we hold or sends the full value."""
        if entry.resyncing and not full:
            return [], []
        events = [Event("status", entry.id)]
        if not full:
            events.append(Event("ignored", entry.id, frame={
                "reason": f"a patch from a version this client does not hold, it holds {entry.version!r} "
                          "(an update was lost); resyncing"}))
        if full:
            entry.value = entry.version = None
        entry.resyncing = True
        entry.confirmed = False
        if not entry.exact:
            entry.temp_exact = True  # a wildcard child: a direct registration, dropped once synced
        known: Version = list(RESYNC_VERSION) if full else entry.version
        return [protocol.consumer_register(entry.id, known, entry.path)], events


    def _destroy(self, message: dict[str, Any]) -> Out:
        object_id = message.get("id")
        if not isinstance(object_id, str):
            return [], [Event("ignored", frame={"reason": "object-destroy without a string id"})]
        frames: list[Frame] = []
        events: list[Event] = []
        entry = self.entries.get(object_id)
        if entry is not None and entry.parents:
            for pattern in tuple(entry.parents):
                self.wildcards.get(pattern, {}).pop(object_id, None)
                events.append(Event("dropped", object_id, pattern))
            entry.parents.clear()
            self._forget_if_orphan(entry, frames, events)
        for master in self.masters_for(object_id):
            if master.produce:
                master.versions.pop(object_id, None)
            else:
                master.wanted = False
                master.server_base = None
        return frames, events

    def _produce(self, message: dict[str, Any]) -> Out:
        object_id = message.get("id")
        if not isinstance(object_id, str):
            return [], [Event("ignored", frame={"reason": "object-produce without a string id"})]
        masters = self.masters_for(object_id)
        if not masters:
            return [protocol.cancel(object_id)], [
                Event("ignored", object_id, frame={"reason": "asked to produce an id this client does not master"})]
        master = masters[0]
        if not master.produce:
            inferred = message.get("version-inferred")
            events = []
            if inferred is not None and is_newer(master.version, inferred):
                events.append(Event("ignored", object_id, frame={"reason": "the server wants a newer version"}))
            return [self._upload_current(master)], events
        return [], [Event("produce", object_id, master.pattern, frame=message)]

    def _error(self, message: dict[str, Any]) -> Out:
        frames: list[Frame] = []
        events: list[Event] = []
        pattern = message.get("pattern")
        if message.get("request") == "object-consumer-unregister" and isinstance(pattern, str) \
                and pattern.startswith(SYNC_PREFIX):
            try:
                probe = int(pattern[len(SYNC_PREFIX):])
            except ValueError:
                probe = 0
            for entry in self.entries.values():
                if entry.probe and entry.probe <= probe and not entry.resyncing and entry.value is not None:
                    entry.probe = 0
                    entry.confirmed = self.connected
                    events.append(Event("status", entry.id))
            return frames, events  # our own probe: not the user's business
        ref = message.get("ref")
        if message.get("request") == "collection-update" and isinstance(ref, int) and not isinstance(ref, bool) \
                and ref in self.writes:
            return frames, [Event("written", self.writes.pop(ref), frame=message)]
        object_id = message.get("id")
        master = self.masters.get(object_id) if isinstance(object_id, str) else None
        if master is not None and not master.produce and master.last_was_patch \
                and message.get("request") == "object-patch":
            frames.append(self._upload_current(master))  # the server refused our patch: the full value
        if isinstance(object_id, str) and message.get("request") in ("object-produce", None):
            held = self.entries.get(object_id)
            if held is not None:
                held.error = str(message.get("message", "error"))
                events.append(Event("status", object_id))
        events.append(Event("error", object_id if isinstance(object_id, str) else None, frame=message))
        return frames, events


def _copy(value: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else codec.loads(codec.dumps(value))


def _under_box(patch: list[Any]) -> list[Any]:
    """A subtree's patch made to apply to its box ``{"value": subtree}`` (a bad op stays bad: it then fails)."""
    out = []
    for op in patch:
        if isinstance(op, dict) and isinstance(op.get("path"), str):
            op = {**op, "path": "/value" + op["path"]}
            if isinstance(op.get("from"), str):
                op["from"] = "/value" + op["from"]
        out.append(op)
    return out
