"""Where every video clip of a timeline plays: the survey that clip selection, span planning and a
reel-wide batch share.

The walk follows each video track and every nested sequence (an OTIO Stack, or a Track, inside a
track) down to the clips, carrying:

* record time: exact seconds through every level of nesting, then frames at the *timeline's* rate
  (a 15 fps clip in a 30 fps sequence still has its record timecode counted at 30);
* the visible window: a nest's in/out trims what shows of the clips inside it;
* transitions: the record frames a dissolve or wipe covers, at the clip's own edges and at the
  edges of each nest around it;
* why a clip is skipped by default (it, its track or a nest around it is disabled), and any speed
  effect on it or on a nest around it.

Only video tracks are walked, inside nests too (a nest's audio tracks hold no picture). Nested
sequences that came from the reader with no tracks are named in ``TimelineSurvey.notes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import opentimelineio as otio

from dubline.core import timing
from dubline.core.errors import InvalidInputError
from dubline.interchange.frames import exact_rate, frame_at, seconds, tc_range
from dubline.interchange.read import FCP_METADATA_KEY, is_drop_frame


@dataclass(frozen=True)
class TransitionZone:
    """A transition that overlaps a clip, and all the record frames [first, end) it covers."""

    name: str
    record: tuple[int, int]


@dataclass(frozen=True)
class PlacedClip:
    """One video clip and where it plays on the timeline."""

    index: int  # 1-based among the timeline's video clips, in the order ``--clip N`` counts them
    clip: otio.schema.Clip
    track: otio.schema.Track  # the top-level video track it is on (or whose nest holds it)
    track_index: int  # 1-based among the top-level video tracks, V1 at the bottom
    nest: tuple[str, ...]  # names of the nested sequences around it, outermost first
    record: tuple[int, int]  # the visible part, absolute timeline frames at the timeline's rate
    source_offset: Fraction  # source seconds minus record seconds (record counted from 00:00:00:00)
    transitions: tuple[TransitionZone, ...]
    skipped: str | None  # why it is left alone unless asked for: disabled clip, track or nest
    speed: str | None  # a speed effect on the clip or a nest around it

    @property
    def name(self) -> str:
        return self.clip.name

    def track_label(self) -> str:
        return track_label(self.track_index, self.track.name, self.nest)

    def where(self) -> str:
        return f"clip {self.name!r} (#{self.index} on {self.track_label()})"


def track_label(track_index: int, track_name: str, nest: tuple[str, ...]) -> str:
    """``V2``, ``V1 'Dialogue'``, ``V2 in 'sc01_sh010_anim'``: where a clip is, as messages say it."""
    label = f"V{track_index}"
    if track_name and track_name != label:
        label += f" {track_name!r}"
    if nest:
        label += " in " + " > ".join(repr(name) for name in nest)
    return label


@dataclass(frozen=True)
class TimelineSurvey:
    clips: tuple[PlacedClip, ...]
    notes: tuple[str, ...]  # nested sequences whose clips the reader did not give
    rate: Fraction  # the timeline's (record) rate
    start: int  # global_start_time in frames at ``rate``
    drop_frame: bool  # record timecode counts drop-frame

    def record_tc(self, frames: tuple[int, int]) -> str:
        return tc_range(frames, self.rate, self.drop_frame)


def timeline_rate(timeline: otio.schema.Timeline) -> Fraction:
    """The rate record frames are counted at: the start timecode's, the FCP sequence's, else the
    first video clip's."""
    if timeline.global_start_time is not None:
        return exact_rate(timeline.global_start_time)
    sequence_rate = timeline.metadata.get(FCP_METADATA_KEY, {}).get("rate")
    if hasattr(sequence_rate, "get") and sequence_rate.get("timebase"):
        base = Fraction(str(sequence_rate["timebase"]))
        ntsc = str(sequence_rate.get("ntsc", "FALSE")).lower() == "true"
        return timing.parse_rate(base * 1000 / 1001 if ntsc else base)
    for track in timeline.video_tracks():
        for clip in track.find_clips():
            return exact_rate(clip.trimmed_range().duration)
    return Fraction(24)  # no video clip: no frame is ever counted at it


