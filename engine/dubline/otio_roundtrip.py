"""OTIO round trip: an editor's timeline in, the same timeline with a lip-synced patch on top out.

The job splits into plain functions so that everything but the render is testable on
timelines built in code:

    read_timeline   file (otio_json; fcp_xml / cmx_3600 through OTIO's adapter plug-ins)
    resolve_clip    which clip, its media file, source frames and record frames
    plan_span       the span to patch, in record (timeline) or source (media) time
    render_patch    the pipeline (or a running engine) renders the span into the patch file
    insert_patch    a copy of the timeline with the patch on a new top video track
    write_timeline  atomic ``.otio`` JSON (from ``interchange``)

Frame arithmetic uses exact rates (``Fraction(24000, 1001)``): OTIO stores rates as floats, which
``timing.parse_rate`` snaps back to the NTSC rational before any frame is counted.
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import opentimelineio as otio

from dubline.core import timing
from dubline.core.errors import InvalidInputError, InvalidRangeError, MediaNotFoundError

RationalTime = otio.opentime.RationalTime
TimeRange = otio.opentime.TimeRange

#: Timeline file suffix -> OTIO adapter, and the PyPI package that provides each plug-in adapter.
ADAPTERS_BY_SUFFIX = {".otio": "otio_json", ".json": "otio_json", ".xml": "fcp_xml", ".edl": "cmx_3600"}
ADAPTER_PACKAGES = {"fcp_xml": "otio-fcp-adapter", "cmx_3600": "otio-cmx3600-adapter"}
#: Namespace of what dubline writes into OTIO metadata.
METADATA_KEY = "dubline"
PATCH_TRACK_NAME = "dubline"
RANGE_SPACES = ("record", "source")

_WINDOWS_DRIVE = re.compile(r"^/?([A-Za-z]:[\\/].*)$")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class MissingAdapterError(InvalidInputError):
    """The timeline's format needs an OTIO adapter plug-in that is not installed."""

    status_code = "FAILED_PRECONDITION"


class ClipSelectionError(InvalidInputError):
    """``--clip`` names no clip, or more than one."""


@dataclass(frozen=True)
class ResolvedClip:
    """One video clip of the timeline and where its frames come from.

    Frame numbers are at ``rate``. ``source`` is in the media's own time (as the clip's
    ``source_range``: a file starting at 01:00:00:00 has source frames from 86400 on);
    ``record`` is absolute timeline time (``global_start_time`` included).
    """

    name: str
    index: int  # 1-based among the timeline's video clips (see ``video_clips``)
    track_name: str
    track_index: int  # 1-based among the video tracks, V1 at the bottom
    media: Path
    rate: Fraction
    media_origin: int | None  # source frame of the file's first frame; None: ask the file
    source: tuple[int, int]  # [first, end) of the clip's cut, in media time
    record: tuple[int, int]  # [first, end) on the timeline
    timeline_start: int  # global_start_time in frames

    def describe(self) -> str:
        track = f"V{self.track_index}"
        if self.track_name and self.track_name != track:
            track += f" {self.track_name!r}"
        return (
            f"clip {self.name!r} (#{self.index} on {track}) "
            f"at record {tc_range(self.record, self.rate)} (frames {self.record[0] - self.timeline_start}-"
            f"{self.record[1] - self.timeline_start} from the timeline start)"
        )


@dataclass(frozen=True)
class PatchPlan:
    """The span to patch, in every time space it is needed in (all [first, end) at ``rate``)."""

    clip: ResolvedClip
    record: tuple[int, int]  # absolute timeline frames
    source: tuple[int, int]  # media time, as the clip's source_range counts it

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


@dataclass(frozen=True)
class PatchMedia:
    """The rendered patch as the timeline refers to it."""

    path: Path
    frames: int
    start_frame: int  # the patch's start timecode, in frames at the plan's rate


@dataclass
class RoundTripResult:
    timeline: Path
    patch: Path
    plan: PatchPlan
    render: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "timeline": str(self.timeline),
            "patch": str(self.patch),
            **plan_summary(self.plan),
            "render": self.render,
            "warnings": self.warnings,
        }


# --------------------------------------------------------------------------------------- reading


