"""The router's handling of a batch of envelopes, driven step by step over real ZeroMQ sockets.

The router object runs in this process, but nothing of it is mocked: a DEALER peer talks to its ROUTER
socket over TCP, and the test calls the loop's steps (``_drain``, ``_flush``) itself, so it decides what
one batch holds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
import zmq

from common import wire
from router.router import Router
from tests.cluster import free_port


class Peer:
    """A front-like DEALER peer of an in-process router whose loop the test steps by hand."""

    def __init__(self) -> None:
        url = f"tcp://127.0.0.1:{free_port()}"
        self.router = Router(url)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(url)

    def step(self) -> None:
        """One turn of the router's loop: wait for a batch, handle it, send what it produced."""
        assert self.router.sock.poll(10_000), "nothing reached the router"
        time.sleep(0.5)  # let ZeroMQ's I/O thread queue everything already sent: one batch
        self.router._drain()
        self.router._flush()

    def received(self, timeout: float = 5.0) -> list[list[bytes]]:
        out = []
        while self.sock.poll(int(timeout * 1000) if not out else 200):
            out.append(self.sock.recv_multipart())
        return out

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()
        self.router.sock.close(0)
        self.router.ctx.term()


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer()
    yield p
    p.close()


def hello(peer: Peer, *sids: bytes, **info: object) -> None:
    """HELLO as a front (``info``: more of its HELLO, e.g. ``packed=True``), then OPEN ``sids``."""
    peer.sock.send_multipart([wire.HELLO, orjson.dumps({"role": "front", "name": "test", **info})])
    peer.step()
    assert peer.received()[0][0] == wire.WELCOME
    for sid in sids:
        peer.sock.send_multipart([wire.OPEN, sid])


def updates_for(peer: Peer, sid: bytes) -> list[dict]:
    """The object-update frames the router sent to session ``sid``, in order."""
    out = []
    for message in peer.received():
        assert message[0] == wire.SENDS
        out += [orjson.loads(frame) for frame, sids in wire.pairs(message) if sid in wire.unpack_sids(sids)]
    return [u for u in out if u["action"] == "object-update"]


def burst(peer: Peer, sid: bytes, versions: range) -> None:
    """Uploads of ``x``, all in one MSG envelope (as a front batches a master's burst)."""
    frames = [wire.MSG]
    for n in versions:
        frames += [sid, orjson.dumps({"action": "object-patch", "id": "x", "version-new": n, "value": {"n": n}})]
    peer.sock.send_multipart(frames)


def watch_x(peer: Peer, watcher: bytes, master: bytes) -> None:
    peer.sock.send_multipart([wire.MSG, watcher, b'{"action":"object-consumer-register","pattern":"x","version-known":0}',
                              master, b'{"action":"object-producer-register","pattern":"x","version-known":0}'])
    peer.step()
    peer.received()  # the production order to the master


def test_ping_is_answered_ahead_of_the_batch_it_arrived_in(peer):
    """A peer takes a router silent for PEER_TIMEOUT for restarted: the PONG must not wait for the
    messages queued ahead of the PING in the same batch to be handled."""
    hello(peer, b"1")
    for _ in range(300):  # each one answered with an error frame
        peer.sock.send_multipart([wire.MSG, b"1", b"{not json"])
    peer.sock.send_multipart([wire.PING])
    pong_before_first_message: list[bool] = []
    handle_raw = peer.router.store.handle_raw

    def handle_and_look(session, raw, *rest):  # instrumentation only: the real store handles every message
        if not pong_before_first_message:
            pong_before_first_message.append(bool(peer.sock.poll(2000)))
        handle_raw(session, raw, *rest)

    peer.router.store.handle_raw = handle_and_look
    peer.step()
    assert pong_before_first_message == [True]
    kinds = [frames[0] for frames in peer.received()]
    assert kinds[0] == wire.PONG and wire.SENDS in kinds


