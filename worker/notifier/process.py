"""The notifier process: publishes dependency versions to the router (``sync-notifier``).

To the router it is one producer session (over ``worker.link.RouterLink``, the worker's side of the
ZeroMQ envelope) registered for ``dep:*`` and ``Seconds:*``:

- ``object-produce dep:NAME`` (someone depends on NAME) is answered with NAME's current durable
  version and data ``{}``; ``object-produce Seconds:N`` with ``floor(now / N)``, and from then on
  ``Seconds:N`` is uploaded every N seconds until the router destroys it;
- each new version of a dependency is uploaded (``object-patch``, data ``{}``) as soon as the
  database says so (PostgreSQL: NOTIFY; SQLite: a nudge from ``bump`` or a 50 ms poll). The router
  then raises that dependency in every object built from it and produces them again.

Nothing is lost while the notifier, the router or the database is down: every row records the last
version reported, and rows are marked only after their upload was handed to the socket. On start and
after every new router session or database connection the notifier uploads every row not reported,
plus every row bumped in the last RECENT_WINDOW seconds (an upload handed to the socket can still be
lost if the process dies at that moment; duplicates are harmless, the router ignores versions it has).
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import zmq

from common import codec, protocol, wire
from common.deps import config, names
from common.deps.errors import DatabaseUnavailable, DependencyError
from worker.notifier.ticker import Ticker
from common.versioning import is_newer
from worker.link import Frame, Lost, Ready, RouterLink
from worker.wakeup import WakePipe

log = logging.getLogger("seasync.notifier")

RECENT_WINDOW = 60.0
"""Seconds of recent bumps uploaded again after a (re)start, as seapig did."""
RETRY_DELAY = 1.0
"""Seconds between two attempts to reach a database that is down."""
RESCAN_INTERVAL = 5.0
"""Seconds between two passes over unreported rows even when nothing signalled a change."""
MAX_WAIT = 0.5
LINK_SEND_BUFFER = 256 * 1024
"""Bytes of uploads the kernel may hold for a router that does not read (the rest wait in the database)."""
UPLOADS_PER_MESSAGE = 100
"""Uploads of one pass sent together in one ZeroMQ message (``RouterLink.send_many``): the router wakes
up, reads and dispatches once per message, not once per upload (its CPU per upload falls by about a
quarter). Bounded so that one message stays small (a few KB) beside LINK_SEND_BUFFER and LINK_QUEUE:
a full link refuses a whole message, and what it refuses is only left unreported, never lost."""
LINK_QUEUE = 20
"""Messages ZeroMQ itself may queue for a router that does not read (its SNDHWM, default 1,000): with
UPLOADS_PER_MESSAGE uploads each, the default would hold 100,000 uploads in memory; this keeps the
backlog in the database, as with one upload per message."""
LOGGED_ROWS = 10
"""Uploads of one pass logged one by one with -v (the rest as a count: a pass may hold thousands)."""


def upload_frame(object_id: str, version: Any, announce: bool = True) -> bytes:
    """The frame that uploads one dependency version: data ``{}``; for an ``announce:X`` row (unless
    ``announce`` is False: the router asked for that object as a dependency), X's version with data
    True instead, so that the router orders X produced again if it holds an older one."""
    target = (names.announced_id(object_id[len(names.PREFIX):])
              if announce and object_id.startswith(names.PREFIX) else None)
    if target is not None:
        return codec.dumps(protocol.upload(target, version, True))
    return codec.dumps(protocol.upload(object_id, version, {}))


def upload_messages(rows: list[tuple[str, int]], skip: dict[str, int] | None = None,
                    per_message: int = UPLOADS_PER_MESSAGE) -> Iterator[tuple[int, list[bytes]]]:
    """The messages that upload dependency rows ``(name, version)`` in order, as ``(first, frames)``:
    ``rows[first]`` is the first row with a frame in this message, every row before it is in an earlier
    message or needs none (its version is in ``skip``: already uploaded). So if a message cannot be
    sent, ``first`` rows were handed over. Built lazily: nothing is encoded past a refused message."""
    first, raws = 0, []
    for i, (name, version) in enumerate(rows):
        if skip is not None and skip.get(name) == version:
            continue
        if not raws:
            first = i
        raws.append(upload_frame(names.object_id(name), version))
        if len(raws) == per_message:
            yield first, raws
            raws = []
    if raws:
        yield first, raws


def open_feed(target: config.Target) -> Any:
    """The notifier side of a backend (not connected yet)."""
    if target.kind == "sqlite":
        from common.deps import sqlite
        return sqlite.Feed(target.where)
    from common.deps import postgres
    return postgres.Feed(target.where)


class Notifier:
    """The loop of the notifier process."""

    def __init__(self, router: str, target: config.Target, name: str | None = None, secret: str = "") -> None:
        self.target = target
        self.ctx = zmq.Context()
        self.link = RouterLink(self.ctx, router, name or f"notifier@{socket.gethostname()}", role="notifier",
                               send_buffer=LINK_SEND_BUFFER, send_queue=LINK_QUEUE)
        if secret:
            wire.secure_peer(self.link.socket, secret)  # before RouterLink.start() connects
        self.feed = open_feed(target)
        self.ticker = Ticker()
        self.pending: deque[tuple[str, Any]] = deque()  # dep orders waiting for the database
        self.hinted: dict[str, int] = {}  # uploaded from a notification, not yet marked reported
        self.db_up = False
        self.db_retry_at = 0.0
        self.db_error: str | None = None
        self.next_check = 0.0
        self.next_rescan = 0.0
        self.catch_up_needed = True
        self.stopping = False
        self.uploads = 0
        self.upload_messages = 0  # ZeroMQ messages that carried them (UPLOADS_PER_MESSAGE at most each)
        self.blocked = False  # an upload found the link full: publish again as soon as it takes more
        self.wakeup = WakePipe()

    # ---- main loop ---------------------------------------------------------------------------

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.wakeup.catch_signals()
        self.link.start(time.monotonic())
        poller = zmq.Poller()
        poller.register(self.link.socket, zmq.POLLIN)
        poller.register(self.wakeup.fd, zmq.POLLIN)
        polled: int | None = None  # the database's descriptor, while it is registered
        while not self.stopping:
            now = time.monotonic()
            if not self.db_up and now >= self.db_retry_at:
                self._open_database(now)
            fd = self._database_fd()
            if fd != polled:
                if polled is not None:
                    poller.unregister(polled)
                if fd is not None:
                    poller.register(fd, zmq.POLLIN)
                polled = fd
            # while blocked, also wake when the link has room again (not at the next 5 s rescan)
            poller.register(self.link.socket, zmq.POLLIN | zmq.POLLOUT if self.blocked else zmq.POLLIN)
            ready = dict(poller.poll(self._timeout(now) * 1000))
            now = time.monotonic()
            if ready.get(self.wakeup.fd):
                self.wakeup.drain()
            link_events = ready.get(self.link.socket, 0)
            if link_events & zmq.POLLIN:
                self._receive(now)
            self._on_events(self.link.tick(now))
            self._database_step(now, fd is not None and bool(ready.get(fd)),
                                unblocked=self.blocked and bool(link_events & zmq.POLLOUT))
            self._tick_seconds()
        self._shutdown()
        return 0

    def _database_fd(self) -> int | None:
        if not self.db_up:
            return None
        try:
            return self.feed.fileno()
        except DatabaseUnavailable as exc:
            self._database_down(exc)
            return None

    def _timeout(self, now: float) -> float:
        deadline = min(self.link.deadline(), now + MAX_WAIT)
        deadline = min(deadline, self.next_check if self.db_up else self.db_retry_at)
        tick = self.ticker.deadline()
        if tick is not None:
            deadline = min(deadline, now + (tick - time.time()))
        return max(0.0, deadline - now)

    def _receive(self, now: float) -> None:
        self._on_events(self.link.receive(now))

    def _on_events(self, events: list) -> None:
        for event in events:
            if isinstance(event, Frame):
                try:
                    self._on_frame(event.raw)
                except DependencyError as exc:
                    log.error("! %s", exc)
                except Exception:  # a bug must not stop the publishing of every other version
                    log.exception("! internal error while handling %.200r", event.raw)
            elif isinstance(event, Ready):
                self.ticker.clear()
                self.pending.clear()
                self.hinted.clear()
                self._send(protocol.options_set({"name": "notifier"}))
                for pattern in (names.PATTERN, names.SECONDS_PATTERN):
                    self._send(protocol.producer_register(pattern))
                log.info("> registered %s and %s", names.PATTERN, names.SECONDS_PATTERN)
                self.catch_up_needed = True
            elif isinstance(event, Lost):
                log.info("= router session lost (%s)", event.reason)
                self.ticker.clear()
                self.pending.clear()
                self.hinted.clear()

    # ---- router messages ---------------------------------------------------------------------

    def _on_frame(self, raw: bytes) -> None:
        try:
            message = codec.loads(raw)
        except codec.JSONDecodeError:
            log.warning("! undecodable frame from the router: %.200r", raw)
            return
        if not isinstance(message, dict):
            return
        action, object_id = message.get("action"), message.get("id")
        if action == "object-produce" and isinstance(object_id, str):
            self._produce(object_id, message.get("version-inferred"))
        elif action == "object-destroy" and isinstance(object_id, str):
            period = names.seconds_period(object_id)
            if period is not None:
                self.ticker.remove(period)
            log.debug("< object-destroy %s", object_id)
        elif action == "error":
            log.warning("! the router reports an error: %s", message.get("message"))

    def _produce(self, object_id: str, inferred: Any) -> None:
        period = names.seconds_period(object_id)
        if period is not None:
            at_least = inferred if isinstance(inferred, int) and not isinstance(inferred, bool) else 0
            self._upload(object_id, self.ticker.add(period, time.time(), at_least))
            return
        name = names.name_of(object_id)
        if name is None:
            log.warning("! asked to produce %r, which is neither dep:NAME nor Seconds:N (a positive whole "
                        "number): answering with a stall", object_id)
            self._send(protocol.upload(object_id, 1, False))
            return
        if not self.db_up:
            self.pending.append((object_id, inferred))  # answered when the database is back
            return
        self._answer_dependency(object_id, name, inferred)

    def _answer_dependency(self, object_id: str, name: str, inferred: Any) -> None:
        try:
            version = self.feed.current(name)
        except DatabaseUnavailable as exc:
            self._database_down(exc)
            self.pending.append((object_id, inferred))
            return
        if inferred is not None and is_newer(version, inferred):
            # The router saw a higher version than the database has: the database was replaced or the
            # producers use another one. Answer with the router's version so it does not spin.
            log.error("! %s: the router expects version %s but the database has %s; is every process "
                      "using the same --deps / SEASYNC_DEPS (%s)?", object_id, inferred, version,
                      self.target.describe())
            version = inferred
        self._upload(object_id, version, announce=False)

    def _upload(self, object_id: str, version: Any, announce: bool = True) -> bool:
        """Upload one dependency version (see ``upload_frame``); False if the link is full."""
        sent = self._send_uploads([upload_frame(object_id, version, announce)])
        if sent:
            log.debug("> %s = %s", object_id, version)
        return sent

    def _upload_rows(self, rows: list[tuple[str, int]], skip: dict[str, int] | None = None) -> int:
        """Upload dependency rows ``(name, version)`` in order, UPLOADS_PER_MESSAGE per message; a row
        whose version is in ``skip`` was already uploaded and is only counted as handed over. Returns
        how many rows (a prefix of ``rows``) were handed to the socket: a full link stops it there."""
        done = self._send_rows(rows, skip)
        if done and log.isEnabledFor(logging.DEBUG):
            for name, version in rows[:min(done, LOGGED_ROWS)]:
                log.debug("> %s = %s", names.object_id(name), version)
            if done > LOGGED_ROWS:
                log.debug("> ... and %d more dependency versions", done - LOGGED_ROWS)
        return done

    def _send_rows(self, rows: list[tuple[str, int]], skip: dict[str, int] | None) -> int:
        for first, raws in upload_messages(rows, skip):
            if not self._send_uploads(raws):
                return first
        return len(rows)

    def _send_uploads(self, raws: list[bytes]) -> bool:
        """Send upload frames in one message; a full link sets ``blocked`` (the rows stay unreported and
        go out when it has room: ``_database_step(unblocked=...)``)."""
        if self.link.send_many(raws):
            self.uploads += len(raws)
            self.upload_messages += 1
            return True
        if not self.blocked:  # before, the rows waited for the next rescan
            self.blocked = True
            log.debug("= the router link is full: the rows left unreported go out when it has room")
        return False

    def _send(self, message: dict) -> bool:
        return self.link.send(codec.dumps(message))

    # ---- database ----------------------------------------------------------------------------

    def _open_database(self, now: float) -> None:
        self.feed.close()
        try:
            self.feed.open()
        except DependencyError as exc:  # unreachable, or no right to create the tables: retry
            if self.db_error != str(exc):
                log.error("! %s (retrying every %.0f s)", exc, RETRY_DELAY)
                self.db_error = str(exc)
            self.db_retry_at = now + RETRY_DELAY
            return
        if self.db_error is not None:
            log.info("= the dependency database is back")
        self.db_up, self.db_error = True, None
        self.next_check = now + self.feed.poll_interval
        self.catch_up_needed = True

    def _database_down(self, exc: DependencyError) -> None:
        log.error("! lost the dependency database: %s (retrying every %.0f s)", exc, RETRY_DELAY)
        self.db_error = str(exc)
        self.db_up = False
        self.hinted.clear()
        self.feed.close()
        self.db_retry_at = time.monotonic() + RETRY_DELAY

    def _database_step(self, now: float, readable: bool, unblocked: bool = False) -> None:
        """``unblocked``: an earlier pass stopped at a full link, which has room now: the rows it left
        unreported go out at once."""
        if not self.db_up:
            return
        try:
            changed = self._drain() if readable else False
            if unblocked:
                self.blocked = False
                changed = True
                log.debug("= the router link has room again: publishing the rows left unreported")
            if now >= self.next_check:
                reopened = getattr(self.feed, "reopened", 0)
                changed = self.feed.changed() or changed
                self.next_check = now + self.feed.poll_interval
                if getattr(self.feed, "reopened", 0) != reopened:
                    self.catch_up_needed = True  # another file: upload its unreported and recent rows
            if now >= self.next_rescan:
                changed = True
                self.next_rescan = now + RESCAN_INTERVAL
            if not self.link.is_open:
                return  # everything unreported goes out at the next session's catch-up
            if self.catch_up_needed:
                self._catch_up()
            elif changed:
                self._publish()
            while self.pending and self.db_up:
                object_id, inferred = self.pending.popleft()
                self._answer_dependency(object_id, names.name_of(object_id) or "", inferred)
        except DatabaseUnavailable as exc:
            self._database_down(exc)

    def _drain(self) -> bool:
        """Read the database's signals; versions they announce are uploaded at once (PostgreSQL)."""
        changed, hints = self.feed.drain()
        if hints and self.link.is_open and not self.catch_up_needed:
            sent = self._upload_rows(hints)
            for name, version in hints[:sent]:
                self.hinted[name] = version
        return changed

    def _publish(self) -> None:
        def send(rows: list[tuple[str, int]]) -> int:
            # a row already uploaded from its notification is only marked reported
            return self._upload_rows(rows, self.hinted)

        while True:
            count = self.feed.publish_unreported(send)
            self.hinted.clear()
            if count:
                log.debug("> published %d new dependency versions", count)
            # Notifications that arrived while we queried sit in the driver's backlog: loop on them.
            if not self._drain():
                return

    def _catch_up(self) -> None:
        self.catch_up_needed = False
        sent: dict[str, int] = {}

        def send(rows: list[tuple[str, int]]) -> int:
            sent.update(rows)  # offered: a row the link refused stays unreported for the next pass
            return self._upload_rows(rows)

        count = self.feed.publish_unreported(send)
        again = [(n, v) for n, v in self.feed.recent(RECENT_WINDOW, time.time()) if sent.get(n) != v]
        self._upload_rows(again)
        log.info("= caught up: %d unreported and %d recent dependency versions uploaded", count, len(again))

    # ---- time dependencies -------------------------------------------------------------------

    def _tick_seconds(self) -> None:
        if not self.link.is_open:
            return
        for object_id, version in self.ticker.due(time.time()):
            self._upload(object_id, version)

    # ---- stopping ----------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self.stopping:
            self.stopping = True
            log.info("= %s received: stopping", signal.Signals(signum).name)

    def _shutdown(self) -> None:
        self.link.close()
        self.ctx.term()
        self.feed.close()
        log.info("= stopped (%d uploads in %d messages)", self.uploads, self.upload_messages)
