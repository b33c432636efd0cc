"""1-D convolutions of the S-TCM and glance-gaze part, as run under ``torch.compile``."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def conv1d(conv: nn.Conv1d, x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
    """``conv(x)`` for (B, C, T) ``x`` (optionally with other ``weight``/``bias`` of the same layout).

    Eager calls are ``conv``'s own. Under ``torch.compile`` the same convolution runs as a 2-D
    one over (B, C, 1, T): inductor lays 2-D convolutions out channels-last (time-major here),
    in which oneDNN runs these 1x1 and dilated convolutions and their gradients up to twice as
    fast as in the (B, C, T) layout it keeps for 1-D ones.
    """
    if weight is None:
        weight, bias = conv.weight, conv.bias
    if not torch.compiler.is_compiling() or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return conv(x) if weight is conv.weight else F.conv1d(x, weight, bias, conv.stride, conv.padding,
                                                              conv.dilation, conv.groups)
    y = F.conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, (1, conv.stride[0]), (0, conv.padding[0]),
                 (1, conv.dilation[0]), conv.groups)
    return y.squeeze(2)
