from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
from dubline.core.errors import InvalidInputError
from dubline.core.landmarks import face_template_68, inter_ocular_distance
from dubline.qc.metrics import outside_matte_exact, seam_score
from dubline.stages.composite import (
    CompositeParams,
    MatteParams,
    TemporalDeflicker,
    lower_face_matte,
    match_colour,
    multiband_blend,
    paste,
)

HEIGHT, WIDTH = 240, 320


def skin_frame(brightness: float = 0.0, seed: int = 1) -> np.ndarray:
    """A textured, skin-coloured frame with shading, so blends and seams have something to show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    shade = 15.0 * np.sin(x / 41.0) + 10.0 * np.cos(y / 29.0) + brightness
    colour = np.array([190.0, 145.0, 125.0], np.float32)
    image = colour + shade[..., None] + rng.normal(0, 5, (HEIGHT, WIDTH, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def with_mouth(frame: np.ndarray, landmarks: np.ndarray, colour: tuple[int, int, int] = (70, 25, 30)) -> np.ndarray:
    """Paint a dark open mouth (inner lip polygon) on a copy of ``frame``."""
    out = frame.copy()
    cv2.fillPoly(out, [np.round(landmarks[60:68]).astype(np.int32)], colour)
    return out


LANDMARKS = face_template_68((WIDTH / 2, HEIGHT / 2), 150.0, mouth_open=0.06)


def test_matte_covers_lower_face_only_and_is_exactly_zero_outside() -> None:
    matte = lower_face_matte(LANDMARKS, (HEIGHT, WIDTH))
    assert matte.dtype == np.float32 and matte.shape == (HEIGHT, WIDTH)
    assert matte.min() == 0.0 and matte.max() == 1.0

    def at(point: np.ndarray) -> float:
        return float(matte[int(round(point[1])), int(round(point[0]))])

    assert at(LANDMARKS[66]) == 1.0  # the mouth
    assert at(LANDMARKS[36:42].mean(axis=0)) == 0.0  # an eye
    assert at(LANDMARKS[30]) == 0.0  # the nose tip
    iod = inter_ocular_distance(LANDMARKS)
    assert at(LANDMARKS[8] + (0, 0.05 * iod)) == 0.0  # just below the chin: the feather stays inside
    assert matte[0].max() == 0.0 and matte[:, 0].max() == 0.0
    # a soft edge: many intermediate values, and none of the tiny Gaussian tail survives
    soft = matte[(matte > 0) & (matte < 1)]
    assert soft.size > 500 and soft.min() >= MatteParams().zero_below


def test_matte_is_empty_for_missing_or_off_frame_faces() -> None:
    assert not lower_face_matte(np.full((68, 2), np.nan), (HEIGHT, WIDTH)).any()
    off_frame = face_template_68((5000, 5000), 150.0)
    assert not lower_face_matte(off_frame, (HEIGHT, WIDTH)).any()
    with pytest.raises(InvalidInputError, match="68, 2"):
        lower_face_matte(np.zeros((5, 2)), (HEIGHT, WIDTH))


def test_multiband_blend_is_bit_exact_outside_and_follows_foreground_inside() -> None:
    background = skin_frame()
    foreground = with_mouth(skin_frame(seed=2), LANDMARKS)
    matte = lower_face_matte(LANDMARKS, (HEIGHT, WIDTH))
    out = multiband_blend(background, foreground, matte)

    assert out.dtype == np.uint8 and out.shape == background.shape
    assert outside_matte_exact(out, background, matte) == (True, 0)
    core = matte == 1.0
    error_to_foreground = np.abs(out[core].astype(int) - foreground[core]).mean()
    error_to_background = np.abs(out[core].astype(int) - background[core]).mean()
    assert error_to_foreground < 2.0 < error_to_background
    # in the feather, the result lies between the two (up to rounding and the pyramid's spread)
    feather = (matte > 0.3) & (matte < 0.7)
    low = np.minimum(background[feather], foreground[feather]).astype(int) - 8
    high = np.maximum(background[feather], foreground[feather]).astype(int) + 8
    assert np.mean((out[feather] >= low) & (out[feather] <= high)) > 0.97


def test_multiband_blend_hides_the_seam_better_than_a_hard_paste() -> None:
    background = skin_frame()
    brighter = skin_frame(brightness=30.0, seed=2)  # an exposure mismatch the blend must hide
    matte = lower_face_matte(LANDMARKS, (HEIGHT, WIDTH))
    hard_matte = (matte >= 0.5).astype(np.float32)
    hard = np.where(hard_matte[..., None] > 0, brighter, background)
    blended = multiband_blend(background, brighter, matte)
    assert seam_score(blended, background, matte) < 0.6 * seam_score(hard, background, hard_matte)


def test_paste_passes_frames_through_without_a_face_or_patch() -> None:
    frame = skin_frame()
    patch = skin_frame(seed=5)
    deflicker = TemporalDeflicker()
    for patch_in, landmarks, reason in (
        (None, LANDMARKS, "no patch"),
        (patch, None, "no face landmarks"),
        (patch, np.full((68, 2), np.nan), "unusable"),
        (patch, face_template_68((-900, -900), 150.0), "off-frame"),
    ):
        result = paste(frame, patch_in, landmarks, deflicker=deflicker)
        assert result.frame is frame
        assert not result.matte.any() and result.matte.shape == (HEIGHT, WIDTH)
        assert reason in result.passthrough_reason


def test_paste_rejects_mismatched_inputs() -> None:
    frame = skin_frame()
    with pytest.raises(InvalidInputError, match="patch"):
        paste(frame, frame[:100], LANDMARKS)
    with pytest.raises(InvalidInputError, match="frame"):
        paste(frame.astype(np.float32), frame, LANDMARKS)
    with pytest.raises(InvalidInputError, match="matte"):
        multiband_blend(frame, frame, np.zeros((10, 10), np.float32))


def test_paste_matches_exposure_and_keeps_the_outside_exact() -> None:
    frame = skin_frame()
    darker_patch = with_mouth(skin_frame(brightness=-35.0, seed=2), LANDMARKS)
    result = paste(frame, darker_patch, LANDMARKS)
    unmatched = paste(frame, darker_patch, LANDMARKS, CompositeParams(colour_match=False))
    assert result.passthrough_reason is None
    assert outside_matte_exact(result.frame, frame, result.matte) == (True, 0)

    skin = (result.matte > 0.5) & ~(with_mouth(np.zeros_like(frame), LANDMARKS, (1, 1, 1))[..., 0] > 0)
    matched_error = abs(result.frame[skin].astype(float).mean() - frame[skin].mean())
    unmatched_error = abs(unmatched.frame[skin].astype(float).mean() - frame[skin].mean())
    assert unmatched_error > 25 and matched_error < 4
    # the mouth stays dark relative to the skin around it
    mouth = with_mouth(np.zeros_like(frame), LANDMARKS, (1, 1, 1))[..., 0] > 0
    assert result.frame[mouth].mean() < result.frame[skin].mean() - 60


def test_colour_match_shifts_exposure_without_paling_the_lips() -> None:
    # The patch is 12 levels darker and its skin band more contrasted (a shadow across it): an
    # exposure difference to correct, and a spread difference that says nothing about the lips.
    frame = skin_frame()
    y = np.mgrid[0:HEIGHT, 0:WIDTH][0].astype(np.float32)
    shadow = 14.0 * np.sin(y / 9.0)[..., None]
    patch = np.clip(skin_frame(seed=2).astype(np.float32) - 12 + shadow, 0, 255).astype(np.uint8)
    cv2.fillPoly(patch, [np.round(LANDMARKS[48:60]).astype(np.int32)], (150, 30, 45))
    cv2.fillPoly(patch, [np.round(LANDMARKS[60:68]).astype(np.int32)], (40, 15, 15))
    result = paste(frame, patch, LANDMARKS).frame
    ring = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.fillPoly(ring, [np.round(LANDMARKS[48:60]).astype(np.int32)], 1)
    cv2.fillPoly(ring, [np.round(LANDMARKS[60:68]).astype(np.int32)], 0)
    ring = cv2.erode(ring, np.ones((3, 3), np.uint8)).astype(bool)
    shift = result[ring].astype(float).mean(axis=0) - patch[ring].mean(axis=0)
    assert np.all(np.abs(shift - shift.mean()) < 3)  # the same shift on every channel: hue kept
    assert 3 < shift.mean() < 18  # the exposure difference, not a contrast squeeze
    # with the luma gain free, the fitted spread compresses the lips toward the skin
    free = paste(frame, patch, LANDMARKS, CompositeParams(max_luma_gain=1.5)).frame
    assert abs(float(free[ring].astype(float).mean() - result[ring].mean())) > 3


def test_match_colour_moves_band_statistics_to_the_target() -> None:
    target = skin_frame()
    patch = np.clip(skin_frame(seed=9).astype(np.int16) + (20, -10, 15), 0, 255).astype(np.uint8)
    matte = lower_face_matte(LANDMARKS, (HEIGHT, WIDTH))
    band = (matte > 0.02) & (matte < 0.98)
    matched = match_colour(patch, target, matte)
    assert matched.dtype == np.uint8 and matched.shape == patch.shape
    before = np.abs(patch[band].mean(axis=0) - target[band].mean(axis=0)).max()
    after = np.abs(matched[band].mean(axis=0) - target[band].mean(axis=0)).max()
    assert before > 9 and after < 1.5
    # patch pixels marked invalid are ignored: a black hole does not drag the statistics down
    holed = patch.copy()
    holed[band & (np.arange(WIDTH)[None, :] < WIDTH / 2)] = 0
    valid = holed.any(axis=2)
    matched_holed = match_colour(holed, target, matte, usable=valid)
    keep = band & valid
    assert np.abs(matched_holed[keep].mean(axis=0) - target[keep].mean(axis=0)).max() < 3


def flicker(frames: list[np.ndarray], region: np.ndarray) -> float:
    return float(np.mean([np.abs(a[region].astype(int) - b[region]).mean() for a, b in zip(frames, frames[1:])]))


def test_deflicker_damps_a_flickering_patch_and_leaves_a_steady_one_alone() -> None:
    frame = skin_frame()
    base_patch = with_mouth(skin_frame(seed=2), LANDMARKS)
    params = CompositeParams(colour_match=False)  # so the patch's flicker reaches the composite
    matte = lower_face_matte(LANDMARKS, (HEIGHT, WIDTH))
    core = matte > 0.5

    flickering = [np.clip(base_patch.astype(np.int16) + (4 if t % 2 else -4), 0, 255).astype(np.uint8) for t in range(12)]
    plain = [paste(frame, p, LANDMARKS, params).frame for p in flickering]
    deflicker = TemporalDeflicker()
    smoothed = [paste(frame, p, LANDMARKS, params, deflicker=deflicker).frame for p in flickering]
    # (the mouth's own core takes only the mean shift of the skin around it, so a little less than
    # the skin ring alone)
    assert flicker(smoothed, core) < 0.75 * flicker(plain, core)
    for out in smoothed:
        assert outside_matte_exact(out, frame, matte) == (True, 0)

    deflicker.reset()
    steady_plain = paste(frame, base_patch, LANDMARKS, params).frame
    for _ in range(4):
        assert np.array_equal(paste(frame, base_patch, LANDMARKS, params, deflicker=deflicker).frame, steady_plain)


def test_deflicker_never_lays_the_last_mouth_under_this_one() -> None:
    # The patch's mouth jumps by a few code values only (under the motion gate): the residual's
    # low-pass would be averaged with the last frame's; on the mouth only one uniform shift is.
    frame = skin_frame()
    params = CompositeParams(colour_match=False)
    closed = face_template_68((WIDTH / 2, HEIGHT / 2), 150.0, mouth_open=0.0)
    opened = face_template_68((WIDTH / 2, HEIGHT / 2), 150.0, mouth_open=0.07)
    skin = skin_frame(seed=2)
    first = with_mouth(skin, opened, (165, 120, 100))
    second = with_mouth(skin, closed, (165, 120, 100))
    deflicker = TemporalDeflicker()
    paste(frame, first, opened, params, deflicker=deflicker)
    smoothed = paste(frame, second, opened, params, deflicker=deflicker).frame
    plain = paste(frame, second, opened, params).frame
    mouth = with_mouth(np.zeros_like(frame), opened, (1, 1, 1))[..., 0] > 0
    difference = smoothed[mouth].astype(float) - plain[mouth]
    assert difference.std() < 0.25  # a uniform shift at most, no shape of the open mouth (0.57 before)


def test_deflicker_does_not_smear_a_mouth_that_opens() -> None:
    frame = skin_frame()
    closed = face_template_68((WIDTH / 2, HEIGHT / 2), 150.0, mouth_open=0.0)
    opened = face_template_68((WIDTH / 2, HEIGHT / 2), 150.0, mouth_open=0.08)
    params = CompositeParams(colour_match=False)
    deflicker = TemporalDeflicker()
    paste(frame, with_mouth(skin_frame(seed=2), closed), closed, params, deflicker=deflicker)
    patch = with_mouth(skin_frame(seed=2), opened)
    smoothed = paste(frame, patch, opened, params, deflicker=deflicker).frame
    plain = paste(frame, patch, opened, params).frame
    mouth = with_mouth(np.zeros_like(frame), opened, (1, 1, 1))[..., 0] > 0
    # the newly dark mouth is not pulled back towards the closed-mouth skin by more than a little
    assert abs(smoothed[mouth].astype(float).mean() - plain[mouth].mean()) < 6


def test_face_cut_by_the_frame_edge_and_rolled_faces_composite_cleanly() -> None:
    frame = skin_frame()
    for landmarks in (
        face_template_68((30, HEIGHT - 20), 160.0, mouth_open=0.05, roll_degrees=20),
        face_template_68((WIDTH / 2, HEIGHT / 2), 120.0, mouth_open=0.03, roll_degrees=-35),
    ):
        patch = with_mouth(skin_frame(seed=4), landmarks)
        result = paste(frame, patch, landmarks, deflicker=TemporalDeflicker())
        assert result.matte.any()
        assert outside_matte_exact(result.frame, frame, result.matte) == (True, 0)


# --- real footage ---------------------------------------------------------------------------------


def _dlib_landmarks(image: np.ndarray) -> np.ndarray | None:
    import dlib

    spec = importlib.util.find_spec("face_recognition_models")
    models = Path(spec.submodule_search_locations[0]) / "models"
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))
    image = np.ascontiguousarray(image)  # decoded frames have padded rows, which dlib misreads
    faces = detector(image, 0)
    if len(faces) == 0:
        return None
    shape = predictor(image, max(faces, key=lambda rect: rect.area()))
    return np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], np.float64)


def _real_frames(path: Path, count: int) -> list[np.ndarray]:
    import opentimelineio as otio
    from dubline.stages import media

    rate = float(media.probe(path).video.rate)
    span = otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate), otio.opentime.RationalTime(count, rate))
    return [frame.image for frame in media.read_span(path, span)]


@pytest.mark.slow
def test_real_frame_composite(shared_media: Path, tmp_path: Path) -> None:
    """Paste the aligned lower face of another frame of speaker_a into frame 0, as a backend would."""
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face_recognition_models is not installed")
    try:
        frames = _real_frames(shared_media / "speaker_a.mp4", 40)
    except NotImplementedError:
        pytest.skip("dubline.stages.media has not landed yet")
    target, donor = frames[0], frames[-1]
    target_landmarks, donor_landmarks = _dlib_landmarks(target), _dlib_landmarks(donor)
    assert target_landmarks is not None and donor_landmarks is not None

    # a minimal "backend": similarity transform of the donor onto the target on eye/nose anchors
    anchors = list(range(27, 48))
    transform, _ = cv2.estimateAffinePartial2D(donor_landmarks[anchors], target_landmarks[anchors])
    patch = cv2.warpAffine(donor, transform, (target.shape[1], target.shape[0]), borderMode=cv2.BORDER_REFLECT)

    result = paste(target, patch, target_landmarks)
    hard_matte = (result.matte >= 0.5).astype(np.float32)
    hard = np.where(hard_matte[..., None] > 0, patch, target)
    assert outside_matte_exact(result.frame, target, result.matte) == (True, 0)
    changed = np.abs(result.frame.astype(int) - target).max(axis=2) > 3
    assert changed[result.matte == 1.0].mean() > 0.2  # the mouth really came from the donor
    blended_seam = seam_score(result.frame, target, result.matte)
    assert blended_seam < seam_score(hard, target, hard_matte)

    matte_rgb = np.repeat((result.matte * 255).round().astype(np.uint8)[..., None], 3, axis=2)
    sheet = np.concatenate([target, matte_rgb, result.frame], axis=1)
    path = tmp_path / "composite_real.png"
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    assert path.stat().st_size > 10_000
