"""The object store: the pure core of the router (no I/O, no clock).

It owns every object's lifetime, versions, dependencies and production queue, and every session's
registrations and last-sent versions. It is driven by ``handle_raw(session, raw, now)`` (or ``handle(session, message)`` with messages
already validated by ``common.protocol.parse``), ``tick(now)`` and ``expire_orders(now)``: the time is an
argument, the store reads no clock. It answers with ``take_outbox()``: ``Delivery(frame, sessions)``
pairs, each frame encoded once whatever the number of sessions it goes to. Its hooks (the access hook,
the log, the metrics and introspection callbacks) are constructor arguments.

The semantics are seapig 0.2's (see docs/PROTOCOL.md and the reference), with its bugs fixed: anchored
wildcards, the queue purged on despawn, and no exception escaping for any input.

Vocabulary:
- a *direct* consumer/producer registered the exact id; a *wildcard* one registered a pattern covering it;
- *known* is the highest version uploaded (with data, or a stall); *inferred* is the version the router
  believes should exist (the newest announced, with dependency versions raised as dependencies move);
- an object is *current* when inferred equals known; otherwise it is queued for production, being
  produced, or waiting for a dependency to reach the version it requires.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import replace
from typing import Any, Callable, Iterable, NamedTuple, Protocol, Sequence, cast

from common import codec, protocol, subtree
from common.diff import PatchTooLarge, apply_patch, json_equal, make_patch
from common.patterns import is_wildcard, matches
from common.versioning import (MIXED, OLDER, Version, below_floor, compare, is_newer, is_null, newest,
                               raise_floor, same, version_key)
from router import limits as budget
from router.auth import DENY_ALL
from router.limits import Limits


MAX_PREFETCH = 1000
"""Upper bound of a session's "prefetch" option (production orders held at once)."""
PATCH_ALWAYS_BELOW = 512  # bytes of a full-value frame under which a retained base always gets a patch
MAX_BEHIND = 5
"""Consecutive production results older than their order after which an object is marked in error."""
QUICK_CANCELS = 1
"""Consecutive uploads that cannot apply (answering an order) requeued at once; later ones back off."""
MAX_DECISIONS = 4096
"""Access decisions cached per session (role, id or pattern): the hook is asked once per id, memory stays bounded."""
MAX_COLLECTION_QUEUE = 1000
"""Updates waiting per collection (one is applied at a time): past it a writer gets ``collection-busy``."""
MAX_SESSION_WRITES = 100
"""Collection updates one session may have waiting or in flight: past it, ``too-many-writes``."""
MAX_ALIASES = 64
"""Versions skipped by --skip-unchanged remembered per object (their data equals a retained version's):
a client holding an older skipped version gets the full value instead of a patch (correct, only larger)."""
MAX_SERIALS = 256
"""Versions of an object with path subscribers whose count is kept (a subtree held at an older one that is
not retained either is sent whole, as before the counts)."""
_VALUE_AT = len(protocol.update_value("", 0, {})) - 3 - len(codec.dumps("")) - len(codec.dumps(0))
"""Where the value starts in ``protocol.update_value``'s frame, less the encoded id and version (``value`` is
its last field; ``{}}`` is the empty value and the frame's end): read once from the frame itself."""
INTERNAL = "internal"
"""Error code of the frame answering a message whose handling raised inside the store (our own bug)."""
_EXPIRED = object()  # Order.key of an order taken back past limits.order_timeout (no longer in obj.in_flight)


class Gate:
    """The sessions of one link (a front's): while the link is out of credit the router closes the gate,
    and ``_push`` records which objects changed for them (latest wins, like a paused session) in O(1)
    per (gate, object) instead of each session being paused one by one; ``release`` brings them up to date."""

    __slots__ = ("closed", "stale")

    def __init__(self) -> None:
        self.closed = False
        self.stale: dict[str, None] = {}  # object ids changed while closed, in order of first change


class SubtreeKey(NamedTuple):
    """The key of a subtree subscription's frame in ``SyncObject.frames``: (held version key, path)."""

    held: Any
    path: str


OPEN_GATE = Gate()
"""The gate of sessions whose link has no credit (workers, the introspection session, old fronts): never closed."""


PathSessions = tuple[Version, list["Session"], list[str]]
"""A push's subtree sessions holding one version: (that version, the sessions, their paths)."""


class Session:
    """One client connection (websocket client, worker, or any peer session)."""

    __slots__ = ("address", "name", "options", "consumes", "produces", "producing", "prefetch", "held",
                 "index", "productions", "errors", "guarded", "access", "paused", "stale", "decisions",
                 "objects", "pattern_chars", "version_bytes", "known_sizes", "gate", "client", "writes",
                 "unchanged", "paths")

    def __init__(self, address: Any, index: int, gate: Gate = OPEN_GATE) -> None:
        self.address = address  # opaque to the store: the router shell's address for this session
        self.gate = gate  # its link's credit gate (see Gate)
        self.index = index
        self.name = ""
        self.options: dict[str, Any] = {}
        self.consumes: dict[str, None] = {}  # patterns, in registration order
        self.produces: dict[str, None] = {}
        self.producing: dict[str, Order] = {}  # orders in flight, oldest first, by object id
        self.prefetch = 1  # orders it may hold at once: seapig's one, or its "prefetch" option
        self.productions = 0  # answers to object-produce with data
        self.errors = 0  # answers carrying a production error
        self.guarded = False  # subject to the --auth hook (websocket clients; workers join with the secret)
        self.access: Any = None  # None: everything allowed; else the hook's answer
        self.decisions: dict[tuple[str, str], bool] = {}  # (role, id or pattern) -> the hook's answer, bounded
        self.paused = False  # the client reads too slowly: updates wait, coalesced, in `stale`
        self.stale: dict[str, None] = {}
        self.held: dict[str, Version] = {}  # object id -> version this client holds (the last one sent to it)
        self.paths: dict[str, str] = {}  # object id -> the JSON Pointer of the subtree it watches (issue 17)
        # budgets (router/limits.py): what this session costs the router
        self.objects = 0  # objects its messages caused to exist, still alive
        self.pattern_chars = 0  # total length of its registered patterns
        self.version_bytes = 0  # encoded size of the list/hash versions it registered with version-known
        self.known_sizes: dict[str, int] = {}  # pattern -> encoded size of that version-known
        self.client = False  # a websocket client (through a front): never a worker, whatever the hook
        self.writes = 0  # its collection updates waiting or in flight (MAX_SESSION_WRITES)
        self.unchanged = 0  # its uploads whose data equalled what the router held (only the version moved)

    @property
    def has_slot(self) -> bool:
        """True if it may take one more production order."""
        return len(self.producing) < self.prefetch

    @property
    def client_id(self) -> str:
        """seapig's ``name:N`` form, shown by introspection."""
        return f"{self.name}:{self.index}"

    def __repr__(self) -> str:
        return f"<Session {self.client_id}>"


class Delivery(NamedTuple):
    """One outbox entry: a frame encoded once, and the sessions it goes to (in the store's order)."""

    frame: bytes
    sessions: Sequence[Session]  # a list, or the one-session tuple of an answer (never changed once queued)


class Log(Protocol):
    """The shell's warning logger (``logging.Logger.warning``'s shape): the store does no I/O itself."""

    def __call__(self, msg: str, *args: Any, exc_info: BaseException | None = None) -> None: ...


class Write(NamedTuple):
    """A collection update waiting for, or being applied by, a worker."""

    writer: Session
    message: dict[str, Any]  # the checked collection-update
    ticket: str  # instance:counter, unique across router restarts (stored with the update by the worker)
    worker: Session | None = None
    since: float = 0.0  # store time it was sent to its worker, or put back in line for a retry
    retry: bool = False  # its worker went away or stayed silent: it waits for another one


class Order(NamedTuple):
    """A production order in flight on a session."""

    obj: "SyncObject"
    inferred: Version  # the inferred version it was ordered for
    since: float  # store time it was ordered
    key: Any  # version_key(inferred): its entry in obj.in_flight


class SyncObject:
    """One live object: its retained data versions, version bookkeeping and attached sessions."""

    __slots__ = ("id", "history", "sizes", "full_frame", "known", "stalled", "inferred", "consumers", "producers",
                 "dependencies", "in_flight", "frames", "queued", "waiting",
                 "productions", "production_ms", "produced_at", "errors", "last_error",
                 "failures", "started_at", "behind", "broken", "floor", "cancels", "cause", "lingering",
                 "unchanged", "aliases", "path_index", "serial", "serials", "patches")

    def __init__(self, object_id: str) -> None:
        self.id = object_id
        self.history: list[tuple[Version, dict[str, Any]]] = []  # retained data versions, oldest first
        self.sizes: list[int] = []  # encoded size of each retained version
        self.full_frame = b""  # the object-update frame carrying the latest value, encoded once
        self.known: Version = 0
        self.stalled = False
        self.inferred: Version = None
        self.consumers: dict[Session, None] = {}
        self.producers: dict[Session, None] = {}
        self.dependencies: dict[str, None] = {}
        self.in_flight: dict[Any, Session] = {}  # version_key(inferred) -> producing session
        self.frames: dict[Any, bytes] = {}  # version_key(old) -> update frame to the latest data
        # version_key(old) -> the patch from its retained data to the latest: one diff per version and held
        # version for the object's frame and every path's, however many pushes (reset with ``frames``)
        self.patches: dict[Any, list[Any]] | None = None  # (None until a push diffs: an idle object's bytes)
        self.queued = False
        self.waiting = False
        self.productions = 0
        self.production_ms: float | None = None  # duration of the last production
        self.produced_at: float | None = None  # store time of the last production answer
        self.errors = 0
        self.last_error: str | None = None
        self.failures = 0  # consecutive failed productions: the retry backoff doubles with each
        self.started_at: float | None = None  # store time the last production was ordered
        self.behind = 0  # consecutive production results older than the version they were ordered for
        self.broken: Any = None  # version_key(inferred) given up on after MAX_BEHIND such results
        # highest version of each dependency this object's data was built from, over every version it held:
        # a hash version naming one of them older is refused, so no sequence of key sets goes backwards
        self.floor: dict[str, Version] = {}
        self.cancels = 0  # consecutive orders answered by an upload that cannot apply (see _upload_cancelled)
        self.cause: int | None = None  # Session.index of the session whose message spawned it (its budget)
        self.lingering: float | None = None  # store time it is dropped at, while kept with nobody watching
        self.unchanged = 0  # uploads whose data equalled the data held (only the version moved)
        # --skip-unchanged: versions that were not pushed because their data equalled the next one's, by
        # version_key -> that data (an entry of history, shared): a client still holding one gets a patch
        # from it. Kept only while that data is retained, at most MAX_ALIASES (see _skip_unchanged).
        self.aliases: dict[Any, dict[str, Any]] = {}
        # the paths its subtree consumers watch, so a push rebases its patch only to the paths it touches;
        # filled by _push (every path pushed to is in it), rebuilt when it outgrows its consumers (_path_index)
        self.path_index: subtree.PathIndex | None = None
        # versions counted (1, 2, ... per data version), and, while it has a path index, the count of each
        # of the last MAX_SERIALS versions by version_key: the index says which paths changed after one
        self.serial = 0
        self.serials: dict[Any, int] | None = None  # (made with the path index)

    @property
    def latest(self) -> tuple[Version, dict[str, Any]] | None:
        return self.history[-1] if self.history else None

    def data_at(self, version: Version) -> dict[str, Any] | None:
        """The retained data of ``version`` ({} for the null version), or None if not retained."""
        if is_null(version):
            return {}
        data: dict[str, Any]  # (mypy reads reversed() of a list holding Any as Any)
        for v, data in reversed(self.history):
            if same(v, version):
                return data
        if self.aliases:
            return self.aliases.get(version_key(version))
        return None

    @property
    def state(self) -> str:
        if self.lingering is not None:
            return "lingering"  # nobody wants it; kept current until then (sync-router --linger)
        if self.in_flight:
            return "producing"
        if self.queued:
            return "enqueued"
        if self.waiting:
            return "waiting for dependencies"
        if self.inferred is not None and same(self.inferred, self.known):
            return "current"
        if self.broken is not None and self.broken == version_key(self.inferred):
            return "error"  # its producers keep answering with older versions: not ordered again until it moves
        return "delayed"  # held back by a retry backoff or the minimum interval between productions


