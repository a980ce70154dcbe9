"""Geometry of the 68-point face: anchors, mouth descriptors, pose to a canonical face, jitter.

Indices follow the shared convention in ``dubline.core.landmarks`` (dlib's 0-based iBUG 300-W layout).
These are the array versions of its single-face helpers, plus pose and jitter. Functions that take ``landmarks`` accept
one face ``(68, 2)`` and return a float, or a stack ``(N, 68, 2)`` and return an ``(N,)`` array;
NaN landmarks give NaN results. The QC and render stages reuse these, so keep them pure.
"""

from __future__ import annotations

import numpy as np

from dubline.core import landmarks as convention

EYE_A = np.arange(68)[convention.LEFT_EYE]  # the eye on the image's left in a frontal face
EYE_B = np.arange(68)[convention.RIGHT_EYE]
NOSE = np.arange(68)[convention.NOSE]  # bridge and base: rigid, unaffected by speech
MOUTH = np.arange(68)[convention.OUTER_LIP.start : convention.INNER_LIP.stop]  # 20 lip points
INNER_LIP_PAIRS = np.array(convention.INNER_LIP_VERTICAL_PAIRS)  # upper/lower inner-lip opposites
MOUTH_CORNERS = (48, 54)
JAW_LEFT, JAW_RIGHT, NOSE_TIP = 0, 16, convention.NOSE_TIP

# Mirror partner of every point, to symmetrise shapes and to test left/right handling.
MIRROR = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]  # nose
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lip
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lip
)

# Canonical frontal face in a unit square: the Procrustes mean of dlib's 68-point fits over the
# frames of two frontal talking-head clips, mirror-symmetrised, then placed with the eye centres at
# (0.35, 0.40) and (0.65, 0.40) (inter-ocular distance 0.3). Pose and lip shape are expressed here.
CANONICAL_68 = np.array(
    [
        0.1361, 0.4442, 0.1406, 0.5323, 0.1529, 0.6210, 0.1712, 0.7081,
        0.2021, 0.7887, 0.2556, 0.8561, 0.3289, 0.9069, 0.4113, 0.9464,
        0.5000, 0.9605, 0.5887, 0.9464, 0.6711, 0.9069, 0.7444, 0.8561,
        0.7979, 0.7887, 0.8288, 0.7081, 0.8471, 0.6210, 0.8594, 0.5323,
        0.8639, 0.4442, 0.2209, 0.3477, 0.2619, 0.3057, 0.3215, 0.2882,
        0.3851, 0.2961, 0.4435, 0.3211, 0.5565, 0.3211, 0.6149, 0.2961,
        0.6785, 0.2882, 0.7381, 0.3057, 0.7791, 0.3477, 0.5000, 0.3831,
        0.5000, 0.4349, 0.5000, 0.4857, 0.5000, 0.5388, 0.4327, 0.5922,
        0.4658, 0.6033, 0.5000, 0.6130, 0.5342, 0.6033, 0.5673, 0.5922,
        0.2944, 0.4048, 0.3293, 0.3812, 0.3704, 0.3806, 0.4074, 0.4070,
        0.3692, 0.4129, 0.3293, 0.4137, 0.5926, 0.4070, 0.6296, 0.3806,
        0.6707, 0.3812, 0.7056, 0.4048, 0.6707, 0.4137, 0.6308, 0.4129,
        0.3707, 0.7303, 0.4177, 0.6928, 0.4652, 0.6761, 0.5000, 0.6842,
        0.5348, 0.6761, 0.5823, 0.6928, 0.6293, 0.7303, 0.5830, 0.7610,
        0.5370, 0.7751, 0.5000, 0.7784, 0.4630, 0.7751, 0.4170, 0.7610,
        0.3929, 0.7270, 0.4650, 0.7047, 0.5000, 0.7066, 0.5350, 0.7047,
        0.6071, 0.7270, 0.5353, 0.7333, 0.5000, 0.7359, 0.4647, 0.7333
    ],
    dtype=np.float64,
).reshape(68, 2)
CANONICAL_IOD = 0.3


def _batched(landmarks: np.ndarray) -> tuple[np.ndarray, bool]:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape[-2:] != (68, 2):
        raise ValueError(f"landmarks must have shape (68, 2) or (N, 68, 2), got {points.shape}")
    single = points.ndim == 2
    return (points[None] if single else points), single


def _result(values: np.ndarray, single: bool) -> float | np.ndarray:
    return float(values[0]) if single else values


def eye_centres(landmarks: np.ndarray) -> np.ndarray:
    """Centres of the two eyes, shape ``(..., 2, 2)`` (image-left eye first)."""
    points = np.asarray(landmarks, dtype=np.float64)
    return np.stack([points[..., EYE_A, :].mean(axis=-2), points[..., EYE_B, :].mean(axis=-2)], -2)


def inter_ocular_distance(landmarks: np.ndarray) -> float | np.ndarray:
    """Distance between the eye centres, in the landmarks' units (pixels for frame landmarks)."""
    points, single = _batched(landmarks)
    eyes = eye_centres(points)
    return _result(np.linalg.norm(eyes[:, 1] - eyes[:, 0], axis=-1), single)


