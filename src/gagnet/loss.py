"""The paper's stage-weighted loss on compressed spectra, and two optional fine-tuning terms:
the noise a model leaves (:func:`residual_noise`) and a pull towards a reference network's
output where speech dominates (:func:`speech_anchor`)."""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from .dsp import magnitude


def stage_weights(q: int, earlier: float = 0.1) -> list[float]:
    """Weight ``earlier`` for each of the first ``q - 1`` stages and 1 for the last."""
    return [earlier] * (q - 1) + [1.0]


def gagnet_loss(estimates: Sequence[Tensor], target: Tensor, mask: Tensor | None = None,
                noisy: Tensor | None = None, residual_weight: float = 0.0) -> Tensor:
    """0.5 * (MSE of real/imag + MSE of magnitude), summed over stages with stage weights.

    ``estimates``: per-stage (B, 2, F, T) compressed spectra; ``target``: (B, 2, F, T);
    ``mask``: (B, T) with 1 for real frames and 0 for padding (all frames when None).
    Means are taken over the unmasked time-frequency points only. With ``residual_weight``
    > 0 (not in the paper) it adds that times :func:`residual_noise` of the last stage,
    which needs the ``noisy`` input spectrum (B, 2, F, T).
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
    if residual_weight > 0:
        if noisy is None:
            raise ValueError("residual_weight needs the noisy spectrum")
        total = total + residual_weight * residual_noise(estimates[-1], target, noisy, mask)
    return total


def residual_noise(estimate: Tensor, target: Tensor, noisy: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared magnitude *excess* of ``estimate`` over ``target`` in noise-dominated bins.

    All (B, 2, F, T) compressed spectra; ``mask`` as in :func:`gagnet_loss`. Each bin's excess
    ``relu(|est| - |target|)`` is weighted by ``1 - min(|target| / |noisy|, 1)``: about 1
    where the input is mostly noise, 0 where it is the target itself (clean input costs
    nothing, whatever the estimate). Penalises the noise a model leaves, not lost speech.
    """
    b, _, f, t = target.shape
    m = (target.new_ones(b, t) if mask is None else mask)[:, None, :].to(target.dtype)
    target_mag = magnitude(target)
    speechness = _speechness(target_mag, noisy)
    excess = (magnitude(estimate) - target_mag).clamp_min(0.0)
    return ((1.0 - speechness) * excess ** 2 * m).sum() / (m.sum() * f)


def speech_anchor(estimate: Tensor, reference: Tensor, target: Tensor, noisy: Tensor,
                  mask: Tensor | None = None) -> Tensor:
    """Distance of ``estimate`` from a ``reference`` network's estimate, in speech-dominated bins.

    All (B, 2, F, T) compressed spectra; ``mask`` as in :func:`gagnet_loss`. The paper's
    distance (half real/imag MSE, half magnitude MSE) per bin, weighted by
    ``min(|target| / |noisy|, 1)``: about 1 where the input is mostly speech, 0 in pauses and
    noise-dominated bins. Fine-tuning with it keeps what the reference does to speech while
    the other terms change what it does to noise (not in the paper).
    """
    b, _, f, t = target.shape
    m = (target.new_ones(b, t) if mask is None else mask)[:, None, :].to(target.dtype)
    speechness = _speechness(magnitude(target), noisy)
    ri = ((estimate - reference) ** 2).sum(1) / 2
    mag = (magnitude(estimate) - magnitude(reference)) ** 2
    return (speechness * 0.5 * (ri + mag) * m).sum() / (m.sum() * f)


def _speechness(target_mag: Tensor, noisy: Tensor) -> Tensor:
    """``min(|target| / |noisy|, 1)`` per bin (B, F, T): the share of the input that is target."""
    return (target_mag / magnitude(noisy).clamp_min(1e-8)).clamp(max=1.0)
