"""The database's fence: the apps' role kept off a primary that is about to stop being one.

Why the ingress fence is not enough: Cloud Run checks ingress when a request arrives, so a
request admitted just before the fence still commits afterwards, and is acknowledged. If
that commit comes after the replica's target was read, the promotion loses it (CI, stop
34: 1 of 69 acknowledged writes). So before the target is read, the primary itself stops
taking the apps' writes:

1. ``ALTER ROLE <app> NOLOGIN``: no new session (PostgreSQL checks ``rolcanlogin`` at
   connection, whatever the authentication method);
2. ``pg_terminate_backend`` on the role's sessions, waiting for each to end: a transaction
   that had not committed is rolled back, and its client gets an error, not an
   acknowledgement. What did commit is in the WAL, before the target;
3. the role's comment names the fence's owner, as the services' annotation does for the
   ingress fence: a lift touches only a role Lifeboat fenced.

The role's attributes are in the catalog, so they replicate: the promoted replica starts
with the role fenced too, and ``sql_open_app_role`` lets it in again once it is the
primary. The old primary keeps it fenced: a stray write there would be lost.

Privileges: the monitoring role (``postgres`` on Cloud SQL) is a member of
``cloudsqlsuperuser``, which has CREATEROLE (cloud.google.com/sql/docs/postgres/users). On
PostgreSQL 15 and earlier that lets it alter any role that is not a superuser. Ending
another role's session needs membership in that role or ``pg_signal_backend``, which
Google does not document for ``cloudsqlsuperuser``: when it is refused, the fence waits
for the sessions to end by themselves (apps that connect per request), and otherwise fails
before anything is promoted, naming the grant that would let it (lab/FIDELITY.md).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql as pgsql
from pydantic import BaseModel

from lifeboat import runtime
from lifeboat.secrets import read_secret
from tasks.cloud_sql import describe, monitor_connection
from tasks.errors import PermanentError, TransientError
from tasks.retrying import calling, cloud_task

# The comment a fenced role carries: "lifeboat-fence: <flow>/<incident>/<flow run>".
MARK = "lifeboat-fence: "
# How long a session of the apps may take to end once told to (pg_terminate_backend's own
# wait, in ms), and how long the fence waits for all of them before it gives up.
TERMINATE_WAIT_MS = 5000
SESSIONS_END_S = 30.0
# The role has had no session for this long: done (``_end_sessions`` says why it waits).
QUIET_S = 0.5
POLL_S = 0.1


class RoleFence(BaseModel):
    """What fencing the apps' role on one instance did."""

    instance: str
    role: str
    changed: bool  # False: the role was fenced already (a resumed run)
    terminated: int = 0  # sessions ended by the fence
    waited_s: float = 0.0
    signal_refused: bool = False  # could not end other sessions: waited for them instead

    def describe(self) -> str:
        what = "fenced" if self.changed else "fenced already"
        ended = (
            "its sessions ended by themselves (ending them was refused)"
            if self.signal_refused
            else f"{self.terminated} session(s) ended"
        )
        return f"{self.role} on {self.instance}: {what} (NOLOGIN); {ended} in {self.waited_s:.1f} s"


class RoleOpened(BaseModel):
    instance: str
    role: str
    changed: bool
    # Why it was left as it is, when it was: not Lifeboat's fence, or no such role.
    left: str | None = None

    def describe(self) -> str:
        if self.left:
            return f"{self.role} on {self.instance}: left as it is ({self.left})"
        state = "may log in again" if self.changed else "could log in already"
        return f"{self.role} on {self.instance} {state}"


def _connect(environment: str, project: str, instance: str) -> psycopg.Connection[Any]:
    sql = runtime.topology(environment).cloud_sql
    password = read_secret(sql.monitor_password_secret) if sql.monitor_password_secret else None
    state = describe(environment, project, instance)
    if not state.address:
        raise PermanentError(f"{project}:{instance} has no IP address")
    try:
        return monitor_connection(environment, state.address, password, timeout_s=5)
    except psycopg.OperationalError as exc:  # unreachable, or restarting: ask again
        raise TransientError(f"could not connect to {project}:{instance}: {exc}") from exc


