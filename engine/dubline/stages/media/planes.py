"""Boxes of a decoded picture's planes: what converting part of a picture needs, either way."""

from __future__ import annotations

import av
import numpy as np

#: Pixels of context converted around a box and then dropped. swscale's 4:2:0 chroma filters read
#: a chroma row or column beyond a pair, so a box converted on its own differs from the same pixels
#: converted in the whole frame along its edges; with this margin it does not (checked on random
#: boxes for 4:2:0, 4:2:2 and 4:4:4, 8 and 10-bit: ``tests/test_media_edited.py`` for RGB -> Y'CbCr,
#: ``tests/test_media_lazy.py`` for Y'CbCr -> RGB).
CONTEXT_PX = 4


def grown_box(box: tuple[int, int, int, int], step_y: int, step_x: int, height: int, width: int,
              margin: int) -> tuple[int, int, int, int]:
    """``box`` (rows y0:y1, columns x0:x1) grown by ``margin`` to whole chroma samples, clipped to
    the picture."""
    y0, y1, x0, x1 = box
    return (max(0, (y0 - margin) // step_y * step_y), min(height, -(-(y1 + margin) // step_y) * step_y),
            max(0, (x0 - margin) // step_x * step_x), min(width, -(-(x1 + margin) // step_x) * step_x))


#: Fewest pixels a converted part of a picture spans each way, either direction. swscale treats a
#: picture only a few pixels high or wide differently at its edges: a 6-row strip at the bottom of
#: a 4:2:0 frame decoded up to 107 levels off, and a 1-row box at its top coded differently too;
#: from 8 on they match (``tests/test_media_lazy.py``, ``tests/test_media_edited.py``).
MIN_PART_PX = 16


def at_least(box: tuple[int, int, int, int], size: int, height: int, width: int) -> tuple[int, int, int, int]:
    """``box`` grown about its centre to ``size`` pixels each way where it is smaller, kept inside
    the picture (a picture smaller than ``size`` gives its whole extent)."""
    y0, y1, x0, x1 = box
    return (*_span_at_least(y0, y1, size, height), *_span_at_least(x0, x1, size, width))


def _span_at_least(start: int, end: int, size: int, limit: int) -> tuple[int, int]:
    if end - start >= size:
        return start, end
    start = max(0, min(start - (size - (end - start)) // 2, limit - size))
    return start, min(limit, start + size)


def subsampling(frame: av.VideoFrame, plane) -> tuple[int, int]:
    """(rows, columns) of the picture per sample of ``plane``: (2, 2) for 4:2:0 chroma."""
    return -(-frame.height // plane.height), -(-frame.width // plane.width)


def chroma_steps(frame: av.VideoFrame) -> tuple[int, int]:
    """The coarsest (rows, columns) per sample over the frame's planes: a box on these steps holds
    whole chroma samples."""
    steps = [subsampling(frame, plane) for plane in frame.planes]
    return max(s[0] for s in steps), max(s[1] for s in steps)


def samples(plane, dtype: type) -> np.ndarray:
    """A writable (height, width) view of ``plane``'s samples (without the line padding)."""
    size = np.dtype(dtype).itemsize
    return np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // size)[:, : plane.width]
