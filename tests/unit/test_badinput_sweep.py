"""The bad-input sweep's pure parts: its sample, the product's verdict it launches on,
and its figures."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from reliability.badinput import invalid_topology, refusal, report, sample
from reliability.inputs import LAB


def test_a_sample_is_the_same_each_time_and_as_long_as_asked() -> None:
    strategy = st.integers(0, 10**9)
    first = sample(strategy, 25)
    assert len(first) == 25
    assert sample(strategy, 25) == first
    assert sample(strategy, 25, at=16) != first


@pytest.mark.parametrize(
    ("flow", "params", "field"),
    [
        ("failover", {"environment": "prod", "reason": "x"}, ("environment",)),
        ("failback", {"environment": "lab", "reason": "   "}, ("reason",)),
        ("rollback", {"environment": "lab", "reason": "x" * 501}, ("reason",)),
        ("failover", {"environment": "lab", "reason": "x", "incident_id": "x y"}, ("incident_id",)),
        ("failover", {"environment": "lab", "reason": "x", "operator": "o" * 101}, ("operator",)),
        # Two fields broken: the server may name either, and either names a field.
        (
            "rollback",
            {"environment": "lab", "reason": "", "operator": "o" * 101},
            ("reason", "operator"),
        ),
        ("failover", {"environment": "lab", "reason": "outage"}, None),
    ],
)
def test_the_products_own_checks_pick_the_invalid_launches(
    flow: str, params: dict[str, Any], field: tuple[str, ...] | None
) -> None:
    assert refusal(flow, params) == field


def test_a_topology_is_invalid_only_when_the_product_refuses_it(tmp_path: Path) -> None:
    assert invalid_topology(copy.deepcopy(LAB), tmp_path) is None
    broken = copy.deepcopy(LAB)
    del broken["regions"]
    assert "regions" in str(invalid_topology(broken, tmp_path))


def test_the_figures_count_side_effects_launches_let_through_and_unnamed_fields() -> None:
    refused = {"refused": True, "named": True, "writes": [], "state": "FAILED", "input": "a"}
    leaked = refused | {"writes": ["dns POST /changes"], "input": "b"}
    through = refused | {"refused": False, "state": "COMPLETED", "input": "c"}
    unnamed = refused | {"named": False, "input": "d"}
    lines: list[str] = []
    report([refused, leaked, through, unnamed], out=lines.append)
    assert [line.split(":")[0] for line in lines] == [
        "# bad input b",
        "# bad input c",
        "# bad input d",
    ]


def test_the_figures_are_printed_last(capsys: pytest.CaptureFixture[str]) -> None:
    refused = {"refused": True, "named": True, "writes": [], "state": "FAILED", "input": "a"}
    report([refused, refused | {"writes": ["x"]}])
    out = capsys.readouterr().out.splitlines()
    figures = dict(line.split("=") for line in out if not line.startswith("#"))
    assert figures["bad_inputs_tried"] == "2"
    assert figures["bad_inputs_with_side_effects"] == "1"
    assert figures["bad_inputs_not_refused"] == "0"
    assert figures["bad_inputs_field_unnamed"] == "0"
