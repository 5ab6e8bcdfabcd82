"""MongoDB change capture: encrypted, checksummed slices of oplog entries in Cloud Storage.

Each slice resumes the collections' change streams from the tokens the previous one (or
the base backup) ended with, drains them up to a cut, and stores the entries as one
`oplog.bson` in the archive format of the backups (tar, gzip, AES-256-GCM; the key is
the backup key, read from its secret and never logged), with a manifest beside it. A
slice holds five minutes of changes, so it is built in memory; after a long outage a
slice stops at a cap in bytes and the run ships the rest as further slices
(`lifeboat.slice_cap`).
"""

from __future__ import annotations

import io

from google.api_core import exceptions as gexc
from prefect import get_run_logger
from prefect.runtime import flow_run

from lifeboat import runtime
from lifeboat.archive import ArchiveError, ArchiveWriter, verify_archive
from lifeboat.manifest import StoredObject
from lifeboat.oplog import OPLOG_FILE
from lifeboat.slice_cap import SLICE_MAX_BYTES
from lifeboat.slices import (
    CAPTURE_STATE,
    SLICE_MANIFEST,
    SLICE_OBJECT,
    SLICES,
    CaptureState,
    SliceManifest,
    slice_prefix,
)
from tasks.backup_archive import encryption_key, tool_version
from tasks.catalog import backups_bucket
from tasks.mongo import client, list_collections
from tasks.mongo_backup import COMPRESSLEVEL
from tasks.mongo_oplog import (
    close_streams,
    coverage,
    drain,
    open_streams,
    raws,
    server_cuts,
    without_post_images,
)
from tasks.mongo_slices import slice_bytes
from tasks.retrying import calling, cloud_task


@cloud_task(timeout_seconds=120, task_run_name="capture-state-read")
def mongo_capture_state_read(environment: str) -> tuple[CaptureState | None, int]:
    """The stored capture state and its object generation (0: none yet). Read-only."""
    blob = backups_bucket(environment).blob(CAPTURE_STATE)
    with calling("capture-state-read", CAPTURE_STATE):
        try:
            data = blob.download_as_bytes(timeout=runtime.call_timeout(environment))
        except gexc.NotFound:
            return None, 0
    return CaptureState.model_validate_json(data), int(blob.generation or 0)


@cloud_task(timeout_seconds=120, task_run_name="capture-state-write")
def mongo_capture_state_write(environment: str, state: CaptureState, generation: int) -> int:
    """Store the state if it is still the one read (``generation``; 0: none existed).

    Two captures that ran at once cannot both move the chain on: the second gets 412.
    Idempotent per generation. Returns the new generation.
    """
    blob = backups_bucket(environment).blob(CAPTURE_STATE)
    with calling("capture-state-write", CAPTURE_STATE):
        blob.upload_from_string(
            state.model_dump_json(),
            content_type="application/json",
            if_generation_match=generation,
            timeout=runtime.call_timeout(environment),
        )
    return int(blob.generation or 0)


