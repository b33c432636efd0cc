"""Feature extraction module (FEM): the U²Net-style encoder of GaGNet.

Four encoder layers, each a 2-D gated conv (stride 2 along frequency, causal padding in
time), norm, PReLU and a UNet block with a residual connection, then a last gated conv.
For the paper: (B, 2, T, 161) -> bins 79 -> 39 -> 19 -> 9 -> 4, giving (B, 64, T, 4),
flattened to (B, 256, T) features.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from ..config import GaGNetConfig
from .norm import instance_norm_prelu, make_norm
from .timepad import CausalTimePad


class GatedConv2d(nn.Module):
    """Gated 2-D conv, ``conv_a(x) * sigmoid(conv_b(x))``, with causal time padding.

    One conv produces both halves. (B, Cin, T, F) -> (B, Cout, T, F').
    """

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], stride: tuple[int, int] = (1, 2)) -> None:
        super().__init__()
        self.pad = CausalTimePad(kernel[0] - 1)
        self.conv = nn.Conv2d(cin, 2 * cout, kernel, stride)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.conv(self.pad(x)).chunk(2, dim=1)
        return a * torch.sigmoid(b)


class ConvBlock(nn.Module):
    """``layer`` (a conv, transposed conv or gated conv), then norm and PReLU."""

    def __init__(self, layer: nn.Module, channels: int, cfg: GaGNetConfig) -> None:
        super().__init__()
        self.conv = layer
        self.norm = make_norm(cfg.norm, channels, dims=2, eps=cfg.norm_eps, prior=cfg.cin_prior, tau=cfg.cin_tau)
        self.act = nn.PReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        return instance_norm_prelu(self.conv(x), self.norm, self.act)


class UNetBlock(nn.Module):
    """UNet block of ``depth`` frequency down/up-sampling convs with skips, plus a residual.

    (B, C, T, F) -> (B, C, T, F); kernels ``k2`` (time 1), stride 2 along frequency.
    """

    def __init__(self, cfg: GaGNetConfig, depth: int) -> None:
        super().__init__()
        c, k = cfg.c, cfg.k2
        self.skip = cfg.skip
        self.down = nn.ModuleList(ConvBlock(nn.Conv2d(c, c, k, (1, 2)), c, cfg) for _ in range(depth))
        up = []
        for i in range(depth):
            cin = 2 * c if (i > 0 and cfg.skip == "cat") else c
            up.append(ConvBlock(nn.ConvTranspose2d(cin, c, k, (1, 2)), c, cfg))
        self.up = nn.ModuleList(up)

    def forward(self, x: Tensor) -> Tensor:
        h = x
        skips = []
        for layer in self.down:
            h = layer(h)
            skips.append(h)
        for i, layer in enumerate(self.up):
            if i > 0:
                s = skips[-(i + 1)]
                h = torch.cat((h, s), dim=1) if self.skip == "cat" else h + s
            h = layer(h)
        return x + h


class EncoderLayer(nn.Module):
    """Gated conv + norm + PReLU (``entry``), then a residual UNet block."""

    def __init__(self, cfg: GaGNetConfig, cin: int, kernel: tuple[int, int], depth: int) -> None:
        super().__init__()
        self.entry = ConvBlock(GatedConv2d(cin, cfg.c, kernel), cfg.c, cfg)
        self.unet = UNetBlock(cfg, depth)

    def forward(self, x: Tensor) -> Tensor:
        return self.unet(self.entry(x))


class Encoder(nn.Module):
    """FEM: (B, 2, T, F) compressed real/imag -> (B, d_feat, T) frame features."""

    def __init__(self, cfg: GaGNetConfig) -> None:
        super().__init__()
        layers = []
        for i, depth in enumerate(cfg.unet_depths):
            cin, kernel = (cfg.cin, cfg.k_first) if i == 0 else (cfg.c, cfg.k1)
            layers.append(EncoderLayer(cfg, cin, kernel, depth))
        self.layers = nn.ModuleList(layers)
        self.exit = ConvBlock(GatedConv2d(cfg.c, cfg.c_end, cfg.k1), cfg.c_end, cfg)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        x = self.exit(x)  # (B, c_end, T, feat_bins)
        b, c, t, f = x.shape
        return x.transpose(2, 3).reshape(b, c * f, t)
