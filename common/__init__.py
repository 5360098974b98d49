"""seasync common pieces: protocol, codec, version ordering, patterns, JSON Patch, the Python client.

``from common import bump, versions`` gives the dependency API (common/deps): ``bump(name)`` after a
write, ``versions(name, ...)`` as a producer's version.
"""

from common.deps.api import bump, versions

__all__ = ["bump", "versions"]
