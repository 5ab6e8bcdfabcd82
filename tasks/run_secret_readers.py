"""How a Cloud Run service reads one secret, and what makes its running instances see a new version.

Pure logic over a ``run_v2.Service`` (no calls), so it is unit-tested without a lab.

Cloud Run gives a container a secret in two ways (run/docs/configuring/secrets):

- as an env var (``containers[].env[].valueSource.secretKeyRef``): "resolved at instance
  startup time". Running instances keep the value they started with, so a new version
  reaches them only through new instances: a new revision. At ``latest`` any template
  change does it (Lifeboat changes one annotation); at a pinned version the reference
  itself must name the new version;
- as a volume (``volumes[].secret.items[].version``): "reading a volume always fetches the
  secret value from Secret Manager", so at ``latest`` the instances follow at once and
  nothing needs doing; an item pinned to a version must be re-pinned (a new revision).

A new revision helps only if traffic goes to it: that is the case for a
``TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST`` target. Traffic pinned to named revisions stays
on them, so their instances keep the URL they started with until they restart: Lifeboat
then leaves the service alone (it never moves traffic) and says so.
"""

from __future__ import annotations

from enum import StrEnum

from google.cloud import run_v2
from pydantic import BaseModel

from lifeboat.secret_names import SecretName

LATEST = "latest"
# A template annotation naming the secret version a roll was made for: rolling for a
# version the service already carries is a no-op, which makes the roll idempotent.
ROLLED_FOR = "lifeboat.dev/database-secret-version"


class Reading(StrEnum):
    """How a service reads the secret, from the mode needing the most to the least."""

    env_pinned = "env-pinned"
    volume_pinned = "volume-pinned"
    env_latest = "env-latest"
    volume_latest = "volume-latest"
    not_read = "not-read"


_ORDER = list(Reading)


class SecretRef(BaseModel):
    """One place the template names the secret: an env var or a volume item."""

    kind: str  # "env" or "volume"
    holder: str  # the container (env) or the volume (volume) that holds it
    name: str  # the env var's name, or the item's path
    version: str  # "latest", a number or an alias

    @property
    def pinned(self) -> bool:
        return self.version != LATEST


class SecretReader(BaseModel):
    """Every reference a service's template makes to the secret, and where its traffic goes."""

    secret: str  # projects/P/secrets/S
    refs: list[SecretRef] = []
    latest_traffic: int = 100  # percent of traffic on the latest ready revision
    rolled_for: str = ""  # the ROLLED_FOR annotation of the template, if any

    @property
    def reading(self) -> Reading:
        kinds = [self._mode(ref) for ref in self.refs] or [Reading.not_read]
        return min(kinds, key=_ORDER.index)

    @staticmethod
    def _mode(ref: SecretRef) -> Reading:
        if ref.kind == "env":
            return Reading.env_pinned if ref.pinned else Reading.env_latest
        return Reading.volume_pinned if ref.pinned else Reading.volume_latest

    @property
    def needs_restart(self) -> bool:
        """Whether running instances keep an old value until new ones start."""
        return self.reading not in (Reading.volume_latest, Reading.not_read)

    @property
    def stuck(self) -> bool:
        """A new revision would take no traffic: rolling cannot help."""
        return self.needs_restart and self.latest_traffic == 0

    @property
    def follows_a_later_version(self) -> bool:
        """Whether instances started now still end up on a version added later: they read
        it at once (a volume at latest, or not at all), or the roll after the new version
        replaces them all (every bit of traffic follows the latest revision). Such a
        service may scale up before the new version exists."""
        return not self.needs_restart or self.latest_traffic == 100

    def current_for(self, version: str) -> bool:
        """Whether a revision made for ``version`` (a number) is already the template."""
        pinned_ok = all(ref.version == version for ref in self.refs if ref.pinned)
        env_latest = any(ref.kind == "env" and not ref.pinned for ref in self.refs)
        return pinned_ok and (not env_latest or self.rolled_for == version)

    def behind(self, version: str) -> bool:
        """Whether running instances may hold a version older than ``version`` (a number)
        and a roll would help: they read it at instance start, no revision was made for
        ``version``, and traffic follows the latest revision."""
        return self.needs_restart and not self.stuck and not self.current_for(version)

    def how(self) -> str:
        """How it reads the secret, in words, e.g. ``as an env var at latest``."""
        reading = self.reading
        if reading is Reading.not_read:
            return f"does not read {self.secret}"
        pins = sorted({ref.version for ref in self.refs if ref.pinned})
        return {
            Reading.env_pinned: f"as an env var pinned to version {', '.join(pins)}",
            Reading.volume_pinned: f"from a volume item pinned to version {', '.join(pins)}",
            Reading.env_latest: "as an env var at latest",
            Reading.volume_latest: "from a volume at latest",
        }[reading]

    def plan_line(self, region: str, service: str) -> str:
        """One plan line: what the refresh will do for this service, and why."""
        where = f"{region}/{service}"
        if not self.needs_restart:
            if self.reading is Reading.not_read:
                return f"{where} does not read {self.secret}: nothing to do"
            return f"{where} reads {self.secret} {self.how()}: follows at once"
        if self.stuck:
            return f"leave {where} alone: {self.stuck_reason()}"
        what = (
            "pin it to the new version in a new revision"
            if self.reading in (Reading.env_pinned, Reading.volume_pinned)
            else "roll a new revision"
        )
        partial = (
            f" ({100 - self.latest_traffic}% of its traffic stays on pinned revisions, "
            "which keep the URL they started with)"
            if self.latest_traffic < 100
            else ""
        )
        return (
            f"{what} of {where}: it reads {self.secret} {self.how()}, resolved at instance "
            f"start{partial}"
        )

    def stuck_reason(self) -> str:
        return (
            f"it reads {self.secret} {self.how()} and its traffic is pinned to named "
            "revisions, so a new revision would take none and Lifeboat does not move "
            "traffic; instances keep the URL they started with until they restart; "
            "mount the secret as a volume at latest"
        )


