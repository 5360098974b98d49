"""Find the Producer subclasses of a directory's ``*.py`` files, and reload them when files change.

``scan()`` is a cheap stat of the directory (run it often); ``Catalog.load()`` imports the files and
builds the pattern table (run it where producer code runs: it executes user code).
Producer files are the ``*.py`` not starting with ``_``; the ``_*.py`` helpers are watched too.
Files are imported by path under unique module names (``seasync_producer_<stem>_<n>``), never
as ``<stem>``: a neighbour imported normally (``from hello import Hello``) is then a separate
module whose classes are not counted twice.

When any file changes, *every* file is reloaded and the neighbour modules imported from the
directory are forgotten: a producer that imported ``hello`` must see the new ``hello``, and
which file imports which is not known. A file that fails to import is logged and skipped until
the directory changes again.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import itertools
import logging
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, ModuleType

from worker.logs import user_traceback
from worker.producer import Producer
from worker.registry import ProducerTable

log = logging.getLogger("seasync.worker.discovery")

_OWN_PACKAGES = {"worker", "common", "router"}

Signature = tuple[int, int, int]
"""What says a file changed: (mtime in ns, size, inode)."""


def scan(directory: Path) -> dict[Path, Signature]:
    """Every ``*.py`` in ``directory`` (helpers included) and its signature; a missing directory is empty."""
    found: dict[Path, Signature] = {}
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if not entry.name.endswith(".py") or entry.name.startswith("."):
                    continue
                try:
                    st = entry.stat()
                except OSError:  # removed between the listing and the stat
                    continue
                if stat.S_ISREG(st.st_mode):
                    found[Path(entry.path)] = (st.st_mtime_ns, st.st_size, st.st_ino)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return found


def is_producer_file(path: Path) -> bool:
    """Producer files are imported; ``_*.py`` files are helpers, only imported by their neighbours."""
    return path.suffix == ".py" and not path.name.startswith(("_", "."))


def producer_classes(module: ModuleType) -> list[type[Producer]]:
    """Producer subclasses *defined* in ``module`` (not imported into it) that declare patterns."""
    classes: list[type[Producer]] = []
    for obj in vars(module).values():
        if (isinstance(obj, type) and issubclass(obj, Producer) and obj is not Producer
                and obj.__module__ == module.__name__ and obj.patterns and obj not in classes):
            classes.append(obj)
    return classes


class _FreshSourceLoader(importlib.machinery.SourceFileLoader):
    """Compile from source every time: a cached .pyc is keyed on mtime in seconds and size, so a
    quick same-size edit would otherwise load the previous code."""

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        return compile(self.get_data(path), path, "exec", dont_inherit=True)


@dataclass
class _LoadedFile:
    module_name: str
    producers: list[Producer] = field(default_factory=list)


class Catalog:
    """The producers loaded from one directory: one instance per class."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self._signatures: dict[Path, Signature] = {}
        self._files: list[_LoadedFile] = []
        self._serial = itertools.count(1)

    def changed(self, found: dict[Path, Signature]) -> bool:
        """True if a ``scan()`` result differs from what was loaded."""
        return found != self._signatures

    def load(self, found: dict[Path, Signature]) -> ProducerTable:
        """(Re)import every producer file of ``found`` and return the new pattern table."""
        if self._signatures:
            changes = sorted(path.name for path in found.keys() | self._signatures.keys()
                             if found.get(path) != self._signatures.get(path))
            log.info("= producer files changed (%s): reloading them all", ", ".join(changes))
        self.close()
        self._forget_neighbours()
        self._signatures = dict(found)
        for path in sorted(found):
            if is_producer_file(path):
                loaded = self._load_file(path)
                if loaded is not None:
                    self._files.append(loaded)
        table = ProducerTable(producer for loaded in self._files for producer in loaded.producers)
        for conflict in table.conflicts:
            log.warning("! %s", conflict)
        return table

    def close(self) -> None:
        """Unload everything (calls each producer's ``close()``)."""
        for loaded in self._files:
            for producer in loaded.producers:
                try:
                    producer.close()
                except Exception as exc:
                    log.error("! %s.close() failed", type(producer).__qualname__, exc_info=user_traceback(exc))
            sys.modules.pop(loaded.module_name, None)
        self._files.clear()

    def _forget_neighbours(self) -> None:
        """Drop modules imported from the directory by name, so the next import reads them again
        (never seasync's own packages, should the directory be the project root)."""
        for name, module in list(sys.modules.items()):
            path = getattr(module, "__file__", None)
            if (path and name.partition(".")[0] not in _OWN_PACKAGES
                    and Path(path).resolve().is_relative_to(self.directory)):
                del sys.modules[name]

    def _load_file(self, path: Path) -> _LoadedFile | None:
        name = f"seasync_producer_{path.stem}_{next(self._serial)}"
        try:
            loader = _FreshSourceLoader(name, str(path))
            spec = importlib.util.spec_from_file_location(name, path, loader=loader)
            assert spec is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses, pickle and typing look classes up here
            loader.exec_module(module)
        except (Exception, SystemExit) as exc:
            sys.modules.pop(name, None)
            log.error("! cannot import producer file %s: skipped until the directory changes", path,
                      exc_info=user_traceback(exc))
            return None
        loaded = _LoadedFile(name)
        for cls in producer_classes(module):
            try:
                loaded.producers.append(cls())
            except Exception as exc:
                log.error("! cannot create producer %s from %s: skipped", cls.__qualname__, path.name,
                          exc_info=user_traceback(exc))
        if loaded.producers:
            log.info("= loaded %s: %s", path.name, "; ".join(
                f"{type(p).__qualname__} {list(p.patterns)}" for p in loaded.producers))
        else:
            log.warning("! %s defines no Producer subclass with patterns", path.name)
        return loaded
