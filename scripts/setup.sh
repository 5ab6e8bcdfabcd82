#!/usr/bin/env bash
# Installs what Lifeboat and its lab need: PostgreSQL 15 server binaries (apt, when
# missing and we can), a virtualenv with the pinned Python packages, and Chromium for the
# UI test. Safe to run again: when everything is there, it only refreshes the venv.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
have_pg() { command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ] && [ -x "$(pg_config --bindir)/pg_basebackup" ]; }
can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

# One `apt-get update` per run, and only when something is actually missing.
apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! have_pg && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if can_apt; then
    echo "setup: installing PostgreSQL server binaries with apt"
    apt_install postgresql
  else
    echo "setup: PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) are missing." >&2
    echo "       Install PostgreSQL 15 (e.g. 'sudo apt-get install postgresql') and retry." >&2
    exit 1
  fi
fi

# The UI test drives Debian's Chromium through Playwright. `playwright install` would
# download its own browser build, which cannot be fetched here, so use the distro's.
if [ ! -x /usr/bin/chromium ]; then
  if can_apt; then
    echo "setup: installing Chromium with apt (for the Prefect UI test)"
    apt_install chromium
  else
    # Not fatal: everything but the browser test works without it, and that test skips.
    echo "setup: /usr/bin/chromium is missing; the Prefect UI test will be skipped." >&2
    echo "       Install it with 'sudo apt-get install chromium' to run that test." >&2
  fi
fi

"$PYTHON" -c 'import sys; assert sys.version_info[:2] in {(3, 11), (3, 12)}, sys.version' || {
  echo "setup: Python 3.11 or 3.12 is required (set PYTHON=...)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q -U pip
.venv/bin/pip install -q -e '.[dev]'
echo "setup: done"
