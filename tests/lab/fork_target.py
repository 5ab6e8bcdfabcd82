"""What the fork server's tests run in place of Prefect's engine: it reports what it got."""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def main() -> None:
    command = sys.argv[1:]
    if command[:1] == ["wait"]:  # before the report, which tells the test it may signal
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
    report = {
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "argv": command,
        "run": os.environ.get("PREFECT__FLOW_RUN_ID"),
        # Only a forked run has the server's modules (a cold one starts from nothing).
        "forked": "lab.fork_launcher" in sys.modules,
        "stdin": sys.stdin.readline().strip(),
    }
    print(json.dumps(report), flush=True)
    if command[:1] == ["exit"]:
        sys.exit(int(command[1]))
    if command[:1] == ["die"]:
        os.kill(os.getpid(), signal.SIGKILL)
    if command[:1] == ["wait"]:
        time.sleep(60)


if __name__ == "__main__":
    main()
