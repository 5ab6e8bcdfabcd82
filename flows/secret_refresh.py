"""After a new version of the apps' database secret: the running instances that must see it.

Adding the version reaches instances that read the secret from a volume at ``latest`` at
once, and instances that start afterwards. Instances that took it as an env var when they
started keep the old URL until they restart (run/docs/configuring/secrets): in a failback,
the secondary's services that stale-DNS clients still reach after the fence is lifted
would keep writing to the instance the failback exports and deletes. So each service gets
what its own configuration needs (tasks/cloud_run_secrets.py), in parallel, before any
scale-up and before a fence is lifted.

A region may be optional: a failover's primary region may be down, and a failover must not
fail because the dead region cannot be reached. Its services are tried once; what could
not be refreshed is said in the step's detail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prefect import get_run_logger
from prefect.futures import wait

from flows.resume import resumable
from lifeboat.record import RunRecord
from lifeboat.topology import Region, Topology
from tasks.cloud_run import ServiceState
from tasks.cloud_run_secrets import ReaderState, RefreshResult, run_refresh_secret_readers
from tasks.errors import PermanentError


def reader_lines(region: str, states: Sequence[ServiceState | ReaderState]) -> list[str]:
    """Plan lines: per service, how it reads the secret and what the refresh will do."""
    lines = []
    for state in states:
        if isinstance(state, ServiceState):
            state = ReaderState(service=state.service, region=region, reader=state.secret_reader)
            if state.reader is None:
                state.error = "it was not read"
        lines.append(state.plan_line())
    return lines


@dataclass(frozen=True)
class Refreshed:
    """What a refresh did: the step's detail, and the optional region's services it could
    not refresh (their running instances keep the URL they started with)."""

    detail: str
    missed: frozenset[tuple[str, str]]  # (region, service)

    def __str__(self) -> str:
        return self.detail

    def repointed(self, region: Region, services: Sequence[str]) -> set[str]:
        return {s for s in services if (region.name, s) not in self.missed}


def refresh_secret_readers(
    topo: Topology,
    record: RunRecord,
    version: str | None,
    required: Sequence[Region],
    optional: Sequence[Region] = (),
) -> Refreshed:
    """Refresh every service of ``required`` (failures raise) and of ``optional`` (tried
    once; failures are reported)."""
    if not version:
        raise PermanentError("refresh-secret-readers: the secret has no version to refresh to")
    env = topo.environment
    task = resumable(run_refresh_secret_readers, record, "refresh-secret")
    once = task.with_options(retries=0)
    futures = [
        (region, is_optional, (once if is_optional else task).submit(
            env, region.project, region.name, svc.name, version
        ), svc.name)
        for is_optional, regions in ((False, required), (True, optional))
        for region in regions
        for svc in topo.services
    ]  # fmt: skip
    wait([f for _, _, f, _ in futures])
    done: list[RefreshResult] = []
    unreachable: dict[str, str] = {}
    missed: set[tuple[str, str]] = set()
    failure: BaseException | None = None
    for region, is_optional, future, service in futures:
        try:
            done.append(future.result())
        except Exception as exc:
            if not is_optional:
                failure = failure or exc
            else:
                unreachable.setdefault(region.name, str(exc)[:300])
                missed.add((region.name, service))
    if failure is not None:
        raise failure
    parts = [r.describe() for r in done]
    for region_name, error in unreachable.items():
        get_run_logger().warning(
            "the services of %s could not be refreshed: %s", region_name, error
        )
        parts.append(
            f"{region_name}: services not refreshed, its Run API did not answer ({error}); "
            "their running instances keep the URL they started with"
        )
    return Refreshed("; ".join(parts), frozenset(missed))
