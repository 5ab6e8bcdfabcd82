"""The DR topology of one environment: a typed model of deployments/environments/<env>.yaml.

Every flow loads it by environment name. A bad file fails here, before any side effect,
with pydantic's error naming the field (e.g. ``services.2.active_scaling.max``).
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENVIRONMENT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
REPO_ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS_DIR = REPO_ROOT / "deployments" / "environments"
# Where environment files are read from instead, when set (the test and bench labs).
ENVIRONMENTS_DIR_ENV = "LIFEBOAT_ENVIRONMENTS_DIR"


class TopologyError(ValueError):
    """The environment is unknown or its file is invalid; raised before any side effect."""


class Strict(BaseModel):
    # A typo in the file is an error, not a silently ignored key.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(StrEnum):
    critical = "critical"
    important = "important"
    standard = "standard"


class RegionRole(StrEnum):
    primary = "primary"
    secondary = "secondary"


class Region(Strict):
    name: str = Field(pattern=r"^[a-z]+-[a-z]+\d$", description="e.g. us-central1")
    project: str = Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")


class Regions(Strict):
    primary: Region
    secondary: Region
    backup: Region

    def by_role(self, role: RegionRole) -> Region:
        return self.primary if role is RegionRole.primary else self.secondary


class Scaling(Strict):
    min: int = Field(ge=0, le=1000)
    max: int = Field(ge=1, le=1000)

    @model_validator(mode="after")
    def _min_le_max(self) -> Scaling:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class Service(Strict):
    name: str = Field(pattern=r"^[a-z]([a-z0-9-]{0,47}[a-z0-9])?$")
    tier: Tier
    image: str
    active_scaling: Scaling
    standby_scaling: Scaling
    checks: list[str] = Field(
        default_factory=lambda: ["/health"],
        description="paths the service's own post-failover/rollback checks probe",
    )


class DnsRecord(Strict):
    name: str = Field(pattern=r"^([a-z0-9-]+\.)+$", description="fully qualified, dot at end")
    type: Literal["A", "AAAA", "CNAME"] = "A"
    ttl: int = Field(ge=1, le=86400, description="TTL in normal operation")
    failover_ttl: int = Field(60, ge=1, le=86400, description="TTL set by a region switch")
    rrdatas: dict[RegionRole, list[str]]

    @field_validator("rrdatas")
    @classmethod
    def _both_regions(cls, value: dict[RegionRole, list[str]]) -> dict[RegionRole, list[str]]:
        missing = [r.value for r in RegionRole if not value.get(r)]
        if missing:
            raise ValueError(f"rrdatas needs a non-empty list for {', '.join(missing)}")
        return value


class Dns(Strict):
    project: str
    zone: str
    dns_name: str = Field(pattern=r"^([a-z0-9-]+\.)+$")
    records: list[DnsRecord] = Field(min_length=1)


class SqlInstanceRef(Strict):
    project: str
    instance: str = Field(pattern=r"^[a-z][a-z0-9-]{0,96}$")
    region: str


class AppSecret(Strict):
    """The Secret Manager secret the apps read their database URL from (seed 004)."""

    name: str = Field("prod-database-url", pattern=r"^[A-Za-z0-9_-]{1,255}$")
    project: str = Field(description="project that holds it (seed 004: the DR project)")

    @property
    def resource(self) -> str:
        """The name Cloud Run services in any project use to reference it."""
        return f"projects/{self.project}/secrets/{self.name}"


class CloudSql(Strict):
    primary: SqlInstanceRef
    replica: SqlInstanceRef
    databases: list[str] = Field(min_length=1)
    integrity_queries: dict[str, str] = Field(
        default_factory=dict, description="name → SQL returning one number, run by drills"
    )
    app_secret: AppSecret = Field(
        description="Secret Manager secret with the apps' database URL; never a Prefect block"
    )
    port: int = Field(5432, ge=1, le=65535, description="PostgreSQL port on the instance IP")
    monitor_user: str = Field(
        "postgres",
        description="role that reads replication status, and fences the apps' role in a "
        "planned switch (needs CREATEROLE; pg_signal_backend to end the apps' sessions)",
    )
    app_user: str = Field("varai_user", description="role in the apps' database URL")
    app_password_secret: str | None = Field(None, description="secret with the app role's password")
    monitor_password_secret: str | None = Field(
        None, description="secret with that role's password; none means trust/IAM auth"
    )

    @model_validator(mode="after")
    def _replica_in_primary_project(self) -> CloudSql:
        # Cloud SQL refuses cross-project read replicas; catch it here, not mid-failover.
        if self.replica.project != self.primary.project:
            raise ValueError(
                "replica.project must equal primary.project (Cloud SQL keeps a read replica "
                "in its primary's project)"
            )
        # A planned switch fences the apps' role as the monitoring role (NOLOGIN): one
        # role in both parts would lock the fence out of its own lift.
        if self.monitor_user == self.app_user:
            raise ValueError(
                "monitor_user must differ from app_user (a planned switch keeps the apps' "
                "role off the old primary, as the monitoring role)"
            )
        return self


class Cdn(Strict):
    project: str
    url_map: str
    host: str
    paths: list[str] = Field(default_factory=lambda: ["/*"])
    assets_bucket: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$",
        description="the bucket the CDN serves static assets from; the config backup "
        "copies it (none: no assets to keep)",
    )


class HealthCheck(Strict):
    path: str = Field(pattern=r"^/")
    expected_status: int = Field(200, ge=100, le=599)


class Health(Strict):
    host: str = Field(description="public host name the checks send, e.g. api.varai.ai")
    scheme: Literal["http", "https"] = "https"
    checks: list[HealthCheck] = Field(min_length=1)
    # In the lab the public name does not resolve; connect here and send the Host header.
    connect_to: str | None = Field(None, description="host:port, or lab:front_door")
    regional_connect_to: dict[RegionRole, str] = Field(
        default_factory=dict, description="per-region direct address (lab:region/<name>)"
    )
    ca_bundle: str | None = Field(
        None,
        description="PEM file of the CAs that probes over https trust (lab:ca = the lab's "
        "own CA); default the system trust store. Verification is never turned off.",
    )
    timeout_s: float = Field(10, gt=0, le=120)
    verify_timeout_s: float = Field(
        600, gt=0, le=3600, description="how long verification may poll before the run fails"
    )
    down_after_failures: int = Field(2, ge=1, description="seed 004: more than one failed = down")


class Mongo(Strict):
    uri_secret: str = Field("lifeboat-mongodb-uri", description="Prefect Secret block name")
    uri_env: str = Field("LIFEBOAT_MONGODB_URI", description="environment variable fallback")
    databases: list[str] = Field(min_length=1)
    # How hard a backup or a restore may drive the server: a property of the cluster's
    # size, so per environment.
    dump_parallel_collections: int = Field(
        4,
        ge=1,
        le=64,
        description="collections a backup reads at once (mongodump's "
        "--numParallelCollections, default 4)",
    )
    restore_insertion_workers: int = Field(
        4,
        ge=1,
        le=64,
        description="parallel unordered insert_many batches per collection during a "
        "restore (mongorestore's --numInsertionWorkersPerCollection; PBM uses 10)",
    )


class Retention(Strict):
    """Days each kind of backup is kept (seed 004's backup strategy)."""

    database_days: int = Field(30, ge=1)
    cross_region_days: int = Field(90, ge=1)
    config_days: int = Field(90, ge=1, description="service specs, DNS, url-maps")
    secrets_days: int = Field(30, ge=1)
    assets_days: int = Field(180, ge=1, description="the CDN assets bucket's copies")

    def days(self, source: str) -> int:
        """How long a backup of ``source`` stays in the backups bucket."""
        return {
            "mongodb": self.database_days,
            # The exports in the backups bucket are the cross-region copies.
            "cloudsql": self.cross_region_days,
            "config": self.config_days,
            "secrets": self.secrets_days,
            "assets": self.assets_days,
        }[source]

    def copy_days(self, source: str) -> int:
        """How long its copies stay in the copy buckets: the data's ``cross_region_days``;
        a configuration or secrets copy no longer than the backup itself (seed 004 keeps
        secrets 30 days, and a copy must not keep them longer)."""
        if source in ("mongodb", "cloudsql"):
            return self.cross_region_days
        return self.days(source)


class Staleness(Strict):
    rpo_hours: float = Field(12, gt=0)
    alert_hours: float = Field(36, gt=0)


BUCKET_NAME = r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$"


class BackupCopy(Strict):
    """A bucket in another region that holds a server-side copy of every verified backup."""

    bucket: str = Field(pattern=BUCKET_NAME)
    location: str = Field(
        pattern=r"^[A-Za-z0-9-]{2,40}$",
        description="the bucket's location as Cloud Storage reports it (e.g. europe-west1); "
        "readiness checks the bucket really is there",
    )


class Backups(Strict):
    bucket: str = Field(pattern=BUCKET_NAME)
    records_bucket: str = Field(pattern=BUCKET_NAME)
    copies: list[BackupCopy] = Field(
        default_factory=list,
        description="cross-region copies (seed 004: daily to us-east1 and europe-west1, "
        "kept retention.cross_region_days); none by default",
    )
    project: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$",
        description="project that holds both buckets (default: the primary region's); "
        "only `lifeboat iam` reads it, to say where to grant Cloud Storage permissions",
    )
    schedule: str = "0 */6 * * *"
    retention: Retention = Retention()
    staleness: Staleness = Staleness()
    encryption_key_secret: str = "lifeboat-backup-key"
    pitr_log_days: int = Field(
        7,
        ge=1,
        le=35,
        description="days of point-in-time recovery the live Cloud SQL primary must keep "
        "(seed 004: 7); readiness checks PITR is on with at least this log retention",
    )

    @model_validator(mode="after")
    def _distinct_copy_buckets(self) -> Backups:
        names = [self.bucket, self.records_bucket, *(c.bucket for c in self.copies)]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"copies: bucket(s) {', '.join(dupes)} named twice")
        return self

    @property
    def backup_buckets(self) -> list[str]:
        """Every bucket a backup can be restored from: the primary one, then each copy."""
        return [self.bucket, *(c.bucket for c in self.copies)]

    def source_bucket(self, value: str | None) -> str | None:
        """The backup bucket ``value`` names: a bucket of the topology, or the location of
        one of its copies (``europe-west1``, the same in every environment). None for an
        unset value (the backups bucket) and for one that names nothing here."""
        if value is None:
            return self.bucket
        if value in self.backup_buckets:
            return value
        located = [c.bucket for c in self.copies if c.location.lower() == value.lower()]
        return located[0] if len(located) == 1 else None

    def copy_named(self, bucket: str) -> BackupCopy | None:
        return next((c for c in self.copies if c.bucket == bucket), None)

    def describe_sources(self) -> str:
        copies = ", ".join(f"{c.bucket} ({c.location})" for c in self.copies)
        return self.bucket + (f", or a copy: {copies}" if copies else " (no copies)")


