"""A global backend service, as Compute v1 describes it
(cloud.google.com/compute/docs/reference/rest/v1/backendServices).

The lab keeps the fields a load balancer in front of Cloud Run carries: the backends
(serverless network endpoint groups, or instance groups with health checks), Cloud CDN
on or off with its policy, the protocol, the scheme and the timeout. The fingerprint is
a hash of those contents, as Compute's is ("A hash of the contents stored in this
object"), so it changes when they do.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

SELF_LINK_BASE = "https://www.googleapis.com/compute/v1/projects"

# Compute's defaults for a service made for a global external Application Load Balancer
# with Cloud CDN (cloud.google.com/cdn/docs/caching#cache-modes: CACHE_ALL_STATIC is the
# default mode; 3600 s the default TTL, 86400 s the default max TTL).
DEFAULT_CDN_POLICY: dict[str, Any] = {
    "cacheMode": "CACHE_ALL_STATIC",
    "defaultTtl": 3600,
    "clientTtl": 3600,
    "maxTtl": 86400,
    "negativeCaching": False,
    "serveWhileStale": 0,
    "signedUrlCacheMaxAgeSec": "0",
    "cacheKeyPolicy": {"includeHost": True, "includeProtocol": True, "includeQueryString": True},
}


@dataclass
class BackendService:
    project: str
    name: str
    id: str
    creation_timestamp: str
    backends: list[dict[str, Any]]
    enable_cdn: bool = False
    cdn_policy: dict[str, Any] = field(default_factory=dict)
    protocol: str = "HTTPS"
    health_checks: list[str] = field(default_factory=list)
    load_balancing_scheme: str = "EXTERNAL_MANAGED"
    timeout_sec: int = 30
    description: str = ""

    @property
    def self_link(self) -> str:
        return f"{SELF_LINK_BASE}/{self.project}/global/backendServices/{self.name}"

    def contents(self) -> dict[str, Any]:
        """What a caller sets, in the API's field names (the fingerprint hashes this)."""
        body: dict[str, Any] = {
            "name": self.name,
            "backends": [dict(b) for b in self.backends],
            "enableCDN": self.enable_cdn,
            "protocol": self.protocol,
            "loadBalancingScheme": self.load_balancing_scheme,
            "timeoutSec": self.timeout_sec,
        }
        if self.enable_cdn or self.cdn_policy:
            body["cdnPolicy"] = json.loads(json.dumps(self.cdn_policy or DEFAULT_CDN_POLICY))
        if self.health_checks:
            body["healthChecks"] = list(self.health_checks)
        if self.description:
            body["description"] = self.description
        return body

    def to_json(self) -> dict[str, Any]:
        contents = self.contents()
        digest = hashlib.sha256(json.dumps(contents, sort_keys=True).encode()).digest()[:8]
        return {
            "kind": "compute#backendService",
            "id": self.id,
            "creationTimestamp": self.creation_timestamp,
            "selfLink": self.self_link,
            "fingerprint": base64.b64encode(digest).decode(),
            **contents,
        }


def serverless_backend(project: str, region: str, neg: str) -> dict[str, Any]:
    """A backend that is a serverless NEG (Cloud Run): no balancing mode or capacity, and
    no health check (cloud.google.com/load-balancing/docs/negs/serverless-neg-concepts)."""
    group = f"{SELF_LINK_BASE}/{project}/regions/{region}/networkEndpointGroups/{neg}"
    return {"group": group}
