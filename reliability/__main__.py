"""`python -m reliability [names...]` (`make reliability`): issue 15's sweeps, or the ones named.

Each prints `name=value` lines, like `make bench`, with the goal in the sweep's docstring.
Nothing here is a test and nothing here can fail CI; the suite keeps a small, fast
version of each invariant (README, "Proof under fire").
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# The longest first, so that side by side (--jobs) the short ones share the third lane.
SWEEPS = {
    "crash": ["reliability.crash"],
    # A failover's calls, then the calls only a failback makes: together, every distinct
    # call of a switch and its undo (a failback's shared calls go through the same
    # classification, so sweeping them twice would double the hour for nothing).
    "faults": ["reliability.faults", "--flows", "failover", "failback", "--new-only"],
    "storm": ["reliability.storm"],
    "lost": ["reliability.lost_writes"],
    "badinput": ["reliability.badinput"],
}


def run_sweep(name: str, logs: Path | None) -> tuple[str, int, str]:
    """One sweep in its own process with its own lab, so a failure in one still lets the
    others report. With ``logs`` (sweeps side by side) its output goes to ``<name>.log``
    there as it runs, to be followed live, and is returned whole at its end: lines of
    several sweeps must not interleave."""
    started = time.monotonic()
    command = [sys.executable, "-m", *SWEEPS[name]]
    if logs is None:
        print(f"# {name}", flush=True)
        code = subprocess.run(command, check=False).returncode
        return name, code, f"# {name} took {time.monotonic() - started:.0f} s\n"
    log = logs / f"{name}.log"
    with log.open("w") as out:
        code = subprocess.run(command, check=False, stdout=out, stderr=subprocess.STDOUT).returncode
    took = time.monotonic() - started
    return name, code, f"# {name}\n{log.read_text()}# {name} took {took:.0f} s (rc {code})\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"some of {', '.join(SWEEPS)}; default: all")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="sweeps run side by side (each has its own ports); each one's output goes to a "
        "log file as it runs, and is printed whole, in order. They mostly wait on the lab's "
        "modelled latencies, so 3 on two cores take about as long as the longest",
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in SWEEPS]
    if unknown:
        parser.error(f"unknown sweep(s): {', '.join(unknown)}; known: {', '.join(SWEEPS)}")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, not {args.jobs}")
    names = args.names or list(SWEEPS)
    started = time.monotonic()
    failed = []
    logs = None
    if args.jobs > 1:
        logs = Path(tempfile.mkdtemp(prefix="lifeboat-reliability-"))
        print(f"# each sweep's output, live: {logs}/<sweep>.log", flush=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_sweep, n, logs) for n in names]
        for future in futures:
            name, code, output = future.result()
            print(output, end="", flush=True)
            if code != 0:
                failed.append(name)
    print(f"reliability_s={time.monotonic() - started:.0f}", flush=True)
    if failed:
        print(f"# failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
