"""The unit tier: pure decision logic, no lab, no Prefect server, no network.

Every test here is marked ``unit`` (``pytest -m unit`` selects them). The tier runs in a
pytest process of its own, before the lab tests (``make test`` does; tests/conftest.py
keeps it out of any other run): these modules import ``prefect`` (flows/, tasks/), and
Prefect reads its settings when first imported, while the session lab puts them in the
environment only when it starts (tests/labharness.py); so does ``tasks/retrying.py``
with ``LIFEBOAT_RETRY_BACKOFF_S``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

UNIT_DIR = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if UNIT_DIR in item.path.parents:
            item.add_marker(pytest.mark.unit)
