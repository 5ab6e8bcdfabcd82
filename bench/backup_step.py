"""One backup-benchmark step in its own process, so that its peak RSS is its own.

``python -m bench.backup_step backup|verify|restore <backup id | manifest JSON>`` prints
one JSON line: seconds, peak RSS in KiB, and the step's result.
"""

from __future__ import annotations

import json
import resource
import sys
import time

from prefect.logging import disable_run_logger

from lifeboat.manifest import Manifest
from tasks import mongo_backup

RESTORE_TARGETS = {"varai": "bench_restore"}


def run(what: str, arg: str) -> str:
    if what == "import":
        return ""
    if what == "backup":
        return mongo_backup.mongo_backup_to_gcs.fn("lab", arg).model_dump_json()
    manifest = Manifest.model_validate_json(arg)
    if what == "verify":
        return mongo_backup.mongo_verify_backup.fn("lab", manifest).model_dump_json()
    restored = mongo_backup.mongo_restore_from_gcs.fn("lab", manifest, RESTORE_TARGETS)
    return json.dumps([r.model_dump() for r in restored.collections])


def main() -> int:
    what, arg = sys.argv[1], sys.argv[2]
    with disable_run_logger():
        started = time.perf_counter()
        out = run(what, arg)
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "rss_kb": peak, "out": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
