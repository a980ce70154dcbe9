"""Wav2Lip's expert lip-sync discriminator (``SyncNet_color``, file ``lipsync_expert.pth``) and the
LSE-style sync measures computed with it.

The network embeds 5 consecutive lower-half face crops ([B, 15, 48, 96]: 5 frames x 3 channels
stacked, BGR as the official training read them with cv2) and the 16-column mel window that starts
at the first of those frames ([B, 1, 80, 16]) into L2-normalised 512-d vectors; in training the
sync probability is their cosine similarity.

Measures (``sync_measures``), after the SyncNet evaluation of Chung & Zisserman as used by the
Wav2Lip paper's LSE-D / LSE-C, but with this expert as the embedding network:

- for every start frame t with 5 frames available, face embedding v_t (frames t..t+4) and audio
  embedding a_t (mel window of frame t);
- for each offset o in [-K, K] (K = ``max_offset``, clamped to the number of windows - 1),
  D(o) = mean over valid t (0 <= t+o < windows) of the Euclidean distance ||v_t - a_{t+o}||;
- ``lse_distance`` = min_o D(o) (lower is better), ``lse_confidence`` = median_o D(o) - min_o D(o)
  (higher is better), ``best_offset`` = argmin_o D(o) in frames (positive: the audio matching a face comes that
  many frames later, i.e. the audio lags the video);
- ``mean_cosine`` = mean cosine similarity of v_t and a_t at offset 0 (the expert's own sync score).

Because the embeddings are unit vectors (distance = sqrt(2 - 2 cos), at most 2) and the network is
not the original SyncNet, the numbers are NOT comparable with published LSE-D/LSE-C figures; compare
them only between renders measured the same way. Unlike syncnet_python we average only over valid
pairs instead of zero-padding the audio features at the ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from dubline.core.errors import InvalidInputError
from dubline.stages.backends.wav2lip.layers import ConvNormReLU, residual_stack
from dubline.stages.backends.wav2lip.model import build_audio_encoder

SYNC_FRAMES = 5
DEFAULT_MAX_OFFSET = 15


class SyncNetColor(nn.Module):
    """(mel window [B,1,80,16], faces [B,15,48,96] in [0,1]) -> (audio [B,512], face [B,512]), unit norm."""

    def __init__(self) -> None:
        super().__init__()
        # 48x96 -> 46x47 (5x5, stride (1, 2)) -> 23x24 -> 12x12 -> 6x6 -> 3x3 -> 1x1.
        self.face_encoder = nn.Sequential(
            ConvNormReLU(15, 32, 7, 1, 3),
            ConvNormReLU(32, 64, 5, (1, 2), 1),
            *residual_stack(64, 2),
            ConvNormReLU(64, 128, 3, 2, 1),
            *residual_stack(128, 3),
            ConvNormReLU(128, 256, 3, 2, 1),
            *residual_stack(256, 2),
            ConvNormReLU(256, 512, 3, 2, 1),
            *residual_stack(512, 2),
            ConvNormReLU(512, 512, 3, 2, 1),
            ConvNormReLU(512, 512, 3, 1, 0),
            ConvNormReLU(512, 512, 1, 1, 0),
        )
        self.audio_encoder = build_audio_encoder(residuals_at_256=2)

    def forward(
        self, audio_sequences: torch.Tensor, face_sequences: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        face = self.face_encoder(face_sequences).flatten(1)
        audio = self.audio_encoder(audio_sequences).flatten(1)
        return functional.normalize(audio, p=2, dim=1), functional.normalize(face, p=2, dim=1)


@dataclass(frozen=True)
class SyncMeasures:
    """LSE-style measures from the expert discriminator; see the module docstring for definitions."""

    lse_distance: float
    lse_confidence: float
    best_offset: int
    mean_cosine: float
    offsets: list[int]
    mean_distances: list[float]


def syncnet_face_input(face_crops_rgb: np.ndarray) -> np.ndarray:
    """[N, 96, 96, 3] uint8 RGB crops -> [N-4, 15, 48, 96] float32: lower halves of 5-frame windows, BGR."""
    frames = face_crops_rgb[:, 48:, :, ::-1].astype(np.float32) / 255.0  # [N, 48, 96, 3] BGR
    planes = frames.transpose(0, 3, 1, 2)  # [N, 3, 48, 96]
    starts = range(len(planes) - SYNC_FRAMES + 1)
    return np.stack([planes[t : t + SYNC_FRAMES].reshape(3 * SYNC_FRAMES, 48, 96) for t in starts])


@torch.inference_mode()
def embed(
    model: SyncNetColor,
    face_crops_rgb: np.ndarray,
    mel_windows: np.ndarray,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """(audio [W, 512], face [W, 512]) embeddings for the W = N - 4 five-frame windows."""
    if face_crops_rgb.ndim != 4 or face_crops_rgb.shape[1:] != (96, 96, 3) or face_crops_rgb.dtype != np.uint8:
        raise InvalidInputError(
            f"sync measures need face crops [N, 96, 96, 3] uint8, got {face_crops_rgb.shape} {face_crops_rgb.dtype}"
        )
    if mel_windows.ndim != 4 or mel_windows.shape[1:] != (1, 80, 16):
        raise InvalidInputError(f"sync measures need mel windows [N, 1, 80, 16], got {mel_windows.shape}")
    if len(mel_windows) != len(face_crops_rgb):
        raise InvalidInputError(
            f"sync measures got {len(face_crops_rgb)} face crops but {len(mel_windows)} mel windows"
        )
    if len(face_crops_rgb) < SYNC_FRAMES:
        raise InvalidInputError(f"sync measures need at least {SYNC_FRAMES} frames, got {len(face_crops_rgb)}")

    parameter = next(model.parameters())
    faces = syncnet_face_input(face_crops_rgb)
    audio_windows = mel_windows[: len(faces)].astype(np.float32)
    model.eval()
    audio_out, face_out = [], []
    for start in range(0, len(faces), batch_size):
        face_batch = torch.from_numpy(faces[start : start + batch_size]).to(parameter.device, parameter.dtype)
        audio_batch = torch.from_numpy(audio_windows[start : start + batch_size]).to(parameter.device, parameter.dtype)
        audio_embedding, face_embedding = model(audio_batch, face_batch)
        audio_out.append(audio_embedding.float().cpu().numpy())
        face_out.append(face_embedding.float().cpu().numpy())
    return np.concatenate(audio_out), np.concatenate(face_out)


def measures_from_embeddings(
    audio: np.ndarray, face: np.ndarray, max_offset: int = DEFAULT_MAX_OFFSET
) -> SyncMeasures:
    """LSE-D / LSE-C style measures from per-window embeddings (see the module docstring)."""
    windows = len(face)
    reach = min(max_offset, windows - 1)
    offsets = list(range(-reach, reach + 1))
    mean_distances = []
    for offset in offsets:
        t = np.arange(max(0, -offset), min(windows, windows - offset))
        distances = np.linalg.norm(face[t] - audio[t + offset], axis=1)
        mean_distances.append(float(distances.mean()))
    curve = np.array(mean_distances)
    best = int(np.argmin(curve))
    cosine = np.sum(face * audio, axis=1) / (
        np.linalg.norm(face, axis=1) * np.linalg.norm(audio, axis=1) + 1e-12
    )
    return SyncMeasures(
        lse_distance=float(curve[best]),
        lse_confidence=float(np.median(curve) - curve[best]),
        best_offset=offsets[best],
        mean_cosine=float(cosine.mean()),
        offsets=offsets,
        mean_distances=mean_distances,
    )


def sync_measures(
    model: SyncNetColor,
    face_crops_rgb: np.ndarray,
    mel_windows: np.ndarray,
    max_offset: int = DEFAULT_MAX_OFFSET,
    batch_size: int = 32,
) -> SyncMeasures:
    """LSE-style sync of N consecutive 96x96 RGB face crops against their N per-frame mel windows."""
    audio, face = embed(model, face_crops_rgb, mel_windows, batch_size)
    return measures_from_embeddings(audio, face, max_offset)
