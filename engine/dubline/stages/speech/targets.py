"""Per-frame target mouth states from timed phones, with coarticulation and VAD silences.

**Coarticulation** uses dominance functions (Cohen & Massaro 1993, "Modeling coarticulation in
synthetic visual speech"): every viseme gesture (a phone, or half a diphthong) has a target mouth
state and a dominance that is full inside the gesture and decays exponentially outside it,
``D(t) = a * exp(-gap / tau)``, where ``gap`` is the distance to the gesture's nearest edge. The
mouth at time t is the dominance-weighted mean of all targets. The decay is asymmetric: slower
*before* a gesture (``anticipation_s``, 50 ms) than after it (``carryover_s``, 30 ms), because
lips move towards an upcoming sound earlier than they linger on a past one (anticipatory
coarticulation: lip rounding starts well ahead of a rounded vowel). The result is continuous in
time, and a short phone between two frame centres still pulls on both.

**Closures are reached.** A bilabial (P B M) is the lip event viewers notice when it is missed:
the lips touch for the whole closure, however strongly the neighbouring vowels pull. So frames
whose centre lies inside a closure get the closure target exactly, and so does the frame nearest
each closure's midpoint (at 25 fps a 30 ms /p/ may fall between frame centres).

**Silence.** Outside the VAD's speech segments, phones are replaced by the resting mouth with a high
dominance (``silence_dominance``), so silences give a closed, relaxed mouth, and the mouth opens
slightly ahead of speech onsets (speakers part their lips before phonation).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple, Sequence

import numpy as np

from dubline.stages.speech.phones import PhoneSegment
from dubline.stages.speech.visemes import (
    CLOSURE_VISEMES,
    DIPHTHONG_SPLIT,
    REST,
    VISEMES,
    visemes_of,
)


@dataclass(frozen=True)
class CoarticulationParams:
    anticipation_s: float = 0.05
    carryover_s: float = 0.03
    #: Dominance of the resting mouth in VAD silences (vowels have 1).
    silence_dominance: float = 3.0
    #: A gesture's influence is cut where it has decayed below exp(-reach) of its peak.
    reach: float = 8.0


class Gesture(NamedTuple):
    viseme: str
    start_s: float
    end_s: float
    dominance: float


@dataclass(frozen=True)
class FrameTargets:
    """Target mouth state per output frame (float32 arrays of frame_count) and the viseme at each centre."""

    openness: np.ndarray
    width: np.ndarray
    rounding: np.ndarray
    closure: np.ndarray
    viseme: np.ndarray  # str, the gesture under the frame centre (REST in silence)


def frame_centres(rate: Fraction, frame_count: int) -> np.ndarray:
    """Seconds of each frame's centre, frame 0 starting at t = 0."""
    return (np.arange(frame_count, dtype=np.float64) + 0.5) * float(1 / Fraction(rate))


def phone_gestures(phones: Sequence[PhoneSegment]) -> list[Gesture]:
    """Viseme gestures of a phone sequence (diphthongs become two)."""
    gestures: list[Gesture] = []
    for phone, start, end in phones:
        names = visemes_of(phone)
        if len(names) == 1:
            bounds = [(start, end)]
        else:
            middle = start + DIPHTHONG_SPLIT * (end - start)
            bounds = [(start, middle), (middle, end)]
        for name, (s, e) in zip(names, bounds):
            gestures.append(Gesture(name, s, e, VISEMES[name].dominance))
    return gestures


def _silences(speech: Sequence[tuple[float, float]], duration_s: float) -> list[tuple[float, float]]:
    gaps, cursor = [], 0.0
    for start, end in sorted(speech):
        if start > cursor:
            gaps.append((cursor, min(start, duration_s)))
        cursor = max(cursor, end)
    if cursor < duration_s:
        gaps.append((cursor, duration_s))
    return [(s, e) for s, e in gaps if e > s]


def speech_gestures(
    phones: Sequence[PhoneSegment],
    speech: Sequence[tuple[float, float]],
    duration_s: float,
    params: CoarticulationParams = CoarticulationParams(),
) -> list[Gesture]:
    """Phone gestures kept only inside VAD speech, plus strong rest gestures over every silence."""
    gestures: list[Gesture] = []
    for gesture in phone_gestures(phones):
        for s, e in speech:
            start, end = max(gesture.start_s, s), min(gesture.end_s, e)
            if end > start:
                gestures.append(gesture._replace(start_s=start, end_s=end))
    for start, end in _silences(speech, duration_s):
        gestures.append(Gesture(REST, start, end, params.silence_dominance))
    return sorted(gestures, key=lambda g: g.start_s)


