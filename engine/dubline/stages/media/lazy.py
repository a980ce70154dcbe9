"""RGB pictures converted from their decoded samples only where they are read.

A render reads a few boxes of each source frame (the backend's face crop, the compositor's blend
region, the box the encoder codes again) and, when the patch is coded like its source, copies the
source's samples everywhere else (``EditedFrame``). Converting all of a decoded 1080p frame
exactly costs about 7 ms of CPU; a 600x600 box, about 2 (docs/BENCHMARKS.md).

``LazyImage`` stands in for a decoded frame's RGB array. A slice ``image[y0:y1, x0:x1]`` converts
only that box, with ``planes.CONTEXT_PX`` of context so that every pixel equals the whole frame's
conversion (``tests/test_media_lazy.py``); anything else (``np.asarray``, an index it does not
know) converts the whole frame, once. So code that slices gets the saving and any other code
still gets exact pixels. ``overlaid`` lays pixels over an image without converting the rest: a
backend's patch and the compositor's output stay lazy too.
"""

from __future__ import annotations

import threading
from fractions import Fraction
from typing import Any, Union

import av
import av.filter
import numpy as np
from av.video.reformatter import VideoReformatter
from numpy.lib.mixins import NDArrayOperatorsMixin

from dubline.stages.media.colour import pixel_format_facts, to_rgb
from dubline.stages.media.planes import CONTEXT_PX, MIN_PART_PX, at_least, chroma_steps, grown_box

#: A box is (y0, y1, x0, x1): rows y0:y1, columns x0:x1.
Box = tuple[int, int, int, int]

#: A window of converted pixels past this share of the picture converts all of it instead (the
#: boxes' own overhead would approach the whole frame's cost).
WHOLE_SHARE = 0.5

#: One swscale context per thread: frames are read on one thread and their boxes converted on
#: others (a backend's workers, the compositor, the encoder), and a context is not thread-safe.
_REFORMATTERS = threading.local()


def _reformatter() -> VideoReformatter:
    reformatter = getattr(_REFORMATTERS, "reformatter", None)
    if reformatter is None:
        reformatter = _REFORMATTERS.reformatter = VideoReformatter()
    return reformatter


def _regional(frame: av.VideoFrame) -> bool:
    """Whether boxes of ``frame`` can be converted on their own: planar Y'CbCr at 8 bits, or
    little-endian above 8, in whole chroma samples (other pictures convert whole). swscale places
    the chroma of a picture with an odd size by its size's ratio, which a box does not share."""
    name = frame.format.name
    bits, alpha = pixel_format_facts(name)
    if not (name.startswith("yuv") and len(frame.planes) == 3 and not alpha and (bits <= 8 or name.endswith("le"))):
        return False
    step_y, step_x = chroma_steps(frame)
    return frame.height % step_y == 0 and frame.width % step_x == 0


def _box_of(key: Any, shape: tuple[int, ...]) -> tuple[Box, tuple] | None:
    """(the box, the rest of the index) of a key that starts with one or two plain slices (rows,
    then columns); None for any other key."""
    parts = key if isinstance(key, tuple) else (key,)
    if not parts or len(parts) > 3 or not all(isinstance(part, slice) for part in parts[:2]):
        return None
    rows = parts[0]
    cols = parts[1] if len(parts) > 1 else slice(None)
    if rows.step not in (None, 1) or cols.step not in (None, 1):
        return None
    y0, y1, _ = rows.indices(shape[0])
    x0, x1, _ = cols.indices(shape[1])
    return (y0, max(y0, y1), x0, max(x0, x1)), parts[2:]


def _inside(box: Box, outer: Box) -> bool:
    return outer[0] <= box[0] and box[1] <= outer[1] and outer[2] <= box[2] and box[3] <= outer[3]


def _area(box: Box) -> int:
    return (box[1] - box[0]) * (box[3] - box[2])