class Objective(Strict):
    rto_minutes: float = Field(gt=0)
    rpo_minutes: float = Field(gt=0)


class Notifications(Strict):
    slack_webhook_secret: str | None = "lifeboat-slack-webhook"
    email_webhook_secret: str | None = "lifeboat-email-webhook"


class RollbackStrategy(StrEnum):
    """Seed 004's ``rollback_strategies`` that Lifeboat runs."""

    traffic = "traffic"  # traffic_rollback: the blue/green switch between tagged revisions
    service = "service"  # service_rollback: the previous revision that runs another image


class RollbackTriggers(Strict):
    """Seed 004's ``automatic_triggers``: each threshold, its window and the strategy it
    calls for; the pause between automatic runs."""

    health_check_failures: int = Field(3, ge=1, description="failed checks in the window")
    health_check_window_s: float = Field(300, gt=0)
    health_check_action: RollbackStrategy = RollbackStrategy.traffic
    error_rate: float = Field(0.05, gt=0, le=1, description="5xx share above which to act")
    error_rate_window_s: float = Field(600, gt=0)
    error_rate_action: RollbackStrategy = RollbackStrategy.service
    p95_latency_s: float = Field(5.0, gt=0)
    p95_latency_window_s: float = Field(900, gt=0)
    p95_latency_action: RollbackStrategy = RollbackStrategy.traffic
    availability: float = Field(
        0.99, gt=0, le=1, description="share of replies that are not 5xx, below which to act"
    )
    availability_window_s: float = Field(1800, gt=0)
    availability_action: RollbackStrategy = RollbackStrategy.service
    min_requests: int = Field(20, ge=1, description="fewer requests than this prove nothing")
    min_interval_s: float = Field(
        1800, ge=0, description="minimum delay between two automatic rollbacks"
    )


