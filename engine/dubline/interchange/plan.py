"""From a surveyed clip to the span to patch, in every time space it is needed in.

    resolve       a placed clip -> its media file, source frames and record frames (refuses speed
                  effects, generators, image sequences, missing media)
    check_media   the media file against the clip: its rate, where it starts, how many frames
    plan_span     a typed span (or the whole cut) -> PatchPlan, clear of transitions
    plan_record   the same from record frames (what a reel-wide batch has)

Plain functions over a timeline: they return typed plans with their warnings and never print.
Three rates meet here: the timeline's (record frames), the clip's (the unit of its source range)
and the media file's (probed). dubline patches frame for frame, so it needs all three equal; each
way they can differ gets its own message.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import opentimelineio as otio

from dubline.core import timing
from dubline.core.errors import InvalidInputError, InvalidRangeError, MediaNotFoundError
from dubline.interchange.frames import (
    exact_rate,
    fraction_text,
    frame_at,
    rate_text,
    tc,
    tc_range,
    to_frames,
)
from dubline.interchange.select import select_clip
from dubline.interchange.survey import (
    PlacedClip,
    TimelineSurvey,
    TransitionZone,
    survey_timeline,
    track_label,
)
from dubline.stages import media

RANGE_SPACES = ("record", "source")
#: What a span that touches a transition does: keep the part outside it (and warn), or fail.
ON_TRANSITION = ("shorten", "error")

_WINDOWS_DRIVE = re.compile(r"^/?([A-Za-z]:[\\/].*)$")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class SpeedEffectError(InvalidInputError):
    """The clip plays its media faster, slower, backwards or frozen."""


class RateMismatchError(InvalidInputError):
    """Timeline frames are not the media's frames (the host converts rates or retimes the clip)."""


class TransitionError(InvalidRangeError):
    """The span touches a dissolve or wipe and ``--on-transition error`` was asked for (or nothing
    outside the transition is left)."""


@dataclass(frozen=True)
class ResolvedClip:
    """One video clip of the timeline and where its frames come from.

    ``record`` is absolute timeline time (``global_start_time`` included) at ``rate``, the
    timeline's rate. ``source`` is in the media's own time at ``source_rate``, the rate the clip
    counts its source range in (a file starting at 01:00:00:00 has source frames from 86400 on).
    Both are the part of the cut that shows (a nested sequence's in/out trims it).
    """

    name: str
    index: int  # 1-based among the timeline's video clips (see ``survey_timeline``)
    track_name: str
    track_index: int  # 1-based among the top-level video tracks, V1 at the bottom
    media: Path
    rate: Fraction  # the timeline's
    media_origin: int | None  # source frame of the file's first frame; None: ask the file
    source: tuple[int, int]  # [first, end) of the clip's cut, in media time
    record: tuple[int, int]  # [first, end) on the timeline
    timeline_start: int  # global_start_time in frames
    source_rate: Fraction | None = None  # None: the timeline's
    nest: tuple[str, ...] = ()
    drop_frame: bool = False  # the timeline's record timecode counts drop-frame
    transitions: tuple[TransitionZone, ...] = ()
    media_rate: Fraction | None = None  # from the file, once ``check_media`` probed it
    media_frames: int | None = None
    warnings: tuple[str, ...] = ()

    @property
    def clip_rate(self) -> Fraction:
        return self.source_rate if self.source_rate is not None else self.rate

    def track_label(self) -> str:
        return track_label(self.track_index, self.track_name, self.nest)

    def where(self) -> str:
        return f"clip {self.name!r} (#{self.index} on {self.track_label()})"

    def record_tc(self, frames: tuple[int, int]) -> str:
        return tc_range(frames, self.rate, self.drop_frame)

    def describe(self) -> str:
        return (
            f"{self.where()} at record {self.record_tc(self.record)} (frames {self.record[0] - self.timeline_start}-"
            f"{self.record[1] - self.timeline_start} from the timeline start)"
        )


@dataclass(frozen=True)
class PatchPlan:
    """The span to patch, in every time space it is needed in (all [first, end) at ``rate``)."""

    clip: ResolvedClip
    record: tuple[int, int]  # absolute timeline frames
    source: tuple[int, int]  # media time, as the clip's source_range counts it
    warnings: tuple[str, ...] = ()

    @property
    def rate(self) -> Fraction:
        return self.clip.rate

    @property
    def frame_count(self) -> int:
        return self.record[1] - self.record[0]

    def file_frames(self, media_origin: int | None = None) -> tuple[int, int]:
        """Frames [first, end) counted from the media file's first frame (``dubline render``'s span)."""
        origin = self.clip.media_origin if media_origin is None else media_origin
        if origin is None:
            raise InvalidInputError(f"the media start of {self.clip.media} is not known; probe the file first")
        return self.source[0] - origin, self.source[1] - origin


