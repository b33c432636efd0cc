import math

import pytest
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


def _decayed_reference(x: torch.Tensor, tau: float, prior: float, eps: float) -> torch.Tensor:
    """Frame-by-frame recursion of the decaying cumulative norm (unit weight, zero bias)."""
    d, per = math.exp(-1.0 / tau), x.shape[3]
    n = s1 = s2 = torch.zeros(x.shape[:2], dtype=torch.float64)
    out = []
    for t in range(x.shape[2]):
        f = x[:, :, t]
        n, s1, s2 = d * n + per, d * s1 + f.sum(-1), d * s2 + (f * f).sum(-1)
        mean = s1 / (n + prior * per)
        var = ((s2 + prior * per) / (n + prior * per) - mean**2).clamp_min(0)
        out.append((f - mean[..., None]) * torch.rsqrt(var[..., None] + eps))
    return torch.stack(out, 2)


@pytest.mark.parametrize("tau", [3.0, 150.0])
def test_decaying_cin_matches_recursion_and_streams(tau):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 1300, 5, dtype=torch.float64) * 3 + 1  # longer than one internal chunk
    norm = CumulativeInstanceNorm(3, tau=tau).double()
    y = norm(x)
    assert torch.allclose(y, _decayed_reference(x, tau, 1.0, norm.eps), atol=1e-12)
    norm.streaming = True
    parts = [norm(x[:, :, a:b]) for a, b in [(0, 1), (1, 300), (300, 301), (301, 1300)]]
    assert torch.allclose(torch.cat(parts, 2), y, atol=1e-12)


def test_decaying_cin_forgets_the_distant_past():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 3000)
    x2 = x.clone()
    x2[:, :, :100] = 50 * torch.randn(1, 4, 100) + 7  # a loud, offset start
    decaying, cumulative = CumulativeInstanceNorm(4, tau=20.0), CumulativeInstanceNorm(4)
    late = slice(2000, None)
    assert (decaying(x2)[..., late] - decaying(x)[..., late]).abs().max() < 1e-6
    assert (cumulative(x2)[..., late] - cumulative(x)[..., late]).abs().max() > 1e-2
