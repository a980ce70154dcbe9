"""The media layer: the only module that opens media files (built on PyAV).

CONTRACT (implementation in progress by the media owner; signatures are fixed):

    probe(path) -> MediaInfo
    read_span(path, span: TimeRange) -> Iterator[VideoFrame]          # exact frames, streamed
    read_audio(path, span: TimeRange | tuple[float, float] | None, rate: int, mono: bool) -> AudioClip
    write_patch(frames: Iterable[np.ndarray | VideoFrame], path, codec, rate: Fraction,
                start_timecode: str | None, colour_tags: ColourTags | None,
                audio: AudioClip | None = None, overwrite: bool = False) -> Path

Frames are RGB uint8 arrays of shape (H, W, 3) (``VideoFrame.image``).
Spans are OTIO ``TimeRange`` at the source's exact rate; a frame index comes from the pts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import opentimelineio as otio


@dataclass(frozen=True)
class ColourTags:
    """Colour description copied from source to patch (FFmpeg names, None when unset)."""

    primaries: str | None = None
    transfer: str | None = None
    matrix: str | None = None
    range: str | None = None


@dataclass(frozen=True)
class VideoStreamInfo:
    index: int
    codec: str
    width: int
    height: int
    pixel_format: str
    rate: Fraction  # exact, e.g. Fraction(24000, 1001)
    time_base: Fraction
    frame_count: int
    duration: otio.opentime.RationalTime  # at `rate`
    start_timecode: str | None
    colour: ColourTags
    variable_rate: bool


@dataclass(frozen=True)
class AudioStreamInfo:
    index: int
    codec: str
    sample_rate: int
    channels: int
    layout: str
    sample_format: str
    duration_seconds: float


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    format_name: str
    size_bytes: int
    video: VideoStreamInfo | None
    audio: list[AudioStreamInfo] = field(default_factory=list)


@dataclass(frozen=True)
class VideoFrame:
    index: int  # frame number from the start of the stream, derived from pts
    pts: int  # in the stream's time base
    time: otio.opentime.RationalTime  # index at the stream's rate
    image: np.ndarray  # (H, W, 3) uint8 RGB


@dataclass(frozen=True)
class AudioClip:
    samples: np.ndarray  # float32, shape (n,) when mono else (channels, n)
    sample_rate: int


def probe(path: str | Path) -> MediaInfo:
    raise NotImplementedError


def read_span(path: str | Path, span: otio.opentime.TimeRange) -> Iterator[VideoFrame]:
    raise NotImplementedError


def read_audio(
    path: str | Path,
    span: otio.opentime.TimeRange | tuple[float, float] | None = None,
    rate: int = 16000,
    mono: bool = True,
) -> AudioClip:
    raise NotImplementedError


def write_patch(
    frames: Iterable[np.ndarray | VideoFrame],
    path: str | Path,
    codec: str,
    rate: Fraction,
    start_timecode: str | None = None,
    colour_tags: ColourTags | None = None,
    audio: AudioClip | None = None,
    overwrite: bool = False,
) -> Path:
    raise NotImplementedError
