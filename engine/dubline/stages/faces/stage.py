"""The face-track stage: frames in, the speaker's FaceTrack out (see dubline.stages.faces)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from dubline.core.cache import FrameCache
from dubline.core.errors import InvalidInputError
from dubline.core.progress import CancelToken, ProgressSink, no_progress
from dubline.stages.faces import geometry
from dubline.stages.faces.detect import detect_frame, track_frame
from dubline.stages.faces.smooth import smooth_landmarks
from dubline.stages.faces.track import (
    Track,
    build_tracks,
    choose_speaker,
    unusable_reason,
)
from dubline.stages.faces.types import (
    FaceDetection,
    FaceTrack,
    FaceTrackParams,
    SpeakerHint,
)
from dubline.stages.media import VideoFrame

STAGE = "faces.detect"
#: Frames per cache write / progress report / cancel check.
BATCH = 16


def detection_cache(fingerprint: str, params: FaceTrackParams = FaceTrackParams(), root: Path | None = None) -> FrameCache:
    """The per-frame cache of detect_frames' results for one media file (``media.media_fingerprint``).
    Whoever fills it decodes frames one way for it: the pipeline's analysis reads with
    ``media.read_span(..., exact_colour=False)``."""
    return FrameCache(STAGE, fingerprint, params.detection_key(), root)


#: Width of the grey thumbnail compared between consecutive frames to notice cuts.
GLANCE_WIDTH = 32


def glance(image: np.ndarray) -> np.ndarray:
    """A tiny grey float thumbnail of a frame (for noticing cuts)."""
    height, width = image.shape[:2]
    step = max(1, min(height, width) // (4 * GLANCE_WIDTH))
    sample = np.ascontiguousarray(image[::step, ::step])
    size = (GLANCE_WIDTH, max(1, round(height * GLANCE_WIDTH / width)))
    return cv2.resize(sample, size, interpolation=cv2.INTER_AREA).astype(np.float32).mean(axis=2)


class _Chain:
    """Where tracking stands: the last frame's index, faces and glance, and whether its result
    follows only from frames since an anchor (then it is the same whichever frames came before)."""

    def __init__(self) -> None:
        self.index: int | None = None
        self.faces: list[FaceDetection] = []
        self.image: np.ndarray | None = None  # the last frame (its glance is taken only when needed)
        self.glance: np.ndarray | None = None  # the last frame's glance, once taken
        self.anchored = False

    def follows(self, index: int) -> bool:
        return self.index is not None and self.index == index - 1


def _analyse_frame(frame: VideoFrame, chain: _Chain, params: FaceTrackParams) -> tuple[list[FaceDetection], bool]:
    """The faces of ``frame`` and whether the result is anchored (cacheable)."""
    anchor = frame.index % params.detect_every == 0
    continues = chain.follows(frame.index)
    faces = None
    seen = None
    if continues and not anchor and chain.faces and chain.image is not None:
        before = chain.glance if chain.glance is not None else glance(chain.image)
        seen = glance(frame.image)
        if float(np.abs(seen - before).mean()) <= params.cut_threshold:
            faces = track_frame(frame.image, chain.faces, params)
    if faces is None:
        faces = detect_frame(frame.image, params)
    chain.glance = seen
    return faces, anchor or (continues and chain.anchored)


def _detect_batch(
    batch: list[VideoFrame], chain: _Chain, params: FaceTrackParams, cache: FrameCache | None,
    cancel: CancelToken | None, timings: dict[str, float] | None,
) -> list[list[FaceDetection]]:
    found = cache.get_many(f.index for f in batch) if cache is not None else {}
    fresh: dict[int, list[FaceDetection]] = {}
    results = []
    try:
        for frame in batch:
            if frame.index in found:
                faces, anchored = found[frame.index], True  # only anchored results are ever stored
                chain.glance = None  # none taken of this frame
            else:
                if cancel is not None:
                    cancel.check()
                started = time.perf_counter()
                faces, anchored = _analyse_frame(frame, chain, params)
                if timings is not None:
                    kind = "tracked" if faces and faces[0].tracked_from is not None else "detected"
                    timings[f"faces.{kind}"] = timings.get(f"faces.{kind}", 0.0) + time.perf_counter() - started
                    timings[f"faces.{kind}.frames"] = timings.get(f"faces.{kind}.frames", 0.0) + 1
                if anchored:
                    fresh[frame.index] = faces
            chain.index, chain.faces, chain.anchored = frame.index, faces, anchored
            chain.image = frame.image
            results.append(faces)
    finally:  # a cancelled batch keeps what it computed
        if cache is not None and fresh:
            cache.put_many(fresh)
    return results


def detect_frames(
    frames: Iterable[VideoFrame],
    *,
    frame_count: int | None = None,
    params: FaceTrackParams = FaceTrackParams(),
    cache: FrameCache | None = None,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[np.ndarray, list[list[FaceDetection]]]:
    """Frame indices and the detections of every frame, served from ``cache`` where present.

    Frames come in index order (gaps allowed). Anchors (index a multiple of ``detect_every``), a
    frame after a gap, a frame after one without faces and a frame where tracking lost a face are
    searched whole (``detect_frame``); the others track the previous frame's faces
    (``track_frame``). A result is stored in ``cache`` only when it is anchored: computed along an
    unbroken run of frames from an anchor, so what the cache holds for a frame does not depend on
    which span asked first. Starting a read at an anchor makes every frame of it cacheable.
    ``timings`` (optional) accumulates seconds and frame counts of ``faces.detected`` and
    ``faces.tracked`` frames.
    """
    indices: list[int] = []
    detections: list[list[FaceDetection]] = []
    seen: set[int] = set()
    batch: list[VideoFrame] = []
    chain = _Chain()
    total = frame_count or 0

    def flush() -> None:
        if cancel is not None:
            cancel.check()
        detections.extend(_detect_batch(batch, chain, params, cache, cancel, timings))
        batch.clear()
        progress(STAGE, len(detections), max(total, len(detections)))

    for frame in frames:
        if frame.index in seen:
            raise InvalidInputError(f"frame index {frame.index} appears twice in the frames given to track_faces")
        if indices and frame.index < indices[-1]:
            raise InvalidInputError(f"frame {frame.index} comes after frame {indices[-1]}: give frames in index order")
        seen.add(frame.index)
        indices.append(frame.index)
        batch.append(frame)
        if len(batch) == BATCH:
            flush()
    if batch:
        flush()
    return np.array(indices, dtype=np.int64), detections


def track_faces(
    frames: Iterable[VideoFrame],
    *,
    frame_count: int | None = None,
    speech_activity: np.ndarray | None = None,
    speaker: SpeakerHint | None = None,
    params: FaceTrackParams = FaceTrackParams(),
    cache: FrameCache | None = None,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> FaceTrack:
    """The speaker's face over ``frames`` (see the package docstring)."""
    indices, detections = detect_frames(
        frames, frame_count=frame_count, params=params, cache=cache, progress=progress, cancel=cancel
    )
    return track_from_detections(indices, detections, speech_activity=speech_activity, speaker=speaker, params=params)