def speed_effect(item: otio.core.Item) -> str | None:
    """The speed effect on ``item`` in words, or None: OTIO time effects (``LinearTimeWarp``,
    ``FreezeFrame``, others by name) and FCP XML's Time Remap filter (which the adapter keeps as a
    plain effect)."""
    for effect in item.effects:
        if isinstance(effect, otio.schema.FreezeFrame):
            return "a freeze frame (FreezeFrame)"
        if isinstance(effect, otio.schema.LinearTimeWarp):
            scalar = effect.time_scalar
            if scalar == 1:
                continue
            if scalar == 0:
                return "a freeze frame (LinearTimeWarp at speed 0)"
            return f"a speed change to {scalar * 100:g}% (LinearTimeWarp{', ' + effect.name if effect.name else ''})"
        if isinstance(effect, otio.schema.TimeEffect):
            return f"a time effect ({effect.effect_name or effect.name or type(effect).__name__})"
        remap = _fcp_time_remap(effect)
        if remap:
            return remap
    return None


def _fcp_time_remap(effect: otio.schema.Effect) -> str | None:
    data = effect.metadata.get(FCP_METADATA_KEY, {})
    names = {str(data.get("effectid", "")).lower(), (effect.effect_name or "").lower(), (effect.name or "").lower()}
    if not names & {"timeremap", "time remap"}:
        return None
    parameters = data.get("parameter", [])
    if hasattr(parameters, "get"):
        parameters = [parameters]
    values = {str(p.get("parameterid", "")).lower(): p.get("value") for p in parameters if hasattr(p, "get")}
    if str(values.get("variablespeed", "0")).strip().lower() not in ("0", "false"):
        return "a variable-speed Time Remap (FCP XML filter)"
    reverse = str(values.get("reverse", "false")).strip().lower() == "true"
    try:
        speed = float(values["speed"])
    except (KeyError, TypeError, ValueError):
        return "a Time Remap (FCP XML filter)"
    if speed == 100 and not reverse:
        return None
    return f"a Time Remap at {speed:g}%{', reversed' if reverse else ''} (FCP XML filter)"


# ------------------------------------------------------------------------------------------ walk


@dataclass(frozen=True)
class _Around:
    """What a level of nesting passes down to the clips inside it."""

    track: otio.schema.Track
    track_index: int
    nest: tuple[str, ...] = ()
    window: tuple[Fraction, Fraction] | None = None  # record seconds that show
    zones: tuple[tuple[str, Fraction, Fraction], ...] = ()  # transitions at the nests' edges
    skipped: str | None = None
    speed: str | None = None