class StrategyBudget(Strict):
    execution_s: float = Field(
        gt=0, le=3600, description="seed 004 execution_time: the switch's budget"
    )
    validation_period_s: float = Field(
        gt=0, le=3600, description="seed 004 validation_period: how long to watch after the switch"
    )


class RollbackStrategies(Strict):
    """Seed 004's ``rollback_strategies``: each one's execution budget and validation period."""

    traffic: StrategyBudget = StrategyBudget(execution_s=30, validation_period_s=300)
    service: StrategyBudget = StrategyBudget(execution_s=120, validation_period_s=600)

    def of(self, strategy: RollbackStrategy) -> StrategyBudget:
        return self.traffic if strategy is RollbackStrategy.traffic else self.service


class Journey(Strict):
    """A user-journey smoke check: a path and the status a user must get."""

    path: str = Field(pattern=r"^/")
    expected_status: int = Field(200, ge=100, le=599)


class RollbackValidation(Strict):
    """Seed 004's ``success_criteria`` for the validation period after a rollback."""

    health_success_rate: float = Field(1.0, gt=0, le=1, description="share of checks that pass")
    error_rate: float = Field(0.01, gt=0, le=1, description="5xx share below which it passes")
    p95_latency_s: float = Field(2.0, gt=0, description="p95 below which it passes")
    journeys: list[Journey] = Field(
        default_factory=list, description="user-journey smoke checks, probed in each round"
    )
    journey_success_rate: float = Field(0.95, gt=0, le=1, description="seed 004: > 95%")
    rounds: int = Field(5, ge=1, le=100, description="probe rounds spread over the period")