def test_a_small_burst_in_one_batch_sends_every_version(peer):
    hello(peer, b"w", b"m")
    watch_x(peer, b"w", b"m")
    burst(peer, b"m", range(1, 31))  # 30 messages: under COALESCE_FROM
    peer.step()
    assert [u["version-new"] for u in updates_for(peer, b"w")] == list(range(1, 31))


def test_a_flood_in_one_batch_is_pushed_once_at_its_newest_version(peer):
    hello(peer, b"w", b"m")
    watch_x(peer, b"w", b"m")
    burst(peer, b"m", range(1, 101))  # 100 messages waiting at once: the router is flooded
    peer.step()
    updates = updates_for(peer, b"w")
    assert [u["version-new"] for u in updates] == [100]
    assert updates[0]["value"] == {"n": 100}  # the watcher held nothing: the full value


def test_a_flood_packed_in_one_envelope_is_pushed_every_flush_frames(peer):
    """A front merges what a flooding master sent in one loop iteration into one MSG (thousands of
    uploads): the watchers get the newest version every FLUSH_FRAMES uploads, not once at the end of the
    whole batch (that was a few versions a second for the watchers on a flooding master's front)."""
    from router.router import FLUSH_FRAMES

    hello(peer, b"w", b"m")
    watch_x(peer, b"w", b"m")
    burst(peer, b"m", range(1, 4 * FLUSH_FRAMES + 1))
    peer.step()
    updates = updates_for(peer, b"w")
    assert [u["version-new"] for u in updates] == [FLUSH_FRAMES * k for k in range(1, 5)]
    # the versions a watcher held are long gone from the history (2 retained): full values, each right
    assert [u["value"] for u in updates] == [{"n": FLUSH_FRAMES * k} for k in range(1, 5)]


def test_a_peer_that_reads_packed_pairs_gets_each_sends_in_one_part_and_others_do_not(peer):
    """To a peer whose HELLO said "packed", the pairs of a SENDS travel in one part (one receive instead
    of two per frame); a peer that did not say it (an older front) gets plain pairs."""
    hello(peer, b"w", b"m", packed=True)
    watch_x(peer, b"w", b"m")
    burst(peer, b"m", range(1, 31))
    peer.step()
    messages = peer.received()
    assert messages and all(m[0] == wire.SENDS and m[1] == wire.PACKED and len(m) == 3 for m in messages)
    updates = [orjson.loads(f) for m in messages for f, sids in wire.pairs(m) if b"w" in wire.unpack_sids(sids)]
    assert [u["version-new"] for u in updates if u["action"] == "object-update"] == list(range(1, 31))


def test_an_older_peer_gets_plain_pairs(peer):
    hello(peer, b"w", b"m")
    watch_x(peer, b"w", b"m")
    burst(peer, b"m", range(1, 31))
    peer.step()
    messages = peer.received()
    assert messages and all(wire.PACKED not in m[1::2] for m in messages)


def test_a_packed_msg_is_handled_as_the_pairs_it_packs_and_a_damaged_one_is_refused(peer, caplog):
    """Any peer may pack its MSG pairs; a pack whose lengths do not add up is refused whole (logged), and
    the router goes on with the next message."""
    hello(peer, b"w", b"m")
    watch_x(peer, b"w", b"m")
    uploads = [(b"m", orjson.dumps({"action": "object-patch", "id": "x", "version-new": n, "value": {"n": n}}))
               for n in range(1, 11)]
    peer.sock.send_multipart([wire.MSG, uploads[0][0], uploads[0][1], wire.PACKED, wire.pack_pairs(uploads[1:5])])
    peer.sock.send_multipart([wire.MSG, wire.PACKED, wire.pack_pairs(uploads[5:8])[:-3]])  # damaged: 6-8 lost
    peer.sock.send_multipart([wire.MSG, wire.PACKED, wire.pack_pairs(uploads[8:])])
    with caplog.at_level("WARNING", logger="seasync.router"):
        peer.step()
    assert [u["version-new"] for u in updates_for(peer, b"w")] == [1, 2, 3, 4, 5, 9, 10]
    assert "ignoring a MSG" in caplog.text and "packed part" in caplog.text
