"""The ``retrieval`` backend: the speaker's own mouths, re-timed to the dub.

prepare: build the mouth library from every usable frame of the source (and ``--library``
files) and select one library frame per output frame (``select.select_frames``).
patches: stream the span's frames; for each chunk, read just the chosen library frames (by runs,
keeping only a lower-face crop of each so memory stays flat in span length) and transfer the
chosen mouth onto the target frame (``transfer.transfer_mouth``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import islice
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from dubline.core import timing
from dubline.core.errors import InvalidInputError, NoFaceError
from dubline.stages import media
from dubline.stages.backends.base import BackendInfo, BackendJob, MouthPatch
from dubline.stages.backends.retrieval import transition
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
    mouth_detail,
    sharpen_to,
    transfer_mouth,
    transferred_landmarks,
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
    #: (T,) the row eased towards around a run boundary (KEEP_OWN: the frame's own mouth), or
    #: NO_PARTNER; and how far (0..1) the frame moves towards it (``transition.schedule``)
    partner: np.ndarray
    partner_weight: np.ndarray
    run_starts: np.ndarray  # (T,) bool: the frame starts a new run of material (a cut)
    #: (T, 68, 2) the landmarks each frame's matte is cut from, steadied over time (NaN: no patch)
    matte_points: np.ndarray


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
                clip.faces.lip_shape[usable].reshape(len(usable), -1),
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
        params, transfer_params = _params(job.options)
        selection = select_frames(library, targets, params, job.expression)
        partner, weight = transition.schedule(selection, library.consecutive, transfer_params.transition_frames)
        starts = transition.run_starts(selection, library.consecutive)
        plan = RetrievalPlan(rows_clip, rows_frame, selection, partner, weight, starts, np.empty((0, 68, 2)))
        return replace(plan, matte_points=_steady_matte_points(job, plan, transfer_params))

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
            rows = [int(plan.selection[f.index - first]) for f in chunk]
            rows += [int(plan.partner[f.index - first]) for f in chunk]
            crops = _gather_crops(job, plan, sorted(set(rows) - {KEEP_OWN, transition.NO_PARTNER}), transfer_params)
            for frame in chunk:
                t = frame.index - first
                row, partner = int(plan.selection[t]), int(plan.partner[t])
                reason = str(faces.reason[frame.index])
                if reason:
                    yield frame, MouthPatch(None, None, reason, bool(plan.run_starts[t]))
                    continue
                if row == KEEP_OWN and partner == transition.NO_PARTNER:
                    yield frame, MouthPatch(None, None, "dub silent, own mouth at rest", bool(plan.run_starts[t]))
                    continue
                target_points = faces.landmarks[frame.index].astype(np.float64)
                aperture = float(job.target_aperture[t])
                image, landmarks, roi = _aligned(frame, row, crops, target_points, aperture, transfer_params)
                if partner != transition.NO_PARTNER:
                    other, other_landmarks, other_roi = _aligned(
                        frame, partner, crops, target_points, aperture, transfer_params
                    )
                    image = _morphed(
                        (image, landmarks, roi), (other, other_landmarks, other_roi),
                        float(plan.partner_weight[t]), float(faces.inter_ocular[frame.index]), transfer_params,
                    )
                yield frame, MouthPatch(image, plan.matte_points[t], "", bool(plan.run_starts[t]))


#: Frames each side over which the matte's reach is steadied (its border must not breathe).
MATTE_STEADY_FRAMES = 2


def _steady_matte_points(job: BackendJob, plan: RetrievalPlan, params: TransferParams) -> np.ndarray:
    """Per output frame, the target's landmarks with jaw and lips reaching as far as the mouths it
    shows (``matte_landmarks``), steadied over time: how far each point reaches beyond the target's
    own (in inter-ocular distances) is the furthest over the frames around, then averaged over
    them. Cut to cut the library faces' jaws differ, and a matte following each frame's would
    breathe; the furthest reach nearby keeps every frame's mouths covered."""
    first, _ = job.span
    faces = job.source.faces
    count = len(plan.selection)
    target = faces.landmarks[first : first + count].astype(np.float64)
    iod = faces.inter_ocular[first : first + count].astype(np.float64)
    reach = np.full((count, 68, 2), np.nan)
    for t in range(count):
        rows = [int(r) for r in (plan.selection[t], plan.partner[t]) if r >= 0]
        if faces.reason[first + t] or not rows or not np.isfinite(iod[t]):
            continue
        points = target[t]
        for row in rows:
            clip = job.library[int(plan.rows_clip[row])]
            library_points = clip.faces.landmarks[int(plan.rows_frame[row])].astype(np.float64)
            points = matte_landmarks(points, transferred_landmarks(library_points, target[t], float(job.target_aperture[t]), params))
        reach[t] = (points - target[t]) / iod[t]
    furthest = np.full_like(reach, np.nan)
    steady = np.full_like(reach, np.nan)
    for t in np.flatnonzero(np.isfinite(reach[:, 0, 0])):
        near = reach[max(0, t - MATTE_STEADY_FRAMES) : t + MATTE_STEADY_FRAMES + 1]
        near = near[np.isfinite(near[:, 0, 0])]
        pick = np.argmax(np.linalg.norm(near, axis=2), axis=0)  # per point, the frame reaching furthest
        furthest[t] = near[pick, np.arange(68)]
    for t in np.flatnonzero(np.isfinite(reach[:, 0, 0])):
        near = furthest[max(0, t - MATTE_STEADY_FRAMES) : t + MATTE_STEADY_FRAMES + 1]
        steady[t] = np.nanmean(near, axis=0)
    return target + steady * iod[:, None, None]


