"""The front's I/O side of the router link: one ZeroMQ DEALER driven by the event loop.

The envelope's protocol (HELLO/WELCOME, epoch, PING/PONG, RESET, silence) is ``common/peer.py``'s
pure ``Peer``; this module only moves frames between the socket and the front (router/front/server.py).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable

import zmq

from common.wire import MSG

log = logging.getLogger("seasync.front")

DRAIN_BATCH = 256  # router messages handled per wake-up: bounds one wake-up, so the websockets get their turn

# ---------------------------------------------------------------- the router link


_MORE = int(zmq.SNDMORE) | int(zmq.NOBLOCK)  # ints: pyzmq ORs enum flags in Python, per part
_LAST = int(zmq.NOBLOCK)
_NOBLOCK = int(zmq.NOBLOCK)
_POLLIN = int(zmq.POLLIN)
_EVENTS = int(zmq.EVENTS)


class RouterLink:
    """The front's DEALER to the router, driven by the event loop itself (no zmq.asyncio).

    Why: zmq.asyncio costs a future, callbacks and EVENTS queries per message each way, and an
    envelope sent the moment it is made wakes ZeroMQ's I/O thread once per envelope (profiled in
    a reconnect storm: the OPEN send alone was 12% of the front's CPU). Here every envelope queued
    during one loop iteration is sent at its end, back to back, and the client messages between
    two other envelopes are merged into one ``[MSG, sid, raw, sid, raw, ...]``; the queue is one
    list, so the order of envelopes (a session's MSGs, then its CLOSE) is the order they were made.
    Incoming messages are received with NOBLOCK when the socket's FD is readable.

    ZeroMQ's FD is edge-triggered: it signals that the socket's state changed, and any operation
    on the socket (send, recv, reading EVENTS) may consume that signal. So a drain always goes on
    until EVENTS shows no message waiting (or reschedules itself), and after sending, EVENTS is
    read and a drain scheduled if a message waits.

    Backpressure: an envelope ZeroMQ refuses (its queue to the router is full, SNDHWM) stays in a
    backlog with everything after it, sent when the socket signals again. While there is a
    backlog, ``post`` returns a future (resolved once the backlog is in ZeroMQ) and the websocket
    stops reading until then, so each adds at most one read's messages: the front never buffers
    without limit.
    """

    def __init__(self, sock: zmq.Socket, on_message: Callable[[list[bytes]], None],
                 on_drained: Callable[[], None],
                 pack_msg: Callable[[list[bytes]], list[bytes]] = lambda frames: frames) -> None:
        """``pack_msg``: turns a MSG envelope into its packed form when the router reads it
        (``Peer.pack_msg``); applied once per MSG, when it leaves the iteration's queue."""
        self.sock = sock
        self._pack_msg = pack_msg
        self._on_message = on_message
        self._on_drained = on_drained            # after each drain: the end of a burst
        self._loop = asyncio.get_running_loop()
        self._queue: list[list[bytes]] = []     # envelopes of this iteration, in order
        self._msg: list[bytes] | None = None     # the MSG envelope being filled (last of _queue)
        self._backlog: collections.deque[list[bytes]] = collections.deque()  # refused by ZeroMQ (HWM)
        self._waiter: asyncio.Future[None] | None = None  # websockets waiting for the backlog to go
        self._flush_due = False
        self._read_due = False
        self._fd = sock.getsockopt(zmq.FD)
        self._loop.add_reader(self._fd, self._readable)
        self._read_soon()  # anything already queued raised no edge we could see

    # ------------------------------------------------------------ outgoing

    def send(self, frames: list[bytes]) -> None:
        """Queue one envelope; it goes at the end of this loop iteration, after those before it."""
        self._queue.append(frames)
        self._msg = None
        self._flush_soon()

    def send_ahead(self, frames: list[bytes]) -> None:
        """Queue an envelope that belongs to no session (an ACK) ahead of every one not yet in ZeroMQ: credit
        must not wait behind a flooding master's uploads, and no session's order depends on it."""
        self._backlog.appendleft(frames)  # (a backlog entry is never half sent: see _send_backlog)
        self._flush_soon()

    def post(self, sid: bytes, raw: bytes) -> asyncio.Future[None] | None:
        """Queue a client message (a pair of the current MSG); a future to await if congested."""
        msg = self._msg
        if msg is None:
            msg = self._msg = [MSG]
            self._queue.append(msg)
        msg.append(sid)
        msg.append(raw)
        self._flush_soon()
        if not self._backlog:
            return None
        if self._waiter is None:
            self._waiter = self._loop.create_future()
        return self._waiter

    def drop(self) -> None:
        """Forget every envelope not yet in ZeroMQ (they belong to a router incarnation now gone)."""
        self._queue, self._msg = [], None
        self._backlog.clear()
        self._release()

    def flush(self) -> None:
        """Send what this iteration queued (after any backlog), then look for incoming messages."""
        self._flush_due = False
        queue, self._queue, self._msg = self._queue, [], None
        if self.sock.closed:  # a websocket outliving shutdown: the router is gone for us
            return
        pack = self._pack_msg
        self._backlog.extend(pack(frames) if frames[0] == MSG else frames for frames in queue)
        self._send_backlog()

    def _flush_soon(self) -> None:
        if not self._flush_due:
            self._flush_due = True
            self._loop.call_soon(self.flush)

    def _send_backlog(self) -> None:
        backlog = self._backlog
        send = self.sock.send
        try:
            while backlog:
                frames = backlog[0]
                last = len(frames) - 1
                try:  # ZeroMQ may refuse only a message's first part (HWM counts whole messages)
                    send(frames[0], _MORE if last else _LAST)
                except zmq.Again:
                    break  # the socket signals when it is writable again: _readable
                backlog.popleft()
                for i in range(1, last + 1):
                    send(frames[i], _MORE if i < last else _LAST)
        except zmq.ZMQError as exc:  # the context is terminating, or a bug: never kill the loop
            log.error("! send to router failed: %s", exc)
            backlog.clear()
        if not backlog:
            self._release()
        if self.sock.getsockopt(_EVENTS) & _POLLIN:  # our sends may have taken the FD's edge
            self._read_soon()

    def _release(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------ incoming

    def _read_soon(self) -> None:
        if not self._read_due:
            self._read_due = True
            self._loop.call_soon(self._readable)

    def _readable(self) -> None:
        """The FD fired (or a drain is due): receive until no message waits, then send any backlog."""
        self._read_due = False
        sock = self.sock
        if sock.closed:
            return
        recv = sock.recv_multipart
        events = sock.getsockopt
        on_message = self._on_message
        try:
            for _ in range(DRAIN_BATCH):
                # EVENTS, not an Again exception, ends the drain (cheaper); no POLLIN in EVENTS
                # also means the FD's edge is re-armed: the next message will fire it
                if not events(_EVENTS) & _POLLIN:
                    break
                on_message(recv(_NOBLOCK))
            else:
                self._read_soon()  # more is waiting: the rest next iteration, after the websockets
        except zmq.Again:  # EVENTS said a message waited; never seen, harmless
            pass
        except zmq.ZMQError as exc:
            log.error("! receive from router failed: %s", exc)
        finally:
            self._on_drained()
        if self._backlog:
            self._send_backlog()

    def close(self, linger: int) -> None:
        """Send what is queued (as far as ZeroMQ takes it), stop reading, close the socket."""
        if self.sock.closed:
            return
        self.flush()
        self._loop.remove_reader(self._fd)
        self.sock.close(linger=linger)
        self.drop()
