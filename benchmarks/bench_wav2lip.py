"""Wav2Lip figures with the deterministic weights (the weights do not change the arithmetic, so the
speed figures hold for the official checkpoints too).

- generator throughput (frames/s) through Wav2LipRunner per batch size;
- ``--end-to-end``: ``dubline.pipeline.render`` with ``--backend wav2lip`` on the shared clips
  (whole clip, dub_en_16k.wav): frames/s of the backend + compositing + encoding once the clip's
  analysis is cached, and the first (cold) render's total time;
- ``--reference-leak``: how much of the source's own lip motion reaches the generator's reference
  input for ``reference=rest`` and ``reference=same`` (see docs/WAV2LIP.md, "Reference frame").

CPU (float32, threads = available cores) by default; ``--device cuda`` measures fp16 channels-last.

    python benchmarks/bench_wav2lip.py [--device cpu|cuda] [--batches 1,16,64] [--frames N]
                                       [--end-to-end] [--reference-leak] [--media DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from dubline.stages.backends.wav2lip.checkpoint import deterministic_generator
from dubline.stages.backends.wav2lip.infer import Wav2LipRunner

CLIPS = ("speaker_a.mp4", "speaker_b.mp4")
DUB = "dub_en_16k.wav"
DEFAULT_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default="1,16,64", help="comma-separated batch sizes")
    parser.add_argument("--frames", type=int, default=0, help="frames per measurement (default: 2 batches, at least 16)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--end-to-end", action="store_true", help="also time whole-clip renders of the shared clips")
    parser.add_argument("--reference-leak", action="store_true", help="also measure the reference choice")
    parser.add_argument("--media", default=str(DEFAULT_MEDIA), help="folder with the shared clips")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    runner_fp16 = device.type == "cuda"
    model = deterministic_generator()
    print(f"wav2lip generator on {device} ({_device_name(device)}), torch {torch.__version__}, "
          f"{'fp16 channels-last' if runner_fp16 else 'float32'}")

    rng = np.random.default_rng(0)
    for batch in [int(b) for b in args.batches.split(",")]:
        frames = args.frames or max(2 * batch, 16)
        faces = rng.integers(0, 256, size=(frames, 96, 96, 3), dtype=np.uint8)
        references = rng.integers(0, 256, size=(frames, 96, 96, 3), dtype=np.uint8)
        mels = rng.uniform(-4, 4, size=(frames, 1, 80, 16)).astype(np.float32)
        runner = Wav2LipRunner(model, device=device, batch_size=batch, fp16=runner_fp16)
        runner.run(faces[:batch], references[:batch], mels[:batch])  # warm-up: allocator, kernels
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        runner.run(faces, references, mels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        print(f"batch {batch:3d}: {frames / seconds:7.1f} frames/s  ({frames} frames in {seconds:.2f} s)")

    if args.end_to_end or args.reference_leak:
        with tempfile.TemporaryDirectory(prefix="bench_wav2lip_") as work:
            if args.end_to_end:
                end_to_end(Path(args.media), Path(work), args.device)
            if args.reference_leak:
                reference_leak(Path(args.media), Path(work))


def end_to_end(media_dir: Path, work: Path, device: str) -> None:
    """Whole-clip renders: cold (analysis included) once, then warm (analysis cached)."""
    from dubline.pipeline import RenderRequest, render
    from dubline.stages import media

    print(f"\nend to end, whole clip, {DUB}, deterministic weights on {device}, batch 16, patch codec h264")
    for clip in CLIPS:
        frames = media.probe(media_dir / clip).video.frame_count
        timings = []
        for run in ("cold", "warm"):
            request = RenderRequest(
                video=media_dir / clip, audio=media_dir / DUB, span=f"0-{frames}", out=work / f"{run}_{clip}",
                backend="wav2lip", codec="h264", overwrite=True,
                backend_options={"deterministic": True, "device": device, "batch_size": 16},
            )
            started = time.perf_counter()
            result = render(request, cache_root=work / "cache")
            timings.append((time.perf_counter() - started, result))
        (cold, _), (warm, result) = timings
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.stage_seconds.items())
        print(f"{clip}: {frames} frames, cold {cold:.1f} s; warm {warm:.1f} s = {frames / warm:.1f} frames/s ({stages})")


def _mouth_darkness(crop: np.ndarray) -> float:
    """Pixel proxy for an open mouth in a 96x96 crop: share of dark pixels where the mouth sits.

    Independent of any landmarks: the window is fixed in the crop (the padded box puts the mouth
    there), "dark" is below half the median luma of the crop's lower half.
    """
    luma = crop.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    window = luma[58:84, 28:68]
    return float(np.mean(window < 0.5 * np.median(luma[48:])))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) < 1e-9 or np.std(b) < 1e-9:
        return float("nan")  # a constant series correlates with nothing
    return float(np.corrcoef(a, b)[0, 1])


def reference_leak(media_dir: Path, work: Path) -> None:
    """Correlation of the source's own mouth opening with the reference the generator is given."""
    from dubline.core import timing
    from dubline.pipeline import analyse_clip
    from dubline.stages import media
    from dubline.stages.backends.wav2lip.backend import (
        reference_frames,
        source_crop_boxes,
    )
    from dubline.stages.backends.wav2lip.crops import crop_face

    print("\nreference leak (whole clip as the span; r = Pearson over usable frames; nan = constant reference)")
    print("clip          mode  refs  r(aperture)  r(darkness)  ref aperture mean/std  source aperture mean/std")
    for clip in CLIPS:
        analysis = analyse_clip(media_dir / clip, cache_root=work / "cache")
        faces, video = analysis.faces, analysis.info.video
        boxes = source_crop_boxes(faces, (video.height, video.width))
        darkness = np.full(len(faces), np.nan)
        for frame in media.read_span(media_dir / clip, timing.frames_to_range(0, video.frame_count, video.rate)):
            if boxes[frame.index, 0] >= 0:
                darkness[frame.index] = _mouth_darkness(crop_face(frame.image, boxes[frame.index]))
        span = (0, video.frame_count)
        for mode in ("rest", "same"):
            refs = reference_frames(faces, span, mode, boxes)
            rows = np.flatnonzero(refs >= 0)
            source_aperture = faces.aperture[rows].astype(np.float64)
            ref_aperture = faces.aperture[refs[rows]].astype(np.float64)
            print(
                f"{clip:13s} {mode:4s} {len(set(refs[rows].tolist())):5d} {_pearson(source_aperture, ref_aperture):12.2f}"
                f" {_pearson(source_aperture, darkness[refs[rows]]):12.2f}"
                f"   {ref_aperture.mean():8.3f} / {ref_aperture.std():.3f}      {source_aperture.mean():.3f} / {source_aperture.std():.3f}"
            )


if __name__ == "__main__":
    main()
