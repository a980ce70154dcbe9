"""Variable frame rate, conformed the way an editor conforms it: one nominal grid, each slot
showing the frame on screen at that time.

The nominal rate (``nominal_rate``), one rule for every entry point (probe, read_span and so
render, analyse, qc, the engine and ``dubline otio``):

1. the frame durations are the steps between consecutive presentation timestamps (of the packets
   that are shown: an edit list's discarded packets are not frames);
2. the typical duration is their median (gaps, where a phone skipped frames, are rarer than
   regular steps);
3. each step counts as a whole number of frame durations, step / typical rounded (a gap counts
   as several, a doubled frame as none), which numbers every frame's slot; the measured duration
   is the least-squares slope of the timestamps over those numbers, so jitter averages out over
   every frame of the clip;
4. the nominal rate is the standard rate nearest 1 / measured duration when within 1 %
   (23.976, 24, 25, 29.97, 30, 48, 50, 59.94, 60, 90, 100, 119.88, 120, 240), otherwise
   1 / measured duration rounded to 1/100 fps.

Slot k (time k / rate after the first frame) shows the last frame whose timestamp is at or before
the middle of the slot, (k + 1/2) / rate: jitter below half a frame moves no frame; a gap holds
the frame before it; two frames in one slot drop the earlier. The grid ends with the slot that
holds the last frame.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from dubline.stages.media.types import Conform

STANDARD_RATES = tuple(
    Fraction(r) for r in ("24000/1001", "24", "25", "30000/1001", "30", "48", "50", "60000/1001", "60", "90", "100",
                          "120000/1001", "120", "240")
)
_SNAP_TOLERANCE = 0.01


def nominal_rate(pts: np.ndarray, time_base: Fraction) -> Fraction:
    """The conform rate of frames at sorted, distinct ``pts`` (see the module docstring)."""
    steps = np.diff(pts).astype(np.float64) * float(time_base)
    steps = steps[steps > 0]
    if not len(steps) or len(steps) != len(pts) - 1:
        raise ValueError("a variable frame rate needs at least two frames with distinct timestamps")
    typical = float(np.median(steps))
    seconds = (pts - pts[0]).astype(np.float64) * float(time_base)
    slots = np.concatenate([[0.0], np.cumsum(np.rint(np.diff(seconds) / typical))])
    if slots[-1] <= 0:
        raise ValueError("a variable frame rate needs frames at least half a frame apart")
    centred = slots - slots.mean()
    measured = float((centred * centred).sum() / (centred * (seconds - seconds.mean())).sum())
    nearest = min(STANDARD_RATES, key=lambda rate: abs(float(rate) - measured))
    if abs(float(nearest) / measured - 1.0) <= _SNAP_TOLERANCE:
        return nearest
    return Fraction(round(measured * 100), 100)


def conform(pts: np.ndarray, time_base: Fraction, rate: Fraction | None = None) -> Conform:
    """The slot grid of frames at sorted, distinct ``pts`` at ``rate`` (default ``nominal_rate``)."""
    pts = np.asarray(pts, dtype=np.int64)
    rate = rate if rate is not None else nominal_rate(pts, time_base)
    start = int(pts[0])
    # Slot of the last frame: floor((last - start) * rate + 1/2), exactly.
    last_slot = math.floor(Fraction(int(pts[-1]) - start) * time_base * rate + Fraction(1, 2))
    slots = np.arange(last_slot + 1, dtype=np.int64)
    # Middle of slot k in ticks is (k + 1/2) / (rate * time_base); the frame shown is the last one
    # at or before it (exact integer arithmetic: k2 = 2k + 1 halves).
    ticks_per_frame = Fraction(1) / (rate * time_base)
    numerator, denominator = ticks_per_frame.numerator, ticks_per_frame.denominator
    middles = start + ((2 * slots + 1) * numerator) // (2 * denominator)
    shown = np.searchsorted(pts, middles, side="right") - 1
    shown = np.maximum(shown, 0)
    distinct = len(np.unique(shown))
    held = int(len(slots) - distinct)
    dropped = int(len(pts) - distinct)
    return Conform(rate=rate, source_frames=len(pts), held=held, dropped=dropped, slot_pts=pts[shown], source_pts=pts)


def scan_pts(container, stream) -> np.ndarray:
    """Sorted, distinct presentation timestamps of every packet of ``stream`` that is shown (demuxed,
    not decoded; packets an edit list discards are left out); the container is left at the
    stream's start."""
    found = [packet.pts for packet in container.demux(stream)
             if packet.pts is not None and packet.size and not packet.is_discard]
    container.seek(stream.start_time or 0, stream=stream)
    return np.unique(np.asarray(found, dtype=np.int64))
