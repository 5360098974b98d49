#!/usr/bin/env bash
# The static gates: ruff on the whole repository, mypy (strict) on the pure modules.
# Both read their settings from pyproject.toml; the modules checked are the ones listed in its
# [[tool.mypy.overrides]] section, so the strict list lives in one place.
# Usage: bash scripts/lint.sh   (PYTHON=/path/to/python to pick the interpreter; default .venv's)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
modules=$("$PY" - <<'PY'
import tomllib
with open("pyproject.toml", "rb") as f:
    overrides = tomllib.load(f)["tool"]["mypy"]["overrides"]
print(" ".join(m for o in overrides if o.get("disallow_untyped_defs") for m in o["module"]))
PY
)
[ -n "$modules" ] || { echo "lint: no strict modules found in pyproject.toml" >&2; exit 2; }
status=0
echo "= ruff check ." >&2
"$PY" -m ruff check . || status=1
args=()
for m in $modules; do args+=(-m "$m"); done
echo "= mypy (strict) on: $modules" >&2
"$PY" -m mypy "${args[@]}" || status=1
exit $status
