"""``dubline analyse``: face track (and the dub's speech track) of a span, cached, with an overlay."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("analyse", help="face and speech tracks of a span (warms the cache)")
    parser.add_argument("--video", required=True, type=Path)
    parser.add_argument("--range", dest="span", help="span (default: the whole clip)")
    parser.add_argument("--audio", type=Path, help="dub audio; its t=0 is the span's first frame")
    parser.add_argument("--out", type=Path, help="per-frame results: .json or .npz")
    parser.add_argument("--overlay", type=Path, help="debug clip (.mp4/.mov, h264) with box, landmarks, phone and viseme")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--whole-file", action="store_true",
                        help="first analyse every frame of the clip for later renders (face track, own speech, calibration), "
                             "so their mouth library is the whole take rather than a sample")
    parser.set_defaults(func=run)


def _per_frame_records(result) -> list[dict]:
    faces, speech = result.faces, result.speech
    records = []
    for row, index in enumerate(faces.frame_indices.tolist()):
        record = {
            "frame": index,
            "present": bool(faces.present[row]),
            "reason": str(faces.reason[row]),
            "track_id": int(faces.track_id[row]),
            "confidence": None if np.isnan(faces.confidence[row]) else round(float(faces.confidence[row]), 3),
            "box": None if not faces.present[row] else [round(float(v), 1) for v in faces.boxes[row]],
            "landmarks": None if not faces.present[row] else np.round(faces.landmarks[row], 2).tolist(),
            "aperture": None if np.isnan(faces.aperture[row]) else round(float(faces.aperture[row]), 4),
            "mouth_width": None if np.isnan(faces.mouth_width[row]) else round(float(faces.mouth_width[row]), 4),
        }
        if speech is not None:
            record.update(
                phone=str(speech.phone[row]),
                viseme=str(speech.viseme[row]),
                voice_activity=round(float(speech.voice_activity[row]), 3),
                openness=round(float(speech.openness[row]), 3),
            )
        records.append(record)
    return records


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)


def run(args: argparse.Namespace) -> int:
    from dubline.core.errors import InvalidInputError
    from dubline.core.paths import check_outputs, publish_file
    from dubline.core.progress import TqdmProgress
    from dubline.pipeline import WHOLE_FILE, analyse_clip
    from dubline.pipeline.span import analyse_span, write_overlay
    from dubline.stages.media import check_output

    inputs = {"--video": args.video, "--audio": args.audio}
    check_outputs({"--out": args.out, "--overlay": args.overlay}, inputs)
    if args.out is not None and args.out.suffix not in (".json", ".npz"):
        raise InvalidInputError(f"--out must end in .json or .npz, not {args.out.name}")
    for output in (args.out, args.overlay):
        if output is not None:
            check_output(output, args.overwrite)
    if args.whole_file:
        bar = TqdmProgress(enabled=sys.stderr.isatty())
        timings: dict[str, float] = {}
        try:
            library = analyse_clip(args.video, progress=bar, budget=WHOLE_FILE, timings=timings)
        finally:
            bar.close()
        print(f"{args.video.name}: analysed {int(timings['frames_analysed'])} new frames "
              f"({int(library.analysed.sum())} of {len(library.analysed)} known) in {timings['analyse']:.1f} s; "
              f"later renders draw their mouths from all of it")
    result = analyse_span(args.video, args.span, args.audio)
    faces = result.faces
    if args.out is not None:
        if args.out.suffix == ".json":
            document = json.dumps({"video": str(args.video), "span": list(result.span),
                                   # boxes and landmarks are in the upright, square-pixel picture
                                   # (docs/FOOTAGE.md), as the editor sees the clip
                                   "coordinates": "display",
                                   "speaker_choice": faces.speaker_choice,
                                   "warnings": result.warnings, "frames": _per_frame_records(result)})
            publish_file(args.out, lambda path: path.write_text(document), args.overwrite, inputs)
        else:
            arrays = {k: getattr(faces, k) for k in ("frame_indices", "present", "reason", "boxes", "landmarks_raw",
                                                     "landmarks", "pose", "aperture", "mouth_width", "confidence", "track_id")}
            if result.speech is not None:
                arrays.update(openness=result.speech.openness, viseme=result.speech.viseme, phone=result.speech.phone)
            # A file object: np.savez would append ".npz" to a temporary name that lacks it.
            publish_file(args.out, lambda path: _save_npz(path, arrays), args.overwrite, inputs)
    if args.overlay is not None:
        write_overlay(result, args.video, args.overlay, args.overwrite, inputs)
    usable = int(faces.usable.sum())
    print(f"{args.video.name} frames {result.span[0]}-{result.span[1]}: face usable on {usable}/{len(faces)} "
          f"frames (speaker: {faces.speaker_choice})")
    for warning in result.warnings:
        print(f"warning: {warning}")
    return 0
