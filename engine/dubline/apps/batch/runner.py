"""``run_batch``: shot jobs spread over workers, with progress, retries, resume and a clean stop.

    check     every worker checks every shot's paths up front (shared storage): a path a worker
              cannot read fails that shot with a line naming the node
    describe  (``--cross-shot-library``) every shot's speaker analysed and clustered by person;
              each shot's library gets other shots' footage of the same person
    run       shots dispatched to idle workers, preferring a worker that already holds the shot's
              clip analysis; each returns done / skipped / failed / cancelled
    analyse   (with analysis workers: by default on a Ray whose render workers hold GPUs) CPU
              workers analyse the shots into the shared cache ahead of the render workers, which
              take each shot once its analysis is there; the identities phase runs on them too

A worker whose process dies is restarted by Ray and its shot retried (``retries`` times); the
driver sees the new process id and reports the retry. ``stop`` (or Ctrl-C) cancels the shots in
flight (each leaves nothing under its names), starts no new ones, and returns what finished; a
second Ctrl-C stops at once, and the temporary files of shots cut short are removed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dubline.apps.batch.pools import (
    InlinePool,
    RayPlace,
    RayPool,
    WorkerLost,
    local_ray_cpus,
    start_ray,
    stop_ray,
)
from dubline.apps.batch.worker import Analysed, WorkerRecipe
from dubline.pipeline.batch import (
    CANCELLED,
    FAILED,
    ShotFace,
    ShotJob,
    ShotOutcome,
    ShotSettings,
    cluster_identities,
    resume,
    shared_libraries,
)
from dubline.stages.backends import get_backend

log = logging.getLogger(__name__)

#: Seconds between looks at the workers' progress.
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class BatchOptions:
    workers: int | None = None  # None: one per CPU of the Ray (per GPU for GPU backends); 0: this process
    ray_address: str | None = None  # None: a local Ray started here
    cpus_per_worker: int | None = None  # None: an equal share of the Ray's CPUs
    cross_shot_library: bool = False
    retries: int = 2  # restarts of a dead worker (and retries of its shot)
    settings: ShotSettings = ShotSettings()
    recipe: WorkerRecipe = WorkerRecipe()
    keep_ray: bool = False  # leave a local Ray this call started running (the engine reuses it)
    #: CPU workers (1 CPU each) that analyse shots ahead of the render workers; None: half the
    #: Ray's CPUs when the render workers hold GPUs, else none (``analysis_plan``)
    analysis_workers: int | None = None


@dataclass(frozen=True)
class BatchEvent:
    """``phase`` (message: check / identities / render), ``start``, ``progress`` (stage, done,
    total, and the worker as host:pid), ``analysed`` (a shot's analysis is in the shared cache;
    worker, and message: why it could not be analysed, if so), ``shot`` (outcome), ``retry``
    (message: the worker that died)."""

    kind: str
    shot: str | None = None
    stage: str = ""
    done: int = 0
    total: int = 0
    outcome: ShotOutcome | None = None
    message: str = ""
    worker: str = ""


@dataclass
class BatchRun:
    outcomes: dict[str, ShotOutcome]
    persons: dict[str, int]  # shot id -> person number
    libraries: dict[str, tuple[Path, ...]]  # shot id -> other shots' clips in its library
    run: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False


def _uses_gpu(jobs: list[ShotJob]) -> bool:
    return any(get_backend(job.backend).info.prefers_gpu for job in jobs)


def analysis_plan(requested: int | None, cpus: int, gpu_workers: bool) -> int:
    """How many 1-CPU workers analyse shots ahead of the render workers: ``requested``, else on a
    Ray whose render workers hold GPUs half its CPUs (face tracking and speech analysis then run
    beside the GPUs, which would otherwise wait through them inside their workers), else none
    (on CPUs alone a worker analysing its own shot loses nothing)."""
    if requested is not None:
        return max(0, requested)
    return cpus // 2 if gpu_workers else 0


@dataclass(frozen=True)
class WorkerPlan:
    count: int
    cpus: int  # each worker's share: Ray reserves it, and the worker sizes its threads by it
    gpus: int  # each


def worker_plan(requested: int | None, cpus: int, gpus: int, gpu_backend: bool,
                cpus_per_worker: int | None = None, largest_node_cpus: int | None = None) -> WorkerPlan:
    """For a backend that prefers the GPU on a Ray with GPUs, one worker per GPU (at most
    ``requested``), each holding one; otherwise ``requested`` workers or one per CPU, no GPU. Each
    worker gets ``cpus_per_worker`` CPUs, by default an equal share of the Ray's (at least one, at
    most what the largest node has), so N workers on a machine do not each start a thread per core."""
    if gpu_backend and gpus > 0:
        count, gpus_each = min(requested or gpus, gpus), 1
    else:
        count, gpus_each = max(requested or cpus, 1), 0
    share = cpus_per_worker or max(1, cpus // count)
    if largest_node_cpus:
        share = min(share, largest_node_cpus)
    return WorkerPlan(count, max(1, share), gpus_each)


class _Driver:
    """Dispatches one phase's calls to idle workers and collects them."""

    def __init__(self, pool: Any, on_event: Callable[[BatchEvent], None], stop: threading.Event) -> None:
        self.pool = pool
        self.on_event = on_event
        self.stop = stop
        self.interrupted = False
        self.in_flight: dict[int, ShotJob] = {}
        self._pids: dict[int, int] = {}
        self._clips: dict[int, set[Path]] = defaultdict(set)  # worker -> clips it has analysed
        self._shown: dict[int, tuple] = {}

    def _pick(self, pending: list[ShotJob], index: int) -> ShotJob:
        for position, job in enumerate(pending):
            if job.video in self._clips[index]:
                return pending.pop(position)
        return pending.pop(0)

    def _interrupt(self, pending: list[ShotJob]) -> None:
        self.interrupted = True
        self.stop.set()  # a driver running another pool alongside (analysis workers) stops too
        pending.clear()
        for index in self.in_flight:
            self.pool.cancel(index)

    def _arrive(self, pending: list[ShotJob], arrivals: queue.Queue, wait: bool) -> bool:
        """Move the jobs that became ready onto ``pending`` (waiting up to POLL_SECONDS for one if
        ``wait``); False once the end mark (None) has come."""
        while True:
            try:
                job = arrivals.get(timeout=POLL_SECONDS) if wait else arrivals.get_nowait()
            except queue.Empty:
                return True
            if job is None:
                return False
            if not self.interrupted:
                pending.append(job)
            wait = False

    def phase(self, jobs: list[ShotJob], method: str, arguments: Callable[[ShotJob], tuple],
              on_result: Callable[[ShotJob, Any], None], arrivals: queue.Queue | None = None) -> None:
        """Run ``method`` on every job, each on an idle worker. With ``arrivals`` the jobs arrive
        one by one on that queue instead (None marks the last), as another pool finishes them."""
        if self.interrupted:  # stopped in an earlier phase: start nothing more
            if arrivals is not None:
                while arrivals.get() is not None:
                    pass
            return
        pending = list(jobs)
        handles: dict[int, Any] = {}
        arriving = arrivals is not None
        while pending or handles or arriving:
            try:
                if arriving:
                    arriving = self._arrive(pending, arrivals, wait=not pending and not handles)
                if not self.interrupted and self.stop.is_set():
                    self._interrupt(pending)
                for index in range(len(self.pool)):
                    if pending and index not in handles:
                        job = self._pick(pending, index)
                        handles[index] = self.pool.call(index, method, job, *arguments(job))
                        self.in_flight[index] = job
                        self.on_event(BatchEvent("start", job.id))
                ready = self.pool.ready(list(handles.values()), POLL_SECONDS)
                for index, handle in list(handles.items()):
                    if handle not in ready:
                        continue
                    job = self.in_flight.pop(index)
                    del handles[index]
                    try:
                        value = self.pool.result(handle)
                    except WorkerLost as error:
                        value = WorkerLost(f"{job.id}: its worker died on every try ({error})")
                        self.pool.replace(index)
                    self._clips[index].add(job.video)
                    on_result(job, value)
                self._look(handles)
            except KeyboardInterrupt:
                if self.interrupted:
                    raise  # a second Ctrl-C: stop now
                self._interrupt(pending)

    def _look(self, handles: dict[int, Any]) -> None:
        """Progress of the shots in flight; a worker with a new process id was restarted by Ray."""
        if not handles:
            return
        for index, state in self.pool.states().items():
            job = self.in_flight.get(index)
            previous = self._pids.get(index)
            self._pids[index] = state.pid
            if job is None:
                continue
            if previous is not None and previous != state.pid:
                self.on_event(BatchEvent("retry", job.id, message=f"worker pid {previous} died; Ray restarted it "
                                                                  f"(pid {state.pid}) and retries {job.id}"))
            shown = (state.shot, state.stage, state.done, state.total)
            if state.shot == job.id and self._shown.get(index) != shown:
                self._shown[index] = shown
                self.on_event(BatchEvent("progress", job.id, state.stage, state.done, state.total, worker=state.worker))

    def check(self, jobs: list[ShotJob]) -> dict[str, str]:
        handles = [self.pool.call(index, "check", jobs) for index in range(len(self.pool))]
        problems: dict[str, str] = {}
        for handle in handles:
            try:
                problems.update(self.pool.result(handle))
            except WorkerLost as error:
                log.warning("a worker died while checking paths: %s", error)
        return problems


