"""Per-speaker calibration: map target openness/width (0..1) onto this speaker's own mouth scale.

Inputs are the face stage's mouth descriptors of the source clip (inner-lip aperture / IOD and
mouth width / IOD per frame, NaN where there is no usable face) and the speech track of the
*clip's own audio* over the same frames. Both describe the same mouth movements, so matching their
distributions tells us what "openness 1" and "openness 0" look like on this face.

**Method: two-anchor quantile matching over speech frames.** The low and high quantiles (5th and
95th percentiles by default) of the target track are mapped linearly onto the same quantiles of
the measured descriptor. A least-squares fit would be the obvious choice, but phonetic targets
explain only part of the measured aperture (r ~ 0.3 on natural footage, DESIGN.md), and a
regression slope shrinks by that correlation, squashing the dub's mouth movements; quantile
matching keeps the speaker's full range. Percentiles instead of min/max ignore landmark outliers.
Mapped values are clipped to the speaker's observed range widened by ``range_margin`` (10 %),
because the line is extrapolated beyond the fitted quantiles (targets seldom reach 0 or 1).
The best audio-video lag within ``max_lag`` frames and the correlation there are reported as a
diagnostic (a low correlation says the targets are weakly related to this footage).

**Fallback.** With fewer than ``min_speech_frames`` usable speech frames, or no spread in either
track, typical adult values are used (aperture/IOD 0 closed .. 0.35 wide open; width/IOD 0.75
narrow .. 0.95 spread; dlib 68-point landmarks), and ``fallback_reason`` says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dubline.core.errors import InvalidInputError

if TYPE_CHECKING:
    from dubline.stages.speech.analyse import SpeechTrack


@dataclass(frozen=True)
class CalibrationParams:
    low_quantile: float = 0.05
    high_quantile: float = 0.95
    min_speech_frames: int = 25
    max_lag: int = 2
    #: Mapped values may exceed the speaker's observed range by this share of it.
    range_margin: float = 0.1
    #: Typical descriptor values at target 0 and 1 (used when the footage cannot tell).
    default_aperture: tuple[float, float] = (0.0, 0.35)
    default_width: tuple[float, float] = (0.75, 0.95)


@dataclass(frozen=True)
class LinearMap:
    """descriptor = at_zero + target * (at_one - at_zero), kept within [floor, ceiling]."""

    at_zero: float
    at_one: float
    floor: float = -np.inf
    ceiling: float = np.inf

    def __call__(self, target: np.ndarray) -> np.ndarray:
        value = self.at_zero + np.asarray(target, np.float64) * (self.at_one - self.at_zero)
        return np.clip(value, self.floor, self.ceiling).astype(np.float32)


@dataclass(frozen=True)
class SpeakerCalibration:
    aperture: LinearMap  # target openness -> inner-lip aperture / IOD
    width: LinearMap  # target width -> mouth width / IOD
    frames_used: int
    lag_frames: int  # video lags audio by this many frames at best correlation (diagnostic)
    correlation: float  # Pearson r of target openness and aperture at that lag (nan if unknown)
    fallback_reason: str | None = None

    def apply(self, openness: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Target openness/width tracks expressed in this speaker's descriptor units."""
        return self.aperture(openness), self.width(width)


def default_calibration(reason: str, params: CalibrationParams = CalibrationParams()) -> SpeakerCalibration:
    return SpeakerCalibration(
        LinearMap(*params.default_aperture), LinearMap(*params.default_width), 0, 0, float("nan"), reason
    )


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def best_lag(target: np.ndarray, measured: np.ndarray, max_lag: int) -> tuple[int, float]:
    """(lag, r): measured[i + lag] best matches target[i]; NaNs in either are skipped."""
    best = (0, float("nan"))
    for lag in range(-max_lag, max_lag + 1):
        a = target[max(0, -lag) : len(target) - max(0, lag)]
        b = measured[max(0, lag) : len(measured) - max(0, -lag)]
        ok = np.isfinite(a) & np.isfinite(b)
        r = _pearson(a[ok], b[ok])
        if np.isfinite(r) and not (np.isfinite(best[1]) and best[1] >= r):
            best = (lag, r)
    return best


