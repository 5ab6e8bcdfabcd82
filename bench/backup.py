"""Backup and restore of a generated MongoDB database (≥ 1 GB) against raw driver speed.

Figures (``name=value``), all measured in this run against the same lab:
- backup_mb_s: BSON megabytes per second through scan → spool → tar → gzip → AES-GCM →
  resumable upload into the lab's GCS;
- backup_over_raw_scan: the backup's time ÷ a bare RawBSONDocument cursor scan of the
  same collections (goal ≤ 1.15, issue 19), with the environment's
  ``dump_parallel_collections`` (backup_readers);
- server_cpu_backup_over_scan: the MongoDB server process's CPU seconds during the
  backup ÷ during the scan (the lab's nx-27017 only: one Python process, which spends
  more to serve several cursors at once than one);
- backup_four_readers_over_raw_scan / server_cpu_four_readers_over_scan: the same with
  four collections read at once, production's default (the environment copied with
  ``dump_parallel_collections: 4``; the lab's own reads one, which its server serves
  fastest);
- backup_peak_rss_mb / restore_peak_rss_mb: peak resident memory of the process that
  ran it (goal < 300 whatever the size);
- restore_mb_s and restore_over_insert_many: restore speed ÷ raw ``insert_many`` of
  pre-encoded documents into the same server, one thread (goal ≥ 1.0, issue 19).

``--compare-with DIR`` also runs another checkout's backup and restore (e.g. main's, in a
worktree) against the same lab and data in the same run, printed as ``base_*``: an A/B
whose two sides see the same load on a shared machine.

Usage: ``python -m bench.backup [--mb 1024]``. It starts its own lab (no Prefect) and
stops it at the end.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import bson
import yaml
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

from lifeboat.topology import load_topology

REPO = Path(__file__).resolve().parent.parent
BASE_PORT = int(os.environ.get("LIFEBOAT_BENCH_BACKUP_PORT", "22780"))
PG_PREFIX = os.environ.get("LIFEBOAT_BENCH_BACKUP_PG_PREFIX", "127.0.22.")
COLLECTIONS = 4
BATCH = 1000
T = TypeVar("T")
WORDS = ["frame", "lens", "acetate", "titanium", "round", "square", "aviator", "polarized"]


def _document(rng: random.Random, i: int) -> dict[str, Any]:
    """About 1.4 KB of JSON-like data: strings, numbers, a nested object, an array."""
    return {
        "_id": i,
        "session_id": f"s-{rng.randrange(10**6):06d}",
        "event": rng.choice(["view", "try_on", "add_to_cart", "purchase"]),
        "score": rng.random(),
        "price_cents": rng.randrange(4900, 34900),
        "note": " ".join(rng.choice(WORDS) for _ in range(120)),
        "device": {"type": rng.choice(["ios", "android", "web"]), "dpr": rng.choice([1, 2, 3])},
        "viewed": [f"VR-{rng.randrange(200):05d}" for _ in range(rng.randrange(1, 12))],
        "payload": rng.randbytes(256).hex(),
    }


def generate(uri: str, database: str, megabytes: int) -> tuple[int, float]:
    """Insert ``megabytes`` of documents with raw insert_many; returns (bytes, seconds)."""
    rng = random.Random(1)
    target = megabytes * 1_000_000
    written = spent = 0.0
    i = 0
    with MongoClient(uri, document_class=RawBSONDocument) as client:
        db = client[database]
        while written < target:
            batch = [RawBSONDocument(bson.encode(_document(rng, i + k))) for k in range(BATCH)]
            coll = db[f"bench_{(i // BATCH) % COLLECTIONS}"]
            started = time.perf_counter()
            coll.insert_many(batch, ordered=True)
            spent += time.perf_counter() - started
            written += sum(len(d.raw) for d in batch)
            i += BATCH
    return int(written), spent


def raw_scan(uri: str, database: str) -> tuple[int, float]:
    started = time.perf_counter()
    total = 0
    with MongoClient(uri, document_class=RawBSONDocument) as client:
        db = client[database]
        for name in db.list_collection_names():
            for doc in db[name].find(batch_size=1000):
                total += len(doc.raw)
    return total, time.perf_counter() - started


def child(env: dict[str, str], what: str, arg: str, checkout: Path = REPO) -> dict[str, Any]:
    """Run one step in its own process, so its peak RSS is its own.

    ``checkout`` is the source tree whose code runs the step (its directory comes first
    on ``sys.path``): another checkout measures its code against the same lab and data.
    """
    result = subprocess.run(
        [sys.executable, "-m", "bench.backup_step", what, arg],
        env=env,
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{result.stderr[-3000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def server_cpu_seconds(root: Path) -> float | None:
    """CPU seconds the lab's MongoDB server has used so far (nx-27017 writes a pid file)."""
    pid_files = list(root.rglob("nx_27017.pid"))
    if not pid_files:
        return None
    pid = pid_files[0].read_text().strip()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime (fields 14 and 15 of proc_pid_stat(5)), in clock ticks.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def four_reader_environments(root: Path) -> Path:
    """A copy of the lab's environment that reads four collections at once."""
    folder = root / "environments-four-readers"
    folder.mkdir()
    topology = yaml.safe_load((REPO / "deployments" / "environments" / "lab.yaml").read_text())
    topology["mongodb"]["dump_parallel_collections"] = 4
    (folder / "lab.yaml").write_text(yaml.safe_dump(topology))
    return folder


