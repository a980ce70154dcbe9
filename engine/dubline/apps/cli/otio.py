"""``dubline otio``: patch a span of a clip on an editor's timeline and hand back the timeline with
the patch on a new video track above it (see docs/OTIO.md)."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

from dubline.apps.cli.submit import add_tls_argument
from dubline.core.errors import InvalidInputError
from dubline.core.progress import TqdmProgress
from dubline.core.timing import parse_seconds, seconds_of
from dubline.stages import media
from dubline.stages.backends import DEFAULT_BACKEND
from dubline.stages.backends import names as backend_names


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "otio", help="patch a clip of an OTIO / FCP XML / EDL timeline; write the timeline with the patch on top",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--timeline", required=True, type=Path, help="timeline: .otio, .xml (FCP 7 XML) or .edl")
    parser.add_argument("--clip", required=True, help="clip name, or N / #N for the N-th video clip (from 1, V1 first)")
    parser.add_argument("--range", dest="span", help="span (render --range syntax); default: the clip's whole cut")
    parser.add_argument("--range-in", default="record", choices=("record", "source"),
                        help="record: --range is timeline time (default); source: media file time as in render --range")
    parser.add_argument("--on-transition", default="shorten", choices=("shorten", "error"),
                        help="a span touching a dissolve or wipe: patch only the frames outside it (default, with a "
                             "warning) or fail")
    parser.add_argument("--include-disabled", action="store_true",
                        help="patch a clip that is disabled, or on a disabled track or nested sequence (skipped otherwise)")
    parser.add_argument("--audio", required=True, type=Path, help="dub audio")
    parser.add_argument("--out", required=True, type=Path, help="timeline to write (.otio)")
    parser.add_argument("--patch", type=Path, help="patch file (default: beside --out, <clip>.dubline.<first>-<end>.mov)")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=backend_names(),
                        help=f"render backend (default: {DEFAULT_BACKEND})")
    parser.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE", help="backend setting, repeatable")
    parser.add_argument("--codec", default=media.DEFAULT_PATCH_CODEC, choices=tuple(media.PATCH_CODECS))
    parser.add_argument("--audio-offset", default="0", help="dub time (seconds, or Ns) that plays at the span's first frame")
    parser.add_argument("--speaker", help="who speaks: X,Y@FRAME or X0,Y0,X1,Y1@FRAME (file frames), or an image")
    parser.add_argument("--expression", default="as-source", choices=("neutral", "smile", "as-source"))
    parser.add_argument("--with-audio", action="store_true", help="mux the dub into the patch")
    parser.add_argument("--length-policy", default="pad_or_trim", choices=("pad_or_trim", "pad", "trim", "error"))
    parser.add_argument("--adapter", help="OTIO adapter to read --timeline with (default: from its suffix)")
    parser.add_argument("--edl-rate", help="frame rate of an EDL timeline (EDLs do not say), e.g. 25 or 23.976")
    parser.add_argument("--engine", help="render on a running engine (unix:PATH or HOST:PORT) instead of in this process")
    parser.add_argument("--token-file", type=Path, help="file holding the engine's bearer token")
    add_tls_argument(parser)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the engine to answer")
    parser.add_argument("--qc", action="store_true",
                        help="measure the patch's quality numbers (in --json) and mark what qc finds on the timeline")
    parser.add_argument("--dry-run", action="store_true",
                        help="check everything a render checks but the pixels (clip, span, media rate and length, "
                             "dub, outputs), print the plan, render nothing")
    parser.add_argument("--overwrite", action="store_true", help="replace existing timeline and patch files")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the result")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dubline.core.timing import parse_rate
    from dubline.pipeline import parse_options
    from dubline.pipeline import timeline as rt

    edl_rate = parse_rate(args.edl_rate) if args.edl_rate else None
    settings = rt.RenderSettings(
        audio=args.audio, backend=args.backend, codec=args.codec, audio_offset=seconds_of(parse_seconds(args.audio_offset, "--audio-offset")),
        speaker=args.speaker, expression=args.expression, with_audio=args.with_audio,
        length_policy=args.length_policy, backend_options=parse_options(args.backend_option),
    )
    if args.speaker and "@" not in args.speaker and not Path(args.speaker).is_file():
        raise InvalidInputError(f"--speaker {args.speaker!r} is neither X,Y@FRAME, X0,Y0,X1,Y1@FRAME nor an image file")
    if args.dry_run:
        prepared = rt.prepare(args.timeline, args.clip, args.out, settings, **_plan_options(args, edl_rate))
        summary = {**rt.plan_summary(prepared.plan), "patch": str(prepared.patch)}
        print(json.dumps({**summary, "warnings": prepared.warnings}) if args.json else _describe(summary, prepared.warnings))
        return 0
    bar = TqdmProgress(enabled=not args.json and sys.stderr.isatty())
    try:
        if args.engine:
            result = _via_engine(args, settings, edl_rate, bar)
            if result is None:
                return 2
        else:
            renderer = functools.partial(rt.render_in_process, progress=bar)
            result = _round_trip(args, settings, rt.with_qc(renderer, bar) if args.qc else renderer, edl_rate)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(result.to_dict(), default=str))
        return 0
    summary = result.to_dict()
    print(f"wrote {result.timeline}: {result.patch.name} on a new top track at record {summary['record']} "
          f"({summary['frames']} frames of clip {summary['clip']!r})")
    print(f"patch {result.patch}")
    for warning in result.warnings:
        print(f"warning: {warning}")
    if "qc" in result.render:
        print("qc: " + json.dumps(result.render["qc"]))
    return 0


def _round_trip(args: argparse.Namespace, settings, renderer, edl_rate):
    from dubline.pipeline import timeline as rt

    return rt.round_trip(rt.prepare(args.timeline, args.clip, args.out, settings, **_plan_options(args, edl_rate)), renderer)


def _plan_options(args: argparse.Namespace, edl_rate) -> dict:
    return dict(
        span=args.span, range_in=args.range_in, patch=args.patch, overwrite=args.overwrite, adapter=args.adapter,
        edl_rate=edl_rate, on_transition=args.on_transition, include_disabled=args.include_disabled,
    )


def _via_engine(args: argparse.Namespace, settings, edl_rate, bar):
    from dubline_client import EngineClient, EngineError

    from dubline.apps.server.security import read_token_file
    from dubline.pipeline import timeline as rt

    token = read_token_file(args.token_file) if args.token_file else None

    def on_event(event) -> None:
        if event.WhichOneof("event") == "progress":
            bar(event.progress.stage, event.progress.done, event.progress.total)

    try:
        with EngineClient(args.engine, token=token, timeout=args.timeout, tls_ca=args.tls_ca) as engine:
            engine.wait_until_ready(args.timeout)
            renderer = rt.engine_renderer(engine, on_event)
            return _round_trip(args, settings, rt.with_qc(renderer, bar) if args.qc else renderer, edl_rate)
    except EngineError as error:
        print(f"dubline otio: error: {error.code}: {error.message}", file=sys.stderr)
        return None


def _describe(summary: dict, warnings: list[str]) -> str:
    nest = "".join(f" in {name!r}" for name in summary.get("nest", []))
    lines = [
        f"clip {summary['clip']!r} (#{summary['clip_index']} on {summary['track']}{nest}): {summary['media']}",
        (f"span {summary['frames']} frames at {summary['rate']} fps: record {summary['record']}, "
         f"source {summary['source']}, file frames {summary.get('file_frames')}"),
        f"patch {summary['patch']}",
    ]
    return "\n".join(lines + [f"warning: {w}" for w in warnings])