class DrillObjective(Strict):
    rto_minutes: float = Field(gt=0)
    rpo_minutes: float | None = Field(None, gt=0, description="none: no data, no RPO")


DRILL_OBJECTIVES: dict[str, DrillObjective] = {
    "cloudsql": DrillObjective(rto_minutes=30, rpo_minutes=720),
    # The clone to a moment the drill chooses: no RPO to judge, the same RTO.
    "cloudsql-pitr": DrillObjective(rto_minutes=30),
    "mongodb": DrillObjective(rto_minutes=240, rpo_minutes=720),
    # Seed 004's configuration_data: RTO 15 min. Its RPO of 1 min ("real-time") needs a
    # backup on every change, which Lifeboat does not take: the config backup is daily, so
    # its RPO is held to that promise (a day and an hour), as Cloud SQL's is to its backups.
    "config": DrillObjective(rto_minutes=15, rpo_minutes=25 * 60),
    "application": DrillObjective(rto_minutes=20),
    "total": DrillObjective(rto_minutes=30),
}


class Drills(Strict):
    """Monthly recovery drills (seed 004): their scratch resources and how fresh one must be."""

    schedule: str = Field("0 3 1 * *", description="cron, UTC: 03:00 on the 1st")
    scratch_ttl_hours: float = Field(
        24, gt=0, description="expiry label on scratch resources; the sweeper deletes past it"
    )
    verified_restore_max_age_days: float = Field(
        35, gt=0, description="readiness: the newest passed drill must be younger than this"
    )
    # Seed 004's data_recovery objectives: user data (Cloud SQL) RTO 30 min, analytics
    # (MongoDB) 4 h, compute 20 min. A restore from backup cannot beat the backup interval,
    # so its RPO is held to the backup promise (seed 003: 12 h), not to the replica's 5 min.
    objectives: dict[str, DrillObjective] = Field(
        default_factory=lambda: dict(DRILL_OBJECTIVES),
        description="data set → objectives the drill is judged against",
    )

    def objective(self, data_set: str) -> DrillObjective:
        """A data set's objectives: the topology's, else the seed's default for it."""
        return self.objectives.get(data_set) or DRILL_OBJECTIVES[data_set]


# The Google APIs Lifeboat calls. An environment points all of them somewhere else, or
# none: a mix would send some steps to Google and others to a lab, silently.
API_NAMES = (
    "dns",
    "run",
    "sql",
    "compute",
    "storage",
    "secretmanager",
    "monitoring",
    "resourcemanager",
)


