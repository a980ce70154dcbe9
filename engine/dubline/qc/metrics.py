"""The metric math behind ``dubline qc`` (see "Quality, measured" in DESIGN.md).

Pure functions over arrays; reading the patch, the source and the dub is the caller's job.
Frames are RGB uint8 (H, W, 3); mattes are (H, W) with "outside" meaning ``matte == 0`` exactly
(float mattes from ``composite`` or 8-bit mattes decoded from a matte clip); mouth masks are
(H, W) bool (``mouth_mask`` builds one from landmarks).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable

import cv2
import numpy as np

from dubline.core.errors import InvalidInputError
from dubline.core.landmarks import OUTER_LIP, check_landmarks, inter_ocular_distance


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r over the pairs where both are finite; NaN with < 3 pairs or a constant series."""
    valid = np.isfinite(x) & np.isfinite(y)
    if np.count_nonzero(valid) < 3:
        return float("nan")
    xv, yv = x[valid] - x[valid].mean(), y[valid] - y[valid].mean()
    denominator = math.sqrt(float(np.dot(xv, xv)) * float(np.dot(yv, yv)))
    if denominator <= 1e-12:
        return float("nan")
    return float(np.dot(xv, yv) / denominator)


def pac_sync(aperture: np.ndarray, openness: np.ndarray, max_lag: int = 2) -> tuple[float, int]:
    """PAC sync: best Pearson correlation of mouth aperture and phonetic openness over lags.

    ``aperture``: per output frame, inner-lip opening / inter-ocular distance (NaN = no face; such
    frames are ignored). ``openness``: the dub's openness track (0..1) on the same frames.
    Lag convention: ``lag > 0`` means the mouth moves ``lag`` frames *after* the sound, i.e.
    ``aperture[t + lag]`` is paired with ``openness[t]``; ``lag < 0`` means the mouth leads.
    Returns (r, lag) for the largest r over ``-max_lag..max_lag`` (ties: the smallest |lag|, then
    the negative one);
    (NaN, 0) when no lag has 3 valid pairs and some variation.
    """
    mouth = np.asarray(aperture, dtype=np.float64).ravel()
    sound = np.asarray(openness, dtype=np.float64).ravel()
    if mouth.shape != sound.shape:
        raise InvalidInputError(
            f"pac_sync: aperture has {mouth.size} frames but openness has {sound.size}; they must cover the same frames"
        )
    if max_lag < 0:
        raise InvalidInputError(f"pac_sync: max_lag must be >= 0, got {max_lag}")
    best_r, best_lag = float("nan"), 0
    for lag in sorted(range(-max_lag, max_lag + 1), key=abs):  # 0, -1, 1, -2, 2: ties keep the first
        if lag >= 0:
            r = _pearson(mouth[lag:], sound[: sound.size - lag])
        else:
            r = _pearson(mouth[: mouth.size + lag], sound[-lag:])
        if np.isfinite(r) and (not np.isfinite(best_r) or r > best_r):
            best_r, best_lag = r, lag
    return best_r, best_lag


def identity_distance(desc_out: np.ndarray, desc_src: np.ndarray) -> float:
    """Mean Euclidean distance between 128-d face descriptors of output and source frames.

    Row i of each array is frame i; a frame without a face is a NaN row and is skipped.
    NaN when no frame has a face in both.
    """
    out = np.asarray(desc_out, dtype=np.float64)
    src = np.asarray(desc_src, dtype=np.float64)
    if out.ndim != 2 or out.shape != src.shape:
        raise InvalidInputError(f"identity_distance: descriptor arrays {out.shape} and {src.shape} must both be (N, D)")
    both = np.all(np.isfinite(out), axis=1) & np.all(np.isfinite(src), axis=1)
    if not np.any(both):
        return float("nan")
    return float(np.linalg.norm(out[both] - src[both], axis=1).mean())


def _check_pair(out: np.ndarray, src: np.ndarray, what: str) -> None:
    if out.shape != src.shape:
        raise InvalidInputError(f"{what}: output frame {out.shape} and source frame {src.shape} differ in shape")


def _outside(matte: np.ndarray, frame: np.ndarray, what: str) -> np.ndarray:
    matte = np.asarray(matte)
    if matte.ndim == 3:  # a matte decoded as RGB/gray-with-channel: outside only where every channel is 0
        matte = matte.max(axis=2)
    if matte.shape != frame.shape[:2]:
        raise InvalidInputError(f"{what}: matte {matte.shape} does not match frame {frame.shape[:2]}")
    return matte == 0


