"""Cloud Storage: server-side copies of backup objects to other regions' buckets.

A copy is an ``objects.rewrite``: the bytes never leave Cloud Storage (no download and
upload through the worker). Across locations a rewrite may take several calls, each
answering ``done: false`` with a ``rewriteToken`` to send back until it is done
(https://cloud.google.com/storage/docs/json_api/v1/objects/rewrite); google-cloud-storage's
``Blob.rewrite`` makes one call and returns the token, so the loop is here. The copy is
then checked by the checksums Cloud Storage reports for both objects (``lifeboat.copies``).
Each call gets the environment's call timeout (``endpoints.call_timeout_s``, 30 s by
default): Google asks that "any timeout logic ... with using this method should be at
least 30 seconds".
"""

from __future__ import annotations

import contextlib

from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]
from prefect import get_run_logger
from pydantic import BaseModel

from lifeboat import runtime
from lifeboat.copies import Checksums, mismatch
from lifeboat.manifest import CopiedObject
from tasks.errors import PermanentError, TransientError
from tasks.retrying import calling, cloud_task

# Rewrite calls one copy may take before it is judged stuck (a token that never ends).
MAX_REWRITE_CALLS = 10_000


class CopyResult(BaseModel):
    """One object's copy: where, what Cloud Storage reported, and whether it matched."""

    name: str
    dest_bucket: str
    dest_name: str = ""
    copied: CopiedObject | None = None
    calls: int = 0
    reused: bool = False
    error: str | None = None

    @property
    def verified(self) -> bool:
        return self.copied is not None and self.error is None


def _checksums(blob: storage.Blob) -> Checksums:
    return Checksums(bytes=int(blob.size or 0), crc32c=blob.crc32c, md5_hash=blob.md5_hash)


def _copied(blob: storage.Blob) -> CopiedObject:
    return CopiedObject(
        generation=int(blob.generation),
        bytes=int(blob.size or 0),
        crc32c=str(blob.crc32c),
        md5_hash=blob.md5_hash,
    )


@cloud_task(timeout_seconds=3600, task_run_name="copy-{name}-to-{dest_bucket}")
def storage_copy_object(
    environment: str,
    source_bucket: str,
    name: str,
    dest_bucket: str,
    dest_name: str | None = None,
) -> CopyResult:
    """Rewrite one object into ``dest_bucket`` under the same name (or ``dest_name``), then
    check its checksums.

    Returns:
        The copy, verified or with the reason it does not match its source. A copy that
        does not match is deleted at once, so that nothing can restore from it.

    Raises:
        PermanentError: the source is missing.
        TransientError: the destination changed while copying; a retry reads it again.

    Idempotent: a destination that already holds the source's bytes (same size, crc32c,
    md5) is kept and not copied again; otherwise the rewrite replaces exactly the
    generation read (``ifGenerationMatch``), pinned to the source's generation.
    """
    topo = runtime.topology(environment)
    client = runtime.clients(environment).storage(topo.regions.primary.project)
    timeout = runtime.call_timeout(environment)
    target = dest_name or name
    uri = f"gs://{source_bucket}/{name} → gs://{dest_bucket}/{target}"
    result = CopyResult(name=name, dest_bucket=dest_bucket, dest_name=target)
    with calling("copy-object", uri):
        source = client.bucket(source_bucket).get_blob(name, timeout=timeout)
        if source is None:
            raise PermanentError(f"copy-object: gs://{source_bucket}/{name} does not exist")
        existing = client.bucket(dest_bucket).get_blob(target, timeout=timeout)
        if existing is not None and mismatch(_checksums(source), _checksums(existing)) is None:
            result.copied, result.reused = _copied(existing), True
            return result
        dest = client.bucket(dest_bucket).blob(target)
        pinned = client.bucket(source_bucket).blob(name, generation=source.generation)
        token: str | None = None
        try:
            while result.calls == 0 or token is not None:
                if result.calls >= MAX_REWRITE_CALLS:
                    raise PermanentError(f"copy-object: {uri} not done after {result.calls} calls")
                # With ifGenerationMatch set, the library retries a 5xx itself: the call is
                # conditional, so a repeated one cannot write a second object.
                token, _, _ = dest.rewrite(
                    pinned,
                    token=token,
                    if_generation_match=existing.generation if existing else 0,
                    if_source_generation_match=source.generation,
                    timeout=timeout,
                )
                result.calls += 1
        except gexc.PreconditionFailed as exc:
            raise TransientError(f"copy-object: {uri} changed while copying") from exc
    wrong = mismatch(_checksums(source), _checksums(dest))
    if wrong is None:
        result.copied = _copied(dest)
        return result
    result.error = f"copy of {name} in {dest_bucket} does not match its source: {wrong}"
    get_run_logger().error("%s; deleting it", result.error)
    # Gone already, or replaced by a newer copy: either way not this bad one any more.
    with (
        calling("copy-object-discard", f"gs://{dest_bucket}/{target}"),
        contextlib.suppress(gexc.NotFound, gexc.PreconditionFailed),
    ):
        dest.delete(if_generation_match=dest.generation, timeout=timeout)
    return result
