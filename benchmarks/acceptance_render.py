"""Issue-4 acceptance on ../shared/media: both speakers x three dubs, retrieval backend.

For each pair: render the whole clip (prores + matte), run qc, write a contact sheet (source row,
patch row, enlarged mouths, matte). Prints one table and writes results.json next to the sheets.

    python benchmarks/acceptance_render.py [--out DIR] [--codec prores]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from dubline.pipeline import RenderRequest, analyse_clip, render
from dubline.pipeline.qc import run_qc
from dubline.qc.sheets import sheet_for_render
from dubline.stages import media

SHARED = Path(__file__).resolve().parents[2] / "shared" / "media"
SPEAKERS = ("speaker_a.mp4", "speaker_b.mp4")
DUBS = ("dub_en_48k_stereo.wav", "dub_en_16k.wav", "dub_ja_24bit.wav")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/acceptance"))
    parser.add_argument("--codec", default="prores")
    parser.add_argument("--only", default="", help="run only pairs whose name contains this")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
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
                              matte=matte, overwrite=True),
                cache_root=cache,
            )
            seconds = time.perf_counter() - start
            qc = run_qc(patch, SHARED / dub, source=video, span=f"0-{frames}", matte=matte, cache_root=cache)
            faces = analyse_clip(video, cache_root=cache).faces
            sheet_for_render(video, 0, patch, faces, args.out / f"{name}.png", matte)
            row = {"pair": name, "render_s": round(seconds, 2), **qc.to_dict(), "failures": qc.failures(),
                   "warnings_render": result.warnings}
            rows.append(row)
            print(f"{name:38s} PAC {qc.pac_sync:5.2f} id {qc.identity_distance:5.3f} psnr {qc.psnr_outside_db:5.1f} "
                  f"seam {qc.seam:4.2f} flicker {qc.flicker_ratio:4.2f} sharp {qc.sharpness_ratio:4.2f} "
                  f"frames {qc.frames}/{qc.expected_frames} tc {qc.timecode_ok} render {seconds:5.1f}s", flush=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1, default=str))
    pacs = [r["pac_sync"] for r in rows]
    ids = [r["identity_distance"] for r in rows]
    print(f"min PAC {min(pacs):.3f}, mean identity {np.mean(ids):.3f}")


if __name__ == "__main__":
    main()
