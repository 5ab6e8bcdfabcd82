"""The IAM permissions each flow needs, per project: one table of every Google API call.

Each row is one distinct call as the lab's request log sees it (API, HTTP method, path
pattern), the permissions Google documents for it, the flows that make it, and where it
lands in the topology (which project). ``lifeboat iam`` prints it per flow and project;
``tests/flows/test_iam_table.py`` runs flows against the lab and fails on any logged call
that no row matches, whose row does not name the flow, or whose project is not where the
row lands, so the table cannot drift from the code.

A path pattern's ``{name}`` is one path segment up to any ``:verb``; ``{object}`` (a
Cloud Storage object name) is the rest of the path, slashes included.

Where the permissions come from (Google's documentation, under https://cloud.google.com/):
- Cloud Run: run/docs/reference/iam/permissions and iam/docs/roles-permissions/run
  (roles/run.developer holds ``run.operations.*``); updating a service needs
  ``iam.serviceAccounts.actAs`` on its runtime service account
  (run/docs/configuring/services/service-identity: "creating or updating a service or
  revision require[s] the deployer account to have permissions on the service identity").
- Cloud SQL: sql/docs/postgres/iam-permissions ("Get the operations of an instance:
  cloudsql.instances.get"; "List the operations of an instance: cloudsql.instances.list";
  restoring a backup to an existing instance: cloudsql.backupRuns.get and
  cloudsql.instances.restoreBackup; a clone, point-in-time recovery included:
  cloudsql.instances.clone) and sql/docs/postgres/iam-roles.
- Cloud DNS: dns/docs/access-control ("dns.changes.create" plus
  ``dns.resourceRecordSets.create/update/delete`` for what the change adds, updates or
  deletes, on the project that holds the record set) and dns/docs/reference/v1/changes/create
  ("additional permissions are checked depending on the specific additions or deletions").
- Compute (Cloud CDN): compute/docs/reference/rest/v1/urlMaps/invalidateCache,
  compute/docs/reference/rest/v1/backendServices/get and load-balancing/docs/access-control.
- Cloud Storage: storage/docs/access-control/iam-json (per JSON method) and
  storage/docs/access-control/iam-permissions; replacing an existing object needs
  ``storage.objects.delete`` as well as ``storage.objects.create``
  (storage/docs/access-control/iam-xml, note 4). A rewrite (the cross-region copies)
  needs "storage.objects.create on the destination bucket", "storage.objects.delete on
  the destination bucket, if overwriting an existing object" and "storage.objects.get on
  the source bucket" (storage/docs/json_api/v1/objects/rewrite).
- Cloud Monitoring: monitoring/access-control ("monitoring.timeSeries.list" for
  projects.timeSeries.list; held by roles/monitoring.viewer).
- Secret Manager: iam/docs/roles-permissions/secretmanager,
  secret-manager/docs/add-secret-version and secret-manager/docs/access-secret-version.
- Cloud Resource Manager: resource-manager/reference/rest/v1/projects/testIamPermissions
  ("There are no permissions required for making this API call"); readiness asks it, with
  the v3 method of the same name, which of this table's permissions the worker holds.
- Custom roles: ``gcloud iam roles create ROLE_ID --project=P --file=F``
  (sdk/gcloud/reference/iam/roles/create); the fields and limits of a role (title up to
  100 UTF-8 bytes; id of 3 to 64 letters, digits, underscores, periods):
  iam/reference/rest/v1/projects.roles and projects.roles/create. commands/iam.py prints
  one role per project.

Not confirmed against a stored Google page (the names follow Google's method-to-permission
convention, and roles that hold them are documented): ``compute.urlMaps.invalidateCache``
(the REST page's IAM section was not in the stored copy); ``run.operations.get`` (the
Cloud Run roles page lists ``run.operations.*`` for roles/run.developer); and which of
``dns.resourceRecordSets.create/update/delete`` Google checks for a change that deletes a
set and adds one of the same name and type (Lifeboat's switch): all three are listed.

Not the worker's permissions, so not in the table: a Cloud SQL export writes its object
with the *instance's* service account, which needs ``storage.objects.create`` on the
backup bucket; MongoDB and PostgreSQL are reached over their own protocols. The operator's
``lifeboat discover`` has rows (``COMMANDS``) but is left out of the worker's roles.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from lifeboat.topology import Topology


class Place(StrEnum):
    """Where a call lands in the topology; ``projects_of`` turns it into project ids."""

    primary_region = "primary region"  # its Cloud Run services
    secondary_region = "secondary region"
    cloud_sql = "Cloud SQL"  # the primary and replica instances (one project)
    dns = "DNS zone"
    cdn = "CDN url-map"
    buckets = "buckets"  # the backup, records and cross-region copy buckets
    assets = "CDN assets bucket"  # what the config backup copies (cdn.assets_bucket)
    app_secret = "app secret"  # the apps' database-URL secret


# Every flow a deployment runs (deployments/prefect.yaml), by its Prefect flow name.
FLOWS = (
    "failover",
    "failback",
    "rollback",
    "backup",
    "backup-staleness",
    "mongo-capture",
    "config-backup",
    "restore",
    "restore-sql",
    "restore-config",
    "recovery-drill",
    "drill-sweeper",
    "readiness",
    "watch",
)

# The commands an operator runs with their own credentials: named in the table, so the
# text says what they need, but left out of the worker's roles.
COMMANDS = ("discover",)
USERS = FLOWS + COMMANDS

# The flows that switch regions touch services, data and traffic alike.
SWITCHES = frozenset({"failover", "failback"})
REGIONS = (Place.primary_region, Place.secondary_region)
# The object writes every flow with a run record makes (tasks/records.py).
RECORDED = frozenset(FLOWS) - {"watch"}


@dataclass(frozen=True)
class Call:
    """One distinct Google API call Lifeboat makes, and what it needs.

    Attributes:
        api: the API as the lab's request log names it (run, sql, dns, compute, storage,
            secretmanager, monitoring, resourcemanager).
        method: the HTTP method.
        path: the path pattern; ``{x}`` is one segment, ``{object}`` the rest.
        permissions: what Google checks for it, on the project it lands in.
        flows: the flows that make it.
        lands_on: where in the topology its resource lives.
        does: what Lifeboat uses it for, and why a permission beyond the obvious is listed.
        narrow: places of ``lands_on`` that only some of the flows reach, with those
            flows: a call one flow makes on more resources than another (the config
            backup reads every secret and the CDN's assets) grants the others no more.
    """

    api: str
    method: str
    path: str
    permissions: tuple[str, ...]
    flows: frozenset[str]
    lands_on: tuple[Place, ...]
    does: str
    narrow: tuple[tuple[Place, frozenset[str]], ...] = ()

    def places(self, flow: str) -> tuple[Place, ...]:
        """Where this call lands when ``flow`` makes it."""
        only = dict(self.narrow)
        return tuple(p for p in self.lands_on if p not in only or flow in only[p])

    def matches(self, api: str, method: str, path: str) -> bool:
        return (
            api == self.api
            and method.upper() == self.method
            and re.fullmatch(_regex(self.path), path) is not None
        )


def _regex(pattern: str) -> str:
    parts = re.split(r"(\{[a-z_]+\})", pattern)
    return "".join(
        # A segment's id stops at a colon: ``{version}:access`` is a custom verb on it.
        ((".+" if p == "{object}" else "[^/:]+") if p.startswith("{") else re.escape(p))
        for p in parts
    )


def _flows(*names: str) -> frozenset[str]:
    return frozenset(names)


# The config backup reads what no other flow does: every secret of the regions' projects,
# and the CDN's assets bucket (flows/config_backup.py).
_ASSETS_FOR_CONFIG = ((Place.assets, frozenset({"config-backup"})),)
_REGIONS_FOR_CONFIG = tuple((p, frozenset({"config-backup", "restore-config"})) for p in REGIONS)

_RUN_SERVICE = "/v2/projects/{project}/locations/{location}/services/{service}"
_SQL_INSTANCE = "/v1/projects/{project}/instances/{instance}"
_ZONE = "/dns/v1/projects/{project}/managedZones/{zone}"
_SECRET = "/v1/projects/{project}/secrets/{secret}"

CALLS: tuple[Call, ...] = (
    # --- Cloud Run (both regions' projects) ---
    Call(
        "run",
        "GET",
        _RUN_SERVICE,
        ("run.services.get",),
        _flows("failover", "failback", "rollback", "recovery-drill", "readiness", "restore-config"),
        REGIONS,
        "read a service's scaling, traffic, ingress and secret references (restore-config: "
        "its whole spec, to compare with the archived one)",
    ),
    Call(
        "run",
        "PATCH",
        _RUN_SERVICE,
        ("run.services.update", "iam.serviceAccounts.actAs"),
        _flows("failover", "failback", "rollback", "recovery-drill", "restore-config"),
        REGIONS,
        "scale, fence (ingress), shift traffic, roll a secret version, send an archived spec "
        "back; an update needs actAs on the service's runtime service account",
    ),
    Call(
        "run",
        "POST",
        "/v2/projects/{project}/locations/{location}/services",
        ("run.services.create", "iam.serviceAccounts.actAs"),
        _flows("restore-config"),
        REGIONS,
        "create a service from an archived spec (a deleted service, or a copy under a new "
        "name); actAs on its runtime service account, as for an update",
    ),
    Call(
        "run",
        "GET",
        "/v2/projects/{project}/locations/{location}/operations/{operation}",
        ("run.operations.get",),
        _flows("failover", "failback", "rollback", "recovery-drill", "restore-config"),
        REGIONS,
        "wait for a service update's rollout",
    ),
    Call(
        "run",
        "GET",
        "/v2/projects/{project}/locations/{location}/services",
        ("run.services.list",),
        _flows("discover", "config-backup"),
        REGIONS,
        "discover the services of both regions",
    ),
    Call(
        "run",
        "GET",
        _RUN_SERVICE + "/revisions",
        ("run.revisions.list",),
        _flows("rollback", "restore-config"),
        REGIONS,
        "find the revision to roll back to; whether the revisions an archived traffic split "
        "names still exist",
    ),
    # --- Cloud SQL Admin (the instances' project) ---
    Call(
        "sql",
        "GET",
        _SQL_INSTANCE,
        ("cloudsql.instances.get",),
        _flows(
            "failover",
            "failback",
            "backup",
            "recovery-drill",
            "drill-sweeper",
            "readiness",
            "restore-sql",
            "rollback",
        ),
        (Place.cloud_sql,),
        "read an instance's role, state and address (a rollback: the live primary's, for "
        "its integrity queries)",
    ),
    Call(
        "sql",
        "GET",
        "/v1/projects/{project}/instances",
        ("cloudsql.instances.list",),
        _flows("recovery-drill", "drill-sweeper", "discover"),
        (Place.cloud_sql, *REGIONS),
        "find labelled scratch instances a drill left; discover the primary and its replica",
    ),
    Call(
        "sql",
        "GET",
        _SQL_INSTANCE + "/databases",
        ("cloudsql.databases.list",),
        _flows("discover", "restore-sql", "recovery-drill"),
        (Place.cloud_sql,),
        "discover the primary's databases; the databases an import target lacks",
    ),
    Call(
        "sql",
        "POST",
        _SQL_INSTANCE + "/databases",
        ("cloudsql.databases.create",),
        _flows("restore-sql", "recovery-drill"),
        (Place.cloud_sql,),
        "create the databases a backup's SQL exports are imported into",
    ),
    Call(
        "sql",
        "GET",
        _SQL_INSTANCE + "/users",
        ("cloudsql.users.list",),
        _flows("backup", "restore-sql", "recovery-drill"),
        (Place.cloud_sql,),
        "record the instance's users with a backup (names only); the users an import target lacks",
    ),
    Call(
        "sql",
        "POST",
        _SQL_INSTANCE + "/users",
        ("cloudsql.users.create",),
        _flows("restore-sql", "recovery-drill"),
        (Place.cloud_sql,),
        "create, without a password, the users a backup's SQL exports grant to",
    ),
    Call(
        "sql",
        "POST",
        _SQL_INSTANCE + "/import",
        ("cloudsql.instances.import",),
        _flows("restore-sql", "recovery-drill"),
        (Place.cloud_sql,),
        "import a backup's SQL exports into a new instance, from the backups bucket or a "
        "copy; the instance's own service account reads them (storage.objects.get)",
    ),
    Call(
        "sql",
        "POST",
        "/v1/projects/{project}/instances",
        ("cloudsql.instances.create",),
        _flows("recovery-drill", "failback", "restore-sql"),
        (Place.cloud_sql,),
        "create a drill's scratch instance; a failback's new replica; the new instance a "
        "backup run is restored into",
    ),
    Call(
        "sql",
        "DELETE",
        _SQL_INSTANCE,
        ("cloudsql.instances.delete",),
        _flows("recovery-drill", "drill-sweeper", "failback", "restore-sql"),
        (Place.cloud_sql,),
        "delete a scratch instance; a failback's stale former primary; a forced restore's "
        "target that no restore made",
    ),
    Call(
        "sql",
        "PATCH",
        _SQL_INSTANCE,
        ("cloudsql.instances.update",),
        _flows("failover", "failback", "recovery-drill"),
        (Place.cloud_sql,),
        "turn on backups and point-in-time recovery on a promoted replica; set deletion "
        "protection on a promoted instance; label a drill's clone as its scratch",
    ),
    Call(
        "sql",
        "POST",
        _SQL_INSTANCE + "/promoteReplica",
        ("cloudsql.instances.promoteReplica",),
        _flows("failover", "failback"),
        (Place.cloud_sql,),
        "promote the replica",
    ),
    Call(
        "sql",
        "POST",
        _SQL_INSTANCE + "/export",
        ("cloudsql.instances.export",),
        _flows("backup", "failback"),
        (Place.cloud_sql,),
        "export the database to the backup bucket (a backup; a failback's copy of the "
        "writes the old primary took); the instance's own service account writes it",
    ),
    Call(
        "sql",
        "POST",
        _SQL_INSTANCE + "/restoreBackup",
        ("cloudsql.instances.restoreBackup", "cloudsql.backupRuns.get"),
        _flows("recovery-drill", "restore-sql"),
        (Place.cloud_sql,),
        "restore a backup run into the drill's scratch instance, or a restore's new instance",
    ),
    Call(
        "sql",
        "POST",
        _SQL_INSTANCE + "/clone",
        ("cloudsql.instances.clone",),
        _flows("restore-sql", "recovery-drill"),
        (Place.cloud_sql,),
        "restore the primary as it was at a point in time into a new instance (PITR); a "
        "drill's clone to the moment of the newest backup's counts",
    ),
    Call(
        "sql",
        "GET",
        "/v1/projects/{project}/operations/{operation}",
        ("cloudsql.instances.get",),
        _flows("failover", "failback", "backup", "recovery-drill", "drill-sweeper", "restore-sql"),
        (Place.cloud_sql,),
        "wait for an admin operation (Google checks cloudsql.instances.get)",
    ),
    Call(
        "sql",
        "GET",
        "/v1/projects/{project}/operations",
        ("cloudsql.instances.list",),
        _flows("failover", "failback", "backup", "recovery-drill", "drill-sweeper", "restore-sql"),
        (Place.cloud_sql,),
        "find an operation already running before starting one (Google checks "
        "cloudsql.instances.list)",
    ),
    Call(
        "sql",
        "GET",
        _SQL_INSTANCE + "/backupRuns",
        ("cloudsql.backupRuns.list",),
        _flows("backup"),
        (Place.cloud_sql,),
        "find a backup run already taken or running",
    ),
    Call(
        "sql",
        "GET",
        _SQL_INSTANCE + "/backupRuns/{run}",
        ("cloudsql.backupRuns.get",),
        _flows("backup", "restore-sql"),
        (Place.cloud_sql,),
        "wait for a backup run; check the one a restore is asked for",
    ),
    Call(
        "sql",
        "POST",
        _SQL_INSTANCE + "/backupRuns",
        ("cloudsql.backupRuns.create",),
        _flows("backup"),
        (Place.cloud_sql,),
        "take an on-demand backup",
    ),
    Call(
        "sql",
        "DELETE",
        _SQL_INSTANCE + "/backupRuns/{run}",
        ("cloudsql.backupRuns.delete",),
        _flows("backup"),
        (Place.cloud_sql,),
        "retention: delete on-demand backups past their age",
    ),
    # --- Cloud DNS (the zone's project) ---
    Call(
        "dns",
        "GET",
        "/dns/v1/projects/{project}/managedZones",
        ("dns.managedZones.list",),
        _flows("discover"),
        REGIONS,
        "discover the zone in either project",
    ),
    Call(
        "dns",
        "GET",
        _ZONE,
        ("dns.managedZones.get",),
        _flows("readiness"),
        (Place.dns,),
        "check the zone exists",
    ),
    Call(
        "dns",
        "GET",
        _ZONE + "/rrsets",
        ("dns.resourceRecordSets.list",),
        _flows(
            "failover",
            "failback",
            "readiness",
            "discover",
            "watch",
            "config-backup",
            "restore-config",
            "recovery-drill",
            "drill-sweeper",
        ),
        (Place.dns,),
        "read the record the switch changes (the watch: which region serves users; "
        "restore-config: the set to compare; the drill and its sweeper: scratch sets)",
    ),
    Call(
        "dns",
        "POST",
        _ZONE + "/changes",
        (
            "dns.changes.create",
            "dns.resourceRecordSets.create",
            "dns.resourceRecordSets.delete",
            "dns.resourceRecordSets.update",
        ),
        SWITCHES | {"restore-config", "recovery-drill", "drill-sweeper"},
        (Place.dns,),
        "point the record at the other region: one change deletes the old set and adds "
        "the new one, so the record-set permissions for what it changes are checked too "
        "(restore-config: an archived set back; the drill: its scratch copy, made and "
        "deleted; the sweeper: one a drill left)",
    ),
    Call(
        "dns",
        "GET",
        _ZONE + "/changes/{change}",
        ("dns.changes.get",),
        SWITCHES | {"restore-config", "recovery-drill", "drill-sweeper"},
        (Place.dns,),
        "wait for the change to be done",
    ),
    # --- Compute: Cloud CDN (the url-map's project) ---
    Call(
        "compute",
        "GET",
        "/compute/v1/projects/{project}/global/urlMaps",
        ("compute.urlMaps.list",),
        _flows("discover"),
        REGIONS,
        "discover the url-map in either project",
    ),
    Call(
        "compute",
        "GET",
        "/compute/v1/projects/{project}/global/urlMaps/{url_map}",
        ("compute.urlMaps.get",),
        _flows("readiness", "config-backup"),
        (Place.cdn,),
        "check the url-map exists",
    ),
    Call(
        "compute",
        "GET",
        "/compute/v1/projects/{project}/global/backendServices/{backend_service}",
        ("compute.backendServices.get",),
        _flows("config-backup"),
        (Place.cdn,),
        "keep each backend service the url-map names, beside it",
    ),
    Call(
        "compute",
        "POST",
        "/compute/v1/projects/{project}/global/urlMaps/{url_map}/invalidateCache",
        ("compute.urlMaps.invalidateCache",),
        SWITCHES | {"rollback"},
        (Place.cdn,),
        "purge the CDN after the switch (a rollback: after its traffic moved)",
    ),
    # --- Secret Manager (the app secret's project; every secret of the regions' projects
    # for the config backup) ---
    Call(
        "secretmanager",
        "GET",
        "/v1/projects/{project}/secrets",
        ("secretmanager.secrets.list",),
        _flows("config-backup"),
        (Place.app_secret, *REGIONS),
        "list the secrets the weekly secrets backup keeps",
    ),
    Call(
        "secretmanager",
        "GET",
        _SECRET + "/versions/{version}:access",
        ("secretmanager.versions.access",),
        SWITCHES | {"config-backup", "restore-config"},
        (Place.app_secret, *REGIONS),
        "compare the latest database URL before adding one (the value is never logged)",
        narrow=_REGIONS_FOR_CONFIG,
    ),
    Call(
        "secretmanager",
        "POST",
        _SECRET + ":addVersion",
        ("secretmanager.versions.add",),
        SWITCHES | {"restore-config"},
        (Place.app_secret, *REGIONS),
        "point the apps' database URL at the promoted instance; put an archived value back",
        narrow=_REGIONS_FOR_CONFIG,
    ),
    Call(
        "secretmanager",
        "GET",
        _SECRET + "/versions/{version}",
        ("secretmanager.versions.get",),
        _flows("failback"),
        (Place.app_secret,),
        "read which version is latest (metadata, not the value)",
    ),
    Call(
        "secretmanager",
        "GET",
        _SECRET,
        ("secretmanager.secrets.get",),
        _flows("readiness", "restore-config"),
        (Place.app_secret, *REGIONS),
        "read where the secret is replicated (metadata, not the value); whether a secret "
        "to restore exists",
        narrow=_REGIONS_FOR_CONFIG,
    ),
    Call(
        "secretmanager",
        "POST",
        "/v1/projects/{project}/secrets",
        ("secretmanager.secrets.create",),
        _flows("restore-config"),
        (Place.app_secret, *REGIONS),
        "create a secret from its archived metadata (a deleted secret, or a copy under a new id)",
    ),
    # --- Cloud Monitoring (the project of the region that serves users) ---
    Call(
        "monitoring",
        "GET",
        "/v3/projects/{project}/timeSeries",
        ("monitoring.timeSeries.list",),
        _flows("watch", "rollback"),
        REGIONS,
        "read Cloud Run's request count and latency in the region that serves users (a "
        "rollback: over its validation period)",
    ),
    # --- Cloud Resource Manager (every project the worker acts in) ---
    Call(
        "resourcemanager",
        "POST",
        "/v3/projects/{project}:testIamPermissions",
        # "There are no permissions required for making this API call"
        # (resource-manager/reference/rest/v1/projects/testIamPermissions).
        (),
        _flows("readiness"),
        tuple(Place),
        "ask which of the permissions this table needs in a project the worker holds "
        "(needs no permission itself)",
    ),
    # --- Cloud Storage (the backup and records buckets) ---
    Call(
        "storage",
        "GET",
        "/storage/v1/b",
        ("storage.buckets.list",),
        _flows("discover"),
        REGIONS,
        "discover the buckets of either project",
    ),
    Call(
        "storage",
        "GET",
        "/storage/v1/b/{bucket}",
        ("storage.buckets.get",),
        RECORDED,
        (Place.buckets, Place.assets),
        "check a bucket exists; google-cloud-storage also reads it around uploads",
        narrow=_ASSETS_FOR_CONFIG,
    ),
    Call(
        "storage",
        "GET",
        "/storage/v1/b/{bucket}/o",
        ("storage.objects.list",),
        _flows(
            "backup",
            "backup-staleness",
            "mongo-capture",
            "restore",
            "recovery-drill",
            "readiness",
            "config-backup",
            "restore-config",
            "restore-sql",
        ),
        (Place.buckets, Place.assets),
        "list backups, change slices, run records and the CDN's assets",
        narrow=_ASSETS_FOR_CONFIG,
    ),
    Call(
        "storage",
        "GET",
        "/storage/v1/b/{bucket}/o/{object}",
        ("storage.objects.get",),
        _flows(
            "failback",
            "backup",
            "recovery-drill",
            "mongo-capture",
            "config-backup",
            "restore-sql",
        ),
        (Place.buckets, Place.assets),
        "read an object's metadata: an export's or archive's size "
        "and checksums (a copy's against its source's), a copied export before a drill or "
        "an import (mongo-capture takes a base backup when there is none, or after a gap), "
        "an asset",
        narrow=_ASSETS_FOR_CONFIG,
    ),
    Call(
        "storage",
        "POST",
        "/storage/v1/b/{bucket}/o/{object}/rewriteTo/b/{dest_bucket}/o/{object}",
        ("storage.objects.get", "storage.objects.create", "storage.objects.delete"),
        _flows("backup", "mongo-capture", "config-backup"),
        (Place.buckets, Place.assets),
        "copy a verified backup's objects server-side into each cross-region copy bucket, "
        "and the CDN's assets into the backups bucket (get on the source; create, and "
        "delete to replace a bad copy, on the destination: the table grants all three "
        "where it lands; mongo-capture's base backup is copied too)",
        narrow=_ASSETS_FOR_CONFIG,
    ),
    Call(
        "storage",
        "GET",
        "/download/storage/v1/b/{bucket}/o/{object}",
        ("storage.objects.get",),
        RECORDED - {"drill-sweeper"},
        (Place.buckets,),
        "download the lease, a manifest, an archive, a drill's record",
    ),
    Call(
        "storage",
        "POST",
        "/upload/storage/v1/b/{bucket}/o",
        ("storage.objects.create", "storage.objects.delete"),
        RECORDED,
        (Place.buckets,),
        "write the lease, a run record, a manifest, an archive; a write over an existing "
        "object (the lease taken over or released, a manifest marked verified) needs "
        "delete too",
    ),
    Call(
        "storage",
        "PUT",
        "/upload/storage/v1/b/{bucket}/o",
        ("storage.objects.create", "storage.objects.delete"),
        _flows("backup", "mongo-capture"),
        (Place.buckets,),
        "send the chunks of a resumable upload (a backup archive; mongo-capture's base backup)",
    ),
    Call(
        "storage",
        "DELETE",
        "/storage/v1/b/{bucket}/o/{object}",
        ("storage.objects.delete",),
        _flows("backup", "config-backup"),
        (Place.buckets,),
        "retention deletes expired backups (a released lease is kept, marked released)",
    ),
)


def find(api: str, method: str, path: str) -> Call | None:
    """The row a logged call matches, or None."""
    return next((c for c in CALLS if c.matches(api, method, path)), None)


def projects_of(place: Place, topology: Topology) -> tuple[str, ...]:
    """The project ids a place resolves to in this environment."""
    sql = topology.cloud_sql
    by_place: dict[Place, tuple[str, ...]] = {
        Place.primary_region: (topology.regions.primary.project,),
        Place.secondary_region: (topology.regions.secondary.project,),
        Place.cloud_sql: (sql.primary.project, sql.replica.project),
        Place.dns: (topology.dns.project,),
        Place.cdn: (topology.cdn.project,),
        Place.buckets: (buckets_project(topology),),
        Place.assets: (topology.cdn.project,),
        Place.app_secret: (sql.app_secret.project,),
    }
    return tuple(dict.fromkeys(by_place[place]))


def buckets_project(topology: Topology) -> str:
    """The project that holds the backup and records buckets: ``backups.project``, or
    the primary region's when unset (where the seeds create them)."""
    return topology.backups.project or topology.regions.primary.project


Grants = dict[str, dict[str, tuple[str, ...]]]


def grants_by_flow(topology: Topology, calls: Iterable[Call] = CALLS) -> Grants:
    """flow (or command) → project → sorted permissions; every one of ``USERS``, in order."""
    table: dict[str, dict[str, set[str]]] = {user: {} for user in USERS}
    for call in calls:
        if not call.permissions:
            continue  # nothing to grant (testIamPermissions): no project to list for it
        for flow in call.flows:
            for place in call.places(flow):
                for project in projects_of(place, topology):
                    table[flow].setdefault(project, set()).update(call.permissions)
    return {
        flow: {p: tuple(sorted(perms)) for p, perms in sorted(projects.items())}
        for flow, projects in table.items()
    }


def grants_by_project(
    topology: Topology, calls: Iterable[Call] = CALLS
) -> dict[str, tuple[str, ...]]:
    """project → every permission any flow needs there (the worker runs them all);
    the operator's commands are not the worker's, so they are left out."""
    union: dict[str, set[str]] = {}
    for flow, projects in grants_by_flow(topology, calls).items():
        if flow not in FLOWS:
            continue
        for project, perms in projects.items():
            union.setdefault(project, set()).update(perms)
    return {p: tuple(sorted(perms)) for p, perms in sorted(union.items())}


def places_in(project: str, topology: Topology) -> list[str]:
    """What of the topology lives in a project, to say why it is granted there."""
    return [place.value for place in Place if project in projects_of(place, topology)]
