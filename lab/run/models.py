"""The Cloud Run backend: services, revisions and their rollouts.

An accepted create or update bumps ``generation`` and the etag at once and starts a
rollout; ``ctx.latency.seconds("run.update")`` later the scheduler applies it (the live
spec, traffic and scaling change, ``observedGeneration`` catches up) and finishes the
operation. Lab rules where Cloud Run leaves a choice:

- One rollout at a time: an update or deploy while one runs gets 409 ABORTED
  (Cloud Run would queue it; failing fast keeps DR flows honest about ordering).
- A rollout that would send traffic to an unhealthy revision fails: the operation ends
  with FAILED_PRECONDITION, the live spec stays as it was, terminalCondition is FAILED.
- A regional outage (``ctx.is_down(location)``) makes every API call in that location,
  reads included, return 503: the regional control plane is down. Rollouts already
  accepted still finish. The seeding methods below ignore outages.
- Instance count (what the region apps read) comes from the live spec: the manual count
  if the service-level scalingMode is MANUAL, else the service-level
  ``scaling.minInstanceCount`` if set, else the ``template.scaling.minInstanceCount`` of
  the revisions serving traffic (see ``Service.min_instances``).
- A service with no warm instance still serves: the first request waits one cold start
  (``ctx.latency.seconds("run.cold_start")``), and the instance it started stays warm for
  ``run.idle_instance`` seconds (see ``cold_start_delay``). So do the instances a minimum
  kept when the minimum drops to 0.
- Instances start (``on_instances_started`` listeners hear of it, once the rollout is
  live) when a revision begins to serve, for every serving revision when the instance
  count goes from 0 to more, and on a cold start: that is when Cloud Run resolves a
  revision's env-var secrets (run/docs/configuring/secrets).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from lab.core.context import LabContext
from lab.run.exceptions import (
    AlreadyExists,
    EtagMismatch,
    InvalidRequest,
    RegionUnavailable,
    ResourceNotFound,
    RevisionInUse,
    RolloutInProgress,
)
from lab.run.operations import OperationStore
from lab.run.paging import paginate
from lab.run.resources import REVISION_TYPE, SERVICE_TYPE, Revision, Service, now
from lab.run.rollout import blue_green_traffic, new_revision_name, propose, reconcile, referenced
from lab.run.spec import SERVICE_ID, apply_update_mask, user_spec

T = TypeVar("T")
Key = tuple[str, str, str]
# (project, location, service, revision, the revision's template)
InstancesStarted = Callable[[str, str, str, str, dict[str, Any]], None]

FAILED_PRECONDITION = 9
ABORTED = 10


class RunBackend:
    """Cloud Run Admin API v2 state for every project and location of one lab."""

    def __init__(self, ctx: LabContext) -> None:
        self._ctx = ctx
        self._page_cap = ctx.settings.page_cap
        self._lock = threading.Lock()
        self._services: dict[Key, Service] = {}
        # When the instance a cold start brought up goes idle for good (monotonic seconds).
        self._warm_until: dict[Key, float] = {}
        self.operations = OperationStore()
        self._started_listeners: list[InstancesStarted] = []

    def on_instances_started(self, listener: InstancesStarted) -> None:
        """Call ``listener`` for each revision whose instances (re)start; see the docstring."""
        self._started_listeners.append(listener)

    # ----- services -------------------------------------------------------------------

    def get_service(self, project: str, location: str, name: str) -> dict[str, Any]:
        return self._read(location, lambda: self._service(project, location, name).to_json())

    def list_services(
        self, project: str, location: str, page_size: int = 0, page_token: str = ""
    ) -> dict[str, Any]:
        def listing() -> list[dict[str, Any]]:
            return [
                svc.to_json()
                for key, svc in sorted(self._services.items())
                if key[:2] == (project, location)
            ]

        page, next_token = paginate(
            self._read(location, listing), page_size, page_token, maximum=self._page_cap
        )
        return {"services": page, **({"nextPageToken": next_token} if next_token else {})}

    def begin_create_service(
        self, project: str, location: str, service_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        with self._lock:
            self._available(location)
            svc = self._create(project, location, service_id, user_spec(body))
            return self._start_rollout(svc)

    def begin_update_service(
        self,
        project: str,
        location: str,
        name: str,
        body: dict[str, Any],
        update_mask: list[str] | None = None,
        allow_missing: bool = False,
    ) -> dict[str, Any]:
        """PATCH: the body is a whole Service unless ``update_mask`` names the fields.

        With ``allow_missing`` a missing service is created instead (an upsert).
        """
        with self._lock:
            self._available(location)
            if allow_missing and (project, location, name) not in self._services:
                return self._start_rollout(self._create(project, location, name, user_spec(body)))
            svc = self._service(project, location, name)
            self._check_etag(svc.full_name, body.get("etag"), svc.etag)
            if svc.rollout is not None:
                raise RolloutInProgress(svc.full_name, svc.rollout)
            incoming = user_spec(body)
            spec = apply_update_mask(svc.spec, incoming, update_mask) if update_mask else incoming
            propose(svc, spec)
            return self._start_rollout(svc)

    def delete_service(
        self, project: str, location: str, name: str, etag: str = ""
    ) -> dict[str, Any]:
        """Deletes at once; the operation is returned already done."""
        with self._lock:
            self._available(location)
            svc = self._service(project, location, name)
            self._check_etag(svc.full_name, etag, svc.etag)
            del self._services[(project, location, name)]
            if svc.rollout is not None:
                self.operations.finish(svc.rollout, svc.to_json(), (ABORTED, "service deleted"))
                svc.rollout = None
            return self._finished_operation(project, location, SERVICE_TYPE, svc.to_json())

    # ----- revisions ------------------------------------------------------------------

    def get_revision(
        self, project: str, location: str, service: str, revision: str
    ) -> dict[str, Any]:
        return self._read(
            location, lambda: self._revision(project, location, service, revision).to_json()
        )

    def list_revisions(
        self, project: str, location: str, service: str, page_size: int = 0, page_token: str = ""
    ) -> dict[str, Any]:
        def listing() -> list[dict[str, Any]]:
            revisions = self._service(project, location, service).revisions.values()
            return [rev.to_json() for rev in reversed(revisions)]  # newest first

        page, next_token = paginate(
            self._read(location, listing), page_size, page_token, maximum=self._page_cap
        )
        return {"revisions": page, **({"nextPageToken": next_token} if next_token else {})}

    def delete_revision(
        self, project: str, location: str, service: str, revision: str, etag: str = ""
    ) -> dict[str, Any]:
        """Refuses a revision that serves, is tagged, is the latest, or is rolling out."""
        with self._lock:
            self._available(location)
            svc = self._service(project, location, service)
            rev = self._revision(project, location, service, revision)
            self._check_etag(rev.full_name, etag, rev.etag)
            if rev.pending or revision in referenced(svc):
                raise RevisionInUse(rev.full_name)
            del svc.revisions[revision]
            body = rev.to_json()
            body["deleteTime"] = now()
            return self._finished_operation(project, location, REVISION_TYPE, body)

    # ----- operations -----------------------------------------------------------------

    def get_operation(self, project: str, location: str, operation: str) -> dict[str, Any]:
        self._available(location)
        return self.operations.get(_operation_name(project, location, operation))

    def list_operations(
        self,
        project: str,
        location: str,
        done: bool | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> dict[str, Any]:
        self._available(location)
        parent = f"projects/{project}/locations/{location}"
        return self.operations.list(parent, done, page_size, page_token, self._page_cap)

    def delete_operation(self, project: str, location: str, operation: str) -> None:
        self._available(location)
        self.operations.delete(_operation_name(project, location, operation))

    def wait_operation(
        self, project: str, location: str, operation: str, timeout: float
    ) -> dict[str, Any]:
        self._available(location)
        return self.operations.wait(_operation_name(project, location, operation), timeout)

    # ----- seeding and lab control (immediate; they ignore outages) -------------------

    def create_service(
        self,
        project: str,
        location: str,
        name: str,
        *,
        image: str,
        min_instances: int,
        max_instances: int,
        env: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        secret_files: dict[str, tuple[str, str]] | None = None,
        secret_env: dict[str, tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        """A ready service whose first revision serves 100%.

        ``secret_files`` maps a file name to (secret, version), mounted under /secrets;
        ``secret_env`` maps an env var to (secret, version), resolved at instance start.
        """
        container: dict[str, Any] = {"image": image}
        if env:
            container["env"] = [{"name": k, "value": v} for k, v in env.items()]
        for var, (secret, version) in sorted((secret_env or {}).items()):
            ref = {"secret": secret, "version": version}
            container.setdefault("env", []).append(
                {"name": var, "valueSource": {"secretKeyRef": ref}}
            )
        body: dict[str, Any] = {
            "template": {
                "containers": [container],
                "scaling": {"minInstanceCount": min_instances, "maxInstanceCount": max_instances},
            },
        }
        for n, (path, (secret, version)) in enumerate(sorted((secret_files or {}).items())):
            volume = f"secret-{n}"
            container.setdefault("volumeMounts", []).append(
                {"name": volume, "mountPath": f"/secrets/{n}"}
            )
            items = [{"path": path, "version": version}]
            body["template"].setdefault("volumes", []).append(
                {"name": volume, "secret": {"secret": secret, "items": items}}
            )
        if labels:
            body["labels"] = dict(labels)
        with self._lock:
            svc = self._create(project, location, name, user_spec(body))
            before = _instances(svc)
            reconcile(svc)
            started = _started(svc, before)
            reply = svc.to_json()
        self._announce(started)
        return reply

    def deploy_revision(
        self,
        project: str,
        location: str,
        name: str,
        *,
        image: str,
        tag: str | None = None,
        move_traffic: bool = False,
    ) -> str:
        """A new ready revision running ``image``; returns its short name.

        Without ``move_traffic`` the traffic stays where it is: LATEST targets are pinned
        to the revision they served, and ``tag`` (if any) addresses the new revision at 0%,
        as a blue/green deploy does. With it, 100% goes to LATEST, the new revision.
        """
        with self._lock:
            svc = self._service(project, location, name)
            if svc.rollout is not None:
                raise RolloutInProgress(svc.full_name, svc.rollout)
            spec = copy.deepcopy(svc.spec)
            spec["template"].pop("revision", None)
            spec["template"]["containers"][0]["image"] = image
            revision = new_revision_name(svc, svc.generation + 1)
            spec["traffic"] = blue_green_traffic(svc, revision, tag, move_traffic)
            propose(svc, spec, revision_name=revision)
            before = _instances(svc)
            reconcile(svc)
            started = _started(svc, before)
        self._announce(started)
        return revision

    def set_revision_health(
        self, project: str, location: str, revision: str, healthy: bool
    ) -> None:
        short = revision.rsplit("/", 1)[-1]
        with self._lock:
            for (p, loc, _), svc in self._services.items():
                rev = svc.revisions.get(short)
                if (p, loc) == (project, location) and rev is not None:
                    rev.healthy = healthy
                    rev.touch()
                    return
        raise ResourceNotFound("Revision", f"projects/{project}/locations/{location}/*/{short}")

    def instance_count(self, project: str, location: str, name: str) -> int:
        with self._lock:
            svc = self._services.get((project, location, name))
            return 0 if svc is None else svc.min_instances()

    def ingress(self, project: str, location: str, name: str) -> str | None:
        """The live ingress setting of a service; None when there is no such service."""
        with self._lock:
            svc = self._services.get((project, location, name))
            return None if svc is None else svc.ingress()

    def cold_start_delay(self, project: str, location: str, name: str) -> float:
        """Seconds a request to the service waits for an instance to start; 0 when warm.

        A service with minimum instances always has a warm one. At zero, the first request
        starts an instance (one cold start, run/docs/about-instance-autoscaling); that
        instance then stays idle, and warm, for ``run.idle_instance`` seconds.
        """
        key = (project, location, name)
        now_s = time.monotonic()
        with self._lock:
            svc = self._services.get(key)
            if svc is None or svc.min_instances() > 0:
                return 0.0
            warm = self._warm_until.get(key, 0.0) > now_s
            delay = 0.0 if warm else self._ctx.latency.seconds("run.cold_start")
            self._warm_until[key] = now_s + delay + self._ctx.latency.seconds("run.idle_instance")
            # A cold start is an instance starting: it resolves its secrets as it starts.
            started = [] if warm else _started(svc, (set(), 0))
        self._announce(started)
        return delay

    def serving_revisions(self, project: str, location: str, name: str) -> dict[str, int]:
        with self._lock:
            svc = self._services.get((project, location, name))
            return {} if svc is None else svc.serving()

    def reset(self) -> None:
        with self._lock:
            self._services.clear()
            self._warm_until.clear()
            self.operations.reset()

    # ----- internals (callers hold self._lock unless noted) ---------------------------

    def _read(self, location: str, fn: Callable[[], T]) -> T:
        with self._lock:
            self._available(location)
            return fn()

    def _available(self, location: str) -> None:
        if self._ctx.is_down(location):
            raise RegionUnavailable(location)

    def _service(self, project: str, location: str, name: str) -> Service:
        svc = self._services.get((project, location, name))
        if svc is None:
            raise ResourceNotFound(
                "Service", f"projects/{project}/locations/{location}/services/{name}"
            )
        return svc

    def _revision(self, project: str, location: str, service: str, revision: str) -> Revision:
        rev = self._service(project, location, service).revisions.get(revision)
        if rev is None:
            raise ResourceNotFound(
                "Revision",
                f"projects/{project}/locations/{location}/services/{service}/revisions/{revision}",
            )
        return rev

    @staticmethod
    def _check_etag(name: str, sent: object, current: str) -> None:
        if sent and sent != current:
            raise EtagMismatch(name, str(sent), current)

    def _create(self, project: str, location: str, name: str, spec: dict[str, Any]) -> Service:
        if not SERVICE_ID.match(name):
            raise InvalidRequest(
                f"service id {name!r} must be 1-49 lowercase letters, digits or hyphens, "
                "start with a letter and not end with a hyphen"
            )
        key = (project, location, name)
        if key in self._services:
            raise AlreadyExists(
                "Service", f"projects/{project}/locations/{location}/services/{name}"
            )
        svc = Service(project, location, name, spec={}, generation=0)
        propose(svc, spec)
        self._services[key] = svc
        return svc

    def _start_rollout(self, svc: Service) -> dict[str, Any]:
        name = self.operations.new_name(svc.project, svc.location)
        svc.rollout = name
        svc.failure = None
        svc.changed = now()
        operation = self.operations.add(name, SERVICE_TYPE, svc.to_json())
        key = (svc.project, svc.location, svc.name)
        delay = self._ctx.latency.seconds("run.update")
        self._ctx.scheduler.call_later(delay, lambda: self._finish_rollout(key, name))
        return operation

    def _finish_rollout(self, key: Key, operation: str) -> None:
        """Scheduler thread: apply the rollout unless the service was deleted or reset."""
        with self._lock:
            svc = self._services.get(key)
            if svc is None or svc.rollout != operation:
                return
            before = _instances(svc)
            failure = reconcile(svc)
            error = None if failure is None else (FAILED_PRECONDITION, failure)
            self.operations.finish(operation, svc.to_json(), error)
            started = _started(svc, before) if failure is None else []
            if failure is None and before[1] > 0 and svc.min_instances() == 0:
                # The instances a minimum kept do not stop when it drops to 0: they go
                # idle and stay warm (and keep what they resolved at start) for
                # ``run.idle_instance``, as a cold-started one does.
                idle = self._ctx.latency.seconds("run.idle_instance")
                self._warm_until[key] = time.monotonic() + idle
        self._announce(started)

    def _announce(self, started: list[tuple[str, str, str, str, dict[str, Any]]]) -> None:
        """Outside the lock: listeners read other backends (Secret Manager)."""
        for event in started:
            for listener in self._started_listeners:
                listener(*event)

    def _finished_operation(
        self, project: str, location: str, target_type: str, resource: dict[str, Any]
    ) -> dict[str, Any]:
        name = self.operations.new_name(project, location)
        self.operations.add(name, target_type, resource)
        finished = self.operations.finish(name, resource)
        assert finished is not None
        return finished


def _instances(svc: Service) -> tuple[set[str], int]:
    """What serves and how many warm instances, before a change goes live."""
    return set(svc.serving()), svc.min_instances()


def _started(
    svc: Service, before: tuple[set[str], int]
) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """The revisions whose instances start now: newly serving ones, or all after 0 → n."""
    serving_before, count_before = before
    serving = set(svc.serving())
    woke = count_before == 0 and svc.min_instances() > 0
    fresh = serving if woke else serving - serving_before
    return [
        (svc.project, svc.location, svc.name, rev, copy.deepcopy(svc.revisions[rev].template))
        for rev in sorted(fresh)
    ]


def _operation_name(project: str, location: str, operation: str) -> str:
    return f"projects/{project}/locations/{location}/operations/{operation}"
