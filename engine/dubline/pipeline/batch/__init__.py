"""A batch: many span jobs (a reel or a job list) planned, resumed and reported.

    jobs       ShotJob (one shot, plain values a worker can receive), the JSON/CSV job list
    reel       an editor's timeline with the dub on an audio track -> shot jobs; the timeline back
               with every patch on one new top track
    resume     the sidecar beside each patch: a re-run renders only what changed or did not finish
    shot       one shot as a worker runs it (check, skip, render, sheet, record) -> ShotOutcome
    identity   the speakers of all shots clustered by person; cross-shot libraries
    report     the JSON report and the summary table

Where the shots run (Ray actors, or this process) is the apps layer's business
(``dubline.apps.batch``); everything here is plain functions over these types.
"""

from dubline.pipeline.batch.identity import (
    LIBRARY_LIMIT,
    SAME_PERSON,
    ShotFace,
    cluster_identities,
    shared_libraries,
    speaker_descriptor,
)
from dubline.pipeline.batch.jobs import JobDefaults, ShotJob, check_jobs, read_job_list
from dubline.pipeline.batch.reel import ReelPlan, plan_reel, reel_timeline
from dubline.pipeline.batch.report import (
    REPORT_NAME,
    batch_report,
    summary_table,
    write_report,
)
from dubline.pipeline.batch.resume import (
    SIDECAR_SUFFIX,
    finished,
    shot_key,
    sidecar_path,
)
from dubline.pipeline.batch.shot import (
    CANCELLED,
    DONE,
    FAILED,
    SKIPPED,
    ShotOutcome,
    ShotSettings,
    analyse_shot,
    describe_shot,
    run_shot,
    unreadable,
)

__all__ = [
    "CANCELLED", "DONE", "FAILED", "LIBRARY_LIMIT", "REPORT_NAME", "SAME_PERSON", "SIDECAR_SUFFIX", "SKIPPED",
    "JobDefaults", "ReelPlan", "ShotFace", "ShotJob", "ShotOutcome", "ShotSettings", "analyse_shot", "batch_report",
    "check_jobs",
    "cluster_identities", "describe_shot", "finished", "plan_reel", "read_job_list", "reel_timeline", "run_shot",
    "shared_libraries", "shot_key", "sidecar_path", "speaker_descriptor", "summary_table", "unreadable",
    "write_report",
]