def outside_matte_exact(out: np.ndarray, src: np.ndarray, matte: np.ndarray) -> tuple[bool, int]:
    """Whether every pixel with ``matte == 0`` is bit-identical, and how many pixels differ there."""
    _check_pair(out, src, "outside_matte_exact")
    outside = _outside(matte, out, "outside_matte_exact")
    differs = out != src
    if differs.ndim == 3:
        differs = differs.any(axis=2)
    n_diff = int(np.count_nonzero(differs & outside))
    return n_diff == 0, n_diff


def psnr_outside(out: np.ndarray, src: np.ndarray, matte: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB over the pixels with ``matte == 0``; inf when they are identical, NaN when there are none."""
    _check_pair(out, src, "psnr_outside")
    outside = _outside(matte, out, "psnr_outside")
    if not np.any(outside):
        return float("nan")
    error = out[outside].astype(np.float64) - src[outside].astype(np.float64)
    mse = float(np.mean(error * error))
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(peak * peak / mse)


def _box_of(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    height, width = mask.shape
    return (
        slice(max(0, rows[0] - margin), min(height, rows[-1] + 1 + margin)),
        slice(max(0, cols[0] - margin), min(width, cols[-1] + 1 + margin)),
    )


def _gradients(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    data = image.astype(np.float32)
    return cv2.Sobel(data, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(data, cv2.CV_32F, 0, 1, ksize=3)


def matte_edge_band(matte: np.ndarray, band_px: int = 3) -> np.ndarray:
    """Pixels near the matte's edge: the soft transition (0 < matte < 1) plus ``band_px`` each side.

    For a hard (binary) matte that is a ring of ``2 * band_px`` pixels around its boundary.
    """
    matte = np.asarray(matte, dtype=np.float32)
    if matte.max(initial=0.0) > 1.0:  # an 8-bit matte
        matte = matte / 255.0
    support = (matte > 0).astype(np.uint8)
    core = (matte >= 1.0 - 1e-6).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band_px + 1, 2 * band_px + 1))
    return (cv2.dilate(support, kernel) > 0) & ~(cv2.erode(core, kernel, borderValue=1) > 0)


def seam_score(out: np.ndarray, src: np.ndarray, matte: np.ndarray, band_px: int = 3) -> float:
    """How visible the matte's edge is: 0 = none; a hard paste of a different image scores ~1 or more.

    In the edge band (``matte_edge_band``): RMS of the difference between the Sobel gradients of
    ``out`` and ``src``, divided by the RMS gradient of ``src`` there (+1 code value, so a flat
    source does not divide by zero). RMS rather than mean absolute value because a step and a
    feathered ramp of the same height have the same total variation; squaring penalises the
    concentrated change that the eye sees as a seam. Colour steps and texture breaks both show up
    as gradient differences. NaN when the matte is empty.
    """
    _check_pair(out, src, "seam_score")
    if matte.shape != out.shape[:2]:
        raise InvalidInputError(f"seam_score: matte {matte.shape} does not match frame {out.shape[:2]}")
    band = matte_edge_band(matte, band_px)
    box = _box_of(band, 2)
    if box is None:
        return float("nan")
    out_gx, out_gy = _gradients(out[box])
    src_gx, src_gy = _gradients(src[box])
    inside = band[box]
    difference = np.square(out_gx - src_gx) + np.square(out_gy - src_gy)
    source_energy = np.square(src_gx) + np.square(src_gy)
    if difference.ndim == 3:
        difference, source_energy = difference.mean(axis=2), source_energy.mean(axis=2)
    rms_difference = math.sqrt(float(difference[inside].mean()))
    rms_source = math.sqrt(float(source_energy[inside].mean()))
    return rms_difference / (rms_source + 1.0)


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator with 0/0 = 1 (no change either side) and x/0 = inf."""
    if denominator > 0:
        return numerator / denominator
    return 1.0 if numerator == 0 else float("inf")


class FlickerMeter:
    """Streaming ``flicker_ratio``: feed frames one by one, memory stays flat in span length."""

    def __init__(self) -> None:
        self._previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._out_change = 0.0
        self._src_change = 0.0
        self.pairs = 0
        #: (output, source) change of the last pair added (0, 0 before the first pair)
        self.last_change: tuple[float, float] = (0.0, 0.0)

    def add(self, out: np.ndarray, src: np.ndarray, mouth_mask: np.ndarray) -> None:
        _check_pair(out, src, "flicker_ratio")
        mask = np.asarray(mouth_mask, dtype=bool)
        if mask.shape != out.shape[:2]:
            raise InvalidInputError(f"flicker_ratio: mouth mask {mask.shape} does not match frame {out.shape[:2]}")
        self.last_change = (0.0, 0.0)
        if self._previous is not None:
            previous_out, previous_src, previous_mask = self._previous
            region = mask | previous_mask
            if np.any(region):
                self.last_change = (
                    float(np.abs(out[region].astype(np.int16) - previous_out[region]).mean()),
                    float(np.abs(src[region].astype(np.int16) - previous_src[region]).mean()),
                )
                self._out_change += self.last_change[0]
                self._src_change += self.last_change[1]
                self.pairs += 1
        self._previous = (out, src, mask)

    def ratio(self) -> float:
        """Mean frame-to-frame change in the output's mouth region / the same in the source."""
        if self.pairs == 0:
            return float("nan")
        return _ratio(self._out_change, self._src_change)


def flicker_ratio(
    out_frames: Iterable[np.ndarray], src_frames: Iterable[np.ndarray], mouth_masks: Iterable[np.ndarray]
) -> float:
    """Mean absolute frame-to-frame change inside the mouth region, output / source.

    For consecutive frames t-1, t the region is the union of their mouth masks; the mean absolute
    change (all channels, code values) is averaged over all pairs. 1.0 = as steady as the source;
    > 1 = the output flickers or moves more. NaN with fewer than two frames. Streams its inputs.
    """
    meter = FlickerMeter()
    for out, src, mask in zip(out_frames, src_frames, mouth_masks, strict=True):
        meter.add(out, src, mask)
    return meter.ratio()


def _laplacian_variance(image: np.ndarray, mask: np.ndarray) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    laplacian = cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F, ksize=3)
    return float(laplacian[mask].var())


