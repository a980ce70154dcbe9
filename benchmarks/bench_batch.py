"""``dubline batch`` benchmark: 12 short shots cut from ../shared/media, rendered by the retrieval
backend on Ray.

    python benchmarks/bench_batch.py [--media ../shared/media] [--parts all|workers|cluster|fault|overhead]

* workers   wall time with 1 and 2 local workers, each from a cold analysis cache (the same work):
            1 worker of 1 CPU, 1 worker of all CPUs, 2 workers of 1 CPU each (the default on 2
            cores); speed-up target >= 1.6x on 2 cores
* cluster   a simulated multi-node cluster (ray.cluster_utils.Cluster: 1, 2, 4 nodes of 1 CPU each,
            joined by address): shots/min per node count on a warm cache, and the scheduling
            overhead per shot (driver's start-to-result time less the worker's own shot time)
* fault     2 workers; one worker process is killed (SIGKILL, by pid) while it renders a shot:
            every shot must end done, each patch frame for frame the clean run's, no partial file
* overhead  N one-frame shots as one batch (1 worker) against N sequential ``dubline render`` calls

The machine is shared with other jobs: the load average is printed before and after each part.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Before Ray is imported (by the cluster part): every Ray process on loopback, no usage statistics.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402

from dubline.apps.batch import BatchOptions, finish, plan_input, run_batch  # noqa: E402
from dubline.core import timing  # noqa: E402
from dubline.pipeline.batch import ShotSettings  # noqa: E402
from dubline.stages import media  # noqa: E402

DEFAULT_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
SHOT_FRAMES = 40  # 1.6 s at 25 fps
STARTS = (0, 16, 32, 48, 64, 80)


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def cut_shots(media_dir: Path, work: Path) -> list[Path]:
    """6 shots of 40 frames from each shared clip, each its own file with its own audio."""
    shots = []
    for clip in ("speaker_a", "speaker_b"):
        source = media_dir / f"{clip}.mp4"
        info = media.probe(source)
        rate = info.video.rate
        for number, first in enumerate(STARTS, start=1):
            out = work / f"{clip}_{number}.mp4"
            span = timing.frames_to_range(first, first + SHOT_FRAMES, rate)
            if not out.exists():
                audio = media.read_audio(source, span, rate=48000, mono=True)
                frames = (f.image for f in media.read_span(source, span))
                media.write_patch(frames, out, "h264", rate, start_timecode=timing.frames_to_timecode(first, rate),
                                  audio=audio)
            shots.append(out)
    return shots


def job_list(shots: list[Path], dub: Path, out: Path, frames: int = SHOT_FRAMES, codec: str = "h264") -> Path:
    """H.264 patches, or lossless FFV1 (.mkv) where frames are compared bit for bit: x264's threaded
    encode does not give the same bits twice, dubline's own frames do."""
    out.mkdir(parents=True, exist_ok=True)
    suffix = ".mkv" if codec == "ffv1" else ".mov"
    rows = [{"id": shot.stem, "video": str(shot), "audio": str(dub), "range": f"0-{frames}",
             "out": str(out / f"{shot.stem}{suffix}"), "audio_offset": str(0.4 * number), "codec": codec}
            for number, shot in enumerate(shots)]
    path = out / "jobs.json"
    path.write_text(json.dumps(rows))
    return path


