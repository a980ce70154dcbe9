"""Analysis of the speaker's footage, and who provides it to a render.

``analyse_clip`` computes a ``ClipAnalysis`` (face track of every frame, the clip's own speech, the
speaker calibration), with every per-frame result cached on disk. A render asks an
``AnalysisProvider`` for the analyses it needs: ``DiskAnalyses`` (the CLI) recomputes from the disk
cache each time; ``ResidentAnalyses`` (the engine) also keeps recent analyses in memory, keyed by
the file's identity and the speaker hint, so a warm engine pays nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from dubline.core import timing
from dubline.core.cache import FrameCache
from dubline.core.errors import InvalidInputError, MediaError
from dubline.core.lru import LruStore
from dubline.core.progress import CancelToken, ProgressSink, no_progress
from dubline.stages import media
from dubline.stages.backends.base import ClipAnalysis
from dubline.stages.faces import (
    FaceTrack,
    FaceTrackParams,
    SpeakerHint,
    detection_cache,
    track_faces,
    track_from_detections,
)
from dubline.stages.speech import SpeechTrack, analyse_speech
from dubline.stages.speech.calibration import calibrate_speaker, default_calibration
from dubline.stages.speech.phones import SAMPLE_RATE

#: Lower-face brightness thumbnails: small enough to keep for every frame of a long source.
THUMB_WIDTH = 64


class AnalysisProvider(Protocol):
    def analyse(self, path: Path, speaker: SpeakerHint | None, progress: ProgressSink,
                cancel: CancelToken | None) -> ClipAnalysis:
        """The analysis of ``path`` with ``speaker`` as the hint (None: found from the audio)."""


@dataclass(frozen=True)
class DiskAnalyses:
    """Analyses from the on-disk cache (computed where missing); nothing kept in memory."""

    cache_root: Path | None = None

    def analyse(self, path: Path, speaker: SpeakerHint | None, progress: ProgressSink = no_progress,
                cancel: CancelToken | None = None) -> ClipAnalysis:
        return analyse_clip(path, speaker, cache_root=self.cache_root, progress=progress, cancel=cancel)


class ResidentAnalyses:
    """Analyses kept in memory (least recently used dropped past ``capacity``) over the disk cache.

    Keyed by the file's identity (resolved path, size, mtime) and the speaker hint, so an edited
    file or another speaker is analysed afresh rather than served a stale analysis.
    """

    def __init__(self, capacity: int, cache_root: Path | None = None) -> None:
        self._disk = DiskAnalyses(cache_root)
        self._store: LruStore[tuple, ClipAnalysis] = LruStore(capacity)

    @staticmethod
    def key(path: Path, speaker: SpeakerHint | None) -> tuple:
        resolved = Path(path).resolve()
        stat = os.stat(resolved)
        return (resolved, stat.st_size, stat.st_mtime_ns, speaker.key() if speaker is not None else "")

    def resident(self, path: Path, speaker: SpeakerHint | None) -> bool:
        return Path(path).exists() and self._store.get(self.key(path, speaker)) is not None

    def analyse(self, path: Path, speaker: SpeakerHint | None, progress: ProgressSink = no_progress,
                cancel: CancelToken | None = None) -> ClipAnalysis:
        analysis, _ = self._store.get_or_load(
            self.key(path, speaker), lambda: self._disk.analyse(path, speaker, progress, cancel)
        )
        return analysis

    def __len__(self) -> int:
        return len(self._store)


def _thumbnails(frames: Iterable[media.VideoFrame], store: dict[int, np.ndarray]) -> Iterator[media.VideoFrame]:
    """Pass frames through, keeping a small grey thumbnail of each (for lighting costs)."""
    for frame in frames:
        height, width = frame.image.shape[:2]
        size = (THUMB_WIDTH, max(1, round(height * THUMB_WIDTH / width)))
        store[frame.index] = cv2.resize(cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)
        yield frame


def _lower_face_luma(faces: FaceTrack, thumbs: dict[int, np.ndarray], frame_width: int) -> np.ndarray:
    luma = np.full(len(faces), np.nan)
    for row, index in enumerate(faces.frame_indices):
        thumb = thumbs.get(int(index))
        if thumb is None or not faces.present[row]:
            continue
        scale = thumb.shape[1] / frame_width
        x0, y0, x1, y1 = (faces.boxes[row] * scale).astype(int)
        mid = (y0 + y1) // 2
        region = thumb[max(mid, 0) : max(y1, mid + 1), max(x0, 0) : max(x1, x0 + 1)]
        if region.size:
            luma[row] = float(region.mean())
    return luma


def analyse_clip(
    path: Path,
    speaker: SpeakerHint | None = None,
    face_params: FaceTrackParams = FaceTrackParams(),
    cache_root: Path | None = None,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> ClipAnalysis:
    """Face track of every frame, the clip's own speech, and the speaker calibration (cached)."""
    info = media.probe(path)
    video = info.video
    if video is None:
        raise InvalidInputError(f"{path} has no video stream")
    whole = timing.frames_to_range(0, video.frame_count, video.rate)
    fingerprint = media.media_fingerprint(path)

    own_speech, warnings = _own_speech(path, info, whole, cache_root, cancel)

    thumb_cache = FrameCache("thumbs", fingerprint, {"width": THUMB_WIDTH}, root=cache_root)
    detections = detection_cache(fingerprint, face_params, root=cache_root)
    every_frame = range(video.frame_count)
    thumbs: dict[int, np.ndarray] = thumb_cache.get_many(every_frame)
    cached = detections.get_many(every_frame) if len(thumbs) == video.frame_count else {}
    activity = None if own_speech is None else own_speech.voice_activity
    if len(cached) == video.frame_count:
        # Warm: no frame needs decoding, only the cheap tracking and smoothing.
        faces = track_from_detections(
            np.arange(video.frame_count), [cached[i] for i in every_frame],
            speech_activity=activity, speaker=speaker, params=face_params,
        )
    else:
        fresh: dict[int, np.ndarray] = {}
        faces = track_faces(
            _thumbnails(media.read_span(path, whole), fresh),
            frame_count=video.frame_count,
            speech_activity=activity,
            speaker=speaker,
            params=face_params,
            cache=detections,
            progress=progress,
            cancel=cancel,
        )
        thumb_cache.put_many(fresh)
        thumbs.update(fresh)

    if own_speech is not None:
        calibration = calibrate_speaker(faces.aperture, faces.mouth_width, own_speech)
    else:
        calibration = default_calibration(f"{path.name} has no usable audio to calibrate the speaker's mouth from")
    return ClipAnalysis(path, info, faces, _lower_face_luma(faces, thumbs, video.width), own_speech, calibration,
                        warnings)


def _own_speech(path: Path, info: media.MediaInfo, whole, cache_root: Path | None,
                cancel: CancelToken | None) -> tuple[SpeechTrack | None, list[str]]:
    """The clip's own speech, for finding the speaker and calibrating the mouth. The render needs
    the source's audio for nothing else, so damaged audio degrades this analysis (silence where it
    is damaged, or no own speech at all) with a warning instead of failing the render."""
    warnings: list[str] = []
    if not info.audio:
        return None, warnings
    try:
        own_audio = media.read_audio(path, whole, rate=SAMPLE_RATE, mono=True, on_damage=warnings.append)
    except MediaError as error:
        warnings.append(f"the audio of {path.name} could not be read ({error}); the speaker is found and"
                        " calibrated without it")
        return None, warnings
    assert info.video is not None  # analyse_clip checked it
    speech = analyse_speech(own_audio, rate=info.video.rate, frame_count=info.video.frame_count,
                            cache=cache_root or True, cancel=cancel)
    return speech, warnings

