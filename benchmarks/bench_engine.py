"""Engine benchmark: cold vs warm render, 1 vs 4 concurrent jobs, one-frame RPC latency at 1080p.

    python benchmarks/bench_engine.py [--media ../shared/media] [--span 25] [--frames 20]

Everything runs against an in-process engine on a unix socket with a fresh cache directory, so
the first render pays for model loading and clip analysis like a freshly started engine would.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from dubline.apps.server.app import create_server
from dubline.core import timing
from dubline.stages import media
from dubline_client import EngineClient, frames_span, image_message, pb, render_spec

DEFAULT_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def timed_render(client: EngineClient, spec: pb.RenderSpec) -> float:
    started = time.perf_counter()
    client.render_and_wait(spec)
    return time.perf_counter() - started


def make_1080p_clip(source: Path, out: Path, frames: int) -> Path:
    """The speaker centred on a 1920x1080 canvas (the shared clips are square and small)."""
    info = media.probe(source)
    canvas = np.full((1080, 1920, 3), 40, np.uint8)

    def placed():
        for frame in media.read_span(source, timing.frames_to_range(0, frames, info.video.rate)):
            image = frame.image[: min(1080, frame.image.shape[0])]
            top, left = (1080 - image.shape[0]) // 2, (1920 - image.shape[1]) // 2
            canvas[top : top + image.shape[0], left : left + image.shape[1]] = image
            yield canvas.copy()

    return media.write_patch(placed(), out, "ffv1", info.video.rate, overwrite=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=DEFAULT_MEDIA)
    parser.add_argument("--span", type=int, default=25, help="frames per render")
    parser.add_argument("--frames", type=int, default=20, help="one-frame RPC calls per case")
    args = parser.parse_args()
    clip, dub = args.media / "speaker_b.mp4", args.media / "dub_en_16k.wav"

    with tempfile.TemporaryDirectory(prefix="bench-engine-") as temp:
        work = Path(temp)
        socket = work / "engine.sock"
        server, _ = create_server(f"unix:{socket}", cache_root=work / "cache", work_dir=work / "frames", max_workers=4)
        server.start()
        client = EngineClient(f"unix:{socket}", timeout=600)

        def spec(name: str, first: int = 10, codec: str = "h264") -> pb.RenderSpec:
            suffix = ".mkv" if codec == "ffv1" else ".mov"
            return render_spec(str(clip), str(dub), frames_span(first, first + args.span, 25), str(work / f"{name}{suffix}"),
                               codec=codec, overwrite=True)

        cold = timed_render(client, spec("cold"))
        warm = timed_render(client, spec("warm"))
        print(f"render {args.span} frames of {clip.name}: cold {cold:.2f} s, warm {warm:.2f} s, cold/warm {cold / warm:.1f}x")

        jobs = 4
        started = time.perf_counter()
        for index in range(jobs):
            timed_render(client, spec(f"serial{index}", first=20 + index * 5))
        serial = time.perf_counter() - started
        threads = [threading.Thread(target=timed_render, args=(client, spec(f"parallel{i}", first=20 + i * 5)))
                   for i in range(jobs)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        parallel = time.perf_counter() - started
        frames = jobs * args.span
        print(f"throughput, {jobs} warm jobs of {args.span} frames: one at a time {frames / serial:.1f} frames/s, "
              f"4 concurrent {frames / parallel:.1f} frames/s ({serial / parallel:.2f}x)")

        big = make_1080p_clip(args.media / "speaker_a.mp4", work / "speaker_a_1080p.mkv", 30)
        clip_key = render_spec(str(big), str(dub), frames_span(5, 25, 25), backend="retrieval")
        at = pb.RationalTime(value=12, rate_num=25, rate_den=1)
        started = time.perf_counter()
        answer = client.render_frame(at, clip=clip_key)
        first_answer = time.perf_counter() - started
        first_status = pb.FrameStatus.Name(answer.status)
        while answer.status == pb.FRAME_STATUS_NOT_READY:
            time.sleep(0.1)
            answer = client.render_frame(at, clip=clip_key)
        ready_after = time.perf_counter() - started
        print(f"one-frame RPC, 1080p clip key: first answer ({first_status}) "
              f"in {first_answer * 1000:.0f} ms, span of 20 frames ready after {ready_after:.1f} s (analysis + render)")
        host8 = np.random.default_rng(0).integers(0, 256, (1080, 1920, 4), np.uint8)
        cases = {
            "no host frame (RGBA8 out)": dict(),
            "host RGBA8 in, composited out": dict(source_frame=image_message(host8.tobytes(), 1920, 1080)),
            "host RGBA float32 in, composited out": dict(source_frame=image_message(
                (host8.astype(np.float32) / 255).tobytes(), 1920, 1080, pb.PIXEL_FORMAT_RGBA_F32)),
            "host RGBA8 in, patch + matte out": dict(source_frame=image_message(host8.tobytes(), 1920, 1080),
                                                     output=pb.FRAME_OUTPUT_PATCH_AND_MATTE),
        }
        for name, fields in cases.items():
            latencies = []
            for index in range(args.frames):
                at = pb.RationalTime(value=5 + index % 20, rate_num=25, rate_den=1)
                started = time.perf_counter()
                answer = client.render_frame(at, clip=clip_key, **fields)
                latencies.append(time.perf_counter() - started)
                assert answer.status == pb.FRAME_STATUS_READY, answer
            print(f"one-frame RPC at 1920x1080 over the unix socket, {name}: median {statistics.median(latencies) * 1000:.1f} ms, "
                  f"max {max(latencies) * 1000:.1f} ms ({args.frames} calls)")
        client.close()
        server.stop(5)


if __name__ == "__main__":
    main()
