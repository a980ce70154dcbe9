"""The compositor against a reference revision of itself: outputs byte for byte, and CPU per frame.

``composite.paste`` may only get cheaper, never different (issue 20: no change in any qc figure
or test output). This script records what real renders hand to ``paste`` and replays it through
this tree's compositor and the reference revision's (by default the merge base with ``main``),
each with its own deflicker, frame after frame (once merged, pass ``--reference 3db3dde``, the
last revision before the compositor reused its buffers, or any revision worth comparing with):

    python benchmarks/composite_identity.py record --records DIR   # renders the benchmark clips
    python benchmarks/composite_identity.py compare --records DIR  # frames, matte box, matte: equal?
    python benchmarks/composite_identity.py time --records DIR --case 1080_wav2lip

``record`` renders a span of each benchmark clip (bench_throughput.py's 512 and 1080 clips, warm
analysis cache) with ``retrieval`` and ``wav2lip`` (deterministic fake weights) and keeps each
(frame, patch, landmarks) that reaches ``paste`` (uncompressed: about 1.6 GB for the default 60
frames of each). ``compare`` replays every case in uint8 and in
uint16 (the 8-bit codes times 257 plus fixed noise in the low bits, the same on frame and patch)
with and without deflicker, with one OpenCV thread and with two (OpenCV's precise distance
transform runs Intel IPP's code with one thread and its own with more, and the two differ in the
last bit of some distances), and exits 1 when any frame differs. ``time`` measures the CPU time of
both compositors on one case, one thread, alternating old and new each pass so that load from
other jobs falls on both alike.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

from dubline.pipeline import RenderRequest, render
from dubline.stages import composite

REPOSITORY = Path(__file__).resolve().parents[1]
DUB = REPOSITORY.parent / "shared" / "media" / "dub_en_16k.wav"
WORK = Path.home() / ".cache" / "dubline" / "bench-throughput"
CLIPS = {"1080": "speaker_a_1080_200.mp4", "512": "speaker_b_512_200.mp4"}
BACKENDS = ("retrieval", "wav2lip")
# The module, not the function of the same name that ``dubline.pipeline`` exports.
render_module = sys.modules["dubline.pipeline.render"]


def reference_module(revision: str) -> ModuleType:
    """``stages/composite.py`` as it is at ``revision``, imported under another name."""
    source = subprocess.run(["git", "show", f"{revision}:engine/dubline/stages/composite.py"], cwd=REPOSITORY,
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="composite_reference_")) / "composite_reference.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("composite_reference", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def default_reference() -> str:
    return subprocess.run(["git", "merge-base", "main", "HEAD"], cwd=REPOSITORY, check=True,
                          capture_output=True, text=True).stdout.strip()


def record(records: Path, frames: str, cache: Path) -> None:
    """Render each clip x backend and keep every input of ``paste`` as ``<case>/<n>.npz``."""
    real_paste = render_module.paste
    for clip, name in CLIPS.items():
        for backend in BACKENDS:
            case = records / f"{clip}_{backend}"
            case.mkdir(parents=True, exist_ok=True)
            count = 0

            def recording_paste(frame, patch, landmarks68, *args, **kwargs):
                nonlocal count
                arrays = {"frame": frame}
                if patch is not None:
                    arrays["patch"] = patch
                if landmarks68 is not None:
                    arrays["landmarks"] = np.asarray(landmarks68)
                np.savez(case / f"{count:04d}.npz", **arrays)
                count += 1
                return real_paste(frame, patch, landmarks68, *args, **kwargs)

            render_module.paste = recording_paste
            try:
                with tempfile.TemporaryDirectory(prefix="composite_record_") as out:
                    options = {"deterministic": True} if backend == "wav2lip" else {}
                    request = RenderRequest(video=WORK / name, audio=DUB, span=frames, out=Path(out) / "patch.mkv",
                                            codec="ffv1", backend=backend, backend_options=options)
                    render(request, cache_root=cache, pipelined=False)
            finally:
                render_module.paste = real_paste
            print(f"{case.name}: {count} frames recorded", flush=True)


def load_case(case: Path) -> list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
    inputs = []
    for path in sorted(case.glob("*.npz")):
        with np.load(path) as arrays:
            inputs.append((arrays["frame"], arrays.get("patch"), arrays.get("landmarks")))
    return inputs


def as_uint16(inputs: list, seed: int = 0) -> list:
    """The same pictures with 16-bit codes: 8-bit code x 257 plus fixed low-bit noise per pixel."""
    if not inputs:
        return []
    noise = np.random.default_rng(seed).integers(-128, 128, inputs[0][0].shape, dtype=np.int32)

    def widen(image: np.ndarray | None) -> np.ndarray | None:
        if image is None:
            return None
        return np.clip(image.astype(np.int32) * 257 + noise, 0, 65535).astype(np.uint16)

    return [(widen(frame), widen(patch), landmarks) for frame, patch, landmarks in inputs]


def same_result(a: composite.CompositeResult, b: composite.CompositeResult) -> str | None:
    """Why the two results differ, or None when they are byte for byte the same."""
    if a.passthrough_reason != b.passthrough_reason:
        return f"passthrough {a.passthrough_reason!r} vs {b.passthrough_reason!r}"
    if a.frame.dtype != b.frame.dtype or a.frame.shape != b.frame.shape or not np.array_equal(a.frame, b.frame):
        return "frame"
    boxes = [None if r.matte_box is None else (r.matte_box.y0, r.matte_box.y1, r.matte_box.x0, r.matte_box.x1)
             for r in (a, b)]
    if boxes[0] != boxes[1]:
        return f"matte box {boxes[0]} vs {boxes[1]}"
    if a.box_matte is not None and (a.box_matte.dtype != b.box_matte.dtype
                                    or a.box_matte.tobytes() != b.box_matte.tobytes()):
        return "box matte"
    return None


def compare(records: Path, reference: ModuleType, threads: int) -> int:
    """Replay every recorded case through both compositors with ``threads`` OpenCV threads; the
    number of differing frames."""
    cv2.setNumThreads(threads)
    differing = 0
    for case in sorted(p for p in records.iterdir() if p.is_dir()):
        inputs8 = load_case(case)
        for depth, inputs in (("uint8", inputs8), ("uint16", as_uint16(inputs8))):
            for with_deflicker in (True, False):
                old_deflicker = reference.TemporalDeflicker() if with_deflicker else None
                new_deflicker = composite.TemporalDeflicker() if with_deflicker else None
                compared = 0
                for index, (frame, patch, landmarks) in enumerate(inputs):
                    frame_before = frame.copy()
                    new = composite.paste(frame, patch, landmarks, composite.CompositeParams(), new_deflicker)
                    old = reference.paste(frame, patch, landmarks, reference.CompositeParams(), old_deflicker)
                    why = same_result(old, new)
                    if why is None and not np.array_equal(frame, frame_before):
                        why = "the input frame was written to"
                    if why is not None:
                        print(f"{case.name} {depth} deflicker={with_deflicker} threads={threads} frame {index}: "
                              f"differs ({why})")
                        differing += 1
                    compared += 1
                print(f"{case.name} {depth} deflicker={with_deflicker} threads={threads}: {compared} frames compared",
                      flush=True)
    return differing


def time_case(inputs: list, reference: ModuleType, passes: int) -> None:
    """CPU ms per frame of both compositors (one thread), alternating each pass."""
    cv2.setNumThreads(1)
    modules = {"reference": reference, "this tree": composite}
    per_frame = {name: [] for name in modules}
    faults = {name: [] for name in modules}  # page faults: fresh large arrays cost more in them than in arithmetic
    load = os.getloadavg()[0]
    for _ in range(passes):
        for name, module in modules.items():
            deflicker = module.TemporalDeflicker()
            params = module.CompositeParams()
            started, faulted = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for frame, patch, landmarks in inputs:
                module.paste(frame, patch, landmarks, params, deflicker)
            per_frame[name].append((time.process_time() - started) * 1000.0 / len(inputs))
            faults[name].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faulted) / len(inputs))
    old, new = (statistics.median(per_frame[name]) for name in modules)
    print(f"{len(inputs)} frames, {passes} passes, load average {load:.2f} -> {os.getloadavg()[0]:.2f}, "
          f"{time.strftime('%Y-%m-%d %H:%M %Z')}")
    for name in modules:
        print(f"  {name:10s} CPU {statistics.median(per_frame[name]):6.2f} ms/frame "
              f"(passes {' '.join(f'{ms:.1f}' for ms in per_frame[name])}), "
              f"{statistics.median(faults[name]):.0f} page faults/frame")
    print(f"  this tree takes {100 * (1 - new / old):.1f} % less CPU than the reference")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("record", "compare", "time"))
    parser.add_argument("--records", type=Path, required=True)
    parser.add_argument("--frames", default="0-60", help="span recorded from each clip")
    parser.add_argument("--cache", type=Path, default=WORK / "cache", help="warm analysis cache")
    parser.add_argument("--reference", default=None, help="revision to compare with (merge base with main)")
    parser.add_argument("--case", default="1080_wav2lip")
    parser.add_argument("--depth", choices=("uint8", "uint16"), default="uint8")
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    if args.action == "record":
        record(args.records, args.frames, args.cache)
        return 0
    reference = reference_module(args.reference or default_reference())
    if args.action == "compare":
        differing = sum(compare(args.records, reference, threads) for threads in (1, 2))
        print("all identical" if differing == 0 else f"{differing} frames differ")
        return 0 if differing == 0 else 1
    inputs = load_case(args.records / args.case)
    time_case(inputs if args.depth == "uint8" else as_uint16(inputs), reference, args.passes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
