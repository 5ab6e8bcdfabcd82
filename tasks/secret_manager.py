"""Secret Manager: point the apps' database-URL secret at an instance, as seed 004 does."""

from __future__ import annotations

import hmac

from google.api_core import exceptions as gexc
from google.cloud import secretmanager_v1
from prefect import get_run_logger
from pydantic import BaseModel

from lifeboat import runtime
from lifeboat.secrets import read_secret
from tasks.cloud_sql import describe
from tasks.errors import PermanentError, TransientError, is_transient, maybe_applied
from tasks.polling import wait_until
from tasks.retrying import calling, cloud_task


class SecretUpdate(BaseModel):
    """What changed in the secret: names and numbers only, never the value."""

    secret: str
    instance: str
    changed: bool
    version: str | None  # the version now latest, e.g. "projects/…/versions/3"


def database_url(environment: str, address: str) -> str:
    """The apps' URL for an instance address; it carries the app role's password."""
    sql = runtime.topology(environment).cloud_sql
    password = read_secret(sql.app_password_secret) if sql.app_password_secret else ""
    auth = f"{sql.app_user}:{password}@" if password else f"{sql.app_user}@"
    return f"postgresql://{auth}{address}:{sql.port}/{sql.databases[0]}"


def _latest(
    client: secretmanager_v1.SecretManagerServiceClient, secret: str, timeout: float
) -> tuple[str | None, bytes | None]:
    """(version name, value) of the latest version; None when there is none to read."""
    try:
        got = client.access_secret_version(
            name=f"{secret}/versions/latest",
            # The library would retry 503s for 60 s by itself; Lifeboat's task retries.
            retry=None,
            timeout=timeout,
        )
    except gexc.NotFound as exc:
        if "has no versions" in str(exc):
            return None, None
        raise PermanentError(f"secret-add-version: secret {secret} does not exist") from exc
    except gexc.BadRequest as exc:
        # FAILED_PRECONDITION: latest is disabled or destroyed. A new version fixes that.
        if "state" in str(exc):
            return None, None
        raise
    return got.name, bytes(got.payload.data)


def _instance_url(environment: str, project: str, instance: str) -> bytes | None:
    """The apps' URL for the instance's address now; None when it has no address."""
    state = describe(environment, project, instance)
    return database_url(environment, state.address).encode() if state.address else None


def _latest_holds(
    client: secretmanager_v1.SecretManagerServiceClient, secret: str, url: bytes, timeout: float
) -> tuple[str | None, bool]:
    """(latest version name, whether its value is ``url``), compared in constant time."""
    name, current = _latest(client, secret, timeout)
    return name, current is not None and hmac.compare_digest(current, url)


@cloud_task(timeout_seconds=120, task_run_name="secret-database-url-{instance}")
def secret_manager_add_database_url(environment: str, project: str, instance: str) -> SecretUpdate:
    """Add a version of the apps' database-URL secret naming ``instance``'s address.

    Cloud Run apps read this secret (an env var at instance start, or a volume at each
    read), so it must name the instance they should write to. The URL carries the app
    role's password: it is sent to Secret Manager only, never logged, returned or recorded.
    The address is read now: a replica keeps its IP when promoted, so the version can be
    added before the promotion (and before the secondary scales up).

    Idempotent: when the latest enabled version already holds this URL, nothing is added;
    a re-run after a crash that added it finds it there. An add that timed out is waited
    for (up to twice the call timeout), one that got a 5xx read once, and a version it
    made is adopted, not added again.
    """
    topo = runtime.topology(environment)
    target = topo.cloud_sql.app_secret
    factory = runtime.clients(environment)
    timeout = runtime.call_timeout(environment)
    with calling("secret-add-version", f"{target.resource} → {project}:{instance}"):
        url = _instance_url(environment, project, instance)
        if url is None:
            raise PermanentError(f"secret-add-version: {project}:{instance} has no IP address")
        client = factory.secret_manager
        name, holds = _latest_holds(client, target.resource, url, timeout)
        if holds:
            get_run_logger().info(
                "secret %s already names %s (%s); nothing added", target.name, instance, name
            )
            return SecretUpdate(
                secret=target.resource, instance=instance, changed=False, version=name
            )
        try:
            added = client.add_secret_version(
                request=secretmanager_v1.AddSecretVersionRequest(
                    parent=target.resource,
                    payload=secretmanager_v1.SecretPayload(data=url),
                ),
                timeout=timeout,
            )
            version = added.name
        except Exception as exc:
            # AddSecretVersion takes no request id: a call that timed out may still land,
            # after the step's retry has added another. Wait for it before sending again.
            if not maybe_applied(exc):
                raise
            # A 5xx answer comes after the server acted, if it did: one read says. A
            # timeout or a dropped connection may still be in flight: wait for it.
            patience = 0.0 if isinstance(exc, gexc.ServerError) else 2 * timeout
            landed = _landed(client, target.resource, name, url, timeout, patience)
            if landed is None:
                raise
            get_run_logger().warning(
                "secret %s: the add failed ambiguously (%s) but version %s names %s: adopted",
                target.name,
                type(exc).__name__,
                landed,
                instance,
            )
            version = landed
    get_run_logger().info(
        "secret %s: version %s names %s (value not logged)", target.name, version, instance
    )
    return SecretUpdate(secret=target.resource, instance=instance, changed=True, version=version)


