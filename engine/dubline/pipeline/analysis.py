"""Analysis of the speaker's footage, and who provides it to a render.

``analyse_clip`` computes a ``ClipAnalysis``: the face track, the clip's own speech and the speaker
calibration over the frames an ``AnalysisPlan`` names (``pipeline.budget``: the span, a window
around it and a sampled library), together with every block analysed before (by earlier renders,
``dubline analyse --whole-file`` or the engine's idle extension). Frames outside are marked
"unanalysed". Per-frame results are cached on disk by block (``pipeline.blocks``), so nothing is
analysed twice. Faces are found on the clip's analysis view (``media.FrameView``: upright, square
pixels, 8-bit), so the face track is in that view's coordinates; whoever touches stored pixels maps
them back (``ClipAnalysis.view``).

A render asks an ``AnalysisProvider``: ``DiskAnalyses`` (the CLI) assembles from the disk cache
each time; ``ResidentAnalyses`` (the engine) also keeps recent analyses in memory, keyed by the
file's identity and the speaker hint, so a warm engine pays nothing for a span it has covered, and
``extend`` lets an idle engine analyse the rest of a clip in the background.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from dubline.core.cpus import cpu_budget
from dubline.core.errors import InvalidInputError
from dubline.core.lru import LruStore
from dubline.core.progress import CancelToken, ProgressSink, no_progress
from dubline.pipeline.blocks import (
    SourceCaches,
    StoredResults,
    analyse_blocks,
    done_blocks,
    load_results,
    whole_file_speech,
)
from dubline.pipeline.budget import (
    WHOLE_FILE,
    AnalysisBudget,
    AnalysisPlan,
    plan_analysis,
)
from dubline.stages import media
from dubline.stages.backends.base import ClipAnalysis
from dubline.stages.faces import (
    FaceTrack,
    FaceTrackParams,
    SpeakerHint,
    track_from_detections,
)
from dubline.stages.speech.calibration import calibrate_speaker, default_calibration

#: Most threads analysing blocks at once (dlib and the decoder release the GIL: one per CPU helps).
MAX_WORKERS = 4


def default_workers() -> int:
    """Threads analysing blocks at once: one per CPU of this process's budget, at most MAX_WORKERS."""
    return max(1, min(MAX_WORKERS, cpu_budget()))


class AnalysisProvider(Protocol):
    def analyse(self, path: Path, speaker: SpeakerHint | None, progress: ProgressSink,
                cancel: CancelToken | None, span: tuple[int, int] | None = None,
                timings: dict[str, float] | None = None) -> ClipAnalysis:
        """The analysis of ``path`` with ``speaker`` as the hint (None: found from the audio),
        covering at least what the provider's budget plans for frames [first, end) of ``span``
        (None: the library alone). ``timings``, when given, receives seconds per part of the work."""


def plan_for(path: Path, info: media.MediaInfo, span: tuple[int, int] | None, budget: AnalysisBudget,
             face_params: FaceTrackParams = FaceTrackParams(), speaker: SpeakerHint | None = None) -> AnalysisPlan:
    """The plan of a render of ``span`` of ``path`` (a speaker hint's frame is always in it)."""
    video = info.video
    if video is None:
        raise InvalidInputError(f"{path} has no video stream")
    plan = plan_analysis(video.frame_count, video.rate, face_params.detect_every, span, budget,
                         keyframes=lambda indices: media.keyframes_before(path, indices))
    hint_frame = speaker.frame_index if speaker is not None else None
    if hint_frame is not None and 0 <= hint_frame < video.frame_count:
        block = hint_frame // plan.block
        if block not in plan.blocks:
            plan = AnalysisPlan(plan.frame_count, plan.block, plan.span_blocks + (block,), plan.library_blocks)
    return plan


def _frames_of(plan: AnalysisPlan, blocks: Iterable[int]) -> np.ndarray:
    analysed = np.zeros(plan.frame_count, dtype=bool)
    for block in blocks:
        first, end = plan.block_range(block)
        analysed[first:end] = True
    return analysed


def covers(analysis: ClipAnalysis, plan: AnalysisPlan) -> bool:
    """Whether ``analysis`` already holds every frame ``plan`` asks for."""
    return len(analysis.analysed) == plan.frame_count and bool(analysis.analysed[_frames_of(plan, plan.blocks)].all())


def _incomplete(stored: StoredResults, plan: AnalysisPlan, blocks: Iterable[int], with_speech: bool) -> list[int]:
    """Blocks marked done whose results are not all readable (a damaged cache file was dropped)."""
    missing = []
    for block in blocks:
        frames = range(*plan.block_range(block))
        if (any(i not in stored.detections or i not in stored.thumbs for i in frames)
                or (with_speech and block not in stored.speech)):
            missing.append(block)
    return missing


def _lower_face_luma(faces: FaceTrack, thumbs: dict[int, np.ndarray], frame_width: int) -> np.ndarray:
    luma = np.full(len(faces), np.nan)
    for row in np.flatnonzero(faces.present):
        thumb = thumbs.get(int(faces.frame_indices[row]))
        if thumb is None:
            continue
        scale = thumb.shape[1] / frame_width
        x0, y0, x1, y1 = (faces.boxes[row] * scale).astype(int)
        mid = (y0 + y1) // 2
        region = thumb[max(mid, 0) : max(y1, mid + 1), max(x0, 0) : max(x1, x0 + 1)]
        if region.size:
            luma[row] = float(region.mean())
    return luma


