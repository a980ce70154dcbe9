"""Whisper features of the dub and the per-frame windows MuseTalk's UNet attends to.

As the official ``AudioProcessor`` (MuseTalk 1.5): the 16 kHz audio is cut into 30 s pieces, each
goes through ``WhisperFeatureExtractor`` (log-mel, zero-padded to 30 s) and whisper's encoder with
``output_hidden_states``; the L+1 hidden states (input of layer 0, outputs of the layers, the last
after the final layer norm) are stacked per 20 ms step, the pieces concatenated and cut to
``len // 320`` steps. Frame i attends to a window of 10 steps (two per 25-fps frame, padding 2
frames on each side) flattened time-major into 10*(L+1) tokens: token k = (step k // (L+1),
layer k % (L+1)), plus a sinusoidal positional encoding over the tokens. Steps outside the audio
are zeros, as officially.

Two deliberate differences from the official arithmetic, both invisible at 25 fps:

- the window's first step is ``floor(i * 50 / rate)`` with the exact rational rate, where the
  official code truncates the rate to an integer first (``int(29.97) = 29``: its windows run
  3.3 % ahead of the picture, 2 s per minute at 29.97 fps);
- the window always starts 4 steps (80 ms) before the frame's step, as it does at 25 fps, the rate
  the model was trained at; the official front padding is ``2 * ceil(50 / fps)`` steps, which at
  24 fps would move every window 40 ms earlier.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from torch import nn

from dubline.core.errors import InvalidInputError

SAMPLE_RATE = 16000
STEPS_PER_SECOND = 50
SAMPLES_PER_STEP = SAMPLE_RATE // STEPS_PER_SECOND  # 320: whisper's 10 ms hop, halved by conv2's stride
PIECE_SAMPLES = 30 * SAMPLE_RATE  # whisper encodes 30 s at a time
#: audio_padding_length_left / _right of the official inference, in 25-fps frames.
PADDING_FRAMES = 2
#: 2 steps per 25-fps frame: the frame itself and PADDING_FRAMES on each side.
WINDOW_STEPS = 2 * (2 * PADDING_FRAMES + 1)
#: Steps of the window before the frame's own step (the official front padding at 25 fps).
LEAD_STEPS = 2 * PADDING_FRAMES


def log_mel(feature_extractor: Any, samples: np.ndarray) -> np.ndarray:
    """[P, 80, 3000] float32: the log-mel of each 30 s piece of 16 kHz ``samples`` (P >= 1)."""
    samples = np.asarray(samples, dtype=np.float32)
    pieces = [samples[start : start + PIECE_SAMPLES] for start in range(0, len(samples), PIECE_SAMPLES)] or [samples]
    features = feature_extractor(pieces, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
    return np.asarray(features, dtype=np.float32)


@torch.inference_mode()
def hidden_states(
    encoder: nn.Module, mel: np.ndarray, device: torch.device, dtype: torch.dtype, batch_size: int = 4
) -> np.ndarray:
    """[P * 1500, L + 1, D] float32: whisper's stacked hidden states, pieces concatenated on time."""
    out = []
    for start in range(0, len(mel), batch_size):
        batch = torch.from_numpy(mel[start : start + batch_size]).to(device, dtype)
        states = encoder(batch, output_hidden_states=True).hidden_states  # L+1 x [B, 1500, D]
        stacked = torch.stack(states, dim=2).float().cpu().numpy()  # [B, 1500, L+1, D]
        out.append(stacked.reshape(-1, *stacked.shape[2:]))
    return np.concatenate(out)


def whisper_features(
    feature_extractor: Any, encoder: nn.Module, samples: np.ndarray, device: torch.device, dtype: torch.dtype
) -> np.ndarray:
    """[len(samples) // 320, L + 1, D] float32 whisper steps of 16 kHz mono ``samples``."""
    steps = len(samples) // SAMPLES_PER_STEP
    if steps == 0:
        return np.zeros((0, encoder.config.encoder_layers + 1, encoder.config.d_model), np.float32)
    return hidden_states(encoder, log_mel(feature_extractor, samples), device, dtype)[:steps]


def window_starts(rate: Fraction, frame_indices: np.ndarray) -> np.ndarray:
    """First whisper step (unpadded; may be negative) of each frame's window at ``rate`` fps."""
    rate = Fraction(rate)
    if rate <= 0:
        raise InvalidInputError(f"frame rate must be positive, got {rate}")
    steps_per_frame = Fraction(STEPS_PER_SECOND) / rate
    return np.array([math.floor(int(i) * steps_per_frame) - LEAD_STEPS for i in frame_indices], dtype=np.int64)


def frame_windows(steps: np.ndarray, rate: Fraction, frame_indices: np.ndarray) -> np.ndarray:
    """[n, WINDOW_STEPS * (L + 1), D] float32 windows for frames ``frame_indices`` (0 = the audio's start)."""
    steps = np.asarray(steps, dtype=np.float32)
    if steps.ndim != 3:
        raise InvalidInputError(f"whisper steps must be [S, layers, D], got {steps.shape}")
    count, layers, width = steps.shape
    starts = window_starts(rate, np.asarray(frame_indices))
    out = np.zeros((len(starts), WINDOW_STEPS, layers, width), np.float32)
    for row, start in enumerate(starts):
        low, high = max(start, 0), min(start + WINDOW_STEPS, count)
        if high > low:
            out[row, low - start : high - start] = steps[low:high]
    return out.reshape(len(starts), WINDOW_STEPS * layers, width)


def positional_encoding(tokens: int, width: int) -> torch.Tensor:
    """[tokens, width] float32, the official ``PositionalEncoding`` (sin on even, cos on odd columns)."""
    position = torch.arange(0, tokens, dtype=torch.float).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, width, 2).float() * (-math.log(10000.0) / width))
    encoding = torch.zeros(tokens, width)
    encoding[:, 0::2] = torch.sin(position * div_term)
    encoding[:, 1::2] = torch.cos(position * div_term)
    return encoding