def _landed(
    client: secretmanager_v1.SecretManagerServiceClient,
    secret: str,
    before: str | None,
    url: bytes,
    timeout: float,
    patience: float,
) -> str | None:
    """The version an ambiguous add made, if it shows within ``patience`` seconds (one
    read when 0): a latest version newer than ``before`` that holds ``url``; else None."""

    def check() -> str | None:
        try:
            name, holds = _latest_holds(client, secret, url, timeout)
        except Exception as exc:
            if is_transient(exc):
                return None  # unreadable for now: look again
            raise
        return name if holds and name is not None and name != before else None

    if not patience:
        return check()
    try:
        return wait_until(check, timeout=patience, interval=(0.25, 2.0), what="the add")
    except TransientError:
        return None


@cloud_task(timeout_seconds=60, task_run_name="secret-names-{instance}")
def secret_manager_names(environment: str, project: str, instance: str) -> bool:
    """Whether the apps' secret's latest version is the URL of ``instance``'s address.

    Reads the value (AccessSecretVersion, as the add does) and compares it there: the
    value is never returned, logged or recorded. Idempotent: a read.
    """
    target = runtime.topology(environment).cloud_sql.app_secret
    with calling("secret-names", f"{target.resource} → {project}:{instance}"):
        url = _instance_url(environment, project, instance)
        if url is None:
            return False
        client = runtime.clients(environment).secret_manager
        return _latest_holds(client, target.resource, url, runtime.call_timeout(environment))[1]


@cloud_task(timeout_seconds=60, task_run_name="secret-latest-version")
def secret_manager_latest_version(environment: str) -> str | None:
    """The name of the apps' database secret's latest version; None when it has none.

    Reads the version's metadata (GetSecretVersion on the ``latest`` alias), never its
    value. Idempotent: a read.
    """
    target = runtime.topology(environment).cloud_sql.app_secret
    factory = runtime.clients(environment)
    with calling("secret-latest-version", target.resource):
        try:
            got = factory.secret_manager.get_secret_version(
                name=f"{target.resource}/versions/latest",
                retry=None,
                timeout=runtime.call_timeout(environment),
            )
        except gexc.NotFound as exc:
            if "has no versions" in str(exc):
                return None
            missing = f"secret-latest-version: {target.resource} does not exist"
            raise PermanentError(missing) from exc
    name: str = got.name
    return name


@cloud_task(timeout_seconds=60, task_run_name="secret-replication")
def secret_manager_replication(environment: str) -> list[str] | None:
    """Where the apps' database secret is replicated: the user-managed replica locations,
    or None for automatic replication. Reads the secret's metadata (GetSecret), never a
    value. Idempotent: a read.
    """
    target = runtime.topology(environment).cloud_sql.app_secret
    factory = runtime.clients(environment)
    with calling("secret-replication", target.resource):
        try:
            got = factory.secret_manager.get_secret(
                name=target.resource, timeout=runtime.call_timeout(environment)
            )
        except gexc.NotFound as exc:
            raise PermanentError(f"secret-replication: {target.resource} does not exist") from exc
    if "user_managed" in got.replication:
        return [replica.location for replica in got.replication.user_managed.replicas]
    return None