class Endpoints(Strict):
    """API endpoints; all unset means Google. ``lab_dir`` reads them from a running lab."""

    lab_dir: str | None = Field(None, description="folder of .lab/endpoints.json")
    dns: str | None = None
    run: str | None = None
    sql: str | None = Field(None, description="Cloud SQL Admin REST endpoint")
    compute: str | None = None
    storage: str | None = None
    secretmanager: str | None = None
    monitoring: str | None = Field(None, description="Cloud Monitoring v3 REST endpoint")
    resourcemanager: str | None = Field(
        None, description="Cloud Resource Manager v3 (readiness's testIamPermissions)"
    )
    call_timeout_s: float = Field(
        30, gt=0, le=300, description="timeout of each single API call; retries come on top"
    )

    @model_validator(mode="after")
    def _all_or_none(self) -> Endpoints:
        given = [name for name in API_NAMES if getattr(self, name)]
        if self.lab_dir is not None and given:
            raise ValueError(
                f"endpoints: lab_dir reads every address from the lab; drop {', '.join(given)}"
            )
        missing = [name for name in API_NAMES if not getattr(self, name)]
        if given and missing:
            raise ValueError(
                f"endpoints: {', '.join(given)} set but {', '.join(missing)} not: "
                "set every API's endpoint, or none to use Google for all"
            )
        return self


class Workers(Strict):
    """Where the Prefect worker that runs this environment's flows is (its work pool's
    infrastructure). A failover must run from outside the region it leaves (AWS ARC runs
    a plan from the region being activated), so readiness is red while it is undeclared
    or the primary region."""

    location: str | None = Field(
        None,
        description="a region (e.g. us-east1), or a place outside Google Cloud (e.g. on-prem)",
    )


class Topology(Strict):
    environment: str
    regions: Regions
    services: list[Service] = Field(min_length=1)
    dns: Dns
    cloud_sql: CloudSql
    cdn: Cdn
    health: Health
    mongodb: Mongo
    backups: Backups
    objectives: dict[Tier, Objective]
    notifications: Notifications = Notifications()
    endpoints: Endpoints = Endpoints()
    rollback_triggers: RollbackTriggers = RollbackTriggers()
    rollback_strategies: RollbackStrategies = RollbackStrategies()
    rollback_validation: RollbackValidation = RollbackValidation()
    drills: Drills = Drills()
    workers: Workers = Workers()

    @field_validator("objectives")
    @classmethod
    def _every_tier(cls, value: dict[Tier, Objective]) -> dict[Tier, Objective]:
        missing = [t.value for t in Tier if t not in value]
        if missing:
            raise ValueError(f"objectives missing for tier(s): {', '.join(missing)}")
        return value

    @model_validator(mode="after")
    def _unique_services(self) -> Topology:
        names = [s.name for s in self.services]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"services: duplicate name(s) {', '.join(dupes)}")
        return self

    def service(self, name: str) -> Service:
        for svc in self.services:
            if svc.name == name:
                return svc
        known = ", ".join(s.name for s in self.services)
        raise TopologyError(
            f"unknown service {name!r} in environment {self.environment!r}; known: {known}"
        )


def environment_file(environment: str) -> Path:
    if not ENVIRONMENT_NAME.match(environment or ""):
        raise TopologyError(
            f"environment: {environment!r} is not a valid name (lowercase letters, digits, dashes)"
        )
    directory = Path(os.environ.get(ENVIRONMENTS_DIR_ENV, ENVIRONMENTS_DIR))
    path = directory / f"{environment}.yaml"
    if not path.is_file():
        # prod.example.yaml is a file to copy, not an environment.
        known = sorted(p.stem for p in directory.glob("*.yaml") if ENVIRONMENT_NAME.match(p.stem))
        raise TopologyError(f"environment: unknown environment {environment!r}; known: {known}")
    return path


def load_topology(environment: str) -> Topology:
    """Load and validate an environment's topology; errors name the file and the field."""
    return parse_topology_file(environment_file(environment))


def parse_topology_file(path: Path) -> Topology:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise TopologyError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise TopologyError(f"{path}: expected a mapping at the top level")
    try:
        return Topology.model_validate(data)
    except ValidationError as exc:
        raise TopologyError(f"{path}: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{where}: {err['msg']}")
    return "invalid topology: " + "; ".join(lines)
