"""Each task's declared ``timeout_seconds`` is the budget that applies to it (no lab).

``cloud_task`` runs every attempt inside ``lifeboat.budget.step_budget``; waits and
single calls are capped by what is left of it. These tests call the task's ``.fn``: that
is the very callable Prefect runs for each attempt (running a task through Prefect needs
the lab's Prefect server, which the unit tier does without).

Nothing that imports Prefect is imported at collection: a lab session in the same run
must start before Prefect is first imported (tests/labharness.py).
"""

from __future__ import annotations

import ast
import functools
import inspect
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from google.api_core.future.polling import DEFAULT_POLLING, PollingFuture

from lifeboat import budget
from lifeboat.topology import Health
from tasks.errors import BudgetExhausted, TransientError
from tasks.polling import operation_result, wait_until

ROOT = Path(__file__).resolve().parents[2]
FAST = (0.01, 0.05)


def never() -> None:
    return None


@functools.cache
def steps() -> SimpleNamespace:
    """Steps built with ``cloud_task``, each running ``.fn`` as Prefect would per attempt."""
    from tasks.retrying import cloud_task

    @cloud_task(timeout_seconds=0.5, retries=0)
    def step_that_waits_forever() -> None:
        """A step whose only wait would outlast its budget."""
        wait_until(never, timeout=30, interval=FAST, what="a check that never passes")

    @cloud_task(timeout_seconds=0.5, retries=0)
    def step_that_reports_its_budget(sleep_s: float) -> budget.StepBudget | None:
        time.sleep(sleep_s)
        return budget.current()

    @cloud_task(timeout_seconds=0.5, retries=0)
    def step_that_waits_twice() -> None:
        """Like run_set_traffic: wait out a rollout in progress, then wait for its own."""
        settled_at = time.monotonic() + 0.3
        wait_until(
            lambda: True if time.monotonic() >= settled_at else None,
            timeout=2,
            interval=FAST,
            what="the rollout in progress",
        )
        wait_until(never, timeout=2, interval=FAST, what="its own rollout")

    return SimpleNamespace(
        waits_forever=step_that_waits_forever.fn,
        reports_its_budget=step_that_reports_its_budget.fn,
        waits_twice=step_that_waits_twice.fn,
    )


def test_a_wait_longer_than_the_budget_fails_when_the_budget_runs_out_naming_the_step() -> None:
    step = steps().waits_forever  # built (and Prefect imported) before the clock starts
    started = time.monotonic()
    with pytest.raises(BudgetExhausted) as raised:
        step()
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 1.5, f"the wait took {elapsed:.2f} s, not the 0.5 s budget"
    assert str(raised.value) == (
        "gave up waiting for a check that never passes: "
        "step step_that_waits_forever's declared budget of 0.5 s ran out"
    )
    assert isinstance(raised.value, TransientError)  # retried, with a fresh budget
    assert budget.current() is None  # reset when the attempt ended


def test_sequential_waits_share_one_budget() -> None:
    step = steps().waits_twice
    started = time.monotonic()
    with pytest.raises(BudgetExhausted, match="its own rollout: step step_that_waits_twice's"):
        step()
    # Each wait alone fits (2 s); together they may not outlast the step's 0.5 s.
    assert time.monotonic() - started < 1.5, "the waits ran past the 0.5 s budget"


def test_outside_any_task_a_wait_keeps_its_own_timeout() -> None:
    assert budget.current() is None
    started = time.monotonic()
    with pytest.raises(TransientError) as raised:
        wait_until(never, timeout=0.3, interval=FAST, what="x")
    assert not isinstance(raised.value, BudgetExhausted)
    assert str(raised.value) == "timed out after 0 s waiting for x"
    assert 0.2 <= time.monotonic() - started < 1.5


def test_a_wait_shorter_than_the_budget_reports_its_own_timeout() -> None:
    with budget.step_budget("roomy_step", 30), pytest.raises(TransientError) as raised:
        wait_until(never, timeout=0.2, interval=FAST, what="x")
    assert not isinstance(raised.value, BudgetExhausted)
    assert "timed out after 0 s waiting for x" in str(raised.value)