def inner_lip_aperture(landmarks: np.ndarray) -> float | np.ndarray:
    """Mean gap of the inner-lip pairs 61-67, 62-66, 63-65 divided by the inter-ocular distance."""
    points, single = _batched(landmarks)
    gaps = np.linalg.norm(points[:, INNER_LIP_PAIRS[:, 0]] - points[:, INNER_LIP_PAIRS[:, 1]], axis=-1)
    iod = np.asarray(inter_ocular_distance(points))
    return _result(gaps.mean(axis=-1) / iod, single)


def mouth_width(landmarks: np.ndarray) -> float | np.ndarray:
    """Distance between the mouth corners 48 and 54 divided by the inter-ocular distance."""
    points, single = _batched(landmarks)
    width = np.linalg.norm(points[:, MOUTH_CORNERS[1]] - points[:, MOUTH_CORNERS[0]], axis=-1)
    return _result(width / np.asarray(inter_ocular_distance(points)), single)


def yaw_ratio(landmarks: np.ndarray) -> float | np.ndarray:
    """Head yaw from landmark asymmetry: -1 (profile one way) .. 0 (frontal) .. 1 (other way).

    The nose tip's horizontal position between the two jaw ends (points 0 and 16), measured along
    the eye line so that head roll does not read as yaw: (d_left - d_right) / (d_left + d_right).
    """
    points, single = _batched(landmarks)
    eyes = eye_centres(points)
    axis = eyes[:, 1] - eyes[:, 0]
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    nose = np.einsum("nk,nk->n", points[:, NOSE_TIP], axis)
    left = nose - np.einsum("nk,nk->n", points[:, JAW_LEFT], axis)
    right = np.einsum("nk,nk->n", points[:, JAW_RIGHT], axis) - nose
    with np.errstate(divide="ignore", invalid="ignore"):  # collapsed fits give NaN
        return _result((left - right) / (left + right), single)


def similarity_transform(
    source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping source onto target.

    Closed-form weighted Umeyama; returns the 2x3 matrix ``M`` with ``target ≈ M @ [x, y, 1]``.
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mean_src, mean_dst = w @ src, w @ dst
    src_c, dst_c = src - mean_src, dst - mean_dst
    covariance = (dst_c * w[:, None]).T @ src_c
    u, singular, vt = np.linalg.svd(covariance)
    reflect = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        reflect[1, 1] = -1.0
    rotation = u @ reflect @ vt
    variance = (w * (src_c**2).sum(axis=1)).sum()
    scale = (singular * np.diag(reflect)).sum() / variance if variance > 0 else 1.0
    translation = mean_dst - scale * rotation @ mean_src
    return np.hstack([scale * rotation, translation[:, None]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to points of shape ``(..., 2)``."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.asarray(points, dtype=np.float64) @ m[:, :2].T + m[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    linear = np.linalg.inv(m[:, :2])
    return np.hstack([linear, (-linear @ m[:, 2])[:, None]])


def anchor_points(landmarks: np.ndarray) -> np.ndarray:
    """The stable anchors: the two eye centres then the nine nose points, shape ``(..., 11, 2)``."""
    points = np.asarray(landmarks, dtype=np.float64)
    return np.concatenate([eye_centres(points), points[..., NOSE, :]], axis=-2)


# Each eye centre weighs as much as the whole nose: eyes fix scale and roll, the nose fixes the
# vertical position; the mouth and jaw, which move with speech, take no part.
ANCHOR_WEIGHTS = np.concatenate([np.full(2, 4.5), np.ones(len(NOSE))])
CANONICAL_ANCHORS = anchor_points(CANONICAL_68)


def pose_to_canonical(landmarks: np.ndarray) -> np.ndarray:
    """Similarity transform (2x3) taking frame coordinates to the canonical face, from the anchors."""
    return similarity_transform(anchor_points(landmarks), CANONICAL_ANCHORS, ANCHOR_WEIGHTS)


def lip_shape(landmarks: np.ndarray, pose: np.ndarray | None = None) -> np.ndarray:
    """The 20 mouth points 48-67 in the canonical frame, shape ``(20, 2)``."""
    matrix = pose_to_canonical(landmarks) if pose is None else pose
    return apply_affine(matrix, np.asarray(landmarks, dtype=np.float64)[MOUTH])


def fit_residual(landmarks: np.ndarray) -> float:
    """How far a fit is from a face shape: RMS distance of all 68 points from the canonical face
    after the best similarity, in inter-ocular distances. Collapsed or scattered fits score high."""
    points = np.asarray(landmarks, dtype=np.float64)
    matrix = similarity_transform(points, CANONICAL_68)
    aligned = apply_affine(matrix, points)
    return float(np.sqrt(((aligned - CANONICAL_68) ** 2).sum(axis=1).mean()) / CANONICAL_IOD)


def landmark_jitter(landmarks: np.ndarray) -> float:
    """Mean frame-to-frame displacement of the anchors (eye centres, nose) over the inter-ocular
    distance, for a stack ``(N, 68, 2)``; pairs involving a NaN frame are skipped (NaN if none)."""
    points, _ = _batched(landmarks)
    if len(points) < 2:
        return float("nan")
    anchors = anchor_points(points)
    steps = np.linalg.norm(np.diff(anchors, axis=0), axis=-1).mean(axis=-1)
    iod = np.asarray(inter_ocular_distance(points))
    normalised = steps / (0.5 * (iod[1:] + iod[:-1]))
    valid = np.isfinite(normalised)
    return float(normalised[valid].mean()) if valid.any() else float("nan")
