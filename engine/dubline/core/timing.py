"""The time model: exact rates, SMPTE timecode and the CLI's span syntax.

Every interface passes OTIO ``RationalTime``/``TimeRange``; this module converts between
those, frame numbers at a source's exact (rational) rate, and what editors type.

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

import math
import re
from fractions import Fraction

import opentimelineio as otio

from dubline.core.errors import InvalidInputError, InvalidRangeError, InvalidRateError

RationalTime = otio.opentime.RationalTime
TimeRange = otio.opentime.TimeRange

#: NTSC-family rates that decimal spellings (23.976, 29.97, ...) stand for.
NTSC_RATES: tuple[Fraction, ...] = tuple(Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120, 240))
#: How close (frames per second) a measured or typed rate must be to snap to an NTSC rate.
#: 24 vs 23.976 differ by 0.024, so this stays well below that.
NTSC_SNAP_TOLERANCE = 0.005

_TIMECODE = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})([:;.,])(\d{2,3})$")
#: A number as a person types it (``25``, ``29.97``, ``24000/1001``, ``-0.5``): no exponents, no
#: underscores, so ``1e999999999`` cannot make Fraction compute a billion-digit power.
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:/\d+)?$")
#: The longest number or span text taken: far past any real one, short of costly arithmetic.
MAX_NUMBER_TEXT = 40
MAX_SPAN_TEXT = 200
_SECONDS = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)s$")
_FRAMES = re.compile(r"^\d+$")


def snap_rate(rate: Fraction) -> Fraction:
    """Replace a rate that is within tolerance of an NTSC rate (or an integer) by that rate.

    Containers often store 29.97 as 2997/100 or as a ratio of large integers; everything
    downstream (timecode, frame indices) needs the exact 30000/1001.
    """
    for ntsc in NTSC_RATES:
        if abs(float(rate) - float(ntsc)) < NTSC_SNAP_TOLERANCE:
            return ntsc
    nearest_integer = round(rate)
    if nearest_integer > 0 and abs(float(rate) - nearest_integer) < 1e-4:
        return Fraction(nearest_integer)
    return rate


def parse_rate(text: str | float | Fraction) -> Fraction:
    """Parse a frame rate: ``"25"``, ``"23.976"``, ``"29.97"``, ``"24000/1001"``, ``"1350/61"``.

    Decimal spellings of NTSC rates become the exact rationals. Raises ``InvalidRateError``
    for anything that is not a finite positive rate.
    """
    if isinstance(text, Fraction):
        rate = text
    elif isinstance(text, (int, float)):
        if not math.isfinite(text):
            raise InvalidRateError(f"frame rate {text!r} is not finite")
        rate = Fraction(text)
    else:
        cleaned = str(text).strip().lower().removesuffix("fps").strip()
        try:
            rate = _fraction(cleaned)
        except (ValueError, ZeroDivisionError):
            raise InvalidRateError(
                f"frame rate {text!r} is not a number like 25, 29.97 or 24000/1001"
            ) from None
    if rate <= 0:
        raise InvalidRateError(f"frame rate {text!r} must be positive")
    if rate > 1000:
        raise InvalidRateError(f"frame rate {text!r} is implausibly high (over 1000 fps)")
    return snap_rate(rate)


def _fraction(text: str) -> Fraction:
    """``Fraction(text)`` for plain numbers only (ValueError otherwise)."""
    if len(text) > MAX_NUMBER_TEXT or not _NUMBER.match(text):
        raise ValueError(text)
    return Fraction(text)


def is_drop_frame_rate(rate: Fraction) -> bool:
    """True for 29.97 and 59.94, the rates SMPTE drop-frame timecode exists for."""
    return rate in (Fraction(30000, 1001), Fraction(60000, 1001))


def timecode_base(rate: Fraction) -> int:
    """Frames per timecode second: the rate rounded (24 for 23.976, 30 for 29.97, 22 for 1350/61)."""
    return max(1, round(rate))


def _drop_per_minute(rate: Fraction) -> int:
    return timecode_base(rate) // 15  # 2 at 29.97, 4 at 59.94


def frames_to_timecode(frame: int, rate: Fraction, drop_frame: bool = False) -> str:
    """Frame count from 00:00:00:00 -> ``HH:MM:SS:FF`` (``HH:MM:SS;FF`` when drop-frame)."""
    if frame < 0:
        raise InvalidInputError(f"cannot express negative frame {frame} as a timecode")
    if drop_frame and not is_drop_frame_rate(rate):
        raise InvalidInputError(f"drop-frame timecode needs 29.97 or 59.94 fps, not {rate}")
    base = timecode_base(rate)
    if drop_frame:
        # Renumber: skip `drop` frame numbers at each minute that is not a multiple of ten.
        drop = _drop_per_minute(rate)
        per_ten_minutes = base * 600 - drop * 9
        per_minute = base * 60 - drop
        tens, rest = divmod(frame, per_ten_minutes)
        frame += drop * 9 * tens
        if rest >= drop:
            frame += drop * ((rest - drop) // per_minute)
    frames = frame % base
    seconds = (frame // base) % 60
    minutes = (frame // (base * 60)) % 60
    hours = frame // (base * 3600)
    separator = ";" if drop_frame else ":"
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{frames:02d}"


def parse_timecode(text: str) -> tuple[int, int, int, int, bool]:
    """Split ``HH:MM:SS:FF`` / ``HH:MM:SS;FF`` into fields and a drop-frame flag."""
    match = _TIMECODE.match(text.strip())
    if not match:
        raise InvalidRangeError(f"{text!r} is not a timecode like 00:00:04:20")
    hours, minutes, seconds, separator, frames = match.groups()
    return int(hours), int(minutes), int(seconds), int(frames), separator in ";,."


def timecode_to_frames(text: str, rate: Fraction, drop_frame: bool | None = None) -> int:
    """``HH:MM:SS:FF`` at ``rate`` -> frame count from 00:00:00:00.

    ``drop_frame=None`` takes drop-frame from the separator (``;`` means drop-frame).
    """
    hours, minutes, seconds, frames, separator_says_drop = parse_timecode(text)
    drop = separator_says_drop if drop_frame is None else drop_frame
    base = timecode_base(rate)
    if minutes > 59 or seconds > 59 or frames >= base:
        raise InvalidRangeError(f"timecode {text!r} has a field out of range at {float(rate):.3f} fps")
    total = ((hours * 60 + minutes) * 60 + seconds) * base + frames
    if not drop:
        return total
    if not is_drop_frame_rate(rate):
        raise InvalidRangeError(f"drop-frame timecode {text!r} needs a 29.97 or 59.94 fps source, not {rate}")
    dropped = _drop_per_minute(rate)
    if seconds == 0 and minutes % 10 != 0 and frames < dropped:
        raise InvalidRangeError(f"timecode {text!r} does not exist in drop-frame (those numbers are skipped)")
    total_minutes = hours * 60 + minutes
    return total - dropped * (total_minutes - total_minutes // 10)


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


def seconds_to_frame(seconds: float | Fraction, rate: Fraction) -> int:
    """Seconds -> nearest frame at ``rate`` (halves round up, so 0.02 s at 25 fps is frame 1)."""
    return math.floor(Fraction(seconds) * rate + Fraction(1, 2))


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
    if _TIMECODE.match(point):
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
        return seconds_time(_fraction(raw[:-1] if raw.endswith("s") else raw))
    except (ValueError, ZeroDivisionError):
        raise InvalidInputError(f"{field_name} {text!r} is not a number of seconds") from None
