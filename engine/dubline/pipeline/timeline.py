"""OTIO round trip: an editor's timeline in, the same timeline with a lip-synced patch on top out.

Reading, surveying, selecting and planning live in ``dubline.interchange``; this module renders
the planned span and puts it on the timeline:

    read_timeline   file (otio_json; fcp_xml / cmx_3600 through OTIO's adapter plug-ins)
    resolve_clip    which clip, its media file, source frames and record frames
    check_media     the media file's rate, start and length against the clip
    plan_span       the span to patch, in record (timeline) or source (media) time
    prepare         all of the above plus the output checks: what ``--dry-run`` runs
    render_patch    the pipeline (or a running engine) renders the span into the patch file
    insert_patch    a copy of the timeline with the patch on a new top video track
    write_timeline  atomic ``.otio`` JSON (from ``interchange``)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import opentimelineio as otio
from dubline_client import frames_span, rational, render_spec

from dubline.core import timing
from dubline.core.errors import InvalidInputError, NoStreamError
from dubline.core.flags import FrameFlag
from dubline.core.paths import check_outputs
from dubline.core.progress import no_progress
from dubline.interchange.insert import PatchMedia, insert_patch
from dubline.interchange.plan import (
    PatchPlan,
    check_media,
    default_patch_path,
    plan_span,
    plan_summary,
    resolve_clip,
)
from dubline.interchange.read import read_timeline
from dubline.interchange.timeline import write_timeline
from dubline.pipeline.render import render
from dubline.pipeline.request import RenderRequest
from dubline.stages import media
from dubline.stages.backends import DEFAULT_BACKEND


@dataclass
class RoundTripResult:
    timeline: Path
    patch: Path
    plan: PatchPlan
    render: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "timeline": str(self.timeline),
            "patch": str(self.patch),
            **plan_summary(self.plan),
            "render": self.render,
            "warnings": self.warnings,
        }


# ---------------------------------------------------------------------------------------- render


@dataclass(frozen=True)
class RenderSettings:
    """What ``dubline render`` would be told besides video, span and out."""

    audio: Path
    backend: str = DEFAULT_BACKEND
    codec: str = media.DEFAULT_PATCH_CODEC
    audio_offset: Fraction = Fraction(0)  # seconds of the dub that play at the span's first frame
    speaker: str | None = None  # X,Y@FRAME / box@FRAME on file frames, or an image path
    expression: str = "as-source"
    with_audio: bool = False
    length_policy: str = "pad_or_trim"
    backend_options: dict[str, str] = field(default_factory=dict)


#: Renders ``plan`` into ``patch`` -> (PatchMedia, the renderer's report as a dict, warnings).
Renderer = Callable[["PatchPlan", Path, RenderSettings, bool], tuple[PatchMedia, dict[str, Any], list[str]]]


def render_in_process(plan: PatchPlan, patch: Path, settings: RenderSettings, overwrite: bool,
                      progress: Any = None, cache_root: Path | None = None) -> tuple[PatchMedia, dict[str, Any], list[str]]:
    """Render the span with ``pipeline.render`` in this process."""
    first, end = plan.file_frames()
    request = RenderRequest.from_text(
        video=plan.clip.media, audio=settings.audio, span=timing.frames_to_range(first, end, plan.rate), out=patch,
        backend=settings.backend, codec=settings.codec, audio_offset=timing.seconds_time(settings.audio_offset),
        speaker=settings.speaker, expression=settings.expression, overwrite=overwrite, with_audio=settings.with_audio,
        length_policy=settings.length_policy, backend_options=dict(settings.backend_options),
    )
    result = render(request, progress=progress or no_progress, cache_root=cache_root)
    start = timing.timecode_to_frames(result.start_timecode, plan.rate) if result.start_timecode else first
    return PatchMedia(result.out, result.frames_written, start, tuple(result.flags)), result.to_dict(), list(result.warnings)


def engine_renderer(client: Any, on_event: Callable[[Any], None] | None = None) -> Renderer:
    """A renderer that submits the span to a running engine through ``dubline_client``."""

    def render(plan: PatchPlan, patch: Path, settings: RenderSettings, overwrite: bool):
        first, end = plan.file_frames()
        speaker = settings.speaker or ""
        if speaker and "@" not in speaker:
            speaker = os.path.abspath(speaker)
        spec = render_spec(
            os.path.abspath(plan.clip.media), os.path.abspath(settings.audio), frames_span(first, end, plan.rate),
            os.path.abspath(patch), backend=settings.backend, codec=settings.codec,
            audio_offset=rational(settings.audio_offset), speaker=speaker, expression=settings.expression,
            overwrite=overwrite, with_audio=settings.with_audio, length_policy=settings.length_policy,
            backend_options=settings.backend_options,
        )
        done = client.render_and_wait(spec, on_event=on_event)
        start = timing.timecode_to_frames(done.start_timecode, plan.rate) if done.start_timecode else first
        report = {
            "out": done.out, "frames_written": done.frames_written, "span": [done.span_first, done.span_end],
            "start_timecode": done.start_timecode, "backend": done.backend, "frames_patched": done.frames_patched,
            "warnings": list(done.warnings),
        }
        flags = tuple(FrameFlag(f.first, f.end, f.kind, f.note) for f in done.flags)
        report["flags"] = [flag.to_dict() for flag in flags]
        return PatchMedia(Path(done.out), int(done.frames_written), start, flags), report, list(done.warnings)

    return render


def with_qc(renderer: Renderer, progress: Any = None) -> Renderer:
    """``renderer``, then qc of the patch it wrote against the source span and the dub: the report
    gains ``qc`` and the patch's flags gain qc's, so the timeline's markers say what qc found too.
    The patch is read where it was written (an engine's patch on storage this machine sees)."""
    from dubline.pipeline.flags import flags_of
    from dubline.pipeline.qc import run_qc

    def render_then_measure(plan: PatchPlan, patch: Path, settings: RenderSettings, overwrite: bool):
        patch_media, report, warnings = renderer(plan, patch, settings, overwrite)
        first, end = plan.file_frames()
        qc = run_qc(Path(patch_media.path), settings.audio, source=plan.clip.media,
                    span=timing.frames_to_range(first, end, plan.rate),
                    audio_offset=timing.seconds_time(settings.audio_offset), progress=progress or no_progress)
        report["qc"] = qc.to_dict()
        flags = tuple(flags_of({"flags": [flag.to_dict() for flag in patch_media.flags]}, report["qc"]))
        report["flags"] = [flag.to_dict() for flag in flags]
        return replace(patch_media, flags=flags), report, warnings

    return render_then_measure


@dataclass(frozen=True)
class PreparedRoundTrip:
    """Everything checked that can be without rendering: what ``--dry-run`` reports."""

    timeline: otio.schema.Timeline
    plan: PatchPlan
    patch: Path
    out: Path
    settings: RenderSettings
    overwrite: bool
    inputs: dict[str, Path]

    @property
    def warnings(self) -> list[str]:
        return list(self.plan.warnings)


def prepare(
    timeline_path: Path,
    clip: str,
    out: Path,
    settings: RenderSettings,
    span: str | None = None,
    range_in: str = "record",
    patch: Path | None = None,
    overwrite: bool = False,
    adapter: str | None = None,
    edl_rate: Fraction | None = None,
    on_transition: str = "shorten",
    include_disabled: bool = False,
    probe: Callable[[Path], Any] | None = None,
) -> PreparedRoundTrip:
    """Read, resolve, probe the media (rate, start, length), plan the span, probe the dub, and
    check the outputs: every check of a real run that needs no pixels."""
    if Path(out).suffix.lower() != ".otio":
        raise InvalidInputError(f"--out {out} must be an .otio file (convert it with otioconvert if your host needs XML)")
    probe = probe or media.probe
    timeline = read_timeline(timeline_path, adapter, edl_rate)
    resolved = check_media(resolve_clip(timeline, clip, timeline_path, include_disabled=include_disabled), probe)
    plan = plan_span(resolved, span, range_in, on_transition)
    if not probe(settings.audio).audio:
        raise NoStreamError(f"--audio {settings.audio} has no audio stream")
    patch = Path(patch) if patch is not None else default_patch_path(out, plan, settings.codec)
    inputs = {"--timeline": Path(timeline_path), "clip media": plan.clip.media, "--audio": Path(settings.audio)}
    check_outputs({"--out": out, "--patch": patch}, inputs)
    media.check_output(out, overwrite)
    media.check_output(patch, overwrite)
    return PreparedRoundTrip(timeline, plan, patch, Path(out), settings, overwrite, inputs)


def round_trip(prepared: PreparedRoundTrip, renderer: Renderer) -> RoundTripResult:
    """Render what ``prepare`` planned, insert the patch, write the timeline. Removes a patch it
    rendered when the timeline cannot be written."""
    plan, patch = prepared.plan, prepared.patch
    warnings = prepared.warnings
    patch_existed = patch.exists()
    settings, overwrite = prepared.settings, prepared.overwrite
    media, report, render_warnings = renderer(plan, patch, settings, overwrite)
    warnings.extend(render_warnings)
    try:
        written = insert_patch(prepared.timeline, plan, media, settings.audio, settings.backend, {"codec": settings.codec})
        write_timeline(written, prepared.out, overwrite, prepared.inputs)
    except BaseException:
        if not patch_existed:
            Path(media.path).unlink(missing_ok=True)  # a patch no timeline points at is half a result
        raise
    return RoundTripResult(prepared.out, Path(media.path), plan, report, warnings)
