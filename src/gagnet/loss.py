"""The paper's stage-weighted loss on compressed spectra."""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from .dsp import magnitude


def stage_weights(q: int, earlier: float = 0.1) -> list[float]:
    """Weight ``earlier`` for each of the first ``q - 1`` stages and 1 for the last."""
    return [earlier] * (q - 1) + [1.0]


def gagnet_loss(estimates: Sequence[Tensor], target: Tensor, mask: Tensor | None = None) -> Tensor:
    """0.5 * (MSE of real/imag + MSE of magnitude), summed over stages with stage weights.

    ``estimates``: per-stage (B, 2, F, T) compressed spectra; ``target``: (B, 2, F, T);
    ``mask``: (B, T) with 1 for real frames and 0 for padding (all frames when None).
    Means are taken over the unmasked time-frequency points only.
    """
    b, _, f, t = target.shape
    if mask is None:
        mask = target.new_ones(b, t)
    m = mask[:, None, :].to(target.dtype)  # (B, 1, T), broadcast over bins
    denom = m.sum() * f
    target_mag = magnitude(target)
    total = target.new_zeros(())
    for w, est in zip(stage_weights(len(estimates)), estimates):
        ri = (((est - target) ** 2).sum(1) * m).sum() / (2 * denom)
        mag = (((magnitude(est) - target_mag) ** 2) * m).sum() / denom
        total = total + w * 0.5 * (ri + mag)
    return total