@cloud_task(timeout_seconds=900, retries=2, task_run_name="mongo-capture-{state.base_backup_id}")
def mongo_capture_slice(
    environment: str, state: CaptureState, max_bytes: int = SLICE_MAX_BYTES
) -> SliceManifest:
    """Resume every collection's stream from the state's tokens; ship what happened since,
    up to the server's cut, or less when the changes reach ``max_bytes`` (``capped``: the
    slice still holds everything up to its own, lower, cut; the run goes on from there).

    Raises `CaptureGap` (not retried) on a gap: a token gone from the server, a
    collection created or dropped since the chain's base, a drop, rename or invalidate.
    Returns the slice's manifest, verified (read back, sha256 checked, decrypted) or
    unverified with the reason; it is written beside the slice. Idempotent: the slice's
    name is fixed by the chain and its number, and the state moves on only afterwards.
    """
    topo = runtime.topology(environment)
    key, kid = encryption_key(environment)
    bucket = backups_bucket(environment)
    seq = state.seq + 1
    prefix = slice_prefix(state.base_backup_id, seq)
    with calling("mongo-capture", f"gs://{bucket.name}/{prefix}"), client(environment) as mongo:
        specs = [s for db in topo.mongodb.databases for s in list_collections(mongo[db])]
        streams = open_streams(mongo, specs, state.tokens)
        try:
            # The server's clock, after the streams opened: each is read through it.
            cuts = server_cuts(mongo, list(topo.mongodb.databases))
            entries, tokens, reached = drain(streams, cuts, max_bytes=max_bytes)
        finally:
            close_streams(streams)
    sink = io.BytesIO()
    with ArchiveWriter(sink, key=key, key_id=kid, compresslevel=COMPRESSLEVEL) as writer:
        digest = writer.add_bytes(OPLOG_FILE, b"".join(raws(entries)))
        summary = writer.close()
    blob = bucket.blob(prefix + SLICE_OBJECT)
    timeout = runtime.call_timeout(environment)
    with calling("mongo-capture-upload", prefix):
        blob.upload_from_string(
            sink.getvalue(), content_type="application/octet-stream", timeout=timeout
        )
    manifest = SliceManifest(
        environment=environment,
        base_backup_id=state.base_backup_id,
        seq=seq,
        since=state.until,
        from_tokens=state.tokens,
        oplog=coverage(entries, tokens, reached),
        capped=reached != cuts,
        key_id=kid,
        object=StoredObject(
            uri=f"gs://{bucket.name}/{blob.name}",
            bytes=summary.object_bytes,
            sha256=summary.object_sha256,
            generation=blob.generation,
        ),
        sha256=digest.sha256,
        tool=tool_version(),
        flow_run_id=flow_run.id,
    )
    manifest = _verified(environment, manifest)
    with calling("mongo-capture-manifest", prefix):
        bucket.blob(prefix + SLICE_MANIFEST).upload_from_string(
            manifest.model_dump_json(indent=2), content_type="application/json", timeout=timeout
        )
    get_run_logger().info(
        "slice %s: %d changes up to cluster time %s, %s",
        prefix,
        len(entries),
        manifest.oplog.cut,
        manifest.status,
    )
    return manifest


def _verified(environment: str, manifest: SliceManifest) -> SliceManifest:
    key, kid = encryption_key(environment)
    try:
        if manifest.key_id != kid:
            raise ArchiveError(f"wrong key: the slice has key id {manifest.key_id}, not {kid}")
        verify_archive(
            io.BytesIO(slice_bytes(environment, manifest)),
            key,
            expected_object_sha256=manifest.object.sha256,
            expected_files={OPLOG_FILE: manifest.sha256},
        )
    except ArchiveError as exc:
        return manifest.model_copy(update={"status": "unverified", "error": str(exc)[:500]})
    return manifest.model_copy(update={"status": "verified", "error": None})


@cloud_task(timeout_seconds=120, task_run_name="mongo-post-images")
def mongo_without_post_images(environment: str) -> list[str]:
    """The captured collections whose changeStreamPreAndPostImages is off. Read-only."""
    topo = runtime.topology(environment)
    with calling("mongo-post-images", ",".join(topo.mongodb.databases)), client(environment) as m:
        specs = [s for db in topo.mongodb.databases for s in list_collections(m[db])]
    return without_post_images(specs)


@cloud_task(timeout_seconds=300, task_run_name="mongo-slices-{base_backup_id}")
def mongo_list_slices(environment: str, base_backup_id: str) -> list[SliceManifest]:
    """Every slice manifest of one base backup's chain, in order. Read-only."""
    bucket = backups_bucket(environment)
    timeout = runtime.call_timeout(environment)
    found = []
    with calling("mongo-slices", f"{SLICES}{base_backup_id}/"):
        for blob in bucket.list_blobs(prefix=f"{SLICES}{base_backup_id}/", timeout=timeout):
            if blob.name.endswith("/" + SLICE_MANIFEST):
                found.append(SliceManifest.model_validate_json(blob.download_as_bytes()))
    return sorted(found, key=lambda s: s.seq)


@cloud_task(timeout_seconds=3600, task_run_name="mongo-verify-slices")
def mongo_verify_slices(environment: str, slices: list[SliceManifest]) -> list[SliceManifest]:
    """Each slice read back, its sha256 checked and decrypted. Read-only."""
    return [_verified(environment, item) for item in slices]
