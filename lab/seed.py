"""Put the emulators into the state a topology describes: the lab's "before" picture."""

from __future__ import annotations

import psycopg

from lab.compute.backend_services import serverless_backend
from lab.core.context import LabContext
from lab.dns.seed_data import geo_record_set
from lab.mongo.seed_data import seed_varai
from lab.regions.app import ORDERS_SERVICE
from lab.regions.instances import DATABASE_URL_ENV, DATABASE_URL_FILE
from lab.topology import LabTopology, Role

# Seed 004's integrity queries count these tables; the data is small but real.
_SQL_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id bigserial PRIMARY KEY, email text UNIQUE NOT NULL, created_at timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS conversations (
    id bigserial PRIMARY KEY, user_id bigint REFERENCES users(id), topic text,
    created_at timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS recommendations (
    id bigserial PRIMARY KEY, user_id bigint REFERENCES users(id), sku text, score real,
    created_at timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS lab_heartbeat (
    region text PRIMARY KEY, at timestamptz NOT NULL);
-- The region apps' write path (POST /orders) connects as the apps' role.
CREATE TABLE IF NOT EXISTS orders (
    id text PRIMARY KEY, region text NOT NULL, body text NOT NULL,
    created_at timestamptz DEFAULT now());
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'varai_user') THEN
        CREATE ROLE varai_user LOGIN;
    END IF;
END $$;
GRANT SELECT, INSERT ON orders TO varai_user;
INSERT INTO users (email)
    SELECT 'user' || g || '@varai.example' FROM generate_series(1, 500) g;
INSERT INTO conversations (user_id, topic)
    SELECT 1 + (g % 500), 'frames for ' || (ARRAY['oval','round','square'])[1 + g % 3]
    FROM generate_series(1, 2000) g;
INSERT INTO recommendations (user_id, sku, score)
    SELECT 1 + (g % 500), 'VR-' || lpad((g % 200)::text, 5, '0'), (g % 100) / 100.0
    FROM generate_series(1, 3000) g;
"""


# What a production Cloud SQL instance of this kind looks like: private IP only (so a copy
# made without its network would be unreachable), backups with 7 days of point-in-time
# recovery on the primary (seed 004), a tuned flag. New instances must copy these.
_SQL_TIER = "db-custom-4-15360"


def _sql_settings(project: str, *, primary: bool) -> dict[str, object]:
    settings: dict[str, object] = {
        "edition": "ENTERPRISE",
        "availabilityType": "ZONAL",
        "ipConfiguration": {
            "ipv4Enabled": False,
            "privateNetwork": f"projects/{project}/global/networks/varai-vpc",
        },
        "databaseFlags": [{"name": "max_connections", "value": "200"}],
    }
    if primary:
        # Production primaries carry deletion protection (the console and Terraform turn
        # it on by default); a replica does not inherit it (sql/docs/deletion-protection).
        settings["deletionProtectionEnabled"] = True
        settings["backupConfiguration"] = {
            "enabled": True,
            "pointInTimeRecoveryEnabled": True,
            "transactionLogRetentionDays": 7,
        }
    return settings


def project_ids(topology: LabTopology) -> list[str]:
    """Every project the topology names: the ones Resource Manager knows in the lab."""
    sql = topology.cloud_sql
    named = [topology.regions.by_role(role).project for role in Role]
    named += [topology.dns.project, sql.primary.project, sql.replica.project]
    named += [sql.app_secret.project, topology.cdn.project]
    return list(dict.fromkeys(named))


def seed_cloud(ctx: LabContext, topology: LabTopology) -> None:
    """Projects, zones, records, services, instances, url map and buckets, as before any
    failover."""
    ctx.backends["resourcemanager"].seed_projects(project_ids(topology))
    dns = ctx.backends["dns"]
    dns.create_zone(topology.dns.project, topology.dns.zone, topology.dns.dns_name)
    for record in topology.dns.records:
        dns.set_rrset(
            topology.dns.project,
            topology.dns.zone,
            record.name,
            record.type,
            record.ttl,
            record.rrdatas[Role.primary],
        )
    first = topology.dns.records[0]
    by_region = {topology.regions.by_role(role).name: first.rrdatas[role] for role in first.rrdatas}
    dns.seed_rrset(topology.dns.project, topology.dns.zone, geo_record_set(first.name, by_region))

    sql = ctx.backends["sql"]
    primary, replica = topology.cloud_sql.primary, topology.cloud_sql.replica
    sql.create_instance(
        primary.project,
        primary.instance,
        primary.region,
        databases=topology.cloud_sql.databases,
        tier=_SQL_TIER,
        settings=_sql_settings(primary.project, primary=True),
    )
    with psycopg.connect(
        sql.dsn(primary.project, primary.instance, topology.cloud_sql.databases[0])
    ) as conn:
        conn.execute(_SQL_SCHEMA)
    sql.create_instance(
        replica.project,
        replica.instance,
        replica.region,
        databases=topology.cloud_sql.databases,
        master=primary.instance,
        tier=_SQL_TIER,
        settings=_sql_settings(replica.project, primary=False),
    )

    # The apps' database URL, as seed 004 keeps it (`prod-database-url`, in the project
    # its failover writes to), replicated to both regions so that one outage leaves it
    # readable. It must exist before the services: their instances read it at start.
    secret = topology.cloud_sql.app_secret
    host, port = sql.address(primary.project, primary.instance)
    user = topology.cloud_sql.app_user
    ctx.backends["secretmanager"].seed_secret(
        secret.project,
        secret.name,
        f"postgresql://{user}@{host}:{port}/{topology.cloud_sql.databases[0]}",
        [topology.regions.primary.name, topology.regions.secondary.name],
    )

    run = ctx.backends["run"]
    for role in Role:
        region = topology.regions.by_role(role)
        for service in topology.services:
            scaling = service.active_scaling if role is Role.primary else service.standby_scaling
            # Mounted as a file at `latest`, read on each use (Google's advice for a
            # secret that changes). The service behind the write path (/orders) takes it
            # as an env var at `latest` instead, resolved when its instances start, so
            # the flows meet both: its running instances keep the URL they started with.
            reference = (secret.resource, "latest")
            as_env = service.name == ORDERS_SERVICE
            run.create_service(
                region.project,
                region.name,
                service.name,
                image=service.image,
                min_instances=scaling.min,
                max_instances=scaling.max,
                secret_files=None if as_env else {DATABASE_URL_FILE: reference},
                secret_env={DATABASE_URL_ENV: reference} if as_env else None,
            )

    _seed_load_balancer(ctx, topology)

    storage = ctx.backends["storage"]
    for bucket in (topology.backups.bucket, topology.backups.records_bucket):
        storage.create_bucket(topology.regions.primary.project, bucket, location="US")
    # The cross-region copies' buckets, each in its own region (a bucket's location is
    # fixed at creation: cloud.google.com/storage/docs/locations).
    for copy in topology.backups.copies:
        storage.create_bucket(topology.regions.primary.project, copy.bucket, location=copy.location)
    # The static assets the CDN serves (seed 004's widget assets), a few small files.
    if topology.cdn.assets_bucket:
        storage.create_bucket(topology.cdn.project, topology.cdn.assets_bucket, location="US")
        for name, body, kind in ASSETS:
            storage.insert_object(topology.cdn.assets_bucket, name, body, content_type=kind)


def _seed_load_balancer(ctx: LabContext, topology: LabTopology) -> None:
    """The CDN's url-map and the backend service it names: Cloud CDN on, one serverless
    NEG per region in front of its Cloud Run services, as seed 004's load balancer has."""
    compute, cdn = ctx.backends["compute"], topology.cdn
    backends = [
        serverless_backend(cdn.project, region.name, f"{cdn.url_map}-neg-{region.name}")
        for region in (
            topology.regions.by_role(Role.primary),
            topology.regions.by_role(Role.secondary),
        )
    ]
    service = compute.create_backend_service(
        cdn.project, f"{cdn.url_map}-backend", backends, enable_cdn=True
    )
    compute.create_url_map(cdn.project, cdn.url_map, [cdn.host], service["selfLink"])


ASSETS = [
    ("widget/v1/widget.js", b"window.varai={load:function(){}};\n", "text/javascript"),
    ("widget/v1/widget.css", b".varai-widget{display:block}\n", "text/css"),
    ("img/logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>\n', "image/svg+xml"),
]


def seed_mongo(uri: str, topology: LabTopology) -> dict[str, int]:
    counts: dict[str, int] = {}
    for database in topology.mongodb.databases:
        for name, count in seed_varai(uri, database).items():
            counts[f"{database}.{name}"] = count
    return counts
