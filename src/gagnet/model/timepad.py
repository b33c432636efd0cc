"""Causal time padding, the only place the convolutions keep state when streaming."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class CausalTimePad(nn.Module):
    """Prepend ``span`` past frames along the time axis (dim 2 of (B, C, T[, F])).

    Offline the past is zeros. In streaming mode (``streaming = True``) the past is the
    last ``span`` frames of the previous call, kept in ``cache`` (zeros at the start), so
    a signal cut into chunks gives the same result as the whole signal.
    """

    def __init__(self, span: int) -> None:
        super().__init__()
        self.span = span
        self.streaming = False
        self.cache: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.span == 0:
            return x
        if not self.streaming:
            pad = (0, 0, self.span, 0) if x.dim() == 4 else (self.span, 0)
            return F.pad(x, pad)
        past = self.cache
        if past is None:
            shape = list(x.shape)
            shape[2] = self.span
            past = x.new_zeros(shape)
        x = torch.cat((past, x), dim=2)
        self.cache = x[:, :, x.shape[2] - self.span :]
        return x
