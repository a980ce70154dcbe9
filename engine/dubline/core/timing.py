"""The time model: exact rates, SMPTE timecode and the CLI's span syntax.

Every interface passes OTIO ``RationalTime``/``TimeRange``; this module converts between
those, frame numbers at a source's exact (rational) rate, and what editors type. Rates and SMPTE
timecode are ``dubline_client.timecode``'s (one implementation for the engine and the bridges);
the names here delegate to it and turn its ``TimecodeError`` into the engine's errors.

Span syntax (``parse_range``), always resolved against the source's real rate, end exclusive:

* ``120-245``                 frames 120..244
* ``00:00:04:20-00:00:09:20`` SMPTE timecode at the source rate; ``;`` before the frames field
                              means drop-frame (29.97 / 59.94 only). When the source carries a
                              start timecode, these are *record* timecodes (what the editor's
                              timeline shows) and are taken relative to it; otherwise they count
                              from the clip's first frame.
* ``4.8s-9.8s``               seconds, each end rounded to the nearest frame.
"""

from __future__ import annotations

import functools
import math
import re
from fractions import Fraction
from typing import Callable, TypeVar

import opentimelineio as otio
from dubline_client import timecode
from dubline_client.timecode import (
    NTSC_RATES,
    NTSC_SNAP_TOLERANCE,
    TimecodeError,
    is_drop_frame_rate,
    is_timecode,
    snap_rate,
    timecode_base,
)

from dubline.core.errors import InvalidInputError, InvalidRangeError, InvalidRateError

RationalTime = otio.opentime.RationalTime
TimeRange = otio.opentime.TimeRange

__all__ = [
    "NTSC_RATES", "NTSC_SNAP_TOLERANCE", "RationalTime", "TimeRange", "frames_to_range", "frames_to_timecode",
    "is_drop_frame_rate", "parse_range", "parse_rate", "parse_seconds", "parse_timecode", "range_to_frames",
    "seconds_of", "seconds_time", "seconds_to_frame", "snap_rate", "timecode_base", "timecode_to_frames",
]

#: The longest span text taken: far past any real one, short of costly arithmetic.
MAX_SPAN_TEXT = 200
_SECONDS = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)s$")
_FRAMES = re.compile(r"^\d+$")

_Function = TypeVar("_Function", bound=Callable)


def _raising(error_class: type[InvalidInputError]) -> Callable[[_Function], _Function]:
    """The client's ``TimecodeError`` re-raised as the engine's ``error_class`` (same message), so the
    CLI prints one line and the server maps it to INVALID_ARGUMENT."""

    def wrap(function: _Function) -> _Function:
        @functools.wraps(function)
        def delegate(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except TimecodeError as error:
                raise error_class(str(error)) from None

        return delegate  # type: ignore[return-value]

    return wrap


# SMPTE timecode and rate arithmetic live in dubline_client.timecode (shared with the bridges).
parse_rate = _raising(InvalidRateError)(timecode.parse_rate)
frames_to_timecode = _raising(InvalidInputError)(timecode.frames_to_timecode)
parse_timecode = _raising(InvalidRangeError)(timecode.parse_timecode)
timecode_to_frames = _raising(InvalidRangeError)(timecode.timecode_to_frames)
seconds_to_frame = _raising(InvalidInputError)(timecode.seconds_to_frame)


def frames_to_range(first: int, end: int, rate: Fraction) -> otio.opentime.TimeRange:
    """Frames ``[first, end)`` at ``rate`` as an OTIO TimeRange."""
    return TimeRange(RationalTime(first, float(rate)), RationalTime(end - first, float(rate)))


def range_to_frames(span: otio.opentime.TimeRange, rate: Fraction) -> tuple[int, int]:
    """An OTIO TimeRange -> frames ``(first, end)`` at ``rate``, end exclusive, rounded."""
    first = _to_frame(span.start_time, rate)
    end = first + _to_frame(span.duration, rate)
    return first, end


def _to_frame(time: otio.opentime.RationalTime, rate: Fraction) -> int:
    # value/time.rate seconds * rate; Fraction keeps 24000/1001 exact where floats would drift.
    exact = Fraction(time.value) * rate / Fraction(time.rate)
    return math.floor(exact + Fraction(1, 2))


def parse_range(
    text: str, rate: Fraction, start_timecode: str | None = None
) -> otio.opentime.TimeRange:
    """Parse a span typed by an editor (see the module docstring) into a TimeRange at ``rate``.

    Raises ``InvalidRangeError`` for unparsable, empty or reversed spans and for timecodes
    before the source's start timecode.
    """
    rate = parse_rate(rate)
    if len(text) > MAX_SPAN_TEXT:
        raise InvalidRangeError(f"span {text[:40]!r}... is {len(text)} characters; a span is START-END, like 120-245")
    parts = text.strip().split("-")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise InvalidRangeError(
            f"span {text!r} is not START-END (frames 120-245, timecode 00:00:04:20-00:00:09:20 or seconds 4.8s-9.8s)"
        )
    first, end = (_parse_point(part.strip(), rate, start_timecode, text) for part in parts)
    if end == first:
        raise InvalidRangeError(f"span {text!r} is empty (end is exclusive)")
    if end < first:
        raise InvalidRangeError(f"span {text!r} is reversed (frame {first} to frame {end})")
    return frames_to_range(first, end, rate)


def _parse_point(point: str, rate: Fraction, start_timecode: str | None, whole: str) -> int:
    if _FRAMES.match(point):
        return int(point)
    seconds = _SECONDS.match(point.lower())
    if seconds:
        return seconds_to_frame(Fraction(seconds.group(1)), rate)
    if is_timecode(point):
        if start_timecode is None:
            return timecode_to_frames(point, rate)
        # A clip whose start timecode is drop-frame numbers its record timecodes drop-frame,
        # even when the editor types colons.
        start_drop = parse_timecode(start_timecode)[4]
        point_drop = parse_timecode(point)[4] or (start_drop and is_drop_frame_rate(rate))
        frame = timecode_to_frames(point, rate, drop_frame=point_drop) - timecode_to_frames(
            start_timecode, rate
        )
        if frame < 0:
            raise InvalidRangeError(
                f"timecode {point} in span {whole!r} is before the clip's start timecode {start_timecode}"
            )
        return frame
    raise InvalidRangeError(
        f"{point!r} in span {whole!r} is not a frame number, a timecode (00:00:04:20) or seconds (4.8s)"
    )


def seconds_time(seconds: Fraction) -> otio.opentime.RationalTime:
    """Exact seconds as a RationalTime (value and rate are the Fraction's integers)."""
    seconds = Fraction(seconds)
    return RationalTime(seconds.numerator, seconds.denominator)


def seconds_of(time: otio.opentime.RationalTime) -> Fraction:
    """A RationalTime in exact seconds (its value and rate are integers or snapped rates)."""
    rate = Fraction(time.rate) if float(time.rate).is_integer() else parse_rate(time.rate)
    return Fraction(time.value) / rate


def parse_seconds(text: str | Fraction | int, field_name: str) -> otio.opentime.RationalTime:
    """A time typed in seconds (``0.48``, ``0.48s``, ``-1``) as an exact RationalTime."""
    if isinstance(text, (Fraction, int)):
        return seconds_time(Fraction(text))
    raw = text.strip()
    try:
        return seconds_time(timecode.plain_fraction(raw[:-1] if raw.endswith("s") else raw))
    except (ValueError, ZeroDivisionError):
        raise InvalidInputError(f"{field_name} {text!r} is not a number of seconds") from None
