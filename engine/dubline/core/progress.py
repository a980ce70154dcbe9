"""Progress reporting shared by the CLI (a tqdm bar) and the engine (progress events)."""

from __future__ import annotations

import threading
from typing import Protocol

from dubline.core.errors import CancelledError


class ProgressSink(Protocol):
    """Receives ``(stage, done, total)`` as long work advances."""

    def __call__(self, stage: str, done: int, total: int) -> None: ...


def no_progress(stage: str, done: int, total: int) -> None:
    """A sink that ignores progress."""


class CancelToken:
    """Set from another thread; long loops call ``check()`` once per batch."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise CancelledError("cancelled")


class TqdmProgress:
    """A CLI progress bar with ETA, one bar per stage."""

    def __init__(self, enabled: bool = True) -> None:
        self._enabled = enabled
        self._bar = None
        self._stage: str | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self._enabled:
            return
        from tqdm import tqdm

        if stage != self._stage or self._bar is None:
            self.close()
            self._bar = tqdm(total=total, desc=stage, unit="frame", leave=False, dynamic_ncols=True)
            self._stage = stage
        self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._stage = None
