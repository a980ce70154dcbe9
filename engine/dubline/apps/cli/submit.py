"""``dubline submit``: the ``render`` command executed by a running engine (``dubline serve``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dubline_client import pb, rational, render_spec

from dubline.apps.cli.render import add_render_arguments, request_from_args
from dubline.core.progress import TqdmProgress
from dubline.core.timing import seconds_of

ENGINE_ENV = "DUBLINE_ENGINE"
TLS_CA_ENV = "DUBLINE_TLS_CA"


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the engine is and how to authenticate (shared with ``dubline status``)."""
    from dubline.apps.cli.serve import DEFAULT_LISTEN

    parser.add_argument("--engine", default=os.environ.get(ENGINE_ENV, DEFAULT_LISTEN),
                        help=f"engine address, unix:PATH or HOST:PORT (default ${ENGINE_ENV} or {DEFAULT_LISTEN})")
    parser.add_argument("--token-file", type=Path, help="file holding the engine's bearer token")
    add_tls_argument(parser)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the engine to answer")


def add_tls_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-ca", type=Path, default=os.environ.get(TLS_CA_ENV) or None,
                        help=f"connect over TLS, trusting this PEM certificate (authority) (default ${TLS_CA_ENV})")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("submit", help="render a span on a running engine (same arguments as render)")
    add_render_arguments(parser)
    add_engine_arguments(parser)
    parser.set_defaults(func=run)


def connect(args: argparse.Namespace):
    from dubline_client import EngineClient

    from dubline.apps.server.security import read_token_file

    token = read_token_file(args.token_file) if args.token_file else None
    return EngineClient(args.engine, token=token, timeout=args.timeout, tls_ca=args.tls_ca)


def spec_from_args(args: argparse.Namespace) -> pb.RenderSpec:
    """The RenderSpec of a ``render`` command line, checked here first exactly as ``render`` checks
    it; paths made absolute (the engine has its own working directory)."""
    request = request_from_args(args)

    def absolute(path: Path | None) -> str:
        return os.path.abspath(path) if path else ""

    speaker = args.speaker or ""
    if speaker and "@" not in speaker:
        speaker = absolute(Path(speaker))
    return render_spec(
        absolute(request.video), absolute(request.audio), request.span, absolute(request.out),
        backend=request.backend, codec=request.codec, matte=absolute(request.matte), otio=absolute(request.otio_path),
        audio_offset=rational(seconds_of(request.audio_offset)), speaker=speaker, expression=request.expression,
        library=[absolute(p) for p in request.library], overwrite=request.overwrite, with_audio=request.with_audio,
        length_policy=request.length_policy, backend_options=dict(request.backend_options),
        sheet=absolute(request.sheet),
    )


def run(args: argparse.Namespace) -> int:
    from dubline_client import EngineError
    from google.protobuf.json_format import MessageToDict

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
    if done.sheet:
        print(f"contact sheet {done.sheet}")
    print(f"{done.frames_patched} frames re-rendered by {done.backend}")
    if done.qc.get("reuse.reused"):
        print(f"incremental: {int(done.qc['reuse.rendered'])} frames drawn, {int(done.qc['reuse.reused'])} copied"
              " from the previous patch of this span")
    for flag in done.flags:
        print(f"marker: {flag.label}")
    for warning in done.warnings:
        print(f"warning: {warning}")
    return 0
