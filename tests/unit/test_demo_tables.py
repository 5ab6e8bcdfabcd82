"""The demo's live table renders every task state, styled or not."""

from __future__ import annotations

from rich.console import Console

from commands.demo import _tasks_table


def test_a_running_task_and_a_bracketed_name_render() -> None:
    tasks = [
        {"name": "read-record-[x]", "state": {"type": "RUNNING"}, "expected_start_time": "1"},
        {"name": "promote", "state": {"type": "COMPLETED"}, "total_run_time": 1.5},
        {"name": "queued", "state": None},
    ]
    console = Console(width=100, record=True)
    console.print(_tasks_table(tasks))
    text = console.export_text()
    assert "read-record-[x]" in text and "running" in text
    assert "completed" in text and "1.50" in text and "pending" in text
