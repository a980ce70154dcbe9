"""Per-frame render latency of the OpenFX plug-in inside the ctypes host (tests/ofx_host.py) at 1080p.

Starts a fresh engine (empty analysis cache) with a frame socket, builds the plug-in if needed, and
renders host frames of 1920x1080 (speaker_b's frames scaled up, as a host would hold them):

- first pass: wall time from the first render call until a dubbed frame comes back (the engine
  analyses the clip and renders the span meanwhile; each of those calls passes the source through),
  and the latency of those passthrough calls;
- cached: median and p95 of each render call once the span is in the engine's memory, 8-bit and
  float RGBA (the whole frame travels to the engine and back on every call).

    python benchmarks/bench_ofx.py [--media DIR] [--span 20-30] [--repeats 40]
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
        rgb = cv2.resize(frame.image, (1920, 1080), interpolation=cv2.INTER_LINEAR)
        frames.append(np.dstack([rgb, np.full((1080, 1920), 255, np.uint8)]))
    return frames


def percentiles(samples: list[float]) -> str:
    ms = np.array(samples) * 1000
    return f"median {np.median(ms):6.1f} ms  p95 {np.percentile(ms, 95):6.1f} ms  (n={len(ms)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", type=Path, default=ROOT.parent / "shared" / "media")
    parser.add_argument("--clip", default="speaker_b.mp4")
    parser.add_argument("--dub", default="dub_en_16k.wav")
    parser.add_argument("--span", default="20-30")
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    first, end = (int(x) for x in args.span.split("-"))
    video, dub = args.media / args.clip, args.media / args.dub

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
            instance = host.create_instance({
                "engineAddress": f"unix:{root / 'frames.sock'}", "sourceMedia": str(video), "dubAudio": str(dub),
                "spanStart": first, "spanEnd": end, "timeoutMs": 10000,
            })
            frames = host_frames(video, first, end)
            print(f"{args.clip} span {first}-{end} ({end - first} frames), host frames 1920x1080 RGBA")

            started = time.monotonic()
            waiting: list[float] = []
            while True:
                t = time.perf_counter()
                instance.render(frames[0], first)
                waiting.append(time.perf_counter() - t)
                if instance.status.startswith("dubbed"):
                    break
                if not instance.status.startswith("rendering"):
                    raise SystemExit(f"engine said: {instance.status}")
                time.sleep(0.25)
            print(f"first pass: first dubbed frame after {time.monotonic() - started:.1f} s "
                  f"({len(waiting) - 1} passthrough calls meanwhile, {percentiles(waiting[:-1] or [0])}; "
                  f"first dubbed call {waiting[-1] * 1000:.0f} ms)")

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
        finally:
            engine.terminate()
            engine.wait(30)


if __name__ == "__main__":
    if shutil.which("cmake") is None:
        raise SystemExit("cmake is needed to build the plug-in")
    main()