@dataclass
class _Walk:
    rate: Fraction
    drop_frame: bool
    clips: list[PlacedClip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def frames(self, first: Fraction, end: Fraction) -> tuple[int, int]:
        return frame_at(first, self.rate), frame_at(end, self.rate)

    def composition(self, composition: otio.core.Composition, to_record: Fraction, around: _Around) -> None:
        """Walk ``composition``, whose own time 0 plays at ``to_record`` seconds."""
        is_track = isinstance(composition, otio.schema.Track)
        for index, child in enumerate(composition):
            if isinstance(child, (otio.schema.Gap, otio.schema.Transition)):
                continue
            if not is_track and isinstance(child, otio.schema.Track) and child.kind != otio.schema.TrackKind.Video:
                continue  # a nest's audio
            try:
                placed = composition.range_of_child_at_index(index)
                trim_start = seconds(child.trimmed_range().start_time)
            except Exception as error:  # OTIO cannot place an item with neither source nor available range
                raise InvalidInputError(f"cannot place {child.name!r} on V{around.track_index}: {error}") from error
            first = to_record + seconds(placed.start_time)
            end = first + seconds(placed.duration)
            window = (first, end) if around.window is None else (max(first, around.window[0]), min(end, around.window[1]))
            zones = around.zones + (self.neighbour_transitions(composition, index, to_record) if is_track else ())
            if isinstance(child, otio.schema.Clip):
                self.clip(child, first - trim_start, window, zones, around)
            elif not is_track and isinstance(child, otio.schema.Track):
                self.layer(child, first - trim_start, window, zones, around)
            elif isinstance(child, otio.core.Composition):
                self.nest(child, first - trim_start, window, zones, around, (first, end))

    @staticmethod
    def neighbour_transitions(track: otio.schema.Track, index: int, to_record: Fraction) -> tuple:
        zones = []
        for neighbour in (index - 1, index + 1):
            if 0 <= neighbour < len(track) and isinstance(track[neighbour], otio.schema.Transition):
                transition = track[neighbour]
                span = track.range_of_child_at_index(neighbour)
                first = to_record + seconds(span.start_time)
                zones.append((transition.name or transition.transition_type, first, first + seconds(span.duration)))
        return tuple(zones)

    def clip(self, clip: otio.schema.Clip, to_record: Fraction, window: tuple[Fraction, Fraction],
             zones: tuple, around: _Around) -> None:
        record = self.frames(*window) if window[0] < window[1] else self.frames(window[0], window[0])
        skipped = around.skipped
        if not clip.enabled:
            skipped = "it is disabled"
        elif record[0] >= record[1]:
            skipped = f"it lies outside the in/out of nested sequence {around.nest[-1]!r}" if around.nest else "it has no frames"
        transitions = []
        for name, first, end in zones:
            if first < window[1] and window[0] < end:
                transitions.append(TransitionZone(name, self.frames(first, end)))
        own_speed = speed_effect(clip)
        self.clips.append(PlacedClip(
            index=len(self.clips) + 1, clip=clip, track=around.track, track_index=around.track_index,
            nest=around.nest, record=record, source_offset=-to_record,
            transitions=tuple(sorted(transitions, key=lambda z: z.record)), skipped=skipped,
            speed=own_speed or around.speed,
        ))

    def layer(self, track: otio.schema.Track, to_record: Fraction, window: tuple[Fraction, Fraction],
              zones: tuple, around: _Around) -> None:
        """A video track inside a nested sequence."""
        speed = speed_effect(track)
        name = track.name or "(unnamed)"
        inner = _Around(
            track=around.track, track_index=around.track_index, nest=around.nest, window=window, zones=zones,
            skipped=around.skipped or (None if track.enabled else f"track {name!r} of nested sequence {around.nest[-1]!r} is disabled"),
            speed=around.speed or (f"{speed} on track {name!r} of nested sequence {around.nest[-1]!r}" if speed else None),
        )
        self.composition(track, to_record, inner)

    def nest(self, nest: otio.core.Composition, to_record: Fraction, window: tuple[Fraction, Fraction],
             zones: tuple, around: _Around, placed: tuple[Fraction, Fraction]) -> None:
        name = nest.name or "(unnamed)"
        speed = speed_effect(nest)
        inner = _Around(
            track=around.track, track_index=around.track_index, nest=around.nest + (name,), window=window,
            zones=zones,
            skipped=around.skipped or (None if nest.enabled else f"nested sequence {name!r} is disabled"),
            speed=around.speed or (f"{speed} on nested sequence {name!r}" if speed else None),
        )
        if len(nest) == 0:
            where = f"V{around.track_index}" + (" in " + " > ".join(repr(n) for n in around.nest) if around.nest else "")
            self.notes.append(
                f"nested sequence {name!r} on {where} at record {tc_range(self.frames(*placed), self.rate, self.drop_frame)} "
                "came from the reader with no tracks: its clips cannot be seen or patched"
            )
        self.composition(nest, to_record, inner)


def survey_timeline(timeline: otio.schema.Timeline) -> TimelineSurvey:
    """Every video clip of ``timeline``, in the order ``--clip N`` counts them: video tracks bottom
    (V1) to top, within a track left to right, clips of a nested sequence in its place (its video
    tracks bottom to top)."""
    rate = timeline_rate(timeline)
    start = seconds(timeline.global_start_time) if timeline.global_start_time is not None else Fraction(0)
    drop_frame = is_drop_frame(timeline) and timing.is_drop_frame_rate(rate)
    walk = _Walk(rate, drop_frame)
    top = timeline.tracks
    top_trim = seconds(top.source_range.start_time) if top.source_range is not None else Fraction(0)
    for track_index, track in enumerate(timeline.video_tracks(), start=1):
        # A top-level track plays from the timeline's start (global_start_time), less its own trim.
        track_trim = seconds(track.source_range.start_time) if track.source_range is not None else Fraction(0)
        speed = speed_effect(track)
        around = _Around(
            track=track, track_index=track_index,
            skipped=None if track.enabled else f"track V{track_index}{f' {track.name!r}' if track.name else ''} is disabled",
            speed=f"{speed} on track V{track_index}" if speed else None,
        )
        walk.composition(track, start - top_trim - track_trim, around)
    return TimelineSurvey(tuple(walk.clips), tuple(walk.notes), rate, frame_at(start, rate), drop_frame)
