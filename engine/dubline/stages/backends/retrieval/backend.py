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

One module because the plan, the per-frame patch and the library crops it reads are one backend's
state: split, each piece would take the whole plan and job as arguments anyway.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, Iterable, Iterator, Mapping

import cv2
import numpy as np

from dubline.core import landmarks as lm
from dubline.core.cpus import cpu_budget
from dubline.core.errors import InvalidInputError, NoFaceError
from dubline.core.prefetch import work_pool
from dubline.stages import media
from dubline.stages.backends.base import (
    DUB_SILENT_REASON,
    BackendInfo,
    BackendJob,
    MouthPatch,
)
from dubline.stages.backends.retrieval import incremental, transition
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

#: Library crops held at once (bytes): the crops of as many coming output frames as fit are read
#: in one pass over each library clip (a 1080p lower-face crop is about 0.8 MB).
CROP_BUDGET_BYTES = 256 * 2**20
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
    #: (T,) the target aperture the transfer corrects each frame's opening to (the dub's, or the
    #: previous render's where the dub did not change: ``incremental.kept``; ``steady_opening``)
    aperture: np.ndarray
    targets: SelectionTargets | None = None


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
        settings = incremental.settings_of(params, job.expression)
        targets, pinned = incremental.kept(job, targets, rows_clip, rows_frame, settings)
        selection = select_frames(library, targets, params, job.expression, pinned)
        partner, weight = transition.schedule(selection, library.consecutive, transfer_params.transition_frames)
        starts = transition.run_starts(selection, library.consecutive)
        aperture = steady_opening(targets.aperture, library.aperture, selection, transfer_params)
        plan = RetrievalPlan(rows_clip, rows_frame, selection, partner, weight, starts, np.empty((0, 68, 2)),
                             aperture, targets)
        return replace(plan, matte_points=_steady_matte_points(job, plan, transfer_params))

    def frame_keys(self, job: BackendJob, plan: RetrievalPlan) -> list[str]:
        """Per output frame, what its patch depends on (``incremental.frame_keys``)."""
        return incremental.frame_keys(job, plan, repr(_params(job.options)[1]))

    def pins(self, job: BackendJob, plan: RetrievalPlan) -> incremental.RetrievalPins:
        """The targets and choices the next render of the span keeps where its dub is unchanged."""
        assert plan.targets is not None
        settings = incremental.settings_of(_params(job.options)[0], job.expression)
        return incremental.pins(job, plan.targets, plan.selection, plan.rows_clip, plan.rows_frame, settings)

    def patches(
        self, job: BackendJob, plan: RetrievalPlan, frames: Iterable[media.VideoFrame]
    ) -> Iterator[tuple[media.VideoFrame, MouthPatch]]:
        """Each frame's patch, in order. The library crops are looked up here, one frame after the
        other (they are read in windows); the transfer, the morph and the copy back to the stored
        grid, which depend only on the frame, run on up to ``TRANSFER_THREADS`` threads, at most
        ``TRANSFER_AHEAD`` frames ahead (OpenCV and numpy release the GIL), so the patches are the
        same as one thread's; in a process kept to one CPU, in this thread (``work_pool``)."""
        first, _ = job.span
        faces = job.source.faces
        _, transfer_params = _params(job.options)
        library = _LibraryCrops(job, plan, transfer_params)
        pending: deque[tuple[media.VideoFrame, Future | MouthPatch]] = deque()
        with work_pool(min(TRANSFER_THREADS, cpu_budget()), "dubline-retrieval") as pool:
            try:
                for frame in frames:
                    if job.cancel is not None:
                        job.cancel.check()
                    t = frame.index - first
                    row, partner = int(plan.selection[t]), int(plan.partner[t])
                    starts = bool(plan.run_starts[t])
                    reason = str(faces.reason[frame.index])
                    if reason or (row == KEEP_OWN and partner == transition.NO_PARTNER):
                        pending.append((frame, MouthPatch(None, None, reason or DUB_SILENT_REASON, starts)))
                    else:
                        crops = {r: library.crop(t, r, frame.image.dtype) for r in (row, partner) if r >= 0}
                        pending.append((frame, pool.submit(_patch, job, plan, transfer_params, frame, crops)))
                    while len(pending) > TRANSFER_AHEAD:
                        yield _done(pending.popleft())
                while pending:
                    yield _done(pending.popleft())
            finally:
                for _, work in pending:
                    if isinstance(work, Future):
                        work.cancel()


