"""The Cloud SQL backend: instances on real PostgreSQL clusters, their operations and backups.

Methods named after API operations return an ``Operation`` at once and do the real work
later (see ``runner.py``); the lab-facing methods (``create_instance``, ``dsn``,
``accepts_writes``, ``replica_lag`` …) act immediately. One lock guards all state; the
PostgreSQL work itself runs outside it.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lab.core.context import LabContext
from lab.core.errors import Unavailable
from lab.sql.backups import BackupRuns
from lab.sql.clones import Clones
from lab.sql.content import InstanceContent
from lab.sql.exceptions import (
    InstanceAlreadyExists,
    InstanceNotFound,
    InvalidRequest,
    OperationInProgress,
    OperationNotFound,
    RegionUnavailable,
)
from lab.sql.instances import InstanceOperations
from lab.sql.pgtools import server_home
from lab.sql.postgres import PgCluster
from lab.sql.resources import (
    DATABASE_VERSION,
    DEFAULT_TIER,
    Instance,
    Operation,
    OperationError,
    reachable,
    valid_instance_name,
)
from lab.sql.runner import OperationRunner
from lab.sql.wire import instance_json

_REGION = "us-central1"


class SqlBackend(InstanceOperations, InstanceContent, BackupRuns, Clones):
    """All Cloud SQL state of one lab; thread-safe."""

    def __init__(self, ctx: LabContext):
        self.ctx = ctx
        self._root = ctx.settings.root / "sql"
        self._lock = threading.RLock()
        self._instances: dict[tuple[str, str], Instance] = {}
        self._operations: dict[str, Operation] = {}
        self._runner = OperationRunner(
            ctx.scheduler, self._lock, lambda: ctx.latency.seconds("sql.pending")
        )
        self._template_lock = threading.Lock()
        self._home, self._private_home = server_home(self._root)
        BackupRuns.__init__(self)
        atexit.register(self.shutdown)  # a crashed test run must not leave servers behind

    # -- lab-facing ------------------------------------------------------------------------
    def create_instance(
        self,
        project: str,
        name: str,
        region: str,
        *,
        databases: list[str],
        master: str | None = None,
        tier: str = DEFAULT_TIER,
        labels: dict[str, str] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a RUNNABLE instance now, for seeding; a replica if ``master`` is given."""
        with self._lock:
            inst = self._register(
                project, name, region, master, tier, labels or {}, settings=settings or {}
            )
            inst.busy_with = "lab-seed"
        self._build(inst, databases)
        with self._lock:
            inst.busy_with = None
            return instance_json(inst)

    def address(self, project: str, name: str) -> tuple[str, int]:
        with self._lock:
            inst = self._get(project, name)
            return inst.host, inst.port

    def dsn(self, project: str, name: str, database: str = "postgres") -> str:
        with self._lock:
            cluster = self._get(project, name).cluster
        return cluster.dsn(database)

    def accepts_writes(self, project: str, name: str) -> bool:
        with self._lock:
            cluster = self._get(project, name).cluster
        return cluster.accepts_writes()

    def replica_lag(self, project: str, name: str) -> dict[str, Any]:
        """``seconds`` and ``bytes`` the standby's replay trails, plus ``streaming``."""
        with self._lock:
            cluster = self._get(project, name).cluster
        return cluster.replica_lag()

    def primaries_in_region(self, region: str) -> list[tuple[str, str]]:
        """(project, name) of the RUNNABLE primaries in ``region``: what region health probes."""
        with self._lock:
            return sorted(
                i.key
                for i in self._instances.values()
                if i.region == region and i.master is None and i.state == "RUNNABLE"
            )

    def reset(self) -> None:
        """Stop and remove every cluster, backup and operation; keep the initdb template,
        which holds no instance's data and costs an initdb to make again."""
        self._stop_all()
        if self._private_home:  # the root holds only links to the clusters' folders
            shutil.rmtree(self._root, ignore_errors=True)
        # When the clusters live under the root itself, so does the template: removing the
        # root made every reset pay for an initdb (1.1-1.5 s, measured on 2 cores).
        for child in self._home.glob("*") if self._home.exists() else []:
            if child.name != _TEMPLATE:
                shutil.rmtree(child, ignore_errors=True)
        self._forget_backups(remove_files=True)

    def shutdown(self) -> None:
        """Stop every cluster; no postgres process is left running.

        The data stays under the lab's root, unless it had to live in a private /tmp
        folder (see ``server_home``): that folder goes, or each run would leak it.
        """
        self._stop_all()
        if self._private_home:
            shutil.rmtree(self._home, ignore_errors=True)

    def _stop_all(self) -> None:
        self._runner.cancel_all()
        with self._lock:
            instances = list(self._instances.values())
            self._instances.clear()
            self._operations.clear()
        if instances:  # each stop waits for its own postmaster: they go together
            with ThreadPoolExecutor(max_workers=len(instances)) as pool:
                list(pool.map(lambda inst: inst.cluster.stop(), instances))

    # -- SqlInstancesService -------------------------------------------------------------------
    def get_instance(self, project: str, name: str) -> Instance:
        with self._lock:
            return self._get(project, name)

    def fail_operations(self, operation_type: str, code: str, message: str, count: int) -> None:
        """Lab control: the next ``count`` operations of the type fail at their end."""
        self._runner.arm(operation_type, OperationError(code, message), count)

    def list_databases(self, project: str, name: str) -> list[str]:
        """The instance's databases, read from its cluster; Cloud SQL hides ``cloudsqladmin``
        (its own), and lists ``postgres`` (the default database every instance has)."""
        with self._lock:
            cluster = self._get(project, name).cluster
        return [d for d in cluster.databases() if d != "cloudsqladmin"]

    def list_instances(self, project: str) -> list[Instance]:
        with self._lock:
            return sorted(
                (i for i in self._instances.values() if i.project == project), key=lambda i: i.name
            )

    # -- SqlOperationsService -------------------------------------------------------------
    def get_operation(self, project: str, name: str) -> Operation:
        with self._lock:
            op = self._operations.get(name)
            if op is None or op.project != project:
                raise OperationNotFound(name)
            return op

    def list_operations(self, project: str, instance: str) -> list[Operation]:
        with self._lock:
            ops = [
                o
                for o in self._operations.values()
                if o.project == project and (not instance or o.target == instance)
            ]
        return sorted(ops, key=lambda o: o.insert_time, reverse=True)

    # -- internals ----------------------------------------------------------------------------
    def _get(self, project: str, name: str) -> Instance:
        inst = self._instances.get((project, name))
        if inst is None:
            raise InstanceNotFound(project, name)
        return inst

    def _mutable(self, project: str, name: str) -> Instance:
        """The instance, if it can take an admin operation now."""
        inst = self._get(project, name)
        if self.ctx.is_down(inst.region):
            raise RegionUnavailable(inst.region)
        if inst.busy_with is not None:
            raise OperationInProgress(name, inst.busy_with)
        return inst

    def _delay(self, key: str) -> float:
        return self.ctx.latency.seconds(key)

    def _begin(
        self,
        inst: Instance,
        op_type: str,
        delay: float,
        work: Callable[[], None],
        *,
        on_running: Callable[[], None] | None = None,
        on_failed: Callable[[str], None] | None = None,
        **fields: Any,
    ) -> Operation:
        op = Operation(project=inst.project, target=inst.name, operation_type=op_type, **fields)
        self._operations[op.name] = op
        inst.busy_with = op.name

        def release() -> None:
            if inst.busy_with == op.name:
                inst.busy_with = None

        self._runner.start(
            op, delay, work, release=release, on_running=on_running, on_failed=on_failed
        )
        return op

    def _register(
        self,
        project: str,
        name: str,
        region: str,
        master: str | None,
        tier: str,
        labels: dict[str, str],
        *,
        settings: dict[str, Any],
        database_version: str = DATABASE_VERSION,
    ) -> Instance:
        """Validate a new instance, reserve its address and record it as PENDING_CREATE."""
        if not valid_instance_name(name):
            raise InvalidRequest(f"Invalid instance name {name!r}.")
        if (project, name) in self._instances:
            raise InstanceAlreadyExists(name)
        master_name = self._check_master(project, master) if master else None
        # Google's defaults: a replica stays in its primary's region, others go to us-central1.
        if not region:
            region = self._instances[(project, master_name)].region if master_name else _REGION
        if self.ctx.is_down(region):
            raise RegionUnavailable(region)
        port = self.ctx.settings.pg_port
        cluster = PgCluster(
            self._home / project / name,
            self._free_host(),
            port,
            open_to_clients=reachable(settings),
            archive=self._home / project / name / "wal-archive",
        )
        if self._private_home:  # keep the data findable under the lab's root
            link = self._root / project / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(cluster.base)
        inst = Instance(
            project,
            name,
            region,
            cluster,
            tier=tier,
            labels=dict(labels),
            master=master_name,
            database_version=database_version,
            settings=dict(settings),
        )
        self._instances[inst.key] = inst
        return inst

    def _check_master(self, project: str, master: str) -> str:
        # Google accepts "name" or "project:name" on input and returns "project:name".
        master_project, _, master_name = master.rpartition(":")
        if master_project and master_project != project:
            raise InvalidRequest("A read replica must be in its primary's project.")
        primary = self._get(project, master_name)
        if primary.master is not None or primary.state != "RUNNABLE":
            raise InvalidRequest(f"The instance {master_name} cannot serve as a primary now.")
        if self.ctx.is_down(primary.region):
            raise RegionUnavailable(primary.region)
        return master_name

    def _free_host(self) -> str:
        """The lowest free prefix+N (N ≥ 2) whose port nothing else already holds."""
        used = {i.host for i in self._instances.values()}
        port = self.ctx.settings.pg_port
        for n in range(2, 255):
            host = f"{self.ctx.settings.pg_address_prefix}{n}"
            if host not in used and _bindable(host, port):
                return host
        raise Unavailable("The lab has no free PostgreSQL address left.")

    def _build(self, inst: Instance, databases: list[str]) -> None:
        """Bring the instance's real cluster up; on failure forget the instance again."""
        try:
            if inst.master is not None:
                with self._lock:
                    primary = self._get(inst.project, inst.master).cluster
                inst.cluster.init_replica_of(primary)
            else:
                inst.cluster.init(template=self._template())
            inst.cluster.start()
            for database in databases if inst.master is None else []:
                inst.cluster.create_database(database)
            self.take_base_backup(inst)  # where point-in-time recovery can start from
        except Exception:
            self._discard(inst)
            raise
        with self._lock:
            current = self._instances.get(inst.key) is inst
            if current:
                inst.state = "RUNNABLE"
                primary_inst = self._instances.get((inst.project, inst.master or ""))
                if primary_inst is not None and inst.name not in primary_inst.replicas:
                    primary_inst.replicas.append(inst.name)
        if not current:  # a reset or shutdown came meanwhile: leave no server behind
            inst.cluster.stop()
            raise Unavailable(f"The lab stopped while {inst.name} was being created.")

    def _discard(self, inst: Instance) -> None:
        """Remove the instance's cluster, data and record."""
        inst.cluster.remove()
        if self._private_home:
            (self._root / inst.project / inst.name).unlink(missing_ok=True)
        with self._lock:
            self._instances.pop(inst.key, None)
            self._unlink_from_master(inst)

    def _template(self) -> Path:
        """An initdb'd data folder that new primaries copy: faster than initdb each time."""
        with self._template_lock:
            template = PgCluster(self._home / _TEMPLATE, "127.0.0.1", self.ctx.settings.pg_port)
            if not (template.data / "PG_VERSION").exists():
                shutil.rmtree(template.base, ignore_errors=True)
                template.init()
            return template.data

    def _unlink_from_master(self, inst: Instance) -> None:
        primary = self._instances.get((inst.project, inst.master or ""))
        if primary is not None and inst.name in primary.replicas:
            primary.replicas.remove(inst.name)


_TEMPLATE = "_template"


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


Backend = SqlBackend
