"""One shot of a batch, as a worker runs it: check its files, skip it when finished, else render,
draw its contact sheet and record it. Every outcome is one of ``done``, ``skipped``, ``failed``
(one line saying why) or ``cancelled``; nothing but a finished shot is left on disk.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dubline.core.errors import CancelledError, DublineError
from dubline.core.paths import publish_file
from dubline.core.progress import CancelToken, ProgressSink, no_progress
from dubline.pipeline.analysis import AnalysisProvider
from dubline.pipeline.batch import resume
from dubline.pipeline.batch.identity import ShotFace, speaker_descriptor
from dubline.pipeline.batch.jobs import ShotJob
from dubline.pipeline.flags import flags_of
from dubline.pipeline.qc import run_qc
from dubline.pipeline.render import analyse_span, render, resolve_span
from dubline.qc.sheets import sheet_for_render

log = logging.getLogger(__name__)

DONE, SKIPPED, FAILED, CANCELLED = "done", "skipped", "failed", "cancelled"
STATES = (DONE, SKIPPED, FAILED, CANCELLED)


@dataclass
class ShotOutcome:
    id: str
    state: str
    message: str = ""  # why it failed, one line
    seconds: float = 0.0
    render: dict[str, Any] | None = None  # RenderResult.to_dict() (for a skipped shot: as recorded)
    sheet: str | None = None
    identity: list[float] | None = None  # the speaker's mean descriptor (clustering by person)
    qc: dict[str, Any] | None = None
    worker: str = ""  # host:pid that ran it
    analysed_by: str = ""  # host:pid of the analysis worker that analysed it ahead ("": its own worker)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ShotSettings:
    """What every shot of a batch shares."""

    report_dir: Path | None = None  # contact sheets go to <report_dir>/sheets/<id>.png
    overwrite: bool = False  # replace files at output names that no batch wrote
    cache_root: Path | None = None
    qc: bool = False  # also measure each patch (slower)
    sheet_columns: int = 8


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def unreadable(job: ShotJob) -> str | None:
    """Why this machine cannot run ``job`` (an input it cannot read, an output folder it cannot
    write), or None. Workers read sources and write patches on storage they all see."""
    for what, path in job.inputs().items():
        if not path.is_file():
            return f"{job.id}: {what} {path} does not exist on {socket.gethostname()} (workers need the same paths: shared storage)"
        if not os.access(path, os.R_OK):
            return f"{job.id}: {what} {path} is not readable on {socket.gethostname()}"
    for output in job.outputs():
        if not output.parent.is_dir() or not os.access(output.parent, os.W_OK | os.X_OK):
            return f"{job.id}: cannot write {output.parent} on {socket.gethostname()} (the output folder must exist on shared storage)"
    return None


def describe_shot(job: ShotJob, analyses: AnalysisProvider, progress: ProgressSink = no_progress,
                  cancel: CancelToken | None = None) -> ShotFace:
    """The shot's speaker for clustering: analyses its clip (kept resident for the render)."""
    request = job.request()
    analysis = analyses.analyse(request.video, request.speaker, progress, cancel)
    first, end = resolve_span(request.span, analysis.info, request.video)
    return ShotFace(speaker_descriptor(analysis.faces, first, end), int(analysis.faces.usable.sum()))


def analyse_shot(job: ShotJob, analyses: AnalysisProvider, settings: ShotSettings, progress: ProgressSink = no_progress,
                 cancel: CancelToken | None = None) -> None:
    """What the shot's render analyses first, done now into the caches under
    ``settings.cache_root`` (storage every worker sees), where its render worker will find it."""
    analyse_span(job.request(), settings.cache_root, analyses, progress, cancel)


