"""Seamless run boundaries: where selection cuts from one run of library frames to another, the
mouth moves from one real mouth to the other over a few frames instead of jumping.

``schedule`` decides, per output frame, a partner image and its weight: on the frames before a cut
the partner is the cut-to run played backwards from its first frame, on the frames after it the
cut-from run played on, so both mouths are real frames of motion around the cut. A cut from or to
the speaker's own resting mouth (``KEEP_OWN``) is eased the same way, with the target frame itself
as that side's image.

``morph`` blends the two images in the aligned (target) space: dense optical flow (OpenCV's DIS)
between them, each warped part of the way towards the other, so edges move rather than
cross-fade (a cross-fade of two mouths shows both lip lines), and the dissolve between the warped
pair steeper than the motion, so most transition frames are mostly one real image.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from dubline.stages import media
from dubline.stages.backends.retrieval.select import KEEP_OWN

#: ``partner`` value of a frame with no transition: it shows its selected mouth alone.
NO_PARTNER = -2


def run_starts(selection: np.ndarray, consecutive: np.ndarray) -> np.ndarray:
    """(T,) bool: output frame t shows a different run of material than frame t-1 (a cut).

    Following on (library row j -> j + 1 where that is real footage) and holding (j -> j) continue
    a run; anything else, including to or from the speaker's own mouth, starts one.
    """
    starts = np.zeros(len(selection), bool)
    for t in range(1, len(selection)):
        before, now = int(selection[t - 1]), int(selection[t])
        if before == now:
            continue
        if before >= 0 and now == before + 1 and now < len(consecutive) and consecutive[now]:
            continue
        starts[t] = True
    return starts


def _step(row: int, steps: int, consecutive: np.ndarray) -> int:
    """Library row ``steps`` frames after (``steps`` < 0: before) ``row`` in the same footage,
    stopping at the end of the footage; ``KEEP_OWN`` stays itself."""
    if row == KEEP_OWN:
        return row
    n = len(consecutive)
    for _ in range(abs(steps)):
        if steps > 0 and row + 1 < n and consecutive[row + 1]:
            row += 1
        elif steps < 0 and row > 0 and consecutive[row]:
            row -= 1
        else:
            break
    return row


def schedule(selection: np.ndarray, consecutive: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Partner row (or ``NO_PARTNER``) and the partner's weight (0..1) per output frame.

    A cut at t0 is eased over frames t0 - half .. t0 + half - 1: the weight of the cut-to side
    rises by 1 / (2 half) per frame, centred on the cut. A frame already easing the previous cut
    keeps that one, and no transition reaches past the next cut.
    """
    count = len(selection)
    partner = np.full(count, NO_PARTNER, np.int64)
    weight = np.zeros(count)
    if half < 1 or count < 2:
        return partner, weight
    starts = np.flatnonzero(run_starts(selection, consecutive))
    bounds = np.r_[starts, count]
    taken = np.zeros(count, bool)
    for number, cut in enumerate(starts):
        before_row, after_row = int(selection[cut - 1]), int(selection[cut])
        next_cut = int(bounds[number + 1])
        for offset in range(-half, half):
            t = cut + offset
            if t < 0 or t >= next_cut or taken[t]:
                continue
            towards_after = (offset + half + 0.5) / (2 * half)
            if offset < 0:
                partner[t] = _step(after_row, offset, consecutive)
                weight[t] = towards_after
            else:
                partner[t] = _step(before_row, offset + 1, consecutive)
                weight[t] = 1.0 - towards_after
            taken[t] = True
    return partner, weight


#: One DIS instance per thread: an instance keeps working state between calls, and renders run
#: concurrently in the engine (two threads in one instance abort the process).
_FLOWS = threading.local()


def _flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Dense flow (H, W, 2) from grey ``first`` to grey ``second``."""
    flow = getattr(_FLOWS, "dis", None)
    if flow is None:
        flow = _FLOWS.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return flow.calc(first, second, None)


def dissolve_weight(motion: float, steepness: float = 3.0) -> float:
    """Share of the second image in the dissolve at ``motion`` (0..1) of the way: a logistic
    sharper than the motion, exactly 0.5 half way."""
    low, high = 1 / (1 + np.exp(steepness)), 1 / (1 + np.exp(-steepness))
    value = 1 / (1 + np.exp(-steepness * (2 * motion - 1)))
    return float((value - low) / (high - low))


def morph(first: np.ndarray, second: np.ndarray, amount: float, steepness: float = 3.0,
          interior: np.ndarray | None = None) -> np.ndarray:
    """``first`` moved ``amount`` (0..1) of the way to ``second``: both warped along the optical
    flow between them to the in-between shape and dissolved (RGB, uint8 or uint16, same shape).

    ``interior`` (float32 0..1, the images' size; optional) is where the mouth's inside is: there
    the dissolve does not mix the two at all but shows the nearer image (``first`` below half way,
    ``second`` from it). Two sets of teeth, or teeth and a dark open mouth, never line up, and any
    mix of them reads as one smooth white band without the gaps and highlights of real teeth (on
    speaker_b the morph's mid frames kept 0.59 of the two mouths' teeth detail); the lips, whose
    edges the flow does line up, still dissolve."""
    if amount <= 0:
        return first.copy()
    if amount >= 1:
        return second.copy()
    # The flow is found on 8-bit grey (DIS takes nothing else); the pictures move at their depth.
    grey_first = cv2.cvtColor(media.to_8bit(first), cv2.COLOR_RGB2GRAY)
    grey_second = cv2.cvtColor(media.to_8bit(second), cv2.COLOR_RGB2GRAY)
    forward = _flow(grey_first, grey_second)
    backward = _flow(grey_second, grey_first)
    height, width = grey_first.shape
    # Pixel coordinates broadcast along rows and columns rather than built as two full grids.
    base_y, base_x = np.arange(height, dtype=np.float32)[:, None], np.arange(width, dtype=np.float32)[None, :]
    # A point of the in-between image came from first at x - amount * flow, from second at
    # x - (1 - amount) * the reverse flow (the flows read at x: fine for smooth mouth motion).
    moved_first = cv2.remap(
        first, base_x - amount * forward[..., 0], base_y - amount * forward[..., 1], cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )
    rest = 1.0 - amount
    moved_second = cv2.remap(
        second, base_x - rest * backward[..., 0], base_y - rest * backward[..., 1], cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )
    share = dissolve_weight(amount, steepness)
    if interior is None:
        return cv2.addWeighted(moved_first, 1.0 - share, moved_second, share, 0.0)
    nearer = 1.0 if amount >= 0.5 else 0.0
    weight = (share + (nearer - share) * interior.astype(np.float32))[..., None]
    mixed = moved_first.astype(np.float32) + weight * (moved_second.astype(np.float32) - moved_first.astype(np.float32))
    return np.clip(np.rint(mixed), 0, np.iinfo(first.dtype).max).astype(first.dtype)
