"""``dubline demo``: make the inputs, render a span with the default backend, measure it, draw a sheet."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import opentimelineio as otio

from dubline.apps.demo.portrait import FRAME_SIZE, render_talking_frames
from dubline.apps.demo.speech import SynthesisedSpeech, synthesise_speech
from dubline.core.errors import InvalidInputError
from dubline.core.progress import ProgressSink, no_progress
from dubline.core.timing import frames_to_range, parse_rate, seconds_to_frame
from dubline.pipeline import RenderRequest, analyse_clip, render
from dubline.pipeline.qc import run_qc
from dubline.qc.sheets import sheet_for_render
from dubline.stages import media
from dubline.stages.speech.calibration import best_lag
from dubline.stages.speech.targets import frame_centres


@dataclass(frozen=True)
class DemoInputs:
    """Files for a demo render: the talking clip, the dub, the span to patch, and a description."""

    video: Path
    dub: Path
    span: otio.opentime.TimeRange
    notes: str




_DUB_TEMPO = 1.2


@dataclass(frozen=True)
class DemoPlan:
    """What the demo files will hold: the clip's speech, the dub's, and the span (frames)."""

    rate: Fraction
    frame_count: int
    span_first: int
    span_end: int  # exclusive
    source: SynthesisedSpeech  # the clip's own track; the mouth follows its openness
    dub: SynthesisedSpeech  # as long as the span
    dub_source_correlation: float  # best-lag (±2 frames) correlation of the two openness tracks over the span

    @property
    def source_openness(self) -> np.ndarray:
        """Mouth openness per clip frame (at frame centres)."""
        return self.source.openness_at(frame_centres(self.rate, self.frame_count))

    @property
    def dub_openness(self) -> np.ndarray:
        """Openness the dub asks for, per span frame."""
        return self.dub.openness_at(frame_centres(self.rate, self.span_end - self.span_first))


#: A dub whose mouth rhythm correlates with the undubbed span above this is re-drawn: the demo must
#: show a change (natural footage with someone else's audio scores about 0.1).
_MAX_DUB_SOURCE_CORRELATION = 0.3
_DUB_DRAWS = 16


def plan_demo(seconds: float = 4.0, rate: Fraction = Fraction(25), seed: int = 0) -> DemoPlan:
    """Speech for the clip and a dub of a different rhythm for a span in the middle of the clip
    (0.5 s in from each end). A pure function of its arguments."""
    rate = parse_rate(rate)
    frame_count = seconds_to_frame(seconds, rate)
    margin = seconds_to_frame(0.5, rate)
    if frame_count < 2 * margin + seconds_to_frame(1.0, rate):
        raise InvalidInputError(f"demo clip of {seconds} s is too short; it needs at least 2 s")
    first, end = margin, frame_count - margin
    source = synthesise_speech(float(frame_count / rate), seed)
    span_openness = source.openness_at(frame_centres(rate, frame_count))[first:end]
    best: tuple[float, SynthesisedSpeech] | None = None
    for draw in range(_DUB_DRAWS):
        dub = synthesise_speech(float((end - first) / rate), seed + 1 + draw, tempo=_DUB_TEMPO)
        _, correlation = best_lag(span_openness, dub.openness_at(frame_centres(rate, end - first)), 2)
        correlation = float(np.nan_to_num(correlation))
        if best is None or correlation < best[0]:
            best = (correlation, dub)
        if correlation <= _MAX_DUB_SOURCE_CORRELATION:
            break
    return DemoPlan(rate, frame_count, first, end, source, best[1], best[0])


def make_demo_inputs(
    directory: Path,
    *,
    seconds: float = 4.0,
    rate: Fraction = Fraction(25),
    seed: int = 0,
    progress: ProgressSink = no_progress,
) -> DemoInputs:
    """Write a talking-astronaut clip (H.264 + its own speech as PCM, in .mov) and a different dub
    (16 kHz WAV) into ``directory``, with a span in the middle of the clip as long as the dub.

    Everything is made offline from scikit-image's public-domain astronaut photograph and our own
    speech synthesis (see ``plan_demo``); the same arguments give the same files.
    """
    plan = plan_demo(seconds, rate, seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    video = media.write_patch(
        render_talking_frames(plan.source_openness, plan.rate, seed, progress),
        directory / "astronaut_talking.mov",
        "h264",
        plan.rate,
        start_timecode="01:00:00:00",
        audio=media.AudioClip(plan.source.samples, plan.source.sample_rate),
        overwrite=True,
    )
    dub = media.write_audio(media.AudioClip(plan.dub.samples, plan.dub.sample_rate), directory / "dub.wav", overwrite=True)
    notes = (
        f"source: {video.name}, {plan.frame_count} frames at {plan.rate} fps ({FRAME_SIZE}x{FRAME_SIZE} H.264, "
        f"start timecode 01:00:00:00), scikit-image's public-domain NASA astronaut portrait animated to its own "
        f"synthetic speech ({len(plan.source.score.syllables)} syllables in {len(plan.source.score.phrases)} phrases); "
        f"dub: {dub.name}, {plan.dub.samples.shape[0] / plan.dub.sample_rate:.2f} s of other, faster synthetic "
        f"speech ({len(plan.dub.score.syllables)} syllables; mouth-rhythm correlation with the undubbed span "
        f"{plan.dub_source_correlation:.2f}); span: frames {plan.span_first}-{plan.span_end - 1}."
    )
    return DemoInputs(video, dub, frames_to_range(plan.span_first, plan.span_end, plan.rate), notes)


@dataclass(frozen=True)
class DemoResult:
    inputs: DemoInputs
    render: Any  # pipeline.RenderResult
    qc: Any  # quality.QcReport
    contact_sheet: Path


def run_demo(directory: Path, progress: ProgressSink = no_progress) -> DemoResult:
    """Make the inputs, render the span with the default backend, measure it, draw a contact sheet."""
    directory.mkdir(parents=True, exist_ok=True)
    inputs = make_demo_inputs(directory, progress=progress)
    patch, matte = directory / "patch.mov", directory / "patch_matte.mov"
    result = render(
        RenderRequest(
            video=inputs.video, audio=inputs.dub, span=inputs.span, out=patch, matte=matte,
            otio_path=directory / "patch.otio", overwrite=True,
        ),
        progress=progress,
        cache_root=directory / "cache",
    )
    report = run_qc(patch, inputs.dub, source=inputs.video, span=inputs.span, matte=matte,
                    cache_root=directory / "cache", progress=progress)
    faces = analyse_clip(inputs.video, cache_root=directory / "cache").faces
    sheet = sheet_for_render(inputs.video, result.span[0], patch, faces, directory / "contact_sheet.png", matte)
    return DemoResult(inputs, result, report, sheet)
