"""Re-apply one item of a configuration or secrets backup: compared with the live resource
first, then only what differs is sent back.

An item is read from the archive after the whole archive was verified against its
manifest (chunked encryption finds late damage only at the end: lifeboat/archive). The
item goes back to its own resource, or to a scratch copy (``target``) that must not
exist yet, so that a drill or a careful operator can look at it before the real one.

Nothing is deleted or overwritten without a copy: the live document a change replaces
is returned (``ItemRestore.before``) and recorded, except a secret's, whose old versions
stay in Secret Manager (a restore adds a version). Secret values are read from the
archive and sent to Secret Manager inside ``config_restore_item``; its result holds
names, field names and version names only.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import io
import json
import re
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import run_v2, secretmanager_v1
from pydantic import BaseModel, Field

from lifeboat import runtime
from lifeboat.archive import read_archive, verify_archive
from lifeboat.config_items import (
    LATEST_TRAFFIC,
    RESTORABLE,
    RUN_SERVICE_ID,
    SECRET_ID,
    SECRET_SETTABLE,
    SWITCH_FIELDS,
    as_copy,
    describe_value,
    in_zone,
    record_set_as,
    record_set_changes,
    redacted,
    run_service_changes,
    runnable_spec,
    snake,
    traffic_revisions,
)
from lifeboat.manifest import ConfigItem, Manifest
from lifeboat.secret_names import SecretName
from tasks.backup_archive import archive_blob, encryption_key
from tasks.dns_rrsets import change_and_wait, record_set_document
from tasks.errors import PermanentError
from tasks.retrying import calling, cloud_task
from tasks.run_rollout import update_and_wait, wait_rollout, wait_settled


class ItemRestore(BaseModel):
    """What a restore of one item would change, or changed: never a secret value."""

    kind: str
    item: str  # the archived item's name
    target: str  # the resource written: the item itself or a scratch copy
    exists: bool  # the target existed when read
    fields: list[str] = Field(default_factory=list)  # what differs from the archive
    lines: list[str] = Field(default_factory=list)  # the plan, for a person
    before: dict[str, Any] | None = None  # the live document replaced (never a secret's)
    applied: bool = False
    result: str = ""  # the new generation, DNS change or secret version
    # Why failover and failback own what this would change (the served record, the apps'
    # database URL, a service's scaling, ingress or traffic): an archive taken before a
    # switch would point users or apps back at the failed region. Empty: nothing of theirs.
    switch_owned: str = ""


def find_item(manifest: Manifest, wanted: str) -> ConfigItem | None:
    """The item named ``wanted`` by its archive path or its name."""
    for item in manifest.items:
        if wanted in (item.path, item.name):
            return item
    return None


def archived_document(environment: str, manifest: Manifest, path: str) -> dict[str, Any]:
    """One member of a verified config archive, parsed; the whole object is verified first."""
    key, _ = encryption_key(environment)
    data = archive_blob(environment, manifest).download_as_bytes(
        timeout=runtime.call_timeout(environment)
    )
    verify_archive(
        io.BytesIO(data),
        key,
        expected_object_sha256=manifest.archive.sha256 if manifest.archive else None,
        expected_files={p: f.sha256 for p, f in manifest.files.items()},
    )
    for member in read_archive(io.BytesIO(data), key):
        content = member.stream.read()
        if member.path == path:
            found: dict[str, Any] = json.loads(content)
            return found
    raise PermanentError(f"item: {path} is in the manifest but not in the archive")


# The flow's check and its verification ask the same question with the same inputs in one
# run, and each reads the live resource again (cloud_task caches nothing). Every call
# re-reads, so a resumed run repeats no change either.
@cloud_task(timeout_seconds=900, task_run_name="restore-config-{path}")
def config_restore_item(
    environment: str, manifest: Manifest, path: str, target: str | None, apply: bool
) -> ItemRestore:
    """Compare the archived item ``path`` with its target; with ``apply``, send back what
    differs and wait until it is live.

    Idempotent: a re-run compares again, and an item already as archived changes nothing.
    """
    item = next((i for i in manifest.items if i.path == path), None)
    if item is None or item.kind not in RESTORABLE:
        raise PermanentError(f"item: {path} is not a restorable item of {manifest.backup_id}")
    with calling("restore-config", item.name):
        document = archived_document(environment, manifest, path)
        if item.kind == "run-service":
            return _run_service(environment, item, document, target, apply)
        if item.kind == "dns-record-set":
            return _record_set(environment, item, document, target, apply)
        return _secret(environment, item, document, target, apply)


def _scratch_refusal(result: ItemRestore, original: str) -> None:
    """A scratch target is written only when new, or already exactly the archived item."""
    if result.target != original and result.exists and result.fields:
        raise PermanentError(
            f"target: {result.target} exists and differs from the archived {original}; "
            "a copy is restored only to a name that does not exist"
        )


def _run_service(
    environment: str, item: ConfigItem, archived: dict[str, Any], target: str | None, apply: bool
) -> ItemRestore:
    parent, _, original = item.name.rpartition("/services/")
    service_id = target or original
    if not re.match(RUN_SERVICE_ID, service_id):
        raise PermanentError(f"target: {service_id!r} is not a Cloud Run service name")
    name = f"{parent}/services/{service_id}"
    copy = name != item.name
    if copy:
        archived = as_copy(archived)
    client = runtime.clients(environment).run_services
    try:
        live_pb: run_v2.Service | None = wait_settled(environment, name)
    except gexc.NotFound:
        live_pb = None
    live = None if live_pb is None else json.loads(run_v2.Service.to_json(live_pb))
    spec = runnable_spec(archived)
    result = ItemRestore(
        kind=item.kind,
        item=item.name,
        target=name,
        exists=live is not None,
        fields=run_service_changes(archived, live),
        before=None if live is None else redacted(live),
    )
    # Traffic names revisions; those of another service, or deleted since, cannot be
    # sent back. The new revision then takes the traffic, as a deploy does.
    revisions = set(traffic_revisions(spec))
    if revisions:
        existing = set()
        if live is not None:
            listed = runtime.clients(environment).run_revisions.list_revisions(
                parent=name, timeout=runtime.call_timeout(environment)
            )
            existing = {r.name.rsplit("/", 1)[-1] for r in listed}
        if missing := sorted(revisions - existing):
            spec["traffic"] = [LATEST_TRAFFIC]
            result.lines.append(
                f"traffic not restored: it names revision(s) {', '.join(missing)}, which "
                f"{name} does not have; the new revision takes all traffic"
            )
            if live is not None:
                result.fields = run_service_changes({**archived, **spec}, live)
    _scratch_refusal(result, item.name)
    if name == item.name and (owned := sorted(set(result.fields) & set(SWITCH_FIELDS))):
        result.switch_owned = f"{name}'s {', '.join(owned)} (set by failover and failback)"
    if live is None:
        result.lines.insert(0, f"create Cloud Run service {name} from the archived spec")
    if copy:
        result.lines.append(f"{name} is a copy: internal-only ingress, whatever the archive's")
    for field in result.fields if live is not None else []:
        result.lines.append(
            f"{name} {field}: {describe_value(live, field)} → {describe_value(spec, field)}"
            + (" (a new revision)" if field == "template" else "")
        )
    if not result.fields:
        result.lines.append(f"{name} is already as archived: nothing to change")
    if not apply or not result.fields:
        return result
    if live is None:
        operation = client.create_service(
            parent=parent,
            service=run_v2.Service.from_json(json.dumps(spec), ignore_unknown_fields=True),
            service_id=service_id,
            timeout=runtime.call_timeout(environment),
        )
        done = wait_rollout(environment, operation, f"creation of {name}")
    else:
        intended = dict(live)
        for field in result.fields:
            if field in spec:
                intended[field] = spec[field]
            else:
                intended.pop(field, None)
        done = update_and_wait(
            environment,
            run_v2.Service.from_json(json.dumps(intended), ignore_unknown_fields=True),
            [snake(f) for f in result.fields],
        )
    result.applied = True
    result.result = f"generation {done.generation}, revision {done.latest_created_revision}"
    return result


def _record_set(
    environment: str, item: ConfigItem, archived: dict[str, Any], target: str | None, apply: bool
) -> ItemRestore:
    topo = runtime.topology(environment)
    name = target or archived["name"]
    if not in_zone(name, topo.dns.dns_name):
        raise PermanentError(
            f"target: {name!r} is not a fully qualified name in zone {topo.dns.dns_name}"
        )
    client = runtime.clients(environment).dns(topo.dns.project)
    timeout = runtime.call_timeout(environment)
    rtype = archived["type"]
    live = record_set_document(client, topo.dns.zone, name, rtype, timeout)
    want = record_set_as(archived, name)
    result = ItemRestore(
        kind=item.kind,
        item=item.name,
        target=f"{name} {rtype}",
        exists=live is not None,
        fields=record_set_changes(want, live),
        before=live,
    )
    _scratch_refusal(result, item.name)
    served = {(r.name.lower(), r.type.upper()) for r in topo.dns.records}
    if result.fields and (name.lower(), rtype.upper()) in served:
        result.switch_owned = f"the served record {name} {rtype} (switched by failover)"
    for field in result.fields:
        result.lines.append(
            f"DNS {name} {rtype} {field}: {describe_value(live, field)} → "
            f"{describe_value(want, field)}"
        )
    if not result.fields:
        result.lines.append(f"DNS {name} {rtype} is already as archived: nothing to change")
    if not apply or not result.fields:
        return result
    change_id = change_and_wait(
        client,
        topo.dns.zone,
        [want],
        [live] if live else [],
        timeout,
        runtime.clients(environment).poll_interval,
        f"restore-config {name}",
    )
    result.applied = True
    result.result = f"DNS change {change_id}"
    return result


def _secret(
    environment: str, item: ConfigItem, archived: dict[str, Any], target: str | None, apply: bool
) -> ItemRestore:
    # The archive's path names the project by id (tasks/config_read.py): secrets/<p>/<s>.json
    project = item.path.split("/")[1]
    archived_id = item.path.rsplit("/", 1)[-1].removesuffix(".json")
    original = SecretName(project, archived_id).secret_resource
    secret_id = target or archived_id
    if not re.match(SECRET_ID, secret_id):
        raise PermanentError(f"target: {secret_id!r} is not a Secret Manager secret id")
    name = SecretName(project, secret_id).secret_resource
    client = runtime.clients(environment).secret_manager
    timeout = runtime.call_timeout(environment)
    value = _archived_value(archived)
    try:
        client.get_secret(name=name, retry=None, timeout=timeout)
        exists = True
    except gexc.NotFound:
        exists = False
    latest = _latest(client, name, timeout) if exists else None
    same = value is not None and latest is not None and hmac.compare_digest(latest, value)
    result = ItemRestore(kind=item.kind, item=original, target=name, exists=exists)
    if not exists:
        result.fields.append("secret")
        result.lines.append(f"create secret {name} (replication and labels as archived)")
    if value is None:
        result.lines.append(f"the archive holds no readable version of {original}: no value")
    elif not same:
        result.fields.append("value")
        result.lines.append(
            f"add a version to {name}: its latest value is not the archived one "
            "(older versions stay)"
        )
    if not result.fields:
        result.lines.append(f"{name}'s latest value is the archived one: nothing to change")
    # A copy may go into a secret with no readable version: one this restore created
    # before a crash, or an empty one; a version there replaces no value.
    if latest is not None:
        _scratch_refusal(result, original)
    topo = runtime.topology(environment)
    if name == original and result.fields and name == topo.cloud_sql.app_secret.resource:
        result.switch_owned = f"the apps' database URL {name} (set by failover and failback)"
    if not apply or not result.fields:
        return result
    if not exists:
        kept = {k: v for k, v in archived["secret"].items() if k in SECRET_SETTABLE}
        # AlreadyExists: an earlier try's create landed; the version goes into it.
        with contextlib.suppress(gexc.AlreadyExists):
            client.create_secret(
                parent=f"projects/{project}",
                secret_id=secret_id,
                secret=secretmanager_v1.Secret.from_json(json.dumps(kept)),
                retry=None,
                timeout=timeout,
            )
    if value is not None and not same:
        added = client.add_secret_version(
            parent=name,
            payload=secretmanager_v1.SecretPayload(data=value),
            retry=None,
            timeout=timeout,
        )
        result.result = f"version {added.name.rsplit('/', 1)[-1]}"
    result.applied = True
    return result


def _archived_value(archived: dict[str, Any]) -> bytes | None:
    latest = archived.get("latest")
    return None if latest is None else base64.b64decode(latest["data"])


def _latest(
    client: secretmanager_v1.SecretManagerServiceClient, name: str, timeout: float
) -> bytes | None:
    """The secret's latest value; None when it has no version to read (none, or the
    latest disabled or destroyed: a new version is the fix)."""
    try:
        got = client.access_secret_version(
            name=f"{name}/versions/latest", retry=None, timeout=timeout
        )
    except (gexc.NotFound, gexc.FailedPrecondition, gexc.BadRequest):
        return None
    return bytes(got.payload.data)
