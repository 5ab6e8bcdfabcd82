"""The one client of the lab's control API (`/_lab/...`): tests, bench, sweeps and demo.

It speaks plain HTTP to a running lab, as any tool would; it knows nothing of the product.
"""

from __future__ import annotations

from typing import Any

import httpx

# Asking for entries after this sequence number returns none, only ``last_seq``.
_NEWEST = 1 << 62
# httpx's module-level get/post build a client, and with it an SSL context, on every call:
# 20 ms of CPU each, a third of a lab test's own CPU while it polled the request log
# (py-spy, session 29). One client per LabControl keeps its connections too; httpx's
# Client may be shared by threads.


class LabControl:
    """Outages, faults, the request log, config, state and reset of one running lab."""

    def __init__(self, url: str) -> None:
        self.control = url.rstrip("/")
        self.http = httpx.Client(base_url=f"{self.control}/_lab/", timeout=60)

    def post(self, path: str, body: dict[str, Any], timeout: float = 120) -> Any:
        response = self.http.post(path, json=body, timeout=timeout)
        response.raise_for_status()
        return response.json()

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def requests(
        self, api: str | None = None, method: str | None = None, since: int = 0
    ) -> list[dict[str, Any]]:
        """The request log after entry ``since`` (the lab filters: no full download)."""
        params = {k: v for k, v in {"api": api, "method": method, "since": since}.items() if v}
        return list(self.get("requests", params)["entries"])

    def last_seq(self) -> int:
        """The request log's newest entry, without the entries."""
        return int(self.get("requests", {"since": _NEWEST})["last_seq"])

    def schema_violations(self, since: int = 0, kind: str | None = None) -> list[dict[str, Any]]:
        """Replies of the lab that broke Google's discovery schema (kind ``response``) and
        calls it refused for breaking it (kind ``request``), since seq ``since``."""
        params: dict[str, Any] = {"since": since, **({"kind": kind} if kind else {})}
        return list(self.get("schema_violations", params)["entries"])

    def state(self) -> dict[str, Any]:
        return dict(self.get("state"))

    def reset(self) -> None:
        """The lab back to its seeded state."""
        self.post("reset", {})

    def outage(self, region: str, down: bool) -> None:
        self.post("outage", {"region": region, "down": down})

    def fault(self, **rule: Any) -> dict[str, Any]:
        return dict(self.post("faults", rule))

    def clear_faults(self) -> None:
        self.http.delete("faults").raise_for_status()

    def iam(
        self, project: str, held: list[str] | None = None, revoked: list[str] | None = None
    ) -> dict[str, Any]:
        """Set what the caller holds on ``project``: ``held`` None is every permission,
        less ``revoked``. A reset gives back every permission everywhere."""
        return dict(self.post("iam", {"project": project, "held": held, "revoked": revoked or []}))

    def roll_oplog(self, database: str) -> dict[str, int]:
        """Drop the database's change history (a wrapped oplog); see lab.mongo.history."""
        return dict(self.post("mongo/roll-oplog", {"database": database})["lost_through"])

    def storage_rewrites(
        self, step_bytes: int | None = None, corrupt: dict[str, int] | None = None
    ) -> dict[str, Any]:
        """Rewrites across locations move ``step_bytes`` a call (a multiple of 1 MiB); the
        next ``corrupt[bucket]`` copies into each bucket land with one byte flipped."""
        return dict(
            self.post("storage/rewrites", {"step_bytes": step_bytes, "corrupt": corrupt or {}})
        )

    def fail_sql_operations(
        self, operation_type: str, message: str, code: str = "INTERNAL_ERROR", count: int = 1
    ) -> None:
        """The next ``count`` Cloud SQL operations of ``operation_type`` (e.g.
        PROMOTE_REPLICA) are accepted, then end with this error and without their change."""
        body = {"operation_type": operation_type, "code": code, "message": message, "count": count}
        self.post("sql/operation-failures", body)

    def webhooks(self) -> list[dict[str, Any]]:
        return list(self.get("webhooks"))

    def latency(self) -> dict[str, Any]:
        """The latency model: ``time_scale`` and ``real_seconds`` by operation."""
        return dict(self.get("config"))

    def configure(self, latency: dict[str, float]) -> None:
        """Set modelled latencies (real seconds, before time_scale) by operation name."""
        self.post("config", {"latency": latency})
