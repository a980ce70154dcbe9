"""The two building blocks both Wav2Lip networks are made of.

Their attribute names (``conv_block`` holding the convolution at index 0 and the batch norm at
index 1) are what the official checkpoints' state_dict keys are spelled with, so they must stay.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvNormReLU(nn.Module):
    """Conv2d -> BatchNorm2d -> (+ input, when residual) -> ReLU.

    The residual variant keeps channels and size, so the identity path needs no projection.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int | tuple[int, int],
        padding: int,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding),
            nn.BatchNorm2d(out_channels),
        )
        self.activation = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.activation(out)


class TransposedConvNormReLU(nn.Module):
    """ConvTranspose2d -> BatchNorm2d -> ReLU: the decoder's upsampling step."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        padding: int,
        output_padding: int = 0,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, output_padding),
            nn.BatchNorm2d(out_channels),
        )
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.conv_block(x))


def residual_stack(channels: int, count: int) -> list[nn.Module]:
    """``count`` residual 3x3 blocks that keep ``channels`` and size."""
    return [ConvNormReLU(channels, channels, 3, 1, 1, residual=True) for _ in range(count)]
