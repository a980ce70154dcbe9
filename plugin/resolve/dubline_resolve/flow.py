"""The two ways to patch from Resolve, end to end: direct placement and the OTIO round trip."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dubline_client import EngineClient, pb

from dubline_resolve.engine import (
    BridgeSettings, connect, engine_choices, patch_path_for, render_patch, settings_for_engine,
)
from dubline_resolve.errors import MediaError
from dubline_resolve.otio_roundtrip import (
    clip_argument, dubline_otio_command, export_timeline_otio, import_timeline_otio, run_dubline_otio,
)
from dubline_resolve.placement import Placement, mark_flags, place_patch
from dubline_resolve.selection import SourceSpan, current_project_and_timeline, select_span

Report = Callable[[str], None]


@dataclass(frozen=True)
class PatchResult:
    span: SourceSpan
    patch_path: Path
    done: pb.RenderDone
    placement: Placement


@dataclass(frozen=True)
class OtioResult:
    span: SourceSpan
    timeline: object           # the imported, patched timeline (now current)
    timeline_path: Path
    summary: dict              # `dubline otio --json`


def check_dub(dub_path: str | None) -> str:
    if not dub_path:
        raise MediaError("choose a dub audio file")
    if not os.path.isfile(dub_path):
        raise MediaError(f"the dub audio file is not there: {dub_path}")
    return os.path.abspath(dub_path)


def patch_current_item(resolve: object, dub_path: str | None, settings: BridgeSettings, *, use_marks: bool = True,
                       report: Report = print, client: EngineClient | None = None) -> PatchResult:
    """Render the span under the playhead (or marked) with the dub and place the patch above it."""
    project, timeline = current_project_and_timeline(resolve)
    span = select_span(project, timeline, use_marks=use_marks)
    dub = check_dub(dub_path)
    for warning in span.warnings:
        report(f"dubline: warning: {warning}")
    report(f"dubline: {span.describe()}")
    own_client = client is None
    engine = connect(settings) if own_client else client
    try:
        choices = engine_choices(engine, settings)
        settings = settings_for_engine(settings, choices)
        backend = choices.backend(settings.backend)
        if not backend.weights_present:
            report(f"dubline: warning: the engine lacks weights of backend {backend.name} "
                   f"({', '.join(backend.missing_weights)}); the render will likely be refused")
        out = patch_path_for(span, dub, settings, choices)
        done = render_patch(engine, span, dub, out, settings, report)
    finally:
        if own_client:
            engine.close()
    report(f"dubline: wrote {done.out}")
    placement = place_patch(timeline, project.GetMediaPool(), done.out, span.record_first, span.frame_count, report)
    report(f"dubline: placed on V{placement.track_index} at frame {placement.record_first} "
           f"({placement.frame_count} frames)")
    if mark_flags(placement.item, done.flags, report):
        report("dubline: markers on the patch: " + "; ".join(flag.label for flag in done.flags))
    return PatchResult(span=span, patch_path=Path(done.out), done=done, placement=placement)


def patch_via_otio(resolve: object, dub_path: str | None, settings: BridgeSettings, *, use_marks: bool = True,
                   work_dir: Path | None = None, report: Report = print) -> OtioResult:
    """Export the timeline as OTIO, run ``dubline otio`` on the span, import the result as a new timeline."""
    project, timeline = current_project_and_timeline(resolve)
    span = select_span(project, timeline, use_marks=use_marks)
    dub = check_dub(dub_path)
    clip = clip_argument(timeline, span.item_name, timeline.GetCurrentVideoItem())
    folder = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="dubline-resolve-"))
    exported = folder / f"{timeline.GetName()}.otio"
    patched = folder / f"{timeline.GetName()}.dubline.otio"
    export_timeline_otio(resolve, timeline, exported)
    report(f"dubline: exported {exported}; rendering {span.describe()}")
    summary = run_dubline_otio(dubline_otio_command(settings, exported, clip, span, dub, patched))
    new_timeline = import_timeline_otio(project.GetMediaPool(), patched, f"{timeline.GetName()} (dubline)")
    project.SetCurrentTimeline(new_timeline)
    report(f"dubline: imported {patched} as timeline {new_timeline.GetName()!r}")
    return OtioResult(span=span, timeline=new_timeline, timeline_path=patched, summary=summary)
