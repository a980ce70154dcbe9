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
from dubline.stages.media.colour import pixel_format_facts, to_8bit, to_rgb
from dubline.stages.media.container import check_input, open_input, video_stream
from dubline.stages.media.lazy import LazyImage
from dubline.stages.media.orientation import Orientation
from dubline.stages.media.probe import frame_display_matrix, video_info
from dubline.stages.media.types import VideoFrame, VideoStreamInfo

log = logging.getLogger(__name__)


def read_span(path: str | Path, span: otio.opentime.TimeRange, *, exact_colour: bool = True,
              keep_coded: bool = False) -> Iterator[VideoFrame]:
    """Yield exactly the frames of ``span`` in order, decoded one at a time, as stored (8-bit
    sources as uint8 RGB, deeper ones as uint16; alpha in ``VideoFrame.alpha``).

    ``exact_colour=False`` converts 8-bit sources to RGB with swscale's fast default (up to ~2
    levels off, 5-7x cheaper at 1080p): for analysis that only looks at the pictures, never for
    patch pixels. ``keep_coded=True`` keeps each frame's decoded picture in ``VideoFrame.coded``
    (for a patch that copies the untouched pixels from it: ``media.EditedFrame``) and converts it
    to RGB only where it is read: ``VideoFrame.image`` is then a ``media.LazyImage`` (exact pixels
    either way; sources with alpha are converted whole).

    Seeks backward to the keyframe before the span and decodes forward to the first frame
    whose pts is at or after its start. Constant-rate streams select frames by index
    (from pts); variable-rate streams yield the slots of their conform grid (``media.conform``:
    each slot the source frame shown at that time, held or dropped as the rule says). Errors
    about the file or the span are raised here, before the first frame; a stream that ends
    early raises ``MediaDecodeError`` while iterating.
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
    return _decode_span(container, stream, info, selection, path, exact_colour, keep_coded)


#: Decoding a frame costs about this many frames' decoding less than seeking to it: frames this
#: close to the previous wanted one are decoded through even past a keyframe (intra-only codecs).
SEEK_COST_FRAMES = 2


def read_frames(path: str | Path, indices: Iterable[int], *, keep_coded: bool = False) -> Iterator[VideoFrame]:
    """Yield the frames at ``indices``, in index order, each once (``keep_coded`` as for
    ``read_span``: lazy RGB, for a reader that crops).

    One forward pass per group of frames: the reader seeks only where a keyframe lies between one
    wanted frame and the next (read from the packets, without decoding), so wanted frames anywhere
    in one long GOP cost one decode of it, not one per frame; frames in between are decoded but
    never converted to RGB. A variable-rate stream is read as the conform grid's slots from the
    first wanted one to the last. Errors about the file or the indices are raised here, before the
    first frame.
    """
    path = check_input(path)
    wanted = sorted({int(index) for index in indices})
    container = open_input(path)
    try:
        stream = video_stream(container, path)
        info = video_info(container, stream, path)
        if wanted and (wanted[0] < 0 or wanted[-1] >= info.frame_count):
            raise InvalidRangeError(
                f"frames {wanted[0]}-{wanted[-1]} are not all inside {path}, which has {info.frame_count} frames"
            )
    except BaseException:
        container.close()
        raise
    return _decode_frames(container, stream, info, wanted, path, keep_coded)


def _decode_frames(container, stream, info: VideoStreamInfo, wanted: list[int], path: Path,
                   keep_coded: bool) -> Iterator[VideoFrame]:
    with container:
        if not wanted:
            return
        if info.conform is not None:
            slots = info.conform.slot_pts[wanted[0]:wanted[-1] + 1]
            selection = _Selection(wanted[0], wanted[-1] + 1, int(slots[0]), slots)
            keep = set(wanted)
            yield from (frame for frame in _conformed(container, stream, info, selection, path, keep_coded=keep_coded)
                        if frame.index in keep)
            return
        keyframes = _keyframe_indices(container, stream, info, wanted[0], wanted[-1], path)
        reformatter = VideoReformatter()
        for first, end in _passes(wanted, keyframes):
            if first == 0:  # a pass from the start does not seek; the packet scan moved on
                container.seek(info.start_pts, backward=True, any_frame=False, stream=stream)
            selection = _Selection(first, end, _pts_of_index(first, info))
            yield from _decode_indices(container, stream, info, selection, path, reformatter, set(wanted),
                                       keep_coded=keep_coded)


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
    """Which frames a span covers: frame indices [first, end) of the stream (of the conform grid
    for a variable-rate stream, whose slot -> source pts map is ``slot_pts``)."""

    first: int
    end: int
    seek_pts: int
    slot_pts: np.ndarray | None = None


def _select(span: otio.opentime.TimeRange, info: VideoStreamInfo, path: Path) -> _Selection:
    if span.duration.value <= 0:
        raise InvalidRangeError(f"span {_describe(span)} of {path} is empty or reversed")
    if span.start_time.value < 0:
        raise InvalidRangeError(f"span {_describe(span)} of {path} starts before the clip")
    first, end = range_to_frames(span, info.rate)
    if end <= first:
        raise InvalidRangeError(f"span {_describe(span)} of {path} is shorter than one frame")
    if end > info.frame_count:
        raise InvalidRangeError(
            f"span frames {first}-{end - 1} run past the end of {path}, which has {info.frame_count} frames"
            f" (0-{info.frame_count - 1}){_grid_note(info)}"
        )
    if info.conform is not None:
        slots = info.conform.slot_pts[first:end]
        return _Selection(first, end, int(slots[0]), slots)
    return _Selection(first, end, _pts_of_index(first, info))


def _grid_note(info: VideoStreamInfo) -> str:
    return f" on its {info.conform.describe().split(': ', 1)[1].split(',')[0]} grid" if info.conform else ""


def _describe(span: otio.opentime.TimeRange) -> str:
    return f"{span.start_time.value:g}+{span.duration.value:g}@{span.start_time.rate:g}"


def _pts_of_index(index: int, info: VideoStreamInfo) -> int:
    return info.start_pts + math.floor(Fraction(index) / (info.rate * info.time_base) + Fraction(1, 2))


def _decode_span(container, stream, info: VideoStreamInfo, selection: _Selection, path: Path,
                 exact_colour: bool = True, keep_coded: bool = False) -> Iterator[VideoFrame]:
    with container:
        if selection.slot_pts is not None:
            yield from _conformed(container, stream, info, selection, path, exact_colour, keep_coded)
            return
        yield from _decode_indices(container, stream, info, selection, path, VideoReformatter(),
                                   exact_colour=exact_colour, keep_coded=keep_coded)


def _decode_indices(container, stream, info: VideoStreamInfo, selection: _Selection, path: Path,
                    reformatter: VideoReformatter, wanted: Container[int] | None = None,
                    exact_colour: bool = True, keep_coded: bool = False) -> Iterator[VideoFrame]:
    """The frames [first, end) of a constant-rate ``selection`` (only those whose index is in
    ``wanted``, when given: the others are decoded, as they must be, but never converted to RGB)."""

    def key_of(frame) -> int:
        seconds = Fraction(frame.pts - info.start_pts) * info.time_base
        return math.floor(seconds * info.rate + Fraction(1, 2))

    def keep(index: int) -> bool:
        return wanted is None or index in wanted

    frames = _seek_and_decode(container, stream, info, selection, selection.first, key_of, path)
    previous: _Decoded | None = None
    for frame in frames:
        index = key_of(frame)
        if index < selection.first:
            continue
        if index >= selection.end:
            break
        if previous is None and index != selection.first:
            raise MediaDecodeError(
                f"{path}: frame {selection.first} cannot be decoded (the first decodable frame"
                f" at or after it is {index})"
            )
        if previous is not None and index <= previous.index:
            continue  # a duplicated timestamp; the frame for this index is already out
        # A constant-rate stream with a hole: repeat the last frame so the span keeps
        # its exact frame count (the patch must overlay the source frame for frame).
        while previous is not None and previous.index + 1 < index:
            missing = previous.index + 1
            log.warning("%s: frame %d is missing; repeating frame %d", path, missing, previous.index)
            previous = _Decoded(missing, previous.pts, previous.frame, previous.converted)
            if keep(missing):
                yield previous.video_frame(info, reformatter, exact_colour, keep_coded)
        previous = _Decoded(index, frame.pts, frame)
        if keep(index):
            yield previous.video_frame(info, reformatter, exact_colour, keep_coded)
    last = -1 if previous is None else previous.index
    if last < selection.end - 1:
        raise MediaDecodeError(
            f"{path} ended after frame {last} while reading frames {selection.first}-{selection.end - 1}"
            f" of {info.frame_count}; the file looks truncated or corrupt"
        )


@dataclass
class _Decoded:
    """A decoded frame under the index it stands for, converted to RGB once, when first needed."""

    index: int
    pts: int
    frame: av.VideoFrame
    converted: tuple[np.ndarray | LazyImage, np.ndarray | None] | None = None

    def video_frame(self, info: VideoStreamInfo, reformatter: VideoReformatter, exact_colour: bool = True,
                    keep_coded: bool = False) -> VideoFrame:
        if self.converted is None:
            self.converted = _picture(self.frame, reformatter, exact_colour, keep_coded)
        image, alpha = self.converted
        return VideoFrame(self.index, self.pts, _time(self.index, info), image, alpha,
                          self.frame if keep_coded else None)


def _picture(frame: av.VideoFrame, reformatter: VideoReformatter | None, exact_colour: bool,
             lazy: bool) -> tuple[np.ndarray | LazyImage, np.ndarray | None]:
    """(RGB, alpha): converted now, or (``lazy``, exact, no alpha) where it is read."""
    if lazy and exact_colour and not pixel_format_facts(frame.format.name)[1]:
        return LazyImage(frame), None
    return to_rgb(frame, reformatter, exact=exact_colour)


def _conformed(container, stream, info: VideoStreamInfo, selection: _Selection, path: Path,
               exact_colour: bool = True, keep_coded: bool = False) -> Iterator[VideoFrame]:
    """The span's conform slots: slot k yields the decoded source frame whose pts the slot map
    names (a held frame repeats; a dropped one is decoded and skipped). Frames are converted to
    RGB only when a slot shows them, once each."""
    slots = selection.slot_pts
    assert slots is not None
    frames = _seek_and_decode(container, stream, info, selection, int(slots[0]), lambda frame: frame.pts, path)
    position, latest, converted = 0, None, None

    def slot_frame() -> VideoFrame:
        nonlocal converted
        if latest.pts != slots[position]:
            log.warning("%s: the frame at pts %d did not decode; holding pts %d", path, int(slots[position]), latest.pts)
        if converted is None or converted[0] != latest.pts:
            converted = (latest.pts, *_picture(latest, None, exact_colour, keep_coded))
        index = selection.first + position
        return VideoFrame(index, int(slots[position]), _time(index, info), converted[1], converted[2],
                          latest if keep_coded else None)

    for frame in frames:
        while position < len(slots) and frame.pts > slots[position]:
            if latest is None:
                raise MediaDecodeError(f"{path}: frame {selection.first} cannot be decoded (no frame at or before pts"
                                       f" {int(slots[position])})")
            yield slot_frame()
            position += 1
        if position == len(slots):
            return
        latest = frame
    while position < len(slots) and latest is not None and latest.pts >= slots[position]:
        yield slot_frame()
        position += 1
    if position < len(slots):
        raise MediaDecodeError(
            f"{path} ended before slot {selection.first + position} while reading slots"
            f" {selection.first}-{selection.end - 1} of {info.frame_count}; the file looks truncated or corrupt"
        )


def _time(index: int, info: VideoStreamInfo) -> otio.opentime.RationalTime:
    return otio.opentime.RationalTime(index, float(info.rate))


def _seek_and_decode(container, stream, info: VideoStreamInfo, selection: _Selection, target: int, key_of,
                     path: Path):
    """Decoded frames from the last keyframe at or before the span's first frame (whose key, a
    frame index or a pts, is ``target``).

    Some demuxers land on a keyframe after the target (index by dts, open GOPs); when the
    first decoded frame is already past the span start, seek again further back.
    """
    seek_pts = selection.seek_pts
    from_start = selection.first == 0
    step = max(1, math.ceil(1 / info.time_base))  # one second, doubling each retry
    while True:
        at_start = seek_pts <= info.start_pts
        if not from_start:
            container.seek(max(seek_pts, info.start_pts), backward=True, any_frame=False, stream=stream)
        decoded = _decode(container, stream, path)
        first_frame = next(decoded, None)
        if first_frame is None:
            raise MediaDecodeError(f"{path}: no frame could be decoded at or before the span start")
        if key_of(first_frame) <= target or at_start or from_start:
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
    """A still image (PNG, JPEG, ...) as RGB uint8 (H, W, 3), upright (EXIF orientation applied),
    e.g. a reference photo of the speaker."""
    path = check_input(path)
    container = open_input(path)
    try:
        if not container.streams.video:
            raise NoStreamError(f"{path} has no image")
        for frame in container.decode(video=0):
            orientation = Orientation.from_matrix(frame_display_matrix(frame)) or Orientation()
            return np.ascontiguousarray(orientation.apply(to_8bit(to_rgb(frame)[0])))
        raise MediaDecodeError(f"{path} holds no decodable image")
    except av.error.FFmpegError as error:
        raise MediaDecodeError(f"{path} is not a readable image ({error})") from error
    finally:
        container.close()

