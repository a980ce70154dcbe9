"""Data of the face-track stage: parameters, per-frame detections, the speaker hint, the track."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dubline.core.errors import InvalidInputError
from dubline.stages.media import read_image

#: Bump when what the per-frame cache stores changes for the same parameters, so cached
#: detections expire. 2: detections are of the analysis view (upright, square pixels) on the
#: conform grid. 3: frames between detections are tracked, descriptors only on detections.
DETECTION_VERSION = 3

#: Why a frame of the speaker's track is not usable ("" when it is). "unanalysed": the frame was
#: outside what a span-proportional analysis looked at (see dubline.pipeline.analysis).
REASONS = ("no_face", "too_small", "turned_away", "occluded", "unanalysed")

LANDMARK_BACKENDS = ("dlib", "fan")


@dataclass(frozen=True)
class FaceTrackParams:
    """Parameters of the face-track stage.

    Only the detection fields (see ``detection_key``) decide what ``detect_frame`` returns and so
    key the per-frame cache; the rest (usability rules, tracking, smoothing) are recomputed from
    cached detections on every call, which is cheap.
    """

    # Detection: HOG runs on the frame scaled so its longer side is at most detect_max_side (the
    # HOG window finds faces of about 80 px and up at that scale, so 960 finds faces from about
    # 160 px high in 1080p); landmarks and descriptors are then computed at full resolution.
    detect_max_side: int = 960
    detect_upsample: int = 0
    # HOG score threshold. Below 0 so a face with its mouth or chin covered (scores about -0.2 to
    # -0.5) is still found, tracked and marked "occluded" rather than lost.
    detect_threshold: float = -0.6
    landmark_backend: str = "dlib"  # "dlib" (embedded 68-point predictor) or "fan" (face-alignment)
    models_dir: str | None = None  # for "fan": defaults to dubline.core.models.model_dir()
    # Tracking between detections (stage.detect_frames): the whole frame is searched, and identity
    # descriptors computed, only on frames whose index is a multiple of detect_every (anchors) and
    # where a tracked face is lost; on the frames between, each face is searched for only near where
    # it was on the previous frame: its box grown by track_margin of its size on each side, scaled so
    # the face is about track_face_px wide (never finer than the whole-frame search's scale). So a
    # frame's result depends only on the frames since its anchor. detect_every=1: every frame is a
    # detection (no tracking, a descriptor on every frame).
    # A face found again with a HOG score below track_min_score (a covered or turning face scores
    # near 0) is searched for in the whole frame instead, so the usability rules judge it by the
    # whole-frame search's score. A cut (the frame's thumbnail changes by more than cut_threshold
    # grey levels on average) also starts a new whole-frame search.
    detect_every: int = 24
    track_margin: float = 0.5
    track_face_px: int = 100
    track_min_score: float = 0.5
    cut_threshold: float = 16.0

    # Usability of a speaker frame (first failing rule gives the reason).
    min_iod_px: float = 24.0  # inter-ocular distance below this: "too_small"
    max_abs_yaw: float = 0.45  # |yaw_ratio| above this: "turned_away" (0.45 ~ 40 degrees)
    min_score: float = 0.0  # HOG score below this: "occluded" (a full frontal face scores > 0.5)
    max_fit_residual: float = 0.2  # landmark shape this far from a face (in IODs): "occluded"; real fits < 0.11

    # Tracking: continue a track by overlap, re-acquire it (after a cut or a gap) by identity.
    min_iou: float = 0.3  # overlap with the track's last box needed to continue it
    max_gap_frames: int = 2  # frames a track may miss and still be continued by overlap
    continue_distance: float = 0.7  # descriptor distance allowed when the boxes overlap
    same_person_distance: float = 0.5  # descriptor distance to re-acquire or merge tracks
    reference_distance: float = 0.6  # a reference image matches a track within this (dlib's same-person bound)

    # Speaker choice without a hint.
    min_track_share: float = 0.25  # tracks seen in fewer frames than this share of the longest are not candidates
    min_motion_energy: float = 0.01  # mean |d aperture| below this is "not moving": fall back to the largest face

    # Savitzky-Golay smoothing (frames): the rigid pose from the eye/nose anchors gets the longer
    # window, the face shape in the canonical frame (the lips) a short one so speech is kept.
    pose_window: int = 9
    pose_polyorder: int = 1
    shape_window: int = 5
    polyorder: int = 2

    def __post_init__(self) -> None:
        if self.landmark_backend not in LANDMARK_BACKENDS:
            raise InvalidInputError(
                f"landmark_backend must be one of {LANDMARK_BACKENDS}, got {self.landmark_backend!r}"
            )
        if self.detect_max_side < 64:
            raise InvalidInputError(f"detect_max_side must be at least 64, got {self.detect_max_side}")
        if self.detect_every < 1:
            raise InvalidInputError(f"detect_every must be at least 1 frame, got {self.detect_every}")
        if self.track_face_px < 80:  # dlib's HOG window: smaller faces are not found at all
            raise InvalidInputError(f"track_face_px must be at least 80, got {self.track_face_px}")
        if self.track_margin <= 0:
            raise InvalidInputError(f"track_margin must be positive, got {self.track_margin}")
        for name in ("pose_window", "shape_window"):
            window = getattr(self, name)
            if window < 1 or window % 2 == 0:
                raise InvalidInputError(f"{name} must be a positive odd number of frames, got {window}")
        for name in ("polyorder", "pose_polyorder"):
            if getattr(self, name) < 0:
                raise InvalidInputError(f"{name} must be >= 0, got {getattr(self, name)}")

    def detection_key(self) -> dict[str, Any]:
        """The parameters that decide a frame's detections (detect_frame's, or the tracking's that
        continues from its anchor): the per-frame cache key."""
        fields = asdict(self)
        names = ("detect_max_side", "detect_upsample", "detect_threshold", "landmark_backend", "detect_every",
                 "track_margin", "track_face_px", "track_min_score", "cut_threshold")
        key = {name: fields[name] for name in names}
        key["version"] = DETECTION_VERSION
        return key


@dataclass(frozen=True, eq=False)
class FaceDetection:
    """One face found in one frame (full-resolution pixel coordinates).

    A face found by searching the whole frame has an identity ``descriptor``; a face tracked from
    the previous frame has none and says which face of that frame's list it continues.
    """

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float  # HOG detection score (higher is surer; about 0..3 for real faces)
    landmarks: np.ndarray  # (68, 2) float32
    descriptor: np.ndarray | None  # (128,) float32, dlib's face-recognition embedding; None when tracked
    tracked_from: int | None = None  # position in the previous frame's detections this face continues
    search_window: tuple[int, int, int, int, float] | None = None  # where tracking found it (detect.track_frame)

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


@dataclass(frozen=True, eq=False)
class SpeakerHint:
    """Tells track_faces who the speaker is, instead of guessing from the audio.

    Give exactly one of: ``point`` (x, y) or ``box`` (x0, y0, x1, y1) on the frame whose stream
    index is ``frame_index`` (the face containing the point / overlapping the box most), in the
    picture as the editor sees it (upright, square pixels: ``media.FrameView``), or
    ``reference_image`` (an RGB uint8 picture of the person; nearest face descriptor).
    """

    frame_index: int | None = None
    point: tuple[float, float] | None = None
    box: tuple[float, float, float, float] | None = None
    reference_image: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        given = [name for name in ("point", "box", "reference_image") if getattr(self, name) is not None]
        if len(given) != 1:
            raise InvalidInputError(
                f"SpeakerHint needs exactly one of point, box or reference_image, got {given or 'none'}"
            )
        if given[0] in ("point", "box") and self.frame_index is None:
            raise InvalidInputError(f"SpeakerHint by {given[0]} needs the frame_index it refers to")
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if not (x1 > x0 and y1 > y0):
                raise InvalidInputError(f"SpeakerHint box must have x1 > x0 and y1 > y0, got {self.box}")

    @classmethod
    def parse(cls, text: str, field_name: str = "--speaker") -> SpeakerHint:
        """``X,Y@FRAME`` (a point) or ``X0,Y0,X1,Y1@FRAME`` (a box) on a source frame, or the path of
        a reference image of the person (read now)."""
        match = re.fullmatch(r"\s*([\d.,\s]+)@(\d+)\s*", text)
        if match:
            numbers = [float(v) for v in match.group(1).split(",") if v.strip()]
            frame = int(match.group(2))
            if len(numbers) == 2:
                return cls(frame_index=frame, point=(numbers[0], numbers[1]))
            if len(numbers) == 4:
                return cls(frame_index=frame, box=(numbers[0], numbers[1], numbers[2], numbers[3]))
            raise InvalidInputError(f"{field_name} {text!r}: give X,Y@FRAME or X0,Y0,X1,Y1@FRAME")
        path = Path(text)
        if not path.is_file():
            raise InvalidInputError(f"{field_name} {text!r} is neither X,Y@FRAME, X0,Y0,X1,Y1@FRAME nor an image file")
        return cls(reference_image=read_image(path))

    def key(self) -> str:
        """A stable text key of the hint (an image by a hash of its pixels), for caches."""
        if self.reference_image is not None:
            digest = hashlib.blake2b(np.ascontiguousarray(self.reference_image).tobytes(), digest_size=12).hexdigest()
            return f"image:{digest}"
        return f"{self.point or self.box}@{self.frame_index}"


@dataclass(frozen=True, eq=False)
class FaceTrack:
    """The speaker's face over the N frames of a span; every array is index-aligned on axis 0.

    Absent values are NaN (float arrays) or -1 (track_id). ``present`` says the speaker's face
    was found; ``reason`` says why a frame is unusable ("no_face", "too_small", "turned_away",
    "occluded") or is "" when usable; later stages pass non-usable frames through untouched.
    """

    frame_indices: np.ndarray  # (N,) int64 stream frame indices
    present: np.ndarray  # (N,) bool
    reason: np.ndarray  # (N,) str ('<U11'), one of REASONS or ""
    boxes: np.ndarray  # (N, 4) float32 x0, y0, x1, y1
    landmarks_raw: np.ndarray  # (N, 68, 2) float32 as detected
    landmarks: np.ndarray  # (N, 68, 2) float32 smoothed
    pose: np.ndarray  # (N, 2, 3) float32 similarity frame -> canonical face (geometry.CANONICAL_68)
    aperture: np.ndarray  # (N,) float32 inner-lip aperture / IOD (smoothed landmarks)
    mouth_width: np.ndarray  # (N,) float32 mouth-corner distance / IOD (smoothed landmarks)
    lip_shape: np.ndarray  # (N, 20, 2) float32 points 48..67 in the canonical frame
    inter_ocular: np.ndarray  # (N,) float32 IOD in pixels (smoothed landmarks)
    yaw: np.ndarray  # (N,) float32 geometry.yaw_ratio of the raw landmarks
    confidence: np.ndarray  # (N,) float32 detection score
    track_id: np.ndarray  # (N,) int32, the speaker's track id or -1
    descriptors: np.ndarray  # (N, 128) float32; NaN on frames whose face was tracked, not detected
    face_count: np.ndarray  # (N,) int32 faces detected in the frame (anyone's)
    speaker_track_id: int  # -1 when no face was found at all
    speaker_choice: str  # how the speaker was chosen: see track.choose_speaker

    def __len__(self) -> int:
        return len(self.frame_indices)

    @property
    def usable(self) -> np.ndarray:
        """(N,) bool: frames later stages may modify."""
        return self.reason == ""
