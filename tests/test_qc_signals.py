"""The per-frame qc signals: lip colour, expression, local sync, motion-compensated change and
shape-matched detail."""

from __future__ import annotations

import cv2
import numpy as np
from dubline.core.landmarks import face_template_68
from dubline.qc.lips import (
    Spread,
    circular_median_offset,
    lip_colour,
    lip_colour_summary,
    lip_part,
    lip_ring,
    mouth_expression,
)
from dubline.qc.metrics import QcReport
from dubline.qc.temporal import MotionResidualMeter, local_pac, matched_detail, motion_residual

FACE = face_template_68((100.0, 100.0), 150.0, mouth_open=0.08)


def _painted(lip_rgb: tuple[int, int, int], landmarks: np.ndarray = FACE) -> np.ndarray:
    image = np.full((200, 200, 3), (200, 160, 140), np.uint8)
    cv2.fillPoly(image, [np.round(landmarks[48:60]).astype(np.int32)], lip_rgb)
    cv2.fillPoly(image, [np.round(landmarks[60:68]).astype(np.int32)], (20, 10, 10))
    return image


def test_lip_ring_is_the_lips_without_the_mouth_opening() -> None:
    ring = lip_ring(FACE, (200, 200))
    image = _painted((180, 40, 60))
    assert ring.sum() > 100
    assert np.all(image[ring][:, 2] >= 10)  # no pixel of the dark opening
    assert np.mean(image[ring][:, 0] == 180) > 0.9


def test_lip_colour_reads_saturation_and_hue_and_wraps_red() -> None:
    saturation, hue = lip_colour(_painted((200, 40, 40)), FACE)
    assert abs(saturation - 0.8) < 0.05 and abs(hue) < 3
    paler, _ = lip_colour(_painted((200, 120, 120)), FACE)
    assert paler < saturation - 0.3
    # lips half slightly magenta (hue ~350) and half slightly orange (~10) average to ~0, not 180
    image = _painted((200, 40, 40))
    ring = lip_ring(FACE, image.shape[:2])
    left = ring & (np.arange(200)[None, :] < 100)
    image[left] = (200, 40, 67)
    image[ring & ~left] = (200, 67, 40)
    _, mixed = lip_colour(image, FACE)
    assert abs(mixed) < 3
    assert np.allclose(circular_median_offset(np.array([350.0, 10.0, 190.0]), 0.0), [-10.0, 10.0, -170.0])


def _two_lips(upper_rgb: tuple[int, int, int], lower_rgb: tuple[int, int, int]) -> np.ndarray:
    image = _painted(upper_rgb)
    image[lip_part(FACE, image.shape[:2], "lower")] = lower_rgb
    return image


def test_each_lip_is_read_apart() -> None:
    upper, lower = lip_part(FACE, (200, 200), "upper"), lip_part(FACE, (200, 200), "lower")
    assert upper.sum() > 50 and lower.sum() > 50
    assert (upper & lower).sum() < 0.1 * min(upper.sum(), lower.sum())  # they share only their edges
    assert (upper | lower).sum() >= 0.95 * lip_ring(FACE, (200, 200)).sum()
    image = _two_lips((190, 20, 50), (210, 120, 140))  # crimson upper lip, pale pink lower lip
    assert lip_colour(image, FACE, "upper")[0] > lip_colour(image, FACE, "lower")[0] + 0.3


def test_a_desaturated_lower_lip_is_caught_per_lip() -> None:
    """The speaker's lower lip always a little paler than her upper lip (as speaker_b's): patched
    frames whose lower lip lost more of its colour than that are outside her range on that lip,
    while the upper lip stays within."""
    rng = np.random.default_rng(3)
    count = 40
    measured = {part: np.full((2, count), np.nan) for part in ("upper", "lower")}  # source, patch
    hues = {part: np.full((2, count), np.nan) for part in ("upper", "lower")}
    for t in range(count):
        shade = rng.integers(-6, 7, 3)

        def lips(upper: tuple[int, int, int], lower: tuple[int, int, int]) -> np.ndarray:
            return _two_lips(tuple(int(v) for v in np.add(upper, shade)), tuple(int(v) for v in np.add(lower, shade)))

        own = lips((190, 30, 55), (205, 70, 95))
        patched = lips((190, 30, 55), (215, 125, 140))
        for part in measured:
            measured[part][0, t], hues[part][0, t] = lip_colour(own, FACE, part)
            measured[part][1, t], hues[part][1, t] = lip_colour(patched, FACE, part)
    every = np.ones(count, bool)
    summaries = {part: lip_colour_summary(measured[part][1], hues[part][1], measured[part][0], hues[part][0], every)
                 for part in measured}
    assert summaries["upper"] is not None and summaries["upper"]["within"]
    assert summaries["lower"] is not None and not summaries["lower"]["within"]
    assert summaries["lower"]["saturation"] < summaries["lower"]["saturation_low"]
    report = QcReport(frames=count, lip_colour_by_lip=summaries)
    assert any(problem.startswith("lower lip colour") for problem in report.failures())
    assert not any(problem.startswith("upper lip colour") for problem in report.failures())


