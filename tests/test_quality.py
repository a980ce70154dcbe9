from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from dubline.core.errors import InvalidInputError
from dubline.core.landmarks import face_template_68
from dubline.qc.metrics import (
    QcReport,
    flicker_ratio,
    identity_distance,
    matte_edge_band,
    mouth_mask,
    outside_matte_exact,
    pac_sync,
    psnr_outside,
    seam_score,
    sharpness_ratio,
)

RNG = np.random.default_rng(7)


def textured(height: int = 160, width: int = 200, base: float = 140.0, noise: float = 12.0) -> np.ndarray:
    """A skin-like frame: a smooth gradient plus fixed noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = base + 20.0 * np.sin(x / 37.0) + 10.0 * np.cos(y / 23.0)
    image = image[..., None] + RNG.normal(0, noise, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def disc_matte(height: int, width: int, radius: float, feather_sigma: float) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    hard = ((y - height / 2) ** 2 + (x - width / 2) ** 2 <= radius**2).astype(np.float32)
    if feather_sigma == 0:
        return hard
    soft = cv2.GaussianBlur(hard, (0, 0), feather_sigma)
    soft[soft < 1e-3] = 0
    return soft


# --- PAC sync -------------------------------------------------------------------------------------


def test_pac_sync_finds_known_lag_and_sign() -> None:
    openness = RNG.random(120)
    mouth_late = np.roll(openness, 2)  # mouth moves 2 frames after the sound
    mouth_late[:2] = np.nan
    r, lag = pac_sync(mouth_late, openness, max_lag=2)
    assert r == pytest.approx(1.0, abs=1e-9)
    assert lag == 2

    mouth_early = np.roll(openness, -1)
    mouth_early[-1:] = np.nan
    r, lag = pac_sync(mouth_early, openness, max_lag=2)
    assert r == pytest.approx(1.0, abs=1e-9) and lag == -1


def test_pac_sync_anticorrelated_and_out_of_window() -> None:
    openness = 0.5 + 0.5 * np.sin(np.arange(100) / 6.0)  # smooth: neighbouring lags stay anticorrelated
    assert pac_sync(1.0 - openness, openness, max_lag=0) == (pytest.approx(-1.0), 0)
    r, lag = pac_sync(1.0 - openness, openness)
    assert -1.0 < r < -0.9  # the best lag is only a little less bad
    assert abs(lag) == 2

    openness = RNG.random(100)

    far = np.roll(openness, 5)
    r_far, _ = pac_sync(far, openness, max_lag=2)
    assert r_far < 0.5  # a 5-frame lag is outside the +-2 window


def test_pac_sync_ignores_nan_frames_and_validates() -> None:
    openness = np.linspace(0, 1, 50) ** 2
    aperture = openness * 0.3 + 0.01
    aperture[[3, 10, 11, 40]] = np.nan
    r, lag = pac_sync(aperture, openness)
    assert r == pytest.approx(1.0) and lag == 0
    assert np.isnan(pac_sync(np.full(10, np.nan), np.ones(10))[0])
    assert np.isnan(pac_sync(np.ones(10), np.ones(10))[0])  # no variation, no correlation
    with pytest.raises(InvalidInputError, match="frames"):
        pac_sync(np.ones(10), np.ones(11))


# --- identity -------------------------------------------------------------------------------------


def test_identity_distance_mean_over_frames_in_both() -> None:
    source = RNG.normal(size=(4, 128))
    output = source.copy()
    output[0, 0] += 0.3  # distance 0.3
    output[1, 5] -= 0.1  # distance 0.1
    output[2] = np.nan  # no face in the output: skipped
    source[3] = np.nan  # no face in the source: skipped
    assert identity_distance(output, source) == pytest.approx(0.2)
    assert np.isnan(identity_distance(np.full((2, 128), np.nan), np.zeros((2, 128))))
    with pytest.raises(InvalidInputError):
        identity_distance(np.zeros((3, 128)), np.zeros((2, 128)))


# --- untouched outside the matte ------------------------------------------------------------------


def test_outside_exactness_and_psnr() -> None:
    src = textured()
    matte = disc_matte(*src.shape[:2], radius=40, feather_sigma=4)
    out = src.copy()
    assert outside_matte_exact(out, src, matte) == (True, 0)
    assert psnr_outside(out, src, matte) == float("inf")

    out[matte > 0] = 0  # change only inside: still exact outside
    assert outside_matte_exact(out, src, matte) == (True, 0)

    outside = np.argwhere(matte == 0)
    for y, x in outside[:5]:
        out[y, x, 1] ^= 1  # one code value in one channel of five outside pixels
    exact, n_diff = outside_matte_exact(out, src, matte)
    assert not exact and n_diff == 5
    psnr = psnr_outside(out, src, matte)
    expected = 10 * np.log10(255**2 / (5 / (outside.shape[0] * 3)))
    assert psnr == pytest.approx(expected)
    assert psnr > 60

    # an 8-bit matte decoded from a clip works the same way
    matte8 = (matte * 255).round().astype(np.uint8)
    matte8[(matte > 0) & (matte8 == 0)] = 1
    assert outside_matte_exact(out, src, matte8)[1] == 5


# --- seam -----------------------------------------------------------------------------------------


def test_seam_hard_step_scores_worse_than_feathered_blend() -> None:
    src = textured()
    hard = disc_matte(*src.shape[:2], radius=45, feather_sigma=0)
    soft = disc_matte(*src.shape[:2], radius=45, feather_sigma=6)
    assert seam_score(src, src, soft) == 0.0

    def scores(foreground: np.ndarray) -> tuple[float, float]:
        hard_paste = np.where(hard[..., None] > 0, foreground, src)
        feathered = (soft[..., None] * foreground + (1 - soft[..., None]) * src).round().astype(np.uint8)
        return seam_score(hard_paste, src, hard), seam_score(feathered, src, soft)

    # the same skin, 35 code values brighter (an exposure mismatch): the step is the only difference
    hard_score, soft_score = scores(np.clip(src.astype(np.int16) + 35, 0, 255).astype(np.uint8))
    assert soft_score < 0.5 < hard_score
    assert hard_score > 4 * soft_score
    # a different texture as well: the feather still hides most of the edge
    hard_score, soft_score = scores(textured(base=175.0))
    assert hard_score > 1.5 * soft_score


def test_edge_band_covers_transition_and_both_sides_of_a_hard_edge() -> None:
    hard = disc_matte(100, 100, radius=30, feather_sigma=0)
    band = matte_edge_band(hard, band_px=3)
    assert band[50, 50 + 30] and band[50, 50 + 32] and band[50, 50 + 28]
    assert not band[50, 50] and not band[0, 0]


# --- flicker and sharpness ------------------------------------------------------------------------


def test_flicker_ratio_rises_with_noise() -> None:
    frames = [textured() for _ in range(2)] * 4  # the source alternates between two frames
    masks = [disc_matte(*frames[0].shape[:2], radius=40, feather_sigma=0) > 0] * len(frames)
    assert flicker_ratio(frames, frames, masks) == pytest.approx(1.0)

    noisy = [np.clip(f.astype(np.int16) + RNG.integers(-15, 16, f.shape), 0, 255).astype(np.uint8) for f in frames]
    assert flicker_ratio(noisy, frames, masks) > 1.1

    steady = [frames[0]] * len(frames)
    assert flicker_ratio(steady, steady, masks) == pytest.approx(1.0)  # 0 / 0: as steady as the source
    assert flicker_ratio(frames, steady, masks) == float("inf")
    assert np.isnan(flicker_ratio(frames[:1], frames[:1], masks[:1]))


def test_sharpness_ratio_drops_with_blur() -> None:
    src = textured(noise=20.0)
    mask = disc_matte(*src.shape[:2], radius=40, feather_sigma=0) > 0
    assert sharpness_ratio(src, src, mask) == pytest.approx(1.0)
    blurred = cv2.GaussianBlur(src, (0, 0), 1.5)
    assert sharpness_ratio(blurred, src, mask) < 0.5
    assert np.isnan(sharpness_ratio(src, src, np.zeros_like(mask)))


def test_mouth_mask_covers_lips_only() -> None:
    landmarks = face_template_68((100, 100), 120, mouth_open=0.05)
    mask = mouth_mask(landmarks, (200, 200))
    mouth_centre = landmarks[[62, 66]].mean(axis=0).round().astype(int)
    assert mask[mouth_centre[1], mouth_centre[0]]
    eye = landmarks[36:42].mean(axis=0).round().astype(int)
    assert not mask[eye[1], eye[0]]
    assert not mouth_mask(None, (200, 200)).any()
    assert not mouth_mask(np.full((68, 2), np.nan), (200, 200)).any()


# --- report ---------------------------------------------------------------------------------------


def test_report_to_dict_is_json_ready_and_failures_name_the_number() -> None:
    report = QcReport(
        frames=25, expected_frames=25, start_timecode="00:00:01:00", expected_start_timecode="00:00:01:00",
        pac_sync=0.62, pac_lag=1, identity_distance=0.12, outside_exact=True, outside_diff_pixels=0,
        psnr_outside_db=float("inf"), seam=0.1, flicker_ratio=0.9, sharpness_ratio=float("nan"),
    )
    data = report.to_dict()
    assert data["psnr_outside_db"] == "inf" and data["sharpness_ratio"] is None
    assert data["frame_count_ok"] is True and data["timecode_ok"] is True
    json.loads(json.dumps(data, allow_nan=False))
    assert report.failures() == []

    bad = QcReport(frames=24, expected_frames=25, pac_sync=0.2, outside_exact=False, outside_diff_pixels=12)
    problems = bad.failures()
    assert any("frame count 24" in p for p in problems)
    assert any("PAC sync 0.200" in p for p in problems)
    assert any("12 pixels outside" in p for p in problems)
