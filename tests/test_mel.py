"""The Wav2Lip audio front end against the conformance kit, and the per-frame window convention."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from dubline.core.errors import InvalidInputError, InvalidRateError
from dubline.stages.speech.mel import mel_windows, wav2lip_mel


def test_mel_matches_official_golden(conformance):
    kit = conformance / "wav2lip"
    wave = np.load(kit / "wave_16k.npy")
    golden = np.load(kit / "mel_golden.npy")
    mel = wav2lip_mel(wave)
    assert mel.dtype == np.float32
    assert mel.shape == golden.shape == (80, 161)
    diff = float(np.abs(mel - golden).max())
    print(f"mel max abs diff vs golden: {diff:.3g}")
    assert diff <= 1e-4


def test_mel_of_silence_is_floor_and_of_tone_peaks_in_its_band():
    silence = wav2lip_mel(np.zeros(16000, dtype=np.float32))
    assert np.all(silence == -4.0)
    t = np.arange(16000) / 16000
    tone = wav2lip_mel((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    assert tone.shape == (80, 81)
    peak_band = int(np.argmax(tone[:, 40]))
    # A 1 kHz tone lands in the lower-middle mel bands, clearly above the floor.
    assert 20 < peak_band < 45 and tone[peak_band, 40] > 0


@pytest.mark.parametrize("bad", [np.zeros((2, 100), np.float32), np.zeros(0, np.float32), np.array([0.0, np.nan])])
def test_mel_rejects_bad_waveforms(bad):
    with pytest.raises(InvalidInputError):
        wav2lip_mel(bad)


def test_windows_follow_official_start_convention():
    columns = 161
    mel = np.tile(np.arange(columns, dtype=np.float32), (80, 1))  # column j holds the value j
    windows = mel_windows(mel, Fraction(25), frame_count=50)
    assert windows.shape == (50, 1, 80, 16) and windows.dtype == np.float32
    for i in range(50):
        start = int(i * 80 / 25)
        if start + 16 > columns:  # official end handling: the last 16 columns
            start = columns - 16
        np.testing.assert_array_equal(windows[i, 0, 0], np.arange(start, start + 16))


def test_windows_at_ntsc_rate_use_exact_rational_steps():
    mel = np.tile(np.arange(400, dtype=np.float32), (80, 1))
    rate = Fraction(30000, 1001)
    windows = mel_windows(mel, rate, frame_count=100)
    starts = windows[:, 0, 0, 0].astype(int)
    expected = [int(Fraction(80 * i) * Fraction(1001, 30000)) for i in range(100)]
    assert starts.tolist() == expected
    assert starts[30] == 80  # 30 frames at 29.97 fps is 1.001 s -> column 80.08


def test_short_spectrogram_is_padded_with_silence():
    mel = np.zeros((80, 5), dtype=np.float32)
    windows = mel_windows(mel, Fraction(25), frame_count=3)
    assert windows.shape == (3, 1, 80, 16)
    assert np.all(windows[:, 0, :, :5] == 0.0) and np.all(windows[:, 0, :, 5:] == -4.0)


def test_window_errors():
    mel = np.zeros((80, 50), dtype=np.float32)
    with pytest.raises(InvalidRateError):
        mel_windows(mel, Fraction(0), 3)
    with pytest.raises(InvalidInputError):
        mel_windows(np.zeros((40, 50), np.float32), Fraction(25), 3)
    with pytest.raises(InvalidInputError):
        mel_windows(mel, Fraction(25), -1)
    assert mel_windows(mel, Fraction(25), 0).shape == (0, 1, 80, 16)