class _ArrayStandIn(NDArrayOperatorsMixin):
    """What makes a lazy image pass for its array: ufuncs and operators, and any other ndarray
    attribute (``astype``, ``mean``, ...), act on the whole picture (converted for them)."""

    ndim = 3
    shape: tuple[int, int, int]
    dtype: np.dtype

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        whole = self._whole_picture()
        if dtype is not None and np.dtype(dtype) != whole.dtype:
            return whole.astype(dtype)
        return whole.copy() if copy else whole

    def _whole_picture(self) -> np.ndarray:
        """The whole picture (read-only), made once."""
        raise NotImplementedError

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if any(isinstance(out, _ArrayStandIn) for out in kwargs.get("out", ())):
            return NotImplemented  # read-only
        arrays = tuple(np.asarray(value) if isinstance(value, _ArrayStandIn) else value for value in inputs)
        return getattr(ufunc, method)(*arrays, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(np.asarray(self), name)

    def __len__(self) -> int:
        return self.shape[0]

    def copy(self) -> np.ndarray:
        return np.array(self)


class LazyImage(_ArrayStandIn):
    """The RGB picture of a decoded frame (as ``media.to_rgb`` converts it: uint8 for 8-bit
    formats, uint16 above), converted where it is sliced. Read-only: slices are views of the
    converted pixels and may not be written."""

    def __init__(self, frame: av.VideoFrame) -> None:
        bits, alpha = pixel_format_facts(frame.format.name)
        if alpha:
            raise ValueError(f"LazyImage takes pictures without alpha, not {frame.format.name}")
        self._frame = frame
        self.shape = (frame.height, frame.width, 3)
        self.dtype = np.dtype(np.uint16 if bits > 8 else np.uint8)
        self._regional = _regional(frame)
        self._lock = threading.Lock()
        self._whole: np.ndarray | None = None
        self._window: tuple[Box, np.ndarray] | None = None

    @property
    def converted_share(self) -> float:
        """The share of the picture converted so far (1.0 once whole)."""
        if self._whole is not None:
            return 1.0
        return 0.0 if self._window is None else _area(self._window[0]) / (self.shape[0] * self.shape[1])

    def __getitem__(self, key: Any) -> np.ndarray:
        found = _box_of(key, self.shape)
        if found is None:
            return np.asarray(self)[key]
        box, rest = found
        (wy0, _, wx0, _), window = self._covering(box)
        y0, y1, x0, x1 = box
        view = window[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0]
        return view[(slice(None), slice(None)) + rest] if rest else view

    def _whole_picture(self) -> np.ndarray:
        with self._lock:
            if self._whole is None:
                self._whole = self._converted_whole()
            return self._whole

    def _covering(self, box: Box) -> tuple[Box, np.ndarray]:
        """A converted window holding ``box``: the current one when it does, else one grown to
        hold both (the boxes a frame is read in nest or overlap), else the whole picture."""
        height, width = self.shape[:2]
        with self._lock:
            if self._whole is not None:
                return (0, height, 0, width), self._whole
            if self._window is not None and _inside(box, self._window[0]):
                return self._window
            want = box
            if self._window is not None:
                old = self._window[0]
                want = (min(box[0], old[0]), max(box[1], old[1]), min(box[2], old[2]), max(box[3], old[3]))
            if not self._regional or _area(want) > WHOLE_SHARE * height * width:
                self._whole, self._window = self._converted_whole(), None
                return (0, height, 0, width), self._whole
            self._window = (want, self._converted_box(want))
            return self._window

    def _converted_whole(self) -> np.ndarray:
        image, _ = to_rgb(self._frame, _reformatter())
        image.flags.writeable = False
        return image

    def _converted_box(self, box: Box) -> np.ndarray:
        """``box`` of the picture converted on its own, with context around it, exactly as the
        whole picture's conversion has it."""
        frame = self._frame
        step_y, step_x = chroma_steps(frame)
        part = at_least(grown_box(box, step_y, step_x, frame.height, frame.width, CONTEXT_PX), MIN_PART_PX,
                        frame.height, frame.width)
        top, bottom, left, right = grown_box(part, step_y, step_x, frame.height, frame.width, 0)
        image, _ = to_rgb(_cropped(frame, top, bottom, left, right), _reformatter())
        y0, y1, x0, x1 = box
        window = np.ascontiguousarray(image[y0 - top : y1 - top, x0 - left : x1 - left])
        window.flags.writeable = False
        return window


def _cropped(frame: av.VideoFrame, top: int, bottom: int, left: int, right: int) -> av.VideoFrame:
    """The picture's rows top:bottom, columns left:right (on whole chroma samples), sharing its
    samples and keeping every property swscale reads. FFmpeg's crop filter, because a frame built
    in Python cannot carry the decoder's chroma siting (an H.264 frame's is "left"), which moves
    every converted pixel."""
    graph = av.filter.Graph()
    source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                              time_base=Fraction(1, 1))
    crop = graph.add("crop", f"w={right - left}:h={bottom - top}:x={left}:y={top}:exact=1")
    sink = graph.add("buffersink")
    source.link_to(crop)
    crop.link_to(sink)
    graph.configure()
    graph.push(frame)
    return graph.pull()


