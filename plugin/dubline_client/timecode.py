"""Exact frame rates and SMPTE timecode: the one implementation the engine and the bridges share.

Standard library only (no grpc, no OTIO, no torch), so it loads in the engine, in Resolve's script
host and inside Blender alike. Rates are ``Fraction``s: 23.976 is exactly 24000/1001, and every
decimal spelling of an NTSC rate (a typed "29.97", a container's 2997/100, Resolve's "59.94 DF")
snaps to its exact rational. Frame counts run from 00:00:00:00. Every refusal is a
``TimecodeError`` (a ``ValueError``) whose message names the value; the engine re-raises it as its
own error classes, the bridges as theirs.

Drop-frame (29.97 and 59.94 only) keeps timecode close to wall-clock time by skipping the frame
*numbers* ;00 and ;01 (;00 to ;03 at 59.94) at the start of every minute except each tenth; no
frame is dropped. ``;`` (or ``,`` / ``.``) before the frames field marks drop-frame timecode.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

#: NTSC-family rates that decimal spellings (23.976, 29.97, ...) stand for.
NTSC_RATES: tuple[Fraction, ...] = tuple(Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120, 240))
#: How close (frames per second) a measured or typed rate must be to snap to an NTSC rate.
#: 24 vs 23.976 differ by 0.024, so this stays well below that.
NTSC_SNAP_TOLERANCE = 0.005
#: The only rates drop-frame timecode exists for: 29.97 and 59.94.
DROP_FRAME_RATES: tuple[Fraction, ...] = (Fraction(30000, 1001), Fraction(60000, 1001))
#: Highest rate accepted as a frame rate (anything above is a typo or a sample rate).
MAX_RATE = 1000

_TIMECODE = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})([:;.,])(\d{2,3})$")
_DROP_FRAME_MARK = re.compile(r"\s*(n?df)$", re.IGNORECASE)
#: A number as a person types it (``25``, ``29.97``, ``24000/1001``, ``-0.5``): no exponents, no
#: underscores, so ``1e999999999`` cannot make Fraction compute a billion-digit power.
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:/\d+)?$")
#: The longest number text taken: far past any real one, short of costly arithmetic.
MAX_NUMBER_TEXT = 40


class TimecodeError(ValueError):
    """A frame rate or timecode that makes no sense; the message says which and why."""


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


def parse_rate(value: str | int | float | Fraction) -> Fraction:
    """A frame rate from ``"25"``, ``"23.976"``, ``"29.97"``, ``"30fps"``, ``"24000/1001"``,
    ``"1350/61"``, a number or a Fraction; NTSC spellings become the exact rationals.

    Raises ``TimecodeError`` for anything that is not a finite rate in (0, 1000].
    """
    if isinstance(value, Fraction):
        rate = value
    elif isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise TimecodeError(f"frame rate {value!r} is not finite")
        rate = Fraction(value)
    else:
        cleaned = str(value).strip().lower().removesuffix("fps").strip()
        try:
            rate = plain_fraction(cleaned)
        except (ValueError, ZeroDivisionError):
            raise TimecodeError(f"frame rate {value!r} is not a number like 25, 29.97 or 24000/1001") from None
    if rate <= 0:
        raise TimecodeError(f"frame rate {value!r} must be positive")
    if rate > MAX_RATE:
        raise TimecodeError(f"frame rate {value!r} is implausibly high (over {MAX_RATE} fps)")
    return snap_rate(rate)


def plain_fraction(text: str) -> Fraction:
    """``Fraction(text)`` for plain numbers only (decimals or N/M); ValueError otherwise."""
    if len(text) > MAX_NUMBER_TEXT or not _NUMBER.match(text):
        raise ValueError(f"{text[:40]!r} is not a plain number")
    return Fraction(text)


def parse_rate_and_drop_frame(text: object) -> tuple[Fraction, bool]:
    """A rate as editing applications write it, with an optional drop-frame mark:
    ``"29.97 DF"`` -> (30000/1001, True), ``"25"`` or ``"29.97 NDF"`` -> (rate, False).

    The mark is only read here; whether the rate allows drop-frame is the caller's check
    (``is_drop_frame_rate``), since some tools mark clips that never show timecode.
    """
    raw = str(text if text is not None else "").strip()
    mark = _DROP_FRAME_MARK.search(raw)
    drop_frame = bool(mark) and mark.group(1).lower() == "df"
    return parse_rate(raw[: mark.start()] if mark else raw), drop_frame


def is_drop_frame_rate(rate: Fraction) -> bool:
    """True for 29.97 and 59.94, the rates SMPTE drop-frame timecode exists for."""
    return rate in DROP_FRAME_RATES


def timecode_base(rate: Fraction) -> int:
    """Frames per timecode second: the rate rounded (24 for 23.976, 30 for 29.97, 22 for 1350/61)."""
    return max(1, round(rate))


def _dropped_per_minute(rate: Fraction) -> int:
    return timecode_base(rate) // 15  # 2 at 29.97, 4 at 59.94


def frames_to_timecode(frame: int, rate: Fraction, drop_frame: bool = False) -> str:
    """Frame count from 00:00:00:00 -> ``HH:MM:SS:FF`` (``HH:MM:SS;FF`` when drop-frame).

    Hours keep counting past 23 (frame counts are not wrapped at midnight).
    """
    if frame < 0:
        raise TimecodeError(f"cannot express negative frame {frame} as a timecode")
    if drop_frame and not is_drop_frame_rate(rate):
        raise TimecodeError(f"drop-frame timecode needs 29.97 or 59.94 fps, not {rate}")
    base = timecode_base(rate)
    if drop_frame:
        # Renumber: skip `dropped` frame numbers at each minute that is not a multiple of ten.
        dropped = _dropped_per_minute(rate)
        per_ten_minutes = base * 600 - dropped * 9
        per_minute = base * 60 - dropped
        tens, rest = divmod(frame, per_ten_minutes)
        frame += dropped * 9 * tens
        if rest >= dropped:
            frame += dropped * ((rest - dropped) // per_minute)
    hours, rest = divmod(frame, base * 3600)
    minutes, rest = divmod(rest, base * 60)
    seconds, frames = divmod(rest, base)
    separator = ";" if drop_frame else ":"
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{frames:02d}"


def is_timecode(text: str) -> bool:
    """Whether ``text`` is shaped like ``HH:MM:SS:FF`` / ``HH:MM:SS;FF`` (fields not range-checked)."""
    return _TIMECODE.match(text.strip()) is not None


def parse_timecode(text: str) -> tuple[int, int, int, int, bool]:
    """Split ``HH:MM:SS:FF`` / ``HH:MM:SS;FF`` into (hours, minutes, seconds, frames, drop-frame)."""
    match = _TIMECODE.match(text.strip())
    if not match:
        raise TimecodeError(f"{text!r} is not a timecode like 00:00:04:20")
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
        raise TimecodeError(f"timecode {text!r} has a field out of range at {float(rate):.3f} fps")
    total = ((hours * 60 + minutes) * 60 + seconds) * base + frames
    if not drop:
        return total
    if not is_drop_frame_rate(rate):
        raise TimecodeError(f"drop-frame timecode {text!r} needs a 29.97 or 59.94 fps source, not {rate}")
    dropped = _dropped_per_minute(rate)
    if seconds == 0 and minutes % 10 != 0 and frames < dropped:
        raise TimecodeError(f"timecode {text!r} does not exist in drop-frame (those numbers are skipped)")
    total_minutes = hours * 60 + minutes
    return total - dropped * (total_minutes - total_minutes // 10)


def seconds_to_frame(seconds: int | float | Fraction | str, rate: Fraction) -> int:
    """Seconds -> nearest frame at ``rate`` (halves round up, so 0.02 s at 25 fps is frame 1).

    Give seconds exactly (a Fraction, an int or decimal text): a float is taken at its binary
    value, which can sit just below a half.
    """
    try:
        exact = Fraction(seconds)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise TimecodeError(f"{seconds!r} is not a number of seconds") from None
    return math.floor(exact * rate + Fraction(1, 2))
