"""``run_qc``: the quality numbers of DESIGN.md measured on a written patch.

Everything is measured on decoded output frames, the same way for every backend: the mouth
aperture comes from running the 68-point landmark detector on the patch itself, never from what
the renderer intended. Frames are streamed, so memory does not grow with the span.

Without ``--matte`` the "outside" region is everything beyond the lower-face matte of the
source's own landmarks grown by ``OUTSIDE_MARGIN`` inter-ocular distances (the render's matte
can reach a lower library chin, so the source's own matte alone would be too tight); with
``--matte`` it is exactly where the matte clip is 0.

Faces are found on the patch's analysis view (upright, square pixels, 8-bit, like the source's
track); masks are drawn on the stored frames with the source's landmarks mapped back. Untouched
pixels are compared at the source's depth (PSNR against its peak), the image measures (seam,
flicker, sharpness) at 8 bits, the scale they were calibrated at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import opentimelineio as otio

from dubline.core import landmarks as lm
from dubline.core import timing
from dubline.core.progress import ProgressSink, no_progress
from dubline.pipeline.analysis import analyse_clip
from dubline.pipeline.budget import SPAN_ONLY
from dubline.pipeline.render import resolve_span, span_start_timecode
from dubline.qc.metrics import (
    FlickerMeter,
    QcReport,
    identity_distance,
    mouth_mask,
    pac_sync,
    seam_score,
    sharpness_ratio,
)
from dubline.stages import media
from dubline.stages.composite import lower_face_matte
from dubline.stages.faces import FaceTrackParams, descriptor_at, detect_frame
from dubline.stages.speech.analyse import analyse_speech
from dubline.stages.speech.dub import read_dub
from dubline.stages.speech.targets import openness_track

OUTSIDE_MARGIN = 0.35


@dataclass
class _Tally:
    diff_pixels: int = 0
    squared_error: float = 0.0
    outside_samples: int = 0

    peak: float = 255.0

    def add(self, out: np.ndarray, src: np.ndarray, outside: np.ndarray) -> None:
        self.peak = float(np.iinfo(src.dtype).max)
        difference = out[outside].astype(np.int32) - src[outside].astype(np.int32)
        self.diff_pixels += int(np.count_nonzero(np.any(difference != 0, axis=-1)))
        self.squared_error += float(np.sum(difference.astype(np.float64) ** 2))
        self.outside_samples += int(difference.size)

    def psnr(self) -> float:
        if self.outside_samples == 0:
            return float("nan")
        mse = self.squared_error / self.outside_samples
        return float("inf") if mse == 0 else float(10 * np.log10(self.peak**2 / mse))


def _speaker_face(detections, reference_box: np.ndarray | None):
    """The detection of the speaker: nearest to the source's box, else the largest."""
    if not detections:
        return None
    if reference_box is not None and np.all(np.isfinite(reference_box)):
        centre = (reference_box[:2] + reference_box[2:]) / 2
        return min(detections, key=lambda d: np.hypot(*((np.array(d.box[:2]) + d.box[2:]) / 2 - centre)))
    return max(detections, key=lambda d: d.area)