class OverlaidImage(_ArrayStandIn):
    """``base`` (a lazy image) with ``pixels`` laid over the box at (y0, x0), read as ``base`` is:
    slices convert only what they cover. Read-only; see ``overlaid``."""

    def __init__(self, base: LazyImage | OverlaidImage, y0: int, x0: int, pixels: np.ndarray) -> None:
        self._base = base
        self.shape, self.dtype = base.shape, base.dtype
        self._box = (y0, y0 + pixels.shape[0], x0, x0 + pixels.shape[1])
        self._pixels = pixels
        self._lock = threading.Lock()
        self._whole: np.ndarray | None = None

    def __getitem__(self, key: Any) -> np.ndarray:
        found = _box_of(key, self.shape)
        if found is None:
            return np.asarray(self)[key]
        (y0, y1, x0, x1), rest = found
        out = np.array(self._base[y0:y1, x0:x1])
        oy0, oy1, ox0, ox1 = self._box
        top, bottom, left, right = max(y0, oy0), min(y1, oy1), max(x0, ox0), min(x1, ox1)
        if top < bottom and left < right:
            out[top - y0 : bottom - y0, left - x0 : right - x0] = self._pixels[top - oy0 : bottom - oy0, left - ox0 : right - ox0]
        return out[(slice(None), slice(None)) + rest] if rest else out

    def _whole_picture(self) -> np.ndarray:
        with self._lock:
            if self._whole is None:
                whole = np.array(self._base)
                y0, y1, x0, x1 = self._box
                whole[y0:y1, x0:x1] = self._pixels
                whole.flags.writeable = False
                self._whole = whole
            return self._whole


#: A picture as the render passes it around: an RGB array, or one of the lazy stand-ins for it.
Image = Union[np.ndarray, LazyImage, OverlaidImage]


def overlaid(image: Image, y0: int, x0: int, pixels: np.ndarray) -> Image:
    """``image`` with ``pixels`` over rows y0.. and columns x0..: for an array, a copy with the box
    written (as ``copy(); out[box] = pixels``); for a lazy image, a lazy one that converts no more
    of the picture than is read. The box must lie inside the picture."""
    height, width = image.shape[:2]
    if not (0 <= y0 and y0 + pixels.shape[0] <= height and 0 <= x0 and x0 + pixels.shape[1] <= width):
        raise ValueError(f"overlaid: a {pixels.shape[1]}x{pixels.shape[0]} box at ({x0}, {y0}) is not inside"
                         f" the {width}x{height} picture")
    if isinstance(image, np.ndarray):
        out = image.copy()
        out[y0 : y0 + pixels.shape[0], x0 : x0 + pixels.shape[1]] = pixels
        return out
    return OverlaidImage(image, y0, x0, pixels)