def _assemble(path: Path, info: media.MediaInfo, plan: AnalysisPlan, blocks: set[int], stored: StoredResults,
              speaker: SpeakerHint | None, face_params: FaceTrackParams) -> ClipAnalysis:
    video = info.video
    analysed = _frames_of(plan, blocks)
    detections = [stored.detections.get(index, []) if analysed[index] else [] for index in range(plan.frame_count)]
    own_speech = whole_file_speech(stored.speech, plan, video.rate) if info.audio else None
    # Damaged source audio degrades the analysis (silence where it is damaged) instead of failing.
    warnings = list(dict.fromkeys(piece.warning for piece in stored.speech.values() if piece.warning))
    if own_speech is not None and not any(piece.audible for piece in stored.speech.values()):
        own_speech = None  # the audio could not be read at all
    faces = track_from_detections(
        np.arange(plan.frame_count), detections, speaker=speaker, params=face_params, analysed=analysed,
        speech_activity=None if own_speech is None else own_speech.voice_activity,
    )
    if own_speech is not None:
        calibration = calibrate_speaker(faces.aperture, faces.mouth_width, own_speech)
    else:
        calibration = default_calibration(f"{path.name} has no usable audio to calibrate the speaker's mouth from")
    luma = _lower_face_luma(faces, stored.thumbs, media.FrameView.of(video).display_size[0])
    return ClipAnalysis(path, info, faces, luma, own_speech, calibration, analysed=analysed, warnings=warnings)


def analyse_planned(
    path: Path,
    info: media.MediaInfo,
    plan: AnalysisPlan,
    speaker: SpeakerHint | None = None,
    face_params: FaceTrackParams = FaceTrackParams(),
    cache_root: Path | None = None,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
    workers: int | None = None,
    timings: dict[str, float] | None = None,
) -> ClipAnalysis:
    """Analyse the blocks of ``plan`` not yet done, then assemble every block done so far."""
    if plan.block != face_params.detect_every:
        raise InvalidInputError(f"the plan's blocks of {plan.block} frames are not the face stage's {face_params.detect_every}")
    timings = {} if timings is None else timings
    workers = workers or default_workers()
    started = time.perf_counter()
    caches = SourceCaches.of(media.media_fingerprint(path), face_params, info.video.rate, cache_root)
    done = done_blocks(caches, plan.block_count)
    todo = [block for block in plan.blocks if block not in done]
    with_speech = bool(info.audio)
    work: dict[str, float] = {}
    if todo:
        work = analyse_blocks(path, info, plan, todo, caches, face_params, workers, progress, cancel)
    blocks = done | set(plan.blocks)
    loading = time.perf_counter()
    stored = load_results(caches, plan, blocks, with_speech)
    damaged = _incomplete(stored, plan, blocks, with_speech)
    if damaged:
        repaired = analyse_blocks(path, info, plan, damaged, caches, face_params, workers, progress, cancel)
        work = {name: work.get(name, 0.0) + repaired.get(name, 0.0) for name in set(work) | set(repaired)}
        todo += damaged
        stored = load_results(caches, plan, blocks, with_speech)
    assembling = time.perf_counter()
    analysis = _assemble(path, info, plan, blocks, stored, speaker, face_params)
    finished = time.perf_counter()
    new_frames = sum(end - first for first, end in map(plan.block_range, todo))
    timings.update({
        "analyse": loading - started, "load": assembling - loading, "assemble": finished - assembling,
        "frames_analysed": float(new_frames), "frames_known": float(analysis.analysed.sum()),
        **{f"work.{name}": seconds for name, seconds in work.items()},
    })
    return analysis


def analyse_clip(
    path: Path,
    speaker: SpeakerHint | None = None,
    face_params: FaceTrackParams = FaceTrackParams(),
    cache_root: Path | None = None,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
    *,
    span: tuple[int, int] | None = None,
    budget: AnalysisBudget = WHOLE_FILE,
    workers: int | None = None,
    timings: dict[str, float] | None = None,
) -> ClipAnalysis:
    """Face track, own speech and speaker calibration of what ``budget`` plans for ``span`` (the
    default: every frame), plus every block analysed before; all cached per frame."""
    info = media.probe(path)
    plan = plan_for(path, info, span, budget, face_params, speaker)
    return analyse_planned(path, info, plan, speaker, face_params, cache_root, progress, cancel, workers, timings)


@dataclass(frozen=True)
class DiskAnalyses:
    """Analyses from the on-disk cache (computed where missing); nothing kept in memory."""

    cache_root: Path | None = None
    budget: AnalysisBudget = AnalysisBudget()
    workers: int | None = None

    def analyse(self, path: Path, speaker: SpeakerHint | None, progress: ProgressSink = no_progress,
                cancel: CancelToken | None = None, span: tuple[int, int] | None = None,
                timings: dict[str, float] | None = None) -> ClipAnalysis:
        return analyse_clip(path, speaker, cache_root=self.cache_root, progress=progress, cancel=cancel, span=span,
                            budget=self.budget, workers=self.workers, timings=timings)


