"""The media layer: the only package that opens media files (built on PyAV).

    probe(path) -> MediaInfo
    read_span(path, span: TimeRange) -> Iterator[VideoFrame]          # exact frames, streamed
    read_frames(path, indices: Iterable[int]) -> Iterator[VideoFrame] # scattered frames, few seeks
    read_audio(path, span: TimeRange | tuple[float, float] | None, rate: int, mono: bool) -> AudioClip
    keyframes_before(path, indices) -> list[int]                      # where reads start cheaply
    write_patch(frames: Iterable[np.ndarray | VideoFrame | EditedFrame], path, codec, rate: Fraction,
                start_timecode: str | None, colour_tags: ColourTags | None,
                audio: AudioClip | None = None, overwrite: bool = False) -> Path

Frames are RGB arrays of shape (H, W, 3) as stored (``VideoFrame.image``): uint8 for 8-bit
sources, uint16 (full 16-bit scale) above 8 bits; an alpha channel is ``VideoFrame.alpha``.
Spans are OTIO ``TimeRange`` at any rate; they are resolved against the source's exact
rate and a frame's index comes from its pts, never from counting decoded frames. A
variable-frame-rate stream is read on its conform grid (``media.conform``): ``probe`` reports that
grid's rate and frame count and ``read_span`` yields its slots.

A patch keeps the source's own coded samples wherever it does not change them: ``read_span(...,
keep_coded=True)`` keeps the decoded picture and converts it to RGB only where it is read (a
``LazyImage``; ``overlaid`` edits one without converting the rest), and an ``EditedFrame`` (the
edited RGB image, that picture, the edited box) lets ``write_patch`` convert only the box from RGB.

Pictures stay as stored (orientation, pixel grid, depth); ``FrameView`` gives analysis its upright,
square-pixel, 8-bit view and maps coordinates between the two (``media.view``).

Time origin: frame 0 / second 0 is the start of the video stream (its ``start_time``);
audio is read on that same clock so a span's audio lines up with its frames.
"""

from dubline.stages.media.audio import read_audio, write_audio
from dubline.stages.media.colour import convert_depth, to_8bit
from dubline.stages.media.fingerprint import media_fingerprint
from dubline.stages.media.keyframes import keyframes_before
from dubline.stages.media.lazy import Image, LazyImage, OverlaidImage, overlaid
from dubline.stages.media.orientation import Orientation
from dubline.stages.media.probe import probe
from dubline.stages.media.read import read_frames, read_image, read_span
from dubline.stages.media.types import (
    AudioClip,
    AudioStreamInfo,
    ColourTags,
    Conform,
    EditedFrame,
    MediaInfo,
    PictureLayout,
    VideoFrame,
    VideoStreamInfo,
    rate_text,
)
from dubline.stages.media.view import FrameView
from dubline.stages.media.write import (
    DEFAULT_PATCH_CODEC,
    PATCH_CODECS,
    BackgroundWriter,
    check_output,
    patch_warnings,
    write_patch,
)

__all__ = [
    "DEFAULT_PATCH_CODEC", "PATCH_CODECS", "AudioClip", "AudioStreamInfo", "BackgroundWriter", "ColourTags", "Conform",
    "EditedFrame", "FrameView", "Image", "LazyImage", "MediaInfo", "OverlaidImage", "Orientation", "PictureLayout", "VideoFrame", "VideoStreamInfo", "check_output",
    "convert_depth", "media_fingerprint", "overlaid", "patch_warnings", "probe", "rate_text", "read_audio", "keyframes_before",
    "read_frames", "read_image", "read_span", "to_8bit", "write_audio", "write_patch",
]
