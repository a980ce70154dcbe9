"""Tracking faces across frames, one track per person, and choosing the speaker's track.

Association, frame by frame:
- a face tracked from the previous frame (``FaceDetection.tracked_from``) continues the track of
  the face it was tracked from;
- the others are assigned by Hungarian assignment over detections x tracks: a track seen within ``max_gap_frames`` continues onto a detection whose box overlaps its last
  box (IoU >= ``min_iou``) unless the descriptors say it is someone else (> ``continue_distance``);
- otherwise a detection re-acquires the track of the same person (mean descriptor within
  ``same_person_distance``), which is how a face returns after a cut, a turn or an occlusion;
- anything left starts a new track. Afterwards tracks of the same person that never share a
  frame are merged, so each person ends up with one track id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dubline.core.errors import InvalidInputError, NoFaceError
from dubline.stages.faces import geometry
from dubline.stages.faces.types import FaceDetection, FaceTrackParams, SpeakerHint

_INFEASIBLE = 1e6


@dataclass
class Track:
    """One person's detections: ``detections[position]`` for the span positions where seen."""

    track_id: int
    detections: dict[int, FaceDetection] = field(default_factory=dict)
    _descriptor_sum: np.ndarray = field(default_factory=lambda: np.zeros(128, dtype=np.float64))
    _descriptor_count: int = 0

    def add(self, position: int, detection: FaceDetection) -> None:
        self.detections[position] = detection
        if detection.descriptor is not None:
            self._descriptor_sum += detection.descriptor
            self._descriptor_count += 1

    @property
    def mean_descriptor(self) -> np.ndarray | None:
        """The mean identity descriptor of its detections (None: only tracked faces, no identity)."""
        if not self._descriptor_count:
            return None
        return self._descriptor_sum / self._descriptor_count

    @property
    def last_position(self) -> int:
        return max(self.detections)

    def absorb(self, other: Track) -> None:
        for position, detection in other.detections.items():
            self.add(position, detection)


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _distance(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    return None if a is None or b is None else float(np.linalg.norm(a - b))


def _cost(track: Track, detection: FaceDetection, position: int, params: FaceTrackParams) -> float:
    measured = _distance(detection.descriptor, track.mean_descriptor)
    # Without a descriptor on either side only overlap can continue a track, never identity.
    distance = 0.0 if measured is None else measured
    last = track.last_position
    if position - last <= params.max_gap_frames + 1:
        overlap = box_iou(track.detections[last].box, detection.box)
        if overlap >= params.min_iou and distance <= params.continue_distance:
            return 0.5 * (1.0 - overlap) + 0.5 * distance
    if measured is not None and distance <= params.same_person_distance:
        return 1.0 + distance  # re-acquire: always ranks after continuing by overlap
    return _INFEASIBLE


def build_tracks(per_frame: list[list[FaceDetection]], params: FaceTrackParams) -> list[Track]:
    """Group the detections of consecutive frames into one track per person, longest first."""
    from scipy.optimize import linear_sum_assignment  # slow to import: see smooth.py

    tracks: list[Track] = []
    owners: list[Track] = []  # the track of each detection of the previous position
    for position, detections in enumerate(per_frame):
        matched: dict[int, Track] = {}
        taken: set[int] = set()  # ids of the tracks already continued at this position
        for row, detection in enumerate(detections):
            source = detection.tracked_from
            if source is not None and source < len(owners) and id(owners[source]) not in taken:
                matched[row] = owners[source]
                taken.add(id(owners[source]))
        free = [t for t in tracks if id(t) not in taken]
        rest = [row for row in range(len(detections)) if row not in matched]
        if free and rest:
            costs = np.array([[_cost(t, detections[row], position, params) for t in free] for row in rest])
            rows, cols = linear_sum_assignment(costs)
            for row, col in zip(rows, cols):
                if costs[row, col] < _INFEASIBLE:
                    matched[rest[row]] = free[col]
        owners = []
        for row, detection in enumerate(detections):
            track = matched.get(row)
            if track is None:
                track = Track(track_id=len(tracks))
                tracks.append(track)
            track.add(position, detection)
            owners.append(track)
    return _merge_same_person(tracks, params)


def _merge_same_person(tracks: list[Track], params: FaceTrackParams) -> list[Track]:
    tracks = sorted(tracks, key=lambda t: -len(t.detections))
    merged: list[Track] = []
    for track in tracks:
        for keeper in merged:
            shares_frame = not keeper.detections.keys().isdisjoint(track.detections)
            distance = _distance(keeper.mean_descriptor, track.mean_descriptor)
            if not shares_frame and distance is not None and distance <= params.same_person_distance:
                keeper.absorb(track)
                break
        else:
            merged.append(track)
    for new_id, track in enumerate(sorted(merged, key=lambda t: -len(t.detections))):
        track.track_id = new_id
    return sorted(merged, key=lambda t: t.track_id)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) < 1e-9 or np.std(b) < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _aperture_series(track: Track) -> tuple[np.ndarray, np.ndarray]:
    positions = np.array(sorted(track.detections))
    apertures = np.array([geometry.inner_lip_aperture(track.detections[p].landmarks) for p in positions])
    return positions, apertures


