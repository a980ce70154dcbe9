"""What the mouth looks like: lip colour and expression, per frame, against the speaker's own frames.

Both are measured from 68-point landmarks (detected on the frame being measured) and compared with
the same measure over the speaker's untouched frames, so a render can be told "within the speaker's
own range" rather than against a fixed number:

- lip colour: mean saturation and circular-mean hue of the lip ring (outer lip polygon minus the
  inner one), in HSV of the frame's RGB; and the same for the upper and the lower lip apart, since
  a mean over the ring does not see one lip paler than the speaker's own while the other is not
  (a speaker's lips often differ: speaker_b's lower lip is about 0.15 less saturated than her
  upper lip in her own frames);
- expression: mouth width (corner to corner) and corner lift (how far the corners sit above the
  midpoint of the lips' centre line, along the face's own vertical), both over the inter-ocular
  distance; a smile widens the mouth and lifts the corners.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from dubline.core.landmarks import (
    INNER_LIP,
    OUTER_LIP,
    check_landmarks,
    eye_centres,
    inter_ocular_distance,
)

_LEFT_CORNER, _RIGHT_CORNER = 48, 54
_UPPER_MID, _LOWER_MID = 51, 57
#: Each lip as one polygon: along its outer edge from corner to corner, back along its inner edge.
LIP_POLYGONS = {
    "upper": np.array([48, 49, 50, 51, 52, 53, 54, 64, 63, 62, 61, 60]),
    "lower": np.array([54, 55, 56, 57, 58, 59, 48, 60, 67, 66, 65, 64]),
}


def lip_ring(landmarks68: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool (H, W): inside the outer lip polygon and outside the inner one (the lips themselves)."""
    points = check_landmarks(landmarks68, "landmarks68")
    mask = np.zeros((int(shape[0]), int(shape[1])), np.uint8)
    if not np.all(np.isfinite(points)):
        return mask.astype(bool)
    cv2.fillPoly(mask, [np.round(points[OUTER_LIP] * 16).astype(np.int32)], 1, shift=4)
    cv2.fillPoly(mask, [np.round(points[INNER_LIP] * 16).astype(np.int32)], 0, shift=4)
    return mask.astype(bool)


def lip_part(landmarks68: np.ndarray, shape: tuple[int, int], part: str) -> np.ndarray:
    """Bool (H, W): the ``part`` lip ("upper" or "lower", ``LIP_POLYGONS``)."""
    points = check_landmarks(landmarks68, "landmarks68")
    mask = np.zeros((int(shape[0]), int(shape[1])), np.uint8)
    if np.all(np.isfinite(points)):
        cv2.fillPoly(mask, [np.round(points[LIP_POLYGONS[part]] * 16).astype(np.int32)], 1, shift=4)
    return mask.astype(bool)


def lip_colour(image: np.ndarray, landmarks68: np.ndarray, part: str = "both") -> tuple[float, float]:
    """(mean saturation 0..1, circular mean hue in degrees, -180..180) of the lip ring (``part``
    "both") or of one lip ("upper", "lower"); NaN, NaN when it holds fewer than 10 pixels."""
    ring = lip_ring(landmarks68, image.shape[:2]) if part == "both" else lip_part(landmarks68, image.shape[:2], part)
    if np.count_nonzero(ring) < 10:
        return float("nan"), float("nan")
    rows = np.flatnonzero(ring.any(axis=1))
    cols = np.flatnonzero(ring.any(axis=0))
    box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    hsv = cv2.cvtColor(image[box].astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)[ring[box]]
    angle = np.radians(hsv[:, 0])
    # Weighting the hue by saturation keeps near-grey pixels (teeth, highlights) from steering it.
    weight = hsv[:, 1]
    hue = math.degrees(math.atan2(float((weight * np.sin(angle)).sum()), float((weight * np.cos(angle)).sum())))
    return float(hsv[:, 1].mean()), hue


