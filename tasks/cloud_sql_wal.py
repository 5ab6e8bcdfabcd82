"""Cloud SQL replication before a promotion: has the replica received what the primary wrote,
and has a promotion of it started?

What a promotion keeps is what the replica has *received*, not what it has replayed:
PostgreSQL replays all WAL already in ``pg_wal`` before it leaves recovery ("Before
failover, any WAL immediately available in the archive or in pg_wal will be restored",
PostgreSQL 15 docs, warm standby failover), and a promotion triggered while replay is
paused ends the pause (``pg_wal_replay_pause``). So a planned switch, once its fence has
stopped the writes, waits for receipt: replay lag (an operator's pause, a slow replica)
costs time at the promotion, never data.

Received is read as the later of ``pg_last_wal_receive_lsn()`` and
``pg_last_wal_replay_lsn()``: WAL replayed was received. The receive position alone can
stay behind what the replica holds: when the walreceiver (re)starts, PostgreSQL sets it
to the start of the segment it streams from (``RequestXLogStreaming``; the comment on
``last_saved_restart_lsn`` in PostgreSQL's ``slot.h``: "streaming replication starts at
the beginning of a segment"), and it moves again only when new WAL arrives. A fenced,
idle primary writes none until its next checkpoint, so a failback waited out its whole
300 s for 0x60 bytes its replica had already replayed (CI, stop 30).
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from lifeboat import runtime
from lifeboat.secrets import read_secret
from tasks.cloud_sql import describe, monitor_connection
from tasks.cloud_sql_operations import running_operation
from tasks.errors import TransientError
from tasks.polling import wait_until
from tasks.retrying import calling, cloud_task

# What the replica holds: GREATEST skips a NULL (nothing received since it started).
HELD = "GREATEST(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())"


class ReceivedWal(BaseModel):
    """How much of the primary's WAL the replica holds, measured just before a promotion."""

    primary_answered: bool
    # A promotion has started or is done (a resumed run): the stream has stopped, and
    # what the replica received is what it keeps; there is nothing to wait for.
    promoting: bool = False
    target_lsn: str | None = None  # the primary's flushed WAL when the wait began
    received_lsn: str | None = None
    bytes: int | None = None  # WAL written before the wait began and not received (None: unknown)
    waited_s: float = 0.0

    @property
    def complete(self) -> bool:
        """Nothing is left to wait for: all received, or the promotion has begun."""
        return self.promoting or self.bytes == 0

    def describe(self) -> str:
        if self.promoting:
            return "its promotion has started already: what it received is what it keeps"
        if not self.primary_answered:
            return "the primary did not answer: what the replica lacks is unknown"
        if self.bytes == 0:
            return f"received everything up to {self.target_lsn} (waited {self.waited_s:.1f} s)"
        return (
            f"{self.bytes} bytes of WAL up to {self.target_lsn} not received after "
            f"{self.waited_s:.1f} s (received up to {self.received_lsn})"
        )


@cloud_task(timeout_seconds=600, task_run_name="sql-wait-received-{instance}")
def sql_wait_received(
    environment: str, project: str, instance: str, timeout_s: float
) -> ReceivedWal:
    """Wait until the replica has received all the WAL its primary had flushed when called.

    The target is read once, at the start: a fenced primary still writes a little WAL of
    its own (checkpoints), which no acknowledged write is in. On ``timeout_s`` it returns
    what is still missing instead of raising, so the caller decides: a planned failover
    the operator approved goes on and records it, a failback refuses to promote.

    Args:
        environment: the topology to use.
        project: the replica's project.
        instance: the replica.
        timeout_s: how long to wait for receipt.

    Returns:
        The target, what was received, and the bytes missing (0: all received).

    Idempotent: reads only.
    """
    resource = f"{project}:{instance}"
    sql = runtime.topology(environment).cloud_sql
    password = read_secret(sql.monitor_password_secret) if sql.monitor_password_secret else None
    with calling("sql-wait-received", resource):
        replica = describe(environment, project, instance)
        if not replica.is_replica or running_operation(
            environment, project, instance, "PROMOTE_REPLICA"
        ):
            return ReceivedWal(primary_answered=False, promoting=True)
        if not replica.master or not replica.address:
            return ReceivedWal(primary_answered=False)
        master_project, _, master_name = replica.master.rpartition(":")
        try:
            primary = describe(environment, master_project or project, master_name)
            with monitor_connection(environment, primary.address, password, timeout_s=5) as conn:
                row = conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
        except Exception:  # the primary's region may be down: nothing to compare with
            return ReceivedWal(primary_answered=False)
        assert row is not None
        target = str(row[0])
        started = time.monotonic()

        def missing() -> tuple[int, str | None]:
            with monitor_connection(environment, replica.address, password, timeout_s=5) as conn:
                got = conn.execute(
                    f"SELECT pg_wal_lsn_diff(%s::pg_lsn, {HELD}), {HELD}::text", (target,)
                ).fetchone()
            assert got is not None
            # No position at all (not in recovery): nothing received.
            return (max(0, int(got[0])) if got[0] is not None else -1), got[1]

        def received() -> ReceivedWal | None:
            behind, at = missing()
            if behind != 0:
                return None
            return ReceivedWal(
                primary_answered=True,
                target_lsn=target,
                received_lsn=at,
                bytes=0,
                waited_s=time.monotonic() - started,
            )

        try:
            return wait_until(
                received,
                timeout=timeout_s,
                interval=runtime.clients(environment).poll_interval,
                what=f"{resource} to receive the WAL up to {target}",
            )
        except TransientError:
            behind, at = missing()
            return ReceivedWal(
                primary_answered=True,
                target_lsn=target,
                received_lsn=at,
                bytes=behind if behind >= 0 else None,
                waited_s=time.monotonic() - started,
            )


def promotion_started(environment: str, project: str, instance: str) -> bool:
    """Whether a promotion of the replica has started (or is done): it is no longer a
    replica, or a PROMOTE_REPLICA operation on it is queued or running.

    A plain function, not a task: flow hooks call it outside any flow run.
    """
    if not describe(environment, project, instance).is_replica:
        return True
    return running_operation(environment, project, instance, "PROMOTE_REPLICA") is not None