class Timer:
    """Driver-side start/result times per shot (for the scheduling overhead)."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.first_start: float | None = None

    def __call__(self, event) -> None:
        now = time.perf_counter()
        if event.kind == "start":
            self.started.setdefault(event.shot, now)
            self.first_start = self.first_start or now
        elif event.kind == "shot":
            self.ended[event.shot] = now


def run(jobs_path: Path, workers: int, cache: Path, address: str | None = None, on_event=None, stop=None,
        cpus_per_worker: int | None = None):
    batch = plan_input(job_list=jobs_path)
    options = BatchOptions(workers=workers, ray_address=address, cpus_per_worker=cpus_per_worker,
                           settings=ShotSettings(report_dir=batch.report_dir, cache_root=cache, overwrite=True))
    timer = Timer()

    def events(event) -> None:
        timer(event)
        if on_event is not None:
            on_event(event)

    started = time.perf_counter()
    result = run_batch(batch.jobs, options, events, stop)
    wall = time.perf_counter() - started
    report = finish(batch, result)
    shots_phase = max(timer.ended.values()) - timer.first_start
    overheads = [timer.ended[s] - timer.started[s] - result.outcomes[s].seconds for s in timer.ended
                 if s in timer.started and result.outcomes[s].state in ("done", "skipped")]
    return report, result, wall, shots_phase, overheads


def clear_outputs(out: Path) -> None:
    for pattern in ("*.mov*", "*.mkv*"):
        for path in out.glob(pattern):
            path.unlink()


def part_workers(shots, dub, work) -> dict:
    """1 worker of 1 CPU, 1 worker of all CPUs, and the default (one worker per CPU, 1 CPU each),
    each from a cold cache (the same work), alternating in one run."""
    print(f"\n== 1 vs 2 local workers, {len(shots)} shots of {SHOT_FRAMES} frames, cold cache each (load {load()})")
    figures = {}
    for name, workers, share in (("1 worker x 1 CPU", 1, 1), ("1 worker x all CPUs", 1, None),
                                 ("2 workers x 1 CPU", 2, None)):
        out = work / f"w{workers}"
        clear_outputs(out)
        jobs = job_list(shots, dub, out)
        cache = work / f"cache-w{workers}"
        shutil.rmtree(cache, ignore_errors=True)  # cold: each run analyses every shot
        report, result, wall, phase, _ = run(jobs, workers, cache, cpus_per_worker=share)
        assert report["counts"]["done"] == len(shots), report["counts"]
        figures[name] = (wall, phase)
        busy = sum(outcome.seconds for outcome in result.outcomes.values())
        print(f"{name} ({result.run['where']}): wall {wall:.1f} s (Ray start included), shots phase {phase:.1f} s, "
              f"{len(shots) / phase * 60:.1f} shots/min, sum of shot seconds {busy:.1f} s (load {load()})")
    one, both, two = (figures[name] for name in ("1 worker x 1 CPU", "1 worker x all CPUs", "2 workers x 1 CPU"))
    print(f"speed-up 2 workers vs 1, each 1 CPU: wall {one[0] / two[0]:.2f}x, shots phase {one[1] / two[1]:.2f}x "
          f"(target >= 1.6x)")
    print(f"speed-up 2 workers x 1 CPU vs 1 worker x all CPUs: wall {both[0] / two[0]:.2f}x, shots phase "
          f"{both[1] / two[1]:.2f}x")
    return figures


def part_cluster(shots, dub, work) -> None:
    import ray
    from ray.cluster_utils import Cluster

    cache = work / "cache-cluster"
    warm_jobs = job_list(shots, dub, work / "cluster-warm")
    run(warm_jobs, 2, cache)  # fills the analysis cache: the cluster runs measure rendering and dispatch
    print(f"\n== simulated cluster, nodes of 1 CPU each, warm cache (load {load()})")
    for nodes in (1, 2, 4):
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, include_dashboard=False, configure_logging=False, log_to_driver=False)
        try:
            out = work / f"cluster{nodes}"
            clear_outputs(out)
            report, result, wall, phase, overheads = run(job_list(shots, dub, out), None, cache,
                                                         address=cluster.address)
            assert report["counts"]["done"] == len(shots), report["counts"]
            hosts = {o.worker for o in result.outcomes.values()}
            print(f"{nodes} node(s): {report['run']['where']}; shots phase {phase:.1f} s, "
                  f"{len(shots) / phase * 60:.1f} shots/min, {len(hosts)} worker processes; scheduling overhead "
                  f"per shot median {statistics.median(overheads) * 1000:.0f} ms (max {max(overheads) * 1000:.0f} ms) "
                  f"(load {load()})")
        finally:
            ray.shutdown()
            cluster.shutdown()


def part_fault(shots, dub, work) -> None:
    print(f"\n== fault: kill one worker mid-shot, 2 workers (load {load()})")
    clean = work / "fault-clean"
    clear_outputs(clean)
    run(job_list(shots, dub, clean, codec="ffv1"), 2, work / "cache-w2")
    out = work / "fault"
    clear_outputs(out)
    killed: list[int] = []

    def on_event(event) -> None:
        # The worker process that reports this shot's progress (host:pid; the local Ray is this host).
        if not killed and event.kind == "progress" and event.stage == "render" and event.done >= 5:
            pid = int(event.worker.rpartition(":")[2])
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            print(f"killed worker pid {pid} while {event.shot} was at render {event.done}/{event.total}")

    report, result, wall, _, _ = run(job_list(shots, dub, out, codec="ffv1"), 2, work / "cache-w2", on_event=on_event)
    exact = []
    for shot in shots:
        a, b = out / f"{shot.stem}.mkv", clean / f"{shot.stem}.mkv"
        count = media.probe(a).video.frame_count
        frames_a = [f.image for f in media.read_span(a, timing.frames_to_range(0, count, 25))]
        frames_b = [f.image for f in media.read_span(b, timing.frames_to_range(0, count, 25))]
        exact.append(count == SHOT_FRAMES and all(np.array_equal(x, y) for x, y in zip(frames_a, frames_b)))
    partial = [p.name for p in out.iterdir() if ".part" in p.name]
    retried = [o.id for o in result.outcomes.values() if killed and o.worker.endswith(f":{killed[0]}")]
    assert killed and not retried, (killed, retried)
    print(f"killed {killed}; counts {report['counts']}; {sum(exact)}/{len(exact)} patches frame-exact (FFV1, bit for "
          f"bit) against the clean run; partial files: {partial or 'none'}; wall {wall:.1f} s")


def part_overhead(shots, dub, work, count: int = 8) -> None:
    print(f"\n== per-shot overhead: {count} one-frame shots (load {load()})")
    cache = work / "cache-w1"
    out = work / "overhead-batch"
    clear_outputs(out)
    jobs = job_list(shots[:count], dub, out, frames=1)
    report, _, wall, phase, _ = run(jobs, 1, cache)
    assert report["counts"]["done"] == count, report["counts"]
    print(f"batch, 1 worker: wall {wall:.1f} s = {wall / count:.2f} s per shot (shots phase {phase:.1f} s = "
          f"{phase / count:.2f} s per shot) (load {load()})")
    out = work / "overhead-cli"
    out.mkdir(exist_ok=True)
    clear_outputs(out)
    environment = {**os.environ, "DUBLINE_CACHE": str(cache)}
    started = time.perf_counter()
    for number, shot in enumerate(shots[:count]):
        subprocess.run([sys.executable, "-m", "dubline.apps.cli.main", "render", "--video", str(shot), "--audio",
                        str(dub), "--range", "0-1", "--out", str(out / f"{shot.stem}.mov"), "--codec", "h264",
                        "--audio-offset", str(0.4 * number), "--json"], check=True, capture_output=True, env=environment)
    sequential = time.perf_counter() - started
    print(f"{count} sequential dubline render calls: {sequential:.1f} s = {sequential / count:.2f} s per shot; "
          f"batch / sequential {wall / sequential:.2f} (load {load()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=DEFAULT_MEDIA)
    parser.add_argument("--parts", default="all", help="comma-separated: workers, cluster, fault, overhead")
    parser.add_argument("--work", type=Path, help="keep inputs and outputs here (default: a temporary folder)")
    args = parser.parse_args()
    parts = {"workers", "cluster", "fault", "overhead"} if args.parts == "all" else set(args.parts.split(","))
    print(f"bench_batch {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load {load()}")
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as temp:
        work = args.work or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        shots = cut_shots(args.media, work)
        dub = args.media / "dub_en_16k.wav"
        if "workers" in parts:
            part_workers(shots, dub, work)
        if "fault" in parts:
            part_fault(shots, dub, work)
        if "overhead" in parts:
            part_overhead(shots, dub, work)
        if "cluster" in parts:
            part_cluster(shots, dub, work)


if __name__ == "__main__":
    main()
