"""``dubline demo``: a complete offline run on inputs it makes itself."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dubline.core.errors import MissingDependencyError
from dubline.core.progress import TqdmProgress


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="make a talking clip and a dub, render a span, run qc")
    parser.add_argument("--out", type=Path, default=Path("dubline-demo"), help="directory for the files (default: ./dubline-demo)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from dubline.apps.demo import run_demo
    except ModuleNotFoundError as error:  # the demo's photograph and synthesis come with an extra
        raise MissingDependencyError(
            f"dubline demo needs the optional extra 'demo' ({error.name} is missing): pip install 'dubline[demo]'"
        ) from None

    bar = TqdmProgress(enabled=sys.stderr.isatty())
    try:
        result = run_demo(args.out, progress=bar)
    finally:
        bar.close()
    first, end = result.render.span
    print(f"source clip   {result.inputs.video}")
    print(f"dub           {result.inputs.dub}")
    print(f"patch         {result.render.out}  (frames {first}-{end}, timecode {result.render.start_timecode})")
    print(f"matte         {result.render.matte}")
    print(f"timeline      {result.render.otio_path}")
    print(f"contact sheet {result.contact_sheet}")
    print("qc " + json.dumps(result.qc.to_dict()))
    failures = result.qc.failures()
    print("qc: all acceptance numbers met" if not failures else "qc misses: " + "; ".join(failures))
    return 0
