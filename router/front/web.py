"""HTTP on the websocket port: the static files of router/static/ and admission by Host and Origin.

Pure except for reading the static files: ``Admission`` decides from the request headers alone
whether a page (Origin) or a name (Host, against DNS rebinding) is served; the 403 it leads to
carries a stable code.
"""

from __future__ import annotations

import ipaddress
import logging
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from websockets.datastructures import Headers
from websockets.http11 import Response

from common import codec

log = logging.getLogger("seasync.front")

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class RequestHeaders(Protocol):
    """What is read of a request's headers: websockets' Headers, or router/front/handshake.py's."""

    def get(self, name: str, default: str, /) -> str: ...

    def get_all(self, name: str) -> list[str]: ...


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


STATIC_DIR = Path(__file__).parent.parent / "static"  # router/static/
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}


def static_file(path: str, root: Path = STATIC_DIR) -> Path | None:
    """The file of ``root`` that a request path names, or None (a 404).

    ``/`` is ``index.html``; the query string is ignored. The directory is flat: a name with a
    slash, a backslash or a leading dot is refused, so no path can leave ``root``.
    """
    path = urllib.parse.unquote(path.split("?", 1)[0].split("#", 1)[0])
    name = path[1:] if path.startswith("/") else path
    name = name or "index.html"
    if "/" in name or "\\" in name or "\0" in name or name.startswith("."):
        return None
    file = root / name
    if file.suffix not in CONTENT_TYPES or not file.is_file():
        return None
    return file


def _plain_response(status: int, reason: str, body: bytes, kind: str, **extra: str) -> Response:
    headers = Headers([
        ("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-cache"),
        ("X-Content-Type-Options", "nosniff"), ("Connection", "close"), *extra.items(),
    ])
    return Response(status, reason, headers, body)


def http_response(path: str, headers: RequestHeaders) -> Response | None:
    """None lets a websocket upgrade through; a plain GET gets a file or a 404."""
    if headers.get("Upgrade", "").lower() == "websocket":
        return None
    file = static_file(path)
    try:
        body = file.read_bytes() if file is not None else None
    except OSError as exc:
        log.warning("! cannot read %s: %s", file, exc)
        body = None
    log.debug("< http GET %s -> %d", path, 200 if body is not None else 404)
    if file is None or body is None:
        return _plain_response(404, "Not Found", b"not found\n", "text/plain; charset=utf-8")
    return _plain_response(200, "OK", body, CONTENT_TYPES[file.suffix])


def busy_response() -> Response:
    """The answer to a connection beyond --max-connections: 503, retry later."""
    return _plain_response(503, "Service Unavailable", b"too many connections, try again later\n",
                           "text/plain; charset=utf-8", **{"Retry-After": "5"})


DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
ADMISSION_CACHE = 256    # distinct (Host, Origin) decisions kept
ADMISSION_KEY_MAX = 512  # characters of Host and Origin together above which a decision is not kept
_UNDECIDED = object()
ANY_INTERFACE = ("", "0.0.0.0", "::", "[::]")


