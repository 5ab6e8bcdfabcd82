#!/usr/bin/env bash
# Installs what Lifeboat and its lab need: PostgreSQL 15 server binaries (apt, when
# missing and we can), a virtualenv with the pinned Python packages, and Chromium for the
# UI test. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
have_pg() { command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ] && [ -x "$(pg_config --bindir)/pg_basebackup" ]; }

if ! have_pg && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing PostgreSQL server binaries with apt"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "setup: PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) are missing." >&2
    echo "       Install PostgreSQL 15 (e.g. 'sudo apt-get install postgresql') and retry." >&2
    exit 1
  fi
fi

"$PYTHON" -c 'import sys; assert sys.version_info[:2] in {(3, 11), (3, 12)}, sys.version' || {
  echo "setup: Python 3.11 or 3.12 is required (set PYTHON=...)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q -U pip
.venv/bin/pip install -q -e '.[dev]'
echo "setup: done"
