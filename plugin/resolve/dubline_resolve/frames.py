"""Frame rates and timecode as Resolve reports them, kept exact (23.976 is 24000/1001).

The arithmetic is ``dubline_client.timecode``'s (the same code the engine runs); this module reads
Resolve's settings and turns a ``TimecodeError`` into a ``ResolveStateError`` for the editor.
"""

from __future__ import annotations

from fractions import Fraction

from dubline_client.timecode import (
    TimecodeError,
    frames_to_timecode,
    is_drop_frame_rate,
    parse_rate_and_drop_frame,
)

from dubline_resolve.errors import ResolveStateError


def parse_rate(text: object) -> tuple[Fraction, bool]:
    """Resolve's rate text (``"25"``, ``"23.976"``, ``"29.97 DF"``, ``"25.000"``) -> (exact rate, drop-frame)."""
    try:
        return parse_rate_and_drop_frame(text)
    except TimecodeError as error:
        raise ResolveStateError(f"Resolve reported the frame rate {text!r}: {error}") from None


def timeline_rate(timeline: object, project: object | None = None) -> tuple[Fraction, bool]:
    """The timeline's exact rate and whether its timecode is drop-frame.

    ``Timeline.GetSetting("timelineFrameRate")`` carries a ``" DF"`` suffix for drop-frame; the
    separate ``timelineDropFrameTimecode`` setting ("1"/"0") is honoured too. A timeline that
    follows the project settings may answer empty, so the project's setting is the fallback.
    """
    text = timeline.GetSetting("timelineFrameRate")
    if not text and project is not None:
        text = project.GetSetting("timelineFrameRate")
    rate, drop_frame = parse_rate(text)
    drop_setting = timeline.GetSetting("timelineDropFrameTimecode")
    if not drop_setting and project is not None:
        drop_setting = project.GetSetting("timelineDropFrameTimecode")
    drop_frame = drop_frame or str(drop_setting).strip() in ("1", "True", "true")
    if drop_frame and not is_drop_frame_rate(rate):
        raise ResolveStateError(f"drop-frame timecode at {float(rate):.3f} fps: only 29.97 and 59.94 drop frames")
    return rate, drop_frame


def timecode(frame: int, rate: Fraction, drop_frame: bool = False) -> str:
    """``HH:MM:SS:FF`` of a frame number counted from 00:00:00:00 (``;`` before FF when drop-frame)."""
    try:
        return frames_to_timecode(frame, rate, drop_frame)
    except TimecodeError as error:
        raise ResolveStateError(str(error)) from None
