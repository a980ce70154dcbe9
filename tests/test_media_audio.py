"""read_audio: sample-aligned spans for any rate / layout / sample format, resampled by PyAV."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from dubline.core.errors import InvalidRangeError, InvalidRateError, NoStreamError
from dubline.core.timing import frames_to_range
from dubline.stages import media
from mediagen import AudioSpec, audio_pattern, make_audio, make_video, spec_for

# Quantisation of each sample format (s24 travels in s32 frames).
TOLERANCE = {"s16": 2 / 32768, "s24": 2 / 2**23, "flt": 1e-7}


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("sample_format", ["s16", "s24", "flt"])
@pytest.mark.parametrize("rate", [44100, 48000])
def test_spans_are_sample_aligned(tmp_path, rate, sample_format, channels):
    path = make_audio(tmp_path / "pattern.wav", AudioSpec(rate, channels, sample_format, seconds=2.0))
    [info] = media.probe(path).audio
    assert (info.sample_rate, info.channels) == (rate, channels)
    for t0, t1 in [(0.0, 0.5), (0.3, 0.7), (1.23456, 1.9), (1.0 + 1 / rate, 1.0 + 2 / rate)]:
        clip = media.read_audio(path, (t0, t1), rate=rate, mono=False)
        first, count = round(t0 * rate), round((t1 - t0) * rate)
        assert clip.samples.shape == (channels, count) and clip.samples.dtype == np.float32
        expected = np.stack([audio_pattern(np.arange(first, first + count), c, rate) for c in range(channels)])
        assert np.abs(clip.samples - expected).max() <= TOLERANCE[sample_format], (t0, t1)


def test_span_past_the_end_is_padded_with_silence(tmp_path):
    rate = 48000
    path = make_audio(tmp_path / "short.wav", AudioSpec(rate, 1, "s16", seconds=1.0))
    clip = media.read_audio(path, (0.75, 1.5), rate=rate)
    assert clip.samples.shape == (36000,)
    expected = audio_pattern(np.arange(36000, 48000), 0, rate)
    assert np.abs(clip.samples[:12000] - expected).max() <= TOLERANCE["s16"]
    assert not clip.samples[12000:].any()


def test_whole_file_and_time_range(tmp_path):
    rate = 44100
    path = make_audio(tmp_path / "a.wav", AudioSpec(rate, 2, "flt", seconds=1.5))
    assert media.read_audio(path, None, rate=rate, mono=False).samples.shape == (2, round(1.5 * rate))
    # A TimeRange in video frames at 24000/1001: frames 10-20 start at 10*1001/24000 s.
    span = frames_to_range(10, 20, Fraction(24000, 1001))
    clip = media.read_audio(path, span, rate=rate, mono=False)
    first = round(10 * 1001 / 24000 * rate)
    assert clip.samples.shape == (2, round(10 * 1001 / 24000 * rate))
    assert np.array_equal(clip.samples[0], audio_pattern(np.arange(first, first + clip.samples.shape[1]), 0, rate))


def test_resampled_tone_keeps_phase(tmp_path):
    path = make_audio(tmp_path / "tone.wav", AudioSpec(44100, 2, "s24", seconds=2.0, tone_hz=440.0))
    clip = media.read_audio(path, (0.5, 1.5), rate=16000, mono=True)
    assert clip.sample_rate == 16000 and clip.samples.shape == (16000,)
    t = 0.5 + np.arange(16000) / 16000
    expected = 0.5 * np.sin(2 * np.pi * 440 * t)
    # A one-sample shift at 16 kHz would be off by up to 0.09; mono is the channel mean.
    assert np.abs(clip.samples - expected)[32:-32].max() < 1e-3


def test_audio_of_a_video_span_lines_up_with_frames(tmp_path):
    path = make_video(
        tmp_path / "av.mp4", spec_for("h264", frames=50), audio=AudioSpec(48000, 2, "s16", seconds=2.0, codec="aac", tone_hz=300.0)
    )
    clip = media.read_audio(path, frames_to_range(10, 20, Fraction(25)), rate=48000, mono=True)
    assert clip.samples.shape == (19200,)
    t = 0.4 + np.arange(19200) / 48000
    assert np.abs(clip.samples - 0.5 * np.sin(2 * np.pi * 300 * t)).max() < 0.03  # AAC is lossy


def test_shared_dubs_resample_to_16k(shared_media):
    for name, seconds in [("dub_en_48k_stereo.wav", 5.0), ("dub_en_16k.wav", 8.0), ("dub_ja_24bit.wav", 9.1)]:
        clip = media.read_audio(shared_media / name, (1.0, 2.5), rate=16000)
        assert clip.samples.shape == (24000,)
        assert np.abs(clip.samples).max() > 0.01  # speech, not silence
        info = media.probe(shared_media / name).audio[0]
        assert info.duration_seconds == pytest.approx(seconds, abs=0.1)


def test_audio_errors(tmp_path):
    video_only = make_video(tmp_path / "v.mp4", spec_for("h264", frames=5))
    with pytest.raises(NoStreamError, match="no audio stream"):
        media.read_audio(video_only)
    wav = make_audio(tmp_path / "a.wav", AudioSpec(seconds=0.2))
    for span in [(0.5, 0.5), (0.5, 0.1), (-0.1, 0.1), "soon"]:
        with pytest.raises(InvalidRangeError):
            media.read_audio(wav, span)
    with pytest.raises(InvalidRateError):
        media.read_audio(wav, rate=0)
