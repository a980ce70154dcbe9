"""Run an iterator on a background thread a few items ahead of its consumer; hand work to a pool
of threads. In a process kept to one CPU both run in the caller's thread instead.

Decoding and colour conversion (PyAV, OpenCV) release the GIL, so a reader on its own thread
overlaps the consumer's work on a second core. The queue is bounded, so at most ``depth`` items
(decoded frames) wait in memory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from dubline.core.cpus import cpu_budget

T = TypeVar("T")

_END = object()
_POLL_S = 0.1


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetched(Generic[T]):
    """``items``, produced on a background thread up to ``depth`` ahead (see ``prefetched``)."""

    def __init__(self, items: Iterable[T], depth: int, name: str) -> None:
        if depth < 1:
            raise ValueError(f"prefetch depth must be at least 1, got {depth}")
        self._items = items
        self._buffer: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._done = False

    def start(self) -> Prefetched[T]:
        """Start producing now (otherwise the first ``next`` does)."""
        if not self._thread.is_alive() and not self._done and self._thread.ident is None:
            self._thread.start()
        return self

    def _offer(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._buffer.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        source = iter(self._items)
        try:
            for item in source:
                if not self._offer(item):
                    return
            self._offer(_END)
        except BaseException as error:  # handed to the consumer, who re-raises it
            self._offer(_Failure(error))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        self.start()
        item = self._buffer.get()
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, _Failure):
            self.close()
            raise item.error
        return item

    def close(self) -> None:
        """Stop the producer (it closes ``items``) and wait for it."""
        self._done = True
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()


class InlineItems(Generic[T]):
    """``items`` produced in the consumer's own thread, with Prefetched's calls: what a process
    kept to one CPU gets (a producer thread there only takes CPU from the consumer)."""

    def __init__(self, items: Iterable[T]) -> None:
        self._source = iter(items)

    def start(self) -> InlineItems[T]:
        return self

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        return next(self._source)

    def close(self) -> None:
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


def prefetched(items: Iterable[T], depth: int = 4, name: str = "dubline-prefetch") -> Prefetched[T] | InlineItems[T]:
    """``items``, produced on a background thread up to ``depth`` ahead. The thread starts on the
    first ``next`` (or ``start()``); an exception raised while producing is raised to the consumer at
    that point; ``close()`` stops the producer and closes ``items`` (call it when done early).
    In a process kept to one CPU (``core.cpus``) the items are produced in the consumer's thread."""
    if cpu_budget() <= 1:
        return InlineItems(items)
    return Prefetched(items, depth, name)


class InlineExecutor(Executor):
    """An Executor that runs each call in the caller's thread when it is submitted."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # handed to whoever asks for the result, as a pool would
            future.set_exception(error)
        return future


def work_pool(threads: int, name: str) -> Executor:
    """A pool of ``threads`` threads, or in a process kept to one CPU (``core.cpus``) the caller's
    own thread: a pool thread there only takes the CPU from the caller, and a batch worker given
    one CPU by Ray must not keep more than one busy."""
    if cpu_budget() <= 1:
        return InlineExecutor()
    return ThreadPoolExecutor(max(1, threads), thread_name_prefix=name)
