"""The backup's and restore's thread pipeline: bounded, fails together, never hangs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from lifeboat.pipeline import Cancelled, Channel, Pipeline

# Every test must end well within this: a hang is the bug these tests look for.
pytestmark = pytest.mark.timeout(20)


class Boom(Exception):
    pass


def test_items_flow_in_order_through_a_bounded_channel() -> None:
    seen: list[int] = []
    most_queued = 0
    with Pipeline("order") as pipeline:
        numbers: Channel[int] = pipeline.channel(2)

        def produce() -> None:
            for n in range(100):
                numbers.put(n)
            numbers.close()

        pipeline.start("produce", produce)
        for n in numbers:
            most_queued = max(most_queued, numbers._queue.qsize())
            seen.append(n)
            time.sleep(0.0005)  # a slow consumer: the producer must wait, not pile up
    assert seen == list(range(100))
    assert most_queued <= 2


def test_an_exception_in_a_stage_fails_the_pipeline_and_wakes_a_blocked_producer() -> None:
    """The consumer dies while the producer is blocked on a full channel: no deadlock."""
    produced = 0
    started = time.monotonic()
    with pytest.raises(Boom), Pipeline("consumer-dies") as pipeline:
        items: Channel[int] = pipeline.channel(1)

        def consume() -> None:
            items.get()
            raise Boom("the upload failed")

        pipeline.start("consume", consume)
        while True:  # the caller is the producer, and would block forever on a dead consumer
            items.put(produced)
            produced += 1
    assert time.monotonic() - started < 5
    assert produced < 5  # the bound held: one slot, one taken item


def test_an_exception_in_the_caller_cancels_a_stage_blocked_on_an_empty_channel() -> None:
    left = threading.Event()
    with pytest.raises(Boom), Pipeline("caller-dies") as pipeline:
        items: Channel[int] = pipeline.channel(4)

        def consume() -> None:
            try:
                for _ in items:
                    pass
            finally:
                left.set()

        pipeline.start("consume", consume)
        raise Boom("reading the cursor failed")
    assert left.is_set()  # the stage left (with Cancelled) before the block re-raised


def test_the_first_failure_wins_and_every_thread_is_joined() -> None:
    gate = threading.Event()
    with pytest.raises(Boom, match="first"), Pipeline("two-fail") as pipeline:

        def first() -> None:
            raise Boom("first")

        def second() -> None:
            gate.wait(5)
            raise ValueError("second, after the first")

        pipeline.start("first", first)
        pipeline.start("second", second)
        time.sleep(0.2)
        gate.set()
    assert not [t for t in threading.enumerate() if t.name.startswith("two-fail-")]


def test_a_caller_that_only_saw_cancelled_raises_the_stage_error() -> None:
    with pytest.raises(Boom, match="disk full"), Pipeline("cancelled-caller") as pipeline:
        items: Channel[int] = pipeline.channel(1)

        def fail() -> None:
            raise Boom("disk full")

        pipeline.start("fail", fail)
        for _ in items:  # raises Cancelled once the stage failed
            pass


def test_many_consumers_all_see_the_end() -> None:
    total = 0
    lock = threading.Lock()
    with Pipeline("fan-out") as pipeline:
        items: Channel[int] = pipeline.channel(3)

        def consume() -> None:
            nonlocal total
            for n in items:
                with lock:
                    total += n

        for number in range(5):
            pipeline.start(f"c{number}", consume)
        for n in range(1, 1001):
            items.put(n)
        items.close()
    assert total == 500500


def test_a_channel_needs_a_slot() -> None:
    with Pipeline("zero") as pipeline, pytest.raises(ValueError):
        pipeline.channel(0)


def test_check_raises_cancelled_once_failed() -> None:
    pipeline = Pipeline("check")
    pipeline.check()
    pipeline.fail(Boom("x"))
    with pytest.raises(Cancelled):
        pipeline.check()


def test_read_ahead_keeps_order_stays_bounded_and_runs_in_its_own_thread() -> None:
    produced: list[int] = []
    threads: set[str] = set()

    def source() -> Iterator[int]:
        for n in range(50):
            threads.add(threading.current_thread().name)
            produced.append(n)
            yield n

    seen: list[int] = []
    most_ahead = 0
    with Pipeline("ahead") as pipeline:
        for n in pipeline.read_ahead("cursor", source(), 3):
            time.sleep(0.001)  # a slow consumer: the source may run at most 3 ahead (+1 held)
            most_ahead = max(most_ahead, len(produced) - len(seen) - 1)
            seen.append(n)
    assert seen == list(range(50))
    assert 2 <= most_ahead <= 4  # it does read ahead, and no further than its slots
    assert threads == {"ahead-cursor"}


def test_read_ahead_raises_the_source_error_where_its_item_would_have_been() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise Boom("cursor killed")

    seen: list[int] = []
    with Pipeline("ahead") as pipeline:
        with pytest.raises(Boom, match="cursor killed"):
            for n in pipeline.read_ahead("cursor", source(), 2):
                seen.append(n)
        # Caught by the consumer, the source's error does not fail the pipeline.
        assert not pipeline.failed
    assert seen == [1, 2]


def test_a_consumer_that_stops_early_stops_and_closes_the_source() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    with Pipeline("ahead") as pipeline:
        ahead = pipeline.read_ahead("cursor", source(), 2)
        assert next(ahead) == 0
        ahead.close()  # e.g. the consumer raised: its generator is closed
    # Leaving the block joined the producer thread, and the source was closed in it.
    assert closed.is_set()


def test_a_failed_pipeline_stops_read_ahead_on_both_sides() -> None:
    def endless() -> Iterator[int]:
        n = 0
        while True:
            yield n
            n += 1

    consumer_got: list[BaseException] = []
    with pytest.raises(Boom), Pipeline("ahead") as pipeline:

        def consume() -> None:
            try:
                for _ in pipeline.read_ahead("cursor", endless(), 2):
                    time.sleep(0.01)
            except Cancelled as exc:
                consumer_got.append(exc)
                raise

        pipeline.start("consume", consume)
        time.sleep(0.05)
        raise Boom("another stage")
    assert len(consumer_got) == 1
