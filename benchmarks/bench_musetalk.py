"""MuseTalk 1.5 figures with full-size fake weights (the kit's deterministic values in the official
files: the arithmetic, and so the speed, is the real model's).

- per-frame cost of the model work per batch size: the two VAE encodes (masked and reference crop),
  the UNet step and the VAE decode, through ``MuseTalkRunner``'s own calls;
- whisper-tiny's encoder on one 30 s piece (all the audio of up to 30 s of frames);
- ``--end-to-end``: ``dubline.pipeline.render`` with ``--backend musetalk`` on a shared clip
  (frames/s of backend + compositing + encoding once the analysis is cached);
- ``--reference-leak``: how much of the source's own lip motion is in the reference input for
  ``reference=same`` and ``reference=rest`` (no model involved; see docs/MUSETALK.md).

    python benchmarks/bench_musetalk.py [--models DIR] [--device cpu|cuda] [--batches 1,8] [--repeats N]
                                        [--end-to-end CLIP --span A-B] [--reference-leak] [--media DIR]

Without ``--models`` the kit's ``make_checkpoints.py`` writes the 3.9 GB fake directory to a temp
dir (about a minute) and it is removed afterwards. CUDA runs fp16, as the backend does.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from dubline.stages.backends.musetalk import audio, layout
from dubline.stages.backends.musetalk.backend import MuseTalkOptions, models_for
from dubline.stages.backends.musetalk.faces import vae_input
from dubline.stages.backends.musetalk.infer import MuseTalkRunner

SHARED = Path(__file__).resolve().parents[2] / "shared"
KIT = SHARED / "conformance" / "musetalk"
DUB = "dub_en_16k.wav"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _timed(function, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def model_costs(runner: MuseTalkRunner, batches: list[int], repeats: int) -> None:
    device = runner.device
    rng = np.random.default_rng(0)
    largest = max(batches)
    crops = rng.integers(0, 256, (largest, 256, 256, 3), dtype=np.uint8)
    width = runner.models.unet.config.cross_attention_dim
    windows = rng.normal(0, 1, (largest, 50, width)).astype(np.float32)
    print("batch  encode x2 / frame  UNet / frame  decode / frame  UNet+decode / frame  all / frame  (s, median)")
    for batch in batches:
        masked, reference = vae_input(crops[:batch], True), vae_input(crops[:batch], False)

        def encode() -> torch.Tensor:
            return torch.cat([runner._latents(masked, None), runner._latents(reference, None)], dim=1)

        with torch.inference_mode():
            latents = encode()  # warm-up
            audio_input = (torch.from_numpy(windows[:batch]) + audio.positional_encoding(50, width)).to(device, runner.dtype)
            step = torch.tensor([0], device=device)
            predicted = runner.models.unet(latents, step, encoder_hidden_states=audio_input).sample
            runner.models.vae.decode(predicted / runner.models.scaling_factor)
            times: dict[str, list[float]] = {"encode": [], "unet": [], "decode": []}
            for _ in range(repeats):
                times["encode"].append(_timed(encode, device))
                times["unet"].append(_timed(lambda: runner.models.unet(latents, step, encoder_hidden_states=audio_input), device))
                times["decode"].append(_timed(lambda: runner.models.vae.decode(predicted / runner.models.scaling_factor), device))
        per = {k: statistics.median(v) / batch for k, v in times.items()}
        print(f"{batch:5d}  {per['encode']:17.3f}  {per['unet']:12.3f}  {per['decode']:14.3f}"
              f"  {per['unet'] + per['decode']:19.3f}  {sum(per.values()):11.3f}", flush=True)


def whisper_cost(runner: MuseTalkRunner, repeats: int) -> None:
    models = runner.models
    mel = audio.log_mel(models.feature_extractor, np.zeros(audio.PIECE_SAMPLES, np.float32))
    audio.hidden_states(models.whisper_encoder, mel, runner.device, runner.dtype)
    seconds = statistics.median(
        _timed(lambda: audio.hidden_states(models.whisper_encoder, mel, runner.device, runner.dtype), runner.device)
        for _ in range(repeats)
    )
    print(f"whisper-tiny encoder, one 30 s piece: {seconds:.2f} s")


def end_to_end(models_dir: Path, clip: Path, span: str, device: str, batch: int, work: Path) -> None:
    from dubline.pipeline import RenderRequest, render

    def once(name: str) -> tuple[float, object]:
        request = RenderRequest(
            video=clip, audio=clip.parent / DUB, span=span, out=work / f"{name}.mov", backend="musetalk",
            codec="prores", backend_options={"model_dir": str(models_dir), "device": device, "batch_size": batch},
        )
        start = time.perf_counter()
        result = render(request, cache_root=work / "cache")
        return time.perf_counter() - start, result

    cold, _ = once("cold")
    warm, result = once("warm")
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.stage_seconds.items())
    frames = result.frames_written
    print(f"end to end {clip.name} [{span}]: {frames} frames, cold {cold:.1f} s; warm {warm:.1f} s = "
          f"{frames / warm:.2f} frames/s ({stages})")


def _mouth_darkness(crop: np.ndarray) -> float:
    """Pixel proxy for an open mouth in a 256x256 MuseTalk crop: share of dark pixels where the
    mouth sits (the crop spans mirrored nose height to chin, so the mouth is in rows ~165-215)."""
    luma = crop.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    window = luma[165:215, 80:176]
    return float(np.mean(window < 0.5 * np.median(luma[128:])))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) < 1e-9 or np.std(b) < 1e-9:
        return float("nan")  # a constant series correlates with nothing
    return float(np.corrcoef(a, b)[0, 1])


def reference_leak(media_dir: Path, work: Path) -> None:
    """Correlation of the source's own mouth opening with the reference the UNet is given."""
    from dubline.core import timing
    from dubline.pipeline import analyse_clip
    from dubline.stages import media
    from dubline.stages.backends.musetalk.backend import (
        reference_frames,
        source_crop_boxes,
    )
    from dubline.stages.backends.musetalk.faces import crop_face

    print("\nreference leak (whole clip as the span; r = Pearson over usable frames; nan = constant reference)")
    print("clip          mode  refs  r(aperture)  r(darkness)  ref aperture mean/std  source aperture mean/std")
    for clip in ("speaker_a.mp4", "speaker_b.mp4"):
        analysis = analyse_clip(media_dir / clip, cache_root=work / "cache")
        faces, video = analysis.faces, analysis.info.video
        boxes = source_crop_boxes(faces, (video.height, video.width))
        darkness = np.full(len(faces), np.nan)
        for frame in media.read_span(media_dir / clip, timing.frames_to_range(0, video.frame_count, video.rate)):
            if boxes[frame.index, 0] >= 0:
                darkness[frame.index] = _mouth_darkness(crop_face(frame.image, boxes[frame.index]))
        for mode in ("same", "rest"):
            refs = reference_frames(faces, (0, video.frame_count), mode, boxes)
            rows = np.flatnonzero(refs >= 0)
            source_aperture = faces.aperture[rows].astype(np.float64)
            ref_aperture = faces.aperture[refs[rows]].astype(np.float64)
            print(
                f"{clip:13s} {mode:4s} {len(set(refs[rows].tolist())):5d} {_pearson(source_aperture, ref_aperture):12.2f}"
                f" {_pearson(source_aperture, darkness[refs[rows]]):12.2f}"
                f"   {ref_aperture.mean():8.3f} / {ref_aperture.std():.3f}      {source_aperture.mean():.3f} / {source_aperture.std():.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="a (fake or real) MuseTalk models/ directory; default: write the kit's fakes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats per batch size (after a warm-up)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--end-to-end", metavar="CLIP", help="also time renders of this clip (e.g. speaker_a.mp4)")
    parser.add_argument("--span", default="0-25", help="frames of --end-to-end")
    parser.add_argument("--reference-leak", action="store_true", help="also measure the reference choice")
    parser.add_argument("--skip-models", action="store_true", help="only --reference-leak (no weights needed)")
    parser.add_argument("--media", default=str(SHARED / "media"), help="folder with the shared clips")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench_musetalk_") as work:
        work_dir = Path(work)
        if not args.skip_models:
            models_dir = Path(args.models) if args.models else work_dir / "models"
            if not args.models:
                print(f"writing the kit's full-size fake weights to {models_dir} ...", flush=True)
                subprocess.run([sys.executable, str(KIT / "make_checkpoints.py"), str(models_dir)], check=True)
            layout.locate(models_dir)
            options = MuseTalkOptions.parse({"model_dir": str(models_dir), "device": args.device})
            start = time.perf_counter()
            runner = MuseTalkRunner(models_for(options), batch_size=1)
            print(f"loaded in {time.perf_counter() - start:.1f} s; musetalk on {runner.device} "
                  f"({_device_name(runner.device)}), {runner.dtype}, torch {torch.__version__}", flush=True)
            model_costs(runner, [int(b) for b in args.batches.split(",")], args.repeats)
            whisper_cost(runner, args.repeats)
            if args.end_to_end:
                end_to_end(models_dir, Path(args.media) / args.end_to_end, args.span, args.device,
                           max(int(b) for b in args.batches.split(",")), work_dir)
        if args.reference_leak:
            reference_leak(Path(args.media), work_dir)


if __name__ == "__main__":
    main()
