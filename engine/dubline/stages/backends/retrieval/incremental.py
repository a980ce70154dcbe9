"""What a ``retrieval`` render keeps from the previous render of its span, and what each frame
depends on (``dubline.pipeline.incremental`` re-renders only frames whose dependencies changed).

An output frame's patch is decided by the plan: the library mouth it shows (and the one it eases
towards, with the weight), the target aperture the transfer corrects the opening to and the
landmarks the matte is cut from, on the source frame's own landmarks. ``frame_keys`` hashes
exactly those, so two renders with equal keys draw the same patch.

Selection is a path over the whole span, so a fresh selection after a one-second edit of the dub
could move choices anywhere. ``pins`` records the targets and the choices; the next render keeps
every choice whose target did not change (within ``TOLERANCE``: a re-analysed dub differs in the
last bits away from the edit) and chooses afresh only the changed frames and ``SELECTION_MARGIN``
frames either side, through which the new path joins the kept one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from dubline.stages.backends.base import BackendJob
from dubline.stages.backends.retrieval.select import KEEP_OWN, UNPINNED, SelectionTargets

#: Largest change of a target that still counts as the same (aperture and width in inter-ocular
#: distances, closure and voice activity 0..1, pose and luma as the source analysis gives them).
TOLERANCE = {"aperture": 0.004, "width": 0.004, "closure": 0.02, "voiced": 0.02, "pose": 1e-6, "luma": 1e-3,
             "own_aperture": 1e-6}
#: Frames either side of a changed target that are chosen afresh, so the new choices can join the
#: kept ones by a run rather than a forced cut.
SELECTION_MARGIN = 6


@dataclass(frozen=True)
class RetrievalPins:
    targets: dict[str, np.ndarray]  # SelectionTargets fields, per output frame
    #: per output frame, the library mouth shown: (clip path, frame), or None for the frame's own
    choices: list[tuple[str, int] | None]
    settings: str  # selection parameters and expression: pins made under others are not kept


def settings_of(options: Any, expression: str) -> str:
    return f"{options!r}|{expression}"


def _clip_names(job: BackendJob) -> list[str]:
    return [str(clip.path.resolve()) for clip in job.library]


def pins(job: BackendJob, targets: SelectionTargets, selection: np.ndarray, rows_clip: np.ndarray,
         rows_frame: np.ndarray, settings: str) -> RetrievalPins:
    names = _clip_names(job)
    choices = [None if row == KEEP_OWN else (names[int(rows_clip[row])], int(rows_frame[row])) for row in selection]
    return RetrievalPins({f.name: np.asarray(getattr(targets, f.name)) for f in fields(targets)}, choices, settings)


def kept(job: BackendJob, targets: SelectionTargets, rows_clip: np.ndarray, rows_frame: np.ndarray,
         settings: str) -> tuple[SelectionTargets, np.ndarray | None]:
    """The targets with unchanged frames' set back to the previous render's exactly, and the
    choice to keep per frame (``UNPINNED``: choose afresh); (targets, None) when nothing is kept."""
    previous = job.previous
    count = len(targets.aperture)
    if not isinstance(previous, RetrievalPins) or previous.settings != settings or len(previous.choices) != count:
        return targets, None
    changed = np.zeros(count, bool)
    for name, tolerance in TOLERANCE.items():
        new, old = np.asarray(getattr(targets, name)), previous.targets.get(name)
        if old is None or old.shape != new.shape:
            return targets, None
        difference = np.abs(np.nan_to_num(new - old, nan=np.inf))
        same_nan = np.isnan(new) & np.isnan(old)
        changed |= np.where(same_nan, False, difference > tolerance).reshape(count, -1).any(axis=1)
    row_of = {(name, int(frame)): row for row, (name, frame) in
              enumerate(zip((_clip_names(job)[c] for c in rows_clip), rows_frame))}
    pinned = np.full(count, UNPINNED, np.int64)
    for t, choice in enumerate(previous.choices):
        if choice is None:
            pinned[t] = KEEP_OWN
        elif choice in row_of:
            pinned[t] = row_of[choice]
        else:
            changed[t] = True  # that library frame is gone
    fresh = np.convolve(changed, np.ones(2 * SELECTION_MARGIN + 1), mode="same") > 0
    pinned[fresh] = UNPINNED
    steady = ~changed
    restored = {name: np.where(steady.reshape((count,) + (1,) * (np.ndim(previous.targets[name]) - 1)),
                               previous.targets[name], getattr(targets, name))
                for name in TOLERANCE}
    return replace(targets, **restored), pinned


def frame_keys(job: BackendJob, plan: Any, transfer_settings: str) -> list[str]:
    """Per output frame, a digest of everything its patch depends on (see the module's text)."""
    first, _ = job.span
    faces = job.source.faces
    names = _clip_names(job)

    def mouth(row: int) -> bytes:
        if row < 0:
            return str(row).encode()
        clip = job.library[int(plan.rows_clip[row])]
        frame = int(plan.rows_frame[row])
        return (f"{names[int(plan.rows_clip[row])]}:{frame}:".encode()
                + np.asarray(clip.faces.landmarks[frame], np.float64).tobytes())

    keys = []
    for t in range(len(plan.selection)):
        index = first + t
        digest = hashlib.blake2b(digest_size=16)
        for part in (f"retrieval:{transfer_settings}:{index}:{faces.reason[index]}".encode(),
                     np.asarray(faces.landmarks[index], np.float64).tobytes(),
                     np.float64(faces.inter_ocular[index]).tobytes(),
                     mouth(int(plan.selection[t])), mouth(int(plan.partner[t])),
                     np.float64(plan.partner_weight[t]).tobytes(), bytes([bool(plan.run_starts[t])]),
                     np.float64(plan.aperture[t]).tobytes(), np.asarray(plan.matte_points[t], np.float64).tobytes()):
            digest.update(part)
        keys.append(digest.hexdigest())
    return keys
