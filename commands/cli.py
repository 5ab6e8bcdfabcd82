"""The `lifeboat` command: the lab, topology checks, and flows run from this machine."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path

from commands import discover, iam, restore_config, restore_sql
from lifeboat.discovery import DiscoveryError
from lifeboat.endpoints import lab_dir
from lifeboat.oplog import parse_moment
from lifeboat.topology import (
    ENVIRONMENTS_DIR,
    TopologyError,
    load_topology,
    parse_topology_file,
)


def _moment(text: str) -> datetime:
    """``--point-in-time``: an RFC 3339 time with its UTC offset, else a usage error."""
    try:
        return parse_moment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _lab_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = sub.add_parser("lab", help="the local two-region cloud")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    up = lab_sub.add_parser("up", help="start the lab in the background")
    up.add_argument("--dir", type=Path, default=None, help="lab folder (default .lab)")
    up.add_argument("--topology", type=Path, default=ENVIRONMENTS_DIR / "lab.yaml")
    up.add_argument("--base-port", type=int, default=18780)
    up.add_argument(
        "--time-scale",
        type=float,
        default=0.1,
        help="multiplies every emulated latency (1.0 = real Google timings)",
    )
    up.add_argument("--pg-address-prefix", default="127.0.10.")
    up.add_argument("--pg-port", type=int, default=5432)
    up.add_argument("--no-prefect", action="store_true", help="emulators only")
    up.add_argument(
        "--auth-string", default=None, help="user:pass for the Prefect server's basic auth"
    )
    down = lab_sub.add_parser("down", help="stop everything `lab up` started")
    down.add_argument("--dir", type=Path, default=None)
    status = lab_sub.add_parser("status", help="print the lab's endpoints and state")
    status.add_argument("--dir", type=Path, default=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lifeboat", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _lab_parser(sub)
    fo = sub.add_parser("failover", help="run a failover from this machine (break-glass)")
    fo.add_argument("--env", required=True)
    fo.add_argument("--reason", required=True)
    fo.add_argument("--incident-id", default=None)
    fo.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    fo.add_argument("--mode", choices=["graceful", "ungraceful"], default="graceful")
    fo.add_argument("--approve", action="store_true", help="approve in advance: no pause")
    fo.add_argument("--operator", default=os.environ.get("USER", "unknown"))
    bk = sub.add_parser("backup", help="back up now, from this machine")
    bk.add_argument("--env", required=True)
    bk.add_argument("--source", action="append", choices=["mongodb", "cloudsql"], default=None)
    bk.add_argument("--no-retention", action="store_true", help="delete nothing")
    rs = sub.add_parser("restore", help="restore a MongoDB backup into a scratch database")
    rs.add_argument("--env", required=True)
    rs_when = rs.add_mutually_exclusive_group()
    rs_when.add_argument("--backup", default=None, help="backup id (default: the newest verified)")
    rs_when.add_argument(
        "--point-in-time",
        default=None,
        type=_moment,
        help="RFC 3339 moment: a base backup and the changes captured after it, up to it",
    )
    rs.add_argument("--target", default=None, help="target database (default: restore_<id>)")
    rs.add_argument("--force", action="store_true", help="allow restoring over a live database")
    rs.add_argument(
        "--from",
        dest="source_bucket",
        default=None,
        help="read from a cross-region copy: its bucket or location (e.g. europe-west1)",
    )
    rs.add_argument("--operator", default=os.environ.get("USER", "unknown"))
    validate = sub.add_parser("validate", help="check an environment's topology file")
    which = validate.add_mutually_exclusive_group(required=True)
    which.add_argument("--env", help="deployments/environments/<env>.yaml")
    which.add_argument("--file", type=Path, help="a topology file anywhere, e.g. prod.example.yaml")
    discover.add_parser(sub)
    iam.add_parser(sub)
    restore_sql.add_parser(sub)
    restore_config.add_parser(sub)
    args = parser.parse_args(argv)

    try:
        if args.command == "failover":
            return _failover(args)
        if args.command in ("backup", "restore"):
            return _backup_or_restore(args)
        if args.command == "discover":
            return discover.run(args)
        if args.command == "iam":
            return iam.run(args)
        if args.command == "restore-sql":
            return restore_sql.run(args)
        if args.command == "restore-config":
            return restore_config.run(args)
        if args.command == "validate":
            topology = parse_topology_file(args.file) if args.file else load_topology(args.env)
            print(f"{args.file or args.env}: valid ({len(topology.services)} services)")
            return 0
        return _lab(args)
    except (TopologyError, DiscoveryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _lab(args: argparse.Namespace) -> int:
    from lab.supervisor import LabError, LabOptions, down, up

    root = args.dir or lab_dir()
    try:
        if args.lab_command == "up":
            up(
                LabOptions(
                    root=root,
                    topology=args.topology,
                    base_port=args.base_port,
                    time_scale=args.time_scale,
                    pg_address_prefix=args.pg_address_prefix,
                    pg_port=args.pg_port,
                    with_prefect=not args.no_prefect,
                    auth_string=args.auth_string,
                )
            )
        elif args.lab_command == "down":
            down(root)
        else:
            return _status(root)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _failover(args: argparse.Namespace) -> int:
    from commands.breakglass import run_failover

    try:
        record = run_failover(
            environment=args.env,
            reason=args.reason,
            incident_id=args.incident_id,
            dry_run=args.dry_run,
            mode=args.mode,
            approve=args.approve,
            operator=args.operator,
        )
    except Exception as exc:
        print(f"failover failed: {exc}", file=sys.stderr)
        return 1
    print("\n".join(record["plan"]))
    rto = record.get("rto_seconds")
    print(
        f"\noutcome: {record['outcome']}; RTO {rto:.1f} s"
        if rto
        else f"\noutcome: {record['outcome']}"
    )
    print(f"record: {record.get('record_uri')}")
    return 0


def _backup_or_restore(args: argparse.Namespace) -> int:
    from commands.breakglass import prepare_environment

    prepare_environment()
    try:
        if args.command == "backup":
            from flows.backup import SOURCES, backup

            record = backup(
                environment=args.env,
                sources=args.source or SOURCES,
                retention=not args.no_retention,
                operator=os.environ.get("USER", "cli"),
            )
        else:
            from flows.restore import restore

            record = restore(
                environment=args.env,
                backup_id=args.backup,
                target_database=args.target,
                force=args.force,
                point_in_time=args.point_in_time,
                operator=args.operator,
                source_bucket=args.source_bucket,
            )
    except Exception as exc:
        print(f"{args.command} failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(record.get("after", {}), indent=2, default=str))
    print(f"outcome: {record['outcome']}; record: {record.get('record_uri')}")
    return 0


def _status(root: Path) -> int:
    from lab.control.client import LabControl

    path = root / "endpoints.json"
    if not path.is_file():
        print("The lab is not running.")
        return 1
    endpoints = json.loads(path.read_text())
    state = LabControl(endpoints["control"]).state()
    print(json.dumps({"endpoints": endpoints, "state": state}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
