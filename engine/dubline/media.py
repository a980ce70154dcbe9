"""The media layer: the only module that opens media files (built on PyAV).

    probe(path) -> MediaInfo
    read_span(path, span: TimeRange) -> Iterator[VideoFrame]          # exact frames, streamed
    read_audio(path, span: TimeRange | tuple[float, float] | None, rate: int, mono: bool) -> AudioClip
    write_patch(frames: Iterable[np.ndarray | VideoFrame], path, codec, rate: Fraction,
                start_timecode: str | None, colour_tags: ColourTags | None,
                audio: AudioClip | None = None, overwrite: bool = False) -> Path

Frames are RGB uint8 arrays of shape (H, W, 3) (``VideoFrame.image``).
Spans are OTIO ``TimeRange`` at any rate; they are resolved against the source's exact
rate and a frame's index comes from its pts, never from counting decoded frames.

Time origin: frame 0 / second 0 is the start of the video stream (its ``start_time``);
audio is read on that same clock so a span's audio lines up with its frames.
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import av
import numpy as np
import opentimelineio as otio
from av.video.reformatter import Interpolation

from dubline.errors import (
    InvalidInputError,
    InvalidRangeError,
    InvalidRateError,
    MediaDecodeError,
    MediaNotFoundError,
    NoStreamError,
    OutputExistsError,
    OutputPathError,
)
from dubline.paths import check_not_input
from dubline.timing import parse_rate, range_to_frames, snap_rate, timecode_to_frames

log = logging.getLogger(__name__)


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


# FFmpeg's names for the AVColor* enums (libavutil/pixfmt.h); "unspecified" maps to None.
_PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
              9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}
_TRANSFERS = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
              9: "log100", 10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1",
              14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"}
_MATRICES = {0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco",
             9: "bt2020nc", 10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc",
             13: "chroma-derived-c", 14: "ictcp"}
_RANGES = {1: "tv", 2: "pc"}
_UNSPECIFIED_MATRIX = 2
_MATRIX_CODES = {name: code for code, name in _MATRICES.items()}

# swscale's default YCbCr->RGB fast path truncates: a round trip through it drifts 1-1.7 levels
# darker, which alone held ProRes 422 patches to 44 dB. Accurate rounding with full chroma
# interpolation is unbiased (62 dB for RGB -> 4:2:2 10-bit -> RGB) for ~1.5 ms more per
# 844x844 frame. Encoding converts with the inverse settings and the source's tagged matrix.
_TO_RGB = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
_FROM_RGB = Interpolation.BILINEAR | Interpolation.ACCURATE_RND

# How many leading packets probe inspects to tell constant from variable frame rate.
_VFR_SCAN_PACKETS = 120
# Most frames a decoder may hold back for reordering (H.264/HEVC allow up to 16).
_MAX_REORDER_DEPTH = 16


# --------------------------------------------------------------------------- opening


def _check_input(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise MediaNotFoundError(f"{path} is a directory, not a media file")
    if not path.exists():
        raise MediaNotFoundError(f"media file {path} does not exist")
    return path


def _open(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path), metadata_errors="replace")
    except av.error.FileNotFoundError as error:
        raise MediaNotFoundError(f"media file {path} does not exist") from error
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise MediaDecodeError(f"{path} is not a readable media file ({error})") from error
    if not container.streams.video and not container.streams.audio:
        container.close()
        raise MediaDecodeError(f"{path} has no audio or video streams (not media, or truncated)")
    return container


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise NoStreamError(f"{path} has no video stream")
    return container.streams.video[0]


# --------------------------------------------------------------------------- probe


def probe(path: str | Path) -> MediaInfo:
    """Describe a media file: its first video stream (rate, frame count, timecode, colour)
    and every audio stream. Raises ``MediaDecodeError`` for non-media and truncated files."""
    path = _check_input(path)
    with _open(path) as container:
        video = None
        if container.streams.video:
            video = _video_info(container, container.streams.video[0], path)
        audio = [_audio_info(stream, container) for stream in container.streams.audio]
        return MediaInfo(
            path=path,
            format_name=container.format.name,
            size_bytes=path.stat().st_size,
            video=video,
            audio=audio,
        )


def _video_info(container, stream, path: Path) -> VideoStreamInfo:
    context = stream.codec_context
    rate = _stream_rate(stream, path)
    time_base = Fraction(stream.time_base)
    start_pts = stream.start_time if stream.start_time is not None else 0
    frame_count = _frame_count(container, stream, rate, time_base, start_pts)
    variable = _is_variable_rate(container, stream, rate, time_base)
    _check_reaches_end(container, stream, path)
    return VideoStreamInfo(
        index=stream.index,
        codec=context.name,
        width=context.width,
        height=context.height,
        pixel_format=context.format.name if context.format else stream.format.name,
        rate=rate,
        time_base=time_base,
        frame_count=frame_count,
        duration=otio.opentime.RationalTime(frame_count, float(rate)),
        start_timecode=_start_timecode(container, stream),
        colour=_colour_tags(context),
        variable_rate=variable,
        start_pts=start_pts,
    )


def _stream_rate(stream, path: Path) -> Fraction:
    average = Fraction(stream.average_rate) if stream.average_rate else None
    guessed = Fraction(stream.guessed_rate) if stream.guessed_rate else None
    # The guessed (r_frame_rate) value is the cleaner rational when both agree; the average
    # alone is what a variable-rate file can honestly claim.
    if average and guessed and abs(average - guessed) / guessed < Fraction(1, 500):
        rate = guessed
    else:
        rate = average or guessed
    if not rate or rate <= 0:
        raise MediaDecodeError(f"{path}: the video stream has no usable frame rate")
    return snap_rate(rate)


def _frame_count(container, stream, rate: Fraction, time_base: Fraction, start_pts: int) -> int:
    if stream.frames:
        return stream.frames
    if stream.duration:
        seconds = stream.duration * time_base
    elif container.duration:
        seconds = Fraction(container.duration, av.time_base) - start_pts * time_base
    else:
        return _count_packets(container, stream)
    return max(0, math.floor(seconds * rate + Fraction(1, 2)))


def _count_packets(container, stream) -> int:
    count = sum(1 for packet in container.demux(stream) if packet.size)
    container.seek(0, stream=stream)
    return count


def _is_variable_rate(container, stream, rate: Fraction, time_base: Fraction) -> bool:
    """Compare the spacing of the first packets' pts with one frame duration."""
    pts = []
    for packet in container.demux(stream):
        if packet.pts is not None:
            pts.append(packet.pts)
        if len(pts) >= _VFR_SCAN_PACKETS:
            break
    container.seek(stream.start_time or 0, stream=stream)
    # B-frames arrive out of presentation order: sort, and drop the window's tail, where
    # frames still to come (reordered past the window) would look like gaps.
    pts = sorted(pts)[: max(2, len(pts) - _MAX_REORDER_DEPTH)]
    expected = 1 / (rate * time_base)
    tolerance = max(Fraction(1), expected / 100)  # coarse time bases round each step by a tick
    return any(abs((b - a) - expected) > tolerance for a, b in zip(pts, pts[1:]))


