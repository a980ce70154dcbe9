"""``dubline render``: write the lip-synced patch for one span (the product's main job)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dubline.core.progress import TqdmProgress
from dubline.stages import media
from dubline.stages.backends import DEFAULT_BACKEND, EXPRESSIONS
from dubline.stages.backends import names as backend_names
from dubline.stages.speech import LENGTH_POLICIES

if TYPE_CHECKING:
    from dubline.pipeline import AnalysisBudget, RenderRequest


def add_budget_argument(parser: argparse.ArgumentParser) -> None:
    """``--analysis-budget`` (``dubline render`` and ``dubline serve``; docs/ENGINE.md)."""
    parser.add_argument(
        "--analysis-budget", metavar="BUDGET",
        help="what a render analyses of its source before it starts: the span, 1s either side and a library "
             "sampled from the rest of the file, 6s by default; give the library's size (6s, or 150 frames) "
             "with optional ,window=AMOUNT and ,run=AMOUNT (consecutive frames per sample), or 'all' for every "
             "frame. Frames analysed before (dubline analyse --whole-file) always join the library",
    )


def budget_from_args(args: argparse.Namespace) -> AnalysisBudget:
    from dubline.pipeline import AnalysisBudget

    return AnalysisBudget.parse(args.analysis_budget) if args.analysis_budget else AnalysisBudget()


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    """The render arguments, shared with ``dubline submit`` (the same job through the engine)."""
    parser.add_argument("--video", required=True, type=Path, help="source clip")
    parser.add_argument("--audio", required=True, type=Path, help="dub audio (any format PyAV reads)")
    parser.add_argument("--range", required=True, dest="span", help="span: 120-245, 00:00:04:20-00:00:09:20 or 4.8s-9.8s")
    parser.add_argument("--out", required=True, type=Path, help="patch file (.mov; .mp4 for h264)")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=backend_names(),
                        help=f"render backend (default: {DEFAULT_BACKEND})")
    parser.add_argument(
        "--backend-option", action="append", default=[], metavar="KEY=VALUE",
        help="backend setting, repeatable (wav2lip: checkpoint=PATH, device=cpu|cuda, batch_size=N, reference=rest|same; "
        "musetalk: model_dir=PATH, device=cpu|cuda, batch_size=N, sample=true, seed=N, extra_margin=PX, reference=same|rest)",
    )
    parser.add_argument("--codec", default=media.DEFAULT_PATCH_CODEC, choices=tuple(media.PATCH_CODECS))
    parser.add_argument("--matte", type=Path, help="also write the matte as a lossless clip of the same frames")
    parser.add_argument("--otio", type=Path, help="also write an OTIO timeline: source on V1, patch on V2 "
                        "(with markers where frames need a look: docs/ITERATING.md)")
    parser.add_argument("--sheet", type=Path, help="also write a contact sheet (.png): source / patch / mouth "
                        "close-ups / matte")
    parser.add_argument("--audio-offset", default="0", help="dub time (seconds, or Ns) that plays at the span's first frame")
    parser.add_argument("--speaker", help="who speaks: X,Y@FRAME, X0,Y0,X1,Y1@FRAME, or a reference image")
    parser.add_argument("--expression", default="as-source", choices=EXPRESSIONS)
    parser.add_argument("--library", type=Path, nargs="*", default=[], help="more footage of the same person")
    parser.add_argument("--with-audio", action="store_true", help="mux the dub into the patch")
    parser.add_argument(
        "--length-policy", default="pad_or_trim", choices=LENGTH_POLICIES,
        help="dub shorter/longer than the span (default: pad or trim with a warning)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the result")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("render", help="render the lip-synced patch for a span")
    add_render_arguments(parser)
    parser.add_argument("--qc", action="store_true", help="measure the quality numbers of the patch (slower)")
    add_budget_argument(parser)
    parser.set_defaults(func=run)


def request_from_args(args: argparse.Namespace) -> RenderRequest:
    """The RenderRequest of a render command line (also what ``submit`` checks before sending)."""
    from dubline.pipeline import RenderRequest

    return RenderRequest.from_text(
        video=args.video, audio=args.audio, span=args.span, out=args.out, audio_offset=args.audio_offset,
        speaker=args.speaker, backend_options=args.backend_option, library=args.library, matte=args.matte,
        otio_path=args.otio, sheet=args.sheet, backend=args.backend, codec=args.codec, expression=args.expression,
        length_policy=args.length_policy, overwrite=args.overwrite, with_audio=args.with_audio,
    )


def run(args: argparse.Namespace) -> int:
    from dubline.pipeline import DiskAnalyses, render
    from dubline.pipeline.flags import flags_of
    from dubline.pipeline.qc import run_qc
    from dubline.pipeline.render import rewrite_timeline

    request = request_from_args(args)
    analyses = DiskAnalyses(budget=budget_from_args(args))
    bar = TqdmProgress(enabled=not args.json and sys.stderr.isatty())
    try:
        result = render(request, progress=bar, analyses=analyses)
    finally:
        bar.close()
    report = result.to_dict()
    if args.qc:
        report["qc"] = run_qc(
            result.out, request.audio, source=request.video, span=request.span, matte=result.matte,
            audio_offset=request.audio_offset,
        ).to_dict()
        # qc's flags join the render's: the timeline's markers say what qc found too
        result.flags = flags_of(report, report["qc"])
        report.update({k: v for k, v in result.to_dict().items() if k in ("flags", "markers")})
        if result.otio_path is not None:
            rewrite_timeline(request, result)
    if args.json:
        print(json.dumps(report, indent=None, default=str))
        return 0
    print(f"wrote {result.out} ({result.frames_written} frames from {result.span[0]}, timecode {result.start_timecode})")
    if result.matte:
        print(f"matte {result.matte}")
    if result.otio_path:
        print(f"timeline {result.otio_path}")
    if result.sheet:
        print(f"contact sheet {result.sheet}")
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.stage_seconds.items())
    print(f"{result.frames_patched} frames re-rendered by {result.backend}; {stages}")
    if result.frames_reused:
        print(f"incremental: {result.frames_rendered} frames drawn, {result.frames_reused} copied from the previous"
              f" patch of this span ({result.frames_warmup} drawn only to warm up)")
    for warning in result.warnings:
        print(f"warning: {warning}")
    for marker in report["markers"]:
        print(f"marker: {marker}")
    if "qc" in report:
        print("qc: " + json.dumps(report["qc"]))
    return 0
