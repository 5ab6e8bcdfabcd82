"""gcloud sql, Google's own CLI, against the lab's Cloud SQL and Cloud Storage: seed 004's
recovery testing (``gcloud sql backups list / restore``), ``gcloud sql export sql``, and an
export imported into another instance (``databases create``, ``users create``, ``import sql``).
Only the sql and storage APIs are overridden, so nothing reaches Google. (Describe,
list, promote-replica, operations list and backups create are in test_sql.py.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from lab import storage
from lab.core.context import LabContext
from lab.core.serve import ThreadedServer
from lab.core.settings import LabSettings
from lab.sql import SqlBackend, create
from lab.storage import StorageBackend
from tests.contract.conftest import free_port
from tests.contract.gcloud_cli import GCLOUD, SKIP_REASON, Gcloud

PROJECT = "ml-datadriven-recos"
PRIMARY, TARGET = "cli-prod", "cli-restore-target"
BUCKET = "varai-backups"

pytestmark = pytest.mark.skipif(GCLOUD is None, reason=SKIP_REASON)


@dataclass
class SqlCli:
    ctx: LabContext
    sql: SqlBackend
    storage: StorageBackend
    gcloud: Gcloud

    def rows(self, instance: str) -> int:
        with psycopg.connect(self.sql.dsn(PROJECT, instance, "orders")) as conn:
            row = conn.execute("SELECT count(*) FROM orders").fetchone()
            assert row is not None
            return int(row[0])


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlCli]:
    root = tmp_path_factory.mktemp("sql-gcloud")
    settings = LabSettings(
        root=root, time_scale=0.002, pg_address_prefix="127.0.79.", pg_port=free_port()
    )
    ctx = LabContext.create(settings)
    sql_backend, sql_app = create(ctx)
    storage_backend, storage_app = storage.create(ctx)  # exports land in the real emulator
    storage_backend.create_bucket(PROJECT, BUCKET)
    servers = [
        ThreadedServer(sql_app, "127.0.0.1", free_port(), "sql"),
        ThreadedServer(storage_app, "127.0.0.1", free_port(), "storage"),
    ]
    for server in servers:
        server.start()
    sql_backend.create_instance(PROJECT, PRIMARY, "us-central1", databases=["orders"])
    sql_backend.create_instance(PROJECT, TARGET, "us-east1", databases=[])
    with psycopg.connect(sql_backend.dsn(PROJECT, PRIMARY, "orders"), autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, item text)")
        conn.execute("INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 300) g")
    gcloud = Gcloud(root / "gcloud", {"sql": servers[0].url, "storage": servers[1].url}, PROJECT)
    yield SqlCli(ctx, sql_backend, storage_backend, gcloud)
    for server in servers:
        server.stop()
    sql_backend.shutdown()
    ctx.scheduler.stop()


def test_gcloud_exports_sql_into_cloud_storage(cli: SqlCli) -> None:
    uri = f"gs://{BUCKET}/exports/{PRIMARY}.sql"
    exported = cli.gcloud.run("sql", "export", "sql", PRIMARY, uri, "--database=orders")
    assert exported.returncode == 0, exported.stderr  # gcloud waits for the operation
    dump = cli.storage.read_object(BUCKET, f"exports/{PRIMARY}.sql")
    assert b"CREATE TABLE public.orders" in dump and b"item 300" in dump
    ops = cli.gcloud.run(
        "sql", "operations", "list", f"--instance={PRIMARY}", "--format=value(operationType,status)"
    )
    assert ops.returncode == 0 and "EXPORT\tDONE" in ops.stdout

    missing = cli.gcloud.run(
        "sql", "export", "sql", PRIMARY, "gs://no-such-bucket/x.sql", "--database=orders"
    )
    assert missing.returncode != 0
    assert cli.storage.list_objects(BUCKET) == cli.storage.list_objects(BUCKET, "exports/")


def test_gcloud_restores_the_latest_backup_into_another_instance(cli: SqlCli) -> None:
    """Seed 004's recovery test: take the latest backup id from ``backups list``, then
    ``backups restore`` it into a scratch instance."""
    created = cli.gcloud.run("sql", "backups", "create", f"--instance={PRIMARY}")
    assert created.returncode == 0, created.stderr
    listed = cli.gcloud.run(
        "sql", "backups", "list", f"--instance={PRIMARY}", "--limit=1", "--format=json"
    )
    assert listed.returncode == 0, listed.stderr
    [latest] = json.loads(listed.stdout)
    assert latest["status"] == "SUCCESSFUL"

    restored = cli.gcloud.run(
        "sql", "backups", "restore", str(latest["id"]),
        f"--restore-instance={TARGET}", f"--backup-instance={PRIMARY}",
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert cli.rows(TARGET) == cli.rows(PRIMARY) == 300

    unknown = cli.gcloud.run(
        "sql", "backups", "restore", "4242",
        f"--restore-instance={TARGET}", f"--backup-instance={PRIMARY}",
    )  # fmt: skip
    assert unknown.returncode != 0
    assert cli.rows(TARGET) == 300  # a refused restore leaves the target as it was


def test_gcloud_imports_an_export_only_into_a_database_that_exists_with_the_users_it_grants_to(
    cli: SqlCli,
) -> None:
    """An export names neither its database nor the instance's users: importing it into a
    new instance needs both made first, and the import stops at the first failing line."""
    with psycopg.connect(cli.sql.dsn(PROJECT, PRIMARY, "orders"), autocommit=True) as conn:
        conn.execute("CREATE ROLE reader LOGIN")
        conn.execute("GRANT SELECT ON orders TO reader")
    uri = f"gs://{BUCKET}/exports/granted.sql"
    assert cli.gcloud.run("sql", "export", "sql", PRIMARY, uri, "--database=orders").returncode == 0
    cli.sql.create_instance(PROJECT, "cli-import", "us-east1", databases=[])

    def import_into(database: str) -> str:
        done = cli.gcloud.run("sql", "import", "sql", "cli-import", uri, f"--database={database}")
        return "" if done.returncode == 0 else done.stderr

    assert 'database "orders" does not exist' in import_into("orders")
    made = cli.gcloud.run("sql", "databases", "create", "orders", "--instance=cli-import")
    assert made.returncode == 0, made.stderr
    assert 'role "reader" does not exist' in import_into("orders")  # stopped at the GRANT

    user = cli.gcloud.run("sql", "users", "create", "reader", "--instance=cli-import")
    assert user.returncode == 0, user.stderr
    assert (
        cli.gcloud.run("sql", "databases", "create", "fresh", "--instance=cli-import").returncode
        == 0
    )
    assert import_into("fresh") == ""
    with psycopg.connect(cli.sql.dsn(PROJECT, "cli-import", "fresh")) as conn:
        count = conn.execute("SELECT count(*) FROM orders").fetchone()
        granted = conn.execute(
            "SELECT has_table_privilege('reader', 'orders', 'SELECT')"
        ).fetchone()
    assert count == (300,) and granted == (True,)
    assert "does not exist" in import_into("fresh-missing")
    missing = cli.gcloud.run(
        "sql", "import", "sql", "cli-import", f"gs://{BUCKET}/no-such.sql", "--database=fresh"
    )
    assert missing.returncode != 0


def test_gcloud_never_runs_for_an_api_without_an_override(cli: SqlCli, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="no lab endpoint override"):
        cli.gcloud.run("compute", "url-maps", "list")