# -------------------------------------------------------------------------------------- resolving


def media_path(url: str, timeline_path: Path | None = None) -> Path:
    """A media reference's ``target_url`` as a local path.

    Accepts ``file://`` URLs (``file:///abs``, ``file://localhost/abs``, percent-encoding,
    ``file:///C:/dir/clip.mov``, ``file://server/share`` as a UNC path) and plain paths; a relative
    path is taken relative to the timeline file's folder. Windows paths stay Windows paths.
    """
    text = url.strip()
    if not text:
        raise InvalidInputError("the clip's media reference has an empty target_url")
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme.lower() == "file":
        path = urllib.parse.unquote(parsed.path)
        host = parsed.netloc
        drive = _WINDOWS_DRIVE.match(path)
        if drive:
            return Path(drive.group(1))
        if host and host.lower() != "localhost":
            return Path(f"//{host}{path}")
        return Path(path)
    if parsed.scheme and len(parsed.scheme) > 1:
        raise InvalidInputError(f"media {text!r} is a {parsed.scheme}: URL; dubline needs a local file")
    if PureWindowsPath(text).drive or PurePosixPath(text).is_absolute():
        return Path(text)
    base = Path(timeline_path).resolve().parent if timeline_path is not None else Path.cwd()
    return base / text


def resolve(placed: PlacedClip, survey: TimelineSurvey, timeline_path: Path | None = None,
            require_media: bool = True, notes: tuple[str, ...] = ()) -> ResolvedClip:
    """``placed`` with its media file, source frames and record frames.

    Raises ``SpeedEffectError`` for a clip (or a nest around it) with a speed effect,
    ``InvalidInputError`` for clips dubline cannot patch (no file reference, image sequence, no
    frames), ``MediaNotFoundError`` (a ``FileNotFoundError``) when its media file is missing.
    """
    where = placed.where()
    if placed.speed:
        raise SpeedEffectError(
            f"{where} has {placed.speed}; dubline patches clips that play their media at normal speed (docs/OTIO.md)"
        )
    clip = placed.clip
    reference = clip.media_reference
    if isinstance(reference, otio.schema.ImageSequenceReference):
        raise InvalidInputError(f"{where} is an image sequence; dubline patches movie files")
    if not isinstance(reference, otio.schema.ExternalReference):
        raise InvalidInputError(f"{where} has no file media reference ({type(reference).__name__})")
    if placed.record[0] >= placed.record[1]:
        raise InvalidInputError(f"{where} shows no frames on the timeline: {placed.skipped}")
    media = media_path(reference.target_url, timeline_path)
    if require_media and not media.is_file():
        raise MediaNotFoundError(f"media of {where} not found: {media} (from {reference.target_url!r})")
    source_rate = exact_rate(clip.trimmed_range().duration)
    rate = survey.rate
    source = tuple(frame_at(Fraction(r) / rate + placed.source_offset, source_rate) for r in placed.record)
    origin = None
    if reference.available_range is not None:
        origin = to_frames(reference.available_range.start_time, source_rate)
    warnings = list(notes)
    if placed.skipped:
        warnings.append(f"patching {where} although {placed.skipped}")
    return ResolvedClip(
        name=clip.name, index=placed.index, track_name=placed.track.name, track_index=placed.track_index,
        media=media, rate=rate, media_origin=origin, source=source, record=placed.record,
        timeline_start=survey.start, source_rate=source_rate, nest=placed.nest, drop_frame=survey.drop_frame,
        transitions=placed.transitions, warnings=tuple(warnings),
    )


def resolve_clip(
    timeline: otio.schema.Timeline,
    selector: str,
    timeline_path: Path | None = None,
    require_media: bool = True,
    include_disabled: bool = False,
) -> ResolvedClip:
    """The clip ``selector`` names (see ``select_clip``), resolved (see ``resolve``)."""
    survey = survey_timeline(timeline)
    placed, notes = select_clip(survey, selector, include_disabled)
    return resolve(placed, survey, timeline_path, require_media, tuple(notes))


