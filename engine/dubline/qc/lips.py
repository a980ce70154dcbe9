"""What the mouth looks like: lip colour and expression, per frame, against the speaker's own frames.

Both are measured from 68-point landmarks (detected on the frame being measured) and compared with
the same measure over the speaker's untouched frames, so a render can be told "within the speaker's
own range" rather than against a fixed number:

- lip colour: mean saturation and circular-mean hue of the lip ring (outer lip polygon minus the
  inner one), in HSV of the frame's RGB;
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


def lip_ring(landmarks68: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool (H, W): inside the outer lip polygon and outside the inner one (the lips themselves)."""
    points = check_landmarks(landmarks68, "landmarks68")
    mask = np.zeros((int(shape[0]), int(shape[1])), np.uint8)
    if not np.all(np.isfinite(points)):
        return mask.astype(bool)
    cv2.fillPoly(mask, [np.round(points[OUTER_LIP] * 16).astype(np.int32)], 1, shift=4)
    cv2.fillPoly(mask, [np.round(points[INNER_LIP] * 16).astype(np.int32)], 0, shift=4)
    return mask.astype(bool)


def lip_colour(image: np.ndarray, landmarks68: np.ndarray) -> tuple[float, float]:
    """(mean saturation 0..1, circular mean hue in degrees, -180..180) of the lip ring; NaN, NaN
    when the ring holds fewer than 10 pixels."""
    ring = lip_ring(landmarks68, image.shape[:2])
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
