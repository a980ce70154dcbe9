"""Contact sheets: a picture of a render for a person to look at.

``sheet_for_render``: rows of source frames, patch frames, then the mouth region of each enlarged
(source above patch), and optionally the matte; columns are evenly spaced frames of the span,
labelled with their index. ``boundary_sheet``: the frames around chosen run boundaries (cuts between
runs of library frames), mouths enlarged, source above patch, so a step there can be seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from dubline.core import timing
from dubline.core.errors import OutputPathError
from dubline.stages import media


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    cv2.putText(tile, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def _fit(image: np.ndarray, width: int) -> np.ndarray:
    height = max(1, int(round(image.shape[0] * width / image.shape[1])))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _crop(image: np.ndarray, box: tuple[int, int, int, int] | None, width: int) -> np.ndarray:
    if box is None:
        return np.zeros((width, width, 3), np.uint8)
    x0, y0, x1, y1 = box
    region = image[max(y0, 0) : y1, max(x0, 0) : x1]
    if region.size == 0:
        return np.zeros((width, width, 3), np.uint8)
    return cv2.resize(region, (width, width), interpolation=cv2.INTER_CUBIC)


def contact_sheet(
    indices: Sequence[int],
    source: Sequence[np.ndarray],
    patch: Sequence[np.ndarray],
    mouth_boxes: Sequence[tuple[int, int, int, int] | None],
    mattes: Sequence[np.ndarray] | None = None,
    tile_width: int = 220,
) -> np.ndarray:
    """An RGB image: one column per frame, rows source / patch / mouth source / mouth patch [/ matte]."""
    columns = []
    for i, index in enumerate(indices):
        tiles = [
            _label(_fit(source[i], tile_width), f"src {index}"),
            _label(_fit(patch[i], tile_width), f"patch {index}"),
            _label(_crop(source[i], mouth_boxes[i], tile_width), "mouth src"),
            _label(_crop(patch[i], mouth_boxes[i], tile_width), "mouth patch"),
        ]
        if mattes is not None:
            matte = (np.clip(mattes[i], 0, 1) * 255).astype(np.uint8)
            tiles.append(_label(_fit(np.dstack([matte] * 3), tile_width), "matte"))
        columns.append(np.vstack(tiles))
    height = max(c.shape[0] for c in columns)
    columns = [np.pad(c, ((0, height - c.shape[0]), (0, 4), (0, 0))) for c in columns]
    return np.hstack(columns)


def preview_jpeg(image: np.ndarray, width: int = 320, quality: int = 80) -> bytes:
    """A small JPEG of an 8-bit RGB frame (``width`` pixels wide, never enlarged), for progress events."""
    small = _fit(image, width) if image.shape[1] > width else image
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("the frame could not be encoded as JPEG")
    return encoded.tobytes()


def save_png(image: np.ndarray, path: Path) -> Path:
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputPathError(f"output directory does not exist: {path.parent}")
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OutputPathError(f"could not write {path}")
    return path


def mouth_box(landmarks: np.ndarray, inter_ocular: float) -> tuple[int, int, int, int] | None:
    """A square-ish box around the lips, sized by the inter-ocular distance."""
    mouth = landmarks[48:68]
    if not np.all(np.isfinite(mouth)) or not np.isfinite(inter_ocular):
        return None
    cx, cy = mouth.mean(axis=0)
    half = 0.9 * inter_ocular
    return int(cx - half), int(cy - 0.8 * half), int(cx + half), int(cy + 1.2 * half)


def sheet_for_render(
    source: Path,
    first: int,
    patch: Path,
    faces,  # dubline.stages.faces.FaceTrack over every frame of the source
    out: Path,
    matte: Path | None = None,
    columns: int = 8,
) -> Path:
    """Contact sheet of a written patch against the source frames it replaces, as the editor sees
    them (upright, square pixels, 8-bit: the analysis view, where the face track's boxes are)."""
    info = media.probe(patch)
    count, rate = info.video.frame_count, info.video.rate
    picks = sorted(set(np.linspace(0, count - 1, min(columns, count)).round().astype(int).tolist()))
    wanted = set(picks)

    def pictures(path: Path, span_first: int) -> list[np.ndarray]:
        video = media.probe(path).video
        frames = media.read_span(path, timing.frames_to_range(span_first, span_first + count, rate))
        return [f.image for f in media.FrameView.of(video).analysis_frames(frames) if f.index - span_first in wanted]

    source_images, patch_images = pictures(source, first), pictures(patch, 0)
    mattes = [image[..., 0] / 255.0 for image in pictures(matte, 0)] if matte else None
    boxes = [mouth_box(faces.landmarks[first + i], float(faces.inter_ocular[first + i])) for i in picks]
    return save_png(contact_sheet([first + i for i in picks], source_images, patch_images, boxes, mattes), out)


def _read_frames(path: Path, first: int, count: int, wanted: set[int]) -> dict[int, np.ndarray]:
    """Frames ``first + i`` for i in ``wanted`` (indices relative to ``first``) of a clip, as the
    analysis sees them (upright, square pixels, 8-bit: the face track's coordinates)."""
    video = media.probe(path).video
    frames = media.read_span(path, timing.frames_to_range(first, first + count, video.rate))
    return {
        f.index - first: f.image
        for f in media.FrameView.of(video).analysis_frames(frames)
        if f.index - first in wanted
    }


def boundary_sheet(
    source: Path,
    first: int,
    patch: Path,
    faces,  # dubline.stages.faces.FaceTrack over every frame of the source
    boundaries: Sequence[int],
    out: Path,
    before: int = 2,
    after: int = 2,
    tile_width: int = 200,
) -> Path:
    """For each boundary (a patch row where a new run starts): the mouths of frames
    ``boundary - before .. boundary + after - 1``, source above patch, one band per boundary."""
    count = media.probe(patch).video.frame_count
    rows_per_band = [
        [t for t in range(b - before, b + after) if 0 <= t < count] for b in boundaries
    ]
    wanted = {t for band in rows_per_band for t in band}
    source_images = _read_frames(source, first, count, wanted)
    patch_images = _read_frames(patch, 0, count, wanted)
    bands = []
    for boundary, band in zip(boundaries, rows_per_band):
        columns = []
        for t in band:
            box = mouth_box(faces.landmarks[first + t], float(faces.inter_ocular[first + t]))
            mark = " cut" if t == boundary else ""
            columns.append(np.vstack([
                _label(_crop(source_images[t], box, tile_width), f"src {first + t}"),
                _label(_crop(patch_images[t], box, tile_width), f"patch {first + t}{mark}"),
            ]))
        band_image = np.hstack([np.pad(c, ((0, 0), (0, 4), (0, 0))) for c in columns])
        bands.append(np.pad(band_image, ((0, 8), (0, 0), (0, 0))))
    width = max(b.shape[1] for b in bands)
    bands = [np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0))) for b in bands]
    return save_png(np.vstack(bands), out)
