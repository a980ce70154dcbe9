"""Incremental re-render: a span rendered again draws only the frames whose result can change.

After each render the cache keeps a ``RenderRecord`` of the span (keyed by the source's content,
the span, the backend and the library): per row a key of everything the row's patch depends on
(the backend's ``frame_keys``: for retrieval the mouths the plan shows and the targets they are
corrected to, for wav2lip the dub's mel window; a backend without them depends on the whole dub
and option set), what each row came out as, the backend's ``pins`` (retrieval keeps its choices
where the dub did not change, so an edit stays local) and which file it wrote (path, size, mtime,
inode). The next render of the span compares keys:

- rows whose key changed are drawn again, and ``DEFLICKER_TAIL`` rows after each (the compositor's
  deflicker carries a decaying memory of the frames before, so the frames after an edit settle
  back onto the previous render's look rather than jump to it);
- ``WARMUP_FRAMES`` rows before each drawn run are computed but not written, to give the
  deflicker the memory it had there;
- every other row is copied from the previous patch as coded (``media.remux``): bit for bit the
  same picture, no decode or encode. Only intra-frame codecs and only the very file the record
  names (same size, mtime and inode: dubline's own output, never a file of the user's) are copied
  from; the previous patch may be the output path itself, read while the new one is written under
  a temporary name and renamed over it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dubline.core.cache import BlobCache
from dubline.stages import media
from dubline.stages.backends.base import Backend, BackendJob
from dubline.stages.media.remux import INTRA_CODECS

#: Bump when what a frame's key covers changes (the compositor included): older records are ignored.
RECORD_VERSION = 2
#: Rows drawn again after a changed row, so the deflicker's memory of the edit fades before the
#: copied frames resume (its weight is at most 0.6 per frame: 0.6^6 < 5 %).
DEFLICKER_TAIL = 6
#: Rows computed (not written) before each drawn run, to rebuild the deflicker's memory.
WARMUP_FRAMES = 4


@dataclass
class RenderRecord:
    """What the last render of a span did (stored in the cache, see the module's text)."""

    keys: list[str]
    outcomes: list[str | None]  # per row: None when patched, else why it passed through
    run_starts: list[int]
    pins: Any
    codec: str
    out: str
    out_stat: tuple[int, int, int]
    frame_shape: tuple[int, ...]
    frame_dtype: str
    matte: str | None = None
    matte_codec: str | None = None
    matte_stat: tuple[int, int, int] | None = None


@dataclass
class ReusePlan:
    """Per span row: decode and draw it (``compute``), and write what was drawn (``write``);
    rows not written are copied from ``patch_source`` (and ``matte_source``)."""

    compute: np.ndarray
    write: np.ndarray
    previous: RenderRecord | None = None
    patch_source: Path | None = None
    matte_source: Path | None = None
    note: str = ""  # why no frame is copied, when a previous render was found but not used

    @property
    def reused(self) -> int:
        return int(np.count_nonzero(~self.write))

    @property
    def warmup(self) -> int:
        return int(np.count_nonzero(self.compute & ~self.write))

    @staticmethod
    def everything(count: int, previous: RenderRecord | None = None, note: str = "") -> ReusePlan:
        return ReusePlan(np.ones(count, bool), np.ones(count, bool), previous, note=note)


def file_stat(path: Path | str | None) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path) if path is not None else None
    except OSError:
        return None
    return None if status is None else (status.st_size, status.st_mtime_ns, status.st_ino)


def record_cache(video: Path, span: tuple[int, int], backend: str, library: list[Path],
                 cache_root: Path | None) -> BlobCache:
    return BlobCache("renders", media.media_fingerprint(video), {
        "version": RECORD_VERSION, "span": list(span), "backend": backend,
        "library": [str(Path(path).resolve()) for path in library]}, cache_root)


def load_record(cache: BlobCache) -> RenderRecord | None:
    record = cache.get()
    return record if isinstance(record, RenderRecord) else None


def frame_keys(backend: Backend, job: BackendJob, plan: Any, frame_count: int) -> list[str]:
    """The backend's per-row keys; without them each row depends on the whole dub and options."""
    own = getattr(backend, "frame_keys", None)
    if own is not None:
        keys = list(own(job, plan))
    else:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{backend.info.name}:{sorted(job.options.items())!r}:{job.expression}".encode())
        for array in (job.target_aperture, job.target_width, job.dub.closure, job.dub.voice_activity,
                      job.dub_audio.samples):
            digest.update(np.ascontiguousarray(array).tobytes())
        whole = digest.hexdigest()
        keys = [f"{whole}:{job.span[0] + row}" for row in range(frame_count)]
    if len(keys) != frame_count:
        raise RuntimeError(f"{backend.info.name}.frame_keys gave {len(keys)} keys for {frame_count} frames")
    return keys


def plan_reuse(previous: RenderRecord | None, keys: list[str], codec: str, matte: Path | None,
               matte_codec: str | None) -> ReusePlan:
    """Which rows to draw again and which to copy from the previous patch."""
    count = len(keys)
    if previous is None:
        return ReusePlan.everything(count)
    if codec not in INTRA_CODECS or previous.codec != codec:
        return ReusePlan.everything(count, previous, f"{codec} frames are drawn in full" if codec not in INTRA_CODECS
                                    else f"the previous patch is {previous.codec}, not {codec}")
    if len(previous.keys) != count or file_stat(previous.out) != previous.out_stat:
        return ReusePlan.everything(count, previous, f"the previous patch {previous.out} was changed or removed")
    if matte is not None and (previous.matte is None or previous.matte_codec != matte_codec
                              or matte_codec not in INTRA_CODECS
                              or file_stat(previous.matte) != previous.matte_stat):
        return ReusePlan.everything(count, previous, "no matte of the previous render to copy from")
    changed = np.array([new != old for new, old in zip(keys, previous.keys)], bool)
    write = np.convolve(changed, np.ones(DEFLICKER_TAIL + 1), mode="full")[:count] > 0
    starts = np.flatnonzero(write & ~np.r_[False, write[:-1]])
    compute = write.copy()
    for start in starts:
        compute[max(0, start - WARMUP_FRAMES) : start] = True
    return ReusePlan(compute, write, previous, Path(previous.out),
                     Path(previous.matte) if matte is not None and previous.matte else None)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of True rows."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


@dataclass
class RowOutcomes:
    """What each drawn row came out as (filled by the compositor's thread)."""

    outcome: dict[int, str | None] = field(default_factory=dict)
    run_start: set[int] = field(default_factory=set)


def store_record(cache: BlobCache, keys: list[str], outcomes: list[str | None], run_starts: list[int], pins: Any,
                 codec: str, out: Path, frame_shape: tuple[int, ...], frame_dtype: str, matte: Path | None,
                 matte_codec: str | None) -> None:
    out_stat = file_stat(out)
    if out_stat is None:
        return
    cache.put(RenderRecord(keys, outcomes, run_starts, pins, codec, str(Path(out).resolve()), out_stat,
                           tuple(frame_shape), frame_dtype, str(Path(matte).resolve()) if matte else None, matte_codec,
                           file_stat(matte)))
