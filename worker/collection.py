"""The Collection producer: a writable collection (issue 15) kept in ``SEASYNC_COLLECTIONS``.

    from worker import Collection

    class Items(Collection):
        patterns = ["items/*"]

Producing reads the collection's table (value and version counter). The worker announces the patterns
of its Collection producers to the router (client option ``"collections"``); the router then sends it
``collection-apply`` frames, one at a time per collection, which :func:`apply` runs in one transaction
and answers with ``collection-applied`` (the new version and value, or an error with a stable code).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from common import codec
from common.collection import UpdateError, check_update
from common.storage import open_store
from common.storage.base import StorageError
from worker.production import Answer
from worker.producer import Data, Producer

log = logging.getLogger("seasync.worker.collection")


class Collection(Producer):
    """A producer whose objects are writable collections; set ``patterns``; ``url`` overrides the database."""

    url: ClassVar[str | None] = None

    def produce(self, object_id: str) -> tuple[Data, Any]:
        version, items = open_store(self.url).read(object_id)
        return items, version

    def earlier(self, object_id: str, versions: list[Any]) -> dict[Any, dict[str, Any]]:
        """Values of earlier versions rebuilt from the undo rows (the last UNDO_KEPT versions)."""
        return open_store(self.url).values_at(object_id, [v for v in versions if isinstance(v, int)])[2]

    def apply(self, object_id: str, update: Any, ticket: str | None) -> tuple[int, dict[str, Any]]:
        """Apply one checked update (one transaction); override to validate items further (raise UpdateError)."""
        return open_store(self.url).apply(object_id, update, ticket)


def apply(producer: Collection, message: dict[str, Any]) -> Answer:
    """Run one ``collection-apply`` and encode its ``collection-applied`` answer (never raises)."""
    object_id, ticket = message.get("id"), message.get("ticket")
    answer: dict[str, Any] = {"action": "collection-applied", "id": object_id, "ticket": ticket}
    try:
        update = check_update(message.get("insert"), message.get("remove"), message.get("reset", False))
        version, value = producer.apply(object_id, update, ticket if isinstance(ticket, str) else None)
        answer.update(version=version, value=value)
    except UpdateError as exc:
        answer.update(error=str(exc), code=exc.code)
    except StorageError as exc:
        log.error("! collection %r: %s", object_id, exc)
        answer.update(error=str(exc), code=exc.code)
    except Exception as exc:  # user code (an apply override)
        log.error("! %s.apply(%r) failed", type(producer).__qualname__, object_id, exc_info=exc)
        answer.update(error=f"{type(exc).__name__}: {exc}"[:1000], code="collection-apply-failed")
    return Answer(str(object_id), codec.dumps(answer))
