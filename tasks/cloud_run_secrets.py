"""Cloud Run: make a service's running instances pick up a new version of the apps' secret.

What a service needs follows its own configuration (tasks/run_secret_readers.py): a
volume at ``latest`` follows at once (no call); an env var at ``latest`` needs new
instances, so a new revision (only a template annotation changes); a reference pinned to
a version is re-pinned to the new one (a new revision too). A service whose traffic is
pinned to named revisions would send nothing to a new revision: it is left alone, and the
result says why. Only template fields are updated, each named in the update mask:
service-level scaling and ingress (the failback's fence) are never touched.
"""

from __future__ import annotations

from google.api_core import exceptions as gexc
from google.cloud import run_v2
from prefect import get_run_logger
from pydantic import BaseModel

from lifeboat import runtime
from lifeboat.secret_names import SecretName
from tasks.cloud_run import ServiceState, service_path
from tasks.errors import PermanentError
from tasks.polling import wait_until
from tasks.retrying import calling, cloud_task
from tasks.run_rollout import ROLLOUT_S, update_and_wait
from tasks.run_secret_readers import SecretReader, read_secret_reader, roll_for


class RefreshResult(BaseModel):
    service: str
    region: str
    reading: str  # how the service reads the secret (tasks.run_secret_readers.Reading)
    changed: bool  # whether this call made a new revision
    action: str  # what happened, in words
    revision: str = ""  # the revision its instances now start from, when one was made

    def describe(self) -> str:
        return f"{self.region}/{self.service}: {self.action}"


class ReaderState(BaseModel):
    """A service's secret reader as preflight saw it, or why it could not be read."""

    service: str
    region: str
    reader: SecretReader | None = None
    error: str = ""
    # The whole service as read (its ingress and fence too), when it could be read.
    state: ServiceState | None = None

    def plan_line(self) -> str:
        if self.reader is not None:
            return self.reader.plan_line(self.region, self.service)
        return (
            f"cannot refresh {self.region}/{self.service}: {self.error}; its running instances "
            "keep the URL they started with"
        )


def split_version(version: str) -> tuple[str, str, str]:
    """(project as Secret Manager wrote it, secret id, version number) of a version name."""
    name = SecretName.parse(version)
    if name is None or name.version is None or not name.version.isdigit():
        raise PermanentError(f"refresh-secret-readers: {version!r} is not a secret version name")
    return name.project, name.secret, name.version


def _get(environment: str, name: str) -> run_v2.Service:
    """The service, read once: no library retry (a region in an outage answers at once)."""
    factory = runtime.clients(environment)
    got: run_v2.Service = factory.run_services.get_service(
        name=name, timeout=runtime.call_timeout(environment), retry=None
    )
    return got


def _settled(environment: str, name: str) -> run_v2.Service:
    """The service once no rollout is in progress (a resumed run may find one running)."""
    factory = runtime.clients(environment)

    def settled() -> run_v2.Service | None:
        got = _get(environment, name)
        return None if got.reconciling else got

    return wait_until(
        settled, timeout=ROLLOUT_S, interval=factory.poll_interval, what=f"rollout of {name}"
    )


@cloud_task(timeout_seconds=60, task_run_name="secret-reader-{service}-{region}", retries=0)
def run_describe_secret_reader(
    environment: str, project: str, region: str, service: str
) -> ReaderState:
    """How a service reads the apps' database secret; the error when its region does not answer.

    For a region that may be down (a failover's primary): one read, no retry, and a
    failure is returned, not raised, so the plan says what could not be read.

    Idempotent: a read.
    """
    secret = runtime.topology(environment).cloud_sql.app_secret.resource
    name = service_path(project, region, service)
    try:
        got = _get(environment, name)
    except gexc.GoogleAPICallError as exc:
        return ReaderState(
            service=service,
            region=region,
            error=f"its Run API answered {exc.code} ({exc.reason or exc.message})",
        )
    except Exception as exc:  # a timeout or a refused connection: the region does not answer
        return ReaderState(
            service=service,
            region=region,
            error=f"its Run API did not answer ({type(exc).__name__})",
        )
    return ReaderState(
        service=service,
        region=region,
        reader=read_secret_reader(got, secret),
        state=ServiceState.of(got, service, region, secret),
    )


@cloud_task(timeout_seconds=900, task_run_name="refresh-secret-{service}-{region}")
def run_refresh_secret_readers(
    environment: str, project: str, region: str, service: str, version: str
) -> RefreshResult:
    """Make a service's running instances use ``version`` of the apps' database secret.

    Args:
        environment: the topology to use.
        project: the service's project.
        region: the service's region.
        service: the Cloud Run service name.
        version: the secret version just added (``projects/P/secrets/S/versions/N``); a
            name, never the value.

    Returns:
        How the service reads the secret, and what was done about it.

    Idempotent: the new revision carries the annotation ``lifeboat.dev/database-secret-
    version: N`` (and pinned references name N): a re-run after a crash that already rolled
    finds them and makes no call. A volume at latest, a service that does not read the
    secret, and one whose traffic is pinned to named revisions get no call at all.
    """
    logger = get_run_logger()
    secret = runtime.topology(environment).cloud_sql.app_secret.resource
    secret_project, _, number = split_version(version)
    aliases = {secret_project}  # Secret Manager names the project by number
    name = service_path(project, region, service)
    with calling("refresh-secret-readers", name):
        current = _settled(environment, name)
        reader = read_secret_reader(current, secret, aliases)

        def result(changed: bool, action: str, revision: str = "") -> RefreshResult:
            return RefreshResult(
                service=service,
                region=region,
                reading=reader.reading.value,
                changed=changed,
                action=action,
                revision=revision,
            )

        if not reader.needs_restart:
            return result(False, f"reads it {reader.how()}: follows at once, nothing to do")
        if reader.stuck:
            logger.warning("%s left alone: %s", name, reader.stuck_reason())
            return result(False, f"left alone: {reader.stuck_reason()}")
        if reader.current_for(number):
            return result(
                False,
                f"reads it {reader.how()}; a revision for version {number} is there already",
                current.latest_created_revision.rsplit("/", 1)[-1],
            )
        paths = roll_for(current, secret, number, aliases)
        logger.info(
            "%s reads %s %s: a new revision for version %s (mask %s)",
            name,
            secret,
            reader.how(),
            number,
            ",".join(paths),
        )
        done = update_and_wait(environment, current, paths)
    revision = done.latest_created_revision.rsplit("/", 1)[-1]
    return result(
        True,
        f"read it {reader.how()}: new revision {revision} for version {number}, its instances "
        "start with it",
        revision,
    )
