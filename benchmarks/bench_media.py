"""Media layer benchmark: does span cost follow the span (not the file), and how fast is I/O?

Prints, measured in one run:
  * time to read a 2 s span from a short (10 s) and a long (10 min) file of the same 1080p
    H.264 encoding (ultrafast, GOP 250), at the same offset inside a GOP, and their ratio
    (target <= 1.3);
  * read_span throughput at 1080p (decode + RGB conversion), frames per second;
  * write_patch encode throughput at 1080p for prores, dnxhr and h264;
  * peak RSS (VmHWM) of a fresh process reading a 10 s and a 60 s 1080p span (target
    < 1 GiB, and no growth with span length).

The long file is generated once (a low-complexity bar-code pattern, so 2 cores manage it)
and cached in $DUBLINE_BENCH_CACHE or ~/.cache/dubline/bench.

    python benchmarks/bench_media.py                       # full sizes
    python benchmarks/bench_media.py --long-seconds 120 --height 720 --width 1280   # quick check
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dubline.core.timing import frames_to_range  # noqa: E402
from dubline.stages import media  # noqa: E402
from mediagen import pattern_image, pattern_luma  # noqa: E402

GOP = 250


def cache_dir() -> Path:
    root = Path(os.environ.get("DUBLINE_BENCH_CACHE", Path.home() / ".cache" / "dubline" / "bench"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def generate(seconds: int, width: int, height: int, rate: int) -> Path:
    """An H.264 file of bar-code frames (cached by its parameters)."""
    path = cache_dir() / f"bars_{width}x{height}_{rate}fps_{seconds}s_gop{GOP}.mp4"
    if path.exists():
        return path
    partial = path.with_suffix(".part.mp4")
    started = time.perf_counter()
    chroma = np.full((height // 2, width), 128, np.uint8)  # U and V planes stacked, grey
    with av.open(str(partial), "w", format="mp4") as container:
        stream = container.add_stream(
            "libx264", rate=rate, options={"preset": "ultrafast", "g": str(GOP), "keyint_min": str(GOP), "bf": "2"}
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.thread_type = "AUTO"
        for index in range(seconds * rate):
            planes = np.concatenate([pattern_luma(index, width, height), chroma])
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.rename(path)
    print(f"  generated {path.name} in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def time_span(path: Path, first: int, count: int, rate: int, repeats: int) -> tuple[float, int]:
    """Median seconds to read frames [first, first + count) (each run opens the file afresh)."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        read = sum(1 for _ in media.read_span(path, frames_to_range(first, first + count, Fraction(rate))))
        timings.append(time.perf_counter() - started)
        assert read == count, (read, count)
    return statistics.median(timings), count


def encode_fps(codec: str, width: int, height: int, rate: int, frames: int, directory: Path) -> float:
    distinct = [pattern_image(i, width, height) for i in range(8)]
    started = time.perf_counter()
    out = media.write_patch(
        (distinct[i % len(distinct)] for i in range(frames)),
        directory / f"encode_{codec}.mov",
        codec,
        Fraction(rate),
        "01:00:00:00",
        overwrite=True,
    )
    elapsed = time.perf_counter() - started
    out.unlink()
    return frames / elapsed


def rss_child(path: str, first: int, count: int, rate: int) -> None:
    """Run in a fresh process: read the span, print frames read and peak RSS in KiB.

    Peak RSS is VmHWM of this process image: ``ru_maxrss`` survives ``exec`` on Linux and
    would report the parent's peak (the generator and encoders) instead.
    """
    read = 0
    for frame in media.read_span(Path(path), frames_to_range(first, first + count, Fraction(rate))):
        read += frame.image.shape[0] > 0
    print(read, peak_rss_kib())


def peak_rss_kib() -> int:
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; bytes on macOS


def peak_rss_mib(path: Path, first: int, count: int, rate: int) -> tuple[float, int]:
    output = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(path), str(first), str(count), str(rate)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return int(output[1]) / 1024, int(output[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short-seconds", type=int, default=10)
    parser.add_argument("--long-seconds", type=int, default=600)
    parser.add_argument("--span-seconds", type=int, default=2)
    parser.add_argument("--rss-span-seconds", type=int, default=60)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--rate", type=int, default=25)
    parser.add_argument("--encode-frames", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rss-child", nargs=4, metavar=("PATH", "FIRST", "COUNT", "RATE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        path, first, count, rate = args.rss_child
        rss_child(path, int(first), int(count), int(rate))
        return

    w, h, rate = args.width, args.height, args.rate
    print(f"media benchmark  {time.strftime('%Y-%m-%d')}  {platform.machine()} {os.cpu_count()} CPUs"
          f"  {platform.python_version()}  PyAV {av.__version__}  {w}x{h} @ {rate} fps", flush=True)
    short = generate(args.short_seconds, w, h, rate)
    long = generate(args.long_seconds, w, h, rate)

    # Same position inside a GOP in both files (so the same number of lead-in frames to decode):
    # the short file's span starts 4 s in; the long file's 4 s after a keyframe near its middle.
    span = args.span_seconds * rate
    offset_in_gop = min(4 * rate, args.short_seconds * rate - span)
    short_first = offset_in_gop
    long_first = (args.long_seconds * rate // 2) // GOP * GOP + offset_in_gop
    media.probe(short), media.probe(long)  # warm the page cache for both
    short_time, _ = time_span(short, short_first, span, rate, args.repeats)
    long_time, _ = time_span(long, long_first, span, rate, args.repeats)
    print(f"{args.span_seconds} s span from {args.short_seconds} s file: {short_time * 1000:.0f} ms")
    print(f"{args.span_seconds} s span from {args.long_seconds} s file: {long_time * 1000:.0f} ms")
    print(f"ratio long/short: {long_time / short_time:.2f}  (target <= 1.3)", flush=True)

    whole = args.short_seconds * rate
    read_time, _ = time_span(short, 0, whole, rate, 1)
    print(f"read_span at {w}x{h} (decode + RGB): {whole / read_time:.1f} fps", flush=True)

    with tempfile.TemporaryDirectory() as directory:
        for codec in ("prores", "dnxhr", "h264"):
            fps = encode_fps(codec, w, h, rate, args.encode_frames, Path(directory))
            print(f"write_patch {codec} at {w}x{h}: {fps:.1f} fps", flush=True)

    for seconds in (10, args.rss_span_seconds):
        count = min(seconds * rate, args.long_seconds * rate)
        mib, read = peak_rss_mib(long, 0, count, rate)
        print(f"peak RSS reading a {count / rate:.0f} s span ({read} frames): {mib:.0f} MiB  (target < 1024)", flush=True)


if __name__ == "__main__":
    main()
