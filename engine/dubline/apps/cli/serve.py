"""``dubline serve``: run the resident engine (gRPC) until interrupted."""

from __future__ import annotations

import argparse
import logging
import os
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
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate (chain) to serve TLS with (needed beyond loopback)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument("--models-dir", type=Path,
                        help="the engine's model directory (default $DUBLINE_MODELS or the config file's models_dir);"
                             " clients name weights in it by file name")
    parser.add_argument("--payload-budget-mb", type=float, default=1024,
                        help="request bytes (frames, messages) held at once across all clients (default 1024)")
    add_budget_argument(parser)
    parser.add_argument("--no-idle-analysis", dest="idle_analysis", action="store_false",
                        help="do not analyse the rest of rendered clips while the engine is idle")
    parser.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
    from dubline.apps.server.app import create_server
    from dubline.apps.server.security import read_tls, read_token_file
    from dubline.core.errors import InvalidInputError
    from dubline.core.models import MODELS_ENV

    if args.workers < 1:
        raise InvalidInputError(f"--workers must be at least 1, got {args.workers}")
    if args.payload_budget_mb <= 0:
        raise InvalidInputError(f"--payload-budget-mb must be positive, got {args.payload_budget_mb}")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise InvalidInputError("--tls-cert and --tls-key go together")
    if args.cache is not None and args.cache.exists() and not args.cache.is_dir():
        raise InvalidInputError(f"--cache {args.cache} is a file, not a directory")
    if args.models_dir is not None:
        if not args.models_dir.is_dir():
            raise InvalidInputError(f"--models-dir {args.models_dir} is not a directory")
        # The engine's own configuration, read by every backend through core.models.model_dir().
        os.environ[MODELS_ENV] = str(args.models_dir.resolve())
    token = read_token_file(args.token_file) if args.token_file else None
    tls = read_tls(args.tls_cert, args.tls_key) if args.tls_cert else None
    server, port = create_server(
        args.listen, media_roots=args.media_root, token=token, max_workers=args.workers,
        max_queued=args.max_queued, cache_root=args.cache, frame_socket=args.frame_socket, tls=tls,
        payload_budget_bytes=int(args.payload_budget_mb * 1024**2),
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

    # A requested stop (Ctrl-C, SIGTERM from a service manager, SIGHUP from a closed terminal)
    # drains and exits 0: for the engine it is the normal end, not a failure.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    stopping.wait()
    log.info("shutting down: draining running jobs for up to %.0f s", args.grace)
    server.stop(args.grace)
    return 0
