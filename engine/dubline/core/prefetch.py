"""Run an iterator on a background thread a few items ahead of its consumer.

Decoding and colour conversion (PyAV, OpenCV) release the GIL, so a reader on its own thread
overlaps the consumer's work on a second core. The queue is bounded, so at most ``depth`` items
(decoded frames) wait in memory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_END = object()
_POLL_S = 0.1


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetched(items: Iterable[T], depth: int = 4, name: str = "dubline-prefetch") -> Iterator[T]:
    """``items``, produced on a background thread up to ``depth`` ahead. An exception raised while
    producing is raised to the consumer at that point; closing the returned iterator (or dropping
    it) stops the producer and closes ``items``."""
    if depth < 1:
        raise ValueError(f"prefetch depth must be at least 1, got {depth}")
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if not offer(item):
                    return
            offer(_END)
        except BaseException as error:  # handed to the consumer, who re-raises it
            offer(_Failure(error))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    return _consume(buffer, stop, threading.Thread(target=produce, name=name, daemon=True))


def _consume(buffer: queue.Queue, stop: threading.Event, thread: threading.Thread) -> Iterator:
    thread.start()  # on the first next(): an iterator never started leaves no thread behind
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()
