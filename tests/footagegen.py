"""Clips made the way phones, cameras and broadcast deliver them, from the real shared footage.

Every clip starts from ``upright_frames`` (frames of ``speaker_a.mp4``, cropped to 4:3 and scaled
down so face analysis stays quick) and is stored the way the device would store it: turned
sideways with a display-matrix tag, squeezed with a pixel aspect, at 10 bits with PQ tags,
interlaced, with alpha, or on irregular timestamps. ``write_clip`` does it with PyAV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import cv2
import numpy as np

#: The upright picture every clip shows (4:3, even sizes, face IOD about 70 px).
WIDTH, HEIGHT = 336, 252
RATE = Fraction(25)


def upright_frames(source: Path, count: int, size: tuple[int, int] = (WIDTH, HEIGHT)) -> list[np.ndarray]:
    """The first ``count`` frames of ``source`` (844x844), cropped to 4:3 around the face and
    scaled to ``size``, as RGB uint8."""
    frames = []
    with av.open(str(source)) as container:
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="rgb24")
            crop = image[106:106 + 633]  # 844x633: 4:3 with the face (rows 267-578) inside
            frames.append(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
            if len(frames) == count:
                break
    return frames


def deepen(frames: Sequence[np.ndarray], seed: int = 3) -> list[np.ndarray]:
    """8-bit frames as 16-bit RGB with real sub-8-bit detail: a light blur of the picture plus
    noise of a third of an 8-bit level, so a 10-bit source carries values 8 bits cannot."""
    rng = np.random.default_rng(seed)
    out = []
    for image in frames:
        smooth = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.6) * 257.0
        noisy = smooth + rng.normal(0.0, 257.0 / 3, image.shape).astype(np.float32)
        out.append(np.clip(np.rint(noisy), 0, 65535).astype(np.uint16))
    return out


def to_pq(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """SDR BT.709 frames as HDR10 pictures: BT.1886 to linear, BT.709 -> BT.2020 primaries,
    reference white at 203 nits, PQ-encoded; 16-bit RGB."""
    to_2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]], np.float32)
    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    out = []
    for image in frames:
        linear = (image.astype(np.float32) / 255.0) ** 2.4
        nits = np.clip(linear @ to_2020.T, 0, None) * 203.0
        y = (nits / 10000.0) ** m1
        signal = ((c1 + c2 * y) / (1 + c3 * y)) ** m2
        out.append(np.clip(np.rint(signal * 65535), 0, 65535).astype(np.uint16))
    return out


@dataclass
class Storage:
    """How a clip is stored. ``rotation``: degrees the player turns it clockwise (the stored
    frames are the upright ones turned the other way). ``pts`` in ``time_base`` make it VFR."""

    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    options: dict[str, str] = field(default_factory=lambda: {"crf": "12", "preset": "veryfast", "g": "8"})
    rotation: int = 0
    sample_aspect_ratio: Fraction = Fraction(1)
    colour: dict[str, int] = field(default_factory=dict)  # codec-context colour fields
    interlaced: str | None = None  # "tff" / "bff": coded field by field
    pts: Sequence[int] | None = None
    time_base: Fraction | None = None
    alpha: np.ndarray | None = None  # (H, W) uint16 alpha plane for every frame


def stored_frames(frames: Sequence[np.ndarray], storage: Storage) -> list[np.ndarray]:
    """The upright frames as the device stores them: turned back by the rotation, squeezed
    horizontally by the pixel aspect."""
    out = []
    for image in frames:
        if storage.sample_aspect_ratio != 1:
            width = round(image.shape[1] / storage.sample_aspect_ratio)
            image = cv2.resize(image, (width, image.shape[0]), interpolation=cv2.INTER_AREA)
        out.append(np.ascontiguousarray(np.rot90(image, storage.rotation // 90)))  # counter-clockwise
    return out


def write_clip(path: Path, frames: Sequence[np.ndarray], storage: Storage, rate: Fraction = RATE) -> Path:
    """Encode upright ``frames`` (uint8 or uint16 RGB) stored as ``storage`` says."""
    images = stored_frames(frames, storage)
    height, width = images[0].shape[:2]
    deep = images[0].dtype == np.uint16
    with av.open(str(path), "w") as container:
        stream = container.add_stream(storage.codec, rate=rate, options=dict(storage.options))
        stream.width, stream.height, stream.pix_fmt = width, height, storage.pix_fmt
        if storage.rotation:
            stream.set_display_rotation(-storage.rotation)  # PyAV takes counter-clockwise degrees
        if storage.sample_aspect_ratio != 1:
            stream.codec_context.sample_aspect_ratio = storage.sample_aspect_ratio
        for name, value in storage.colour.items():
            setattr(stream.codec_context, name, value)
        if storage.time_base is not None:
            stream.codec_context.time_base = storage.time_base
            stream.time_base = storage.time_base
        marker = None
        if storage.interlaced:
            stream.codec_context.field_order = 2 if storage.interlaced == "tff" else 3
            stream.codec_context.flags |= av.codec.context.Flags.interlaced_dct
            marker = _field_graph(width, height, storage.pix_fmt, storage.interlaced)
        for index, image in enumerate(images):
            if storage.alpha is not None:
                alpha = np.rot90(storage.alpha, storage.rotation // 90)
                frame = av.VideoFrame.from_ndarray(np.dstack([image, alpha]), format="rgba64le")
            else:
                frame = av.VideoFrame.from_ndarray(image, format="rgb48le" if deep else "rgb24")
            frame = frame.reformat(format=storage.pix_fmt, dst_colorspace=storage.colour.get("colorspace"),
                                   dst_color_range=storage.colour.get("color_range"))
            for name, value in storage.colour.items():
                setattr(frame, name, value)
            if storage.pts is not None:
                frame.pts, frame.time_base = storage.pts[index], storage.time_base
            else:
                frame.pts, frame.time_base = index, 1 / rate
            if marker is not None:
                marker.vpush(frame)
                frame = marker.vpull()
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _field_graph(width: int, height: int, pix_fmt: str, mode: str) -> av.filter.Graph:
    graph = av.filter.Graph()
    source = graph.add_buffer(width=width, height=height, format=pix_fmt, time_base=Fraction(1, 25))
    setfield = graph.add("setfield", mode)
    sink = graph.add("buffersink")
    source.link_to(setfield)
    setfield.link_to(sink)
    graph.configure()
    return graph


def yuv_planes(path: Path, first: int = 0, end: int | None = None) -> list[list[np.ndarray]]:
    """The decoded frames' raw planes (Y, Cb, Cr[, A]) as int32 arrays, in display order."""
    out = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index < first:
                continue
            if end is not None and index >= end:
                break
            dtype = np.uint16 if frame.format.components[0].bits > 8 else np.uint8
            itemsize = np.dtype(dtype).itemsize
            out.append([
                np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // itemsize)[:, : plane.width].astype(np.int32)
                for plane in frame.planes
            ])
    return out


def reencode(source: Path, out: Path, codec: str, pix_fmt: str, options: dict[str, str]) -> Path:
    """The codec-only round trip: the source's decoded pictures encoded again, no RGB in between."""
    with av.open(str(source)) as inp, av.open(str(out), "w") as container:
        stream = container.add_stream(codec, rate=inp.streams.video[0].average_rate, options=dict(options))
        stream.width, stream.height, stream.pix_fmt = inp.streams.video[0].width, inp.streams.video[0].height, pix_fmt
        for index, frame in enumerate(inp.decode(video=0)):
            if frame.format.name != pix_fmt:
                frame = frame.reformat(format=pix_fmt)
            frame.pts, frame.time_base = index, Fraction(1, 25)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out
