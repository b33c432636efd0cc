"""Normalisation layers, chosen by ``GaGNetConfig.norm``.

* ``in``  -- instance norm with affine parameters, as published. Its statistics span the
  whole utterance, so a model using it is not causal.
* ``bn``  -- batch norm (causal in eval mode, where it uses running statistics).
* ``cin`` -- cumulative instance norm: per channel, the mean and variance of frame ``t``
  are taken over frames ``0..t`` (and all frequency bins for 2-D inputs). Causal; its
  running sums are the only state a streaming model has to carry for it.
* ``fln`` -- frame-wise layer norm: each frame normalised over channels (and bins). Causal
  and stateless.

All take (B, C, T) or (B, C, T, F) and have per-channel ``weight`` and ``bias``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


class CumulativeInstanceNorm(nn.Module):
    """Causal instance norm with statistics accumulated over past frames.

    Sums are kept in float64 so that block-wise and whole-signal processing agree for
    hours of audio.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, state: Tensor | None = None) -> Tensor:
        """Normalise (B, C, T[, F]); ``state`` (B, C, 3) holds prior (count, sum, sum of squares)."""
        return self.forward_with_state(x, state)[0]

    def forward_with_state(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Like :meth:`forward`, also returning the updated (B, C, 3) float64 state."""
        if x.dim() == 4:  # per-frame statistics over bins, then accumulated over frames in float64
            per_frame = x.shape[3]
            s1 = x.sum(-1).double()  # (B, C, T); torch.var_mean is far slower on short rows
            s2 = (x * x).sum(-1).double()
        else:
            per_frame = 1
            s1 = x.double()
            s2 = s1 * s1
        c1 = torch.cumsum(s1, dim=-1)
        c2 = torch.cumsum(s2, dim=-1)
        count = per_frame * torch.arange(1, x.shape[2] + 1, device=x.device, dtype=torch.float64)
        if state is not None:
            count = count + state[..., 0:1]
            c1 = c1 + state[..., 1:2]
            c2 = c2 + state[..., 2:3]
        else:
            count = count.expand_as(c1)
        mean = c1 / count
        var = (c2 / count - mean * mean).clamp_min(0.0)
        new_state = torch.stack((count[..., -1], c1[..., -1], c2[..., -1]), dim=-1)
        # y = (x - mean) / std * w + b, folded into one multiply-add over the full tensor
        scale = torch.rsqrt(var + self.eps).to(x.dtype) * self.weight[:, None]
        shift = self.bias[:, None] - mean.to(x.dtype) * scale
        if x.dim() == 4:
            scale, shift = scale.unsqueeze(-1), shift.unsqueeze(-1)
        return torch.addcmul(shift, x, scale), new_state


class FrameLayerNorm(nn.Module):
    """Causal, stateless layer norm of each frame over channels (and bins)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise (B, C, T) or (B, C, T, F) frame by frame."""
        dims = (1, 3) if x.dim() == 4 else (1,)
        mean = x.mean(dim=dims, keepdim=True)
        var = (x * x).mean(dim=dims, keepdim=True) - mean * mean
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight.view(shape) + self.bias.view(shape)


def make_norm(kind: str, channels: int, dims: int, eps: float = 1e-5) -> nn.Module:
    """Build the norm named ``kind`` for ``dims``-D feature maps (1: (B,C,T), 2: (B,C,T,F))."""
    if kind == "in":
        cls = nn.InstanceNorm1d if dims == 1 else nn.InstanceNorm2d
        return cls(channels, eps=eps, affine=True)
    if kind == "bn":
        cls = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
        return cls(channels, eps=eps)
    if kind == "cin":
        return CumulativeInstanceNorm(channels, eps)
    if kind == "fln":
        return FrameLayerNorm(channels, eps)
    raise ValueError(f"unknown norm {kind!r}")