def speech_correlation(track: Track, activity: np.ndarray) -> float:
    """How well the track's mouth follows the voice activity: the better of corr(aperture,
    activity) and corr(|d aperture|, activity) over the frames where the track is seen."""
    positions, apertures = _aperture_series(track)
    level = _pearson(apertures, activity[positions])
    consecutive = np.diff(positions) == 1
    motion = np.abs(np.diff(apertures))[consecutive]
    motion_activity = activity[positions[1:]][consecutive]
    return max(level, _pearson(motion, motion_activity))


def motion_energy(track: Track) -> float:
    """Mean |frame-to-frame change| of the inner-lip aperture over consecutive seen frames."""
    positions, apertures = _aperture_series(track)
    steps = np.abs(np.diff(apertures))[np.diff(positions) == 1]
    return float(steps.mean()) if len(steps) else 0.0


def _mean_face_size(track: Track) -> float:
    return float(np.mean([geometry.inter_ocular_distance(d.landmarks) for d in track.detections.values()]))


def choose_speaker(
    tracks: list[Track],
    frame_indices: np.ndarray,
    speech_activity: np.ndarray | None,
    speaker: SpeakerHint | None,
    reference_descriptor: np.ndarray | None,
    params: FaceTrackParams,
) -> tuple[Track | None, str]:
    """The speaker's track and how it was chosen.

    The choice is one of: "point", "box", "reference" (from the hint); "only_face" (one candidate);
    "speech" (mouth best correlated with ``speech_activity``); "motion" (most mouth motion, no
    usable activity); "largest" (no mouth moves: the largest face); "none" (no face at all).
    """
    if not tracks:
        if speaker is not None:
            raise NoFaceError("a speaker was specified but no face was found in the span")
        return None, "none"
    if speaker is not None and speaker.reference_image is None:
        return _track_at_hint(tracks, frame_indices, speaker), "point" if speaker.point is not None else "box"
    if speaker is not None:
        if reference_descriptor is None:
            raise NoFaceError("the speaker's reference image has no detectable face")
        distances = [_distance(t.mean_descriptor, reference_descriptor) for t in tracks]
        distances = [np.inf if d is None else d for d in distances]
        best = int(np.argmin(distances))
        if distances[best] > params.reference_distance:
            raise NoFaceError(
                f"no face in the span matches the speaker's reference image "
                f"(nearest descriptor distance {distances[best]:.2f} > {params.reference_distance})"
            )
        return tracks[best], "reference"

    longest = max(len(t.detections) for t in tracks)
    candidates = [t for t in tracks if len(t.detections) >= params.min_track_share * longest]
    if len(candidates) == 1:
        return candidates[0], "only_face"
    if speech_activity is not None and np.std(speech_activity) > 1e-6:
        scores = [speech_correlation(t, speech_activity) for t in candidates]
        if max(scores) > 0.0:
            return candidates[int(np.argmax(scores))], "speech"
    energies = [motion_energy(t) for t in candidates]
    if max(energies) >= params.min_motion_energy:
        return candidates[int(np.argmax(energies))], "motion"
    return max(candidates, key=_mean_face_size), "largest"


def _track_at_hint(tracks: list[Track], frame_indices: np.ndarray, speaker: SpeakerHint) -> Track:
    where = np.flatnonzero(frame_indices == speaker.frame_index)
    if len(where) == 0:
        raise InvalidInputError(
            f"SpeakerHint frame_index {speaker.frame_index} is outside the span "
            f"(frames {int(frame_indices[0])}..{int(frame_indices[-1])})"
        )
    position = int(where[0])
    seen = [(t, t.detections[position]) for t in tracks if position in t.detections]
    if speaker.point is not None:
        x, y = speaker.point
        containing = [(t, d) for t, d in seen if d.box[0] <= x <= d.box[2] and d.box[1] <= y <= d.box[3]]
        if not containing:
            raise NoFaceError(f"no face contains the point ({x:g}, {y:g}) on frame {speaker.frame_index}")
        return min(containing, key=lambda td: td[1].area)[0]
    overlaps = [(box_iou(d.box, speaker.box), t) for t, d in seen]
    best = max(overlaps, key=lambda pair: pair[0], default=(0.0, None))
    if best[1] is None or best[0] <= 0.0:
        raise NoFaceError(f"no face overlaps the box {speaker.box} on frame {speaker.frame_index}")
    return best[1]


def unusable_reason(detection: FaceDetection, params: FaceTrackParams) -> str:
    """Why a detected face cannot be edited ("" when it can): too small, turned away, occluded."""
    landmarks = detection.landmarks
    if not np.all(np.isfinite(landmarks)):
        return "occluded"
    if geometry.inter_ocular_distance(landmarks) < params.min_iod_px:
        return "too_small"
    if abs(geometry.yaw_ratio(landmarks)) > params.max_abs_yaw:
        return "turned_away"
    if detection.score < params.min_score or geometry.fit_residual(landmarks) > params.max_fit_residual:
        return "occluded"
    return ""
