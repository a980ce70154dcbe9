"""The display matrix: how a player turns stored pixels upright (phones store portrait video
sideways and tag it), as exact array and coordinate operations.

FFmpeg's display matrix (9 int32s, ``a b u c d v x y w``; a..d in 16.16 fixed point) maps a stored
pixel position (p, q) to the displayed one as p' = a*p + c*q, q' = b*p + d*q (then translated so
the picture starts at 0), with y pointing down: QuickTime's track matrix, which FFmpeg reads from
and writes to MP4/MOV ``tkhd`` and Matroska. dubline only honours the eight exact orientations
(multiples of 90 degrees, optionally mirrored); any other matrix is reported and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_ONE = 1 << 16  # 1.0 in 16.16 fixed point


@dataclass(frozen=True)
class Orientation:
    """Stored -> display as a signed permutation: ``swap`` exchanges x and y, then ``flip_x`` /
    ``flip_y`` mirror the result. The identity is Orientation()."""

    swap: bool = False
    flip_x: bool = False
    flip_y: bool = False

    @classmethod
    def from_matrix(cls, matrix: tuple[int, ...] | None) -> Orientation | None:
        """The orientation a display matrix describes; None when it is not one of the eight
        exact ones (a free rotation, a scale); Orientation() when there is no matrix."""
        if matrix is None:
            return cls()
        if len(matrix) != 9:
            return None
        a, b, c, d = (_sign(matrix[i]) for i in (0, 1, 3, 4))
        if a is None or b is None or c is None or d is None:
            return None
        if a != 0 and d != 0 and b == 0 and c == 0:
            return cls(False, a < 0, d < 0)
        if a == 0 and d == 0 and b != 0 and c != 0:
            # p' = c*q, q' = b*p: swap the axes, then mirror where the sign is negative.
            return cls(True, c < 0, b < 0)
        return None

    @property
    def identity(self) -> bool:
        return not (self.swap or self.flip_x or self.flip_y)

    @property
    def mirrored(self) -> bool:
        """A mirror image (determinant -1): the display is the stored picture seen from behind."""
        return self.swap != (self.flip_x != self.flip_y)

    @property
    def rotation(self) -> int:
        """Degrees the picture is turned clockwise for display, after a horizontal mirror of the
        stored picture when ``mirrored``: 0, 90, 180 or 270."""
        # The linear part as a matrix on (x, y) with y down; undo the mirror; read the angle.
        linear = self.matrix2()
        if self.mirrored:
            linear = linear @ np.array([[-1, 0], [0, 1]])
        return int(round(np.degrees(np.arctan2(linear[1, 0], linear[0, 0])))) % 360

    def matrix2(self) -> np.ndarray:
        """The 2x2 linear part, display = M @ stored (column vectors, y down)."""
        base = np.array([[0, 1], [1, 0]]) if self.swap else np.eye(2, dtype=int)
        return np.diag([-1 if self.flip_x else 1, -1 if self.flip_y else 1]) @ base

    def display_size(self, width: int, height: int) -> tuple[int, int]:
        return (height, width) if self.swap else (width, height)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The stored picture (H, W, ...) turned for display (a view where numpy allows)."""
        if self.swap:
            image = np.swapaxes(image, 0, 1)
        if self.flip_x:
            image = image[:, ::-1]
        if self.flip_y:
            image = image[::-1]
        return image

    def undo(self, image: np.ndarray) -> np.ndarray:
        """The inverse of ``apply``: a display-oriented picture back to stored orientation."""
        if self.flip_y:
            image = image[::-1]
        if self.flip_x:
            image = image[:, ::-1]
        if self.swap:
            image = np.swapaxes(image, 0, 1)
        return image

    def affine(self, width: int, height: int) -> np.ndarray:
        """2x3 affine: stored pixel-centre coordinates -> display ones, for a stored W x H picture."""
        out_width, out_height = self.display_size(width, height)
        linear = self.matrix2().astype(np.float64)
        offset = np.array([out_width - 1.0 if self.flip_x else 0.0, out_height - 1.0 if self.flip_y else 0.0])
        return np.hstack([linear, offset[:, None]])


def _sign(value: int) -> int | None:
    """-1, 0 or 1 for a 16.16 entry that is (almost exactly) that; None otherwise."""
    for target in (-1, 0, 1):
        if abs(value - target * _ONE) <= 16:
            return target
    return None


def describe(orientation: Orientation | None) -> str:
    if orientation is None:
        return "unsupported display matrix (ignored)"
    if orientation.identity:
        return "none"
    text = f"rotated {orientation.rotation}° clockwise" if orientation.rotation else "not rotated"
    return f"mirrored, then {text}" if orientation.mirrored else text
