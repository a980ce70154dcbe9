"""A bounded job queue: work runs on a small worker pool, reports progress as events, and can be
cancelled (through the pipeline's CancelToken, checked once per batch).

Work that holds a device (a GPU-heavy backend) takes that device's lock for the whole job, so one
such job runs per device while CPU-only jobs overlap on the other workers.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from dubline.core.errors import CancelledError, EngineBusyError, UnknownJobError
from dubline.core.progress import CancelToken, ProgressSink

log = logging.getLogger(__name__)

#: Progress events closer together than this are folded into the job's latest progress.
PROGRESS_EVENT_INTERVAL_S = 0.1
#: Pictures of the work (``JobProgress.show``) closer together than this are dropped; the first is kept.
PREVIEW_INTERVAL_S = 0.25

Work = Callable[[ProgressSink, CancelToken], Any]


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobEvent:
    """``kind`` is queued (payload: position), progress ((stage, done, total), or with a picture
    (stage, done, total, jpeg, frame)), done (the work's result) or error (the exception that ended
    the job)."""

    kind: str
    payload: Any


@dataclass
class Job:
    id: str
    kind: str
    label: str  # what it works on (the source clip), for listings
    device: str | None
    created: float = field(default_factory=time.time)
    token: CancelToken = field(default_factory=CancelToken)
    state: JobState = JobState.QUEUED
    progress: tuple[str, int, int] = ("queued", 0, 0)
    result: Any = None
    error: BaseException | None = None
    started: float | None = None
    finished_at: float | None = None
    events: list[JobEvent] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _last_progress_event: float = 0.0
    _last_preview: float | None = None
    _preview_event: int | None = None  # index in ``events`` of the one event that still holds a picture

    @property
    def seconds(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished_at or time.time()) - self.started

    def _emit(self, event: JobEvent) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        self.progress = (stage, int(done), int(total))
        now = time.monotonic()
        last = self.events[-1] if self.events else None
        new_stage = last is None or last.kind != "progress" or last.payload[0] != stage
        if new_stage or done >= total or now - self._last_progress_event >= PROGRESS_EVENT_INTERVAL_S:
            self._last_progress_event = now
            self._emit(JobEvent("progress", self.progress))

    def wants_preview(self) -> bool:
        """Whether a picture now would be sent (the first always is; then one per PREVIEW_INTERVAL_S)."""
        return self._last_preview is None or time.monotonic() - self._last_preview >= PREVIEW_INTERVAL_S

    def _on_preview(self, frame: int, jpeg: bytes) -> None:
        """Send a picture with the latest progress. A job remembers its events for late readers,
        so only the latest picture is kept: the one before becomes a plain progress event."""
        self._last_preview = time.monotonic()
        with self._changed:
            if self._preview_event is not None:
                earlier = self.events[self._preview_event]
                self.events[self._preview_event] = JobEvent("progress", earlier.payload[:3])
            self._preview_event = len(self.events)
            self.events.append(JobEvent("progress", (*self.progress, jpeg, int(frame))))
            self._changed.notify_all()

    def events_from(self, start: int, stop_waiting: Callable[[], bool], poll_s: float = 0.25) -> Iterator[JobEvent]:
        """Yield events from index ``start`` until the job ends, or until ``stop_waiting()``."""
        index = start
        while True:
            with self._changed:
                while index >= len(self.events) and not self.state.finished:
                    if stop_waiting():
                        return
                    self._changed.wait(poll_s)
                pending = self.events[index:]
                ended = self.state.finished
            for event in pending:
                yield event
            index += len(pending)
            if ended and index >= len(self.events):
                return

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not self.state.finished:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True


class JobProgress:
    """The progress sink a job's work is given: progress as ``(stage, done, total)`` calls, and
    pictures of the work through ``show`` (throttled: ask ``wants_picture`` before making one)."""

    def __init__(self, job: Job) -> None:
        self._job = job

    def __call__(self, stage: str, done: int, total: int) -> None:
        self._job._on_progress(stage, done, total)

    def wants_picture(self) -> bool:
        return self._job.wants_preview()

    def show(self, frame: int, jpeg: bytes) -> None:
        self._job._on_preview(frame, jpeg)


class JobQueue:
    """Runs submitted work on ``max_workers`` threads; at most ``max_queued`` jobs wait."""

    def __init__(self, max_workers: int = 2, max_queued: int = 32, keep_finished: int = 256) -> None:
        self.max_workers = max_workers
        self.max_queued = max_queued
        self._keep_finished = keep_finished
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="dubline-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._device_locks: dict[str, threading.Lock] = {}
        self._closed = False
        self._watchers: list[Callable[[], None]] = []

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever a job is submitted or ends (e.g. to pause idle work)."""
        self._watchers.append(callback)

    def _notify_watchers(self) -> None:
        for callback in self._watchers:
            callback()

    def busy(self) -> bool:
        """Whether any job is queued or running."""
        with self._lock:
            return any(not j.state.finished for j in self._jobs.values())

    def submit(self, kind: str, work: Work, *, label: str = "", device: str | None = None) -> Job:
        """Queue ``work(progress, cancel)``; ``device`` names a device it holds while running."""
        with self._lock:
            if self._closed:
                raise EngineBusyError("the engine is shutting down and takes no new jobs")
            waiting = sum(1 for j in self._jobs.values() if j.state is JobState.QUEUED)
            if waiting >= self.max_queued:
                raise EngineBusyError(f"{waiting} jobs are already queued (the limit is {self.max_queued}); try again later")
            job = Job(id=uuid.uuid4().hex[:16], kind=kind, label=label, device=device)
            self._jobs[job.id] = job
            if device is not None:
                self._device_locks.setdefault(device, threading.Lock())
            self._forget_old()
        job._emit(JobEvent("queued", waiting))
        self._notify_watchers()
        self._pool.submit(self._run, job, work)
        return job

    def _forget_old(self) -> None:
        # Caller holds self._lock: finished jobs beyond keep_finished are dropped, oldest first.
        finished = [j.id for j in self._jobs.values() if j.state.finished]
        for job_id in finished[: max(0, len(finished) - self._keep_finished)]:
            del self._jobs[job_id]

    def _run(self, job: Job, work: Work) -> None:
        if job.token.cancelled:
            self._finish(job, JobState.CANCELLED, error=CancelledError(f"job {job.id} was cancelled before it started"))
            return
        device_lock = self._device_locks.get(job.device) if job.device else None
        if device_lock is not None:
            # Wait for the device without blocking cancellation for long.
            while not device_lock.acquire(timeout=0.2):
                if job.token.cancelled:
                    self._finish(job, JobState.CANCELLED, error=CancelledError(f"job {job.id} was cancelled while queued"))
                    return
        try:
            job.state = JobState.RUNNING
            job.started = time.time()
            try:
                result = work(JobProgress(job), job.token)
            except CancelledError as error:
                self._finish(job, JobState.CANCELLED, error=error)
            except BaseException as error:  # reported to the client; the worker lives on
                if not isinstance(error, Exception):
                    raise
                log.log(logging.INFO if hasattr(error, "status_code") else logging.ERROR,
                        "job %s (%s) failed: %s", job.id, job.kind, error,
                        exc_info=not hasattr(error, "status_code"))
                self._finish(job, JobState.FAILED, error=error)
            else:
                self._finish(job, JobState.DONE, result=result)
        finally:
            if device_lock is not None:
                device_lock.release()

    def _finish(self, job: Job, state: JobState, result: Any = None, error: BaseException | None = None) -> None:
        _drop_tracebacks(error)
        job.result, job.error = result, error
        job.finished_at = time.time()
        if job.started is None:
            job.started = job.finished_at
        with job._changed:
            job.state = state
            job.events.append(JobEvent("done", result) if state is JobState.DONE else JobEvent("error", error))
            job._changed.notify_all()
        self._notify_watchers()

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise UnknownJobError(f"no job with id {job_id!r} on this engine")
        return job

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        job.token.cancel()
        return job

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def position(self, job: Job) -> int:
        """How many queued jobs were submitted before ``job``."""
        with self._lock:
            ahead = 0
            for other in self._jobs.values():
                if other is job:
                    return ahead
                ahead += other.state is JobState.QUEUED
        return 0

    def shutdown(self, drain_seconds: float | None) -> None:
        """Take no new jobs, cancel queued ones, give running ones ``drain_seconds`` to finish,
        then cancel what is still running (it stops within one batch)."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            if job.state is JobState.QUEUED:
                job.token.cancel()
        deadline = None if drain_seconds is None else time.monotonic() + drain_seconds
        for job in jobs:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not job.wait(remaining):
                job.token.cancel()
        self._pool.shutdown(wait=True, cancel_futures=False)


def _drop_tracebacks(error: BaseException | None) -> None:
    """A finished job keeps its error for clients to read, but not the error's traceback: its
    frames hold the whole render (frames, audio, the backend's plan), megabytes per job, for as
    long as the job is remembered (``keep_finished``)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        error.__traceback__ = None
        error = error.__cause__ or error.__context__
