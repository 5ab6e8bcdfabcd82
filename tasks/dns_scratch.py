"""The record sets a drill restores its configuration item into, found and deleted.

A drill puts one archived record set back under a scratch name in the zone,
``lifeboat-drill-<YYYYMMDD>-<suffix>.<zone>`` (flows/drill_steps.py). A record set has
no labels, so the name carries what cleanup needs: the drill's suffix, and the day it
was made, from which the sweeper reckons its expiry.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from lifeboat import runtime
from tasks.dns_rrsets import change_and_wait, list_record_sets, record_set_document
from tasks.retrying import calling, cloud_task

PREFIX = "lifeboat-drill-"
_NAME = re.compile(rf"^{PREFIX}(?P<day>\d{{8}})-(?P<suffix>[a-z0-9]+)\.")


def scratch_record_name(zone_dns_name: str, started: datetime, suffix: str) -> str:
    return f"{PREFIX}{started:%Y%m%d}-{suffix}.{zone_dns_name}"


class ScratchRecord(BaseModel):
    name: str
    type: str
    suffix: str
    made_on: datetime  # the day in its name, 00:00 UTC
    document: dict[str, Any]

    def expires(self, ttl_hours: float) -> datetime:
        """The latest it can have been made (the end of its day) plus the scratch TTL."""
        return self.made_on + timedelta(days=1, hours=ttl_hours)


def parse_scratch(document: dict[str, Any]) -> ScratchRecord | None:
    """A drill's scratch record set, from its name; None for any other set."""
    found = _NAME.match(str(document.get("name", "")))
    if found is None:
        return None
    day = datetime.strptime(found["day"], "%Y%m%d").replace(tzinfo=UTC)
    return ScratchRecord(
        name=document["name"],
        type=document["type"],
        suffix=found["suffix"],
        made_on=day,
        document=document,
    )


@cloud_task(timeout_seconds=120, task_run_name="dns-list-scratch")
def dns_list_scratch(environment: str) -> list[ScratchRecord]:
    """Every drill scratch record set of the zone. Idempotent: read-only."""
    topo = runtime.topology(environment)
    client = runtime.clients(environment).dns(topo.dns.project)
    with calling("dns-list-scratch", topo.dns.zone):
        listed = list_record_sets(client, topo.dns.zone, runtime.call_timeout(environment))
    return [s for d in listed if (s := parse_scratch(d)) is not None]


@cloud_task(timeout_seconds=300, task_run_name="dns-delete-{record.name}")
def dns_delete_scratch(environment: str, record: ScratchRecord) -> None:
    """Delete a scratch record set as it is now, and wait until the deletion is served.

    Idempotent: a set already gone is done; one changed between the read and the change
    (412) is read again by the retry.
    """
    topo = runtime.topology(environment)
    factory = runtime.clients(environment)
    client = factory.dns(topo.dns.project)
    timeout = runtime.call_timeout(environment)
    with calling("dns-delete-scratch", record.name):
        now = record_set_document(client, topo.dns.zone, record.name, record.type, timeout)
        if now is None:
            return
        change_and_wait(
            client, topo.dns.zone, [], [now], timeout, factory.poll_interval, record.name
        )
