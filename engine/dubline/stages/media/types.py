"""The media layer's data: stream descriptions, decoded frames, audio clips."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

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
    start_pts: int = 0  # pts of frame 0, in time_base


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


