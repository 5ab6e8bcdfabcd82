"""Cloud Run's resources as the lab keeps them, and their JSON as Google prints it.

A Service keeps two specs: ``spec`` is what the client asked for (it changes as soon as
an update is accepted, with ``generation``) and ``live`` is what serves (it changes when
the rollout finishes, with ``observedGeneration``). That lag is what ``reconciling`` and
``terminalCondition`` describe on the wire.
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lab.run.spec import resolve_traffic

SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"
REVISION_TYPE = "type.googleapis.com/google.cloud.run.v2.Revision"

# RevisionTemplate fields that a Revision repeats; the rest (``revision``,
# ``healthCheckDisabled``) exist only on the template.
REVISION_FIELDS = frozenset(
    {
        "ambientNetworking",
        "annotations",
        "client",
        "clientVersion",
        "containers",
        "encryptionKey",
        "encryptionKeyRevocationAction",
        "encryptionKeyShutdownDuration",
        "executionEnvironment",
        "gpuZonalRedundancyDisabled",
        "labels",
        "maxInstanceRequestConcurrency",
        "nodeSelector",
        "sandboxes",
        "scaling",
        "serviceAccount",
        "serviceMesh",
        "sessionAffinity",
        "timeout",
        "volumes",
        "vpcAccess",
        "workloadIdentityConfig",
    }
)


def now() -> str:
    """RFC 3339 in UTC, as Google prints timestamps."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_etag() -> str:
    """A fresh opaque version tag; any change to a resource gets a new one."""
    return uuid.uuid4().hex[:16]


def condition(kind: str, state: str, since: str, **extra: str) -> dict[str, Any]:
    return {"type": kind, "state": state, "lastTransitionTime": since, **extra}


@dataclass
class Revision:
    project: str
    location: str
    service: str
    name: str
    generation: int
    template: dict[str, Any]
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    create_time: str = field(default_factory=now)
    changed: str = field(default_factory=now)  # when the Ready condition last moved
    etag: str = field(default_factory=new_etag)
    healthy: bool = True
    # True while the rollout that created it has not finished.
    pending: bool = False

    @property
    def service_name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/services/{self.service}"

    @property
    def full_name(self) -> str:
        return f"{self.service_name}/revisions/{self.name}"

    def touch(self) -> None:
        self.changed = now()
        self.etag = new_etag()

    @property
    def ready_state(self) -> str:
        if self.pending:
            return "CONDITION_RECONCILING"
        return "CONDITION_SUCCEEDED" if self.healthy else "CONDITION_FAILED"

    def to_json(self) -> dict[str, Any]:
        body = {k: copy.deepcopy(v) for k, v in self.template.items() if k in REVISION_FIELDS}
        extra = {}
        if self.ready_state == "CONDITION_FAILED":
            extra = {
                "reason": "REVISION_FAILED",
                "message": "The lab marked this revision unhealthy",
            }
        body.update(
            {
                "name": self.full_name,
                "uid": self.uid,
                "generation": "1",
                "observedGeneration": "1",
                "createTime": self.create_time,
                "updateTime": self.changed,
                "launchStage": "GA",
                "service": self.service_name,
                "reconciling": self.pending,
                "conditions": [
                    condition("Ready", self.ready_state, self.changed, **extra),
                    condition("ContainerHealthy", self.ready_state, self.changed),
                ],
                "etag": self.etag,
            }
        )
        return body


