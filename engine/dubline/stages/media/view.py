"""``FrameView``: a clip's stored pixels seen the way the editor sees them, and back.

The pipeline keeps every frame as stored (orientation, pixel grid, bit depth), so pixels outside
the matte stay the source's own. Only analysis looks at an *analysis view*: the picture turned
upright by the display matrix (exact), resampled to square pixels for an anamorphic clip, and
8-bit (tone-mapped for PQ/HLG). Face tracks live in that view's coordinates; the pixel work of a
backend (a mouth crop, a 96x96 face) is done on display-oriented crops and put back with
``stored_region``; landmarks go back with ``to_stored``.

Coordinates are pixel centres (pixel (0, 0) spans -0.5..0.5); boxes (x0, y0, x1, y1) are edges,
x1/y1 exclusive. Stored -> display is: scale x by the pixel aspect (in stored orientation), then
the orientation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction

import cv2
import numpy as np

from dubline.stages.media.colour import analysis_8bit
from dubline.stages.media.orientation import Orientation
from dubline.stages.media.types import VideoFrame, VideoStreamInfo


@dataclass(frozen=True)
class FrameView:
    stored_size: tuple[int, int]  # (width, height) as stored
    orientation: Orientation = Orientation()
    sample_aspect_ratio: Fraction = Fraction(1)
    transfer: str | None = None  # for the 8-bit analysis proxy of HDR pictures
    primaries: str | None = None

    @classmethod
    def of(cls, video: VideoStreamInfo) -> FrameView:
        orientation = Orientation.from_matrix(video.layout.display_matrix) or Orientation()
        return cls((video.width, video.height), orientation, video.layout.sample_aspect_ratio, video.colour.transfer,
                   video.colour.primaries)

    @property
    def square_width(self) -> int:
        """Stored width resampled to square pixels (in stored orientation)."""
        return max(1, round(self.stored_size[0] * self.sample_aspect_ratio))

    @property
    def scale_x(self) -> float:
        return self.square_width / self.stored_size[0]

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) of the upright, square-pixel picture."""
        return self.orientation.display_size(self.square_width, self.stored_size[1])

    @property
    def display_shape(self) -> tuple[int, int]:
        return self.display_size[1], self.display_size[0]

    @property
    def anamorphic(self) -> bool:
        return self.square_width != self.stored_size[0]

    @property
    def geometry_identity(self) -> bool:
        """Display coordinates are stored coordinates (nothing to map)."""
        return self.orientation.identity and not self.anamorphic

    # ---- pictures -------------------------------------------------------------------------

    def analysis_image(self, image: np.ndarray) -> np.ndarray:
        """The upright, square-pixel, 8-bit RGB picture analysis looks at (the input itself for an
        upright square-pixel 8-bit SDR clip)."""
        image = analysis_8bit(image, self.transfer, self.primaries)
        if self.anamorphic:
            height = image.shape[0]
            shrink = self.square_width < image.shape[1]
            image = cv2.resize(image, (self.square_width, height),
                               interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        return np.ascontiguousarray(self.orientation.apply(image))

    def analysis_frames(self, frames: Iterable[VideoFrame]) -> Iterator[VideoFrame]:
        """``frames`` with their images replaced by the analysis view (alpha dropped)."""
        for frame in frames:
            yield replace(frame, image=self.analysis_image(frame.image), alpha=None)

    # ---- coordinates ----------------------------------------------------------------------

    def affine_to_display(self) -> np.ndarray:
        """2x3: stored pixel-centre coordinates -> display ones."""
        scale = np.array([[self.scale_x, 0.0, 0.5 * self.scale_x - 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        orient = np.vstack([self.orientation.affine(self.square_width, self.stored_size[1]), [0.0, 0.0, 1.0]])
        return (orient @ scale)[:2]

    def affine_to_stored(self) -> np.ndarray:
        return cv2.invertAffineTransform(self.affine_to_display())

    def to_stored(self, points: np.ndarray) -> np.ndarray:
        """Display coordinates (..., 2) -> stored ones (NaN stays NaN)."""
        return points if self.geometry_identity else _apply(self.affine_to_stored(), points)

    def to_display(self, points: np.ndarray) -> np.ndarray:
        return points if self.geometry_identity else _apply(self.affine_to_display(), points)

    def box_to_stored(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """A display box (edges) as the stored box that holds it (edges)."""
        if self.geometry_identity:
            return tuple(box)  # type: ignore[return-value]
        x0, y0, x1, y1 = box
        corners = np.array([[x0 - 0.5, y0 - 0.5], [x1 - 0.5, y1 - 0.5]])  # edges as centre coordinates
        mapped = _apply(self.affine_to_stored(), corners) + 0.5
        low, high = mapped.min(axis=0), mapped.max(axis=0)
        return float(low[0]), float(low[1]), float(high[0]), float(high[1])

    # ---- regions: display-oriented crops of stored pictures, and back ---------------------

    def display_region(self, image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """The display-space crop ``box`` (integer edges inside the display picture) of a stored
        picture, in its dtype. Exact (a slice) unless the clip is anamorphic."""
        x0, y0, x1, y1 = (int(v) for v in box)
        if self.geometry_identity:
            return image[y0:y1, x0:x1]
        if not self.anamorphic:
            sx0, sy0, sx1, sy1 = (int(round(v)) for v in self.box_to_stored((x0, y0, x1, y1)))
            return self.orientation.apply(image[sy0:sy1, sx0:sx1])
        # Sample the stored picture at the crop's display pixel centres.
        to_stored = self.affine_to_stored() @ _translation(x0, y0)
        return _warp(np.asarray(image), to_stored, (x1 - x0, y1 - y0))

    def stored_region(
        self, crop: np.ndarray, box: tuple[int, int, int, int], stored_shape: tuple[int, ...]
    ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """A display-space crop at ``box`` put back on the stored grid: the stored crop and its
        box (x0, y0, x1, y1), clipped to the stored picture. Exact unless the clip is anamorphic
        (then resampled; the border the crop does not reach repeats its edge)."""
        x0, y0, x1, y1 = (int(v) for v in box)
        if self.geometry_identity:
            return crop, (x0, y0, x1, y1)
        if not self.anamorphic:
            stored_box = tuple(int(round(v)) for v in self.box_to_stored((x0, y0, x1, y1)))
            return self.orientation.undo(crop), stored_box  # type: ignore[return-value]
        height, width = stored_shape[:2]
        sx0, sy0, sx1, sy1 = self.box_to_stored((x0, y0, x1, y1))
        sx0, sy0 = max(0, int(np.floor(sx0))), max(0, int(np.floor(sy0)))
        sx1, sy1 = min(width, int(np.ceil(sx1))), min(height, int(np.ceil(sy1)))
        # stored-crop pixel -> stored pixel -> display pixel -> display-crop pixel
        to_crop = _translation(-x0, -y0) @ np.vstack([self.affine_to_display(), [0, 0, 1]]) @ _translation(sx0, sy0)
        return _warp(crop, to_crop[:2], (sx1 - sx0, sy1 - sy0)), (sx0, sy0, sx1, sy1)


def _apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ affine[:, :2].T + affine[:, 2]


def _translation(x: float, y: float) -> np.ndarray:
    return np.array([[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]])


def _warp(image: np.ndarray, inverse: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` sampled at ``inverse`` @ (output pixel) for every output pixel (bicubic)."""
    matrix = np.asarray(inverse, dtype=np.float64)[:2]
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)
