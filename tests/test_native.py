"""The native int8 stages: exact against the fast step with the same (rounded) weights, close to
float32 on the shipped model, and the contract of the user's entry point."""
import numpy as np
import pytest
import torch

from gagnet import GaGNet, WaveGaGNet, get_config
from gagnet.fast_step import FastStreamingEnhancer
from gagnet.quantize import dequantize_columns, quantize_columns

pytest.importorskip("onnxruntime")
native = pytest.importorskip("gagnet.native")
if not native.native_available():
    pytest.skip("no C compiler here: the native stages cannot be built", allow_module_level=True)

pytestmark = pytest.mark.usefixtures("one_thread")


def _bn_model(**kw):
    """A causal batch-norm model with random norms and slopes (some scales negative, some slopes > 1)."""
    torch.manual_seed(1)
    net = GaGNet(get_config("tiny", norm="bn", **kw))
    g = torch.Generator().manual_seed(2)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            m.weight.data = torch.randn(m.weight.shape, generator=g)
            m.bias.data = 0.3 * torch.randn(m.bias.shape, generator=g)
            m.running_mean = 0.2 * torch.randn(m.running_mean.shape, generator=g)
            m.running_var = 0.5 + torch.rand(m.running_var.shape, generator=g)
        elif isinstance(m, torch.nn.PReLU):
            m.weight.data = 1.5 * torch.rand(m.weight.shape, generator=g) - 0.25
    gl, gz = net.stages[0].glance, net.stages[0].gaze
    for stack in (gl.tcm, gz.tcm_real, gz.tcm_imag):  # one position whose first norm has positive scales only
        stack[0][0].norm1.weight.data.abs_()
    return WaveGaGNet(net).eval()


def _stream(enh, x, chunk=160):
    enh.reset()
    out = [enh.process(x[i : i + chunk]) for i in range(0, len(x), chunk)] + [enh.flush()]
    return np.concatenate(out)[enh.latency_samples :]


def _noise(n, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_pack_layout_and_rounding():
    w = np.random.default_rng(0).standard_normal((70, 100))
    q, scale = native.pack_int8(w)
    assert q.dtype == np.int8 and q.shape == (2, 70, 64) and scale.shape == (128,)
    unpacked = q.transpose(1, 0, 2).reshape(70, 128).astype(np.float64) * scale
    assert np.all(unpacked[:, 100:] == 0)  # padded columns
    assert np.all(np.abs(unpacked[:, :100] - w) <= scale[:100] / 2 * (1 + 1e-6))


def test_native_stages_equal_the_fast_step_with_the_same_int8_weights():
    """The C code computes exactly what the fast step computes, given the rounded weights."""
    model = _bn_model()
    enh = native.NativeStreamingEnhancer(model)
    assert enh.stages.int8_params > 0.8 * sum(p.numel() for p in model.net.stages.parameters())
    ref = FastStreamingEnhancer(model)
    with torch.no_grad():  # round the same weights the native stages round, in the eager fast step
        for stage in ref.step.stages:
            tensors = [stage.inp, stage.out] + [t for tcm in stage.tcms for t in (tcm.squeeze, tcm.dconv, tcm.expand)]
            for t in tensors:
                w = t.detach().double().numpy()
                t.copy_(torch.from_numpy(dequantize_columns(*quantize_columns(w))))
    ref.reset()
    fold = [tcm.fold1 for st in ref.step.stages for tcm in st.tcms]
    assert any(fold) and not all(fold)  # both batch-norm paths of the first norm are exercised
    x = _noise(6000)
    for chunk in (1, 160, 333):
        y, want = _stream(enh, x, chunk), _stream(ref, x, chunk)
        assert y.shape == x.shape and np.abs(y - want).max() < 2e-5 * max(1.0, np.abs(want).max()), chunk


def test_native_int8_is_close_to_float32_and_streams_like_it():
    model = _bn_model()
    enh = native.NativeStreamingEnhancer(model)
    x = _noise(8000, seed=3)
    with torch.no_grad():
        offline = model(torch.from_numpy(x)).numpy()
    y = _stream(enh, x, 333)
    err_db = 10 * np.log10(np.sum((y - offline) ** 2) / np.sum(offline**2))
    assert -60 < err_db < -25, err_db  # rounded weights: close, not equal
    assert np.abs(_stream(enh, x, 1) - y).max() < 1e-6  # chunking does not matter
    enh.reset()
    assert np.all(enh.process(x[:320]) == 0)  # latency 320 samples, as every streamer


def test_default_int8_is_native_with_the_models_limit(tmp_path, monkeypatch):
    import gagnet

    from test_streaming import _speechlike_wave, _streamed

    monkeypatch.setenv("GAGNET_CACHE", str(tmp_path / "cache"))
    f32 = gagnet.StreamingEnhancer.from_pretrained(precision="fp32")
    q8 = gagnet.StreamingEnhancer.from_pretrained(precision="int8")
    assert (q8.engine, q8.precision, f32.engine) == ("native", "int8", "onnx")
    assert q8.limit_db == f32.limit_db == 12.0 and q8.latency_samples == f32.latency_samples == 320
    x = _speechlike_wave(2.0)
    ref = _streamed(f32, x, 160)
    y = _streamed(q8, x, 160)
    err_db = 10 * np.log10(np.sum((y - ref) ** 2) / np.sum(ref**2))
    assert y.shape == x.shape and -60 < err_db < -30, err_db


def test_native_refuses_other_norms():
    with pytest.raises(ValueError, match="batch-norm"):
        native.NativeStreamingEnhancer(WaveGaGNet(GaGNet(get_config("tiny"))))  # cumulative norm


def test_an_unwritable_cache_builds_the_stages_for_this_run_alone(tmp_path, monkeypatch, caplog):
    import gagnet
    from gagnet import build_cache

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("GAGNET_CACHE", str(blocker))  # the cache folder cannot be made
    monkeypatch.setattr(build_cache, "_fallback", [])
    monkeypatch.setattr(native, "_LIB", None)
    with caplog.at_level("WARNING", logger="gagnet.build_cache"):
        native.load_library()
        precision = gagnet.streaming.resolve_precision("auto", "onnx", get_config("causal-bn"))
    assert precision == "int8" and caplog.text.count("cannot write the cache folder") == 1
    assert any(build_cache._fallback[0].glob("native-stages-*.so")) and blocker.read_text() == "not a folder"
