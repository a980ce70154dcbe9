"""The render pipeline: the stages of DESIGN.md composed into one job.

    media.read_span -> faces.track_faces -> speech.analyse_speech -> backend -> composite.paste
    -> media.write_patch (+ matte, + OTIO)

The CLI and the gRPC server both call ``render``; neither holds logic of its own. Every stage's
wall time is recorded in ``RenderResult.stage_seconds``. Analysis of the source (face track of
the whole file, speech of its own audio) is cached on disk, so a second render of the same clip
pays only for the new span's compositing and encoding.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import opentimelineio as otio

from dubline import media, timing
from dubline.backends import get_backend
from dubline.cache import FrameCache, media_fingerprint
from dubline.composite import CompositeParams, TemporalDeflicker, paste
from dubline.errors import InvalidInputError, NoFaceError
from dubline.paths import check_outputs, labelled
from dubline.faces import FaceTrack, FaceTrackParams, SpeakerHint, detection_cache, track_faces, track_from_detections
from dubline.progress import CancelToken, ProgressSink, no_progress
from dubline.speech.analyse import SpeechTrack, analyse_speech
from dubline.speech.calibration import SpeakerCalibration, calibrate_speaker, default_calibration

log = logging.getLogger(__name__)

SPEECH_RATE = 16000
EXPRESSIONS = ("as-source", "neutral", "smile")
#: Lower-face brightness thumbnails: small enough to keep for every frame of a long source.
THUMB_WIDTH = 64


@dataclass(frozen=True)
class RenderRequest:
    video: Path
    audio: Path
    span: otio.opentime.TimeRange | str
    out: Path
    backend: str = "retrieval"
    codec: str = "prores"
    matte: Path | None = None
    otio_path: Path | None = None
    audio_offset: float = 0.0  # seconds into the dub that play at the span's first frame
    speaker: SpeakerHint | None = None
    expression: str = "as-source"
    library: tuple[Path, ...] = ()
    overwrite: bool = False
    with_audio: bool = False
    length_policy: str = "pad_or_trim"
    backend_options: dict[str, Any] = field(default_factory=dict)


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
            "frames_patched": self.frames_patched,
            "passthrough": self.passthrough,
            "warnings": self.warnings,
        }


@dataclass
class ClipAnalysis:
    """Everything the backends need to know about one source file of the speaker."""

    path: Path
    info: media.MediaInfo
    faces: FaceTrack  # over every frame of the file
    lower_face_luma: np.ndarray  # (N,) mean luma of the lower face, NaN without a face
    own_speech: SpeechTrack | None  # the clip's own audio over the whole file
    calibration: SpeakerCalibration


@dataclass
class BackendJob:
    """What a backend gets for one render (its inputs are declared here, nothing else is read)."""

    source: ClipAnalysis
    library: list[ClipAnalysis]  # the source first, then --library files
    span: tuple[int, int]
    dub: SpeechTrack
    target_aperture: np.ndarray  # (T,) calibrated to the speaker's own descriptor scale
    target_width: np.ndarray
    expression: str
    options: dict[str, Any]
    dub_audio: media.AudioClip  # 16 kHz mono, aligned to the span (neural backends need it)
    progress: ProgressSink
    cancel: CancelToken | None


@dataclass(frozen=True)
class MouthPatch:
    """A backend's result for one frame: a full-frame image aligned to the target frame and the
    landmarks the matte is cut from, or no patch with the reason the frame passes through."""

    image: np.ndarray | None
    matte_landmarks: np.ndarray | None
    reason: str = ""


class _Stopwatch:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


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


def _thumbnails(frames: Iterable[media.VideoFrame], store: dict[int, np.ndarray]) -> Iterator[media.VideoFrame]:
    """Pass frames through, keeping a small grey thumbnail of each (for lighting costs)."""
    import cv2

    for frame in frames:
        height, width = frame.image.shape[:2]
        size = (THUMB_WIDTH, max(1, round(height * THUMB_WIDTH / width)))
        store[frame.index] = cv2.resize(cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)
        yield frame


def _lower_face_luma(faces: FaceTrack, thumbs: dict[int, np.ndarray], frame_width: int) -> np.ndarray:
    luma = np.full(len(faces), np.nan)
    for row, index in enumerate(faces.frame_indices):
        thumb = thumbs.get(int(index))
        if thumb is None or not faces.present[row]:
            continue
        scale = thumb.shape[1] / frame_width
        x0, y0, x1, y1 = (faces.boxes[row] * scale).astype(int)
        mid = (y0 + y1) // 2
        region = thumb[max(mid, 0) : max(y1, mid + 1), max(x0, 0) : max(x1, x0 + 1)]
        if region.size:
            luma[row] = float(region.mean())
    return luma


def analyse_clip(
    path: Path,
    speaker: SpeakerHint | None = None,
    face_params: FaceTrackParams = FaceTrackParams(),
    cache_root: Path | None = None,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> ClipAnalysis:
    """Face track of every frame, the clip's own speech, and the speaker calibration (cached)."""
    info = media.probe(path)
    video = info.video
    if video is None:
        raise InvalidInputError(f"{path} has no video stream")
    whole = timing.frames_to_range(0, video.frame_count, video.rate)
    fingerprint = media_fingerprint(path)

    own_speech = None
    if info.audio:
        own_audio = media.read_audio(path, whole, rate=SPEECH_RATE, mono=True)
        own_speech = analyse_speech(
            own_audio, rate=video.rate, frame_count=video.frame_count, cache=cache_root or True, cancel=cancel
        )

    thumb_cache = FrameCache("thumbs", fingerprint, {"width": THUMB_WIDTH}, root=cache_root)
    detections = detection_cache(fingerprint, face_params, root=cache_root)
    every_frame = range(video.frame_count)
    thumbs: dict[int, np.ndarray] = thumb_cache.get_many(every_frame)
    cached = detections.get_many(every_frame) if len(thumbs) == video.frame_count else {}
    activity = None if own_speech is None else own_speech.voice_activity
    if len(cached) == video.frame_count:
        # Warm: no frame needs decoding, only the cheap tracking and smoothing.
        faces = track_from_detections(
            np.arange(video.frame_count), [cached[i] for i in every_frame],
            speech_activity=activity, speaker=speaker, params=face_params,
        )
    else:
        fresh: dict[int, np.ndarray] = {}
        faces = track_faces(
            _thumbnails(media.read_span(path, whole), fresh),
            frame_count=video.frame_count,
            speech_activity=activity,
            speaker=speaker,
            params=face_params,
            cache=detections,
            progress=progress,
            cancel=cancel,
        )
        thumb_cache.put_many(fresh)
        thumbs.update(fresh)

    if own_speech is not None:
        calibration = calibrate_speaker(faces.aperture, faces.mouth_width, own_speech)
    else:
        calibration = default_calibration(f"{path.name} has no audio to calibrate the speaker's mouth from")
    return ClipAnalysis(path, info, faces, _lower_face_luma(faces, thumbs, video.width), own_speech, calibration)


