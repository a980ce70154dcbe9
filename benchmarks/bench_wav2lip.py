"""Wav2Lip generator throughput (frames/s) through Wav2LipRunner, with the deterministic weights.

The weights do not change the arithmetic, so the figures hold for the official checkpoints too.
CPU (float32, threads = available cores) by default; ``--device cuda`` measures fp16 channels-last.

    python benchmarks/bench_wav2lip.py [--device cpu|cuda] [--batches 1,16,64] [--frames N]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from dubline.backends.wav2lip.checkpoint import deterministic_generator
from dubline.backends.wav2lip.infer import Wav2LipRunner


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


if __name__ == "__main__":
    main()