def _quantile_map(
    target: np.ndarray, measured: np.ndarray, params: CalibrationParams
) -> LinearMap | None:
    qs = [params.low_quantile, params.high_quantile]
    t_lo, t_hi = np.quantile(target, qs)
    m_lo, m_hi = np.quantile(measured, qs)
    if t_hi - t_lo < 1e-3 or m_hi - m_lo <= 0:
        return None
    slope = (m_hi - m_lo) / (t_hi - t_lo)
    # Targets rarely span 0..1 (e.g. few fully spread or rounded frames), so the line extrapolates;
    # keep the result within what this speaker was seen to do, plus a margin.
    seen_lo, seen_hi = float(np.min(measured)), float(np.max(measured))
    margin = params.range_margin * (seen_hi - seen_lo)
    return LinearMap(
        float(m_lo - slope * t_lo), float(m_lo + slope * (1.0 - t_lo)), seen_lo - margin, seen_hi + margin
    )


def calibrate_speaker(
    aperture: np.ndarray,
    width: np.ndarray,
    clip_speech: SpeechTrack,
    params: CalibrationParams = CalibrationParams(),
) -> SpeakerCalibration:
    """Fit the speaker's mapping from the face stage's per-frame mouth descriptors of a span
    (NaN where the face is unusable) and ``analyse_speech`` of the clip's own audio over that span.
    """
    return fit_calibration(
        aperture, width, clip_speech.openness, clip_speech.width, clip_speech.voice_activity, params
    )


def fit_calibration(
    aperture: np.ndarray,
    width: np.ndarray,
    target_openness: np.ndarray,
    target_width: np.ndarray,
    voice_activity: np.ndarray,
    params: CalibrationParams = CalibrationParams(),
) -> SpeakerCalibration:
    """``calibrate_speaker`` on plain per-frame arrays of one length."""
    arrays = [np.asarray(a, np.float64) for a in (aperture, width, target_openness, target_width, voice_activity)]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
        raise InvalidInputError(
            "calibration needs per-frame arrays of one length; got shapes "
            + ", ".join(str(a.shape) for a in arrays)
        )
    aperture, width, target_openness, target_width, voice_activity = arrays
    lag, r = best_lag(target_openness, aperture, params.max_lag)
    # Fit on frames that are speech and have a face; shift the video by the lag found.
    shifted_aperture = np.full_like(aperture, np.nan)
    shifted_width = np.full_like(width, np.nan)
    src = slice(max(0, lag), len(aperture) + min(0, lag))
    dst = slice(max(0, -lag), len(aperture) - max(0, lag))
    shifted_aperture[dst], shifted_width[dst] = aperture[src], width[src]
    usable = (voice_activity > 0.5) & np.isfinite(shifted_aperture) & np.isfinite(shifted_width)
    count = int(usable.sum())
    if count < params.min_speech_frames:
        return default_calibration(
            f"only {count} speech frames with a usable face (need {params.min_speech_frames})", params
        )
    aperture_map = _quantile_map(target_openness[usable], shifted_aperture[usable], params)
    width_map = _quantile_map(target_width[usable], shifted_width[usable], params)
    if aperture_map is None or width_map is None:
        return default_calibration("no spread in the targets or the measured mouth over speech", params)
    # A closed mouth cannot have negative aperture, whatever the extrapolation says.
    aperture_map = LinearMap(
        max(aperture_map.at_zero, 0.0), aperture_map.at_one, max(aperture_map.floor, 0.0), aperture_map.ceiling
    )
    return SpeakerCalibration(aperture_map, width_map, count, lag, r)
