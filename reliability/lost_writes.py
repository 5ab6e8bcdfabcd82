"""Lost-write accounting (issue 15 §1): a writer through the front door during each switch.

For each scenario, on a lab reset to its seed, a writer (reliability/writer.py) sends
numbered writes through the front door at a fixed rate from before the switch until after
it; afterwards every acknowledged (201) write is looked up on the final primary, the
instance Cloud SQL reports as taking writes (``sql_live_primary``). The scenarios:

- failback: after a failover (primary region down, then back), the writer runs through
  the failback (goal 0 lost);
- failover_graceful: a planned failover, the primary region up and taking writes the
  whole time, replica caught up (lag 0 at preflight), approved in advance (goal 0 lost);
- failover_ungraceful: real lag, as tests/flows/test_rpo_gate.py makes it: WAL replay is
  paused on the replica while the writer keeps writing to the primary, then the primary
  region goes down and an ungraceful failover runs. The goal: lost writes at most what the
  run record said about the lag before the promotion. The record states the lag in
  seconds (and WAL bytes), not writes: the sweep converts it at the writer's measured
  rate (acknowledged writes per second while the primary took them) times the lag's seconds,
  rounded up, and prints both beside the measured loss;
- rollback: a release of every service (a new revision with all traffic), then a
  rollback of all of them while the writer runs (goal 0 lost).

Figures (``name=value``), per scenario S:
- lost_writes_S (goal 0; for the ungraceful failover ≤ lag_estimate_writes_ungraceful);
- acknowledged_S, refused_S (answers other than 201, with their statuses in
  refused_statuses_S), unanswered_S, run_S (the switch's final state);
- for the ungraceful failover also: lag_estimate_seconds_ungraceful and
  lag_estimate_bytes_ungraceful (the record's), write_rate_ungraceful (acknowledged/s
  before the outage), lag_estimate_writes_ungraceful, and at_risk_writes_ungraceful (the
  acknowledged writes the replica had received but not replayed: those sent between the
  pause and the outage), lost_within_estimate_ungraceful (1 when lost ≤ estimate);
- lag_seconds_graceful: the record's lag at preflight for the graceful failover.
A lost write is printed as a ``#`` line with its id, when it was sent, and the step of
the switch's record running then.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.labctl import BenchLab, bench_lab, figure
from lifeboat.topology import Topology, load_topology
from reliability.cloud import deploy_release, read_record
from reliability.writer import (
    Answer,
    Writer,
    acknowledged_rate,
    lost,
    order_ids,
    refused,
    writes_in_lag,
)
from tasks.cloud_sql import describe, sql_live_primary

BASE_PORT = int(os.environ.get("LIFEBOAT_RELIABILITY_LOST_PORT", "26780"))
PG_PREFIX = os.environ.get("LIFEBOAT_RELIABILITY_LOST_PG_PREFIX", "127.0.27.")
# Writes land on the serving side before the switch starts, and after it ends.
SETTLE_S = 2.0
# How long the ungraceful scenario's writer writes to the primary with replay paused.
PAUSED_S = 5.0
SWITCH_TIMEOUT_S = 900.0


@dataclass
class Accounting:
    """What one scenario's writer saw, checked against the final primary."""

    scenario: str
    answers: list[Answer]
    lost: list[str]
    final_primary: str
    run_state: str
    extra: dict[str, float | int] = field(default_factory=dict)

    def figures(self) -> dict[str, float | int | str]:
        s = self.scenario
        statuses = refused(self.answers)
        return {
            f"lost_writes_{s}": len(self.lost),
            f"acknowledged_{s}": sum(a.acknowledged for a in self.answers),
            f"refused_{s}": sum(statuses.values()),
            f"refused_statuses_{s}": ",".join(f"{k}:{v}" for k, v in statuses.items()) or "-",
            f"unanswered_{s}": sum(a.status is None for a in self.answers),
            f"run_{s}": self.run_state,
            **self.extra,
        }


def step_at(steps: list[dict[str, Any]], moment: datetime) -> str:
    """The record's step running at ``moment`` (the last one started, if several), or
    where the moment falls outside them."""
    running = [
        s["name"]
        for s in steps
        if datetime.fromisoformat(s["started_at"]) <= moment
        and (s.get("ended_at") is None or moment <= datetime.fromisoformat(s["ended_at"]))
    ]
    if running:
        return str(running[-1])
    if steps and moment < datetime.fromisoformat(steps[0]["started_at"]):
        return "before the run's first step"
    return "between or after the run's steps"


def lost_writes_evidence(
    answers: list[Answer], lost_ids: list[str], steps: list[dict[str, Any]], limit: int = 20
) -> list[str]:
    """One line per lost write (the first ``limit``): id, when sent, the step running."""
    by_id = {a.order_id: a for a in answers}
    lines = []
    for order_id in lost_ids[:limit]:
        sent = datetime.fromtimestamp(by_id[order_id].sent_at, UTC)
        lines.append(
            f"lost {order_id} sent {sent.isoformat()} answered in "
            f"{by_id[order_id].seconds:.3f} s, during {step_at(steps, sent)}"
        )
    if len(lost_ids) > limit:
        lines.append(f"... and {len(lost_ids) - limit} more")
    return lines