#: Most threads that transfer and morph mouths (fewer on a smaller CPU budget), and how many
#: frames they may run ahead of the consumer.
TRANSFER_THREADS = 2
TRANSFER_AHEAD = 4


def _done(item: tuple[media.VideoFrame, Future | MouthPatch]) -> tuple[media.VideoFrame, MouthPatch]:
    frame, work = item
    return frame, (work.result() if isinstance(work, Future) else work)


def _patch(job: BackendJob, plan: RetrievalPlan, params: TransferParams, frame: media.VideoFrame,
           crops: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> MouthPatch:
    """One frame's patch from the library crops it shows (``crops``: row -> crop, origin, landmarks)."""
    first, _ = job.span
    faces, view = job.source.faces, job.source.view
    t = frame.index - first
    row, partner = int(plan.selection[t]), int(plan.partner[t])
    starts = bool(plan.run_starts[t])
    target_points = faces.landmarks[frame.index].astype(np.float64)
    aperture = float(plan.aperture[t])
    shown = _aligned(crops, row, target_points, aperture, params, view.display_shape)
    if partner != transition.NO_PARTNER:
        other = _aligned(crops, partner, target_points, aperture, params, view.display_shape)
        roi = _union(shown.roi, other.roi)
        crop = None if roi is None else _morphed(
            view, frame.image, shown, other, roi, float(plan.partner_weight[t]),
            float(faces.inter_ocular[frame.index]), params,
        )
    else:
        roi, crop = shown.roi, shown.crop
    if roi is None or crop is None:
        return MouthPatch(None, None, DUB_SILENT_REASON, starts)
    stored_crop, (x0, y0, _, _) = view.stored_region(crop, roi, frame.image.shape)
    image = media.overlaid(frame.image, y0, x0, stored_crop)
    return MouthPatch(image, view.to_stored(plan.matte_points[t]), "", starts)


def steady_opening(target: np.ndarray, library_aperture: np.ndarray, selection: np.ndarray,
                   params: TransferParams) -> np.ndarray:
    """(T,) the aperture each frame's transfer corrects its mouth to: the chosen mouth's own plus
    the correction towards ``target`` (bounded as the transfer bounds it), smoothed over time with
    ``params.opening_smoothing`` (frames without a library mouth neither take nor give one)."""
    if params.opening_smoothing <= 0:
        return target
    from scipy.ndimage import gaussian_filter1d

    shown = selection >= 0
    own = np.where(shown, library_aperture[np.maximum(selection, 0)], np.nan)
    change = np.clip(target - own, -params.max_opening_change, params.max_opening_change)
    known = shown & np.isfinite(change)
    weight = gaussian_filter1d(known.astype(np.float64), params.opening_smoothing, mode="nearest")
    total = gaussian_filter1d(np.where(known, change, 0.0), params.opening_smoothing, mode="nearest")
    smoothed = np.divide(total, weight, out=np.zeros_like(total), where=weight > 1e-6)
    return np.where(known, own + smoothed, target)


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
            points = matte_landmarks(points, transferred_landmarks(library_points, target[t], float(plan.aperture[t]), params))
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
        self._frame_rows = [
            {int(r) for r in rows if r >= 0} for rows in zip(plan.selection, plan.partner)  # shown and eased towards
        ]
        self._windows = _windows(self._frame_rows, [self._crop_bytes(row) for row in range(len(plan.rows_frame))])
        self._window_end = 0

    def crop(self, t: int, row: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(crop, crop origin xy, landmarks) of library ``row`` for output frame ``t``: upright and
        square-pixel in the clip's analysis view, in ``dtype`` (the target's depth)."""
        if t >= self._window_end:
            start, self._window_end = next((w for w in self._windows if w[0] <= t < w[1]))
            rows = set().union(*self._frame_rows[start : self._window_end])
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
            for frame in media.read_frames(clip.path, frame_rows, keep_coded=True):  # converts just the crops
                row = frame_rows[frame.index]
                (x0, y0, x1, y1), points = self._roi(row, clip.view.display_shape)
                crop = media.convert_depth(clip.view.display_region(frame.image, (x0, y0, x1, y1)), dtype)
                crops[row] = (np.array(crop, copy=True, order="C"), np.array([x0, y0], np.float64), points)
        return crops


def _windows(frame_rows: list[set[int]], row_bytes: list[int]) -> list[tuple[int, int]]:
    """[start, end) runs of output frames whose distinct library rows (``frame_rows``: each
    frame's) fit in CROP_BUDGET_BYTES (a window holds at least one frame)."""
    windows: list[tuple[int, int]] = []
    start, rows, total = 0, set(), 0
    for t, wanted in enumerate(frame_rows):
        new = wanted - rows
        cost = sum(row_bytes[row] for row in new)
        if new and rows and total + cost > CROP_BUDGET_BYTES:
            windows.append((start, t))
            start, rows, total = t, set(), 0
            new, cost = set(wanted), sum(row_bytes[row] for row in wanted)
        rows |= new
        total += cost
    windows.append((start, len(frame_rows)))
    return windows


@dataclass(frozen=True)
class _Shown:
    """A mouth laid on the frame in display space: ``crop`` at ``roi`` (None: the frame's own
    mouth, nothing laid) and the landmarks of the mouth it shows."""

    crop: np.ndarray | None
    landmarks: np.ndarray
    roi: tuple[int, int, int, int] | None


def _aligned(crops: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]], row: int, target_points: np.ndarray,
             aperture: float, params: TransferParams, shape: tuple[int, int]) -> _Shown:
    """Library ``row``'s mouth (its crop in ``crops``) transferred onto the target (display space),
    or the frame's own mouth for ``KEEP_OWN``; ``shape`` is the target's display size."""
    if row == KEEP_OWN:
        return _Shown(None, target_points, None)
    crop, offset, points = crops[row]
    result = transfer_mouth(crop, points - offset, shape, target_points, aperture, params)
    return _Shown(result.crop, result.landmarks, result.roi)


