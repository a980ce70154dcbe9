"""The one-frame RPC's data: rendered spans held in memory, host images in and out, compositing.

A span rendered for the OpenFX bridge (patch + matte, lossless) is decoded once into memory, so
each later frame request is an array lookup and one blend. Spans are evicted least recently used
past a byte budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from dubline_client import pb

from dubline.core import timing
from dubline.core.errors import InvalidInputError
from dubline.core.lru import LruStore
from dubline.stages import media

MAX_FRAME_WIDTH = 4096
MAX_FRAME_HEIGHT = 4096
MAX_FRAME_PIXELS = 4096 * 2304  # DCI 4K and UHD fit
_PIXEL_BYTES = {pb.PIXEL_FORMAT_RGBA8: 4, pb.PIXEL_FORMAT_RGBA_F32: 16}


@dataclass
class RenderedSpan:
    """The patch frames [first, first + len) of a source at ``rate``, and their matte."""

    first: int
    rate: Fraction
    patch: np.ndarray  # (T, H, W, 3) uint8
    matte: np.ndarray | None  # (T, H, W) uint8, 255 = patch

    @property
    def nbytes(self) -> int:
        return self.patch.nbytes + (0 if self.matte is None else self.matte.nbytes)


def _decode_all(path: Path) -> tuple[np.ndarray, Fraction]:
    info = media.probe(path)
    video = info.video
    assert video is not None
    frames = media.read_span(path, timing.frames_to_range(0, video.frame_count, video.rate))
    # The frame protocol serves RGBA8 or float: a 10-bit patch (uint16 frames) is served at 8 bits.
    return np.stack([media.to_8bit(f.image) for f in frames]), video.rate


def load_span(out: Path, matte: Path | None, first: int) -> RenderedSpan:
    patch, rate = _decode_all(out)
    matte_frames = _decode_all(matte)[0][..., 0].copy() if matte is not None else None
    return RenderedSpan(first, rate, patch, matte_frames)


class SpanStore:
    """Rendered spans by output path, least recently used dropped past ``budget_bytes``."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._spans: LruStore[Path, RenderedSpan] = LruStore(budget_bytes, size=lambda span: span.nbytes)

    def get(self, out: Path, matte: Path | None, first: int) -> RenderedSpan:
        span, _ = self._spans.get_or_load(out, lambda: load_span(out, matte, first))
        return span

    def put(self, out: Path, span: RenderedSpan) -> None:
        """Hold a span rendered into memory (so its file need not be decoded again)."""
        self._spans.put(out, span)


def frame_index(seconds: Fraction, rate: Fraction) -> int:
    """The source frame shown at ``seconds`` (nearest frame start, halves up)."""
    return timing.seconds_to_frame(seconds, rate)


def host_image(image: pb.Image) -> np.ndarray:
    """(H, W, 4) uint8 or float32 view of a host frame, top row first; InvalidInputError if malformed."""
    if image.format not in _PIXEL_BYTES:
        raise InvalidInputError(f"source_frame.format must be RGBA8 or RGBA_F32, got {pb.PixelFormat.Name(image.format) if image.format in pb.PixelFormat.values() else image.format}")
    width, height = image.width, image.height
    if not (0 < width <= MAX_FRAME_WIDTH and 0 < height <= MAX_FRAME_HEIGHT) or width * height > MAX_FRAME_PIXELS:
        raise InvalidInputError(
            f"source_frame is {width}x{height}; frames must be 1x1 to {MAX_FRAME_WIDTH}x{MAX_FRAME_HEIGHT} "
            f"and at most {MAX_FRAME_PIXELS} pixels"
        )
    pixel = _PIXEL_BYTES[image.format]
    if image.row_bytes < width * pixel:
        raise InvalidInputError(f"source_frame.row_bytes {image.row_bytes} is less than width x {pixel} bytes ({width * pixel})")
    if len(image.data) != image.row_bytes * height:
        raise InvalidInputError(
            f"source_frame.data has {len(image.data)} bytes; {height} rows of {image.row_bytes} bytes are {image.row_bytes * height}"
        )
    rows = np.frombuffer(image.data, np.uint8).reshape(height, image.row_bytes)[:, : width * pixel]
    dtype = np.uint8 if image.format == pb.PIXEL_FORMAT_RGBA8 else np.dtype("<f4")
    array = np.ascontiguousarray(rows).view(dtype).reshape(height, width, 4)
    return array[::-1] if image.bottom_up else array


def image_of(array: np.ndarray, bottom_up: bool) -> pb.Image:
    """An Image of an (H, W, 4) or (H, W) uint8/float32 array."""
    array = np.ascontiguousarray(array[::-1] if bottom_up else array)
    grey = array.ndim == 2
    if array.dtype == np.uint8:
        fmt = pb.PIXEL_FORMAT_GRAY8 if grey else pb.PIXEL_FORMAT_RGBA8
    else:
        array = array.astype("<f4", copy=False)
        fmt = pb.PIXEL_FORMAT_GRAY_F32 if grey else pb.PIXEL_FORMAT_RGBA_F32
    height, width = array.shape[:2]
    return pb.Image(width=width, height=height, row_bytes=array.strides[0], format=fmt, bottom_up=bottom_up, data=array.tobytes())


def fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale a patch or matte to the host's frame size (hosts render at proxy scales)."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    import cv2

    shrinking = width < image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def composite_over(host: np.ndarray, patch: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """host + matte * (patch - host) on RGB; host alpha kept; where the matte is 0 the host's
    pixels come back bit-exact. Only the matte's bounding box is blended (the mouth is small)."""
    height, width = host.shape[:2]
    weight = fit(matte, width, height)
    out = host.copy()
    rows, cols = np.nonzero(weight.any(axis=1))[0], np.nonzero(weight.any(axis=0))[0]
    if not len(rows):
        return out
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    patch_box = fit(patch, width, height)[box].astype(np.float32)
    alpha = weight[box].astype(np.float32)[..., None] / 255.0
    region = out[box]
    if host.dtype == np.uint8:
        rgb = region[..., :3].astype(np.float32)
        blended = np.rint(rgb + alpha * (patch_box - rgb)).clip(0, 255).astype(np.uint8)
    else:
        rgb = region[..., :3]
        blended = rgb + alpha * (patch_box / 255.0 - rgb)
    inside = alpha[..., 0] > 0
    region[..., :3][inside] = blended[inside]
    return out


def rgba(patch: np.ndarray, float_output: bool) -> np.ndarray:
    """An (H, W, 3) uint8 frame as opaque RGBA8 or RGBA float32 (0..1)."""
    alpha = np.full(patch.shape[:2] + (1,), 255, np.uint8)
    frame = np.concatenate([patch, alpha], axis=2)
    return frame.astype(np.float32) / 255.0 if float_output else frame


def matte_image(matte: np.ndarray, float_output: bool) -> np.ndarray:
    return matte.astype(np.float32) / 255.0 if float_output else matte
