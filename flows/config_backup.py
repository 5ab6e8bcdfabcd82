"""config-backup: the configuration a recovery needs besides the data, verified, kept.

Seed 004's configuration, secrets and CDN assets backups (seed 000's ``backup-config.sh``
kept the configuration beside the database dump):
- config (daily): each Cloud Run service of both regions, every record set of the DNS
  zone, the CDN's url-map, as the APIs describe them, in one encrypted archive;
- secrets (weekly): each Secret Manager secret of the regions' projects, with its latest
  value, in an archive encrypted with the backup key, as the data archives are;
- assets (daily): every object of the CDN's assets bucket (``cdn.assets_bucket``),
  copied server-side and checked by checksum. The objects are what the CDN serves to
  anyone, so they are copied as they are, not encrypted.

Each kind is a backup of its own in the backups bucket (``<kind>/<YYYY>/<MM>/<id>/``),
with a manifest written last, verification, cross-region copies (config and secrets)
and retention (90, 30 and 180 days, ``backups.retention``). A kind that fails does not
stop the others; the run fails at the end naming it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from prefect import flow
from pydantic import Field

from flows.backup_copies import copy_or_mark_failed, copy_retention, log_copies
from flows.backup_retention import source_retention
from flows.backup_run import failed_backup, open_backup_run
from flows.config_assets import assets_backup
from flows.evidence import published
from flows.launch import ENVIRONMENT_FIELD
from lifeboat.manifest import ConfigSource, Manifest
from lifeboat.record import RunRecord
from lifeboat.topology import Topology
from tasks.catalog import catalog_write
from tasks.config_backup import config_backup_to_gcs, config_verify_backup
from tasks.errors import PermanentError

DAILY: list[ConfigSource] = ["config", "assets"]


@flow(name="config-backup", persist_result=True)
def config_backup(
    environment: Annotated[str, ENVIRONMENT_FIELD],
    kinds: Annotated[
        list[ConfigSource],
        Field(
            min_length=1,
            description="config (services, DNS, url-map), secrets (weekly), assets (CDN)",
        ),
    ] = DAILY,
    retention: Annotated[bool, Field(description="Delete expired backups afterwards")] = True,
    operator: Annotated[str, Field(max_length=100, description="Who launched it")] = "schedule",
) -> dict[str, Any]:
    run = open_backup_run(
        environment, "config-backup", f"config backup of {', '.join(kinds)}", "cb", operator
    )
    topo, record, bid, started = run.topology, run.record, run.backup_id, run.started
    manifests: dict[str, Manifest] = {}
    with published(record, notify_success=False):
        for kind in dict.fromkeys(kinds):
            manifests[kind] = _one(topo, record, kind, bid, started)
        record.after["backups"] = {
            k: {
                "status": m.status,
                "manifest": m.manifest_name,
                "error": m.error,
                "items": len(m.items) or len(m.assets),
                "copies": {c.location: c.status for c in m.copies.values()},
            }
            for k, m in manifests.items()
        }
        if retention:
            _retention(topo, record, {k for k, m in manifests.items() if m.verified})
        failed = [f"{k}: {m.error or m.status}" for k, m in manifests.items() if not m.verified]
        failed += log_copies(manifests)
        if failed:
            raise PermanentError("config backup not verified — " + "; ".join(failed))
        record.finish("completed")
    return record.model_dump(mode="json")


def _one(
    topo: Topology, record: RunRecord, kind: ConfigSource, bid: str, started: datetime
) -> Manifest:
    """One kind's backup, verified and written to the catalog, copied if archived; a
    failure is a failed manifest (retention must see that the newest failed)."""
    env = topo.environment
    try:
        with record.step(f"{kind}-backup") as step:
            if kind == "assets":
                manifest = assets_backup(env, bid)
            else:
                manifest = config_verify_backup(env, config_backup_to_gcs(env, kind, bid))
            if manifest.backup_id != bid:  # the assets did not change: that backup holds them
                step.detail = f"unchanged since backup {manifest.backup_id}; nothing copied"
                return manifest
            manifest.flow_run_id = record.flow_run_id
            catalog_write(env, manifest)
            step.outcome = "done" if manifest.verified else "failed"
            count = len(manifest.items) or len(manifest.assets)
            step.detail = manifest.error or f"{count} items verified; {manifest.manifest_name}"
    except Exception as exc:
        return failed_backup(env, record, kind, bid, started, exc)
    if kind == "assets" or not manifest.verified:
        return manifest
    return copy_or_mark_failed(topo, record, manifest)


def _retention(topo: Topology, record: RunRecord, verified: set[str]) -> None:
    now = datetime.now(UTC)
    order: list[ConfigSource] = ["config", "secrets", "assets"]
    kinds = [k for k in order if k in verified]
    with record.step("retention") as step:
        report: list[dict[str, Any]] = []
        for kind in kinds:
            report += source_retention(topo, kind, now)
        report += copy_retention(topo, [k for k in kinds if k != "assets"], now)
        gone = [r for r in report if r["action"] == "delete"]
        record.after["retention"] = report
        step.detail = f"deleted {len(gone)}: " + (
            "; ".join(f"{r['what']} ({r['reason']})" for r in gone) or "nothing expired"
        )
