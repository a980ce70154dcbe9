"""Writing a source's picture layout onto a patch stream: display matrix, pixel aspect, field order
(with field-by-field coding where the codec can), and an alpha plane at the coded depth."""

from __future__ import annotations

import av
import numpy as np

from dubline.stages.media.colour import pixel_format_facts
from dubline.stages.media.types import FIELD_ORDERS, PictureLayout

_FIELD_ORDER_CODES = {name: code for code, name in FIELD_ORDERS.items()}


def apply_layout(stream, layout: PictureLayout, codes_fields: bool):
    """Put the source's display matrix, pixel aspect and field order on the stream; for an
    interlaced source and a codec that codes fields, return what marks each picture's fields."""
    if layout.display_matrix is not None:
        stream.set_display_matrix(list(layout.display_matrix))
    if layout.sample_aspect_ratio != 1:
        stream.codec_context.sample_aspect_ratio = layout.sample_aspect_ratio
    if layout.field_order != "unknown":
        stream.codec_context.field_order = _FIELD_ORDER_CODES[layout.field_order]
    if not (layout.interlaced and codes_fields):
        return None
    stream.codec_context.flags |= av.codec.context.Flags.interlaced_dct
    # The top field is coded (and for tt/bb shown) first for tt and tb; bottom first otherwise.
    # H.264 knows only which field comes first (tb and bt become tt and bb), and x264 takes it as
    # an option rather than from the pictures.
    dominance = "tff" if layout.field_order in ("tt", "tb") else "bff"
    if stream.codec_context.name == "libx264":
        options = dict(stream.codec_context.options)
        extra = f"{dominance}=1"
        options["x264-params"] = f"{options['x264-params']}:{extra}" if options.get("x264-params") else extra
        stream.codec_context.options = options
    return _FieldMarker(dominance)


class _FieldMarker:
    """Marks pictures interlaced with the given field dominance (FFmpeg's setfield filter: PyAV
    frames do not expose the flags), which the ProRes and H.264 encoders read per picture."""

    def __init__(self, mode: str) -> None:
        self._mode = mode
        self._graph = None

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        if self._graph is None:
            graph = av.filter.Graph()
            source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                      time_base=frame.time_base)
            setfield = graph.add("setfield", self._mode)
            sink = graph.add("buffersink")
            source.link_to(setfield)
            setfield.link_to(sink)
            graph.configure()
            self._graph = graph
        self._graph.vpush(frame)
        return self._graph.vpull()


def put_alpha(frame: av.VideoFrame, alpha: np.ndarray) -> None:
    """Write the alpha plane of a YUVA frame from ``alpha``, keeping its top bits. (swscale rescales
    alpha by 1023/65535, which moves a 10-bit alpha decoded at 12 bits, bits replicated, by one
    code value over most of its range; the top bits are exactly the coded ones.)"""
    plane = frame.planes[3]
    bits = pixel_format_facts(frame.format.name)[0]
    if alpha.dtype == np.uint16:
        coded = alpha >> np.uint16(16 - bits)
    else:
        coded = ((alpha.astype(np.uint32) * ((1 << bits) - 1) + 127) // 255).astype(np.uint16)
    target = np.frombuffer(plane, np.uint16).reshape(plane.height, plane.line_size // 2)
    target[:, : plane.width] = coded
