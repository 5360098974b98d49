"""The front's Origin and Host rules, table-driven (router/front/web.py ``Admission``, issue 10 item 10)."""

from __future__ import annotations

import pytest
from websockets.datastructures import Headers

from router.front import Admission, parse_origin, split_host

LOCAL = Admission.for_front("127.0.0.1")
EVERYWHERE = Admission.for_front("0.0.0.0", machine_names=["box", "box.lan"])
LISTED = Admission.for_front("127.0.0.1", allowed_hosts=["seasync.example.com"],
                             allowed_origins=["https://app.example.com", "http://intranet:8080"])
OPEN = Admission.for_front("127.0.0.1", allowed_hosts=["*"], allowed_origins=["*"])

CASES = [
    # admission, Host, Origin, refusal code or None
    (LOCAL, "127.0.0.1:3001", None, None),                     # the Python client, curl, the observer
    (LOCAL, None, None, None),                                 # no Host at all: not a browser
    (LOCAL, "127.0.0.1:3001", "http://127.0.0.1:3001", None),  # the front's own viewer page
    (LOCAL, "localhost:3001", "http://localhost:5173", None),  # a page on loopback, any port
    (LOCAL, "localhost:3001", "http://app.localhost:5173", None),
    (LOCAL, "[::1]:3001", "http://[::1]:3001", None),
    (LOCAL, "192.168.1.9:3001", None, None),                   # an IP literal: no DNS, no rebinding
    (LOCAL, "127.0.0.1:3001", "https://evil.example", "origin-not-allowed"),
    (LOCAL, "127.0.0.1:3001", "null", "origin-not-allowed"),
    (LOCAL, "127.0.0.1:3001", "http://127.0.0.1.evil.example", "origin-not-allowed"),
    (LOCAL, "127.0.0.1:3001", "http://127.0.0.1:3002/path", "origin-not-allowed"),
    (LOCAL, "127.0.0.1:3001", "https://127.0.0.1:3001", None),  # loopback, whatever the scheme
    (LOCAL, "evil.example:3001", None, "host-not-allowed"),     # DNS rebinding
    (LOCAL, "evil.example:3001", "http://evil.example:3001", "host-not-allowed"),
    (LOCAL, "evil.example:3001:1", None, "host-not-allowed"),
    (LOCAL, "box:3001", None, "host-not-allowed"),
    (EVERYWHERE, "box:3001", "http://box:3001", None),          # this machine's names when on 0.0.0.0
    (EVERYWHERE, "box.lan:3001", "http://box.lan:3001", None),
    (EVERYWHERE, "box.lan:3001", "http://box.lan:3002", "origin-not-allowed"),
    (EVERYWHERE, "other:3001", None, "host-not-allowed"),
    (LISTED, "seasync.example.com", "https://app.example.com", None),
    (LISTED, "seasync.example.com", "https://seasync.example.com", None),  # own origin, default port 443
    (LISTED, "seasync.example.com", "http://seasync.example.com:8080", "origin-not-allowed"),
    (LISTED, "127.0.0.1:3001", "http://intranet:8080", None),
    (LISTED, "127.0.0.1:3001", "http://intranet", "origin-not-allowed"),
    (OPEN, "anything.example", "https://anyone.example", None),
]


@pytest.mark.parametrize("admission, host, origin, code", CASES)
def test_admission(admission, host, origin, code):
    headers = Headers()
    if host is not None:
        headers["Host"] = host
    if origin is not None:
        headers["Origin"] = origin
    refusal = admission.refusal(headers)
    assert (refusal[0] if refusal else None) == code


def test_repeated_headers_are_refused():
    assert LOCAL.refusal(Headers([("Host", "127.0.0.1"), ("Host", "evil.example")]))[0] == "host-not-allowed"
    assert LOCAL.refusal(Headers([("Host", "127.0.0.1"), ("Origin", "http://localhost"),
                                  ("Origin", "https://evil.example")]))[0] == "origin-not-allowed"


def test_parsers_and_a_malformed_allowed_origin():
    assert split_host("[::1]:3001") == ("::1", 3001) and split_host("Example.COM.") == ("example.com", None)
    assert split_host("a:99999") is None and split_host("") is None
    assert parse_origin("https://App.example.com") == ("https", "app.example.com", 443)
    assert parse_origin("null") is None and parse_origin("ftp://x") is None
    with pytest.raises(ValueError):
        Admission.for_front("127.0.0.1", allowed_origins=["app.example.com"])


def test_decisions_are_remembered_per_host_and_origin_within_bounds():
    """A reconnect storm sends one (Host, Origin) thousands of times: decided once, the same answer after;
    the memory of decisions is bounded in entries, and a long pair is decided every time, not kept."""
    from router.front.web import ADMISSION_CACHE

    admission = Admission.for_front("127.0.0.1")
    evil = Headers([("Host", "127.0.0.1:3001"), ("Origin", "https://evil.example")])
    first = admission.refusal(evil)
    assert first is not None and first[0] == "origin-not-allowed"
    assert admission.refusal(evil) == first
    assert admission.refusal(Headers([("Host", "127.0.0.1:3001")])) is None  # another pair, its own answer
    for i in range(ADMISSION_CACHE * 3):
        assert admission.refusal(Headers([("Host", f"127.0.0.{i % 250}:{i + 1}")])) is None
    assert len(admission._decided) <= ADMISSION_CACHE
    long = Headers([("Host", "127.0.0.1:3001"), ("Origin", "https://" + "a" * 1000 + ".example")])
    assert admission.refusal(long)[0] == "origin-not-allowed"
    assert all(len(origin) < 1000 for _, origins in admission._decided for origin in origins)
    assert admission.refusal(evil) == first