def run_shot(job: ShotJob, analyses: AnalysisProvider, settings: ShotSettings, library: tuple[Path, ...] = (),
             progress: ProgressSink = no_progress, cancel: CancelToken | None = None) -> ShotOutcome:
    """Run one shot to its outcome; never raises for the shot's own errors."""
    start = time.perf_counter()
    outcome = ShotOutcome(job.id, FAILED, worker=worker_name())
    try:
        if job.problem:
            outcome.message = job.problem
            return outcome
        problem = unreadable(job)
        if problem:
            outcome.message = problem
            return outcome
        key = resume.shot_key(job, library)
        record = resume.finished(job, key)
        if record is not None:
            outcome.state, outcome.render, outcome.identity = SKIPPED, record.get("render"), record.get("identity")
            sheet = _sheet_path(settings, job)
            outcome.sheet = str(sheet) if sheet is not None and sheet.exists() else None
            outcome.qc = record.get("qc")
            return outcome
        if job.out.exists() and not resume.owned(job.out) and not settings.overwrite:
            outcome.message = f"{job.id}: {job.out} exists and no batch wrote it; pass --overwrite to replace it"
            return outcome
        _render(job, key, analyses, settings, library, progress, cancel, outcome)
    except CancelledError:
        outcome.state, outcome.message = CANCELLED, "cancelled"
        _clean_up(job)
    except DublineError as error:
        outcome.message = _one_line(f"{job.id}: {error}")
        _clean_up(job)
    except Exception as error:  # the shot fails, the batch goes on
        log.exception("shot %s failed", job.id)
        outcome.message = _one_line(f"{job.id}: {type(error).__name__}: {error}")
        _clean_up(job)
    finally:
        outcome.seconds = time.perf_counter() - start
    return outcome


def _render(job: ShotJob, key: str, analyses: AnalysisProvider, settings: ShotSettings, library: tuple[Path, ...],
            progress: ProgressSink, cancel: CancelToken | None, outcome: ShotOutcome) -> None:
    request = job.request(overwrite=True, library=library)
    resume.remove_partials(job)
    resume.claim(job, key)
    result = render(request, progress=progress, cancel=cancel, cache_root=settings.cache_root, analyses=analyses)
    # The analysis is resident (the render just used it): identity and the sheet cost no decoding of it.
    analysis = analyses.analyse(request.video, request.speaker, progress, cancel)
    descriptor = speaker_descriptor(analysis.faces, *result.span)
    outcome.render = result.to_dict()
    outcome.identity = None if descriptor is None else [float(v) for v in descriptor]
    if settings.qc:
        progress("qc", 0, 1)
        outcome.qc = run_qc(result.out, request.audio, source=request.video, span=request.span, matte=result.matte,
                            audio_offset=request.audio_offset, cache_root=settings.cache_root).to_dict()
        # qc's flags join the render's, so the reel's markers say what qc found too
        flags = flags_of(outcome.render, outcome.qc)
        outcome.render["flags"] = [flag.to_dict() for flag in flags]
        outcome.render["markers"] = [flag.label(result.span[0]) for flag in flags]
    sheet = _sheet_path(settings, job)
    if sheet is not None:
        progress("sheet", 0, 1)
        sheet.parent.mkdir(parents=True, exist_ok=True)
        publish_file(sheet, lambda temporary: sheet_for_render(
            request.video, result.span[0], result.out, analysis.faces, temporary, matte=result.matte,
            columns=settings.sheet_columns), overwrite=True, inputs=request.inputs())
        outcome.sheet = str(sheet)
    resume.record_done(job, key, {"render": outcome.render, "identity": outcome.identity, "qc": outcome.qc})
    outcome.state = DONE


def _sheet_path(settings: ShotSettings, job: ShotJob) -> Path | None:
    return None if settings.report_dir is None else Path(settings.report_dir) / "sheets" / f"{job.id}.png"


def _clean_up(job: ShotJob) -> None:
    try:
        resume.remove_partials(job)
        resume.release(job)
    except OSError as error:  # the outcome already says what went wrong; do not hide it
        log.warning("could not clean up after %s: %s", job.id, error)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
