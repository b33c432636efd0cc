"""Glance block: a magnitude gain over all bins from the features and the previous estimate."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from ..config import GaGNetConfig
from .conv1d import conv1d
from .stcm import stcm_stack

_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


class GatedInput(nn.Module):
    """Gated 1x1 input conv over [features; previous real; previous imag].

    (B, d_feat, T) and (B, 2, F, T) -> (B, d_feat, T), ``main(x) * sigmoid(gate(x))``.
    """

    def __init__(self, cfg: GaGNetConfig) -> None:
        super().__init__()
        cin = cfg.d_feat + 2 * cfg.n_freq
        self.main = nn.Conv1d(cin, cfg.d_feat, 1)
        self.gate = nn.Conv1d(cin, cfg.d_feat, 1)

    def forward(self, feat: Tensor, prev: Tensor) -> Tensor:
        x = torch.cat((feat, prev.flatten(1, 2)), dim=1)
        if torch.compiler.is_compiling():  # both convs as one (the same outputs, one pass over x)
            w = torch.cat((self.main.weight, self.gate.weight))
            main, gate = conv1d(self.main, x, w, torch.cat((self.main.bias, self.gate.bias))).chunk(2, dim=1)
            return main * torch.sigmoid(gate)
        return self.main(x) * torch.sigmoid(self.gate(x))


class GlanceBlock(nn.Module):
    """Gated input conv, ``p`` S-TCM groups and a gain over ``n_freq`` bins.

    (B, d_feat, T) features and (B, 2, F, T) previous estimate -> (B, F, T) gain.
    """

    def __init__(self, cfg: GaGNetConfig) -> None:
        super().__init__()
        self.inp = GatedInput(cfg)
        self.tcm = stcm_stack(cfg)
        self.gain = nn.Conv1d(cfg.d_feat, cfg.n_freq, 1)
        self.act = _ACTIVATIONS[cfg.gain_activation]()

    def forward(self, feat: Tensor, prev: Tensor) -> Tensor:
        return self.act(conv1d(self.gain, self.tcm(self.inp(feat, prev))))
