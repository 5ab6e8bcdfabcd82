"""The lost-write sweep's pure parts: what counts as lost, refused, and the lag in writes."""

from __future__ import annotations

from datetime import UTC, datetime

from reliability.lost_writes import (
    Accounting,
    lost_writes_evidence,
    step_at,
    ungraceful_lag_figures,
)
from reliability.writer import Answer, acknowledged_rate, lost, refused, writes_in_lag

T0 = datetime(2026, 12, 5, 9, 0, 0, tzinfo=UTC).timestamp()


def _answers(*statuses: int | None, start: float = T0, every: float = 0.5) -> list[Answer]:
    return [
        Answer(f"w-{n:05d}", start + n * every, 0.01, status)
        for n, status in enumerate(statuses, start=1)
    ]


def _iso(seconds_after_t0: float) -> str:
    return datetime.fromtimestamp(T0 + seconds_after_t0, UTC).isoformat().replace("+00:00", "Z")


def test_only_acknowledged_ids_missing_from_the_final_primary_are_lost() -> None:
    assert lost(["a", "b", "c"], {"a", "c", "x"}) == ["b"]
    assert lost(["a", "b"], ["a", "b"]) == []
    assert lost([], {"a"}) == []  # a refused write on the primary is no loss either
    assert lost(["c", "a", "b"], set()) == ["c", "a", "b"]  # in the order sent


def test_refusals_are_counted_by_status_and_unanswered_writes_apart() -> None:
    answers = _answers(201, 404, 503, 404, None, 201, 409)
    assert refused(answers) == {404: 2, 409: 1, 503: 1}
    assert refused(_answers(201, 201)) == {}


def test_the_acknowledged_rate_counts_201s_sent_in_the_window() -> None:
    answers = _answers(201, 201, 503, 201, 201, start=T0, every=1.0)  # sent at T0+1 .. T0+5
    assert acknowledged_rate(answers, T0, T0 + 5) == 3 / 5  # T0+1, +2, +4 (T0+3 refused)
    assert acknowledged_rate(answers, T0, T0 + 4) == 2 / 4  # the end is not in the window
    assert acknowledged_rate(answers, T0 + 4, T0 + 4) == 0.0
    assert acknowledged_rate(answers, T0 + 10, T0 + 20) == 0.0


def test_a_lag_in_seconds_is_rate_times_seconds_in_writes_rounded_up() -> None:
    assert writes_in_lag(8.0, 12.5) == 100
    assert writes_in_lag(7.5, 13.1) == 99  # 98.25: a part of a write at risk is a write
    assert writes_in_lag(10.0, 0.3) == 3  # no float noise turns 3.0 into 4
    assert writes_in_lag(10.0, 0.0) == 0
    assert writes_in_lag(0.0, 30.0) == 0


def test_the_ungraceful_figures_set_the_estimate_beside_the_loss() -> None:
    # 10 s of writing at 2/s acknowledged, paused after 6 s, the region down at 10 s.
    answers = _answers(*([201] * 20), start=T0 - 0.25, every=0.5)
    # And one on the new primary after the failover: neither at risk nor in the rate.
    answers.append(Answer("w-after", T0 + 40, 0.01, 201))
    lag = {"seconds": 7.2, "bytes": 4096}
    figures = ungraceful_lag_figures(answers, lag, T0, T0 + 6, T0 + 10, lost_count=3)
    assert figures["lag_estimate_seconds_ungraceful"] == 7.2
    assert figures["lag_estimate_bytes_ungraceful"] == 4096
    assert figures["write_rate_ungraceful"] == 2.0
    assert figures["lag_estimate_writes_ungraceful"] == 15  # 14.4 rounded up
    assert figures["at_risk_writes_ungraceful"] == 8  # sent at T0+6.25 .. T0+9.75
    assert figures["lost_within_estimate_ungraceful"] == 1
    over = ungraceful_lag_figures(answers, lag, T0, T0 + 6, T0 + 10, lost_count=16)
    assert over["lost_within_estimate_ungraceful"] == 0
    # A record without a lag (a dry run, an older record) estimates nothing.
    none = ungraceful_lag_figures(answers, {}, T0, T0 + 6, T0 + 10, lost_count=0)
    assert none["lag_estimate_writes_ungraceful"] == 0


STEPS = [
    {"name": "preflight", "started_at": _iso(1), "ended_at": _iso(2)},
    {"name": "scale-and-promote", "started_at": _iso(3), "ended_at": _iso(8)},
    {"name": "promote", "started_at": _iso(3), "ended_at": _iso(6)},
    {"name": "verify", "started_at": _iso(9), "ended_at": None},
]


def test_a_moment_is_placed_in_the_step_then_running() -> None:
    at = lambda s: datetime.fromtimestamp(T0 + s, UTC)  # noqa: E731
    assert step_at(STEPS, at(1.5)) == "preflight"
    assert step_at(STEPS, at(4)) == "promote"  # the innermost (last started) of two
    assert step_at(STEPS, at(7)) == "scale-and-promote"
    assert step_at(STEPS, at(100)) == "verify"  # never ended: still running
    assert step_at(STEPS, at(0)) == "before the run's first step"
    assert step_at(STEPS, at(2.5)) == "between or after the run's steps"
    assert step_at([], at(1)) == "between or after the run's steps"


def test_each_lost_write_is_named_with_when_it_was_sent_and_the_step() -> None:
    answers = _answers(201, 201, 201, start=T0, every=1.5)  # sent at T0+1.5, +3, +4.5
    lines = lost_writes_evidence(answers, ["w-00001", "w-00003"], STEPS)
    assert len(lines) == 2
    assert lines[0].startswith("lost w-00001 sent 2026-12-05T09:00:01.500000+00:00")
    assert lines[0].endswith("during preflight")
    assert lines[1].endswith("during promote")
    capped = lost_writes_evidence(answers, ["w-00001", "w-00002", "w-00003"], STEPS, limit=1)
    assert capped[-1] == "... and 2 more"


def test_a_scenario_prints_its_loss_and_what_the_writer_got() -> None:
    answers = _answers(201, 201, 404, None, 201, 503)
    result = Accounting("failback", answers, ["w-00002"], "varai-prod", "COMPLETED")
    assert result.figures() == {
        "lost_writes_failback": 1,
        "acknowledged_failback": 3,
        "refused_failback": 2,
        "refused_statuses_failback": "404:1,503:1",
        "unanswered_failback": 1,
        "run_failback": "COMPLETED",
    }
    clean = Accounting("rollback", _answers(201), [], "varai-prod", "COMPLETED")
    assert clean.figures()["refused_statuses_rollback"] == "-"
