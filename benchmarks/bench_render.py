"""End-to-end render speed and memory (issue 4): frames/s with h264 output, library analysis cached.

Inputs: the shared clips as they are, and a 1080p clip made from speaker_a (each frame scaled to
1080 px high, centred on a 1920x1080 canvas, its own audio muxed). Each clip is rendered once cold
(fills the analysis cache) and then timed warm. Peak memory is read in fresh processes rendering
spans of 25 to 500 frames of one 20 s 1080p clip (speaker_a played forward and back twice) with a
20 s dub: flat means a longer span costs no more once the encoder's look-ahead is full.

    python benchmarks/bench_render.py [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from dubline.core import timing
from dubline.pipeline import RenderRequest, render
from dubline.stages import media

SHARED = Path(__file__).resolve().parents[2] / "shared" / "media"


def make_1080p(source: Path, out: Path, round_trips: int = 0) -> Path:
    """speaker_a on a 1080p canvas; ``round_trips`` more passes backward then forward again."""
    if out.exists():
        return out
    info = media.probe(source)
    rate, count = info.video.rate, info.video.frame_count
    order = list(range(count)) + (list(range(count - 1, -1, -1)) + list(range(count))) * round_trips

    def frames():
        images = [frame.image for frame in media.read_span(source, timing.frames_to_range(0, count, rate))]
        for index in order:
            scaled = cv2.resize(images[index], (1080, 1080), interpolation=cv2.INTER_CUBIC)
            canvas = np.full((1080, 1920, 3), 40, np.uint8)
            canvas[:, 420:1500] = scaled
            yield canvas

    audio = media.read_audio(source, None, rate=48000, mono=False)
    return media.write_patch(frames(), out, "h264", rate, "00:00:00:00", audio=audio)


def make_long_dub(dub: Path, seconds: float, out: Path) -> Path:
    if out.exists():
        return out
    clip = media.read_audio(dub, None)
    samples = clip.samples
    repeats = int(np.ceil(seconds * clip.sample_rate / samples.shape[-1]))
    tiled = np.concatenate([samples] * repeats, axis=-1)[..., : int(seconds * clip.sample_rate)]
    return media.write_audio(media.AudioClip(tiled, clip.sample_rate), out)


def timed_render(video: Path, dub: Path, span: str, out: Path, cache: Path) -> dict:
    start = time.perf_counter()
    result = render(RenderRequest(video=video, audio=dub, span=span, out=out, codec="h264", overwrite=True), cache_root=cache)
    seconds = time.perf_counter() - start
    return {"frames": result.frames_written, "seconds": round(seconds, 2), "fps": round(result.frames_written / seconds, 2),
            "stages": {k: round(v, 2) for k, v in result.stage_seconds.items()}}


def peak_rss_child(video: Path, dub: Path, span: str, out: Path, cache: Path) -> int:
    code = (
        "import sys; from pathlib import Path; from dubline.pipeline import render, RenderRequest;"
        f"render(RenderRequest(video=Path({str(video)!r}), audio=Path({str(dub)!r}), span={span!r}, out=Path({str(out)!r}),"
        f" codec='h264', overwrite=True), cache_root=Path({str(cache)!r}));"
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    )
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return int(output.strip().splitlines()[-1]) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "dubline" / "bench-render")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cache = args.work / "cache"
    dub = SHARED / "dub_en_16k.wav"
    clips = {
        "speaker_a 844x844": SHARED / "speaker_a.mp4",
        "speaker_b 524x524": SHARED / "speaker_b.mp4",
        "speaker_a 1920x1080": make_1080p(SHARED / "speaker_a.mp4", args.work / "speaker_a_1080p.mp4"),
    }
    report = {}
    for name, video in clips.items():
        count = media.probe(video).video.frame_count
        span = f"0-{count}"
        cold = timed_render(video, dub, span, args.work / "out.mp4", cache)
        warm = timed_render(video, dub, span, args.work / "out.mp4", cache)
        report[name] = {"cold": cold, "warm": warm}
        print(f"{name}: cold {cold['fps']} fps, warm {warm['fps']} fps (h264, analysis cached) stages {warm['stages']}", flush=True)
    video = make_1080p(SHARED / "speaker_a.mp4", args.work / "speaker_a_1080p_20s.mp4", round_trips=2)
    long_dub = make_long_dub(dub, 20.0, args.work / "dub_20s.wav")
    report["peak_rss_mib"] = {}
    for frames in (25, 125, 250, 500):
        peak = peak_rss_child(video, long_dub, f"0-{frames}", args.work / f"span{frames}.mp4", cache)
        report["peak_rss_mib"][f"{frames} frames"] = peak
        print(f"peak RSS 1080p render, {frames} frames: {peak} MiB", flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