def track_from_detections(
    frame_indices: np.ndarray,
    detections: list[list[FaceDetection]],
    *,
    speech_activity: np.ndarray | None = None,
    speaker: SpeakerHint | None = None,
    params: FaceTrackParams = FaceTrackParams(),
    analysed: np.ndarray | None = None,
) -> FaceTrack:
    """The cheap part of track_faces: tracking, speaker choice, usability and smoothing.

    ``analysed`` (one bool per frame; default all) marks the frames that were looked at; the others
    must have no detections and get the reason "unanalysed" instead of "no_face"."""
    frame_indices = np.asarray(frame_indices, dtype=np.int64)
    count = len(frame_indices)
    if count == 0:
        raise InvalidInputError("track_faces got no frames")
    if len(detections) != count:
        raise InvalidInputError(f"{len(detections)} detection lists for {count} frames")
    if analysed is not None:
        analysed = np.asarray(analysed, dtype=bool)
        if analysed.shape != (count,):
            raise InvalidInputError(f"analysed has shape {analysed.shape}; one value per frame ({count}) is needed")
        if any(detections[position] for position in np.flatnonzero(~analysed)):
            raise InvalidInputError("a frame marked as not analysed has detections")
    activity = None
    if speech_activity is not None:
        activity = np.asarray(speech_activity, dtype=np.float64).reshape(-1)
        if len(activity) != count:
            raise InvalidInputError(f"speech_activity has {len(activity)} values for {count} frames; one per frame is needed")
    reference = None
    if speaker is not None and speaker.reference_image is not None:
        faces = detect_frame(speaker.reference_image, params)
        reference = faces[0].descriptor if faces else None

    tracks = build_tracks(detections, params)
    chosen, how = choose_speaker(tracks, frame_indices, activity, speaker, reference, params)
    track = _assemble(frame_indices, detections, chosen, how, params)
    if analysed is not None:
        track.reason[~analysed] = "unanalysed"
    return track