def run_batch(jobs: list[ShotJob], options: BatchOptions = BatchOptions(),
              on_event: Callable[[BatchEvent], None] = lambda event: None,
              stop: threading.Event | None = None) -> BatchRun:
    """Run every job; returns each shot's outcome (shots never started have none)."""
    stop = stop or threading.Event()
    started = time.perf_counter()
    outcomes: dict[str, ShotOutcome] = {}
    faces: dict[str, ShotFace] = {}
    libraries: dict[str, tuple[Path, ...]] = {}
    analysed_by: dict[str, str] = {}
    lock = threading.Lock()  # events come from the analysis workers' driver thread too

    def event(item: BatchEvent) -> None:
        with lock:
            on_event(item)

    def finished(job: ShotJob, value: Any) -> None:
        if isinstance(value, WorkerLost):
            value = ShotOutcome(job.id, FAILED, str(value))
        value.analysed_by = analysed_by.get(job.id, "")
        outcomes[job.id] = value
        event(BatchEvent("shot", job.id, outcome=value))

    for job in jobs:
        if job.problem is not None:
            finished(job, ShotOutcome(job.id, FAILED, job.problem))
    runnable = [job for job in jobs if job.problem is None]
    place: RayPlace | None = None
    pool: Any = None
    analysis_pool: RayPool | None = None
    driver: _Driver | None = None
    try:
        if options.workers == 0:
            pool, where, count = InlinePool(options.settings, options.recipe), "this process", 1
        else:
            place = start_ray(options.ray_address, local_ray_cpus(options.workers, options.cpus_per_worker,
                                                                  options.analysis_workers or 0))
            gpu_workers = _uses_gpu(runnable) and place.gpus > 0
            analysers = analysis_plan(options.analysis_workers, place.cpus, gpu_workers)
            plan = worker_plan(options.workers, max(1, place.cpus - analysers), place.gpus, _uses_gpu(runnable),
                               options.cpus_per_worker, place.largest_node_cpus)
            pool = RayPool(plan.count, options.settings, options.recipe, cpus=plan.cpus, gpus=plan.gpus,
                           retries=options.retries)
            count = plan.count
            kind = ("GPU worker" if plan.gpus else "worker") + ("s" if count > 1 else "")
            share = f"{plan.cpus} CPU{'s' if plan.cpus > 1 else ''}" + (" each" if count > 1 else "")
            where = place.where + f", {count} {kind} of {share}"
            if analysers:
                analysis_pool = RayPool(analysers, options.settings, options.recipe, cpus=1, retries=options.retries)
                where += f", {analysers} analysis worker{'s' if analysers > 1 else ''} of 1 CPU"
        driver = _Driver(pool, event, stop)
        ahead = _Driver(analysis_pool, _analysis_events(event), stop) if analysis_pool is not None else None
        event(BatchEvent("phase", message="check"))
        for shot, problem in driver.check(runnable).items():
            finished(next(j for j in runnable if j.id == shot), ShotOutcome(shot, FAILED, problem))
        runnable = [job for job in runnable if job.id not in outcomes]
        if options.cross_shot_library and runnable:
            event(BatchEvent("phase", message="identities"))
            (ahead or driver).phase(runnable, "describe", lambda job: (),
                                    lambda job, value: faces.__setitem__(job.id, value) if isinstance(value, ShotFace) else None)
            persons = cluster_identities({shot: face.descriptor for shot, face in faces.items()})
            libraries = shared_libraries({job.id: job.video for job in runnable}, persons, faces)
        event(BatchEvent("phase", message="render"))
        if ahead is None:
            driver.phase(runnable, "run", lambda job: (libraries.get(job.id, ()),), finished)
        else:
            _render_behind_analysis(ahead, driver, runnable, libraries, analysed_by, event, finished)
    finally:
        for closing in (pool, analysis_pool):
            if closing is not None:
                closing.close()
        if place is not None and not options.keep_ray:
            stop_ray(place)
        for job in runnable:
            if job.id not in outcomes or outcomes[job.id].state == CANCELLED:
                resume.remove_partials(job)  # a shot cut short by a second Ctrl-C
                resume.release(job)
    persons = cluster_identities({job.id: _descriptor(job.id, faces, outcomes) for job in jobs})  # numbered in job order
    run = {"where": where, "workers": count, "wall_seconds": round(time.perf_counter() - started, 3),
           "cross_shot_library": options.cross_shot_library, "interrupted": bool(driver and driver.interrupted)}
    return BatchRun(outcomes, persons, libraries, run, run["interrupted"])


