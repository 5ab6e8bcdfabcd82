"""Cloud SQL Admin calls and the long-running operations they start.

Every mutation Cloud SQL takes returns an operation, and an instance runs one at a time.
A mutation stays single by joining the operation a first try started: one found running
before the call, or one that appears after a call that failed without saying whether it
was acted on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from google.api_core import exceptions as gexc
from prefect import get_run_logger

from lifeboat import runtime, sqladmin
from tasks.errors import PermanentError, TransientError, is_transient, maybe_applied
from tasks.polling import wait_until


def sql_call(environment: str, make: Callable[[Any], Any]) -> dict[str, Any]:
    """One Cloud SQL Admin call, built from the discovery service, with the call timeout."""
    return runtime.clients(environment).sql.call(make, runtime.call_timeout(environment))


def wait_operation(
    environment: str, project: str, operation: str, timeout: float
) -> sqladmin.Operation:
    """Poll a Cloud SQL operation to DONE and raise if it finished with errors."""
    factory = runtime.clients(environment)

    def done() -> sqladmin.Operation | None:
        got = sql_call(
            environment, lambda s: s.operations().get(project=project, operation=operation)
        )
        op = sqladmin.Operation.model_validate(got)
        return op if op.status == "DONE" else None

    op = wait_until(
        done, timeout=timeout, interval=factory.poll_interval, what=f"SQL operation {operation}"
    )
    # A DONE operation with errors does not raise in the client; check it here.
    if op.failure:
        raise PermanentError(
            f"Cloud SQL operation {operation} ({op.operation_type}) failed: {op.failure}"
        )
    return op


def operations(environment: str, project: str, instance: str) -> Iterator[sqladmin.Operation]:
    """The instance's operations, newest first, every page of them."""
    items = runtime.clients(environment).sql.pages(
        lambda s, token: s.operations().list(project=project, instance=instance, pageToken=token),
        runtime.call_timeout(environment),
    )
    for item in items:
        yield sqladmin.Operation.model_validate(item)


def running_operation(
    environment: str, project: str, instance: str, kind: str | None
) -> str | None:
    """The name of an unfinished operation of this kind (None: any) on the instance."""
    for op in operations(environment, project, instance):
        if kind in (None, op.operation_type) and op.status != "DONE":
            return op.name
    return None


def wait_idle(environment: str, project: str, instance: str, before: str) -> None:
    """Wait out an operation running on the instance (a restore or clone a cancelled run
    left): Cloud SQL refuses another while one runs. One that fails leaves the instance
    there all the same, to be changed or deleted."""
    busy = running_operation(environment, project, instance, None)
    if busy is not None:
        get_run_logger().info("waiting for operation %s before %s %s", busy, before, instance)
        with contextlib.suppress(PermanentError):
            wait_operation(environment, project, busy, timeout=850)


def join_or_start(
    environment: str,
    project: str,
    instance: str,
    kind: str,
    start: Callable[[Any], Any],
    timeout: float,
) -> sqladmin.Operation:
    """Wait for a running operation of ``kind`` on the instance, else start one and wait.

    This is how every Cloud SQL mutation stays single: a retried or resumed step finds
    the operation its first try started instead of starting a second one. A start that
    failed ambiguously (a timeout, a dropped connection, a 5xx) may still land, after the
    step's retry has found nothing running and started another: so it is looked for
    first, as an operation of ``kind`` that was not there before the call, and joined.
    """
    known: set[str] = set()
    name = None
    for op in operations(environment, project, instance):
        if op.operation_type == kind:
            known.add(op.name)
            if op.status != "DONE" and name is None:
                name = op.name
    if name is None:
        name = _start(environment, project, instance, kind, start, known)
        get_run_logger().info("started %s on %s:%s (operation %s)", kind, project, instance, name)
    else:
        get_run_logger().info(
            "%s on %s:%s is already running (%s); waiting", kind, project, instance, name
        )
    return wait_operation(environment, project, name, timeout=timeout)


def _start(
    environment: str,
    project: str,
    instance: str,
    kind: str,
    start: Callable[[Any], Any],
    known: set[str],
) -> str:
    """Send the mutation once; when it failed ambiguously, the operation it made, if any."""
    try:
        return sqladmin.Operation.model_validate(sql_call(environment, start)).name
    except Exception as exc:
        if not maybe_applied(exc):
            raise
        # A 5xx comes after the server acted, if it did: one read says. A timeout or a
        # dropped connection may still be in flight: wait for it, up to twice the call
        # timeout. Cloud SQL mutations take no request id to make a resend safe.
        timeout = runtime.call_timeout(environment)
        patience = 0.0 if isinstance(exc, gexc.ServerError) else 2 * timeout
        landed = _new_operation(environment, project, instance, kind, known, patience)
        if landed is None:
            raise
        get_run_logger().warning(
            "%s on %s:%s failed ambiguously (%s) but started operation %s: joined",
            kind,
            project,
            instance,
            type(exc).__name__,
            landed,
        )
        return landed


def _new_operation(
    environment: str, project: str, instance: str, kind: str, known: set[str], patience: float
) -> str | None:
    """An operation of ``kind`` on the instance not in ``known``, if one shows within
    ``patience`` seconds (one read when 0); else None. Operations list newest first, so
    the reading stops at the first one of ``kind`` that was known before the call."""

    def check() -> str | None:
        try:
            for op in operations(environment, project, instance):
                if op.operation_type == kind and op.name not in known:
                    return op.name
                if op.name in known:
                    return None  # older than the call: nothing newer of this kind
        except Exception as exc:
            if is_transient(exc):
                return None  # unreadable for now: look again
            raise
        return None

    if not patience:
        return check()
    try:
        return wait_until(check, timeout=patience, interval=(0.25, 2.0), what=f"the {kind}")
    except TransientError:
        return None


def patch_and_wait(
    environment: str, project: str, instance: str, settings: dict[str, Any]
) -> sqladmin.Operation:
    """Patch the instance's settings (only the fields named) and wait; an update already
    running on it (a retried call) is joined, not started twice. The caller checks that
    the joined update was its own."""
    body = {"settings": settings}
    return join_or_start(
        environment,
        project,
        instance,
        "UPDATE",
        lambda s: s.instances().patch(project=project, instance=instance, body=body),
        timeout=850,
    )
