"""Bad input (issue 15 §5): invalid launches refused before any side effect.

The unit tier checks each door with no lab (tests/unit/test_input_fuzz.py). This sweep
launches a sample of what those property-based strategies generate (reliability/inputs.py)
through the lab's own deployments, end to end, and counts the writes the lab saw:
- flow parameters (failover, failback, rollback: environment, reason, incident_id,
  operator) that the product's own checks refuse (Prefect's check against the flow's
  signature, then ``SwitchRequest.validate_launch``, run here first to pick the invalid ones);
- topology files (the lab's file with one value replaced, one key removed or one unknown
  key added) that ``parse_topology_file`` refuses, written where the flow runs read the
  lab's topology, with a valid failover launched against it.
The primary region is down and the failover pre-approved, so a bad input let through
would go on to change things: the sweep would see its writes.

Figures (``name=value``): bad_inputs_tried, bad_inputs_with_side_effects (goal 0),
bad_inputs_not_refused (runs that did not fail: goal 0), bad_inputs_field_unnamed (refusals
whose message does not name the field or section: goal 0), bad_inputs_refused_at_launch
(the Prefect server's 409: the deployment's parameter schema), bad_inputs_rejected_by_server
(another refusal to create the run, with no word from the flow), and a line per input that
went wrong or was rejected.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from bench.labctl import BenchLab, bench_lab, figure
from lifeboat.topology import ENVIRONMENTS_DIR, TopologyError, load_topology, parse_topology_file
from reliability.inputs import INCIDENTS, NAMES, OPERATORS, REASONS, mutated_topologies

BASE_PORT = int(os.environ.get("LIFEBOAT_RELIABILITY_BADINPUT_PORT", "29780"))
PG_PREFIX = os.environ.get("LIFEBOAT_RELIABILITY_BADINPUT_PG_PREFIX", "127.0.29.")
TIME_SCALE = 0.01
RUN_TIMEOUT_S = 180.0
FLOWS = ("failover", "failback", "rollback")
PARAMETERS = ("environment", "reason", "incident_id", "operator")

T = TypeVar("T")


def sample(strategy: st.SearchStrategy[T], count: int, at: int = 15) -> list[T]:
    """``count`` examples drawn as hypothesis draws them for a test (edge cases included),
    the same each time for a given ``at`` seed."""
    drawn: list[T] = []

    @seed(at)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(example: T) -> None:
        drawn.append(example)

    collect()
    return drawn[:count]


PARAMETER_SETS: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "flow": st.sampled_from(FLOWS),
        # Mostly the lab's name, so the other fields' checks are reached too (the
        # environment is checked first).
        "environment": st.one_of(st.just("lab"), st.just("lab"), st.just("lab"), NAMES),
        "reason": REASONS,
        "incident_id": INCIDENTS,
        "operator": OPERATORS,
    }
)


def refusal(flow_name: str, params: dict[str, Any]) -> tuple[str, ...] | None:
    """The product's own verdict on a launch, with no lab call: the fields it refuses, or
    None when it accepts. Prefect checks the flow's signature; the flow checks the rest
    (flows/launch.py) before its first call. An input may break several fields, and a
    refusal that names any of them names a field."""
    from prefect.exceptions import ParameterTypeError

    from flows.failback import failback
    from flows.failover import failover
    from flows.launch import SwitchRequest
    from flows.rollback import rollback
    from tasks.errors import PermanentError

    flow: Any = {"failover": failover, "failback": failback, "rollback": rollback}[flow_name]
    try:
        checked = flow.validate_parameters(params)
        SwitchRequest.validate_launch(
            checked["environment"],
            checked["reason"],
            checked.get("incident_id"),
            checked.get("operator", "unknown"),
        )
    except ParameterTypeError as exc:
        return tuple(f for f in PARAMETERS if f"- {f}:" in str(exc)) or ("?",)
    except PermanentError as exc:
        return (str(exc).split(":", 1)[0],)
    return None


def invalid_topology(data: dict[str, Any], scratch: Path) -> str | None:
    """The product's verdict on a topology: the error, or None when it accepts it."""
    path = scratch / "candidate.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        parse_topology_file(path)
    except TopologyError as exc:
        return str(exc)
    return None


def writes(lab: BenchLab, since: int) -> list[str]:
    """Every call the lab judged a change, since ``since``: any is a side effect here."""
    return [
        f"{e['api']} {e['method']} {e['path']}"
        for e in lab.requests(since=since)
        if e["write"] and e["status"] < 400
    ]


