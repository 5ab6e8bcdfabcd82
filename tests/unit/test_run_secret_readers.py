"""How a service reads the apps' secret, and what a new version needs: pure, no lab."""

from __future__ import annotations

import pytest
from google.cloud import run_v2

from tasks.run_secret_readers import (
    ROLLED_FOR,
    Reading,
    names_secret,
    read_secret_reader,
    roll_for,
)

SECRET = "projects/varai-prod/secrets/prod-database-url"
LATEST_TYPE = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
REVISION_TYPE = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


def service(
    *,
    env: tuple[str, str] | None = None,
    volume: tuple[str, str] | None = None,
    project: str = "varai-prod",
    traffic: list[run_v2.TrafficTarget] | None = None,
) -> run_v2.Service:
    """A service whose one container reads ``(secret, version)`` as an env var or volume."""
    got = run_v2.Service(name=f"projects/{project}/locations/us-east1/services/ai-service")
    container = run_v2.Container(name="app", image="gcr.io/varai/ai:1")
    if env:
        container.env.append(
            run_v2.EnvVar(
                name="DATABASE_URL",
                value_source=run_v2.EnvVarSource(
                    secret_key_ref=run_v2.SecretKeySelector(secret=env[0], version=env[1])
                ),
            )
        )
    container.env.append(run_v2.EnvVar(name="LOG_LEVEL", value="info"))
    if volume:
        container.volume_mounts.append(run_v2.VolumeMount(name="db", mount_path="/secrets"))
        got.template.volumes.append(
            run_v2.Volume(
                name="db",
                secret=run_v2.SecretVolumeSource(
                    secret=volume[0],
                    items=[run_v2.VersionToPath(path="database-url", version=volume[1])],
                ),
            )
        )
    got.template.containers.append(container)
    got.traffic.extend(traffic or [run_v2.TrafficTarget(type_=LATEST_TYPE, percent=100)])
    return got


@pytest.mark.parametrize(
    ("svc", "reading", "needs_restart"),
    [
        (service(volume=(SECRET, "latest")), Reading.volume_latest, False),
        (service(volume=(SECRET, "3")), Reading.volume_pinned, True),
        (service(env=(SECRET, "latest")), Reading.env_latest, True),
        (service(env=(SECRET, "")), Reading.env_latest, True),  # unset version means latest
        (service(env=(SECRET, "2")), Reading.env_pinned, True),
        (service(), Reading.not_read, False),
        (service(env=("projects/varai-prod/secrets/other", "latest")), Reading.not_read, False),
        # The strongest need wins: a pinned volume beside an env var at latest.
        (service(env=(SECRET, "latest"), volume=(SECRET, "2")), Reading.volume_pinned, True),
    ],
)
def test_how_a_service_reads_the_secret(
    svc: run_v2.Service, reading: Reading, needs_restart: bool
) -> None:
    reader = read_secret_reader(svc, SECRET)
    assert reader.reading is reading
    assert reader.needs_restart is needs_restart
    assert reader.latest_traffic == 100 and not reader.stuck


def test_short_names_match_only_in_the_secrets_own_project() -> None:
    assert read_secret_reader(service(env=("prod-database-url", "latest")), SECRET).reading is (
        Reading.env_latest
    )
    other = service(env=("prod-database-url", "latest"), project="varai-dr")
    assert read_secret_reader(other, SECRET).reading is Reading.not_read
    # The project may be written as its number (Secret Manager's replies use it).
    assert names_secret("projects/123/secrets/prod-database-url", SECRET, "x", {"123"})
    assert not names_secret("projects/456/secrets/prod-database-url", SECRET, "x", {"123"})
    assert not names_secret("projects/varai-prod/secrets/prod-database-url-2", SECRET, "x", set())


def test_traffic_pinned_to_revisions_makes_a_roll_useless() -> None:
    pinned = [run_v2.TrafficTarget(type_=REVISION_TYPE, revision="ai-service-00001", percent=100)]
    reader = read_secret_reader(service(env=(SECRET, "latest"), traffic=pinned), SECRET)
    assert reader.latest_traffic == 0 and reader.stuck
    line = reader.plan_line("us-east1", "ai-service")
    assert line.startswith("leave us-east1/ai-service alone: it reads ")
    assert "instances keep the URL they started with until they restart" in line
    assert "mount the secret as a volume at latest" in line
    # A volume at latest follows at once wherever the traffic goes.
    volume = read_secret_reader(service(volume=(SECRET, "latest"), traffic=pinned), SECRET)
    assert not volume.stuck


def test_a_split_between_latest_and_a_pinned_revision_rolls_and_says_what_stays() -> None:
    split = [
        run_v2.TrafficTarget(type_=LATEST_TYPE, percent=90),
        run_v2.TrafficTarget(type_=REVISION_TYPE, revision="ai-service-00001", percent=10),
    ]
    reader = read_secret_reader(service(env=(SECRET, "latest"), traffic=split), SECRET)
    assert reader.latest_traffic == 90 and not reader.stuck
    assert "10% of its traffic stays on pinned revisions" in reader.plan_line("r", "s")


