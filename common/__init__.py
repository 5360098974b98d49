"""seasync common pieces: protocol, codec, versions, patterns, JSON Patch, the Python client.

``from common import bump, versions`` gives the dependency API (common/deps). ``common.versions`` is
also the version-ordering module (common/versions.py), and Python rebinds the package attribute to
that module whenever it is imported. So the module itself is made callable: ``versions("cars")``
calls the dependency function, ``versions.compare(...)`` is still the module's, whatever the order
of imports.
"""

import types

from common import versions as _version_module
from common.deps.api import bump, versions as _dependency_versions


class _CallableVersions(types.ModuleType):
    """common/versions.py, callable as ``common.deps.versions``."""

    def __call__(self, *names, **options):
        return _dependency_versions(*names, **options)


_version_module.__class__ = _CallableVersions
_version_module.__call__.__func__.__doc__ = _dependency_versions.__doc__
versions = _version_module

__all__ = ["bump", "versions"]