def _breaks(frame_indices: np.ndarray, boxes: np.ndarray, params: FaceTrackParams) -> np.ndarray:
    """(N,) bool: smoothing must not blend across this frame and the one before it: frames are
    not consecutive in the file, or the face's box barely overlaps the previous frame's (a cut to
    another shot of the same person, re-acquired by identity)."""
    breaks = np.zeros(len(boxes), dtype=bool)
    if len(boxes) < 2:
        return breaks
    before, after = boxes[:-1].astype(np.float64), boxes[1:].astype(np.float64)
    width = np.minimum(before[:, 2], after[:, 2]) - np.maximum(before[:, 0], after[:, 0])
    height = np.minimum(before[:, 3], after[:, 3]) - np.maximum(before[:, 1], after[:, 1])
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    union = np.prod(before[:, 2:] - before[:, :2], axis=1) + np.prod(after[:, 2:] - after[:, :2], axis=1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    both = np.isfinite(before).all(axis=1) & np.isfinite(after).all(axis=1)
    breaks[1:] = (both & (iou < params.min_iou)) | (np.diff(frame_indices) != 1)
    return breaks


def _assemble(
    frame_indices: np.ndarray,
    detections: list[list[FaceDetection]],
    chosen: Track | None,
    how: str,
    params: FaceTrackParams,
) -> FaceTrack:
    count = len(frame_indices)
    present = np.zeros(count, dtype=bool)
    reason = np.full(count, "no_face", dtype="<U11")  # every REASON fits
    boxes = np.full((count, 4), np.nan, dtype=np.float32)
    raw = np.full((count, 68, 2), np.nan, dtype=np.float32)
    descriptors = np.full((count, 128), np.nan, dtype=np.float32)
    confidence = np.full(count, np.nan, dtype=np.float32)
    track_id = np.full(count, -1, dtype=np.int32)
    for position, detection in (chosen.detections.items() if chosen is not None else ()):
        present[position] = True
        reason[position] = unusable_reason(detection, params)
        boxes[position] = detection.box
        raw[position] = detection.landmarks
        if detection.descriptor is not None:
            descriptors[position] = detection.descriptor
        confidence[position] = detection.score
        track_id[position] = chosen.track_id

    # Only usable frames are smoothed together, so a covered or turned face does not drag its
    # neighbours; unusable-but-present frames keep their raw fit (later stages skip them anyway).
    usable = reason == ""
    smoothed, poses = smooth_landmarks(raw, usable, params, breaks=_breaks(frame_indices, boxes, params))
    for position in np.flatnonzero(present & ~usable):
        smoothed[position] = raw[position]
        poses[position] = geometry.pose_to_canonical(raw[position])
    aperture = np.full(count, np.nan)
    width = np.full(count, np.nan)
    iod = np.full(count, np.nan)
    yaw = np.full(count, np.nan)
    lips = np.full((count, 20, 2), np.nan)
    if present.any():
        aperture[present] = geometry.inner_lip_aperture(smoothed[present])
        width[present] = geometry.mouth_width(smoothed[present])
        iod[present] = geometry.inter_ocular_distance(smoothed[present])
        yaw[present] = geometry.yaw_ratio(raw[present])
        for position in np.flatnonzero(present):
            lips[position] = geometry.lip_shape(smoothed[position], poses[position])
    return FaceTrack(
        frame_indices=frame_indices,
        present=present,
        reason=reason,
        boxes=boxes,
        landmarks_raw=raw,
        landmarks=smoothed.astype(np.float32),
        pose=poses.astype(np.float32),
        aperture=aperture.astype(np.float32),
        mouth_width=width.astype(np.float32),
        lip_shape=lips.astype(np.float32),
        inter_ocular=iod.astype(np.float32),
        yaw=yaw.astype(np.float32),
        confidence=confidence,
        track_id=track_id,
        descriptors=descriptors,
        face_count=np.array([len(d) for d in detections], dtype=np.int32),
        speaker_track_id=chosen.track_id if chosen is not None else -1,
        speaker_choice=how,
    )
