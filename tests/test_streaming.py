"""The streaming twin equals offline processing, for any chunk size."""
import numpy as np
import pytest
import torch

from gagnet import GaGNet, WaveGaGNet, get_config
from gagnet.streaming import (
    NotCausalError,
    OverlapBlockProcessor,
    StreamingEnhancer,
    make_block_processor,
)


def _model(name="causal", **kw):
    torch.manual_seed(0)
    return WaveGaGNet(GaGNet(get_config(name, **kw))).eval()


def _stream(model, x, chunk):
    s = StreamingEnhancer(model)
    outs = [s.process(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    outs.append(s.flush())
    return np.concatenate(outs), s.latency_samples


@pytest.fixture(scope="module")
def causal_case():
    model = _model("causal")
    x = (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    return model, x, ref


@pytest.mark.parametrize("chunk", [1, 160, 333, 16000])
def test_stream_equals_offline(causal_case, chunk):
    model, x, ref = causal_case
    y, lat = _stream(model, x, chunk)
    assert lat == 320
    assert len(y) == len(x) + lat
    assert np.all(y[:lat] == 0)
    assert np.abs(y[lat:] - ref).max() < 1e-4


def test_reset_starts_a_new_stream(causal_case):
    model, x, ref = causal_case
    s = StreamingEnhancer(model)
    s.process(np.ones(5000, dtype=np.float32))
    s.reset()
    y = np.concatenate([s.process(x), s.flush()])
    assert np.abs(y[320:] - ref).max() < 1e-4


def test_torch_chunks_give_torch_output(causal_case):
    model, x, _ = causal_case
    out = StreamingEnhancer(model).process(torch.from_numpy(x[:1000]))
    assert isinstance(out, torch.Tensor) and out.shape == (1000,)


@pytest.mark.parametrize("norm", ["fln", "bn"])
def test_other_causal_norms_stream(norm):
    model = _model("tiny", norm=norm)
    x = (0.1 * np.random.default_rng(1).standard_normal(5000)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    y, lat = _stream(model, x, 777)
    assert np.abs(y[lat:] - ref).max() < 1e-4


def test_non_causal_config_is_refused():
    with pytest.raises(NotCausalError, match="cannot stream"):
        StreamingEnhancer(_model("paper"))


def test_block_processor_causal_is_exact_and_length_preserving(causal_case):
    model, x, ref = causal_case
    p = make_block_processor(model)
    out = [p.process(x[i : i + 3000]) for i in range(0, len(x), 3000)] + [p.flush()]
    y = np.concatenate(out)
    assert len(y) == len(x)
    assert np.abs(y - ref).max() < 1e-4


class _Gain(torch.nn.Module):
    """A stand-in 'model' whose output is known: twice its input."""

    cfg = get_config("paper")

    def forward(self, x):
        return 2 * x


def test_overlap_blocks_join_seamlessly():
    x = np.random.default_rng(2).standard_normal(50000).astype(np.float32)
    p = OverlapBlockProcessor(_Gain(), block_seconds=0.5, overlap_seconds=0.1)
    y = np.concatenate([p.process(x[i : i + 3001]) for i in range(0, len(x), 3001)] + [p.flush()])
    assert len(y) == len(x)
    assert np.abs(y - 2 * x).max() < 1e-5


def test_overlap_blocks_for_non_causal_models():
    model = _model("tiny", norm="in")
    x = (0.1 * np.random.default_rng(2).standard_normal(20000)).astype(np.float32)
    p = make_block_processor(model, block_seconds=0.25)
    assert isinstance(p, OverlapBlockProcessor)
    y = np.concatenate([p.process(x[i : i + 3001]) for i in range(0, len(x), 3001)] + [p.flush()])
    assert len(y) == len(x) and np.isfinite(y).all()


def test_nan_input_is_taken_as_zero_and_never_fills_the_state(causal_case, caplog):
    model, x, _ = causal_case
    bad = x.copy()
    bad[1000], bad[4000] = np.nan, -np.inf
    clean = np.nan_to_num(bad, nan=0.0, neginf=0.0)
    s = StreamingEnhancer(model)
    with caplog.at_level("WARNING", logger="gagnet.streaming"):
        y = np.concatenate([s.process(bad[i : i + 160]) for i in range(0, len(bad), 160)] + [s.flush()])
        t = s.process(torch.tensor([float("nan")] * 5))
    ref, _ = _stream(model, clean, 160)
    assert np.isfinite(y).all() and np.abs(y - ref).max() < 1e-6
    assert torch.isfinite(t).all() and s.nonfinite == 7 and caplog.text.count("taken as 0") == 1
    pytest.importorskip("onnxruntime")
    fast = StreamingEnhancer(model, backend="onnx", precision="fp32")  # the numpy-framed fast step
    y = np.concatenate([fast.process(bad[i : i + 160]) for i in range(0, len(bad), 160)] + [fast.flush()])
    assert np.isfinite(y).all() and np.abs(y - ref).max() < 1e-4 and fast._inner.nonfinite == 0 and fast.nonfinite == 2


# --------------------------------------------------------------------------- the user's entry points
def _speechlike_wave(seconds: float = 1.0) -> "np.ndarray":
    rng = np.random.default_rng(3)
    t = np.arange(int(16000 * seconds)) / 16000
    voiced = sum(np.sin(2 * np.pi * 160 * k * t) / k for k in range(1, 8)) * (np.sin(2 * np.pi * 3 * t) > 0)
    return (0.05 * voiced + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _streamed(stream, x: "np.ndarray", chunk: int) -> "np.ndarray":
    stream.reset()
    out = [stream.process(x[i : i + chunk]) for i in range(0, len(x), chunk)] + [stream.flush()]
    return np.concatenate(out)[stream.latency_samples :]


@pytest.mark.parametrize("entry", ["from_pretrained", "enhancer"])
def test_default_streaming_is_fast_carries_the_limit_and_equals_offline(entry):
    pytest.importorskip("onnxruntime")
    import gagnet

    enhancer = gagnet.Enhancer.from_pretrained(backend="torch")  # the reference: PyTorch, the model's limit
    if entry == "from_pretrained":
        stream = gagnet.StreamingEnhancer.from_pretrained(precision="fp32")
    else:
        stream = gagnet.StreamingEnhancer(enhancer, precision="fp32")
    assert stream.backend == "onnx" and stream.limit_db == enhancer.atten_lim_db == 12.0
    x = _speechlike_wave()
    ref = enhancer.enhance(x, 16000)
    for chunk in (1, 160, 333, 16000):
        y = _streamed(stream, x, chunk)
        assert y.shape == x.shape and np.abs(y - ref).max() < 1e-4, chunk
    # the limit is really applied: without it the output differs, and mixes back to the same
    bare = gagnet.StreamingEnhancer.from_pretrained(atten_lim_db=None, precision="fp32")
    assert bare.limit_db is None
    y0 = _streamed(bare, x, 160)
    g = 10 ** (-12 / 20)
    assert np.abs(y0 - ref).max() > 1e-3 and np.abs((1 - g) * y0 + g * x - ref).max() < 1e-4


def test_default_precision_is_the_native_int8_step_where_it_builds():
    pytest.importorskip("onnxruntime")
    import gagnet
    from gagnet.native import native_available

    enhancer = gagnet.Enhancer.from_pretrained(backend="torch")
    stream = gagnet.StreamingEnhancer.from_pretrained()
    expect = ("native", "int8") if native_available() else ("onnx", "fp32")
    assert (stream.engine, stream.precision) == expect and stream.limit_db == 12.0
    x = _speechlike_wave()
    ref = enhancer.enhance(x, 16000)
    y = _streamed(stream, x, 160)
    err_db = 10 * np.log10(np.sum((y - ref) ** 2) / np.sum(ref**2))
    assert y.shape == x.shape and err_db < -35, err_db  # int8 weights: within -35 dB of offline float32


def test_streaming_falls_back_to_torch_and_says_so(monkeypatch, caplog):
    import gagnet
    import gagnet.enhance

    monkeypatch.setattr(gagnet.enhance, "onnx_available", lambda: False)
    enhancer = gagnet.Enhancer.from_pretrained()
    assert enhancer.backend == "torch"
    with caplog.at_level("INFO", logger="gagnet.streaming"):
        stream = gagnet.StreamingEnhancer(enhancer)
    assert stream.backend == "torch" and "streaming in PyTorch" in caplog.text
    x = _speechlike_wave(0.5)
    assert np.abs(_streamed(stream, x, 333) - enhancer.enhance(x, 16000)).max() < 1e-4
