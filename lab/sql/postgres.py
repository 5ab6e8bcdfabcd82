"""Real PostgreSQL clusters behind the lab's Cloud SQL instances.

Each cluster listens on its own loopback address with the real Cloud SQL port, so several
instances can all be ``:5432`` (see reference/lab-postgres.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from lab.sql.pgtools import PgError, as_root, prepare_folder, run_tool, run_tool_raw, server_ids

log = logging.getLogger(__name__)

# Durability is worthless in a lab that is rebuilt per run; speed is not.
_LAB_CONF = """\
listen_addresses = '{host}'
port = {port}
unix_socket_directories = ''  # TCP only: no per-instance socket folder to collide on
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 16MB
max_connections = 40
wal_level = replica
max_wal_senders = 5
wal_keep_size = 64MB
hot_standby = on
logging_collector = off
"""

# WAL archiving, as Cloud SQL archives write-ahead logs for point-in-time recovery
# (cloud.google.com/sql/docs/postgres/backup-recovery/pitr). ``test ! -f`` keeps a segment
# already archived from being overwritten, as PostgreSQL's docs ask of an archive_command.
_ARCHIVE_CONF = """\
archive_mode = on
archive_command = 'test ! -f {archive}/%f && cp %p {archive}/%f'
"""

# A point-in-time restore: replay the archive up to, not including, the first commit at or
# after the point ("events at or after the timestamp are not reflected"), then promote.
_RECOVERY_CONF = """\
restore_command = 'cp {archive}/%f %p'
recovery_target_time = '{target}'
recovery_target_inclusive = off
recovery_target_action = 'promote'
"""

# The lab's own sessions (seeding, dumps, health) use Cloud SQL's management superuser,
# which no network setting restricts. Everyone else reaches the instance only if its
# ipConfiguration lets them: a private network, or an authorized network covering them.
ADMIN_USER = "cloudsqladmin"
_HBA = """\
local all all trust
host all {admin} 127.0.0.0/8 trust
host replication all 127.0.0.0/8 trust
host all all 127.0.0.0/8 {clients}
"""


def accepts_writes(url: str, connect_timeout: int = 2) -> bool:
    """Not in recovery and able to assign a transaction id: a write without clutter."""
    try:
        with psycopg.connect(url, connect_timeout=connect_timeout, autocommit=True) as conn:
            if conn.execute(b"SELECT pg_is_in_recovery()").fetchone() != (False,):
                return False
            conn.execute(b"SELECT pg_current_xact_id()")
            return True
    except psycopg.Error:
        return False


class PgCluster:
    """One PostgreSQL data folder and its server on ``host:port``."""

    def __init__(
        self,
        base: Path,
        host: str,
        port: int,
        *,
        open_to_clients: bool = True,
        archive: Path | None = None,
    ):
        self.base = base
        self.open_to_clients = open_to_clients
        # Where the server archives its WAL; None: no archiving (the initdb template).
        self.archive = archive
        self.data = base / "data"
        self.logfile = base / "server.log"
        self.host = host
        self.port = port

    # -- lifecycle -------------------------------------------------------------------
    def init(self, template: Path | None = None) -> None:
        """A fresh cluster: a copy of ``template`` if given (5x faster), else initdb."""
        prepare_folder(self.base)
        if template is not None:
            run_tool_raw(["cp", "-a", str(template), str(self.data)])
        else:
            run_tool(
                [
                    "initdb",
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                as_server_user=True,
            )
            # Single-user mode creates the role before any server (or network rule) runs.
            run_tool(
                ["postgres", "--single", "-D", str(self.data), "postgres"],
                as_server_user=True,
                stdin=f"CREATE ROLE {ADMIN_USER} SUPERUSER LOGIN;\n",
            )
        self._write_conf()

    def init_replica_of(self, primary: PgCluster) -> None:
        """A streaming standby: pg_basebackup -R from the primary's running server."""
        prepare_folder(self.base)
        run_tool(
            [
                "pg_basebackup",
                "-h",
                primary.host,
                "-p",
                str(primary.port),
                "-U",
                "postgres",
                "-D",
                str(self.data),
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
            ],
            as_server_user=True,
        )
        self._write_conf()

    def init_copy_of(self, source: PgCluster) -> None:
        """An independent copy of ``source``'s current state (pg_basebackup, no standby)."""
        prepare_folder(self.base)
        self._basebackup_from(source, self.data)
        self._write_conf()

    def base_backup(self, folder: Path) -> None:
        """A plain-format base backup with the WAL it needs, for point-in-time restores."""
        prepare_folder(folder)
        self._basebackup_from(self, folder)

    def _basebackup_from(self, source: PgCluster, folder: Path) -> None:
        run_tool(
            [
                "pg_basebackup",
                "-h",
                source.host,
                "-p",
                str(source.port),
                "-U",
                "postgres",
                "-D",
                str(folder),
                "-X",
                "fetch",
                "--checkpoint=fast",
                "--no-sync",
            ],
            as_server_user=True,
        )

    def archive_now(self, timeout_s: float = 60.0) -> None:
        """Close the current WAL segment and wait until the archiver has stored it.

        A transaction id taken first puts a commit record after every point asked for so
        far, so a replay to any earlier point finds its stop in the archive.
        """
        self.query("SELECT pg_current_xact_id()")
        segment = self.query("SELECT pg_walfile_name(pg_switch_wal())")[0][0]
        deadline = time.monotonic() + timeout_s
        while True:
            row = self.query("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver")
            archived = row[0][0] or ""
            if archived >= segment and len(archived) == len(segment):
                return
            if time.monotonic() > deadline:
                raise PgError(f"WAL segment {segment} was not archived within {timeout_s:.0f}s")
            time.sleep(0.05)

    def init_from_base_backup(self, backup: Path, archive: Path, target: datetime) -> None:
        """Restore ``backup``, replay ``archive`` up to ``target``, promote; leave it running."""
        prepare_folder(self.base)
        run_tool_raw(["cp", "-a", str(backup), str(self.data)])
        target_text = target.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        self._write_conf(_RECOVERY_CONF.format(archive=archive, target=target_text))
        self._write_owned(self.data / "recovery.signal", "")
        self.start()
        deadline = time.monotonic() + 120
        while self._in_recovery():
            if time.monotonic() > deadline:
                raise PgError(f"recovery to {target_text} did not end within 120 s")
            time.sleep(0.05)
        self._write_conf()  # the restore settings are spent; keep its own archiving only

    def _in_recovery(self) -> bool:
        try:
            return bool(self.query("SELECT pg_is_in_recovery()", timeout=2)[0][0])
        except PgError as exc:
            if self.pid() is None or not (self.data / "postmaster.pid").exists():
                raise PgError(f"recovery failed: {self._log_tail()}") from exc
            return True  # still starting up

    def _write_conf(self, extra: str = "") -> None:
        # The copied postgresql.conf includes lab.conf; rewriting it gives the copy its
        # own address (a base backup or template carries its source's lab.conf).
        conf = self.data / "postgresql.conf"
        include = "include_if_exists = 'lab.conf'\n"
        if include not in conf.read_text():
            with conf.open("a") as fh:
                fh.write("\n" + include)
        text = _LAB_CONF.format(host=self.host, port=self.port)
        if self.archive is not None:
            prepare_folder(self.archive)
            text += _ARCHIVE_CONF.format(archive=self.archive)
        self._write_owned(self.data / "lab.conf", text + extra)
        clients = "trust" if self.open_to_clients else "reject"
        self._write_owned(self.data / "pg_hba.conf", _HBA.format(admin=ADMIN_USER, clients=clients))

    def _write_owned(self, path: Path, text: str) -> None:
        path.write_text(text)
        if as_root():
            os.chown(path, *server_ids())

    def start(self) -> None:
        try:
            run_tool(
                [
                    "pg_ctl",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.logfile),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
                as_server_user=True,
            )
        except PgError as exc:
            # pg_ctl only says "could not start server; examine the log output", and the log
            # goes with the instance a failed create discards: keep its last lines.
            raise PgError(f"{exc}; the server's log ends: {self._log_tail()}") from exc

    def _log_tail(self, lines: int = 6) -> str:
        try:
            return " | ".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self) -> None:
        """Stop the server; escalate to SIGKILL so no postgres process outlives the lab."""
        if not (self.data / "postmaster.pid").exists():
            return
        for mode in ("fast", "immediate"):
            try:
                run_tool(
                    ["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "20", "stop"],
                    as_server_user=True,
                )
                return
            except PgError as exc:
                log.warning("pg_ctl stop -m %s of %s failed: %s", mode, self.data, exc)
        pid = self.pid()
        if pid is not None:
            # pg_ctl starts the postmaster in its own session, so its group is all of it.
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    # -- SQL ----------------------------------------------------------------------------
    def dsn(self, database: str = "postgres", connect_timeout: int = 5) -> str:
        return make_conninfo(
            host=self.host,
            port=self.port,
            user=ADMIN_USER,
            dbname=database,
            connect_timeout=connect_timeout,
            application_name="lifeboat-lab",
        )

    def query(
        self, statement: str | sql.Composed, database: str = "postgres", timeout: int = 5
    ) -> list[Any]:
        """Run one statement in autocommit mode; rows, or [] for statements without."""
        query = statement.encode() if isinstance(statement, str) else statement
        try:
            with psycopg.connect(self.dsn(database, timeout), autocommit=True) as conn:
                cur = conn.execute(query)
                return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise PgError(str(exc).strip()) from exc

    def create_database(self, name: str) -> None:
        self.query(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def databases(self) -> list[str]:
        rows = self.query("SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1")
        return [str(r[0]) for r in rows]

    def stop_receiving(self) -> None:
        """Stop streaming WAL from the primary; what was received is still replayed.

        The walreceiver stops when ``primary_conninfo`` goes empty and the configuration
        is reloaded (PostgreSQL 13+ applies it without a restart).
        """
        self.query("ALTER SYSTEM SET primary_conninfo = ''")
        self.query("SELECT pg_reload_conf()")

    def receiving_from(self) -> str:
        """The ``primary_conninfo`` it streams with ('' when it does not)."""
        return str(self.query("SHOW primary_conninfo")[0][0])

    def resume_receiving(self, conninfo: str) -> None:
        """Stream from the primary again, with what ``receiving_from`` said before."""
        self.query(sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(sql.Literal(conninfo)))
        self.query("SELECT pg_reload_conf()")

    def promote(self) -> None:
        if not self.query("SELECT pg_promote(wait => true, wait_seconds => 60)")[0][0]:
            raise PgError("pg_promote did not finish within 60 seconds")

    def accepts_writes(self) -> bool:
        return accepts_writes(self.dsn(connect_timeout=2))

    def replica_lag(self) -> dict[str, Any]:
        """How far the standby's replay trails what it has received from the primary."""
        row = self.query(
            "SELECT pg_is_in_recovery(),"
            " COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0),"
            " CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
            "  ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END,"
            " EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')"
        )[0]
        in_recovery, lag_bytes, lag_seconds, streaming = row
        return {
            "in_recovery": bool(in_recovery),
            "streaming": bool(streaming),
            "bytes": int(lag_bytes),
            "seconds": float(lag_seconds),
        }

    # -- dumps -------------------------------------------------------------------------
    def dump_custom(self, database: str, path: Path) -> None:
        run_tool(["pg_dump", *self._conn_args(database), "-Fc", "-f", str(path)])

    def dump_plain(self, database: str) -> bytes:
        return run_tool(["pg_dump", *self._conn_args(database), "-Fp"]).encode()

    def dump_roles(self) -> str:
        """The cluster's roles as SQL (``pg_dumpall --roles-only``): users are instance-wide."""
        args = ["-h", self.host, "-p", str(self.port), "-U", ADMIN_USER]
        return run_tool(["pg_dumpall", *args, "--roles-only"])

    def restore_roles(self, script: str) -> None:
        """Create the roles a dump names that are missing here, then apply their settings."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            for line in script.splitlines():
                statement = line.strip()
                if not statement.startswith(("CREATE ROLE", "ALTER ROLE")):
                    continue
                try:
                    conn.execute(statement.encode())
                except psycopg.errors.DuplicateObject:
                    continue  # the role exists here already (postgres, cloudsqladmin)

    def restore_custom(self, database: str, path: Path) -> None:
        """Replace ``database`` with the dump's: drop it (kicking sessions), recreate it."""
        self.drop_database(database)
        run_tool(
            ["pg_restore", *self._conn_args("template1"), "--create", "--exit-on-error", str(path)]
        )

    def drop_database(self, database: str) -> None:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        self.query(drop, database="template1")

    def run_script(self, database: str, script: bytes, user: str = ADMIN_USER) -> None:
        """Feed a plain-SQL dump to ``psql``, stopping at the first error as Cloud SQL's
        import does (a failed import reports psql's "exit status 3", ON_ERROR_STOP's code)."""
        args = ["-h", self.host, "-p", str(self.port), "-U", user, "-d", database]
        run_tool(
            ["psql", *args, "-X", "-q", "-v", "ON_ERROR_STOP=1"],
            stdin=script.decode("utf-8", errors="replace"),
        )

    def users(self) -> list[str]:
        """Login roles a client could use: not the lab's admin, not PostgreSQL's own."""
        rows = self.query(
            "SELECT rolname FROM pg_roles WHERE rolcanlogin AND rolname NOT LIKE 'pg\\_%'"
            f" AND rolname <> '{ADMIN_USER}' ORDER BY 1"
        )
        return [str(r[0]) for r in rows]

    def create_user(self, name: str, password: str | None) -> None:
        statement = sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name))
        if password:
            statement = sql.SQL("{} PASSWORD {}").format(statement, sql.Literal(password))
        self.query(statement)

    def _conn_args(self, database: str) -> list[str]:
        return ["-h", self.host, "-p", str(self.port), "-U", ADMIN_USER, "-d", database]
