"""Frame rates and timecode as Resolve reports them, kept exact (23.976 is 24000/1001)."""

from __future__ import annotations

from fractions import Fraction

from dubline_resolve.errors import ResolveStateError

#: Nominal rates whose NTSC variant Resolve shows rounded (23.976, 29.97, 47.952, 59.94, 119.88).
_NTSC_NOMINALS = (24, 30, 48, 60, 120)


def parse_rate(text: object) -> tuple[Fraction, bool]:
    """Resolve's rate text (``"25"``, ``"23.976"``, ``"29.97 DF"``, ``"25.000"``) -> (exact rate, drop-frame)."""
    raw = str(text if text is not None else "").strip()
    drop_frame = raw.upper().endswith("DF")
    number_text = raw[:-2].strip() if drop_frame else raw
    try:
        number = float(number_text)
    except ValueError:
        raise ResolveStateError(f"Resolve reported the frame rate {raw!r}, which is not a number") from None
    if not number > 0:
        raise ResolveStateError(f"Resolve reported the frame rate {raw!r}; it must be above 0")
    for nominal in _NTSC_NOMINALS:
        # The rounded display value is within 0.001 of the exact NTSC rate.
        if abs(number - nominal * 1000 / 1001) < 0.002:
            return Fraction(nominal * 1000, 1001), drop_frame
    if abs(number - round(number)) < 1e-3:
        return Fraction(round(number)), drop_frame
    return Fraction(number_text).limit_denominator(1001), drop_frame


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
    if drop_frame and rate not in (Fraction(30000, 1001), Fraction(60000, 1001)):
        raise ResolveStateError(f"drop-frame timecode at {float(rate):.3f} fps: only 29.97 and 59.94 drop frames")
    return rate, drop_frame


def timecode(frame: int, rate: Fraction, drop_frame: bool = False) -> str:
    """``HH:MM:SS:FF`` of a frame number counted from 00:00:00:00 (``;`` before FF when drop-frame)."""
    base = round(rate)
    if drop_frame:
        # SMPTE drop-frame: labels ;00 and ;01 (;00-;03 at 59.94) are skipped each minute except every tenth.
        dropped = base // 15
        per_ten_minutes = base * 600 - dropped * 9
        per_minute = base * 60 - dropped
        tens, rest = divmod(frame, per_ten_minutes)
        skipped_minutes = (rest - dropped) // per_minute if rest >= dropped else 0
        frame += dropped * (9 * tens + skipped_minutes)
    hours, rest = divmod(frame, base * 3600)
    minutes, rest = divmod(rest, base * 60)
    seconds, frames = divmod(rest, base)
    separator = ";" if drop_frame else ":"
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{frames:02d}"
