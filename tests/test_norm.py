import torch
import torch.nn.functional as F

from gagnet.model.norm import CumulativeInstanceNorm, FrameLayerNorm


def _prefix_instance_norm(x, t):
    """Instance norm of frames 0..t, read at frame t (the definition of the causal norm)."""
    return F.instance_norm(x[:, :, : t + 1].double(), eps=1e-5)[:, :, t]


def test_cumulative_norm_equals_instance_norm_of_each_prefix_2d():
    x = torch.randn(2, 3, 9, 5) * 3 + 1
    y = CumulativeInstanceNorm(3)(x)
    for t in range(9):
        assert torch.allclose(y[:, :, t].double(), _prefix_instance_norm(x, t), atol=1e-5)


def test_cumulative_norm_equals_instance_norm_of_each_prefix_1d():
    x = torch.randn(2, 4, 12) * 2 - 1
    y = CumulativeInstanceNorm(4)(x)
    for t in range(1, 12):
        ref = F.instance_norm(x[:, :, : t + 1].double(), eps=1e-5)[:, :, t]
        assert torch.allclose(y[:, :, t].double(), ref, atol=1e-5)
    # the last frame over the whole signal is the ordinary instance norm
    assert torch.allclose(y[:, :, -1], F.instance_norm(x, eps=1e-5)[:, :, -1], atol=1e-5)


def test_cumulative_norm_state_makes_blocks_equal_whole():
    norm = CumulativeInstanceNorm(3)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(1, 3, 50, 7)
    whole = norm(x)
    parts, state = [], None
    for a, b in [(0, 1), (1, 13), (13, 14), (14, 50)]:
        y, state = norm.forward_with_state(x[:, :, a:b], state)
        parts.append(y)
    assert torch.allclose(torch.cat(parts, dim=2), whole, atol=1e-6)


def test_frame_layer_norm_normalises_each_frame():
    x = torch.randn(2, 6, 10, 4) * 5 + 3
    y = FrameLayerNorm(6)(x)
    assert torch.allclose(y.mean(dim=(1, 3)), torch.zeros(2, 10), atol=1e-5)
    assert torch.allclose(y.var(dim=(1, 3), unbiased=False), torch.ones(2, 10), atol=1e-3)
