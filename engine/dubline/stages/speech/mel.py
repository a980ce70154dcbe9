"""The Wav2Lip audio front end: 16 kHz waveform -> 80-band log-mel, and per-frame mel windows.

This must match the official ``audio.melspectrogram`` bit for bit in spirit (to ~1e-5), because
the Wav2Lip generator and its expert discriminator were trained on exactly these features:

- pre-emphasis ``y[n] = x[n] - 0.97 x[n-1]`` (scipy ``lfilter([1, -0.97], [1])``),
- ``librosa.stft(n_fft=800, hop_length=200, win_length=800)`` with librosa's other defaults
  (Hann window, centred, constant padding),
- magnitude -> mel filterbank (sr 16000, n_fft 800, 80 mels, fmin 55, fmax 7600, librosa defaults:
  Slaney scale and area normalisation),
- ``20 * log10(max(1e-5, x)) - 20`` (min level -100 dB, reference level 20 dB),
- symmetric normalisation ``clip(8 * (S + 100) / 100 - 4, -4, 4)``.

The work is done in float64 (the official code runs float32 audio through ``lfilter``, which
promotes to float64) and returned as float32.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np

from dubline.core.errors import InvalidInputError, InvalidRateError

SAMPLE_RATE = 16000
N_FFT = 800
HOP_LENGTH = 200
WIN_LENGTH = 800
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0
#: Mel columns per second: SAMPLE_RATE / HOP_LENGTH.
MEL_COLUMNS_PER_SECOND = SAMPLE_RATE // HOP_LENGTH
#: The model's audio window: 16 mel columns = 0.2 s.
WINDOW_COLUMNS = 16
#: Value of a silent column after normalisation; used to pad audio shorter than one window.
SILENCE_VALUE = -MAX_ABS_VALUE


@lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    """The [80, 401] filterbank, built once per process (librosa builds it in ~ms, but per call adds up)."""
    import librosa

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)


def wav2lip_mel(wave16k: np.ndarray) -> np.ndarray:
    """Log-mel spectrogram [80, T] float32 of a mono 16 kHz waveform, T = 1 + len // 200."""
    import librosa
    from scipy import signal

    wave = np.asarray(wave16k)
    if wave.ndim != 1:
        raise InvalidInputError(f"wav2lip_mel needs a mono 1-D waveform, got shape {wave.shape}")
    if wave.size == 0:
        raise InvalidInputError("wav2lip_mel got an empty waveform")
    if not np.all(np.isfinite(wave)):
        raise InvalidInputError("wav2lip_mel got a waveform with NaN or infinite samples")

    emphasised = signal.lfilter([1.0, -PREEMPHASIS], [1.0], wave.astype(np.float64))
    spectrum = librosa.stft(y=emphasised, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH)
    mel = _mel_basis() @ np.abs(spectrum)
    min_level = 10.0 ** (MIN_LEVEL_DB / 20.0)
    decibels = 20.0 * np.log10(np.maximum(min_level, mel)) - REF_LEVEL_DB
    normalised = (2 * MAX_ABS_VALUE) * ((decibels - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE
    return np.clip(normalised, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)


def mel_windows(
    mel: np.ndarray, fps: Fraction, frame_count: int, window: int = WINDOW_COLUMNS
) -> np.ndarray:
    """The model's audio input per video frame: [frame_count, 1, 80, window] float32.

    Frame ``i`` (0-based from the start of ``mel``) gets ``mel[:, s:s+window]`` with
    ``s = int(i * 80 / fps)``, computed exactly with ``Fraction`` (the official code uses the float
    ``80. / fps``, which can land one column lower when the product is an integer in exact
    arithmetic; exact is the intent). As in the official inference loop, a window that would run
    past the end uses the last ``window`` columns instead. A spectrogram shorter than one window is
    padded on the right with silence (-4), which the official code would crash on.
    """
    if mel.ndim != 2 or mel.shape[0] != N_MELS:
        raise InvalidInputError(f"mel_windows needs a [{N_MELS}, T] spectrogram, got shape {mel.shape}")
    rate = Fraction(fps)
    if rate <= 0:
        raise InvalidRateError(f"mel_windows needs a positive frame rate, got {fps}")
    if frame_count < 0:
        raise InvalidInputError(f"mel_windows got a negative frame_count {frame_count}")
    if window < 1:
        raise InvalidInputError(f"mel_windows got a non-positive window {window}")

    columns = mel.shape[1]
    if columns < window:
        padding = np.full((N_MELS, window - columns), SILENCE_VALUE, dtype=mel.dtype)
        mel = np.concatenate([mel, padding], axis=1)
        columns = window

    step = Fraction(MEL_COLUMNS_PER_SECOND) / rate
    starts = np.array([int(i * step) for i in range(frame_count)], dtype=np.int64)
    starts = np.minimum(starts, columns - window)
    gather = starts[:, None] + np.arange(window)[None, :]
    windows = mel[:, gather]  # [80, N, window]
    return np.ascontiguousarray(windows.transpose(1, 0, 2)[:, None, :, :], dtype=np.float32)