def read_timeline(path: Path, adapter: str | None = None, edl_rate: Fraction | None = None) -> otio.schema.Timeline:
    """Read ``path`` with the adapter its suffix names (or ``adapter``).

    ``otio_json`` ships with OpenTimelineIO; ``fcp_xml`` (Final Cut Pro 7 / Premiere / Resolve XML)
    and ``cmx_3600`` (EDL) are plug-ins: a missing one raises ``MissingAdapterError`` naming the
    package to install. EDLs carry no frame rate, so ``edl_rate`` is required for them.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaNotFoundError(f"timeline {path} does not exist")
    name = adapter or ADAPTERS_BY_SUFFIX.get(path.suffix.lower())
    if name is None:
        raise InvalidInputError(
            f"cannot tell the format of {path.name} from its suffix; use .otio, .xml (FCP 7 XML) or .edl, or pass --adapter"
        )
    available = {a.name for a in otio.plugins.ActiveManifest().adapters}
    if name not in available:
        package = ADAPTER_PACKAGES.get(name)
        hint = f"pip install {package}" if package else f"installed adapters: {', '.join(sorted(available))}"
        raise MissingAdapterError(f"reading {path.name} needs the OTIO adapter {name!r}, which is not installed ({hint})")
    arguments: dict[str, Any] = {}
    if name == "cmx_3600":
        if edl_rate is None:
            raise InvalidInputError(f"{path.name} is an EDL, which has no frame rate: pass --edl-rate (e.g. 25 or 23.976)")
        arguments["rate"] = float(timing.parse_rate(edl_rate))
    try:
        result = otio.adapters.read_from_file(str(path), adapter_name=name, **arguments)
    except Exception as error:  # the adapters raise anything from ValueError to OTIO's own errors
        raise InvalidInputError(f"cannot read {path.name} as {name}: {error}") from error
    timeline = _single_timeline(result, path)
    if name == "cmx_3600":
        _normalise_record_offsets(timeline)
    return timeline


def _single_timeline(result: Any, path: Path) -> otio.schema.Timeline:
    if isinstance(result, otio.schema.Timeline):
        return result
    timelines = list(result.find_children(descended_from_type=otio.schema.Timeline)) if hasattr(result, "find_children") else []
    if len(timelines) == 1:
        return timelines[0]
    names = ", ".join(repr(t.name) for t in timelines) or "none"
    raise InvalidInputError(f"{path.name} holds {len(timelines)} timelines ({names}); export just one")


def _normalise_record_offsets(timeline: otio.schema.Timeline) -> None:
    """The EDL reader places events at record timecode by giving each track a negative
    ``source_range`` start (and a duration that leaves out that lead). Turn that into
    ``global_start_time`` = the first event's record time plus leading gaps, which every other
    reader and host understands."""
    offsets = {}
    for track in timeline.tracks:
        if track.source_range is not None and track.source_range.start_time.value < 0:
            offsets[id(track)] = -track.source_range.start_time
    if not offsets or timeline.global_start_time is not None:
        return
    start = min(offsets.values(), key=lambda t: t.to_seconds())
    timeline.global_start_time = start
    for track in timeline.tracks:
        lead = offsets.get(id(track))
        if lead is None:
            continue
        track.source_range = None
        extra = lead - start
        if extra.value > 0:
            track.insert(0, otio.schema.Gap(duration=extra))


# ------------------------------------------------------------------------------------- selection


def video_clips(timeline: otio.schema.Timeline) -> list[tuple[int, otio.schema.Track, otio.schema.Clip]]:
    """Every video clip in the order ``--clip INDEX`` counts them: video tracks bottom (V1) to top,
    and within a track by position (clips inside nested stacks included, in their order)."""
    found = []
    for track_index, track in enumerate(timeline.video_tracks(), start=1):
        for clip in track.find_clips():
            found.append((track_index, track, clip))
    return found


def select_clip(timeline: otio.schema.Timeline, selector: str) -> tuple[int, int, otio.schema.Track, otio.schema.Clip]:
    """``selector`` is a clip name (exact, case-sensitive), or ``N`` / ``#N`` for the N-th video
    clip counting from 1 (see ``video_clips``). A name wins over an index when a clip is named
    like a number; ``#N`` always means the index. Returns (index, track index, track, clip)."""
    clips = video_clips(timeline)
    if not clips:
        raise ClipSelectionError("the timeline has no video clips")
    text = selector.strip()
    named = [(i, t, tr, c) for i, (t, tr, c) in enumerate(clips, start=1) if c.name == text]
    if len(named) == 1 and not text.startswith("#"):
        return named[0]
    if len(named) > 1 and not text.startswith("#"):
        candidates = "; ".join(f"#{i} on V{t} at {_record_tc(c, timeline)}" for i, t, _, c in named)
        raise ClipSelectionError(f"{len(named)} clips are named {text!r} ({candidates}); pass --clip '#N' to pick one")
    number = text.removeprefix("#")
    if number.isdigit():
        index = int(number)
        if not 1 <= index <= len(clips):
            raise ClipSelectionError(f"--clip {selector}: the timeline has {len(clips)} video clips (1-{len(clips)})")
        track_index, track, clip = clips[index - 1]
        return index, track_index, track, clip
    listing = ", ".join(f"#{i} {c.name!r} (V{t})" for i, (t, _, c) in enumerate(clips, start=1))
    raise ClipSelectionError(f"no video clip is named {text!r}; the timeline has: {listing}")


