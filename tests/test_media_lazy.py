"""Lazy RGB pictures: a slice converts only its box, and every pixel equals the whole frame's
conversion; anything else converts the whole frame; overlaid pictures read as their eager copies."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from dubline.core.timing import frames_to_range
from dubline.stages import media
from dubline.stages.media import lazy
from dubline.stages.media.colour import to_rgb

BT709 = 1
# Every planar Y'CbCr layout a source comes in, 8 and 10 bits, JPEG range too.
FORMATS = ["yuv420p", "yuv422p", "yuv444p", "yuvj420p", "yuv420p10le", "yuv422p10le", "yuv444p10le", "yuv420p12le"]
SIZES = [(90, 160), (91, 163)]  # odd sizes: converted whole (swscale spreads their chroma by the size's ratio)


def noisy_frame(rng: np.random.Generator, pix_fmt: str, height: int, width: int) -> av.VideoFrame:
    """Independent random samples in every plane: chroma that changes between every pair, the
    hardest case for a box converted on its own."""
    frame = av.VideoFrame(width, height, pix_fmt)
    deep = pix_fmt.endswith("le")
    top = (1 << int(pix_fmt[-4:-2])) - 1 if deep else 255
    for plane in frame.planes:
        dtype = np.uint16 if deep else np.uint8
        samples = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // np.dtype(dtype).itemsize)
        samples[:, : plane.width] = rng.integers(0, top + 1, (plane.height, plane.width), dtype=dtype)
    frame.colorspace = BT709
    frame.color_range = 2 if pix_fmt.startswith("yuvj") else 1
    return frame


def random_box(rng: np.random.Generator, height: int, width: int) -> tuple[int, int, int, int]:
    y0, x0 = int(rng.integers(0, height - 1)), int(rng.integers(0, width - 1))  # odd corners too
    return y0, min(height, y0 + int(rng.integers(1, height // 2))), x0, min(width, x0 + int(rng.integers(1, width // 2)))


@pytest.mark.parametrize("pix_fmt", FORMATS)
@pytest.mark.parametrize("height, width", SIZES)
def test_a_slice_is_the_whole_frames_conversion_of_its_box(pix_fmt, height, width):
    rng = np.random.default_rng(11)
    for trial in range(10):
        frame = noisy_frame(rng, pix_fmt, height, width)
        whole = to_rgb(frame)[0]
        picture = media.LazyImage(frame)
        assert (picture.shape, picture.dtype) == (whole.shape, whole.dtype)
        for _ in range(3):  # boxes read one after the other grow one window
            y0, y1, x0, x1 = random_box(rng, height, width)
            assert np.array_equal(picture[y0:y1, x0:x1], whole[y0:y1, x0:x1]), (pix_fmt, trial, (y0, y1, x0, x1))
            assert np.array_equal(media.LazyImage(frame)[y0:y1, x0:x1], whole[y0:y1, x0:x1])
        assert np.array_equal(picture[5:20, 7:30, 1], whole[5:20, 7:30, 1])
        assert np.array_equal(picture[-10:, :12], whole[-10:, :12])


def test_a_box_converted_without_context_would_differ():
    """The context is what makes the boxes exact (else the test above proves nothing)."""
    rng = np.random.default_rng(2)
    frame = noisy_frame(rng, "yuv420p", 90, 160)
    whole = to_rgb(frame)[0]
    picture = media.LazyImage(frame)
    original, lazy.CONTEXT_PX = lazy.CONTEXT_PX, 0
    try:
        assert not np.array_equal(picture[20:50, 30:90], whole[20:50, 30:90])
    finally:
        lazy.CONTEXT_PX = original


def test_only_the_read_boxes_are_converted_until_the_whole_is_asked_for():
    rng = np.random.default_rng(4)
    frame = noisy_frame(rng, "yuv420p", 180, 320)
    whole = to_rgb(frame)[0]
    picture = media.LazyImage(frame)
    assert picture.converted_share == 0.0
    picture[40:80, 100:160]
    picture[50:70, 120:150]  # inside the window: nothing more converted
    assert picture.converted_share == pytest.approx(40 * 60 / (180 * 320))
    picture[30:90, 90:170]  # the window grows to hold both
    assert picture.converted_share == pytest.approx(60 * 80 / (180 * 320))
    assert np.array_equal(np.asarray(picture), whole)
    assert picture.converted_share == 1.0
    assert np.array_equal(picture.astype(np.int32), whole.astype(np.int32))  # ndarray methods act on the whole
    assert np.array_equal(picture + 1, whole + 1) and np.array_equal(picture == whole, np.ones(whole.shape, bool))


def test_a_window_past_half_the_picture_converts_the_whole():
    frame = noisy_frame(np.random.default_rng(5), "yuv422p", 100, 100)
    picture = media.LazyImage(frame)
    picture[0:80, 0:80]
    assert picture.converted_share == 1.0
    assert np.array_equal(picture[0:80, 0:80], to_rgb(frame)[0][0:80, 0:80])


@pytest.mark.parametrize("pix_fmt", ["nv12", "gray", "rgb24"])
def test_other_layouts_convert_whole_and_still_match(pix_fmt):
    rgb = np.random.default_rng(6).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
    picture = media.LazyImage(frame)
    assert np.array_equal(picture[10:30, 20:50], to_rgb(frame)[0][10:30, 20:50])
    assert picture.converted_share == 1.0


def test_pictures_are_read_only_and_alpha_is_refused():
    picture = media.LazyImage(noisy_frame(np.random.default_rng(7), "yuv420p", 64, 64))
    with pytest.raises(ValueError):
        picture[0:10, 0:10][0, 0] = 0
    with pytest.raises(ValueError):
        media.LazyImage(av.VideoFrame(16, 16, "yuva420p"))


def test_overlaid_reads_as_the_eager_copy_and_stays_lazy():
    rng = np.random.default_rng(8)
    frame = noisy_frame(rng, "yuv420p10le", 120, 200)
    whole = to_rgb(frame)[0]
    picture = media.LazyImage(frame)
    first = rng.integers(0, 65536, (30, 50, 3), dtype=np.uint16)
    second = rng.integers(0, 65536, (20, 20, 3), dtype=np.uint16)
    layered = media.overlaid(media.overlaid(picture, 40, 60, first), 60, 100, second)
    eager = media.overlaid(media.overlaid(whole, 40, 60, first), 60, 100, second)
    assert isinstance(layered, media.OverlaidImage) and isinstance(eager, np.ndarray)
    for y0, y1, x0, x1 in [(35, 95, 55, 125), (50, 70, 90, 110), (40, 41, 60, 61), (69, 90, 119, 121)]:
        assert np.array_equal(layered[y0:y1, x0:x1], eager[y0:y1, x0:x1])
    assert picture.converted_share < 1.0
    for _ in range(20):
        y0, y1, x0, x1 = random_box(rng, 120, 200)
        assert np.array_equal(layered[y0:y1, x0:x1], eager[y0:y1, x0:x1])
    assert np.array_equal(np.asarray(layered), eager)
    assert np.array_equal(whole, to_rgb(frame)[0])  # the base is not written
    with pytest.raises(ValueError, match="not inside"):
        media.overlaid(picture, 110, 0, first)


@pytest.mark.parametrize("codec, deep", [("h264", False), ("h264", True), ("prores", True), ("dnxhr", False)])
def test_read_span_with_coded_pictures_gives_lazy_images_of_the_same_pixels(tmp_path, codec, deep):
    """Decoded frames carry properties a frame built in Python lacks (H.264's chroma siting):
    their boxes still convert as the whole frame does."""
    rng = np.random.default_rng(9)
    top = 65535 if deep else 255
    images = [rng.integers(0, top + 1, (128, 256, 3), dtype=np.uint16 if deep else np.uint8) for _ in range(3)]
    clip = media.write_patch(images, tmp_path / f"clip{media.PATCH_CODECS[codec].suffixes[0]}", codec, Fraction(25))
    span = frames_to_range(0, 3, Fraction(25))
    for eager, deferred in zip(media.read_span(clip, span), media.read_span(clip, span, keep_coded=True)):
        assert isinstance(deferred.image, media.LazyImage) and isinstance(eager.image, np.ndarray)
        for _ in range(6):
            y0, y1, x0, x1 = random_box(rng, 128, 256)
            assert np.array_equal(media.LazyImage(deferred.coded)[y0:y1, x0:x1], eager.image[y0:y1, x0:x1])
        assert np.array_equal(deferred.image[10:40, 20:90], eager.image[10:40, 20:90])
        assert np.array_equal(np.asarray(deferred.image), eager.image)


def test_read_frames_with_coded_pictures_gives_lazy_images_of_the_same_pixels(tmp_path):
    rng = np.random.default_rng(10)
    images = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(6)]
    clip = media.write_patch(images, tmp_path / "clip.mp4", "h264", Fraction(25))
    eager = list(media.read_frames(clip, [1, 4]))
    deferred = list(media.read_frames(clip, [1, 4], keep_coded=True))
    assert [f.index for f in deferred] == [f.index for f in eager] == [1, 4]
    for want, got in zip(eager, deferred):
        assert isinstance(got.image, media.LazyImage)
        assert np.array_equal(got.image[8:40, 16:80], want.image[8:40, 16:80])
        assert np.array_equal(np.asarray(got.image), want.image)


def test_threads_reading_one_picture_at_once_get_its_exact_pixels():
    """A backend's workers, the compositor and the encoder read the same frame on different
    threads: a window grown under one thread's read never hands another a wrong view."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(12)
    frames = [noisy_frame(rng, "yuv420p", 240, 320) for _ in range(8)]
    wholes = [to_rgb(frame)[0] for frame in frames]
    pictures = [media.LazyImage(frame) for frame in frames]
    boxes = [random_box(rng, 240, 320) for _ in range(64)]

    def read(task: int) -> bool:
        picture, whole = pictures[task % 8], wholes[task % 8]
        y0, y1, x0, x1 = boxes[task]
        return np.array_equal(picture[y0:y1, x0:x1], whole[y0:y1, x0:x1])

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(read, range(64)))


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv422p", "yuv420p10le"])
def test_thin_boxes_at_the_picture_edges_are_exact(pix_fmt):
    """A strip a pixel or two wide at an edge, converted with only its context, is a picture so
    small that swscale converted it differently (``planes.MIN_PART_PX``)."""
    frame = noisy_frame(np.random.default_rng(14), pix_fmt, 90, 160)
    whole = to_rgb(frame)[0]
    for size in (1, 2, 3):
        for y0, y1 in [(0, size), (90 - size, 90), (40, 40 + size)]:
            for x0, x1 in [(14, 57), (0, size), (160 - size, 160)]:
                got = media.LazyImage(frame)[y0:y1, x0:x1]
                assert np.array_equal(got, whole[y0:y1, x0:x1]), (pix_fmt, (y0, y1, x0, x1))