def _check_reaches_end(container, stream, path: Path) -> None:
    """A file cut short (its index written up front) still opens; its last packet does not read."""
    if not stream.duration:
        return
    last_pts = (stream.start_time or 0) + stream.duration - 1
    try:
        container.seek(last_pts, backward=True, any_frame=True, stream=stream)
        packet = next((p for p in container.demux(stream)), None)
        container.seek(stream.start_time or 0, stream=stream)
    except av.error.FFmpegError as error:
        raise MediaDecodeError(f"{path} is truncated or corrupt near its end ({error})") from error
    if packet is None or packet.size == 0:
        raise MediaDecodeError(f"{path} is truncated: its last frames are missing from the file")


def _start_timecode(container, stream) -> str | None:
    # The mov demuxer puts a tmcd track's timecode on the video stream and on the data stream.
    candidates = [stream.metadata, *(s.metadata for s in container.streams if s.type == "data"),
                  container.metadata]
    for metadata in candidates:
        for key, value in metadata.items():
            if key.lower() == "timecode" and value:
                return value
    return None


def _colour_tags(context) -> ColourTags:
    matrix = context.colorspace
    return ColourTags(
        primaries=_PRIMARIES.get(context.color_primaries),
        transfer=_TRANSFERS.get(context.color_trc),
        matrix=None if matrix == _UNSPECIFIED_MATRIX else _MATRICES.get(matrix),
        range=_RANGES.get(context.color_range),
    )


