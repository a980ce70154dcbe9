"""Face track: where the speaker's face and lips are in every frame of a span.

Entry point::

    track_faces(frames: Iterable[VideoFrame], *, frame_count: int | None = None,
                speech_activity: np.ndarray | None = None,
                speaker: SpeakerHint | None = None,
                params: FaceTrackParams = FaceTrackParams(),
                cache: FrameCache | None = None,
                progress: ProgressSink = no_progress, cancel: CancelToken | None = None) -> FaceTrack

- ``frames``: the span's frames as analysis sees them (``media.FrameView.analysis_frames`` of
  ``media.read_span``: upright, square pixels, 8-bit); indices must be unique. Every coordinate of
  the track (boxes, landmarks, poses) is in those pictures; ``FrameView.to_stored`` maps it back.
- ``speech_activity``: per-frame 0..1 voice activity of the clip's own audio, one value per frame,
  used to pick the speaker (the face whose mouth moves with the voice). Without it (or when it is
  flat) the face with the most mouth motion is taken, and when no mouth moves, the largest face.
- ``speaker``: a ``SpeakerHint`` (point or box on a frame index, or a reference image) overrides
  the guess; NoFaceError when it designates no face.
- ``cache``: ``detection_cache(media_fingerprint(path), params, root)``. The expensive per-frame
  part is cached per frame index, so an overlapping span computes only its new frames; tracking,
  speaker choice and smoothing are recomputed from the detections. That part is
  ``detect_frame(image, params) -> list[FaceDetection]`` (all faces: box, HOG score, 68 landmarks,
  128-d descriptor) on anchor frames (every ``detect_every``-th frame) and wherever tracking loses
  a face, and ``track_frame`` (each face of the previous frame searched for near where it was,
  landmarks, no descriptor) on the frames between. A frame's result thus depends on the frames
  since its anchor; only results computed from an anchor on are cached (``stage.detect_frames``).

``FaceTrack`` holds, for the N frames (arrays index-aligned; see ``types.FaceTrack`` for shapes):
presence, the reason a frame is unusable ("no_face", "too_small", "turned_away", "occluded", or
"" when usable), box, raw and smoothed landmarks (68, 2), the rigid pose (2x3 similarity frame ->
canonical face), inner-lip aperture and mouth width over the inter-ocular distance, the lip shape
in the canonical frame, detection confidence, track id and descriptor.

Unusable-frame rules (``FaceTrackParams``): too small = inter-ocular distance < ``min_iod_px``;
turned away = |``yaw_ratio``| (nose tip between the jaw ends) > ``max_abs_yaw``; occluded = HOG
score < ``min_score`` or the landmarks fit a face shape badly (``fit_residual`` >
``max_fit_residual``). ``geometry`` holds the descriptor functions (``inner_lip_aperture``,
``mouth_width``, ``inter_ocular_distance``, ``yaw_ratio``, ``pose_to_canonical``, ``lip_shape``,
``landmark_jitter``) for reuse by QC and rendering.

Models: dlib's HOG detector and face_recognition_models' 68-point predictor and descriptor
network (embedded, loaded once per process); optionally FAN landmarks (``landmark_backend="fan"``)
when face-alignment and its weights are installed locally (see ``fan``). Nothing is downloaded.
"""

from dubline.stages.faces.detect import descriptor_at, detect_frame, track_frame
from dubline.stages.faces.geometry import (
    inner_lip_aperture,
    inter_ocular_distance,
    landmark_jitter,
    lip_shape,
    mouth_width,
    pose_to_canonical,
    yaw_ratio,
)
from dubline.stages.faces.stage import (
    detect_frames,
    detection_cache,
    track_faces,
    track_from_detections,
)
from dubline.stages.faces.types import (
    FaceDetection,
    FaceTrack,
    FaceTrackParams,
    SpeakerHint,
)

__all__ = [
    "FaceDetection",
    "FaceTrack",
    "FaceTrackParams",
    "SpeakerHint",
    "descriptor_at",
    "detect_frame",
    "detect_frames",
    "detection_cache",
    "inner_lip_aperture",
    "inter_ocular_distance",
    "landmark_jitter",
    "lip_shape",
    "mouth_width",
    "pose_to_canonical",
    "track_faces",
    "track_frame",
    "track_from_detections",
    "yaw_ratio",
]
