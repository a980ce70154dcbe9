"""Composite: put a backend's mouth patch into the source frame (shared by every backend).

Stage contract::

    paste(frame, patch, landmarks68, params, deflicker=None) -> CompositeResult(frame, matte)

``patch`` is a full-frame RGB image already aligned to ``frame`` (backends produce that), of the
frame's dtype: uint8, or uint16 for sources above 8 bits (nothing here goes through 8 bits).
The steps are: a soft lower-face matte from the landmarks (``lower_face_matte``), a colour/exposure
match of the patch to the frame (``match_colour``), a Laplacian-pyramid blend inside the matte
(``multiband_blend``) and, across frames, a light low-frequency deflicker (``TemporalDeflicker``).

"Outside the matte" is defined as ``matte == 0`` exactly: the matte is thresholded so that tiny
Gaussian tails become 0, and every step guarantees that pixels where ``matte == 0`` are the
source pixels, bit for bit. That is the promise the ``--matte`` output mode and ``qc`` rely on.

All heavy work runs on the bounding box of the matte plus a margin, in float32, so the cost
follows the face size, not the frame size.

One module because every step works on the same matte bounding box and must keep the same
promise (``matte == 0`` pixels are the source's): split apart, each piece would re-derive the box
and the guarantee would be checked in five places instead of one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

from dubline.core.errors import InvalidInputError
from dubline.core.landmarks import (
    NOSE_BASE,
    NOSE_BOTTOM,
    NOSE_TOP,
    OUTER_LIP,
    check_landmarks,
    inter_ocular_distance,
)
from dubline.stages.media import Image, overlaid

#: Jaw points (0-based, 68-point layout) that bound the matte: cheek to cheek through the chin.
MATTE_JAW = slice(2, 15)


@dataclass(frozen=True)
class MatteParams:
    """Shape of the lower-face matte; lengths are fractions of the inter-ocular distance (IOD)."""

    #: How far the top edge sits below the nose base, as a fraction of the nose length (27 -> 33).
    nose_drop: float = 0.15
    #: Erosion radius of the landmark polygon. About 2.5x ``feather`` keeps the feathered matte
    #: inside the jaw line, so the neck and background never take patch pixels.
    erode: float = 0.15
    #: Standard deviation of the feather (a stack blur, see ``_stack_blur_radius``).
    feather: float = 0.06
    #: The lips grown by this are left out of the colour statistics (they differ between images).
    lip_margin: float = 0.12
    #: Matte values below this become exactly 0 (the Gaussian's far tail), so "outside" is crisp.
    zero_below: float = 1.0 / 512.0
    #: The lips grown by this are always fully inside the matte (weight 1), and the blend shows the
    #: patch there exactly (no band of the source's mouth under it). The jaw polygon alone is not
    #: enough: on a short upper lip its eroded, feathered top edge runs through the lip, and a
    #: mouth half one image and half the other reads as a doubled, paler lip line.
    lip_cover: float = 0.05
    #: Feather (standard deviation) of the lips' part of the matte: tighter than ``feather`` so the
    #: transition fits between the upper lip and the nose.
    lip_feather: float = 0.025


@dataclass(frozen=True)
class CompositeParams:
    matte: MatteParams = field(default_factory=MatteParams)
    #: Match the patch's colour and exposure to the frame before blending.
    colour_match: bool = True
    #: Bound on the colour match's luma contrast gain (1: offsets only). The skin band's spread
    #: differs between two frames by what the band happens to cover (shading, chin, a shadow) more
    #: than by any real change of contrast: on speaker_b the fitted gain swung 0.64..1.30 from frame
    #: to frame, paling the lips and flickering the whole patch; fixed at 1 the flicker ratio went
    #: 1.36 -> 1.25 there, sharpness 0.98 -> 1.00, lip saturation onto the speaker's median.
    max_luma_gain: float = 1.0
    #: Laplacian pyramid levels; None picks them from the matte's size.
    levels: int | None = None


@dataclass(frozen=True)
class Box:
    """A pixel rectangle [y0, y1) x [x0, x1)."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    def grow(self, margin: int, shape: tuple[int, int]) -> Box:
        """This box plus ``margin`` on every side, clipped to an image of ``shape`` (H, W)."""
        return Box(
            max(0, self.y0 - margin), min(shape[0], self.y1 + margin),
            max(0, self.x0 - margin), min(shape[1], self.x1 + margin),
        )


