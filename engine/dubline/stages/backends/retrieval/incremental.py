"""What a ``retrieval`` render keeps from the previous render of its span, and what each frame
depends on (``dubline.pipeline.incremental`` re-renders only frames whose dependencies changed).

An output frame's patch is decided by the plan: the library mouth it shows (and the one it eases
towards, with the weight), the target aperture the transfer corrects the opening to and the
landmarks the matte is cut from, on the source frame's own landmarks. ``frame_keys`` hashes
exactly those, so two renders with equal keys draw the same patch.

Selection is a path over the whole span, so a fresh selection after a one-second edit of the dub
could move choices anywhere. ``pins`` records the targets, the choices and a digest of the dub's
samples around each frame (``AUDIO_CONTEXT`` frames either side); the next render keeps every
choice, and the previous targets exactly, where the dub's samples around the frame are the same
(and the source's pose and light within ``TOLERANCE``), and chooses afresh only the other frames
and ``SELECTION_MARGIN`` frames either side, through which the new path joins the kept one. The
samples decide, not the re-analysed targets: the phone recogniser reads the whole dub, and one
changed second moves its phones here and there far from the edit (measured: 72 of 500 frames'
openness, up to 9 s away), where the dub itself did not change.
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
TOLERANCE = {"pose": 1e-6, "luma": 1e-3, "own_aperture": 1e-6}
#: Frames of dub either side of a frame whose samples decide whether its targets are the same
#: (the targets are smoothed and coarticulated over about this much).
AUDIO_CONTEXT = 4
#: The dub's targets, kept from the previous render where its samples are unchanged.
DUB_TARGETS = ("aperture", "width", "closure", "voiced")
#: Frames either side of a changed target that are chosen afresh, so the new choices can join the
#: kept ones by a run rather than a forced cut.
SELECTION_MARGIN = 6


@dataclass(frozen=True)
class RetrievalPins:
    targets: dict[str, np.ndarray]  # SelectionTargets fields, per output frame
    #: per output frame, the library mouth shown: (clip path, frame), or None for the frame's own
    choices: list[tuple[str, int] | None]
    settings: str  # selection parameters and expression: pins made under others are not kept
    audio_keys: list[str]  # per output frame, a digest of the dub's samples around it


def audio_keys(job: BackendJob) -> list[str]:
    """Per output frame, a digest of the dub's samples over the frame and ``AUDIO_CONTEXT`` frames
    either side (beyond the dub's end: its length, so a longer or shorter dub counts)."""
    first, end = job.span
    video = job.source.info.video
    assert video is not None
    audio = job.dub_audio
    samples = np.ascontiguousarray(np.asarray(audio.samples, np.float32))
    per_frame = audio.sample_rate / video.rate
    keys = []
    for t in range(end - first):
        start = int(max(0, t - AUDIO_CONTEXT) * per_frame)
        stop = int((t + 1 + AUDIO_CONTEXT) * per_frame)
        digest = hashlib.blake2b(samples[start:stop].tobytes(), digest_size=12)
        digest.update(f"{audio.sample_rate}:{min(stop, len(samples)) - start}".encode())
        keys.append(digest.hexdigest())
    return keys


def settings_of(options: Any, expression: str) -> str:
    return f"{options!r}|{expression}"


def _clip_names(job: BackendJob) -> list[str]:
    return [str(clip.path.resolve()) for clip in job.library]


def pins(job: BackendJob, targets: SelectionTargets, selection: np.ndarray, rows_clip: np.ndarray,
         rows_frame: np.ndarray, settings: str) -> RetrievalPins:
    names = _clip_names(job)
    choices = [None if row == KEEP_OWN else (names[int(rows_clip[row])], int(rows_frame[row])) for row in selection]
    return RetrievalPins({f.name: np.asarray(getattr(targets, f.name)) for f in fields(targets)}, choices, settings,
                         audio_keys(job))


def kept(job: BackendJob, targets: SelectionTargets, rows_clip: np.ndarray, rows_frame: np.ndarray,
         settings: str) -> tuple[SelectionTargets, np.ndarray | None]:
    """The targets with unchanged frames' set back to the previous render's exactly, and the
    choice to keep per frame (``UNPINNED``: choose afresh); (targets, None) when nothing is kept."""
    previous = job.previous
    count = len(targets.aperture)
    if (not isinstance(previous, RetrievalPins) or previous.settings != settings or len(previous.choices) != count
            or len(getattr(previous, "audio_keys", ())) != count):
        return targets, None
    changed = np.array([new != old for new, old in zip(audio_keys(job), previous.audio_keys)], bool)
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
    fresh = np.convolve(changed, np.ones(2 * SELECTION_MARGIN + 1), mode="full")[SELECTION_MARGIN : SELECTION_MARGIN + count] > 0
    pinned[fresh] = UNPINNED
    steady = ~changed
    restored = {name: np.where(steady.reshape((count,) + (1,) * (np.ndim(previous.targets[name]) - 1)),
                               previous.targets[name], getattr(targets, name))
                for name in (*DUB_TARGETS, *TOLERANCE)}
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
