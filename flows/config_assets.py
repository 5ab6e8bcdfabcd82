"""The CDN assets backup: the assets bucket copied server-side when it changed.

Seed 004 backs the assets up "on deployment": a run whose bucket holds the same objects
(names, sizes, checksums) as the newest verified assets backup copies nothing and says
so; that backup stays the newest. Otherwise every object is rewritten into the backups
bucket under ``assets/<YYYY>/<MM>/<id>/objects/<name>`` and checked by checksum
(tasks/storage_copies.py); the manifest lists each copy.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import get_run_logger

from lifeboat import runtime
from lifeboat.manifest import CopiedObject, Manifest, backup_prefix
from tasks.backup_archive import tool_version
from tasks.catalog import catalog_newest
from tasks.config_assets import assets_list
from tasks.storage_copies import storage_copy_object


def _same(now: dict[str, CopiedObject], kept: dict[str, CopiedObject]) -> bool:
    def key(o: CopiedObject) -> tuple[int, str, str | None]:
        return (o.bytes, o.crc32c, o.md5_hash)

    return now.keys() == kept.keys() and all(key(now[n]) == key(kept[n]) for n in now)


def assets_backup(environment: str, bid: str) -> Manifest:
    """The newest verified assets backup when nothing changed since; else a new one."""
    started = datetime.now(UTC)
    bucket, objects = assets_list(environment)
    newest = catalog_newest(environment, "assets")
    if newest is not None and _same(objects, newest.assets):
        get_run_logger().info(
            "assets: gs://%s holds what backup %s holds; nothing copied", bucket, newest.backup_id
        )
        return newest
    dest = runtime.topology(environment).backups.bucket
    prefix = backup_prefix("assets", bid) + "objects/"
    manifest = Manifest(
        source="assets",
        backup_id=bid,
        environment=environment,
        started_at=started,
        tool=tool_version(),
    )
    wrong = []
    for name in sorted(objects):
        result = storage_copy_object(environment, bucket, name, dest, prefix + name)
        if result.verified and result.copied is not None:
            manifest.assets[name] = result.copied
        else:
            wrong.append(result.error or f"{name}: not copied")
    manifest.ended_at = datetime.now(UTC)
    if wrong:
        manifest.status, manifest.error = "unverified", "; ".join(wrong)[:500]
    else:
        manifest.status, manifest.verified_at = "verified", datetime.now(UTC)
    return manifest
