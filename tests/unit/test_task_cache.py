"""What Prefect's cache serves inside a run: nothing for a task, the incident's result for
a ``resumable`` step (tasks/retrying.py, flows/resume.py).

Prefect's default cache policy (inputs + task source + flow run id) is live in every flow
with ``persist_result=True``: a task called again with the same inputs in one run got the
first call's result (restore-config's verify said "still differs" after a good restore).

These tests apply the rule Prefect's task engine applies to each call, without a server
(the unit tier has none): the task's policy computes a key
(``SyncTaskRunEngine.compute_transaction_key``); a key already in the result store is a
hit, served without running; a miss runs and, in a run that persists results, writes its
result under the key (``transaction_context``: ``Transaction.begin`` and ``commit``).
tests/flows/test_task_cache_prefect.py checks the same through a real flow run.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest
from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.filesystems import LocalFileSystem
from prefect.results import ResultStore
from prefect.transactions import transaction

from flows.resume import resumable
from tasks.retrying import cloud_task
from tests.unit.builders import run_record

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> ResultStore:
    """A result store on local disk, as a flow run with ``persist_result=True`` has."""
    return ResultStore(result_storage=LocalFileSystem(basepath=str(tmp_path)))


def call(task: Task[..., Any], store: ResultStore, flow_run: UUID, **inputs: Any) -> bool:
    """One call of ``task`` inside flow run ``flow_run``; returns whether the cache served it."""
    context = SimpleNamespace(task=task, task_run=SimpleNamespace(id=uuid4(), flow_run_id=flow_run))
    key = task.cache_policy.compute_key(task_ctx=context, inputs=inputs, flow_parameters={})  # type: ignore[union-attr]
    with transaction(key=key, store=store, write_on_commit=True) as txn:
        if txn.is_committed():
            return True
        txn.stage(task.fn(**inputs))
    return False


@pytest.fixture
def read_count() -> Iterator[tuple[Task[[str, str], int], list[str]]]:
    """A cloud_task that reads a service: every run appends to the list it comes with."""
    runs: list[str] = []

    @cloud_task(timeout_seconds=5, retries=0)
    def run_read_service(environment: str, service: str) -> int:
        runs.append(service)
        return len(runs)

    yield run_read_service, runs


def test_a_cloud_task_called_twice_with_the_same_inputs_in_one_run_runs_twice(
    store: ResultStore, read_count: tuple[Task[[str, str], int], list[str]]
) -> None:
    # A describe before a change and again after it, a verify after an apply: the second
    # must read the world again, not get the first answer back.
    task, runs = read_count
    run = uuid4()
    served = [call(task, store, run, environment="lab", service="orders") for _ in range(2)]
    assert served == [False, False]
    assert runs == ["orders", "orders"]


def test_a_resumable_step_is_served_from_the_cache_for_its_incident(
    store: ResultStore, read_count: tuple[Task[[str, str], int], list[str]]
) -> None:
    task, runs = read_count
    step = resumable(task, run_record(), "scale")
    first, rerun = uuid4(), uuid4()
    # Again in the same run, and in a new run of the same incident (the resume): cached.
    assert call(step, store, first, environment="lab", service="orders") is False
    assert call(step, store, first, environment="lab", service="orders") is True
    assert call(step, store, rerun, environment="lab", service="orders") is True
    assert runs == ["orders"]
    # Another service, or another incident, is another step: it runs.
    assert call(step, store, rerun, environment="lab", service="billing") is False
    other = resumable(task, run_record("INC-8"), "scale")
    assert call(other, store, rerun, environment="lab", service="orders") is False
    assert runs == ["orders", "billing", "orders"]


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, entry: logging.LogRecord) -> None:
        self.lines.append(entry.getMessage())


def test_resumable_keys_on_the_incident_and_prefect_warns_of_nothing(
    read_count: tuple[Task[[str, str], int], list[str]],
) -> None:
    # Prefect warns when a task gets both a policy and a cache_key_fn (prefect/tasks.py,
    # Task.__init__), as resumable would with_options(cache_key_fn=...) on a task whose
    # policy is NO_CACHE; the retries=0 copy is what refresh_secret_readers makes.
    task, _ = read_count
    captured = Captured()
    logger = logging.getLogger("prefect.tasks")
    logger.addHandler(captured)
    try:
        step = resumable(task, run_record(), "scale")
        once = step.with_options(retries=0)
    finally:
        logger.removeHandler(captured)
    assert captured.lines == []
    context = SimpleNamespace(task=step, task_run=SimpleNamespace(id=uuid4(), flow_run_id=uuid4()))
    for made in (step, once):
        key = made.cache_policy.compute_key(context, {"environment": "lab", "service": "a"}, {})
        assert key == "failover/INC-7/scale/service=a"
        assert made.persist_result is True


def product_tasks() -> Iterator[tuple[str, Task[..., Any]]]:
    for package in ("flows", "tasks"):
        for module in pkgutil.iter_modules([str(ROOT / package)]):
            loaded = importlib.import_module(f"{package}.{module.name}")
            for name, value in vars(loaded).items():
                if isinstance(value, Task) and value.fn.__module__ == loaded.__name__:
                    yield f"{loaded.__name__}.{name}", value


def test_every_task_the_product_defines_runs_on_each_call() -> None:
    # A plain @task(...) would bring Prefect's default policy back: use cloud_task, or
    # fresh_task for a step that needs no retry policy; resumable for a cached one.
    tasks = dict(product_tasks())
    assert len(tasks) > 80  # every module was read
    cached = [name for name, task in tasks.items() if task.cache_policy != NO_CACHE]
    assert cached == []


def test_a_caller_may_still_ask_for_a_policy() -> None:
    from prefect.cache_policies import INPUTS

    @cloud_task(timeout_seconds=5, cache_policy=INPUTS)
    def shout(word: str) -> str:
        return word.upper()

    assert shout.cache_policy == INPUTS