# ---- the lab ---------------------------------------------------------------------------


@contextmanager
def writing(lab: BenchLab, topo: Topology, scenario: str) -> Iterator[Writer]:
    """A writer running for the whole block, stopped whatever happens."""
    prefix = f"lw-{scenario}-{uuid.uuid4().hex[:6]}"
    writer = Writer(str(lab.endpoints["front_door"]), topo.health.host, prefix)
    writer.start()
    try:
        yield writer
    finally:
        writer.stop()


def _switch(lab: BenchLab, deployment: str, parameters: dict[str, Any]) -> str:
    """Run a switch through the Prefect server; its final state's type."""
    final = lab.run(deployment, parameters, timeout=SWITCH_TIMEOUT_S)
    state = str(final["state"]["type"])
    if state != "COMPLETED":
        print(f"# {deployment} {parameters.get('incident_id')}: {final['state']}", flush=True)
    return state


def _account(
    topo: Topology,
    scenario: str,
    writer: Writer,
    flow: str,
    incident: str,
    run_state: str,
) -> Accounting:
    primary = sql_live_primary.fn(topo.environment)
    assert primary.address is not None, primary
    held = order_ids(primary.address, writer.prefix, port=topo.cloud_sql.port)
    missing = lost(writer.acknowledged, held)
    result = Accounting(scenario, list(writer.answers), missing, primary.name, run_state)
    if missing:
        steps = read_record(topo, flow, incident)["steps"]
        for line in lost_writes_evidence(result.answers, missing, steps):
            print(f"# {scenario}: {line}", flush=True)
        for name, count in _found_elsewhere(topo, writer.prefix, missing, primary.name).items():
            print(f"# {scenario}: {count} of the lost writes are on {name}", flush=True)
    return result


def _found_elsewhere(topo: Topology, prefix: str, missing: list[str], final: str) -> dict[str, int]:
    """Where the lost writes are, among the topology's other instances still standing."""
    found = {}
    sql = topo.cloud_sql
    for instance in (sql.primary, sql.replica):
        if instance.instance == final:
            continue
        try:
            state = describe(topo.environment, instance.project, instance.instance)
            assert state.address is not None
            held = order_ids(state.address, prefix, port=sql.port)
        except Exception as exc:
            print(f"# could not read {instance.instance}: {type(exc).__name__}", flush=True)
            continue
        found[instance.instance] = len(set(missing) & held)
    return found


def _on_replica(topo: Topology, query: str) -> None:
    replica = topo.cloud_sql.replica
    state = describe(topo.environment, replica.project, replica.instance)
    with psycopg.connect(
        host=state.address,
        port=topo.cloud_sql.port,
        user="postgres",
        dbname="postgres",
        connect_timeout=5,
        autocommit=True,
    ) as conn:
        conn.execute(query)


def failback(lab: BenchLab, topo: Topology) -> Accounting:
    primary = topo.regions.primary.name
    lab.reset()
    lab.outage(primary, True)
    before = _switch(lab, "failover/lab", {"reason": "before failback", "approve": True})
    if before != "COMPLETED":
        raise RuntimeError(f"the failover before the failback ended {before}")
    lab.outage(primary, False)
    incident = f"LW-FB-{uuid.uuid4().hex[:6]}"
    with writing(lab, topo, "failback") as writer:
        time.sleep(SETTLE_S)
        state = _switch(lab, "failback/lab", {"reason": "lost writes", "incident_id": incident})
        time.sleep(SETTLE_S)
    return _account(topo, "failback", writer, "failback", incident, state)


def failover_graceful(lab: BenchLab, topo: Topology) -> Accounting:
    lab.reset()
    incident = f"LW-FOG-{uuid.uuid4().hex[:6]}"
    with writing(lab, topo, "failover_graceful") as writer:
        time.sleep(SETTLE_S)
        # The primary is healthy, so the failover asks for approval: given in advance.
        parameters = {"reason": "planned", "incident_id": incident, "approve": True}
        state = _switch(lab, "failover/lab", parameters)
        time.sleep(SETTLE_S)
    result = _account(topo, "failover_graceful", writer, "failover", incident, state)
    lag = read_record(topo, "failover", incident).get("lag") or {}
    result.extra["lag_seconds_graceful"] = float(lag.get("seconds", 0.0))
    return result


