"""The 68-point face landmark convention shared by faces/, backends, composite and qc.

Indices are 0-based and follow the iBUG 300-W / dlib ``shape_predictor_68_face_landmarks``
layout (image left = the subject's right side):

    JAW 0..16, BROWS 17..26 (image-left brow first), NOSE 27..35 (bridge 27..30, base 31..35),
    LEFT_EYE 36..41, RIGHT_EYE 42..47 (image-left eye first, as dlib orders them),
    OUTER_LIP 48..59, INNER_LIP 60..67.

Landmarks are float arrays of shape (68, 2) holding (x, y) pixel coordinates; a missing face is
``None`` or an all-NaN array, never zeros.

``face_template_68`` builds a plausible synthetic face (our own parametric construction, not a
measured mean shape) so tests and the demo can place a face without running a detector.
"""

from __future__ import annotations

import numpy as np

from dubline.core.errors import InvalidInputError

JAW = slice(0, 17)
BROWS = slice(17, 27)
NOSE = slice(27, 36)
NOSE_BRIDGE = slice(27, 31)
NOSE_BASE = slice(31, 36)
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
OUTER_LIP = slice(48, 60)
INNER_LIP = slice(60, 68)

NOSE_TOP = 27
NOSE_TIP = 30
NOSE_BOTTOM = 33  # centre of the nose base (subnasale)

#: Pairs of inner-lip points (upper, lower) whose distances make up the mouth aperture.
INNER_LIP_VERTICAL_PAIRS = ((61, 67), (62, 66), (63, 65))


def check_landmarks(landmarks: np.ndarray, what: str = "landmarks") -> np.ndarray:
    """Return ``landmarks`` as float64 (68, 2), or raise InvalidInputError naming ``what``."""
    array = np.asarray(landmarks, dtype=np.float64)
    if array.shape != (68, 2):
        raise InvalidInputError(f"{what}: expected shape (68, 2), got {array.shape}")
    return array


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres (x, y) of the image-left and image-right eyes (mean of their six points)."""
    points = check_landmarks(landmarks)
    return points[LEFT_EYE].mean(axis=0), points[RIGHT_EYE].mean(axis=0)


def inter_ocular_distance(landmarks: np.ndarray) -> float:
    """Distance in pixels between the two eye centres; NaN when the landmarks are NaN.

    Eye centres (not outer corners) because they are the most stable points under blinks and
    expression; every size in composite/qc that scales with the face is a fraction of this.
    """
    left, right = eye_centres(landmarks)
    return float(np.hypot(*(right - left)))


def nose_length(landmarks: np.ndarray) -> float:
    """Distance from the top of the nose bridge (27) to the subnasale (33), in pixels."""
    points = check_landmarks(landmarks)
    return float(np.hypot(*(points[NOSE_BOTTOM] - points[NOSE_TOP])))


def inner_lip_aperture(landmarks: np.ndarray) -> float:
    """Mouth opening: mean upper-to-lower inner-lip distance divided by the inter-ocular distance.

    This is the per-frame quantity the PAC sync metric correlates with the dub's openness track.
    NaN when the landmarks are NaN or degenerate.
    """
    points = check_landmarks(landmarks)
    gaps = [np.hypot(*(points[lower] - points[upper])) for upper, lower in INNER_LIP_VERTICAL_PAIRS]
    iod = inter_ocular_distance(points)
    if not np.isfinite(iod) or iod <= 0:
        return float("nan")
    return float(np.mean(gaps) / iod)


def _ellipse_points(
    centre: tuple[float, float], radii: tuple[float, float], degrees: list[float]
) -> np.ndarray:
    """Points on an ellipse at the given angles; 90 degrees is up (smaller y) in image space."""
    angles = np.radians(degrees)
    return np.stack(
        [centre[0] + radii[0] * np.cos(angles), centre[1] - radii[1] * np.sin(angles)], axis=1
    )


def _unit_face(mouth_open: float) -> np.ndarray:
    """The template in face units: x in [0, 1] across the jaw, eyes at y = 0.33, chin at y = 1.06."""
    steps = np.linspace(0.0, 1.0, 17)
    jaw = np.stack([0.5 - 0.42 * np.cos(np.pi * steps), 0.34 + 0.72 * np.sin(np.pi * steps)], axis=1)

    brow_u = np.linspace(0.0, 1.0, 5)
    brow_arc = 0.24 - 0.04 * np.sin(np.pi * brow_u)
    brow_right = np.stack([0.16 + 0.28 * brow_u, brow_arc], axis=1)
    brow_left = np.stack([0.56 + 0.28 * brow_u, brow_arc], axis=1)

    bridge = np.stack([np.full(4, 0.5), np.linspace(0.32, 0.55, 4)], axis=1)
    base = np.array([[0.43, 0.60], [0.465, 0.62], [0.5, 0.635], [0.535, 0.62], [0.57, 0.60]])

    # Eye order: outer/inner corner, two upper points, other corner, two lower points (clockwise).
    eye_angles = [180.0, 120.0, 60.0, 0.0, -60.0, -120.0]
    eye_left = _ellipse_points((0.33, 0.33), (0.075, 0.025), eye_angles)
    eye_right = _ellipse_points((0.67, 0.33), (0.075, 0.025), eye_angles)

    # Lips: the mouth opens mostly downwards (a quarter of the gap above the lip line, the rest
    # below); the corners stay on the lip line and the chin drops with the lower lip.
    mouth_y = 0.76
    upper_gap, lower_gap = 0.25 * mouth_open, 0.75 * mouth_open
    outer_upper = _ellipse_points((0.5, mouth_y), (0.15, 0.045 + upper_gap), [180, 150, 120, 90, 60, 30, 0])
    outer_lower = _ellipse_points((0.5, mouth_y), (0.15, 0.06 + lower_gap), [-30, -60, -90, -120, -150])
    inner_upper = _ellipse_points((0.5, mouth_y), (0.11, upper_gap), [180, 135, 90, 45, 0])
    inner_lower = _ellipse_points((0.5, mouth_y), (0.11, lower_gap), [-45, -90, -135])
    jaw[4:13, 1] += lower_gap * np.sin(np.pi * steps[4:13])

    return np.concatenate(
        [jaw, brow_right, brow_left, bridge, base, eye_left, eye_right,
         outer_upper, outer_lower, inner_upper, inner_lower]
    )


def face_template_68(
    centre: tuple[float, float], face_width: float, mouth_open: float = 0.0, roll_degrees: float = 0.0
) -> np.ndarray:
    """A synthetic frontal face as (68, 2) float64 pixel coordinates.

    ``centre`` is the middle of the face box (x, y); ``face_width`` is the jaw width in pixels
    (the inter-ocular distance is 0.34 of it); ``mouth_open`` is the inner-lip gap as a fraction of
    the face width (0 = closed, 0.1 = wide open); ``roll_degrees`` rotates the face in the image plane.
    """
    unit = _unit_face(mouth_open) - np.array([0.5, 0.6])
    theta = np.radians(roll_degrees)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return unit @ rotation.T * face_width + np.asarray(centre, dtype=np.float64)


#: The template at unit face width centred on the origin (for tests and alignment references).
FACE_TEMPLATE_68: np.ndarray = face_template_68((0.0, 0.0), 1.0)
FACE_TEMPLATE_68.setflags(write=False)
