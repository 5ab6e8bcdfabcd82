"""Session fixtures: one lab (emulators, real databases, Prefect) for the whole run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.prefect_api import PrefectApi
from tests.labharness import Lab, start_lab, stop_lab


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("lab")
    running = start_lab(root)
    try:
        yield running
    finally:
        stop_lab(root)


@pytest.fixture(scope="session")
def api(lab: Lab) -> PrefectApi:
    return PrefectApi(lab.endpoints["prefect_api_url"])


@pytest.fixture
def fresh_lab(lab: Lab) -> Lab:
    """The session lab, reset to its seeded topology before the test."""
    lab.reset()
    return lab