def _audio_info(stream, container) -> AudioStreamInfo:
    context = stream.codec_context
    if stream.duration:
        seconds = float(stream.duration * stream.time_base)
    else:
        seconds = (container.duration or 0) / av.time_base
    return AudioStreamInfo(
        index=stream.index,
        codec=context.name,
        sample_rate=context.sample_rate,
        channels=context.channels,
        # WAVs without a channel mask report "2 channels"; name the usual layout instead.
        layout=_layout(context.channels) if context.layout.name.endswith("channels") else context.layout.name,
        sample_format=context.format.name if context.format else "",
        duration_seconds=seconds,
    )


# --------------------------------------------------------------------------- reading video


def read_span(path: str | Path, span: otio.opentime.TimeRange) -> Iterator[VideoFrame]:
    """Yield exactly the frames of ``span`` in order, decoded one at a time.

    Seeks backward to the keyframe before the span and decodes forward to the first frame
    whose pts is at or after its start. Constant-rate streams select frames by index
    (from pts); variable-rate streams select the frames whose timestamps lie in
    ``[start, end)`` seconds. Errors about the file or the span are raised here, before
    the first frame; a stream that ends early raises ``MediaDecodeError`` while iterating.
    """
    path = _check_input(path)
    container = _open(path)
    try:
        stream = _video_stream(container, path)
        info = _video_info(container, stream, path)
        selection = _select(span, info, path)
    except BaseException:
        container.close()
        raise
    # The open container moves into the generator, which closes it when exhausted or
    # closed; an unstarted generator's container is released with it.
    return _decode_span(container, stream, info, selection, path)


@dataclass(frozen=True)
class _Selection:
    """Which frames a span covers: keys in [first, end) where a key is a frame index
    (constant rate) or a time in seconds (variable rate)."""

    first: Fraction
    end: Fraction
    by_time: bool
    seek_pts: int


def _select(span: otio.opentime.TimeRange, info: VideoStreamInfo, path: Path) -> _Selection:
    if span.duration.value <= 0:
        raise InvalidRangeError(f"span {_describe(span)} of {path} is empty or reversed")
    if span.start_time.value < 0:
        raise InvalidRangeError(f"span {_describe(span)} of {path} starts before the clip")
    if info.variable_rate:
        start = Fraction(span.start_time.value) / Fraction(span.start_time.rate)
        end = start + Fraction(span.duration.value) / Fraction(span.duration.rate)
        clip_seconds = Fraction(info.frame_count) / info.rate
        if end > clip_seconds + info.time_base:
            raise InvalidRangeError(
                f"span {_describe(span)} ends at {float(end):.3f} s but {path} lasts {float(clip_seconds):.3f} s"
                f" ({info.frame_count} frames)"
            )
        seek_pts = info.start_pts + math.floor(start / info.time_base)
        return _Selection(start, end, True, seek_pts)
    first, end = range_to_frames(span, info.rate)
    if end <= first:
        raise InvalidRangeError(f"span {_describe(span)} of {path} is shorter than one frame")
    if end > info.frame_count:
        raise InvalidRangeError(
            f"span frames {first}-{end - 1} run past the end of {path}, which has {info.frame_count} frames"
            f" (0-{info.frame_count - 1})"
        )
    return _Selection(Fraction(first), Fraction(end), False, _pts_of_index(first, info))


