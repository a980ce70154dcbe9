"""Incremental re-render (issue 18): change one second of a 20 s dub and render the span again.

Inputs, built once into ``$DUBLINE_BENCH_CACHE/incremental`` (default
``~/.cache/dubline/bench/incremental``): speaker_a (844x844, 25 fps, 5 s) played four times over
(stream copy) makes a 20 s take; the dub is dub_en_16k.wav (8 s) played on to 20 s; the edited dub
is that with 10.0-11.0 s replaced by its 5.0-6.0 s (other words, same voice).

In one process, with the source's analysis cached first (a warm-up render whose render record is
then removed, so the first timed render has nothing to reuse): the retrieval backend, a ProRes
patch and matte, the whole 20 s as the span:

1. ``first``: the dub, a full render;
2. ``edit``: the edited dub, to the same output path (the previous patch is read and replaced);
3. ``offset``: the first dub again, ``--audio-offset`` moved by 2 frames (against the edit's record);

and for each: wall seconds, frames rendered / reused / warm-up; for ``edit`` the rows drawn again
as seconds, and whether every row outside them is bit-identical to the first patch (coded packets
and decoded pixels). The machine is shared: ratios from one run are what counts.

    python benchmarks/bench_incremental.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import av
import opentimelineio as otio
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "media"
RATE = 25
SECONDS = 20
EDIT = (10.0, 11.0)
EDIT_FROM = 5.0  # the 20 s dub is the 8 s one repeated: its 10 s is the 8 s one's 2 s, 5 s is other words


def bench_dir() -> Path:
    root = Path(os.environ.get("DUBLINE_BENCH_CACHE", Path.home() / ".cache" / "dubline" / "bench")) / "incremental"
    root.mkdir(parents=True, exist_ok=True)
    return root


def build_inputs(root: Path) -> tuple[Path, Path, Path]:
    from dubline.stages import media

    take = root / "take20.mp4"
    if not take.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "3", "-i", str(SHARED / "speaker_a.mp4"),
                        "-c", "copy", str(take)], check=True)
    clip = media.read_audio(SHARED / "dub_en_16k.wav", None, 16000, True)
    samples = np.resize(clip.samples, SECONDS * 16000).astype(np.float32)
    dub = media.write_audio(media.AudioClip(samples, 16000), root / "dub20.wav") if not (root / "dub20.wav").exists() \
        else root / "dub20.wav"
    edited = samples.copy()
    start, end = int(EDIT[0] * 16000), int(EDIT[1] * 16000)
    edited[start:end] = samples[int(EDIT_FROM * 16000) : int(EDIT_FROM * 16000) + end - start]
    edited_path = root / "dub20_edited.wav"
    if not edited_path.exists():
        media.write_audio(media.AudioClip(edited, 16000), edited_path)
    return take, dub, edited_path


def packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(packet) for packet in container.demux(video=0) if packet.size]


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb48le") for frame in container.decode(video=0)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="keep the patches and cache here")
    args = parser.parse_args()
    from dubline.pipeline import RenderRequest, render

    take, dub, edited = build_inputs(bench_dir())
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-incremental-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    out = work / "patch.mov"
    span = f"0-{SECONDS * RATE}"

    def run(audio: Path, offset: otio.opentime.RationalTime | None = None) -> tuple[float, object]:
        fields = dict(video=take, audio=audio, span=span, out=out, codec="prores", matte=work / "matte.mov",
                      overwrite=True)
        if offset is not None:
            fields["audio_offset"] = offset
        started = time.perf_counter()
        result = render(RenderRequest(**fields), cache_root=cache)
        return time.perf_counter() - started, result

    load_before = os.getloadavg()
    warm, _ = run(dub)  # analyses the source into the cache
    shutil.rmtree(cache / "renders", ignore_errors=True)
    print(f"warm-up render (source analysis, then its render record removed): {warm:.1f}s")

    cases = {}
    first_seconds, first = run(dub)
    first_packets, first_pixels = packets(out), decoded(out)
    cases["first"] = (first_seconds, first)
    edit_seconds, edit = run(edited)
    cases["edit"] = (edit_seconds, edit)
    edit_packets, edit_pixels = packets(out), decoded(out)
    copied = [row for row in range(len(first_packets)) if edit_packets[row] == first_packets[row]]
    drawn = sorted(set(range(len(first_packets))) - set(copied))
    outside_identical = all(np.array_equal(edit_pixels[row], first_pixels[row]) for row in copied)
    offset_seconds, offset = run(dub, offset=otio.opentime.RationalTime(2, RATE))  # 2 frames later
    cases["offset"] = (offset_seconds, offset)
    load_after = os.getloadavg()

    report = {name: {"wall_s": round(seconds, 2), "rendered": r.frames_rendered, "reused": r.frames_reused,
                     "warmup": r.frames_warmup, "backend_prepare_s": round(r.stage_seconds.get("backend_prepare", 0), 2),
                     "analyse_dub_s": round(r.stage_seconds.get("analyse_dub", 0), 2),
                     "render_and_encode_s": round(r.stage_seconds.get("render_and_encode", 0), 2)}
              for name, (seconds, r) in cases.items()}
    for name, row in report.items():
        print(f"{name:7s} " + json.dumps(row))
    print(f"edit: rows drawn again {len(drawn)} = {len(drawn) / RATE:.2f}s (rows {drawn[0] if drawn else '-'}"
          f"-{drawn[-1] if drawn else '-'}; the edit is rows {int(EDIT[0] * RATE)}-{int(EDIT[1] * RATE) - 1}),"
          f" {len(copied)} rows copied, bit-identical outside: {outside_identical}")
    print(f"ratios: edit/first wall {edit_seconds / first_seconds:.3f} (target <= 0.25);"
          f" offset/first {offset_seconds / first_seconds:.3f}")
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs);"
          f" load average before {load_before[0]:.2f} {load_before[1]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f};"
          f" {time.strftime('%Y-%m-%d %H:%M')}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