def _read_dub(request: RenderRequest, rate: Fraction, frame_count: int) -> media.AudioClip:
    """The dub from ``audio_offset`` on, at 16 kHz mono (the speech stage pads/trims to the span)."""
    info = media.probe(request.audio)
    if not info.audio:
        raise InvalidInputError(f"{request.audio} has no audio stream")
    duration = info.audio[0].duration_seconds
    if request.audio_offset >= duration:
        raise InvalidInputError(
            f"--audio-offset {request.audio_offset:.3f}s is past the end of {request.audio.name} ({duration:.3f}s)"
        )
    if request.audio_offset < 0:
        # The dub starts later than the span: silence first.
        clip = media.read_audio(request.audio, None, rate=SPEECH_RATE, mono=True)
        lead = np.zeros(int(round(-request.audio_offset * SPEECH_RATE)), np.float32)
        return media.AudioClip(np.concatenate([lead, clip.samples]), SPEECH_RATE)
    return media.read_audio(request.audio, (request.audio_offset, duration), rate=SPEECH_RATE, mono=True)


def _span_audio_for_mux(dub: media.AudioClip, frame_count: int, rate: Fraction) -> media.AudioClip:
    samples = int(round(frame_count / rate * SPEECH_RATE))
    data = dub.samples[:samples]
    return media.AudioClip(np.pad(data, (0, samples - len(data))), SPEECH_RATE)


