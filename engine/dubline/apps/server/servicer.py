"""``dubline.v1.Engine``: each RPC validates its message, hands work to the job queue or the
pipeline, and turns the outcome into messages. Errors become status codes in ``status_for`` only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import grpc
import numpy as np
from dubline_client import pb
from dubline_client._generated.dubline.v1 import engine_pb2_grpc as pb_grpc

from dubline import __version__
from dubline.apps.batch import WorkerRecipe
from dubline.apps.server import batch, convert, frames
from dubline.apps.server.jobs import Job, JobEvent, JobProgress, JobQueue, JobState
from dubline.apps.server.security import MAX_PATH_LENGTH, MediaRoots
from dubline.apps.server.status import status_for
from dubline.core.errors import DublineError, FrameUnavailableError, InvalidInputError
from dubline.core.models import model_dir, registry
from dubline.core.progress import CancelToken, ProgressSink
from dubline.pipeline import AnalysisBudget, RenderRequest, ResidentAnalyses, render
from dubline.pipeline.live import LiveFrames, render_live
from dubline.qc.sheets import preview_jpeg
from dubline.stages import media
from dubline.stages.backends import DEFAULT_BACKEND, get_backend, names

log = logging.getLogger(__name__)

#: One-frame answers built at once (each up to a 4096x2304 float frame and matte, ~190 MB).
FRAME_ANSWERS_AT_ONCE = 4

_STATES = {
    JobState.QUEUED: pb.JOB_STATE_QUEUED,
    JobState.RUNNING: pb.JOB_STATE_RUNNING,
    JobState.DONE: pb.JOB_STATE_DONE,
    JobState.FAILED: pb.JOB_STATE_FAILED,
    JobState.CANCELLED: pb.JOB_STATE_CANCELLED,
}



@contextmanager
def _answering(context: grpc.ServicerContext) -> Iterator[None]:
    """Turn an engine error raised while answering into the RPC's status."""
    try:
        yield
    except DublineError as error:
        code, message = status_for(error)
        context.abort(code, message)
    except Exception as error:
        if isinstance(error, grpc.RpcError):  # context.abort's own exception
            raise
        log.exception("unexpected error in %s", context)
        code, message = status_for(error)
        context.abort(code, message)


@dataclass(frozen=True)
class EngineConfig:
    media_roots: MediaRoots
    cache_root: Path | None
    work_dir: Path  # where spans rendered for the one-frame RPC are written
    max_analyses: int = 8
    span_budget_bytes: int = 2 * 1024**3
    max_message_bytes: int = 0
    batch_recipe: WorkerRecipe | None = None  # how batch workers are set up (None: the standard way)
    analysis_budget: AnalysisBudget = AnalysisBudget()  # what a render analyses of its source first


def _device_for(backend: str) -> str | None:
    """The device a backend's job holds for its whole run (None: CPU work that may overlap)."""
    if not get_backend(backend).info.prefers_gpu:
        return None
    import torch  # only for backends that use it: the engine starts without loading torch

    return "cuda:0" if torch.cuda.is_available() else "cpu-neural"


def _progress_message(progress: tuple) -> pb.Progress:
    """(stage, done, total) or, with a picture of the work, (stage, done, total, jpeg, frame)."""
    stage, done, total = progress[:3]
    if len(progress) == 5:
        return pb.Progress(stage=stage, done=done, total=total, preview_jpeg=progress[3], preview_frame=progress[4])
    return pb.Progress(stage=stage, done=done, total=total)


