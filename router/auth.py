"""The access hook: who may consume and produce what.

A deployment names a Python callable with ``sync-router --auth module:callable``. It is called with
the options of each websocket client's ``client-options-set`` (seapig clients send them first; put a
``token`` there) and returns an object with ``may_consume(pattern) -> bool`` and
``may_produce(pattern) -> bool`` (the patterns a client registers, or the id it uploads), or ``None``
to refuse the client. Workers are not subject to it: they join the router with the cluster secret.

Example (``myapp/seasync_auth.py``)::

    class Reader:
        def may_consume(self, pattern): return not pattern.startswith("admin-")
        def may_produce(self, pattern): return False

    def authenticate(options):
        return Reader() if options.get("token") == os.environ["VIEWER_TOKEN"] else None

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
