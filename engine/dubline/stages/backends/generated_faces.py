"""What the backends that generate a face with a network (wav2lip, musetalk) share: the ``device``
option and putting a generated face back into the frame."""

from __future__ import annotations

from typing import Any, Mapping

import cv2
import numpy as np
import torch

from dubline.core.errors import InvalidInputError
from dubline.stages.media import FrameView, Image, convert_depth, overlaid


def torch_device(options: Mapping[str, Any], backend: str) -> str:
    """The ``device`` option ("cpu", "cuda" or "cuda:N"; default: CUDA when there is one), checked
    against this torch; InvalidInputError naming ``backend``'s option otherwise."""
    device = str(options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise InvalidInputError(f"{backend} option device must be 'cpu' or 'cuda', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError(f"{backend} option device='cuda' was given but this torch has no CUDA device")
    return device


def paste_generated(image: Image, box: np.ndarray, face: np.ndarray, view: FrameView | None,
                    interpolation: int) -> Image:
    """``image`` (stored, its dtype) with the uint8 ``face`` resized into ``box`` (``view``'s
    display coordinates; without ``view``, the image's own), as ``media.overlaid`` lays it: a copy
    of an array, a lazy image of a lazy one. Only the box changes; the compositor decides (by the
    matte) which of it reaches the output."""
    x0, y0, x1, y1 = (int(v) for v in box)
    resized = convert_depth(cv2.resize(face, (x1 - x0, y1 - y0), interpolation=interpolation), image.dtype)
    if view is not None:
        resized, (x0, y0, x1, y1) = view.stored_region(resized, (x0, y0, x1, y1), image.shape)
    return overlaid(image, y0, x0, resized)
