"""Where reading can start cheaply: the keyframe at or before a frame, found without decoding.

Reading frame ``i`` means decoding from the keyframe before it; choosing what to read so that it
starts just after a keyframe (e.g. the runs of a sampled mouth library) saves decoding up to a
GOP of frames that are thrown away. Each lookup is one seek and one packet read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av

from dubline.stages.media.container import check_input, open_input, video_stream
from dubline.stages.media.probe import video_info


def keyframes_before(path: str | Path, indices: Sequence[int]) -> list[int]:
    """For each frame index, the index of the keyframe a seek to it lands on (at or before it).

    A hint for planning reads, not a guarantee: where the demuxer cannot say (no index, a seek that
    lands after the frame, a variable-rate stream), the frame's own index is returned.
    """
    path = check_input(path)
    with open_input(path) as container:
        stream = video_stream(container, path)
        info = video_info(container, stream, path)
        if info.variable_rate:
            return list(indices)
        ticks_per_frame = 1 / (info.rate * info.time_base)
        found = []
        for index in indices:
            found.append(_keyframe_before(container, stream, info.start_pts, ticks_per_frame, int(index)))
        return found


def _keyframe_before(container, stream, start_pts: int, ticks_per_frame: Fraction, index: int) -> int:
    if index <= 0:
        return max(index, 0)
    target = start_pts + math.floor(index * ticks_per_frame + Fraction(1, 2))
    try:
        container.seek(target, backward=True, any_frame=False, stream=stream)
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            if not packet.is_keyframe:
                return index
            landed = math.floor(Fraction(packet.pts - start_pts) / ticks_per_frame + Fraction(1, 2))
            return landed if 0 <= landed <= index else index
    except av.error.FFmpegError:
        return index
    return index
