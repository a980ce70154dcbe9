"""The demo's talking clip: scikit-image's astronaut photograph animated to follow an openness track.

The face is scikit-image's astronaut photograph (``skimage.data.astronaut()``: NASA portrait of
Eileen Collins, public domain), which installs with scikit-image. It is animated into a short
talking clip: the 68 landmarks are found once with dlib's embedded models, and every frame the
jaw and lower lip are lowered to follow the openness of the clip's own synthesised speech (the
landmark warp of ``backends.retrieval.transfer``); where the lips part an inner mouth is painted
(the photo's own upper teeth, a dark red cavity, a hint of tongue), so a 68-point landmark
detector measures a real opening. Slow head drift, a tiny roll and sensor noise keep it from
looking like a frozen still.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import cv2
import numpy as np
from skimage import data

from dubline.core import landmarks as lm
from dubline.core.errors import NoFaceError
from dubline.core.progress import ProgressSink, no_progress
from dubline.stages.backends.retrieval.transfer import TransferParams, transfer_mouth
from dubline.stages.faces.detect import detect_frame
from dubline.stages.faces.types import FaceTrackParams

#: Output frame size (even, so 4:2:0 video codecs take it as is).
FRAME_SIZE = 512
#: Region of the 512x512 photograph that becomes the frame: head and shoulders, scaled 2x.
_PHOTO_CROP = (97, 8, 256)  # x0, y0, side


_APERTURE_CLOSED = 0.13
_APERTURE_OPEN = 0.38
_MOUTH_WARP = TransferParams(max_opening_change=0.4, min_aperture_to_stretch=0.0, warp_sigma=0.3)


@dataclass(frozen=True)
class _Portrait:
    image: np.ndarray  # the photograph, RGB uint8
    landmarks: np.ndarray  # (68, 2) in photograph pixels
    crop: tuple[int, int, int]  # x0, y0, side of the square that becomes the frame


def _photo_landmarks(image: np.ndarray, crop: tuple[int, int, int]) -> np.ndarray:
    """The 68 landmarks of the largest face inside ``crop``, from the face-track stage's detector.

    The whole photograph also holds a face-like mission patch on the suit; detecting in the crop
    keeps the detector on the astronaut.
    """
    x0, y0, side = crop
    # The face is ~90 px wide in the photograph: upsample once so HOG's 80 px window finds it surely.
    faces = detect_frame(image[y0 : y0 + side, x0 : x0 + side], FaceTrackParams(detect_upsample=1))
    if not faces:
        raise NoFaceError("demo: no face found in the astronaut photograph (skimage.data.astronaut)")
    return faces[0].landmarks.astype(np.float64) + np.array([x0, y0], np.float64)


def _load_portrait() -> _Portrait:
    image = np.ascontiguousarray(data.astronaut()[..., :3])
    return _Portrait(image, _photo_landmarks(image, _PHOTO_CROP), _PHOTO_CROP)


def _inner_mouth(shape: tuple[int, int], polygon: np.ndarray, openness: float) -> np.ndarray:
    """RGB float image of a mouth cavity filling ``polygon``: dark red, darkest under the upper
    teeth and towards the corners, with the tongue's back lit near the lower lip when open."""
    height, width = shape
    top, bottom = polygon[:, 1].min(), polygon[:, 1].max()
    left, right = polygon[:, 0].min(), polygon[:, 0].max()
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = np.clip((ys - top) / max(bottom - top, 1.0), 0.0, 1.0)  # 0 at the teeth, 1 at the lower lip
    across = np.clip(np.abs(xs - (left + right) / 2) / max((right - left) / 2, 1.0), 0.0, 1.0)
    cavity = np.array([34.0, 9.0, 7.0]) + np.array([66.0, 20.0, 14.0]) * depth[..., None] ** 1.5
    cavity *= (1.0 - 0.6 * across**2)[..., None]
    tongue = np.exp(-(((ys - bottom) / (0.35 * (bottom - top) + 1.0)) ** 2) - (((xs - (left + right) / 2) / (0.3 * (right - left) + 1.0)) ** 2))
    tongue_colour = np.array([160.0, 66.0, 58.0])
    weight = (0.55 * min(max(openness, 0.0), 1.0) * tongue)[..., None]
    return cavity * (1.0 - weight) + tongue_colour * weight


def _lip_outline(inner_lip: np.ndarray, samples: int = 24) -> np.ndarray:
    """A rounded outline through the 8 inner-lip points: the upper (60..64) and lower (64..67, 60)
    edges each as a monotone cubic in x, so the opening is a curved mouth, not an octagon."""
    from scipy.interpolate import PchipInterpolator

    edges = []
    for chain in (inner_lip[[0, 1, 2, 3, 4]], inner_lip[[4, 5, 6, 7, 0]]):
        xs, order = np.unique(chain[:, 0], return_index=True)  # PCHIP needs strictly rising x
        if xs.shape[0] < 2:
            return inner_lip
        along = np.linspace(xs[0], xs[-1], samples)
        edge = np.stack([along, PchipInterpolator(xs, chain[order, 1])(along)], axis=1)
        edges.append(edge if chain[0, 0] <= chain[-1, 0] else edge[::-1])
    return np.vstack(edges)


