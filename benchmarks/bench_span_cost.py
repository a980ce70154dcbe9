"""Cold span cost (issue 15): a first render from a clip should pay for the span, not the file.

Sources, built once into ``$DUBLINE_BENCH_CACHE/span`` (default ``~/.cache/dubline/bench/span``):
speaker_a (844x844, 5 s, its own audio) scaled to 1080 px high on a 1920x1080 canvas and played
twice makes a 10 s take (H.264 crf 18 veryfast, a keyframe every 2 s, 2 B-frames, AAC); the
10 min take is that file 60 times over (stream copy), so both hold the same pictures, sound and
GOP structure. The span is the same 25 frames of a 10 s segment in both: 100-125 of the short take,
7600-7625 (segment 30) of the long one.

Every case is one render in a fresh process with an empty analysis cache (models load, nothing is
cached), dub_en_16k.wav, the retrieval backend, a ProRes patch:

- ``new short`` / ``new long``: this tree, default analysis budget (span +-1 s, 6 s sampled library);
- ``old short``: today's code, the base commit's tree (``git archive``; default: the merge base
  with main), on the same span of the short take, run right after ``new short``;
- ``old long`` only with ``--old-long`` (the base analyses all 15000 frames: about an hour here).

Prints each case's wall time, stage seconds and analysis counts, then the ratios side by side
(long/short, target <= 1.5; old/new short, target >= 3), the machine and the load average before
and after (the machine is shared: compare ratios from one run, not absolute seconds across runs).
With ``--qc`` also the QC numbers (PAC, identity) of each case's patch (25 frames: indicative only);
with ``--profile`` each case's costliest calls (where the old code's cold time goes, per call).

    python benchmarks/bench_span_cost.py [--base COMMIT] [--old-long] [--qc] [--profile] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "media"
SPAN_IN_SEGMENT = (100, 125)
SEGMENT_FRAMES = 250
LONG_SEGMENTS = 60
LONG_SPAN_SEGMENT = 30

CHILD = r"""
import cProfile, io, json, pstats, resource, sys, time
from pathlib import Path
from dubline.pipeline import RenderRequest, render
video, dub, span, out, cache, qc, profile = sys.argv[1:8]
profiler = cProfile.Profile() if profile == "1" else None
started = time.perf_counter()
if profiler:
    profiler.enable()
result = render(RenderRequest(video=Path(video), audio=Path(dub), span=span, out=Path(out), codec="prores",
                              overwrite=True), cache_root=Path(cache))
wall = time.perf_counter() - started
if profiler:
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(12)
    print(text.getvalue())
usage = resource.getrusage(resource.RUSAGE_SELF)
report = {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "stages": result.stage_seconds,
          "analysis": getattr(result, "analysis", {})}
if qc == "1":
    from dubline.pipeline.qc import run_qc
    measured = run_qc(Path(out), Path(dub), source=Path(video), span=span, cache_root=Path(cache))
    report["qc"] = {"pac": measured.pac_sync, "identity": measured.identity_distance}
print("RESULT " + json.dumps(report))
"""


def bench_dir() -> Path:
    root = Path(os.environ.get("DUBLINE_BENCH_CACHE", Path.home() / ".cache" / "dubline" / "bench")) / "span"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def build_sources(root: Path) -> tuple[Path, Path]:
    """The 10 s and 10 min 1080p takes (made once)."""
    short, long = root / "take_10s_1080p.mp4", root / "take_10min_1080p.mp4"
    if not short.exists():
        started = time.perf_counter()
        partial = root / "take_10s.part.mp4"
        _ffmpeg("-stream_loop", "1", "-i", str(SHARED / "speaker_a.mp4"), "-t", "10",
                "-vf", "scale=1080:1080:flags=bicubic,pad=1920:1080:420:0:color=0x282828",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-g", "50", "-bf", "2", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-b:a", "128k", "-ar", "48000", str(partial))
        partial.rename(short)
        print(f"built {short.name} in {time.perf_counter() - started:.0f} s", flush=True)
    if not long.exists():
        listing = root / "concat.txt"
        listing.write_text("".join(f"file '{short.name}'\n" for _ in range(LONG_SEGMENTS)))
        partial = root / "take_10min.part.mp4"
        _ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(partial))
        partial.rename(long)
        print(f"built {long.name}", flush=True)
    return short, long


def base_tree(root: Path, commit: str) -> Path:
    """The engine and client of ``commit`` (extracted once)."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", commit], check=True, capture_output=True,
                         text=True).stdout.strip()
    tree = root / f"base-{sha[:12]}"
    if not (tree / "engine").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "engine", "plugin"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def run_case(tree: Path, video: Path, span: tuple[int, int], work: Path, qc: bool, profile: bool = False) -> dict:
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=f"{tree / 'engine'}{os.pathsep}{tree / 'plugin'}", DUBLINE_CACHE=str(cache))
    out = work / "patch.mov"
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(video), str(SHARED / "dub_en_16k.wav"), f"{span[0]}-{span[1]}", str(out),
         str(cache), "1" if qc else "0", "1" if profile else "0"],
        env=env, capture_output=True, text=True,
    )
    if profile:  # the main thread's calls by own time (worker threads' work shows as waiting)
        print("\n".join(line for line in result.stdout.splitlines() if not line.startswith("RESULT ")))
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"render failed ({tree}):\n{result.stderr[-3000:]}")
    shutil.rmtree(cache, ignore_errors=True)
    return json.loads(lines[-1].removeprefix("RESULT "))


