"""The compositor's fast paths against its plain formulas, bit for bit.

``composite`` writes its blend and deflicker into reused buffers, multiplies by one-channel weights
with OpenCV and sums with OpenCV's reduce, because fresh arrays and numpy's broadcasts cost more
than the arithmetic (issue 20). None of that may change a single output bit: here the plain
formulas (the module as it was before) run next to ``paste`` over a run of synthesised frames, a
moving face that opens its mouth under a flickering exposure, in uint8 and uint16.
benchmarks/composite_identity.py does the same on recorded real renders against git history.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from dubline.core.landmarks import face_template_68, inter_ocular_distance
from dubline.stages import composite
from dubline.stages.composite import CompositeParams, TemporalDeflicker, paste

HEIGHT, WIDTH = 288, 384


def plain_match_colour(patch, target, mask, usable, max_luma_gain):
    band = (mask > 0.02) & (mask < 0.98)
    band &= usable
    if np.count_nonzero(band) < 64:
        band = (mask > 0) & usable
    if np.count_nonzero(band) < 16:
        return patch.copy()
    to_ycc = composite._RGB_TO_YCC.T.astype(np.float32)
    patch_q = np.percentile(patch[band].astype(np.float32) @ to_ycc, (25, 50, 75), axis=0).astype(np.float64)
    target_q = np.percentile(target[band].astype(np.float32) @ to_ycc, (25, 50, 75), axis=0).astype(np.float64)
    gain = np.ones(3)
    patch_spread, target_spread = patch_q[2, 0] - patch_q[0, 0], target_q[2, 0] - target_q[0, 0]
    if patch_spread > 1e-3 and target_spread > 1e-3:
        gain[0] = np.clip(target_spread / patch_spread, 1.0 / max_luma_gain, max_luma_gain)
    linear = composite._YCC_TO_RGB @ np.diag(gain) @ composite._RGB_TO_YCC
    offset = composite._YCC_TO_RGB @ (target_q[1] - gain * patch_q[1])
    return cv2.transform(patch, np.hstack([linear, offset[:, None]]))


def plain_blend(bg, fg, matte, levels, core):
    height, width = matte.shape
    step = 2**levels
    pad_y, pad_x = (-height) % step, (-width) % step
    diff = cv2.copyMakeBorder(cv2.subtract(fg, bg, dtype=cv2.CV_32F), 0, pad_y, 0, pad_x, cv2.BORDER_REFLECT_101)
    weight = cv2.copyMakeBorder(matte, 0, pad_y, 0, pad_x, cv2.BORDER_REFLECT_101)
    gaussians, weights = [diff], [weight]
    for _ in range(levels):
        gaussians.append(cv2.pyrDown(gaussians[-1]))
        weights.append(cv2.pyrDown(weights[-1]))
    delta = cv2.multiply(gaussians[-1], cv2.merge([weights[-1]] * 3))
    for level in range(levels - 1, -1, -1):
        size = (gaussians[level].shape[1], gaussians[level].shape[0])
        laplacian = cv2.subtract(gaussians[level], cv2.pyrUp(gaussians[level + 1], dstsize=size))
        delta = cv2.add(cv2.pyrUp(delta, dstsize=size), cv2.multiply(laplacian, cv2.merge([weights[level]] * 3)))
    guard = np.minimum(weights[0] * np.float32(1.0 / composite._EDGE_GUARD), np.float32(1.0))
    delta = cv2.multiply(delta, cv2.merge([guard] * 3))[:height, :width]
    missing = cv2.subtract(gaussians[0][:height, :width], delta)
    delta = cv2.add(delta, cv2.multiply(missing, cv2.merge([core] * 3)))
    blended = cv2.add(bg, delta, dtype=composite._CV_DEPTH[bg.dtype])
    cv2.copyTo(bg, (matte == 0).view(np.uint8), blended)
    return blended


class PlainDeflicker:
    def __init__(self) -> None:
        self.strength, self.motion_scale, self.low_sigma = 0.6, 6.0, 0.03
        self.previous = None

    def apply_in_box(self, composite_frame, source, weight, box, keep):
        rows, cols = box.slices
        current = composite_frame[rows, cols]
        radius = composite._stack_blur_radius(self.low_sigma * max(box.height, box.width))
        residual = cv2.stackBlur(current.astype(np.float32) - source[rows, cols].astype(np.float32),
                                 (2 * radius + 1, 2 * radius + 1))
        previous = residual.copy()
        if self.previous is not None:
            old, old_box = self.previous
            y0, y1 = max(box.y0, old_box.y0), min(box.y1, old_box.y1)
            x0, x1 = max(box.x0, old_box.x0), min(box.x1, old_box.x1)
            if y0 < y1 and x0 < x1:
                previous[y0 - box.y0 : y1 - box.y0, x0 - box.x0 : x1 - box.x0] = old[
                    y0 - old_box.y0 : y1 - old_box.y0, x0 - old_box.x0 : x1 - old_box.x0]
        difference = np.abs(previous - residual)
        change = (difference[..., 0] + difference[..., 1] + difference[..., 2]) / 3
        scale = np.float32(1.0 / (self.motion_scale * composite._code_scale(composite_frame.dtype)))
        alpha = self.strength * np.exp(-np.square(change * scale))
        smoothed = residual + alpha[..., None] * (previous - residual)
        self.previous = (smoothed, box)
        correction = smoothed - residual
        if keep is not None and keep.any():
            around = weight * (np.float32(1.0) - keep)
            total = float(around.sum())
            shift = (correction * around[..., None]).reshape(-1, 3).sum(axis=0) / total if total > 0 else np.zeros(3)
            keep3 = keep[..., None]
            correction = correction * (np.float32(1.0) - keep3) + shift.astype(np.float32) * keep3
        result = cv2.add(current.astype(np.float32), correction * weight[..., None],
                         dtype=composite._CV_DEPTH[composite_frame.dtype])
        cv2.copyTo(current, (weight == 0).view(np.uint8), result)
        return result


def plain_paste(frame, patch, landmarks, deflicker: PlainDeflicker):
    params = CompositeParams()
    box_matte, box = composite._matte_in_box(landmarks, frame.shape[:2], params.matte)
    levels = composite._auto_levels(box)
    region = composite._blend_region(box, levels, frame.shape[:2])
    rows, cols = region.slices
    inner = slice(box.y0 - region.y0, box.y1 - region.y0), slice(box.x0 - region.x0, box.x1 - region.x0)
    matte_crop = np.zeros((region.height, region.width), np.float32)
    matte_crop[inner] = box_matte
    lips = composite.mouth_region(landmarks, params.matte.lip_margin, region)
    patch_crop = plain_match_colour(patch[rows, cols], frame[rows, cols], matte_crop, ~lips, params.max_luma_gain)
    core = composite._exact_core(matte_crop, params.matte.lip_cover * inter_ocular_distance(landmarks))
    out = frame.copy()
    out[rows, cols] = plain_blend(frame[rows, cols], patch_crop, matte_crop, levels, core)
    out[box.slices] = deflicker.apply_in_box(out, frame, box_matte, box, core[inner])
    return out, box_matte, box


def textured(seed: int, brightness: float, dtype: type) -> np.ndarray:
    """Skin-coloured shading and noise; uint16 frames use all 16 bits."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    shade = 15.0 * np.sin(x / 41.0) + 10.0 * np.cos(y / 29.0) + brightness
    image = np.array([190.0, 145.0, 125.0], np.float32) + shade[..., None] + rng.normal(0, 6, (HEIGHT, WIDTH, 3))
    scale = 1.0 if dtype == np.uint8 else 257.0
    return np.clip(image * scale, 0, 255 * scale).astype(dtype)