def _describe(span: otio.opentime.TimeRange) -> str:
    return f"{span.start_time.value:g}+{span.duration.value:g}@{span.start_time.rate:g}"


def _pts_of_index(index: int, info: VideoStreamInfo) -> int:
    return info.start_pts + math.floor(Fraction(index) / (info.rate * info.time_base) + Fraction(1, 2))


def _decode_span(container, stream, info: VideoStreamInfo, selection: _Selection, path: Path) -> Iterator[VideoFrame]:
    with container:
        stream.thread_type = "AUTO"  # frame threads: the decoder is the cost at 1080p

        def key_of(frame) -> Fraction:
            seconds = Fraction(frame.pts - info.start_pts) * info.time_base
            if selection.by_time:
                return seconds
            return Fraction(math.floor(seconds * info.rate + Fraction(1, 2)))

        # Half a tick of slack: a span given at a float OTIO rate is not exactly on the pts grid.
        slack = info.time_base / 2 if selection.by_time else Fraction(0)
        frames = _seek_and_decode(container, stream, info, selection, key_of, slack, path)
        previous: VideoFrame | None = None
        for frame in frames:
            key = key_of(frame)
            if key < selection.first - slack:
                continue
            if key >= selection.end - slack:
                break
            if selection.by_time:
                index = math.floor(key * info.rate + Fraction(1, 2))
            else:
                index = int(key)
                if previous is None and index != int(selection.first):
                    raise MediaDecodeError(
                        f"{path}: frame {int(selection.first)} cannot be decoded (the first decodable frame"
                        f" at or after it is {index})"
                    )
                if previous is not None and index <= previous.index:
                    continue  # a duplicated timestamp; the frame for this index is already out
                # A constant-rate stream with a hole: repeat the last frame so the span keeps
                # its exact frame count (the patch must overlay the source frame for frame).
                while previous is not None and previous.index + 1 < index:
                    missing = previous.index + 1
                    log.warning("%s: frame %d is missing; repeating frame %d", path, missing, previous.index)
                    previous = VideoFrame(missing, previous.pts, _time(missing, info), previous.image)
                    yield previous
            previous = VideoFrame(index, frame.pts, _time(index, info), _rgb_of(frame))
            yield previous
        last = -1 if previous is None else previous.index
        if not selection.by_time and last < int(selection.end) - 1:
            raise MediaDecodeError(
                f"{path} ended after frame {last} while reading frames {int(selection.first)}-{int(selection.end) - 1}"
                f" of {info.frame_count}; the file looks truncated or corrupt"
            )


def _rgb_of(frame: av.VideoFrame) -> np.ndarray:
    return frame.reformat(format="rgb24", interpolation=_TO_RGB).to_ndarray()


def _time(index: int, info: VideoStreamInfo) -> otio.opentime.RationalTime:
    return otio.opentime.RationalTime(index, float(info.rate))


def _seek_and_decode(container, stream, info, selection: _Selection, key_of, slack: Fraction, path: Path):
    """Decoded frames from the last keyframe at or before the span start onwards.

    Some demuxers land on a keyframe after the target (index by dts, open GOPs); when the
    first decoded frame is already past the span start, seek again further back.
    """
    seek_pts = selection.seek_pts
    step = max(1, math.ceil(1 / info.time_base))  # one second, doubling each retry
    while True:
        at_start = seek_pts <= info.start_pts
        if selection.first > 0:
            container.seek(max(seek_pts, info.start_pts), backward=True, any_frame=False, stream=stream)
        decoded = _decode(container, stream, path)
        first_frame = next(decoded, None)
        if first_frame is None:
            raise MediaDecodeError(f"{path}: no frame could be decoded at or before the span start")
        if key_of(first_frame) <= selection.first + slack or at_start or selection.first == 0:
            yield first_frame
            yield from decoded
            return
        decoded.close()
        seek_pts -= step
        step *= 2


