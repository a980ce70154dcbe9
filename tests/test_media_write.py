"""write_patch: round trips keep frame count, rate, timecode, colour; atomic, never clobbers."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from dubline.core.errors import (
    CancelledError,
    DublineError,
    InvalidInputError,
    InvalidRateError,
    OutputExistsError,
    OutputPathError,
)
from dubline.core.timing import frames_to_range
from dubline.stages import media
from mediagen import audio_pattern, decode_index, pattern_image

BT709 = media.ColourTags("bt709", "bt709", "bt709", "tv")
# (codec, suffix, size, rate, start timecode): every output codec, rates and timecodes rotated.
CASES = [
    ("prores", ".mov", (96, 64), Fraction(24000, 1001), "01:00:00:00"),
    ("prores4444", ".mov", (96, 64), Fraction(30000, 1001), "00:59:59;28"),
    ("dnxhr", ".mov", (256, 128), Fraction(25), "10:00:00:00"),
    ("h264", ".mp4", (96, 64), Fraction(1350, 61), "00:00:10:00"),
    ("h264", ".mov", (96, 64), Fraction(60000, 1001), "00:10:00;04"),
    ("ffv1", ".mkv", (95, 63), Fraction(30), "23:59:59:29"),
    ("png", ".mov", (95, 63), Fraction(24), "00:00:00:00"),
]
COUNT = 9


def images(count: int, size: tuple[int, int], start: int = 0, alpha: bool = False) -> list[np.ndarray]:
    width, height = size
    return [pattern_image(start + i, width, height, alpha=alpha) for i in range(count)]


@pytest.mark.parametrize("codec, suffix, size, rate, timecode", CASES, ids=[f"{c[0]}{c[1]}" for c in CASES])
def test_round_trip_keeps_count_rate_timecode(tmp_path, codec, suffix, size, rate, timecode):
    frames = images(COUNT, size, start=100)
    out = media.write_patch(frames, tmp_path / f"patch{suffix}", codec, rate, timecode, BT709)
    assert out == tmp_path / f"patch{suffix}"
    info = media.probe(out).video
    assert info.frame_count == COUNT
    assert info.rate == rate
    assert info.start_timecode == timecode
    assert (info.width, info.height) == size
    back = list(media.read_span(out, frames_to_range(0, COUNT, rate)))
    assert [decode_index(frame.image) for frame in back] == list(range(100, 100 + COUNT))
    if codec in ("ffv1", "png"):  # lossless: bit-identical pixels
        assert all(np.array_equal(a, b.image) for a, b in zip(frames, back))
    if codec in ("prores", "dnxhr", "h264"):
        assert info.colour == BT709
    if codec == "ffv1":  # RGB storage keeps primaries and transfer; a YUV matrix does not apply
        assert (info.colour.primaries, info.colour.transfer) == ("bt709", "bt709")
    if suffix in (".mov", ".mp4"):  # the muxer turned the timecode into a tmcd track
        with av.open(str(out)) as container:
            [data] = [s for s in container.streams if s.type == "data"]
            assert data.metadata["handler_name"] == "TimeCodeHandler"
            assert data.metadata["timecode"] == timecode
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary left behind


def test_prores4444_keeps_alpha(tmp_path):
    frames = images(3, (96, 64), alpha=True)
    out = media.write_patch(frames, tmp_path / "matte.mov", "prores4444", Fraction(25))
    with av.open(str(out)) as container:
        decoded = [f.to_ndarray(format="rgba") for f in container.decode(video=0)]
    assert len(decoded) == 3
    assert np.abs(decoded[1][..., 3].astype(int) - frames[1][..., 3]).max() <= 2
    assert [decode_index(image) for image in decoded] == [0, 1, 2]


def test_accepts_video_frames_and_writes_audio(tmp_path):
    rate = Fraction(25)
    source = media.write_patch(images(10, (64, 48)), tmp_path / "src.mkv", "ffv1", rate)
    frames = media.read_span(source, frames_to_range(2, 8, rate))  # VideoFrame objects, streamed
    sample_rate = 48000
    n = round(6 / 25 * sample_rate)
    samples = np.stack([audio_pattern(np.arange(n), c, sample_rate) for c in range(2)])
    out = media.write_patch(
        frames, tmp_path / "patch.mov", "prores", rate, "01:00:00:00", audio=media.AudioClip(samples, sample_rate)
    )
    info = media.probe(out)
    assert info.video.frame_count == 6
    [audio] = info.audio
    assert (audio.codec, audio.sample_rate, audio.channels) == ("pcm_s16le", sample_rate, 2)
    back = media.read_audio(out, None, rate=sample_rate, mono=False)
    assert back.samples.shape == (2, n)
    assert np.abs(back.samples - samples).max() < 1e-4  # s16 quantisation only, sample-aligned


def test_never_overwrites_unless_asked(tmp_path):
    path = tmp_path / "patch.mov"
    path.write_bytes(b"an editor's file")
    with pytest.raises(OutputExistsError, match="overwrite") as info:
        media.write_patch(images(2, (64, 48)), path, "png", Fraction(25))
    assert isinstance(info.value, DublineError) and isinstance(info.value, FileExistsError)
    assert path.read_bytes() == b"an editor's file"
    media.write_patch(images(2, (64, 48)), path, "png", Fraction(25), overwrite=True)
    assert media.probe(path).video.frame_count == 2


def test_missing_output_directory(tmp_path):
    with pytest.raises(OutputPathError, match="does not exist") as info:
        media.write_patch(images(2, (64, 48)), tmp_path / "no" / "patch.mov", "png", Fraction(25))
    assert isinstance(info.value, DublineError) and isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("interruption", [CancelledError("cancelled"), KeyboardInterrupt(), RuntimeError("boom")])
def test_interrupted_write_leaves_nothing(tmp_path, interruption):
    def frames():
        yield from images(4, (64, 48))
        raise interruption

    with pytest.raises(type(interruption)):
        media.write_patch(frames(), tmp_path / "patch.mov", "prores", Fraction(25))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(frames=[]), InvalidInputError, "no frames"),
        (dict(codec="xvid"), InvalidInputError, "unknown patch codec"),
        (dict(path="patch.mp4", codec="prores"), InvalidInputError, ".mov"),
        (dict(rate="fast"), InvalidRateError, "fast"),
        (dict(rate="0"), InvalidRateError, "positive"),
        (dict(frames=images(2, (63, 48)), codec="h264"), InvalidInputError, "even"),
        (dict(frames=images(2, (64, 48)), codec="dnxhr"), InvalidInputError, "256x120"),
        (dict(frames=images(2, (64, 48), alpha=True)), InvalidInputError, "channels"),
        (dict(frames=[np.zeros((48, 64, 3), np.float32)]), InvalidInputError, "uint8"),
        (dict(frames=images(1, (64, 48)) + images(1, (32, 48))), InvalidInputError, "frame 1 is 32x48"),
        (dict(start_timecode="soon"), InvalidInputError, "timecode"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error, message):
    arguments = dict(frames=images(2, (64, 48)), path="patch.mov", codec="prores", rate=Fraction(25))
    arguments.update(kwargs)
    arguments["path"] = tmp_path / arguments["path"]
    with pytest.raises(error, match=message) as info:
        media.write_patch(**arguments)
    assert isinstance(info.value, ValueError)
    assert list(tmp_path.iterdir()) == []


def _camera_like_clip(path, colorspace: str | None, frames: int = 3, size: tuple[int, int] = (160, 96)) -> None:
    """Saturated gradients with mild noise, encoded 4:2:0 like camera footage (optionally tagged)."""
    width, height = size
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "10"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if colorspace:
            stream.codec_context.colorspace = av.video.reformatter.Colorspace[colorspace]
        for index in range(frames):
            image = np.stack([x * 200 // width + index * 9, y * 255 // height,
                              128 + 100 * np.sin((x + y + index) / 12)], axis=-1)
            image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
                format="yuv420p", dst_colorspace=colorspace)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize("colorspace", [None, "ITU709"])
@pytest.mark.parametrize("codec,min_psnr", [("prores", 50.0), ("prores4444", 55.0)])
def test_decoded_frames_survive_a_patch_round_trip_unbiased(tmp_path, codec, min_psnr, colorspace):
    """What a patch does to pixels it leaves alone: decode the source, write, decode again."""
    source = tmp_path / "source.mp4"
    _camera_like_clip(source, colorspace)
    info = media.probe(source)
    span = frames_to_range(0, info.video.frame_count, info.video.rate)
    frames = [frame.image for frame in media.read_span(source, span)]
    out = media.write_patch(frames, tmp_path / "patch.mov", codec, info.video.rate, colour_tags=info.video.colour)
    for original, decoded in zip(frames, (frame.image for frame in media.read_span(out, span))):
        error = decoded.astype(np.float64) - original
        assert 10 * np.log10(255.0**2 / np.mean(error**2)) >= min_psnr
        # A truncating YCbCr->RGB path, or encoding with another matrix than the tagged one,
        # shifts every pixel the same way by a level or more.
        assert np.abs(error.reshape(-1, 3).mean(axis=0)).max() < 0.3
