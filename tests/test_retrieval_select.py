"""Frame selection: the chosen real mouths follow the target, in runs, without over-reuse."""

from __future__ import annotations

import numpy as np
import pytest
from dubline.stages.backends.retrieval.select import (
    KEEP_OWN,
    LibraryFeatures,
    SelectionParams,
    SelectionTargets,
    corner_lift,
    select_frames,
    viterbi,
)


def _library(n: int = 200, seed: int = 0) -> LibraryFeatures:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    aperture = np.clip(0.25 * (1 + np.sin(t / 3.0)) / 2 + rng.normal(0, 0.01, n), 0, None)
    return LibraryFeatures(
        aperture=aperture,
        width=0.9 + 0.2 * aperture + rng.normal(0, 0.01, n),
        pose=rng.normal(0, 0.01, (n, 3)),
        luma=np.full(n, 120.0),
        consecutive=np.ones(n, dtype=bool),
    )


def _targets(aperture: np.ndarray, voiced: float = 1.0, own: float = 0.1) -> SelectionTargets:
    t = len(aperture)
    return SelectionTargets(
        aperture=aperture,
        width=0.9 + 0.2 * aperture,
        closure=(aperture < 0.02).astype(float),
        voiced=np.full(t, voiced),
        pose=np.zeros((t, 3)),
        luma=np.full(t, 120.0),
        own_aperture=np.full(t, own),
    )


def test_chosen_mouths_follow_the_target_aperture() -> None:
    library = _library()
    rng = np.random.default_rng(1)
    wanted = np.repeat(rng.uniform(0.0, 0.25, 20), 4)  # syllable-like steps
    path = select_frames(library, _targets(wanted))
    chosen = library.aperture[path]
    assert np.corrcoef(chosen, wanted)[0, 1] > 0.9
    assert np.mean(np.abs(chosen - wanted)) < 0.03


def test_selection_prefers_runs_of_consecutive_frames() -> None:
    library = _library()
    wanted = library.aperture[50:110] + 0.005  # the library itself contains this motion
    path = select_frames(library, _targets(wanted))
    follows = np.mean(np.diff(path) == 1)
    assert follows > 0.8


def test_one_frame_is_not_reused_without_limit() -> None:
    library = _library()
    params = SelectionParams(max_reuse=3)
    wanted = np.full(60, float(library.aperture.max()))  # every frame wants the same extreme mouth
    path = select_frames(library, _targets(wanted), params)
    window = params.reuse_window
    for start in range(0, len(path) - window + 1):
        assert np.bincount(path[start : start + window]).max() <= 3


def test_silence_keeps_a_resting_own_mouth_and_closes_an_open_one() -> None:
    library = _library()
    wanted = np.zeros(10)
    assert (select_frames(library, _targets(wanted, voiced=0.0, own=0.01)) == KEEP_OWN).all()
    path = select_frames(library, _targets(wanted, voiced=0.0, own=0.3))
    assert (path >= 0).all()
    assert library.aperture[path].max() < 0.05


def test_expression_bias_changes_the_choice_between_equal_openings() -> None:
    n = 40
    aperture = np.tile([0.1, 0.1], n // 2)
    width = np.tile([0.8, 1.1], n // 2)  # same opening, narrow vs wide (smiling) mouths
    library = LibraryFeatures(aperture, width, np.zeros((n, 3)), np.full(n, 100.0), np.zeros(n, bool))
    targets = _targets(np.full(8, 0.1))
    targets = SelectionTargets(**{**targets.__dict__, "width": np.full(8, 0.95)})
    smile = select_frames(library, targets, expression="smile")
    assert (library.width[smile] > 1.0).mean() > 0.7


def test_viterbi_finds_the_cheaper_path_than_greedy() -> None:
    # Greedy would jump between the two cheapest columns each step; following is cheaper.
    unary = np.array([[0.0, 0.1, 5.0], [0.3, 0.0, 0.2], [5.0, 0.4, 0.0]])
    path = viterbi(unary, np.array([False, True, True]), hold_cost=1.0, jump_cost=1.0)
    assert path.tolist() == [0, 1, 2]


def test_empty_library_is_a_clear_error() -> None:
    empty = LibraryFeatures(np.zeros(0), np.zeros(0), np.zeros((0, 3)), np.zeros(0), np.zeros(0, bool))
    with pytest.raises(ValueError, match="library is empty"):
        select_frames(empty, _targets(np.zeros(3)))


def _lips(lift: float) -> np.ndarray:
    """Canonical lip points 48..67 (flattened) with the corners ``lift`` above the centre line."""
    points = np.zeros((20, 2))
    points[:, 0] = np.linspace(0.35, 0.65, 20)
    points[:, 1] = 0.76
    points[[0, 6], 1] -= lift
    return points.ravel()


def test_smile_prefers_lifted_corners_and_neutral_the_usual_lift() -> None:
    n = 60
    lifts = np.tile([-0.01, 0.0, 0.02], n // 3)  # same opening and width: only the corners differ
    library = LibraryFeatures(np.full(n, 0.1), np.full(n, 0.95), np.zeros((n, 3)), np.full(n, 100.0),
                              np.zeros(n, bool), np.array([_lips(lift) for lift in lifts]))
    targets = _targets(np.full(12, 0.1))
    targets = SelectionTargets(**{**targets.__dict__, "width": np.full(12, 0.95)})
    assert np.all(lifts[select_frames(library, targets, expression="smile")] == 0.02)
    neutral = lifts[select_frames(library, targets, expression="neutral")]
    assert np.mean(neutral == 0.0) > 0.9
    assert np.allclose(corner_lift(library.lips[:3]), [-0.01, 0.0, 0.02])