class EngineServicer(pb_grpc.EngineServicer):
    def __init__(self, config: EngineConfig, jobs: JobQueue) -> None:
        self.config = config
        self.jobs = jobs
        self.analyses = ResidentAnalyses(config.max_analyses, config.cache_root, budget=config.analysis_budget)
        self.spans = frames.SpanStore(config.span_budget_bytes)
        self._frame_jobs: dict[str, str] = {}  # clip key -> job id
        self._live: dict[str, LiveFrames] = {}  # clip key -> the frames of its render so far
        self._frame_lock = threading.Lock()
        self._answer_slots = threading.BoundedSemaphore(FRAME_ANSWERS_AT_ONCE)

    # -- capabilities --------------------------------------------------------------------------

    def Capabilities(self, request: pb.CapabilitiesRequest, context: grpc.ServicerContext) -> pb.CapabilitiesResponse:
        with _answering(context):
            return self.capabilities()

    def capabilities(self) -> pb.CapabilitiesResponse:
        """What this engine offers; the frame socket's capabilities message answers from it too."""
        weights_dir = model_dir()
        backends = []
        for name in names():
            info = get_backend(name).info
            # An entry "a.pth or b.pth" is met by either file (wav2lip takes the GAN or the plain generator).
            missing = [w for w in info.weights if not any((weights_dir / f).is_file() for f in w.split(" or "))]
            backends.append(pb.BackendCapability(
                name=info.name, description=info.description, prefers_gpu=info.prefers_gpu,
                weights=list(info.weights), weights_present=not missing, missing_weights=missing,
            ))
        loaded = [
            pb.LoadedModel(name=m.name, device=m.device, dtype=m.dtype, bytes=m.bytes, load_seconds=m.load_seconds)
            for m in registry().loaded()
        ]
        patch_codecs = [
            pb.CodecCapability(name=name, label=codec.label, description=codec.description,
                               suffixes=list(codec.suffixes), alpha=codec.alpha)
            for name, codec in media.PATCH_CODECS.items()
        ]
        return pb.CapabilitiesResponse(
            version=__version__,
            api="dubline.v1",
            backends=backends,
            loaded_models=loaded,
            codecs=list(media.PATCH_CODECS),
            patch_codecs=patch_codecs,
            default_backend=DEFAULT_BACKEND,
            default_codec=media.DEFAULT_PATCH_CODEC,
            limits=pb.Limits(
                max_frame_width=frames.MAX_FRAME_WIDTH,
                max_frame_height=frames.MAX_FRAME_HEIGHT,
                max_message_bytes=self.config.max_message_bytes,
                max_path_length=MAX_PATH_LENGTH,
                max_concurrent_jobs=self.jobs.max_workers,
                max_queued_jobs=self.jobs.max_queued,
            ),
            model_dir=str(weights_dir),
            media_roots=[str(r) for r in self.config.media_roots.roots],
            resident_analyses=len(self.analyses),
        )


    # -- analyse -------------------------------------------------------------------------------

    def Analyse(self, request: pb.AnalyseRequest, context: grpc.ServicerContext) -> pb.AnalyseResponse:
        with _answering(context):
            video = self.config.media_roots.check(request.video, "video")
            speaker = convert._speaker(request.speaker, self.config.media_roots)
            cached = self.analyses.resident(video, speaker)

            def work(progress: ProgressSink, cancel: CancelToken) -> Any:
                return self.analyses.analyse(video, speaker, progress, cancel)

            job = self.jobs.submit("analyse", work, label=str(video))
            self._cancel_when_gone(job, context)
            job.wait()
            if job.error is not None:
                raise job.error
            analysis = job.result
            rate = analysis.info.video.rate
            return pb.AnalyseResponse(
                video=str(video),
                frame_count=analysis.info.video.frame_count,
                frames_with_face=int(analysis.faces.usable.sum()),
                frame_rate=pb.RationalTime(value=1, rate_num=rate.numerator, rate_den=rate.denominator),
                cached=cached,
                seconds=job.seconds,
            )

    # -- render --------------------------------------------------------------------------------

    def _submit_render(self, request: RenderRequest, kind: str) -> Job:
        cache_root = self.config.cache_root

        def work(progress: JobProgress, cancel: CancelToken) -> Any:
            def preview(frame: int, picture) -> None:
                if progress.wants_picture():
                    progress.show(frame, preview_jpeg(picture()))

            return render(request, progress=progress, cancel=cancel, cache_root=cache_root, analyses=self.analyses,
                          preview=preview)

        return self.jobs.submit(kind, work, label=str(request.video), device=_device_for(request.backend))

    def _cancel_when_gone(self, job: Job, context: grpc.ServicerContext) -> None:
        # Fires when the RPC ends for any reason; cancelling a finished job is harmless.
        def on_end() -> None:
            if not job.state.finished:
                log.info("client of job %s went away; cancelling it", job.id)
                job.token.cancel()

        if not context.add_callback(on_end):
            on_end()

    def Render(self, request: pb.RenderRequest, context: grpc.ServicerContext) -> Iterator[pb.RenderEvent]:
        with _answering(context):
            if not request.HasField("spec"):
                raise InvalidInputError("spec is required")
            pipeline_request = convert.render_request(request.spec, self.config.media_roots)
            job = self._submit_render(pipeline_request, "render")
        self._cancel_when_gone(job, context)
        for event in job.events_from(0, stop_waiting=lambda: not context.is_active()):
            yield self._event_message(job, event)

    def _event_message(self, job: Job, event: JobEvent) -> pb.RenderEvent:
        if event.kind == "queued":
            return pb.RenderEvent(job_id=job.id, queued=pb.Queued(position=event.payload))
        if event.kind == "progress":
            return pb.RenderEvent(job_id=job.id, progress=_progress_message(event.payload))
        if event.kind == "done":
            return pb.RenderEvent(job_id=job.id, done=convert.render_done(event.payload))
        code, message = status_for(event.payload)
        return pb.RenderEvent(job_id=job.id, error=pb.JobError(code=code.name, message=message))

    # -- batch ---------------------------------------------------------------------------------

    def RenderBatch(self, request: pb.BatchRequest, context: grpc.ServicerContext) -> Iterator[pb.BatchEvent]:
        with _answering(context):
            planned = batch.batch_input(request, self.config.media_roots)
            options = batch.batch_options(request, planned, self.config.batch_recipe, lambda: self.analyses,
                                          self.config.cache_root)
        yield from batch.stream_batch(planned, options, context.is_active)

    # -- jobs ----------------------------------------------------------------------------------

    def _status(self, job: Job) -> pb.JobStatus:
        status = pb.JobStatus(
            job_id=job.id, state=_STATES[job.state], kind=job.kind, progress=_progress_message(job.progress),
            created_unix=job.created, seconds=job.seconds, video=job.label,
        )
        if job.state is JobState.DONE and job.kind in ("render", "frame"):
            status.result.CopyFrom(convert.render_done(job.result))
        if job.error is not None:
            code, message = status_for(job.error)
            status.error.CopyFrom(pb.JobError(code=code.name, message=message))
        return status

    def Cancel(self, request: pb.JobRequest, context: grpc.ServicerContext) -> pb.JobStatus:
        with _answering(context):
            return self._status(self.jobs.cancel(request.job_id))

    def GetJob(self, request: pb.JobRequest, context: grpc.ServicerContext) -> pb.JobStatus:
        with _answering(context):
            return self._status(self.jobs.get(request.job_id))

    def ListJobs(self, request: pb.ListJobsRequest, context: grpc.ServicerContext) -> pb.ListJobsResponse:
        with _answering(context):
            return pb.ListJobsResponse(jobs=[self._status(j) for j in self.jobs.jobs()])

    # -- one frame -----------------------------------------------------------------------------

    def RenderFrame(self, request: pb.RenderFrameRequest, context: grpc.ServicerContext) -> pb.RenderFrameResponse:
        with _answering(context):
            return self.render_frame(request)

    def render_frame(self, request: pb.RenderFrameRequest) -> pb.RenderFrameResponse:
        """The one-frame answer (raises DublineError); shared by RenderFrame and the OFX frame socket."""
        if not request.HasField("time"):
            raise InvalidInputError("time is required (a rational source time)")
        seconds = convert.rational_fraction(request.time, "time")
        if seconds < 0:
            raise InvalidInputError(f"time {seconds} s is negative")
        if request.output not in pb.FrameOutput.values():
            raise InvalidInputError(f"output {request.output} is not a FrameOutput")
        if request.format not in (pb.PIXEL_FORMAT_UNSPECIFIED, pb.PIXEL_FORMAT_RGBA8, pb.PIXEL_FORMAT_RGBA_F32):
            raise InvalidInputError("format must be RGBA8 or RGBA_F32")
        host = frames.host_image(request.source_frame) if request.HasField("source_frame") else None
        target = request.WhichOneof("target")
        if target is None:
            raise InvalidInputError("give job_id (a finished render) or clip (a RenderSpec) to say which span")
        live = None
        if target == "job_id":
            job = self.jobs.get(request.job_id)
        else:
            job, live = self._frame_job(request.clip, seconds)
        if job.kind not in ("render", "frame"):
            raise InvalidInputError(f"job {job.id} is a {job.kind} job, not a render")
        if live is not None and not job.state.finished:
            # The engine renders the asked frame first: answer each frame as soon as it is in.
            index = frames.frame_index(seconds, live.rate)
            local = index - live.first
            if not 0 <= local < len(live.patch):
                return self._outside(job.id, index, live.first, len(live.patch))
            if live.ready[local]:
                span = frames.RenderedSpan(live.first, live.rate, live.patch, live.matte)
                return self._frame_answer(request, host, span, local, job.id, index)
        if not job.state.finished:
            return pb.RenderFrameResponse(
                status=pb.FRAME_STATUS_NOT_READY, job_id=job.id, progress=_progress_message(job.progress),
                message=f"the engine is still working on this span ({job.progress[0]} {job.progress[1]}/{job.progress[2]})",
            )
        if job.error is not None:
            code, message = status_for(job.error)
            raise FrameUnavailableError(f"the render of this span failed ({code.name}): {message}")
        result = job.result
        if host is not None and result.matte is None:
            raise FrameUnavailableError(f"job {job.id} was rendered without a matte; a host frame needs one to composite over")
        span = self.spans.get(result.out, result.matte, result.span[0])
        index = frames.frame_index(seconds, span.rate)
        local = index - span.first
        if not 0 <= local < len(span.patch):
            return self._outside(job.id, index, span.first, len(span.patch))
        with self._answer_slots:  # a few frames are built at once: the rest wait (memory, not CPU, is the limit)
            return self._frame_answer(request, host, span, local, job.id, index)

    @staticmethod
    def _outside(job_id: str, index: int, first: int, count: int) -> pb.RenderFrameResponse:
        return pb.RenderFrameResponse(
            status=pb.FRAME_STATUS_OUTSIDE_SPAN, job_id=job_id, frame_index=index,
            message=f"frame {index} is outside the rendered span {first}-{first + count}",
        )

    def _frame_answer(self, request: pb.RenderFrameRequest, host, span, local: int, job_id: str, index: int) -> pb.RenderFrameResponse:
        bottom_up = request.source_frame.bottom_up if host is not None else False
        floats = (host.dtype == np.float32) if host is not None else request.format == pb.PIXEL_FORMAT_RGBA_F32
        answer = pb.RenderFrameResponse(status=pb.FRAME_STATUS_READY, job_id=job_id, frame_index=index)
        patch = span.patch[local]
        if request.output == pb.FRAME_OUTPUT_PATCH_AND_MATTE:
            if span.matte is None:
                raise FrameUnavailableError(f"job {job_id} was rendered without a matte")
            size = (host.shape[1], host.shape[0]) if host is not None else (patch.shape[1], patch.shape[0])
            answer.image.CopyFrom(frames.image_of(frames.rgba(frames.fit(patch, *size), floats), bottom_up))
            answer.matte.CopyFrom(frames.image_of(frames.matte_image(frames.fit(span.matte[local], *size), floats), bottom_up))
        elif host is not None:
            answer.image.CopyFrom(frames.image_of(frames.composite_over(host, patch, span.matte[local]), bottom_up))
        else:
            answer.image.CopyFrom(frames.image_of(frames.rgba(patch, floats), bottom_up))
        return answer

    def _frame_job(self, spec: pb.RenderSpec, seconds: Fraction) -> tuple[Job, LiveFrames | None]:
        """The engine's own render of a clip key's span (lossless patch + matte in the work dir),
        started by the first request with the frame it asked for rendered first; and, while it
        runs, the frames it has rendered so far."""
        work = self.config.work_dir
        request = convert.render_request(spec, self.config.media_roots,
                                         frame_outputs=(work / "pending.mkv", work / "pending.matte.mkv"))
        key = self._clip_key(spec, request)
        with self._frame_lock:
            job_id = self._frame_jobs.get(key)
            if job_id is not None:
                try:
                    job = self.jobs.get(job_id)
                    if job.state.finished:
                        self._live.pop(key, None)  # its frames are in self.spans now (or it failed)
                    if job.state is not JobState.CANCELLED:
                        return job, self._live.get(key)
                except DublineError:
                    pass  # forgotten: render again
            self._forget_finished_live()
            self.config.work_dir.mkdir(parents=True, exist_ok=True)
            request = dataclasses.replace(request, out=work / f"{key}.mkv", matte=work / f"{key}.matte.mkv")
            job = self._submit_frame_render(request, key, seconds)
            self._frame_jobs[key] = job.id
            return job, None

    def _forget_finished_live(self) -> None:
        # Caller holds _frame_lock. A finished render's frames live on in self.spans (evictable).
        for key in list(self._live):
            job_id = self._frame_jobs.get(key)
            try:
                finished = job_id is None or self.jobs.get(job_id).state.finished
            except DublineError:
                finished = True
            if finished:
                del self._live[key]

    def _submit_frame_render(self, request: RenderRequest, key: str, seconds: Fraction) -> Job:
        cache_root = self.config.cache_root

        def started(live: LiveFrames) -> None:
            with self._frame_lock:
                self._live[key] = live

        def work(progress: ProgressSink, cancel: CancelToken) -> Any:
            rate = media.probe(request.video).video.rate
            result = render_live(request, frames.frame_index(seconds, rate), started, progress, cancel,
                                 cache_root, self.analyses)
            live = self._live[key]  # keep its frames: no need to decode the files just written
            self.spans.put(result.out, frames.RenderedSpan(live.first, live.rate, live.patch, live.matte))
            return result

        return self.jobs.submit("frame", work, label=str(request.video), device=_device_for(request.backend))

    @staticmethod
    def _clip_key(spec: pb.RenderSpec, request: RenderRequest) -> str:
        """Same inputs (content identity of the files included) -> same key."""
        identity = pb.RenderSpec()
        identity.CopyFrom(spec)
        identity.out = identity.matte = identity.otio = identity.codec = ""
        identity.overwrite = identity.with_audio = False
        # As the engine resolved them: a symlinked path and its target, or an empty backend and the
        # default one, are the same clip (the frame socket sends resolved paths).
        identity.video, identity.audio, identity.backend = str(request.video), str(request.audio), request.backend
        identity.library[:] = [str(p) for p in request.library]
        files = [request.video, request.audio, *request.library]
        stats = [(str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in files if os.path.exists(p)]
        digest = hashlib.sha256(identity.SerializeToString(deterministic=True) + repr(stats).encode())
        return digest.hexdigest()[:24]
