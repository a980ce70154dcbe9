"""Transfer of a library mouth: rigid alignment on eyes/nose and a bounded opening correction."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from dubline.core import landmarks as lm
from dubline.stages.backends.retrieval.transfer import (
    TransferParams,
    apply_transform,
    open_mouth_to,
    similarity_transform,
    transfer_mouth,
)


def _face_image(points: np.ndarray, shape=(240, 240), textured: bool = False) -> np.ndarray:
    """A textured frame with the face drawn from its landmarks (skin, eyes, dark inner mouth)."""
    rng = np.random.default_rng(0)
    image = (rng.integers(0, 40, shape + (3,)) + 80).astype(np.uint8)
    cv2.fillPoly(image, [points[0:17].astype(np.int32)], (200, 160, 140))
    for eye in (lm.LEFT_EYE, lm.RIGHT_EYE):
        cv2.fillPoly(image, [points[eye].astype(np.int32)], (30, 30, 30))
    cv2.fillPoly(image, [points[48:60].astype(np.int32)], (170, 60, 60))
    cv2.fillPoly(image, [points[60:68].astype(np.int32)], (20, 10, 10))
    if not textured:
        return image
    # Skin and lips have fine texture too (pores, lip lines), which resampling is first to lose.
    texture = rng.integers(-15, 16, shape + (1,))
    return np.clip(image.astype(np.int16) + texture, 0, 255).astype(np.uint8)


def test_similarity_transform_recovers_a_known_transform() -> None:
    points = lm.face_template_68((100, 100), 80)
    moved = lm.face_template_68((130, 90), 96, roll_degrees=8)
    matrix = similarity_transform(points, moved)
    assert np.abs(apply_transform(matrix, points) - moved).max() < 1e-6


def test_aligned_crop_lands_on_the_target_face() -> None:
    library_points = lm.face_template_68((110, 120), 100, mouth_open=0.06, roll_degrees=-6)
    target_points = lm.face_template_68((130, 125), 120, mouth_open=0.06, roll_degrees=4)
    library = _face_image(library_points)
    target = _face_image(target_points)
    aperture = lm.inner_lip_aperture(target_points)
    result = transfer_mouth(library, library_points, target.shape, target_points, aperture)
    x0, y0, x1, y1 = result.roi
    # The dark inner mouth of the library lands where the target's inner mouth is.
    inner = np.zeros(target.shape[:2], np.uint8)
    cv2.fillPoly(inner, [target_points[60:68].astype(np.int32)], 1)
    inner = cv2.erode(inner, np.ones((3, 3), np.uint8))[y0:y1, x0:x1].astype(bool)
    assert inner.sum() > 30
    assert result.crop[inner].mean() < 40
    assert np.abs(result.landmarks - target_points).max() < 1.0


def test_opening_is_corrected_within_bounds() -> None:
    points = lm.face_template_68((120, 120), 120, mouth_open=0.04)
    aperture = lm.inner_lip_aperture(points)
    params = TransferParams(max_opening_change=0.08)
    wider = open_mouth_to(points, aperture + 0.05, params)
    assert abs(lm.inner_lip_aperture(wider) - (aperture + 0.05)) < 0.01
    capped = open_mouth_to(points, aperture + 0.5, params)
    assert abs(lm.inner_lip_aperture(capped) - (aperture + 0.08)) < 0.01
    closed = open_mouth_to(points, 0.0, params)
    assert lm.inner_lip_aperture(closed) < aperture
    sealed = lm.face_template_68((120, 120), 120, mouth_open=0.0)
    assert np.array_equal(open_mouth_to(sealed, 0.2, params), sealed)  # nothing inside to show


def test_warp_moves_the_lower_lip_and_keeps_the_eyes() -> None:
    points = lm.face_template_68((120, 120), 120, mouth_open=0.04)
    image = _face_image(points)
    aperture = lm.inner_lip_aperture(points)
    # Without detail restoration, which sharpens the whole crop by the amount the warp blurred.
    plain = TransferParams(max_detail_gain=0.0)
    same = transfer_mouth(image, points, image.shape, points, aperture, plain)
    opened = transfer_mouth(image, points, image.shape, points, aperture + 0.06, plain)
    dark_same = (same.crop.mean(axis=2) < 40).sum()
    dark_opened = (opened.crop.mean(axis=2) < 40).sum()
    assert dark_opened > dark_same * 1.2  # more inner mouth shows
    x0, y0, _, _ = same.roi
    upper = int(points[51, 1]) - y0 - 6
    assert np.array_equal(same.crop[:upper], opened.crop[:upper])  # above the mouth: untouched


def _mouth_detail(image: np.ndarray, points: np.ndarray) -> float:
    mouth = points[lm.OUTER_LIP]
    x0, y0 = np.floor(mouth.min(axis=0) - 5).astype(int)
    x1, y1 = np.ceil(mouth.max(axis=0) + 5).astype(int)
    grey = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.Laplacian(grey, cv2.CV_32F, ksize=3).var())


@pytest.mark.parametrize("frame, face", [((240, 240), 100.0), ((1080, 1920), 620.0)], ids=["small", "1080p"])
def test_half_pixel_alignment_keeps_the_library_mouths_detail(frame, face) -> None:
    # A half-pixel shift is bicubic resampling's worst case: it halves the finest detail.
    library_points = lm.face_template_68((frame[1] / 2, frame[0] / 2), face, mouth_open=0.05)
    target_points = library_points + 0.5
    library = _face_image(library_points, frame, textured=True)
    library_detail = _mouth_detail(library, library_points)

    plain = transfer_mouth(library, library_points, library.shape, target_points, 0.05,
                           TransferParams(max_detail_gain=0.0))
    restored = transfer_mouth(library, library_points, library.shape, target_points, 0.05)

    def detail(result) -> float:
        frame = library.copy()
        x0, y0, x1, y1 = result.roi
        frame[y0:y1, x0:x1] = result.crop
        return _mouth_detail(frame, result.landmarks)

    assert detail(plain) < 0.8 * library_detail
    # At least the library's own detail, at most what the restore aims at (a little above it).
    wanted = TransferParams().detail_target * library_detail
    assert 0.9 * library_detail < detail(restored) < 1.1 * wanted


def test_opening_correction_is_steadied_over_time_and_stays_bounded() -> None:
    from dubline.stages.backends.retrieval.backend import steady_opening
    from dubline.stages.backends.retrieval.select import KEEP_OWN

    library_aperture = np.array([0.10, 0.20, 0.30, 0.40])
    # The chosen mouths miss the target by a different amount on every frame: the correction
    # would move the lower lip up and down from frame to frame.
    selection = np.array([0, 1, 2, 3, 0, 1, KEEP_OWN, 2, 3, 0])
    target = np.array([0.16, 0.18, 0.36, 0.38, 0.20, 0.19, 0.05, 0.33, 0.45, 0.10])
    own = np.where(selection >= 0, library_aperture[np.maximum(selection, 0)], np.nan)
    params = TransferParams(max_opening_change=0.08, opening_smoothing=1.5)
    off = TransferParams(opening_smoothing=0.0)
    assert np.array_equal(steady_opening(target, library_aperture, selection, off), target)
    steady = steady_opening(target, library_aperture, selection, params)
    shown = selection >= 0
    raw_change = np.clip(target - own, -0.08, 0.08)[shown]
    steady_change = (steady - own)[shown]
    assert np.all(np.abs(steady_change) <= 0.08 + 1e-9)
    assert np.abs(np.diff(steady_change)).sum() < 0.5 * np.abs(np.diff(raw_change)).sum()
    assert np.sign(steady_change.mean()) == np.sign(raw_change.mean())
    assert steady[6] == target[6]  # the frame's own mouth takes no correction
