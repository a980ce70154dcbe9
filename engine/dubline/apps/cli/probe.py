"""``dubline probe FILE [--json]``: what the media layer sees in a file, including how its pictures
are stored and shown (display matrix, pixel aspect, bit depth, alpha, field order) and the conform
grid of a variable-frame-rate stream."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from fractions import Fraction
from typing import Any

import numpy as np
import opentimelineio as otio

from dubline.core.timing import frames_to_timecode
from dubline.stages import media
from dubline.stages.media.orientation import describe as describe_orientation


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("probe", help="describe a media file's streams, rate, timecode and colour")
    parser.add_argument("file", help="video or audio file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    info = media.probe(args.file)
    print(json.dumps(info_to_json(info), indent=2) if args.json else info_to_table(info))
    return 0


def info_to_json(info: media.MediaInfo) -> dict[str, Any]:
    """MediaInfo as plain JSON values; rates as "num/den" strings so they stay exact. The video
    gains ``display`` (the upright, square-pixel size and the orientation) and its ``conform`` a
    ``note``; the per-slot timestamp map stays out."""
    data = _jsonable(asdict(info))
    video = info.video
    if video is not None:
        view = media.FrameView.of(video)
        width, height = view.display_size
        data["video"]["display"] = {"width": width, "height": height, "rotation": view.orientation.rotation,
                                    "mirrored": view.orientation.mirrored}
        if video.conform is not None:
            conform = data["video"]["conform"]
            conform.pop("slot_pts", None)
            conform.pop("source_pts", None)
            conform["note"] = video.conform.describe()
    return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, otio.opentime.RationalTime):
        return {"value": value.value, "rate": value.rate}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "__fspath__"):
        return str(value)
    return value


def _field_order_text(order: str) -> str:
    return {
        "progressive": "progressive", "unknown": "unknown (treated as progressive)",
        "tt": "interlaced, top field first", "bb": "interlaced, bottom field first",
        "tb": "interlaced, top field coded first, bottom shown first",
        "bt": "interlaced, bottom field coded first, top shown first",
    }[order]


def info_to_table(info: media.MediaInfo) -> str:
    rows: list[tuple[str, str]] = [
        ("file", str(info.path)),
        ("format", f"{info.format_name}, {info.size_bytes:,} bytes"),
    ]
    video = info.video
    if video is None:
        rows.append(("video", "none"))
    else:
        seconds = video.frame_count / video.rate
        length = frames_to_timecode(video.frame_count, video.rate)
        colour = video.colour
        layout = video.layout
        view = media.FrameView.of(video)
        sar = layout.sample_aspect_ratio
        rows += [
            ("video", f"#{video.index} {video.codec} {video.width}x{video.height} {video.pixel_format}"),
            ("rate", f"{video.rate} ({float(video.rate):.3f} fps)"
                     + (f", {video.conform.describe()} ({video.conform.source_frames} source frames)"
                        if video.conform is not None else "")),
            ("frames", f"{video.frame_count} ({float(seconds):.3f} s, {length})"),
            ("start timecode", video.start_timecode or "none"),
            ("orientation", f"{describe_orientation(media.Orientation.from_matrix(layout.display_matrix))}"
                            f" (stored {video.width}x{video.height}, shown {view.display_size[0]}x{view.display_size[1]})"),
            ("pixel aspect", f"{sar.numerator}:{sar.denominator}" + (" (anamorphic)" if sar != 1 else " (square)")),
            ("bit depth", f"{video.bit_depth}-bit{', with alpha' if video.alpha else ''}"),
            ("field order", _field_order_text(layout.field_order)),
            (
                "colour",
                f"primaries {colour.primaries or '-'}, transfer {colour.transfer or '-'},"
                f" matrix {colour.matrix or '-'}, range {colour.range or '-'}",
            ),
        ]
    if not info.audio:
        rows.append(("audio", "none"))
    for stream in info.audio:
        rows.append(
            (
                "audio",
                f"#{stream.index} {stream.codec} {stream.sample_rate} Hz {stream.layout}"
                f" ({stream.channels} ch) {stream.sample_format}, {stream.duration_seconds:.3f} s",
            )
        )
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
