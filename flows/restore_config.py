"""restore-config: one item of a configuration or secrets backup, re-applied.

Seed 004 keeps application configuration and secrets so that they can be put back; this
puts back one item at a time: a Cloud Run service spec, a DNS record set or a secret
version (the url-map and its backend services are kept whole, to be imported by hand with
gcloud: a request for one is refused saying how, lifeboat/config_items.by_hand).

The runbook: check the parameters and find the item (in the given backup, or in the
newest verified config, then secrets, backup; optionally in a cross-region copy) → read
it from the verified archive and compare it with the live resource → the plan, one line
per change → with ``dry_run`` off: take the region lock (a spec or record written back
during a failover would undo it), send back only what differs, and compare again: the
target must now be as archived → record, with the live document each change replaced.

``dry_run`` is on by default: a launch from the UI that changes no parameter shows the
plan and changes nothing. The CLI shows the plan first, always.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import Field

from flows.evidence import published
from flows.launch import ENVIRONMENT_FIELD, SwitchRequest
from flows.region_lock import lock_step
from flows.restore import SOURCE_BUCKET, source_bucket_of
from lifeboat.config_items import RESTORABLE, by_hand
from lifeboat.manifest import ConfigItem, ConfigSource, Manifest
from lifeboat.record import RunRecord
from tasks.catalog import catalog_get, catalog_newest
from tasks.config_restore import ItemRestore, config_restore_item, find_item
from tasks.errors import PermanentError

KINDS: tuple[ConfigSource, ...] = ("config", "secrets")


def locate(
    environment: str, item: str, backup_id: str | None, bucket: str | None
) -> tuple[Manifest, ConfigItem]:
    """The backup holding ``item`` and the item; refuses what cannot be restored, naming
    the parameter. Reads manifests only."""
    manifests: list[Manifest] = []
    for kind in KINDS:
        try:
            found = (
                catalog_get(environment, kind, backup_id, bucket)
                if backup_id
                else catalog_newest(environment, kind, True, bucket)
            )
        except PermanentError:
            found = None
        if found is not None:
            manifests.append(found)
    if not manifests:
        where = f"backup {backup_id}" if backup_id else "a verified config or secrets backup"
        raise PermanentError(f"backup_id: there is no {where} to restore from")
    for manifest in manifests:
        chosen = find_item(manifest, item)
        if chosen is None:
            continue
        if not manifest.verified:
            raise PermanentError(
                f"backup_id: {manifest.backup_id} is {manifest.status}, not verified"
            )
        if chosen.kind not in RESTORABLE:
            uri = manifest.archive.uri if manifest.archive else manifest.manifest_name
            raise PermanentError(
                f"item: {chosen.name} is a {chosen.kind}; "
                + by_hand(chosen.kind, chosen.name, chosen.path, uri)
            )
        return manifest, chosen
    known = [i.path for m in manifests for i in m.items if i.kind in RESTORABLE]
    raise PermanentError(
        f"item: {item!r} is in none of {', '.join(m.backup_id for m in manifests)}; "
        f"for example: {', '.join(known[:6])}"
    )


@flow(name="restore-config", persist_result=True)
def restore_config(
    environment: Annotated[str, ENVIRONMENT_FIELD],
    item: Annotated[
        str,
        Field(
            min_length=1,
            max_length=1024,
            description="The item's archive path or name, as the backup's manifest lists it",
        ),
    ],
    backup_id: Annotated[
        str | None,
        Field(pattern=r"^\d{8}T\d{6}Z$", description="Backup id (default: the newest verified)"),
    ] = None,
    target: Annotated[
        str | None,
        Field(
            max_length=255,
            description="Restore into this new resource instead (service name, FQDN, secret id)",
        ),
    ] = None,
    source_bucket: Annotated[
        str | None,
        Field(
            pattern=SOURCE_BUCKET,
            description="Read the backup from this cross-region copy (bucket or location)",
        ),
    ] = None,
    dry_run: Annotated[
        bool, Field(description="Show what would change and change nothing (the default)")
    ] = True,
    force: Annotated[
        bool,
        Field(
            description="Also put back what failover and failback own (the served record, "
            "the apps' database URL, a service's scaling, ingress or traffic)"
        ),
    ] = False,
    reason: Annotated[str, Field(min_length=1, max_length=500)] = "restore configuration",
    operator: Annotated[str, Field(max_length=100, description="Who launched it")] = "unknown",
) -> dict[str, Any]:
    request = SwitchRequest.validate_launch(environment, reason, None, operator, prefix="rcfg")
    env = request.environment
    bucket = source_bucket_of(env, source_bucket)
    record = request.record("restore-config", "scratch copy" if target else "in place", dry_run)
    with published(record, notify_success=False), ExitStack() as held:
        _restore(record, held, item, backup_id, target, bucket, force)
    return record.model_dump(mode="json")


def _restore(
    record: RunRecord,
    held: ExitStack,
    item: str,
    backup_id: str | None,
    target: str | None,
    bucket: str,
    force: bool,
) -> None:
    env = record.environment
    with record.step("check") as step:
        manifest, chosen = locate(env, item, backup_id, bucket)
        plan = config_restore_item(env, manifest, chosen.path, target, apply=False)
        step.detail = f"{chosen.kind} {chosen.name} from backup {manifest.backup_id}"
    record.plan = plan.lines
    record.before = _before(manifest, plan)
    if plan.switch_owned and not record.dry_run and not force:
        raise PermanentError(
            f"force: this would put back {plan.switch_owned}, from backup "
            f"{manifest.backup_id}; an archive taken before a switch points users or apps at "
            "the region it left. Check the plan, then launch again with force"
        )
    if record.dry_run or not plan.fields:
        record.after = {"changed": False}
        record.finish("planned" if record.dry_run else "completed")
        return
    if target is None:  # a copy under a new name touches nothing a switch does
        lock_step(held, record, once_per_incident=False)
    with record.step("apply") as step:
        done = config_restore_item(env, manifest, chosen.path, target, apply=True)
        step.detail = done.result or "nothing left to change"
    with record.step("verify") as step:
        again = config_restore_item(env, manifest, chosen.path, target, apply=False)
        step.detail = "; ".join(again.lines)
        if again.fields:
            raise PermanentError(
                f"restore-config: {again.target} still differs in {', '.join(again.fields)}"
            )
    # What the apply itself read and replaced (the check read before the lock was held).
    record.before |= {"live": done.before, "differs": done.fields}
    record.after = {"changed": done.applied, "target": done.target, "result": done.result}
    record.finish("completed")
    get_run_logger().info("restored %s into %s: %s", chosen.name, done.target, done.result)


def _before(manifest: Manifest, plan: ItemRestore) -> dict[str, Any]:
    """The record's before: the backup, the item, and the live document a change replaces
    (a secret's value is never in it: its older versions stay in Secret Manager)."""
    return {
        "backup_id": manifest.backup_id,
        "source": manifest.source,
        "item": plan.item,
        "kind": plan.kind,
        "target": plan.target,
        "exists": plan.exists,
        "differs": plan.fields,
        "live": plan.before,
    }
