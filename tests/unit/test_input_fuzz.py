"""Property-based checks of what Lifeboat accepts (issue 15, "bad input").

Two doors let input in: a topology file, and a flow's parameters (from the UI, the API,
or break-glass). For any input hypothesis can think of, each door either accepts it, and
what it hands on keeps the documented rules, or refuses it with an error that names the
field. Nothing else may escape: no KeyError, TypeError or half-validated object. Refusal
happens before any side effect because both checks run before a flow's first call (the
flows' lab tests check that order); here they run with no lab at all.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifeboat.topology import Topology, TopologyError, parse_topology_file
from reliability.inputs import INCIDENTS, LAB, NAMES, OPERATORS, REASONS, mutated_topologies

FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@FAST
@given(mutated_topologies())
def test_a_topology_file_is_accepted_whole_or_refused_naming_the_field(
    tmp_path: Path, case: tuple[dict[str, Any], tuple[Any, ...], str]
) -> None:
    data, path, kind = case
    try:
        topo = parse_topology_file(_write(tmp_path, data))
    except TopologyError as exc:
        message = str(exc)
        # The error names where: the section the change was made in, at least (a check
        # across fields, such as duplicate names, speaks for the section as a whole).
        assert "invalid topology" in message or "environment" in message, message
        assert str(path[0]) in message, (path, kind, message)
        return
    # Accepted: the model is whole, and it says the same thing when read back.
    assert Topology.model_validate(topo.model_dump()) == topo
    assert topo.regions.primary.name != topo.regions.secondary.name


def test_the_lab_file_itself_is_accepted() -> None:
    """The base every mutation starts from is valid, so each refusal is the mutation's."""
    Topology.model_validate(LAB)


# -- flow parameters -----------------------------------------------------------------

INCIDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{2,63}$")


def _launch(flow_name: str, params: dict[str, Any]) -> Any:
    """What a launch does before any side effect: Prefect checks the parameters against the
    flow's signature, then the flow's own checks (flows/launch.py)."""
    from flows.failback import failback
    from flows.failover import failover
    from flows.launch import SwitchRequest
    from flows.rollback import rollback

    flow = {"failover": failover, "failback": failback, "rollback": rollback}[flow_name]
    checked = flow.validate_parameters(params)
    return SwitchRequest.validate_launch(
        checked["environment"],
        checked["reason"],
        checked.get("incident_id"),
        checked.get("operator", "unknown"),
    )


@FAST
@given(
    flow_name=st.sampled_from(["failover", "failback", "rollback"]),
    environment=NAMES,
    reason=REASONS,
    incident_id=INCIDENTS,
    operator=OPERATORS,
)
def test_flow_parameters_are_accepted_with_their_rules_kept_or_refused_naming_the_field(
    flow_name: str, environment: str, reason: str, incident_id: str | None, operator: str
) -> None:
    from prefect.exceptions import ParameterTypeError

    from tasks.errors import PermanentError

    params = {
        "environment": environment,
        "reason": reason,
        "incident_id": incident_id,
        "operator": operator,
    }
    try:
        request = _launch(flow_name, params)
    except ParameterTypeError as exc:
        named = {"environment", "reason", "incident_id", "operator"}
        assert any(f"- {field}:" in str(exc) for field in named), str(exc)
        return
    except PermanentError as exc:
        assert str(exc).split(":", 1)[0] in {"reason", "incident_id", "environment"}, str(exc)
        return
    # Accepted: what the flow goes on with keeps every documented rule.
    assert request.environment == "lab"
    assert request.reason == reason.strip() and 0 < len(request.reason) <= 500
    assert INCIDENT.match(request.incident_id), request.incident_id
    if incident_id is not None:
        assert request.incident_id == incident_id
    assert len(request.operator) <= 100


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"environment": "lab", "reason": "x" * 501}, "reason"),
        ({"environment": "lab", "reason": "   "}, "reason"),
        ({"environment": "prod", "reason": "outage"}, "environment"),
        ({"environment": "lab", "reason": "outage", "incident_id": "x y"}, "incident_id"),
        ({"environment": "lab", "reason": "outage", "operator": "o" * 101}, "operator"),
    ],
)
def test_known_bad_parameters_are_refused_naming_the_field(
    params: dict[str, Any], field: str
) -> None:
    """The examples the properties above must keep refusing, spelled out."""
    from prefect.exceptions import ParameterTypeError

    from tasks.errors import PermanentError

    with pytest.raises((ParameterTypeError, PermanentError)) as err:
        _launch("failover", params)
    assert field in str(err.value)
