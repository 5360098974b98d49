"""The import rules of the tree's layers (README.md "Layout"), read from the source (no module is imported).

- ``common/`` is the shared library: it imports nothing of ``router``, ``worker``, ``scripts``, ``tests``.
- The pure modules (the sans-I/O cores) import nothing that does I/O or reads a clock or chance:
  what they need of those comes in as arguments, which is what lets them be tested in-process.
- Only tests and benchmarks import ``tests``: the shipped packages must run without it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("common", "router", "worker", "scripts")

PURE = [
    "common/client/state.py",
    "common/codec.py",
    "common/collection.py",
    "common/subtree.py",
    "common/diff.py",
    "common/patterns.py",
    "common/peer.py",
    "common/protocol.py",
    "common/versioning.py",
    "router/store.py",
    "worker/notifier/ticker.py",
    "scripts/observer/format.py",
]
IMPURE = {"time", "socket", "zmq", "asyncio", "os", "random", "threading", "subprocess", "select",
          "selectors", "sqlite3", "psycopg", "websockets", "signal"}


def _sources(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if ".venv" not in p.parts)


def _imports(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (relative imports resolved to the package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside its own package, which the other rules cover
                continue
            if node.module:
                names.add(node.module)
    return names


def _roots(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def _is_benchmark(path: Path) -> bool:
    rel = path.relative_to(REPO)
    return rel.parts[0] == "scripts" and (rel.name.startswith("bench") or "bench" in rel.parts)


@pytest.mark.parametrize("path", _sources("common"), ids=lambda p: str(p.relative_to(REPO)))
def test_common_is_a_leaf(path: Path) -> None:
    assert not _roots(_imports(path)) & {"router", "worker", "scripts", "tests"}


@pytest.mark.parametrize("rel", PURE)
def test_pure_modules_do_no_io(rel: str) -> None:
    path = REPO / rel
    assert path.exists(), f"{rel} is listed as pure but does not exist: update PURE"
    assert not _roots(_imports(path)) & IMPURE


@pytest.mark.parametrize("path", [p for pkg in PRODUCT for p in _sources(pkg)],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_only_tests_and_benchmarks_import_tests(path: Path) -> None:
    if _is_benchmark(path):
        return
    assert "tests" not in _roots(_imports(path))


def test_the_rules_see_a_violation(tmp_path: Path) -> None:
    """The reader itself: a module that imports what it must not is caught (else every rule passes)."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom router.store import ObjectStore\nfrom . import sibling\n")
    assert _roots(_imports(bad)) == {"os", "router"}


def _shipped_packages() -> list[str]:
    """The packages ``pip install`` puts in site-packages, found as pyproject.toml tells setuptools to."""
    import tomllib

    from setuptools import find_packages

    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    return find_packages(str(REPO), include=find.get("include", ["*"]), exclude=find.get("exclude", ()))


def test_the_installed_packages_do_not_import_tests() -> None:
    """What is shipped must run without the (uninstalled) tests package: the benchmarks, which drive
    clusters with tests/cluster.py, stay out of the distribution (scripts/bench/)."""
    shipped = _shipped_packages()
    assert "scripts.observer" in shipped and "router.front" in shipped
    offenders = [str(path.relative_to(REPO)) for package in shipped
                 for path in sorted((REPO / package.replace(".", "/")).glob("*.py"))
                 if "tests" in _roots(_imports(path))]
    assert offenders == []


def test_websockets_is_pinned_to_the_major_whose_internals_the_front_uses() -> None:
    """The front reaches into websockets (``pending_pings``, ``send_data``, ``protocol.send_ping``):
    an upgrade to a new major must fail at install, so the requirement has an upper bound, and the
    installed version is inside it (router/front/server.py, fanout.py)."""
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (req,) = [Requirement(d) for d in deps if Requirement(d).name == "websockets"]
    assert any(spec.operator == "<" for spec in req.specifier)
    assert req.specifier.contains(version("websockets"))
