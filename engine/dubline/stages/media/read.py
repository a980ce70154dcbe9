"""Reading pictures: exact frames of a span by pts, and still images."""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Container, Iterable, Iterator

import av
import numpy as np
import opentimelineio as otio
from av.video.reformatter import VideoReformatter

from dubline.core.errors import InvalidRangeError, MediaDecodeError, NoStreamError
from dubline.core.timing import range_to_frames
from dubline.stages.media.colour import to_rgb
from dubline.stages.media.container import check_input, open_input, video_stream
from dubline.stages.media.probe import video_info
from dubline.stages.media.types import VideoFrame, VideoStreamInfo

log = logging.getLogger(__name__)

def read_span(path: str | Path, span: otio.opentime.TimeRange) -> Iterator[VideoFrame]:
    """Yield exactly the frames of ``span`` in order, decoded one at a time.

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
    return _decode_span(container, stream, info, selection, path)


#: Decoding a frame costs about this many frames' decoding less than seeking to it: frames this
#: close to the previous wanted one are decoded through even past a keyframe (intra-only codecs).
SEEK_COST_FRAMES = 2


def read_frames(path: str | Path, indices: Iterable[int]) -> Iterator[VideoFrame]:
    """Yield the frames at ``indices`` (constant-rate streams), in index order, each once.

    One forward pass per group of frames: the reader seeks only where a keyframe lies between one
    wanted frame and the next (read from the packets, without decoding), so wanted frames anywhere
    in one long GOP cost one decode of it, not one per frame; frames in between are decoded but
    never converted to RGB. Errors about the file or the indices are raised here, before the first
    frame.
    """
    path = check_input(path)
    wanted = sorted({int(index) for index in indices})
    container = open_input(path)
    try:
        stream = video_stream(container, path)
        info = video_info(container, stream, path)
        if info.variable_rate:
            raise InvalidRangeError(f"{path} has a variable frame rate: read its frames by time (read_span)")
        if wanted and (wanted[0] < 0 or wanted[-1] >= info.frame_count):
            raise InvalidRangeError(
                f"frames {wanted[0]}-{wanted[-1]} are not all inside {path}, which has {info.frame_count} frames"
            )
    except BaseException:
        container.close()
        raise
    return _decode_frames(container, stream, info, wanted, path)


def _decode_frames(container, stream, info: VideoStreamInfo, wanted: list[int], path: Path) -> Iterator[VideoFrame]:
    with container:
        if not wanted:
            return
        stream.thread_type = "AUTO"
        keyframes = _keyframe_indices(container, stream, info, wanted[0], wanted[-1], path)
        reformatter = VideoReformatter()
        for first, end in _passes(wanted, keyframes):
            if first == 0:  # a pass from the start does not seek; the packet scan moved on
                container.seek(info.start_pts, backward=True, any_frame=False, stream=stream)
            selection = _Selection(Fraction(first), Fraction(end), False, _pts_of_index(first, info))
            yield from _decode_selection(container, stream, info, selection, path, reformatter, set(wanted))


def _keyframe_indices(container, stream, info: VideoStreamInfo, first: int, last: int, path: Path) -> list[int]:
    """Indices of the keyframes from the one at or before ``first`` to ``last`` (packets only)."""
    last_pts = _pts_of_index(last, info)
    if first > 0:
        container.seek(max(_pts_of_index(first, info), info.start_pts), backward=True, any_frame=False, stream=stream)
    keyframes = []
    try:
        for packet in container.demux(stream):
            if packet.pts is not None and packet.is_keyframe:
                seconds = Fraction(packet.pts - info.start_pts) * info.time_base
                keyframes.append(math.floor(seconds * info.rate + Fraction(1, 2)))
            # Packets come in decode order and dts <= pts: past this one, no frame up to `last` follows.
            stamp = packet.dts if packet.dts is not None else packet.pts
            if stamp is not None and stamp > last_pts:
                break
    except av.error.FFmpegError as error:
        raise MediaDecodeError(f"{path}: reading failed ({error}); the file looks truncated or corrupt") from error
    return sorted(keyframes)


def _passes(wanted: list[int], keyframes: list[int]) -> list[tuple[int, int]]:
    """[first, end) ranges to decode through: a new one (a seek) only where a keyframe after the
    previous wanted frame makes seeking cheaper than decoding on."""
    passes: list[tuple[int, int]] = []
    for index in wanted:
        if passes:
            at = bisect.bisect_right(keyframes, index) - 1
            keyframe = keyframes[at] if at >= 0 else -1
            previous = passes[-1][1] - 1
            if keyframe <= previous + 1 + SEEK_COST_FRAMES:
                passes[-1] = (passes[-1][0], index + 1)
                continue
        passes.append((index, index + 1))
    return passes


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
        yield from _decode_selection(container, stream, info, selection, path, VideoReformatter())


def _decode_selection(container, stream, info: VideoStreamInfo, selection: _Selection, path: Path,
                      reformatter: VideoReformatter, wanted: Container[int] | None = None) -> Iterator[VideoFrame]:
    """The frames of ``selection`` (only those whose index is in ``wanted``, when given: the others
    are decoded, as they must be, but never converted to RGB)."""

    def key_of(frame) -> Fraction:
        seconds = Fraction(frame.pts - info.start_pts) * info.time_base
        if selection.by_time:
            return seconds
        return Fraction(math.floor(seconds * info.rate + Fraction(1, 2)))

    def keep(index: int) -> bool:
        return wanted is None or index in wanted

    # Half a tick of slack: a span given at a float OTIO rate is not exactly on the pts grid.
    slack = info.time_base / 2 if selection.by_time else Fraction(0)
    frames = _seek_and_decode(container, stream, info, selection, key_of, slack, path)
    previous: _Decoded | None = None
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
                previous = _Decoded(missing, previous.pts, previous.frame, previous.image)
                if keep(missing):
                    yield previous.video_frame(info, reformatter)
        previous = _Decoded(index, frame.pts, frame)
        if keep(index):
            yield previous.video_frame(info, reformatter)
    last = -1 if previous is None else previous.index
    if not selection.by_time and last < int(selection.end) - 1:
        raise MediaDecodeError(
            f"{path} ended after frame {last} while reading frames {int(selection.first)}-{int(selection.end) - 1}"
            f" of {info.frame_count}; the file looks truncated or corrupt"
        )


@dataclass
class _Decoded:
    """A decoded frame under the index it stands for, converted to RGB once, when first needed."""

    index: int
    pts: int
    frame: av.VideoFrame
    image: np.ndarray | None = None

    def video_frame(self, info: VideoStreamInfo, reformatter: VideoReformatter) -> VideoFrame:
        if self.image is None:
            self.image = to_rgb(self.frame, reformatter)
        return VideoFrame(self.index, self.pts, _time(self.index, info), self.image)


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

