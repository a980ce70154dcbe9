"""``render``: the stages of DESIGN.md composed into one span job.

    probe -> analyse the source (faces, own speech, calibration: the span, a window around it and a
    sampled library, see pipeline.budget) -> analyse the dub -> backend.prepare
    -> stream: media.read_span -> backend.patches -> composite.paste -> media.write_patch (+ matte)
    -> OTIO timeline (with the render's flags as markers on the patch) -> contact sheet

The CLI, the engine, ``dubline otio`` and batch jobs all call ``render`` with a ``RenderRequest``;
none holds logic of its own. Every step's wall time is in ``RenderResult.stage_seconds``; the frame
loop (``render_and_encode``) runs its stages on threads (``frameloop``) and adds each one's busy
seconds as ``render.<stage>`` (decode, backend, composite, matte, encode; shares in ``loop_shares``),
the source analysis's parts as ``analyse_source.*``; what the analysis did is in
``RenderResult.analysis``. A span rendered again draws only the rows whose result can change and
copies the rest from the previous patch (``pipeline.incremental``; ``frames_reused``).

One module because preparing a span, its frame loop and the result share the span's state (the
job, the tally, the clocks, the matte writer); split, they would only pass it around.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import opentimelineio as otio
from threadpoolctl import threadpool_limits

from dubline.core import timing
from dubline.core.cache import check_root as check_cache_root
from dubline.core.cpus import cpu_budget
from dubline.core.errors import InvalidInputError, NoFaceError
from dubline.core.flags import FrameFlag
from dubline.core.paths import publish_file
from dubline.core.progress import CancelToken, PreviewSink, ProgressSink, no_progress
from dubline.interchange.timeline import patch_timeline, write_timeline
from dubline.pipeline.analysis import AnalysisProvider, DiskAnalyses
from dubline.pipeline import incremental
from dubline.pipeline.flags import render_flags
from dubline.pipeline.frameloop import FrameLoop, StageClock, WaitTimer
from dubline.pipeline.request import RenderRequest
from dubline.qc.sheets import sheet_for_render
from dubline.stages import media
from dubline.stages.backends import get_backend
from dubline.stages.backends.base import Backend, BackendJob, ClipAnalysis, MouthPatch
from dubline.stages.media.remux import ReusedFrame
from dubline.stages.composite import (
    CompositeParams,
    CompositeResult,
    TemporalDeflicker,
    paste,
)
from dubline.stages.speech import analyse_speech
from dubline.stages.speech.dub import read_dub
from dubline.stages.speech.phones import SAMPLE_RATE


@dataclass
class RenderResult:
    out: Path
    matte: Path | None
    otio_path: Path | None
    frames_written: int
    span: tuple[int, int]  # frames [first, end) of the source
    start_timecode: str | None
    backend: str
    stage_seconds: dict[str, float]
    warnings: list[str]
    frames_patched: int
    passthrough: dict[str, int]  # reason -> frames passed through untouched
    #: span rows (0 = the span's first frame) where the backend cut to another run of material
    run_starts: list[int] = field(default_factory=list)
    #: the source analysis: seconds per part and frame counts (frames_analysed: new now; frames_known: in the library)
    analysis: dict[str, float] = field(default_factory=dict)
    #: rows copied from the previous patch of the span; rows drawn and written; rows drawn only to
    #: settle the deflicker before a drawn run (``pipeline.incremental``)
    frames_reused: int = 0
    frames_rendered: int = 0
    frames_warmup: int = 0
    #: runs of patch frames to look at (passed through, and why); qc adds its own (``pipeline.flags``)
    flags: list[FrameFlag] = field(default_factory=list)
    sheet: Path | None = None

    @property
    def loop_shares(self) -> dict[str, float]:
        """Each frame-loop stage's busy seconds over the loop's wall seconds (``render_and_encode``).
        The stages overlap on threads, so the shares can add up to more than 1."""
        wall = self.stage_seconds.get("render_and_encode", 0.0)
        return {name.removeprefix("render."): (seconds / wall if wall > 0 else 0.0)
                for name, seconds in self.stage_seconds.items() if name.startswith("render.")}

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "matte": str(self.matte) if self.matte else None,
            "otio": str(self.otio_path) if self.otio_path else None,
            "frames_written": self.frames_written,
            "span": list(self.span),
            "start_timecode": self.start_timecode,
            "backend": self.backend,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "loop_shares": {k: round(v, 3) for k, v in self.loop_shares.items()},
            "frames_patched": self.frames_patched,
            "passthrough": self.passthrough,
            "run_starts": self.run_starts,
            "analysis": {k: round(v, 3) for k, v in self.analysis.items()},
            "frames_reused": self.frames_reused,
            "frames_rendered": self.frames_rendered,
            "frames_warmup": self.frames_warmup,
            "flags": [flag.to_dict() for flag in self.flags],
            "markers": [flag.label(self.span[0]) for flag in self.flags],
            "sheet": str(self.sheet) if self.sheet else None,
            "warnings": self.warnings,
        }


class Stopwatch:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass
class Tally:
    """What happened to each frame of the span (``reasons``: each frame's, in order; None: patched)."""

    patched: int = 0
    passthrough: dict[str, int] = field(default_factory=dict)
    run_starts: list[int] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)

    def add(self, reason: str | None) -> None:
        self.reasons.append(reason)
        if reason is None:
            self.patched += 1
        else:
            self.passthrough[reason] = self.passthrough.get(reason, 0) + 1


