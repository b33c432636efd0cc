"""Signal path: framing, STFT/iSTFT, power compression and its inverse.

Framing is causal and identical offline and in streaming: the wave is preceded by
``win_length - hop_length`` zeros, frame ``t`` covers padded samples
``[t * hop, t * hop + win)`` and enough frames are taken that every real sample lies
in the overlap of the frames that synthesise it. Synthesis is weighted overlap-add
divided by the summed squared window, so ``istft(stft(x)) == x`` for any length.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import GaGNetConfig


def window(cfg: GaGNetConfig, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Periodic Hann window of ``win_length`` zero-padded (centred) to ``n_fft``."""
    w = torch.hann_window(cfg.win_length, periodic=True, device=device, dtype=dtype)
    extra = cfg.n_fft - cfg.win_length
    return F.pad(w, (extra // 2, extra - extra // 2)) if extra else w


def pad_for_frames(wave: Tensor, cfg: GaGNetConfig) -> Tensor:
    """Zero-pad (..., N) to the causal framing grid: (..., (T - 1) * hop + n_fft)."""
    n = wave.shape[-1]
    t = cfg.frames(n)
    left = cfg.win_length - cfg.hop_length
    right = (t - 1) * cfg.hop_length + cfg.n_fft - n - left
    return F.pad(wave, (left, right))


def stft(wave: Tensor, cfg: GaGNetConfig) -> Tensor:
    """Complex STFT of (B, N) real waves: (B, F, T) with ``T = cfg.frames(N)``."""
    frames = pad_for_frames(wave, cfg).unfold(-1, cfg.n_fft, cfg.hop_length)  # (B, T, n_fft)
    spec = torch.fft.rfft(frames * window(cfg, wave.device, wave.dtype), dim=-1)
    return spec.transpose(-1, -2)


def overlap_add(frames: Tensor, hop: int) -> Tensor:
    """Overlap-add (B, T, L) frames with stride ``hop``: (B, (T - 1) * hop + L)."""
    b, t, length = frames.shape
    out = F.fold(
        frames.transpose(1, 2), output_size=(1, (t - 1) * hop + length), kernel_size=(1, length), stride=(1, hop)
    )
    return out.reshape(b, -1)


def istft(spec: Tensor, cfg: GaGNetConfig, length: int) -> Tensor:
    """Inverse of :func:`stft`: (B, F, T) complex -> (B, length) real."""
    w = window(cfg, spec.device, spec.real.dtype)
    frames = torch.fft.irfft(spec.transpose(-1, -2), n=cfg.n_fft, dim=-1) * w  # (B, T, n_fft)
    t = frames.shape[1]
    wave = overlap_add(frames, cfg.hop_length)
    env = overlap_add((w * w).expand(1, t, -1), cfg.hop_length)
    left = cfg.win_length - cfg.hop_length
    wave = wave[:, left : left + length]
    env = env[:, left : left + length]
    return wave / env.clamp_min(1e-8)


def compress(spec: Tensor, power: float) -> Tensor:
    """Complex (B, F, T) -> compressed real/imag (B, 2, F, T): ``|X|^power * exp(j angle X)``."""
    mag = spec.abs()
    scale = mag.pow(power) / mag.clamp_min(1e-12)
    return torch.view_as_real(spec * scale).permute(0, 3, 1, 2)


def decompress(x: Tensor, power: float) -> Tensor:
    """Inverse of :func:`compress`: (B, 2, F, T) real/imag -> complex (B, F, T)."""
    spec = torch.complex(x[:, 0], x[:, 1])
    mag = spec.abs()
    scale = mag.pow(1.0 / power) / mag.clamp_min(1e-12)
    return spec * scale


def magnitude(x: Tensor) -> Tensor:
    """Magnitude of a (B, 2, F, T) real/imag tensor: (B, F, T); its gradient at 0 is 0."""
    return torch.linalg.vector_norm(x, dim=1)


def frame_mask(lengths: Tensor, cfg: GaGNetConfig, n_frames: int) -> Tensor:
    """(B, T) float mask of the frames that belong to each signal of ``lengths`` samples."""
    valid = (lengths + cfg.win_length - cfg.hop_length - 1) // cfg.hop_length + 1
    idx = torch.arange(n_frames, device=lengths.device)
    return (idx[None, :] < valid[:, None]).float()
