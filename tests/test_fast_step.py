"""The fast single-frame step (eager and as ONNX) equals offline processing."""
import numpy as np
import pytest
import torch

from gagnet import GaGNet, WaveGaGNet, get_config
from gagnet.export import OnnxStreamingEnhancer, export_streaming, initial_state
from gagnet.fast_step import FastStep, FastStreamingEnhancer
from gagnet.streaming import NotCausalError

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(name="causal", **kw):
    torch.manual_seed(0)
    return WaveGaGNet(GaGNet(get_config(name, **kw))).eval()


def _stream(enh, x, chunk):
    out = [enh.process(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    return np.concatenate(out + [enh.flush()])


def _noise(n, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module")
def causal():
    return _model("causal")  # paper size, cin_tau = 150


@pytest.mark.parametrize("chunk", [1, 160, 333, 16000])
def test_fast_eager_stream_equals_offline(causal, chunk):
    x = _noise(8000)
    with torch.no_grad():
        ref = causal(torch.from_numpy(x)).numpy()
    enh = FastStreamingEnhancer(causal)
    y = _stream(enh, x, chunk)
    assert enh.latency_samples == 320 and len(y) == len(x) + 320 and np.all(y[:320] == 0)
    assert np.abs(y[320:] - ref).max() < 1e-4


def test_fast_onnx_step_equals_offline(causal, tmp_path):
    path = export_streaming(causal, tmp_path / "fast.onnx", fast=True)
    state = initial_state(path)
    assert {s.dtype for s in state} == {np.dtype(np.float32), np.dtype(np.float64)}  # pads, norm state
    x = _noise(32000, seed=1)  # 200 hops
    with torch.no_grad():
        ref = causal(torch.from_numpy(x)).numpy()
    enh = OnnxStreamingEnhancer(path, threads=1)
    y = _stream(enh, x, 160)
    assert np.abs(y[320:] - ref).max() < 1e-4
    enh.reset()
    assert np.abs(_stream(enh, x, 333) - y).max() < 1e-5


@pytest.mark.parametrize("tau", [20.0, None])
def test_fast_onnx_long_stream_equals_offline(tmp_path, tau):
    """40 s (4000 frames), far beyond the decay time (and without decay): the statistics stay exact."""
    model = _model("tiny", cin_tau=tau)
    path = export_streaming(model, tmp_path / "fast.onnx", fast=True)
    assert {s.dtype for s in initial_state(path)} == {np.dtype(np.float32), np.dtype(np.float64)}  # pads, moments
    x = _noise(16000 * 40, seed=2)
    x[: 16000 * 3] *= 30.0  # a loud start, then quieter: the statistics must follow
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    y = _stream(OnnxStreamingEnhancer(path, threads=1), x, 1600)
    assert np.abs(y[320:] - ref).max() < 1e-4


def test_fast_onnx_step_batch_norm_paper_size(tmp_path):
    """The shipped recipe's network (causal-bn, paper size, trained running statistics):
    200 streamed ONNX hops equal offline; no norm state is carried."""
    model = _model("causal-bn")
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    path = export_streaming(model, tmp_path / "fast.onnx", fast=True)
    assert {s.dtype for s in initial_state(path)} == {np.dtype(np.float32)}
    x = _noise(32000, seed=4)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    y = _stream(OnnxStreamingEnhancer(path, threads=1), x, 160)
    assert np.abs(y[320:] - ref).max() < 1e-4


def test_fast_step_batch_norm_config():
    model = _model("tiny", norm="bn")
    x = _noise(4000, seed=3)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(_stream(FastStreamingEnhancer(model), x, 160)[320:] - ref).max() < 1e-4


@pytest.mark.parametrize("tau", [150.0, None])
def test_fast_eager_paper_size_200_hops(tau):
    """The batched norm state (mean, variance of all sites) starts right: 200 hops of the
    paper-size causal model (and without decay, float64 statistics) against offline."""
    model = _model("causal", cin_tau=tau)
    x = _noise(32000, seed=4)
    x[8000:16000] *= 20.0
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(_stream(FastStreamingEnhancer(model), x, 160)[320:] - ref).max() < 1e-4


def test_fast_onnx_60_seconds_paper_size(causal, tmp_path):
    """60 s (6000 hops) of the paper-size causal model through the ONNX fast step."""
    path = export_streaming(causal, tmp_path / "fast.onnx", fast=True)
    x = _noise(16000 * 60, seed=5)
    x[16000 * 10 : 16000 * 20] *= 30.0  # loud, then quiet again
    with torch.no_grad():
        ref = causal(torch.from_numpy(x)).numpy()
    y = _stream(OnnxStreamingEnhancer(path, threads=1), x, 1600)
    assert np.abs(y[320:] - ref).max() < 1e-4


def test_fast_step_refusals(tmp_path):
    with pytest.raises(NotCausalError):
        FastStep(_model("tiny", norm="in").net)
    with pytest.raises(ValueError, match="fast step"):
        FastStep(_model("tiny", norm="fln").net)
    with pytest.raises(ValueError, match="cin_prior"):
        FastStep(_model("tiny", cin_prior=0.0).net)
    with pytest.raises(ValueError, match="one frame"):
        export_streaming(_model("tiny"), tmp_path / "x.onnx", frames_per_step=2, fast=True)


def test_weights_untouched(causal):
    before = {k: v.clone() for k, v in causal.state_dict().items()}
    FastStep(causal.net)
    assert all(torch.equal(before[k], v) for k, v in causal.state_dict().items())


def test_fast_onnx_prelu_slopes_outside_unit_interval(tmp_path):
    """Encoder PReLU slopes outside [0, 1] (trained weights have them) take the exact
    relu + w min(x, 0) form in the graph instead of max(x, w x): still equal to offline."""
    model = _model("tiny")
    enc = model.net.encoder
    with torch.no_grad():
        enc.layers[0].entry.act.weight.uniform_(-0.5, 1.5)
        enc.exit.act.weight.fill_(-0.2)
    path = export_streaming(model, tmp_path / "fast.onnx", fast=True)
    x = _noise(32000, seed=6)  # 200 hops
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    y = _stream(OnnxStreamingEnhancer(path, threads=1), x, 160)
    assert np.abs(y[320:] - ref).max() < 1e-4