@dataclass(frozen=True)
class SourceSpan:
    """The span resolved against its source file."""

    info: media.MediaInfo
    first: int
    end: int

    @property
    def video(self) -> media.VideoStreamInfo:
        assert self.info.video is not None  # resolve_span checked it
        return self.info.video

    @property
    def frame_count(self) -> int:
        return self.end - self.first

    @property
    def time_range(self) -> otio.opentime.TimeRange:
        return timing.frames_to_range(self.first, self.end, self.video.rate)


def resolve_span(span: otio.opentime.TimeRange | str, info: media.MediaInfo, path: Path) -> tuple[int, int]:
    """Frames [first, end) of ``span`` in the clip, checked against its length."""
    video = info.video
    if video is None:
        raise InvalidInputError(f"{path} has no video stream")
    if isinstance(span, str):
        span = timing.parse_range(span, video.rate, video.start_timecode)
    first, end = timing.range_to_frames(span, video.rate)
    if first < 0 or end > video.frame_count:
        raise timing.InvalidRangeError(
            f"span frames {first}-{end} is outside {path.name}, which has {video.frame_count} frames (0-{video.frame_count})"
        )
    if end <= first:
        raise timing.InvalidRangeError(f"span frames {first}-{end} is empty")
    return first, end


def span_start_timecode(info: media.MediaInfo, first: int) -> str:
    """The source's timecode at frame ``first`` (00:00:00:00-based when the source has none)."""
    video = info.video
    assert video is not None
    drop = timing.is_drop_frame_rate(video.rate) and bool(video.start_timecode and ";" in video.start_timecode)
    start = timing.timecode_to_frames(video.start_timecode, video.rate) if video.start_timecode else 0
    return timing.frames_to_timecode(start + first, video.rate, drop_frame=drop)


def probe_span(request: RenderRequest) -> SourceSpan:
    info = media.probe(request.video)
    first, end = resolve_span(request.span, info, request.video)
    return SourceSpan(info, first, end)


def _check_speaker_visible(source: ClipAnalysis, span: SourceSpan, video: Path) -> None:
    if not source.faces.usable[span.first : span.end].any():
        reasons = sorted(set(source.faces.reason[span.first : span.end]) - {""})
        raise NoFaceError(
            f"no usable face of the speaker in frames {span.first}-{span.end} of {video.name} ({', '.join(reasons)})"
        )