def _record_tc(clip: otio.schema.Clip, timeline: otio.schema.Timeline) -> str:
    rate = timing.parse_rate(clip.trimmed_range().duration.rate)
    first, end = _record_frames(clip, timeline, rate)
    return tc_range((first, end), rate)


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


def resolve_clip(
    timeline: otio.schema.Timeline,
    selector: str,
    timeline_path: Path | None = None,
    require_media: bool = True,
) -> ResolvedClip:
    """The clip ``selector`` names, with its media file, source frames and record frames.

    Raises ``ClipSelectionError`` for no/ambiguous clip, ``MediaNotFoundError`` (a
    ``FileNotFoundError``) when its media file is missing, ``InvalidInputError`` for clips dubline
    cannot patch (no file reference, speed changes, no range).
    """
    index, track_index, track, clip = select_clip(timeline, selector)
    where = f"clip {clip.name!r} (#{index} on V{track_index})"
    reference = clip.media_reference
    if isinstance(reference, otio.schema.ImageSequenceReference):
        raise InvalidInputError(f"{where} is an image sequence; dubline patches movie files")
    if not isinstance(reference, otio.schema.ExternalReference):
        raise InvalidInputError(f"{where} has no file media reference ({type(reference).__name__})")
    for effect in clip.effects:
        if isinstance(effect, otio.schema.TimeEffect):
            raise InvalidInputError(f"{where} has a speed change ({effect.effect_name or type(effect).__name__}); patch an unretimed clip")
    media = media_path(reference.target_url, timeline_path)
    if require_media and not media.is_file():
        raise MediaNotFoundError(f"media of {where} not found: {media} (from {reference.target_url!r})")
    try:
        cut = clip.trimmed_range()
    except Exception as error:
        raise InvalidInputError(f"{where} has neither a source range nor the media's available range") from error
    rate = timing.parse_rate(cut.duration.rate)
    first = to_frames(cut.start_time, rate)
    source = (first, first + to_frames(cut.duration, rate))
    origin = None
    if reference.available_range is not None:
        origin = to_frames(reference.available_range.start_time, rate)
    timeline_start = to_frames(timeline.global_start_time, rate) if timeline.global_start_time is not None else 0
    return ResolvedClip(
        name=clip.name,
        index=index,
        track_name=track.name,
        track_index=track_index,
        media=media,
        rate=rate,
        media_origin=origin,
        source=source,
        record=_record_frames(clip, timeline, rate),
        timeline_start=timeline_start,
    )


def _record_frames(clip: otio.schema.Clip, timeline: otio.schema.Timeline, rate: Fraction) -> tuple[int, int]:
    # transformed_time_range follows the clip up through tracks and nested stacks to the top stack,
    # whose time 0 is global_start_time.
    placed = clip.transformed_time_range(clip.trimmed_range(), timeline.tracks)
    start = to_frames(timeline.global_start_time, rate) if timeline.global_start_time is not None else 0
    first = start + to_frames(placed.start_time, rate)
    return first, first + to_frames(placed.duration, rate)


def to_frames(time: RationalTime, rate: Fraction) -> int:
    """``time`` in whole frames at ``rate``, exactly (float OTIO rates are snapped, then rational)."""
    own_rate = timing.parse_rate(time.rate)
    value = Fraction(time.value)
    exact = value if own_rate == rate else value * rate / own_rate
    return math.floor(exact + Fraction(1, 2))


