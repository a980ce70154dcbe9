"""A batch's two doors and what it leaves behind: an editor's timeline or a job list in
(``plan_input``), the JSON report and the reel's timeline out (``finish``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from dubline.apps.batch.runner import BatchRun
from dubline.core.errors import InvalidInputError, OutputExistsError
from dubline.interchange import METADATA_KEY, read_timeline, write_timeline
from dubline.pipeline.batch import (
    DONE,
    REPORT_NAME,
    SKIPPED,
    JobDefaults,
    ReelPlan,
    ShotJob,
    batch_report,
    plan_reel,
    read_job_list,
    reel_timeline,
    write_report,
)

#: ``metadata["dubline"]["batch"]`` on a timeline a batch wrote: the next run may replace it.
BATCH_KEY = "batch"


@dataclass
class BatchInput:
    jobs: list[ShotJob]
    report_dir: Path
    source: str  # what the batch was given, for the report
    reel: ReelPlan | None = None
    timeline_out: Path | None = None

    @property
    def warnings(self) -> list[str]:
        return list(self.reel.warnings) if self.reel is not None else []


def plan_input(
    *,
    timeline: Path | None = None,
    job_list: Path | None = None,
    out: Path | None = None,
    patch_dir: Path | None = None,
    report_dir: Path | None = None,
    defaults: JobDefaults = JobDefaults(),
    dub_tracks: Sequence[str] = (),
    adapter: str | None = None,
    edl_rate: Fraction | None = None,
    on_transition: str = "shorten",
    include_disabled: bool = False,
    overwrite: bool = False,
) -> BatchInput:
    """The jobs of a timeline (``out``: the timeline to write, ``patch_dir``: where patches go,
    default ``<out stem>_patches`` beside it) or of a job list; the report folder defaults to
    ``<out or list stem>_report`` beside it. Folders are created; an ``out`` that exists and was
    not written by a batch is refused unless ``overwrite``."""
    if (timeline is None) == (job_list is None):
        raise InvalidInputError("give either --timeline (with --out) or --jobs")
    if timeline is not None:
        if out is None:
            raise InvalidInputError("--timeline needs --out OUT.otio, the timeline to write with the patches on top")
        out = Path(out).absolute()
        if out.suffix.lower() != ".otio":
            raise InvalidInputError(f"--out {out.name} must be an .otio file")
        if not out.parent.is_dir():
            raise InvalidInputError(f"--out {out}: folder {out.parent} does not exist")
        if out.exists() and not overwrite and not _written_by_batch(out):
            raise OutputExistsError(f"{out} exists and no batch wrote it; pass --overwrite to replace it")
        patch_dir = Path(patch_dir or out.with_name(f"{out.stem}_patches")).absolute()
        patch_dir.mkdir(exist_ok=True)
        report_dir = Path(report_dir or out.with_name(f"{out.stem}_report")).absolute()
        reel = plan_reel(Path(timeline), patch_dir, defaults, dub_tracks, adapter, edl_rate, on_transition,
                         include_disabled)
        jobs, source = reel.jobs, f"timeline {timeline}"
    else:
        job_list = Path(job_list).absolute()
        report_dir = Path(report_dir or job_list.with_name(f"{job_list.stem}_report")).absolute()
        reel, jobs, source = None, read_job_list(job_list, defaults), f"job list {job_list}"
    (report_dir / "sheets").mkdir(parents=True, exist_ok=True)
    return BatchInput(jobs, report_dir, source, reel, out)


def _written_by_batch(path: Path) -> bool:
    try:
        timeline = read_timeline(path)
    except Exception:  # not a timeline we can read: certainly not ours
        return False
    ours = timeline.metadata.get(METADATA_KEY, {})
    return hasattr(ours, "get") and BATCH_KEY in ours


def finish(batch: BatchInput, run: BatchRun) -> dict[str, Any]:
    """Write the report (always) and, for a timeline that ran to its end, the timeline with every
    finished patch on one new top track. Returns the report."""
    timeline_written = None
    if batch.reel is not None and batch.timeline_out is not None and not run.interrupted:
        finished = {shot: o.render for shot, o in run.outcomes.items()
                    if o.state in (DONE, SKIPPED) and o.render and shot in batch.reel.placements}
        timeline = reel_timeline(batch.reel, finished)
        ours = dict(timeline.metadata.get(METADATA_KEY, {}))
        ours[BATCH_KEY] = {"report": str(batch.report_dir / REPORT_NAME), "patches": len(finished),
                           "shots": len(batch.jobs)}
        timeline.metadata[METADATA_KEY] = ours
        inputs = {"--timeline": batch.reel.timeline_path, **{f"{j.id} video": j.video for j in batch.jobs}}
        timeline_written = write_timeline(timeline, batch.timeline_out, overwrite=True, inputs=inputs)
    run_info = {**run.run, "source": batch.source, "timeline_out": str(timeline_written) if timeline_written else None,
                "libraries": {shot: [str(p) for p in paths] for shot, paths in run.libraries.items() if paths},
                "warnings": batch.warnings}
    run_info["report"] = str(batch.report_dir / REPORT_NAME)
    report = batch_report(batch.jobs, run.outcomes, run.persons, run_info)
    write_report(report, batch.report_dir)
    return report
