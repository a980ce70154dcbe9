"""Idle analysis: while the engine has no job, analyse the rest of the clips it has rendered from.

A clip's first render analyses its span, a window and a sampled library (dubline.pipeline.budget).
Afterwards, whenever the job queue is empty, this thread analyses the clip's other blocks a batch at
a time (nearest the last rendered span first) at the lowest CPU priority, so later renders draw
their mouths from the whole take. A job arriving cancels the batch in progress within one frame's
analysis, and the thread waits until the queue is empty again; every analysed frame is cached as it
is done, so an interrupted batch loses nothing but the frame in hand.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from dubline.apps.server.jobs import JobQueue
from dubline.core.errors import CancelledError
from dubline.core.progress import CancelToken
from dubline.pipeline import ResidentAnalyses

log = logging.getLogger(__name__)

#: Blocks analysed before the clip's analysis is reassembled (and the queue looked at again).
BATCH_BLOCKS = 8
#: The niceness of the idle thread and the threads it starts (19: only spare CPU).
IDLE_NICENESS = 19


def _lower_priority(niceness: int) -> None:
    """Make the calling thread (and the threads it starts) run only on spare CPU (Linux: per thread)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except OSError as error:  # not allowed here: idle work still waits for an empty queue
        log.info("idle analysis keeps normal priority (%s)", error)


class IdleExtender:
    """Extends resident clip analyses while ``jobs`` is empty; ``start()``, ``stop()``."""

    def __init__(self, analyses: ResidentAnalyses, jobs: JobQueue, batch_blocks: int = BATCH_BLOCKS,
                 niceness: int = IDLE_NICENESS) -> None:
        self.analyses = analyses
        self.jobs = jobs
        self.batch_blocks = batch_blocks
        self.niceness = niceness
        self.batches = 0  # batches finished (for status and tests)
        self.finished = threading.Event()  # set while every resident clip is analysed whole
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._token: CancelToken | None = None
        self._lock = threading.Lock()
        self._given_up: set[tuple] = set()
        self._batch_done = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="dubline-idle-analysis", daemon=True)
        jobs.watch(self._on_jobs_changed)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stopping.set()
        self._cancel_batch()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wait_for_batches(self, count: int, timeout: float) -> bool:
        """Block until ``count`` batches have finished in all (for tests); False on timeout."""
        with self._batch_done:
            return self._batch_done.wait_for(lambda: self.batches >= count, timeout)

    def _cancel_batch(self) -> None:
        with self._lock:
            if self._token is not None:
                self._token.cancel()

    def _on_jobs_changed(self) -> None:
        if self.jobs.busy():
            self.finished.clear()
            self._cancel_batch()
        self._wake.set()

    def _next_clip(self):
        for path, speaker in self.analyses.pending():
            try:
                key = self.analyses.key(path, speaker)
            except OSError:
                continue
            if key not in self._given_up:
                return key, path, speaker
        return None

    def _run(self) -> None:
        _lower_priority(self.niceness)
        while not self._stopping.is_set():
            self._wake.clear()
            clip = None if self.jobs.busy() else self._next_clip()
            if clip is None:
                if not self.jobs.busy():
                    self.finished.set()
                self._wake.wait()
                continue
            self.finished.clear()
            key, path, speaker = clip
            token = CancelToken()
            with self._lock:
                self._token = token
            if self.jobs.busy():  # a job came in while we were choosing
                continue
            try:
                self.analyses.extend(path, speaker, self.batch_blocks, token)
            except CancelledError:
                continue
            except Exception as error:  # a vanished or unreadable file: leave that clip alone
                log.warning("idle analysis of %s stopped: %s", path, error)
                self._given_up.add(key)
                continue
            finally:
                with self._lock:
                    self._token = None
            with self._batch_done:
                self.batches += 1
                self._batch_done.notify_all()
