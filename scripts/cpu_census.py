"""Where a command's CPU goes, by role: flow runs, the Prefect server, the lab, PostgreSQL.

The lab suite is bound by CPU on 2 cores (issue 13), so its length is set by the CPU
seconds every process of it spends, not by any one test's wall time. This runs a command
(``make test``, one test file, a bench) and samples every process on the machine each
half second until it ends, then prints the CPU seconds of each role and the flow runs'
count and mean.

Each process is keyed by its pid *and* its start time: over a whole suite the pids wrap
(``pid_max`` is 32768 here), and a reused pid would otherwise hand one process's CPU to
another's name. A process that lives less than half a second may be missed.

Usage: ``python scripts/cpu_census.py -- .venv/bin/pytest -q -n 4 ...``
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")

# (role, pattern in the command line); the first match names the process.
ROLES = [
    ("flow runs", "-m prefect.engine"),
    ("flow runs", "fork_launcher.py"),  # the process the worker starts for a forked run
    # The lab's fork server, and each run it forks (which keeps its command line).
    ("flow runs: forked, with the fork server", "-m lab.forkserver"),
    ("Prefect server", "prefect server start"),
    ("Prefect worker", "prefect worker start"),
    ("Prefect DB backends", "postgres: postgres prefect"),
    ("lab PostgreSQL: pg_basebackup", "pg_basebackup"),
    ("lab PostgreSQL: template copies", "cp -a "),
    ("lab PostgreSQL", "postgres"),
    ("lab daemon", "lab.daemon"),
    ("MongoDB (nx-27017)", "mongo"),
    ("xdist workers (test code)", "import sys;exec(eval(sys"),
    ("gcloud", "google-cloud-sdk"),
    ("lifeboat CLI", "commands.cli"),
    ("pytest", "pytest"),
    ("Prefect CLI (lab start)", "bin/prefect"),
]


def _sample(seen: dict[str, tuple[str, float]]) -> None:
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone between the listing and the read
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        key = f"{entry.name}:{fields[19]}"  # pid and start time: pids are reused
        cpu = (int(fields[11]) + int(fields[12])) / TICKS
        # An exec changes the command line and a zombie has none: keep the last one seen.
        seen[key] = (args or seen.get(key, ("", 0.0))[0], cpu)


def role(args: str) -> str:
    return next((name for name, pattern in ROLES if pattern in args), "other")


def main(command: list[str]) -> int:
    before: dict[str, tuple[str, float]] = {}
    _sample(before)
    seen = dict(before)
    started = time.monotonic()
    child = subprocess.Popen(command)
    while child.poll() is None:
        time.sleep(0.5)
        _sample(seen)
    wall = time.monotonic() - started
    by_role: dict[str, float] = {}
    others: dict[str, float] = {}  # what "other" is, by the start of its command line
    flow_runs = 0
    for key, (args, cpu) in seen.items():
        spent = cpu - before.get(key, (args, 0.0))[1]
        name = role(args)
        by_role[name] = by_role.get(name, 0.0) + spent
        flow_runs += int(name == "flow runs")
        if name == "other":
            others[args[:70]] = others.get(args[:70], 0.0) + spent
    total = sum(by_role.values())
    print(f"\n{total:.0f} CPU-s in {wall:.0f} s of wall time ({total / wall:.2f} cores)")
    for name, spent in sorted(by_role.items(), key=lambda item: -item[1]):
        print(f"{spent:8.1f} CPU-s {100 * spent / (total or 1):5.1f}%  {name}")
    for args, spent in sorted(others.items(), key=lambda item: -item[1])[:5]:
        print(f"{spent:8.1f} CPU-s in other: {args or '(no command line)'}")
    if flow_runs:
        forked = by_role.get("flow runs: forked, with the fork server", 0.0)
        mean = (by_role.get("flow runs", 0.0) + forked) / flow_runs
        print(f"{flow_runs} flow runs, {mean:.2f} CPU-s each on average")
    return child.returncode


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0] != "--" or len(args) < 2:
        sys.exit("usage: python scripts/cpu_census.py -- COMMAND [ARG ...]")
    sys.exit(main(args[1:]))
