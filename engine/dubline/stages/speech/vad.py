"""Voice activity from silero-vad (its TorchScript model ships in the wheel).

The model scores each 32 ms window (512 samples at 16 kHz) with a speech probability; silero's own
hysteresis (``get_speech_timestamps_from_probs``: threshold, minimum speech and silence lengths,
padding) turns those into speech segments. Probabilities are computed once and both are returned.

The model is loaded once per process through the model registry and is stateful (an RNN), so
calls are serialised by a lock. Importing ``silero_vad`` sets torch to one thread for the whole
process; we restore the caller's setting and use ``threads`` only while the VAD runs.
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from dubline.core.errors import InvalidInputError
from dubline.core.models import registry

SAMPLE_RATE = 16000
#: silero's window at 16 kHz.
WINDOW_SAMPLES = 512

_model_lock = threading.Lock()


@dataclass(frozen=True)
class VadParams:
    """silero-vad's segmenter settings (its defaults, except where noted)."""

    threshold: float = 0.5
    min_speech_ms: int = 250
    #: silero's default is 100 ms; a lip-sync mouth should close in pauses of two frames or more.
    min_silence_ms: int = 80
    speech_pad_ms: int = 30
    threads: int = 1


@dataclass(frozen=True)
class VoiceActivity:
    """Speech segments (seconds) and per-window speech probability (one value per 32 ms)."""

    segments: list[tuple[float, float]]
    probabilities: np.ndarray  # float32, window i covers samples [512 i, 512 (i + 1))
    window_s: float = WINDOW_SAMPLES / SAMPLE_RATE


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _load_model():
    import torch

    previous = torch.get_num_threads()
    # silero_vad.model calls torch.set_num_threads(1) at import; keep the process setting.
    from silero_vad import load_silero_vad

    torch.set_num_threads(previous)
    with warnings.catch_warnings():
        # silero's loader uses deprecated importlib/torch.jit APIs; not actionable for our users.
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_silero_vad()


def silero_model():
    """The process's silero-vad model (loaded on first use, kept in the model registry)."""
    return registry().get(("silero-vad", "cpu", "float32"), _load_model)


def detect_voice(samples: np.ndarray, params: VadParams = VadParams()) -> VoiceActivity:
    """Speech segments and probabilities of 16 kHz mono float32 audio."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise InvalidInputError(f"voice activity needs mono audio, got shape {samples.shape}")
    if samples.shape[0] < WINDOW_SAMPLES:
        return VoiceActivity([], np.zeros(0, np.float32))
    import torch
    from silero_vad.utils_vad import get_speech_timestamps_from_probs

    model = silero_model()
    with _model_lock, _torch_threads(params.threads), torch.inference_mode():
        probabilities = model.audio_forward(torch.from_numpy(samples)[None], SAMPLE_RATE)[0].numpy()
    stamps = get_speech_timestamps_from_probs(
        probabilities.tolist(),
        sampling_rate=SAMPLE_RATE,
        threshold=params.threshold,
        min_speech_duration_ms=params.min_speech_ms,
        min_silence_duration_ms=params.min_silence_ms,
        speech_pad_ms=params.speech_pad_ms,
        audio_length_samples=samples.shape[0],
    )
    segments = [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]
    return VoiceActivity(segments, probabilities.astype(np.float32))
