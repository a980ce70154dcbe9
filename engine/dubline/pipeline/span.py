"""``analyse_span``: the analysis of just a span, for ``dubline analyse`` (and its debug overlay).

Per-frame detections are cached, so an overlapping span only computes its new frames, and a later
render of the clip reuses them. The read starts at the face stage's detection anchor before the
span (a few frames early), so every frame's result is one the cache may keep.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import opentimelineio as otio

from dubline.core import timing
from dubline.core.errors import InvalidInputError
from dubline.core.progress import CancelToken, ProgressSink, no_progress
from dubline.pipeline.render import resolve_span, span_start_timecode
from dubline.qc.overlay import draw_analysis
from dubline.stages import media
from dubline.stages.faces import (
    FaceTrack,
    FaceTrackParams,
    SpeakerHint,
    detection_cache,
    track_faces,
)
from dubline.stages.speech import SpeechTrack, analyse_speech
from dubline.stages.speech.dub import read_dub
from dubline.stages.speech.phones import SAMPLE_RATE


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
    params = FaceTrackParams()
    anchor = first - first % params.detect_every
    read_range = timing.frames_to_range(anchor, end, video.rate)
    own_activity = None
    if info.audio:
        own = media.read_audio(video_path, read_range, rate=SAMPLE_RATE, mono=True)
        own_activity = analyse_speech(own, rate=video.rate, frame_count=end - anchor, cache=cache_root or True).voice_activity
    read = track_faces(
        media.FrameView.of(video).analysis_frames(  # as the render's analysis reads them
            media.read_span(video_path, read_range, exact_colour=False)),
        frame_count=end - anchor,
        speech_activity=own_activity,
        speaker=speaker,
        params=params,
        cache=detection_cache(media.media_fingerprint(video_path), params, root=cache_root),
        progress=progress,
        cancel=cancel,
    )
    faces = _rows(read, slice(first - anchor, None))
    speech, warnings = None, []
    if audio_path is not None:
        dub, warnings = read_dub(audio_path, timing.seconds_time(0))
        speech = analyse_speech(dub, rate=video.rate, frame_count=end - first, cache=cache_root or True, cancel=cancel)
        warnings.extend(speech.warnings)
    return SpanAnalysis((first, end), faces, speech, warnings)


def _rows(track: FaceTrack, rows: slice) -> FaceTrack:
    """The track over some of its frames (the speaker choice stays what the whole read found)."""
    return dataclasses.replace(track, **{
        f.name: getattr(track, f.name)[rows] for f in dataclasses.fields(track) if isinstance(getattr(track, f.name), np.ndarray)
    })


def write_overlay(result: SpanAnalysis, video_path: Path, out: Path, overwrite: bool = False,
                  inputs: dict[str, Path | None] | None = None) -> Path:
    """An h264 clip of the span with the analysis drawn on every frame (of the analysis view:
    upright, square pixels, 8-bit, where the face track's coordinates are)."""
    info = media.probe(video_path)
    rate = info.video.rate
    view = media.FrameView.of(info.video)
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
            picture = view.analysis_image(frame.image)
            # H.264 needs even sizes; a square-pixel view can be odd (720x480 at 10:11 is 655 wide).
            picture = np.pad(picture, ((0, picture.shape[0] % 2), (0, picture.shape[1] % 2), (0, 0)), mode="edge")
            yield draw_analysis(
                picture,
                faces.boxes[row] if present else None,
                faces.landmarks[row] if present else None,
                str(faces.reason[row]),
                caption,
            )

    return media.write_patch(frames(), out, "h264", rate, span_start_timecode(info, first), overwrite=overwrite,
                             inputs={"--video": video_path, **(inputs or {})})
