"""seasync workers: the Producer base class, producer discovery, worker processes and their pool."""

from worker.collection import Collection
from worker.producer import Producer

__all__ = ["Collection", "Producer"]
