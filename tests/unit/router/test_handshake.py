"""The front's fast upgrade path (router/front/handshake.py) against websockets' own parser: it only ever
accepts what websockets accepts, with the same Sec-WebSocket-Accept, and leaves everything else to it."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.http11 import Request
from websockets.server import ServerProtocol

from router.front.handshake import parse_upgrade, switching_protocols

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
BROWSER = (b"GET /seapig?x=1 HTTP/1.1\r\nHost: 127.0.0.1:3001\r\nConnection: keep-alive, Upgrade\r\n"
           b"Pragma: no-cache\r\nUpgrade: websocket\r\nOrigin: http://127.0.0.1:3001\r\n"
           b"Sec-WebSocket-Version: 13\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
           b"Accept-Encoding: gzip, deflate, br\r\nSec-WebSocket-Key: " + KEY.encode() + b"\r\n"
           b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")


def websockets_answer(data: bytes) -> tuple[int, str | None] | None:
    """What websockets' own server answers to ``data``: (status, Sec-WebSocket-Accept), None if no request."""
    protocol = ServerProtocol()
    protocol.receive_data(data)
    events = protocol.events_received()
    requests = [e for e in events if isinstance(e, Request)]
    if not requests:
        return None
    response = protocol.accept(requests[0])
    return response.status_code, response.headers.get("Sec-WebSocket-Accept")


def test_a_browser_upgrade_is_read_and_answered_as_websockets_answers_it():
    upgrade = parse_upgrade(BROWSER)
    assert upgrade is not None
    assert upgrade.path == "/seapig?x=1" and upgrade.key == KEY
    assert upgrade.headers.get("host") == "127.0.0.1:3001"
    assert upgrade.headers.get_all("Origin") == ["http://127.0.0.1:3001"]
    assert upgrade.headers.get("X-Missing", "none") == "none" and upgrade.headers.get_all("X-Missing") == []
    response = switching_protocols(upgrade.key, now=0.0)
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n") and response.endswith(b"\r\n\r\n")
    assert b"\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n" in response
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response  # RFC 6455 §1.3's example
    assert websockets_answer(BROWSER) == (101, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    assert b"Sec-WebSocket-Extensions" not in response  # no extension negotiated (compression=None)


@pytest.mark.parametrize("change", [
    lambda r: r[:-2],                                           # incomplete
    lambda r: r + b"\x81\x80abcd",                              # a frame after it: websockets' path
    lambda r: r.replace(b"GET ", b"POST "),
    lambda r: r.replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n", 1),
    lambda r: r.replace(b"GET /seapig?x=1 ", b"GET http://a/ "),   # absolute-form
    lambda r: r.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"),
    lambda r: r.replace(b"Upgrade: websocket", b"Upgrade: h2c"),
    lambda r: r.replace(b"keep-alive, Upgrade", b"keep-alive"),
    lambda r: r.replace(KEY.encode(), b"c2hvcnQ="),               # 5 bytes, not 16
    lambda r: r.replace(KEY.encode(), b"not base64!"),
    lambda r: r.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Key: " + KEY.encode() + b"\r\n\r\n"),  # two keys
    lambda r: r.replace(b"Pragma: no-cache", b"Pragma: no-cache\r\n folded"),  # obs-fold
    lambda r: r.replace(b"Pragma: no-cache", b"Bad Name: x"),
    lambda r: r.replace(b"Pragma: no-cache", b"Pragma: a\x01b"),
    lambda r: r.replace(b"Pragma: no-cache", b"Content-Length: 0"),
    lambda r: r.replace(b"Pragma: no-cache", b"X-Big: " + b"x" * 20000),
    lambda r: r.replace(b"\r\n\r\n", b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"),  # two requests
])
def test_anything_unusual_is_left_to_websockets(change):
    assert parse_upgrade(change(BROWSER)) is None


_names = st.sampled_from(["Host", "Connection", "Upgrade", "Sec-WebSocket-Version", "Sec-WebSocket-Key",
                          "Origin", "X-Other", "connection", "UPGRADE", "sec-websocket-key"])
_values = st.one_of(
    st.sampled_from(["websocket", "Upgrade", "upgrade, keep-alive", "13", "8", KEY, "c2hvcnQ=", "", " x ",
                     "WebSocket", "websocket, h2c", base64.b64encode(b"k" * 16).decode()]),
    st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=20))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_names, _values), max_size=10), st.sampled_from([b"/", b"/a?b=c", b"/%zz", b"//x"]))
def test_the_fast_path_never_accepts_what_websockets_refuses(headers, path):
    """Differential: for requests built from the headers that matter (and noise), whenever the fast path
    accepts, websockets' parser accepts too, with the same accept key; the fast path may decline more."""
    lines = [b"GET " + path + b" HTTP/1.1"]
    for name, value in headers:
        if "\r" in value or "\n" in value:
            continue
        lines.append(name.encode() + b": " + value.encode("latin-1"))
    data = b"\r\n".join(lines) + b"\r\n\r\n"
    upgrade = parse_upgrade(data)
    if upgrade is None:
        return
    answer = websockets_answer(data)
    assert answer is not None and answer[0] == 101, (data, answer)
    assert switching_protocols(upgrade.key).split(b"Sec-WebSocket-Accept: ")[1].split(b"\r\n")[0].decode() \
        == answer[1]