def blend_gestures(
    gestures: Sequence[Gesture],
    times: np.ndarray,
    params: CoarticulationParams = CoarticulationParams(),
) -> FrameTargets:
    """Dominance-weighted mouth state at each time (rest where no gesture reaches)."""
    n = times.shape[0]
    weight = np.zeros(n)
    weighted = np.zeros((n, 4))
    label = np.full(n, REST, dtype=object)
    for g in gestures:
        # Only the frames this gesture can still influence (keeps long audio linear in length).
        lo = np.searchsorted(times, g.start_s - params.reach * params.anticipation_s)
        hi = np.searchsorted(times, g.end_s + params.reach * params.carryover_s, side="right")
        if hi <= lo:
            continue
        t = times[lo:hi]
        gap = np.where(
            t < g.start_s,
            (g.start_s - t) / params.anticipation_s,
            np.where(t > g.end_s, (t - g.end_s) / params.carryover_s, 0.0),
        )
        dominance = g.dominance * np.exp(-gap)
        target = VISEMES[g.viseme].target
        weight[lo:hi] += dominance
        weighted[lo:hi] += dominance[:, None] * np.array(
            [target.openness, target.width, target.rounding, target.closure]
        )
        inside = (t >= g.start_s) & (t < g.end_s)
        label[lo:hi][inside] = g.viseme
    rest = VISEMES[REST].target
    rest_state = np.array([rest.openness, rest.width, rest.rounding, rest.closure])
    state = np.where(weight[:, None] > 0, weighted / np.maximum(weight, 1e-300)[:, None], rest_state)
    for g in gestures:
        if g.viseme in CLOSURE_VISEMES and n:
            held = (times >= g.start_s) & (times < g.end_s)
            held[int(np.argmin(np.abs(times - 0.5 * (g.start_s + g.end_s))))] = True
            target = VISEMES[g.viseme].target
            state[held] = [target.openness, target.width, target.rounding, target.closure]
            label[held] = g.viseme
    state = state.astype(np.float32)
    return FrameTargets(state[:, 0], state[:, 1], state[:, 2], state[:, 3], label.astype(str))


def frame_targets(
    phones: Sequence[PhoneSegment],
    speech: Sequence[tuple[float, float]],
    *,
    rate: Fraction,
    frame_count: int,
    params: CoarticulationParams = CoarticulationParams(),
) -> FrameTargets:
    """Target mouth state per output frame; frame 0 starts at t = 0 of the phones' clock."""
    duration_s = float(frame_count / Fraction(rate))
    gestures = speech_gestures(phones, speech, duration_s, params)
    return blend_gestures(gestures, frame_centres(rate, frame_count), params)


def openness_track(
    phones: Sequence[PhoneSegment],
    *,
    rate: Fraction,
    frame_count: int,
    smoothing_s: float = 0.04,
) -> np.ndarray:
    """The phonetic openness track for QC sync (PAC): phones -> openness 0..1, lightly smoothed.

    Each phone's viseme openness is laid out on a 1 ms grid, smoothed with a Gaussian of
    ``smoothing_s`` (the lips cannot follow 10 ms phone boundaries), and read at frame centres.
    It uses the phones alone (no VAD, no dominance weights) so QC scores any audio the same way.
    """
    from scipy.ndimage import gaussian_filter1d

    step = 0.001
    duration_s = float(frame_count / Fraction(rate))
    grid = np.zeros(int(np.ceil(duration_s / step)) + 1)
    for gesture in phone_gestures(phones):
        lo, hi = int(round(gesture.start_s / step)), int(round(gesture.end_s / step))
        grid[lo:hi] = VISEMES[gesture.viseme].target.openness
    if smoothing_s > 0:
        grid = gaussian_filter1d(grid, smoothing_s / step, mode="nearest")
    times = frame_centres(rate, frame_count)
    return np.interp(times, np.arange(grid.shape[0]) * step, grid).astype(np.float32)
