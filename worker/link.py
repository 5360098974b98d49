"""The worker's side of the ZeroMQ envelope (common/wire.py): the socket glue around ``common.peer``.

``RouterLink`` owns the DEALER socket; every protocol decision (HELLO and its retries, WELCOME and the
epoch, PING/PONG, RESET, DROP and the reopen, silence past PEER_TIMEOUT) is ``common.peer.OneSession``'s.
The worker loop (and the notifier's) feeds it every multipart message from the router (``receive``) and
calls ``tick`` on timeouts; both return events:

- ``Ready``: a new session is open (after WELCOME, or after a DROP): register everything again;
- ``Lost``: the session is gone (router restarted, RESET, silence, DROP): orders received on it are
  void, and their answers must not be sent;
- ``Frame``: one seapig JSON frame the router sent to our session (a SENDS message carries any
  number of them, yielded in order).

Sends never block: with IMMEDIATE set, nothing is queued while the router is unreachable (a HELLO queued
for minutes would be replayed to a later router), and a failed send is simply retried by the protocol
(HELLO) or lost (the router requeues what a dead session was producing).
"""

from __future__ import annotations

import logging
import os
import random
import socket

import zmq

from common import wire
from common.peer import Event, Frame, Lost, OneSession, Peer, Ready, Send

__all__ = ["Event", "Frame", "Lost", "Ready", "RouterLink"]

log = logging.getLogger("seasync.worker.link")

# Plain ints: pyzmq's send_multipart computes ``SNDMORE | flags`` per part with enum.Flag (slow).
_MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
_NOBLOCK = int(zmq.NOBLOCK)
_POLLIN = int(zmq.POLLIN)


class RouterLink:
    """One DEALER to the router carrying one producer session (a worker's, or the notifier's)."""

    def __init__(self, ctx: zmq.Context, url: str, name: str, role: str = "worker",
                 send_buffer: int = 0, send_queue: int = 0) -> None:
        """``send_buffer``: the kernel's send buffer for the link in bytes (0: its autotuning);
        ``send_queue``: the messages ZeroMQ queues before a send fails (SNDHWM; 0: ZeroMQ's 1,000). The
        notifier keeps both small, so uploads to a paused router wait as unreported rows in the
        database, where nothing is lost, not in megabytes of socket buffers."""
        self.url = url
        self.socket = ctx.socket(zmq.DEALER)
        if send_buffer:
            self.socket.setsockopt(zmq.SNDBUF, send_buffer)
        if send_queue:
            self.socket.setsockopt(zmq.SNDHWM, send_queue)
        self.socket.setsockopt(zmq.IDENTITY, wire.peer_identity(role))
        self.socket.setsockopt(zmq.IMMEDIATE, 1)
        self.socket.setsockopt(zmq.LINGER, 0)
        # ZMTP heartbeats notice a router host that vanished without closing TCP (the router takes the
        # new connection over, under the same identity: ROUTER_HANDOVER in router/router.py).
        self.socket.setsockopt(zmq.HEARTBEAT_IVL, int(wire.HEARTBEAT_INTERVAL * 2000))
        self.socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(wire.PEER_TIMEOUT * 1000))
        info = {"role": role, "name": name, "pid": os.getpid(), "host": socket.gethostname()}
        self.machine = OneSession(Peer(info, url, log, random.random))

    @property
    def is_open(self) -> bool:
        return self.machine.is_open

    @property
    def sid(self) -> bytes:
        return self.machine.sid

    @property
    def epoch(self) -> bytes | None:
        return self.machine.peer.epoch

    def start(self, now: float) -> None:
        self.socket.connect(self.url)
        log.info("= connecting to router %s as %s", self.url, self.socket.getsockopt(zmq.IDENTITY).decode())
        self._do(self.machine.start(now))

    def send(self, raw: bytes) -> bool:
        """Send one seapig frame on our session; False if it could not be sent."""
        return self.send_many([raw])

    def send_many(self, raws: list[bytes]) -> bool:
        """Send seapig frames of our session, in order, in ONE message ``[MSG, sid, raw, sid, raw...]``
        (one wake-up of the router for the batch); False if they could not be sent."""
        frames = self.machine.messages(raws)
        return frames is not None and self._send(frames)

    def close(self) -> None:
        """End the session (the router unregisters everything) and close the socket."""
        frames = self.machine.close()
        if frames is not None:
            self._send(frames)
            self.socket.close(linger=1000)
        else:
            self.socket.close(linger=0)

    def deadline(self) -> float:
        """When ``tick`` next has something to do."""
        return self.machine.deadline()

    def tick(self, now: float) -> list[Event]:
        """Heartbeats, HELLO retries, router silence, delayed re-opens."""
        return self._do(self.machine.tick(now))

    def receive(self, now: float) -> list[Event]:
        """Read every message waiting on the socket (never blocks) and return what happened."""
        events: list[Event] = []
        sock = self.socket
        # Asking EVENTS is cheaper than the zmq.Again exception that ends a recv loop.
        while sock.getsockopt(zmq.EVENTS) & _POLLIN:
            try:
                frames = sock.recv_multipart(_NOBLOCK)
            except zmq.Again:
                break
            if frames:
                events.extend(self.on_message(frames, now))
        return events

    def on_message(self, frames: list[bytes], now: float) -> list[Event]:
        """Handle one message from the router."""
        return self._do(self.machine.on_message(frames, now))

    def _do(self, events: list[Event]) -> list[Event]:
        """Send the envelopes the machine asks for; the other events are the caller's."""
        out: list[Event] = []
        for event in events:
            if isinstance(event, Send):
                self._send(event.frames)
            else:
                out.append(event)
        return out

    def _send(self, frames: list[bytes]) -> bool:
        send = self.socket.send
        try:
            # The first part decides (ZeroMQ queues a multipart message whole or not at all).
            for part in frames[:-1]:
                send(part, _MORE_NOBLOCK)
            send(frames[-1], _NOBLOCK)
            return True
        except zmq.Again:
            return False
