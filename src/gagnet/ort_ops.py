"""Exact rewrites of layers that ONNX Runtime's CPU kernels run slowly, applied before export.

ONNX Runtime's ``PRelu`` with per-channel slopes goes through its generic broadcasting path:
on the paper-size offline graph it took 35 % of the kernel time for a 10 s input. The same
function as ``max(x, slope * x)`` (exact while every slope is in [0, 1], the usual case) or
else ``relu(x) + slope * min(x, 0)`` (exact: one of the two terms is zero) runs 2-4× faster there. PyTorch's own ``prelu`` is faster than that form, so the model itself keeps
``nn.PReLU``; only graphs traced for export are rewritten.

ONNX Runtime's ``ConvTranspose`` (the UNet blocks' frequency upsampling) took a quarter of
the same graph's time; :class:`PolyphaseConvTranspose` computes it as one ordinary ``Conv``
whose two output halves are the even and odd output bins, interleaved afterwards.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


class SplitPReLU(nn.Module):
    """``nn.PReLU`` as ``max(x, weight * x)`` when all slopes are in [0, 1], else as
    ``relu(x) + weight * min(x, 0)``; (B, C, ...) -> same shape."""

    def __init__(self, prelu: nn.PReLU) -> None:
        super().__init__()
        self.weight = nn.Parameter(prelu.weight.detach().clone(), requires_grad=False)
        self.as_max = bool(((self.weight >= 0) & (self.weight <= 1)).all())

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        if w.numel() > 1:  # per channel: broadcast over the dims after the channel dim
            w = w.reshape(-1, *([1] * (x.dim() - 2)))
        if self.as_max:
            return torch.maximum(x, w * x)
        return torch.relu(x) + w * torch.clamp(x, max=0.0)


class PolyphaseConvTranspose(nn.Module):
    """``nn.ConvTranspose2d`` with kernel (1, 3) and stride (1, 2) as one ``Conv``.

    (B, Cin, T, F) -> (B, Cout, T, 2F + 1). Output bin 2m is ``w0 x[m] + w2 x[m-1]`` and bin
    2m + 1 is ``w1 x[m]``: a (1, 2) conv over the input padded by one zero bin on each side
    gives both, with the even taps (w2, w0) in the first Cout channels and (0, w1) in the
    last; the F + 1 even and F + 1 odd values are interleaved and the last (odd, past the
    end) is dropped.
    """

    def __init__(self, conv: nn.ConvTranspose2d) -> None:
        super().__init__()
        w = conv.weight.detach().transpose(0, 1)  # (Cout, Cin, 1, 3)
        even = w[..., [2, 0]]
        odd = torch.cat((torch.zeros_like(w[..., :1]), w[..., 1:2]), dim=-1)
        self.weight = nn.Parameter(torch.cat((even, odd)), requires_grad=False)  # (2 Cout, Cin, 1, 2)
        b = conv.bias.detach() if conv.bias is not None else torch.zeros(w.shape[0])
        self.bias = nn.Parameter(torch.cat((b, b)), requires_grad=False)
        self.cout = w.shape[0]

    @staticmethod
    def applies(conv: nn.Module) -> bool:
        return (isinstance(conv, nn.ConvTranspose2d) and tuple(conv.kernel_size) == (1, 3)
                and tuple(conv.stride) == (1, 2) and tuple(conv.padding) == (0, 0)
                and tuple(conv.output_padding) == (0, 0) and tuple(conv.dilation) == (1, 1)
                and conv.groups == 1)

    def forward(self, x: Tensor) -> Tensor:
        b, _, t, f = x.shape
        y = nn.functional.conv2d(x, self.weight, self.bias, padding=(0, 1))  # (B, 2 Cout, T, F + 1)
        y = y.reshape(b, 2, self.cout, t, f + 1).permute(0, 2, 3, 4, 1).reshape(b, self.cout, t, 2 * f + 2)
        return y[..., : 2 * f + 1]


def ort_friendly(net: nn.Module) -> nn.Module:
    """Replace, in place, every ``nn.PReLU`` of ``net`` by :class:`SplitPReLU` and every
    (1, 3)-kernel, (1, 2)-stride ``nn.ConvTranspose2d`` by :class:`PolyphaseConvTranspose`;
    returns ``net``."""
    for name, child in list(net.named_children()):
        if isinstance(child, nn.PReLU):
            setattr(net, name, SplitPReLU(child))
        elif PolyphaseConvTranspose.applies(child):
            setattr(net, name, PolyphaseConvTranspose(child))
        else:
            ort_friendly(child)
    return net
