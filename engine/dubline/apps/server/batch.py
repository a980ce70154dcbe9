"""``RenderBatch``: a timeline or job list handed to ``dubline batch``'s runner, its events streamed.

Paths are checked against the media roots twice: those of the request (the timeline or job list,
the outputs), then every path a shot names (its clip, dub, library, patch, matte); a shot outside
the roots fails with the reason, the rest of the batch goes on. The batch runs on a thread of its
own; the stream ending early (client gone) stops it as Ctrl-C stops ``dubline batch``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from dubline_client import pb

from dubline.apps.batch import (
    BatchEvent,
    BatchInput,
    BatchOptions,
    WorkerRecipe,
    finish,
    plan_input,
    run_batch,
)
from dubline.apps.server.security import MediaRoots
from dubline.apps.server.status import status_for
from dubline.core.errors import DublineError, InvalidInputError
from dubline.core.models import model_dir
from dubline.core.timing import parse_rate
from dubline.pipeline.batch import JobDefaults, ShotJob, ShotSettings
from dubline.stages import media
from dubline.stages.backends import DEFAULT_BACKEND, PATH_OPTIONS

_END = object()


def batch_input(request: pb.BatchRequest, roots: MediaRoots) -> BatchInput:
    """The planned batch of ``request``, every path inside ``roots``."""
    source = request.WhichOneof("source")
    if source is None:
        raise InvalidInputError("give timeline or job_list")
    spec = request.defaults
    defaults = JobDefaults(
        backend=spec.backend or DEFAULT_BACKEND, codec=spec.codec or media.DEFAULT_PATCH_CODEC,
        expression=spec.expression or "as-source", length_policy=spec.length_policy or "pad_or_trim",
        with_audio=spec.with_audio, backend_options=dict(spec.backend_options),
    )
    batch = plan_input(
        timeline=roots.check(request.timeline, "timeline") if source == "timeline" else None,
        job_list=roots.check(request.job_list, "job_list") if source == "job_list" else None,
        out=roots.check(request.out, "out", required=False),
        patch_dir=roots.check(request.patch_dir, "patch_dir", required=False),
        report_dir=roots.check(request.report_dir, "report_dir", required=False),
        defaults=defaults, dub_tracks=list(request.dub_tracks),
        edl_rate=parse_rate(request.edl_rate) if request.edl_rate else None,
        include_disabled=request.include_disabled, overwrite=request.overwrite,
    )
    for path, field in ((batch.report_dir, "report_dir"), (batch.timeline_out, "out")):
        if path is not None:
            roots.check(str(path), field)
    batch.jobs = [_inside_roots(job, roots) for job in batch.jobs]
    return batch


def _inside_roots(job: ShotJob, roots: MediaRoots) -> ShotJob:
    """``job`` when every file it names is inside the roots (backend options naming a file, such as
    a checkpoint, resolved as for ``Render``: a bare name is in the model directory), else failed."""
    if job.problem is not None:
        return job
    try:
        for what, path in {**job.inputs(), **{f"output {p.name}": p for p in job.outputs()}}.items():
            roots.check(str(path), f"{job.id} {what}")
        options = dict(job.backend_options)
        for key in PATH_OPTIONS.get(job.backend, ()):
            if key in options:
                options[key] = str(roots.check_model(str(options[key]), f"{job.id} backend option {key}", model_dir()))
    except DublineError as error:
        return job.failed(str(error))
    return replace(job, backend_options=options)


def batch_options(request: pb.BatchRequest, batch: BatchInput, recipe: WorkerRecipe | None,
                  resident: Callable[[], object], cache_root: Path | None) -> BatchOptions:
    if request.workers < 0:
        raise InvalidInputError(f"workers {request.workers} is negative")
    if request.in_process and request.ray_address:
        raise InvalidInputError("in_process runs in the engine; it cannot be combined with ray_address")
    if recipe is None:  # in the engine, shots share its resident analyses; Ray workers keep their own
        recipe = WorkerRecipe(analyses=resident) if request.in_process else WorkerRecipe()
    return BatchOptions(
        workers=0 if request.in_process else (request.workers or None), ray_address=request.ray_address or None,
        cross_shot_library=request.cross_shot_library, recipe=recipe, keep_ray=True,
        settings=ShotSettings(report_dir=batch.report_dir, overwrite=request.overwrite, cache_root=cache_root,
                              qc=request.qc),
    )


def _shot_message(event: BatchEvent) -> pb.BatchEvent | None:
    if event.kind == "start":
        return pb.BatchEvent(shot=pb.ShotEvent(shot=event.shot, state="started"))
    if event.kind == "progress":
        return pb.BatchEvent(shot=pb.ShotEvent(shot=event.shot, state="running", progress=pb.Progress(
            stage=event.stage, done=event.done, total=event.total)))
    if event.kind == "retry":
        return pb.BatchEvent(shot=pb.ShotEvent(shot=event.shot, state="retry", message=event.message))
    if event.kind == "shot":
        outcome = event.outcome
        out = (outcome.render or {}).get("out", "")
        return pb.BatchEvent(shot=pb.ShotEvent(shot=outcome.id, state=outcome.state, message=outcome.message,
                                               out=out or "", seconds=outcome.seconds))
    return None  # phases are not shots


def stream_batch(batch: BatchInput, options: BatchOptions, is_active: Callable[[], bool]) -> Iterator[pb.BatchEvent]:
    """Planned, the shots' events as they come, then done (or an error event)."""
    yield pb.BatchEvent(planned=pb.BatchPlanned(shots=[job.id for job in batch.jobs], warnings=batch.warnings,
                                                report_dir=str(batch.report_dir)))
    events: queue.Queue = queue.Queue()
    stop = threading.Event()

    def work() -> None:
        try:
            run = run_batch(batch.jobs, options, events.put, stop)
            events.put(finish(batch, run))
        except BaseException as error:  # reported on the stream
            events.put(error)
        finally:
            events.put(_END)

    thread = threading.Thread(target=work, name="dubline-batch", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = events.get(timeout=0.5)
            except queue.Empty:
                if not is_active():
                    stop.set()
                continue
            if item is _END:
                return
            if isinstance(item, BatchEvent):
                message = _shot_message(item)
                if message is not None:
                    yield message
            elif isinstance(item, BaseException):
                code, text = status_for(item)
                yield pb.BatchEvent(error=pb.JobError(code=code.name, message=text))
            else:
                counts, run = item["counts"], item["run"]
                yield pb.BatchEvent(done=pb.BatchDone(
                    report=run["report"], timeline=run.get("timeline_out") or "", done=counts["done"],
                    skipped=counts["skipped"], failed=counts["failed"], cancelled=counts["cancelled"],
                    pending=counts["pending"], wall_seconds=run["wall_seconds"], where=run["where"]))
    finally:
        stop.set()  # the client went away: finished shots are kept, the rest cancelled
        thread.join()
