"""Run boundaries: where they are, how the frames around them are eased, and that the morph moves a
mouth rather than showing two."""

from __future__ import annotations

import cv2
import numpy as np
from dubline.stages.backends.retrieval.select import KEEP_OWN
from dubline.stages.backends.retrieval.transition import (
    NO_PARTNER,
    dissolve_weight,
    morph,
    run_starts,
    schedule,
)

CONSECUTIVE = np.r_[False, np.ones(99, bool)]  # one footage of 100 frames


def test_follows_and_holds_continue_a_run_and_everything_else_starts_one() -> None:
    selection = np.array([10, 11, 11, 12, 40, 41, KEEP_OWN, KEEP_OWN, 5, 6])
    assert np.flatnonzero(run_starts(selection, CONSECUTIVE)).tolist() == [4, 6, 8]
    # j -> j + 1 across the end of one footage and the start of another is a cut too
    two_clips = np.r_[False, np.ones(9, bool), False, np.ones(9, bool)]
    assert run_starts(np.array([8, 9, 10, 11]), two_clips).tolist() == [False, False, True, False]


def test_a_cut_is_eased_over_the_frames_around_it_with_real_neighbouring_frames() -> None:
    selection = np.array([10, 11, 12, 13, 50, 51, 52, 53])
    partner, weight = schedule(selection, CONSECUTIVE, half=2)
    # before the cut: the cut-to run played backwards; after it: the cut-from run played on
    assert partner.tolist() == [NO_PARTNER, NO_PARTNER, 48, 49, 14, 15, NO_PARTNER, NO_PARTNER]
    assert np.allclose(weight, [0, 0, 0.125, 0.375, 0.375, 0.125, 0, 0])
    # the share of the cut-to run rises steadily through the cut
    towards_cut_to = np.where(np.arange(8) < 4, weight, 1 - weight)[2:6]
    assert np.all(np.diff(towards_cut_to) > 0)


def test_transitions_stop_at_the_next_cut_and_ease_the_own_mouth() -> None:
    selection = np.array([10, 11, 30, 60, 61, KEEP_OWN, KEEP_OWN])
    partner, weight = schedule(selection, CONSECUTIVE, half=1)
    assert partner.tolist() == [NO_PARTNER, 29, 12, 31, KEEP_OWN, 62, NO_PARTNER]
    assert np.allclose(weight, [0, 0.25, 0.25, 0.25, 0.25, 0.25, 0])
    assert schedule(selection, CONSECUTIVE, half=0)[0].tolist() == [NO_PARTNER] * 7


def test_dissolve_weight_is_steeper_than_the_motion() -> None:
    assert dissolve_weight(0.0) == 0.0 and dissolve_weight(1.0) == 1.0
    assert abs(dissolve_weight(0.5) - 0.5) < 1e-9
    assert dissolve_weight(0.25) < 0.25 and dissolve_weight(0.75) > 0.75


def _disc(centre_x: int) -> np.ndarray:
    image = np.full((96, 128, 3), 200, np.uint8)
    texture = np.random.default_rng(0).integers(-12, 12, image.shape)
    image = np.clip(image.astype(int) + texture, 0, 255).astype(np.uint8)
    cv2.circle(image, (centre_x, 48), 14, (40, 20, 20), -1, lineType=cv2.LINE_AA)
    return image


def test_morph_moves_the_mouth_instead_of_showing_two() -> None:
    first, second = _disc(52), _disc(76)
    halfway = morph(first, second, 0.5)
    dissolved = cv2.addWeighted(first, 0.5, second, 0.5, 0.0)

    def dark_columns(image: np.ndarray) -> np.ndarray:
        return np.flatnonzero(image[48, :, 0] < 100)

    # one dark disc, centred between the two: no half-dark ghost at either end
    columns = dark_columns(halfway)
    assert abs(columns.mean() - 64) < 3
    assert len(columns) > 20
    assert len(dark_columns(dissolved)) < 15  # a plain cross-fade only shows two grey discs
    assert np.array_equal(morph(first, second, 0.0), first)
    assert np.array_equal(morph(first, second, 1.0), second)


def test_the_inside_of_the_mouth_is_one_mouths_never_a_mix() -> None:
    """Two insides that do not line up (teeth against a dark open mouth) are never dissolved into
    each other where ``interior`` is 1: the nearer one shows there, whole; outside it the dissolve
    mixes as before."""
    rng = np.random.default_rng(1)
    teeth = np.full((64, 96, 3), 40, np.uint8)
    teeth[24:40, 20:76] = 235
    teeth[24:40, 20:76:8] = 90  # the gaps between teeth
    dark = np.clip(teeth.astype(int) * 0 + 30 + rng.integers(-3, 4, teeth.shape), 0, 255).astype(np.uint8)
    interior = np.zeros((64, 96), np.float32)
    interior[20:44, 16:80] = 1.0
    before = morph(teeth, dark, 0.4, interior=interior)
    after = morph(teeth, dark, 0.6, interior=interior)
    mixed = morph(teeth, dark, 0.4)
    band = (slice(27, 37), slice(22, 74))  # the teeth, away from their edges

    def brightness(image: np.ndarray) -> float:
        return float(np.median(image[band]))

    assert brightness(before) > 200  # white teeth
    assert brightness(after) < 45  # the dark inside, no teeth showing through
    assert 100 < brightness(mixed) < 190  # a plain dissolve: grey, the band of the report
    outside = interior == 0.0
    assert np.array_equal(before[outside], mixed[outside])
