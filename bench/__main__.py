"""`python -m bench [names...]` (`make bench`): every benchmark, or the ones named.

Each prints `name=value` lines; ratios are measured within one run because the machine
is shared. Nothing here is a test and nothing here can fail CI.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

BENCHES = {
    "failover": ["bench.failover"],
    "failback": ["bench.failback"],
    "rollback": ["bench.rollback"],
    "overhead": ["bench.failover", "--sqlite", "--no-purge-wait"],
    "sequential": ["bench.sequential"],
    "scale": ["bench.scale"],
    "backup": ["bench.backup"],
    "recovery": ["bench.recovery"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"some of {', '.join(BENCHES)}; default: all")
    parser.add_argument("--backup-mb", default="200", help="size of the backup bench's data")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown bench(es): {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    failed = []
    for name in args.names or list(BENCHES):
        command = [sys.executable, "-m", *BENCHES[name]]
        if name == "backup":
            command += ["--mb", args.backup_mb]
        print(f"# {name}", flush=True)
        # Each bench in its own process: its own lab, its own Prefect settings, and a
        # failure in one still lets the others report.
        if subprocess.run(command, check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"# failed: {', '.join(failed)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