def _decode(container, stream, path: Path) -> Iterator[av.VideoFrame]:
    try:
        for frame in container.decode(stream):
            if frame.pts is not None:
                yield frame
    except av.error.FFmpegError as error:
        raise MediaDecodeError(f"{path}: decoding failed ({error}); the file looks truncated or corrupt") from error


# --------------------------------------------------------------------------- reading audio


def read_audio(
    path: str | Path,
    span: otio.opentime.TimeRange | tuple[float, float] | None = None,
    rate: int = 16000,
    mono: bool = True,
) -> AudioClip:
    """Samples of ``span`` (a TimeRange, ``(t0, t1)`` seconds, or None for all of it) from the
    first audio stream, resampled to ``rate`` float32, exactly ``round((t1 - t0) * rate)``
    samples long: zeros pad any part of the span the file does not cover."""
    if not isinstance(rate, int) or rate <= 0:
        raise InvalidRateError(f"sample rate {rate!r} must be a positive integer")
    path = _check_input(path)
    with _open(path) as container:
        if not container.streams.audio:
            raise NoStreamError(f"{path} has no audio stream")
        stream = container.streams.audio[0]
        origin = _clock_origin(container, stream)
        t0, t1 = _audio_bounds(span, stream, container, path)
        total = math.floor((t1 - t0) * rate + Fraction(1, 2))
        channels = stream.codec_context.channels
        layout = stream.codec_context.layout.name if channels > 2 else _layout(channels)
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        start_seconds = origin + t0
        if t0 > 0:
            # A little earlier than needed: seeking audio lands on packet boundaries.
            container.seek(math.floor((start_seconds - Fraction(1, 10)) / stream.time_base), stream=stream)
        chunks: list[np.ndarray] = []
        first_time: Fraction | None = None
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                frame_time = Fraction(frame.pts) * stream.time_base
                if frame_time > origin + t1:
                    break
                if first_time is None:
                    first_time = frame_time
                chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray() for out in resampler.resample(None))
        except av.error.FFmpegError as error:
            raise MediaDecodeError(f"{path}: audio decoding failed ({error})") from error
    decoded = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    # Place the decoded run on the span's sample grid: pad or cut its head, then its tail.
    offset = 0 if first_time is None else math.floor((first_time - start_seconds) * rate + Fraction(1, 2))
    if offset > 0:
        decoded = np.concatenate([np.zeros((channels, offset), np.float32), decoded], axis=1)
    else:
        decoded = decoded[:, -offset:]
    samples = np.zeros((channels, total), np.float32)
    usable = min(total, decoded.shape[1])
    samples[:, :usable] = decoded[:, :usable]
    # Mono is the plain mean of the channels: swresample's downmix adds them at -3 dB each,
    # which changes the level and can clip.
    return AudioClip(samples.mean(axis=0, dtype=np.float32) if mono else samples, rate)


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")


def _clock_origin(container, audio_stream) -> Fraction:
    """Seconds of the file's clock that count as 0: the video start (else the audio start)."""
    reference = container.streams.video[0] if container.streams.video else audio_stream
    return Fraction(reference.start_time or 0) * reference.time_base


def _audio_bounds(span, stream, container, path: Path) -> tuple[Fraction, Fraction]:
    if span is None:
        t0 = Fraction(0)
        if stream.duration:
            t1 = stream.duration * Fraction(stream.time_base)
        else:
            t1 = Fraction(container.duration or 0, av.time_base)
    elif isinstance(span, otio.opentime.TimeRange):
        t0 = Fraction(span.start_time.value) / Fraction(span.start_time.rate)
        t1 = t0 + Fraction(span.duration.value) / Fraction(span.duration.rate)
    else:
        try:
            t0, t1 = (Fraction(float(value)) for value in span)
        except (TypeError, ValueError):
            raise InvalidRangeError(f"audio span {span!r} is not (start_seconds, end_seconds)") from None
    if t0 < 0 or t1 <= t0:
        raise InvalidRangeError(f"audio span {float(t0):.3f}-{float(t1):.3f} s of {path} is empty, reversed or negative")
    return t0, t1


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class _Codec:
    encoder: str
    pix_fmt: str
    options: dict[str, str]
    suffixes: tuple[str, ...]
    alpha: bool = False
    min_size: tuple[int, int] = (1, 1)
    even_width: bool = False
    even_height: bool = False
    rgb: bool = False  # stores RGB: a YUV matrix / range tag does not apply (FFV1 refuses one)
    label: str = ""  # for the bridges' menus (Capabilities)
    description: str = ""


