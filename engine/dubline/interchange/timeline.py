"""A timeline that places the patch above its source, written atomically.

Media references carry plain absolute paths, not ``file://`` URLs: Resolve 20 rejects URLs on
import and every other host accepts paths.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Mapping

import opentimelineio as otio

from dubline.core.paths import publish_file


def _float_rate(rate: Fraction) -> float:
    return float(rate)


def _reference(path: Path, start_frame: int, frame_count: int, rate: Fraction) -> otio.schema.ExternalReference:
    return otio.schema.ExternalReference(
        target_url=str(path.resolve()),
        available_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(start_frame, _float_rate(rate)),
            otio.opentime.RationalTime(frame_count, _float_rate(rate)),
        ),
    )


def patch_timeline(
    source: Path,
    source_frames: int,
    source_start_frame: int,
    span: otio.opentime.TimeRange,
    patch: Path,
    rate: Fraction,
    name: str = "dubline patch",
) -> otio.schema.Timeline:
    """Track 1: the whole source clip; track 2: the patch at the span's position.

    ``span`` is in frames from the start of the source (as everywhere in dubline);
    ``source_start_frame`` is the source's start timecode in frames, which both clips' media
    ranges start from so a conform by timecode lines up.
    """
    float_rate = _float_rate(rate)
    span_start = int(round(span.start_time.to_frames(float_rate)))
    span_frames = int(round(span.duration.to_frames(float_rate)))

    timeline = otio.schema.Timeline(name=name)
    timeline.global_start_time = otio.opentime.RationalTime(source_start_frame, float_rate)
    source_track = otio.schema.Track(name="V1 source", kind=otio.schema.TrackKind.Video)
    source_track.append(
        otio.schema.Clip(
            name=source.name,
            media_reference=_reference(source, source_start_frame, source_frames, rate),
            source_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(source_start_frame, float_rate),
                otio.opentime.RationalTime(source_frames, float_rate),
            ),
        )
    )
    patch_track = otio.schema.Track(name="V2 dubline", kind=otio.schema.TrackKind.Video)
    if span_start > 0:
        patch_track.append(otio.schema.Gap(duration=otio.opentime.RationalTime(span_start, float_rate)))
    patch_start = source_start_frame + span_start
    patch_track.append(
        otio.schema.Clip(
            name=patch.name,
            media_reference=_reference(patch, patch_start, span_frames, rate),
            source_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(patch_start, float_rate),
                otio.opentime.RationalTime(span_frames, float_rate),
            ),
        )
    )
    timeline.tracks.append(source_track)
    timeline.tracks.append(patch_track)
    return timeline


def write_timeline(timeline: otio.schema.Timeline, path: Path, overwrite: bool = False,
                   inputs: Mapping[str, str | os.PathLike | None] | None = None) -> Path:
    """Write ``.otio`` JSON atomically; never replaces an existing file unless asked, never an input."""
    return publish_file(
        path, lambda temporary: otio.adapters.write_to_file(timeline, str(temporary), adapter_name="otio_json"),
        overwrite, inputs,
    )
