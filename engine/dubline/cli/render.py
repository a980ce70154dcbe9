"""``dubline render``: write the lip-synced patch for one span (the product's main job)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from dubline.errors import InvalidInputError
from dubline.progress import TqdmProgress

#: Delivery codecs, plus lossless ones (png in .mov, ffv1 in .mkv) for bit-exact outside-matte pixels.
CODECS = ("prores", "dnxhr", "h264", "prores4444", "png", "ffv1")


def speaker_hint(text: str):
    """``X,Y@FRAME`` (a point) or ``X0,Y0,X1,Y1@FRAME`` (a box) on a source frame, or an image path."""
    from dubline.faces import SpeakerHint

    match = re.fullmatch(r"\s*([\d.,\s]+)@(\d+)\s*", text)
    if match:
        numbers = [float(v) for v in match.group(1).split(",") if v.strip()]
        frame = int(match.group(2))
        if len(numbers) == 2:
            return SpeakerHint(frame_index=frame, point=(numbers[0], numbers[1]))
        if len(numbers) == 4:
            return SpeakerHint(frame_index=frame, box=tuple(numbers))
        raise InvalidInputError(f"--speaker {text!r}: give X,Y@FRAME or X0,Y0,X1,Y1@FRAME")
    path = Path(text)
    if not path.is_file():
        raise InvalidInputError(f"--speaker {text!r} is neither X,Y@FRAME, X0,Y0,X1,Y1@FRAME nor an image file")
    from dubline import media

    return SpeakerHint(reference_image=media.read_image(path))


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    """The render arguments, shared with ``dubline submit`` (the same job through the engine)."""
    parser.add_argument("--video", required=True, type=Path, help="source clip")
    parser.add_argument("--audio", required=True, type=Path, help="dub audio (any format PyAV reads)")
    parser.add_argument("--range", required=True, dest="span", help="span: 120-245, 00:00:04:20-00:00:09:20 or 4.8s-9.8s")
    parser.add_argument("--out", required=True, type=Path, help="patch file (.mov; .mp4 for h264)")
    parser.add_argument("--backend", default="retrieval", help="render backend (default: retrieval)")
    parser.add_argument(
        "--backend-option", action="append", default=[], metavar="KEY=VALUE",
        help="backend setting, repeatable (wav2lip: checkpoint=PATH, device=cpu|cuda, batch_size=N, reference=rest|same; "
        "musetalk: model_dir=PATH, device=cpu|cuda, batch_size=N, sample=true, seed=N, extra_margin=PX, reference=same|rest)",
    )
    parser.add_argument("--codec", default="prores", choices=CODECS)
    parser.add_argument("--matte", type=Path, help="also write the matte as a lossless clip of the same frames")
    parser.add_argument("--otio", type=Path, help="also write an OTIO timeline: source on V1, patch on V2")
    parser.add_argument("--audio-offset", default="0", help="dub time (seconds, or Ns) that plays at the span's first frame")
    parser.add_argument("--speaker", help="who speaks: X,Y@FRAME, X0,Y0,X1,Y1@FRAME, or a reference image")
    parser.add_argument("--expression", default="as-source", choices=("neutral", "smile", "as-source"))
    parser.add_argument("--library", type=Path, nargs="*", default=[], help="more footage of the same person")
    parser.add_argument("--with-audio", action="store_true", help="mux the dub into the patch")
    parser.add_argument(
        "--length-policy", default="pad_or_trim", choices=("pad_or_trim", "pad", "trim", "error"),
        help="dub shorter/longer than the span (default: pad or trim with a warning)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the result")


def parse_offset(text: str) -> float:
    try:
        return float(text[:-1] if text.endswith("s") else text)
    except ValueError:
        raise InvalidInputError(f"--audio-offset {text!r} is not a number of seconds") from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("render", help="render the lip-synced patch for a span")
    add_render_arguments(parser)
    parser.add_argument("--qc", action="store_true", help="measure the quality numbers of the patch (slower)")
    parser.set_defaults(func=run)


def request_from_args(args: argparse.Namespace):
    from dubline.pipeline import RenderRequest

    return RenderRequest(
        video=args.video,
        audio=args.audio,
        span=args.span,
        out=args.out,
        backend=args.backend,
        codec=args.codec,
        matte=args.matte,
        otio_path=args.otio,
        audio_offset=parse_offset(args.audio_offset),
        speaker=speaker_hint(args.speaker) if args.speaker else None,
        expression=args.expression,
        library=tuple(args.library),
        overwrite=args.overwrite,
        with_audio=args.with_audio,
        length_policy=args.length_policy,
        backend_options=backend_options(args.backend_option),
    )


def backend_options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--backend-option {pair!r} is not KEY=VALUE")
        options[key.strip()] = value.strip()
    return options


def run(args: argparse.Namespace) -> int:
    from dubline.pipeline import render

    bar = TqdmProgress(enabled=not args.json and sys.stderr.isatty())
    try:
        result = render(request_from_args(args), progress=bar)
    finally:
        bar.close()
    report = result.to_dict()
    if args.qc:
        from dubline.qc import run_qc

        report["qc"] = run_qc(
            result.out, args.audio, source=args.video, span=args.span, matte=result.matte,
            audio_offset=parse_offset(args.audio_offset),
        ).to_dict()
    if args.json:
        print(json.dumps(report, indent=None, default=str))
        return 0
    print(f"wrote {result.out} ({result.frames_written} frames from {result.span[0]}, timecode {result.start_timecode})")
    if result.matte:
        print(f"matte {result.matte}")
    if result.otio_path:
        print(f"timeline {result.otio_path}")
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.stage_seconds.items())
    print(f"{result.frames_patched} frames re-rendered by {result.backend}; {stages}")
    for warning in result.warnings:
        print(f"warning: {warning}")
    if "qc" in report:
        print("qc: " + json.dumps(report["qc"]))
    return 0
