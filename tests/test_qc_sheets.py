"""Contact and boundary sheets draw what the analysis saw, whatever the patch's depth."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from fakes import FakeAnalyses, write_clip

from dubline.core import timing
from dubline.qc.sheets import boundary_sheet
from dubline.stages import media


def test_boundary_sheet_of_a_ten_bit_patch(tmp_path: Path) -> None:
    source = write_clip(tmp_path / "clip.mkv", frames=8)
    analysis = FakeAnalyses().analyse(source, None)
    frames = media.read_span(source, timing.frames_to_range(0, 8, Fraction(25)))
    patch = media.write_patch((f.image for f in frames), tmp_path / "patch.mov", "prores", Fraction(25))
    assert next(media.read_span(patch, timing.frames_to_range(0, 1, Fraction(25)))).image.dtype == np.uint16
    sheet = boundary_sheet(source, 0, patch, analysis.faces, [3, 6], tmp_path / "boundaries.png")
    image = cv2.imread(str(sheet))
    assert image is not None and image.dtype == np.uint8
    assert image.shape[0] > 2 * 100  # two bands of source-above-patch tiles
