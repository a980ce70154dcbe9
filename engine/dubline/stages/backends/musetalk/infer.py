"""Batched MuseTalk 1.5 inference: 256x256 RGB crops + per-frame audio windows -> generated faces.

Per frame, as the official inference: the masked crop and a reference crop are encoded by the VAE
into 4 latent channels each, scaled by 0.18215 and concatenated (masked first: [B, 8, 32, 32]);
the UNet runs once at timestep 0 with the audio window plus positional encoding as
``encoder_hidden_states``; its output is taken as the generated latent and decoded.

Deterministic by default: the latent is the VAE posterior's mean, where the official code draws a
sample (mean + std * noise from the global torch RNG). With ``sample`` the noise comes from a
generator seeded per frame (``sample_seeds``), drawn on the CPU in float32 for the masked then the
reference latent, so a frame's result depends neither on the batch it is in nor on the device.
"""

from __future__ import annotations

import numpy as np
import torch

from dubline.core.errors import InvalidInputError
from dubline.core.progress import CancelToken, ProgressSink, no_progress
from dubline.stages.backends.musetalk.audio import positional_encoding
from dubline.stages.backends.musetalk.faces import FACE_SIZE, output_image, vae_input
from dubline.stages.backends.musetalk.loading import MuseTalkModels

PROGRESS_STAGE = "musetalk"
TIMESTEP = 0


class MuseTalkRunner:
    """Runs the resident models over many frames, ``batch_size`` frames per UNet/VAE call."""

    def __init__(self, models: MuseTalkModels, batch_size: int = 8) -> None:
        if batch_size < 1:
            raise InvalidInputError(f"musetalk batch_size must be at least 1, got {batch_size}")
        self.models = models
        self.batch_size = batch_size
        self.device = models.device
        self.dtype = models.dtype

    @torch.inference_mode()
    def posterior(self, vae_inputs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) [B, 4, 32, 32] of the VAE posterior for [B, 3, 256, 256] inputs in [-1, 1]."""
        batch = torch.from_numpy(vae_inputs).to(self.device, self.dtype)
        dist = self.models.vae.encode(batch).latent_dist
        return dist.mean, dist.std

    def _latents(self, vae_inputs: np.ndarray, noise: torch.Tensor | None) -> torch.Tensor:
        mean, std = self.posterior(vae_inputs)
        latent = mean if noise is None else mean + std * noise.to(self.device, self.dtype)
        return latent * self.models.scaling_factor

    def _noise(self, seeds: np.ndarray | None, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor] | None:
        if seeds is None:
            return None
        masked, reference = [], []
        for seed in seeds:
            generator = torch.Generator().manual_seed(int(seed))
            masked.append(torch.randn(shape, generator=generator))
            reference.append(torch.randn(shape, generator=generator))
        return torch.stack(masked), torch.stack(reference)

    def reference_latents(self, crops_rgb: np.ndarray, sample_seeds: np.ndarray | None = None) -> torch.Tensor:
        """[N, 4, 32, 32] scaled latents of unmasked crops (to reuse one reference for many frames)."""
        out = []
        for start in range(0, len(crops_rgb), self.batch_size):
            seeds = None if sample_seeds is None else sample_seeds[start : start + self.batch_size]
            batch = crops_rgb[start : start + self.batch_size]
            noise = self._noise(seeds, (4, FACE_SIZE // 8, FACE_SIZE // 8))
            with torch.inference_mode():
                out.append(self._latents(vae_input(batch, masked=False), None if noise is None else noise[1]))
        return torch.cat(out)

    @torch.inference_mode()
    def generate(self, unet_input: torch.Tensor, windows: np.ndarray) -> np.ndarray:
        """[B, 256, 256, 3] uint8 RGB faces from [B, 8, 32, 32] latents and [B, tokens, D] windows."""
        tokens, width = windows.shape[1:]
        audio = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)) + positional_encoding(tokens, width)
        audio = audio.to(self.device, self.dtype)
        timestep = torch.tensor([TIMESTEP], device=self.device)
        predicted = self.models.unet(unet_input.to(self.device, self.dtype), timestep, encoder_hidden_states=audio).sample
        decoded = self.models.vae.decode(predicted / self.models.scaling_factor).sample
        return output_image(decoded.float().cpu().numpy())

    def run(
        self,
        crops_rgb: np.ndarray,
        windows: np.ndarray,
        reference_latents: torch.Tensor | None = None,
        sample_seeds: np.ndarray | None = None,
        cancel: CancelToken | None = None,
        progress: ProgressSink = no_progress,
    ) -> np.ndarray:
        """Generated faces [N, 256, 256, 3] uint8 RGB.

        ``reference_latents`` [N, 4, 32, 32]: None encodes each crop itself, unmasked, as the
        official code does. ``sample_seeds`` (N,): sample the posterior with these seeds instead
        of taking its mean.
        """
        count = len(crops_rgb)
        if windows.ndim != 3 or len(windows) != count:
            raise InvalidInputError(f"musetalk needs one audio window [tokens, D] per crop, got {windows.shape} for {count} crops")
        if reference_latents is not None and len(reference_latents) != count:
            raise InvalidInputError(f"musetalk got {len(reference_latents)} reference latents for {count} crops")
        if sample_seeds is not None and len(sample_seeds) != count:
            raise InvalidInputError(f"musetalk got {len(sample_seeds)} sample seeds for {count} crops")
        output = np.empty((count, FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8)
        progress(PROGRESS_STAGE, 0, count)
        latent_shape = (4, FACE_SIZE // 8, FACE_SIZE // 8)
        for start in range(0, count, self.batch_size):
            if cancel is not None:
                cancel.check()
            stop = min(start + self.batch_size, count)
            crops = crops_rgb[start:stop]
            noise = self._noise(None if sample_seeds is None else sample_seeds[start:stop], latent_shape)
            with torch.inference_mode():
                masked = self._latents(vae_input(crops, masked=True), None if noise is None else noise[0])
                if reference_latents is None:
                    reference = self._latents(vae_input(crops, masked=False), None if noise is None else noise[1])
                else:
                    reference = reference_latents[start:stop].to(self.device, self.dtype)
                output[start:stop] = self.generate(torch.cat([masked, reference], dim=1), windows[start:stop])
            progress(PROGRESS_STAGE, stop, count)
        return output
