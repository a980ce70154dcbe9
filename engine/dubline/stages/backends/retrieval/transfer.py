"""Transfer of a chosen library mouth onto a target frame.

1. Rigid: a similarity transform from the library face to the target face, fitted on the stable
   anchors (eye and nose landmarks, which do not move with speech).
2. Fine: a smooth landmark-driven warp of the lips and jaw that corrects the remaining difference
   between the library frame's mouth opening and the calibrated target opening. The correction is
   bounded: a real mouth image is only nudged, never stretched into one it is not (teeth and the
   inner mouth stay the library frame's own).

Only a region of interest around the lower face is warped, so the cost does not grow with the
frame size.

3. Detail: any resampling at sub-pixel offsets is a low-pass filter, so the aligned mouth comes out
   softer than the library frame it was taken from. An unsharp mask restores the mouth's
   high-frequency energy (variance of the Laplacian) to ``detail_target`` times the library
   frame's own level: a little above it, for what the composite's soft matte edge and the encode
   take back downstream.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dubline.core import landmarks as lm
from dubline.stages.faces.geometry import apply_affine as apply_transform
from dubline.stages.faces.geometry import similarity_transform

#: Landmarks that do not move with speech: eyes and nose.
ANCHORS = np.r_[np.arange(27, 36), np.arange(36, 48)]
#: Points the fine warp moves: lower lip (outer and inner) and the lower jaw.
_LOWER_LIP = np.array([55, 56, 57, 58, 59, 65, 66, 67])
_JAW_LOWER = np.arange(4, 13)
# The outer upper lip anchors the field; the inner upper lip is left free because on a nearly
# closed mouth it almost coincides with the moved inner lower lip, and an RBF pinned to zero and
# to a displacement at nearly one point is ill-conditioned (it smears the lip).
_UPPER_LIP = np.array([48, 49, 50, 51, 52, 53, 54])
_GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)  # Rec. 601 luma, as cv2's RGB2GRAY
_LOWER_FACE = np.r_[np.arange(2, 15), np.arange(31, 36), np.arange(48, 68)]


@dataclass(frozen=True)
class TransferParams:
    roi_margin: float = 0.45  # region of interest beyond the lower-face landmarks, in IOD
    max_opening_change: float = 0.08  # largest aperture correction, in IOD
    min_aperture_to_stretch: float = 0.03  # a sealed mouth has no inner mouth to show: never open it
    warp_sigma: float = 0.22  # reach of a moved landmark's influence, in IOD
    grid_step: int = 4  # the warp field is solved on a grid this many pixels apart
    detail_sigma: float = 1.0  # pixels: the band the unsharp mask restores
    max_detail_gain: float = 2.0  # a bound on the unsharp mask's amount
    #: the mouth detail the restore aims at, as a share of the library frame's own. Above 1 for
    #: what comes after: on speaker_b x dub_en_48k_stereo the written patch kept a median 0.95 of
    #: the chosen library mouths' detail (the blend where the matte is soft, the ProRes encode; the
    #: encode alone keeps 0.92-0.99 on untouched frames); 1.1 took that pair's sharpness ratio
    #: 0.86 -> 0.95 (a variance 10 % up is 5 % more amplitude, no visible halo)
    detail_target: float = 1.1
    #: frames each side of a cut between runs over which one mouth morphs into the other (0: cut).
    #: 4 (was 2): on the six shared pairs flicker 0.97-1.13 -> 0.95-1.09 with PAC equal or higher
    #: (speaker_b x dub_ja_24bit 0.70 -> 0.73); more frames morphed costs render time
    transition_frames: int = 4
    #: Gaussian sigma (output frames) the opening correction is smoothed with over time (0: each
    #: frame's own): the correction follows what selection left between the chosen mouths and the
    #: target, which jumps from frame to frame and moves the lower lip up and down with it
    opening_smoothing: float = 1.5
    #: in a transition, show the inside of the mouth (teeth, tongue, the dark) from one of the two
    #: mouths only, the nearer, instead of dissolving two insides into a smooth band
    #: (``transition.morph``'s ``interior``); and how far beyond the inner lips that reaches, in IOD
    interior_switch: bool = True
    interior_grow: float = 0.02


@dataclass(frozen=True)
class TransferResult:
    crop: np.ndarray  # (h, w, 3) uint8: the library lower face, aligned into the target's ROI
    roi: tuple[int, int, int, int]  # x0, y0, x1, y1 in the target frame
    landmarks: np.ndarray  # (68, 2) where the transferred face's landmarks lie in the target frame


def lower_face_roi(
    points: np.ndarray, frame_shape: tuple[int, ...], margin_px: float
) -> tuple[int, int, int, int]:
    """Bounding box of the lower face (jaw, nose base, lips) plus a margin, clipped to the frame."""
    lower = points[_LOWER_FACE]
    height, width = frame_shape[:2]
    x0, y0 = np.floor(lower.min(axis=0) - margin_px).astype(int)
    x1, y1 = np.ceil(lower.max(axis=0) + margin_px).astype(int)
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def open_mouth_to(points: np.ndarray, target_aperture: float, params: TransferParams) -> np.ndarray:
    """Landmarks with the lower lip and jaw moved so the inner-lip aperture approaches
    ``target_aperture`` (in IOD), within the bounded correction."""
    aperture = lm.inner_lip_aperture(points)
    iod = lm.inter_ocular_distance(points)
    if not np.isfinite(aperture) or not np.isfinite(target_aperture):
        return points.copy()
    change = float(np.clip(target_aperture - aperture, -params.max_opening_change, params.max_opening_change))
    if aperture < params.min_aperture_to_stretch:
        change = 0.0  # sealed lips: nothing inside to show, and nothing to close
    change = max(change, -aperture)  # never push the lower lip through the upper one
    # "Down" is the face's own vertical: perpendicular to the eye line.
    left, right = lm.eye_centres(points)
    across = (right - left) / max(np.hypot(*(right - left)), 1e-6)
    down = np.array([-across[1], across[0]])
    moved = points.copy()
    moved[_LOWER_LIP] += down * change * iod
    # The jaw follows the lip, less at the sides where it hinges.
    hinge = np.cos(np.linspace(-np.pi / 2, np.pi / 2, len(_JAW_LOWER))) * 0.8
    moved[_JAW_LOWER] += down * change * iod * hinge[:, None]
    return moved


def _rbf(xs: np.ndarray, ys: np.ndarray, controls: np.ndarray, sigma: float) -> np.ndarray:
    """exp(-(|p - c| / sigma)^2) for the points of the grid ``ys`` x ``xs`` (row-major) x controls,
    float64 (G, C).

    The same operations as ``np.linalg.norm`` over the (G, C, 2) differences, in place on (G, C)
    arrays: the same numbers at a fraction of the cost (the warp's largest cost before). The squared
    differences are taken per grid column and row and only added on the whole grid (the same
    numbers: the grid is regular).
    """
    dx = xs[:, None] - controls[None, :, 0]
    dy = ys[:, None] - controls[None, :, 1]
    np.multiply(dx, dx, out=dx)
    np.multiply(dy, dy, out=dy)
    distance = np.add(dx[None, :, :], dy[:, None, :]).reshape(len(ys) * len(xs), len(controls))
    np.sqrt(distance, out=distance)
    np.divide(distance, sigma, out=distance)
    np.square(distance, out=distance)
    np.negative(distance, out=distance)
    return np.exp(distance, out=distance)


def _warp_field(
    shape: tuple[int, int], moved_from: np.ndarray, moved_to: np.ndarray, fixed: np.ndarray, sigma: float, step: int
) -> tuple[np.ndarray, np.ndarray]:
    """Backward maps for cv2.remap: Gaussian-RBF interpolation of the landmark displacements,
    exact at the moved points and zero at the fixed ones, solved on a coarse grid."""
    controls = np.vstack([moved_to, fixed])
    displacement = np.vstack([moved_from - moved_to, np.zeros_like(fixed)])
    distances = np.linalg.norm(controls[:, None] - controls[None, :], axis=2)
    kernel = np.exp(-((distances / sigma) ** 2)) + 1e-3 * np.eye(len(controls))
    weights = np.linalg.solve(kernel, displacement)
    height, width = shape
    ys, xs = np.arange(0, height, step, dtype=np.float64), np.arange(0, width, step, dtype=np.float64)
    field = _rbf(xs, ys, controls, sigma) @ weights
    # Never move a pixel further than the largest landmark displacement.
    limit = max(float(np.abs(displacement).max()), 1e-6)
    field = np.clip(field, -limit, limit).reshape(len(ys), len(xs), 2).astype(np.float32)
    field = cv2.resize(field, (width, height), interpolation=cv2.INTER_LINEAR)
    # Pixel coordinates plus the field (coordinates broadcast rather than built as two full grids).
    return (np.arange(width, dtype=np.float32)[None, :] + field[..., 0],
            np.arange(height, dtype=np.float32)[:, None] + field[..., 1])


def transferred_landmarks(
    library_points: np.ndarray, target_points: np.ndarray, target_aperture: float, params: TransferParams = TransferParams()
) -> np.ndarray:
    """Where ``transfer_mouth`` puts the library face's landmarks in the target frame (no pixels)."""
    matrix = similarity_transform(library_points[ANCHORS], target_points[ANCHORS])
    return open_mouth_to(apply_transform(matrix, library_points), target_aperture, params)


def transfer_mouth(
    library_image: np.ndarray,
    library_points: np.ndarray,
    target_shape: tuple[int, ...],
    target_points: np.ndarray,
    target_aperture: float,
    params: TransferParams = TransferParams(),
) -> TransferResult:
    """Align the library frame's lower face onto the target face and correct its opening."""
    matrix = similarity_transform(library_points[ANCHORS], target_points[ANCHORS])
    aligned = apply_transform(matrix, library_points)
    iod = lm.inter_ocular_distance(target_points)
    roi = lower_face_roi(np.vstack([aligned, target_points]), target_shape, params.roi_margin * iod)
    x0, y0, x1, y1 = roi
    shift = np.array([x0, y0], dtype=np.float64)
    to_roi = matrix.copy()
    to_roi[:, 2] -= shift
    size = (x1 - x0, y1 - y0)
    opened = open_mouth_to(aligned, target_aperture, params)
    moving = np.r_[_LOWER_LIP, _JAW_LOWER]
    if np.abs(opened[moving] - aligned[moving]).max() <= 0.25:
        crop = cv2.warpAffine(library_image, to_roi, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        crop = restore_detail(crop, opened - shift, library_image, library_points, iod, params)
        return TransferResult(crop=crop, roi=roi, landmarks=opened)
    # Everything that does not move anchors the field: upper lip, nose, eyes, ROI border.
    w, h = size
    border = np.array(
        [[x, y] for x in np.linspace(0, w - 1, 6) for y in (0, h - 1)]
        + [[x, y] for y in np.linspace(0, h - 1, 6)[1:-1] for x in (0, w - 1)]
    )
    fixed = np.vstack([aligned[np.r_[_UPPER_LIP, ANCHORS]] - shift, border])
    map_x, map_y = _warp_field(
        (h, w), aligned[moving] - shift, opened[moving] - shift, fixed, params.warp_sigma * iod, params.grid_step
    )
    # Compose the fine warp with the inverse of the rigid one: a single (bicubic) resampling of
    # the library image keeps the mouth as sharp as the footage.
    inverse = cv2.invertAffineTransform(to_roi)
    source_x = inverse[0, 0] * map_x + inverse[0, 1] * map_y + inverse[0, 2]
    source_y = inverse[1, 0] * map_x + inverse[1, 1] * map_y + inverse[1, 2]
    crop = cv2.remap(
        library_image, source_x.astype(np.float32), source_y.astype(np.float32), cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )
    crop = restore_detail(crop, opened - shift, library_image, library_points, iod, params)
    return TransferResult(crop=crop, roi=roi, landmarks=opened)


def _mouth_laplacian(image: np.ndarray, points: np.ndarray, margin: float) -> np.ndarray | None:
    """The Laplacian (grey, float) at the pixels of the outer-lip polygon grown by ``margin`` px
    (the region ``qc``'s sharpness compares), 1-D; None when the region is degenerate."""
    region = _mouth_region(image.shape, points, margin)
    return None if region is None else _laplacian_in(image, region)


def _mouth_region(shape: tuple[int, ...], points: np.ndarray,
                  margin: float) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """(box, bool mask on the box) of the outer-lip polygon grown by ``margin`` px in an image of
    ``shape``; None when it is degenerate. Computed once where two images share it (the dilation
    is the costly part)."""
    mouth = points[lm.OUTER_LIP]
    x0, y0 = np.floor(mouth.min(axis=0) - margin - 1).astype(int)
    x1, y1 = np.ceil(mouth.max(axis=0) + margin + 1).astype(int) + 1
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, shape[1]), min(y1, shape[0])
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    region = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(region, [np.round((mouth - (x0, y0)) * 16).astype(np.int32)], 1, shift=4)
    grow = int(round(margin))
    if grow > 0:
        region = cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    if np.count_nonzero(region) < 9:
        return None
    return (slice(y0, y1), slice(x0, x1)), region.astype(bool)


def _laplacian_in(image: np.ndarray, region: tuple[tuple[slice, slice], np.ndarray]) -> np.ndarray:
    """The Laplacian (grey, float) of ``image`` at the pixels of ``region`` (``_mouth_region``), 1-D."""
    (rows, cols), mask = region
    grey = image[rows, cols].astype(np.float32) @ _GREY_WEIGHTS
    return cv2.Laplacian(grey, cv2.CV_32F, ksize=3)[mask]


def restore_detail(
    crop: np.ndarray,
    crop_points: np.ndarray,
    library_image: np.ndarray,
    library_points: np.ndarray,
    iod: float,
    params: TransferParams = TransferParams(),
) -> np.ndarray:
    """Unsharp-mask ``crop`` so its mouth's Laplacian variance reaches ``detail_target`` x the library mouth's.

    The Laplacian is linear, so for ``out = crop + k * (crop - blur(crop))`` the variance is a
    quadratic in ``k``; its root gives the amount exactly, bounded by ``max_detail_gain``.
    """
    reference = mouth_detail(library_image, library_points, iod)
    if reference is None:
        return crop
    return sharpen_to(crop, crop_points, reference * params.detail_target, iod, params)


def mouth_detail(image: np.ndarray, points: np.ndarray, iod: float) -> float | None:
    """Variance of the Laplacian (grey) over the mouth and the skin just around it: its fine
    detail (None: no mouth)."""
    laplacian = _mouth_laplacian(image, points, 0.15 * iod)
    return None if laplacian is None else float(laplacian.var())


def sharpen_to(
    crop: np.ndarray, crop_points: np.ndarray, wanted: float, iod: float, params: TransferParams = TransferParams()
) -> np.ndarray:
    """``crop`` unsharp-masked so its mouth's detail (``mouth_detail``) reaches ``wanted``, never
    above it, within ``max_detail_gain``."""
    region = _mouth_region(crop.shape, crop_points, 0.15 * iod)
    if region is None:
        return crop
    current = _laplacian_in(crop, region)
    blurred = cv2.GaussianBlur(crop, (0, 0), params.detail_sigma)
    detail = crop.astype(np.float32) - blurred.astype(np.float32)
    detail_laplacian = _laplacian_in(detail, region)
    a, b = current.ravel().astype(np.float64), detail_laplacian.ravel().astype(np.float64)
    var_a, var_b = a.var(), b.var()
    covariance = float(np.mean((a - a.mean()) * (b - b.mean())))
    if var_a >= wanted or var_b <= 0:
        return crop
    discriminant = covariance**2 - var_b * (var_a - wanted)
    gain = float(np.clip((-covariance + np.sqrt(discriminant)) / var_b, 0.0, params.max_detail_gain))
    # Exact before rounding to 8 bits. On soft footage much of the added detail is under half a
    # code value and rounding takes some back; searching the gain on the rounded result does not
    # help: the detail measure then jumps with the gain (0.43 -> 58, 0.54 -> 100 against a wanted
    # 71 on a 1080p-scaled speaker_a mouth) as increments cross half a code value, i.e. it is
    # measuring quantisation noise there.
    sharpened = cv2.addWeighted(crop, 1.0 + gain, blurred, -gain, 0.0)
    return sharpened