def _show(name: str, case: dict) -> None:
    stages = ", ".join(f"{k} {v:.1f}" for k, v in case["stages"].items() if not k.startswith("analyse_source."))
    parts = {k.removeprefix("analyse_source."): v for k, v in case["stages"].items() if k.startswith("analyse_source.")}
    print(f"{name:10s} wall {case['wall']:6.1f} s  cpu {case['cpu']:6.1f} s  [{stages}]")
    if parts:
        print(" " * 11 + "analysis: " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
    analysis = case.get("analysis") or {}
    if analysis:
        frames = analysis.get("frames_analysed", 0)
        detected = analysis.get("work.faces.detected.frames", 0)
        tracked = analysis.get("work.faces.tracked.frames", 0)
        per = []
        if frames:
            per.append(f"decode+convert {1000 * analysis.get('work.decode', 0) / frames:.0f} ms/frame")
        if detected:
            per.append(f"whole-frame search {1000 * analysis['work.faces.detected'] / detected:.0f} ms/frame ({detected:.0f})")
        if tracked:
            per.append(f"tracked {1000 * analysis['work.faces.tracked'] / tracked:.0f} ms/frame ({tracked:.0f})")
        print(" " * 11 + f"frames analysed {frames:.0f} (library {analysis.get('frames_known', 0):.0f}); " + ", ".join(per)
              + " (summed over worker threads)")
    if "qc" in case:
        print(" " * 11 + f"qc: PAC {case['qc']['pac']:.2f}, identity {case['qc']['identity']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=None, help="today's code: a commit (default: the merge base with main)")
    parser.add_argument("--old-long", action="store_true", help="also time today's code on the 10 min take (slow)")
    parser.add_argument("--qc", action="store_true", help="QC numbers of each patch (PAC, identity)")
    parser.add_argument("--keep", type=Path, help="work directory to keep (default: a temporary one)")
    parser.add_argument("--profile", action="store_true",
                        help="also print each case's 12 costliest calls (cProfile, own time; slows the run down)")
    args = parser.parse_args()
    root = bench_dir()
    short, long = build_sources(root)
    base = args.base or subprocess.run(["git", "-C", str(ROOT), "merge-base", "HEAD", "main"], check=True,
                                       capture_output=True, text=True).stdout.strip()
    old = base_tree(root, base)
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_span_"))
    work.mkdir(parents=True, exist_ok=True)
    long_span = (LONG_SPAN_SEGMENT * SEGMENT_FRAMES + SPAN_IN_SEGMENT[0], LONG_SPAN_SEGMENT * SEGMENT_FRAMES + SPAN_IN_SEGMENT[1])
    print(f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; load average before {os.getloadavg()}; base {base[:12]}", flush=True)
    cases = {}
    cases["new short"] = run_case(ROOT, short, SPAN_IN_SEGMENT, work, args.qc, args.profile)
    _show("new short", cases["new short"])
    cases["old short"] = run_case(old, short, SPAN_IN_SEGMENT, work, args.qc, args.profile)
    _show("old short", cases["old short"])
    cases["new long"] = run_case(ROOT, long, long_span, work, args.qc, args.profile)
    _show("new long", cases["new long"])
    if args.old_long:
        cases["old long"] = run_case(old, long, long_span, work, args.qc, args.profile)
        _show("old long", cases["old long"])
    print(f"load average after {os.getloadavg()}")
    print(f"ratio new long / new short: {cases['new long']['wall'] / cases['new short']['wall']:.2f} (target <= 1.5)")
    print(f"speed-up old short / new short: {cases['old short']['wall'] / cases['new short']['wall']:.2f}x (target >= 3)")
    if "old long" in cases:
        print(f"old long / old short: {cases['old long']['wall'] / cases['old short']['wall']:.1f}")
    print("JSON " + json.dumps(cases))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
