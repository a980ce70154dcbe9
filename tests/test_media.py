"""read_span / probe: exact frames by content for every codec x rate, VFR, real media, bad input."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import opentimelineio as otio
import pytest
from dubline.apps.cli import main as cli
from dubline.core.errors import (
    DublineError,
    InvalidRangeError,
    MediaDecodeError,
    MediaNotFoundError,
    NoStreamError,
)
from dubline.core.timing import frames_to_range, range_to_frames
from dubline.stages import media
from mediagen import AudioSpec, decode_index, make_audio, make_video, spec_for, truncate

RATES = [Fraction(25), Fraction(30), Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60), Fraction(1350, 61)]
CONTAINER = {"h264": ".mp4", "hevc": ".mp4", "mpeg4": ".mp4", "prores": ".mov", "dnxhr": ".mov", "mjpeg": ".mov"}
FRAMES = 20  # GOP 6 for the inter codecs: keyframes at 0, 6, 12, 18


def spans(count: int) -> list[tuple[int, int]]:
    """Start, end, across GOP boundaries, length 1 (first, middle, last) and the whole clip."""
    return [(0, 3), (count - 3, count), (4, 9), (5, 14), (0, 1), (7, 8), (count - 1, count), (0, count)]


def read_indices(path: Path, first: int, end: int, rate: Fraction) -> tuple[list[int], list[int]]:
    frames = list(media.read_span(path, frames_to_range(first, end, rate)))
    return [frame.index for frame in frames], [decode_index(frame.image) for frame in frames]


@pytest.mark.parametrize("rate", RATES, ids=lambda rate: str(rate).replace("/", "_"))
@pytest.mark.parametrize("codec", list(CONTAINER))
def test_read_span_exact_frames(tmp_path, codec, rate):
    path = make_video(tmp_path / f"clip{CONTAINER[codec]}", spec_for(codec, rate=rate, frames=FRAMES))
    info = media.probe(path).video
    assert info.rate == rate
    assert info.frame_count == FRAMES
    assert not info.variable_rate
    for first, end in spans(FRAMES):
        indices, content = read_indices(path, first, end, rate)
        expected = list(range(first, end))
        assert indices == expected, (first, end)
        assert content == expected, (first, end)


@pytest.mark.parametrize("rate", [Fraction(30000, 1001), Fraction(1350, 61)], ids=["29.97", "1350_61"])
def test_read_span_matroska_without_frame_count(tmp_path, rate):
    # Matroska stores no frame count: it is computed from the duration.
    path = make_video(tmp_path / "clip.mkv", spec_for("h264", rate=rate, frames=FRAMES))
    assert media.probe(path).video.frame_count == FRAMES
    for first, end in spans(FRAMES):
        assert read_indices(path, first, end, rate) == (list(range(first, end)),) * 2


def test_span_given_at_another_rate_resolves_against_source_rate(tmp_path):
    rate = Fraction(24000, 1001)
    path = make_video(tmp_path / "clip.mp4", spec_for("h264", rate=rate, frames=FRAMES))
    span = frames_to_range(7, 13, rate)
    at_48k = otio.opentime.TimeRange(span.start_time.rescaled_to(48000), span.duration.rescaled_to(48000))
    assert [decode_index(f.image) for f in media.read_span(path, at_48k)] == list(range(7, 13))


def test_frames_carry_pts_and_time(tmp_path):
    rate = Fraction(30000, 1001)
    path = make_video(tmp_path / "clip.mp4", spec_for("h264", rate=rate, frames=FRAMES))
    info = media.probe(path).video
    for frame in media.read_span(path, frames_to_range(10, 12, rate)):
        assert frame.pts * info.time_base * rate == frame.index
        assert frame.time == otio.opentime.RationalTime(frame.index, float(rate))
        assert frame.image.shape == (48, 64, 3) and frame.image.dtype == np.uint8


def test_read_span_streams(tmp_path):
    path = make_video(tmp_path / "clip.mp4", spec_for("h264", frames=FRAMES))
    frames = media.read_span(path, frames_to_range(0, FRAMES, Fraction(25)))
    assert isinstance(frames, Iterator)
    assert decode_index(next(frames).image) == 0
    frames.close()  # stopping early releases the file


def test_variable_frame_rate_is_read_on_its_conform_grid(tmp_path):
    """Irregular steps: every slot of the conform grid shows the last frame at or before its
    middle, whatever time base the span is given in (the rule itself: test_footage_media.py)."""
    rng = np.random.default_rng(7)
    steps = rng.choice([20, 33, 40, 40, 60], size=40)
    pts = np.concatenate([[0], np.cumsum(steps)[:-1]]).tolist()
    spec = spec_for("h264", frames=40, pts=pts, time_base=Fraction(1, 1000))
    path = make_video(tmp_path / "vfr.mp4", spec)
    info = media.probe(path).video
    assert info.variable_rate and info.conform is not None
    assert info.conform.source_frames == 40
    rate = info.rate

    def shown(slot: int) -> int:
        middle = (slot + Fraction(1, 2)) / rate * 1000
        return max(i for i, p in enumerate(pts) if p <= middle)

    assert info.frame_count == round(Fraction(pts[-1], 1000) * rate) + 1
    assert shown(info.frame_count - 1) == 39
    for t0, t1 in [(0.0, 0.3), (0.41, 0.9), (0.5, 0.6)]:
        span = otio.opentime.TimeRange(
            otio.opentime.RationalTime(t0 * 1000, 1000), otio.opentime.RationalTime((t1 - t0) * 1000, 1000)
        )
        first, end = range_to_frames(span, rate)
        frames = list(media.read_span(path, span))
        assert [f.index for f in frames] == list(range(first, end))
        assert [decode_index(f.image) for f in frames] == [shown(k) for k in range(first, end)], (t0, t1)
        seconds = [Fraction(f.pts - info.start_pts) * info.time_base for f in frames]
        assert seconds == [Fraction(pts[shown(k)], 1000) for k in range(first, end)]


def test_probe_reports_timecode_colour_and_audio(tmp_path):
    colour = {"color_primaries": 1, "color_trc": 1, "colorspace": 1, "color_range": 1}
    path = make_video(
        tmp_path / "tagged.mov",
        spec_for("h264", rate=Fraction(24000, 1001), frames=12, timecode="01:02:03:04", colour=colour),
        audio=AudioSpec(rate=48000, channels=2, seconds=0.5),
    )
    info = media.probe(path)
    assert info.format_name.startswith("mov")
    assert info.size_bytes == path.stat().st_size
    video = info.video
    assert (video.codec, video.width, video.height, video.pixel_format) == ("h264", 64, 48, "yuv420p")
    assert video.rate == Fraction(24000, 1001)
    assert video.duration == otio.opentime.RationalTime(12, 24000 / 1001)
    assert video.start_timecode == "01:02:03:04"
    assert video.colour == media.ColourTags("bt709", "bt709", "bt709", "tv")
    [audio] = info.audio
    assert (audio.codec, audio.sample_rate, audio.channels, audio.layout) == ("pcm_s16le", 48000, 2, "stereo")
    assert audio.duration_seconds == pytest.approx(0.5, abs=0.03)


def test_probe_cli_table_and_json(tmp_path, capsys, monkeypatch):
    # Only this command: the test should not depend on the other commands' modules.
    monkeypatch.setattr(cli, "COMMANDS", ["probe"])
    path = make_video(tmp_path / "clip.mov", spec_for("prores", rate=Fraction(30000, 1001), frames=6, timecode="00:59:59;28"))
    assert cli.main(["probe", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["video"]["rate"] == "30000/1001"
    assert data["video"]["frame_count"] == 6
    assert data["video"]["start_timecode"] == "00:59:59;28"
    assert cli.main(["probe", str(path)]) == 0
    table = capsys.readouterr().out
    assert "30000/1001 (29.970 fps)" in table and "00:59:59;28" in table
    assert cli.main(["probe", str(tmp_path / "missing.mov")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --------------------------------------------------------------------------- real media


@pytest.mark.parametrize("name, frame_count", [("speaker_a.mp4", 125), ("speaker_b.mp4", 122)])
def test_shared_media_whole_clip_and_mid_span(shared_media, name, frame_count):
    path = shared_media / name
    info = media.probe(path).video
    assert info.frame_count == frame_count and info.rate == 25 and not info.variable_rate
    digests = []
    for frame in media.read_span(path, frames_to_range(0, frame_count, info.rate)):
        assert frame.index == len(digests)
        digests.append(hashlib.sha1(frame.image.tobytes()).hexdigest())
    assert len(digests) == frame_count
    # A seek into the middle must land on exactly the same pictures as decoding from the start.
    mid = [hashlib.sha1(f.image.tobytes()).hexdigest() for f in media.read_span(path, frames_to_range(61, 80, info.rate))]
    assert mid == digests[61:80]
    last = list(media.read_span(path, frames_to_range(frame_count - 1, frame_count, info.rate)))
    assert [f.index for f in last] == [frame_count - 1]


# --------------------------------------------------------------------------- bad input


def assert_typed(error: BaseException, builtin: type[BaseException]) -> None:
    assert isinstance(error, DublineError) and isinstance(error, builtin)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("media") / "clip.mp4", spec_for("h264", frames=FRAMES))


WHOLE = frames_to_range(0, 5, Fraction(25))


@pytest.mark.parametrize("call", ["probe", "read_span", "read_audio"])
def test_missing_file_and_directory(tmp_path, call):
    def run(path):
        if call == "probe":
            return media.probe(path)
        if call == "read_span":
            return media.read_span(path, WHOLE)
        return media.read_audio(path)

    with pytest.raises(MediaNotFoundError, match="does not exist") as info:
        run(tmp_path / "nope.mp4")
    assert_typed(info.value, FileNotFoundError)
    with pytest.raises(MediaNotFoundError, match="directory") as info:
        run(tmp_path)
    assert_typed(info.value, FileNotFoundError)


def test_non_media_file(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are not the frames you are looking for\n" * 50)
    with pytest.raises(MediaDecodeError, match="notes.mp4") as info:
        media.probe(path)
    assert_typed(info.value, ValueError)
    with pytest.raises(MediaDecodeError):
        media.read_span(path, WHOLE)


def test_truncated_synthetic_mp4(tmp_path, clip):
    # The mp4 muxer writes its index last: the first half has no index at all.
    half = truncate(clip, tmp_path / "half.mp4")
    with pytest.raises(MediaDecodeError) as info:
        media.probe(half)
    assert_typed(info.value, ValueError)


def test_truncated_faststart_mp4(tmp_path):
    # With the index up front the file still opens; the missing frames must be noticed.
    whole = tmp_path / "faststart.mp4"
    with av.open(str(whole), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(FRAMES):
            frame = av.VideoFrame(64, 48, "yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    half = truncate(whole, tmp_path / "half.mp4")
    with pytest.raises(MediaDecodeError, match="truncated"):
        media.probe(half)
    with pytest.raises(MediaDecodeError):
        list(media.read_span(half, frames_to_range(0, FRAMES, Fraction(25))))


def test_truncated_real_mp4(shared_media, tmp_path):
    half = truncate(shared_media / "speaker_a.mp4", tmp_path / "half.mp4")
    with pytest.raises(MediaDecodeError) as info:
        media.probe(half)
    assert_typed(info.value, ValueError)


def test_file_without_video_stream(tmp_path):
    wav = make_audio(tmp_path / "tone.wav", AudioSpec(seconds=0.2))
    assert media.probe(wav).video is None
    with pytest.raises(NoStreamError, match="no video stream") as info:
        media.read_span(wav, WHOLE)
    assert_typed(info.value, ValueError)


def test_empty_reversed_and_negative_spans(clip):
    for span in (
        frames_to_range(5, 5, Fraction(25)),
        frames_to_range(8, 3, Fraction(25)),
        frames_to_range(-2, 3, Fraction(25)),
    ):
        with pytest.raises(InvalidRangeError) as info:
            media.read_span(clip, span)
        assert_typed(info.value, ValueError)


def test_span_past_the_end_names_frame_count(clip):
    with pytest.raises(InvalidRangeError, match=f"has {FRAMES} frames"):
        media.read_span(clip, frames_to_range(15, FRAMES + 1, Fraction(25)))


class _LateSeekingContainer:
    """Wraps a PyAV container so keyframe seeks land up to half a second *after* the target,
    as some demuxers do (index by dts, open GOPs)."""

    def __init__(self, container, late_ticks: int) -> None:
        self._container = container
        self._late_ticks = late_ticks
        self.seeks: list[int] = []

    def seek(self, offset, *, backward=True, any_frame=False, stream=None):
        if offset > 0 and not any_frame:
            self.seeks.append(offset)
            offset += self._late_ticks
        return self._container.seek(offset, backward=backward, any_frame=any_frame, stream=stream)

    def __getattr__(self, name):
        return getattr(self._container, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._container.close()


def test_seek_landing_after_the_span_start_is_retried_further_back(tmp_path, monkeypatch):
    path = make_video(tmp_path / "clip.mp4", spec_for("h264", frames=60))
    time_base = media.probe(path).video.time_base
    opened = []
    from dubline.stages.media import read as media_read

    real_open = media_read.open_input

    def late_open(p):
        opened.append(_LateSeekingContainer(real_open(p), late_ticks=int(Fraction(1, 2) / time_base)))
        return opened[-1]

    monkeypatch.setattr(media_read, "open_input", late_open)
    assert read_indices(path, 31, 40, Fraction(25)) == (list(range(31, 40)),) * 2
    assert len(opened[-1].seeks) >= 2  # the first seek overshot and was retried


@pytest.mark.parametrize("codec", ["h264", "hevc", "mpeg4", "prores", "mjpeg"])
def test_read_frames_scattered_indices(tmp_path, codec):
    path = make_video(tmp_path / f"clip{CONTAINER[codec]}", spec_for(codec, frames=FRAMES))
    for indices in ([0], [FRAMES - 1], [3, 1, 3, 17, 8, 9, 0], list(range(FRAMES)), [5, 11, 12, 19]):
        frames = list(media.read_frames(path, indices))
        expected = sorted(set(indices))
        assert [f.index for f in frames] == expected, indices
        assert [decode_index(f.image) for f in frames] == expected, indices
    assert list(media.read_frames(path, [])) == []
    with pytest.raises(InvalidRangeError, match=f"has {FRAMES} frames"):
        media.read_frames(path, [2, FRAMES])


def test_read_frames_seeks_only_across_keyframes(tmp_path, monkeypatch):
    # GOP 6 (keyframes 0, 6, 12, 18): 1, 4 and 5 share a GOP (one pass), 13 and 16 another; a
    # keyframe-only codec (every frame a keyframe) decodes neighbours through.
    path = make_video(tmp_path / "clip.mp4", spec_for("h264", frames=FRAMES))
    seeks: list[int] = []
    real_seek = av.container.InputContainer.seek

    def counting_seek(self, *args, **kwargs):
        seeks.append(args[0] if args else kwargs.get("offset"))
        return real_seek(self, *args, **kwargs)

    monkeypatch.setattr(av.container.InputContainer, "seek", counting_seek)

    def passes(path: Path, indices: list[int]) -> int:
        """Seeks beyond those of reading one frame (opening, probing, the packet scan, one pass)."""
        list(media.read_frames(path, indices[:1]))  # the file's probed facts are remembered after this
        seeks.clear()
        assert [decode_index(f.image) for f in media.read_frames(path, indices)] == indices
        reading = len(seeks)
        seeks.clear()
        list(media.read_frames(path, indices[:1]))
        return 1 + reading - len(seeks)

    assert passes(path, [1, 4, 5, 13, 16]) == 2  # 1-5, then 13-16
    assert passes(path, [1, 7, 8]) == 2  # keyframe 6 lies between 1 and 7: seeking is cheaper
    intra = make_video(tmp_path / "intra.mov", spec_for("prores", frames=FRAMES))
    assert passes(intra, [2, 3, 5, 15]) == 2  # 2-5 decoded through, 15 alone