def timeline_time(frames: int, rate: Fraction) -> RationalTime:
    return RationalTime(frames, float(rate))


def tc_range(frames: tuple[int, int], rate: Fraction) -> str:
    """``HH:MM:SS:FF-HH:MM:SS:FF`` (end exclusive, as ``--range`` takes it)."""
    return f"{timing.frames_to_timecode(frames[0], rate)}-{timing.frames_to_timecode(frames[1], rate)}"


# ----------------------------------------------------------------------------------------- span


def plan_span(clip: ResolvedClip, span: str | None = None, range_in: str = "record") -> PatchPlan:
    """The span to patch: ``span`` in ``dubline render --range`` syntax, or the clip's whole cut.

    ``range_in="record"`` (default): timecodes are the timeline's (record) timecodes, frame numbers
    and seconds count from the timeline's first frame (``global_start_time``).
    ``range_in="source"``: exactly ``dubline render --range`` on the media file: frames and seconds
    from the file's first frame, timecodes are the media's. Either way the span must lie inside the
    clip's cut on the timeline, else ``InvalidRangeError`` naming the clip's range.
    """
    if range_in not in RANGE_SPACES:
        raise InvalidInputError(f"--range-in must be one of {', '.join(RANGE_SPACES)}, not {range_in!r}")
    rate = clip.rate
    if span is None:
        return PatchPlan(clip, clip.record, clip.source)
    if range_in == "record":
        start_tc = timing.frames_to_timecode(clip.timeline_start, rate)
        first, end = timing.range_to_frames(timing.parse_range(span, rate, start_tc), rate)
        record = (clip.timeline_start + first, clip.timeline_start + end)
        inside = clip.record[0] <= record[0] and record[1] <= clip.record[1]
        shown = tc_range(record, rate)
    else:
        origin = clip.media_origin or 0
        start_tc = timing.frames_to_timecode(origin, rate) if origin else None
        first, end = timing.range_to_frames(timing.parse_range(span, rate, start_tc), rate)
        source = (origin + first, origin + end)
        inside = clip.source[0] <= source[0] and source[1] <= clip.source[1]
        shift = clip.record[0] - clip.source[0]
        record = (source[0] + shift, source[1] + shift)
        shown = f"source {tc_range(source, rate)} (file frames {first}-{end})"
    if not inside:
        raise InvalidRangeError(
            f"span {span!r} ({range_in} {shown}) is not inside {clip.describe()}; "
            f"source {tc_range(clip.source, clip.rate)}"
        )
    shift = clip.source[0] - clip.record[0]
    return PatchPlan(clip, record, (record[0] + shift, record[1] + shift))


def plan_summary(plan: PatchPlan) -> dict[str, Any]:
    """What the plan says, in the editor's terms (for --json, --dry-run and metadata)."""
    clip = plan.clip
    summary: dict[str, Any] = {
        "clip": clip.name,
        "clip_index": clip.index,
        "track": f"V{clip.track_index}",
        "media": str(clip.media),
        "rate": f"{plan.rate.numerator}/{plan.rate.denominator}",
        "record": tc_range(plan.record, plan.rate),
        "record_frames": list(plan.record),
        "source": tc_range(plan.source, plan.rate),
        "source_frames": list(plan.source),
        "frames": plan.frame_count,
    }
    if clip.media_origin is not None:
        summary["file_frames"] = list(plan.file_frames())
    return summary


def default_patch_path(out: Path, plan: PatchPlan, codec: str) -> Path:
    """Beside the output timeline: ``<clip>.dubline.<first>-<end>.<ext>`` with the clip's source frames."""
    stem = _UNSAFE_NAME.sub("_", Path(plan.clip.name).stem or plan.clip.media.stem).strip("._") or "clip"
    suffix = ".mkv" if codec == "ffv1" else ".mov"
    return Path(out).parent / f"{stem}.dubline.{plan.source[0]}-{plan.source[1]}{suffix}"


# ---------------------------------------------------------------------------------------- insert


