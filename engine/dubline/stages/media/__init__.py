"""The media layer: the only package that opens media files (built on PyAV).

    probe(path) -> MediaInfo
    read_span(path, span: TimeRange) -> Iterator[VideoFrame]          # exact frames, streamed
    read_audio(path, span: TimeRange | tuple[float, float] | None, rate: int, mono: bool) -> AudioClip
    keyframes_before(path, indices) -> list[int]                      # where reads start cheaply
    write_patch(frames: Iterable[np.ndarray | VideoFrame], path, codec, rate: Fraction,
                start_timecode: str | None, colour_tags: ColourTags | None,
                audio: AudioClip | None = None, overwrite: bool = False) -> Path

Frames are RGB uint8 arrays of shape (H, W, 3) (``VideoFrame.image``).
Spans are OTIO ``TimeRange`` at any rate; they are resolved against the source's exact
rate and a frame's index comes from its pts, never from counting decoded frames.

Time origin: frame 0 / second 0 is the start of the video stream (its ``start_time``);
audio is read on that same clock so a span's audio lines up with its frames.
"""

from dubline.stages.media.audio import read_audio, write_audio
from dubline.stages.media.fingerprint import media_fingerprint
from dubline.stages.media.keyframes import keyframes_before
from dubline.stages.media.probe import probe
from dubline.stages.media.read import read_image, read_span
from dubline.stages.media.types import (
    AudioClip,
    AudioStreamInfo,
    ColourTags,
    MediaInfo,
    VideoFrame,
    VideoStreamInfo,
)
from dubline.stages.media.write import (
    DEFAULT_PATCH_CODEC,
    PATCH_CODECS,
    BackgroundWriter,
    check_output,
    write_patch,
)

__all__ = [
    "DEFAULT_PATCH_CODEC", "PATCH_CODECS", "AudioClip", "AudioStreamInfo", "BackgroundWriter", "ColourTags", "MediaInfo",
    "VideoFrame", "VideoStreamInfo", "check_output", "keyframes_before", "media_fingerprint", "probe", "read_audio", "read_image",
    "read_span", "write_audio", "write_patch",
]
