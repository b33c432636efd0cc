"""GaGNet: the encoder (FEM) followed by ``q`` glance-gaze modules (GGM)."""
from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from ..config import GaGNetConfig, get_config
from .encoder import Encoder
from .gaze import GazeBlock
from .glance import GlanceBlock
from .reconstruction import reconstruct


class GlanceGazeModule(nn.Module):
    """One GGM stage: (B, d_feat, T) features, (B, 2, F, T) previous -> (B, 2, F, T) refined."""

    def __init__(self, cfg: GaGNetConfig) -> None:
        super().__init__()
        self.glance = GlanceBlock(cfg)
        self.gaze = GazeBlock(cfg)

    def forward(self, feat: Tensor, prev: Tensor) -> Tensor:
        return reconstruct(prev, self.glance(feat, prev), self.gaze(feat, prev))


class GaGNet(nn.Module):
    """Glance and Gaze Network on compressed spectra.

    ``forward`` takes the compressed noisy real/imag spectrum (B, 2, F, T) and returns the
    list of all ``q`` stage estimates, each (B, 2, F, T); the last one is the output.
    """

    def __init__(self, cfg: GaGNetConfig | str = "paper") -> None:
        super().__init__()
        self.cfg = get_config(cfg)
        self.encoder = Encoder(self.cfg)
        self.stages = nn.ModuleList(GlanceGazeModule(self.cfg) for _ in range(self.cfg.q))

    def forward(self, x: Tensor) -> list[Tensor]:
        feat = self.encoder(x.transpose(2, 3))
        outs = []
        prev = x
        for stage in self.stages:
            prev = stage(feat, prev)
            outs.append(prev)
        return outs


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
