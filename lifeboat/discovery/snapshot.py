"""What discovery read from the two projects: plain data, no client objects.

The reads (``tasks/discovery.py``) fill it; the guessing rules and the topology builder
read only this, so they are unit-tested without a lab.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Read(BaseModel):
    model_config = ConfigDict(frozen=True)


class RunService(_Read):
    """One Cloud Run service as deployed in one region."""

    project: str
    region: str
    name: str
    image: str
    min_instances: int = Field(description="effective minimum (service level, else revision)")
    max_instances: int = Field(description="effective maximum (service level, else revision)")
    labels: dict[str, str] = {}
    secrets: list[str] = Field(
        default_factory=list, description="Secret Manager secrets it references (volumes, env)"
    )


class SqlInstance(_Read):
    project: str
    name: str
    region: str
    instance_type: str = ""
    master: str | None = Field(None, description="primary's instance name, for a replica")
    replica_names: list[str] = []
    databases: list[str] = []


class RecordSet(_Read):
    """A Cloud DNS resource record set: ``rrdatas``, or a routing policy (geo, wrr, ...)."""

    name: str
    type: str
    ttl: int = 300
    rrdatas: list[str] = []
    routing_policy: dict[str, Any] | None = None

    def geo_items(self) -> dict[str, list[str]]:
        """Region → rrdatas of a geo routing policy; empty for any other set."""
        geo = (self.routing_policy or {}).get("geo") or {}
        return {
            str(item.get("location", "")): [str(r) for r in item.get("rrdatas", [])]
            for item in geo.get("items", [])
            if item.get("rrdatas")
        }


class Zone(_Read):
    project: str
    name: str
    dns_name: str
    record_sets: list[RecordSet] = []


class UrlMap(_Read):
    project: str
    name: str
    hosts: list[str] = []


class Bucket(_Read):
    project: str
    name: str
    location: str = ""
    location_type: str = ""


class Snapshot(_Read):
    """Everything one discovery run read."""

    primary_project: str
    secondary_project: str
    sql_instances: list[SqlInstance]
    services: list[RunService]
    zone: Zone
    url_maps: list[UrlMap]
    buckets: list[Bucket]
