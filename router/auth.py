"""The access hook: who may consume and produce what.

A deployment names a Python callable with ``sync-router --auth module:callable``. It is called with
the options of each websocket client's ``client-options-set`` (seapig clients send them first; put a
``token`` there) and returns an object with ``may_consume(name) -> bool`` and
``may_produce(name) -> bool``, or ``None`` to refuse the client. Workers are not subject to it: they
join the router with the cluster secret.

``name`` is a pattern OR an object id, and the hook must answer both (the same rule usually does):

- a registration is checked with its pattern (``"*"``, ``"public-*"``, ``"cars"``);
- then access is decided PER OBJECT ID: a wildcard consumer receives only the ids ``may_consume(id)``
  allows for that session, a wildcard producer is offered only the ids ``may_produce(id)`` allows,
  and an id nobody allowed wants is not even created;
- an upload (``object-patch``) is checked with its id, must come from a session registered as a producer
  of that id (a pattern covering it), and every dependency its version names must pass
  ``may_consume(dependency id)``: a writer of ``public-mine`` cannot make the router produce
  ``admin-payroll`` by naming it;
- answers are cached per session and name (bounded), so the hook runs once per id, not per update;
  a hook that raises refuses;
- a new ``client-options-set`` asks the hook again: what the new answer no longer allows (a revoked
  token: everything) is dropped at once, registrations and per-id deliveries and orders.

Writable collections (``collection-update``): ``may_write(id) -> bool``, asked with the collection id
of every update (not cached: writes are rare next to deliveries); a hook object without ``may_write``
refuses every write, so a hook written before collections existed does not open them to everyone.

Without a hook everything is allowed, uploads and collection writes included (seapig's rule): any client may overwrite any
object it can name, at a version that outranks the producer's. Deploy with a hook whenever clients are
not all trusted.

Example (``myapp/seasync_auth.py``)::

    class Reader:
        def may_consume(self, name): return not name.startswith("admin-")   # "*" too, then per id
        def may_produce(self, name): return False                          # no upload at all

    class Writer(Reader):
        def __init__(self, user): self.prefix = f"draft-{user}-"
        def may_produce(self, name): return name == self.prefix + "*" or name.startswith(self.prefix)

    def authenticate(options):
        token = options.get("token")
        if token == os.environ["VIEWER_TOKEN"]:
            return Reader()
        user = USERS_BY_TOKEN.get(token)          # your own lookup
        return Writer(user) if user else None

    authenticate.secret_options = ("pin",)  # option names to redact besides the usual ones

Options are published in the router's introspection objects (``SeapigServer::Connections``) with
every credential-like value replaced by ``"***"`` (``router.introspection.redact``: names containing
token, secret, password, key, auth, cookie, session...); a hook whose credentials have another name
lists them in its ``secret_options`` attribute.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def load_hook(spec: str) -> Callable[[dict], Any]:
    """Import ``module:callable``; raises ImportError/AttributeError/ValueError with the reason."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError("expected 'module:callable'")
    hook = getattr(importlib.import_module(module_name), attr)
    if not callable(hook):
        raise ValueError(f"{spec} is not callable")
    return hook


class _DenyAll:
    """What a session may do before the hook accepted it, or after it refused it: nothing."""

    def may_consume(self, pattern: str) -> bool:
        return False

    def may_produce(self, pattern: str) -> bool:
        return False


DENY_ALL = _DenyAll()
