"""seasync workers: the Producer base class, producer discovery, worker processes and their pool."""

from worker.producer import Producer

__all__ = ["Producer"]
