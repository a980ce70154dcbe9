"""One library per person across the reel: PAC and mouth-shape coverage of short shots rendered
with and without ``--cross-shot-library``.

    python benchmarks/measure_cross_shot.py [--media ../shared/media] [--frames 40] [--work DIR]

The 12 shots of ``bench_batch.py`` (40 frames = 1.6 s each, 6 per shared clip, each its own file
with its own audio) are dubbed with dub_en_16k.wav (each from another offset) twice by ``dubline
batch`` with ``--qc``: once with each shot's own footage as its library, once with every shot of the
same person (clustered by face identity) added. Printed per shot and on average:

* PAC: the qc sync number of the written patch (Pearson correlation of the mouth aperture measured
  on the patch with the dub's openness, best lag within ±2 frames);
* coverage: the share of voiced output frames whose calibrated target mouth (aperture, width) has
  a library mouth within 0.03 aperture and 0.06 width (both in inter-ocular distances), i.e. a real
  mouth of about the wanted shape exists to choose from;
* shapes: distinct 0.03-wide aperture bins the library offers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batch import DEFAULT_MEDIA, cut_shots, job_list, load  # noqa: E402

from dubline.apps.batch import BatchOptions, finish, plan_input, run_batch  # noqa: E402
from dubline.core import timing  # noqa: E402
from dubline.pipeline import analyse_clip  # noqa: E402
from dubline.pipeline.batch import ShotSettings  # noqa: E402
from dubline.stages.speech import analyse_speech  # noqa: E402
from dubline.stages.speech.dub import read_dub  # noqa: E402

APERTURE_TOLERANCE = 0.03
WIDTH_TOLERANCE = 0.06


def coverage(video: Path, library: list[Path], dub: Path, offset: str, frames: int, cache: Path) -> tuple[float, int]:
    """(share of voiced frames with a library mouth of about the target shape, aperture bins offered)."""
    source = analyse_clip(video, cache_root=cache)
    clip, _ = read_dub(dub, timing.parse_seconds(offset, "offset"))
    speech = analyse_speech(clip, rate=source.info.video.rate, frame_count=frames, cache=cache)
    target_aperture, target_width = source.calibration.apply(speech.openness, speech.width)
    apertures, widths = [], []
    for path in [video, *library]:
        faces = analyse_clip(path, cache_root=cache).faces
        usable = faces.usable & np.isfinite(faces.aperture) & np.isfinite(faces.mouth_width)
        apertures.append(faces.aperture[usable])
        widths.append(faces.mouth_width[usable])
    aperture, width = np.concatenate(apertures), np.concatenate(widths)
    voiced = np.flatnonzero(speech.voice_activity > 0.5)
    if not len(voiced) or not len(aperture):
        return float("nan"), 0
    hit = [np.any((np.abs(aperture - target_aperture[t]) <= APERTURE_TOLERANCE)
                  & (np.abs(width - target_width[t]) <= WIDTH_TOLERANCE)) for t in voiced]
    return float(np.mean(hit)), len(np.unique(np.floor(aperture / APERTURE_TOLERANCE)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=DEFAULT_MEDIA)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"measure_cross_shot {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load {load()}")
    with tempfile.TemporaryDirectory(prefix="cross-shot-") as temp:
        work = args.work or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        shots = cut_shots(args.media, work)
        dub = args.media / "dub_en_16k.wav"
        cache = work / "cache-cross"
        results = {}
        for mode, shared in (("own", False), ("cross", True)):
            jobs = job_list(shots, dub, work / f"cross-{mode}")
            batch = plan_input(job_list=jobs)
            options = BatchOptions(workers=args.workers, cross_shot_library=shared, settings=ShotSettings(
                report_dir=batch.report_dir, cache_root=cache, qc=True, overwrite=True))
            started = time.perf_counter()
            run = run_batch(batch.jobs, options)
            report = finish(batch, run)
            print(f"{mode}: {report['counts']} in {time.perf_counter() - started:.1f} s; persons {report['persons']} "
                  f"(load {load()})")
            results[mode] = (batch, run)
        own_batch, own_run = results["own"]
        _, cross_run = results["cross"]
        rows = []
        print(f"\n{'shot':<14}{'PAC own':>9}{'PAC cross':>11}{'cover own':>11}{'cover cross':>13}{'shapes':>10}  library")
        for job in own_batch.jobs:
            own, cross = own_run.outcomes[job.id], cross_run.outcomes[job.id]
            library = list(cross_run.libraries.get(job.id, ()))
            offset = str(job.audio_offset)
            cover_own, bins_own = coverage(job.video, [], dub, offset, 40, cache)
            cover_cross, bins_cross = coverage(job.video, library, dub, offset, 40, cache)
            pac_own = (own.qc or {}).get("pac_sync")
            pac_cross = (cross.qc or {}).get("pac_sync")
            rows.append((pac_own, pac_cross, cover_own, cover_cross))
            print(f"{job.id:<14}{pac_own:>9.3f}{pac_cross:>11.3f}{cover_own:>11.2f}{cover_cross:>13.2f}"
                  f"{f'{bins_own}->{bins_cross}':>10}  {len(library)} clips")
        columns = list(zip(*rows))
        means = [statistics.fmean(v for v in column if v is not None and np.isfinite(v)) for column in columns]
        print(f"{'mean':<14}{means[0]:>9.3f}{means[1]:>11.3f}{means[2]:>11.2f}{means[3]:>13.2f}")


if __name__ == "__main__":
    main()