_CV_DEPTH = {np.dtype(np.uint8): cv2.CV_8U, np.dtype(np.uint16): cv2.CV_16U}


def _code_scale(dtype: np.dtype) -> float:
    """Code values of ``dtype`` per 8-bit code value (thresholds below are in 8-bit units)."""
    return 1.0 if dtype == np.uint8 else 257.0


@dataclass(frozen=True, eq=False)
class CompositeResult:
    #: The composited RGB frame, in the input's dtype (the input itself when passed through; lazy
    #: when the input is: ``media.overlaid``).
    frame: Image
    #: Why the frame was passed through untouched, or None when a patch was blended.
    passthrough_reason: str | None = None
    #: Where the matte can be non-zero (None: it is all zeros), and the matte on that box.
    matte_box: Box | None = None
    box_matte: np.ndarray | None = None

    @cached_property
    def matte(self) -> np.ndarray:
        """float32 (H, W) in [0, 1]; exactly 0 wherever the output equals the source. Built on
        first use: a render needs only the box, and a full-frame float matte per frame is not free."""
        full = np.zeros(self.frame.shape[:2], np.float32)
        if self.matte_box is not None:
            full[self.matte_box.slices] = self.box_matte
        return full


def _support_box(matte: np.ndarray) -> Box | None:
    """Bounding box of ``matte > 0``, or None when the matte is empty."""
    rows = np.flatnonzero(matte.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(matte.any(axis=0))
    return Box(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def _stack_blur_radius(sigma: float) -> int:
    """Radius of the stack blur whose (triangular) kernel has standard deviation ``sigma``.

    Stack blur stands in for a Gaussian: it looks the same on a feather, costs the same for any
    radius (a Gaussian of sigma 10 px costs ~5x more here) and is exactly 0 beyond its radius.
    """
    return max(1, int(round(sigma * math.sqrt(6.0))))


def _matte_polygon(landmarks: np.ndarray, params: MatteParams) -> np.ndarray:
    """Jaw line 2..14, closed right-to-left along the nose base 35..31 moved down the face."""
    down = landmarks[NOSE_BOTTOM] - landmarks[NOSE_TOP]  # "down the face", robust to roll
    nose_length = float(np.hypot(*down))
    down = down / nose_length if nose_length > 0 else np.array([0.0, 1.0])
    nose_line = landmarks[NOSE_BASE][::-1] + params.nose_drop * nose_length * down
    return np.concatenate([landmarks[MATTE_JAW], nose_line])


def _matte_in_box(
    landmarks68: np.ndarray | None, shape: tuple[int, int], params: MatteParams
) -> tuple[np.ndarray, Box] | None:
    """The matte on the crop that holds all of it, or None (no/invalid landmarks, off-frame face)."""
    if landmarks68 is None:
        return None
    landmarks = check_landmarks(landmarks68, "landmarks68")
    if not np.all(np.isfinite(landmarks)):
        return None
    iod = inter_ocular_distance(landmarks)
    if iod < 2.0:
        return None
    polygon = _matte_polygon(landmarks, params)
    radius = params.erode * iod
    feather_radius = _stack_blur_radius(params.feather * iod)
    lip_feather_radius = _stack_blur_radius(params.lip_feather * iod)
    lip_grow = params.lip_cover * iod + lip_feather_radius  # full weight lip_cover beyond the lips
    margin = feather_radius + 2  # the blur never reaches further than its radius
    lips = landmarks[OUTER_LIP]
    low = np.floor(np.minimum(polygon.min(axis=0), lips.min(axis=0) - lip_grow)).astype(int)
    high = np.ceil(np.maximum(polygon.max(axis=0), lips.max(axis=0) + lip_grow)).astype(int) + 1
    box = Box(int(low[1]), int(high[1]), int(low[0]), int(high[0])).grow(margin, shape)
    if box.height <= 0 or box.width <= 0:
        return None

    filled = np.zeros((box.height, box.width), np.uint8)
    fixed_point = np.round((polygon - (box.x0, box.y0)) * 16).astype(np.int32)  # shift=4: 1/16 px
    cv2.fillPoly(filled, [fixed_point], 1, lineType=cv2.LINE_8, shift=4)
    # Erosion by a disc via the distance transform: exact radius, cost independent of it.
    # Pixels beyond the frame count as inside, so a face cut by the frame edge is not eroded there.
    distance = cv2.distanceTransform(filled, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    eroded = (distance > radius).astype(np.float32)
    matte = cv2.stackBlur(eroded, (2 * feather_radius + 1, 2 * feather_radius + 1))
    lip_matte = _lip_matte(lips - (box.x0, box.y0), (box.height, box.width), lip_grow, lip_feather_radius)
    np.maximum(matte, lip_matte, out=matte)
    matte[matte < params.zero_below] = 0.0
    np.minimum(matte, 1.0, out=matte)
    if not matte.any():
        return None
    return matte, box


def _lip_matte(lips: np.ndarray, shape: tuple[int, int], grow: float, feather_radius: int) -> np.ndarray:
    """1 over the outer-lip polygon grown by ``grow - feather_radius`` px, feathered by a stack blur."""
    filled = np.ones(shape, np.uint8)
    cv2.fillPoly(filled, [np.round(lips * 16).astype(np.int32)], 0, lineType=cv2.LINE_8, shift=4)
    distance = cv2.distanceTransform(filled, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    grown = (distance <= grow).astype(np.float32)
    return cv2.stackBlur(grown, (2 * feather_radius + 1, 2 * feather_radius + 1))


def lower_face_matte(
    landmarks68: np.ndarray, shape: tuple[int, int], params: MatteParams = MatteParams()
) -> np.ndarray:
    """Soft matte of the lower face, float32 (H, W) in [0, 1].

    Polygon: jaw points 2..14 closed across the nose base (31..35) lowered by
    ``params.nose_drop`` of the nose length; filled, eroded by ``params.erode`` x IOD, feathered with
    a Gaussian-like stack blur of sigma ``params.feather`` x IOD; values below ``params.zero_below`` set to exactly 0.
    All zeros when the landmarks are NaN or the face is off-frame.
    """
    height, width = int(shape[0]), int(shape[1])
    full = np.zeros((height, width), np.float32)
    found = _matte_in_box(landmarks68, (height, width), params)
    if found is not None:
        matte, box = found
        full[box.slices] = matte
    return full


#: RGB -> (Y, Cb, Cr), BT.601 full range: a linear map, so a per-channel affine map in YCbCr is an
#: affine map in RGB that one ``cv2.transform`` applies.
_RGB_TO_YCC = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float64
)
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC)


def match_colour(
    patch: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    usable: np.ndarray | None = None,
    max_luma_gain: float = 1.5,
) -> np.ndarray:
    """Patch with its colour and exposure matched to ``target`` where ``mask`` will blend them.

    Statistics come from the feather band (0.02 < mask < 0.98), the skin around the mouth that
    both images show, so the mouth interior (which legitimately differs: teeth, an open mouth)
    does not bias them; when the band is too small, all of ``mask > 0`` is used. ``usable`` (bool,
    optional) limits them further: ``paste`` leaves out the lips and pixels a warp could not fill.
    Robust statistics in YCbCr: each channel's median is moved to the target's and the luma spread
    (interquartile range) is scaled to the target's, the gain clamped to [1 / max_luma_gain,
    max_luma_gain] (1: medians only). One affine map for every pixel keeps the inner mouth's
    contrast relative to the skin. Returns an array of the
    patch's shape and dtype (uint8 values are rounded and saturated).
    """
    if patch.shape != target.shape or patch.shape[:2] != mask.shape:
        raise InvalidInputError(
            f"match_colour: patch {patch.shape}, target {target.shape} and mask {mask.shape} disagree"
        )
    band = (mask > 0.02) & (mask < 0.98)
    if usable is not None:
        band &= usable
    if np.count_nonzero(band) < 64:
        band = mask > 0
        if usable is not None:
            band &= usable
    if np.count_nonzero(band) < 16:
        return patch.copy()

    # The band's pixels in row-major order, as ``image[band]`` takes them, at a third of its cost.
    pixels = np.flatnonzero(band)
    patch_ycc = _rgb_at(patch, pixels).astype(np.float32) @ _RGB_TO_YCC.T.astype(np.float32)
    target_ycc = _rgb_at(target, pixels).astype(np.float32) @ _RGB_TO_YCC.T.astype(np.float32)
    patch_q = np.percentile(patch_ycc, (25, 50, 75), axis=0).astype(np.float64)
    target_q = np.percentile(target_ycc, (25, 50, 75), axis=0).astype(np.float64)
    gain = np.ones(3)
    patch_spread, target_spread = patch_q[2, 0] - patch_q[0, 0], target_q[2, 0] - target_q[0, 0]
    if patch_spread > 1e-3 and target_spread > 1e-3:
        gain[0] = np.clip(target_spread / patch_spread, 1.0 / max_luma_gain, max_luma_gain)
    # ycc' = gain * (ycc - patch_median) + target_median, written as rgb' = A rgb + b.
    linear = _YCC_TO_RGB @ np.diag(gain) @ _RGB_TO_YCC
    offset = _YCC_TO_RGB @ (target_q[1] - gain * patch_q[1])
    return cv2.transform(patch, np.hstack([linear, offset[:, None]]))


def _rgb_at(image: np.ndarray, flat_indices: np.ndarray) -> np.ndarray:
    """(N, 3): the RGB pixels of ``image`` (H, W, 3) at the row-major ``flat_indices``."""
    return np.take(np.ascontiguousarray(image).reshape(-1, 3), flat_indices, axis=0)


def mouth_region(landmarks68: np.ndarray, margin: float, box: Box) -> np.ndarray:
    """Bool mask on ``box`` of the outer-lip polygon grown by ``margin`` x inter-ocular distance."""
    landmarks = check_landmarks(landmarks68, "landmarks68")
    mask = np.zeros((box.height, box.width), bool)
    lips = np.round((landmarks[OUTER_LIP] - (box.x0, box.y0)) * 16).astype(np.int32)
    grow = max(0, int(round(margin * inter_ocular_distance(landmarks))))
    # Fill and dilate only around the lips: the rest of the box stays 0 either way, and the ellipse's
    # cost grows with the area it slides over (the same pixels as over the whole box).
    reach = grow + 2
    x0, y0 = max(0, int(lips[:, 0].min()) // 16 - reach), max(0, int(lips[:, 1].min()) // 16 - reach)
    x1, y1 = min(box.width, int(lips[:, 0].max()) // 16 + 1 + reach), min(box.height, int(lips[:, 1].max()) // 16 + 1 + reach)
    if x1 <= x0 or y1 <= y0:
        return mask
    near = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(near, [lips - np.int32(16) * np.array([x0, y0], np.int32)], 1, shift=4)
    if grow > 0:
        near = cv2.dilate(near, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    mask[y0:y1, x0:x1] = near.astype(bool)
    return mask


def _auto_levels(box: Box) -> int:
    """Enough levels that the coarsest band is ~16 px across the matte, between 1 and 6."""
    smallest = min(box.height, box.width)
    return int(np.clip(math.floor(math.log2(max(smallest, 2) / 16.0)) + 1, 1, 6))


#: Below this matte value the blend's change is scaled down linearly to 0 at the matte's edge,
#: so the coarse pyramid bands (wider than the matte) cannot leave a step where matte == 0 begins.
_EDGE_GUARD = 0.05


def _blend_region(box: Box, levels: int, shape: tuple[int, int]) -> Box:
    """The crop a blend of ``box`` works on: a margin of background keeps the pyramid's border
    handling away from the matte."""
    return box.grow(2**levels, shape)


def _blend_crop(
    bg_crop: np.ndarray, fg_crop: np.ndarray, matte_crop: np.ndarray, levels: int, core: np.ndarray | None = None
) -> np.ndarray:
    """Multi-band blend of two same-size crops (uint8 or uint16); result in their dtype, ==
    ``bg_crop`` where matte is 0.

    ``core`` (float32, 0..1, zero wherever the matte is below 1): where it is 1 the result is the
    foreground exactly. A pyramid's coarse bands take their weights from the matte blurred at their
    own scale, so without it the low frequencies of the background's mouth show through a mouth
    that sits near the matte's edge (a dark smudge of an open mouth under a closed one)."""
    if levels < 1:
        raise InvalidInputError(f"multiband_blend: levels must be >= 1, got {levels}")
    height, width = matte_crop.shape
    diff = cv2.subtract(fg_crop, bg_crop, dtype=cv2.CV_32F)
    weight = matte_crop.astype(np.float32, copy=False)

    # pyrDown/pyrUp need sizes divisible by 2**levels: pad by reflection, crop afterwards.
    step = 2**levels
    pad_y, pad_x = (-height) % step, (-width) % step
    if pad_y or pad_x:
        diff = cv2.copyMakeBorder(diff, 0, pad_y, 0, pad_x, cv2.BORDER_REFLECT_101)
        weight = cv2.copyMakeBorder(weight, 0, pad_y, 0, pad_x, cv2.BORDER_REFLECT_101)
        if core is not None:  # 0 on the padding: the blend there is cropped away
            core = cv2.copyMakeBorder(core, 0, pad_y, 0, pad_x, cv2.BORDER_CONSTANT, value=0)

    # Blending the Laplacian pyramids of fg and bg with the matte's Gaussian pyramid equals bg plus
    # the collapsed, matte-weighted Laplacian pyramid of (fg - bg): one pyramid instead of two.
    gaussians = [diff]
    weights = [weight]
    for _ in range(levels):
        gaussians.append(cv2.pyrDown(gaussians[-1]))
        weights.append(cv2.pyrDown(weights[-1]))
    # Every step below writes into one of four scratch buffers of the finest level's size (coarser
    # levels use their leading part): a fresh array per step costs more in page faults than the
    # arithmetic itself. The operations, and so the results, are those of the plain formula
    # delta = up(delta) + laplacian * weight, level by level, times the edge guard at the end.
    scratch = _Scratch(diff.size)
    delta = cv2.multiply(gaussians[-1], scratch.merged(weights[-1]), dst=scratch.next_delta(gaussians[-1].shape))
    for level in range(levels - 1, -1, -1):
        shape = gaussians[level].shape
        size = (shape[1], shape[0])
        band = cv2.pyrUp(gaussians[level + 1], dst=scratch.band(shape), dstsize=size)
        band = cv2.subtract(gaussians[level], band, dst=band)  # the Laplacian band
        band = cv2.multiply(band, scratch.merged(weights[level]), dst=band)
        up = cv2.pyrUp(delta, dst=scratch.next_delta(shape), dstsize=size)
        delta = cv2.add(up, band, dst=up)
    # The edge guard, folded into the finest weights.
    guard = np.minimum(weights[0] * np.float32(1.0 / _EDGE_GUARD), np.float32(1.0))
    delta = cv2.multiply(delta, scratch.merged(guard), dst=delta)
    if core is not None:
        missing = cv2.subtract(gaussians[0], delta, dst=scratch.band(delta.shape))
        missing = cv2.multiply(missing, scratch.merged(core), dst=missing)
        delta = cv2.add(delta, missing, dst=delta)
    blended = cv2.add(bg_crop, delta[:height, :width], dtype=_CV_DEPTH[bg_crop.dtype])  # rounds and saturates
    _restore_outside(blended, bg_crop, matte_crop)
    return blended


class _Scratch:
    """Float32 buffers for ``_blend_crop`` of ``size`` values each, handed out as arrays of the
    shape asked for over their leading part."""

    def __init__(self, size: int) -> None:
        self._band, self._merged = np.empty(size, np.float32), np.empty(size, np.float32)
        # Two for delta: pyrUp reads the coarser level's delta while it writes the finer one.
        self._deltas = [np.empty(size, np.float32), np.empty(size, np.float32)]

    @staticmethod
    def _view(buffer: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return buffer[: math.prod(shape)].reshape(shape)

    def band(self, shape: tuple[int, ...]) -> np.ndarray:
        return self._view(self._band, shape)

    def merged(self, weight: np.ndarray) -> np.ndarray:
        """``weight`` (H, W) repeated into three channels, to multiply an RGB image with."""
        return cv2.merge([weight] * 3, dst=self._view(self._merged, (*weight.shape, 3)))

    def next_delta(self, shape: tuple[int, ...]) -> np.ndarray:
        """The delta buffer not handed out last time."""
        self._deltas.reverse()
        return self._view(self._deltas[0], shape)


def _exact_core(matte: np.ndarray, ramp_px: float) -> np.ndarray:
    """0 where ``matte < 1``, rising linearly to 1 at ``ramp_px`` inside the region where it is 1."""
    full = (matte >= 1.0).view(np.uint8)
    distance = cv2.distanceTransform(full, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    distance *= np.float32(1.0 / max(ramp_px, 1.0))
    return np.minimum(distance, np.float32(1.0), out=distance)


def _restore_outside(out: np.ndarray, source: np.ndarray, matte: np.ndarray) -> None:
    """Copy ``source`` into ``out`` wherever ``matte == 0``: the bit-exactness guarantee."""
    cv2.copyTo(source, (matte == 0).view(np.uint8), out)


def _check_frames(background: np.ndarray, foreground: np.ndarray, matte: np.ndarray, what: str) -> None:
    if background.ndim != 3 or background.shape[2] != 3 or background.dtype not in _CV_DEPTH:
        raise InvalidInputError(
            f"{what}: background must be RGB uint8 or uint16 (H, W, 3), got {background.shape} {background.dtype}"
        )
    if foreground.shape != background.shape or foreground.dtype != background.dtype:
        raise InvalidInputError(
            f"{what}: foreground {foreground.shape} {foreground.dtype} does not match background"
            f" {background.shape} {background.dtype}"
        )
    if matte.shape != background.shape[:2]:
        raise InvalidInputError(f"{what}: matte {matte.shape} does not match frame {background.shape[:2]}")


def multiband_blend(
    background: np.ndarray, foreground: np.ndarray, matte: np.ndarray, levels: int | None = None
) -> np.ndarray:
    """Laplacian-pyramid blend of ``foreground`` over ``background`` with weights ``matte``.

    Works on the matte's bounding box plus a margin; everything else is the background untouched,
    and pixels where ``matte == 0`` are bit-identical to the background. Returns RGB in the
    background's dtype.
    """
    _check_frames(background, foreground, matte, "multiband_blend")
    out = background.copy()
    box = _support_box(matte)
    if box is not None:
        levels = _auto_levels(box) if levels is None else int(levels)
        rows, cols = _blend_region(box, levels, background.shape[:2]).slices
        out[rows, cols] = _blend_crop(background[rows, cols], foreground[rows, cols], matte[rows, cols], levels)
    return out


class TemporalDeflicker:
    """Light temporal smoothing of what the composite changed, in its low-frequency band.

    Per frame, the residual ``r = blur(composite - source)`` (stack blur, sigma ``low_sigma`` of the
    matte box's larger side) is what the patch did to the frame's shading. It is smoothed by an exponential moving
    average whose per-pixel weight ``strength * exp(-(|r - r_prev| / motion_scale)^2)`` falls to 0
    where the residual changes a lot (the mouth opening, real motion), so only small frame-to-frame
    jitter (colour-match and exposure flicker) is damped. The correction is applied times the matte,
    so pixels with ``matte == 0`` stay the source, and ``paste`` leaves the mouth itself out (the
    exact core), where a low-pass of the previous frame's mouth would show as a ghost. State is kept
    in frame coordinates, so a moving face is followed; call ``reset()`` at a cut or after a
    passed-through frame.
    """

    def __init__(self, strength: float = 0.6, motion_scale: float = 6.0, low_sigma: float = 0.03) -> None:
        if not 0.0 <= strength < 1.0:
            raise InvalidInputError(f"TemporalDeflicker: strength must be in [0, 1), got {strength}")
        self.strength = strength
        self.motion_scale = motion_scale  # in 8-bit code values
        self.low_sigma = low_sigma  # fraction of the matte box's larger side
        self._previous: tuple[np.ndarray, Box] | None = None

    def reset(self) -> None:
        self._previous = None

    def apply(self, composite: np.ndarray, source: np.ndarray, matte: np.ndarray) -> np.ndarray:
        """The deflickered composite (RGB, its dtype); equal to ``composite`` where ``matte == 0``.
        ``matte`` is float32 (as ``lower_face_matte`` makes it); another float type is converted."""
        _check_frames(source, composite, matte, "TemporalDeflicker")
        matte = matte.astype(np.float32, copy=False)
        box = _support_box(matte)
        if box is None:
            self.reset()
            return composite
        out = composite.copy()
        out[box.slices] = self._apply_in_box(composite[box.slices], source[box.slices], matte[box.slices], box)
        return out

    def _apply_in_box(
        self, current: np.ndarray, source: np.ndarray, weight: np.ndarray, box: Box, keep: np.ndarray | None = None
    ) -> np.ndarray:
        """The deflickered box: ``current`` and ``source`` are the composite's and the source's
        pixels on ``box`` (in frame coordinates, as the history is kept), ``weight`` the matte on
        it (float32). ``keep`` (0..1 on the box) is where only the correction's mean over the rest of
        the matte is applied (one exposure shift, which cannot move a shape)."""
        radius = _stack_blur_radius(self.low_sigma * max(box.height, box.width))
        # Four box-sized buffers, each reused once its content is spent: fresh arrays would cost
        # more in page faults than the arithmetic. ``spare`` holds the source difference, then the
        # history, its distance and the correction; ``residual`` later takes products and the
        # composite in float; ``towards_previous`` becomes ``smoothed`` (kept as the next frame's
        # history); ``merged`` repeats a one-channel weight into three for OpenCV's multiply (numpy's
        # broadcast over a last axis of 3 is several times slower). The float operations are those
        # of the plain formulas in the comments, in the same order: float32 products and sums round
        # the same in OpenCV as in numpy, and the difference of two integer images is exact.
        spare = cv2.subtract(current, source, dtype=cv2.CV_32F)
        residual = cv2.stackBlur(spare, (2 * radius + 1, 2 * radius + 1))
        merged = np.empty_like(residual)

        def repeated(weight_1: np.ndarray) -> np.ndarray:
            return cv2.merge([weight_1] * 3, dst=merged)

        previous = spare
        np.copyto(previous, residual)  # no history -> no change
        if self._previous is not None:
            old, old_box = self._previous
            y0, y1 = max(box.y0, old_box.y0), min(box.y1, old_box.y1)
            x0, x1 = max(box.x0, old_box.x0), min(box.x1, old_box.x1)
            if y0 < y1 and x0 < x1:
                previous[y0 - box.y0 : y1 - box.y0, x0 - box.x0 : x1 - box.x0] = old[
                    y0 - old_box.y0 : y1 - old_box.y0, x0 - old_box.x0 : x1 - old_box.x0
                ]
        towards_previous = previous - residual
        difference = np.abs(towards_previous, out=previous)
        # The channel mean as .mean(axis=2) computes it ((r + g) + b) / 3), without its slow reduction.
        change = np.add(difference[..., 0], difference[..., 1])
        change += difference[..., 2]
        change /= 3
        # alpha = strength * exp(-(change * scale)^2)
        change *= np.float32(1.0 / (self.motion_scale * _code_scale(current.dtype)))
        np.square(change, out=change)
        np.negative(change, out=change)
        alpha = np.multiply(self.strength, np.exp(change, out=change), out=change)
        # smoothed = residual + alpha * (previous - residual)
        step = cv2.multiply(repeated(alpha), towards_previous, dst=towards_previous)
        smoothed = cv2.add(residual, step, dst=step)
        self._previous = (smoothed, box)

        correction = cv2.subtract(smoothed, residual, dst=difference)
        if keep is not None and keep.any():
            outside_keep = np.float32(1.0) - keep
            around = weight * outside_keep
            total = float(around.sum())
            if total > 0:
                weighted = cv2.multiply(correction, repeated(around), dst=residual).reshape(-1, 3)
                # weighted.sum(axis=0): numpy adds the rows one after the other in float32, and so
                # does OpenCV's row reduction (the same sums), several times faster.
                shift = cv2.reduce(weighted, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32F)[0] / total
            else:
                shift = np.zeros(3)
            # correction = correction * (1 - keep) + shift * keep
            correction = cv2.multiply(correction, repeated(outside_keep), dst=correction)
            # A per-channel scalar: OpenCV takes it back to float32, exactly (it came from float32).
            shift_channels = tuple(float(value) for value in shift.astype(np.float32)) + (0.0,)
            correction = cv2.add(correction, cv2.multiply(repeated(keep), shift_channels, dst=residual), dst=correction)
        correction = cv2.multiply(correction, repeated(weight), dst=correction)
        current_float = residual
        np.copyto(current_float, current)
        result = cv2.add(current_float, correction, dtype=_CV_DEPTH[current.dtype])
        _restore_outside(result, current, weight)
        return result


def paste(
    frame: Image,
    patch: Image | None,
    landmarks68: np.ndarray | None,
    params: CompositeParams = CompositeParams(),
    deflicker: TemporalDeflicker | None = None,
) -> CompositeResult:
    """Composite ``patch`` (full-frame RGB, aligned to ``frame``, its dtype) into ``frame``'s lower face.

    Reads both only on the blend's region: lazy images (``media.LazyImage``) stay lazy, and the
    result is ``frame`` overlaid with that region (``media.overlaid``: a copy of an array).

    No patch, no landmarks (None or NaN) or a face off the frame -> the frame is passed through
    (returned as is, matte all zeros, ``passthrough_reason`` says why) and ``deflicker`` is reset.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype not in _CV_DEPTH:
        raise InvalidInputError(f"paste: frame must be RGB uint8 or uint16 (H, W, 3), got {frame.shape} {frame.dtype}")
    shape = frame.shape[:2]

    def passthrough(reason: str) -> CompositeResult:
        if deflicker is not None:
            deflicker.reset()
        return CompositeResult(frame, reason)

    if patch is None:
        return passthrough("no patch")
    if patch.shape != frame.shape or patch.dtype != frame.dtype:
        raise InvalidInputError(f"paste: patch {patch.shape} {patch.dtype} does not match frame {frame.shape} {frame.dtype}")
    if landmarks68 is None:
        return passthrough("no face landmarks")
    found = _matte_in_box(landmarks68, shape, params.matte)
    if found is None:
        return passthrough("face landmarks unusable or off-frame")
    box_matte, box = found

    levels = _auto_levels(box) if params.levels is None else params.levels
    region = _blend_region(box, levels, shape)
    rows, cols = region.slices
    matte_crop = np.zeros((region.height, region.width), np.float32)
    matte_crop[box.y0 - region.y0 : box.y1 - region.y0, box.x0 - region.x0 : box.x1 - region.x0] = box_matte
    frame_crop, patch_crop = frame[rows, cols], patch[rows, cols]
    if params.colour_match:
        lips = mouth_region(landmarks68, params.matte.lip_margin, region)
        patch_crop = match_colour(patch_crop, frame_crop, matte_crop, usable=~lips, max_luma_gain=params.max_luma_gain)

    core = _exact_core(matte_crop, params.matte.lip_cover * inter_ocular_distance(landmarks68))
    blended = _blend_crop(frame_crop, patch_crop, matte_crop, levels, core)
    if deflicker is not None:
        # Not on the mouth: smoothing its residual over time would lay the last frame's mouth
        # under this one's (a ghost); colour and exposure jitter is smoothed on the skin around it.
        inner = slice(box.y0 - region.y0, box.y1 - region.y0), slice(box.x0 - region.x0, box.x1 - region.x0)
        blended[inner] = deflicker._apply_in_box(blended[inner], frame_crop[inner], box_matte, box, core[inner])
    return CompositeResult(overlaid(frame, region.y0, region.x0, blended), matte_box=box, box_matte=box_matte)
