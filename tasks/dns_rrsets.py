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

from typing import Any

from google.cloud import dns  # type: ignore[attr-defined]
from pydantic import BaseModel, ConfigDict, Field


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


def get_record_set(
    client: dns.Client, zone: str, name: str, rtype: str, timeout: float
) -> RecordSetView | None:
    """The record set ``name``/``rtype`` of ``zone``, or None when there is none.

    A missing zone raises google.api_core's NotFound, as the client's own calls do.
    """
    reply = client._connection.api_request(
        method="GET",
        path=f"/projects/{client.project}/managedZones/{zone}/rrsets",
        query_params={"name": name, "type": rtype},
        timeout=timeout,
    )
    for item in reply.get("rrsets", []):
        found = RecordSetView.model_validate(item)
        if found.name.lower() == name.lower() and found.type.upper() == rtype.upper():
            return found
    return None


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
