"""`python -m reliability [names...]` (`make reliability`): issue 15's sweeps, or the ones named.

Each prints `name=value` lines, like `make bench`, with the goal in the sweep's docstring.
Nothing here is a test and nothing here can fail CI; the suite keeps a small, fast
version of each invariant (README, "Proof under fire").
"""

from __future__ import annotations

import argparse
import subprocess
import sys

SWEEPS = {
    "storm": ["reliability.storm"],
    "crash": ["reliability.crash"],
    "lost": ["reliability.lost_writes"],
    "faults": ["reliability.faults"],
    "badinput": ["reliability.badinput"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"some of {', '.join(SWEEPS)}; default: all")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in SWEEPS]
    if unknown:
        parser.error(f"unknown sweep(s): {', '.join(unknown)}; known: {', '.join(SWEEPS)}")
    failed = []
    for name in args.names or list(SWEEPS):
        print(f"# {name}", flush=True)
        # Each sweep in its own process with its own lab: a failure in one still lets the
        # others report.
        if subprocess.run([sys.executable, "-m", *SWEEPS[name]], check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"# failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
