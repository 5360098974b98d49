"""seasync common pieces: protocol, codec, version ordering, patterns, JSON Patch, the Python client.

``from common import bump, versions`` gives the dependency API (common/deps): ``bump(name)`` after a
write, ``versions(name, ...)`` as a producer's version; ``update_collection(id, insert=..., remove=...)`` writes to a
writable collection (common/storage).
"""

from common.deps.api import bump, versions
from common.storage import update_collection

__all__ = ["bump", "update_collection", "versions"]
