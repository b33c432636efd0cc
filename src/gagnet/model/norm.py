"""Normalisation layers, chosen by ``GaGNetConfig.norm``.

* ``in``  -- instance norm with affine parameters, as published. Its statistics span the
  whole utterance, so a model using it is not causal.
* ``bn``  -- batch norm (causal in eval mode, where it uses running statistics).
* ``cin`` -- cumulative instance norm: per channel, the mean and variance of frame ``t``
  are taken over frames ``0..t`` (and all frequency bins for 2-D inputs), plus ``prior``
  pseudo-frames of zero mean and unit variance. Without that prior the first frames are
  normalised by the spread of one or two values, which makes the output hypersensitive
  (a 1e-12 change of the input moved a random network's output by 3); with it they are
  well conditioned, and after a few frames the prior no longer matters. Causal; its
  running sums are the only state a streaming model has to carry for it. With ``tau``
  (frames) the sums decay by ``exp(-1/tau)`` per frame, so the statistics cover about the
  last ``tau`` frames: the output then no longer depends on how long ago the signal began,
  which the plain cumulative form lets a network learn and then fail on longer inputs.
* ``fln`` -- frame-wise layer norm: each frame normalised over channels (and bins). Causal
  and stateless.

All take (B, C, T) or (B, C, T, F) and have per-channel ``weight`` and ``bias``.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor


class CumulativeInstanceNorm(nn.Module):
    """Causal instance norm with statistics accumulated over past frames.

    Sums are kept in float64 so that block-wise and whole-signal processing agree for
    hours of audio. In streaming mode (``streaming = True``) the running (count, sum,
    sum of squares) of the frames seen so far is carried in ``cache`` between calls.
    """

    def __init__(self, channels: int, eps: float = 1e-5, prior: float = 1.0, tau: float | None = None) -> None:
        super().__init__()
        self.eps = eps
        self.prior = prior
        self.tau = tau
        self.decay = math.exp(-1.0 / tau) if tau else 1.0
        self.streaming = False
        self.cache: Tensor | None = None
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise (B, C, T[, F]) over the frames so far (and those of earlier calls when streaming)."""
        if not self.streaming:
            return self.forward_with_state(x)[0]
        y, self.cache = self.forward_with_state(x, self.cache)
        return y

    def forward_with_state(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Like :meth:`forward`, also returning the updated (B, C, 3) float64 state."""
        if x.dim() == 4:  # per-frame statistics over bins, then accumulated over frames in float64
            per_frame = x.shape[3]
            # (B, C, T), summed in float32 even for half-precision x; torch.var_mean is far slower on short rows
            acc = torch.float64 if x.dtype == torch.float64 else torch.float32
            s1 = x.sum(-1, dtype=acc).double()
            s2 = (x * x).sum(-1, dtype=acc).double()
        else:
            per_frame = 1
            s1 = x.double()
            s2 = s1 * s1
        if self.decay == 1.0:
            c1 = torch.cumsum(s1, dim=-1)
            c2 = torch.cumsum(s2, dim=-1)
            count = per_frame * torch.arange(1, x.shape[2] + 1, device=x.device, dtype=torch.float64)
            if state is not None:
                count = count + state[..., 0:1]
                c1 = c1 + state[..., 1:2]
                c2 = c2 + state[..., 2:3]
            else:
                count = count.expand_as(c1)
        else:
            count, c1, c2 = self._decayed_sums(torch.full_like(s1, float(per_frame)), s1, s2, state)
        new_state = torch.stack((count[..., -1], c1[..., -1], c2[..., -1]), dim=-1)
        pseudo = self.prior * per_frame  # prior observations: mean 0, second moment 1
        mean = c1 / (count + pseudo)
        var = ((c2 + pseudo) / (count + pseudo) - mean * mean).clamp_min(0.0)
        # y = (x - mean) / std * w + b, folded into one multiply-add over the full tensor
        scale = torch.rsqrt(var + self.eps).to(x.dtype) * self.weight[:, None]
        shift = self.bias[:, None] - mean.to(x.dtype) * scale
        if x.dim() == 4:
            scale, shift = scale.unsqueeze(-1), shift.unsqueeze(-1)
        return torch.addcmul(shift, x, scale), new_state

    def _decayed_sums(self, n: Tensor, s1: Tensor, s2: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Exponentially weighted running sums ``c_t = decay * c_{t-1} + s_t`` of (B, C, T) float64
        inputs, from ``state`` (or zeros): cumulative sums rescaled by ``decay ** -k``, in chunks
        short enough that the rescaling cannot overflow."""
        sums = torch.stack((n, s1, s2), dim=-1)  # (B, C, T, 3)
        carry = state if state is not None else torch.zeros_like(sums[:, :, 0])
        if torch.onnx.is_in_onnx_export():
            # one chunk as long as the input, so that a graph with a dynamic frame axis takes any
            # length (more chunks would be unrolled at the traced length); in float64 the
            # rescaling stays finite up to about 700 * tau frames per call
            chunk = sums.shape[2]
        else:
            chunk = max(1, min(512, int(30.0 * (self.tau or 1.0))))
        k = torch.arange(chunk, device=sums.device, dtype=torch.float64)
        grow, shrink = self.decay ** -k, self.decay ** k  # (chunk,)
        outs = []
        for start in range(0, sums.shape[2], chunk):
            part = sums[:, :, start : start + chunk]
            m = part.shape[2]
            acc = torch.cumsum(part * grow[:m, None], dim=2) * shrink[:m, None]
            acc = acc + carry[:, :, None] * (self.decay * shrink[:m, None])
            outs.append(acc)
            carry = acc[:, :, -1]
        out = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]
        return out[..., 0], out[..., 1], out[..., 2]


