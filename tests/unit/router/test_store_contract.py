"""The store's contract in its signatures (issue 11 item 4): time and batch mode as arguments, hooks
given at construction, a typed outbox, an internal error answered and logged, a stable code on every
error frame (each one listed in docs/PROTOCOL.md §14)."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from router.store import INTERNAL, Delivery, ObjectStore, Session
from tests.unit.router.test_store import Harness, produce

PROTOCOL = Path(__file__).resolve().parents[3] / "docs" / "PROTOCOL.md"


def documented_codes() -> set[str]:
    """Every code in the tables of PROTOCOL §14 (first column, in backticks)."""
    text = PROTOCOL.read_text()
    section = text[text.index("## 14. Errors"):text.index("## 15.")]
    return set(re.findall(r"^\| `([a-z-]+)` \|", section, re.MULTILINE)) - {"code"}  # (a table header)


def errors_of(h: Harness, session: Session) -> list[dict]:
    return [f for f in h.take(session) if f["action"] == "error"]


# ---- an unexpected exception inside the store ---------------------------------------------------

class Boom(RuntimeError):
    pass


def raise_boom(*_args) -> None:
    raise Boom("a bug")


def test_an_exception_inside_the_store_is_answered_with_internal_and_logged():
    logged: list[tuple[str, BaseException | None]] = []
    h = Harness(on_production=raise_boom,
                log=lambda fmt, *args, exc_info=None: logged.append((fmt % args, exc_info)))
    p, c = h.client("p"), h.client("c")
    h.send(p, "object-producer-register", pattern="o")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)
    assert h.take(p) == [produce("o")]
    h.send(p, "object-patch", id="o", version_new=1, value={"n": 1})  # on_production raises inside
    [error] = errors_of(h, p)
    assert error["code"] == INTERNAL and error["request"] == "object-patch" and error["id"] == "o"
    assert "Boom" in error["message"]
    assert [isinstance(exc, Boom) for _, exc in logged] == [True], logged  # the traceback goes to the log
    assert "o" not in p.producing  # the order it answered does not stay held
    # nothing is lost for the next message: the store goes on
    h.send(c, "object-consumer-unregister", pattern="o")
    assert errors_of(h, c) == []


def test_an_exception_in_a_registration_is_answered_to_its_sender_only():
    h = Harness(on_consumer_added=raise_boom)
    p, c, other = h.client("p"), h.client("c"), h.client("other")
    h.send(p, "object-producer-register", pattern="o")
    h.send(c, "object-consumer-register", pattern="o", version_known=0)  # spawns: no hook call
    h.take(c)
    h.send(other, "object-consumer-register", pattern="o", version_known=0)  # existing object: the hook raises
    [error] = errors_of(h, other)
    assert error["code"] == INTERNAL and error["pattern"] == "o"
    assert errors_of(h, c) == [] and errors_of(h, p) == []


# ---- every error frame has a stable, documented code ---------------------------------------------

BAD_INPUTS = [
    b"{not json",
    b"[1, 2]",
    b'{"action": "nope"}',
    b'{"action": "client-options-set", "options": 3}',
    b'{"action": "client-options-set", "options": {"x": "' + b"y" * 20000 + b'"}}',
    b'{"action": "object-consumer-register"}',
    b'{"action": "object-consumer-register", "pattern": ""}',
    b'{"action": "object-consumer-register", "pattern": "a", "version-known": true}',
    b'{"action": "object-consumer-register", "pattern": "a", "version-known": {"*": 1}}',
    b'{"action": "object-consumer-unregister", "pattern": "never"}',
    b'{"action": "object-producer-unregister", "pattern": "never"}',
    b'{"action": "object-patch", "id": "a*"}',
    b'{"action": "object-patch", "id": "a", "error": 5}',
    b'{"action": "object-patch", "id": "a", "value": 5, "version-new": 1}',
    b'{"action": "object-patch", "id": "a", "value": {}}',
    b'{"action": "object-patch", "id": "a", "patch": 5, "version-new": 1}',
    b'{"action": "object-patch", "id": "SeapigServer::Objects", "value": {}, "version-new": 1}',
    b"[" * 2000 + b"]" * 2000,
]


@pytest.mark.parametrize("raw", BAD_INPUTS, ids=lambda raw: raw[:40].decode())
def test_every_refusal_carries_a_documented_code(raw):
    h = Harness()
    c = h.client()
    h.store.reserve("SeapigServer::", h.store.open("router"))
    h.store.handle_raw(c, raw, 0.0)
    frames = [orjson.loads(d.frame) for d in h.store.take_outbox()]
    errors = [f for f in frames if f["action"] == "error"]
    assert errors, frames
    codes = documented_codes()
    for error in errors:
        assert error.get("code") in codes, (error, sorted(codes))


def test_the_documented_codes_include_every_code_the_store_and_parser_can_send():
    """Static side of the rule: every literal code in the modules that build error frames is in §14."""
    root = PROTOCOL.parents[1]
    used: set[str] = set()
    for module in ("router/store.py", "common/protocol.py", "router/limits.py", "common/versioning.py"):
        source = (root / module).read_text()
        used |= set(re.findall(r'code="([a-z-]+)"', source))
        used |= set(re.findall(r'^[A-Z_]+ = "([a-z]+(?:-[a-z]+)*)"$', source, re.MULTILINE))
        used |= set(re.findall(r'ProtocolError\([^)]*?, "([a-z]+(?:-[a-z]+)+)"', source, re.DOTALL))
    missing = used - documented_codes() - {"internal"} | ({"internal"} - documented_codes())
    assert not missing, f"codes sent but not listed in docs/PROTOCOL.md §14: {sorted(missing)}"


# ---- time, batch mode and hooks are arguments; the outbox is typed -------------------------------

def test_time_is_an_argument_and_the_store_time_is_read_only():
    store = ObjectStore()
    s = store.open("c")
    store.handle_raw(s, b'{"action": "object-consumer-register", "pattern": "a"}', 12.5)
    assert store.now == 12.5
    store.tick(13.0)
    assert store.now == 13.0
    store.expire_orders(14.0)
    assert store.now == 14.0
    with pytest.raises(AttributeError):
        store.now = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("name", ["now", "coalesce", "log", "authenticate", "on_production", "on_consumer_added"])
def test_what_was_set_from_outside_cannot_be_any_more(name):
    """Constructor or call arguments now: an old caller assigning one fails loudly, not in silence."""
    with pytest.raises(AttributeError):
        setattr(ObjectStore(), name, None)


def test_the_outbox_holds_deliveries_only_even_in_batch_mode():
    h = Harness()
    c, m = h.client("c"), h.client("m")
    h.send(c, "object-consumer-register", pattern="x", version_known=0)
    h.send(m, "object-producer-register", pattern="x")
    h.take(m)
    for n in (1, 2):
        h.store.handle_raw(m, orjson.dumps({"action": "object-patch", "id": "x", "version-new": n, "value": {"n": n}}),
                           1.0, coalesce=True)
        assert all(isinstance(d, Delivery) and isinstance(d.frame, bytes) for d in h.store.outbox), h.store.outbox
    out = h.store.take_outbox()
    assert out and all(isinstance(d, Delivery) and isinstance(d.frame, bytes) and d.sessions for d in out)
    assert [orjson.loads(d.frame)["version-new"] for d in out] == [2]  # one push of the newest


def test_a_change_held_by_batch_mode_is_output():
    """In batch mode a new version waits outside the outbox list: has_output still says so, or the shell
    (which loops while has_output) would leave it unsent until the next message."""
    h = Harness()
    c, m = h.client("c"), h.client("m")
    h.send(c, "object-consumer-register", pattern="x", version_known=0)
    h.send(m, "object-producer-register", pattern="x")
    h.take(m)
    h.send(m, "object-patch", id="x", version_new=1, value={})  # answers the order
    h.take(c)
    h.store.handle_raw(m, b'{"action": "object-patch", "id": "x", "version-new": 2, "value": {}}', 1.0, coalesce=True)
    assert not h.store.outbox and h.store.has_output
    assert [orjson.loads(d.frame)["version-new"] for d in h.store.take_outbox()] == [2]
    assert not h.store.has_output