def _analysis_events(event: Callable[[BatchEvent], None]) -> Callable[[BatchEvent], None]:
    """What the analysis workers' driver reports: their progress and retries (their shots start
    and finish for the user when the render workers take them)."""
    def forward(item: BatchEvent) -> None:
        if item.kind in ("progress", "retry"):
            event(item)

    return forward


def _render_behind_analysis(ahead: _Driver, driver: _Driver, runnable: list[ShotJob],
                            libraries: dict[str, tuple[Path, ...]], analysed_by: dict[str, str],
                            event: Callable[[BatchEvent], None], finished: Callable[[ShotJob, Any], None]) -> None:
    """The analysis workers analyse the shots (on a thread of this process) while the render
    workers render each shot as soon as its analysis is in the shared cache."""
    ready: queue.Queue = queue.Queue()

    def analysed(job: ShotJob, value: Any) -> None:
        worker, problem = (value.worker, value.problem) if isinstance(value, Analysed) else ("", str(value))
        analysed_by[job.id] = worker
        event(BatchEvent("analysed", job.id, message=problem, worker=worker))
        ready.put(job)  # a shot that could not be analysed fails with the reason when it renders

    def analyse_all() -> None:
        try:
            ahead.phase(runnable, "analyse", lambda job: (), analysed)
        finally:
            ready.put(None)

    thread = threading.Thread(target=analyse_all, name="dubline-batch-analysis", daemon=True)
    thread.start()
    try:
        driver.phase([], "run", lambda job: (libraries.get(job.id, ()),), finished, arrivals=ready)
    finally:
        if thread.is_alive():  # the render phase was stopped: so is the analysis
            ahead.stop.set()
        thread.join()


def _descriptor(shot: str, faces: dict[str, ShotFace], outcomes: dict[str, ShotOutcome]) -> np.ndarray | None:
    outcome = outcomes.get(shot)
    if outcome is not None and outcome.identity is not None:
        return np.asarray(outcome.identity, dtype=np.float32)
    return faces[shot].descriptor if shot in faces else None
