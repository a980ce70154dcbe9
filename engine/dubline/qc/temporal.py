"""Per-frame signals over time: local sync, motion-compensated change, and shape-matched detail.

These complement the whole-span numbers of ``metrics`` with per-frame arrays an editor can put on a
timeline, and with fairer comparisons where the span numbers compare unlike things:

- ``local_pac``: PAC in a sliding window, so a stretch that is out of sync shows even when the span
  as a whole scores well.
- ``MotionResidualMeter``: the change inside the mouth region from one frame to the next that motion
  does not explain (the previous frame warped onto this one by dense optical flow first). The plain
  flicker ratio counts every change, so a dub whose mouth moves more than the source's own (a
  quiet speaker, a busy dub) scores above 1 with no flicker at all; a cut or a colour jump is not
  explained by motion and still counts here.
- ``matched_detail``: mouth detail compared with the source frames whose mouth is open about as
  wide. The plain sharpness ratio compares each output frame with the source frame it replaces,
  usually a different mouth shape: an open mouth with teeth has more fine detail than closed lips.
"""

from __future__ import annotations

import cv2
import numpy as np

from dubline.qc.metrics import _box_of, _laplacian_variance, _pearson


def local_pac(aperture: np.ndarray, openness: np.ndarray, window: int, lag: int = 0, min_frames: int = 8) -> np.ndarray:
    """(T,) Pearson r of aperture and openness over the ``window`` frames centred on each frame,
    at the span's best ``lag`` (``metrics.pac_sync``'s convention: aperture[t + lag] ~ openness[t]).

    NaN where the window holds fewer than ``min_frames`` frames with a face or either series is flat
    there (silence: there is nothing to be in sync with).
    """
    mouth = np.asarray(aperture, np.float64).ravel()
    sound = np.asarray(openness, np.float64).ravel()
    count = len(mouth)
    shifted = np.full(count, np.nan)  # shifted[t] = the mouth that goes with the sound at t
    if lag >= 0:
        shifted[: count - lag] = mouth[lag:]
    else:
        shifted[-lag:] = mouth[: count + lag]
    out = np.full(count, np.nan)
    half = window // 2
    for t in range(count):
        lo, hi = max(0, t - half), min(count, t - half + window)
        pair_mouth, pair_sound = shifted[lo:hi], sound[lo:hi]
        valid = np.isfinite(pair_mouth) & np.isfinite(pair_sound)
        if np.count_nonzero(valid) < min_frames or np.std(pair_sound[valid]) < 0.02:
            continue
        out[t] = _pearson(pair_mouth, pair_sound)
    return out


_FLOW = None


def _flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    global _FLOW
    if _FLOW is None:
        _FLOW = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return _FLOW.calc(first, second, None)


def motion_residual(previous: np.ndarray, current: np.ndarray, region: np.ndarray) -> float:
    """Mean absolute difference (code values, all channels) inside ``region`` between ``current`` and
    ``previous`` warped onto it by the dense optical flow between them; NaN for an empty region."""
    box = _box_of(region, 8)
    if box is None:
        return float("nan")
    before, now = previous[box], current[box]
    flow = _flow(cv2.cvtColor(now, cv2.COLOR_RGB2GRAY), cv2.cvtColor(before, cv2.COLOR_RGB2GRAY))
    height, width = flow.shape[:2]
    base_y, base_x = np.mgrid[0:height, 0:width].astype(np.float32)
    warped = cv2.remap(before, base_x + flow[..., 0], base_y + flow[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    inside = region[box]
    return float(np.abs(now[inside].astype(np.int16) - warped[inside]).mean())


class MotionResidualMeter:
    """Streaming motion-compensated flicker: per frame pair, ``motion_residual`` of the output and
    of the source in the same region (the union of both frames' mouth masks)."""

    def __init__(self) -> None:
        self._previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.output: list[float] = []  # per frame; NaN for the first frame and frames without a mask
        self.source: list[float] = []

    def add(self, out: np.ndarray, src: np.ndarray, mouth_mask: np.ndarray) -> None:
        out_value = src_value = float("nan")
        if self._previous is not None:
            previous_out, previous_src, previous_mask = self._previous
            region = mouth_mask | previous_mask
            if region.any():
                out_value = motion_residual(previous_out, out, region)
                src_value = motion_residual(previous_src, src, region)
        self.output.append(out_value)
        self.source.append(src_value)
        self._previous = (out, src, mouth_mask)

    def skip(self) -> None:
        """A frame without a face: it has no value and breaks the pair with the next one."""
        self.output.append(float("nan"))
        self.source.append(float("nan"))
        self._previous = None

    def ratio(self) -> float:
        """Summed output residual / summed source residual over the pairs measured in both."""
        out, src = np.array(self.output), np.array(self.source)
        both = np.isfinite(out) & np.isfinite(src)
        if not both.any() or src[both].sum() <= 0:
            return float("nan")
        return float(out[both].sum() / src[both].sum())


def mouth_detail(image: np.ndarray, mask: np.ndarray) -> float:
    """Variance of the Laplacian (grey) inside ``mask``: what ``sharpness_ratio`` compares."""
    box = _box_of(mask, 1)
    if box is None:
        return float("nan")
    return _laplacian_variance(image[box], mask[box])


def matched_detail(
    out_detail: np.ndarray,
    out_aperture: np.ndarray,
    reference_detail: np.ndarray,
    reference_aperture: np.ndarray,
    neighbours: int = 5,
) -> np.ndarray:
    """(T,) each output frame's mouth detail over the median detail of the ``neighbours`` reference
    (untouched) frames whose aperture is closest to its own; NaN where either is unknown."""
    reference = np.isfinite(reference_detail) & np.isfinite(reference_aperture) & (reference_detail > 0)
    ref_detail, ref_aperture = reference_detail[reference], reference_aperture[reference]
    out = np.full(len(out_detail), np.nan)
    if len(ref_detail) == 0:
        return out
    k = min(neighbours, len(ref_detail))
    for t, (detail, aperture) in enumerate(zip(out_detail, out_aperture)):
        if not (np.isfinite(detail) and np.isfinite(aperture)):
            continue
        nearest = np.argpartition(np.abs(ref_aperture - aperture), k - 1)[:k]
        out[t] = detail / float(np.median(ref_detail[nearest]))
    return out
