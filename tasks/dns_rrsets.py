"""Read one Cloud DNS record set by name and type, whatever else the zone holds.

google-cloud-dns 0.37.2 can only list a whole zone, and its
``ResourceRecordSet.from_api_repr`` indexes ``rrdatas``, which a routing-policy set (geo,
wrr, primaryBackup) does not have: one such set anywhere in the zone raises KeyError on
every listing. Cloud DNS v1 ``resourceRecordSets.list`` takes ``name`` and ``type``
filters, so this asks for the one set wanted, through the client's own connection (its
credentials, endpoint and error mapping: the lab and Google take the same path), and
parses the reply itself. The library has no public call for this; ``api_request`` is
what its own zone methods use.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import dns  # type: ignore[attr-defined]
from pydantic import BaseModel, ConfigDict, Field

from tasks.errors import TransientError
from tasks.polling import wait_until


class RecordSetView(BaseModel):
    """A ``ResourceRecordSet`` as Cloud DNS returns it: rrdatas or a routing policy."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    name: str
    type: str
    ttl: int
    rrdatas: list[str] = Field(default_factory=list)
    routing_policy: dict[str, Any] | None = Field(None, alias="routingPolicy")

    @property
    def policy_kind(self) -> str | None:
        """geo, wrr or primaryBackup; None for a plain set."""
        if self.routing_policy is None:
            return None
        kinds = [k for k in ("geo", "wrr", "primaryBackup") if k in self.routing_policy]
        return kinds[0] if kinds else "unknown"


def record_set_document(
    client: dns.Client, zone: str, name: str, rtype: str, timeout: float
) -> dict[str, Any] | None:
    """The record set ``name``/``rtype`` of ``zone`` as Cloud DNS returns it, or None.

    A missing zone raises google.api_core's NotFound, as the client's own calls do.
    """
    reply = client._connection.api_request(
        method="GET",
        path=f"/projects/{client.project}/managedZones/{zone}/rrsets",
        query_params={"name": name, "type": rtype},
        timeout=timeout,
    )
    for item in reply.get("rrsets", []):
        if item["name"].lower() == name.lower() and item["type"].upper() == rtype.upper():
            return dict(item)
    return None


def get_record_set(
    client: dns.Client, zone: str, name: str, rtype: str, timeout: float
) -> RecordSetView | None:
    """The record set ``name``/``rtype`` of ``zone``, parsed, or None when there is none."""
    found = record_set_document(client, zone, name, rtype, timeout)
    return None if found is None else RecordSetView.model_validate(found)


def create_change(client: dns.Client, change: dns.Changes, timeout: float) -> None:
    """``change.create()``, with a timeout: the library's own call has none to give (it
    waits 60 s). The same request and parsing as the library's, through its connection."""
    zone = change.zone
    reply = client._connection.api_request(
        method="POST",
        path=f"/projects/{zone.project}/managedZones/{zone.name}/changes",
        data=change._build_resource(),
        timeout=timeout,
    )
    change._set_properties(reply)


def reload_change(client: dns.Client, change: dns.Changes, timeout: float) -> None:
    """``change.reload()``, with a timeout (see ``create_change``)."""
    change._set_properties(
        client._connection.api_request(method="GET", path=change.path, timeout=timeout)
    )


def list_record_sets(client: dns.Client, zone: str, timeout: float) -> Iterator[dict[str, Any]]:
    """Every record set of the zone, routing policies included, page by page."""
    token: str | None = None
    while True:
        reply = client._connection.api_request(
            method="GET",
            path=f"/projects/{client.project}/managedZones/{zone}/rrsets",
            query_params={"pageToken": token} if token else {},
            timeout=timeout,
        )
        yield from reply.get("rrsets", [])
        token = reply.get("nextPageToken")
        if not token:
            return


def post_change(
    client: dns.Client,
    zone: str,
    additions: list[dict[str, Any]],
    deletions: list[dict[str, Any]],
    timeout: float,
) -> dict[str, Any]:
    """One atomic Cloud DNS change of whole record sets (routing policies included, which
    the library's ``Changes`` cannot build); the change as created. A deletion that no
    longer matches the live set exactly is refused by Cloud DNS with 412."""
    return dict(
        client._connection.api_request(
            method="POST",
            path=f"/projects/{client.project}/managedZones/{zone}/changes",
            data={"kind": "dns#change", "additions": additions, "deletions": deletions},
            timeout=timeout,
        )
    )


def change_and_wait(
    client: dns.Client,
    zone: str,
    additions: list[dict[str, Any]],
    deletions: list[dict[str, Any]],
    timeout: float,
    interval: tuple[float, float],
    what: str,
) -> str:
    """One atomic change of whole record sets, waited until served; its id.

    A deletion that no longer matches the live set (412: someone changed it since it was
    read) raises TransientError, so the step's retry reads it again.
    """
    try:
        change = post_change(client, zone, additions, deletions, timeout)
    except gexc.PreconditionFailed as exc:
        raise TransientError(f"{what}: the record set changed since it was read") from exc
    wait_done(client, zone, change["id"], timeout, interval)
    return str(change["id"])


def wait_done(
    client: dns.Client, zone: str, change_id: str, timeout: float, interval: tuple[float, float]
) -> None:
    """Until the change is ``done`` (served), within 240 s: Cloud DNS takes seconds."""

    def done() -> bool | None:
        reply = client._connection.api_request(
            method="GET",
            path=f"/projects/{client.project}/managedZones/{zone}/changes/{change_id}",
            timeout=timeout,
        )
        return True if reply.get("status") == "done" else None

    wait_until(done, timeout=240, interval=interval, what=f"DNS change {change_id}")
