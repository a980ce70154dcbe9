"""The media layer's data: stream descriptions, decoded frames, audio clips."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import opentimelineio as otio

if TYPE_CHECKING:
    import av

    from dubline.stages.media.lazy import LazyImage, OverlaidImage


@dataclass(frozen=True)
class ColourTags:
    """Colour description copied from source to patch (FFmpeg names, None when unset)."""

    primaries: str | None = None
    transfer: str | None = None
    matrix: str | None = None
    range: str | None = None


#: FFmpeg's AVFieldOrder values by name ("tb": top field coded first, bottom displayed first).
FIELD_ORDERS = {0: "unknown", 1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}


@dataclass(frozen=True)
class PictureLayout:
    """How a stream stores its pictures, copied from source to patch so the patch overlays it:
    the display matrix (rotation/flip tag, FFmpeg's 9-int layout), the pixel aspect and the
    field order. Pixels are always kept as stored; only analysis looks at them upright."""

    display_matrix: tuple[int, ...] | None = None
    sample_aspect_ratio: Fraction = Fraction(1)
    field_order: str = "progressive"  # a FIELD_ORDERS name

    @property
    def interlaced(self) -> bool:
        return self.field_order in ("tt", "bb", "tb", "bt")


@dataclass(frozen=True)
class Conform:
    """A variable-frame-rate stream seen on a constant grid, as an editor conforms it.

    Slot k of the grid (time k / ``rate`` from the stream start) shows the last source frame whose
    timestamp is at or before the middle of the slot; ``slot_pts`` holds that frame's pts for every
    slot. ``held``: slots that repeat the previous slot's frame; ``dropped``: source frames no slot
    shows. The nominal rate rule is in ``media.conform``.
    """

    rate: Fraction
    source_frames: int
    held: int
    dropped: int
    slot_pts: np.ndarray = field(repr=False, compare=False)  # (frame_count,) int64
    source_pts: np.ndarray = field(repr=False, compare=False)  # (source_frames,) int64, sorted

    def describe(self, held: int | None = None, dropped: int | None = None) -> str:
        held = self.held if held is None else held
        dropped = self.dropped if dropped is None else dropped
        return f"variable frame rate: conformed to {rate_text(self.rate)} fps, {held} held, {dropped} dropped"

    def span_counts(self, first: int, end: int) -> tuple[int, int]:
        """(held, dropped) within slots [first, end): slots repeating their predecessor, and source
        frames between the span's first and last shown frames that no slot shows."""
        shown = self.slot_pts[first:end]
        if not len(shown):
            return 0, 0
        held = int(np.count_nonzero(shown[1:] == shown[:-1]))
        low, high = np.searchsorted(self.source_pts, [shown[0], shown[-1]], side="left")
        return held, int(high - low + 1 - len(np.unique(shown)))


def rate_text(rate: Fraction) -> str:
    """25, 29.97, 23.976 or 12.5: a rate as people write it."""
    if rate.denominator == 1:
        return str(rate.numerator)
    return f"{float(rate):.3f}".rstrip("0").rstrip(".") if rate.denominator == 1001 else f"{float(rate):.6g}"


@dataclass(frozen=True)
class VideoStreamInfo:
    index: int
    codec: str
    width: int  # stored (coded) picture size; see FrameView for the upright, square-pixel size
    height: int
    pixel_format: str
    rate: Fraction  # exact, e.g. Fraction(24000, 1001); the conform rate of a variable-rate stream
    time_base: Fraction
    frame_count: int  # on the conform grid for a variable-rate stream
    duration: otio.opentime.RationalTime  # at `rate`
    start_timecode: str | None
    colour: ColourTags
    variable_rate: bool
    start_pts: int = 0  # pts of frame 0, in time_base
    bit_depth: int = 8  # bits per component as decoded (10-bit ProRes 422, 12-bit ProRes 4444)
    alpha: bool = False  # the pictures carry an alpha channel (kept in VideoFrame.alpha)
    layout: PictureLayout = field(default_factory=PictureLayout)
    conform: Conform | None = None  # how a variable-rate stream maps onto `rate`


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
    index: int  # frame number from the start of the stream (the conform slot), derived from pts
    pts: int  # in the stream's time base (of the source frame shown)
    time: otio.opentime.RationalTime  # index at the stream's rate
    #: (H, W, 3) RGB as stored: uint8 for 8-bit sources, uint16 above 8 bits; a ``LazyImage``
    #: (converted where sliced) when read with ``keep_coded=True``
    image: np.ndarray | LazyImage
    alpha: np.ndarray | None = None  # (H, W), same dtype, for sources with an alpha channel
    #: The decoded picture as coded (Y'CbCr planes), kept when ``read_span(..., keep_coded=True)``
    #: asks: the encoder copies it wherever an edit left the picture alone (``EditedFrame``).
    coded: av.VideoFrame | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class EditedFrame:
    """A frame for ``write_patch``: ``image`` (RGB, as ``VideoFrame.image``) is the decoded picture
    ``coded`` with only the pixels inside ``changed`` edited (None: nothing was).

    When the patch's pixel format is the source's own, the encoder takes the source's samples
    outside ``changed`` as they are and converts only the box from RGB: untouched pixels stay the
    source's exactly (an 8-bit 4:2:0 round trip through RGB moves 1-2 % of chroma samples by up to
    6 levels) and a mouth-sized box costs a fraction of a whole-frame conversion.
    """

    image: np.ndarray | LazyImage | OverlaidImage
    coded: av.VideoFrame = field(repr=False)
    changed: tuple[int, int, int, int] | None  # rows y0:y1, columns x0:x1


@dataclass(frozen=True)
class AudioClip:
    samples: np.ndarray  # float32, shape (n,) when mono else (channels, n)
    sample_rate: int


