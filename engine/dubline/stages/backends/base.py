"""The contract between the pipeline and every render backend.

A backend is an object with an ``info`` and three methods (``Backend``). The pipeline hands it a
``BackendJob`` (everything it may use, declared here; a backend reads nothing else) and streams the
span's frames through ``patches``; the backend answers one ``MouthPatch`` per frame, in order. The
shared compositor pastes the patches, so every backend gets the same matte, colour match and blend.

Backends import from this module and the stages below them, never from the pipeline or apps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Protocol, runtime_checkable

import numpy as np

from dubline.core.progress import CancelToken, ProgressSink
from dubline.stages.faces import FaceTrack
from dubline.stages.media import AudioClip, FrameView, MediaInfo, VideoFrame
from dubline.stages.speech import SpeakerCalibration, SpeechTrack


@dataclass(frozen=True)
class BackendInfo:
    name: str
    description: str
    #: files the backend needs in the user's model directory (empty: works offline as installed)
    weights: tuple[str, ...] = ()
    prefers_gpu: bool = False
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class ClipAnalysis:
    """Everything the backends need to know about one source file of the speaker.

    Arrays have one row per frame of the file, but only ``analysed`` frames were looked at (a
    render analyses its span, a window and a sampled library; see dubline.pipeline.budget): the
    others have no face (reason "unanalysed"), NaN luma and no own speech.
    """

    path: Path
    info: MediaInfo
    faces: FaceTrack  # over every frame of the file, in the analysis view's coordinates (``view``)
    lower_face_luma: np.ndarray  # (N,) mean luma of the lower face, NaN without a face
    own_speech: SpeechTrack | None  # the clip's own audio over the whole file (analysed frames)
    calibration: SpeakerCalibration
    analysed: np.ndarray | None = None  # (N,) bool; None: every frame

    def __post_init__(self) -> None:
        if self.analysed is None:
            self.analysed = np.ones(len(self.faces), dtype=bool)

    #: what was degraded while analysing (undecodable audio...), repeated in each render's warnings
    warnings: list[str] = field(default_factory=list)

    @property
    def view(self) -> FrameView:
        """How the file's stored frames map to the upright, square-pixel pictures ``faces`` is of."""
        assert self.info.video is not None
        return FrameView.of(self.info.video)


@dataclass
class BackendJob:
    """What a backend gets for one render (its inputs are declared here, nothing else is read)."""

    source: ClipAnalysis
    library: list[ClipAnalysis]  # the source first, then --library files
    span: tuple[int, int]
    dub: SpeechTrack
    target_aperture: np.ndarray  # (T,) calibrated to the speaker's own descriptor scale
    target_width: np.ndarray
    expression: str
    options: dict[str, Any]
    dub_audio: AudioClip  # 16 kHz mono, aligned to the span (neural backends need it)
    progress: ProgressSink
    cancel: CancelToken | None
    #: what the backend's ``pins`` said after the previous render of this span (None: none known);
    #: a selection-style backend keeps those choices where the dub did not change
    previous: Any = None


#: ``MouthPatch.reason`` of a frame whose own mouth a backend keeps because the dub is silent there
#: (timelines mark such frames apart from frames without a usable face: usually nothing is wrong).
DUB_SILENT_REASON = "dub silent, own mouth at rest"


@dataclass(frozen=True)
class MouthPatch:
    """A backend's result for one frame: a full-frame image aligned to the target frame and the
    landmarks the matte is cut from, or no patch with the reason the frame passes through.

    Both are in the frame's *stored* pixels (its orientation, pixel grid and dtype): a backend
    works on the analysis view's coordinates (``ClipAnalysis.view``) and maps its result back with
    ``FrameView.stored_region`` / ``to_stored``, so the compositor never resamples the frame."""

    image: np.ndarray | None
    matte_landmarks: np.ndarray | None
    reason: str = ""
    #: the frame shows a different run of material than the frame before (a cut between runs of
    #: library frames, or to or from the frame's own mouth): qc and the editor mark these
    run_start: bool = False


@runtime_checkable
class Backend(Protocol):
    info: BackendInfo

    def preflight(self, options: Mapping[str, Any]) -> None:
        """Check options and weights before any analysis runs (missing files fail here)."""

    def prepare(self, job: BackendJob) -> Any:
        """Whatever the backend decides for the whole span before frames stream (its plan)."""

    def patches(self, job: BackendJob, plan: Any, frames: Iterable[VideoFrame]) -> Iterator[tuple[VideoFrame, MouthPatch]]:
        """One (frame, patch) per input frame, in order (``frames`` may skip rows of the span:
        an incremental re-render decodes only the frames it draws again)."""


#: Optional backend methods for incremental re-renders (``dubline.pipeline.incremental``):
#:
#: ``frame_keys(job, plan) -> list[str]``: per span row, a digest of everything that row's
#: ``MouthPatch`` depends on besides the source frame's pixels (two renders with equal keys draw
#: the same patch); without it every row depends on the whole dub and option set.
#: ``pins(job, plan) -> Any``: a picklable summary of the plan handed back as ``job.previous``
#: on the next render of the span.
INCREMENTAL_METHODS = ("frame_keys", "pins")