def test_each_attempt_gets_a_fresh_budget() -> None:
    # Prefect retries a task by calling its .fn again: each call starts a new deadline.
    step = steps().reports_its_budget
    first = step(0.3)
    second = step(0.3)
    assert first is not None and second is not None
    assert (first.step, first.seconds) == ("step_that_reports_its_budget", 0.5)
    assert second is not first, "the second attempt inherited the first one's budget"
    # It started at least 0.3 s later (the first attempt's sleep), so it ends later too.
    assert second.deadline - first.deadline >= 0.3
    assert budget.current() is None


def test_a_step_run_from_inside_another_cannot_extend_its_deadline() -> None:
    step = steps().reports_its_budget
    with budget.step_budget("outer", 60) as outer:
        inner = step(0.0)  # declares 0.5 s: the tighter wins inside it
        assert inner is not None and inner.step == "step_that_reports_its_budget"
        assert budget.current() is outer  # and the outer one is back after it
        with budget.step_budget("wide", 600) as applied:
            assert applied is outer  # a wider inner budget cannot extend the outer one


def test_attempts_on_worker_threads_each_see_only_their_own_budget() -> None:
    barrier = threading.Barrier(2)

    def attempt(seconds: float) -> tuple[str, float]:
        with budget.step_budget(f"step-{seconds}", seconds):
            barrier.wait(timeout=5)
            got = budget.current()
            assert got is not None
            return got.step, got.seconds

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = sorted(pool.map(attempt, [5.0, 7.0]))
    assert results == [("step-5.0", 5.0), ("step-7.0", 7.0)]
    assert budget.current() is None  # nothing leaked into the calling thread


def test_a_single_calls_timeout_is_capped_by_the_budget_but_never_below_a_floor() -> None:
    assert budget.call_timeout(30) == 30  # outside any step: unchanged
    with budget.step_budget("short_step", 4.5):
        assert budget.call_timeout(30) == 5  # whole seconds: sqladmin keys transports on it
        assert budget.call_timeout(2) == 2
    with budget.step_budget("spent_step", 0):
        assert budget.call_timeout(30) == budget.MIN_CALL_S


class NeverDone(PollingFuture):
    """google-api-core's own polling future, for an operation that never finishes."""

    def done(self, retry: Any = None) -> bool:
        return False

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False


def test_a_long_running_operation_wait_stops_at_the_budget() -> None:
    polling = DEFAULT_POLLING.with_delay(initial=0.01, maximum=0.05, multiplier=1.5)
    started = time.monotonic()
    with budget.step_budget("run_set_traffic", 0.3), pytest.raises(BudgetExhausted) as raised:
        operation_result(NeverDone(), timeout=800, polling=polling, what="traffic of s")
    assert time.monotonic() - started < 1.5
    assert "run_set_traffic's declared budget of 0.3 s ran out" in str(raised.value)
    # Outside a step the operation's own timeout applies, and its own error.
    with pytest.raises(TimeoutError):
        operation_result(NeverDone(), timeout=0.1, polling=polling, what="traffic of s")


def test_the_wrapped_task_keeps_its_name_and_signature_for_prefect() -> None:
    from tasks.cloud_run import run_set_traffic

    assert run_set_traffic.name == "run_set_traffic"
    assert list(inspect.signature(run_set_traffic.fn).parameters) == [
        "environment",
        "project",
        "region",
        "service",
        "revision",
    ]
    assert run_set_traffic.fn.budget_seconds == 900  # type: ignore[attr-defined]


def test_the_verify_steps_budget_holds_the_longest_poll_a_topology_may_ask_for() -> None:
    from tasks.health import health_verify, health_verify_service

    field = Health.model_fields["verify_timeout_s"]
    (longest,) = [m.le for m in field.metadata if hasattr(m, "le")]
    for step in (health_verify, health_verify_service):
        assert step.fn.budget_seconds > longest, step.name  # type: ignore[attr-defined]


# --- Static: no literal wait inside a task may outlast the task's declared budget. ---


