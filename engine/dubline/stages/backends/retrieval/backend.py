"""The ``retrieval`` backend: the speaker's own mouths, re-timed to the dub.

prepare: build the mouth library from every usable frame of the source (and ``--library``
files) and select one library frame per output frame (``select.select_frames``).
patches: stream the span's frames; for each window of output frames whose chosen library mouths fit
a memory budget, read just those library frames (one forward pass per clip, keeping only a
lower-face crop of each, so memory stays flat in span length), and transfer each frame's chosen
mouth onto it (``transfer.transfer_mouth``) as the frame arrives.

The transfer works on upright, square-pixel crops in the face track's coordinates (each clip's
``FrameView``: exact for rotations and flips, resampled only for an anamorphic clip), at the
target's bit depth; the result is put back on the target's stored grid, so a sideways phone clip
or an anamorphic one gets the same mouth as an upright one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from dubline.core.errors import InvalidInputError, NoFaceError
from dubline.stages import media
from dubline.stages.backends.base import DUB_SILENT_REASON, BackendInfo, BackendJob, MouthPatch
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

#: Library crops held at once (bytes): the crops of as many coming output frames as fit are read
#: in one pass over each library clip (a 1080p lower-face crop is about 0.8 MB).
CROP_BUDGET_BYTES = 256 * 2**20
_JAW_SIDES = np.arange(2, 15)
_NOSE_BOTTOM = 33


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
        view = job.source.view
        _, transfer_params = _params(job.options)
        library = _LibraryCrops(job, plan, transfer_params)
        for frame in frames:
            if job.cancel is not None:
                job.cancel.check()
            t = frame.index - first
            row = int(plan.selection[t])
            reason = str(faces.reason[frame.index])
            if reason:
                yield frame, MouthPatch(None, None, reason)
                continue
            if row == KEEP_OWN:
                yield frame, MouthPatch(None, None, DUB_SILENT_REASON)
                continue
            crop, offset, points = library.crop(t, row, frame.image.dtype)
            target_points = faces.landmarks[frame.index].astype(np.float64)
            result = transfer_mouth(
                crop, points - offset, view.display_shape, target_points,
                float(job.target_aperture[t]), transfer_params,
            )
            stored_crop, (x0, y0, x1, y1) = view.stored_region(result.crop, result.roi, frame.image.shape)
            image = frame.image.copy()
            image[y0:y1, x0:x1] = stored_crop
            yield frame, MouthPatch(image, view.to_stored(matte_landmarks(target_points, result.landmarks)))


def matte_landmarks(target: np.ndarray, transferred: np.ndarray) -> np.ndarray:
    """Target landmarks whose jaw line reaches as far as either face's, so a lower library chin
    is not cut off and a lower target chin is not left showing beneath the new one."""
    points = target.copy()
    nose = target[_NOSE_BOTTOM]
    far = np.linalg.norm(transferred[_JAW_SIDES] - nose, axis=1) > np.linalg.norm(target[_JAW_SIDES] - nose, axis=1)
    points[_JAW_SIDES[far]] = transferred[_JAW_SIDES[far]]
    return points


class _LibraryCrops:
    """The lower-face crops of the library frames the span's output frames were given.

    The span is cut into windows of consecutive output frames whose distinct library frames' crops
    fit in CROP_BUDGET_BYTES; entering a window, its missing crops are read in one forward pass per
    library clip (``media.read_frames``: a long GOP is decoded once, not once per frame), and
    crops no longer needed are dropped. Memory stays flat in span length.
    """

    def __init__(self, job: BackendJob, plan: RetrievalPlan, params: TransferParams) -> None:
        self._job, self._plan, self._params = job, plan, params
        self._crops: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._windows = _windows(plan.selection, [self._crop_bytes(int(row)) for row in range(len(plan.rows_frame))]
                                 if len(plan.rows_frame) else [])
        self._window_end = 0

    def crop(self, t: int, row: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(crop, crop origin xy, landmarks) of library ``row`` for output frame ``t``: upright and
        square-pixel in the clip's analysis view, in ``dtype`` (the target's depth)."""
        if t >= self._window_end:
            start, self._window_end = next((w for w in self._windows if w[0] <= t < w[1]))
            rows = {int(r) for r in self._plan.selection[start : self._window_end]} - {KEEP_OWN}
            self._crops = {r: crop for r, crop in self._crops.items() if r in rows}
            self._crops.update(self._read(sorted(rows - set(self._crops)), dtype))
        return self._crops[row]

    def _roi(self, row: int, shape: tuple[int, ...]) -> tuple[tuple[int, int, int, int], np.ndarray]:
        clip = self._job.library[int(self._plan.rows_clip[row])]
        index = int(self._plan.rows_frame[row])
        points = clip.faces.landmarks[index].astype(np.float64)
        iod = float(clip.faces.inter_ocular[index])
        # Margin beyond the warp's own ROI so rotation/scale never samples past the crop.
        return lower_face_roi(points, shape, (self._params.roi_margin + 0.5) * iod), points

    def _crop_bytes(self, row: int) -> int:
        view = self._job.library[int(self._plan.rows_clip[row])].view
        (x0, y0, x1, y1), _ = self._roi(row, view.display_shape)
        return max(0, x1 - x0) * max(0, y1 - y0) * 3

    def _read(self, rows: list[int], dtype: np.dtype) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        by_clip: dict[int, dict[int, int]] = {}
        for row in rows:
            by_clip.setdefault(int(self._plan.rows_clip[row]), {})[int(self._plan.rows_frame[row])] = row
        crops = {}
        for clip_number, frame_rows in by_clip.items():
            clip = self._job.library[clip_number]
            for frame in media.read_frames(clip.path, frame_rows):
                row = frame_rows[frame.index]
                (x0, y0, x1, y1), points = self._roi(row, clip.view.display_shape)
                crop = media.convert_depth(clip.view.display_region(frame.image, (x0, y0, x1, y1)), dtype)
                crops[row] = (np.array(crop, copy=True, order="C"), np.array([x0, y0], np.float64), points)
        return crops


def _windows(selection: np.ndarray, row_bytes: list[int]) -> list[tuple[int, int]]:
    """[start, end) runs of output frames whose distinct library rows fit in CROP_BUDGET_BYTES
    (a window holds at least one frame)."""
    windows: list[tuple[int, int]] = []
    start, rows, total = 0, set(), 0
    for t, row in enumerate(int(r) for r in selection):
        if row == KEEP_OWN or row in rows:
            continue
        if total + row_bytes[row] > CROP_BUDGET_BYTES and rows:
            windows.append((start, t))
            start, rows, total = t, set(), 0
        rows.add(row)
        total += row_bytes[row]
    windows.append((start, len(selection)))
    return windows


BACKEND = RetrievalBackend()
