"""Colour description and the exact Y'CbCr <-> RGB conversions of decode and encode."""

from __future__ import annotations

from functools import lru_cache

import av
import cv2
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from dubline.core.errors import InvalidInputError
from dubline.stages.media.types import ColourTags

# FFmpeg's names for the AVColor* enums (libavutil/pixfmt.h); "unspecified" maps to None.
PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
              9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}
TRANSFERS = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
              9: "log100", 10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1",
              14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"}
MATRICES = {0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco",
             9: "bt2020nc", 10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc",
             13: "chroma-derived-c", 14: "ictcp"}
RANGES = {1: "tv", 2: "pc"}
UNSPECIFIED_MATRIX = 2
MATRIX_CODES = {name: code for code, name in MATRICES.items()}

# swscale's default YCbCr->RGB fast path truncates: a round trip through it drifts 1-1.7 levels
# darker, which alone held ProRes 422 patches to 44 dB. Accurate rounding with full chroma
# interpolation is unbiased (62 dB for RGB -> 4:2:2 10-bit -> RGB) for ~1.5 ms more per
# 844x844 frame. Encoding converts with the inverse settings and the source's tagged matrix.
TO_RGB = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
FROM_RGB = Interpolation.BILINEAR | Interpolation.ACCURATE_RND


def colour_tags(context) -> ColourTags:
    matrix = context.colorspace
    return ColourTags(
        primaries=PRIMARIES.get(context.color_primaries),
        transfer=TRANSFERS.get(context.color_trc),
        matrix=None if matrix == UNSPECIFIED_MATRIX else MATRICES.get(matrix),
        range=RANGES.get(context.color_range),
    )



@lru_cache(maxsize=64)
def pixel_format_facts(name: str) -> tuple[int, bool]:
    """(bits per component, has alpha) of an FFmpeg pixel format."""
    components = av.VideoFormat(name).components
    return max((c.bits for c in components), default=8), any(c.is_alpha for c in components)


