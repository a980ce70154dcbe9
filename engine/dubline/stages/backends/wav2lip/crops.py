"""Face crops with Wav2Lip's conventions and the paste back.

Official inference (``inference.py`` of Wav2Lip): the detector box is padded downward
(``pads = [0, 10, 0, 0]``: 10 px at the bottom, so the chin is inside), clamped to the frame,
smoothed as the mean over a window of 5 boxes, cut out and resized (without keeping the aspect) to
96x96; the generated 96x96 face is resized back to the box and written over it.

Here the box comes from the face track, the 10 px become a fraction of the box height (10 px was
the official margin for faces of about 100 px, as in LRS2, which the model was trained on; at
today's frame sizes a fixed 10 px would not reach the chin), the 5-box mean is centred on the frame
and only averages boxes of frames where the face is present (a gap or cut does not drag the box),
and the generated face is not pasted as a box: it is placed into a full-frame copy that the shared
compositor blends inside the lower-face matte.

Boxes are in the face track's coordinates (the clip's upright, square-pixel analysis view). Given
the clip's ``FrameView``, ``crop_face`` cuts the box out of the stored frame turned upright (the
model was trained on upright faces: a sideways phone clip gets an upright crop) and
``paste_face`` turns the generated face back and puts it on the stored grid. The model sees 8 bits;
its face is scaled to the frame's depth (a 10-bit frame stays 10-bit outside the face).
"""

from __future__ import annotations

import cv2
import numpy as np

from dubline.core.errors import InvalidInputError
from dubline.stages.backends.generated_faces import paste_generated
from dubline.stages.backends.wav2lip.model import FACE_SIZE
from dubline.stages.media import FrameView, Image, to_8bit

#: Bottom padding as a fraction of the detector box height (official: 10 px on ~100 px faces).
PAD_BOTTOM_FRACTION = 0.10
#: Boxes averaged per frame (official: 5).
SMOOTH_WINDOW = 5


def smooth_boxes(boxes: np.ndarray, present: np.ndarray, window: int = SMOOTH_WINDOW) -> np.ndarray:
    """(N, 4) boxes averaged over a centred window of ``window`` frames, present frames only.

    Frames without a face keep NaN; a window is cut at the nearest absent frame on either side,
    so boxes on both sides of a gap (or a cut the tracker split there) never mix.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    present = np.asarray(present, dtype=bool) & np.all(np.isfinite(boxes), axis=1)
    smoothed = np.full(boxes.shape, np.nan)
    half = window // 2
    count = len(boxes)
    for index in np.flatnonzero(present):
        low, high = index, index
        while low > max(0, index - half) and present[low - 1]:
            low -= 1
        while high < min(count - 1, index + half) and present[high + 1]:
            high += 1
        smoothed[index] = boxes[low : high + 1].mean(axis=0)
    return smoothed


def padded_boxes(boxes: np.ndarray, frame_shape: tuple[int, ...]) -> np.ndarray:
    """(N, 4) int crop boxes x0, y0, x1, y1 (end-exclusive): padded downward, clamped to the frame.

    Rows whose box is NaN, or that leave less than 2 px inside the frame, are all -1.
    """
    height, width = frame_shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64)
    out = np.full(boxes.shape, -1, dtype=np.int64)
    valid = np.all(np.isfinite(boxes), axis=1)
    if not valid.any():
        return out
    x0, y0, x1, y1 = boxes[valid].T
    y1 = y1 + PAD_BOTTOM_FRACTION * (y1 - y0)
    rounded = np.stack(
        [
            np.clip(np.rint(x0), 0, width),
            np.clip(np.rint(y0), 0, height),
            np.clip(np.rint(x1), 0, width),
            np.clip(np.rint(y1), 0, height),
        ],
        axis=1,
    ).astype(np.int64)
    big_enough = (rounded[:, 2] - rounded[:, 0] >= 2) & (rounded[:, 3] - rounded[:, 1] >= 2)
    rows = np.flatnonzero(valid)[big_enough]
    out[rows] = rounded[big_enough]
    return out


def crop_face(image: Image, box: np.ndarray, view: FrameView | None = None) -> np.ndarray:
    """The 96x96 RGB uint8 crop of ``box`` (aspect not kept, as officially), upright: ``box`` is in
    ``view``'s display coordinates and ``image`` a stored frame (without ``view``, the same space).

    Downscaling uses area averaging: our faces are often 3-5x larger than the training crops, and
    a bilinear shrink by that much aliases (the training faces were shrunk by about 1x).
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise InvalidInputError(f"wav2lip crop box {tuple(box)} is empty")
    region = image[y0:y1, x0:x1] if view is None else np.ascontiguousarray(view.display_region(image, (x0, y0, x1, y1)))
    region = to_8bit(region)
    shrinking = region.shape[0] > FACE_SIZE or region.shape[1] > FACE_SIZE
    return cv2.resize(region, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def paste_face(image: Image, box: np.ndarray, face: np.ndarray, view: FrameView | None = None) -> Image:
    """``image`` (stored, its dtype) with the 96x96 uint8 ``face`` resized into ``box`` (``view``'s
    display coordinates; without ``view``, the image's own): a copy of an array, a lazy image of a
    lazy one (``media.overlaid``).

    Only the box changes; the compositor decides (by the matte) which of it reaches the output.
    """
    if face.shape != (FACE_SIZE, FACE_SIZE, 3):
        raise InvalidInputError(f"wav2lip generated face must be {FACE_SIZE}x{FACE_SIZE}x3, got {face.shape}")
    return paste_generated(image, box, face, view, cv2.INTER_CUBIC)