class _CompilableInstanceNorm:
    """Under ``torch.compile``, instance norm as per-(item, channel) statistics and one
    multiply-add: the same function as torch's kernel, which views the input as a
    (1, B * C, ...) batch norm, a reshape that keeps inductor from fusing it with the
    channels-last convolutions around it. Eager calls (and ONNX export) keep torch's kernel."""

    def forward(self, x: Tensor) -> Tensor:
        if not (torch.compiler.is_compiling() and self.affine and not self.track_running_stats):
            return super().forward(x)
        var, mean = torch.var_mean(x, dim=tuple(range(2, x.dim())), correction=0, keepdim=True)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        scale = torch.rsqrt(var + self.eps) * self.weight.view(shape)
        return torch.addcmul(self.bias.view(shape), x - mean, scale)


class InstanceNorm1d(_CompilableInstanceNorm, nn.InstanceNorm1d):
    """``nn.InstanceNorm1d`` (same parameters and state dict) that compiles well."""


class InstanceNorm2d(_CompilableInstanceNorm, nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` (same parameters and state dict) that compiles well."""


class _InstanceNormPReLU(torch.autograd.Function):
    """``prelu(instance_norm(x) * w + b, a)`` for (B, C, T, F) ``x``, with a hand-written backward.

    Used only under ``torch.compile`` (see :func:`instance_norm_prelu`): the backward needs
    nothing but ``x``, the per-(item, channel) statistics and the parameters, and makes two
    passes over ``x`` and the incoming gradient (three reductions per item and channel, then
    the input gradient), which inductor compiles into two channels-last loops. Autograd's own
    backward of the same expressions keeps the normalised map as an intermediate that inductor
    lays out channels-first for the reductions, transposing it back and forth.
    """

    @staticmethod
    def forward(x: Tensor, w: Tensor, b: Tensor, a: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
        var, mean = torch.var_mean(x, dim=(2, 3), correction=0, keepdim=True)
        rstd = torch.rsqrt(var + eps)
        c = (1, -1, 1, 1)
        z = torch.addcmul(b.view(c), x - mean, rstd * w.view(c))
        return torch.where(z > 0, z, z * a.view(-1, 1, 1) if a.numel() > 1 else z * a), mean, rstd

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, w, b, a, _ = inputs
        _, mean, rstd = output
        ctx.save_for_backward(x, w, b, a, mean, rstd)
        ctx.mark_non_differentiable(mean, rstd)

    @staticmethod
    def backward(ctx, gy: Tensor, *_: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, None]:
        x, w, b, a, mean, rstd = ctx.saved_tensors
        c = (1, -1, 1, 1)
        xhat = (x - mean) * rstd
        z = torch.addcmul(b.view(c), xhat, w.view(c))
        pos = z > 0
        gz = torch.where(pos, gy, gy * (a.view(-1, 1, 1) if a.numel() > 1 else a))
        n = x.shape[2] * x.shape[3]
        s1 = gz.sum((2, 3), keepdim=True)  # (B, C, 1, 1): bias gradient per item
        s2 = (gz * xhat).sum((2, 3), keepdim=True)  # weight gradient per item
        s3 = torch.where(pos, torch.zeros_like(gy), gy * z).sum((0, 2, 3))  # PReLU slope gradient
        gx = (rstd * w.view(c)) * (gz - s1 / n - xhat * (s2 / n))
        ga = s3 if a.numel() > 1 else s3.sum().reshape(a.shape)
        return gx, s2.sum((0, 2, 3)), s1.sum((0, 2, 3)), ga, None


def instance_norm_prelu(x: Tensor, norm: nn.Module, act: nn.PReLU) -> Tensor:
    """``act(norm(x))`` for an affine instance norm of (B, C, T, F) maps and a PReLU: the same
    function. Under ``torch.compile`` it runs as :class:`_InstanceNormPReLU`; eager calls keep
    torch's own kernels."""
    if torch.compiler.is_compiling() and x.dim() == 4 and isinstance(norm, InstanceNorm2d) and norm.affine \
            and not norm.track_running_stats:
        return _InstanceNormPReLU.apply(x, norm.weight, norm.bias, act.weight, norm.eps)[0]
    return act(norm(x))


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


def make_norm(kind: str, channels: int, dims: int, eps: float = 1e-5, prior: float = 1.0,
              tau: float | None = None) -> nn.Module:
    """Build the norm named ``kind`` for ``dims``-D feature maps (1: (B,C,T), 2: (B,C,T,F)).

    ``prior`` and ``tau`` are the pseudo-frame count and the decay time constant (frames,
    None = no decay) of the cumulative norm (ignored by the others).
    """
    if kind == "in":
        cls = InstanceNorm1d if dims == 1 else InstanceNorm2d
        return cls(channels, eps=eps, affine=True)
    if kind == "bn":
        cls = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
        return cls(channels, eps=eps)
    if kind == "cin":
        return CumulativeInstanceNorm(channels, eps, prior, tau)
    if kind == "fln":
        return FrameLayerNorm(channels, eps)
    raise ValueError(f"unknown norm {kind!r}")