class ObjectStore:
    """All objects and sessions. Not thread-safe; one router loop drives it."""

    def __init__(self, retain: int = 2, retain_bytes: int = 1 << 22, min_interval: float = 0.0,
                 retry_base: float = 0.5, retry_max: float = 30.0, max_registrations: int | None = None,
                 max_behind: int = MAX_BEHIND, limits: Limits | None = None, *,
                 authenticate: Callable[[dict[str, Any]], Any] | None = None, log: Log | None = None,
                 on_production: Callable[[float], None] | None = None,
                 on_consumer_added: Callable[[SyncObject], None] | None = None, instance: str = "0",
                 linger: float = 0.0, linger_bytes: int = 64 << 20, skip_unchanged: bool = False) -> None:
        """``retain``: data versions kept per object, so a client up to ``retain - 1`` versions behind
        resyncs with one patch; versions older than the previous one are kept only while they fit in
        ``retain_bytes`` per object. ``min_interval``: seconds between two
        productions of one object; when set, an object also has at most one production in flight, and
        bumps arriving meanwhile are coalesced into the next one. ``retry_base``/``retry_max``: the
        backoff after a failed production (doubling per consecutive failure). ``max_behind``: consecutive
        productions answered with a version older than ordered before the object is marked in error.
        ``limits``: every budget (router/limits.py); ``max_registrations`` overrides its field of that
        name (the older keyword).

        Hooks, fixed for the store's life (given here, not set from outside, so what the store calls is
        visible in one place): ``authenticate(options)`` -> access object (may_consume/may_produce) or
        None, the --auth hook; ``log``, the shell's warning logger for what the store refused or gave up
        on; ``on_production(seconds)`` per production (metrics); ``on_consumer_added(obj)`` when a
        consumer registers on an existing object, before it is sent the value (an object built from the
        store's own state, introspection, may upload a fresh one that counts it). ``instance``: this
        router's unique name (router.py's epoch), the prefix of collection tickets.

        ``linger``: seconds a current object is kept after its last watcher leaves (0: dropped at once, as
        seapig), so a reload or a reconnect storm finds it current and costs no production; at most
        ``linger_bytes`` of lingering values are kept (the oldest dropped first).

        ``skip_unchanged``: an upload whose data equals the data held (only the version moved) is not pushed
        to consumers (seapig, and the default, push ``patch: []`` with the new version); it is counted
        either way (``unchanged_total``, per object and per session)."""
        if retain < 1:
            raise ValueError("retain must be at least 1")
        self.retain = retain
        self.retain_bytes = retain_bytes
        self.limits = limits or Limits()
        if max_registrations is not None:
            self.limits = replace(self.limits, max_registrations=max_registrations)
        self.pattern_chars = 0  # total length of the distinct patterns in consumer_patterns and producer_patterns
        self.wildcards = 0  # distinct wildcard patterns in them
        self._actor: Session | None = None  # the session whose message is being handled (spawns are charged to it)
        self._by_index: dict[int, Session] = {}  # open sessions by index: an object names its cause by index,
        # so that a closed session is not kept alive by the objects it spawned
        self._refused_spawn = False  # an object-limit error was sent for the current message
        self._authenticate_hook = authenticate
        self.min_interval = min_interval
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.max_behind = max_behind
        self.delayed: dict[str, float] = {}  # object id -> time before which it is not queued
        self.reserved: dict[str, Session] = {}  # id prefix -> the only session that may produce those ids
        self._reserved_prefixes: tuple[str, ...] = ()  # its keys, for one str.startswith per id
        self.objects: dict[str, SyncObject] = {}
        self.sessions: dict[Session, None] = {}
        # dependency id -> ids of objects that declare it (a dict: re-production follows declaration order)
        self.dependents: dict[str, dict[str, None]] = {}
        # pattern -> sessions that registered it: lookups by id stay O(distinct wildcard patterns)
        self.consumer_patterns: dict[str, dict[Session, None]] = {}
        self.producer_patterns: dict[str, dict[Session, None]] = {}
        # the wildcard entries of the two tables above (the same inner dicts): a new id is looked up by key
        # among exact patterns and matched only against these, so a spawn costs O(wildcards), not O(patterns)
        self.consumer_wildcards: dict[str, dict[Session, None]] = {}
        self.producer_wildcards: dict[str, dict[Session, None]] = {}
        self.queue: OrderedDict[str, None] = OrderedDict()
        self.outbox: list[Delivery] = []
        # Batch mode, per call (handle_raw's ``coalesce``): the shell asks for it while it is behind. New
        # versions are then pushed when the outbox is taken, once per object however many arrived
        # meanwhile (see _append). Off: every version is pushed.
        self._coalesce = False
        # objects with a new version not pushed yet -> the outbox position where their push goes
        self._changed: dict[str, tuple[SyncObject, int]] = {}
        # dependencies with a new version whose dependents are raised when the outbox is taken (batch mode:
        # a dependency bumped 1,000 times in one batch re-checks its dependents once, not 1,000 times)
        self._moved: dict[str, None] = {}
        self._session_count = 0
        self._freed: dict[Session, None] = {}  # producers that became free in the current message
        self._due: dict[Session, None] = {}  # ... and in earlier messages, not yet offered the queue
        self._now = 0.0  # the time given with the last call that took one: the store reads no clock
        self.productions_total = 0
        self.errors_total = 0
        self.unchanged_total = 0  # uploads whose data equalled the data held (see _unchanged)
        self.skip_unchanged = skip_unchanged
        self._on_production = on_production
        self._log = log
        self._on_consumer_added = on_consumer_added
        # writable collections (issue 15): per collection, a FIFO of updates and the one being applied
        self._instance = instance
        self._tickets = 0
        self.writes: dict[str, deque[Write]] = {}
        self.applying: dict[str, Write] = {}
        self.linger = linger
        self.linger_bytes = linger_bytes
        self.lingering: dict[str, int] = {}  # lingering object id -> its value's bytes, oldest first
        self._lingering_bytes = 0

    @property
    def now(self) -> float:
        """The store time: the ``now`` of the last call that passed one (read-only; pass time as an argument)."""
        return self._now

    @property
    def authenticate(self) -> Callable[[dict[str, Any]], Any] | None:
        """The --auth hook given to the constructor (introspection reads its declared secret options)."""
        return self._authenticate_hook

    # Read-only on purpose: these were attributes the shell set from outside; an old caller assigning
    # one now fails loudly (AttributeError) instead of being silently ignored.
    @property
    def log(self) -> Log | None:
        return self._log

    @property
    def on_production(self) -> Callable[[float], None] | None:
        return self._on_production

    @property
    def on_consumer_added(self) -> Callable[[SyncObject], None] | None:
        return self._on_consumer_added

    @property
    def coalesce(self) -> bool:
        """Batch mode of the message being handled (an argument of handle_raw, not a setting)."""
        return self._coalesce
    @property
    def max_registrations(self) -> int:
        """The older name of ``limits.max_registrations`` (kept: it was a public attribute)."""
        return self.limits.max_registrations

    @max_registrations.setter
    def max_registrations(self, value: int) -> None:
        self.limits = replace(self.limits, max_registrations=value)

    # ---- sessions -----------------------------------------------------------------------------

    def open(self, address: Any, guarded: bool = False, gate: Gate = OPEN_GATE) -> Session:
        """A new session; a guarded one may do nothing until the --auth hook accepts its options. ``gate``:
        its link's (see hold/release); sessions of one front share one."""
        self._session_count += 1
        session = Session(address, self._session_count, gate)
        session.client = guarded
        if guarded and self._authenticate_hook is not None:
            session.guarded = True
            session.access = DENY_ALL
        self.sessions[session] = None
        self._by_index[session.index] = session
        return session

    def close(self, session: Session) -> None:
        """A disconnect unregisters everything the session registered and requeues its production."""
        if session not in self.sessions:
            return
        for pattern in list(session.produces):
            self._producer_unregister(session, pattern)
        for pattern in list(session.consumes):
            self._consumer_unregister(session, pattern)
        for object_id in list(session.producing):
            self._cancel_production(session, object_id)
        del self.sessions[session]
        self._by_index.pop(session.index, None)
        self._writes_closed(session)
        self._assign()

    def pause(self, session: Session) -> None:
        """The client's connection is congested: hold its updates (only the latest state will be sent)."""
        session.paused = True

    def resume(self, session: Session) -> None:
        """The congestion cleared: bring the client to the latest version of everything that changed."""
        session.paused = False
        stale, session.stale = session.stale, {}
        for object_id in stale:
            obj = self.objects.get(object_id)
            if obj is not None and session in obj.consumers:
                self._push(obj, (session,))

    def hold(self, gate: Gate) -> None:
        """A link is out of credit (its front is behind): its sessions' updates wait, latest wins. O(1)."""
        if gate is not OPEN_GATE:
            gate.closed = True

    def release(self, gate: Gate) -> None:
        """Credit is back: bring the link's sessions to the latest version of every object that changed
        while held (a patch from what each holds when retained, else the value; paused ones stay held)."""
        if not gate.closed:
            return
        gate.closed = False
        stale, gate.stale = gate.stale, {}
        for object_id in stale:
            obj = self.objects.get(object_id)
            if obj is not None:
                self._push(obj, [s for s in obj.consumers if s.gate is gate])

    def handle_raw(self, session: Session, raw: bytes, now: float, coalesce: bool = False) -> None:
        """Parse and apply one client frame at time ``now``; an invalid one gets an error frame, nothing
        else changes. ``coalesce``: batch mode, asked by the shell while many messages wait (new versions
        are pushed once per object when the outbox is taken, see _append)."""
        self._now = now
        self._coalesce = coalesce
        try:
            message = protocol.parse(raw)
        except protocol.ProtocolError as exc:
            self._send(protocol.error(exc.message, **exc.context), (session,))
            if exc.context.get("code") == protocol.PATCH_INVALID:  # seapig: a cancel, requeued (issue 12 item 4)
                self._upload_cancelled(session, exc.context.get("id"), exc.message)
            elif exc.context.get("request") == "object-patch":  # an answer it cannot parse still ends its order
                self._answer_refused(session, exc.context.get("id"), f"answer refused: {exc.message}")
            return
        try:
            self.handle(session, message)
        except Exception as exc:  # our own bug (DESIGN principle 3): answered and logged, never dropped
            self._internal_error(session, message, exc)

    def _internal_error(self, session: Session, message: dict[str, Any], exc: Exception) -> None:
        """A message whose handling raised: its sender gets an ``internal`` error frame (so a client is
        not left waiting for an answer that never comes), the shell's log gets the traceback, and the
        order it answered, if any, does not stay held. The rest of the batch goes on."""
        self._actor = None
        action, object_id = message.get("action"), message.get("id")
        text = f"internal error while handling {action}: {type(exc).__name__}"
        if self._log is not None:
            self._log("%s from %s (%.200s %.200s)", text, session, action, object_id or message.get("pattern"),
                      exc_info=exc)
        self._send(protocol.error(f"{text}; the router logged it", code=INTERNAL, request=action,
                                  id=object_id, pattern=message.get("pattern")), (session,))
        if action == "object-patch":
            try:
                self._answer_refused(session, object_id, f"answer refused: internal error {type(exc).__name__}")
            except Exception as again:  # the store stays up whatever its state
                if self._log is not None:
                    self._log("internal error again while ending the order of %.200s", object_id, exc_info=again)

    def _answer_refused(self, session: Session, object_id: Any, error: str) -> None:
        """The one path for an answer the store does not accept (unparsable, invalid, refused by a check or
        a budget): if the session holds an order for that id, the order is over and counts as a failed
        production (watchers told, retry backoff), so no answer can leave a producer slot held."""
        if isinstance(object_id, str) and object_id in session.producing:
            if self._log is not None:
                self._log("order of %.200s ended: %s refused the answer (%.300s)", object_id, session, error)
            self._report_production_error(session, object_id, error)
            order = session.producing.get(object_id)
            if order is not None and order.key is _EXPIRED:  # a late answer ends an expired order too
                self._cancel_production(session, object_id, requeue=False)

    def handle(self, session: Session, message: dict[str, Any], now: float | None = None) -> None:
        """Apply one validated message (see common.protocol.parse), at ``now`` if given (else the store
        time of the last call). Exceptions propagate: handle_raw is the guarded entry point."""
        if now is not None:
            self._now = now
        if self._freed:  # freed by the previous message: offered the queue before this one queues anything
            self._due.update(self._freed)
            self._freed = {}
        action = message["action"]
        if not self._allowed(session, message) or not self._within_budgets(session, message):
            return
        self._actor, self._refused_spawn = session, False  # spawns below are charged to this session
        if action == "object-patch":
            self._patch(session, message)
        elif action == "object-consumer-register":
            self._consumer_register(session, message["pattern"], message["version-known"], message.get("path"))
        elif action == "object-producer-register":
            self._producer_register(session, message["pattern"], message["version-known"])
        elif action == "object-consumer-unregister":
            self._consumer_unregister(session, message["pattern"])
        elif action == "object-producer-unregister":
            self._producer_unregister(session, message["pattern"])
        elif action == "collection-update":
            self._collection_update(session, message)
        elif action == "collection-applied":
            self._collection_applied(session, message)
        elif action == "client-options-set":
            session.options = message["options"]
            name = session.options.get("name")
            session.name = name if isinstance(name, str) else ""
            prefetch = session.options.get("prefetch", 1)
            session.prefetch = min(prefetch, MAX_PREFETCH) if type(prefetch) is int and prefetch >= 1 else 1
            self._freed[session] = None  # it may have more room now
            if self.writes and not session.client and session.options.get("collections"):
                for object_id in [oid for oid in self.writes if oid not in self.applying]:
                    self._collection_next(object_id)  # updates waiting for a worker: this one may serve them
        self._actor = None
        # Producers freed by this message get their next orders when the outbox is taken (once per batch
        # of messages, not once per message); _enqueue assigns them first if an object is queued meanwhile.

    def _allowed(self, session: Session, message: dict[str, Any]) -> bool:
        """Registration limits and the access hook; a refusal is an error frame and nothing else."""
        action = message["action"]
        if action == "client-options-set":
            return self._authenticate(session, message["options"])
        if action == "collection-applied":  # a worker's answer: never from a websocket client
            if session.client:
                self._refuse(session, message, "collection-applied is a worker's answer", code="forbidden")
                return False
            return True
        if action == "collection-update":
            return self._write_allowed(session, message)
        # every validated message but client-options-set (answered above) has a str pattern or id
        pattern = cast(str, message.get("pattern", message.get("id")))
        if action in ("object-patch", "object-producer-register") and not is_wildcard(pattern):
            owner = self._reserved_owner(pattern)
            if owner is not None and owner is not session:
                self._refuse(session, message, f"{pattern!r} is produced by the router itself", code="reserved-id")
                return False
        if session.access is None or action.endswith("unregister"):
            return True
        role = "consume" if action == "object-consumer-register" else "produce"
        try:
            allowed = session.access.may_consume(pattern) if role == "consume" else session.access.may_produce(pattern)
        except Exception as exc:  # user code must not take the router down
            allowed = False
            self._refuse(session, message, f"access check failed: {type(exc).__name__}: {exc}",
                         code="access-check-failed")
            return False
        if not allowed:
            self._refuse(session, message, f"not allowed to {role} {pattern!r}", code="forbidden")
            return False
        return self._upload_allowed(session, message)

    def _upload_allowed(self, session: Session, message: dict[str, Any]) -> bool:
        """For a session under the hook: an upload needs a producer registration covering its id (seapig
        masters register first; without it anyone allowed to produce a name could overwrite another
        producer's object), and every dependency its version names must pass the hook too (a hash key is
        an id the router will spawn and order: a writer of ``public-mine`` must not make it produce
        ``admin-payroll``)."""
        action = message["action"]
        if action == "object-patch":
            object_id = message["id"]
            if not any(matches(p, object_id) for p in session.produces):
                self._refuse(session, message, f"not registered as a producer of {object_id!r}: with an access "
                                               f"hook, uploads need an object-producer-register covering the id",
                             code="not-a-producer")
                return False
            version = message.get("version-new")
        elif action == "object-producer-register" and not is_wildcard(message["pattern"]):
            version = message.get("version-known")
        else:
            return True
        if isinstance(version, dict):
            for dep in version:
                if not self._may(session, "consume", dep):
                    self._refuse(session, message, f"not allowed to depend on {dep!r:.200}", code="forbidden-dependency")
                    return False
        return True

    def _may(self, session: Session, role: str, name: str) -> bool:
        """The hook's decision for one object id (or pattern), cached per session: access is decided per id,
        so a wildcard registration never delivers, orders or spawns an id the hook refuses for the session.
        A hook that raises refuses."""
        access = session.access
        if access is None:
            return True
        key = (role, name)
        decision = session.decisions.get(key)
        if decision is None:
            try:
                decision = bool(access.may_consume(name) if role == "consume" else access.may_produce(name))
            except Exception:  # user code must not take the router down
                decision = False
            if len(session.decisions) >= MAX_DECISIONS:
                session.decisions.clear()
            session.decisions[key] = decision
        return decision

    def _authenticate(self, session: Session, options: dict[str, Any]) -> bool:
        if self._authenticate_hook is None or not session.guarded:
            return True
        try:
            session.access = self._authenticate_hook(options) or DENY_ALL
        except Exception as exc:
            session.access = DENY_ALL
            self._refuse(session, {"action": "client-options-set"}, f"authentication failed: {type(exc).__name__}: {exc}",
                         code="authentication-failed")
        else:
            if session.access is DENY_ALL:
                self._refuse(session, {"action": "client-options-set"}, "authentication failed", code="authentication-failed")
        session.decisions = {}
        self._revoke(session)
        return True

    def _revoke(self, session: Session) -> None:
        """After (re-)authentication, drop whatever the new access no longer allows: registrations whose
        pattern it refuses, then, per object id, deliveries and orders a remaining wildcard covered. A
        revoked token thus stops the data at once, not at the next reconnect."""
        if not (session.consumes or session.produces):
            return
        for role, registered, unregister in (("consume", session.consumes, self._consumer_unregister),
                                             ("produce", session.produces, self._producer_unregister)):
            for pattern in [p for p in registered if not self._may(session, role, p)]:
                unregister(session, pattern)
                if self._log is not None:
                    self._log("%s: registration %.200r dropped, no longer allowed to %s it", session, pattern, role)
                action = f"object-{role}r-register"
                self._send(protocol.error(f"registration of {pattern!r:.200} dropped: no longer allowed to {role} it",
                                          request=action, pattern=pattern, code="access-revoked"), (session,))
        for obj in list(self.objects.values()):
            touched = False
            if session in obj.producers and not self._may(session, "produce", obj.id):
                del obj.producers[session]
                self._cancel_production(session, obj.id)
                touched = True
            if session in obj.consumers and not self._may(session, "consume", obj.id):
                del obj.consumers[session]
                session.held.pop(obj.id, None)
                self._send(protocol.destroy(obj.id), (session,))
                touched = True
            if touched:
                self._despawn_if_dead(obj)

    def _refuse(self, session: Session, message: dict[str, Any], text: str, code: str) -> None:
        context = {k: message[k] for k in ("id", "pattern") if isinstance(message.get(k), str)}
        self._send(protocol.error(text, request=message["action"], code=code, **context), (session,))
        if message["action"] == "object-patch":  # a refused answer still ends the order it answered
            self._answer_refused(session, message.get("id"), f"answer refused: {text}")

    # ---- budgets (router/limits.py) -----------------------------------------------------------

    def _within_budgets(self, session: Session, message: dict[str, Any]) -> bool:
        """Sizes and counts a message would grow: refused whole, with an error frame, before anything
        changes. Also keeps the session's version-known account (the message is applied right after)."""
        limits = self.limits
        action = message["action"]
        for field in ("version-known", "version-new", "version-old"):
            version = message.get(field)
            if not isinstance(version, (dict, list)):
                continue
            if isinstance(version, dict) and len(version) > limits.max_dependencies:
                self._refuse(session, message, f"'{field}' names {len(version)} dependencies; at most "
                                               f"{limits.max_dependencies} are allowed", budget.TOO_MANY_DEPENDENCIES)
                return False
            if len(codec.dumps(version)) > limits.max_version:
                self._refuse(session, message, f"'{field}' encodes to more than {limits.max_version} bytes",
                             budget.VERSION_TOO_LARGE)
                return False
        if action == "object-consumer-unregister":
            session.version_bytes -= session.known_sizes.pop(message["pattern"], 0)
            return True
        if action not in ("object-consumer-register", "object-producer-register"):
            return True
        pattern = message["pattern"]
        consumer = action == "object-consumer-register"
        if pattern.count("*") > limits.max_stars:
            self._refuse(session, message, f"a pattern may hold at most {limits.max_stars} '*'", budget.PATTERN_LIMIT)
            return False
        registered, table = (session.consumes, self.consumer_patterns) if consumer else \
            (session.produces, self.producer_patterns)
        if pattern not in registered:
            if len(session.consumes) + len(session.produces) >= limits.max_registrations:
                self._refuse(session, message, f"registration limit reached ({limits.max_registrations} patterns "
                                               f"per session); unregister something first", budget.REGISTRATION_LIMIT)
                return False
            if session.pattern_chars + len(pattern) > limits.max_session_pattern_chars:
                self._refuse(session, message, f"this session's patterns would total more than "
                                               f"{limits.max_session_pattern_chars} characters", budget.PATTERN_LIMIT)
                return False
        if pattern not in table:
            full = None
            if len(self.consumer_patterns) + len(self.producer_patterns) >= limits.max_patterns:
                full = f"{limits.max_patterns} distinct patterns"
            elif is_wildcard(pattern) and self.wildcards >= limits.max_wildcards:
                full = f"{limits.max_wildcards} distinct wildcard patterns"
            elif self.pattern_chars + len(pattern) > limits.max_pattern_chars:
                full = f"{limits.max_pattern_chars} characters of patterns"
            if full is not None:
                self._refuse(session, message, f"the router holds {full} already (in all sessions)",
                             budget.PATTERN_LIMIT)
                return False
        known = message["version-known"]
        if consumer and not is_wildcard(pattern):
            size = len(codec.dumps(known)) if type(known) is dict or type(known) is list else 0
            total = session.version_bytes - session.known_sizes.get(pattern, 0) + size
            if total > limits.max_session_versions:
                self._refuse(session, message, f"the versions this session registered with would total more "
                                               f"than {limits.max_session_versions} bytes", budget.SESSION_VERSIONS)
                return False
            session.version_bytes = total
            if size:
                session.known_sizes[pattern] = size
            else:
                session.known_sizes.pop(pattern, None)
        return True

    def _index_pattern(self, table: dict[str, dict[Session, None]], pattern: str, session: Session) -> None:
        """Register ``session`` under ``pattern`` in a pattern table, keeping the pattern budgets' counts."""
        sessions = table.get(pattern)
        if sessions is None:
            sessions = table[pattern] = {}
            self.pattern_chars += len(pattern)
            if is_wildcard(pattern):
                self.wildcards += 1
                self._wildcards_of(table)[pattern] = sessions
        if session not in sessions:
            sessions[session] = None
            session.pattern_chars += len(pattern)

    def _unindex_pattern(self, table: dict[str, dict[Session, None]], pattern: str, session: Session) -> None:
        sessions = table.get(pattern)
        if sessions is None or session not in sessions:
            return
        session.pattern_chars -= len(pattern)
        _forget(table, pattern, session)
        if pattern not in table:
            self.pattern_chars -= len(pattern)
            if is_wildcard(pattern):
                self.wildcards -= 1
                del self._wildcards_of(table)[pattern]

    def _wildcards_of(self, table: dict[str, dict[Session, None]]) -> dict[str, dict[Session, None]]:
        return self.consumer_wildcards if table is self.consumer_patterns else self.producer_wildcards

    def _covering(self, table: dict[str, dict[Session, None]], object_id: str) -> Iterable[dict[Session, None]]:
        """The session sets of every pattern in ``table`` that covers ``object_id`` (an id has no ``*``:
        its exact pattern is one key lookup; only the wildcards are matched)."""
        exact = table.get(object_id)
        if exact is not None:
            yield exact
        for pattern, sessions in self._wildcards_of(table).items():
            if matches(pattern, object_id):
                yield sessions

    def _may_spawn(self) -> bool:
        """True if one more object may exist: in all, and for the session whose message is handled."""
        actor = self._actor
        limits = self.limits
        if len(self.objects) >= limits.max_objects and self.lingering:  # a lingering object gives way
            self._drop_lingering(self.objects[next(iter(self.lingering))])
        if len(self.objects) < limits.max_objects and (actor is None or actor.objects < limits.max_session_objects):
            return True
        if actor is not None and not self._refused_spawn:  # one error frame per message
            self._refused_spawn = True
            text = (f"object limit reached ({limits.max_objects} objects in all)" if len(self.objects) >= limits.max_objects
                    else f"object limit reached ({limits.max_session_objects} objects caused by this session)")
            self._send(protocol.error(text, code=budget.OBJECT_LIMIT), (actor,))
        return False

    def _refuse_upload(self, session: Session, object_id: str, code: str, text: str) -> None:
        """An upload refused by a budget: an error frame to its sender and, when it answered an order,
        a failed production (the order is freed by the caller, the retry backs off)."""
        self._send(protocol.error(text, code=code, request="object-patch", id=object_id), (session,))
        if object_id in session.producing:
            self._report_production_error(session, object_id, text)

    def expire_orders(self, now: float) -> None:
        """Take back the orders held longer than ``limits.order_timeout`` at time ``now`` (call about once a
        second): each counts as a failed production (error to watchers, backoff), and is then given to
        another producer. The silent producer's slot stays taken by the expired order until it answers or
        leaves, so it is not given more work meanwhile; its late answer is taken like any upload."""
        self._now = now
        self.expire_writes(now)
        limit = self.limits.order_timeout
        if limit <= 0:
            return
        expired: list[tuple[Session, str, Order]] = []
        for session in self.sessions:
            for object_id, order in session.producing.items():
                if order.key is _EXPIRED:
                    continue
                if self._now - order.since < limit:
                    break  # oldest first: the rest are younger (expired ones were moved to the end)
                expired.append((session, object_id, order))
        for session, object_id, order in expired:
            del session.producing[object_id]
            session.producing[object_id] = order._replace(key=_EXPIRED)
            if order.obj.in_flight.get(order.key) is session:
                del order.obj.in_flight[order.key]
            text = f"production order not answered within {limit:g} s"
            self._send(protocol.error(f"{text}: taken back", code=budget.ORDER_TIMEOUT, request="object-produce",
                                      id=object_id), (session,))
            if self.objects.get(object_id) is order.obj:
                self._report_production_error(session, object_id, text, free=False)
                self._enqueue(order.obj)  # (held back by the backoff; queued by tick() when it passes)

    def heartbeat(self) -> None:
        """Send the optional heartbeat frame to every session that asked for it."""
        targets = [s for s in self.sessions if s.options.get("heartbeat")]
        if targets:
            self._send(protocol.HEARTBEAT, targets)

    @property
    def has_output(self) -> bool:
        """True if take_outbox() may have something."""
        return bool(self.outbox or self._changed or self._moved or self._freed or self._due)

    def take_outbox(self) -> list[Delivery]:
        """The frames to send, each with its sessions; objects that changed in batch mode since the last
        call are pushed to their consumers now, at the place of their first change, once each however
        many versions arrived meanwhile."""
        self._raise_moved()
        self._assign()
        pending, self.outbox = self.outbox, []
        if not self._changed:
            return pending
        changed, self._changed = self._changed, {}
        out: list[Delivery] = []
        done = 0
        for obj, position in changed.values():  # positions ascend: entries are added as the outbox grows
            out.extend(pending[done:position])
            done = position
            if self.objects.get(obj.id) is obj:
                self._push(obj, list(obj.consumers))
                out.extend(self.outbox)
                self.outbox = []
        out.extend(pending[done:])
        return out

    # ---- writable collections (issue 15) ------------------------------------------------------

    def _write_allowed(self, session: Session, message: dict[str, Any]) -> bool:
        """The hook's ``may_write(id)``: a hook without one refuses every write (writes were added after
        hooks were written: an old hook must not open them to everyone). No hook: anyone may write."""
        access = session.access
        if access is None:
            return True
        object_id = message["id"]
        may_write = getattr(access, "may_write", None)
        try:
            allowed = bool(may_write(object_id)) if may_write is not None else False
        except Exception as exc:  # user code must not take the router down
            self._write_error(session, message, f"access check failed: {type(exc).__name__}: {exc}",
                              "access-check-failed")
            return False
        if not allowed:
            self._write_error(session, message, f"not allowed to write {object_id!r}", "forbidden")
        return allowed

    def _write_error(self, session: Session, message: dict[str, Any], text: str, code: str) -> None:
        """The error answering one collection update: to its writer only, with its ``ref``."""
        if session in self.sessions:
            self._send(protocol.error(text, code=code, request="collection-update", id=message["id"],
                                      ref=message.get("ref")), (session,))
        if self._log is not None:
            self._log("collection update of %.200s from %s refused (%s): %.300s", message["id"], session, code, text)

    def _collection_update(self, session: Session, message: dict[str, Any]) -> None:
        """Queue an update behind the others of its collection (applied one at a time, in arrival order)."""
        object_id = message["id"]
        if session.writes >= MAX_SESSION_WRITES:
            self._write_error(session, message, f"this session has {MAX_SESSION_WRITES} collection updates "
                                                f"waiting already: wait for their answers", "too-many-writes")
            return
        queue = self.writes.get(object_id)
        if queue is not None and len(queue) >= MAX_COLLECTION_QUEUE:
            self._write_error(session, message, f"{MAX_COLLECTION_QUEUE} updates of {object_id!r} are waiting "
                                                f"already: retry later", "collection-busy")
            return
        if not self._collection_workers(object_id):
            self._write_error(session, message, f"no worker serves the collection {object_id!r}", "no-collection")
            return
        self._tickets += 1
        self.writes.setdefault(object_id, deque()).append(Write(session, message, f"{self._instance}:{self._tickets}"))
        session.writes += 1
        self._collection_next(object_id)

    def _collection_workers(self, object_id: str) -> list[Session]:
        """Worker sessions that announced a collection pattern covering ``object_id`` (client option
        ``collections``): only workers, never a websocket client announcing it."""
        found = []
        for session in self.sessions:
            patterns = session.options.get("collections") if not session.client else None
            if isinstance(patterns, list) and any(isinstance(p, str) and matches(p, object_id) for p in patterns):
                found.append(session)
        return found

    def _collection_next(self, object_id: str, avoid: Session | None = None) -> None:
        """Send the collection's next update to a worker (not ``avoid``, a silent one, if another serves
        it), unless one is being applied."""
        if object_id in self.applying:
            return
        queue = self.writes.get(object_id)
        if not queue:
            self.writes.pop(object_id, None)
            return
        workers = self._collection_workers(object_id)
        if not workers and queue[0].retry and self._now - queue[0].since < self.limits.order_timeout:
            return  # its worker just died (a pool replaces it in seconds): wait for one, not fail at once
        if not workers:
            while queue:
                write = queue.popleft()
                write.writer.writes -= 1
                self._write_error(write.writer, write.message, f"no worker serves the collection {object_id!r}",
                                  "no-collection")
            del self.writes[object_id]
            return
        if avoid is not None and len(workers) > 1:
            workers = [s for s in workers if s is not avoid]
        busy = {w.worker: 0 for w in self.applying.values()}
        for w in self.applying.values():
            busy[w.worker] += 1
        worker = min(workers, key=lambda s: busy.get(s, 0))  # the least busy (first on a tie)
        write = queue.popleft()._replace(worker=worker, since=self._now)
        self.applying[object_id] = write
        self._send(protocol.collection_apply(object_id, write.ticket, write.message), (worker,))

    def _collection_applied(self, session: Session, message: dict[str, Any]) -> None:
        """A worker committed an update (or refused it): watchers get the new version as any production's
        answer (a patch from what they hold), then the writer its answer; the next update goes out."""
        object_id = message["id"]
        write = self.applying.get(object_id)
        if write is None or write.ticket != message["ticket"] or write.worker is not session:
            if self._log is not None:  # a late answer to an update given to another worker: already retried
                self._log("collection-applied %.200s ticket %.100s from %s: not the update in flight, ignored",
                          object_id, message["ticket"], session)
            return
        del self.applying[object_id]
        write.writer.writes -= 1
        if "error" in message:
            self._write_error(write.writer, write.message, message["error"], message["code"])
        else:
            version = message["version"]
            if object_id in self.objects:
                self._version_set(session, object_id, version, message["value"])
            if write.writer in self.sessions:
                self._send(protocol.collection_updated(object_id, write.message.get("ref"), version), (write.writer,))
        self._collection_next(object_id)

    def _writes_closed(self, session: Session) -> None:
        """A closed session: the updates it was applying go again, first in line, to another worker with the
        same ticket (applied once whatever happened: the worker stores the ticket with the update)."""
        for object_id, write in list(self.applying.items()):
            if write.worker is session:
                del self.applying[object_id]
                self.writes.setdefault(object_id, deque()).appendleft(write._replace(worker=None, since=self._now,
                                                                                     retry=True))
                self._collection_next(object_id)

    def expire_writes(self, now: float) -> None:
        """An update held by a silent worker longer than ``limits.order_timeout`` is sent again (same ticket)
        to a worker, possibly the same one: applied once, answered once."""
        limit = self.limits.order_timeout
        for object_id in [oid for oid in self.writes if oid not in self.applying]:
            self._collection_next(object_id)  # a retry waiting for a worker: failed once it waited too long
        if limit <= 0:
            return
        for object_id, write in list(self.applying.items()):
            if now - write.since >= limit:
                del self.applying[object_id]
                self.writes.setdefault(object_id, deque()).appendleft(write._replace(worker=None, since=now,
                                                                                     retry=True))
                if self._log is not None:
                    self._log("collection update %.100s of %.200s not answered by %s within %g s: sent again",
                              write.ticket, object_id, write.worker, limit)
                self._collection_next(object_id, avoid=write.worker)

    # ---- registrations ------------------------------------------------------------------------

    def _consumer_register(self, session: Session, pattern: str, version_known: Version,
                           path: str | None = None) -> None:
        """``path``: a subtree subscription (exact ids only, checked by the parser); registering again
        replaces it (one registration per session and id), ``version-known`` then being what the
        session holds of the new path."""
        session.consumes[pattern] = None
        if path is not None:
            session.paths[pattern] = path
        elif session.paths:
            session.paths.pop(pattern, None)
        self._index_pattern(self.consumer_patterns, pattern, session)
        if is_wildcard(pattern):
            ids = self._covered_ids(pattern)
            ids += [p for p in self._exact_producer_ids() if matches(pattern, p) and p not in self.objects]
            if session.access is not None:  # decided per id: "*" must not deliver what the hook refuses
                ids = [oid for oid in ids if self._may(session, "consume", oid)]
        else:
            if is_null(version_known):  # holding nothing: the next push is the full value
                session.held.pop(pattern, None)
            else:
                session.held[pattern] = version_known
            ids = [pattern] if pattern in self.objects or self._has_producer(pattern) else []
        for oid in ids:
            obj = self.objects.get(oid)
            if obj is None:
                if not self._may_spawn():
                    break
                obj = self._spawn(oid)
                obj.consumers[session] = None  # before the order: it names the version this session holds
                self._enqueue(obj)
            else:
                obj.consumers[session] = None
                if obj.lingering is not None and self._alive(obj):
                    self._revive(obj)
                if self._on_consumer_added is not None:
                    self._on_consumer_added(obj)
            self._push(obj, (session,))

    def _consumer_unregister(self, session: Session, pattern: str) -> None:
        if pattern not in session.consumes:
            self._not_registered(session, "consumer", pattern)
            return
        del session.consumes[pattern]
        had_path = bool(session.paths) and session.paths.pop(pattern, None) is not None
        self._unindex_pattern(self.consumer_patterns, pattern, session)
        for oid in self._covered_ids(pattern):
            obj = self.objects[oid]
            if not any(matches(p, oid) for p in session.consumes):
                obj.consumers.pop(session, None)
                session.held.pop(oid, None)
            self._despawn_if_dead(obj)
        if not is_wildcard(pattern) and not any(matches(p, pattern) for p in session.consumes):
            session.held.pop(pattern, None)
        elif had_path:  # still consumed through a wildcard: what it holds is the subtree, not the object
            session.held.pop(pattern, None)
            still = self.objects.get(pattern)
            if still is not None:
                self._push(still, (session,))

    def _producer_register(self, session: Session, pattern: str, version_known: Version) -> None:
        session.produces[pattern] = None
        self._index_pattern(self.producer_patterns, pattern, session)
        self._freed[session] = None  # the new producer may take queued work
        for oid in self._covered_ids(pattern):
            if self._may(session, "produce", oid):  # decided per id: no orders for ids the hook refuses
                self.objects[oid].producers[session] = None
        if not is_wildcard(pattern) and not is_null(version_known):
            # seapig: a master announcing its version acts as an upload of data `true` at that version
            self._version_set(session, pattern, version_known, True)
        wanted = [oid for oid in self._interest_ids() if matches(pattern, oid) and self._may(session, "produce", oid)]
        if not is_wildcard(pattern) and not wanted and self._wildcard_consumed(pattern):
            wanted = [pattern]
        for oid in wanted:
            if oid not in self.objects:
                if not self._may_spawn():
                    break
                self._enqueue(self._spawn(oid))

    def _producer_unregister(self, session: Session, pattern: str) -> None:
        if pattern not in session.produces:
            self._not_registered(session, "producer", pattern)
            return
        del session.produces[pattern]
        self._unindex_pattern(self.producer_patterns, pattern, session)
        for oid in self._covered_ids(pattern):
            obj = self.objects[oid]
            if not any(matches(p, oid) for p in session.produces):
                obj.producers.pop(session, None)
            self._despawn_if_dead(obj)
        for object_id in [oid for oid in session.producing if matches(pattern, oid)]:
            self._cancel_production(session, object_id)  # requeued for another producer, if still alive

    def _not_registered(self, session: Session, role: str, pattern: str) -> None:
        self._send(protocol.error(f"this session has no {role} registration for pattern {pattern!r}",
                                  request=f"object-{role}-unregister", pattern=pattern, code="not-registered"),
                   (session,))

    # ---- interest and lifetime ----------------------------------------------------------------

    def _covered_ids(self, pattern: str) -> list[str]:
        """Ids of existing objects a pattern covers (a dict lookup for an exact id)."""
        if not is_wildcard(pattern):
            return [pattern] if pattern in self.objects else []
        return [oid for oid in self.objects if matches(pattern, oid)]

    def _exact_producer_ids(self) -> list[str]:
        return [p for p in self.producer_patterns if not is_wildcard(p)]

    def _has_producer(self, object_id: str) -> bool:
        return object_id in self.producer_patterns or any(
            matches(p, object_id) and self._any_may(sessions, "produce", object_id)
            for p, sessions in self.producer_wildcards.items())

    def _any_may(self, sessions: Iterable[Session], role: str, object_id: str) -> bool:
        return any(s.access is None or self._may(s, role, object_id) for s in sessions)

    def _has_direct_producer(self, object_id: str) -> bool:
        return object_id in self.producer_patterns

    def _wildcard_consumed(self, object_id: str) -> bool:
        if not self.consumer_wildcards:  # the common case of an unwanted upload: no generator to build
            return False
        return any(matches(p, object_id) and self._any_may(sessions, "consume", object_id)
                   for p, sessions in self.consumer_wildcards.items())

    def _direct_consumed(self, object_id: str) -> bool:
        return object_id in self.consumer_patterns

    def _interest_ids(self) -> list[str]:
        """Ids someone wants: exact consumer ids, then ids that objects depend on (registration order)."""
        ids = dict.fromkeys(p for p in self.consumer_patterns if not is_wildcard(p))
        ids.update(dict.fromkeys(self.dependents))
        return list(ids)

    def _wanted(self, object_id: str) -> bool:
        """Would this object be alive if it existed?"""
        if self._direct_consumed(object_id) or self.dependents.get(object_id):
            return True
        return self._wildcard_consumed(object_id) and self._has_direct_producer(object_id)

    def _alive(self, obj: SyncObject) -> bool:
        """Alive: a direct consumer, or dependents, or a wildcard consumer plus a direct producer."""
        if self.dependents.get(obj.id) or any(obj.id in s.consumes for s in obj.consumers):
            return True
        return bool(obj.consumers) and any(obj.id in s.produces for s in obj.producers)

    def _spawn(self, object_id: str) -> SyncObject:
        """Create an object and attach every session whose patterns cover it (not yet queued)."""
        obj = SyncObject(object_id)
        self.objects[object_id] = obj
        if self._actor is not None:
            obj.cause = self._actor.index
            self._actor.objects += 1
        for table, attached, role in ((self.consumer_patterns, obj.consumers, "consume"),
                                      (self.producer_patterns, obj.producers, "produce")):
            for sessions in self._covering(table, object_id):
                if self._authenticate_hook is None:  # no hook: nobody is guarded, the plain (fast) attach
                    attached.update(sessions)
                else:
                    attached.update((s, None) for s in sessions if s.access is None or self._may(s, role, object_id))
        owner = self._reserved_owner(object_id)
        if owner is not None:  # a wildcard producer such as "*" must not be asked for the router's own objects
            obj.producers = {owner: None} if owner in obj.producers else {}
        return obj

    def reserve(self, prefix: str, owner: Session) -> None:
        """Ids starting with ``prefix`` are produced by ``owner`` alone (the introspection objects)."""
        self.reserved[prefix] = owner
        self._reserved_prefixes = tuple(self.reserved)

    def _reserved_owner(self, object_id: str) -> Session | None:
        if not object_id.startswith(self._reserved_prefixes):  # one C call for every upload's id
            return None
        for prefix, owner in self.reserved.items():
            if object_id.startswith(prefix):
                return owner
        return None

    def _despawn_if_dead(self, obj: SyncObject) -> None:
        if obj.id in self.objects and not self._alive(obj):
            if not self._start_lingering(obj):
                self._despawn(obj)

    # ---- linger (sync-router --linger) ------------------------------------------------------------
    # An object nobody wants any more is kept, current, for ``linger`` seconds: a watcher that comes back
    # meanwhile (a reload, a reconnecting front) gets "current" or a patch and costs no production. Only a
    # current object lingers (nothing would be saved by keeping one that needs producing), and one whose
    # dependency moves while it lingers is dropped: its cache is stale and nobody wants a new production.

    def _start_lingering(self, obj: SyncObject) -> bool:
        """Keep ``obj`` lingering if it should; True if it is now lingering or was dropped here."""
        if obj.lingering is not None:
            return True
        if self.linger <= 0:
            return False
        if (obj.in_flight or obj.queued or obj.latest is None or obj.inferred is None
                or not same(obj.inferred, obj.known)):
            return False
        obj.lingering = self._now + self.linger
        self.lingering[obj.id] = size = len(obj.full_frame)
        self._lingering_bytes += size
        while self._lingering_bytes > self.linger_bytes and self.lingering:
            self._drop_lingering(self.objects[next(iter(self.lingering))])  # (obj itself, if it alone is too big)
        return True

    def _stop_lingering(self, obj: SyncObject) -> None:
        if obj.lingering is not None:
            obj.lingering = None
            self._lingering_bytes -= self.lingering.pop(obj.id)

    def _drop_lingering(self, obj: SyncObject) -> None:
        """The linger is over (time, budget, a moved dependency): dropped, or kept if wanted again."""
        self._stop_lingering(obj)
        if obj.id in self.objects and not self._alive(obj):
            self._despawn(obj)

    def _revive(self, obj: SyncObject) -> None:
        """Wanted again while lingering: an ordinary live object from now on."""
        if obj.lingering is not None:
            self._stop_lingering(obj)
            self._enqueue(obj)  # (current: nothing to do; otherwise it is produced as any live object)

    def _expire_lingering(self) -> None:
        while self.lingering:
            obj = self.objects[next(iter(self.lingering))]
            if obj.lingering is not None and obj.lingering > self._now:
                break
            if self._alive(obj):
                self._revive(obj)
            else:
                self._drop_lingering(obj)

    def _despawn(self, obj: SyncObject) -> None:
        self._stop_lingering(obj)
        del self.objects[obj.id]
        cause = self._by_index.get(obj.cause) if obj.cause is not None else None
        if cause is not None:
            cause.objects -= 1
        self.queue.pop(obj.id, None)
        self.delayed.pop(obj.id, None)
        targets = list(dict.fromkeys([*obj.consumers, *obj.producers]))  # wildcard consumers, all producers
        for session in targets:
            session.held.pop(obj.id, None)
        for session in [*obj.in_flight.values(), *obj.producers]:  # producers: orders taken back (expire_orders)
            order = session.producing.get(obj.id)
            if order is not None and order.obj is obj:
                del session.producing[obj.id]
                self._freed[session] = None
        if targets:
            self._send(protocol.destroy(obj.id), targets)
        for dep in obj.dependencies:
            self._drop_dependency(obj.id, dep)

    def _drop_dependency(self, object_id: str, dep: str) -> None:
        users = self.dependents.get(dep)
        if users is not None:
            users.pop(object_id, None)
            if not users:
                del self.dependents[dep]
        dep_obj = self.objects.get(dep)
        if dep_obj is not None:
            self._despawn_if_dead(dep_obj)

    # ---- versions -----------------------------------------------------------------------------

    def _patch(self, session: Session, message: dict[str, Any]) -> None:
        object_id = message["id"]
        data = message["value"]
        if message["patch"] is not None:
            data = self._apply_upload_patch(session, message)
            if data is None:  # cannot apply: handled as a cancel (the order, if any, is requeued already)
                return
        if "error" in message and data is None:
            self._report_production_error(session, object_id, message["error"])
        self._version_set(session, object_id, message["version-new"] if data is not None else None, data,
                          message.get("bases"), self._upload_changes(message))

    def _upload_changes(self, message: dict[str, Any]) -> list[Any] | None:
        """The uploaded patch when it is the change from the latest version (its base), else None (a value,
        or a patch from an older version): what the path index records as the version's change."""
        patch = message["patch"]
        obj = self.objects.get(message["id"])
        latest = obj.latest if obj is not None and patch is not None else None
        return patch if latest is not None and same(latest[0], message["version-old"]) else None

    def _apply_upload_patch(self, session: Session, message: dict[str, Any]) -> dict[str, Any] | None:
        """The new data from an uploaded patch, or None if it cannot apply: its base is not retained, its
        operations fail, or its result is not an object. Each is a cancel (see _upload_cancelled)."""
        object_id = message["id"]
        obj = self.objects.get(object_id)
        base = obj.data_at(message["version-old"]) if obj else ({} if is_null(message["version-old"]) else None)
        if base is None:  # a race, not an error: seapig silently cancels, and the producer is asked again
            self._upload_cancelled(session, object_id, "patch base version not retained")
            return None
        encoded = codec.dumps(base)
        try:  # bounded by its result: a copy bomb is refused before it is built
            result = apply_patch(codec.loads(encoded), message["patch"], self.limits.max_object, len(encoded))
        except PatchTooLarge as exc:
            self._refuse_upload(session, message["id"], budget.OBJECT_TOO_LARGE, f"patch refused: {exc}")
            return None
        except ValueError as exc:
            self._send(protocol.error(f"patch does not apply: {exc}", request="object-patch",
                                      id=object_id, code="patch-failed"), (session,))
            self._upload_cancelled(session, object_id, f"patch does not apply: {exc}")
            return None
        if not isinstance(result, dict):
            self._send(protocol.error("patch result is not a JSON object", request="object-patch",
                                      id=object_id, code="patch-not-object"), (session,))
            self._upload_cancelled(session, object_id, "patch result is not a JSON object")
            return None
        return result

    def _upload_cancelled(self, session: Session, object_id: Any, reason: str) -> None:
        """An upload that cannot apply (a patch that is not a list, on a base not retained, whose operations
        fail or whose result is not an object), from the session holding an order for the id: seapig treats
        it as a cancelled production, so the order ends and the object is ordered again with the same
        inferred version. The first ``QUICK_CANCELS`` in a row are requeued at once (a base race clears on
        the next try); after that each waits the failure backoff, so a producer that always answers so
        costs a few orders a minute, not a loop at full speed. Not a failed production: nobody else is told."""
        if not isinstance(object_id, str) or object_id not in session.producing:
            return
        obj = session.producing[object_id].obj
        obj.cancels += 1
        delay = 0.0
        if obj.cancels > QUICK_CANCELS:
            delay = self._backoff(obj.cancels - QUICK_CANCELS)
            self._delay(obj, self._now + delay)
        if self._log is not None:  # at most one line per order: bounded by the backoff
            self._log("order of %.200s cancelled by %s, the upload cannot apply (%d in a row, ordered again in "
                     "%.1f s): %.300s", object_id, session, obj.cancels, delay, reason)
        self._cancel_production(session, object_id)  # requeued at once, or behind the delay set above

    def _report_production_error(self, session: Session, object_id: str, error: str, free: bool = True) -> None:
        """A failed production: counted, watchers told, retried after a backoff; the order it answered (if
        this session holds one for the id) is freed here, whoever calls (see also _answer_refused), unless
        ``free`` is False (an expired order keeps its silent holder's slot: expire_orders)."""
        session.errors += 1
        self.errors_total += 1
        obj = self.objects.get(object_id)
        if obj is not None:
            obj.errors += 1
            obj.last_error = error
            obj.failures += 1
            self._delay(obj, self._now + self._backoff(obj.failures))
        if obj is not None and obj.consumers:
            self._send(protocol.error(f"production failed: {error}", request="object-produce", id=object_id,
                                      code="production-failed"),
                       list(obj.consumers))
        order = session.producing.get(object_id)
        if free and order is not None and order.key is not _EXPIRED:
            self._cancel_production(session, object_id)  # requeued behind the backoff set above
        # (an order taken back by expire_orders keeps the silent producer's slot until it answers)

    def _version_set(self, session: Session, object_id: str, version: Version, data: Any,
                     bases: list[tuple[Version, dict[str, Any]]] | None = None,
                     changes: list[Any] | None = None) -> None:
        """seapig's version_set: record an upload (data dict, False stall, True announce, None cancel);
        ``bases``: the data of earlier versions, for watchers holding one the router does not retain;
        ``changes``: the patch from the latest version to ``data``, if known (see _upload_changes)."""
        wanted: bool | None = None  # decided once: on the spawn path below too
        if data is not None and object_id not in self.objects:
            wanted = self._wanted(object_id)
            if not wanted and object_id not in session.producing:
                # nobody wants it (a bump nobody depends on): answered at once, before encoding anything
                self._send(protocol.destroy(object_id), (session,))
                return
        full = None
        if isinstance(data, dict):
            # Encoded once here: this frame goes to every consumer needing the value, its length sizes
            # the history, and data orjson cannot encode (nested too deep) is refused before it is stored.
            try:
                full = protocol.update_value(object_id, version, data)
            except TypeError as exc:
                self._send(protocol.error(f"value cannot be encoded: {exc}", request="object-patch", id=object_id,
                                          code="value-not-encodable"),
                           (session,))
                self._report_production_error(session, object_id, f"value cannot be encoded: {exc}")
                data = None
            if full is not None and self._too_large(object_id, version, full):
                self._refuse_upload(session, object_id, budget.OBJECT_TOO_LARGE,
                                    f"value encodes to more than {self.limits.max_object} bytes")
                data = full = None
        order = session.producing.get(object_id)
        if order is not None:
            self._cancel_production(session, object_id, requeue=False)  # frees its slot (seapig step 1)
        obj = self.objects.get(object_id)
        if obj is None and data is not None and (self._wanted(object_id) if wanted is None else wanted):
            if not self._may_spawn():
                return  # refused with an object-limit error (not an object-destroy: someone does want it)
            obj = self._spawn(object_id)
        # A hash naming a dependency older than one this object was already built from is refused: what
        # makes "versions never go backwards" hold over any sequence of key sets (docs/PROTOCOL.md §6).
        backwards = (obj is not None and data is not None and bool(obj.floor) and isinstance(version, dict)
                     and below_floor(obj.floor, version))
        behind = False
        if order is not None:
            behind = data is not None and data is not True and (
                backwards or compare(order.inferred, version) in (OLDER, MIXED))
            self._finish_production(session, order, data, behind)
        if obj is None:
            if data is not None:
                self._send(protocol.destroy(object_id), (session,))
            return
        known_advanced = False
        if not backwards and (data is False or isinstance(data, dict)) and is_newer(obj.known, version):
            obj.known = version
            known_advanced = True
            if isinstance(version, dict):
                raise_floor(obj.floor, version)
                self._lift_inferred(obj)
            if data is False:
                obj.stalled = True
            elif self._unchanged(obj, version, cast(bytes, full)):
                obj.stalled = False
                session.unchanged += 1
                obj.unchanged += 1
                self.unchanged_total += 1
                if self.skip_unchanged:
                    self._skip_unchanged(obj, version, cast(bytes, full))
                else:  # (the held data object is kept: equal, so the new one need not stay alive)
                    self._append(obj, version, obj.history[-1][1], cast(bytes, full), [])
            else:
                obj.stalled = False
                if bases and not obj.history and not session.client:
                    self._adopt_bases(obj, bases, version)
                self._append(obj, version, data, cast(bytes, full), changes)  # a dict's frame: encoded above
        if not backwards and is_newer(obj.inferred, version):
            self._set_inferred(obj, version)
        if known_advanced and object_id in self.dependents:
            if self._coalesce:
                self._moved[object_id] = None
            else:
                self._raise_dependents(object_id, version)
        if behind and cast(Order, order).obj is obj:  # behind is only set with an order
            self._result_behind(obj, cast(Order, order), version)
        self._enqueue(obj)

    def _adopt_bases(self, obj: SyncObject, bases: list[tuple[Version, dict[str, Any]]], version: Version) -> None:
        """An object that retains nothing (a restarted router) takes the earlier versions a producer rebuilt
        (collections: from their undo rows) into its history, so a watcher holding one gets a patch. Only
        from workers (a websocket master could otherwise make others apply patches to data they do not
        hold); oldest first, each older than the next and than ``version``, within the object size limit."""
        newer = version
        kept: list[tuple[Version, dict[str, Any], int]] = []
        for base_version, value in reversed(bases):
            if not is_newer(base_version, newer):  # each base strictly older than the one after it
                break
            try:
                size = len(protocol.update_value(obj.id, base_version, value))
            except TypeError:
                break
            if size > self.limits.max_object:
                break
            kept.append((base_version, value, size))
            newer = base_version
        for base_version, value, size in reversed(kept):
            obj.history.append((base_version, value))
            obj.sizes.append(size)

    def _held_hints(self, obj: SyncObject) -> list[Version]:
        """Versions the object's watchers hold that it does not retain (it retains nothing yet: a restarted
        router, a lingering object gone), at most MAX_BASES: named in the order, so a producer that can
        rebuild them answers with ``bases`` and those watchers get a patch, not the whole value."""
        if obj.history or not obj.consumers:
            return []
        held: dict[Any, Version] = {}
        for session in obj.consumers:
            version = session.held.get(obj.id)
            if version is not None and not is_null(version):
                held.setdefault(version_key(version), version)
                if len(held) >= protocol.MAX_BASES:
                    break
        return list(held.values())

    def _raise_dependents(self, object_id: str, version: Version) -> None:
        """Dependency ``object_id`` is now known at ``version``: the objects built from it want it."""
        for dependent_id in list(self.dependents.get(object_id, ())):
            dependent = self.objects.get(dependent_id)
            if dependent is None or not isinstance(dependent.inferred, dict):
                continue
            if object_id in dependent.inferred and is_newer(dependent.inferred[object_id], version):
                dependent.inferred = {**dependent.inferred, object_id: version}
            self._enqueue(dependent)

    def _raise_moved(self) -> None:
        """Batch mode: raise the dependents of each dependency that moved during the batch, once, to the
        version it is known at now (the newest of the batch)."""
        while self._moved:
            moved, self._moved = self._moved, {}
            for object_id in moved:
                obj = self.objects.get(object_id)
                if obj is not None:
                    self._raise_dependents(object_id, obj.known)

    def _too_large(self, object_id: str, version: Version, full: bytes) -> bool:
        """True if the value in ``full`` (its update frame) encodes larger than ``limits.max_object``."""
        limit = self.limits.max_object
        return len(full) > limit and len(full) - len(protocol.update_value(object_id, version, {})) + 2 > limit

    def _result_behind(self, obj: SyncObject, order: Order, version: Version) -> None:
        """A result older than its order (a producer reading stale inputs, or a version announced that it
        never reaches): retried with the failure backoff, and after ``max_behind`` in a row the object is
        marked in error and not ordered again until its inferred version moves, instead of spinning."""
        obj.behind += 1
        obj.failures += 1
        self._delay(obj, self._now + self._backoff(obj.failures))
        key = version_key(obj.inferred)
        if obj.behind < self.max_behind or obj.broken == key:
            return
        obj.broken = key
        if self._log is not None:
            self._log("%.200s in error: its producers answer below the version ordered", obj.id)
        text = (f"production answered {obj.behind} times in a row with a version older than ordered "
                f"(last {codec.dumps(version)[:100].decode(errors='replace')} for "
                f"{codec.dumps(order.inferred)[:100].decode(errors='replace')}); not ordered again until its version moves")
        obj.errors += 1
        obj.last_error = text
        self.errors_total += 1
        if obj.consumers:
            self._send(protocol.error(text, request="object-produce", id=obj.id, code="production-behind"),
                       list(obj.consumers))

    def _backoff(self, failures: int) -> float:
        """Seconds before the next attempt after ``failures`` consecutive failures (doubling, capped)."""
        factor: int = 2 ** min(max(failures - 1, 0), 40)  # an int: the exponent is never negative
        return min(self.retry_max, self.retry_base * factor)

    def _finish_production(self, session: Session, order: Order, data: Any, behind: bool = False) -> None:
        obj = order.obj
        if data is None:
            return
        if not behind:
            obj.failures = 0
            obj.behind = 0
            obj.cancels = 0
            obj.broken = None
        session.productions += 1
        obj.productions += 1
        self.productions_total += 1
        obj.production_ms = max(0.0, (self._now - order.since) * 1000.0)
        obj.produced_at = self._now
        if self._on_production is not None:
            self._on_production(obj.production_ms / 1000.0)

    def _set_inferred(self, obj: SyncObject, version: Version) -> None:
        """A newer inferred version; a hash declares the object's dependencies."""
        if not isinstance(version, dict):
            obj.inferred = version
            old_deps, obj.dependencies = obj.dependencies, {}
            for dep in old_deps:
                self._drop_dependency(obj.id, dep)
            return
        inferred = dict(version)
        old_deps = obj.dependencies
        obj.dependencies = dict.fromkeys(version)
        for dep in obj.dependencies:
            self.dependents.setdefault(dep, {})[obj.id] = None
        for dep in obj.dependencies:
            dep_obj = self.objects.get(dep)
            if dep_obj is None and self._has_producer(dep) and self._may_spawn():
                dep_obj = self._spawn(dep)
                self._enqueue(dep_obj)
            if dep_obj is not None:
                inferred[dep] = newest(inferred[dep], newest(dep_obj.known, dep_obj.inferred))
        obj.inferred = inferred
        self._lift_inferred(obj)
        for dep in old_deps.keys() - obj.dependencies.keys():
            self._drop_dependency(obj.id, dep)

    @staticmethod
    def _lift_inferred(obj: SyncObject) -> None:
        """Raise each dependency of a hash inferred version to at least the version the object's data was
        already built from (its floor, which covers the version held): per dependency, the newest of held
        and known, as seapig. Without it, a result mixed with its order ({a: 5, b: 5} answering {a: 2,
        b: 10}) is kept but not adopted as inferred, and the next order asks for {a: 2, b: 10}: older in
        ``a`` than what is held, an order whose answer the floor would refuse (issue 12 item 5)."""
        inferred, floor = obj.inferred, obj.floor
        if not isinstance(inferred, dict) or not floor:
            return
        lifted = None
        for dep, wanted in inferred.items():
            held = floor.get(dep)
            if held is not None and is_newer(wanted, held):
                if lifted is None:
                    lifted = dict(inferred)
                lifted[dep] = held
        if lifted is not None:
            obj.inferred = lifted

    def _append(self, obj: SyncObject, version: Version, data: dict[str, Any], full: bytes,
                changes: list[Any] | None = None) -> None:
        """A new data version (``full``: its value frame; ``changes``: the patch from the version before, if
        known): retain it, then bring every consumer up to date."""
        self._count_version(obj, version, changes)
        obj.history.append((version, data))
        obj.sizes.append(len(full))
        obj.full_frame = kept(full)
        obj.frames = {}
        obj.patches = None
        if not self._coalesce:
            self._push(obj, list(obj.consumers))
        else:
            # Pushed when the outbox is taken, at the place of the first change: several versions of one
            # object in one batch (a producer faster than the router, a flood) cost one diff and one
            # fan-out, and every consumer gets the latest state.
            entry = self._changed.get(obj.id)
            if entry is None or entry[0] is not obj:
                self._changed.pop(obj.id, None)  # (a respawned id: its new entry goes last, keeping order)
                self._changed[obj.id] = (obj, len(self.outbox))
        self._trim_history(obj)

    @staticmethod
    def _count_version(obj: SyncObject, version: Version, changes: list[Any] | None) -> None:
        """Count a new version and, for an object with path subscribers, record which paths it changed, so
        a subtree held at a version no longer retained is known unchanged (``_subtree_frame``)."""
        obj.serial += 1
        index, serials = obj.path_index, obj.serials
        if index is None or serials is None:
            return
        index.record(changes, obj.serial)
        serials[version_key(version)] = obj.serial
        if len(serials) > MAX_SERIALS:
            del serials[next(iter(serials))]

    @staticmethod
    def _unchanged(obj: SyncObject, version: Version, full: bytes) -> bool:
        """True if the value in ``full`` (the new version's value frame) is the value held, byte for byte.

        Cheap: both values are already encoded (the new one once, in _version_set; the held one in
        ``obj.full_frame``), and ``value`` is the frame's last field, so its offset is a constant plus the
        encoded id and version (a few bytes to encode) and the comparison is a length check, then one
        memcmp, without a second serialization of the value or a diff. orjson does not sort keys here (OPT_SORT_KEYS is
        not used), so equal values whose keys come in another order count as changed: the conservative
        side (they are pushed, as before), and a producer emits its keys in one order in practice."""
        latest = obj.latest
        if latest is None:
            return False
        held = obj.full_frame
        new_version, old_version = len(codec.dumps(version)), len(codec.dumps(latest[0]))
        if len(full) - new_version != len(held) - old_version:
            return False  # values of different lengths (the usual change): no need to look further
        start = _VALUE_AT + len(codec.dumps(obj.id))
        return full.startswith(memoryview(held)[start + old_version:], start + new_version)

    def _skip_unchanged(self, obj: SyncObject, version: Version, full: bytes) -> None:
        """--skip-unchanged: ``version`` carries the data held. The latest entry of the history takes the new
        version (so new consumers, resyncs and dependents see it), and the version it had becomes an alias
        of that data, so a client still holding it (nothing was pushed to it) gets its next real change as
        a patch from what it holds, and a resync from it gets ``patch: []``. No push: consumers keep the
        version they hold; a paused or held-back one is brought up to date later as usual."""
        self._count_version(obj, version, [])
        previous, data = obj.history[-1]
        aliases = obj.aliases
        aliases[version_key(previous)] = data
        if len(aliases) > MAX_ALIASES:
            # Drop the oldest alias that is not the first of its data: the first is the version every
            # consumer was last pushed before the run (the one most of them hold); later ones are held
            # only by clients that registered during the run.
            last: Any = None
            doomed = next(iter(aliases))
            for key, value in aliases.items():
                if value is last:
                    doomed = key
                    break
                last = value
            del aliases[doomed]
        obj.history[-1] = (version, data)
        obj.full_frame = kept(full)
        obj.frames = {}  # (patches to the latest data: their version-new moved; obj.patches stay right)

    def _trim_history(self, obj: SyncObject) -> None:
        """Keep at most ``retain`` versions, and older ones only while they fit in ``retain_bytes``."""
        drop = max(0, len(obj.history) - self.retain)
        older_bytes = sum(obj.sizes[drop:-1])
        while drop < len(obj.history) - 2 and older_bytes > self.retain_bytes:
            older_bytes -= obj.sizes[drop]
            drop += 1
        if drop:
            del obj.history[:drop]
            del obj.sizes[:drop]
            if obj.aliases:  # an alias lives only as long as its data is retained
                retained = {id(data) for _, data in obj.history}
                obj.aliases = {k: d for k, d in obj.aliases.items() if id(d) in retained}

    # ---- sending data -------------------------------------------------------------------------

    def _push(self, obj: SyncObject, sessions: Iterable[Session]) -> None:
        """Bring sessions to the latest data version: nothing, a patch from what they hold, or the value.

        Sessions holding the same version share one frame, computed and encoded once per object version.
        """
        latest = obj.latest
        if latest is None:
            return
        version, data = latest
        groups: dict[Any, tuple[Version, list[Session]]] = {}
        # Most sessions hold the very same version object (the one the previous push stored), so the
        # comparison and the key are computed once per distinct object, not once per session.
        by_identity: dict[int, tuple[Version, Any]] = {}  # id(held) -> (held, key or None if current)
        # held key -> (held, its path sessions, their paths): two lists, not a tuple per session (with many
        # sessions, a tuple each made the garbage collector run several times per push)
        subtrees: dict[Any, PathSessions] = {}
        for session in sessions:
            if session.paused:
                session.stale[obj.id] = None
                continue
            gate = session.gate
            if gate.closed:  # its front is out of credit: sent on release, latest wins
                gate.stale[obj.id] = None
                continue
            held = session.held.get(obj.id, 0)
            if held is version:
                continue
            known = by_identity.get(id(held))
            if known is None:  # (held is kept in the tuple, so its id cannot be reused meanwhile)
                known = by_identity[id(held)] = (held, None if same(held, version) else version_key(held))
            key = known[1]
            if key is None:
                continue
            path = session.paths.get(obj.id) if session.paths else None
            if path is None:
                group = groups.get(key)
                if group is None:  # (not setdefault: no tuple and list made per session)
                    group = groups[key] = (held, [])
                group[1].append(session)
            else:  # grouped by path below, once the paths the patch touches are known
                pending = subtrees.get(key)
                if pending is None:
                    pending = subtrees[key] = (held, [], [])
                pending[1].append(session)
                pending[2].append(path)
            session.held[obj.id] = version  # (a subtree it holds advances even when nothing under it moved)
        if subtrees:
            self._group_subtrees(obj, data, subtrees, groups)
        for key, (held, members) in groups.items():
            if type(key) is SubtreeKey:
                frame = self._subtree_frame(obj, held, version, data, key)
                if frame:
                    self._send(frame, members)
                continue
            cached = obj.frames.get(key)
            if cached is not None:
                frame = cached
            else:
                frame = self._update_frame(obj, held, key, version, data)
                if frame is not obj.full_frame:  # (the value frame is kept already)
                    frame = kept(frame)
                obj.frames[key] = frame
            self._send(frame, members)
        if (groups or subtrees) and obj.id in self._changed:
            # a batch-mode push of this object is pending at an earlier place in the outbox: it is computed
            # from what the sessions hold now, so it must go after what was just sent, never before it
            del self._changed[obj.id]
            self._changed[obj.id] = (obj, len(self.outbox))

    def _group_subtrees(self, obj: SyncObject, data: dict[str, Any],
                        subtrees: dict[Any, PathSessions],
                        groups: dict[Any, tuple[Version, list[Session]]]) -> None:
        """Group the path sessions of a push by (held version, path), leaving out those whose path the
        object's patch from their held version cannot touch (``PathIndex.touched``): they get nothing, as
        ``_subtree_frame`` would answer (b""), without a rebase or a group each. Without a patch (held
        version not retained, or held nothing) every session is grouped, as before the index."""
        index = self._path_index(obj, subtrees)
        for key, (held, members, paths) in subtrees.items():
            touched = self._touched(obj, held, key, data, index)
            for session, path in zip(members, paths):
                if touched is None or path in touched:
                    groups.setdefault(SubtreeKey(key, path), (held, []))[1].append(session)

    @staticmethod
    def _path_index(obj: SyncObject, subtrees: dict[Any, PathSessions]
                    ) -> subtree.PathIndex:
        """The object's index, holding every path of this push. Paths are only added (a session that left
        or moved to another path leaves its old one, visited for nothing at worst); it is rebuilt when it
        holds more than twice the paths its consumers could watch, so it stays bounded by them."""
        index = obj.path_index
        if index is None or len(index) > 2 * len(obj.consumers) + 64:
            index = obj.path_index = subtree.PathIndex()
            serials = obj.serials = {} if obj.serials is None else obj.serials
            latest = obj.latest
            if latest is not None:  # (counted from now on: the latest version is the one its paths start at)
                serials[version_key(latest[0])] = obj.serial
        paths, serial = index.paths, obj.serial
        for _, _, pending in subtrees.values():
            for path in pending:
                if path not in paths:
                    index.add(path, serial)
        return index

    @staticmethod
    def _touched(obj: SyncObject, held: Version, key: Any, data: dict[str, Any], index: subtree.PathIndex
                 ) -> set[str] | None:
        """The paths the object's patch from ``held`` may change (None: all, there being no patch)."""
        patch = _object_patch(obj, held, key, data)[1]
        return None if patch is None else index.touched(patch)

    def _subtree_frame(self, obj: SyncObject, held: Version, version: Version, data: dict[str, Any],
                       key: SubtreeKey) -> bytes:
        """The update of a subtree subscription, once per (held version, path) and object version: the
        object's patch rebased to the path, the subtree's value when the held version is not retained
        (or the patch is bigger), or b"" when nothing under the path moved (then nothing is sent)."""
        frame = obj.frames.get(key)
        if frame is not None:
            return frame
        held_key, path = key
        base, patch = _object_patch(obj, held, held_key, data)
        if base is None or patch is None:  # not retained: nothing if the subtree is known unchanged since
            frame = b"" if self._unchanged_since(obj, held, path) else self._subtree_value_frame(
                obj, path, version, data)
        else:
            ops = subtree.rebase(patch, path, data)
            if len(ops) == 1 and ops[0]["path"] == "" and json_equal(
                    subtree.resolve(base, subtree.tokens_of(path)), ops[0]["value"]):
                ops = []  # replaced by what it holds (an array shift that left it in place, or still absent)
            if not ops:
                frame = b""
            else:
                frame = protocol.update_subtree_patch(obj.id, path, held, version, ops)
                if len(frame) >= PATCH_ALWAYS_BELOW:  # (else the patch stays whatever the value: no encoding)
                    full = self._subtree_value_frame(obj, path, version, data)
                    frame = full if value_instead(frame, full) else kept(frame)
        obj.frames[key] = frame
        return frame

    @staticmethod
    def _unchanged_since(obj: SyncObject, held: Version, path: str) -> bool:
        """The subtree at ``path`` is the same at ``held`` as now, by the path index's record of changes
        (False when not known: ``held`` is null, older than the counts kept, or never an upload here)."""
        index = obj.path_index
        if index is None or is_null(held):
            return False
        serial = None if obj.serials is None else obj.serials.get(version_key(held))
        return serial is not None and index.unchanged_since(path, serial)

    @staticmethod
    def _subtree_value_frame(obj: SyncObject, path: str, version: Version, data: dict[str, Any]) -> bytes:
        """The subtree's value frame of this version, encoded once per path."""
        full = obj.frames.get(("value", path))
        if full is None:
            full = obj.frames[("value", path)] = kept(
                protocol.update_subtree_value(obj.id, path, version, subtree.resolve(data, subtree.tokens_of(path))))
        return full

    @staticmethod
    def _update_frame(obj: SyncObject, held: Version, key: Any, version: Version, data: dict[str, Any]) -> bytes:
        """A patch from ``held`` if it is retained, else the full value (and the value instead of a patch
        that is no smaller, for values not small: ``value_instead``, the rule subtrees follow too). The
        patch is the one the subtree frames use (``_object_patch``)."""
        full = obj.full_frame
        base, patch = _object_patch(obj, held, key, data)
        if base is None or patch is None:
            return full
        frame = protocol.update_patch(obj.id, held, version, patch)
        return full if value_instead(frame, full) else frame

    def _send(self, frame: bytes, sessions: Iterable[Session]) -> None:
        # an answer's (session,) is queued as it is: no copy per answer
        queued: Sequence[Session] = sessions if type(sessions) is tuple else list(sessions)
        if queued:
            self.outbox.append(Delivery(frame, queued))

    # ---- production queue ---------------------------------------------------------------------

    def _enqueue(self, obj: SyncObject) -> None:
        if obj.id not in self.objects:
            return
        obj.waiting = False
        if obj.inferred is not None and same(obj.inferred, obj.known):
            obj.queued = False
            self.queue.pop(obj.id, None)
            return
        if obj.broken is not None and obj.broken == version_key(obj.inferred):
            return  # in error (see _result_behind): ordered again once its inferred version moves
        if obj.lingering is not None:
            if not self._alive(obj):
                self._drop_lingering(obj)  # stale, and nobody wants a new production
                return
            self._stop_lingering(obj)
        if obj.queued or (obj.in_flight and version_key(obj.inferred) in obj.in_flight):
            return
        if self.min_interval > 0:
            if obj.in_flight:
                return  # one at a time: re-enqueued when the production in flight answers
            if obj.started_at is not None and self._now < obj.started_at + self.min_interval:
                self._delay(obj, obj.started_at + self.min_interval)
                return
        if obj.id in self.delayed:
            if self._now < self.delayed[obj.id]:
                return
            del self.delayed[obj.id]
        if isinstance(obj.inferred, dict) and self._missing_dependency(obj):
            obj.waiting = True
            return
        if self._due:  # seapig would have offered them the queue at the end of their message (FIFO)
            self._assign(self._due)
        obj.queued = True
        self.queue[obj.id] = None
        # As seapig: a newly queued object goes to a free producer at once; an idle one first, so that
        # with prefetch an order waits behind another production only when every producer is busy.
        chosen = None
        for session in obj.producers:
            if not session.producing:
                chosen = session
                break
            if chosen is None and session.has_slot and obj.id not in session.producing:
                chosen = session
        if chosen is not None:
            self._start_production(obj, chosen)

    def _delay(self, obj: SyncObject, due: float) -> None:
        self.delayed[obj.id] = max(due, self.delayed.get(obj.id, 0.0))

    def tick(self, now: float) -> None:
        """Queue the objects whose retry backoff or minimum interval has passed at time ``now``."""
        self._now = now
        if self.lingering:
            self._expire_lingering()
        due = [oid for oid, at in self.delayed.items() if at <= self._now]
        for oid in due:
            del self.delayed[oid]
            obj = self.objects.get(oid)
            if obj is not None:
                self._enqueue(obj)
        self._assign()

    def _missing_dependency(self, obj: SyncObject) -> bool:
        # called for a hash inferred version only (_enqueue checks); the cast's type is a string: no
        # generic alias is built at run time
        for dep, required in cast("dict[str, Version]", obj.inferred).items():
            if is_null(required):
                continue
            dep_obj = self.objects.get(dep)
            if dep_obj is None or is_newer(dep_obj.known, required):
                return True
        return False

    def _assign(self, freed: dict[Session, None] | None = None) -> None:
        """Hand queued objects, oldest first, to the producers that became free since the last call
        (only those in ``freed`` if given).

        Only those need a look: every other free producer was already offered every queued object
        (a newly queued object goes straight to a free producer). So an upload costs the position of
        the first object its producer can take, not a walk of the whole queue. seapig does this at the
        end of each message; the store does it once per batch of messages (when the outbox is taken),
        and before a later message of the batch queues an object, which gives the same orders.
        """
        if freed is None:
            self._due.update(self._freed)
            self._freed = {}
            freed = self._due
        if not freed:
            return
        candidates = {s for s in freed if s.has_slot and s in self.sessions}
        freed.clear()
        while candidates:
            for object_id in self.queue:
                obj = self.objects[object_id]
                session = next((s for s in obj.producers if s in candidates and object_id not in s.producing), None)
                if session is not None:
                    break
            else:
                return
            self._start_production(obj, session)
            if not session.has_slot:
                candidates.discard(session)

    def _start_production(self, obj: SyncObject, session: Session) -> None:
        del self.queue[obj.id]
        obj.queued = False
        inferred = obj.inferred
        key = version_key(inferred)
        session.producing[obj.id] = Order(obj, inferred, self._now, key)
        obj.started_at = self._now
        obj.in_flight[key] = session
        self._send(protocol.produce(obj.id, inferred, self._held_hints(obj)), (session,))

    def _cancel_production(self, session: Session, object_id: str, requeue: bool = True) -> None:
        order = session.producing.pop(object_id, None)
        if order is None:
            return
        if order.obj.in_flight.get(order.key) is session:
            del order.obj.in_flight[order.key]
        self._freed[session] = None
        if requeue:
            self._enqueue(order.obj)