def check_media(clip: ResolvedClip, probe: Callable[[Path], Any] | None = None) -> ResolvedClip:
    """Check the clip's media file against the timeline: it has a video stream at the clip's rate
    and the timeline's; its first frame's source time (from its start timecode when the timeline
    does not say); its frame count, so that ``plan_span`` can check the span lies inside the file."""
    if probe is None:
        probe = media.probe
    video = probe(clip.media).video
    if video is None:
        raise InvalidInputError(f"{clip.media} ({clip.where()}) has no video stream")
    media_rate, clip_rate, rate = video.rate, clip.clip_rate, clip.rate
    if media_rate != clip_rate:
        timeline = f"; the timeline is {rate_text(rate)} fps" if rate != clip_rate else ""
        raise RateMismatchError(
            f"{clip.where()} plays {clip.media.name} as {rate_text(clip_rate)} fps footage, but the file is "
            f"{rate_text(media_rate)} fps{timeline}: footage played at another rate is a speed change, which dubline "
            "does not patch"
        )
    if media_rate != rate:
        raise RateMismatchError(
            f"{clip.media.name} ({clip.where()}) is {rate_text(media_rate)} fps and the timeline {rate_text(rate)} fps: "
            "the host converts between them, so timeline frames are not its frames; dubline patches media at the timeline's rate"
        )
    file_origin = timing.timecode_to_frames(video.start_timecode, media_rate) if video.start_timecode else 0
    warnings = list(clip.warnings)
    if clip.media_origin is not None and clip.media_origin != file_origin:
        warnings.append(
            f"the timeline says {clip.media.name} starts at {tc(clip.media_origin, rate, clip.drop_frame)}, "
            f"the file's timecode is {video.start_timecode}; frames follow the timeline"
        )
    origin = file_origin if clip.media_origin is None else clip.media_origin
    return replace(clip, media_origin=origin, media_rate=media_rate, media_frames=video.frame_count, warnings=tuple(warnings))


# ----------------------------------------------------------------------------------------- span


def plan_span(clip: ResolvedClip, span: str | None = None, range_in: str = "record",
              on_transition: str = "shorten") -> PatchPlan:
    """The span to patch: ``span`` in ``dubline render --range`` syntax, or the clip's whole cut.

    ``range_in="record"`` (default): timecodes are the timeline's (record) timecodes, frame numbers
    and seconds count from the timeline's first frame (``global_start_time``).
    ``range_in="source"``: exactly ``dubline render --range`` on the media file: frames and seconds
    from the file's first frame, timecodes are the media's. Either way the span must lie inside the
    clip's cut on the timeline, else ``InvalidRangeError`` naming the clip's range. See
    ``plan_record`` for transitions and the media's length.
    """
    if range_in not in RANGE_SPACES:
        raise InvalidInputError(f"--range-in must be one of {', '.join(RANGE_SPACES)}, not {range_in!r}")
    _check_rates(clip)
    rate = clip.rate
    if span is None:
        return plan_record(clip, clip.record, on_transition)
    if range_in == "record":
        start_tc = tc(clip.timeline_start, rate, clip.drop_frame)
        first, end = timing.range_to_frames(timing.parse_range(span, rate, start_tc), rate)
        record = (clip.timeline_start + first, clip.timeline_start + end)
        inside = clip.record[0] <= record[0] and record[1] <= clip.record[1]
        shown = f"record {clip.record_tc(record)}"
    else:
        origin = clip.media_origin or 0
        start_tc = tc(origin, rate, clip.drop_frame) if origin else None
        first, end = timing.range_to_frames(timing.parse_range(span, rate, start_tc), rate)
        source = (origin + first, origin + end)
        inside = clip.source[0] <= source[0] and source[1] <= clip.source[1]
        shift = clip.record[0] - clip.source[0]
        record = (source[0] + shift, source[1] + shift)
        shown = f"source {tc_range(source, rate, clip.drop_frame)} (file frames {first}-{end})"
    if not inside:
        raise InvalidRangeError(
            f"span {span!r} ({shown}) is not inside {clip.describe()}; "
            f"source {tc_range(clip.source, rate, clip.drop_frame)}"
        )
    return plan_record(clip, record, on_transition, f"{span!r}")


