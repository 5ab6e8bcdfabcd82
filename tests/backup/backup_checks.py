"""Shared helpers of the backup tests: the lab's MongoDB, the catalog, synthetic history."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

from lifeboat.manifest import (
    AnySource,
    BackupCopy,
    CopiedObject,
    Manifest,
    Source,
    backup_id,
    backup_prefix,
)
from lifeboat.topology import load_topology
from tests.labharness import Lab

TOPOLOGY = load_topology("lab")
BACKUPS = TOPOLOGY.backups.bucket


def mongo(lab: Lab) -> MongoClient[RawBSONDocument]:
    return MongoClient(str(lab.endpoints["mongodb_uri"]), document_class=RawBSONDocument)


def documents_by_id(lab: Lab, database: str) -> dict[str, dict[bytes, bytes]]:
    """collection → {_id's BSON → the document's raw BSON}."""
    with mongo(lab) as client:
        db = client[database]
        return {
            name: {_id_key(doc): bytes(doc.raw) for doc in db[name].find()}
            for name in db.list_collection_names()
        }


def _id_key(doc: RawBSONDocument) -> bytes:
    import bson

    return bson.encode({"_id": doc["_id"]})


def bucket_objects(lab: Lab, prefix: str) -> list[str]:
    client = lab.clients().storage(TOPOLOGY.regions.primary.project)
    return sorted(b.name for b in client.bucket(BACKUPS).list_blobs(prefix=prefix))


def read_manifest(lab: Lab, name: str) -> Manifest:
    client = lab.clients().storage(TOPOLOGY.regions.primary.project)
    return Manifest.model_validate_json(client.bucket(BACKUPS).blob(name).download_as_bytes())


def write_synthetic(
    lab: Lab, source: AnySource, age: timedelta, status: str = "verified", copies: bool = True
) -> Manifest:
    """A past backup: a manifest plus one payload object, as the flow would leave them;
    a verified one (with ``copies``) also copied into each copy bucket, as recorded."""
    taken = datetime.now(UTC) - age
    manifest = Manifest(
        source=source,
        backup_id=backup_id(taken),
        environment="lab",
        started_at=taken,
        ended_at=taken + timedelta(minutes=2),
        status=status,  # type: ignore[arg-type]
        verified_at=taken + timedelta(minutes=3) if status == "verified" else None,
        tool="synthetic",
    )
    client = lab.clients().storage(TOPOLOGY.regions.primary.project)
    payload = b"synthetic backup " + manifest.backup_id.encode()
    client.bucket(BACKUPS).blob(manifest.prefix + "payload.bin").upload_from_string(payload)
    targets = TOPOLOGY.backups.copies if copies and status == "verified" else []
    for copy in targets:
        blob = client.bucket(copy.bucket).blob(manifest.prefix + "payload.bin")
        blob.upload_from_string(payload)
        manifest.copies[copy.bucket] = BackupCopy(
            bucket=copy.bucket,
            location=copy.location,
            status="verified",
            copied_at=taken + timedelta(minutes=4),
            objects={
                blob.name: CopiedObject(
                    generation=blob.generation,
                    bytes=len(payload),
                    crc32c=blob.crc32c,
                    md5_hash=blob.md5_hash,
                )
            },
        )
    body = manifest.model_dump_json()
    for name in [BACKUPS, *(c.bucket for c in targets)]:
        client.bucket(name).blob(manifest.manifest_name).upload_from_string(body)
    return manifest


def write_orphan(lab: Lab, source: Source, age: timedelta) -> str:
    """What a run killed before its manifest leaves: a payload and no manifest; its prefix."""
    prefix = backup_prefix(source, backup_id(datetime.now(UTC) - age))
    bucket = lab.clients().storage(TOPOLOGY.regions.primary.project).bucket(BACKUPS)
    bucket.blob(prefix + "archive.tar.gz.enc").upload_from_string(b"half an archive")
    return prefix


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def params(**extra: Any) -> dict[str, Any]:
    return {"environment": "lab", **extra}


def read_secret_block(name: str) -> str:
    code = f"from prefect.blocks.system import Secret; print(Secret.load({name!r}).get())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def save_secret_block(name: str, value: str) -> None:
    """Overwrite a Secret block, the value on stdin (never argv)."""
    code = (
        "import sys; from prefect.blocks.system import Secret; "
        f"Secret(value=sys.stdin.read()).save({name!r}, overwrite=True)"
    )
    subprocess.run([sys.executable, "-c", code], input=value, text=True, check=True)