def sharpness_ratio(out: np.ndarray, src: np.ndarray, mouth_mask: np.ndarray) -> float:
    """Variance of the Laplacian (grey) in the mouth region, output / source: < 1 = blurrier.

    Computed on the mask's bounding box (+1 px so the Laplacian sees real neighbours).
    NaN when the mask is empty.
    """
    _check_pair(out, src, "sharpness_ratio")
    mask = np.asarray(mouth_mask, dtype=bool)
    if mask.shape != out.shape[:2]:
        raise InvalidInputError(f"sharpness_ratio: mouth mask {mask.shape} does not match frame {out.shape[:2]}")
    box = _box_of(mask, 1)
    if box is None:
        return float("nan")
    return _ratio(_laplacian_variance(out[box], mask[box]), _laplacian_variance(src[box], mask[box]))


def mouth_mask(landmarks68: np.ndarray | None, shape: tuple[int, int], margin: float = 0.15) -> np.ndarray:
    """Bool (H, W) mask of the mouth: the outer-lip polygon grown by ``margin`` x inter-ocular distance.

    All False for missing (None/NaN) landmarks.
    """
    mask = np.zeros((int(shape[0]), int(shape[1])), np.uint8)
    if landmarks68 is None:
        return mask.astype(bool)
    landmarks = check_landmarks(landmarks68, "landmarks68")
    if not np.all(np.isfinite(landmarks)):
        return mask.astype(bool)
    cv2.fillPoly(mask, [np.round(landmarks[OUTER_LIP] * 16).astype(np.int32)], 1, shift=4)
    grow = int(round(margin * inter_ocular_distance(landmarks)))
    if grow > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        mask = cv2.dilate(mask, kernel)
    return mask.astype(bool)


@dataclass(frozen=True)
class QcThresholds:
    """Acceptance numbers: the render issue's (PAC, identity, PSNR) and DESIGN.md read literally
    (flicker no larger, sharpness no less than the source).

    ``max_seam`` is calibrated, not given: on speaker_a, another frame's aligned lower face
    pasted with ``composite.paste`` scores 0.80 (no seam visible), a hard paste of it 1.15 (a
    visible edge), a hard paste of the same frame 20 code values brighter 2.47.
    """

    min_pac_sync: float = 0.5
    max_identity_distance: float = 0.25
    min_psnr_outside_db: float = 45.0
    max_seam: float = 1.0
    max_flicker_ratio: float = 1.0
    min_sharpness_ratio: float = 1.0