def _dub_job(request: RenderRequest, span: SourceSpan, source: ClipAnalysis, library: list[ClipAnalysis],
             dub_audio: media.AudioClip, progress: ProgressSink, cancel: CancelToken | None,
             cache_root: Path | None, warnings: list[str]) -> BackendJob:
    """The dub's speech over the span and the mouth targets calibrated to the speaker."""
    dub = analyse_speech(
        dub_audio, rate=span.video.rate, frame_count=span.frame_count, length_policy=request.length_policy,
        cache=cache_root or True, cancel=cancel,
    )
    warnings.extend(dub.warnings)
    if not np.any(dub.voice_activity > 0.5):
        warnings.append(f"no speech found in {request.audio.name}: the mouth is kept closed or at rest")
    if source.calibration.fallback_reason:
        warnings.append(f"speaker calibration uses defaults: {source.calibration.fallback_reason}")
    target_aperture, target_width = source.calibration.apply(dub.openness, dub.width)
    return BackendJob(
        source=source, library=library, span=(span.first, span.end), dub=dub, target_aperture=target_aperture,
        target_width=target_width, expression=request.expression, options=dict(request.backend_options),
        dub_audio=dub_audio, progress=progress, cancel=cancel,
    )


def _span_audio_for_mux(dub: media.AudioClip, frame_count: int, rate: Fraction) -> media.AudioClip:
    samples = int(round(frame_count / rate * SAMPLE_RATE))
    data = dub.samples[:samples]
    return media.AudioClip(np.pad(data, (0, samples - len(data))), SAMPLE_RATE)


def _matte_frame(result: CompositeResult) -> np.ndarray:
    """The matte as an 8-bit grey RGB frame; only the matte's box is converted (the rest is 0)."""
    grey = np.zeros(result.frame.shape, np.uint8)
    if result.matte_box is not None:
        grey[result.matte_box.slices] = np.rint(np.clip(result.box_matte, 0.0, 1.0) * 255)[..., None]
    return grey


#: Decoded frames the decode stage may run ahead of the backend (bytes; between 4 and 64 frames),
#: so a backend that works in batches finds its next batch decoded.
DECODE_AHEAD_BYTES = 192 * 2**20
#: Items queued between the other stages.
STAGE_DEPTH = 4
#: The frame loop's stages, as named in ``stage_seconds`` ("render.<stage>").
LOOP_STAGES = ("decode", "backend", "composite", "matte", "encode")