def frames_in_a_row(dtype: type, count: int = 6):
    """(frame, patch, landmarks): the face drifts, the mouth opens, the patch's exposure flickers."""
    for index in range(count):
        landmarks = face_template_68((WIDTH / 2 + 3 * index, HEIGHT / 2 - 2 * index), 190.0 + index,
                                     mouth_open=0.02 * index, roll_degrees=2.0 * index)
        frame = textured(index, 0.0, dtype)
        patch = textured(100 + index, 12.0 * (-1) ** index, dtype)
        dark = (70, 25, 30) if dtype == np.uint8 else (70 * 257, 25 * 257, 30 * 257)
        cv2.fillPoly(patch, [np.round(landmarks[60:68]).astype(np.int32)], dark)
        yield frame, patch, landmarks


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_paste_equals_its_plain_formulas_bit_for_bit_over_a_run_of_frames(dtype: type) -> None:
    deflicker, plain = TemporalDeflicker(), PlainDeflicker()
    for frame, patch, landmarks in frames_in_a_row(dtype):
        frame_before = frame.copy()
        result = paste(frame, patch, landmarks, CompositeParams(), deflicker)
        expected, box_matte, box = plain_paste(frame, patch, landmarks, plain)
        assert result.frame.dtype == dtype and np.array_equal(result.frame, expected)
        assert result.matte_box == box and np.array_equal(result.box_matte, box_matte)
        assert np.array_equal(frame, frame_before)  # the source frame is never written to
        assert not np.array_equal(result.frame, frame)  # something was composited
        # the deflicker's memory of this frame, which the next frame is blended towards
        assert np.array_equal(deflicker._previous[0], plain.previous[0])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_deflicker_apply_equals_its_plain_formulas(dtype: type) -> None:
    """``apply`` (no exact core to keep) on composites of a moving face."""
    deflicker, plain = TemporalDeflicker(), PlainDeflicker()
    for frame, patch, landmarks in frames_in_a_row(dtype):
        pasted = paste(frame, patch, landmarks)
        matte = pasted.matte
        box = composite._support_box(matte)
        expected = pasted.frame.copy()
        expected[box.slices] = plain.apply_in_box(pasted.frame, frame, matte[box.slices], box, None)
        assert np.array_equal(deflicker.apply(pasted.frame, frame, matte), expected)
        assert np.array_equal(deflicker._previous[0], plain.previous[0])
