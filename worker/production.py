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

from common import codec, protocol
from common.deps.errors import DependencyError
from common.deps.tracked import collecting, merge
from common.protocol import AnswerError
from common.versioning import is_newer
from worker.logs import user_traceback
from worker.producer import Producer

log = logging.getLogger("seasync.worker.production")

MAX_ERROR_LENGTH = 1000


ProducerOutputError = AnswerError
"""produce() returned something that cannot be sent (the rules: common.protocol.production_answer)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The encoded ``object-patch`` frame, and the error text when it is a failure."""

    object_id: str
    frame: bytes
    error: str | None = None


def produce(producer: Producer, object_id: str, held: list[Any] | None = None) -> Answer:
    """Run ``producer.produce(object_id)`` and turn the outcome into the answer to send; ``held``: the
    order's ``versions-held``, answered with ``bases`` when the producer can rebuild them (``earlier``)."""
    started = time.perf_counter()
    try:
        with collecting() as reads:  # tables read through tracked() join the version
            result = producer.produce(object_id)
    except (Exception, SystemExit) as exc:
        log.error("! %s.produce(%r) failed", type(producer).__qualname__, object_id,
                  exc_info=user_traceback(exc))
        return failure(object_id, exc)
    if reads and isinstance(result, (tuple, list)) and len(result) == 2 and result[0] is not None:
        try:
            result = (result[0], merge(result[1], reads))
        except DependencyError as exc:  # tracked reads, and a version that cannot take them
            log.error("! %s.produce(%r): %s", type(producer).__qualname__, object_id, exc)
            return failure(object_id, exc)
    try:
        message = protocol.production_answer(object_id, result)  # the one set of rules (client.py too)
        if held and isinstance(message.get("value"), dict):
            bases = _bases(producer, object_id, message["version-new"], held)
            if bases:
                message["bases"] = bases
        try:
            frame = codec.dumps(message)
        except TypeError as exc:  # orjson: sets, non-str keys, ints over 64 bits...
            raise ProducerOutputError(f"the result is not JSON: {exc}") from None
    except ProducerOutputError as exc:  # the traceback would only show worker code
        log.error("! %s.produce(%r) returned something that cannot be sent: %s",
                  type(producer).__qualname__, object_id, exc)
        return failure(object_id, exc)
    if "version-new" not in message:
        log.info("> %s declined (data None): the router gives the order to another producer", object_id)
    elif log.isEnabledFor(logging.DEBUG):  # not codec.dumps(version) for nothing
        log.debug("> produced %s in %.1f ms, version %s%s", object_id,
                  (time.perf_counter() - started) * 1000, codec.dumps(message["version-new"]).decode(),
                  " (stall)" if message.get("value") is False else "")
    return Answer(object_id, frame)


def _bases(producer: Producer, object_id: str, version: Any, held: list[Any]) -> list[dict[str, Any]]:
    """``producer.earlier`` for the held versions older than ``version``, oldest first; a failure there
    costs only the bases (those watchers get the whole value), never the production."""
    wanted = [v for v in held[:protocol.MAX_BASES]  # numbers: what a dict of versions can be keyed by
              if isinstance(v, (int, float)) and not isinstance(v, bool) and is_newer(v, version)]
    if not wanted:
        return []
    try:
        found = producer.earlier(object_id, wanted)
    except Exception as exc:
        log.error("! %s.earlier(%r) failed", type(producer).__qualname__, object_id, exc_info=user_traceback(exc))
        return []
    if not isinstance(found, dict):
        return []
    rebuilt = [(v, found[v]) for v in wanted if isinstance(found.get(v), dict)]
    rebuilt.sort(key=lambda pair: pair[0])
    return [{"version": v, "value": value} for v, value in rebuilt]


def failure(object_id: str, exc: BaseException) -> Answer:
    """The cancel-with-error answer for ``exc``."""
    text = f"{type(exc).__name__}: {exc}"
    if len(text) > MAX_ERROR_LENGTH:
        text = text[:MAX_ERROR_LENGTH - 3] + "..."
    return Answer(object_id, codec.dumps(protocol.failure(object_id, text)), text)


def check_output(result: Any) -> tuple[dict | bool, Any]:
    """Return ``(data, version)`` if ``result`` is a valid produce() result, else raise ProducerOutputError
    (common.protocol.production_answer decides; kept for callers that want the pair)."""
    message = protocol.production_answer("", result)
    if "version-new" not in message:
        raise ProducerOutputError("data is None: a decline, not a result")
    return message["value"], message["version-new"]