def _object_patch(obj: SyncObject, held: Version, key: Any, data: dict[str, Any]
                  ) -> tuple[dict[str, Any] | None, list[Any] | None]:
    """(the data of ``held``, the object's patch from it to ``data``, the latest), both None when it is not
    retained: diffed once per version and held version (``key``), for the object's frame and every path's,
    in every push of that version (a resumed or registering session's too)."""
    base = None if is_null(held) else obj.data_at(held)
    if base is None:
        return None, None
    patches = obj.patches
    if patches is None:
        patches = obj.patches = {}
    patch = patches.get(key)
    if patch is None:
        patch = patches[key] = make_patch(base, data)
    return base, patch


def value_instead(patch: bytes, value: bytes) -> bool:
    """The one rule for an update from a retained version (objects and subtrees alike): its patch, unless
    the patch is no smaller than the value and the value is not small (under PATCH_ALWAYS_BELOW bytes a
    patch is always kept: it costs little and keeps seapig's behaviour of patching from a retained
    version). A patch under PATCH_ALWAYS_BELOW is thus never replaced, so callers may skip encoding the
    value for it."""
    return len(patch) >= len(value) and len(value) >= PATCH_ALWAYS_BELOW


def kept(frame: bytes) -> bytes:
    """A copy of ``frame`` in a buffer of its own size, for bytes the store keeps past the message.

    orjson returns its output in the buffer it wrote into, at least 4 KiB: a 100-byte frame kept as it
    came costs 4 KiB, so every live object paid ~4 KiB per frame it holds (its latest value and its
    patches from held versions). One copy per version is what the store pays instead (docs/PERFORMANCE.md,
    "Stop 19"). Frames that only pass through the outbox are not copied."""
    return bytes(memoryview(frame))


def _forget(table: dict[str, dict[Session, None]], pattern: str, session: Session) -> None:
    sessions = table.get(pattern)
    if sessions is not None:
        sessions.pop(session, None)
        if not sessions:
            del table[pattern]