PATCH_CODECS: dict[str, _Codec] = {
    "prores": _Codec("prores_ks", "yuv422p10le", {"profile": "3", "vendor": "apl0"}, (".mov",), even_width=True,
                     label="ProRes 422 HQ", description="10-bit 4:2:2"),
    "prores4444": _Codec("prores_ks", "yuva444p10le", {"profile": "4", "vendor": "apl0"}, (".mov",), alpha=True,
                         label="ProRes 4444", description="10-bit 4:4:4 with alpha"),
    "dnxhr": _Codec("dnxhd", "yuv422p", {"profile": "dnxhr_hq"}, (".mov",), min_size=(256, 120), even_width=True,
                    label="DNxHR HQ", description="8-bit 4:2:2"),
    "h264": _Codec("libx264", "yuv420p", {"crf": "18", "preset": "medium"}, (".mov", ".mp4"), even_width=True, even_height=True,
                   label="H.264", description="8-bit 4:2:0, small files for review"),
    "ffv1": _Codec("ffv1", "bgr0", {}, (".mkv",), rgb=True, label="FFV1", description="lossless 8-bit RGB"),
    "png": _Codec("png", "rgb24", {}, (".mov",), rgb=True, label="PNG", description="lossless 8-bit RGB, one image per frame"),
}
#: The codec of a render that names none.
DEFAULT_PATCH_CODEC = "prores"
_MUXERS = {".mov": "mov", ".mp4": "mp4", ".mkv": "matroska"}


def write_patch(
    frames: Iterable[np.ndarray | VideoFrame],
    path: str | Path,
    codec: str,
    rate: Fraction,
    start_timecode: str | None = None,
    colour_tags: ColourTags | None = None,
    audio: AudioClip | None = None,
    overwrite: bool = False,
    inputs: Mapping[str, str | os.PathLike | None] | None = None,
) -> Path:
    """Encode ``frames`` (RGB, or RGBA for ``prores4444``) to ``path`` and return it.

    Codecs: ``prores`` (422 HQ), ``prores4444``, ``dnxhr`` (HQ), ``h264`` (crf 18), ``ffv1``
    and ``png`` (lossless, for tests). The file is written under a temporary name in the
    same directory and renamed at the end, so an error or a cancel (any exception from the
    frames iterator) never leaves a partial file under ``path``. Odd sizes for codecs that
    subsample chroma raise ``InvalidInputError`` rather than being padded, because a patch
    must overlay its source pixel for pixel. ``inputs`` (what each is -> path) are files the
    patch may never replace, checked before encoding and again before publishing.
    """
    path = Path(path)
    if codec not in PATCH_CODECS:
        raise InvalidInputError(f"unknown patch codec {codec!r}; choose one of {', '.join(PATCH_CODECS)}")
    spec = PATCH_CODECS[codec]
    if path.suffix.lower() not in spec.suffixes:
        raise InvalidInputError(f"{codec} patches go in {' or '.join(spec.suffixes)} files, not {path.name}")
    rate = parse_rate(rate)
    if start_timecode is not None:
        timecode_to_frames(start_timecode, rate)  # reject a malformed timecode before any work
    check_output(path, overwrite, inputs)
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise InvalidInputError(f"no frames to write to {path}")
    first_image = _image_of(first, spec, 0)
    height, width = first_image.shape[:2]
    _check_size(width, height, spec, codec)

    temporary = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.part{path.suffix}")
    try:
        _encode(temporary, spec, rate, width, height, first_image, iterator, start_timecode, colour_tags, audio, path)
        _publish(temporary, path, overwrite, inputs)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _image_of(frame: np.ndarray | VideoFrame, spec: _Codec, position: int) -> np.ndarray:
    image = frame.image if isinstance(frame, VideoFrame) else frame
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise InvalidInputError(f"frame {position} is not an (H, W, 3) uint8 image")
    channels = image.shape[2]
    if channels not in ((3, 4) if spec.alpha else (3,)):
        raise InvalidInputError(
            f"frame {position} has {channels} channels; expected RGB{' or RGBA' if spec.alpha else ''}"
        )
    return image


