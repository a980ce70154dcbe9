"""Composite cost per frame at 1080p and 844x844 (synthetic frames, synthetic 68-point faces).

Prints the median ms/frame of each step and of the whole ``paste`` (with deflicker), for a face
of typical size in each format. Run: /work/venv/bin/python benchmarks/bench_composite.py
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import cv2
import numpy as np
from dubline.core.landmarks import face_template_68
from dubline.qc.metrics import seam_score
from dubline.stages import composite


def median_ms(step: Callable[[], object], repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def bench(height: int, width: int, face_width: float, repeats: int = 30) -> None:
    rng = np.random.default_rng(0)
    frame = np.clip(rng.normal(150, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    patch = cv2.GaussianBlur(frame, (0, 0), 2)
    landmarks = face_template_68((width / 2, height / 2), face_width, mouth_open=0.05)
    params = composite.CompositeParams()
    matte, box = composite._matte_in_box(landmarks, (height, width), params.matte)
    full_matte = np.zeros((height, width), np.float32)
    full_matte[box.slices] = matte
    levels = composite._auto_levels(box)
    rows, cols = composite._blend_region(box, levels, (height, width)).slices
    deflicker = composite.TemporalDeflicker()

    results = {
        "matte": median_ms(lambda: composite._matte_in_box(landmarks, (height, width), params.matte), repeats),
        "colour match": median_ms(
            lambda: composite.match_colour(patch[rows, cols], frame[rows, cols], full_matte[rows, cols]), repeats
        ),
        "blend": median_ms(
            lambda: composite._blend_crop(frame[rows, cols], patch[rows, cols], full_matte[rows, cols], levels), repeats
        ),
        "deflicker": median_ms(lambda: deflicker._apply_in_box(frame[box.slices], frame[box.slices], matte, box), repeats),
        "paste (all, no deflicker)": median_ms(lambda: composite.paste(frame, patch, landmarks, params), repeats),
        "paste (all, deflicker)": median_ms(
            lambda: composite.paste(frame, patch, landmarks, params, deflicker=deflicker), repeats
        ),
        "qc seam_score": median_ms(lambda: seam_score(frame, patch, full_matte), repeats),
    }
    print(f"{width}x{height}, face width {face_width:.0f} px, matte box {box.width}x{box.height}, {levels} levels")
    for name, ms in results.items():
        print(f"  {name:28s} {ms:7.2f} ms/frame")


if __name__ == "__main__":
    print(f"OpenCV threads: {cv2.getNumThreads()}")
    bench(1080, 1920, face_width=500.0)
    bench(844, 844, face_width=340.0)