def mouth_expression(landmarks68: np.ndarray) -> tuple[float, float]:
    """(mouth width, corner lift), both over the inter-ocular distance; NaN, NaN for missing landmarks.

    Corner lift is positive when the corners sit above the midpoint of points 51 and 57 (the lips'
    centre line), measured along the face's vertical (perpendicular to the eye line), so head roll
    does not read as a smile.
    """
    points = check_landmarks(landmarks68, "landmarks68")
    if not np.all(np.isfinite(points)):
        return float("nan"), float("nan")
    iod = inter_ocular_distance(points)
    if not iod > 0:
        return float("nan"), float("nan")
    left, right = eye_centres(points)
    across = (right - left) / iod
    down = np.array([-across[1], across[0]])
    corners = (points[_LEFT_CORNER] + points[_RIGHT_CORNER]) / 2
    centre = (points[_UPPER_MID] + points[_LOWER_MID]) / 2
    width = float(np.hypot(*(points[_RIGHT_CORNER] - points[_LEFT_CORNER]))) / iod
    lift = float(np.dot(centre - corners, down)) / iod
    return width, lift


@dataclass(frozen=True)
class Spread:
    """A per-frame measure over the speaker's untouched frames: median and 5th..95th percentiles."""

    median: float
    low: float
    high: float

    @staticmethod
    def of(values: np.ndarray) -> Spread | None:
        finite = np.asarray(values, np.float64)
        finite = finite[np.isfinite(finite)]
        if len(finite) < 5:
            return None
        low, median, high = np.percentile(finite, (5, 50, 95))
        return Spread(float(median), float(low), float(high))

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def standardised(self, value: float) -> float:
        """(value - median) in units of half the 5..95 range (about 1.6 standard deviations)."""
        half_range = max((self.high - self.low) / 2, 1e-9)
        return (value - self.median) / half_range


def circular_median_offset(hues: np.ndarray, reference: float) -> np.ndarray:
    """Hues (degrees) as offsets from ``reference`` in -180..180, so red lips near 0/360 average."""
    return (np.asarray(hues, np.float64) - reference + 180.0) % 360.0 - 180.0


def lip_colour_summary(out_saturation: np.ndarray, out_hue: np.ndarray, src_saturation: np.ndarray,
                       src_hue: np.ndarray, patched: np.ndarray) -> dict | None:
    """The patched frames' lip colour against the speaker's untouched frames (per-frame arrays of
    ``lip_colour``): mean saturation and circular-mean hue of the patched frames, the untouched
    frames' median and 5..95 % ranges, and ``within`` both ranges. None when there are fewer than
    five untouched measurements or no patched one."""
    saturation = Spread.of(src_saturation)
    hues = src_hue[np.isfinite(src_hue)]
    patched = patched & np.isfinite(out_saturation)
    if saturation is None or len(hues) < 5 or not patched.any():
        return None
    reference = float(np.degrees(np.arctan2(np.sin(np.radians(hues)).mean(), np.cos(np.radians(hues)).mean())))
    hue = Spread.of(circular_median_offset(hues, reference))
    assert hue is not None
    out_hue = circular_median_offset(out_hue[patched], reference)
    mean_hue = float(np.degrees(np.arctan2(np.sin(np.radians(out_hue)).mean(), np.cos(np.radians(out_hue)).mean())))
    mean_saturation = float(out_saturation[patched].mean())
    outside = ~((out_saturation[patched] >= saturation.low) & (out_saturation[patched] <= saturation.high)
                & (out_hue >= hue.low) & (out_hue <= hue.high))
    source_hue = circular_median_offset(hues, reference)
    source_saturation = src_saturation[np.isfinite(src_hue)]
    source_outside = ~((source_saturation >= saturation.low) & (source_saturation <= saturation.high)
                       & (source_hue >= hue.low) & (source_hue <= hue.high))
    return {
        "frames": int(patched.sum()),
        # patched frames outside the ranges on their own, and the share of untouched ones that are
        # (by the ranges' definition about 10-20 %), to compare like with like
        "frames_outside": int(outside.sum()),
        "share_outside": float(outside.mean()),
        "source_share_outside": float(source_outside.mean()),
        "saturation": mean_saturation, "saturation_median": saturation.median,
        "saturation_low": saturation.low, "saturation_high": saturation.high,
        "hue": mean_hue, "hue_median": hue.median, "hue_low": hue.low, "hue_high": hue.high,
        "within": saturation.contains(mean_saturation) and hue.contains(mean_hue),
    }