@dataclass
class Module:
    name: str
    tree: ast.Module
    constants: dict[str, float]
    functions: dict[str, ast.FunctionDef]
    imported: dict[str, str]  # local name -> module it comes from (tasks.*)


def _number(node: ast.expr, constants: dict[str, float]) -> float | None:
    """A literal number, a module constant, or + - * of those; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult):
        left, right = _number(node.left, constants), _number(node.right, constants)
        if left is None or right is None:
            return None
        return {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}[type(node.op)]
    return None


def _modules() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted((ROOT / "tasks").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        modules[f"tasks.{path.stem}"] = Module(
            name=f"tasks.{path.stem}",
            tree=tree,
            constants={},
            functions={n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)},
            imported={
                alias.asname or alias.name: node.module
                for node in tree.body
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tasks.")
                for alias in node.names
            },
        )
    # Constants may be imported from another tasks module: resolve until nothing changes.
    for _ in range(3):
        for module in modules.values():
            for local, source in module.imported.items():
                if local in modules.get(source, module).constants:
                    module.constants[local] = modules[source].constants[local]
            for node in module.tree.body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1:
                    target = node.targets[0]
                    value = _number(node.value, module.constants)
                    if isinstance(target, ast.Name) and value is not None:
                        module.constants[target.id] = value
    return modules


def _declared_budget(fn: ast.FunctionDef, module: Module) -> float | None:
    for decorator in fn.decorator_list:
        if (
            isinstance(decorator, ast.Call)
            and isinstance(decorator.func, ast.Name)
            and decorator.func.id == "cloud_task"
        ):
            for keyword in decorator.keywords:
                if keyword.arg == "timeout_seconds":
                    value = _number(keyword.value, module.constants)
                    assert value is not None, f"{module.name}.{fn.name}: budget not a number"
                    return value
    return None


def _waits(
    fn: ast.FunctionDef, module: Module, modules: dict[str, Module], seen: set[str]
) -> Iterator[tuple[str, float]]:
    """(where, seconds) of each literal timeout in ``fn`` and the tasks helpers it calls."""
    seen.add(f"{module.name}.{fn.name}")
    for node in ast.walk(fn):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg in ("timeout", "timeout_s"):
                value = _number(keyword.value, module.constants)
                if value is not None:
                    yield f"{module.name}.{fn.name}:{node.lineno}", value
        if isinstance(node.func, ast.Name):
            callee_module = module
            if node.func.id in module.imported:
                callee_module = modules.get(module.imported[node.func.id], module)
            callee = callee_module.functions.get(node.func.id)
            key = f"{callee_module.name}.{node.func.id}"
            if (
                callee is not None
                and key not in seen
                and _declared_budget(callee, callee_module) is None  # a helper, not a task
            ):
                yield from _waits(callee, callee_module, modules, seen)


def test_no_literal_wait_inside_a_task_outlasts_its_declared_budget() -> None:
    modules = _modules()
    tasks_checked = 0
    too_long = []
    for module in modules.values():
        for fn in module.functions.values():
            declared = _declared_budget(fn, module)
            if declared is None:
                continue
            tasks_checked += 1
            for where, seconds in _waits(fn, module, modules, set()):
                if seconds > declared:
                    too_long.append(f"{fn.name} ({declared:g} s): {where} waits {seconds:g} s")
    assert tasks_checked > 50, "the scan found too few cloud_task steps; is it still parsing?"
    assert not too_long, "\n".join(too_long)


def test_no_flow_passes_a_task_a_wait_longer_than_its_budget() -> None:
    modules = _modules()
    budgets = {
        name: declared
        for module in modules.values()
        for name, fn in module.functions.items()
        if (declared := _declared_budget(fn, module)) is not None
    }
    too_long = []
    for path in sorted((ROOT / "flows").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                declared = budgets.get(node.func.id)
                for keyword in node.keywords if declared is not None else []:
                    value = _number(keyword.value, {})
                    if keyword.arg == "timeout_s" and value is not None and value > declared:
                        too_long.append(f"{path.name}:{node.lineno} {node.func.id} {value:g} s")
    assert not too_long, "\n".join(too_long)
