"""``protocol.parse``, table-driven: each row is a frame a client may send and what the router makes of it
(the checked message, or the stable ``code`` of the error frame that answers it)."""

from __future__ import annotations

import pytest

from common import protocol

DEEP = b'{"a":' * 2000 + b"1" + b"}" * 2000

REFUSED = [
    (b"not json", "invalid-json"),
    (b"[1, 2]", "not-an-object"),
    (DEEP, "invalid-json"),
    (b'{"action": "object-patch", "id": "a", "version-new": NaN, "value": {}}', "invalid-json"),
    (b'{"action": 5}', "unknown-action"),
    (b'{"action": "object-subscribe"}', "unknown-action"),
    (b'{"action": "object-consumer-register", "pattern": ""}', "invalid-pattern"),
    (b'{"action": "object-consumer-register", "pattern": "' + b"a" * 1100 + b'"}', "invalid-pattern"),
    (b'{"action": "object-consumer-register", "pattern": "a", "version-known": "x"}', "invalid-version"),
    (b'{"action": "object-consumer-register", "pattern": "a", "version-known": {"b*": 1}}', "invalid-dependency"),
    (b'{"action": "object-patch", "id": "a*", "version-new": 1, "value": {}}', "invalid-id"),
    (b'{"action": "object-patch", "id": "a", "version-new": [1, [2, {"x": 1}]], "value": {}}', "invalid-version"),
    (b'{"action": "object-patch", "id": "a", "version-new": {"dep:*": 1}, "value": {}}', "invalid-dependency"),
    (b'{"action": "object-patch", "id": "a", "version-new": 1, "patch": {"v": 1}}', "patch-invalid"),
    (b'{"action": "object-patch", "id": "a", "error": 5}', "invalid-error"),
    (b'{"action": "client-options-set", "options": []}', "invalid-options"),
]

ACCEPTED = [
    (b'{"action": "object-patch", "id": "a", "version-new": 1, "value": {"x": 1}}',
     {"action": "object-patch", "id": "a", "version-new": 1, "value": {"x": 1}}),
    (b'{"action": "object-patch", "id": "a", "version-old": 1, "version-new": 2, "patch": []}',
     {"action": "object-patch", "id": "a", "version-old": 1, "version-new": 2, "patch": []}),
    (b'{"action": "client-options-set", "options": {"name": "x"}}',
     {"action": "client-options-set", "options": {"name": "x"}}),
    (b'{"action": "object-producer-register", "pattern": "a*"}',
     {"action": "object-producer-register", "pattern": "a*", "version-known": None}),
    (b'{"action": "object-consumer-register", "pattern": "a", "version-known": {"b": 2, "c": [1, 0]}}',
     {"action": "object-consumer-register", "pattern": "a", "version-known": {"b": 2, "c": [1, 0]}}),
    (b'{"action": "object-consumer-unregister", "pattern": "a"}',
     {"action": "object-consumer-unregister", "pattern": "a"}),
]


@pytest.mark.parametrize(("raw", "code"), REFUSED, ids=[row[1] + f"-{i}" for i, row in enumerate(REFUSED)])
def test_a_bad_frame_is_refused_with_its_code(raw: bytes, code: str) -> None:
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.parse(raw)
    assert refused.value.code == code
    assert refused.value.context["code"] == code
    assert len(refused.value.message) < 4096  # never an echo of the whole input


@pytest.mark.parametrize(("raw", "expected"), ACCEPTED, ids=[row[1]["action"] for row in ACCEPTED])
def test_a_good_frame_comes_back_checked(raw: bytes, expected: dict) -> None:
    message = protocol.parse(raw)
    for key, value in expected.items():
        assert message[key] == value
