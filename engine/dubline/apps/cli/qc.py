"""``dubline qc``: measure a patch (sync, identity, untouched pixels, seam, flicker, sharpness)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dubline.core.errors import InvalidInputError
from dubline.core.timing import parse_seconds


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("qc", help="quality numbers of a patch (see DESIGN.md)")
    parser.add_argument("--video", required=True, type=Path, help="the patch clip")
    parser.add_argument("--audio", required=True, type=Path, help="the dub it should follow")
    parser.add_argument("--source", type=Path, help="the source clip the patch replaces a span of")
    parser.add_argument("--range", dest="span", help="the span of the source (needed with --source)")
    parser.add_argument("--matte", type=Path, help="the matte clip written by render --matte")
    parser.add_argument("--audio-offset", default="0", help="dub time (seconds) at the span's first frame")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dubline.pipeline.qc import run_qc

    if (args.source is None) != (args.span is None):
        raise InvalidInputError("--source and --range go together")
    report = run_qc(args.video, args.audio, source=args.source, span=args.span, matte=args.matte,
                    audio_offset=parse_seconds(args.audio_offset, "--audio-offset"))
    failures = report.failures()
    if args.json:
        print(json.dumps({**report.to_dict(), "failures": failures}))
        return 0
    for key, value in report.to_dict().items():
        if key != "warnings" and value is not None:
            print(f"{key:24s} {value:.4g}" if isinstance(value, float) else f"{key:24s} {value}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    print("all acceptance numbers met" if not failures else "misses: " + "; ".join(failures))
    return 0