def measured(root: Path, step: Callable[[], T]) -> tuple[T, float | None]:
    """A step's result, and the server's CPU seconds while it ran."""
    before = server_cpu_seconds(root)
    result = step()
    after = server_cpu_seconds(root)
    return result, None if before is None or after is None else after - before


def lab(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "commands.cli", "lab", *args], cwd=REPO, check=True)


def ratio(part: float | None, whole: float | None) -> float | str:
    return "n/a" if part is None or not whole else round(part / whole, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=int(os.environ.get("LIFEBOAT_BENCH_MB", 1024)))
    parser.add_argument(
        "--compare-with",
        type=Path,
        help="another checkout (e.g. main's) whose backup and restore also run, in this "
        "run on the same data, printed as base_* figures: an A/B on a shared machine",
    )
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="lifeboat-bench-backup-"))
    lab("up", "--dir", str(root), "--base-port", str(BASE_PORT), "--pg-address-prefix",
        PG_PREFIX, "--time-scale", "0.01", "--no-prefect")  # fmt: skip
    try:
        endpoints = json.loads((root / "endpoints.json").read_text())
        uri = str(endpoints["mongodb_uri"])
        env = dict(
            os.environ,
            LIFEBOAT_LAB_DIR=str(root),
            LIFEBOAT_MONGODB_URI=uri,
            LIFEBOAT_BACKUP_KEY=base64.b64encode(os.urandom(32)).decode(),
            PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="true",
        )
        generated, insert_s = generate(uri, "varai", args.mb)
        (scanned, scan_s), scan_cpu = measured(root, lambda: raw_scan(uri, "varai"))
        baseline = child(env, "import", "")
        backup, backup_cpu = measured(root, lambda: child(env, "backup", "20261122T000000Z"))
        four_env = dict(env, LIFEBOAT_ENVIRONMENTS_DIR=str(four_reader_environments(root)))
        four, four_cpu = measured(root, lambda: child(four_env, "backup", "20261122T020000Z"))
        manifest = backup["out"]
        verify = child(env, "verify", manifest)
        restore = child(env, "restore", manifest)
        restored = sum(r["documents"] for r in json.loads(restore["out"]))
        bson_bytes = sum(c["bytes"] for c in json.loads(manifest)["collections"])
        archive_bytes = json.loads(manifest)["archive"]["bytes"]
        mb = bson_bytes / 1e6
        figures = {
            "backup_data_mb": round(mb, 1),
            "backup_archive_mb": round(archive_bytes / 1e6, 1),
            "raw_scan_mb_s": round(scanned / 1e6 / scan_s, 1),
            "backup_mb_s": round(mb / backup["seconds"], 1),
            "backup_readers": load_topology("lab").mongodb.dump_parallel_collections,
            "backup_over_raw_scan": round(backup["seconds"] / scan_s, 2),
            "server_cpu_backup_over_scan": ratio(backup_cpu, scan_cpu),
            "backup_four_readers_over_raw_scan": round(four["seconds"] / scan_s, 2),
            "server_cpu_four_readers_over_scan": ratio(four_cpu, scan_cpu),
            "backup_four_readers_peak_rss_mb": round(four["rss_kb"] / 1024, 1),
            "backup_peak_rss_mb": round(backup["rss_kb"] / 1024, 1),
            # What importing prefect and the Google clients costs before any data moves.
            "import_baseline_rss_mb": round(baseline["rss_kb"] / 1024, 1),
            "verify_mb_s": round(mb / verify["seconds"], 1),
            "insert_many_mb_s": round(generated / 1e6 / insert_s, 1),
            "restore_mb_s": round(mb / restore["seconds"], 1),
            "restore_over_insert_many": round(
                (mb / restore["seconds"]) / (generated / 1e6 / insert_s), 2
            ),
            "restore_peak_rss_mb": round(restore["rss_kb"] / 1024, 1),
            "restore_documents": restored,
        }  # fmt: skip
        if args.compare_with is not None:
            # This checkout's environment for both sides: an A/B of the code, not of the
            # settings each checkout's lab.yaml has.
            same = dict(env, LIFEBOAT_ENVIRONMENTS_DIR=str(REPO / "deployments" / "environments"))
            base_import = child(same, "import", "", args.compare_with)
            base = child(same, "backup", "20261122T010000Z", args.compare_with)
            base_restore = child(same, "restore", base["out"], args.compare_with)
            figures |= {
                "base_import_baseline_rss_mb": round(base_import["rss_kb"] / 1024, 1),
                "base_backup_over_raw_scan": round(base["seconds"] / scan_s, 2),
                "base_backup_peak_rss_mb": round(base["rss_kb"] / 1024, 1),
                "base_restore_over_insert_many": round(
                    (mb / base_restore["seconds"]) / (generated / 1e6 / insert_s), 2
                ),
                "base_restore_peak_rss_mb": round(base_restore["rss_kb"] / 1024, 1),
                "backup_over_base": round(backup["seconds"] / base["seconds"], 2),
                "restore_over_base": round(restore["seconds"] / base_restore["seconds"], 2),
            }
        for name, value in figures.items():
            print(f"{name}={value}")
    finally:
        lab("down", "--dir", str(root))
        # The generated data (a GB of MongoDB files and archives by default) goes too:
        # each run used to leave about 3 GB behind. A lab that would not stop raised
        # above, and is kept with its logs, as bench_lab does.
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
