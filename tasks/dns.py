"""Cloud DNS: read a record set and switch it to another region in one atomic change."""

from __future__ import annotations

from google.api_core import exceptions as gexc
from prefect import get_run_logger
from pydantic import BaseModel

from lifeboat import runtime
from tasks.dns_rrsets import create_change, get_record_set, reload_change
from tasks.errors import PermanentError, TransientError
from tasks.polling import wait_until
from tasks.retrying import calling, cloud_task


class RecordState(BaseModel):
    name: str
    type: str
    ttl: int
    rrdatas: list[str]

    def describe(self) -> str:
        return f"{self.name} {self.type} {','.join(self.rrdatas)} ttl {self.ttl}"


class DnsSwitchResult(BaseModel):
    changed: bool
    before: RecordState | None
    after: RecordState
    change_id: str | None = None


def read_record(environment: str, name: str, rtype: str) -> RecordState | None:
    """The live record set ``name``/``rtype``, read alone (never the whole zone).

    A routing-policy set (geo, wrr, primaryBackup) elsewhere in the zone is never read.
    One at this very name is refused: switching it means rewriting its policy, which
    Lifeboat does not do.
    """
    topo = runtime.topology(environment)
    client = runtime.clients(environment).dns(topo.dns.project)
    found = get_record_set(client, topo.dns.zone, name, rtype, runtime.call_timeout(environment))
    if found is None:
        return None
    if found.routing_policy is not None:
        raise PermanentError(
            f"dns: {name} {rtype} in zone {topo.dns.zone} has a {found.policy_kind} routing "
            "policy; Lifeboat switches record sets with plain rrdatas only"
        )
    return RecordState(name=found.name, type=found.type, ttl=found.ttl, rrdatas=found.rrdatas)


@cloud_task(timeout_seconds=120, task_run_name="dns-get-{name}")
def dns_get_record(environment: str, name: str, rtype: str = "A") -> RecordState | None:
    """Read one record set.

    Args:
        environment: the topology to use.
        name: fully qualified record name, e.g. ``api.varai.ai.``.
        rtype: record type.

    Returns:
        The live record set, or None when it does not exist.

    Idempotent: a read.
    """
    with calling("dns-get-record", name):
        return read_record(environment, name, rtype)


@cloud_task(timeout_seconds=300, task_run_name="dns-switch-{name}")
def dns_switch_record(
    environment: str, name: str, rrdatas: list[str], ttl: int, rtype: str = "A"
) -> DnsSwitchResult:
    """Point a record set at new addresses with a new TTL, atomically, and wait until done.

    Args:
        environment: the topology to use.
        name: fully qualified record name.
        rrdatas: the addresses to serve.
        ttl: the TTL to set.
        rtype: record type.

    Returns:
        What changed, with the record before and after.

    Idempotent: reads the live record first and changes nothing when it already matches.
    The change deletes exactly the set it read, so a concurrent edit gets 412 and this
    task re-reads on retry instead of overwriting someone else's change.
    """
    logger = get_run_logger()
    topo = runtime.topology(environment)
    factory = runtime.clients(environment)
    target = RecordState(name=name, type=rtype, ttl=ttl, rrdatas=list(rrdatas))
    with calling("dns-switch", f"{topo.dns.zone}/{name}"):
        before = read_record(environment, name, rtype)
        if before is not None and before.rrdatas == target.rrdatas and before.ttl == ttl:
            logger.info("DNS %s already %s; nothing to change", name, target.describe())
            return DnsSwitchResult(changed=False, before=before, after=before)
        client = factory.dns(topo.dns.project)
        zone = client.zone(topo.dns.zone, topo.dns.dns_name)
        change = zone.changes()
        if before is not None:
            change.delete_record_set(
                zone.resource_record_set(name, rtype, before.ttl, before.rrdatas)
            )
        change.add_record_set(zone.resource_record_set(name, rtype, ttl, target.rrdatas))
        try:
            create_change(client, change, runtime.call_timeout(environment))
        except gexc.PreconditionFailed as exc:
            raise TransientError(f"dns-switch: {name} changed while switching; re-reading") from exc
        logger.info(
            "DNS change %s: %s → %s", change.name, before and before.describe(), target.describe()
        )

        def done() -> bool | None:
            reload_change(client, change, runtime.call_timeout(environment))
            return True if change.status == "done" else None

        wait_until(
            done, timeout=240, interval=factory.poll_interval, what=f"DNS change {change.name}"
        )
    return DnsSwitchResult(changed=True, before=before, after=target, change_id=change.name)