def run_qc(
    patch: Path,
    audio: Path,
    source: Path | None = None,
    span: otio.opentime.TimeRange | str | None = None,
    matte: Path | None = None,
    audio_offset: otio.opentime.RationalTime | None = None,
    cache_root: Path | None = None,
    progress: ProgressSink = no_progress,
) -> QcReport:
    """Measure ``patch`` against the dub (sync) and, given ``source`` and ``span``, against the
    source frames it replaces (identity, untouched pixels, seam, flicker, sharpness, exactness)."""
    info = media.probe(patch)
    video = info.video
    assert video is not None
    patch_view = media.FrameView.of(video)
    frame_count = video.frame_count
    report = QcReport(frames=frame_count, start_timecode=video.start_timecode)

    dub, dub_warnings = read_dub(audio, audio_offset if audio_offset is not None else timing.seconds_time(0))
    report.warnings.extend(dub_warnings)
    speech = analyse_speech(dub, rate=video.rate, frame_count=frame_count, cache=cache_root or True)
    openness = openness_track(speech.phones, rate=video.rate, frame_count=frame_count)

    source_frames = None
    source_faces = None
    source_view = patch_view
    first = 0
    if source is not None and span is not None:
        source_info = media.probe(source)
        source_view = media.FrameView.of(source_info.video)
        first, end = resolve_span(span, source_info, source)
        report.expected_frames = end - first
        report.expected_start_timecode = span_start_timecode(source_info, first)
        source_faces = analyse_clip(source, cache_root=cache_root, span=(first, end), budget=SPAN_ONLY).faces
        if end - first == frame_count:
            source_frames = media.read_span(source, timing.frames_to_range(first, end, source_info.video.rate))
        else:
            report.warnings.append("frame counts differ: per-frame comparisons with the source skipped")
    matte_frames = media.read_span(matte, timing.frames_to_range(0, frame_count, video.rate)) if matte else None

    params = FaceTrackParams()
    aperture = np.full(frame_count, np.nan)
    out_descriptors = np.full((frame_count, 128), np.nan)
    src_descriptors = np.full((frame_count, 128), np.nan)  # of each source frame (the analysis has them on anchors only)
    out_boxes = np.full((frame_count, 4), np.nan)
    tally, flicker = _Tally(), FlickerMeter()
    seams, sharpness = [], []
    for row, frame in enumerate(media.read_span(patch, timing.frames_to_range(0, frame_count, video.rate))):
        box = None if source_faces is None else source_faces.boxes[first + row]
        face = _speaker_face(detect_frame(patch_view.analysis_image(frame.image), params), box)
        if face is not None:
            aperture[row] = lm.inner_lip_aperture(face.landmarks)
            out_descriptors[row] = face.descriptor
            out_boxes[row] = face.box
        if source_frames is not None:
            src = next(source_frames).image
            out = media.convert_depth(frame.image, src.dtype)  # a 10-bit patch of an 8-bit source
            points = source_view.to_stored(source_faces.landmarks[first + row].astype(np.float64))
            raw = source_faces.landmarks_raw[first + row]
            if np.all(np.isfinite(raw)):  # the track keeps descriptors of detections only
                src_descriptors[row] = descriptor_at(source_view.analysis_image(src), raw)
            if matte_frames is not None:
                inside = next(matte_frames).image[..., 0] > 0
            elif np.all(np.isfinite(points)):
                grow = int(OUTSIDE_MARGIN * lm.inter_ocular_distance(points)) * 2 + 1
                inside = cv2.dilate((lower_face_matte(points, src.shape[:2]) > 0).astype(np.uint8), np.ones((grow, grow), np.uint8)) > 0
            else:
                inside = np.zeros(src.shape[:2], bool)
            tally.add(out, src, ~inside)
            if np.all(np.isfinite(points)) and inside.any():
                out8, src8 = media.to_8bit(out), media.to_8bit(src)
                soft = lower_face_matte(points, src.shape[:2])
                seams.append(seam_score(out8, src8, soft))
                mouth = mouth_mask(points, src.shape[:2])
                flicker.add(out8, src8, mouth)
                sharpness.append(sharpness_ratio(out8, src8, mouth))
        progress("qc", row + 1, frame_count)

    report.pac_sync, report.pac_lag = pac_sync(aperture, openness)
    if source_faces is not None and source_frames is not None:
        report.identity_distance = identity_distance(out_descriptors, src_descriptors)
        report.outside_diff_pixels = tally.diff_pixels
        report.outside_exact = tally.diff_pixels == 0
        report.psnr_outside_db = tally.psnr()
        finite = [s for s in seams if np.isfinite(s)]
        report.seam = float(np.mean(finite)) if finite else None
        report.flicker_ratio = flicker.ratio()
        finite = [s for s in sharpness if np.isfinite(s)]
        report.sharpness_ratio = float(np.median(finite)) if finite else None
    from dubline.stages.backends.wav2lip.sync_qc import wav2lip_sync_report

    whole = timing.frames_to_range(0, frame_count, video.rate)
    report.expert_sync = wav2lip_sync_report(
        (patch_view.analysis_image(f.image) for f in media.read_span(patch, whole)), out_boxes, dub, video.rate
    )
    missing = int(np.isnan(aperture).sum())
    if missing:
        report.warnings.append(f"no face found in {missing} of {frame_count} patch frames")
    return report
