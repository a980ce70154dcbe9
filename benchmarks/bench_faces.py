"""Face-track benchmark: fps on 1080p footage, cold and warm from the cache; landmark jitter.

1080p frames are made from the shared clip speaker_a.mp4: each frame scaled to 1080 px high and
centred on a 1920x1080 canvas. Frames are decoded and prepared before timing, so the figures are
the face-track stage alone. Cold = empty cache (detection, landmarks, descriptors per frame);
warm = the same span again with the same cache (cached detections + tracking + smoothing).
Jitter = mean frame-to-frame displacement of the eye-centre and nose anchors / inter-ocular
distance, raw and after smoothing, over each whole shared clip at its own resolution.

    /work/venv/bin/python benchmarks/bench_faces.py [--frames 50] [--no-jitter]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import opentimelineio as otio
from dubline.stages import media
from dubline.stages.faces import detection_cache, landmark_jitter, track_faces
from dubline.stages.faces.types import FaceTrackParams

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def _whole(path: Path) -> otio.opentime.TimeRange:
    info = media.probe(path).video
    return otio.opentime.TimeRange(otio.opentime.RationalTime(0, info.rate), info.duration)


def frames_1080p(path: Path, count: int) -> list[media.VideoFrame]:
    frames = []
    for frame in media.read_span(path, _whole(path)):
        if len(frames) == count:
            break
        height, width = frame.image.shape[:2]
        scaled = cv2.resize(frame.image, (round(width * 1080 / height), 1080), interpolation=cv2.INTER_CUBIC)
        canvas = np.zeros((1080, 1920, 3), np.uint8)
        left = (1920 - scaled.shape[1]) // 2
        canvas[:, left : left + scaled.shape[1]] = scaled[:, : 1920 - left]
        frames.append(replace(frame, image=canvas))
    return frames


def bench_fps(count: int) -> None:
    frames = frames_1080p(MEDIA / "speaker_a.mp4", count)
    params = FaceTrackParams()
    with tempfile.TemporaryDirectory() as root:
        cache = detection_cache("bench-faces", params, Path(root))
        started = time.perf_counter()
        cold = track_faces(frames, cache=cache, params=params)
        cold_seconds = time.perf_counter() - started
        started = time.perf_counter()
        warm = track_faces(frames, cache=detection_cache("bench-faces", params, Path(root)), params=params)
        warm_seconds = time.perf_counter() - started
    assert np.array_equal(cold.landmarks, warm.landmarks, equal_nan=True)
    print(f"face track, {len(frames)} frames 1920x1080, face on {cold.present.mean():.0%} of them")
    print(f"  cold: {cold_seconds:.2f} s = {len(frames) / cold_seconds:.1f} fps")
    print(f"  warm: {warm_seconds:.3f} s = {len(frames) / warm_seconds:.0f} fps")
    print(f"  warm/cold speed-up: {cold_seconds / warm_seconds:.0f}x (target >= 10x)")


def bench_jitter() -> None:
    for name in ("speaker_a", "speaker_b"):
        path = MEDIA / f"{name}.mp4"
        track = track_faces(media.read_span(path, _whole(path)))
        raw, smoothed = landmark_jitter(track.landmarks_raw), landmark_jitter(track.landmarks)
        print(
            f"jitter {name} ({len(track)} frames, face on {track.present.mean():.0%}): raw {raw:.4f}, "
            f"smoothed {smoothed:.4f} IOD/frame ({1 - smoothed / raw:.0%} lower)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50, help="1080p frames to time (default 50)")
    parser.add_argument("--no-jitter", action="store_true", help="skip the jitter figures")
    args = parser.parse_args()
    bench_fps(args.frames)
    if not args.no_jitter:
        bench_jitter()


if __name__ == "__main__":
    main()
