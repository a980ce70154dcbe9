"""Edited frames keep the source's coded samples outside the edited box; the box is coded as the
whole frame's conversion would code it."""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
from av.video.reformatter import VideoReformatter
from dubline.core.timing import frames_to_range
from dubline.stages import media
from dubline.stages.media.colour import FROM_RGB, to_rgb
from dubline.stages.media.edited import coded_picture

# (pixel format, 16-bit RGB): the formats patches are coded in from the same kind of source.
FORMATS = [("yuv420p", False), ("yuv422p", False), ("yuv444p", False), ("yuv420p10le", True), ("yuv422p10le", True),
           ("yuv444p10le", True)]
BT709 = 1
CHROMA_STEPS = {"yuv420": (2, 2), "yuv422": (1, 2), "yuv444": (1, 1)}


def planes(frame: av.VideoFrame) -> list[np.ndarray]:
    dtype = np.uint16 if frame.format.name.endswith("le") else np.uint8
    size = np.dtype(dtype).itemsize
    return [np.frombuffer(p, dtype).reshape(p.height, p.line_size // size)[:, : p.width].copy() for p in frame.planes]


def textured(rng: np.random.Generator, height: int, width: int, deep: bool) -> np.ndarray:
    """Smooth colour with noise: chroma that varies between neighbours, as skin and edges do."""
    top = 65535 if deep else 255
    coarse = rng.uniform(0, top, (height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC) + rng.normal(0, top / 40, (height, width, 3))
    return np.clip(image, 0, top).astype(np.uint16 if deep else np.uint8)


def coded_source(rng: np.random.Generator, pix_fmt: str, deep: bool, height: int = 90, width: int = 160) -> av.VideoFrame:
    rgb = av.VideoFrame.from_ndarray(textured(rng, height, width, deep), format="rgb48le" if deep else "rgb24")
    return rgb.reformat(format=pix_fmt, dst_colorspace=BT709, interpolation=FROM_RGB)


def whole_frame_coding(image: np.ndarray, pix_fmt: str) -> list[np.ndarray]:
    """What the encoder codes when it converts the whole RGB image (the reference)."""
    rgb = av.VideoFrame.from_ndarray(image, format="rgb48le" if image.dtype == np.uint16 else "rgb24")
    return planes(VideoReformatter().reformat(rgb, format=pix_fmt, dst_colorspace=BT709, interpolation=FROM_RGB))


@pytest.mark.parametrize("pix_fmt, deep", FORMATS)
def test_the_box_is_coded_as_the_whole_frame_would_be_and_the_rest_is_the_source(pix_fmt, deep):
    rng = np.random.default_rng(7)
    for trial in range(12):
        source = coded_source(rng, pix_fmt, deep)
        image = to_rgb(source)[0].copy()
        y0, x0 = int(rng.integers(0, 80)), int(rng.integers(0, 150))  # odd corners too
        y1, x1 = min(90, y0 + int(rng.integers(1, 40))), min(160, x0 + int(rng.integers(1, 60)))
        image[y0:y1, x0:x1] = textured(rng, y1 - y0, x1 - x0, deep)
        picture = coded_picture(media.EditedFrame(image, source, (y0, y1, x0, x1)), pix_fmt, BT709, None)
        assert picture is not None
        reference, original = whole_frame_coding(image, pix_fmt), planes(source)
        # The box grown to whole chroma samples (both luma rows of a 4:2:0 chroma row).
        step_y, step_x = CHROMA_STEPS[pix_fmt[:6]]
        cover = (y0 // step_y * step_y, min(90, -(-y1 // step_y) * step_y),
                 x0 // step_x * step_x, min(160, -(-x1 // step_x) * step_x))
        for got, whole, kept in zip(planes(picture), reference, original):
            sy, sx = -(-90 // got.shape[0]), -(-160 // got.shape[1])
            inside = np.zeros(got.shape, bool)
            inside[cover[0] // sy: cover[1] // sy, cover[2] // sx: cover[3] // sx] = True
            assert np.array_equal(got[inside], whole[inside]), (trial, pix_fmt)
            # Outside the box's chroma-aligned cover: the source's samples, exactly.
            assert np.array_equal(got[~inside], kept[~inside]), (trial, pix_fmt)
        # An edit changes what it covers (else the test above proves nothing).
        assert not np.array_equal(planes(picture)[0], original[0])


def test_an_unedited_frame_is_the_source_and_another_format_is_refused():
    rng = np.random.default_rng(3)
    source = coded_source(rng, "yuv420p", False)
    image = to_rgb(source)[0]
    picture = coded_picture(media.EditedFrame(image, source, None), "yuv420p", BT709, None)
    assert all(np.array_equal(a, b) for a, b in zip(planes(picture), planes(source)))
    assert coded_picture(media.EditedFrame(image, source, None), "yuv422p10le", BT709, None) is None
    assert coded_picture(media.EditedFrame(image[:, :80], source, None), "yuv420p", BT709, None) is None


def test_write_patch_takes_the_source_samples_outside_the_edited_box(tmp_path):
    rng = np.random.default_rng(5)
    source_images = [textured(rng, 64, 96, False) for _ in range(3)]
    source = media.write_patch(source_images, tmp_path / "source.mp4", "h264", Fraction(25))
    decoded = list(media.read_span(source, frames_to_range(0, 3, Fraction(25)), keep_coded=True))
    assert all(frame.coded is not None for frame in decoded)
    # The images say black everywhere but the box: only the box may come from them.
    edited = []
    for frame in decoded:
        image = np.zeros_like(frame.image)
        image[20:40, 30:60] = frame.image[20:40, 30:60]
        edited.append(media.EditedFrame(image, frame.coded, (20, 40, 30, 60)))
    patch = media.write_patch(edited, tmp_path / "patch.mp4", "h264", Fraction(25))
    for before, after in zip(decoded, media.read_span(patch, frames_to_range(0, 3, Fraction(25)))):
        difference = np.abs(after.image.astype(int) - before.image.astype(int))
        assert difference.mean() < 3  # the source again, give or take H.264's re-coding
    # Given as plain arrays, the same images do come out black: the samples came from the source.
    black = media.write_patch([e.image for e in edited], tmp_path / "black.mp4", "h264", Fraction(25))
    first = next(iter(media.read_span(black, frames_to_range(0, 1, Fraction(25))))).image
    assert first[:10, :10].max() < 20


EDGE_STRIPS = [(y0, y1, x0, x1) for size in (1, 2, 3) for y0, y1 in [(0, size), (90 - size, 90), (40, 40 + size)]
               for x0, x1 in [(14, 57), (0, size), (160 - size, 160)]]


@pytest.mark.parametrize("pix_fmt, deep", [("yuv420p", False), ("yuv422p", False), ("yuv420p10le", True)])
def test_thin_boxes_at_the_picture_edges_are_coded_as_the_whole_frame_would_be(pix_fmt, deep):
    """A box a row or two high at the top of a 4:2:0 picture, converted with only its context,
    made a region so small that swscale coded it differently (``planes.MIN_PART_PX``)."""
    rng = np.random.default_rng(13)
    step_y, step_x = CHROMA_STEPS[pix_fmt[:6]]
    for y0, y1, x0, x1 in EDGE_STRIPS:
        source = coded_source(rng, pix_fmt, deep)
        image = to_rgb(source)[0].copy()
        image[y0:y1, x0:x1] = textured(rng, y1 - y0, x1 - x0, deep)
        picture = coded_picture(media.EditedFrame(image, source, (y0, y1, x0, x1)), pix_fmt, BT709, None)
        cover = (y0 // step_y * step_y, -(-y1 // step_y) * step_y, x0 // step_x * step_x, -(-x1 // step_x) * step_x)
        for got, whole in zip(planes(picture), whole_frame_coding(image, pix_fmt)):
            sy, sx = -(-90 // got.shape[0]), -(-160 // got.shape[1])
            rows, cols = slice(cover[0] // sy, cover[1] // sy), slice(cover[2] // sx, cover[3] // sx)
            assert np.array_equal(got[rows, cols], whole[rows, cols]), (pix_fmt, (y0, y1, x0, x1))
