"""Wave in, wave out: STFT, compression, GaGNet, inverse compression and iSTFT."""
from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from .. import dsp
from ..config import GaGNetConfig
from .gagnet import GaGNet


class WaveGaGNet(nn.Module):
    """GaGNet with its signal path: (N,) or (B, N) 16 kHz waves -> same shape, same length."""

    def __init__(self, net: GaGNet | GaGNetConfig | str = "paper") -> None:
        super().__init__()
        self.net = net if isinstance(net, GaGNet) else GaGNet(net)

    @property
    def cfg(self) -> GaGNetConfig:
        return self.net.cfg

    def analyze(self, wave: Tensor) -> Tensor:
        """(B, N) wave -> compressed real/imag spectrum (B, 2, F, T)."""
        return dsp.compress(dsp.stft(wave, self.cfg), self.cfg.compress)

    def synthesize(self, spec: Tensor, length: int) -> Tensor:
        """Compressed (B, 2, F, T) -> (B, length) wave."""
        return dsp.istft(dsp.decompress(spec, self.cfg.compress), self.cfg, length)

    def forward(self, wave: Tensor) -> Tensor:
        squeeze = wave.dim() == 1
        x = wave.unsqueeze(0) if squeeze else wave
        out = self.synthesize(self.net(self.analyze(x))[-1], x.shape[-1])
        return out.squeeze(0) if squeeze else out
