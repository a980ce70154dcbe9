"""``ShotWorker``: what runs shots, as a Ray actor on any node (or in this process).

A worker lives for the whole batch, so the models it loads stay resident in its process's
``ModelRegistry`` and its clip analyses in ``ResidentAnalyses``: shots of the same clip that land
on the same worker pay for the analysis once. It reads sources and writes patches itself, on
storage every node sees; only job descriptions and outcomes travel through Ray, never frames.

Its methods may be called concurrently (a Ray actor with ``max_concurrency`` > 1): ``progress``
and ``cancel`` answer while ``run`` renders.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dubline.core.cpus import limit_cpus
from dubline.core.progress import CancelToken
from dubline.pipeline import AnalysisProvider, ResidentAnalyses
from dubline.pipeline.batch import (
    ShotFace,
    ShotJob,
    ShotOutcome,
    ShotSettings,
    analyse_shot,
    describe_shot,
    run_shot,
    unreadable,
)
from dubline.pipeline.batch.shot import worker_name

#: Clip analyses a worker keeps in memory (a shot's own clip plus its shared library).
RESIDENT_ANALYSES = 16


@dataclass(frozen=True)
class WorkerRecipe:
    """How a worker process is set up: ``setup()`` runs first in the worker (registering a
    backend, for instance), ``analyses()`` makes its analysis provider (default: resident analyses
    over the disk cache). Both must be importable where the workers run."""

    setup: Callable[[], None] | None = None
    analyses: Callable[[], AnalysisProvider] | None = None


@dataclass(frozen=True)
class Analysed:
    """A shot analysed ahead of its render: by which worker (host:pid), and why not ("": it was)."""

    worker: str
    problem: str = ""


@dataclass(frozen=True)
class WorkerState:
    worker: str  # host:pid
    pid: int
    shot: str | None
    stage: str
    done: int
    total: int


class ShotWorker:
    def __init__(self, settings: ShotSettings, recipe: WorkerRecipe = WorkerRecipe(), cpus: int | None = None) -> None:
        if cpus is not None:  # this worker's share of its machine (None: all of it)
            limit_cpus(cpus)
        if recipe.setup is not None:
            recipe.setup()
        self.settings = settings
        self.analyses = recipe.analyses() if recipe.analyses is not None else ResidentAnalyses(
            RESIDENT_ANALYSES, settings.cache_root)
        self._lock = threading.Lock()
        self._state = (None, "idle", 0, 0)
        self._token: CancelToken | None = None

    def _progress(self, shot: str) -> Callable[[str, int, int], None]:
        def sink(stage: str, done: int, total: int) -> None:
            with self._lock:
                self._state = (shot, stage, done, total)

        return sink

    def _begin(self, shot: str) -> CancelToken:
        with self._lock:
            self._token = CancelToken()
            self._state = (shot, "start", 0, 0)
            return self._token

    def _end(self) -> None:
        with self._lock:
            self._token = None
            self._state = (None, "idle", 0, 0)

    def check(self, jobs: list[ShotJob]) -> dict[str, str]:
        """Shot id -> why this node cannot run it (a path it cannot read or write)."""
        problems = {}
        for job in jobs:
            if job.problem is None:
                problem = unreadable(job)
                if problem:
                    problems[job.id] = problem
        return problems

    def describe(self, job: ShotJob) -> ShotFace | str:
        """The shot's speaker for clustering, or why it could not be analysed (one line)."""
        token = self._begin(job.id)
        try:
            return describe_shot(job, self.analyses, self._progress(job.id), token)
        except Exception as error:  # the shot will fail with the same reason when it renders
            return " ".join(f"{job.id}: {error}".split())
        finally:
            self._end()

    def analyse(self, job: ShotJob) -> Analysed:
        """Analyse the shot into the shared caches ahead of its render (an analysis worker's call);
        a shot that cannot be analysed says why and fails with that reason when it renders."""
        token = self._begin(job.id)
        try:
            analyse_shot(job, self.analyses, self.settings, self._progress(job.id), token)
            return Analysed(worker_name())
        except Exception as error:
            return Analysed(worker_name(), " ".join(f"{job.id}: {error}".split()))
        finally:
            self._end()

    def run(self, job: ShotJob, library: tuple[Path, ...] = ()) -> ShotOutcome:
        token = self._begin(job.id)
        try:
            return run_shot(job, self.analyses, self.settings, library, self._progress(job.id), token)
        finally:
            self._end()

    def state(self) -> WorkerState:
        with self._lock:
            shot, stage, done, total = self._state
        return WorkerState(worker_name(), os.getpid(), shot, stage, done, total)

    def cancel(self) -> bool:
        """Cancel the shot in progress (it stops within one batch of frames and leaves nothing)."""
        with self._lock:
            if self._token is None:
                return False
            self._token.cancel()
            return True
