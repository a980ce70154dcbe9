"""MuseTalk's face box, crop, VAE input and output conventions (numpy and OpenCV only).

Official (MuseTalk 1.5 ``scripts/inference.py``, ``musetalk/utils/preprocessing.py``,
``musetalk/models/vae.py``):

- box from the 68 face landmarks: x1 = min x, x2 = max x, y2 = max y (the chin), y1 = the nose
  point 29 mirrored about itself (y1 = L29.y - (y2 - L29.y)), clamped at 0; landmarks are
  truncated to integers first. v1.5 then extends y2 by ``extra_margin`` px (CLI default 10).
- crop ``frame[y1:y2, x1:x2]`` resized to 256x256 with Lanczos (aspect not kept).
- VAE input: /255, the lower half (rows 128..255) zeroed in [0, 1] space for the masked copy,
  then (x - 0.5) / 0.5. The reference copy is the same without the mask.
- output: (x / 2 + 0.5) clamped to [0, 1], x255, rounded to uint8; resized back to the box
  (bilinear).

The official code works on cv2's BGR frames; every function here takes and returns **RGB**
(dubline's frames), which is the same arithmetic with the channels named the other way round:
the VAE sees RGB either way, and the official output is flipped back to BGR only for cv2.
"""

from __future__ import annotations

import cv2
import numpy as np

from dubline.core.errors import InvalidInputError
from dubline.stages.backends.generated_faces import paste_generated
from dubline.stages.media import FrameView, Image, to_8bit

FACE_SIZE = 256
#: scripts/inference.py --extra_margin default: px added below the chin (v1.5).
EXTRA_MARGIN = 10
NOSE_POINT = 29
#: Boxes smaller than this (px, either side) are not worth a generated face.
MIN_BOX = 8


def face_box(landmarks: np.ndarray, frame_shape: tuple[int, ...], extra_margin: int = EXTRA_MARGIN) -> np.ndarray | None:
    """(x1, y1, x2, y2) int64 crop box (end-exclusive) from 68 landmarks, or None when degenerate.

    The official rule, then clamped to the frame: the landmarks of a face at the edge can lie
    outside it, where the official code would index past the image.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (68, 2) or not np.all(np.isfinite(points)):
        return None
    height, width = frame_shape[:2]
    points = np.trunc(points).astype(np.int64)  # the official astype(np.int32)
    x1, x2 = points[:, 0].min(), points[:, 0].max()
    y2 = points[:, 1].max()
    nose_y = points[NOSE_POINT, 1]
    y1 = max(0, nose_y - (y2 - nose_y))
    y2 = min(y2 + int(extra_margin), height)
    x1, x2 = max(int(x1), 0), min(int(x2), width)
    if x2 - x1 < MIN_BOX or y2 - y1 < MIN_BOX:
        return None
    return np.array([x1, y1, x2, y2], dtype=np.int64)


def crop_face(image: Image, box: np.ndarray, view: FrameView | None = None) -> np.ndarray:
    """The 256x256 uint8 crop of ``box`` (Lanczos, aspect not kept), channels as given, upright:
    ``box`` is in ``view``'s display coordinates and ``image`` a stored frame of any depth (without
    ``view``, the image's own coordinates)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    if x2 - x1 < 1 or y2 - y1 < 1:
        raise InvalidInputError(f"musetalk crop box {tuple(box)} is empty")
    region = image[y1:y2, x1:x2] if view is None else np.ascontiguousarray(view.display_region(image, (x1, y1, x2, y2)))
    return cv2.resize(to_8bit(region), (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_LANCZOS4)


def vae_input(crops_rgb: np.ndarray, masked: bool) -> np.ndarray:
    """[N, 3, 256, 256] float32 in [-1, 1] from [N, 256, 256, 3] uint8 RGB crops.

    ``masked``: the lower half is zeroed in [0, 1] space (so it is -1 after normalising). Same
    float32 operations as the official code, so the result is bit-identical.
    """
    if crops_rgb.ndim != 4 or crops_rgb.shape[1:] != (FACE_SIZE, FACE_SIZE, 3) or crops_rgb.dtype != np.uint8:
        raise InvalidInputError(f"musetalk crops must be [N, 256, 256, 3] uint8, got {crops_rgb.shape} {crops_rgb.dtype}")
    unit = (crops_rgb.astype(np.float64) / 255.0).astype(np.float32).transpose(0, 3, 1, 2)
    if masked:
        unit = unit.copy()
        unit[:, :, FACE_SIZE // 2 :] = 0.0
    return np.ascontiguousarray((unit - np.float32(0.5)) / np.float32(0.5))


def output_image(decoded: np.ndarray) -> np.ndarray:
    """[N, 256, 256, 3] uint8 from the VAE decoder's [N, 3, 256, 256] float output (channels kept)."""
    unit = np.clip(np.asarray(decoded, dtype=np.float32) / np.float32(2) + np.float32(0.5), 0.0, 1.0)
    return np.round(unit.transpose(0, 2, 3, 1) * np.float32(255)).astype(np.uint8)


def paste_face(image: Image, box: np.ndarray, face: np.ndarray, view: FrameView | None = None) -> Image:
    """``image`` (stored, its dtype) with the 256x256 uint8 ``face`` resized (bilinear) into ``box``
    (``view``'s display coordinates; without ``view``, the image's own): a copy of an array, a lazy
    image of a lazy one (``media.overlaid``).

    Only the box changes; the compositor decides (by the matte) which of it reaches the output.
    """
    if face.shape != (FACE_SIZE, FACE_SIZE, 3):
        raise InvalidInputError(f"musetalk generated face must be 256x256x3, got {face.shape}")
    return paste_generated(image, box, face, view, cv2.INTER_LINEAR)
