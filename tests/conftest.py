"""Session fixtures: one lab (emulators, real databases, Prefect) for the whole run."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from lab.prefect_api import PrefectApi
    from tests.labharness import Lab

# The lab's modules are imported by the fixtures that start it, not here: a run of the
# unit tier loads this file too, and the lab's imports (every Google client) take seconds.

UNIT_TIER = Path(__file__).parent / "unit"
FILE_SECONDS = Path(__file__).parent / "file_seconds.json"


def _unit_only(config: pytest.Config) -> bool | None:
    """True for a run of the unit tier alone (``pytest tests/unit``, ``pytest -m unit``),
    False for a run without it, None for a run that names both tiers."""
    if config.option.markexpr.strip() == "unit":
        return True
    paths = [(config.invocation_params.dir / a.split("::")[0]).resolve() for a in config.args]
    inside = [p == UNIT_TIER or UNIT_TIER in p.parents for p in paths]
    if not paths or not any(inside):
        return False
    return True if all(inside) else None


def pytest_configure(config: pytest.Config) -> None:
    if _unit_only(config) is None:
        raise pytest.UsageError(
            "run tests/unit in a pytest process of its own (make test does): its modules "
            "import prefect, which must not be imported before the lab configures it"
        )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The unit tier stays out of a run of the lab tests (a plain ``pytest`` included):
    the session lab puts Prefect's settings in the environment when it starts
    (labharness.start_lab), and Prefect reads them when it is first imported."""
    if collection_path == UNIT_TIER and not _unit_only(config):
        return True
    return None


def pytest_report_header(config: pytest.Config) -> str | None:
    """Say so when a run of a folder holding the unit tier leaves it out."""
    paths = [(config.invocation_params.dir / a.split("::")[0]).resolve() for a in config.args]
    if _unit_only(config) or not any(p in UNIT_TIER.parents for p in paths):
        return None
    return "tests/unit is not in this run: `pytest tests/unit` runs it (make test runs both)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The heaviest files first (tests/file_seconds.json, scripts/test_weights.py).

    The lab suite is shared out by file and bound by CPU, so it ends when the last file
    started ends. xdist's own order (``--no-loadscope-reorder`` turns it off in make test)
    puts the files with the most tests first, and the few long ones, the killed-run
    tests, last: the 4 workers then ran 3 minutes at 16-51% of the CPU (session 20).
    A stable sort keeps each file's tests together and in order.
    """
    seconds: dict[str, float] = json.loads(FILE_SECONDS.read_text())
    median = sorted(seconds.values())[len(seconds) // 2] if seconds else 0.0
    root = config.rootpath

    def weight(item: pytest.Item) -> float:
        inside = root in item.path.parents
        return seconds.get(item.path.relative_to(root).as_posix(), median) if inside else median

    items.sort(key=lambda item: -weight(item))


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    from tests.labharness import start_lab, stop_lab

    root = tmp_path_factory.mktemp("lab")
    # Under xdist each worker's base temp is a folder of the run's own: the lock file
    # beside them is shared by every worker of this run, and by no other run.
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    running = start_lab(root, start_lock=shared / "lab-start.lock")
    try:
        yield running
    finally:
        stop_lab(root)


@pytest.fixture(scope="session")
def api(lab: Lab) -> PrefectApi:
    from lab.prefect_api import PrefectApi

    return PrefectApi(lab.endpoints["prefect_api_url"])


@pytest.fixture(autouse=True)
def _lab_replies_follow_googles_schema(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail any test during which the lab replied outside Google's discovery schema: that
    is a lab bug (lab/core/schema.py), whoever made the call. A call the lab refused for
    breaking the schema already failed the caller; it is only written to
    ``$LIFEBOAT_SCHEMA_REPORT`` (JSON lines) when that is set."""
    # The session lab, or a module's own in-process lab under one of these names
    # (lab_ctx checks itself, in tests/contract/conftest.py).
    holder = next((n for n in ("lab", "cli") if n in request.fixturenames), None)
    if holder is None:
        yield
        return
    read = _violations_of(request.getfixturevalue(holder))
    if read is None:
        yield
        return
    since = max((v["seq"] for v in read(0)), default=0)
    yield
    found = read(since)
    report = os.environ.get("LIFEBOAT_SCHEMA_REPORT")
    if report:
        with open(report, "a") as out:
            for entry in (v for v in found if v["kind"] == "request"):
                out.write(json.dumps({"test": request.node.nodeid, **entry}) + "\n")
    broken = [v for v in found if v["kind"] == "response"]
    if broken:
        lines = [
            f"{v['api']} {v['method']} {v['path']} ({v['discovery_method']}): {v['problems']}"
            for v in broken[:10]
        ]
        pytest.fail(
            f"the lab replied {len(broken)} time(s) outside Google's discovery schema:\n"
            + "\n".join(lines)
        )


def _violations_of(lab: object) -> Callable[[int], list[dict[str, Any]]] | None:
    """How to read the schema violations of whatever a module's ``lab`` fixture is: the
    session lab (over its control API) or an in-process one (its ``ctx``)."""
    remote = getattr(lab, "schema_violations", None)
    if callable(remote):
        return lambda since: list(remote(since))
    ctx = getattr(lab, "ctx", None)
    violations = getattr(ctx, "violations", None)
    if violations is None:
        return None
    return lambda since: [v.to_json() for v in violations.entries(since=since)]


@pytest.fixture
def fresh_lab(lab: Lab, api: PrefectApi) -> Lab:
    """The session lab, reset to its seeded topology before the test, with no region slot
    held by a run an earlier test killed (tests/leftover_slots.py)."""
    from tests.leftover_slots import release_leftover_slots

    lab.reset()
    released = release_leftover_slots(api)
    if released:  # shown with the test's output if it fails
        print(f"released any region slot still held by killed runs {', '.join(released)}")
    return lab
