"""Render acceptance on ../shared/media (issues 4 and 19): both speakers x three dubs, retrieval backend.

For each pair: render the whole clip (prores + matte), run qc (with the render's run boundaries),
write a contact sheet (source row, patch row, enlarged mouths, matte) and a boundary sheet (the
mouths around the three run boundaries with the largest change not explained by motion). Prints one
table and writes results.json (qc numbers, per-frame arrays, run boundaries) next to the sheets.

A whole clip as the span means every frame is analysed, whatever the analysis budget. ``--sampled``
also checks the span-proportional library (issue 15): on a 60 s 1080p take (bench_span_cost's
10 s take six times over) it renders 2 s spans with each dub twice, with the default budget (the
span +-1 s and a 6 s sample of the take) and with every frame of the take analysed, and prints
both PAC and identity side by side.

    python benchmarks/acceptance_render.py [--out DIR] [--codec prores] [--only NAME] [--sampled]
        [--expression as-source|neutral|smile] [--options JSON] [--no-sheets]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from dubline.pipeline import (
    WHOLE_FILE,
    DiskAnalyses,
    RenderRequest,
    analyse_clip,
    render,
)
from dubline.pipeline.qc import run_qc
from dubline.qc.sheets import boundary_sheet, sheet_for_render
from dubline.stages import media

SHARED = Path(__file__).resolve().parents[2] / "shared" / "media"
SPEAKERS = ("speaker_a.mp4", "speaker_b.mp4")
DUBS = ("dub_en_48k_stereo.wav", "dub_en_16k.wav", "dub_ja_24bit.wav")


def largest_boundaries(run_starts: list[int], residual: list[float | None], count: int = 3) -> list[int]:
    """The ``count`` run boundaries whose frame changed most beyond what motion explains."""
    scored = [(residual[t] if t < len(residual) and residual[t] is not None else -1.0, t) for t in run_starts]
    return sorted(t for _, t in sorted(scored, reverse=True)[:count])


def _fmt(value: float | None, digits: int = 2) -> str:
    return "  -  " if value is None else f"{value:.{digits}f}"


#: 2 s spans of the 60 s take, at different places in its 10 s segments.
SAMPLED_SPANS = ((1300, 1350), (860, 910))


def sampled_library(out: Path) -> None:
    """PAC and identity of 2 s spans with the sampled library against the whole take's."""
    import subprocess
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_span_cost import bench_dir, build_sources

    short, _ = build_sources(bench_dir())
    take = bench_dir() / "take_60s_1080p.mp4"
    if not take.exists():
        listing = bench_dir() / "concat60.txt"
        listing.write_text("".join(f"file '{short.name}'\n" for _ in range(6)))
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy",
                        str(take)], check=True)
    sampled_cache, whole_cache = out / "sampled_cache", out / "whole_cache"
    analyse_clip(take, cache_root=whole_cache, budget=WHOLE_FILE)  # every frame, once
    print(f"{'span x dub':34s} {'sampled library':>22s} {'whole take':>22s}")
    gaps = []
    for first, end in SAMPLED_SPANS:
        for dub in DUBS:
            row = []
            for cache in (sampled_cache, whole_cache):
                patch = out / f"sampled_{first}_{Path(dub).stem}_{cache.name}.mov"
                result = render(RenderRequest(video=take, audio=SHARED / dub, span=f"{first}-{end}", out=patch,
                                              codec="prores", overwrite=True), cache_root=cache,
                                analyses=DiskAnalyses(cache))
                qc = run_qc(patch, SHARED / dub, source=take, span=f"{first}-{end}", cache_root=cache)
                row.append((qc.pac_sync, qc.identity_distance, int(result.analysis.get("frames_known", 0))))
            gaps.append(row[0][0] - row[1][0])
            print(f"{first}-{end} x {Path(dub).stem:22s} "
                  + "  ".join(f"PAC {pac:4.2f} id {ident:5.3f} ({known:4d} fr)" for pac, ident, known in row), flush=True)
    print(f"sampled - whole PAC: mean {np.mean(gaps):+.3f}, worst {min(gaps):+.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/acceptance"))
    parser.add_argument("--codec", default="prores")
    parser.add_argument("--only", default="", help="run only pairs whose name contains this")
    parser.add_argument("--expression", default="as-source")
    parser.add_argument("--options", default="{}", help="retrieval backend options as JSON")
    parser.add_argument("--no-sheets", action="store_true")
    parser.add_argument("--sampled", action="store_true", help="only the sampled-library check (see above)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.sampled:
        sampled_library(args.out)
        return
    cache = args.out / "cache"
    rows = []
    for speaker in SPEAKERS:
        for dub in DUBS:
            name = f"{Path(speaker).stem}__{Path(dub).stem}"
            if args.only not in name:
                continue
            patch, matte = args.out / f"{name}.mov", args.out / f"{name}_matte.mov"
            video = SHARED / speaker
            frames = media.probe(video).video.frame_count
            start = time.perf_counter()
            result = render(
                RenderRequest(video=video, audio=SHARED / dub, span=f"0-{frames}", out=patch, codec=args.codec,
                              matte=matte, overwrite=True, expression=args.expression,
                              backend_options=json.loads(args.options)),
                cache_root=cache,
            )
            seconds = time.perf_counter() - start
            qc = run_qc(patch, SHARED / dub, source=video, span=f"0-{frames}", matte=matte, cache_root=cache,
                        run_starts=result.run_starts)
            data = qc.to_dict()
            largest = largest_boundaries(result.run_starts, data["per_frame"].get("motion_residual", []))
            if not args.no_sheets:
                faces = analyse_clip(video, cache_root=cache).faces
                sheet_for_render(video, 0, patch, faces, args.out / f"{name}.png", matte)
                if largest:
                    boundary_sheet(video, 0, patch, faces, largest, args.out / f"{name}_boundaries.png")
            row = {"pair": name, "render_s": round(seconds, 2), **data, "failures": qc.failures(),
                   "warnings_render": result.warnings, "run_starts": result.run_starts,
                   "largest_boundaries": largest}
            rows.append(row)
            lips, expression = qc.lip_colour or {}, qc.expression or {}
            by_lip = qc.lip_colour_by_lip or {}
            per_lip = " ".join(
                f"{part} {_fmt(lip.get('saturation'), 3)} [{_fmt(lip.get('saturation_low'), 3)}.."
                f"{_fmt(lip.get('saturation_high'), 3)}] {_fmt(lip.get('hue'), 1)}deg"
                f"{'' if lip.get('within') else ' OUT'}" for part, lip in by_lip.items())
            print(f"{name:30s} PAC {qc.pac_sync:5.2f} id {qc.identity_distance:5.3f} psnr {qc.psnr_outside_db:5.1f} "
                  f"seam {qc.seam:4.2f} flicker {qc.flicker_ratio:4.2f} (motion {_fmt(qc.flicker_ratio_motion)}) "
                  f"sharp {qc.sharpness_ratio:4.2f} (matched {_fmt(qc.sharpness_ratio_matched)}, untouched "
                  f"{_fmt(qc.sharpness_ratio_untouched)}) cuts {qc.run_boundaries} localPAC min "
                  f"{_fmt(qc.local_pac_min)} lips sat {_fmt(lips.get('saturation'), 3)} "
                  f"[{_fmt(lips.get('saturation_low'), 3)}..{_fmt(lips.get('saturation_high'), 3)}] "
                  f"hue {_fmt(lips.get('hue'), 1)} [{_fmt(lips.get('hue_low'), 1)}..{_fmt(lips.get('hue_high'), 1)}] "
                  f"per lip: {per_lip or '-'} "
                  f"expr {_fmt(expression.get('score'))} frames {qc.frames}/{qc.expected_frames} "
                  f"tc {qc.timecode_ok} render {seconds:5.1f}s", flush=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1, default=str))
    pacs = [r["pac_sync"] for r in rows]
    ids = [r["identity_distance"] for r in rows]
    print(f"min PAC {min(pacs):.3f}, mean identity {np.mean(ids):.3f}")


if __name__ == "__main__":
    main()