def insert_patch(
    timeline: otio.schema.Timeline,
    plan: PatchPlan,
    patch: PatchMedia,
    dub: Path,
    backend: str,
    extra_metadata: dict[str, Any] | None = None,
) -> otio.schema.Timeline:
    """A copy of ``timeline`` with every original track as it was and a new video track on top:
    a gap up to the span's record time, then the patch clip (plain-path reference, its own start
    timecode as available range, ``metadata["dubline"]`` saying where it came from)."""
    if patch.frames != plan.frame_count:
        raise InvalidInputError(f"patch {patch.path.name} has {patch.frames} frames, the span {plan.frame_count}")
    rate = plan.rate
    result = timeline.deepcopy()
    track = otio.schema.Track(name=_free_track_name(result), kind=otio.schema.TrackKind.Video)
    lead = plan.record[0] - plan.clip.timeline_start
    if lead > 0:
        track.append(otio.schema.Gap(duration=timeline_time(lead, rate)))
    available = TimeRange(timeline_time(patch.start_frame, rate), timeline_time(patch.frames, rate))
    metadata = {
        "source_clip": plan.clip.name,
        "source_clip_index": plan.clip.index,
        "source_track": plan.clip.track_name,
        "source_media": str(plan.clip.media),
        "span": {
            "record": tc_range(plan.record, rate),
            "record_frames": list(plan.record),
            "source_frames": list(plan.source),
            "rate": f"{rate.numerator}/{rate.denominator}",
        },
        "dub": str(Path(dub).resolve()),
        "backend": backend,
        **(extra_metadata or {}),
    }
    track.append(
        otio.schema.Clip(
            name=patch.path.name,
            # A plain path: Resolve 20 rejects file:// URLs on import; every other host takes paths.
            media_reference=otio.schema.ExternalReference(target_url=str(Path(patch.path).resolve()), available_range=available),
            source_range=available,
            metadata={METADATA_KEY: metadata},
        )
    )
    result.tracks.append(track)
    return result


def _free_track_name(timeline: otio.schema.Timeline) -> str:
    taken = {t.name for t in timeline.tracks}
    name, number = PATCH_TRACK_NAME, 1
    while name in taken:
        number += 1
        name = f"{PATCH_TRACK_NAME} {number}"
    return name


# ---------------------------------------------------------------------------------------- render


@dataclass(frozen=True)
class RenderSettings:
    """What ``dubline render`` would be told besides video, span and out."""

    audio: Path
    backend: str = "retrieval"
    codec: str = "prores"
    audio_offset: Fraction = Fraction(0)  # seconds of the dub that play at the span's first frame
    speaker: str | None = None  # X,Y@FRAME / box@FRAME on file frames, or an image path
    expression: str = "as-source"
    with_audio: bool = False
    length_policy: str = "pad_or_trim"
    backend_options: dict[str, str] = field(default_factory=dict)


#: Renders ``plan`` into ``patch`` -> (PatchMedia, the renderer's report as a dict, warnings).
Renderer = Callable[["PatchPlan", Path, RenderSettings, bool], tuple[PatchMedia, dict[str, Any], list[str]]]


def check_media(plan: PatchPlan, probe: Callable[[Path], Any] | None = None) -> tuple[PatchPlan, list[str]]:
    """Check the clip's media file against the plan: same frame rate, and the media origin taken
    from the file's start timecode when the timeline does not give it. Returns the plan (with the
    origin filled in) and warnings."""
    if probe is None:
        from dubline.stages import media

        probe = media.probe
    info = probe(plan.clip.media)
    video = info.video
    if video is None:
        raise InvalidInputError(f"{plan.clip.media} (clip {plan.clip.name!r}) has no video stream")
    if video.rate != plan.rate:
        raise InvalidInputError(
            f"clip {plan.clip.name!r} plays {plan.clip.media.name} ({float(video.rate):.3f} fps) at "
            f"{float(plan.rate):.3f} fps; dubline patches clips whose media has the timeline's rate"
        )
    file_origin = timing.timecode_to_frames(video.start_timecode, video.rate) if video.start_timecode else 0
    warnings = []
    clip = plan.clip
    if clip.media_origin is None:
        plan = replace(plan, clip=replace(clip, media_origin=file_origin))
    elif clip.media_origin != file_origin:
        warnings.append(
            f"the timeline says {clip.media.name} starts at {timing.frames_to_timecode(clip.media_origin, plan.rate)}, "
            f"the file's timecode is {timing.frames_to_timecode(file_origin, plan.rate)}; frames follow the timeline"
        )
    return plan, warnings


