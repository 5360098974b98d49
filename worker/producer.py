"""The Producer base class: the one thing a user subclasses to put objects into seasync.

Writing a producer
==================

Drop a ``.py`` file into the producers directory (``./producers`` by default, see
``sync-worker --help``) with one or more subclasses of :class:`Producer`::

    from worker import Producer

    class Cars(Producer):
        patterns = ["cars", "car-*"]

        def produce(self, object_id):
            rows = load_cars(object_id)
            return {"cars": rows}, {"Postgres::cars": cars_version()}

Every worker process imports every file (files whose name starts with ``_`` are skipped, so
they can hold helpers), creates **one instance** of each producer class and registers its
patterns with the router. The directory is on ``sys.path``, so a producer file can import its
neighbours (``from hello import Hello``). When any ``.py`` in the directory changes, every file
is re-imported (so neighbours stay in step); patterns that disappear are unregistered, new ones
registered. A file that fails to import is logged with its traceback and skipped. New
code applies to the next production: a reload does not make the router re-produce what it has
cached (that happens when a dependency gets a newer version, or when an object nobody watched
any more is wanted again).

patterns
    The object ids this class produces: exact ids (``"cars"``) and wildcards, where ``*``
    matches any run of characters and the whole id must match (``"car-*"`` matches
    ``"car-12"``, not ``"my-car-12"``). A class with no patterns is never registered (use one
    as a base class for shared code). When two classes claim the same pattern, the first one
    loaded (files in name order) wins and a warning is logged.

produce(object_id) -> (data, version)
    Called when the router wants ``object_id`` (someone watches it, or something it
    depends on changed). ``data`` is the whole object, a ``dict`` that orjson can encode;
    ``{}`` is valid data. ``version`` says which state of the world ``data`` reflects:

    - a number (> 0) or a list of numbers, compared numerically, e.g. ``int(time.time())``;
    - a dict ``{other_object_id: version, ...}``: the object *depends* on those objects. The
      router keeps them alive, and when one of them gets a newer version it asks for this
      object again. ``{"hello": 3}`` means "built from version 3 of hello".

    A version that is not newer than the one the router already has is ignored: return a
    new version whenever the data changes.

    Returning ``False`` as data is a *stall*: the version is recorded, nothing is sent to
    watchers, and the object is not produced again until a dependency moves. Use it when the
    object cannot be built yet (a row that does not exist yet).

    ``True`` as data says the version exists without sending data; ``None`` declines the order
    (the router gives it to another producer at once). A tuple version counts as a list; a
    negative number is refused. These rules are common.protocol.production_answer, the same for
    the Python client's and the JavaScript client's produce functions.

    Raising an exception, or returning something invalid, is logged in the worker (with the
    traceback) and answered, about a second later, with an error instead of data: the router
    tells the watchers and requeues the production, to this worker or another. The worker
    keeps running.

    A ``produce`` still running after ``sync-worker --production-timeout`` seconds (60 by
    default) is abandoned: the worker answers with a ``TimeoutError``, the router retries
    later (possibly on another worker), and the worker process exits and is replaced, since a
    running thread cannot be interrupted. Keep productions well under that limit.

Lifetime and concurrency
    One instance per class per worker process, so ``__init__`` may open connections and
    keep caches. All producer code (import, ``__init__``, ``produce``, ``close``) runs in one
    thread of the worker process, one call at a time: no locking is needed, and a thread-bound
    resource (a sqlite3 connection) works. Parallelism comes from running more worker
    processes (``sync-worker --workers N``), each with its own instances. With
    ``sync-worker --prefetch N`` a worker process holds up to N orders and runs them one after the
    other (still one call at a time), so quick productions do not wait for a round trip each.
    ``close()`` is called before a reload, and when the worker stops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, TypeAlias

from common.versioning import Version  # the one alias (re-exported here for producer authors)

Data: TypeAlias = dict[str, Any] | bool | None
"""A dict (the value), False (a stall), True (the version exists, data unknown), None (decline the
order): the rules of every producer answer, common.protocol.production_answer."""


class Producer:
    """Base class of every producer: set ``patterns``, implement ``produce`` (module docstring)."""

    patterns: ClassVar[Sequence[str]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Reject malformed ``patterns`` when the class is defined, so the error names the file."""
        super().__init_subclass__(**kwargs)
        patterns = cls.__dict__.get("patterns", cls.patterns)
        if isinstance(patterns, (str, bytes)) or not isinstance(patterns, (list, tuple)):
            raise TypeError(f"{cls.__qualname__}.patterns must be a list of strings, "
                            f"e.g. [\"cars\", \"car-*\"], not {patterns!r}")
        for pattern in patterns:
            if not isinstance(pattern, str) or not pattern:
                raise TypeError(f"{cls.__qualname__}.patterns holds {pattern!r}: "
                                "every pattern must be a non-empty string")

    def produce(self, object_id: str) -> tuple[Data, Version]:
        """Build the object ``object_id``: return ``(data, version)`` (see the module docstring)."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement produce(object_id)")

    def earlier(self, object_id: str, versions: list[Version]) -> dict[Any, dict[str, Any]]:
        """The data of earlier versions of ``object_id`` you can still rebuild, by version (optional;
        numeric versions only).

        Called after ``produce`` when the router retains nothing for the object (it restarted) and its
        watchers hold ``versions``: each one returned reaches those watchers as a patch instead of the
        whole value. The default rebuilds nothing; ``Collection`` answers from its undo rows."""
        return {}

    def close(self) -> None:
        """Release what ``__init__`` opened; called on reload, removal and worker stop."""
