"""Frames on an editor's timeline: OTIO's float rates snapped to exact rationals, times as exact
seconds, whole frames at a rate, and record timecodes (drop-frame where the timeline counts so).

OTIO stores 29.97 as 29.97002997002997; ``timing.parse_rate`` snaps it back to 30000/1001 before
any frame is counted, so NTSC timelines never drift.
"""

from __future__ import annotations

import math
from fractions import Fraction

import opentimelineio as otio

from dubline.core import timing

RationalTime = otio.opentime.RationalTime
TimeRange = otio.opentime.TimeRange


def exact_rate(time: RationalTime) -> Fraction:
    return timing.parse_rate(time.rate)


def seconds(time: RationalTime) -> Fraction:
    """``time`` in exact seconds (its float rate snapped to the rational it stands for)."""
    return Fraction(time.value) / exact_rate(time)


def frame_at(instant: Fraction, rate: Fraction) -> int:
    """The frame at ``rate`` nearest to ``instant`` seconds (halves round up)."""
    return math.floor(instant * rate + Fraction(1, 2))


def to_frames(time: RationalTime, rate: Fraction) -> int:
    """``time`` in whole frames at ``rate``, exactly."""
    return frame_at(seconds(time), rate)


def timeline_time(frames: int, rate: Fraction) -> RationalTime:
    return RationalTime(frames, float(rate))


def tc(frame: int, rate: Fraction, drop_frame: bool = False) -> str:
    return timing.frames_to_timecode(frame, rate, drop_frame=drop_frame)


def tc_range(frames: tuple[int, int], rate: Fraction, drop_frame: bool = False) -> str:
    """``HH:MM:SS:FF-HH:MM:SS:FF`` (end exclusive, as ``--range`` takes it; ``;`` when drop-frame)."""
    return f"{tc(frames[0], rate, drop_frame)}-{tc(frames[1], rate, drop_frame)}"


def rate_text(rate: Fraction) -> str:
    """``30``, ``29.97``, ``23.976``: how editors say a rate."""
    return f"{float(rate):.3f}".rstrip("0").rstrip(".")


def fraction_text(rate: Fraction) -> str:
    return f"{rate.numerator}/{rate.denominator}"


def first_few(items: list[str], shown: int, separator: str = ", ") -> str:
    """The first ``shown`` items, then "and N more": error lines stay short on a 1000-clip reel."""
    head = separator.join(items[:shown])
    rest = len(items) - shown
    return f"{head} and {rest} more" if rest > 0 else head