def test_smile_widens_and_lifts_and_head_roll_does_not() -> None:
    width, lift = mouth_expression(FACE)
    smiling = FACE.copy()
    smiling[[48, 54]] += [[-8.0, -6.0], [8.0, -6.0]]  # corners out and up
    smile_width, smile_lift = mouth_expression(smiling)
    assert smile_width > width + 0.05 and smile_lift > lift + 0.03

    angle = np.radians(15)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    rolled = (FACE - 100.0) @ rotation.T + 100.0
    assert np.allclose(mouth_expression(rolled), (width, lift), atol=1e-9)
    assert np.isnan(mouth_expression(np.full((68, 2), np.nan))[0])


def test_spread_contains_and_standardises() -> None:
    spread = Spread.of(np.linspace(0.0, 1.0, 101))
    assert spread is not None and abs(spread.median - 0.5) < 1e-9
    assert spread.contains(0.5) and not spread.contains(0.99)
    assert abs(spread.standardised(spread.high) - 1.0) < 1e-9
    assert Spread.of(np.array([1.0, np.nan])) is None


def test_local_pac_finds_the_stretch_out_of_sync() -> None:
    rng = np.random.default_rng(3)
    openness = np.clip(np.sin(np.arange(200) / 3.0) + rng.normal(0, 0.1, 200), 0, None)
    aperture = openness * 0.3
    aperture[100:] = rng.uniform(0, 0.3, 100)  # the second half ignores the sound
    local = local_pac(aperture, openness, window=40)
    assert np.nanmin(local[20:80]) > 0.9
    assert np.nanmax(local[130:180]) < 0.6
    silent = openness.copy()
    silent[:60] = 0.0
    assert np.all(np.isnan(local_pac(aperture, silent, window=20)[:50]))
    # the lag convention is pac_sync's: the mouth moving 2 frames late is found at lag 2
    late = np.r_[np.zeros(2), aperture[:-2]]
    assert np.nanmean(local_pac(late, openness, 40, lag=2)[20:80]) > np.nanmean(local_pac(late, openness, 40)[20:80])


def _texture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(60, 200, (30, 40, 3)).astype(np.uint8)
    return cv2.resize(small, (160, 120), interpolation=cv2.INTER_CUBIC)


def test_motion_residual_explains_motion_but_not_a_jump() -> None:
    image = _texture()
    shifted = np.roll(image, 2, axis=1)
    region = np.zeros(image.shape[:2], bool)
    region[30:90, 40:120] = True
    plain = float(np.abs(shifted[region].astype(int) - image[region]).mean())
    assert motion_residual(image, shifted, region) < 0.3 * plain
    other = _texture(seed=5)
    assert motion_residual(image, other, region) > 0.5 * float(np.abs(other[region].astype(int) - image[region]).mean())

    meter = MotionResidualMeter()
    for frame, moving in zip([image, shifted, other], [image, shifted, np.roll(shifted, 2, axis=1)]):
        meter.add(frame, moving, region)
    assert np.isnan(meter.output[0]) and meter.ratio() > 1.5


def test_matched_detail_compares_like_with_like() -> None:
    reference_aperture = np.array([0.0, 0.0, 0.0, 0.3, 0.3, 0.3])
    reference_detail = np.array([100.0, 110.0, 90.0, 400.0, 380.0, 420.0])
    out = matched_detail(np.array([100.0, 400.0, np.nan]), np.array([0.01, 0.29, 0.1]),
                         reference_detail, reference_aperture, neighbours=3)
    assert np.allclose(out[:2], [1.0, 1.0]) and np.isnan(out[2])
