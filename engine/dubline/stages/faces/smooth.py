"""Temporal smoothing of a landmark track (Savitzky-Golay, as in VideoReTalking).

Each frame is split into a rigid part and a shape part. The rigid part is the similarity that
maps the canonical face onto the frame, fitted to the stable anchors only (eye centres and nose,
which speech does not move); its four parameters get the longer ``pose_window``. The shape part
is the landmarks seen in the canonical frame; it gets the short ``shape_window`` so lip motion
survives. Smoothed landmarks = smoothed pose applied to the smoothed shape. Runs of included
(usable) frames are smoothed independently: nothing is blended across a missing frame or a cut.
"""

from __future__ import annotations

import numpy as np

from dubline.stages.faces import geometry
from dubline.stages.faces.types import FaceTrackParams

# Points that move with speech (lips and the lower jaw, which drops with the chin) keep the short
# window; the rest of the face (eyes, brows, nose, upper jaw) barely moves in the canonical frame.
SPEECH_POINTS = np.concatenate([np.arange(4, 13), geometry.MOUTH])
RIGID_POINTS = np.setdiff1d(np.arange(68), SPEECH_POINTS)


def present_runs(present: np.ndarray, breaks: np.ndarray | None = None) -> list[tuple[int, int]]:
    """[start, stop) ranges of consecutive True values, also split where ``breaks`` is True
    (a run starts there: a cut or a jump of the face)."""
    runs = []
    start = None
    for position, inside in enumerate(np.asarray(present, dtype=bool)):
        if start is not None and (not inside or (breaks is not None and breaks[position])):
            runs.append((start, position))
            start = None
        if inside and start is None:
            start = position
    if start is not None:
        runs.append((start, len(present)))
    return runs


def savgol(values: np.ndarray, window: int, polyorder: int) -> np.ndarray:
    """Savitzky-Golay along axis 0, the window shrunk (kept odd) to fit short runs; runs too short
    for the polynomial are returned as they are."""
    length = len(values)
    window = min(window, length if length % 2 else length - 1)
    if window <= polyorder or window < 3:
        return values.copy()
    # Imported here: scipy.signal takes seconds to import, and every CLI command that only
    # validates a request (and fails fast on bad input) would pay it.
    from scipy.signal import savgol_filter

    return savgol_filter(values, window, polyorder, axis=0)


def _similarity_parameters(matrix: np.ndarray) -> np.ndarray:
    # A similarity is [[a, -b, tx], [b, a, ty]]: (a, b, tx, ty) vary linearly with it.
    return np.array([matrix[0, 0], matrix[1, 0], matrix[0, 2], matrix[1, 2]])


def _similarity_matrix(params: np.ndarray) -> np.ndarray:
    a, b, tx, ty = params
    return np.array([[a, -b, tx], [b, a, ty]])


def smooth_landmarks(
    landmarks: np.ndarray, include: np.ndarray, params: FaceTrackParams, breaks: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed landmarks ``(N, 68, 2)`` and poses ``(N, 2, 3)`` (frame -> canonical face) from
    raw landmarks ``(N, 68, 2)``; runs of ``include`` frames (split at ``breaks``) are smoothed
    independently, the rest stay NaN."""
    count = len(landmarks)
    smoothed = np.full((count, 68, 2), np.nan)
    poses = np.full((count, 2, 3), np.nan)
    for start, stop in present_runs(include, breaks):
        raw = np.asarray(landmarks[start:stop], dtype=np.float64)
        to_canonical = [geometry.pose_to_canonical(points) for points in raw]
        shapes = np.stack([geometry.apply_affine(m, p) for m, p in zip(to_canonical, raw)])
        to_frame = np.stack([_similarity_parameters(geometry.invert_affine(m)) for m in to_canonical])
        to_frame = savgol(to_frame, params.pose_window, params.pose_polyorder)
        shapes[:, SPEECH_POINTS] = savgol(shapes[:, SPEECH_POINTS], params.shape_window, params.polyorder)
        shapes[:, RIGID_POINTS] = savgol(shapes[:, RIGID_POINTS], params.pose_window, params.pose_polyorder)
        for offset, (pose_params, shape) in enumerate(zip(to_frame, shapes)):
            matrix = _similarity_matrix(pose_params)
            smoothed[start + offset] = geometry.apply_affine(matrix, shape)
            poses[start + offset] = geometry.invert_affine(matrix)
    return smoothed, poses