def _polygon_mask(shape: tuple[int, int], polygon: np.ndarray, blur: float) -> np.ndarray:
    """Anti-aliased float mask of ``polygon`` (sub-pixel vertices), softened by ``blur`` pixels."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    mask = mask.astype(np.float32) / 255.0
    return cv2.GaussianBlur(mask, (0, 0), blur) if blur > 0 else mask


def _talking_photo(portrait: _Portrait, openness: float) -> np.ndarray:
    """The photograph with the mouth opened to ``openness`` (0..1): jaw and lower lip lowered by
    the retrieval backend's landmark warp, the parted lips filled with the photo's own upper teeth
    (they stay with the upper jaw) above a painted cavity."""
    target = _APERTURE_CLOSED + (_APERTURE_OPEN - _APERTURE_CLOSED) * openness
    image = portrait.image
    moved = transfer_mouth(image, portrait.landmarks, image.shape, portrait.landmarks, target, _MOUTH_WARP)
    x0, y0, x1, y1 = moved.roi
    frame = image.copy()
    region = moved.crop.astype(np.float32)
    shift = np.array([x0, y0], np.float64)
    shape = (y1 - y0, x1 - x0)
    opening = _lip_outline(moved.landmarks[lm.INNER_LIP] - shift)
    opened = _polygon_mask(shape, opening, 0.6)
    teeth = _polygon_mask(shape, _lip_outline(portrait.landmarks[lm.INNER_LIP] - shift), 0.5)
    inside = _inner_mouth(shape, opening, openness)
    photo = image[y0:y1, x0:x1].astype(np.float32)
    inside = photo * teeth[..., None] + inside * (1.0 - teeth[..., None])
    region = region * (1.0 - opened[..., None]) + inside * opened[..., None]
    frame[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
    return frame


def _head_motion(frame_count: int, rate: Fraction, rng: np.random.Generator) -> np.ndarray:
    """Per frame (dx, dy, roll_degrees, scale): slow sums of sinusoids, a pixel or two of drift
    and well under a degree of roll, the way a seated speaker sways."""
    times = np.arange(frame_count) / float(rate)
    motion = np.zeros((frame_count, 4))
    for column, amplitude in enumerate((1.6, 1.1, 0.5, 0.006)):
        for _ in range(3):
            frequency, phase = rng.uniform(0.15, 0.7), rng.uniform(0, 2 * np.pi)
            motion[:, column] += amplitude / 3 * np.sin(2 * np.pi * frequency * times + phase)
    motion[:, 3] += 1.0
    return motion


def _frame_transform(portrait: _Portrait, dx: float, dy: float, roll: float, scale: float) -> np.ndarray:
    """2x3 affine from photograph pixels to output pixels: the crop scaled to FRAME_SIZE, then
    the head motion about the face centre."""
    x0, y0, side = portrait.crop
    zoom = FRAME_SIZE / side
    to_frame = np.array([[zoom, 0.0, -x0 * zoom], [0.0, zoom, -y0 * zoom], [0.0, 0.0, 1.0]])
    centre = portrait.landmarks[lm.NOSE].mean(axis=0) * zoom - np.array([x0, y0]) * zoom
    sway = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), roll, scale)
    sway[:, 2] += (dx, dy)
    return (np.vstack([sway, [0.0, 0.0, 1.0]]) @ to_frame)[:2]


def render_talking_frames(
    openness: np.ndarray, rate: Fraction, seed: int = 0, progress: ProgressSink = no_progress
) -> Iterator[np.ndarray]:
    """RGB uint8 frames (FRAME_SIZE square) of the astronaut saying ``openness`` (one value 0..1
    per frame), with head sway and sensor noise; streamed so memory does not grow with length."""
    portrait = _load_portrait()
    rng = np.random.default_rng(seed + 7919)
    motion = _head_motion(len(openness), rate, rng)
    total = len(openness)
    for index, (value, (dx, dy, roll, scale)) in enumerate(zip(openness, motion)):
        photo = _talking_photo(portrait, float(value))
        matrix = _frame_transform(portrait, dx, dy, roll, scale)
        frame = cv2.warpAffine(photo, matrix, (FRAME_SIZE, FRAME_SIZE), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        grain = rng.normal(0.0, 1.6, frame.shape).astype(np.float32)
        exposure = 1.0 + 0.004 * rng.standard_normal()
        yield np.clip(frame.astype(np.float32) * exposure + grain + 0.5, 0, 255).astype(np.uint8)
        progress("demo video", index + 1, total)


# --- files -------------------------------------------------------------------------------------
