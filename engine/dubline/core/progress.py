"""Progress reporting shared by the CLI (a tqdm bar) and the engine (progress events)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

import numpy as np

from dubline.core.errors import CancelledError


class ProgressSink(Protocol):
    """Receives ``(stage, done, total)`` as long work advances."""

    def __call__(self, stage: str, done: int, total: int) -> None: ...


def no_progress(stage: str, done: int, total: int) -> None:
    """A sink that ignores progress."""


class PreviewSink(Protocol):
    """Offered each finished frame of a render: ``(patch frame, picture)``, where ``picture()``
    makes the upright 8-bit RGB image only when called, so a sink that throttles pays nothing for
    the frames it skips. Called from the render's compositor thread: it must be quick."""

    def __call__(self, frame: int, picture: Callable[[], np.ndarray]) -> None: ...


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