class _MatteWriter:
    """Writes the matte clip on a thread fed frame by frame, so patch and matte are encoded in
    one pass over the span (memory stays flat in span length)."""

    _END = object()

    def __init__(self, path: Path, rate: Fraction, timecode: str, overwrite: bool, inputs: dict[str, Path]) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self.path = path

        def frames() -> Iterator[np.ndarray]:
            while True:
                item = self._queue.get()
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item

        def run() -> None:
            try:
                media.write_patch(frames(), path, matte_codec(path), rate, timecode, None, overwrite=overwrite, inputs=inputs)
            except BaseException as error:  # handed to the render thread in close()
                self._error = error

        self._thread = threading.Thread(target=run, name="matte-writer", daemon=True)
        self._thread.start()

    def put(self, matte: np.ndarray) -> None:
        grey = np.rint(np.clip(matte, 0.0, 1.0) * 255).astype(np.uint8)
        self._put(np.dstack([grey, grey, grey]))

    def _put(self, item: Any) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def close(self, error: BaseException | None = None) -> None:
        """Finish the file, or (given the error that stopped the render) abandon it."""
        self._put(error if error is not None else self._END)
        self._thread.join()
        if error is None and self._error is not None:
            raise self._error


def matte_codec(path: Path) -> str:
    """The matte is lossless: PNG in .mov (what NLEs import), FFV1 in .mkv."""
    codecs = {".mov": "png", ".mkv": "ffv1"}
    if path.suffix.lower() not in codecs:
        raise InvalidInputError(f"the matte clip is written lossless: use a .mov (PNG) or .mkv (FFV1) name, not {path.name}")
    return codecs[path.suffix.lower()]


def request_inputs(request: RenderRequest) -> dict[str, Path]:
    """Every file the request reads: no output may be one of them."""
    return {"--video": request.video, "--audio": request.audio, **labelled("--library", request.library)}


