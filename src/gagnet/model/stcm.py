"""Squeezed temporal convolution module (S-TCM) and its dilation groups."""
from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from ..config import GaGNetConfig
from .conv1d import conv1d
from .norm import make_norm
from .timepad import CausalTimePad


class SqueezedTCM(nn.Module):
    """1x1 squeeze -> PReLU -> norm -> dilated conv -> PReLU -> norm -> 1x1 expand, + residual.

    (B, d_feat, T) -> (B, d_feat, T). The dilated conv (kernel ``kd1``) is padded causally
    (``(kd1 - 1) * dilation`` past frames) unless ``cfg.causal_conv`` is false.
    """

    def __init__(self, cfg: GaGNetConfig, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        span = (cfg.kd1 - 1) * dilation
        # causal: a streamable pad; otherwise centred zero padding (offline only)
        self.pad = CausalTimePad(span) if cfg.causal_conv else nn.ConstantPad1d((span // 2, span // 2), 0.0)
        self.squeeze = nn.Conv1d(cfg.d_feat, cfg.cd1, 1, bias=False)
        self.act1 = nn.PReLU(cfg.cd1)
        self.norm1 = make_norm(cfg.norm, cfg.cd1, dims=1, eps=cfg.norm_eps, prior=cfg.cin_prior, tau=cfg.cin_tau)
        self.dconv = nn.Conv1d(cfg.cd1, cfg.cd1, cfg.kd1, dilation=dilation, bias=False)
        self.act2 = nn.PReLU(cfg.cd1)
        self.norm2 = make_norm(cfg.norm, cfg.cd1, dims=1, eps=cfg.norm_eps, prior=cfg.cin_prior, tau=cfg.cin_tau)
        self.expand = nn.Conv1d(cfg.cd1, cfg.d_feat, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm1(self.act1(conv1d(self.squeeze, x)))
        h = conv1d(self.dconv, self.pad(h))
        h = self.norm2(self.act2(h))
        return x + conv1d(self.expand, h)


class STCMGroup(nn.Sequential):
    """One S-TCM per dilation in ``cfg.dilations`` (1, 2, 5, 9 for the paper), in sequence."""

    def __init__(self, cfg: GaGNetConfig) -> None:
        super().__init__(*(SqueezedTCM(cfg, d) for d in cfg.dilations))


def stcm_stack(cfg: GaGNetConfig) -> nn.Sequential:
    """``cfg.p`` S-TCM groups in sequence: (B, d_feat, T) -> (B, d_feat, T)."""
    return nn.Sequential(*(STCMGroup(cfg) for _ in range(cfg.p)))


def stcm_receptive_field(cfg: GaGNetConfig) -> int:
    """Past frames one stack of ``p`` groups can see: ``p * (kd1 - 1) * sum(dilations)``."""
    return cfg.p * (cfg.kd1 - 1) * sum(cfg.dilations)
