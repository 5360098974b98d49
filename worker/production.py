"""One production: call a producer, check what it returned, encode the ``object-patch`` answer.

Runs in the producer thread and never raises: every failure becomes an answer with an ``error``
field and no ``value``, which seapig reads as "cancel my production, requeue it" (the ``error``
field is seasync's additive extension, so the router can tell watchers what went wrong).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from common import codec
from common.versioning import VersionError, check_version, is_null
from worker.logs import user_traceback
from worker.producer import Producer

log = logging.getLogger("seasync.worker.production")

MAX_ERROR_LENGTH = 1000


class ProducerOutputError(TypeError):
    """produce() returned something that cannot be sent."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The encoded ``object-patch`` frame, and the error text when it is a failure."""

    object_id: str
    frame: bytes
    error: str | None = None


def produce(producer: Producer, object_id: str) -> Answer:
    """Run ``producer.produce(object_id)`` and turn the outcome into the answer to send."""
    started = time.perf_counter()
    try:
        result = producer.produce(object_id)
    except (Exception, SystemExit) as exc:
        log.error("! %s.produce(%r) failed", type(producer).__qualname__, object_id,
                  exc_info=user_traceback(exc))
        return failure(object_id, exc)
    try:
        data, version = check_output(result)
        try:
            frame = codec.dumps({"action": "object-patch", "id": object_id,
                                 "version-new": version, "value": data})
        except TypeError as exc:  # orjson: sets, non-str keys, ints over 64 bits...
            raise ProducerOutputError(f"the result is not JSON: {exc}") from None
    except ProducerOutputError as exc:  # the traceback would only show worker code
        log.error("! %s.produce(%r) returned something that cannot be sent: %s",
                  type(producer).__qualname__, object_id, exc)
        return failure(object_id, exc)
    if log.isEnabledFor(logging.DEBUG):  # not codec.dumps(version) for nothing
        log.debug("> produced %s in %.1f ms, version %s%s", object_id,
                  (time.perf_counter() - started) * 1000, codec.dumps(version).decode(),
                  " (stall)" if data is False else "")
    return Answer(object_id, frame)


def failure(object_id: str, exc: BaseException) -> Answer:
    """The cancel-with-error answer for ``exc``."""
    text = f"{type(exc).__name__}: {exc}"
    if len(text) > MAX_ERROR_LENGTH:
        text = text[:MAX_ERROR_LENGTH - 3] + "..."
    return Answer(object_id, codec.dumps({"action": "object-patch", "id": object_id, "error": text}), text)


def check_output(result: Any) -> tuple[dict | bool, Any]:
    """Return ``(data, version)`` if ``result`` is a valid produce() result, else raise ProducerOutputError."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise ProducerOutputError(f"produce() must return (data, version), not {_describe(result)}")
    data, version = result
    if data is not False and not isinstance(data, dict):
        raise ProducerOutputError(f"data must be a dict (a JSON object) or False (a stall), not {_describe(data)}")
    if isinstance(version, tuple):
        version = list(version)
    try:
        check_version(version)
    except VersionError as exc:
        raise ProducerOutputError(f"bad version {_describe(version)}: {exc}") from None
    if is_null(version) or (isinstance(version, (int, float)) and version < 0):
        raise ProducerOutputError(f"version must be above 0 (0 means 'no data'), not {version!r}")
    return data, version


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"