def test_no_traffic_targets_means_all_to_latest() -> None:
    svc = service(env=(SECRET, "latest"))
    del svc.traffic[:]
    assert read_secret_reader(svc, SECRET).latest_traffic == 100


def test_plan_lines_name_the_mechanism() -> None:
    env = read_secret_reader(service(env=(SECRET, "latest")), SECRET)
    assert env.plan_line("us-east1", "ai-service") == (
        f"roll a new revision of us-east1/ai-service: it reads {SECRET} as an env var at "
        "latest, resolved at instance start"
    )
    volume = read_secret_reader(service(volume=(SECRET, "latest")), SECRET)
    assert volume.plan_line("us-east1", "auth-service") == (
        f"us-east1/auth-service reads {SECRET} from a volume at latest: follows at once"
    )
    pinned = read_secret_reader(service(env=(SECRET, "2")), SECRET)
    assert pinned.plan_line("r", "s").startswith("pin it to the new version in a new revision")
    assert "as an env var pinned to version 2" in pinned.plan_line("r", "s")


def test_roll_for_an_env_var_at_latest_changes_only_an_annotation() -> None:
    svc = service(env=(SECRET, "latest"))
    before = run_v2.Service.to_dict(svc)
    paths = roll_for(svc, SECRET, "4", set())
    assert paths == ["template.annotations"]
    assert svc.template.annotations[ROLLED_FOR] == "4"
    after = run_v2.Service.to_dict(svc)
    after["template"]["annotations"] = {}
    assert after == before  # nothing else moved
    assert read_secret_reader(svc, SECRET).current_for("4")
    assert not read_secret_reader(svc, SECRET).current_for("5")


def test_roll_for_pinned_references_repins_them_and_drops_a_custom_revision_name() -> None:
    svc = service(env=(SECRET, "2"), volume=(SECRET, "2"))
    svc.template.revision = "ai-service-blue"
    paths = roll_for(svc, SECRET, "4", set())
    assert paths == [
        "template.annotations",
        "template.containers",
        "template.volumes",
        "template.revision",
    ]
    reader = read_secret_reader(svc, SECRET)
    assert {ref.version for ref in reader.refs} == {"4"}
    assert svc.template.revision == ""
    assert reader.current_for("4")
    # The unrelated env var is kept as it was.
    assert [e.name for e in svc.template.containers[0].env] == ["DATABASE_URL", "LOG_LEVEL"]


def test_a_pinned_reference_already_on_the_version_is_current() -> None:
    reader = read_secret_reader(service(env=(SECRET, "4")), SECRET)
    assert reader.current_for("4") and not reader.current_for("5")


def test_rollback_looks_past_a_revision_rolled_for_a_secret_version() -> None:
    from tasks.cloud_run import RevisionInfo, RevisionSet

    def rev(name: str, image: str, rolled_for: str = "") -> RevisionInfo:
        return RevisionInfo(name=name, created=name, ready=True, image=image, rolled_for=rolled_for)

    # Newest first: two rolls of the v2 release, the v2 release, the v1 release.
    revisions = [rev("r4", "v2", "5"), rev("r3", "v2", "4"), rev("r2", "v2"), rev("r1", "v1")]
    rolled = RevisionSet(service="s", region="r", serving={"r4": 100}, revisions=revisions)
    assert rolled.previous() == "r1"
    # A release after a roll carries the annotation along but runs another image.
    release = [rev("r5", "v3", "5"), *revisions]
    assert (
        RevisionSet(service="s", region="r", serving={"r5": 100}, revisions=release).previous()
        == "r4"
    )
    plain = RevisionSet(service="s", region="r", serving={"r2": 100}, revisions=revisions)
    assert plain.previous() == "r1"


def test_behind_says_which_services_a_roll_would_bring_to_a_version() -> None:
    """The failback's health gate rolls only these before judging the primary region."""
    from tasks.run_secret_readers import ROLLED_FOR

    env_latest = service(env=(SECRET, "latest"))
    assert read_secret_reader(env_latest, SECRET).behind("4")  # never rolled: may be behind
    env_latest.template.annotations[ROLLED_FOR] = "4"
    assert not read_secret_reader(env_latest, SECRET).behind("4")
    assert read_secret_reader(env_latest, SECRET).behind("5")
    assert read_secret_reader(service(env=(SECRET, "3")), SECRET).behind("4")
    assert not read_secret_reader(service(env=(SECRET, "4")), SECRET).behind("4")
    # Nothing to roll: a volume at latest follows at once, a service that does not read
    # it, and one whose traffic is pinned to named revisions (a roll takes no traffic).
    assert not read_secret_reader(service(volume=(SECRET, "latest")), SECRET).behind("4")
    assert not read_secret_reader(service(), SECRET).behind("4")
    pinned = [run_v2.TrafficTarget(type_=REVISION_TYPE, revision="ai-service-00001", percent=100)]
    assert not read_secret_reader(service(env=(SECRET, "latest"), traffic=pinned), SECRET).behind(
        "4"
    )
