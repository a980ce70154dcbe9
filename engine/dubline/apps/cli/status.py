"""``dubline status``: what a running engine can do and what it is doing."""

from __future__ import annotations

import argparse
import json
import sys
import time

from dubline.apps.cli.submit import add_engine_arguments, connect


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="show a running engine's capabilities and jobs")
    add_engine_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dubline_client import EngineError, pb
    from google.protobuf.json_format import MessageToDict

    try:
        with connect(args) as engine:
            health = engine.health()
            capabilities = engine.capabilities()
            jobs = engine.list_jobs()
    except EngineError as error:
        print(f"dubline status: error: {args.engine}: {error.code}: {error.message}", file=sys.stderr)
        return 2
    if args.json:
        report = {
            "engine": args.engine,
            "health": health,
            "capabilities": MessageToDict(capabilities, preserving_proto_field_name=True),
            "jobs": [MessageToDict(j, preserving_proto_field_name=True) for j in jobs],
        }
        print(json.dumps(report))
        return 0
    print(f"engine {args.engine}: {health}, dubline {capabilities.version} ({capabilities.api})")
    for backend in capabilities.backends:
        weights = "weights present" if backend.weights_present else f"missing {', '.join(backend.missing_weights)}"
        print(f"  backend {backend.name}: {backend.description} ({weights}{', GPU' if backend.prefers_gpu else ''})")
    for model in capabilities.loaded_models:
        print(f"  loaded {model.name} on {model.device} ({model.dtype}, {model.bytes / 1e6:.0f} MB)")
    print(f"  codecs: {', '.join(capabilities.codecs)}; analyses in memory: {capabilities.resident_analyses}")
    print(f"  media roots: {', '.join(capabilities.media_roots) or 'any path'}; models: {capabilities.model_dir}")
    if not jobs:
        print("no jobs")
    for job in jobs:
        state = pb.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()
        age = time.time() - job.created_unix
        line = f"  {job.job_id} {job.kind:7} {state:9} {job.progress.stage} {job.progress.done}/{job.progress.total}"
        print(f"{line} {job.seconds:.1f}s  {job.video} ({age:.0f}s ago)")
        if job.error.code:
            print(f"      {job.error.code}: {job.error.message}")
    return 0