@dataclass
class QcReport:
    """Every ``qc`` number; None where it was not measured (e.g. no source given)."""

    frames: int
    expected_frames: int | None = None
    start_timecode: str | None = None
    expected_start_timecode: str | None = None
    pac_sync: float | None = None
    pac_lag: int | None = None
    identity_distance: float | None = None
    outside_exact: bool | None = None
    outside_diff_pixels: int | None = None
    psnr_outside_db: float | None = None
    seam: float | None = None
    flicker_ratio: float | None = None
    sharpness_ratio: float | None = None
    #: LSE-style numbers from Wav2Lip's expert discriminator, when lipsync_expert.pth is installed.
    expert_sync: dict | None = None
    #: The fairer comparisons of ``qc.temporal`` beside the plain ratios: change not explained by
    #: motion; detail against source frames with the mouth as open; detail of frames left untouched
    #: (what the codec alone costs).
    flicker_ratio_motion: float | None = None
    sharpness_ratio_matched: float | None = None
    sharpness_ratio_untouched: float | None = None
    #: Sliding-window PAC: its window (frames) and lowest value.
    local_pac_window: int | None = None
    local_pac_min: float | None = None
    #: Cuts between runs of material, when the render said where they are.
    run_boundaries: int | None = None
    #: Lip colour and expression of the patched frames against the speaker's untouched frames
    #: (``qc.lips``): the patched frames' mean and the untouched frames' median and 5..95 % range.
    lip_colour: dict | None = None
    #: The same for each lip apart ({"upper": ..., "lower": ...}): one lip paler than the
    #: speaker's own can hide in the mean over both.
    lip_colour_by_lip: dict | None = None
    expression: dict | None = None
    #: Per-frame arrays (one value per patch frame, None where not measured) for timeline markers.
    per_frame: dict[str, list] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def frame_count_ok(self) -> bool | None:
        return None if self.expected_frames is None else self.frames == self.expected_frames

    @property
    def timecode_ok(self) -> bool | None:
        if self.expected_start_timecode is None:
            return None
        return self.start_timecode == self.expected_start_timecode

    def failures(self, thresholds: QcThresholds = QcThresholds()) -> list[str]:
        """Human-readable reasons this patch misses the acceptance numbers (empty = all pass).

        Unmeasured (None) or NaN numbers are not failures; a caller that needs them must check.
        """
        problems: list[str] = []
        if self.frame_count_ok is False:
            problems.append(f"frame count {self.frames} != span's {self.expected_frames}")
        if self.timecode_ok is False:
            problems.append(f"start timecode {self.start_timecode} != span's {self.expected_start_timecode}")

        def below(name: str, value: float | None, minimum: float) -> None:
            if value is not None and np.isfinite(value) and value < minimum:
                problems.append(f"{name} {value:.3f} < {minimum}")

        def above(name: str, value: float | None, maximum: float) -> None:
            if value is not None and not np.isnan(value) and value > maximum:
                problems.append(f"{name} {value:.3f} > {maximum}")

        below("PAC sync", self.pac_sync, thresholds.min_pac_sync)
        above("identity distance", self.identity_distance, thresholds.max_identity_distance)
        if self.outside_exact is False and self.psnr_outside_db is None:
            problems.append(f"{self.outside_diff_pixels} pixels outside the matte differ from the source")
        below("PSNR outside the matte (dB)", self.psnr_outside_db, thresholds.min_psnr_outside_db)
        above("seam", self.seam, thresholds.max_seam)
        above("flicker ratio", self.flicker_ratio, thresholds.max_flicker_ratio)
        below("sharpness ratio", self.sharpness_ratio, thresholds.min_sharpness_ratio)
        if self.lip_colour is not None and self.lip_colour.get("within") is False:
            problems.append(
                "lip colour outside the speaker's untouched frames: saturation "
                f"{self.lip_colour['saturation']:.3f} (range {self.lip_colour['saturation_low']:.3f}.."
                f"{self.lip_colour['saturation_high']:.3f}), hue offset {self.lip_colour['hue']:+.1f} deg "
                f"(range {self.lip_colour['hue_low']:+.1f}..{self.lip_colour['hue_high']:+.1f})"
            )
        for part, lip in (self.lip_colour_by_lip or {}).items():
            if lip.get("within") is False:
                problems.append(
                    f"{part} lip colour outside the speaker's untouched frames: saturation {lip['saturation']:.3f} "
                    f"(range {lip['saturation_low']:.3f}..{lip['saturation_high']:.3f}), hue offset "
                    f"{lip['hue']:+.1f} deg (range {lip['hue_low']:+.1f}..{lip['hue_high']:+.1f})"
                )
        return problems

    def to_dict(self) -> dict:
        """JSON-ready: NaN becomes None, infinities become the strings "inf" / "-inf"."""

        def clean(value: object) -> object:
            if isinstance(value, (float, np.floating)):
                value = float(value)
                if math.isnan(value):
                    return None
                if math.isinf(value):
                    return "inf" if value > 0 else "-inf"
            if isinstance(value, dict):
                return {key: clean(item) for key, item in value.items()}
            if isinstance(value, (list, tuple)):
                return [clean(item) for item in value]
            if isinstance(value, np.bool_):
                return bool(value)
            return value

        data = {key: clean(value) for key, value in asdict(self).items()}
        data["frame_count_ok"] = self.frame_count_ok
        data["timecode_ok"] = self.timecode_ok
        return data
