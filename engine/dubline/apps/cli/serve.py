"""``dubline serve``: run the resident engine (gRPC) until interrupted."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from dubline.apps.cli.render import add_budget_argument, budget_from_args

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:50917"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the engine that the editor bridges talk to")
    parser.add_argument("--listen", default=DEFAULT_LISTEN,
                        help=f"unix:PATH or HOST:PORT (default {DEFAULT_LISTEN}; non-loopback needs --token-file)")
    parser.add_argument("--token-file", type=Path, help="file holding the bearer token clients must send")
    parser.add_argument("--media-root", type=Path, action="append", default=[],
                        help="directory requests may read and write under (repeatable; default: anywhere)")
    parser.add_argument("--workers", type=int, default=2, help="jobs run at once (GPU-heavy jobs: one per device)")
    parser.add_argument("--max-queued", type=int, default=32, help="jobs that may wait before new ones are refused")
    parser.add_argument("--cache", type=Path, help="analysis cache directory (default $DUBLINE_CACHE or ~/.cache/dubline)")
    parser.add_argument("--frame-socket", metavar="ADDRESS",
                        help="also serve frames to the OpenFX plug-in on unix:PATH or a loopback HOST:PORT (docs/OFX.md)")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds running jobs get to finish on shutdown")
    add_budget_argument(parser)
    parser.add_argument("--no-idle-analysis", dest="idle_analysis", action="store_false",
                        help="do not analyse the rest of rendered clips while the engine is idle")
    parser.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
    from dubline.apps.server.app import create_server
    from dubline.apps.server.security import read_token_file
    from dubline.core.errors import InvalidInputError

    if args.workers < 1:
        raise InvalidInputError(f"--workers must be at least 1, got {args.workers}")
    token = read_token_file(args.token_file) if args.token_file else None
    server, port = create_server(
        args.listen, media_roots=args.media_root, token=token, max_workers=args.workers,
        max_queued=args.max_queued, cache_root=args.cache, frame_socket=args.frame_socket,
        analysis_budget=budget_from_args(args), idle_analysis=args.idle_analysis,
    )
    server.start()
    shown = args.listen if port == 0 or not args.listen.endswith(":0") else f"{args.listen[:-2]}:{port}"
    # One machine-readable line, so a parent process (tests, the Blender add-on) learns the address.
    print(f"dubline engine listening on {shown}", flush=True)
    if server.frame_socket is not None:
        print(f"dubline frame socket listening on {server.frame_socket.address}", flush=True)

    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stopping.wait()
    log.info("shutting down: draining running jobs for up to %.0f s", args.grace)
    server.stop(args.grace)
    return 0
