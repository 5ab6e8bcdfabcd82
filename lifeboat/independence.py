"""Region independence: does something a failover needs live only in the primary region?

AWS ARC runs a plan from the region being activated, never from the failing one. The same
holds for what Lifeboat reads during a failover: the lease and records bucket, the backup
bucket and the apps' database-URL secret must survive the primary region's loss, and the
Prefect worker that runs the flows must not be in that region.

Google's terms (cloud.google.com/storage/docs/locations): a bucket's ``locationType`` is
``region``, ``dual-region`` or ``multi-region``; a dual- or multi-region bucket keeps its
data in more than one region, so it outlives any single one. Secret Manager
(cloud.google.com/secret-manager/docs/choosing-replication): ``automatic`` replication is
Google-managed across regions; ``userManaged`` lists its replica locations, and a secret
is readable while one of them is. Lifeboat asks more of a user-managed secret than to
outlive the primary: a replica in the secondary region, where the failover adds the
version the promoted database's apps read (issue 16 §4), so that the failover depends on
no third region either.
"""

from __future__ import annotations

from collections.abc import Sequence


def bucket_independence(
    bucket: str, location: str, location_type: str, primary_region: str
) -> tuple[bool, str]:
    """Whether a bucket survives the primary region's loss, and a line saying why."""
    where = f"gs://{bucket}: {location_type} {location}"
    if location_type in {"dual-region", "multi-region"}:
        return True, f"{where} (more than one region)"
    if location.lower() == primary_region.lower():
        return False, (
            f"{where}: only in the primary region, so a failover away from it could not "
            "take its lease or write its record; use a dual- or multi-region bucket"
        )
    return True, f"{where} (not the primary region)"


def secret_independence(
    secret: str, replicas: Sequence[str] | None, primary_region: str, secondary_region: str
) -> tuple[bool, str]:
    """Whether the secret stays readable and writable in the secondary region when the
    primary is lost. ``replicas``: the user-managed replica locations; None: automatic."""
    if replicas is None:
        return True, f"{secret}: automatic replication (Google-managed, multi-region)"
    listed = ", ".join(replicas)
    others = [r for r in replicas if r.lower() != primary_region.lower()]
    if secondary_region.lower() in (r.lower() for r in replicas):
        return True, f"{secret}: replicas in {listed}"
    why = "every replica is in the primary region" if not others else "no replica there"
    return False, (
        f"{secret}: replicas in {listed}; {why}: a failover to {secondary_region} must add "
        "a version the promoted database's apps read, so replicate it to the secondary region"
    )


def worker_independence(location: str | None, primary_region: str) -> tuple[bool, str]:
    """Whether the flows run from outside the primary region (``workers.location``)."""
    if location is None:
        return False, (
            "workers.location is not declared: say where the Prefect worker runs, so that "
            "a failover is known to run from outside the region it leaves"
        )
    if location.lower() == primary_region.lower():
        return False, (
            f"the worker runs in {location}, the primary region: a regional outage would stop "
            "the failover it needs; run a worker in the secondary region or outside Google"
        )
    return True, f"the worker runs in {location}, not the primary region"


def copy_bucket_problems(declared: str, location: str, primary_region: str) -> list[str]:
    """What is wrong with a cross-region copy's bucket: not where the topology says (Cloud
    Storage reports locations upper-case, e.g. ``EUROPE-WEST1``), or in the primary
    region, where a copy would share the fate of what it copies."""
    problems = []
    if location.lower() != declared.lower():
        problems.append(f"located in {location}, the topology says {declared}")
    if location.lower() == primary_region.lower():
        problems.append(f"in the primary region {primary_region}: not a cross-region copy")
    return problems
