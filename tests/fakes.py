"""Tiny, deterministic stand-ins for the expensive stages, so ``render()``'s own logic is tested in
seconds on synthetic clips (the fast tier): a face analysis built from a template face instead of
dlib, and a backend that paints a known colour into the mouth region.

``FakeBackend`` is registered under the name ``fake`` with ``register_fake_backend(monkeypatch)``;
its options say which span rows pass through and why (``passthrough="2:no_face,5:occluded"``),
that preflight fails (``fail_preflight="..."``), or that the render pauses once mid-span
(``pause_once=PATH``: at the span's second frame the first render to get there writes its process
id to PATH and waits until it is cancelled; later renders, such as Ray's retry after that process
is killed, find PATH and go on), or that ``patches`` raises ``FakeBackendError`` at a span
row (``fail_at="3"``), or that it keeps the speaker's own mouth where the dub is silent, as the
retrieval backend does (``silent_keeps_own=1``). ``install_fake_backend()`` registers it in a
worker process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from dubline.core import timing
from dubline.core.errors import InvalidInputError, ModelNotFoundError
from dubline.core.landmarks import face_template_68
from dubline.stages import media
from dubline.stages.backends import MANIFEST
from dubline.stages.backends.base import (
    DUB_SILENT_REASON,
    BackendInfo,
    BackendJob,
    ClipAnalysis,
    MouthPatch,
)
from dubline.stages.faces import FaceTrackParams, SpeakerHint, track_from_detections
from dubline.stages.faces.types import FaceDetection
from dubline.stages.speech.calibration import default_calibration

#: The colour the fake backend paints over the lower face (so tests can see where it landed).
PATCH_RGB = (250, 20, 200)


def face_geometry(width: int, height: int) -> tuple[tuple[float, float], float]:
    """Centre and jaw width of the template face placed in a ``width`` x ``height`` frame."""
    return (width / 2, height / 2), 0.6 * min(width, height)


@dataclass
class FakeAnalyses:
    """An AnalysisProvider: a template face on every frame except ``no_face_frames``."""

    no_face_frames: frozenset[int] = frozenset()
    calls: list[Path] = field(default_factory=list)
    spans: list[tuple[int, int] | None] = field(default_factory=list)

    def __len__(self) -> int:
        """Clips analysed so far (what an engine's resident analyses report as held)."""
        return len(set(self.calls))

    def __bool__(self) -> bool:  # a provider that has analysed nothing yet is still one
        return True

    def pending(self) -> list:
        """Clips an idle engine would analyse further: none (a fake analysis is whole)."""
        return []

    def analyse(self, path: Path, speaker: SpeakerHint | None, progress=None, cancel=None, span=None,
                timings=None) -> ClipAnalysis:
        self.calls.append(Path(path))
        self.spans.append(span)
        info = media.probe(path)
        video = info.video
        assert video is not None
        centre, jaw = face_geometry(video.width, video.height)
        detections = []
        for index in range(video.frame_count):
            if index in self.no_face_frames:
                detections.append([])
                continue
            points = face_template_68(centre, jaw, mouth_open=0.02 * (index % 3)).astype(np.float32)
            x0, y0 = points.min(axis=0)
            x1, y1 = points.max(axis=0)
            detections.append([FaceDetection((float(x0), float(y0), float(x1), float(y1)), 2.0, points,
                                             np.zeros(128, np.float32))])
        faces = track_from_detections(np.arange(video.frame_count), detections, speaker=speaker, params=FaceTrackParams())
        luma = np.where(faces.present, 100.0, np.nan)
        return ClipAnalysis(Path(path), info, faces, luma, None, default_calibration("a fake analysis has no audio"))


class FakeBackendError(RuntimeError):
    """What ``patches`` raises at the row ``fail_at`` names."""


class FakeBackend:
    info = BackendInfo(name="fake", description="test backend: paints the lower face", options={
        "passthrough": "ROW:REASON,... span rows passed through", "fail_preflight": "message",
        "pause_once": "PATH: pause at the second frame until cancelled, once",
        "fail_at": "span row where patches raises FakeBackendError",
        "silent_keeps_own": "1: the speaker's own mouth where the dub's voice activity is below 0.5",
        "tint": "true: a dark stripe in the patch as tall as the dub is loud at the frame (an edit of the dub shows where it lands)"})
    #: Hang guard of a pause nobody cancels (tests wait on the pause file, never on this).
    PAUSE_LIMIT_SECONDS = 120

    def preflight(self, options: Mapping[str, Any]) -> None:
        if "fail_preflight" in options:
            raise ModelNotFoundError(str(options["fail_preflight"]))
        unknown = set(options) - {"passthrough", "fail_preflight", "pause_once", "fail_at", "silent_keeps_own", "tint"}
        if unknown:
            raise InvalidInputError(f"fake backend has no option {sorted(unknown)}")

    def prepare(self, job: BackendJob) -> dict[int, str]:
        plan = {}
        for item in str(job.options.get("passthrough", "")).split(","):
            if item:
                row, _, reason = item.partition(":")
                plan[int(row)] = reason
        return plan

    @staticmethod
    def stripe(job: BackendJob, row: int) -> int:
        """Rows of a dark stripe painted below the frame's middle (``tint``; 0 without)."""
        if not job.options.get("tint"):
            return 0
        # the loudness of the dub over the frame's own time (its rate from the source's stream)
        rate = job.source.info.video.rate
        audio = job.dub_audio
        start, end = (int(row * audio.sample_rate / rate), int((row + 1) * audio.sample_rate / rate))
        samples = np.asarray(audio.samples[start:end], np.float64)
        loudness = float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0
        return int(np.clip(round(loudness * 200), 0, 60))

    def frame_keys(self, job: BackendJob, plan: dict[int, str]) -> list[str]:
        first, end = job.span
        faces = job.source.faces
        silent = [bool(job.options.get("silent_keeps_own")) and job.dub.voice_activity[row] < 0.5
                  for row in range(end - first)]
        return [f"fake:{first + row}:{plan.get(row)}:{faces.reason[first + row]}:{silent[row]}:{self.stripe(job, row)}:"
                f"{faces.landmarks[first + row].tobytes().hex()}" for row in range(end - first)]

    def patches(self, job: BackendJob, plan: dict[int, str], frames: Iterable[media.VideoFrame]) -> Iterator[tuple[media.VideoFrame, MouthPatch]]:
        first, _ = job.span
        faces = job.source.faces
        fail_at = int(job.options["fail_at"]) if "fail_at" in job.options else None
        for frame in frames:
            row = frame.index - first
            if row == fail_at:
                raise FakeBackendError(f"fake backend failed at span row {row}")
            if row == 1 and job.options.get("pause_once"):
                self._pause_once(Path(job.options["pause_once"]), job)
            if row in plan:
                yield frame, MouthPatch(None, None, plan[row])
                continue
            if not faces.usable[frame.index]:
                yield frame, MouthPatch(None, None, str(faces.reason[frame.index]))
                continue
            if job.options.get("silent_keeps_own") and job.dub.voice_activity[row] < 0.5:
                yield frame, MouthPatch(None, None, DUB_SILENT_REASON)
                continue
            image = frame.image.copy()
            image[:] = PATCH_RGB
            middle = image.shape[0] // 2
            image[middle : middle + self.stripe(job, row)] = (20, 20, 20)
            yield frame, MouthPatch(image, faces.landmarks[frame.index].astype(np.float64))


    def _pause_once(self, path: Path, job: BackendJob) -> None:
        try:
            with path.open("x") as handle:  # only the first render to get here pauses
                handle.write(str(os.getpid()))
        except FileExistsError:
            return
        deadline = time.monotonic() + self.PAUSE_LIMIT_SECONDS
        while time.monotonic() < deadline and not (job.cancel is not None and job.cancel.cancelled):
            time.sleep(0.02)


BACKEND = FakeBackend()


def register_fake_backend(monkeypatch) -> None:
    monkeypatch.setitem(MANIFEST, "fake", __name__)


def install_fake_backend() -> None:
    """Register the fake backend in this process for good (a batch worker's setup)."""
    MANIFEST["fake"] = __name__


def write_clip(path: Path, frames: int = 8, width: int = 128, height: int = 128, rate: Fraction = Fraction(25),
               timecode: str | None = "01:00:00:00") -> Path:
    """A lossless synthetic clip with varied pixels (so exactness outside the matte means something)."""
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(frames)]
    return media.write_patch(images, path, "ffv1", rate, start_timecode=timecode)


@dataclass
class FixedAnalyses:
    """An AnalysisProvider that hands out analyses prepared by the test (keyed by resolved path)."""

    analyses: dict[Path, ClipAnalysis]

    def analyse(self, path: Path, speaker: SpeakerHint | None, progress=None, cancel=None, span=None,
                timings=None) -> ClipAnalysis:
        return self.analyses[Path(path).resolve()]


def speech_dub(path: Path, seconds: float) -> Path:
    """A 16 kHz dub of ``seconds``: a 220 Hz tone switched on and off three times a second (speech
    for the analysis, silence between)."""
    t = np.arange(int(seconds * 16000)) / 16000
    samples = (0.2 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    return media.write_audio(media.AudioClip(samples, 16000), path)


def all_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a clip, as stored."""
    info = media.probe(path)
    return [f.image for f in media.read_span(path, timing.frames_to_range(0, info.video.frame_count, info.video.rate))]
