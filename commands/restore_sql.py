"""`lifeboat restore-sql`: restore the live Cloud SQL primary into a new instance, from this
machine, as it was at a moment (``--point-in-time``) or in a backup run (``--backup-run``),
or a backup's SQL exports (``--backup-id``, or ``--newest-export``), read from the backups
bucket or a cross-region copy (``--from europe-west1``).

It runs the ``restore-sql`` flow in this process, as ``lifeboat restore`` runs ``restore``;
in production launch the ``restore-sql/prod`` deployment instead, so the run is recorded by
the server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rs = sub.add_parser(
        "restore-sql",
        help="restore Cloud SQL to a point in time or a backup run, into a new instance",
    )
    rs.add_argument("--env", required=True)
    when = rs.add_mutually_exclusive_group(required=True)
    when.add_argument("--point-in-time", help="RFC 3339 moment, e.g. 2026-12-05T14:30:00Z")
    when.add_argument("--backup-run", type=int, help="backup run id of the live primary")
    when.add_argument("--backup-id", help="a Lifeboat backup id: import its SQL exports")
    when.add_argument(
        "--newest-export",
        action="store_true",
        help="import the SQL exports of the newest verified backup (in --from's bucket)",
    )
    rs.add_argument(
        "--from",
        dest="source_bucket",
        help="read the exports from a cross-region copy: its bucket or location",
    )
    rs.add_argument("--target", required=True, help="the new instance to restore into")
    rs.add_argument(
        "--force", action="store_true", help="allow a target that exists (it is replaced)"
    )
    rs.add_argument("--reason", default="restore Cloud SQL")
    rs.add_argument("--operator", default=os.environ.get("USER", "unknown"))


def run(args: argparse.Namespace) -> int:
    from commands.breakglass import prepare_environment

    prepare_environment()
    from flows.restore_sql import restore_sql
    from lifeboat import runtime

    source_bucket = args.source_bucket
    if args.newest_export and source_bucket is None:
        source_bucket = runtime.topology(args.env).backups.bucket
    try:
        record = restore_sql(
            environment=args.env,
            target_instance=args.target,
            point_in_time=args.point_in_time,
            backup_run=args.backup_run,
            backup_id=args.backup_id,
            source_bucket=source_bucket,
            force=args.force,
            reason=args.reason,
            operator=args.operator,
        )
    except Exception as exc:
        print(f"restore-sql failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(record.get("after", {}), indent=2, default=str))
    print(f"outcome: {record['outcome']}; record: {record.get('record_uri')}")
    return 0
