"""The compiled training path (``TrainConfig.compile``) computes what the eager network computes.

The network under ``torch.compile`` takes code paths of its own (instance norm as statistics
and a multiply-add, norm + PReLU with a hand-written backward), so both are checked against
eager float32 and against a float64 reference: the whole tiny network traced by dynamo and
AOT autograd (``aot_eager``, seconds), and a small block through inductor's generated code.
"""
import copy
import importlib
import shutil
import sys

import pytest
import torch

from gagnet import WaveGaGNet, get_config
from gagnet.config import GaGNetConfig
from gagnet.dsp import frame_mask
from gagnet.loss import gagnet_loss
from gagnet.model.encoder import ConvBlock
from gagnet.model.norm import _InstanceNormPReLU
from gagnet.model.stcm import SqueezedTCM
from gagnet.train import compile_loss


def _inductor_usable() -> bool:
    if not hasattr(torch, "compile") or sys.platform == "win32":
        return False
    try:
        importlib.import_module("torch._inductor")
    except Exception:
        return False
    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))


needs_compile = pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile unavailable")
needs_inductor = pytest.mark.skipif(not _inductor_usable(), reason="torch.compile (inductor, C++ compiler) unavailable")
TINY = dict(c=4, c_end=4, d_feat=16, cd1=4, unet_depths=(2, 1, 1, 1), dilations=(1,), q=1)


def _grads(module: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    module.zero_grad(set_to_none=True)
    loss.backward()
    return {k: p.grad.detach().double() for k, p in module.named_parameters()}


def _assert_as_exact_as_eager(loss_c, grads_c, loss_e, grads_e, loss_x, grads_x):
    """Compiled float32 matches eager float32, and is as close to the float64 reference."""
    torch.testing.assert_close(loss_c.double(), loss_e.double(), rtol=1e-5, atol=0)
    torch.testing.assert_close(loss_c.double(), loss_x.double(), rtol=1e-5, atol=0)
    assert grads_c.keys() == grads_e.keys() == grads_x.keys()
    # conv biases ahead of a norm have zero gradient (the norm removes them): only rounding noise there
    top = max(g.norm() for g in grads_x.values())
    for k, g in grads_x.items():
        if g.norm() < 1e-6 * top:
            continue
        err_c = float((grads_c[k] - g).norm() / g.norm())
        err_e = float((grads_e[k] - g).norm() / g.norm())
        assert err_c < max(4 * err_e, 1e-5), (k, err_c, err_e)


def test_norm_prelu_function_matches_modules():
    """The hand-written backward of norm + PReLU (used under compile) against autograd, float64."""
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64, requires_grad=True)
    w, b = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    for a in (torch.rand(3, dtype=torch.float64), torch.rand(1, dtype=torch.float64)):
        params = [t.clone().requires_grad_() for t in (w, b, a)]
        assert torch.autograd.gradcheck(lambda *t: _InstanceNormPReLU.apply(*t, 1e-5)[0], (x, *params))
        norm = torch.nn.InstanceNorm2d(3, affine=True).double()
        act = torch.nn.PReLU(a.numel()).double()
        with torch.no_grad():
            norm.weight.copy_(w), norm.bias.copy_(b), act.weight.copy_(a)
        torch.testing.assert_close(_InstanceNormPReLU.apply(x, w, b, a, 1e-5)[0], act(norm(x)))


@needs_compile
def test_compiled_loss_matches_eager(one_thread):
    """The whole (tiny) training loss as compiled, graphs traced by dynamo and AOT autograd."""
    wave = WaveGaGNet(get_config("tiny", norm="in", **TINY)).train()
    exact = copy.deepcopy(wave).double()
    n = 2400  # 0.15 s
    noisy, clean = 0.1 * torch.randn(2, n), 0.05 * torch.randn(2, n)
    lengths = torch.tensor([n, n - 800])  # a padded item: the mask path too

    def inputs(w: WaveGaGNet, dtype: torch.dtype):
        spec = w.analyze(noisy.to(dtype))
        return spec, w.analyze(clean.to(dtype)), frame_mask(lengths, w.cfg, spec.shape[-1]).to(dtype)

    torch._dynamo.reset()
    loss_x = gagnet_loss(exact.net(inputs(exact, torch.float64)[0]), *inputs(exact, torch.float64)[1:])
    loss_e = gagnet_loss(wave.net(inputs(wave, torch.float32)[0]), *inputs(wave, torch.float32)[1:])
    grads_x, grads_e = _grads(exact.net, loss_x), _grads(wave.net, loss_e)
    loss_c = compile_loss(wave.net, backend="aot_eager")(*inputs(wave, torch.float32))
    _assert_as_exact_as_eager(loss_c, _grads(wave.net, loss_c), loss_e, grads_e, loss_x, grads_x)
    assert wave.net.state_dict().keys() == exact.net.state_dict().keys()  # no wrapper in the weights


@needs_inductor
def test_inductor_norms_match_eager(one_thread):
    """Inductor's code for the compile-only paths: a 2-D norm + PReLU (hand-written backward)
    and a 1-D instance norm (statistics and a multiply-add), on channels-last maps as in the
    compiled encoder."""
    cfg = GaGNetConfig(norm="in", c=4, c_end=4, d_feat=16, cd1=4)
    block = torch.nn.ModuleDict({"enc": ConvBlock(torch.nn.Identity(), 4, cfg), "tcm": SqueezedTCM(cfg, 2)}).train()

    def run(m: torch.nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        h = m["enc"](x)  # (B, 4, T, 4)
        return m["tcm"](h.transpose(2, 3).flatten(1, 2)).square().mean()

    exact = copy.deepcopy(block).double()
    x = torch.randn(2, 4, 12, 4).contiguous(memory_format=torch.channels_last)
    loss_x = run(exact, x.double())
    loss_e = run(block, x)
    grads_x, grads_e = _grads(exact, loss_x), _grads(block, loss_e)
    torch._dynamo.reset()
    loss_c = torch.compile(run, dynamic=False)(block, x)
    _assert_as_exact_as_eager(loss_c, _grads(block, loss_c), loss_e, grads_e, loss_x, grads_x)
