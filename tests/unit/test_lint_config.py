"""The static gates' configuration (pyproject.toml, run by scripts/lint.sh): the pure modules are held
to everything ``mypy --strict`` checks, and only them (the I/O layers are not typed yet)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = {"common.codec", "common.collection", "common.subtree", "common.patterns", "common.peer", "common.diff", "common.client.state", "router.limits",
        "router.timeslots", "worker.notifier.ticker", "scripts.observer.format", "common.protocol",
        "common.versioning", "router.store", "router.front.handshake"}


def _mypy() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["mypy"]


def _strict_per_module_flags(tmp_path: Path) -> dict[str, object]:
    """What --strict changes among mypy's per-module options (asked of the installed mypy, so a flag a
    new mypy adds to --strict shows up here), with a config file that sets nothing."""
    main = pytest.importorskip("mypy.main")
    from mypy.options import PER_MODULE_OPTIONS
    empty = tmp_path / "empty.ini"
    empty.write_text("[mypy]\n")
    _, strict = main.process_options(["--strict", "--config-file", str(empty), "x.py"], require_targets=False)
    _, plain = main.process_options(["--config-file", str(empty), "x.py"], require_targets=False)
    return {k: getattr(strict, k) for k in sorted(PER_MODULE_OPTIONS) if getattr(strict, k) != getattr(plain, k)}


def _strict_override() -> dict:
    [override] = [o for o in _mypy()["overrides"] if set(o["module"]) & PURE]
    return override


def test_the_pure_modules_are_listed_for_strict_checking():
    assert set(_strict_override()["module"]) == PURE


def test_no_override_says_strict_which_would_make_every_module_strict():
    """``strict = true`` in an override section enables strict globally (python/mypy#11401)."""
    assert all("strict" not in o for o in _mypy()["overrides"])
    assert "strict" not in _mypy()


def test_the_override_sets_every_per_module_flag_of_strict(tmp_path):
    flags = _strict_per_module_flags(tmp_path)
    assert flags, "mypy --strict changed no per-module option: the probe is broken"
    override = _strict_override()
    # the config spells implicit_reexport = False as no_implicit_reexport = true
    spelled = {("no_implicit_reexport" if k == "implicit_reexport" else k): (not v if k == "implicit_reexport" else v)
               for k, v in flags.items()}
    assert {k: override.get(k) for k in spelled} == spelled
