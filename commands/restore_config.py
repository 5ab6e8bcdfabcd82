"""`lifeboat restore-config`: put back one item of a configuration or secrets backup, from
this machine: a Cloud Run service spec, a DNS record set or a secret version.

The plan is shown first, always, from a dry run of the ``restore-config`` flow; with
``--apply`` a second run makes the change (in production launch the
``restore-config/prod`` deployment, so the server records it).
"""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rc = sub.add_parser(
        "restore-config",
        help="re-apply one item of a config or secrets backup (a dry run unless --apply)",
    )
    rc.add_argument("--env", required=True)
    rc.add_argument(
        "--item",
        required=True,
        help="the item's archive path or name, e.g. dns/<zone>/A/app.example.com.json",
    )
    rc.add_argument("--backup-id", default=None, help="default: the newest verified backup")
    rc.add_argument(
        "--target",
        default=None,
        help="restore into this new resource instead: a service name, an FQDN, a secret id",
    )
    rc.add_argument(
        "--from",
        dest="source_bucket",
        default=None,
        help="read from a cross-region copy: its bucket or location (e.g. europe-west1)",
    )
    rc.add_argument("--apply", action="store_true", help="make the changes the plan shows")
    rc.add_argument(
        "--force",
        action="store_true",
        help="also put back what failover and failback own (served record, database URL, "
        "a service's scaling, ingress, traffic)",
    )
    rc.add_argument("--reason", default="restore configuration")
    rc.add_argument("--operator", default=os.environ.get("USER", "unknown"))


def run(args: argparse.Namespace) -> int:
    from commands.breakglass import prepare_environment

    prepare_environment()
    from flows.restore_config import restore_config

    common = {
        "environment": args.env,
        "item": args.item,
        "backup_id": args.backup_id,
        "target": args.target,
        "source_bucket": args.source_bucket,
        "reason": args.reason,
        "operator": args.operator,
        "force": args.force,
    }
    try:
        # The plan first, always, from a run of its own; then, with --apply, the change.
        plan = restore_config(**common, dry_run=True)
        before = plan.get("before", {})
        print(f"{before.get('kind')} {before.get('item')} from backup {before.get('backup_id')}:")
        for line in plan.get("plan", []):
            print(f"  {line}")
        if not args.apply:
            print("dry run: nothing changed; add --apply to make these changes")
            return 0
        record = restore_config(**common, dry_run=False)
    except Exception as exc:
        print(f"restore-config failed: {exc}", file=sys.stderr)
        return 1
    print(f"outcome: {record['outcome']}; {record.get('after', {}).get('result') or ''}")
    print(f"record: {record.get('record_uri')}")
    return 0
