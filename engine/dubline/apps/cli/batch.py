"""``dubline batch``: dub a whole reel (an editor's timeline with the dub on an audio track) or a
job list, shot-parallel on Ray (see docs/BATCH.md).

Exit status: 0 when every shot is done or skipped, 1 when some shot failed, 2 for bad input
(nothing run), 130 when interrupted (finished shots are kept; run again to finish the rest).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

from dubline.stages import media
from dubline.stages.backends import DEFAULT_BACKEND, EXPRESSIONS
from dubline.stages.backends import names as backend_names
from dubline.stages.speech import LENGTH_POLICIES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("batch", help="dub every shot of a timeline or job list, shot-parallel on Ray",
                                   description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--timeline", type=Path, help="editor's timeline (.otio, .xml, .edl) with the dub on an audio track")
    source.add_argument("--jobs", type=Path, help="job list (.json or .csv: video, audio, range, out, ...)")
    parser.add_argument("--out", type=Path, help="with --timeline: the timeline to write (.otio), patches on a new top track")
    parser.add_argument("--patch-dir", type=Path, help="with --timeline: where patches go (default: <out stem>_patches)")
    parser.add_argument("--dub-track", action="append", default=[], metavar="NAME|AN",
                        help="audio track holding the dub (name or A1, A2, ...; repeatable; default: tracks named like 'dub')")
    parser.add_argument("--report", type=Path, help="report folder: report.json and sheets/ (default: <out or list stem>_report)")
    parser.add_argument("--workers", type=int, help="workers (default: one per CPU of the Ray, one per GPU for GPU "
                                                    "backends); 0 runs shots one by one in this process without Ray")
    parser.add_argument("--cpus-per-worker", type=int,
                        help="CPUs each worker reserves and sizes its threads to (default: an equal share of the Ray's)")
    parser.add_argument("--analysis-workers", type=int,
                        help="CPU workers (1 CPU each) that analyse shots ahead of the render workers (default: "
                             "half the Ray's CPUs when the render workers hold GPUs, else 0)")
    parser.add_argument("--ray-address", help="join this Ray cluster (HOST:PORT) instead of starting a local Ray")
    parser.add_argument("--cross-shot-library", action="store_true",
                        help="a shot may draw mouths from every shot of the same person (clustered by face identity)")
    parser.add_argument("--retries", type=int, default=2, help="restarts of a worker that dies (its shot is retried)")
    parser.add_argument("--qc", action="store_true", help="measure each patch's quality numbers into the report (slower)")
    parser.add_argument("--cache", type=Path, help="analysis cache folder (default: $DUBLINE_CACHE or ~/.cache/dubline)")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=backend_names(),
                        help=f"render backend for shots that do not name one (default: {DEFAULT_BACKEND})")
    parser.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE", help="backend setting, repeatable")
    parser.add_argument("--codec", default=media.DEFAULT_PATCH_CODEC, choices=tuple(media.PATCH_CODECS))
    parser.add_argument("--expression", default="as-source", choices=EXPRESSIONS)
    parser.add_argument("--length-policy", default="pad_or_trim", choices=LENGTH_POLICIES)
    parser.add_argument("--with-audio", action="store_true", help="mux each shot's dub into its patch")
    parser.add_argument("--adapter", help="OTIO adapter to read --timeline with (default: from its suffix)")
    parser.add_argument("--edl-rate", help="frame rate of an EDL timeline, e.g. 25 or 23.976")
    parser.add_argument("--on-transition", default="shorten", choices=("shorten", "error"))
    parser.add_argument("--include-disabled", action="store_true", help="also patch disabled clips and tracks")
    parser.add_argument("--overwrite", action="store_true", help="replace files at output names that no batch wrote")
    parser.add_argument("--dry-run", action="store_true", help="plan the shots and print them; render nothing")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dubline.apps.batch import BatchOptions, finish, plan_input, run_batch
    from dubline.core.errors import InvalidInputError
    from dubline.core.timing import parse_rate
    from dubline.pipeline import parse_options
    from dubline.pipeline.batch import JobDefaults, ShotSettings, summary_table

    if args.workers is not None and args.workers < 0:
        raise InvalidInputError("--workers must be 0 or more")
    if args.cpus_per_worker is not None and args.cpus_per_worker < 1:
        raise InvalidInputError("--cpus-per-worker must be 1 or more")
    if args.analysis_workers is not None and args.analysis_workers < 0:
        raise InvalidInputError("--analysis-workers must be 0 or more")
    if args.workers == 0 and args.analysis_workers:
        raise InvalidInputError("--workers 0 runs in this process; it cannot be combined with --analysis-workers")
    if args.workers == 0 and args.ray_address:
        raise InvalidInputError("--workers 0 runs in this process; it cannot be combined with --ray-address")
    defaults = JobDefaults(
        backend=args.backend, codec=args.codec, expression=args.expression, length_policy=args.length_policy,
        with_audio=args.with_audio, backend_options=parse_options(args.backend_option),
    )
    batch = plan_input(
        timeline=args.timeline, job_list=args.jobs, out=args.out, patch_dir=args.patch_dir, report_dir=args.report,
        defaults=defaults, dub_tracks=args.dub_track, adapter=args.adapter,
        edl_rate=parse_rate(args.edl_rate) if args.edl_rate else None, on_transition=args.on_transition,
        include_disabled=args.include_disabled, overwrite=args.overwrite,
    )
    if args.dry_run:
        return _print_plan(batch, args.json)
    for warning in batch.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    options = BatchOptions(
        workers=args.workers, cpus_per_worker=args.cpus_per_worker, ray_address=args.ray_address,
        analysis_workers=args.analysis_workers, cross_shot_library=args.cross_shot_library,
        retries=args.retries, settings=ShotSettings(report_dir=batch.report_dir, overwrite=args.overwrite,
                                                    cache_root=args.cache, qc=args.qc),
    )
    progress = _Progress(len(batch.jobs), enabled=not args.json and sys.stderr.isatty())
    stop = threading.Event()
    try:
        result = run_batch(batch.jobs, options, progress, stop)
    finally:
        progress.close()
    report = finish(batch, result)
    if args.json:
        print(json.dumps(report, default=str))
    else:
        print(summary_table(report))
        if report["run"].get("timeline_out"):
            print(f"timeline {report['run']['timeline_out']}")
        print(f"report {report['run']['report']}")
    if result.interrupted:
        print("dubline batch: interrupted; finished shots are kept, run again to render the rest", file=sys.stderr)
        return 130
    return 1 if report["counts"]["failed"] else 0


def _print_plan(batch, as_json: bool) -> int:
    shots = [{"id": j.id, "label": j.label, "video": str(j.video), "audio": str(j.audio), "range": j.span,
              "audio_offset": str(j.audio_offset), "speaker": j.speaker, "out": str(j.out), "problem": j.problem}
             for j in batch.jobs]
    if as_json:
        print(json.dumps({"shots": shots, "warnings": batch.warnings, "report": str(batch.report_dir)}))
        return 0
    for shot in shots:
        line = f"{shot['id']}  {shot['label']}: {Path(shot['video']).name} {shot['range']} <- {Path(shot['audio']).name}"
        if shot["audio_offset"] != "0":
            line += f" from {shot['audio_offset']}s"
        print(line + (f"  FAILS: {shot['problem']}" if shot["problem"] else f" -> {shot['out']}"))
    for warning in batch.warnings:
        print(f"warning: {warning}")
    return 0


class _Progress:
    """A bar of shots done / total with ETA; the postfix shows each shot in flight and its stage."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self._bar = None
        self._stages: dict[str, str] = {}

    def __call__(self, event) -> None:
        if event.kind == "shot" and event.outcome.state == "failed":
            self._write(f"failed {event.outcome.message}")
        elif event.kind == "retry":
            self._write(f"retry: {event.message}")
        if not self.enabled:
            return
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=self.total, desc="shots", unit="shot", dynamic_ncols=True)
        if event.kind == "phase":
            self._bar.set_description(f"shots ({event.message})")
        elif event.kind == "progress":
            self._stages[event.shot] = f"{event.shot} {event.stage} {event.done}/{event.total}" if event.total else \
                f"{event.shot} {event.stage}"
        elif event.kind == "analysed":  # its analysis worker is done with it; a render worker takes it next
            self._stages.pop(event.shot, None)
        elif event.kind == "shot":
            self._stages.pop(event.shot, None)
            self._bar.update(1)
        self._bar.set_postfix_str(" | ".join(self._stages.values())[:80], refresh=True)

    def _write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
