"""Coding an edited frame from its source's own samples: only the edited box goes through RGB."""

from __future__ import annotations

import av
import numpy as np

from dubline.stages.media.colour import FROM_RGB, pixel_format_facts
from dubline.stages.media.planes import CONTEXT_PX, MIN_PART_PX, at_least, chroma_steps, grown_box, samples, subsampling
from dubline.stages.media.types import EditedFrame


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
    targets = [samples(plane, dtype) for plane in picture.planes]
    for target, plane in zip(targets, source.planes):
        target[:] = samples(plane, dtype)
    if edited.changed is None:
        return picture
    steps = [subsampling(source, plane) for plane in source.planes]
    step_y, step_x = chroma_steps(source)
    y0, y1, x0, x1 = grown_box(edited.changed, step_y, step_x, source.height, source.width, 0)
    if y1 <= y0 or x1 <= x0:
        return picture
    part = at_least(grown_box(edited.changed, step_y, step_x, source.height, source.width, CONTEXT_PX), MIN_PART_PX,
                    source.height, source.width)
    top, bottom, left, right = grown_box(part, step_y, step_x, source.height, source.width, 0)
    rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[top:bottom, left:right]),
                                     format="rgb48le" if deep else "rgb24")
    region = rgb.reformat(format=pix_fmt, dst_colorspace=matrix, dst_color_range=colour_range, interpolation=FROM_RGB)
    for target, plane, (sy, sx) in zip(targets, region.planes, steps):
        converted = samples(plane, dtype)
        rows = slice((y0 - top) // sy, -(-(y1 - top) // sy))
        cols = slice((x0 - left) // sx, -(-(x1 - left) // sx))
        target[y0 // sy: -(-y1 // sy), x0 // sx: -(-x1 // sx)] = converted[rows, cols]
    return picture
