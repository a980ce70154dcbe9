"""Per-frame render latency of the OpenFX plug-in inside the ctypes host (tests/ofx_host.py) at 1080p.

Starts a fresh engine (empty analysis cache) with a frame socket, builds the plug-in if needed, and
renders 1920x1080 host frames of a 1080p source: by default the 10 s take of bench_span_cost.py
(speaker_a on a 1920x1080 canvas, built once into its cache), whose frames the host holds as they are.

- cold: wall time from the first render call until a dubbed frame comes back (the engine analyses
  the clip and renders the asked frame first meanwhile; each of those calls passes the source
  through), and the latency of those passthrough calls;
- warm first frame (issue 15, target <= 2 s): the same engine, models loaded and the source's
  analysis cached, asked for spans it has not rendered: another span of the same take, and the
  first span with another dub offset (the dub is analysed afresh); time to the first dubbed frame;
- cached: median and p95 of each render call once the span is in the engine's memory, 8-bit and
  float RGBA (the whole frame travels to the engine and back on every call).

    python benchmarks/bench_ofx.py [--video FILE] [--span 100-125] [--repeats 40]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from dubline_client import EngineClient, pb
from ofx_host import OfxHost

BINARY = Path("Dubline.ofx.bundle/Contents/Linux-x86-64/Dubline.ofx")


def build_plugin(build: Path) -> Path:
    for command in (["cmake", "-S", str(ROOT / "ofx_bridge"), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"],
                    ["cmake", "--build", str(build), "-j2"]):
        subprocess.run(command, check=True, capture_output=True)
    return build / BINARY


def host_frames(video: Path, first: int, end: int) -> list[np.ndarray]:
    import cv2
    from dubline.core import timing
    from dubline.stages import media

    frames = []
    for frame in media.read_span(video, timing.frames_to_range(first, end, media.probe(video).video.rate)):
        rgb = frame.image if frame.image.shape[:2] == (1080, 1920) else cv2.resize(frame.image, (1920, 1080), interpolation=cv2.INTER_LINEAR)
        frames.append(np.dstack([rgb, np.full((1080, 1920), 255, np.uint8)]))
    return frames


def percentiles(samples: list[float]) -> str:
    ms = np.array(samples) * 1000
    return f"median {np.median(ms):6.1f} ms  p95 {np.percentile(ms, 95):6.1f} ms  (n={len(ms)})"


def first_dubbed(instance, frame: np.ndarray, index: int, poll_s: float = 0.05) -> tuple[float, list[float]]:
    """Seconds from the first render call until one comes back dubbed, and each passthrough call's latency."""
    started = time.monotonic()
    waiting: list[float] = []
    while True:
        t = time.perf_counter()
        instance.render(frame, index)
        waiting.append(time.perf_counter() - t)
        if instance.status.startswith("dubbed"):
            return time.monotonic() - started, waiting[:-1]
        if not instance.status.startswith("rendering"):
            raise SystemExit(f"engine said: {instance.status}")
        time.sleep(poll_s)


def default_video() -> Path:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_span_cost import bench_dir, build_sources

    return build_sources(bench_dir())[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, help="source clip (default: bench_span_cost's 10 s 1080p take)")
    parser.add_argument("--dub", type=Path, default=ROOT.parent / "shared" / "media" / "dub_en_16k.wav")
    parser.add_argument("--span", default="100-125")
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    first, end = (int(x) for x in args.span.split("-"))
    video, dub = args.video or default_video(), args.dub
    length = end - first

    with tempfile.TemporaryDirectory(prefix="bench_ofx_") as tmp:
        root = Path(tmp)
        binary = build_plugin(root / "build")
        engine = subprocess.Popen(
            [str(Path(sys.executable).parent / "dubline"), "serve", "--listen", f"unix:{root / 'grpc.sock'}",
             "--frame-socket", f"unix:{root / 'frames.sock'}", "--cache", str(root / "cache")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=dict(os.environ, DUBLINE_CACHE=str(root / "cache")),
        )
        try:
            engine.stdout.readline(), engine.stdout.readline()
            host = OfxHost(binary)
            host.load()
            host.describe()
            host.describe_in_context()
            params = {"engineAddress": f"unix:{root / 'frames.sock'}", "sourceMedia": str(video), "dubAudio": str(dub),
                      "spanStart": first, "spanEnd": end, "timeoutMs": 10000}
            instance = host.create_instance(params)
            frames = host_frames(video, first, end)
            other = host_frames(video, end, end + length)
            print(f"{video.name} span {first}-{end} ({length} frames), host frames {frames[0].shape[1]}x{frames[0].shape[0]} "
                  f"RGBA; load average {os.getloadavg()}")

            seconds, waiting = first_dubbed(instance, frames[0], first)
            print(f"cold (fresh engine and cache): first dubbed frame after {seconds:.1f} s "
                  f"({len(waiting)} passthrough calls meanwhile, {percentiles(waiting or [0])})")
            print(f"  (a passthrough call sends the whole 8 MB frame and gets it back; the host asks again "
                  f"50 ms after each answer, so it sees a frame about one call after the engine has it)")
            # One span at a time, as an editor works: each measurement starts once the span before
            # it has finished rendering behind its first frame (its job would share the CPU).
            for index, frame in enumerate(frames):
                first_dubbed(instance, frame, first + index)
            with EngineClient(f"unix:{root / 'grpc.sock'}") as client:
                def settle() -> None:
                    while any(job.state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING) for job in client.list_jobs()):
                        time.sleep(0.2)

                def engine_side() -> str:
                    """The last frame job's own time to its first frame (without the host's polling)."""
                    settle()
                    jobs = [job for job in client.list_jobs() if job.kind == "frame"]
                    latest = max(jobs, key=lambda job: job.created_unix)
                    return f"engine side {latest.result.qc['seconds.first_frame']:.2f} s"

                settle()
                next_span = host.create_instance(dict(params, spanStart=end, spanEnd=end + length))
                seconds, _ = first_dubbed(next_span, other[0], end)
                print(f"warm, another span of the take: first dubbed frame after {seconds:.2f} s (target <= 2 s; "
                      f"{engine_side()})")
                offset = host.create_instance(dict(params, dubOffset=0.5))
                seconds, _ = first_dubbed(offset, frames[0], first)
                print(f"warm, same span, dub offset 0.5 s (dub analysed afresh): first dubbed frame after {seconds:.2f} s "
                      f"({engine_side()})")
            for label, convert in (("8-bit", lambda f: f), ("float", lambda f: f.astype(np.float32) / 255)):
                converted = [convert(f) for f in frames]
                samples = []
                for i in range(args.repeats):
                    index = i % len(converted)
                    t = time.perf_counter()
                    instance.render(converted[index], first + index)
                    samples.append(time.perf_counter() - t)
                    assert instance.status.startswith("dubbed"), instance.status
                print(f"cached {label:5s}: {percentiles(samples)}")
            print(f"load average after {os.getloadavg()}")
        finally:
            engine.terminate()
            engine.wait(30)


if __name__ == "__main__":
    if shutil.which("cmake") is None:
        raise SystemExit("cmake is needed to build the plug-in")
    main()
