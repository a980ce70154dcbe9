"""The ``retrieval`` backend: the speaker's own mouths, re-timed to the dub.

prepare: build the mouth library from every usable frame of the source (and ``--library``
files) and select one library frame per output frame (``select.select_frames``).
patches: stream the span's frames; for each chunk, read just the chosen library frames (by runs,
keeping only a lower-face crop of each so memory stays flat in span length) and transfer the
chosen mouth onto the target frame (``transfer.transfer_mouth``).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from dubline.core import timing
from dubline.core.errors import InvalidInputError, NoFaceError
from dubline.stages import media
from dubline.stages.backends.base import BackendInfo, BackendJob, MouthPatch
from dubline.stages.backends.retrieval.select import (
    KEEP_OWN,
    LibraryFeatures,
    SelectionParams,
    SelectionTargets,
    select_frames,
)
from dubline.stages.backends.retrieval.transfer import (
    TransferParams,
    lower_face_roi,
    transfer_mouth,
)
from dubline.stages.faces import FaceTrack

#: Output frames whose library mouths are gathered together: bounds memory, keeps reads in runs.
CHUNK_FRAMES = 32
#: Library frames this close together are decoded through rather than seeked between.
READ_THROUGH_GAP = 8
_JAW_SIDES = np.arange(2, 15)
_NOSE_BOTTOM = 33
_OUTER_LIP = np.arange(48, 60)


@dataclass(frozen=True)
class RetrievalPlan:
    rows_clip: np.ndarray  # (N,) which library clip each library row comes from
    rows_frame: np.ndarray  # (N,) frame index within that clip
    selection: np.ndarray  # (T,) library row per output frame, or KEEP_OWN


def pose_features(faces: FaceTrack) -> np.ndarray:
    """(N, 3): roll (radians), yaw proxy, log face size, from the similarity to the canonical face."""
    a, b = faces.pose[:, 0, 0].astype(np.float64), faces.pose[:, 1, 0].astype(np.float64)
    to_canonical_scale = np.hypot(a, b)
    roll = -np.arctan2(b, a)
    return np.stack([roll, faces.yaw.astype(np.float64), -np.log(to_canonical_scale)], axis=1)


def _library_features(job: BackendJob) -> tuple[LibraryFeatures, np.ndarray, np.ndarray]:
    parts, clips, frames = [], [], []
    for clip_number, clip in enumerate(job.library):
        usable = np.flatnonzero(clip.faces.usable & np.isfinite(clip.lower_face_luma))
        if not len(usable):
            continue
        poses = pose_features(clip.faces)
        parts.append(
            (
                clip.faces.aperture[usable],
                clip.faces.mouth_width[usable],
                poses[usable],
                clip.lower_face_luma[usable],
                np.r_[False, np.diff(usable) == 1],
            )
        )
        clips.append(np.full(len(usable), clip_number))
        frames.append(usable)
    if not parts:
        raise NoFaceError("no usable face of the speaker in the source or library files: nothing to build mouths from")
    columns = [np.concatenate(column) for column in zip(*parts)]
    features = LibraryFeatures(*(c.astype(np.float64) if c.dtype != bool else c for c in columns))
    return features, np.concatenate(clips), np.concatenate(frames)


def _params(options: Mapping[str, Any]) -> tuple[SelectionParams, TransferParams]:
    unknown = set(options) - {"selection", "transfer"}
    if unknown:
        raise InvalidInputError(f"retrieval has no option {', '.join(sorted(unknown))}; it takes selection and transfer")
    try:
        return SelectionParams(**options.get("selection", {})), TransferParams(**options.get("transfer", {}))
    except TypeError as error:
        raise InvalidInputError(f"retrieval options: {error}") from None


class RetrievalBackend:
    info = BackendInfo(
        name="retrieval",
        description="weight-free: the speaker's own mouth images from their footage, re-timed to the dub",
        weights=(),
        prefers_gpu=False,
        options={"selection": "SelectionParams fields", "transfer": "TransferParams fields"},
    )

    def preflight(self, options: Mapping[str, Any]) -> None:
        """The options are tuning overrides (dicts of SelectionParams / TransferParams fields)."""
        _params(options)

    def prepare(self, job: BackendJob) -> RetrievalPlan:
        library, rows_clip, rows_frame = _library_features(job)
        first, end = job.span
        faces = job.source.faces
        span_pose = pose_features(faces)[first:end]
        span_luma = job.source.lower_face_luma[first:end]
        targets = SelectionTargets(
            aperture=job.target_aperture.astype(np.float64),
            width=job.target_width.astype(np.float64),
            closure=job.dub.closure.astype(np.float64),
            voiced=job.dub.voice_activity.astype(np.float64),
            # Frames without a face pass through; any finite pose/luma keeps the costs defined.
            pose=np.nan_to_num(span_pose, nan=0.0),
            luma=np.nan_to_num(span_luma, nan=float(np.nanmean(library.luma))),
            own_aperture=faces.aperture[first:end].astype(np.float64),
        )
        params, _ = _params(job.options)
        selection = select_frames(library, targets, params, job.expression)
        return RetrievalPlan(rows_clip, rows_frame, selection)

    def patches(
        self, job: BackendJob, plan: RetrievalPlan, frames: Iterable[media.VideoFrame]
    ) -> Iterator[tuple[media.VideoFrame, MouthPatch]]:
        first, _ = job.span
        faces = job.source.faces
        _, transfer_params = _params(job.options)
        frames = iter(frames)
        while True:
            if job.cancel is not None:
                job.cancel.check()
            chunk = list(islice(frames, CHUNK_FRAMES))
            if not chunk:
                return
            wanted = {int(plan.selection[f.index - first]) for f in chunk} - {KEEP_OWN}
            crops = _gather_crops(job, plan, sorted(wanted), transfer_params)
            for frame in chunk:
                t = frame.index - first
                row = int(plan.selection[t])
                reason = str(faces.reason[frame.index])
                if reason:
                    yield frame, MouthPatch(None, None, reason)
                    continue
                if row == KEEP_OWN:
                    yield frame, MouthPatch(None, None, "dub silent, own mouth at rest")
                    continue
                crop, offset, points = crops[row]
                target_points = faces.landmarks[frame.index].astype(np.float64)
                result = transfer_mouth(
                    crop, points - offset, frame.image.shape, target_points,
                    float(job.target_aperture[t]), transfer_params,
                )
                image = frame.image.copy()
                x0, y0, x1, y1 = result.roi
                image[y0:y1, x0:x1] = result.crop
                yield frame, MouthPatch(image, matte_landmarks(target_points, result.landmarks))


def matte_landmarks(target: np.ndarray, transferred: np.ndarray) -> np.ndarray:
    """Target landmarks whose jaw line and outer lips reach as far as either face's, so a lower
    library chin is not cut off, a lower target chin is not left showing beneath the new one, and
    the matte's full-weight lips cover both mouths (neither shows through the other)."""
    points = target.copy()
    nose = target[_NOSE_BOTTOM]
    far = np.linalg.norm(transferred[_JAW_SIDES] - nose, axis=1) > np.linalg.norm(target[_JAW_SIDES] - nose, axis=1)
    points[_JAW_SIDES[far]] = transferred[_JAW_SIDES[far]]
    centre = target[_OUTER_LIP].mean(axis=0)
    wider = np.linalg.norm(transferred[_OUTER_LIP] - centre, axis=1) > np.linalg.norm(target[_OUTER_LIP] - centre, axis=1)
    points[_OUTER_LIP[wider]] = transferred[_OUTER_LIP[wider]]
    return points


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """[first, end) ranges covering sorted ``indices``, merging gaps up to READ_THROUGH_GAP."""
    runs: list[tuple[int, int]] = []
    for index in indices:
        if runs and index - runs[-1][1] < READ_THROUGH_GAP:
            runs[-1] = (runs[-1][0], index + 1)
        else:
            runs.append((index, index + 1))
    return runs


def _gather_crops(
    job: BackendJob, plan: RetrievalPlan, rows: list[int], params: TransferParams
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Lower-face crops of the chosen library rows: row -> (crop, crop origin xy, landmarks)."""
    by_clip: dict[int, dict[int, int]] = {}
    for row in rows:
        by_clip.setdefault(int(plan.rows_clip[row]), {})[int(plan.rows_frame[row])] = row
    crops: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for clip_number, frame_rows in by_clip.items():
        clip = job.library[clip_number]
        rate = clip.info.video.rate
        for run_first, run_end in _runs(sorted(frame_rows)):
            for frame in media.read_span(clip.path, timing.frames_to_range(run_first, run_end, rate)):
                row = frame_rows.get(frame.index)
                if row is None:
                    continue
                points = clip.faces.landmarks[frame.index].astype(np.float64)
                iod = float(clip.faces.inter_ocular[frame.index])
                # Margin beyond the warp's own ROI so rotation/scale never samples past the crop.
                x0, y0, x1, y1 = lower_face_roi(points, frame.image.shape, (params.roi_margin + 0.5) * iod)
                crops[row] = (frame.image[y0:y1, x0:x1].copy(), np.array([x0, y0], np.float64), points)
    return crops


BACKEND = RetrievalBackend()