def _check_size(width: int, height: int, spec: _Codec, codec: str) -> None:
    min_width, min_height = spec.min_size
    if width < min_width or height < min_height:
        raise InvalidInputError(f"{codec} needs frames of at least {min_width}x{min_height}, got {width}x{height}")
    if (spec.even_width and width % 2) or (spec.even_height and height % 2):
        raise InvalidInputError(
            f"{codec} subsamples chroma and needs even {'width and height' if spec.even_height else 'width'},"
            f" got {width}x{height}; use ffv1 or png, or crop the span's frames"
        )


def _encode(temporary: Path, spec: _Codec, rate: Fraction, width: int, height: int, first_image: np.ndarray,
            rest: Iterator, start_timecode: str | None, colour_tags: ColourTags | None,
            audio: AudioClip | None, final: Path) -> None:
    with av.open(str(temporary), "w", format=_MUXERS[final.suffix.lower()]) as container:
        stream = container.add_stream(spec.encoder, rate=rate, options=dict(spec.options))
        stream.width, stream.height, stream.pix_fmt = width, height, spec.pix_fmt
        stream.thread_type = "AUTO"
        _apply_colour(stream.codec_context, colour_tags, spec.rgb)
        matrix = _MATRIX_CODES.get(colour_tags.matrix) if colour_tags is not None and colour_tags.matrix else None
        if start_timecode:
            # mov/mp4 turn this into a tmcd track; matroska keeps it as a tag.
            stream.metadata["timecode"] = start_timecode
        audio_writer = _AudioWriter(container, audio) if audio is not None else None
        frame_period = Fraction(1) / rate
        image, position = first_image, 0
        while True:
            if image.shape[:2] != (height, width):
                raise InvalidInputError(
                    f"frame {position} is {image.shape[1]}x{image.shape[0]}, not {width}x{height} like frame 0"
                )
            frame = av.VideoFrame.from_ndarray(image, format="rgba" if image.shape[2] == 4 else "rgb24")
            if not spec.rgb:
                frame = frame.reformat(format=spec.pix_fmt, dst_colorspace=matrix, interpolation=_FROM_RGB)
            frame.pts, frame.time_base = position, frame_period
            for packet in stream.encode(frame):
                container.mux(packet)
            position += 1
            if audio_writer is not None:
                audio_writer.write_until(position * frame_period)  # keep the streams interleaved
            following = next(rest, None)
            if following is None:
                break
            image = _image_of(following, spec, position)
        for packet in stream.encode():
            container.mux(packet)
        if audio_writer is not None:
            audio_writer.write_until(None)


def _apply_colour(context, tags: ColourTags | None, rgb: bool) -> None:
    if tags is None:
        return
    if rgb:
        tags = ColourTags(primaries=tags.primaries, transfer=tags.transfer)
    for value, table, attribute in (
        (tags.primaries, _PRIMARIES, "color_primaries"),
        (tags.transfer, _TRANSFERS, "color_trc"),
        (tags.matrix, _MATRICES, "colorspace"),
        (tags.range, _RANGES, "color_range"),
    ):
        if value is None:
            continue
        codes = [code for code, name in table.items() if name == value]
        if not codes:
            raise InvalidInputError(f"unknown colour tag {value!r} for {attribute}")
        setattr(context, attribute, codes[0])


