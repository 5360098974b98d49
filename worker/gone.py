"""Tell the router at once that a worker process died, so its production is redone now.

On its own the router forgets a peer only after ``common.wire.PEER_TIMEOUT`` (3 s) of silence, and
until then the order the dead worker held stays assigned to it. The pool sees a child die within a
tenth of a second, and knows its ZeroMQ identity (``worker:<host>:<pid>``, ``wire.peer_identity``).

How, without any change to the router: the pool connects a DEALER *under the dead worker's
identity* and says HELLO. The envelope already defines a HELLO from a known identity as "this peer
restarted": the router closes every session of the old incarnation (unregistering its patterns and
requeueing what it was producing, at once) and welcomes the newcomer. The pool then hangs up; the
ghost peer it leaves has no session and is expired by the router after PEER_TIMEOUT.

The router hands an identity over to its newest connection (ROUTER_HANDOVER, router/router.py), so
this works even if it has not yet seen the killed process's TCP connection close; each attempt uses a
fresh socket all the same. Attempts stop at PEER_TIMEOUT, when the router's own timeout does the job
anyway.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import zmq

from common import codec, wire

log = logging.getLogger("seasync.worker.gone")

ATTEMPT_WAIT = 0.3
"""Seconds to wait for WELCOME before trying again on a new socket."""


def worker_identity(pid: int, host: str | None = None) -> bytes:
    """The ZeroMQ identity of the worker process ``pid`` (the form of ``wire.peer_identity("worker")``)."""
    return f"worker:{host or socket.gethostname()}:{pid}".encode()


def hello_for_dead(pid: int, name: str) -> list[bytes]:
    """The HELLO the pool sends for the dead worker ``pid``; its name says what it is in router logs."""
    return [wire.HELLO, codec.dumps({"role": "worker", "name": f"{name} (dead: reported by its pool pid {os.getpid()})",
                                     "pid": pid, "host": socket.gethostname()})]


def announce_gone(ctx: zmq.Context, router: str, pid: int, name: str, secret: str = "",
                  deadline: float = wire.PEER_TIMEOUT) -> bool:
    """Make the router close the sessions of the dead worker ``pid`` now; True once it answered.

    Blocks at most ``deadline`` seconds (run it in a thread: see ``announce_gone_in_background``).
    """
    identity = worker_identity(pid)
    hello = hello_for_dead(pid, name)
    give_up = time.monotonic() + deadline
    attempts = 0
    while time.monotonic() < give_up:
        attempts += 1
        sock = ctx.socket(zmq.DEALER)
        try:
            sock.setsockopt(zmq.IDENTITY, identity)
            sock.setsockopt(zmq.LINGER, 0)
            if secret:
                wire.secure_peer(sock, secret)
            sock.connect(router)
            sock.send_multipart(hello)  # queued until the connection is up
            wait = max(0.0, min(ATTEMPT_WAIT, give_up - time.monotonic()))
            if sock.poll(wait * 1000):
                frames = sock.recv_multipart()
                if frames and frames[0] == wire.WELCOME:
                    log.info("= told the router that %s (pid %d) is gone (attempt %d)", name, pid, attempts)
                    return True
        except zmq.ZMQError as exc:
            log.warning("! could not tell the router that %s (pid %d) is gone: %s", name, pid, exc)
            return False
        finally:
            sock.close(linger=0)
    log.warning("! the router did not answer about %s (pid %d); it will notice by itself within %.0f s",
                name, pid, wire.PEER_TIMEOUT)
    return False


def announce_gone_in_background(ctx: zmq.Context, router: str, pid: int, name: str,
                                secret: str = "") -> threading.Thread:
    """``announce_gone`` in a daemon thread, so the pool keeps supervising meanwhile."""
    thread = threading.Thread(target=announce_gone, args=(ctx, router, pid, name, secret),
                              name=f"gone-{pid}", daemon=True)
    thread.start()
    return thread