def _role_state(conn: psycopg.Connection[Any], role: str) -> tuple[bool, str] | None:
    """(can log in, its comment) for ``role``, or None if there is no such role."""
    row = conn.execute(
        "SELECT rolcanlogin, COALESCE(shobj_description(oid, 'pg_authid'), '')"
        " FROM pg_roles WHERE rolname = %s",
        (role,),
    ).fetchone()
    return None if row is None else (bool(row[0]), str(row[1]))


def _sessions(conn: psycopg.Connection[Any], role: str) -> list[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
        (role,),
    ).fetchall()
    return [int(r[0]) for r in rows]


@cloud_task(timeout_seconds=120, task_run_name="sql-fence-app-role-{instance}")
def sql_fence_app_role(environment: str, project: str, instance: str, owner: str) -> RoleFence:
    """Keep the apps' role off ``instance``: no new session, and none left.

    Args:
        environment: the topology to use.
        project: the instance's project.
        instance: the primary about to be replaced.
        owner: who fences (flow/incident/flow run), written on the role.

    Returns:
        What was done, and how long the sessions took to end.

    Idempotent: a role this incident fenced already (a resumed run) is fenced again by
    its new run, and its sessions ended again. A role that cannot log in by anyone else's
    decision (no mark, or another incident's: a switch keeps the old primary fenced) is
    refused, with nothing changed.
    """
    role = runtime.topology(environment).cloud_sql.app_user
    resource = f"{project}:{instance}/{role}"
    with calling("sql-fence-app-role", resource), _connect(environment, project, instance) as conn:
        state = _role_state(conn, role)
        if state is None:
            raise PermanentError(f"sql-fence-app-role: {resource}: no such role")
        can_login, comment = state
        incident = owner[: owner.rindex("/") + 1]  # flow/incident/, as the lifts match it
        if not can_login and not comment.startswith(MARK + incident):
            raise PermanentError(
                f"sql-fence-app-role: {resource} cannot log in already, and not by this "
                f"incident's fence ({comment or 'no comment'}): nothing changed"
            )
        try:
            # One transaction: a NOLOGIN without its mark would be no one's to lift.
            with conn.transaction():
                conn.execute(pgsql.SQL("ALTER ROLE {} NOLOGIN").format(pgsql.Identifier(role)))
                conn.execute(
                    pgsql.SQL("COMMENT ON ROLE {} IS {}").format(
                        pgsql.Identifier(role), pgsql.Literal(MARK + owner)
                    )
                )
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PermanentError(
                f"sql-fence-app-role: {resource}: the monitoring role may not alter {role} "
                f"({exc}); it needs CREATEROLE (cloudsqlsuperuser has it): nothing changed"
            ) from exc
        started = time.monotonic()
        terminated, refused = _end_sessions(conn, role, resource)
        return RoleFence(
            instance=instance,
            role=role,
            changed=can_login,
            terminated=terminated,
            waited_s=time.monotonic() - started,
            signal_refused=refused,
        )


def _end_sessions(conn: psycopg.Connection[Any], role: str, resource: str) -> tuple[int, bool]:
    """End the role's sessions and return (how many were ended, whether ending them was
    refused), once none has been seen for ``QUIET_S``.

    Why the quiet time: a backend checks ``rolcanlogin`` as it starts, but shows in
    ``pg_stat_activity`` only some steps later (PostgreSQL 15's ``InitPostgres``: the
    session's user is set before ``pgstat_bestart``). One that passed the check just
    before NOLOGIN committed is invisible for that moment, then runs its write.
    """
    ended, refused = 0, False
    deadline = time.monotonic() + SESSIONS_END_S
    quiet_since: float | None = None
    while True:
        pids = _sessions(conn, role)
        now = time.monotonic()
        if not pids:
            quiet_since = quiet_since or now
            if now - quiet_since >= QUIET_S:
                return ended, refused
        else:
            quiet_since = None
            if now >= deadline:
                raise PermanentError(_still_open(resource, role, len(pids), refused))
            if not refused:
                count, refused = _terminate(conn, pids)
                ended += count
        time.sleep(POLL_S)


def _terminate(conn: psycopg.Connection[Any], pids: list[int]) -> tuple[int, bool]:
    """Terminate each session, each waited for; (how many, whether refused)."""
    ended = 0
    for pid in pids:
        try:
            row = conn.execute(
                "SELECT pg_terminate_backend(%s, %s)", (pid, TERMINATE_WAIT_MS)
            ).fetchone()
        except psycopg.errors.InsufficientPrivilege:
            return ended, True
        ended += bool(row and row[0])
    return ended, False


