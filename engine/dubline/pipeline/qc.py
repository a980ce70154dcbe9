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

from collections.abc import Sequence
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
from dubline.qc.lips import LIP_POLYGONS, Spread, circular_median_offset, lip_colour, lip_colour_summary, mouth_expression
from dubline.qc.metrics import (
    FlickerMeter,
    QcReport,
    identity_distance,
    mouth_mask,
    pac_sync,
    seam_score,
    sharpness_ratio,
)
from dubline.qc.temporal import (
    MotionResidualMeter,
    local_pac,
    matched_detail,
    mouth_detail,
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


def _differs(out: np.ndarray, src: np.ndarray, mouth: np.ndarray) -> bool:
    """Without a matte clip: a frame counts as patched when its mouth region changed visibly."""
    return bool(mouth.any()) and float(np.abs(out[mouth].astype(np.int16) - src[mouth]).mean()) > 1.0


def _ratio_or_nan(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


class _PerFrame:
    """The per-frame measurements of one qc run and the summaries drawn from them."""

    def __init__(self, count: int) -> None:
        nan = lambda: np.full(count, np.nan)  # noqa: E731
        self.patched = np.zeros(count, bool)
        self.measured = np.zeros(count, bool)  # inside the render's region: the plain ratios' frames
        self.change = nan()  # mouth-region change from the previous frame, output / source
        self.sharpness = nan()  # plain sharpness ratio
        self.out_detail, self.src_detail = nan(), nan()
        self.out_saturation, self.out_hue, self.src_saturation, self.src_hue = nan(), nan(), nan(), nan()
        self.out_width, self.out_lift, self.src_width, self.src_lift = nan(), nan(), nan(), nan()
        #: per lip ("upper", "lower"): (out saturation, out hue, source saturation, source hue)
        self.by_lip = {part: (nan(), nan(), nan(), nan()) for part in LIP_POLYGONS}
        self.src_aperture = nan()  # from the same raw detections as width and lift
        self.series: dict[str, np.ndarray] = {}

    def measure_output(self, row: int, image: np.ndarray, landmarks: np.ndarray) -> None:
        self.out_saturation[row], self.out_hue[row] = lip_colour(image, landmarks)
        for part, (saturation, hue, _, _) in self.by_lip.items():
            saturation[row], hue[row] = lip_colour(image, landmarks, part)
        self.out_width[row], self.out_lift[row] = mouth_expression(landmarks)
        self.out_detail[row] = mouth_detail(image, mouth_mask(landmarks, image.shape[:2]))

    def measure_source(self, row: int, image: np.ndarray, landmarks: np.ndarray) -> None:
        if not np.all(np.isfinite(landmarks)):
            return
        self.src_saturation[row], self.src_hue[row] = lip_colour(image, landmarks)
        for part, (_, _, saturation, hue) in self.by_lip.items():
            saturation[row], hue[row] = lip_colour(image, landmarks, part)
        self.src_width[row], self.src_lift[row] = mouth_expression(landmarks)
        self.src_aperture[row] = lm.inner_lip_aperture(landmarks)
        self.src_detail[row] = mouth_detail(image, mouth_mask(landmarks, image.shape[:2]))

    def summarise(self, report: QcReport, source_aperture: np.ndarray) -> None:
        patched, untouched = self.patched, ~self.patched
        measured = self.sharpness[self.measured]
        report.sharpness_ratio = float(np.nanmedian(measured)) if np.isfinite(measured).any() else None
        if np.isfinite(self.sharpness[untouched]).any():
            report.sharpness_ratio_untouched = float(np.nanmedian(self.sharpness[untouched]))
        out_aperture = self.series["aperture"]
        matched = matched_detail(self.out_detail, out_aperture, self.src_detail, source_aperture)
        if np.isfinite(matched[patched]).any():
            report.sharpness_ratio_matched = float(np.nanmedian(matched[patched]))
        report.lip_colour = lip_colour_summary(self.out_saturation, self.out_hue, self.src_saturation, self.src_hue,
                                               self.patched)
        by_lip = {part: lip_colour_summary(*arrays, self.patched) for part, arrays in self.by_lip.items()}
        report.lip_colour_by_lip = by_lip if all(summary is not None for summary in by_lip.values()) else None
        report.expression = self._expression()
        hue_reference = float(np.nanmedian(self.src_hue)) if np.isfinite(self.src_hue).any() else 0.0
        self.series.update({
            "patched": self.patched.astype(float),
            "change_ratio": self.change,
            "sharpness_ratio": self.sharpness,
            "sharpness_ratio_matched": matched,
            "lip_saturation": self.out_saturation,
            "lip_hue": circular_median_offset(self.out_hue, hue_reference),
            **{f"lip_saturation_{part}": arrays[0] for part, arrays in self.by_lip.items()},
            "mouth_width": self.out_width,
            "corner_lift": self.out_lift,
        })

    def _expression(self) -> dict | None:
        """Width and corner lift of the patched frames against the speaker's untouched ones, both
        as measured and less what the mouth's opening explains (a line fitted on the untouched
        frames: an open mouth is narrower and its corners lower, whatever the expression)."""
        patched = self.patched & np.isfinite(self.out_width) & np.isfinite(self.series["aperture"])
        known = np.isfinite(self.src_width) & np.isfinite(self.src_aperture)
        if np.count_nonzero(known) < 5 or not patched.any():
            return None
        result: dict = {"frames": int(patched.sum())}
        scores = []
        for name, source, output in (("width", self.src_width, self.out_width), ("lift", self.src_lift, self.out_lift)):
            line = np.polyfit(self.src_aperture[known], source[known], 1)
            spread = Spread.of(source[known] - np.polyval(line, self.src_aperture[known]))
            raw = Spread.of(source[known])
            assert spread is not None and raw is not None
            residual = float(np.median(output[patched] - np.polyval(line, self.series["aperture"][patched])))
            scores.append(spread.standardised(residual))
            result.update({
                name: float(np.median(output[patched])), f"{name}_median": raw.median,
                f"{name}_low": raw.low, f"{name}_high": raw.high,
                f"{name}_for_opening": residual, f"{name}_for_opening_low": spread.low,
                f"{name}_for_opening_high": spread.high,
            })
        # Mean of the two opening-adjusted medians, each in units of half the speaker's own 5..95 %
        # range: > 0 wider and more lifted than the speaker usually is for that opening (smiling).
        result["score"] = float(np.mean(scores))
        return result


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
    run_starts: Sequence[int] | None = None,
) -> QcReport:
    """Measure ``patch`` against the dub (sync) and, given ``source`` and ``span``, against the
    source frames it replaces (identity, untouched pixels, seam, flicker, sharpness, exactness,
    lip colour and expression against the untouched frames). ``run_starts``: the patch frames where
    the render cut to another run of material (``RenderResult.run_starts``), counted and marked."""
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
    tally, flicker, residual = _Tally(), FlickerMeter(), MotionResidualMeter()
    seams = []
    seam_per_frame = np.full(frame_count, np.nan)  # for timeline markers (pipeline.flags)
    frames = _PerFrame(frame_count)
    for row, frame in enumerate(media.read_span(patch, timing.frames_to_range(0, frame_count, video.rate))):
        box = None if source_faces is None else source_faces.boxes[first + row]
        analysis = patch_view.analysis_image(frame.image)
        face = _speaker_face(detect_frame(analysis, params), box)
        if face is not None:
            aperture[row] = lm.inner_lip_aperture(face.landmarks)
            out_descriptors[row] = face.descriptor
            out_boxes[row] = face.box
            frames.measure_output(row, analysis, face.landmarks)
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
            out8, src8 = media.to_8bit(out), media.to_8bit(src)
            if np.all(np.isfinite(points)):
                mouth = mouth_mask(points, src.shape[:2])
                # Raw detections, as on the patch (the track's smoothed points are steadier).
                frames.measure_source(row, source_view.analysis_image(src), source_faces.landmarks_raw[first + row])
                frames.patched[row] = bool(inside.any()) if matte_frames is not None else _differs(out8, src8, mouth)
                frames.sharpness[row] = sharpness_ratio(out8, src8, mouth)
            if np.all(np.isfinite(points)) and inside.any():
                out8, src8 = media.to_8bit(out), media.to_8bit(src)
                soft = lower_face_matte(points, src.shape[:2])
                seams.append(seam_score(out8, src8, soft))
                seam_per_frame[row] = seams[-1]
                flicker.add(out8, src8, mouth)
                residual.add(out8, src8, mouth)
                frames.change[row] = _ratio_or_nan(*flicker.last_change)
                frames.measured[row] = True
            else:
                residual.skip()
        progress("qc", row + 1, frame_count)

    report.pac_sync, report.pac_lag = pac_sync(aperture, openness)
    window = max(8, int(round(2 * float(video.rate))))
    local = local_pac(aperture, openness, window, report.pac_lag or 0)
    report.local_pac_window = window
    report.local_pac_min = float(np.nanmin(local)) if np.isfinite(local).any() else None
    frames.series["aperture"] = aperture
    frames.series["local_pac"] = local
    if run_starts is not None:
        report.run_boundaries = len(run_starts)
        marks = np.zeros(frame_count)
        marks[[r for r in run_starts if 0 <= r < frame_count]] = 1.0
        frames.series["run_start"] = marks
    if source_faces is not None and source_frames is not None:
        report.identity_distance = identity_distance(out_descriptors, src_descriptors)
        frames.series["identity_distance"] = np.linalg.norm(out_descriptors - src_descriptors, axis=1)  # NaN: no face
        frames.series["seam"] = seam_per_frame
        report.outside_diff_pixels = tally.diff_pixels
        report.outside_exact = tally.diff_pixels == 0
        report.psnr_outside_db = tally.psnr()
        finite = [s for s in seams if np.isfinite(s)]
        report.seam = float(np.mean(finite)) if finite else None
        report.flicker_ratio = flicker.ratio()
        report.flicker_ratio_motion = residual.ratio()
        frames.series["motion_residual"] = np.array(residual.output)
        frames.series["motion_residual_source"] = np.array(residual.source)
        frames.summarise(report, source_faces.aperture[first : first + frame_count].astype(np.float64))
    from dubline.stages.backends.wav2lip.sync_qc import wav2lip_sync_report

    whole = timing.frames_to_range(0, frame_count, video.rate)
    report.expert_sync = wav2lip_sync_report(
        (patch_view.analysis_image(f.image) for f in media.read_span(patch, whole)), out_boxes, dub, video.rate
    )
    report.per_frame = {name: values.tolist() for name, values in frames.series.items()}
    missing = int(np.isnan(aperture).sum())
    if missing:
        report.warnings.append(f"no face found in {missing} of {frame_count} patch frames")
    return report
