"""The opening handshake's fast path: a plain websocket upgrade read and answered without websockets' parser.

Pure (no I/O). Why: in a reconnect storm websockets' sans-I/O HTTP parsing, its Headers and the
serialized 101 were about a sixth of the front's CPU per reconnect (py-spy, docs/PERFORMANCE.md),
for requests that are all alike: one GET, a dozen header lines, in one TCP segment. ``parse_upgrade``
takes exactly that shape, checked as RFC 6455 §4.2.1 and websockets' ``ServerProtocol.accept``
check it, and says None for anything else (incomplete, unusual, malformed, followed by more bytes):
the connection then goes through websockets' parser, which gives the precise error. So this path
only ever accepts what websockets would accept, a tested property (tests/unit/router/test_handshake.py).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import re
import time
from dataclasses import dataclass

MAX_REQUEST = 16 << 10   # bytes; a longer request takes websockets' path (its limits: 8 KiB a line, 128 headers)
MAX_HEADERS = 128
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3

_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_VALUE = re.compile(rb"[\x09\x20-\x7e\x80-\xff]*")   # no control characters but tab
_TARGET = re.compile(rb"/[\x21-\x7e]*")                # origin-form, visible ASCII (RFC 9112 §3.2.1)


class Headers:
    """Request headers by lower-cased name, in order: what ``Admission`` and ``http_response`` read
    (the ``get``/``get_all`` of websockets' Headers, so both kinds serve)."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, list[str]]) -> None:
        self._values = values

    def get(self, name: str, default: str = "", /) -> str:
        found = self._values.get(name.lower())
        return found[0] if found else default

    def get_all(self, name: str) -> list[str]:
        return self._values.get(name.lower(), [])


@dataclass(frozen=True, slots=True)
class Upgrade:
    """A websocket upgrade request: its target and headers, and the key the 101 answers."""

    path: str
    headers: Headers
    key: str


def parse_upgrade(data: bytes) -> Upgrade | None:
    """The upgrade request that ``data`` is, whole, or None (websockets' parser decides then)."""
    if len(data) > MAX_REQUEST or not data.endswith(b"\r\n\r\n"):
        return None
    lines = data[:-4].split(b"\r\n")
    if b"" in lines or len(lines) > MAX_HEADERS + 1:
        return None  # an empty line inside: more than one message in this read
    request_line = lines[0].split(b" ")
    if len(request_line) != 3 or request_line[0] != b"GET" or request_line[2] != b"HTTP/1.1" \
            or not _TARGET.fullmatch(request_line[1]):
        return None
    values: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            return None  # (a folded line starts with white space: not a token)
        value = value.strip(b" \t")
        if not _VALUE.fullmatch(value):
            return None
        values.setdefault(name.decode().lower(), []).append(value.decode("latin-1"))
    if "content-length" in values or "transfer-encoding" in values:
        return None  # a body: websockets' parser refuses it
    headers = Headers(values)
    key = _key(values)
    if key is None or not _upgrades(values):
        return None
    return Upgrade(request_line[1].decode(), headers, key)


def _upgrades(values: dict[str, list[str]]) -> bool:
    """Connection: upgrade, Upgrade: websocket, Sec-WebSocket-Version: 13, each as websockets requires."""
    connection = [token.strip().lower() for value in values.get("connection", []) for token in value.split(",")]
    upgrade = [token.strip().lower() for value in values.get("upgrade", []) for token in value.split(",")]
    return "upgrade" in connection and upgrade == ["websocket"] and values.get("sec-websocket-version") == ["13"]


def _key(values: dict[str, list[str]]) -> str | None:
    keys = values.get("sec-websocket-key", [])
    if len(keys) != 1:
        return None
    try:
        raw = base64.b64decode(keys[0].encode(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return keys[0] if len(raw) == 16 else None


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


_date: tuple[int, bytes] = (-1, b"")


def _http_date(now: float) -> bytes:
    """The Date header's value, formatted once per second."""
    global _date
    second = int(now)
    if _date[0] != second:
        _date = (second, email.utils.formatdate(second, usegmt=True).encode())
    return _date[1]


def switching_protocols(key: str, now: float | None = None) -> bytes:
    """The 101 answering an upgrade with this key: no extension, no subprotocol."""
    return (b"HTTP/1.1 101 Switching Protocols\r\nDate: " + _http_date(time.time() if now is None else now)
            + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept_key(key).encode() + b"\r\n\r\n")
