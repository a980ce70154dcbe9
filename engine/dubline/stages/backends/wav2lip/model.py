"""The Wav2Lip generator (Prajwal et al., "A Lip Sync Expert Is All You Need", ACM MM 2020).

A U-Net-like network: a face encoder turns the 6-channel 96x96 input (masked target crop +
reference crop) into feature maps at 96, 48, 24, 12, 6, 3 and 1 pixels; an audio encoder turns a
[1, 80, 16] mel window into a 512-d embedding (a 1x1 map); the decoder starts from the audio
embedding and upsamples back to 96x96, concatenating the encoder map of the same size after every
stage (skip connections); an output block maps to 3 channels through a sigmoid.

Module names and registration order reproduce the official state_dict exactly (see
``wav2lip_state_dict.json`` in the conformance kit), so official checkpoints load with strict=True.
"""

from __future__ import annotations

import torch
from torch import nn

from dubline.stages.backends.wav2lip.layers import (
    ConvNormReLU,
    TransposedConvNormReLU,
    residual_stack,
)

FACE_SIZE = 96
MEL_BANDS = 80
MEL_WINDOW = 16


def _encoder_stage(cin: int, cout: int, residuals: int) -> nn.Sequential:
    """Halve the size with a strided 3x3 conv, then refine with residual 3x3 convs."""
    return nn.Sequential(ConvNormReLU(cin, cout, 3, 2, 1), *residual_stack(cout, residuals))


def _decoder_stage(cin: int, cout: int, residuals: int) -> nn.Sequential:
    """Double the size with a transposed conv, then refine with residual 3x3 convs."""
    return nn.Sequential(
        TransposedConvNormReLU(cin, cout, 3, 2, 1, output_padding=1), *residual_stack(cout, residuals)
    )


def build_audio_encoder(residuals_at_256: int) -> nn.Sequential:
    """[B, 1, 80, 16] mel window -> [B, 512, 1, 1]; the expert discriminator's differs only in
    having two residual convs at 256 channels where the generator has one.

    Strides (3, 1), 3 and (3, 2) shrink 80x16 to 27x16, 9x6 and 3x3; a valid 3x3 conv ends at 1x1.
    """
    return nn.Sequential(
        ConvNormReLU(1, 32, 3, 1, 1),
        *residual_stack(32, 2),
        ConvNormReLU(32, 64, 3, (3, 1), 1),
        *residual_stack(64, 2),
        ConvNormReLU(64, 128, 3, 3, 1),
        *residual_stack(128, 2),
        ConvNormReLU(128, 256, 3, (3, 2), 1),
        *residual_stack(256, residuals_at_256),
        ConvNormReLU(256, 512, 3, 1, 0),
        ConvNormReLU(512, 512, 1, 1, 0),
    )


class Wav2Lip(nn.Module):
    """Generator: (mel window [B,1,80,16], faces [B,6,96,96] in [0,1]) -> faces [B,3,96,96] in [0,1]."""

    def __init__(self) -> None:
        super().__init__()
        # Output sizes 96, 48, 24, 12, 6, 3, 1; channels 16 .. 512.
        self.face_encoder_blocks = nn.ModuleList(
            [
                nn.Sequential(ConvNormReLU(6, 16, 7, 1, 3)),
                _encoder_stage(16, 32, 2),
                _encoder_stage(32, 64, 3),
                _encoder_stage(64, 128, 2),
                _encoder_stage(128, 256, 2),
                _encoder_stage(256, 512, 1),
                nn.Sequential(ConvNormReLU(512, 512, 3, 1, 0), ConvNormReLU(512, 512, 1, 1, 0)),
            ]
        )
        self.audio_encoder = build_audio_encoder(residuals_at_256=1)
        # Each stage's input is the previous stage's output concatenated with the encoder map of
        # that size, hence in-channels = previous out + skip channels (512+512, 512+512, 512+256, ...).
        self.face_decoder_blocks = nn.ModuleList(
            [
                nn.Sequential(ConvNormReLU(512, 512, 1, 1, 0)),
                nn.Sequential(TransposedConvNormReLU(1024, 512, 3, 1, 0), *residual_stack(512, 1)),
                _decoder_stage(1024, 512, 2),
                _decoder_stage(768, 384, 2),
                _decoder_stage(512, 256, 2),
                _decoder_stage(320, 128, 2),
                _decoder_stage(160, 64, 2),
            ]
        )
        self.output_block = nn.Sequential(
            ConvNormReLU(80, 32, 3, 1, 1),
            nn.Conv2d(32, 3, 1, 1, 0),
            nn.Sigmoid(),
        )

    def forward(self, audio_sequences: torch.Tensor, face_sequences: torch.Tensor) -> torch.Tensor:
        audio_embedding = self.audio_encoder(audio_sequences)
        skips: list[torch.Tensor] = []
        x = face_sequences
        for block in self.face_encoder_blocks:
            x = block(x)
            skips.append(x)
        x = audio_embedding
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), skips.pop()), dim=1)
        return self.output_block(x)
