"""One library per person across the reel: the speakers of all shots clustered by identity.

Each shot's speaker is summarised by the mean of the 128-d dlib descriptors the face track
computes on its usable span frames (``speaker_descriptor``). Shots are clustered by average
linkage under ``SAME_PERSON`` (dlib's own same-person line is 0.6 per face; means of many frames
are tighter, so 0.5 keeps two similar-looking people apart). With ``--cross-shot-library`` a shot's
retrieval library then holds the footage of other shots of the same person (``shared_libraries``):
short shots of 1-3 s give few mouth shapes of their own; the pose and lighting costs of the
selection still decide which of the added mouths fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

from dubline.stages.faces import FaceTrack

SAME_PERSON = 0.5
#: Other shots' clips a shot's library takes at most (each is analysed and searched per render).
LIBRARY_LIMIT = 8


@dataclass(frozen=True)
class ShotFace:
    """What clustering needs of one shot: its speaker's mean descriptor and how much face its
    clip offers as a library (usable frames of the whole file)."""

    descriptor: np.ndarray | None  # (128,), None when the span has no usable face
    library_frames: int


def speaker_descriptor(faces: FaceTrack, first: int, end: int) -> np.ndarray | None:
    """Mean descriptor of the speaker over the usable frames of [first, end), or None."""
    rows = np.flatnonzero(faces.usable[first:end]) + first
    descriptors = faces.descriptors[rows]
    descriptors = descriptors[np.all(np.isfinite(descriptors), axis=1)]
    if not len(descriptors):
        return None
    return descriptors.mean(axis=0).astype(np.float32)


def cluster_identities(faces: Mapping[str, np.ndarray | None], threshold: float = SAME_PERSON) -> dict[str, int]:
    """Shot id -> person number (1, 2, ... in order of first appearance); shots without a face
    get none. Average-linkage clusters whose mean distance stays under ``threshold``."""
    ids = [shot for shot, descriptor in faces.items() if descriptor is not None]
    if not ids:
        return {}
    if len(ids) == 1:
        return {ids[0]: 1}
    matrix = np.stack([faces[shot] for shot in ids]).astype(np.float64)
    labels = fcluster(linkage(matrix, method="average", metric="euclidean"), t=threshold, criterion="distance")
    numbers: dict[int, int] = {}
    return {shot: numbers.setdefault(int(label), len(numbers) + 1) for shot, label in zip(ids, labels)}


def shared_libraries(videos: Mapping[str, Path], persons: Mapping[str, int], faces: Mapping[str, ShotFace],
                     limit: int = LIBRARY_LIMIT) -> dict[str, tuple[Path, ...]]:
    """Shot id -> the clips of other shots of the same person (not its own file), those with the
    most usable face frames first, at most ``limit``."""
    libraries: dict[str, tuple[Path, ...]] = {}
    for shot, person in persons.items():
        own = Path(videos[shot]).resolve()
        candidates: dict[Path, int] = {}
        for other, other_person in persons.items():
            clip = Path(videos[other]).resolve()
            if other_person == person and clip != own:
                candidates[clip] = max(candidates.get(clip, 0), faces[other].library_frames)
        ranked = sorted(candidates, key=lambda clip: (-candidates[clip], str(clip)))
        libraries[shot] = tuple(ranked[:limit])
    return libraries


def persons_table(persons: Mapping[str, int]) -> dict[int, list[str]]:
    """Person number -> its shots, in the order given."""
    table: dict[int, list[str]] = {}
    for shot, person in persons.items():
        table.setdefault(person, []).append(shot)
    return dict(sorted(table.items()))
