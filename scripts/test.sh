#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine (Python 3.11 + pip), then run them.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
# tmux for the terminal test of sync-observer (Debian's package; nothing to do when present).
if ! command -v tmux >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing tmux (apt-get) for the sync-observer terminal test" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null
    else
        echo "tmux not found: the sync-observer terminal test will be skipped" >&2
    fi
fi
# iproute2 for the multi-host tests (hosts as network namespaces; Debian's package; nothing to do when present).
if ! command -v ip >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing iproute2 (apt-get) for the multi-host tests" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
    else
        echo "ip (iproute2) not found: the multi-host tests will be skipped" >&2
    fi
fi
# PostgreSQL server binaries for the dependency tests (Debian's package; nothing to do when present).
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing postgresql (apt-get) for the dependency tests" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq postgresql >/dev/null
    else
        echo "PostgreSQL (initdb) not found: the PostgreSQL tests will be skipped" >&2
    fi
fi
# Chromium and its WebDriver for the browser end-to-end tests (Debian's packages; nothing to do when present).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing chromium and chromium-driver (apt-get) for the browser tests" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "chromium/chromedriver not found: the browser tests will be skipped (they fail under CI)" >&2
    fi
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# the static gates first (ruff everywhere, mypy strict on the pure modules): seconds, and a red gate is red CI
bash scripts/lint.sh
exec .venv/bin/python -m pytest "$@"
