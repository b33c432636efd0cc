"""Empirical causality check: perturb the future, see whether the past moves.

Every causal path of the project (streaming, block processing, export) trusts
:func:`check_causality` and :attr:`GaGNetConfig.causal`; the tests hold the two equal.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import GaGNetConfig, get_config
from .model.gagnet import GaGNet
from .model.wave import WaveGaGNet


@dataclass
class CausalityReport:
    """Outcome of :func:`check_causality`.

    ``max_change_spectrum``: largest change of any stage output at frames before the
    perturbation; ``max_change_wave``: largest change of output samples that lie more
    than ``latency_samples`` before the perturbed sample. Causal when both are ~0.
    """

    causal: bool
    max_change_spectrum: float
    max_change_wave: float
    latency_samples: int


def check_causality(
    model: GaGNet | GaGNetConfig | str,
    seconds: float = 1.0,
    split: float = 0.6,
    seed: int = 0,
    tol: float = 1e-5,
) -> CausalityReport:
    """Perturb the input after ``split`` of ``seconds`` of noise and compare earlier outputs.

    Runs in eval mode on CPU, once on spectra (frames before the split) and once on the
    wave (samples more than one window before the split, the claimed latency).
    """
    net = model if isinstance(model, GaGNet) else GaGNet(get_config(model))
    if not isinstance(model, GaGNet):
        torch.manual_seed(seed)
    was_training = net.training
    net.eval()
    cfg = net.cfg
    gen = torch.Generator().manual_seed(seed)
    n = int(seconds * cfg.sample_rate)
    s0 = int(split * n)
    x = 0.1 * torch.randn(1, n, generator=gen)
    y = x.clone()
    y[:, s0:] += 0.5 * torch.randn(1, n - s0, generator=gen)

    wave_model = WaveGaGNet(net)
    with torch.no_grad():
        sx, sy = wave_model.analyze(x), wave_model.analyze(y)
        t0 = int((sx - sy).abs().amax(dim=(0, 1, 2)).nonzero()[0])  # first frame touched
        ox, oy = net(sx), net(sy)
        spec_change = max(float((a[..., :t0] - b[..., :t0]).abs().max()) for a, b in zip(ox, oy))
        wx, wy = wave_model(x), wave_model(y)
        keep = s0 - cfg.latency_samples + 1
        wave_change = float((wx[:, :keep] - wy[:, :keep]).abs().max())
    net.train(was_training)
    ok = spec_change <= tol and wave_change <= tol
    return CausalityReport(ok, spec_change, wave_change, cfg.latency_samples)
