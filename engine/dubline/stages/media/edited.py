"""Coding an edited frame from its source's own samples: only the edited box goes through RGB."""

from __future__ import annotations

import av
import numpy as np

from dubline.stages.media.colour import FROM_RGB, pixel_format_facts
from dubline.stages.media.types import EditedFrame

#: Pixels of context converted around the edited box and then dropped. swscale's 4:2:0 chroma
#: filter reads one chroma row beyond a pair, so a box converted on its own differs from the same
#: pixels converted in the whole frame along its top and bottom rows; with this margin it does not
#: (checked on random boxes for 4:2:0, 4:2:2 and 4:4:4, 8 and 10-bit: ``tests/test_media_edited.py``).
CONTEXT_PX = 4


def coded_picture(edited: EditedFrame, pix_fmt: str, matrix: int | None, colour_range: int | None) -> av.VideoFrame | None:
    """The picture to encode for ``edited`` in ``pix_fmt``: a copy of the source's decoded planes
    with the edited box converted from RGB as the whole frame would have been (same matrix, range
    and rounding); None when the source is not coded in ``pix_fmt`` at the image's size (the
    encoder then converts the whole RGB image, as for any other frame)."""
    source, image = edited.coded, edited.image
    if source.format.name != pix_fmt or (source.height, source.width) != image.shape[:2] or image.shape[2] != 3:
        return None
    deep = pixel_format_facts(pix_fmt)[0] > 8
    dtype = np.uint16 if deep else np.uint8
    picture = av.VideoFrame(source.width, source.height, pix_fmt)
    targets = [_samples(plane, dtype) for plane in picture.planes]
    for target, plane in zip(targets, source.planes):
        target[:] = _samples(plane, dtype)
    if edited.changed is None:
        return picture
    steps = [_subsampling(source, plane) for plane in source.planes]
    step_y, step_x = max(s[0] for s in steps), max(s[1] for s in steps)
    y0, y1, x0, x1 = _aligned(edited.changed, step_y, step_x, source.height, source.width, 0)
    if y1 <= y0 or x1 <= x0:
        return picture
    top, bottom, left, right = _aligned(edited.changed, step_y, step_x, source.height, source.width, CONTEXT_PX)
    rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[top:bottom, left:right]),
                                     format="rgb48le" if deep else "rgb24")
    region = rgb.reformat(format=pix_fmt, dst_colorspace=matrix, dst_color_range=colour_range, interpolation=FROM_RGB)
    for target, plane, (sy, sx) in zip(targets, region.planes, steps):
        converted = _samples(plane, dtype)
        rows = slice((y0 - top) // sy, -(-(y1 - top) // sy))
        cols = slice((x0 - left) // sx, -(-(x1 - left) // sx))
        target[y0 // sy: -(-y1 // sy), x0 // sx: -(-x1 // sx)] = converted[rows, cols]
    return picture


def _aligned(box: tuple[int, int, int, int], step_y: int, step_x: int, height: int, width: int,
             margin: int) -> tuple[int, int, int, int]:
    """``box`` grown by ``margin`` to whole chroma samples, clipped to the picture."""
    y0, y1, x0, x1 = box
    return (max(0, (y0 - margin) // step_y * step_y), min(height, -(-(y1 + margin) // step_y) * step_y),
            max(0, (x0 - margin) // step_x * step_x), min(width, -(-(x1 + margin) // step_x) * step_x))


def _subsampling(frame: av.VideoFrame, plane) -> tuple[int, int]:
    """(rows, columns) of the picture per sample of ``plane``: (2, 2) for 4:2:0 chroma."""
    return -(-frame.height // plane.height), -(-frame.width // plane.width)


def _samples(plane, dtype: type) -> np.ndarray:
    """A writable (height, width) view of ``plane``'s samples (without the line padding)."""
    size = np.dtype(dtype).itemsize
    return np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // size)[:, : plane.width]
