"""``dubline submit``: the ``render`` command executed by a running engine (``dubline serve``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from fractions import Fraction
from pathlib import Path

from dubline.cli.render import add_render_arguments
from dubline.errors import InvalidInputError
from dubline.progress import TqdmProgress

ENGINE_ENV = "DUBLINE_ENGINE"


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the engine is and how to authenticate (shared with ``dubline status``)."""
    from dubline.cli.serve import DEFAULT_LISTEN

    parser.add_argument("--engine", default=os.environ.get(ENGINE_ENV, DEFAULT_LISTEN),
                        help=f"engine address, unix:PATH or HOST:PORT (default ${ENGINE_ENV} or {DEFAULT_LISTEN})")
    parser.add_argument("--token-file", type=Path, help="file holding the engine's bearer token")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the engine to answer")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("submit", help="render a span on a running engine (same arguments as render)")
    add_render_arguments(parser)
    add_engine_arguments(parser)
    parser.set_defaults(func=run)


def connect(args: argparse.Namespace):
    from dubline.server.security import read_token_file
    from dubline_client import EngineClient

    token = read_token_file(args.token_file) if args.token_file else None
    return EngineClient(args.engine, token=token, timeout=args.timeout)


def offset_seconds(text: str) -> Fraction:
    """``--audio-offset`` as exact seconds (``0.48``, ``0.48s``, ``-1``)."""
    try:
        return Fraction(text[:-1] if text.endswith("s") else text)
    except (ValueError, ZeroDivisionError):
        raise InvalidInputError(f"--audio-offset {text!r} is not a number of seconds") from None


def spec_from_args(args: argparse.Namespace):
    """The RenderSpec of a ``render`` command line; paths made absolute (the engine has its own cwd)."""
    from dubline_client import rational, render_spec

    from dubline.cli.render import backend_options

    def absolute(path: Path | None) -> str:
        return os.path.abspath(path) if path else ""

    speaker = args.speaker or ""
    if speaker and "@" not in speaker:
        speaker = absolute(Path(speaker))
    return render_spec(
        absolute(args.video), absolute(args.audio), args.span, absolute(args.out),
        backend=args.backend, codec=args.codec, matte=absolute(args.matte), otio=absolute(args.otio),
        audio_offset=rational(offset_seconds(args.audio_offset)), speaker=speaker, expression=args.expression,
        library=[absolute(p) for p in args.library], overwrite=args.overwrite, with_audio=args.with_audio,
        length_policy=args.length_policy, backend_options=backend_options(args.backend_option),
    )


def run(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from dubline_client import EngineError

    spec = spec_from_args(args)
    bar = TqdmProgress(enabled=not args.json and sys.stderr.isatty())
    try:
        with connect(args) as engine:
            engine.wait_until_ready(args.timeout)

            def on_event(event) -> None:
                if event.WhichOneof("event") == "progress":
                    bar(event.progress.stage, event.progress.done, event.progress.total)

            done = engine.render_and_wait(spec, on_event=on_event)
    except EngineError as error:
        bar.close()
        print(f"dubline submit: error: {error.code}: {error.message}", file=sys.stderr)
        return 2
    bar.close()
    if args.json:
        print(json.dumps(MessageToDict(done, preserving_proto_field_name=True)))
        return 0
    print(f"wrote {done.out} ({done.frames_written} frames from {done.span_first}, timecode {done.start_timecode})")
    if done.matte:
        print(f"matte {done.matte}")
    if done.otio:
        print(f"timeline {done.otio}")
    print(f"{done.frames_patched} frames re-rendered by {done.backend}")
    for warning in done.warnings:
        print(f"warning: {warning}")
    return 0