def _still_open(resource: str, role: str, left: int, refused: bool) -> str:
    why = (
        f"the monitoring role may not end them: grant it pg_signal_backend, or membership in {role}"
        if refused
        else "they did not end when terminated"
    )
    return (
        f"sql-fence-app-role: {resource}: {left} session(s) still open after "
        f"{SESSIONS_END_S:.0f} s ({why}); a write in one could be lost, so nothing is promoted"
    )


class FencePrivileges(BaseModel):
    """Whether the monitoring role could fence the apps' role on an instance."""

    alter: bool  # CREATEROLE (or superuser): NOLOGIN
    end_sessions: bool  # pg_signal_backend, or membership in the apps' role
    app_role_exists: bool

    @property
    def ready(self) -> bool:
        return self.alter and self.end_sessions and self.app_role_exists


def fence_privileges(environment: str, project: str, instance: str) -> FencePrivileges:
    """What the monitoring role may do to the apps' role on ``instance`` (readiness).
    A read; a plain function, as readiness calls it inside its own task."""
    role = runtime.topology(environment).cloud_sql.app_user
    with _connect(environment, project, instance) as conn:
        exists = _role_state(conn, role) is not None
        row = conn.execute(
            "SELECT rolsuper OR rolcreaterole, rolsuper"
            " OR pg_has_role(current_user, 'pg_signal_backend', 'USAGE')"
            " OR (%s AND pg_has_role(current_user, %s, 'USAGE'))"
            " FROM pg_roles WHERE rolname = current_user",
            (exists, role if exists else "pg_signal_backend"),
        ).fetchone()
    assert row is not None
    return FencePrivileges(alter=bool(row[0]), end_sessions=bool(row[1]), app_role_exists=exists)


@cloud_task(timeout_seconds=60, task_run_name="sql-app-role-fence-{instance}")
def sql_app_role_fence(environment: str, project: str, instance: str) -> str:
    """Who fenced the apps' role on ``instance`` (``flow/incident/flow run``), or ""
    when it is not fenced by Lifeboat. Idempotent: a read."""
    role = runtime.topology(environment).cloud_sql.app_user
    resource = f"{project}:{instance}/{role}"
    with calling("sql-app-role-fence", resource), _connect(environment, project, instance) as conn:
        state = _role_state(conn, role)
    if state is None or state[0] or not state[1].startswith(MARK):
        return ""
    return state[1].removeprefix(MARK)


@cloud_task(timeout_seconds=60, task_run_name="sql-open-app-role-{instance}")
def sql_open_app_role(environment: str, project: str, instance: str, owner: str) -> RoleOpened:
    """Let the apps' role log in to ``instance`` again, if a fence of ``owner`` kept it out.

    Called on the promoted primary (the fence replicated to it) and, when a run ends
    before its promotion, on the primary it fenced.

    Args:
        environment: the topology to use.
        project: the instance's project.
        instance: the instance to open.
        owner: whose fence may be lifted: a prefix of the mark (``flow/incident/``, so a
            re-run of the incident lifts what an earlier run set). A role fenced by anyone
            else, or not fenced, is left as it is.

    Idempotent: opening an open role changes nothing.
    """
    role = runtime.topology(environment).cloud_sql.app_user
    resource = f"{project}:{instance}/{role}"
    with calling("sql-open-app-role", resource), _connect(environment, project, instance) as conn:
        return _open(conn, instance, role, owner)


def _open(conn: psycopg.Connection[Any], instance: str, role: str, owner: str) -> RoleOpened:
    state = _role_state(conn, role)
    if state is None:
        return RoleOpened(instance=instance, role=role, changed=False, left="no such role")
    can_login, comment = state
    if can_login:
        return RoleOpened(instance=instance, role=role, changed=False)
    if not comment.startswith(MARK + owner):
        left = f"it cannot log in, but not by this incident's fence ({comment or 'no comment'})"
        return RoleOpened(instance=instance, role=role, changed=False, left=left)
    with conn.transaction():
        conn.execute(pgsql.SQL("ALTER ROLE {} LOGIN").format(pgsql.Identifier(role)))
        conn.execute(pgsql.SQL("COMMENT ON ROLE {} IS NULL").format(pgsql.Identifier(role)))
    return RoleOpened(instance=instance, role=role, changed=True)
