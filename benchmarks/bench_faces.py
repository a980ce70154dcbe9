"""Face-track benchmark: fps on 1080p footage, cold and warm from the cache; landmark jitter.

1080p frames are made from the shared clip speaker_a.mp4: each frame scaled to 1080 px high and
centred on a 1920x1080 canvas. Frames are decoded and prepared before timing, so the figures are
the face-track stage alone. Cold = empty cache; warm = the same span again with the same cache
(cached detections + tracking + smoothing). Cold is measured side by side in one run for:

- ``every frame``: a whole-frame search with landmarks and a descriptor on every frame
  (``detect_every=1``: what the stage did before issue 15);
- ``tracked``: the default, whole-frame searches on anchors only, faces tracked between;
- ``tracked, 2 threads``: the same frames as two anchored halves on two threads (how the
  pipeline's analysis spreads blocks over the cores).

The aperture of the tracked landmarks is compared with the every-frame one (correlation). Jitter =
mean frame-to-frame displacement of the eye-centre and nose anchors / inter-ocular distance, raw
and after smoothing, over each whole shared clip at its own resolution.

    python benchmarks/bench_faces.py [--frames 96] [--no-jitter]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import opentimelineio as otio
from dubline.stages import media
from dubline.stages.faces import detect_frames, detection_cache, landmark_jitter, models, track_faces
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


def _cold(frames: list[media.VideoFrame], params: FaceTrackParams, threads: int = 1) -> tuple[float, object]:
    with tempfile.TemporaryDirectory() as root:
        cache = detection_cache("bench-faces", params, Path(root))
        started = time.perf_counter()
        if threads == 1:
            track = track_faces(frames, cache=cache, params=params)
        else:
            block = params.detect_every
            cut = (len(frames) // 2) // block * block  # halves that each start on an anchor
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda part: detect_frames(part, params=params, cache=cache), (frames[:cut], frames[cut:])))
            track = track_faces(frames, cache=cache, params=params)  # all cached now: assembly only
        return time.perf_counter() - started, track


def bench_fps(count: int) -> None:
    frames = frames_1080p(MEDIA / "speaker_a.mp4", count)
    models.hog_detector(), models.shape_predictor_68(), models.face_recognizer()  # loading is not tracking
    print(f"face track, {len(frames)} frames 1920x1080; load average {os.getloadavg()}")
    every_seconds, every = _cold(frames, FaceTrackParams(detect_every=1))
    params = FaceTrackParams()
    tracked_seconds, tracked = _cold(frames, params)
    threaded_seconds, threaded = _cold(frames, params, threads=2)
    assert np.array_equal(tracked.landmarks, threaded.landmarks, equal_nan=True)
    with tempfile.TemporaryDirectory() as root:
        track_faces(frames, cache=detection_cache("bench-faces", params, Path(root)), params=params)
        started = time.perf_counter()
        warm = track_faces(frames, cache=detection_cache("bench-faces", params, Path(root)), params=params)
        warm_seconds = time.perf_counter() - started
    assert np.array_equal(tracked.landmarks, warm.landmarks, equal_nan=True)
    fps = lambda seconds: len(frames) / seconds  # noqa: E731
    print(f"  cold, every frame searched: {every_seconds:6.2f} s = {fps(every_seconds):5.1f} fps (face on {every.present.mean():.0%})")
    print(f"  cold, tracked:              {tracked_seconds:6.2f} s = {fps(tracked_seconds):5.1f} fps "
          f"({every_seconds / tracked_seconds:.1f}x, target >= 3x)")
    print(f"  cold, tracked, 2 threads:   {threaded_seconds:6.2f} s = {fps(threaded_seconds):5.1f} fps "
          f"({every_seconds / threaded_seconds:.1f}x)")
    both = every.present & tracked.present
    r = np.corrcoef(every.aperture[both], tracked.aperture[both])[0, 1]
    print(f"  tracked vs every-frame aperture: r = {r:.4f}, mean |difference| {np.mean(np.abs(every.aperture[both] - tracked.aperture[both])):.4f} IOD")
    print(f"  warm: {warm_seconds:.3f} s = {fps(warm_seconds):.0f} fps; warm/cold {tracked_seconds / warm_seconds:.0f}x")


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
    parser.add_argument("--frames", type=int, default=96, help="1080p frames to time (default 96: four anchors)")
    parser.add_argument("--no-jitter", action="store_true", help="skip the jitter figures")
    args = parser.parse_args()
    bench_fps(args.frames)
    if not args.no_jitter:
        bench_jitter()


if __name__ == "__main__":
    main()
