"""Threads joined by bounded hand-offs, which fail together and never hang.

The backup overlaps its stages (cursor reads, tar + gzip + AES-GCM, the upload) and the
restore its (download + decrypt + untar, the insertion workers). Each stage is a thread;
stages pass work through a `Channel`, a queue with a fixed number of slots, so memory
is bounded by the slots times the size of what goes through them. The first exception
in any stage cancels the pipeline: every thread blocked on a full or empty channel wakes
within `POLL_SECONDS` and leaves with `Cancelled`, and leaving the `Pipeline` block
re-raises that first exception in the caller. No stage can wait forever on a stage
that died.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Generic, TypeVar, cast

T = TypeVar("T")

# How soon a thread blocked on a channel notices that another stage failed.
POLL_SECONDS = 0.05


class Cancelled(Exception):
    """Raised in a stage blocked on a channel when another stage has failed."""


class _End:
    """What `Channel.close()` puts: the consumer's end of the stream."""


_END = _End()


class Channel(Generic[T]):
    """A bounded queue between two stages of one `Pipeline`.

    `put` blocks while the channel holds `slots` items; `get` while it is empty. Both
    raise `Cancelled` once the pipeline has failed, so neither a full nor an empty
    channel can deadlock a failed pipeline.
    """

    def __init__(self, pipeline: Pipeline, slots: int) -> None:
        if slots < 1:
            raise ValueError("a channel needs at least one slot")
        self._pipeline = pipeline
        self._queue: queue.Queue[T | _End] = queue.Queue(maxsize=slots)

    def put(self, item: T) -> None:
        self._put(item)

    def close(self) -> None:
        """No more items: the consumer's iteration ends after those already queued."""
        self._put(_END)

    def get(self) -> T | None:
        """The next item, or None once the producer closed the channel."""
        while True:
            self._pipeline.check()
            try:
                item = self._queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if isinstance(item, _End):
                # Leave the end marker for any other consumer of the same channel.
                self._queue.put(item)
                return None
            return item

    def __iter__(self) -> Iterator[T]:
        while (item := self.get()) is not None:
            yield item

    def _put(self, item: T | _End) -> None:
        while True:
            self._pipeline.check()
            try:
                self._queue.put(item, timeout=POLL_SECONDS)
                return
            except queue.Full:
                continue


class Pipeline:
    """Runs stages in threads; the first exception cancels all of them and is re-raised.

    Use as a context manager: the block starts stages (`start`) and may itself take part
    (it is a stage too: an exception in the block cancels the threads). Leaving the block
    waits for every thread, then raises the first exception any stage raised.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []

    def channel(self, slots: int) -> Channel[T]:
        return Channel(self, slots)

    def start(self, stage: str, target: Callable[[], object]) -> None:
        def run() -> None:
            try:
                target()
            except Cancelled:
                pass
            except BaseException as exc:
                self.fail(exc)

        thread = threading.Thread(target=run, name=f"{self.name}-{stage}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def read_ahead(self, stage: str, source: Iterable[T], slots: int) -> Iterator[T]:
        """Iterate ``source`` in a thread of its own, up to ``slots`` items ahead.

        For a cursor: the next batch is already asked for while the consumer works on
        this one, so the server is not left idle. At most ``slots + 2`` items exist at a
        time: queued, one the thread waits to queue, one the consumer holds. An exception
        from ``source`` is raised in the consumer, where its item would have been, and
        does not fail the pipeline by itself. The thread starts at the first ``next()``;
        it stops when the source ends, the pipeline fails, or the generator is closed
        (``close()``, or its collection once nothing refers to it: a ``for`` loop left
        by an exception does not close it, so a consumer that catches such an exception
        and goes on should close the generator itself).
        """
        if slots < 1:
            raise ValueError("read_ahead needs at least one slot")
        ahead: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=slots)
        stop = threading.Event()

        def wait_to_put(item: tuple[bool, object]) -> bool:
            while not (stop.is_set() or self._cancel.is_set()):
                try:
                    ahead.put(item, timeout=POLL_SECONDS)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            items = iter(source)
            try:
                for item in items:
                    if not wait_to_put((True, item)):
                        return
                wait_to_put((False, None))
            except Exception as exc:
                wait_to_put((False, exc))
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()

        self.start(stage, produce)
        try:
            while True:
                try:
                    more, item = ahead.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    self.check()
                    continue
                if not more:
                    if isinstance(item, BaseException):
                        raise item
                    return
                yield cast(T, item)
        finally:
            stop.set()

    def fail(self, exc: BaseException) -> None:
        """Record the first failure and wake every blocked stage."""
        with self._lock:
            if self._error is None:
                self._error = exc
        self._cancel.set()

    @property
    def failed(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise `Cancelled` when another stage has failed (call it between units of work)."""
        if self._cancel.is_set():
            raise Cancelled(f"{self.name}: another stage failed")

    def join(self) -> None:
        for thread in self._threads:
            thread.join()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, Cancelled):
            self.fail(exc)
        elif exc is not None:
            self._cancel.set()
        for thread in self._threads:
            thread.join()
        # The first failure wins, wherever it happened; a block that only saw
        # `Cancelled` re-raises the stage's exception that caused it.
        if self._error is not None and self._error is not exc:
            raise self._error
