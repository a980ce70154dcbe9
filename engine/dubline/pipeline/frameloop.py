"""The render's frame loop as stages joined by bounded queues, each stage on its own thread.

    decode -> backend -> composite -> (the caller's thread) encode

A stage is a function from an iterator of items to an iterator of items (``read_span``,
``backend.patches``, the compositor's loop), so the same stages also run chained in one thread
(``threaded=False``): that path is the reference the threaded one must match frame for frame.

Queues are bounded, so memory stays flat in span length: a stage that runs ahead blocks once its
queue is full. An error in any stage travels down the queues as the same exception object and is
raised once, in the caller's thread; leaving ``FrameLoop`` (normally or by an error) stops every
stage and joins its thread, so nothing keeps running or holds a file open after ``render`` returns.

Busy time: each stage's seconds are the time its thread spent producing items, less the time it
waited for its upstream stage (and never counting time blocked on a full queue), so they are the
same measure in both modes. With threads the stages overlap, so their sum can exceed the loop's
wall time; a stage's share is its busy seconds over the loop's wall seconds.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

#: How often a thread blocked on a queue looks whether the loop is stopping.
_POLL_SECONDS = 0.05


class _Stopped(BaseException):
    """Unwinds a stage whose loop is stopping (a BaseException, so a stage's ``except Exception``
    does not swallow it)."""


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


class StageClock:
    """Busy seconds per stage name, added to from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds


class WaitTimer(Iterator[Any]):
    """An iterator that adds up how long its consumer waited for items (``waited``, seconds)."""

    def __init__(self, upstream: Iterator[Any]) -> None:
        self._upstream = upstream
        self.waited = 0.0

    def __iter__(self) -> WaitTimer:
        return self

    def __next__(self) -> Any:
        start = time.perf_counter()
        try:
            return next(self._upstream)
        finally:
            self.waited += time.perf_counter() - start


def timed_stage(name: str, clock: StageClock, make: Callable[[Iterator[In]], Iterable[Out]],
                upstream: Iterable[In]) -> Iterator[Out]:
    """``make(upstream)`` item by item, its busy time (less its waits on ``upstream``) on ``clock``."""
    source = WaitTimer(iter(upstream))
    start = time.perf_counter()
    items = iter(make(source))  # may open files: part of the stage's cost
    clock.add(name, time.perf_counter() - start - source.waited)
    try:
        while True:
            start, waited = time.perf_counter(), source.waited
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                clock.add(name, time.perf_counter() - start - (source.waited - waited))
            yield item
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


class FrameLoop:
    """Owns the stage threads of one render; use as a context manager around the consumer."""

    def __init__(self, clock: StageClock, threaded: bool = True) -> None:
        self.clock = clock
        self.threaded = threaded
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def stage(self, name: str, make: Callable[[Iterator[In]], Iterable[Out]], upstream: Iterable[In],
              depth: int = 4) -> Iterator[Out]:
        """The items of ``make(upstream)``: produced on a thread ``depth`` items ahead of the
        consumer (or inline when the loop is not threaded)."""
        if not self.threaded:
            return timed_stage(name, self.clock, make, upstream)
        out: queue.Queue = queue.Queue(maxsize=max(1, depth))
        thread = threading.Thread(target=self._run, args=(name, make, upstream, out), name=f"render-{name}",
                                  daemon=True)
        self._threads.append(thread)
        thread.start()
        return self._drain(out)

    def _run(self, name: str, make: Callable[[Iterator[Any]], Iterable[Any]], upstream: Iterable[Any],
             out: queue.Queue) -> None:
        items = timed_stage(name, self.clock, make, upstream)
        try:
            for item in items:
                self._put(out, item)
            self._put(out, _END)
        except _Stopped:
            pass
        except BaseException as error:  # handed downstream: raised once, by the caller's thread
            try:
                self._put(out, _Failure(error))
            except _Stopped:
                pass
        finally:
            items.close()  # here, in the stage's own thread (a decoder closes its file)

    def _put(self, out: queue.Queue, item: object) -> None:
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                out.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def _drain(self, out: queue.Queue) -> Iterator[Any]:
        while True:
            try:
                item = out.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if self._stop.is_set():
                    raise _Stopped from None
                continue
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def __enter__(self) -> FrameLoop:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every stage and wait for its thread (a stage busy with an item finishes it first)."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
