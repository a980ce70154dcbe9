"""Timeline arithmetic of the add-on, free of ``bpy`` so it is tested in plain Python.

Blender's movie strips show one media frame per timeline frame whatever the scene's rate (a 25 fps
clip in a 24 fps scene plays slow but keeps its frame count), so a timeline frame ``T`` of a strip
shows media frame ``T - frame_start + animation_offset_start``; the visible part is
``[frame_final_start, frame_final_end)``. The engine takes spans in SOURCE media frames at the
media's own exact rate (``"first-end"`` text, end exclusive), and the patch it returns has exactly
``end - first`` frames, so it lands on ``[span.first_timeline, span.end_timeline)``.

Sound strips are placed in time: a sound plays its second ``(T - frame_start +
animation_offset_start) / scene_fps + sound_offset`` at timeline frame ``T``.

Exact rates come from ``dubline_client.timecode`` and codec suffixes from ``dubline_client.choices``
(the engine's own rules). Both are imported where used: the add-on registers, and says what is
missing, before the client library is found; a render loads it before planning.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterable

#: Relative difference between the scene's and the clip's frame rate treated as equal (a clip's
#: rate is reported as a float: 23.976 is 23.976023976...).
RATE_TOLERANCE = 1e-4
#: Blender's highest sequencer channel.
MAX_CHANNEL = 128


class PlanError(ValueError):
    """The timeline does not allow a render; the message says what to change."""


@dataclass(frozen=True)
class MovieTiming:
    """What the add-on reads from a movie strip (all timeline frames, end exclusive)."""

    name: str
    frame_start: float
    frame_final_start: int
    frame_final_end: int
    animation_offset_start: int
    clip_fps: float
    retimed: bool = False
    reversed: bool = False


@dataclass(frozen=True)
class SoundTiming:
    """What the add-on reads from a sound strip used as the dub."""

    name: str
    frame_start: float
    frame_final_start: int
    frame_final_end: int
    animation_offset_start: int
    sound_offset: float = 0.0
    retimed: bool = False


@dataclass(frozen=True)
class Span:
    """A span both on the timeline and in the clip's media frames (ends exclusive)."""

    first_timeline: int
    end_timeline: int
    first_source: int
    end_source: int

    @property
    def frames(self) -> int:
        return self.end_timeline - self.first_timeline

    @property
    def text(self) -> str:
        """The engine's span syntax: source frames, end exclusive, at the source's exact rate."""
        return f"{self.first_source}-{self.end_source}"


@dataclass(frozen=True)
class Occupant:
    """A strip already on the timeline, for finding a free channel."""

    channel: int
    frame_final_start: int
    frame_final_end: int


def scene_rate(fps: int, fps_base: float) -> Fraction:
    """The scene's rate as an exact fraction: 24 / 1.001 is 24000/1001 (Blender stores a float base)."""
    if fps <= 0 or fps_base <= 0:
        raise PlanError(f"the scene's frame rate {fps}/{fps_base} is not a positive rate")
    from dubline_client.timecode import snap_rate

    # fps_base is a 32-bit float (1.001 is 1.00100004...): snap to the integer or NTSC rate it means.
    return snap_rate(Fraction(fps / fps_base).limit_denominator(10000))


def check_rates(movie: MovieTiming, rate: Fraction) -> None:
    """Refuse a clip whose rate differs from the scene's: Blender would play it at the wrong speed
    against the dub, and the engine's frames would not match the sound."""
    if movie.clip_fps <= 0:
        raise PlanError(f"strip {movie.name!r}: Blender reports no frame rate for its movie")
    if abs(movie.clip_fps - float(rate)) > RATE_TOLERANCE * float(rate):
        raise PlanError(
            f"strip {movie.name!r} is {movie.clip_fps:.6g} fps but the scene runs at {float(rate):.6g} fps;"
            " set the scene's frame rate to the clip's (Output Properties > Format > Frame Rate)"
        )