def names_secret(reference: str, secret: str, service_project: str, aliases: set[str]) -> bool:
    """Whether a reference names ``secret`` (``projects/P/secrets/S``).

    Cloud Run takes the short name ``S`` for a secret in the service's own project, and
    the full name otherwise; a project may be written as its id or its number
    (``aliases``: every way of writing the secret's project).
    """
    named = SecretName.parse(secret)
    if named is None:
        raise ValueError(f"{secret!r} is not a secret name (projects/P/secrets/S)")
    projects = {named.project, *aliases}
    if "/" not in reference:
        return reference == named.secret and service_project in projects
    ref = SecretName.parse(reference)
    return (
        ref is not None
        and ref.version is None
        and ref.project in projects
        and ref.secret == named.secret
    )


def read_secret_reader(
    service: run_v2.Service, secret: str, aliases: set[str] | None = None
) -> SecretReader:
    """How ``service``'s template reads ``secret``, and whether its traffic follows latest."""
    service_project = service.name.split("/")[1] if service.name.startswith("projects/") else ""
    known = aliases or set()
    refs: list[SecretRef] = []
    for container in service.template.containers:
        for env in container.env:
            ref = env.value_source.secret_key_ref
            if ref.secret and names_secret(ref.secret, secret, service_project, known):
                refs.append(
                    SecretRef(
                        kind="env",
                        holder=container.name,
                        name=env.name,
                        version=ref.version or LATEST,
                    )
                )
    for volume in service.template.volumes:
        source = volume.secret
        if not source.secret or not names_secret(source.secret, secret, service_project, known):
            continue
        # A volume without items mounts the latest version under the secret's name.
        for item in source.items or [run_v2.VersionToPath(path=source.secret, version=LATEST)]:
            refs.append(
                SecretRef(
                    kind="volume",
                    holder=volume.name,
                    name=item.path,
                    version=item.version or LATEST,
                )
            )
    return SecretReader(
        secret=secret,
        refs=refs,
        latest_traffic=latest_traffic(service),
        rolled_for=service.template.annotations.get(ROLLED_FOR, ""),
    )


def latest_traffic(service: run_v2.Service) -> int:
    """Percent of traffic that goes to the latest ready revision; no targets means 100."""
    latest = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
    if not service.traffic:
        return 100
    return sum(t.percent for t in service.traffic if t.type_ == latest)


def roll_for(service: run_v2.Service, secret: str, version: str, aliases: set[str]) -> list[str]:
    """Change ``service``'s template in place so a new revision reads ``version``.

    Every pinned reference to the secret is set to ``version`` and the template carries
    the ROLLED_FOR annotation; a custom revision name is dropped (it would name the
    revision that exists already). Returns the update-mask paths of what changed, so the
    update touches only those template fields (never service-level scaling or ingress).
    """
    service_project = service.name.split("/")[1] if service.name.startswith("projects/") else ""
    paths = ["template.annotations"]
    for container in service.template.containers:
        for env in container.env:
            ref = env.value_source.secret_key_ref
            if (
                ref.secret
                and names_secret(ref.secret, secret, service_project, aliases)
                and (ref.version or LATEST) != LATEST
                and ref.version != version
            ):
                ref.version = version
                if "template.containers" not in paths:
                    paths.append("template.containers")
    for volume in service.template.volumes:
        source = volume.secret
        if not source.secret or not names_secret(source.secret, secret, service_project, aliases):
            continue
        for item in source.items:
            if (item.version or LATEST) != LATEST and item.version != version:
                item.version = version
                if "template.volumes" not in paths:
                    paths.append("template.volumes")
    service.template.annotations[ROLLED_FOR] = version
    if service.template.revision:
        service.template.revision = ""
        paths.append("template.revision")
    return paths