class _AudioWriter:
    """Encodes an AudioClip as PCM s16 alongside the video, a slice per video frame."""

    def __init__(self, container, clip: AudioClip) -> None:
        samples = clip.samples if clip.samples.ndim == 2 else clip.samples[np.newaxis]
        if samples.dtype != np.float32 or samples.shape[0] not in (1, 2):
            raise InvalidInputError("patch audio must be float32 mono (n,) or stereo (2, n)")
        if clip.sample_rate <= 0:
            raise InvalidRateError(f"patch audio sample rate {clip.sample_rate} must be positive")
        self._container = container
        self._rate = clip.sample_rate
        self._pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)
        self._layout = _layout(samples.shape[0])
        self._stream = container.add_stream("pcm_s16le", rate=clip.sample_rate, layout=self._layout)
        self._written = 0

    def write_until(self, seconds: Fraction | None) -> None:
        """Encode the samples up to ``seconds`` (all of them, and flush, when None)."""
        total = self._pcm.shape[1]
        stop = total if seconds is None else min(total, math.floor(seconds * self._rate))
        if stop > self._written:
            chunk = np.ascontiguousarray(self._pcm[:, self._written : stop].T).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=self._layout)
            frame.sample_rate = self._rate
            frame.pts, frame.time_base = self._written, Fraction(1, self._rate)
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
            self._written = stop
        if seconds is None:
            for packet in self._stream.encode():
                self._container.mux(packet)


def check_output(
    path: str | Path, overwrite: bool = False, inputs: Mapping[str, str | os.PathLike | None] | None = None
) -> Path:
    """Fail before any work when ``path`` could not be published at the end, or names an input."""
    path = Path(path)
    if inputs:
        check_not_input(path, inputs)
    if not path.parent.is_dir():
        raise OutputPathError(f"output directory {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite (--overwrite) to replace it")
    return path


def write_audio(clip: AudioClip, path: str | Path, overwrite: bool = False,
                inputs: Mapping[str, str | os.PathLike | None] | None = None) -> Path:
    """A 16-bit PCM WAV of ``clip`` (mono or (channels, n)), written atomically like patches."""
    path = check_output(path, overwrite, inputs)
    samples = np.atleast_2d(np.asarray(clip.samples, dtype=np.float32))
    pcm = np.ascontiguousarray((np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16))
    layout = _layout(pcm.shape[0])
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with av.open(str(temporary), "w", format="wav") as container:
            stream = container.add_stream("pcm_s16le", rate=clip.sample_rate, layout=layout)
            # s16 is interleaved: (1, n * channels)
            frame = av.AudioFrame.from_ndarray(pcm.T.reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate, frame.pts = clip.sample_rate, 0
            for packet in stream.encode(frame):
                container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        _publish(temporary, path, overwrite, inputs)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def read_image(path: str | Path) -> np.ndarray:
    """A still image (PNG, JPEG, ...) as RGB uint8 (H, W, 3), e.g. a reference photo of the speaker."""
    path = _check_input(path)
    container = _open(path)
    try:
        if not container.streams.video:
            raise NoStreamError(f"{path} has no image")
        for frame in container.decode(video=0):
            return _rgb_of(frame)
        raise MediaDecodeError(f"{path} holds no decodable image")
    except av.error.FFmpegError as error:
        raise MediaDecodeError(f"{path} is not a readable image ({error})") from error
    finally:
        container.close()


def _publish(temporary: Path, path: Path, overwrite: bool, inputs: Mapping[str, str | os.PathLike | None] | None) -> None:
    if inputs:
        check_not_input(path, inputs)  # again: the path may have become a link to an input meanwhile
    if overwrite:
        os.replace(temporary, path)
        return
    # A hard link fails if `path` appeared meanwhile, so a concurrent file is never clobbered.
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise OutputExistsError(f"{path} appeared while writing; pass overwrite to replace it") from None
    except OSError:
        if path.exists():
            raise OutputExistsError(f"{path} appeared while writing; pass overwrite to replace it") from None
        os.replace(temporary, path)
        return
    temporary.unlink()