def render(
    request: RenderRequest,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
    cache_root: Path | None = None,
    analyses: dict[Path, ClipAnalysis] | None = None,
) -> RenderResult:
    """Render the patch for one span. ``analyses`` lets a resident engine pass clip analyses it
    already holds in memory (keyed by resolved path)."""
    clock = _Stopwatch()
    warnings: list[str] = []
    if request.expression not in EXPRESSIONS:
        raise InvalidInputError(f"--expression must be one of {', '.join(EXPRESSIONS)}, got {request.expression!r}")
    backend = get_backend(request.backend)
    if hasattr(backend, "preflight"):
        backend.preflight(request.backend_options)  # missing weights fail before any analysis
    inputs = request_inputs(request)
    check_outputs({"--out": request.out, "--matte": request.matte, "--otio": request.otio_path}, inputs)
    if request.matte is not None:
        matte_codec(request.matte)
    for output in (request.out, request.matte, request.otio_path):
        if output is not None:
            media.check_output(output, request.overwrite)

    with clock.stage("probe"):
        info = media.probe(request.video)
        first, end = resolve_span(request.span, info, request.video)
        video = info.video
        assert video is not None
        span_frames = end - first

    def analysed(path: Path, speaker: SpeakerHint | None) -> ClipAnalysis:
        key = Path(path).resolve()
        if analyses is not None and key in analyses:
            return analyses[key]
        result = analyse_clip(path, speaker, cache_root=cache_root, progress=progress, cancel=cancel)
        if analyses is not None:
            analyses[key] = result
        return result

    with clock.stage("analyse_source"):
        source = analysed(request.video, request.speaker)
        library = [source] + [analysed(p, None) for p in request.library]
    span_faces = source.faces.usable[first:end]
    if not span_faces.any():
        reasons = sorted(set(source.faces.reason[first:end]) - {""})
        raise NoFaceError(
            f"no usable face of the speaker in frames {first}-{end} of {request.video.name} ({', '.join(reasons)})"
        )

    with clock.stage("analyse_dub"):
        dub_audio = _read_dub(request, video.rate, span_frames)
        dub = analyse_speech(
            dub_audio,
            rate=video.rate,
            frame_count=span_frames,
            length_policy=request.length_policy,
            cache=cache_root or True,
            cancel=cancel,
        )
        warnings.extend(dub.warnings)
        if not np.any(dub.voice_activity > 0.5):
            warnings.append(f"no speech found in {request.audio.name}: the mouth is kept closed or at rest")
        if source.calibration.fallback_reason:
            warnings.append(f"speaker calibration uses defaults: {source.calibration.fallback_reason}")
        target_aperture, target_width = source.calibration.apply(dub.openness, dub.width)

    job = BackendJob(
        source=source,
        library=library,
        span=(first, end),
        dub=dub,
        target_aperture=target_aperture,
        target_width=target_width,
        expression=request.expression,
        options=dict(request.backend_options),
        dub_audio=dub_audio,
        progress=progress,
        cancel=cancel,
    )
    with clock.stage("backend_prepare"):
        plan = backend.prepare(job)

    timecode = span_start_timecode(info, first)
    passthrough: dict[str, int] = {}
    patched = 0
    matte_writer = (
        _MatteWriter(request.matte, video.rate, timecode, request.overwrite, inputs) if request.matte is not None else None
    )
    composite_params = CompositeParams()

    def frames_out() -> Iterator[np.ndarray]:
        nonlocal patched
        deflicker = TemporalDeflicker()
        span_range = timing.frames_to_range(first, end, video.rate)
        source_frames = media.read_span(request.video, span_range)
        for done, (frame, mouth) in enumerate(backend.patches(job, plan, source_frames), start=1):
            if cancel is not None:
                cancel.check()
            result = paste(frame.image, mouth.image, mouth.matte_landmarks, composite_params, deflicker)
            if mouth.image is None or result.passthrough_reason:
                reason = mouth.reason or result.passthrough_reason or "passthrough"
                passthrough[reason] = passthrough.get(reason, 0) + 1
            else:
                patched += 1
            if matte_writer is not None:
                matte_writer.put(result.matte)
            progress("render", done, span_frames)
            yield result.frame

    with clock.stage("render_and_encode"):
        try:
            media.write_patch(
                frames_out(),
                request.out,
                request.codec,
                video.rate,
                start_timecode=timecode,
                colour_tags=video.colour,
                audio=_span_audio_for_mux(dub_audio, span_frames, video.rate) if request.with_audio else None,
                overwrite=request.overwrite,
                inputs=inputs,
            )
        except BaseException as error:
            if matte_writer is not None:
                matte_writer.close(error)
            raise
        if matte_writer is not None:
            try:
                matte_writer.close()
            except BaseException:
                request.out.unlink(missing_ok=True)  # a patch without its matte is half a result
                raise

    otio_written = None
    if request.otio_path is not None:
        from dubline.interchange import patch_timeline, write_timeline

        with clock.stage("otio"):
            start_frames = timing.timecode_to_frames(video.start_timecode, video.rate) if video.start_timecode else 0
            timeline = patch_timeline(
                request.video,
                video.frame_count,
                start_frames,
                timing.frames_to_range(first, end, video.rate),
                request.out,
                video.rate,
            )
            otio_written = write_timeline(timeline, request.otio_path, request.overwrite, inputs)

    if passthrough:
        details = ", ".join(f"{count} {reason}" for reason, count in sorted(passthrough.items()))
        warnings.append(f"frames passed through untouched: {details}")
    return RenderResult(
        out=request.out,
        matte=request.matte,
        otio_path=otio_written,
        frames_written=span_frames,
        span=(first, end),
        start_timecode=timecode,
        backend=request.backend,
        stage_seconds=clock.seconds,
        warnings=warnings,
        frames_patched=patched,
        passthrough=passthrough,
    )