def to_rgb(frame: av.VideoFrame, reformatter: VideoReformatter | None = None,
           exact: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """A decoded frame as (RGB, alpha or None): uint8 for 8-bit formats (the fast path), uint16
    (full 16-bit scale) above 8 bits, so a 10/12-bit source never passes through 8 bits.

    Pass one ``reformatter`` for all the frames of a stream: swscale then sets up its context once
    instead of per frame (a quarter of the cost at 1080p). ``exact=False`` converts 8-bit formats
    with swscale's default (up to ~2 levels off, see TO_RGB, but 5-7x faster at 1080p): for
    analysis (finding faces, lighting thumbnails), never for pixels that end up in a patch."""
    bits, alpha = pixel_format_facts(frame.format.name)
    interpolation = TO_RGB
    if bits <= 8:
        target = "rgba" if alpha else "rgb24"
        if not exact:
            interpolation = None
    else:
        frame = _full_chroma(frame, bits) or frame
        target = "rgba64le" if alpha else "rgb48le"
    if reformatter is None:
        array = frame.reformat(format=target, interpolation=interpolation).to_ndarray()
    else:
        array = reformatter.reformat(frame, format=target, interpolation=interpolation).to_ndarray()
    if not alpha:
        return array, None
    return np.ascontiguousarray(array[..., :3]), np.ascontiguousarray(array[..., 3])


@lru_cache(maxsize=1)
def sixteen_bit_white() -> int:
    """The 16-bit RGB value swscale decodes video-range white to (65283 in FFmpeg 8, not 65535):
    8-bit pictures are scaled to it so that 8-bit content placed in a 16-bit frame encodes to the
    same code values as it would from 8 bits. Measured, not assumed."""
    white = av.VideoFrame.from_ndarray(np.full((2, 2, 3), 255, np.uint8), format="rgb24")
    coded = white.reformat(format="yuv444p10le", interpolation=FROM_RGB)
    return int(coded.reformat(format="rgb48le", interpolation=TO_RGB).to_ndarray()[0, 0, 1])


def _full_chroma(frame: av.VideoFrame, bits: int) -> av.VideoFrame | None:
    """A deep planar 4:2:2 / 4:2:0 frame as 4:4:4 at 16 bits, its chroma upsampled so that every
    pair of upsampled samples averages to the original sample; None for any other format.

    swscale's own upsampling is not undone by its downsampling (FROM_RGB averages pairs): a 10-bit
    4:2:2 source came back with chroma off by 0.12 code values on average and up to 6. With this
    upsampling 10-bit 4:2:2 -> 16-bit RGB -> 10-bit 4:2:2 is the identity (+-1), so pixels outside
    the matte are the source's own, and the RGB picture stays smooth (a linear ramp per pair).
    """
    name = frame.format.name
    if not (name.startswith("yuv") and name.endswith("le")) or len(frame.planes) != 3:
        return None
    luma, blue, red = (_plane(p) for p in frame.planes)
    if blue.shape == luma.shape:
        return None
    full = av.VideoFrame(frame.width, frame.height, "yuv444p16le")
    targets = [np.frombuffer(p, np.uint16).reshape(p.height, p.line_size // 2)[:, : p.width] for p in full.planes]
    shift = 16 - bits
    np.left_shift(luma, shift, out=targets[0])
    for chroma, target in zip((blue, red), targets[1:]):
        target[:] = _pair_preserving(cv2.multiply(chroma, 1 << shift, dtype=cv2.CV_32F), luma.shape)
    for attribute in ("colorspace", "color_range", "color_primaries", "color_trc"):
        setattr(full, attribute, getattr(frame, attribute))
    return full


def _plane(plane) -> np.ndarray:
    return np.frombuffer(plane, np.uint16).reshape(plane.height, plane.line_size // 2)[:, : plane.width]


#: Pair-preserving upsampling as two 3-tap filters: sample c's left and right children are
#: c -+ (next - previous) / 8, so each pair averages to c exactly.
_LEFT_CHILD = np.array([[1 / 8, 1.0, -1 / 8]], np.float32)
_RIGHT_CHILD = np.array([[-1 / 8, 1.0, 1 / 8]], np.float32)


def _pair_preserving(chroma: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``chroma`` (float32 at 16-bit scale) upsampled 2x along each subsampled axis to ``shape``,
    as uint16. Exact in float32: samples are multiples of 8 below 2**24 (edges repeat)."""
    height, width = chroma.shape
    if width < shape[1]:
        left = cv2.filter2D(chroma, -1, _LEFT_CHILD, borderType=cv2.BORDER_REPLICATE)
        right = cv2.filter2D(chroma, -1, _RIGHT_CHILD, borderType=cv2.BORDER_REPLICATE)
        chroma = cv2.merge([left, right]).reshape(height, 2 * width)[:, : shape[1]]  # odd: last half pair dropped
    if height < shape[0]:
        top = cv2.filter2D(chroma, -1, _LEFT_CHILD.T, borderType=cv2.BORDER_REPLICATE)
        bottom = cv2.filter2D(chroma, -1, _RIGHT_CHILD.T, borderType=cv2.BORDER_REPLICATE)
        chroma = np.stack([top, bottom], axis=1).reshape(2 * height, -1)[: shape[0]]
    return cv2.multiply(chroma, 1.0, dtype=cv2.CV_16U)  # rounds and saturates to 0..65535


def to_8bit(image: np.ndarray) -> np.ndarray:
    """uint16 (decoded scale, ``sixteen_bit_white``) -> uint8, rounded; uint8 is returned as is."""
    if image.dtype == np.uint8:
        return image
    return cv2.convertScaleAbs(image, alpha=255.0 / sixteen_bit_white())


def from_8bit(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """uint8 -> ``dtype`` (uint8 or uint16 at the decoded scale; 8-bit values survive the round trip)."""
    if np.dtype(dtype) == np.uint8:
        return image
    return np.rint(image.astype(np.float32) * np.float32(sixteen_bit_white() / 255.0)).astype(np.uint16)


def convert_depth(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``image`` in ``dtype`` (uint8 or uint16 full scale)."""
    if image.dtype == np.dtype(dtype):
        return image
    return to_8bit(image) if np.dtype(dtype) == np.uint8 else from_8bit(image, dtype)


#: HDR transfers the analysis proxy tone-maps (FFmpeg names).
HDR_TRANSFERS = ("smpte2084", "arib-std-b67")
#: HDR reference white (BT.2408), which the proxy shows as SDR white, and the HLG display peak.
_REFERENCE_WHITE_NITS = 203.0
_HLG_PEAK_NITS = 1000.0
#: Up to this fraction of reference white (linear) the proxy is the SDR picture itself; above it
#: highlights roll off smoothly towards white instead of clipping.
_KNEE = 0.75


def analysis_8bit(image: np.ndarray, transfer: str | None, primaries: str | None = None) -> np.ndarray:
    """An 8-bit picture for analysis (the face detector and landmark model need 8-bit SDR).

    8-bit input is returned as is; deeper SDR input is rounded to 8 bits; PQ and HLG input is
    tone-mapped (``_to_linear``, BT.2020 primaries converted to BT.709, ``_to_sdr``). Only
    analysis looks at this proxy: the pixels a patch carries stay the source's kind (no tone
    mapping of the output).
    """
    if image.dtype == np.uint8:
        return image
    if transfer not in HDR_TRANSFERS:
        return to_8bit(image)
    linear = _to_linear(transfer, sixteen_bit_white())[image]
    if primaries == "bt2020":
        linear = cv2.transform(linear, _BT2020_TO_BT709)
    # The LUT is indexed by the square root of linear light: fine steps near black, where the
    # display gamma is steep.
    np.clip(linear, 0.0, _SDR_LUT_TOP, out=linear)
    index = (cv2.sqrt(linear * np.float32(1 / _SDR_LUT_TOP)) * np.float32(65535) + np.float32(0.5)).astype(np.uint16)
    return _to_sdr()[index]


#: Linear-light BT.2020 RGB -> BT.709 RGB (ITU-R BT.2087).
_BT2020_TO_BT709 = np.array([[1.6605, -0.5876, -0.0728], [-0.1246, 1.1329, -0.0083], [-0.0182, -0.1006, 1.1187]],
                            np.float32)
#: ``_to_sdr`` covers linear light up to 49x reference white (10 000 nits).
_SDR_LUT_TOP = 49.3


@lru_cache(maxsize=2)
def _to_linear(transfer: str, white: int) -> np.ndarray:
    """uint16 code value -> linear light relative to reference white (float32): the transfer's
    EOTF to nits (PQ exactly; HLG with a 1000-nit display and the per-channel form of its OOTF,
    gamma 1.2) over 203 nits (BT.2408), so a grade with faces at SDR levels keeps them there."""
    signal = np.minimum(np.arange(65536, dtype=np.float64) / white, 1.0)
    if transfer == "smpte2084":
        m1, m2 = 2610 / 16384, 2523 / 4096 * 128
        c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
        power = signal ** (1 / m2)
        nits = 10000.0 * (np.maximum(power - c1, 0) / (c2 - c3 * power)) ** (1 / m1)
    else:  # arib-std-b67 (HLG)
        a = 0.17883277
        b, c = 1 - 4 * a, 0.5 - a * np.log(4 * a)
        scene = np.where(signal <= 0.5, signal**2 / 3, (np.exp((signal - c) / a) + b) / 12)
        nits = _HLG_PEAK_NITS * scene**1.2
    return (nits / _REFERENCE_WHITE_NITS).astype(np.float32)


@lru_cache(maxsize=1)
def _to_sdr() -> np.ndarray:
    """sqrt(linear / _SDR_LUT_TOP) in 65536 steps -> uint8 SDR: identity up to ``_KNEE``, a smooth
    exponential shoulder to white above it, BT.1886's inverse."""
    relative = (np.arange(65536, dtype=np.float64) / 65535) ** 2 * _SDR_LUT_TOP
    shoulder = _KNEE + (1 - _KNEE) * (1 - np.exp(-(relative - _KNEE) / (1 - _KNEE)))
    mapped = np.clip(np.where(relative <= _KNEE, relative, shoulder), 0.0, 1.0)
    return np.rint(255.0 * mapped ** (1 / 2.4)).astype(np.uint8)


def colour_codes(tags: ColourTags | None, rgb: bool) -> dict[str, int]:
    """The AVFrame colour fields (attribute -> FFmpeg code) of ``tags``; an RGB frame takes no
    matrix or range."""
    if tags is None:
        return {}
    codes = {}
    for value, table, attribute in (
        (tags.primaries, PRIMARIES, "color_primaries"),
        (tags.transfer, TRANSFERS, "color_trc"),
        (None if rgb else tags.matrix, MATRICES, "colorspace"),
        (None if rgb else tags.range, RANGES, "color_range"),
    ):
        if value is not None:
            matches = [code for code, name in table.items() if name == value]
            if not matches:
                raise InvalidInputError(f"unknown colour tag {value!r} for {attribute}")
            codes[attribute] = matches[0]
    return codes


def apply_colour(context, tags: ColourTags | None, rgb: bool) -> None:
    if tags is None:
        return
    if rgb:
        tags = ColourTags(primaries=tags.primaries, transfer=tags.transfer)
    for value, table, attribute in (
        (tags.primaries, PRIMARIES, "color_primaries"),
        (tags.transfer, TRANSFERS, "color_trc"),
        (tags.matrix, MATRICES, "colorspace"),
        (tags.range, RANGES, "color_range"),
    ):
        if value is None:
            continue
        codes = [code for code, name in table.items() if name == value]
        if not codes:
            raise InvalidInputError(f"unknown colour tag {value!r} for {attribute}")
        setattr(context, attribute, codes[0])