@dataclass
class Service:
    project: str
    location: str
    name: str
    spec: dict[str, Any]
    live: dict[str, Any] | None = None
    generation: int = 1
    observed_generation: int = 0
    etag: str = field(default_factory=new_etag)
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    create_time: str = field(default_factory=now)
    update_time: str = field(default_factory=now)
    changed: str = field(default_factory=now)  # when the Ready condition last moved
    revisions: dict[str, Revision] = field(default_factory=dict)
    latest_created: str = ""
    latest_ready: str = ""
    rollout: str | None = None  # the operation reconciling the service
    failure: str | None = None  # why the last rollout failed

    @property
    def full_name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/services/{self.name}"

    @property
    def uri(self) -> str:
        digest = int(hashlib.sha256(self.project.encode()).hexdigest(), 16) % 10**12
        return f"https://{self.name}-{digest:012d}.{self.location}.run.app"

    def serving(self) -> dict[str, int]:
        """Revision → percent of what actually serves (tag-only targets left out)."""
        if self.live is None:
            return {}
        percents: dict[str, int] = {}
        for target in resolve_traffic(self.live.get("traffic", []), self.latest_ready):
            if target.get("percent", 0):
                revision = target["revision"]
                percents[revision] = percents.get(revision, 0) + target["percent"]
        return percents

    def min_instances(self) -> int:
        """Warm instances of the live spec.

        The manual count in MANUAL mode; else the service-level minimum when set (it
        applies at once, without a revision); else the revision-level minimum of the
        revisions that serve traffic: a revision pinned in the traffic keeps its own
        template's scaling, whatever the latest template says.
        """
        if self.live is None:
            return 0
        service_scaling = self.live.get("scaling", {})
        if service_scaling.get("scalingMode") == "MANUAL":
            return int(service_scaling.get("manualInstanceCount", 0))
        if int(service_scaling.get("minInstanceCount", 0)):
            return int(service_scaling["minInstanceCount"])
        return max(
            (
                int(self.revisions[name].template.get("scaling", {}).get("minInstanceCount", 0))
                for name in self.serving()
                if name in self.revisions
            ),
            default=0,
        )

    def ingress(self) -> str:
        """Who may reach the service now: the live spec's ingress (a service-level field)."""
        if self.live is None:
            return "INGRESS_TRAFFIC_ALL"
        return str(self.live.get("ingress", "INGRESS_TRAFFIC_ALL"))

    def to_json(self) -> dict[str, Any]:
        body = copy.deepcopy(self.spec)
        if self.rollout is not None:
            state, extra = "CONDITION_RECONCILING", {}
        elif self.failure is not None:
            state, extra = (
                "CONDITION_FAILED",
                {"reason": "REVISION_FAILED", "message": self.failure},
            )
        else:
            state, extra = "CONDITION_SUCCEEDED", {}
        body.update(
            {
                "name": self.full_name,
                "uid": self.uid,
                "generation": str(self.generation),
                "createTime": self.create_time,
                "updateTime": self.update_time,
                "reconciling": self.rollout is not None,
                "terminalCondition": condition("Ready", state, self.changed, **extra),
                "conditions": [
                    condition("RoutesReady", state, self.changed),
                    condition("ConfigurationsReady", state, self.changed),
                ],
                "uri": self.uri,
                "urls": [self.uri],
                "etag": self.etag,
            }
        )
        if self.observed_generation:
            body["observedGeneration"] = str(self.observed_generation)
        if self.latest_created:
            body["latestCreatedRevision"] = f"{self.full_name}/revisions/{self.latest_created}"
        if self.latest_ready:
            body["latestReadyRevision"] = f"{self.full_name}/revisions/{self.latest_ready}"
        if self.live is not None:
            body["trafficStatuses"] = [
                self._traffic_status(t)
                for t in resolve_traffic(self.live.get("traffic", []), self.latest_ready)
            ]
        return body

    def _traffic_status(self, target: dict[str, Any]) -> dict[str, Any]:
        status = dict(target)
        if "tag" in status:
            status["uri"] = self.uri.replace("https://", f"https://{status['tag']}---", 1)
        return status


@dataclass
class Operation:
    name: str
    target_type: str  # the @type of metadata and response
    metadata: dict[str, Any]
    done: bool = False
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def finish(self, resource: dict[str, Any], error: tuple[int, str] | None = None) -> None:
        """Done: a finished operation carries a response or an error, or the client raises."""
        self.done = True
        self.metadata = resource
        if error is None:
            self.response = resource
        else:
            self.error = {"code": error[0], "message": error[1]}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "metadata": {"@type": self.target_type, **self.metadata},
            "done": self.done,
        }
        if self.response is not None:
            body["response"] = {"@type": self.target_type, **self.response}
        if self.error is not None:
            body["error"] = self.error
        return body