@dataclass
class SpanAnalysis:
    span: tuple[int, int]
    faces: FaceTrack  # rows are the span's frames
    speech: SpeechTrack | None  # of the dub over the span, when one was given
    warnings: list[str]


def analyse_span(
    video_path: Path,
    span: otio.opentime.TimeRange | str | None,
    audio_path: Path | None = None,
    speaker: SpeakerHint | None = None,
    cache_root: Path | None = None,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> SpanAnalysis:
    """Face track of just the span (per-frame detections cached, so an overlapping span only
    computes its new frames) and, given a dub, its speech track aligned to the span."""
    info = media.probe(video_path)
    video = info.video
    if video is None:
        raise InvalidInputError(f"{video_path} has no video stream")
    first, end = resolve_span(span, info, video_path) if span is not None else (0, video.frame_count)
    span_range = timing.frames_to_range(first, end, video.rate)
    own_activity = None
    if info.audio:
        own = media.read_audio(video_path, span_range, rate=SPEECH_RATE, mono=True)
        own_activity = analyse_speech(own, rate=video.rate, frame_count=end - first, cache=cache_root or True).voice_activity
    params = FaceTrackParams()
    faces = track_faces(
        media.read_span(video_path, span_range),
        frame_count=end - first,
        speech_activity=own_activity,
        speaker=speaker,
        params=params,
        cache=detection_cache(media_fingerprint(video_path), params, root=cache_root),
        progress=progress,
        cancel=cancel,
    )
    speech, warnings = None, []
    if audio_path is not None:
        request = RenderRequest(video=video_path, audio=audio_path, span=span_range, out=Path("unused"))
        dub = _read_dub(request, video.rate, end - first)
        speech = analyse_speech(dub, rate=video.rate, frame_count=end - first, cache=cache_root or True, cancel=cancel)
        warnings.extend(speech.warnings)
    return SpanAnalysis((first, end), faces, speech, warnings)


def write_overlay(result: SpanAnalysis, video_path: Path, out: Path, overwrite: bool = False,
                  inputs: dict[str, Path | None] | None = None) -> Path:
    """An h264 clip of the span with the analysis drawn on every frame."""
    from dubline.overlay import draw_analysis

    info = media.probe(video_path)
    rate = info.video.rate
    first, end = result.span
    faces, speech = result.faces, result.speech

    def frames() -> Iterator[np.ndarray]:
        for row, frame in enumerate(media.read_span(video_path, timing.frames_to_range(first, end, rate))):
            caption = f"frame {frame.index}"
            if np.isfinite(faces.aperture[row]):
                caption += f"  aperture {faces.aperture[row]:.2f}"
            if speech is not None:
                caption += f"  {speech.phone[row] or '-'} / {speech.viseme[row]}  open {speech.openness[row]:.2f}"
            present = bool(faces.present[row])
            yield draw_analysis(
                frame.image,
                faces.boxes[row] if present else None,
                faces.landmarks[row] if present else None,
                str(faces.reason[row]),
                caption,
            )

    return media.write_patch(frames(), out, "h264", rate, span_start_timecode(info, first), overwrite=overwrite,
                             inputs={"--video": video_path, **(inputs or {})})
