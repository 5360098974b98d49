"""A TCP proxy for tests that can black-hole its links: a network partition without closing any socket.

``BlackHole(upstream_port)`` listens on a free loopback port and relays every connection to
127.0.0.1:upstream_port. ``block()`` stops it dead in both directions: nothing is read, written or
accepted, so bytes pile up in the kernel's buffers and the endpoints see only silence, as when a link is
cut somewhere on the path; TCP connections stay open. ``resume()`` delivers what waited, in order, and
relays again. A connection closed at one end is closed at the other once the proxy reads the EOF, or,
with ``lose_fin=S`` for a client's close, S seconds later: the FIN lost in the partition and
retransmitted, so the server holds the old link while the client's new connection arrives (what a
real partition does). One thread, non-blocking sockets, select().
"""

from __future__ import annotations

import select
import socket
import threading
import time

CHUNK = 1 << 16
MAX_PENDING = 4 << 20  # per direction: past this, stop reading the source until the sink drains


class BlackHole:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1", lose_fin: float = 0.0) -> None:
        self.upstream = (host, upstream_port)
        self.lose_fin = lose_fin
        self._clients: set[socket.socket] = set()
        self._zombies: dict[socket.socket, float] = {}  # server sides of closed clients -> when to close
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.url = f"tcp://{host}:{self.port}"
        self.blocked = threading.Event()
        self.connections = 0  # accepted so far (a reconnect shows up here)
        self._peer: dict[socket.socket, socket.socket] = {}
        self._pending: dict[socket.socket, bytearray] = {}  # bytes waiting to be written TO this socket
        self._running = True
        self._thread = threading.Thread(target=self._run, name="blackhole", daemon=True)
        self._thread.start()

    def block(self) -> None:
        self.blocked.set()

    def resume(self) -> None:
        self.blocked.clear()

    def close(self) -> None:
        self._running = False
        self._thread.join(5)
        for sock in [*self._peer, *self._zombies]:
            sock.close()
        self.listener.close()

    def _run(self) -> None:
        while self._running:
            if self.blocked.is_set():
                time.sleep(0.02)
                continue
            now = time.monotonic()
            for sock, due in list(self._zombies.items()):
                if now >= due:
                    del self._zombies[sock]
                    sock.close()
            readers = [self.listener, *self._zombies] + [s for s, peer in self._peer.items()
                                                         if len(self._pending[peer]) < MAX_PENDING]
            writers = [s for s, data in self._pending.items() if data]
            try:
                readable, writable, _ = select.select(readers, writers, [], 0.05)
            except (OSError, ValueError):  # a socket closed under us: next round
                continue
            if self.blocked.is_set():
                continue
            for sock in writable:
                self._write(sock)
            for sock in readable:
                if sock is self.listener:
                    self._accept()
                elif sock in self._peer:
                    self._read(sock)
                elif sock in self._zombies:
                    self._discard(sock)

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        self.connections += 1
        self._clients.add(client)
        for sock in (client, server):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._pending[sock] = bytearray()
        self._peer[client], self._peer[server] = server, client

    def _read(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        self._pending[self._peer[sock]] += data

    def _write(self, sock: socket.socket) -> None:
        pending = self._pending.get(sock)
        if not pending:
            return
        try:
            sent = sock.send(pending)
        except BlockingIOError:
            return
        except OSError:
            self._drop(sock)
            return
        del pending[:sent]

    def _discard(self, sock: socket.socket) -> None:
        """What the server sends on a link whose client is gone: read and dropped (lost on the path)."""
        try:
            data = sock.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            del self._zombies[sock]
            sock.close()

    def _drop(self, sock: socket.socket) -> None:
        peer = self._peer.pop(sock, None)
        self._pending.pop(sock, None)
        sock.close()
        if peer is not None and sock in self._clients and self.lose_fin > 0:
            self._clients.discard(sock)
            self._peer.pop(peer, None)
            leftover = self._pending.pop(peer, None)
            if leftover:  # what the client sent before its close still arrives
                try:
                    peer.setblocking(True)
                    peer.settimeout(1)
                    peer.sendall(leftover)
                    peer.setblocking(False)
                except OSError:
                    pass
            self._zombies[peer] = time.monotonic() + self.lose_fin
            return
        self._clients.discard(sock)
        if peer is not None:
            self._peer.pop(peer, None)
            leftover = self._pending.pop(peer, None)
            try:
                if leftover:
                    peer.setblocking(True)
                    peer.settimeout(1)
                    peer.sendall(leftover)  # what the closing side sent before its EOF
            except OSError:
                pass
            peer.close()
