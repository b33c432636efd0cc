"""Gaze block: a complex residual from the features and the previous estimate."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from ..config import GaGNetConfig
from .conv1d import conv1d
from .glance import GatedInput
from .stcm import stcm_stack


class GazeBlock(nn.Module):
    """Gated input conv, then real and imaginary S-TCM stacks, each with a 1x1 output.

    (B, d_feat, T) features and (B, 2, F, T) previous estimate -> (B, 2, F, T) residual.
    With ``cfg.squeezed_gaze`` one shared stack feeds both outputs.
    """

    def __init__(self, cfg: GaGNetConfig) -> None:
        super().__init__()
        self.inp = GatedInput(cfg)
        self.shared = cfg.squeezed_gaze
        if self.shared:
            self.tcm = stcm_stack(cfg)
        else:
            self.tcm_real = stcm_stack(cfg)
            self.tcm_imag = stcm_stack(cfg)
        self.out_real = nn.Conv1d(cfg.d_feat, cfg.n_freq, 1)
        self.out_imag = nn.Conv1d(cfg.d_feat, cfg.n_freq, 1)

    def forward(self, feat: Tensor, prev: Tensor) -> Tensor:
        x = self.inp(feat, prev)
        if self.shared:
            xr = xi = self.tcm(x)
        else:
            xr, xi = self.tcm_real(x), self.tcm_imag(x)
        return torch.stack((conv1d(self.out_real, xr), conv1d(self.out_imag, xi)), dim=1)