def plan_record(clip: ResolvedClip, record: tuple[int, int], on_transition: str = "shorten",
                shown: str | None = None) -> PatchPlan:
    """The plan for record frames ``record`` [first, end) of ``clip``.

    A span that touches a transition is shortened to the part outside it, with a warning
    (``on_transition="shorten"``), or refused (``"error"``): the patch never covers a dissolve or
    wipe. When the media was probed (``check_media``), the span must lie inside the file.
    """
    if on_transition not in ON_TRANSITION:
        raise InvalidInputError(f"--on-transition must be one of {', '.join(ON_TRANSITION)}, not {on_transition!r}")
    _check_rates(clip)
    shown = shown or f"record {clip.record_tc(record)}"
    if not (clip.record[0] <= record[0] < record[1] <= clip.record[1]):
        raise InvalidRangeError(f"span {shown} is not inside {clip.describe()}")
    clear, warnings = _clear_of_transitions(clip, record, on_transition, shown)
    shift = clip.source[0] - clip.record[0]
    plan = PatchPlan(clip, clear, (clear[0] + shift, clear[1] + shift), clip.warnings + tuple(warnings))
    _check_inside_media(plan, shown)
    return plan


def _check_rates(clip: ResolvedClip) -> None:
    # check_media says which rate differs from which once the file is probed; unprobed, the clip's
    # own rate against the timeline's is what is known.
    if clip.clip_rate != clip.rate:
        raise RateMismatchError(
            f"{clip.where()} counts its source at {rate_text(clip.clip_rate)} fps in a {rate_text(clip.rate)} fps "
            "timeline, so its frames are not the timeline's; dubline patches clips that show one media frame per timeline frame"
        )


def _clear_of_transitions(clip: ResolvedClip, record: tuple[int, int], on_transition: str,
                          shown: str) -> tuple[tuple[int, int], list[str]]:
    touching = sorted(z for z in clip.transitions if z.record[0] < record[1] and record[0] < z.record[1])
    if not touching:
        return record, []
    described = "; ".join(f"{z.name!r} at record {clip.record_tc(z.record)}" for z in touching)
    if on_transition == "error":
        raise TransitionError(
            f"span {shown} of {clip.where()} touches the transition {described}; "
            "--on-transition shorten patches only the frames outside it"
        )
    first, end = record
    moved = True
    while moved:
        moved = False
        for zone in touching:
            if zone.record[0] <= first < zone.record[1]:
                first, moved = zone.record[1], True
            if zone.record[0] < end <= zone.record[1]:
                end, moved = zone.record[0], True
    if first >= end or any(z.record[0] < end and first < z.record[1] for z in touching):
        raise TransitionError(f"span {shown} of {clip.where()} lies under the transition {described}: no frame of it is clear to patch")
    cuts = [f"{count} frame{'s' if count != 1 else ''} at its {end_name}"
            for count, end_name in ((first - record[0], "head"), (record[1] - end, "tail")) if count]
    return (first, end), [
        f"span {shown} of {clip.where()} shortened by {' and '.join(cuts)} to record {clip.record_tc((first, end))}, "
        f"clear of the transition {described}"
    ]


def _check_inside_media(plan: PatchPlan, shown: str) -> None:
    clip = plan.clip
    if clip.media_frames is None or clip.media_origin is None:
        return
    first, end = plan.file_frames()
    if first < 0 or end > clip.media_frames:
        raise InvalidRangeError(
            f"span {shown} of {clip.where()} is file frames {first}-{end} of {clip.media.name}, which has "
            f"{clip.media_frames} frames (0-{clip.media_frames - 1}): the timeline places the clip beyond its media"
        )


def plan_summary(plan: PatchPlan) -> dict[str, Any]:
    """What the plan says, in the editor's terms (for --json, --dry-run and metadata)."""
    clip = plan.clip
    summary: dict[str, Any] = {
        "clip": clip.name,
        "clip_index": clip.index,
        "track": f"V{clip.track_index}",
        "media": str(clip.media),
        "rate": fraction_text(plan.rate),
        "record": clip.record_tc(plan.record),
        "record_frames": list(plan.record),
        "source": tc_range(plan.source, plan.rate, clip.drop_frame),
        "source_frames": list(plan.source),
        "frames": plan.frame_count,
    }
    if clip.nest:
        summary["nest"] = list(clip.nest)
    if clip.media_origin is not None:
        summary["file_frames"] = list(plan.file_frames())
    return summary


def default_patch_path(out: Path, plan: PatchPlan, codec: str) -> Path:
    """Beside the output timeline: ``<clip>.dubline.<first>-<end>.<ext>`` with the clip's source frames."""
    stem = _UNSAFE_NAME.sub("_", Path(plan.clip.name).stem or plan.clip.media.stem).strip("._") or "clip"
    suffix = ".mkv" if codec == "ffv1" else ".mov"
    return Path(out).parent / f"{stem}.dubline.{plan.source[0]}-{plan.source[1]}{suffix}"
