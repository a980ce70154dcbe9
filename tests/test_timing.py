from __future__ import annotations

from fractions import Fraction

import opentimelineio as otio
import pytest
from dubline.core.errors import (
    DublineError,
    InvalidInputError,
    InvalidRangeError,
    InvalidRateError,
)
from dubline.core.timing import (
    frames_to_range,
    frames_to_timecode,
    parse_range,
    parse_rate,
    range_to_frames,
    timecode_to_frames,
)

NTSC30 = Fraction(30000, 1001)
NTSC24 = Fraction(24000, 1001)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("25", Fraction(25)),
        ("23.976", NTSC24),
        ("23.98", NTSC24),
        ("29.97", NTSC30),
        ("59.94", Fraction(60000, 1001)),
        ("24000/1001", NTSC24),
        ("1350/61", Fraction(1350, 61)),
        ("24", Fraction(24)),
        (" 12.5 ", Fraction(25, 2)),
        ("30fps", Fraction(30)),
        (Fraction(2997, 100), NTSC30),
    ],
)
def test_parse_rate(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "0", "-25", "25/0", "nan", "inf", "1e9", "25-30"])
def test_parse_rate_rejects_nonsense(text):
    with pytest.raises(InvalidRateError) as info:
        parse_rate(text)
    assert isinstance(info.value, DublineError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("rate", [Fraction(25), NTSC24, NTSC30, Fraction(60), Fraction(1350, 61)])
def test_frames_range(rate):
    span = parse_range("120-245", rate)
    assert range_to_frames(span, rate) == (120, 245)
    assert span.duration.value == 125
    assert span.start_time.rate == pytest.approx(float(rate))


def test_timecode_range_non_drop():
    span = parse_range("00:00:04:20-00:00:09:20", Fraction(25))
    assert range_to_frames(span, Fraction(25)) == (120, 245)
    # 23.976 counts 24 frames per timecode second.
    assert range_to_frames(parse_range("00:00:01:00-00:00:02:00", NTSC24), NTSC24) == (24, 48)


def test_timecode_range_relative_to_start_timecode():
    span = parse_range("01:00:04:20-01:00:09:20", Fraction(25), start_timecode="01:00:00:00")
    assert range_to_frames(span, Fraction(25)) == (120, 245)
    with pytest.raises(InvalidRangeError, match="before the clip's start timecode"):
        parse_range("00:00:04:20-00:00:09:20", Fraction(25), start_timecode="01:00:00:00")


def test_drop_frame_timecode_matches_otio():
    for frame in (0, 1, 1799, 1800, 1801, 17981, 17982, 107892, 123456):
        ours = frames_to_timecode(frame, NTSC30, drop_frame=True)
        theirs = otio.opentime.to_timecode(otio.opentime.RationalTime(frame, 29.97), 29.97, True)
        assert ours == theirs, frame
        assert timecode_to_frames(ours, NTSC30) == frame
    assert frames_to_timecode(1800, NTSC30, drop_frame=True) == "00:01:00;02"
    assert frames_to_timecode(3600, Fraction(60000, 1001), drop_frame=True) == "00:01:00;04"


def test_drop_frame_range_and_start_timecode():
    span = parse_range("00:01:00;02-00:01:00;12", NTSC30)
    assert range_to_frames(span, NTSC30) == (1800, 1810)
    # Colons typed against a drop-frame clip are read as drop-frame record timecode.
    span = parse_range("00:01:00:02-00:01:00:12", NTSC30, start_timecode="00:00:00;00")
    assert range_to_frames(span, NTSC30) == (1800, 1810)
    with pytest.raises(InvalidRangeError, match="does not exist"):
        timecode_to_frames("00:01:00;00", NTSC30)
    with pytest.raises(InvalidRangeError, match="29.97"):
        parse_range("00:00:01;00-00:00:02;00", Fraction(25))


def test_seconds_range_rounds_to_frames():
    assert range_to_frames(parse_range("4.8s-9.8s", Fraction(25)), Fraction(25)) == (120, 245)
    assert range_to_frames(parse_range("1s-2s", NTSC30), NTSC30) == (30, 60)
    assert range_to_frames(parse_range("0s-.5s", Fraction(1350, 61)), Fraction(1350, 61)) == (0, 11)


@pytest.mark.parametrize(
    "text",
    ["", "120", "120-", "-120", "245-120", "120-120", "abc-def", "1-2-3", "00:00:99:00-00:01:00:00", "0-00:00:01:30"],
)
def test_bad_ranges(text):
    with pytest.raises(InvalidRangeError) as info:
        parse_range(text, Fraction(25))
    assert isinstance(info.value, ValueError)


def test_range_round_trip_through_other_rates():
    # A span expressed at 48 kHz (e.g. from audio) still maps to the right frames at 24000/1001.
    span = frames_to_range(100, 200, NTSC24)
    rescaled = otio.opentime.TimeRange(
        span.start_time.rescaled_to(48000), span.duration.rescaled_to(48000)
    )
    assert range_to_frames(rescaled, NTSC24) == (100, 200)


def test_timecode_errors():
    with pytest.raises(InvalidInputError):
        frames_to_timecode(-1, Fraction(25))
    with pytest.raises(InvalidInputError):
        frames_to_timecode(10, Fraction(25), drop_frame=True)
    assert frames_to_timecode(90000, Fraction(25)) == "01:00:00:00"
    assert timecode_to_frames("01:00:00:00", Fraction(25)) == 90000