def _check_movie(movie: MovieTiming) -> None:
    if movie.retimed:
        raise PlanError(f"strip {movie.name!r} is retimed; reset its speed to 100% to render a patch for it")
    if movie.reversed:
        raise PlanError(f"strip {movie.name!r} plays reversed; turn off Reverse Frames to render a patch for it")
    if movie.frame_start != int(movie.frame_start):
        raise PlanError(f"strip {movie.name!r} starts between frames ({movie.frame_start}); snap it to a frame")


def span_for(movie: MovieTiming, first_timeline: int | None = None, last_timeline: int | None = None) -> Span:
    """The span of ``movie`` from ``first_timeline`` to ``last_timeline`` (both inclusive, like
    Blender's preview range), clipped to the visible strip; None means the strip's own edge."""
    _check_movie(movie)
    first = movie.frame_final_start if first_timeline is None else max(first_timeline, movie.frame_final_start)
    end = movie.frame_final_end if last_timeline is None else min(last_timeline + 1, movie.frame_final_end)
    if end <= first:
        raise PlanError(
            f"the range {first_timeline}-{last_timeline} does not overlap strip {movie.name!r}"
            f" (frames {movie.frame_final_start}-{movie.frame_final_end - 1})"
        )
    to_source = movie.animation_offset_start - int(movie.frame_start)
    return Span(first, end, first + to_source, end + to_source)


def markers_range(marker_frames: Iterable[int]) -> tuple[int, int]:
    """First and last frame from exactly two markers (in any order)."""
    frames = sorted(marker_frames)
    if len(frames) != 2:
        raise PlanError(f"select exactly two markers to mark the span (selected: {len(frames)})")
    if frames[0] == frames[1]:
        raise PlanError(f"the two selected markers are both on frame {frames[0]}")
    return frames[0], frames[1]


def dub_offset(sound: SoundTiming, span: Span, rate: Fraction) -> Fraction:
    """Seconds into the dub that play at the span's first frame (the engine's ``audio_offset``)."""
    if sound.retimed:
        raise PlanError(f"sound strip {sound.name!r} is retimed; reset its speed to 100% to use it as the dub")
    start = Fraction(sound.frame_start).limit_denominator(1000)
    frames_in = Fraction(span.first_timeline) - start + sound.animation_offset_start
    return frames_in / rate + Fraction(sound.sound_offset).limit_denominator(48000)


def free_channel(
    occupants: Iterable[Occupant], first: int, end: int, above: int, max_channel: int = MAX_CHANNEL
) -> int:
    """The lowest channel above ``above`` with nothing in ``[first, end)``."""
    busy = {o.channel for o in occupants if o.frame_final_start < end and o.frame_final_end > first}
    for channel in range(above + 1, max_channel + 1):
        if channel not in busy:
            return channel
    raise PlanError(f"no free channel above {above} for frames {first}-{end - 1}")


def patch_path(folder: str, source_path: str, span: Span, codec: str, choices: Any = None) -> str:
    """A new file name in ``folder`` for the patch, with the suffix the engine writes ``codec`` into
    (``choices``: the engine's EngineChoices; None: the client library's fallback); never the name
    of an existing file."""
    if not os.path.isabs(folder):
        raise PlanError(f"the patch folder {folder!r} is not an absolute path (save the .blend file first)")
    if choices is None:
        from dubline_client.choices import FALLBACK

        choices = FALLBACK
    stem = os.path.splitext(os.path.basename(source_path))[0] or "clip"
    base = f"{stem}.dub.{span.first_source:06d}-{span.end_source:06d}"
    try:
        suffix = choices.codec(codec).suffix
    except ValueError as error:
        raise PlanError(str(error)) from None
    candidate = os.path.join(folder, base + suffix)
    number = 2
    while os.path.exists(candidate):
        candidate = os.path.join(folder, f"{base}.{number}{suffix}")
        number += 1
    return candidate