@dataclass
class _Clip:
    """What the engine knows of one resident clip (for planning and the idle extension)."""

    path: Path
    speaker: SpeakerHint | None
    last_span: tuple[int, int] | None = None


class ResidentAnalyses:
    """Analyses kept in memory (least recently used dropped past ``capacity``) over the disk cache.

    Keyed by the file's identity (resolved path, size, mtime) and the speaker hint, so an edited
    file or another speaker is analysed afresh rather than served a stale analysis. A resident
    analysis that already covers a span's plan is returned as it is; otherwise the missing blocks
    are analysed and the analysis reassembled. ``extend`` analyses more of a resident clip (what an
    idle engine does in the background), so later renders draw on a larger library.
    """

    def __init__(self, capacity: int, cache_root: Path | None = None, budget: AnalysisBudget = AnalysisBudget(),
                 workers: int | None = None, face_params: FaceTrackParams = FaceTrackParams()) -> None:
        self.cache_root = cache_root
        self.budget = budget
        self.workers = workers
        self.face_params = face_params
        self._store: LruStore[tuple, ClipAnalysis] = LruStore(capacity)
        self._plans: LruStore[tuple, AnalysisPlan] = LruStore(256)
        self._clips: dict[tuple, _Clip] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}

    @staticmethod
    def key(path: Path, speaker: SpeakerHint | None) -> tuple:
        resolved = Path(path).resolve()
        stat = os.stat(resolved)
        return (resolved, stat.st_size, stat.st_mtime_ns, speaker.key() if speaker is not None else "")

    def resident(self, path: Path, speaker: SpeakerHint | None) -> bool:
        return Path(path).exists() and self._store.get(self.key(path, speaker)) is not None

    def _key_lock(self, key: tuple) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _plan(self, key: tuple, path: Path, info: media.MediaInfo, speaker: SpeakerHint | None,
              span: tuple[int, int] | None) -> AnalysisPlan:
        plan, _ = self._plans.get_or_load(
            (key, span), lambda: plan_for(path, info, span, self.budget, self.face_params, speaker))
        return plan

    def analyse(self, path: Path, speaker: SpeakerHint | None, progress: ProgressSink = no_progress,
                cancel: CancelToken | None = None, span: tuple[int, int] | None = None,
                timings: dict[str, float] | None = None) -> ClipAnalysis:
        key = self.key(path, speaker)
        with self._lock:
            clip = self._clips.setdefault(key, _Clip(Path(path), speaker))
            if span is not None:
                clip.last_span = span
        with self._key_lock(key):
            current = self._store.get(key)
            info = current.info if current is not None else media.probe(path)
            plan = self._plan(key, path, info, speaker, span)
            if current is not None and covers(current, plan):
                return current
            analysis = analyse_planned(path, info, plan, speaker, self.face_params, self.cache_root, progress, cancel,
                                       self.workers, timings)
            self._store.put(key, analysis)
            return analysis

    def pending(self) -> list[tuple[Path, SpeakerHint | None]]:
        """Resident clips not analysed whole, most recently used first."""
        waiting = []
        for key, entry in reversed(self._store.entries()):
            if not entry.value.analysed.all():
                clip = self._clips.get(key)
                if clip is not None:
                    waiting.append((clip.path, clip.speaker))
        return waiting

    def extend(self, path: Path, speaker: SpeakerHint | None, max_blocks: int,
               cancel: CancelToken | None = None) -> int:
        """Analyse up to ``max_blocks`` more blocks of a resident clip (nearest the last rendered
        span first), make them part of its analysis, and return how many blocks remain."""
        key = self.key(path, speaker)
        current = self._store.get(key)
        if current is None:
            return 0
        plan = self._plan(key, path, current.info, speaker, None)
        clip = self._clips.get(key)
        centre = (sum(clip.last_span) / 2 if clip is not None and clip.last_span else 0.0) / plan.block
        missing = [b for b in range(plan.block_count) if not current.analysed[plan.block_range(b)[0]]]
        missing.sort(key=lambda block: (abs(block + 0.5 - centre), block))
        batch = missing[:max_blocks]
        if batch:
            caches = SourceCaches.of(media.media_fingerprint(path), self.face_params, current.info.video.rate, self.cache_root)
            analyse_blocks(path, current.info, plan, batch, caches, self.face_params, self.workers or default_workers(),
                           no_progress, cancel)
            with self._key_lock(key):
                latest = self._store.get(key) or current
                wanted = AnalysisPlan(plan.frame_count, plan.block, (), tuple(b for b in range(plan.block_count)
                                                                                if latest.analysed[plan.block_range(b)[0]] or b in batch))
                self._store.put(key, analyse_planned(path, latest.info, wanted, speaker, self.face_params,
                                                     self.cache_root, no_progress, cancel, self.workers))
        return len(missing) - len(batch)

    def __len__(self) -> int:
        return len(self._store)
