"""The patched timeline: a copy of the editor's timeline with the patch on a new top video track,
the render's flags (``core.flags``) as markers on the patch clip."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import opentimelineio as otio

from dubline.core.errors import InvalidInputError
from dubline.core.flags import FrameFlag
from dubline.interchange.frames import fraction_text, timeline_time
from dubline.interchange.plan import PatchPlan
from dubline.interchange.read import METADATA_KEY

PATCH_TRACK_NAME = "dubline"
#: Marker colour of each flag kind: yellow where the source shows through, cyan where the dub is
#: silent (usually fine), red where qc measured a problem.
MARKER_COLOURS = {
    "passthrough": otio.schema.MarkerColor.YELLOW,
    "dub_silent": otio.schema.MarkerColor.CYAN,
}
QC_MARKER_COLOUR = otio.schema.MarkerColor.RED


@dataclass(frozen=True)
class PatchMedia:
    """The rendered patch as the timeline refers to it."""

    path: Path
    frames: int
    start_frame: int  # the patch's start timecode, in frames at the plan's rate
    flags: tuple[FrameFlag, ...] = ()  # runs of patch frames to look at, written as markers


@dataclass(frozen=True)
class PlacedPatch:
    """One rendered span and where it goes: what ``insert_patches`` lays on the new track."""

    plan: PatchPlan
    media: PatchMedia
    dub: Path
    backend: str
    extra_metadata: dict[str, Any] | None = None


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
    timecode as available range, ``metadata["dubline"]`` saying where it came from). The record
    time is absolute, so a clip inside a nested sequence is covered where it shows."""
    return insert_patches(timeline, [PlacedPatch(plan, patch, dub, backend, extra_metadata)])


def insert_patches(timeline: otio.schema.Timeline, patches: Sequence[PlacedPatch]) -> otio.schema.Timeline:
    """A copy of ``timeline`` with all ``patches`` on one new top video track, each at its record
    time with gaps between (what ``insert_patch`` does for one; a reel-wide batch lays many).
    Patches may not overlap in record time: one track shows one picture per frame."""
    result = timeline.deepcopy()
    track = otio.schema.Track(name=_free_track_name(result), kind=otio.schema.TrackKind.Video)
    position = None
    for placed in sorted(patches, key=lambda p: p.plan.record[0]):
        plan, patch = placed.plan, placed.media
        if patch.frames != plan.frame_count:
            raise InvalidInputError(f"patch {patch.path.name} has {patch.frames} frames, the span {plan.frame_count}")
        rate = plan.rate
        if position is None:
            position = plan.clip.timeline_start
        lead = plan.record[0] - position
        if lead < 0:
            raise InvalidInputError(
                f"patch {patch.path.name} at record {plan.clip.record_tc(plan.record)} overlaps the patch before it"
            )
        if lead > 0:
            track.append(otio.schema.Gap(duration=timeline_time(lead, rate)))
        track.append(_patch_clip(placed))
        position = plan.record[1]
    result.tracks.append(track)
    return result


def _patch_clip(placed: PlacedPatch) -> otio.schema.Clip:
    plan, patch = placed.plan, placed.media
    rate = plan.rate
    available = otio.opentime.TimeRange(timeline_time(patch.start_frame, rate), timeline_time(patch.frames, rate))
    metadata = {
        "source_clip": plan.clip.name,
        "source_clip_index": plan.clip.index,
        "source_track": plan.clip.track_name,
        "source_media": str(plan.clip.media),
        "span": {
            "record": plan.clip.record_tc(plan.record),
            "record_frames": list(plan.record),
            "source_frames": list(plan.source),
            "rate": fraction_text(rate),
        },
        "dub": str(Path(placed.dub).resolve()),
        "backend": placed.backend,
        **(placed.extra_metadata or {}),
    }
    if plan.clip.nest:
        metadata["source_nest"] = list(plan.clip.nest)
    clip = otio.schema.Clip(
        name=patch.path.name,
        # A plain path: Resolve 20 rejects file:// URLs on import; every other host takes paths.
        media_reference=otio.schema.ExternalReference(target_url=str(Path(patch.path).resolve()), available_range=available),
        source_range=available,
        metadata={METADATA_KEY: metadata},
    )
    # Marker names count frames as ``dubline render --range`` does: from the media file's first frame.
    file_first = plan.file_frames()[0] if plan.clip.media_origin is not None else 0
    clip.markers.extend(flag_marker(flag, patch.start_frame, file_first, rate) for flag in patch.flags)
    return clip


def flag_marker(flag: FrameFlag, patch_start: int, source_first: int, rate) -> otio.schema.Marker:
    """A marker over the flag's frames in the patch clip's own time (its start timecode on), named
    with the source file's frames it covers and what is wrong ("frames 112-119: no face")."""
    marked = otio.opentime.TimeRange(timeline_time(patch_start + flag.first, rate), timeline_time(flag.end - flag.first, rate))
    return otio.schema.Marker(
        name=flag.label(source_first), marked_range=marked,
        color=MARKER_COLOURS.get(flag.kind, QC_MARKER_COLOUR),
        metadata={METADATA_KEY: {**flag.to_dict(), "source_frames": [source_first + flag.first, source_first + flag.end]}},
    )


def _free_track_name(timeline: otio.schema.Timeline) -> str:
    taken = {t.name for t in timeline.tracks}
    name, number = PATCH_TRACK_NAME, 1
    while name in taken:
        number += 1
        name = f"{PATCH_TRACK_NAME} {number}"
    return name
