"""Real inputs for the unit tier: the lab's topology file and ``run_v2`` messages as the
Cloud Run client returns them, turned into the states preflight reads. No mocks."""

from __future__ import annotations

from functools import cache

from google.cloud import run_v2

from lifeboat.record import RunRecord
from lifeboat.topology import Topology, load_topology
from tasks.cloud_run import ServiceState
from tasks.cloud_run_ingress import FENCED_BY, INGRESS_BEFORE
from tasks.cloud_run_secrets import ReaderState
from tasks.run_secret_readers import ROLLED_FOR, read_secret_reader

# The lab's topology (deployments/environments/lab.yaml): the seeds' names.
SECRET = "projects/ml-datadriven-recos-dr/secrets/prod-database-url"
LATEST_TYPE = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
REVISION_TYPE = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


@cache
def lab_topology() -> Topology:
    """Loaded once: a Topology is frozen, so the tests can share it."""
    return load_topology("lab")


def run_service(
    name: str,
    region: str = "us-east1",
    *,
    service_scaling: tuple[int, int] = (0, 0),
    revision_scaling: tuple[int, int] = (0, 0),
    env_secret: str | None = None,
    volume_secret: str | None = None,
    pinned_to: str | None = None,
    rolled_for: str = "",
) -> run_v2.Service:
    """A Cloud Run service as ``get_service`` returns it.

    ``env_secret``/``volume_secret``: the apps' secret's version, read as an env var or a
    volume item; ``pinned_to``: all traffic on that named revision instead of latest;
    ``rolled_for``: the secret version Lifeboat last rolled the template for.
    """
    got = run_v2.Service(name=f"projects/ml-datadriven-recos-dr/locations/{region}/services/{name}")
    got.scaling.min_instance_count, got.scaling.max_instance_count = service_scaling
    got.template.scaling.min_instance_count, got.template.scaling.max_instance_count = (
        revision_scaling
    )
    container = run_v2.Container(name="app", image=f"gcr.io/ml-datadriven-recos/{name}:v1")
    if env_secret is not None:
        container.env.append(
            run_v2.EnvVar(
                name="DATABASE_URL",
                value_source=run_v2.EnvVarSource(
                    secret_key_ref=run_v2.SecretKeySelector(secret=SECRET, version=env_secret)
                ),
            )
        )
    if volume_secret is not None:
        got.template.volumes.append(
            run_v2.Volume(
                name="db",
                secret=run_v2.SecretVolumeSource(
                    secret=SECRET,
                    items=[run_v2.VersionToPath(path="database-url", version=volume_secret)],
                ),
            )
        )
    got.template.containers.append(container)
    if rolled_for:
        got.template.annotations[ROLLED_FOR] = rolled_for
    if pinned_to:
        got.traffic.append(
            run_v2.TrafficTarget(type_=REVISION_TYPE, revision=pinned_to, percent=100)
        )
    else:
        got.traffic.append(run_v2.TrafficTarget(type_=LATEST_TYPE, percent=100))
    return got


def service_state(
    name: str,
    region: str = "us-east1",
    *,
    service_scaling: tuple[int, int] = (0, 0),
    revision_scaling: tuple[int, int] = (0, 0),
    ingress: str = "INGRESS_TRAFFIC_ALL",
    fenced_by: str = "",
    ingress_before: str = "",
    env_secret: str | None = None,
    volume_secret: str | None = None,
    pinned_to: str | None = None,
) -> ServiceState:
    """What ``run_describe_service`` reports for such a service."""
    got = run_service(
        name,
        region,
        service_scaling=service_scaling,
        revision_scaling=revision_scaling,
        env_secret=env_secret,
        volume_secret=volume_secret,
        pinned_to=pinned_to,
    )
    got.terminal_condition.state = run_v2.Condition.State.CONDITION_SUCCEEDED
    got.ingress = run_v2.IngressTraffic[ingress]
    if fenced_by:
        got.annotations[FENCED_BY] = fenced_by
    if ingress_before:
        got.annotations[INGRESS_BEFORE] = ingress_before
    return ServiceState.of(got, name, region, SECRET)


def reader_state(
    name: str,
    region: str = "us-central1",
    *,
    env_secret: str | None = None,
    volume_secret: str | None = None,
    pinned_to: str | None = None,
    rolled_for: str = "",
) -> ReaderState:
    """What ``run_describe_secret_reader`` reports for such a service."""
    got = run_service(
        name,
        region,
        env_secret=env_secret,
        volume_secret=volume_secret,
        pinned_to=pinned_to,
        rolled_for=rolled_for,
    )
    return ReaderState(service=name, region=region, reader=read_secret_reader(got, SECRET))


def run_record(incident: str = "INC-7", flow: str = "failover") -> RunRecord:
    """A run record as a switch starts it, for ``flow`` and ``incident``."""
    return RunRecord(
        flow=flow,
        environment="lab",
        incident_id=incident,
        reason="unit test",
        trigger="test",
        operator="test",
    )
