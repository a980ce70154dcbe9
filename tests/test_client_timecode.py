"""dubline_client.timecode: the one implementation of exact rates and SMPTE timecode (engine and
bridges). Standard library only; checked here against OTIO's own drop-frame arithmetic."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import opentimelineio as otio
import pytest
from dubline_client import timecode
from dubline_client.timecode import (
    TimecodeError,
    frames_to_timecode,
    parse_rate,
    parse_rate_and_drop_frame,
    seconds_to_frame,
    snap_rate,
    timecode_to_frames,
)

NTSC30, NTSC60 = Fraction(30000, 1001), Fraction(60000, 1001)
DAY = 24 * 3600  # seconds


def test_the_module_needs_only_the_standard_library() -> None:
    code = ("import sys; import dubline_client.timecode, dubline_client.choices; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'google', 'opentimelineio', 'torch', 'dubline')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _day_of_frames(rate: Fraction) -> list[int]:
    """Frame counts over 24 hours: every minute boundary of the first 11 minutes and their
    neighbours, then a stride through the day that lands on every phase of the ten-minute cycle."""
    base = round(rate)
    per_minute = base * 60
    near_minutes = {m * per_minute + d for m in range(11) for d in range(-3, 5) if m * per_minute + d >= 0}
    total = int(DAY * rate)
    stride = range(0, total, 7919)  # a prime: many different positions within minutes and seconds
    return sorted(near_minutes | set(stride) | {total - 1})


@pytest.mark.parametrize("rate, dropped", [(NTSC30, 2), (NTSC60, 4)])
def test_drop_frame_round_trips_over_a_day(rate: Fraction, dropped: int) -> None:
    frames = _day_of_frames(rate)
    assert len(frames) > 300
    previous = None
    for frame in frames:
        text = frames_to_timecode(frame, rate, drop_frame=True)
        assert ";" in text and timecode_to_frames(text, rate) == frame, (frame, text)
        hours, minutes, seconds, number, drop = timecode.parse_timecode(text)
        # Numbers ;00 to ;01 (;03 at 59.94) never appear at second 0 of a minute that is not a tenth.
        assert not (seconds == 0 and minutes % 10 and number < dropped), text
        assert previous is None or text > previous  # the labels keep their order across the day
        previous = text
    # What drop-frame is for: after a day its labels are within 0.1 s of the clock (non-drop: 86.4 s).
    labelled_day = Fraction(timecode_to_frames("24:00:00;00", rate)) / rate
    assert abs(labelled_day - DAY) < Fraction(1, 10)
    assert abs(Fraction(timecode_to_frames("24:00:00:00", rate)) / rate - DAY) > 86


@pytest.mark.parametrize("rate, otio_rate", [(NTSC30, 29.97), (NTSC60, 59.94)])
def test_drop_frame_matches_otio(rate: Fraction, otio_rate: float) -> None:
    for frame in _day_of_frames(rate)[::25]:
        theirs = otio.opentime.to_timecode(otio.opentime.RationalTime(frame, otio_rate), otio_rate, True)
        assert frames_to_timecode(frame, rate, True) == theirs, frame


def test_non_drop_timecode() -> None:
    assert frames_to_timecode(90000, Fraction(25)) == "01:00:00:00"
    assert frames_to_timecode(86400 * 24, Fraction(24000, 1001)) == "24:00:00:00"  # counts past midnight
    assert timecode_to_frames("00:00:01:00", Fraction(24000, 1001)) == 24
    for frame in range(0, 30 * 3600 * 24, 99991):
        assert timecode_to_frames(frames_to_timecode(frame, NTSC30), NTSC30) == frame


@pytest.mark.parametrize("value, expected", [
    ("23.976", Fraction(24000, 1001)), ("23.98", Fraction(24000, 1001)), ("29.97", NTSC30), (29.97, NTSC30),
    ("59.94", NTSC60), ("47.952", Fraction(48000, 1001)), ("119.88", Fraction(120000, 1001)),
    ("239.76", Fraction(240000, 1001)), (Fraction(2997, 100), NTSC30), ("30000/1001", NTSC30),
    ("25", Fraction(25)), (25, Fraction(25)), ("25.000", Fraction(25)), ("24fps", Fraction(24)),
    ("1350/61", Fraction(1350, 61)), (Fraction(24.000001), Fraction(24)), ("12.5", Fraction(25, 2)),
])
def test_rates_snap_to_exact_rationals(value, expected: Fraction) -> None:
    assert parse_rate(value) == expected


def test_snapping_keeps_integer_rates_apart_from_ntsc() -> None:
    assert snap_rate(Fraction(24)) == 24 and snap_rate(Fraction(30)) == 30 and snap_rate(Fraction(60)) == 60
    assert snap_rate(Fraction(2398, 100)) == Fraction(24000, 1001)
    assert snap_rate(Fraction(1350, 61)) == Fraction(1350, 61)  # no standard rate near it


@pytest.mark.parametrize("text, expected", [
    ("29.97 DF", (NTSC30, True)), ("59.94DF", (NTSC60, True)), ("29.97 df", (NTSC30, True)),
    ("29.97 NDF", (NTSC30, False)), ("29.97", (NTSC30, False)), ("25", (Fraction(25), False)),
])
def test_rates_with_a_drop_frame_mark(text: str, expected) -> None:
    assert parse_rate_and_drop_frame(text) == expected


@pytest.mark.parametrize("value", ["", "abc", "0", "-25", "25/0", "nan", "inf", "1e9", "25-30", None, float("nan"),
                                   float("inf"), "DF"])
def test_bad_rates(value) -> None:
    with pytest.raises(TimecodeError) as info:
        parse_rate_and_drop_frame(value) if value in (None, "DF") else parse_rate(value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("call", [
    lambda: frames_to_timecode(-1, Fraction(25)),
    lambda: frames_to_timecode(10, Fraction(25), drop_frame=True),
    lambda: timecode_to_frames("00:01:00;00", NTSC30),          # skipped number
    lambda: timecode_to_frames("00:01:00;03", NTSC60),          # skipped number at 59.94
    lambda: timecode_to_frames("00:00:01;00", Fraction(25)),    # drop-frame needs 29.97 / 59.94
    lambda: timecode_to_frames("00:00:00:25", Fraction(25)),    # frames field out of range
    lambda: timecode_to_frames("00:60:00:00", Fraction(25)),
    lambda: timecode_to_frames("1:2:3", Fraction(25)),
    lambda: seconds_to_frame("soon", Fraction(25)),
])
def test_bad_timecodes(call) -> None:
    with pytest.raises(TimecodeError):
        call()


def test_seconds_to_frame_rounds_halves_up() -> None:
    assert seconds_to_frame(Fraction(1, 50), Fraction(25)) == 1
    assert seconds_to_frame("4.8", Fraction(25)) == 120
    assert seconds_to_frame(1, NTSC30) == 30
