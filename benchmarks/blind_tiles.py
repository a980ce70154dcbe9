"""Blind check kit (issue 19): shuffled lower-face close-ups of patched and untouched frames.

From the acceptance renders (benchmarks/acceptance_render.py --out RENDERS), pick patched frames
(matte not empty) from every pair and as many untouched frames of the same speakers, crop the same
lower-face box from each, shuffle them and write ``tiles/tile_NN.png`` plus ``tiles/all.png`` (every
tile numbered, nothing else) for the judge, and ``key/key.json`` (which tile is which) for whoever
scores the answer. Untouched frames go through the same ProRes encode and decode as the patches,
so the codec is no tell.

    python benchmarks/blind_tiles.py --renders out/after --out out/blind [--per-pair 2] [--seed 19]
    python benchmarks/blind_tiles.py --score out/blind/key/key.json --picked 3,7,12
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import cv2
import numpy as np
from dubline.core import timing
from dubline.pipeline import analyse_clip
from dubline.qc.sheets import save_png
from dubline.stages import media

SHARED = Path(__file__).resolve().parents[2] / "shared" / "media"
TILE = 256


def _frames(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    info = media.probe(path).video
    whole = timing.frames_to_range(0, info.frame_count, info.rate)
    return {f.index: f.image for f in media.read_span(path, whole) if f.index in wanted}


def _close_up(image: np.ndarray, landmarks: np.ndarray, iod: float) -> np.ndarray:
    """The lower face around the mouth (nose tip to chin), square, resized to TILE."""
    centre = landmarks[48:68].mean(axis=0)
    half = 1.1 * iod
    x0, y0 = int(centre[0] - half), int(centre[1] - 0.9 * half)
    region = image[max(y0, 0) : y0 + int(2 * half), max(x0, 0) : x0 + int(2 * half)]
    # 8-bit, as a viewer shows it (the ProRes decodes of patched and untouched frames are 16-bit alike)
    return media.to_8bit(cv2.resize(region, (TILE, TILE), interpolation=cv2.INTER_AREA))


def _through_prores(images: list[np.ndarray], rate, work: Path) -> list[np.ndarray]:
    """The same encode and decode the patches went through."""
    path = media.write_patch(images, work / "untouched.mov", "prores", rate, overwrite=True)
    decoded = [f.image for f in media.read_span(path, timing.frames_to_range(0, len(images), rate))]
    path.unlink()
    return decoded


def make_kit(renders: Path, out: Path, per_pair: int, seed: int) -> None:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    cache = renders / "cache"
    results = {row["pair"]: row for row in json.loads((renders / "results.json").read_text())}
    tiles: list[tuple[np.ndarray, dict]] = []
    for speaker in sorted({pair.split("__")[0] for pair in results}):
        video = SHARED / f"{speaker}.mp4"
        faces = analyse_clip(video, cache_root=cache).faces
        used: set[int] = set()
        pairs = sorted(pair for pair in results if pair.startswith(speaker + "__"))
        for pair in pairs:
            patched = [t for t, flag in enumerate(results[pair]["per_frame"]["patched"]) if flag and t not in used]
            picks = rng.sample(patched, per_pair)
            used.update(picks)
            images = _frames(renders / f"{pair}.mov", set(picks))
            for t in picks:
                tiles.append((_close_up(images[t], faces.landmarks[t], float(faces.inter_ocular[t])),
                              {"kind": "patched", "pair": pair, "frame": t}))
        usable = [t for t in np.flatnonzero(faces.usable) if t not in used]
        picks = sorted(rng.sample(usable, per_pair * len(pairs)))
        source = _frames(video, set(picks))
        rate = media.probe(video).video.rate
        decoded = _through_prores([source[t] for t in picks], rate, out)
        for t, image in zip(picks, decoded):
            tiles.append((_close_up(image, faces.landmarks[t], float(faces.inter_ocular[t])),
                          {"kind": "untouched", "pair": speaker, "frame": int(t)}))
    rng.shuffle(tiles)
    (out / "tiles").mkdir(parents=True, exist_ok=True)
    (out / "key").mkdir(parents=True, exist_ok=True)
    key = {}
    labelled = []
    for number, (image, what) in enumerate(tiles, start=1):
        save_png(image, out / "tiles" / f"tile_{number:02d}.png")
        key[number] = what
        tile = image.copy()
        cv2.putText(tile, str(number), (8, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(tile, str(number), (8, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2, cv2.LINE_AA)
        labelled.append(np.pad(tile, ((0, 4), (0, 4), (0, 0))))
    columns = 6
    while len(labelled) % columns:
        labelled.append(np.zeros_like(labelled[0]))
    grid = np.vstack([np.hstack(labelled[i : i + columns]) for i in range(0, len(labelled), columns)])
    save_png(grid, out / "tiles" / "all.png")
    (out / "key" / "key.json").write_text(json.dumps(key, indent=1))
    print(f"{len(tiles)} tiles ({sum(w['kind'] == 'patched' for _, w in tiles)} patched) in {out / 'tiles'}")


def score(key_path: Path, picked: list[int]) -> None:
    key = {int(k): v for k, v in json.loads(key_path.read_text()).items()}
    patched = {n for n, what in key.items() if what["kind"] == "patched"}
    hits = len(patched & set(picked))
    false_alarms = len(set(picked) - patched)
    # Chance: picking len(picked) tiles at random finds len(picked) * |patched| / |tiles| patched ones.
    chance = len(picked) * len(patched) / len(key)
    # The chance of finding at least ``hits`` by picking as many tiles at random (hypergeometric).
    from scipy.stats import hypergeom

    p_value = float(hypergeom.sf(hits - 1, len(key), len(patched), len(picked)))
    print(f"found {hits} of {len(patched)} patched tiles with {false_alarms} false alarms "
          f"({len(picked)} picked of {len(key)}; chance would find {chance:.1f}; "
          f"{hits} or more by guessing: p = {p_value:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=Path)
    parser.add_argument("--out", type=Path, default=Path("out/blind"))
    parser.add_argument("--per-pair", type=int, default=2)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--score", type=Path, help="key.json to score --picked against")
    parser.add_argument("--picked", default="", help="tile numbers the judge called patched, comma-separated")
    args = parser.parse_args()
    if args.score:
        score(args.score, [int(n) for n in args.picked.split(",") if n.strip()])
    else:
        make_kit(args.renders, args.out, args.per_pair, args.seed)


if __name__ == "__main__":
    main()
