"""`python -m reliability [names...]` (`make reliability`): issue 15's sweeps, or the ones named.

Each prints `name=value` lines, like `make bench`, with the goal in the sweep's docstring.
Nothing here is a test and nothing here can fail CI; the suite keeps a small, fast
version of each invariant (README, "Proof under fire").
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _lane(sweep: str, port: int, prefix: str) -> dict[str, str]:
    """A second lab's ports and PostgreSQL addresses for a sweep split in two lanes."""
    key = f"LIFEBOAT_RELIABILITY_{sweep.upper()}"
    return {f"{key}_PORT": str(port), f"{key}_PG_PREFIX": prefix}


# Each: the module and its arguments, and the environment of a lane with a lab of its own.
# The longest first, so that side by side (--jobs) the short ones share the last lanes.
# The crash sweep and the fault matrix each run as two lanes, the failover's and the
# failback's, so that the longest lane is one flow's hour, not two.
SWEEPS: dict[str, tuple[list[str], dict[str, str]]] = {
    "crash": (["reliability.crash", "--flows", "failover", "failover_graceful"], {}),
    # A failover's calls, then the calls only a failback makes: together, every distinct
    # call of a switch and its undo (a failback's shared calls go through the same
    # classification, so sweeping them twice would double the hour for nothing).
    "faults": (["reliability.faults", "--flows", "failover"], {}),
    "crash-failback": (
        ["reliability.crash", "--flows", "failback"],
        _lane("crash", 23780, "127.0.33."),
    ),
    "faults-failback": (
        ["reliability.faults", "--flows", "failback", "--new-only"],
        _lane("faults", 20780, "127.0.32."),
    ),
    "storm": (["reliability.storm"], {}),
    "lost": (["reliability.lost_writes"], {}),
    "badinput": (["reliability.badinput"], {}),
}


def run_sweep(name: str, logs: Path | None) -> tuple[str, int, str]:
    """One sweep in its own process with its own lab, so a failure in one still lets the
    others report. With ``logs`` (sweeps side by side) its output goes to ``<name>.log``
    there as it runs, to be followed live, and is returned whole at its end: lines of
    several sweeps must not interleave."""
    started = time.monotonic()
    module, lane = SWEEPS[name]
    command = [sys.executable, "-m", *module]
    env = os.environ | lane
    if logs is None:
        # One at a time: shown as it comes, and kept for the closing figures.
        print(f"# {name}", flush=True)
        lines = []
        with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                print(line, end="", flush=True)
                lines.append(line)
        took = time.monotonic() - started
        return name, proc.returncode, f"{''.join(lines)}# {name} took {took:.0f} s\n"
    log = logs / f"{name}.log"
    with log.open("w") as out_file:
        code = subprocess.run(
            command, check=False, env=env, stdout=out_file, stderr=subprocess.STDOUT
        ).returncode
    took = time.monotonic() - started
    return name, code, f"# {name}\n{log.read_text()}# {name} took {took:.0f} s (rc {code})\n"


_FIGURE = re.compile(r"^([a-z][a-z0-9_]*)=(\S+)$", re.M)


def closing_figures(outputs: list[str]) -> dict[str, str]:
    """Every sweep's ``name=value`` figures, once each: a figure two lanes both print is
    summed (a count), or the larger taken (a time, ``*_s``, or a maximum, ``*max*``)."""
    seen: dict[str, list[str]] = {}
    for output in outputs:
        for name, value in _FIGURE.findall(output):
            seen.setdefault(name, []).append(value)
    merged = {}
    for name, values in seen.items():
        if len(values) == 1:
            merged[name] = values[0]
        elif name.endswith("_s") or "max" in name:
            merged[name] = max(values, key=float)
        elif all(v.lstrip("-").isdigit() for v in values):
            merged[name] = str(sum(int(v) for v in values))
        else:
            merged[name] = " / ".join(values)
    return merged


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
    outputs = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_sweep, n, logs) for n in names]
        for future in futures:
            name, code, output = future.result()
            if logs is not None:
                print(output, end="", flush=True)
            else:
                print(output.splitlines()[-1], flush=True)
            outputs.append(output)
            if code != 0:
                failed.append(name)
    # The closing lines: the figures the goals are judged on, each once, lanes merged.
    print("# closing figures, every sweep", flush=True)
    for name, value in closing_figures(outputs).items():
        print(f"{name}={value}", flush=True)
    print(f"reliability_s={time.monotonic() - started:.0f}", flush=True)
    if failed:
        print(f"# failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