def _decode_depth(video: media.VideoStreamInfo) -> int:
    return int(np.clip(DECODE_AHEAD_BYTES // max(1, video.width * video.height * 3), 4, 64))


class _OneBlasThread:
    """numpy's BLAS on one thread while any render's frame loop runs (a context, re-entrant across
    threads: the first loop in limits it, the last one out restores the process's setting).

    The loop's products are small (an RBF warp field, colour transforms) and its stages already
    fill the cores; with threads of its own OpenBLAS spins against them (the warp field's product
    took 8-15 ms instead of 0.4 on 2 busy cores). The numbers are the same: a product's sums are
    split between threads by rows, not reordered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loops = 0
        self._limits: Any = None

    def __enter__(self) -> None:
        with self._lock:
            if self._loops == 0:
                self._limits = threadpool_limits(1, user_api="blas")
            self._loops += 1

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self._loops -= 1
            if self._loops == 0:
                self._limits.restore_original_limits()
                self._limits = None


ONE_BLAS_THREAD = _OneBlasThread()


class _SerialProgress:
    """A progress sink callable from the loop's threads: calls reach the caller's sink one at a time."""

    def __init__(self, sink: ProgressSink) -> None:
        self._sink = sink
        self._lock = threading.Lock()

    def __call__(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            self._sink(stage, done, total)


Drawn = tuple[int, np.ndarray | media.EditedFrame, np.ndarray | None]  # span row, output frame, matte frame


def _composite_stage(patches: Iterator[tuple[media.VideoFrame, MouthPatch]], first: int,
                     outcomes: incremental.RowOutcomes, with_matte: bool, clock: StageClock, keep_alpha: bool,
                     cancel: CancelToken | None, preview: PreviewSink | None,
                     view: media.FrameView) -> Iterator[Drawn]:
    """The shared compositor over the backend's patches, in frame order (the deflicker has state,
    forgotten where rows are skipped). ``preview`` is offered each patched frame (upright, 8-bit) as
    soon as it is pasted."""
    params = CompositeParams()
    deflicker = TemporalDeflicker()
    previous = None
    for frame, mouth in patches:
        if cancel is not None:
            cancel.check()
        row = frame.index - first
        if previous is not None and row != previous + 1:
            deflicker.reset()
        previous = row
        result = paste(frame.image, mouth.image, mouth.matte_landmarks, params, deflicker)
        if mouth.run_start:
            outcomes.run_start.add(row)
        if mouth.image is None or result.passthrough_reason:
            outcomes.outcome[row] = mouth.reason or result.passthrough_reason or "passthrough"
        else:
            outcomes.outcome[row] = None
            if preview is not None:
                pasted = result.frame
                preview(row, lambda: view.analysis_image(np.array(pasted)))
        grey = None
        if with_matte:
            start = time.perf_counter()
            grey = _matte_frame(result)
            clock.add("matte", time.perf_counter() - start)
            clock.add("composite", start - time.perf_counter())  # not the compositor's time
        yield row, _for_encoder(frame, result, keep_alpha), grey


def _for_encoder(frame: media.VideoFrame, result: CompositeResult, keep_alpha: bool) -> np.ndarray | media.EditedFrame:
    """The composited picture as the encoder takes it: with the source's coded picture and the box
    ``paste`` may have changed (it changes nothing outside its matte's box), so the encoder keeps
    the source's samples everywhere else."""
    if frame.alpha is not None and keep_alpha:
        return np.dstack([result.frame, frame.alpha])
    if frame.coded is None:
        return result.frame
    box = result.matte_box
    return media.EditedFrame(result.frame, frame.coded, None if box is None else (box.y0, box.y1, box.x0, box.x1))


def _read_rows(video: Path, span: SourceSpan, compute: np.ndarray) -> Iterator[media.VideoFrame]:
    """The source frames of the rows to draw, run by run."""
    for start, end in incremental.runs(compute):
        yield from media.read_span(video, timing.frames_to_range(span.first + start, span.first + end, span.video.rate),
                                   keep_coded=True)


def _frame_loop(loop: FrameLoop, request: RenderRequest, backend: Backend, job: BackendJob, plan: Any,
                span: SourceSpan, outcomes: incremental.RowOutcomes, reuse: incremental.ReusePlan,
                with_matte: bool, preview: PreviewSink | None) -> Iterator[Drawn]:
    """The drawn rows: decoded, patched by the backend, pasted by the shared compositor."""
    decoded = loop.stage("decode", lambda _: _read_rows(request.video, span, reuse.compute), (),
                         depth=_decode_depth(span.video))
    patched = loop.stage("backend", lambda frames: backend.patches(job, plan, frames), decoded, depth=STAGE_DEPTH)
    return loop.stage("composite", lambda patches: _composite_stage(patches, span.first, outcomes, with_matte, loop.clock,
                                                                      media.PATCH_CODECS[request.codec].alpha, job.cancel,
                                                                      preview, media.FrameView.of(span.video)),
                      patched, depth=STAGE_DEPTH)


@dataclass
class _Written:
    """The frame layout the patch was written with (for the record of a later re-render)."""

    shape: tuple[int, ...] = ()
    dtype: str = ""


def _handed_to_encoder(drawn: Iterator[Drawn], span: SourceSpan, reuse: incremental.ReusePlan,
                       matte: media.BackgroundWriter | None, written: _Written, progress: ProgressSink,
                       cancel: CancelToken | None) -> Iterator[np.ndarray | media.EditedFrame | ReusedFrame]:
    """Every row of the patch in order: a drawn frame, or a frame copied from the previous patch
    (warm-up rows are drawn but not written: the previous patch's are)."""
    previous = reuse.previous
    for row in range(span.frame_count):
        if cancel is not None:
            cancel.check()
        if reuse.write[row]:
            drawn_row, image, grey = next(drawn)
            while drawn_row < row:
                drawn_row, image, grey = next(drawn)
            pixels = image.image if isinstance(image, media.EditedFrame) else image
            written.shape, written.dtype = pixels.shape, pixels.dtype.name
            if matte is not None:
                assert grey is not None
                matte.put(grey)
            yield image
        else:
            assert previous is not None
            written.shape, written.dtype = previous.frame_shape, previous.frame_dtype
            if matte is not None:
                matte.put(ReusedFrame(row, tuple(previous.frame_shape[:2]) + (3,), "uint8"))
            yield ReusedFrame(row, tuple(previous.frame_shape), previous.frame_dtype)
        progress("render", row + 1, span.frame_count)


def _write(request: RenderRequest, frames: Iterator[np.ndarray | media.EditedFrame | ReusedFrame], span: SourceSpan,
           timecode: str, dub_audio: media.AudioClip, matte: media.BackgroundWriter | None, clock: StageClock,
           reuse_from: Path | None) -> None:
    """Encode the patch, with the matte finishing in the same pass; neither is left half-written."""
    rendered = WaitTimer(frames)
    start = time.perf_counter()
    try:
        media.write_patch(
            rendered, request.out, request.codec, span.video.rate, start_timecode=timecode,
            colour_tags=span.video.colour,
            audio=_span_audio_for_mux(dub_audio, span.frame_count, span.video.rate) if request.with_audio else None,
            overwrite=request.overwrite, inputs=request.inputs(), layout=span.video.layout, reuse=reuse_from,
        )
        clock.add("encode", time.perf_counter() - start - rendered.waited)
    except BaseException as error:
        if matte is not None:
            matte.close(error)
        raise
    if matte is not None:
        try:
            matte.close()
        except BaseException:
            request.out.unlink(missing_ok=True)  # a patch without its matte is half a result
            raise
        clock.add("matte", matte.busy_seconds)


def _write_timeline(request: RenderRequest, span: SourceSpan, flags: list[FrameFlag]) -> Path:
    video = span.video
    start_frames = timing.timecode_to_frames(video.start_timecode, video.rate) if video.start_timecode else 0
    timeline = patch_timeline(request.video, video.frame_count, start_frames, span.time_range, request.out, video.rate,
                              request.audio, request.backend, flags=flags)
    assert request.otio_path is not None
    return write_timeline(timeline, request.otio_path, request.overwrite, request.inputs())


def rewrite_timeline(request: RenderRequest, result: RenderResult) -> Path:
    """Write ``result``'s timeline again with its flags as they are now (after qc added its own)."""
    assert result.otio_path is not None
    return _write_timeline(replace(request, otio_path=result.otio_path, overwrite=True), probe_span(request), result.flags)


@dataclass
class PreparedSpan:
    """A render up to its first frame: the span, the backend's job and plan, what was measured."""

    span: SourceSpan
    backend: Backend
    job: BackendJob
    plan: Any
    clock: Stopwatch
    warnings: list[str]
    analysis: dict[str, float]
    #: the cache's record of the span's previous render (``pipeline.incremental``)
    records: Any = None
    previous: incremental.RenderRecord | None = None


def prepare_span(
    request: RenderRequest,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
    cache_root: Path | None = None,
    analyses: AnalysisProvider | None = None,
) -> PreparedSpan:
    """Everything before the first frame: checks, the source analysis (the span's plan), the dub,
    the backend's plan. ``render`` and the engine's one-frame renders (``pipeline.live``) share it."""
    clock = Stopwatch()
    warnings: list[str] = []
    analyses = analyses or DiskAnalyses(cache_root)
    backend = get_backend(request.backend)
    backend.preflight(request.backend_options)  # missing weights fail before any analysis
    check_cache_root(cache_root, request.inputs())
    for output in request.outputs().values():
        if output is not None:
            media.check_output(output, request.overwrite, request.inputs())

    with clock.stage("probe"):
        span = probe_span(request)
        # The dub is read now, before minutes of analysis: a bad dub fails in a second.
        dub_audio, audio_warnings = read_dub(request.audio, request.audio_offset, request.labels["audio_offset"])
        warnings.extend(audio_warnings)
        for path in request.library:
            media.probe(path)  # likewise a library file that is not media
    warnings.extend(media.patch_warnings(span.video, request.codec, request.matte_codec, (span.first, span.end)))
    analysis: dict[str, float] = {}
    with clock.stage("analyse_source"):
        source = analyses.analyse(request.video, request.speaker, progress, cancel, span=(span.first, span.end),
                                  timings=analysis)
        library = [source] + [analyses.analyse(path, None, progress, cancel) for path in request.library]
    clock.seconds.update({f"analyse_source.{k}": v for k, v in analysis.items() if not k.startswith("frames_")})
    for clip in library:
        warnings.extend(clip.warnings)
    _check_speaker_visible(source, span, request.video)
    with clock.stage("analyse_dub"):
        job = _dub_job(request, span, source, library, dub_audio, progress, cancel, cache_root, warnings)
    with clock.stage("backend_prepare"):
        records = incremental.record_cache(request.video, (span.first, span.end), request.backend,
                                           list(request.library), cache_root)
        previous = incremental.load_record(records)
        job.previous = previous.pins if previous is not None else None
        plan = backend.prepare(job)
    return PreparedSpan(span, backend, job, plan, clock, warnings, analysis, records, previous)


def analyse_span(request: RenderRequest, cache_root: Path | None, analyses: AnalysisProvider | None = None,
                 progress: ProgressSink = no_progress, cancel: CancelToken | None = None) -> None:
    """What a render of ``request`` analyses before its first frame (the source over the span, the
    library files, the dub's speech), done now into the caches under ``cache_root``, so that a
    render in another process finds them there (a batch's analysis workers run it ahead of the
    render workers)."""
    analyses = analyses or DiskAnalyses(cache_root)
    check_cache_root(cache_root, request.inputs())
    span = probe_span(request)
    dub_audio, _ = read_dub(request.audio, request.audio_offset, request.labels["audio_offset"])
    analyses.analyse(request.video, request.speaker, progress, cancel, span=(span.first, span.end))
    for path in request.library:
        analyses.analyse(path, None, progress, cancel)
    analyse_speech(dub_audio, rate=span.video.rate, frame_count=span.frame_count, length_policy=request.length_policy,
                   cache=cache_root or True, cancel=cancel)


def passthrough_warning(passthrough: dict[str, int]) -> str:
    details = ", ".join(f"{count} {reason}" for reason, count in sorted(passthrough.items()))
    return f"frames passed through untouched: {details}"


def render(
    request: RenderRequest,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
    cache_root: Path | None = None,
    analyses: AnalysisProvider | None = None,
    *,
    pipelined: bool | None = None,
    preview: PreviewSink | None = None,
) -> RenderResult:
    """Render the patch for one span. ``analyses`` provides the clip analyses (default: computed
    from the on-disk cache under ``cache_root``; the engine passes its resident ones). ``preview``
    is offered every patched frame as it is pasted (the engine sends some of them as progress pictures).
    ``pipelined=False`` runs the frame loop's stages in this thread, one after the other: the
    reference the threaded loop is tested against (the frames are the same). By default the loop
    runs on threads when this process may use more than one CPU (``core.cpus``): a batch worker
    kept to one CPU gains nothing from overlapping stages it cannot run at once."""
    if pipelined is None:
        pipelined = cpu_budget() > 1
    progress = _SerialProgress(progress)
    prepared = prepare_span(request, progress, cancel, cache_root, analyses)
    span, backend, job, plan, clock, warnings = (prepared.span, prepared.backend, prepared.job, prepared.plan,
                                                 prepared.clock, prepared.warnings)

    timecode = span_start_timecode(span.info, span.first)
    with clock.stage("plan_reuse"):
        keys = incremental.frame_keys(backend, job, plan, span.frame_count)
        reuse = incremental.plan_reuse(prepared.previous, keys, request.codec, request.matte, request.matte_codec)
    if reuse.note:
        warnings.append(f"rendering every frame again: {reuse.note}")
    outcomes = incremental.RowOutcomes()
    written = _Written()
    loop_clock = StageClock()
    for stage in LOOP_STAGES:
        loop_clock.add(stage, 0.0)
    matte = None
    if request.matte is not None:
        matte = media.BackgroundWriter(request.matte, request.matte_codec, span.video.rate, timecode,
                                       request.overwrite, request.inputs(), span.video.colour, span.video.layout,
                                       reuse=reuse.matte_source)
    with clock.stage("render_and_encode"), ONE_BLAS_THREAD, FrameLoop(loop_clock, threaded=pipelined) as loop:
        drawn = _frame_loop(loop, request, backend, job, plan, span, outcomes, reuse, matte is not None, preview)
        _write(request, _handed_to_encoder(drawn, span, reuse, matte, written, progress, cancel), span, timecode,
               job.dub_audio, matte, loop_clock, reuse.patch_source)
    clock.seconds.update({f"render.{stage}": seconds for stage, seconds in loop_clock.seconds.items()})
    tally = _merged_tally(reuse, outcomes, span.frame_count)
    pins = getattr(backend, "pins", None)
    incremental.store_record(prepared.records, keys, tally.reasons, tally.run_starts, pins(job, plan) if pins else None,
                             request.codec, request.out, written.shape, written.dtype, request.matte,
                             request.matte_codec)

    flags = render_flags(tally.reasons)
    otio_written = None
    if request.otio_path is not None:
        with clock.stage("otio"):
            otio_written = _write_timeline(request, span, flags)
    sheet = None
    if request.sheet is not None:
        with clock.stage("sheet"):
            sheet = publish_file(request.sheet, lambda temporary: sheet_for_render(
                request.video, span.first, request.out, job.source.faces, temporary, matte=request.matte),
                request.overwrite, request.inputs())

    if tally.passthrough:
        warnings.append(passthrough_warning(tally.passthrough))
    return RenderResult(
        out=request.out, matte=request.matte, otio_path=otio_written, frames_written=span.frame_count,
        span=(span.first, span.end), start_timecode=timecode, backend=request.backend,
        stage_seconds=clock.seconds, warnings=warnings, frames_patched=tally.patched, passthrough=tally.passthrough,
        run_starts=tally.run_starts,
        analysis=prepared.analysis, flags=flags, sheet=sheet,
        frames_reused=reuse.reused, frames_rendered=span.frame_count - reuse.reused, frames_warmup=reuse.warmup,
    )


def _merged_tally(reuse: incremental.ReusePlan, outcomes: incremental.RowOutcomes, count: int) -> Tally:
    """What each row of the patch is: drawn now, or as the previous render drew it."""
    tally = Tally()
    previous = reuse.previous
    for row in range(count):
        if reuse.write[row]:
            outcome, starts = outcomes.outcome[row], row in outcomes.run_start
        else:
            assert previous is not None
            outcome, starts = previous.outcomes[row], row in previous.run_starts
        tally.add(outcome)
        if starts:
            tally.run_starts.append(row)
    return tally
