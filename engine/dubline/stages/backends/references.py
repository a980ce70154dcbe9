"""Reference frames for generator backends (wav2lip, musetalk): which real frame of the speaker
shows the generator the person's identity and texture for each output frame.

``same``: the output frame itself, as the official inference scripts do; it shows the generator
the original mouth, which then leaks into the result. ``rest``: a frame of the same clip with a
resting mouth and the nearest head pose, held across frames (hysteresis) so the copied texture
changes rarely. docs/WAV2LIP.md and docs/MUSETALK.md measure the trade-off.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter

from dubline.core.errors import InvalidInputError
from dubline.stages.faces import FaceTrack

REFERENCE_CHOICES = ("rest", "same")
#: A reference frame must be among the quietest mouths of the clip: aperture at or below this
#: percentile of the speaker's usable frames.
REST_PERCENTILE = 10.0
#: Pose distance units (roll in radians, yaw ratio): a difference of this much counts as 1.
#: The yaw ratio of one frame's raw landmarks jitters by about +-0.05 on steady heads.
POSE_SCALE = np.array([0.05, 0.15])
#: Frames of the running median that steadies the target pose before references are matched.
POSE_MEDIAN_FRAMES = 9
#: Keep the previous frame's reference unless another is this much closer in pose (scaled units):
#: switching references changes the texture the generator copies, so it should be rare.
SWITCH_MARGIN = 1.0


def head_pose(pose: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """(N, 2) roll (radians) and yaw ratio from the track's similarity transforms to the canonical face."""
    roll = -np.arctan2(pose[:, 1, 0].astype(np.float64), pose[:, 0, 0].astype(np.float64))
    return np.stack([roll, yaw.astype(np.float64)], axis=1)


def rest_candidates(aperture: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Frame indices whose mouth is among the quietest of the speaker (at or below REST_PERCENTILE).

    Raises InvalidInputError when no frame is usable.
    """
    allowed = np.asarray(usable, dtype=bool) & np.isfinite(aperture)
    frames = np.flatnonzero(allowed)
    if not len(frames):
        raise InvalidInputError("no usable frame of the speaker to take a resting-mouth reference from")
    threshold = np.percentile(aperture[frames], REST_PERCENTILE)
    return frames[aperture[frames] <= threshold]


def choose_references(
    target_pose: np.ndarray,
    target_usable: np.ndarray,
    candidates: np.ndarray,
    candidate_pose: np.ndarray,
) -> np.ndarray:
    """One candidate frame per target frame (-1 where the target is not usable).

    The nearest candidate in head pose (roll, yaw; the target's steadied by a running median),
    with hysteresis: the previous frame's reference is kept unless another candidate is
    SWITCH_MARGIN closer, so references change rarely.
    """
    chosen = np.full(len(target_pose), -1, dtype=np.int64)
    usable_rows = np.flatnonzero(target_usable)
    if not len(candidates) or not len(usable_rows):
        return chosen
    steady = median_filter(target_pose[usable_rows], size=(POSE_MEDIAN_FRAMES, 1), mode="nearest")
    previous = -1
    for t, pose in zip(usable_rows, steady):
        distances = np.linalg.norm((candidate_pose - pose) / POSE_SCALE, axis=1)
        best = int(np.argmin(distances))
        if previous >= 0 and distances[previous] <= distances[best] + SWITCH_MARGIN:
            best = previous
        chosen[t] = candidates[best]
        previous = best
    return chosen


def reference_frames(faces: FaceTrack, span: tuple[int, int], reference: str, has_crop: np.ndarray) -> np.ndarray:
    """(T,) the source frame whose crop is each output frame's reference (-1: not rendered).
    ``has_crop`` (N,) says which frames of the clip the backend can crop a face from."""
    first, end = span
    span_usable = (faces.usable & has_crop)[first:end]
    if reference == "same":
        return np.where(span_usable, np.arange(first, end), -1)
    candidates = rest_candidates(faces.aperture, faces.usable & has_crop)
    pose = head_pose(faces.pose, faces.yaw)
    return choose_references(pose[first:end], span_usable, candidates, pose[candidates])