def launch_and_watch(
    lab: BenchLab, deployment: str, params: dict[str, Any], fields: tuple[str, ...]
) -> dict[str, Any]:
    """Launch, wait for the end, and report what the lab saw and what the run said."""
    since = lab.last_seq()
    try:
        run = lab.api.launch(deployment, params)
    except httpx.HTTPStatusError as exc:
        # The Prefect server refused to create the run: 409 when the parameters break the
        # deployment's schema (the flow's signature), which names the field; another
        # status when it could not store them (a NUL in a string: PostgreSQL's JSON
        # refuses it), where the flow had no say. Nothing ran either way.
        code, text = exc.response.status_code, exc.response.text
        state = "REFUSED_AT_LAUNCH" if code == 409 else "REJECTED"
        return {
            "refused": True,
            "named": _names_any(text, fields) if code == 409 else True,
            "writes": [],
            "state": state,
            "message": f"server {code}: {text[:300]}",
        }
    try:
        final = lab.api.wait(run["id"], timeout=RUN_TIMEOUT_S)
    except AssertionError:
        final = {"state": {"type": "RUNNING", "message": "did not end"}}
    message = str(final["state"].get("message") or "")
    found = writes(lab, since)
    if found:  # a bad input got through: the next one starts from the seeded lab
        lab.reset()
        lab.outage(load_topology("lab").regions.primary.name, True)
    return {
        "refused": final["state"]["type"] == "FAILED",
        "named": _names_any(message, fields),
        "writes": found,
        "state": final["state"]["type"],
        "message": message[:300],
    }


def _names_any(message: str, fields: tuple[str, ...]) -> bool:
    return any(field in message for field in fields)


def parameter_cases(count: int) -> list[tuple[str, dict[str, Any], tuple[str, ...]]]:
    """Up to ``count`` invalid parameter sets, with the fields the product refuses."""
    cases = []
    for drawn in sample(PARAMETER_SETS, count * 4):
        flow = str(drawn["flow"])
        params: dict[str, Any] = {k: v for k, v in drawn.items() if k != "flow"}
        fields = refusal(flow, params)
        if fields is not None:
            cases.append((flow, params, fields))
    return cases[:count]


def topology_cases(count: int, scratch: Path) -> list[tuple[dict[str, Any], str]]:
    """Up to ``count`` invalid topologies, with the section each change was made in."""
    cases = []
    for data, path, _kind in sample(mutated_topologies(), count * 4):
        if invalid_topology(data, scratch) is not None:
            cases.append((data, str(path[0])))
    return cases[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parameters", type=int, default=30, help="parameter sets to launch")
    parser.add_argument("--topologies", type=int, default=20, help="topology files to try")
    args = parser.parse_args(argv)
    os.environ["LIFEBOAT_RETRY_BACKOFF_S"] = "0.2"
    scratch = Path(tempfile.mkdtemp(prefix="lifeboat-badinput-"))
    environments = scratch / "environments"
    environments.mkdir()
    topology = environments / "lab.yaml"
    shutil.copy(ENVIRONMENTS_DIR / "lab.yaml", topology)
    original = topology.read_text()
    results: list[dict[str, Any]] = []
    try:
        with bench_lab(
            topology=topology, base_port=BASE_PORT, pg_prefix=PG_PREFIX, time_scale=TIME_SCALE
        ) as lab:
            lab.reset()
            lab.outage(load_topology("lab").regions.primary.name, True)
            for flow, params, field in parameter_cases(args.parameters):
                launched = params | ({"approve": True} if flow == "failover" else {})
                seen = launch_and_watch(lab, f"{flow}/lab", launched, field)
                results.append(seen | {"input": f"{flow} {params!r}"[:200]})
            good = {"reason": "bad-input sweep", "approve": True}
            for data, section in topology_cases(args.topologies, scratch):
                topology.write_text(yaml.safe_dump(data, sort_keys=False))
                try:
                    seen = launch_and_watch(lab, "failover/lab", good, (section,))
                finally:
                    topology.write_text(original)
                results.append(seen | {"input": f"topology, {section} changed"})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(results)
    return 0


def report(results: list[dict[str, Any]], out: Callable[[str], None] = print) -> None:
    for r in results:
        if r["writes"] or not r["refused"] or not r["named"] or r["state"] == "REJECTED":
            out(f"# bad input {r['input']}: {r['state']} {r.get('message', '')!r} {r['writes']}")
    figure("bad_inputs_tried", len(results))
    figure("bad_inputs_refused_at_launch", sum(r["state"] == "REFUSED_AT_LAUNCH" for r in results))
    figure("bad_inputs_rejected_by_server", sum(r["state"] == "REJECTED" for r in results))
    figure("bad_inputs_with_side_effects", sum(bool(r["writes"]) for r in results))
    figure("bad_inputs_not_refused", sum(not r["refused"] for r in results))
    figure("bad_inputs_field_unnamed", sum(not r["named"] for r in results))


if __name__ == "__main__":
    raise SystemExit(main())
