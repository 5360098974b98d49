"""Introspection never publishes credentials: every object the router builds about itself is
searched for the secrets its clients sent in their options (issue 10, item 8)."""

from __future__ import annotations

import orjson

from router import introspection
from router.introspection import IDS, Introspection, redact
from router.store import ObjectStore

SECRETS = ("tok-123", "pw-456", "api-789", "hook-declared-000", "nested-aaa", "listed-bbb")


class Hook:
    """An --auth hook that lets everyone in and declares one more option name secret."""

    secret_options = ("pin",)

    def __call__(self, options: dict):
        return self

    def may_consume(self, pattern: str) -> bool:
        return True

    def may_produce(self, pattern: str) -> bool:
        return True


def store_with_secrets() -> tuple[ObjectStore, Introspection]:
    store = ObjectStore(authenticate=Hook(), on_consumer_added=lambda obj: intro.consumer_added(obj))
    intro = Introspection(store, "internal", 1, lambda s: "test-peer")
    options = [
        {"name": "app", "token": "tok-123", "db_password": "pw-456", "X-Api-Key": "api-789"},
        {"name": "pinned", "PIN": "hook-declared-000", "auth": {"bearer": "nested-aaa"},
         "creds": [{"secret": "listed-bbb"}]},
        {"name": "worker", "token": "tok-123", "stats": {"pid": 1, "host": "h", "session_key": "pw-456"}},
    ]
    for n, opts in enumerate(options):
        s = store.open(f"h{n}")
        s.guarded = True
        store.handle(s, {"action": "client-options-set", "options": opts})
        store.handle(s, {"action": "object-consumer-register", "pattern": "thing", "version-known": 0})
    store.take_outbox()
    return store, intro


def test_no_introspection_object_carries_a_client_credential():
    store, intro = store_with_secrets()
    for object_id in IDS:
        encoded = orjson.dumps(intro.build(object_id, 0.0)).decode()
        for secret in SECRETS:
            assert secret not in encoded, f"{object_id} publishes {secret!r}"
    connections = intro.build(introspection.CONNECTIONS, 0.0)
    app = next(c for c in connections.values() if c["options"].get("name") == "app")
    assert app["options"] == {"name": "app", "token": "***", "db_password": "***", "X-Api-Key": "***"}


def test_redact_keeps_what_is_not_a_credential():
    assert redact({"name": "n", "heartbeat": True, "prefetch": 4, "stats": {"pid": 3}}) == \
        {"name": "n", "heartbeat": True, "prefetch": 4, "stats": {"pid": 3}}
    assert redact({"a": [{"Token": 1}, 2]}, frozenset()) == {"a": [{"Token": "***"}, 2]}
    assert redact({"pin": 1}, frozenset({"pin"})) == {"pin": "***"}


def test_new_options_are_redacted_again():
    store, intro = store_with_secrets()
    intro.build(introspection.CONNECTIONS, 0.0)
    s = next(s for s in store.sessions if s.options.get("name") == "app")
    store.handle(s, {"action": "client-options-set", "options": {"name": "app", "password": "changed-ccc"}})
    assert "changed-ccc" not in orjson.dumps(intro.build(introspection.CONNECTIONS, 0.0)).decode()
