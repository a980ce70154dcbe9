"""The timeline ``render --otio`` writes (the patch above its whole source), written atomically.

Media references carry plain absolute paths, not ``file://`` URLs: Resolve 20 rejects URLs on
import and every other host accepts paths.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Mapping, Sequence

import opentimelineio as otio

from dubline.core.flags import FrameFlag
from dubline.core.paths import publish_file
from dubline.interchange.frames import timeline_time
from dubline.interchange.insert import PatchMedia, insert_patch
from dubline.interchange.plan import PatchPlan, ResolvedClip


def patch_timeline(
    source: Path,
    source_frames: int,
    source_start_frame: int,
    span: otio.opentime.TimeRange,
    patch: Path,
    rate: Fraction,
    dub: Path,
    backend: str,
    name: str = "dubline patch",
    flags: Sequence[FrameFlag] = (),
) -> otio.schema.Timeline:
    """The whole source clip on V1 and, through ``insert_patch`` (the same track and metadata as
    ``dubline otio`` writes), the patch on a track above it at the span's position.

    ``span`` is in frames from the start of the source (as everywhere in dubline);
    ``source_start_frame`` is the source's start timecode in frames, which both clips' media
    ranges start from so a conform by timecode lines up. ``flags`` become markers on the patch clip.
    """
    float_rate = float(rate)
    first = int(round(span.start_time.to_frames(float_rate)))
    frames = int(round(span.duration.to_frames(float_rate)))
    whole = (source_start_frame, source_start_frame + source_frames)
    available = otio.opentime.TimeRange(timeline_time(whole[0], rate), timeline_time(source_frames, rate))
    timeline = otio.schema.Timeline(name=name, global_start_time=timeline_time(whole[0], rate))
    track = otio.schema.Track(name="V1 source", kind=otio.schema.TrackKind.Video)
    track.append(otio.schema.Clip(
        name=source.name, source_range=available,
        media_reference=otio.schema.ExternalReference(target_url=str(source.resolve()), available_range=available),
    ))
    timeline.tracks.append(track)
    clip = ResolvedClip(name=source.name, index=1, track_name=track.name, track_index=1, media=source, rate=rate,
                        media_origin=whole[0], source=whole, record=whole, timeline_start=whole[0])
    placed = (whole[0] + first, whole[0] + first + frames)
    return insert_patch(timeline, PatchPlan(clip, placed, placed), PatchMedia(patch, frames, placed[0], tuple(flags)), dub, backend)


def write_timeline(timeline: otio.schema.Timeline, path: Path, overwrite: bool = False,
                   inputs: Mapping[str, str | os.PathLike | None] | None = None) -> Path:
    """Write ``.otio`` JSON atomically; never replaces an existing file unless asked, never an input."""
    return publish_file(
        path, lambda temporary: otio.adapters.write_to_file(timeline, str(temporary), adapter_name="otio_json"),
        overwrite, inputs,
    )
