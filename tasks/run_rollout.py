"""Cloud Run updates that land once, and rollouts waited for with a deadline on every poll.

Written once here, as python-docs-samples' ``handle_extended_operation`` is, for every
task that changes a service (scaling, traffic, the failback's ingress fence, secret rolls):

- **Optimistic concurrency.** An update carries the ``etag`` of the service it was built
  from (run v2 ``Service.etag``: "May be used to detect modification conflict during
  updates"); Cloud Run refuses a stale one with 409 ABORTED (google.aip.dev/154).
- **An ambiguous failure is read, not resent.** A PATCH that timed out or got a 5xx may
  still be acted on; one that got 409 may have lost to our own earlier try. The service
  is read again (once its rollout has settled): when it carries the intended change, its
  generation moved past the one read, the change is adopted, not sent a second time.
  Otherwise the error goes up and the step's retry reads the service and decides afresh;
  a late copy of the first PATCH then carries a stale etag and is refused.
- **Every poll has a deadline.** google-api-core's operation poller gives its GET no
  timeout, so one poll the server holds would hold the whole wait. Each poll here gets
  the per-call timeout (capped by the step's budget); a poll that times out or gets a 5xx
  is polled again, up to ``POLL_FAILURES_TOLERATED`` in a row; the whole wait ends at the
  sooner of ``ROLLOUT_S`` and the step's declared budget, naming the step and the service.
"""

from __future__ import annotations

import enum
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import operation as api_operation
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import field_mask_pb2
from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from prefect.logging import get_logger

from lifeboat import budget, runtime
from tasks.errors import PermanentError, TransientError, is_transient, maybe_applied
from tasks.polling import operation_result, wait_until

# The longest one Cloud Run rollout is waited for. A step that waits twice (a rollout in
# progress, then its own) has a 900 s budget for both: each wait ends at the sooner of
# this and what is left of that budget (tasks/polling), and a retry gets a fresh one.
ROLLOUT_S = 800

# Operation polls in a row that may time out or get a 5xx before the wait gives up (a read
# is safe to repeat; a region that stopped answering still ends the wait in a few calls).
POLL_FAILURES_TOLERATED = 3


class Outcome(enum.Enum):
    """What a service read after an ambiguous update says of that update."""

    LANDED = "landed"  # its generation moved and it carries the intended change: adopt it
    NOT_YET = "not yet"  # its generation is the one read: the update has not been acted on
    OVERTAKEN = "overtaken"  # its generation moved to something else: another writer


def masked_value(service: run_v2.Service, path: str) -> Any:
    """The value at an update-mask path (``scaling.min_instance_count``) of a service."""
    value: Any = run_v2.Service.pb(service)
    for part in path.split("."):
        value = getattr(value, part)
    return value


def carries(service: run_v2.Service, intended: run_v2.Service, paths: list[str]) -> bool:
    """Whether ``service`` holds ``intended``'s value at every path of the update mask."""
    return all(masked_value(service, p) == masked_value(intended, p) for p in paths)


def outcome(intended: run_v2.Service, now: run_v2.Service, paths: list[str]) -> Outcome:
    """Judge an update whose reply was lost. ``intended`` is the service as read, with the
    change applied (so it keeps the generation read); ``now`` is the service read again.

    Pure: no call.
    """
    if now.generation <= intended.generation:
        return Outcome.NOT_YET
    return Outcome.LANDED if carries(now, intended, paths) else Outcome.OVERTAKEN


def ambiguous(exc: BaseException) -> bool:
    """Whether a failed update may still have been (or still be) acted on: a timeout, a
    dropped connection, a 5xx, or a 409 (stale etag, or a rollout running: maybe ours)."""
    return isinstance(exc, gexc.Conflict) or maybe_applied(exc)


def wait_settled(environment: str, name: str) -> run_v2.Service:
    """The service once no rollout is in progress (a resumed run may find one running)."""
    factory = runtime.clients(environment)

    def settled() -> run_v2.Service | None:
        got = factory.run_services.get_service(name=name, timeout=runtime.call_timeout(environment))
        return None if got.reconciling else got

    return wait_until(
        settled, timeout=ROLLOUT_S, interval=factory.poll_interval, what=f"rollout of {name}"
    )


def update_and_wait(environment: str, service: run_v2.Service, paths: list[str]) -> run_v2.Service:
    """Update only ``paths`` of a service, with the etag it was read with, and wait for
    its rollout; the service as it is after.

    ``service`` is the service as read (``wait_settled``), with the change applied.
    Idempotent: after an ambiguous failure the service is read again and a change that
    landed is adopted (see the module's docstring); nothing is sent twice in one call.
    """
    if not service.etag:
        raise PermanentError(
            f"update of {service.name}: the service carries no etag; read it before changing it"
        )
    factory = runtime.clients(environment)
    try:
        operation = factory.run_services.update_service(
            service=service,
            update_mask=field_mask_pb2.FieldMask(paths=paths),
            timeout=runtime.call_timeout(environment),
        )
    except Exception as exc:
        if not ambiguous(exc):
            raise
        now = wait_settled(environment, service.name)
        verdict = outcome(service, now, paths)
        if verdict is not Outcome.LANDED:
            raise TransientError(
                f"update of {service.name} ({','.join(paths)}) failed ({type(exc).__name__}: "
                f"{exc}); read again it is {verdict.value} (generation {now.generation}, read "
                f"at {service.generation}): the step's retry reads it and decides afresh"
            ) from exc
        _logger().info(
            "%s: the update whose reply was lost (%s) landed as generation %s; adopted, not resent",
            service.name,
            type(exc).__name__,
            now.generation,
        )
        return now
    return wait_rollout(environment, operation, f"rollout of {service.name}")


def _logger() -> Any:
    """The task run's logger; a plain one when called outside any run (a test, a hook)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger("lifeboat.run_rollout")


def wait_rollout(environment: str, operation: Any, what: str) -> run_v2.Service:
    """The service a Run operation ends with; every poll with its own timeout."""
    factory = runtime.clients(environment)
    operations = factory.run_services.transport.operations_client
    first: operations_pb2.Operation = operation.operation
    name = first.name
    last = [first]
    failures = [0]

    def refresh(retry: Any = None) -> operations_pb2.Operation:
        try:
            got: operations_pb2.Operation = operations.get_operation(
                name, retry=None, timeout=runtime.call_timeout(environment)
            )
        except Exception as exc:
            failures[0] += 1
            if not is_transient(exc) or failures[0] > POLL_FAILURES_TOLERATED:
                raise
            return last[0]  # not done yet as far as we know: poll again after the backoff
        failures[0] = 0
        last[0] = got
        return got

    def cancel() -> None:
        operations.cancel_operation(name, timeout=runtime.call_timeout(environment))

    polled = api_operation.Operation(  # type: ignore[no-untyped-call]
        first, refresh, cancel, result_type=run_v2.Service, metadata_type=run_v2.Service
    )
    try:
        done: run_v2.Service = operation_result(
            polled, timeout=ROLLOUT_S, polling=factory.polling, what=what
        )
    except (TimeoutError, gexc.RetryError) as exc:
        step = budget.current()
        where = f"step {step.step}: " if step is not None else ""
        raise TransientError(
            f"{where}gave up after {ROLLOUT_S} s waiting for {what} (operation {name})"
        ) from exc
    return done
