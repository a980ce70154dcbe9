"""Reading pictures: exact frames of a span by pts, and still images."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import opentimelineio as otio

from dubline.core.errors import InvalidRangeError, MediaDecodeError, NoStreamError
from dubline.core.timing import range_to_frames
from dubline.stages.media.colour import to_rgb, to_rgb_fast
from dubline.stages.media.container import check_input, open_input, video_stream
from dubline.stages.media.probe import video_info
from dubline.stages.media.types import VideoFrame, VideoStreamInfo

log = logging.getLogger(__name__)

def read_span(path: str | Path, span: otio.opentime.TimeRange, *, exact_colour: bool = True) -> Iterator[VideoFrame]:
    """Yield exactly the frames of ``span`` in order, decoded one at a time.

    ``exact_colour=False`` converts to RGB with swscale's fast default (up to ~2 levels off, 5-7x
    cheaper at 1080p): for analysis that only looks at the pictures, never for patch pixels.

    Seeks backward to the keyframe before the span and decodes forward to the first frame
    whose pts is at or after its start. Constant-rate streams select frames by index
    (from pts); variable-rate streams select the frames whose timestamps lie in
    ``[start, end)`` seconds. Errors about the file or the span are raised here, before
    the first frame; a stream that ends early raises ``MediaDecodeError`` while iterating.
    """
    path = check_input(path)
    container = open_input(path)
    try:
        stream = video_stream(container, path)
        info = video_info(container, stream, path)
        selection = _select(span, info, path)
    except BaseException:
        container.close()
        raise
    # The open container moves into the generator, which closes it when exhausted or
    # closed; an unstarted generator's container is released with it.
    return _decode_span(container, stream, info, selection, path, to_rgb if exact_colour else to_rgb_fast)


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


def _decode_span(container, stream, info: VideoStreamInfo, selection: _Selection, path: Path,
                 convert=to_rgb) -> Iterator[VideoFrame]:
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
            previous = VideoFrame(index, frame.pts, _time(index, info), convert(frame))
            yield previous
        last = -1 if previous is None else previous.index
        if not selection.by_time and last < int(selection.end) - 1:
            raise MediaDecodeError(
                f"{path} ended after frame {last} while reading frames {int(selection.first)}-{int(selection.end) - 1}"
                f" of {info.frame_count}; the file looks truncated or corrupt"
            )


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



def read_image(path: str | Path) -> np.ndarray:
    """A still image (PNG, JPEG, ...) as RGB uint8 (H, W, 3), e.g. a reference photo of the speaker."""
    path = check_input(path)
    container = open_input(path)
    try:
        if not container.streams.video:
            raise NoStreamError(f"{path} has no image")
        for frame in container.decode(video=0):
            return to_rgb(frame)
        raise MediaDecodeError(f"{path} holds no decodable image")
    except av.error.FFmpegError as error:
        raise MediaDecodeError(f"{path} is not a readable image ({error})") from error
    finally:
        container.close()