def split_host(value: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a Host header (``example.com:3001``, ``[::1]:3001``, ``127.0.0.1``), the
    name lower-cased and without brackets; None if it is not one."""
    value = value.strip().lower()
    if value.startswith("["):
        name, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else ""
    else:
        name, _, port_text = value.partition(":") if value.count(":") <= 1 else (value, "", "")
    if not name or any(c in name for c in "/@?#\\ "):
        return None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return None
        return name.rstrip("."), int(port_text)
    return name.rstrip("."), None


def parse_origin(value: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an Origin header (``https://app.example.com``, ports defaulted by
    scheme), lower-cased; None for ``null`` or anything that is not ``scheme://host[:port]``."""
    parts = urllib.parse.urlsplit(value.strip())
    if parts.scheme not in DEFAULT_PORTS or parts.path not in ("", "/") or parts.query or parts.username:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return None
    return parts.scheme, host, port if port is not None else DEFAULT_PORTS[parts.scheme]


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_loopback_name(name: str) -> bool:
    """``localhost`` (and ``*.localhost``, which browsers resolve to loopback themselves) or a loopback IP."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Admission:
    """Which browser pages may open a websocket, and which Host names the front answers to (pure).

    Origin: a request without one is not from a browser page (the Python client, sync-observer,
    curl) and is admitted. A browser always sends it, so a page of another site that tries to
    read and write every object through a visitor's browser is refused, unless it is the front's
    own origin (the viewer page it serves), a loopback origin on any port (a local page: any local
    process can connect without a browser anyway), or listed in ``--allowed-origins``.

    Host (DNS rebinding: an attacker's name that resolves to 127.0.0.1 makes the browser treat the
    front as the attacker's own site): the name must be one the front serves: an IP literal (no DNS
    involved, so no rebinding), a loopback name, ``--host``, this machine's names when it listens on
    every interface, or ``--allowed-hosts``. A request without Host is not a browser's and passes.
    """

    hosts: frozenset[str]
    origins: frozenset[tuple[str, str, int]]
    any_host: bool = False
    any_origin: bool = False
    # decisions by (Host values, Origin values): a reconnect storm sends the same few thousands of times
    _decided: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, str] | None] = field(
        default_factory=dict, compare=False, repr=False)

    @classmethod
    def for_front(cls, host: str, allowed_hosts: Iterable[str] = (), allowed_origins: Iterable[str] = (),
                  machine_names: Iterable[str] = ()) -> "Admission":
        """The admission of a front listening on ``host``; raises ValueError for a malformed origin."""
        names = {n.strip().lower().strip("[]").rstrip(".") for n in allowed_hosts if n.strip()}
        if host.lower() in ANY_INTERFACE:
            names.update(n.lower() for n in machine_names if n)
        else:
            names.add(host.lower().strip("[]"))
        origins: set[tuple[str, str, int]] = set()
        any_origin = False
        for entry in allowed_origins:
            entry = entry.strip()
            if not entry:
                continue
            if entry == "*":
                any_origin = True
                continue
            parsed = parse_origin(entry)
            if parsed is None:
                raise ValueError(f"{entry!r} is not an origin like https://app.example.com[:port]")
            origins.add(parsed)
        return cls(frozenset(names - {"*"}), frozenset(origins), any_host="*" in names, any_origin=any_origin)

    def refusal(self, headers: RequestHeaders) -> tuple[str, str] | None:
        """``(code, message)`` if the request must be refused (403), else None. Decided once per distinct
        (Host, Origin) (at most ADMISSION_CACHE of them, each short: a cache bounded in entries and size)."""
        key = (tuple(headers.get_all("Host")), tuple(headers.get_all("Origin")))
        found = self._decided.get(key, _UNDECIDED)
        if found is not _UNDECIDED:
            return found  # type: ignore[return-value]
        decision = self._refusal(list(key[0]), list(key[1]))
        if sum(map(len, key[0])) + sum(map(len, key[1])) <= ADMISSION_KEY_MAX:
            if len(self._decided) >= ADMISSION_CACHE:
                self._decided.clear()
            self._decided[key] = decision
        return decision

    def _refusal(self, hosts: list[str], origins: list[str]) -> tuple[str, str] | None:
        if len(hosts) > 1:
            return "host-not-allowed", "more than one Host header"
        host = split_host(hosts[0]) if hosts else None
        if hosts and host is None:
            return "host-not-allowed", "malformed Host header"
        if host is not None and not self.any_host and not self.serves(host[0]):
            return "host-not-allowed", (f"this server does not answer to the name {host[0]!r} (a DNS rebinding "
                                        "guard; list it with sync-front --allowed-hosts)")
        if not origins:
            return None
        if len(origins) > 1:
            return "origin-not-allowed", "more than one Origin header"
        if self.any_origin:
            return None
        origin = parse_origin(origins[0])
        if origin is not None and (is_loopback_name(origin[1]) or origin in self.origins
                                   or (host is not None and origin[1] == host[0]
                                       and origin[2] == (host[1] or DEFAULT_PORTS[origin[0]]))):
            return None
        return "origin-not-allowed", (f"pages from {origins[0][:200]!r} may not connect (a cross-site guard; "
                                      "list the origin with sync-front --allowed-origins)")

    def serves(self, name: str) -> bool:
        return is_ip_literal(name) or is_loopback_name(name) or name in self.hosts


def forbidden_response(code: str, message: str) -> Response:
    """403 with a JSON error body, like the error frames of the protocol (stable ``code``)."""
    body = codec.dumps({"action": "error", "code": code, "message": message}) + b"\n"
    return _plain_response(403, "Forbidden", body, "application/json")