def _in_region(view: media.FrameView, image: media.Image, shown: _Shown, region: tuple[int, int, int, int]) -> np.ndarray:
    """The display-space ``region`` of the frame with ``shown``'s mouth laid in."""
    x0, y0 = region[0], region[1]
    out = np.array(view.display_region(image, region), copy=True)
    if shown.crop is not None and shown.roi is not None:
        a0, b0, a1, b1 = shown.roi
        out[b0 - y0 : b1 - y0, a0 - x0 : a1 - x0] = shown.crop
    return out


def _morphed(view: media.FrameView, image: media.Image, first: _Shown, second: _Shown,
             region: tuple[int, int, int, int], amount: float, iod: float, params: TransferParams) -> np.ndarray:
    """The display-space ``region`` showing ``first``'s mouth moved ``amount`` of the way to
    ``second``'s, with the mouth's detail brought back to the two mouths' own, in the proportion
    the dissolve shows them (warps and a dissolve soften)."""
    a, b = _in_region(view, image, first, region), _in_region(view, image, second, region)
    origin = np.array(region[:2], np.float64)
    points_a, points_b = first.landmarks - origin, second.landmarks - origin
    between = (1.0 - amount) * points_a + amount * points_b
    interior = _mouth_interior(between, a.shape[:2], iod, params) if params.interior_switch else None
    out = transition.morph(a, b, amount, interior=interior)
    details = mouth_detail(a, points_a, iod), mouth_detail(b, points_b, iod)
    if None in details:
        return out
    share = transition.dissolve_weight(amount)
    wanted = (1.0 - share) * details[0] + share * details[1]
    return sharpen_to(out, between, wanted, iod, params)


def _mouth_interior(points: np.ndarray, shape: tuple[int, int], iod: float, params: TransferParams) -> np.ndarray:
    """float32 (H, W): 1 inside the inner-lip polygon of ``points`` grown by
    ``params.interior_grow`` IOD (the flow-warped teeth do not end exactly on the averaged
    landmarks), feathered over a couple of pixels."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(points[lm.INNER_LIP] * 16).astype(np.int32)], 1, shift=4)
    grow = int(round(params.interior_grow * iod))
    if grow > 0:
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.0)


def _union(
    first: tuple[int, int, int, int] | None, second: tuple[int, int, int, int] | None
) -> tuple[int, int, int, int] | None:
    boxes = [box for box in (first, second) if box is not None]
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)
    )


BACKEND = RetrievalBackend()
