"""``probe``: what a media file holds (rate, frame count, timecode, colour, audio layout, and how
its pictures are stored: display matrix, pixel aspect, bit depth, alpha, field order, and the
conform grid of a variable-frame-rate stream)."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import opentimelineio as otio

from dubline.core.cpus import codec_threads
from dubline.core.errors import MediaDecodeError, MediaTooLargeError
from dubline.core.timing import snap_rate
from dubline.stages.media.colour import colour_tags, pixel_format_facts
from dubline.stages.media.conform import conform, scan_pts
from dubline.stages.media.container import check_input, file_memo, open_input
from dubline.stages.media.types import (
    FIELD_ORDERS,
    AudioStreamInfo,
    MediaInfo,
    PictureLayout,
    VideoStreamInfo,
)

# How many leading packets probe inspects to tell constant from variable frame rate.
_VFR_SCAN_PACKETS = 120
# Most frames a decoder may hold back for reordering (H.264/HEVC allow up to 16).
_MAX_REORDER_DEPTH = 16
#: The largest frames dubline takes: 8K (8192x4320, and up to 8192 on either side). A header that
#: declares more is damaged or hostile; one decoded frame of it would not fit in memory sensibly.
MAX_FRAME_SIDE = 8192
MAX_FRAME_PIXELS = 8192 * 4320



def probe(path: str | Path) -> MediaInfo:
    """Describe a media file: its first video stream (rate, frame count, timecode, colour)
    and every audio stream. Raises ``MediaDecodeError`` for non-media and truncated files."""
    path = check_input(path)
    with open_input(path) as container:
        video = None
        if container.streams.video:
            video = video_info(container, container.streams.video[0], path)
        audio = [_audio_info(stream, container) for stream in container.streams.audio]
        return MediaInfo(
            path=path,
            format_name=container.format.name,
            size_bytes=path.stat().st_size,
            video=video,
            audio=audio,
        )


def video_info(container, stream, path: Path) -> VideoStreamInfo:
    """The stream's description; also sets frame threading (the decoder is the cost at 1080p)
    before anything here opens the decoder, for the caller's decode as well."""
    context = stream.codec_context
    pixel_format = _checked_frame_format(context, stream, path)
    if not context.is_open:
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = codec_threads()
    rate = _stream_rate(stream, path)
    time_base = Fraction(stream.time_base)
    start_pts = stream.start_time if stream.start_time is not None else 0
    frame_count = _frame_count(container, stream, rate, time_base, start_pts)
    variable = _is_variable_rate(container, stream, rate, time_base)
    _check_reaches_end(container, stream, path)
    grid = None
    if variable:
        grid = file_memo(path, f"conform:{stream.index}", lambda: _conform(container, stream, time_base, path))
        rate, frame_count, start_pts = grid.rate, len(grid.slot_pts), int(grid.source_pts[0])
    bits, alpha = pixel_format_facts(pixel_format)
    return VideoStreamInfo(
        index=stream.index,
        codec=context.name,
        width=context.width,
        height=context.height,
        pixel_format=pixel_format,
        rate=rate,
        time_base=time_base,
        frame_count=frame_count,
        duration=otio.opentime.RationalTime(frame_count, float(rate)),
        start_timecode=_start_timecode(container, stream),
        colour=colour_tags(context),
        variable_rate=variable,
        start_pts=start_pts,
        bit_depth=bits,
        alpha=alpha,
        layout=PictureLayout(
            display_matrix=file_memo(path, f"matrix:{stream.index}", lambda: _display_matrix(container, stream)),
            sample_aspect_ratio=_sample_aspect_ratio(stream),
            field_order=FIELD_ORDERS.get(context.field_order, "unknown"),
        ),
        conform=grid,
    )


def _checked_frame_format(context, stream, path: Path) -> str:
    """The stream's pixel format, after refusing absurd or missing frame sizes (FFmpeg leaves the
    format unset for a size it will not allocate)."""
    width, height = context.width, context.height
    if width > MAX_FRAME_SIDE or height > MAX_FRAME_SIDE or width * height > MAX_FRAME_PIXELS:
        raise MediaTooLargeError(
            f"{path} declares {width}x{height} frames; dubline takes at most {MAX_FRAME_SIDE} pixels a side"
            f" and {MAX_FRAME_PIXELS:,} pixels a frame (8K): the header is damaged, or the clip needs downscaling"
        )
    if width <= 0 or height <= 0:
        raise MediaDecodeError(
            f"{path}: the video stream declares no usable frame size ({width}x{height}); FFmpeg refused its"
            " header (damaged, or a size beyond its limits)"
        )
    video_format = context.format or stream.format
    if video_format is None:
        raise MediaDecodeError(f"{path}: the video stream has no pixel format FFmpeg can decode")
    return video_format.name


def _conform(container, stream, time_base: Fraction, path: Path):
    pts = scan_pts(container, stream)
    if len(pts) < 2:
        raise MediaDecodeError(f"{path}: a variable-rate video stream needs at least two frames with timestamps")
    try:
        return conform(pts, time_base)
    except ValueError as error:
        raise MediaDecodeError(f"{path}: its variable frame rate cannot be conformed ({error})") from error


def _display_matrix(container, stream) -> tuple[int, ...] | None:
    """The stream's display matrix (FFmpeg puts the container's on every decoded frame), or None.
    Costs one decoded frame; a stream that does not decode here has none (read_span reports it)."""
    try:
        frame = next(iter(container.decode(stream)), None)
    except av.error.FFmpegError:
        frame = None
    finally:
        container.seek(stream.start_time or 0, stream=stream)
    return None if frame is None else frame_display_matrix(frame)


def frame_display_matrix(frame) -> tuple[int, ...] | None:
    """A decoded frame's display matrix side data (None when absent or the identity)."""
    for side_data in frame.side_data:
        if str(side_data.type).endswith("DISPLAYMATRIX"):
            values = tuple(int(v) for v in np.frombuffer(bytes(side_data), dtype="<i4"))
            identity = (1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30)
            return None if values == identity else values
    return None


def _sample_aspect_ratio(stream) -> Fraction:
    """The pixel aspect (width / height of one stored pixel); 1 when unset."""
    for value in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio):
        if value is not None and value > 0:
            return Fraction(value)
    return Fraction(1)


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
        layout=layout_name(context.channels) if context.layout.name.endswith("channels") else context.layout.name,
        sample_format=context.format.name if context.format else "",
        duration_seconds=seconds,
    )



def layout_name(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")
