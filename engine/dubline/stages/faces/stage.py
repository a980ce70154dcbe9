"""The face-track stage: frames in, the speaker's FaceTrack out (see dubline.stages.faces)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from dubline.core.cache import FrameCache
from dubline.core.errors import InvalidInputError
from dubline.core.progress import CancelToken, ProgressSink, no_progress
from dubline.stages.faces import geometry
from dubline.stages.faces.detect import detect_frame
from dubline.stages.faces.smooth import smooth_landmarks
from dubline.stages.faces.track import (
    Track,
    box_iou,
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
    """The per-frame cache of detect_frame results for one media file (``media.media_fingerprint``)."""
    return FrameCache(STAGE, fingerprint, params.detection_key(), root)


def _detect_batch(
    batch: list[VideoFrame], params: FaceTrackParams, cache: FrameCache | None
) -> list[list[FaceDetection]]:
    found = cache.get_many(f.index for f in batch) if cache is not None else {}
    computed = {f.index: detect_frame(f.image, params) for f in batch if f.index not in found}
    if cache is not None and computed:
        cache.put_many(computed)
    found.update(computed)
    return [found[f.index] for f in batch]


def detect_frames(
    frames: Iterable[VideoFrame],
    *,
    frame_count: int | None = None,
    params: FaceTrackParams = FaceTrackParams(),
    cache: FrameCache | None = None,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> tuple[np.ndarray, list[list[FaceDetection]]]:
    """Frame indices and the detections of every frame, served from ``cache`` where present."""
    indices: list[int] = []
    detections: list[list[FaceDetection]] = []
    seen: set[int] = set()
    batch: list[VideoFrame] = []
    total = frame_count or 0

    def flush() -> None:
        if cancel is not None:
            cancel.check()
        detections.extend(_detect_batch(batch, params, cache))
        batch.clear()
        progress(STAGE, len(detections), max(total, len(detections)))

    for frame in frames:
        if frame.index in seen:
            raise InvalidInputError(f"frame index {frame.index} appears twice in the frames given to track_faces")
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
) -> FaceTrack:
    """The cheap part of track_faces: tracking, speaker choice, usability and smoothing."""
    frame_indices = np.asarray(frame_indices, dtype=np.int64)
    count = len(frame_indices)
    if count == 0:
        raise InvalidInputError("track_faces got no frames")
    if len(detections) != count:
        raise InvalidInputError(f"{len(detections)} detection lists for {count} frames")
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
    return _assemble(frame_indices, detections, chosen, how, params)


def _jumps(boxes: np.ndarray, params: FaceTrackParams) -> np.ndarray:
    """(N,) bool: the face's box barely overlaps the previous frame's (a cut to another shot of
    the same person, re-acquired by identity), so smoothing must not blend across it."""
    jumps = np.zeros(len(boxes), dtype=bool)
    for position in range(1, len(boxes)):
        if np.isfinite(boxes[position]).all() and np.isfinite(boxes[position - 1]).all():
            jumps[position] = box_iou(tuple(boxes[position - 1]), tuple(boxes[position])) < params.min_iou
    return jumps


def _assemble(
    frame_indices: np.ndarray,
    detections: list[list[FaceDetection]],
    chosen: Track | None,
    how: str,
    params: FaceTrackParams,
) -> FaceTrack:
    count = len(frame_indices)
    present = np.zeros(count, dtype=bool)
    reason = np.full(count, "no_face", dtype="<U11")
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
        descriptors[position] = detection.descriptor
        confidence[position] = detection.score
        track_id[position] = chosen.track_id

    # Only usable frames are smoothed together, so a covered or turned face does not drag its
    # neighbours; unusable-but-present frames keep their raw fit (later stages skip them anyway).
    usable = reason == ""
    smoothed, poses = smooth_landmarks(raw, usable, params, breaks=_jumps(boxes, params))
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