def render_in_process(plan: PatchPlan, patch: Path, settings: RenderSettings, overwrite: bool,
                      progress: Any = None, cache_root: Path | None = None) -> tuple[PatchMedia, dict[str, Any], list[str]]:
    """Render the span with ``pipeline.render`` in this process."""
    from dubline.core.progress import no_progress
    from dubline.pipeline import RenderRequest, render

    first, end = plan.file_frames()
    request = RenderRequest.from_text(
        video=plan.clip.media, audio=settings.audio, span=timing.frames_to_range(first, end, plan.rate), out=patch,
        backend=settings.backend, codec=settings.codec, audio_offset=timing.seconds_time(settings.audio_offset),
        speaker=settings.speaker, expression=settings.expression, overwrite=overwrite, with_audio=settings.with_audio,
        length_policy=settings.length_policy, backend_options=dict(settings.backend_options),
    )
    result = render(request, progress=progress or no_progress, cache_root=cache_root)
    start = timing.timecode_to_frames(result.start_timecode, plan.rate) if result.start_timecode else first
    return PatchMedia(result.out, result.frames_written, start), result.to_dict(), list(result.warnings)


def engine_renderer(client: Any, on_event: Callable[[Any], None] | None = None) -> Renderer:
    """A renderer that submits the span to a running engine through ``dubline_client``."""

    def render(plan: PatchPlan, patch: Path, settings: RenderSettings, overwrite: bool):
        from dubline_client import frames_span, rational, render_spec

        first, end = plan.file_frames()
        speaker = settings.speaker or ""
        if speaker and "@" not in speaker:
            speaker = os.path.abspath(speaker)
        spec = render_spec(
            os.path.abspath(plan.clip.media), os.path.abspath(settings.audio), frames_span(first, end, plan.rate),
            os.path.abspath(patch), backend=settings.backend, codec=settings.codec,
            audio_offset=rational(settings.audio_offset), speaker=speaker, expression=settings.expression,
            overwrite=overwrite, with_audio=settings.with_audio, length_policy=settings.length_policy,
            backend_options=settings.backend_options,
        )
        done = client.render_and_wait(spec, on_event=on_event)
        start = timing.timecode_to_frames(done.start_timecode, plan.rate) if done.start_timecode else first
        report = {
            "out": done.out, "frames_written": done.frames_written, "span": [done.span_first, done.span_end],
            "start_timecode": done.start_timecode, "backend": done.backend, "frames_patched": done.frames_patched,
            "warnings": list(done.warnings),
        }
        return PatchMedia(Path(done.out), int(done.frames_written), start), report, list(done.warnings)

    return render


def round_trip(
    timeline_path: Path,
    clip: str,
    out: Path,
    settings: RenderSettings,
    renderer: Renderer,
    span: str | None = None,
    range_in: str = "record",
    patch: Path | None = None,
    overwrite: bool = False,
    adapter: str | None = None,
    edl_rate: Fraction | None = None,
) -> RoundTripResult:
    """Read, resolve, render, insert, write. Refuses existing outputs before rendering anything, and
    removes a patch it rendered when the timeline cannot be written."""
    from dubline.core.paths import check_outputs
    from dubline.interchange.timeline import write_timeline
    from dubline.stages.media import check_output

    if Path(out).suffix.lower() != ".otio":
        raise InvalidInputError(f"--out {out} must be an .otio file (convert it with otioconvert if your host needs XML)")
    timeline = read_timeline(timeline_path, adapter, edl_rate)
    plan = plan_span(resolve_clip(timeline, clip, timeline_path), span, range_in)
    plan, warnings = check_media(plan)
    patch = Path(patch) if patch is not None else default_patch_path(out, plan, settings.codec)
    inputs = {"--timeline": timeline_path, "clip media": plan.clip.media, "--audio": settings.audio}
    check_outputs({"--out": out, "--patch": patch}, inputs)
    check_output(out, overwrite)
    check_output(patch, overwrite)
    patch_existed = patch.exists()
    media, report, render_warnings = renderer(plan, patch, settings, overwrite)
    warnings.extend(render_warnings)
    try:
        written = insert_patch(timeline, plan, media, settings.audio, settings.backend, {"codec": settings.codec})
        write_timeline(written, out, overwrite, inputs)
    except BaseException:
        if not patch_existed:
            Path(media.path).unlink(missing_ok=True)  # a patch no timeline points at is half a result
        raise
    return RoundTripResult(Path(out), Path(media.path), plan, report, warnings)
