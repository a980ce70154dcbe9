"""What a batch reports: the JSON report (every shot's outcome, the persons found, the figures of
the run) and the summary table printed at the end."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dubline.core.paths import publish_file
from dubline.pipeline.batch.identity import persons_table
from dubline.pipeline.batch.jobs import ShotJob
from dubline.pipeline.batch.shot import STATES, ShotOutcome

REPORT_NAME = "report.json"


def batch_report(jobs: Sequence[ShotJob], outcomes: Mapping[str, ShotOutcome], persons: Mapping[str, int],
                 run: Mapping[str, Any]) -> dict[str, Any]:
    """The report as a dict: ``run`` (where, workers, wall time, ...), ``counts`` by state,
    ``persons`` (person number -> shots), ``shots`` in job order (jobs without an outcome are
    ``pending``: the batch stopped before them)."""
    shots = []
    for job in jobs:
        outcome = outcomes.get(job.id)
        entry: dict[str, Any] = {
            "id": job.id, "label": job.label, "video": str(job.video), "audio": str(job.audio), "range": job.span,
            "audio_offset": str(job.audio_offset), "out": str(job.out), "person": persons.get(job.id),
        }
        if outcome is None:
            entry["state"] = "pending"
        else:
            entry.update({k: v for k, v in outcome.to_dict().items() if k not in ("id", "identity")})
        shots.append(entry)
    counts = Counter(entry["state"] for entry in shots)
    return {
        "run": dict(run),
        "counts": {state: counts.get(state, 0) for state in (*STATES, "pending")},
        "persons": {str(number): ids for number, ids in persons_table(persons).items()},
        "shots": shots,
    }


def write_report(report: Mapping[str, Any], report_dir: Path) -> Path:
    """``report_dir/report.json``, written atomically (replacing the previous run's)."""
    text = json.dumps(report, indent=1, default=str)
    return publish_file(Path(report_dir) / REPORT_NAME, lambda temporary: temporary.write_text(text), overwrite=True)


def summary_table(report: Mapping[str, Any], width: int = 100) -> str:
    """One line per shot (state, seconds, frames, where it came from or why it failed), then the counts."""
    rows = [("shot", "state", "s", "frames", "person", "detail")]
    for shot in report["shots"]:
        render = shot.get("render") or {}
        detail = shot.get("message") or shot.get("label", "")
        rows.append((shot["id"], shot["state"], f"{shot.get('seconds', 0):.1f}", str(render.get("frames_written", "")),
                     str(shot.get("person") or ""), detail))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for row in rows:
        head = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5]))
        room = max(width - len(head) - 2, 20)
        detail = row[5] if len(row[5]) <= room else row[5][: room - 1] + "…"
        lines.append(f"{head}  {detail}".rstrip())
    counts = ", ".join(f"{n} {state}" for state, n in report["counts"].items() if n)
    run = report.get("run", {})
    lines.append(f"{len(report['shots'])} shots: {counts}; {run.get('wall_seconds', 0):.1f}s on {run.get('where', '?')}")
    return "\n".join(lines)