def failover_graceful_cut(lab: BenchLab, topo: Topology) -> Accounting:
    """The graceful failover again, with the replica's WAL stream cut the moment the
    promotion is requested: what if Cloud SQL stops replicating when its promote operation
    starts (the lab's replica streams until the promotion lands, at the operation's end)?
    Not a goal line: a what-if on a timing Google does not document."""
    lab.reset()
    incident = f"LW-FOC-{uuid.uuid4().hex[:6]}"
    since = lab.last_seq()
    cut = threading.Event()

    def cut_at_promote() -> None:
        deadline = time.monotonic() + SWITCH_TIMEOUT_S
        while time.monotonic() < deadline:
            if any("promoteReplica" in e["path"] for e in lab.requests(api="sql", since=since)):
                _on_replica(topo, "ALTER SYSTEM SET primary_conninfo = ''")
                _on_replica(topo, "SELECT pg_reload_conf()")
                cut.set()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=cut_at_promote, daemon=True)
    with writing(lab, topo, "failover_graceful_cut") as writer:
        time.sleep(SETTLE_S)
        watcher.start()
        parameters = {"reason": "planned", "incident_id": incident, "approve": True}
        state = _switch(lab, "failover/lab", parameters)
        time.sleep(SETTLE_S)
    watcher.join(timeout=5)
    if not cut.is_set():
        raise RuntimeError("the replica's stream was never cut: no promoteReplica logged")
    return _account(topo, "failover_graceful_cut", writer, "failover", incident, state)


def failover_ungraceful(lab: BenchLab, topo: Topology) -> Accounting:
    primary = topo.regions.primary.name
    lab.reset()
    incident = f"LW-FOU-{uuid.uuid4().hex[:6]}"
    with writing(lab, topo, "failover_ungraceful") as writer:
        started = time.time()
        time.sleep(SETTLE_S)
        try:
            # Received but not applied: the standby holds WAL it has not replayed.
            _on_replica(topo, "SELECT pg_wal_replay_pause()")
            paused = time.time()
            time.sleep(PAUSED_S)
            lab.outage(primary, True)
            down = time.time()
            parameters = {
                "reason": "region lost",
                "incident_id": incident,
                "mode": "ungraceful",
                "approve": True,
            }
            state = _switch(lab, "failover/lab", parameters)
            time.sleep(SETTLE_S)
        finally:
            # After a promotion the instance is no longer in recovery, and nothing is paused.
            _on_replica(topo, "SELECT pg_wal_replay_resume() WHERE pg_is_in_recovery()")
    result = _account(topo, "failover_ungraceful", writer, "failover", incident, state)
    lag = read_record(topo, "failover", incident).get("lag") or {}
    result.extra.update(
        ungraceful_lag_figures(result.answers, lag, started, paused, down, len(result.lost))
    )
    return result


def ungraceful_lag_figures(
    answers: list[Answer],
    lag: dict[str, Any],
    started: float,
    paused: float,
    down: float,
    lost_count: int,
) -> dict[str, float | int]:
    """The record's lag estimate beside the measured loss.

    The record states seconds (the age of the last replayed transaction while WAL is
    outstanding) and WAL bytes; in writes it is the writer's acknowledged rate while the
    primary took writes (from the writer's start to the outage) times those seconds.
    """
    seconds = float(lag.get("seconds", 0.0))
    rate = acknowledged_rate(answers, started, down)
    estimate = writes_in_lag(rate, seconds)
    return {
        "lag_estimate_seconds_ungraceful": seconds,
        "lag_estimate_bytes_ungraceful": int(lag.get("bytes", 0)),
        "write_rate_ungraceful": rate,
        "lag_estimate_writes_ungraceful": estimate,
        "at_risk_writes_ungraceful": sum(
            a.acknowledged and paused <= a.sent_at < down for a in answers
        ),
        "lost_within_estimate_ungraceful": int(lost_count <= estimate),
    }


def rollback(lab: BenchLab, topo: Topology) -> Accounting:
    lab.reset()
    incident = f"LW-RB-{uuid.uuid4().hex[:6]}"
    with writing(lab, topo, "rollback") as writer:
        time.sleep(SETTLE_S)
        for service in topo.services:
            deploy_release(topo, service.name, tag="lost-writes")
        time.sleep(SETTLE_S)
        state = _switch(lab, "rollback/lab", {"reason": "bad release", "incident_id": incident})
        time.sleep(SETTLE_S)
    return _account(topo, "rollback", writer, "rollback", incident, state)


SCENARIOS: dict[str, Callable[[BenchLab, Topology], Accounting]] = {
    "failback": failback,
    "failover_graceful": failover_graceful,
    "failover_ungraceful": failover_ungraceful,
    "rollback": rollback,
}
# Run only when named (--scenarios): what-ifs beyond the lab's model, not goal lines.
WHAT_IFS: dict[str, Callable[[BenchLab, Topology], Accounting]] = {
    "failover_graceful_cut": failover_graceful_cut,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenarios", nargs="*", choices=[*SCENARIOS, *WHAT_IFS], default=list(SCENARIOS)
    )
    args = parser.parse_args(argv)
    failed = []
    with bench_lab(base_port=BASE_PORT, pg_prefix=PG_PREFIX) as lab:
        topo = load_topology("lab")
        for name in args.scenarios:
            print(f"# scenario {name}", flush=True)
            try:
                result = (SCENARIOS | WHAT_IFS)[name](lab, topo)
            except Exception as exc:
                # One scenario's failure still lets the others report.
                print(f"# {name} did not finish: {type(exc).__name__}: {exc}", flush=True)
                failed.append(name)
                continue
            for key, value in result.figures().items():
                figure(key, value)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