def _aligned(
    frame: media.VideoFrame,
    row: int,
    crops: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
    target_points: np.ndarray,
    aperture: float,
    params: TransferParams,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int] | None]:
    """The frame with library ``row``'s mouth transferred onto it (or the frame itself for
    ``KEEP_OWN``), the landmarks of the mouth it shows, and the region that changed."""
    if row == KEEP_OWN:
        return frame.image.copy(), target_points, None
    crop, offset, points = crops[row]
    result = transfer_mouth(crop, points - offset, frame.image.shape, target_points, aperture, params)
    image = frame.image.copy()
    x0, y0, x1, y1 = result.roi
    image[y0:y1, x0:x1] = result.crop
    return image, result.landmarks, result.roi


def _morphed(
    first: tuple[np.ndarray, np.ndarray, tuple[int, int, int, int] | None],
    second: tuple[np.ndarray, np.ndarray, tuple[int, int, int, int] | None],
    amount: float,
    iod: float,
    params: TransferParams,
) -> np.ndarray:
    """``first``'s image moved ``amount`` of the way to ``second``'s (each: image, mouth landmarks,
    changed region) inside the regions they changed, with the mouth's detail brought back to the
    two mouths' own, in the proportion the dissolve shows them (warps and a dissolve soften)."""
    (image, points, roi), (other, other_points, other_roi) = first, second
    x0, y0, x1, y1 = _union(roi, other_roi)
    out = image.copy()
    out[y0:y1, x0:x1] = transition.morph(image[y0:y1, x0:x1], other[y0:y1, x0:x1], amount)
    details = mouth_detail(image, points, iod), mouth_detail(other, other_points, iod)
    if None in details:
        return out
    share = transition.dissolve_weight(amount)
    wanted = (1.0 - share) * details[0] + share * details[1]
    between = (1.0 - amount) * points + amount * other_points - (x0, y0)
    out[y0:y1, x0:x1] = sharpen_to(out[y0:y1, x0:x1], between, wanted, iod, params)
    return out


def _union(
    first: tuple[int, int, int, int] | None, second: tuple[int, int, int, int] | None
) -> tuple[int, int, int, int]:
    boxes = [box for box in (first, second) if box is not None]
    return (
        min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)
    )


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
