import torch
import torch.nn.functional as F

from gagnet.model.norm import CumulativeInstanceNorm, FrameLayerNorm


def _prefix_instance_norm(x, t):
    """Instance norm of frames 0..t, read at frame t (the definition of the causal norm)."""
    return F.instance_norm(x[:, :, : t + 1].double(), eps=1e-5)[:, :, t]


def test_cumulative_norm_equals_instance_norm_of_each_prefix_2d():
    x = torch.randn(2, 3, 9, 5) * 3 + 1
    y = CumulativeInstanceNorm(3, prior=0.0)(x)
    for t in range(9):
        assert torch.allclose(y[:, :, t].double(), _prefix_instance_norm(x, t), atol=1e-5)


def test_cumulative_norm_equals_instance_norm_of_each_prefix_1d():
    x = torch.randn(2, 4, 12) * 2 - 1
    y = CumulativeInstanceNorm(4, prior=0.0)(x)
    for t in range(1, 12):
        ref = F.instance_norm(x[:, :, : t + 1].double(), eps=1e-5)[:, :, t]
        assert torch.allclose(y[:, :, t].double(), ref, atol=1e-5)
    # the last frame over the whole signal is the ordinary instance norm
    assert torch.allclose(y[:, :, -1], F.instance_norm(x, eps=1e-5)[:, :, -1], atol=1e-5)


def test_prior_conditions_the_first_frames():
    # two nearly equal first values: without a prior, frame 1 is normalised by their tiny spread
    x = torch.tensor([[[1.0, 1.0 + 1e-6, 0.5, 2.0]]], dtype=torch.float64)
    dx = torch.zeros_like(x)
    dx[0, 0, 1] = 1e-9

    def gain(prior):
        norm = CumulativeInstanceNorm(1, prior=prior).double()
        return float((norm(x + dx) - norm(x))[0, 0, 1]) / 1e-9

    assert gain(0.0) > 100  # only eps bounds it: about 1 / sqrt(eps)
    assert abs(gain(1.0)) < 2
    # frame 0 with one pseudo-frame: mean x/2, second moment (x^2 + 1)/2
    y = CumulativeInstanceNorm(1, prior=1.0).double()(x)
    assert torch.isclose(y[0, 0, 0], torch.tensor(0.5 / 0.75**0.5, dtype=torch.float64))
    # later frames approach the plain cumulative statistics
    x = torch.randn(1, 2, 400) * 3 + 1
    a = CumulativeInstanceNorm(2, prior=0.0)(x)
    b = CumulativeInstanceNorm(2, prior=1.0)(x)
    assert (a[..., -1] - b[..., -1]).abs().max() < 0.02


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
