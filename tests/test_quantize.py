"""Int8 weights for the streaming step: the quantiser, the graph rewrite and the user's entry points."""
import numpy as np
import pytest

from gagnet.quantize import dequantize_columns, quantize_columns, quantize_int8

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def test_column_quantiser_round_trip():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 50, 7)) * np.array([1e-3, 1.0, 30.0, 0, 1, 1, 1])  # tiny, large, zero columns
    q, scale = quantize_columns(w)
    assert q.dtype == np.int8 and q.shape == w.shape and scale.shape == (3, 1, 7)
    assert np.abs(q).max() == 127 and q.min() >= -127
    back = dequantize_columns(q, scale)
    # rounding to the nearest step: at most half a step per weight, and each column's peak is exact
    assert np.all(np.abs(back - w) <= scale / 2 * (1 + 1e-6))
    assert np.allclose(np.abs(back).max(axis=1), np.abs(w).max(axis=1), rtol=1e-6)
    assert np.all(back[..., 3] == 0)


def _graph(path, rng):
    """x (1, 64) -> Gemm (64x96, bias) -> reshape (3, 1, 32) -> batched MatMul (3, 32, 80) -> MatMul (80x5, small)."""
    from onnx import TensorProto, helper, numpy_helper

    w = {
        "g_w": rng.standard_normal((64, 96)).astype(np.float32) / 8,
        "g_b": rng.standard_normal(96).astype(np.float32),
        "b_w": rng.standard_normal((3, 32, 80)).astype(np.float32) / 6,
        "s_w": rng.standard_normal((80, 5)).astype(np.float32),
        "shape": np.array([3, 1, 32], np.int64),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "g_w", "g_b"], ["g"]),
        helper.make_node("Reshape", ["g", "shape"], ["r"]),
        helper.make_node("MatMul", ["r", "b_w"], ["b"]),
        helper.make_node("MatMul", ["b", "s_w"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in w.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return w


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_graph_rewrite_replaces_large_products_and_stays_close(tmp_path):
    rng = np.random.default_rng(1)
    _graph(tmp_path / "f32.onnx", rng)
    stats = quantize_int8(tmp_path / "f32.onnx", tmp_path / "int8.onnx", min_params=1000, min_rows=1)
    assert stats["replaced"] == 2 and stats["params_int8"] == 64 * 96 + 3 * 32 * 80
    assert stats["params_f32"] == 96 + 80 * 5  # the bias and the small product stay float32
    ops = [n.op_type for n in onnx.load(str(tmp_path / "int8.onnx")).graph.node]
    assert ops.count("DynamicQuantizeMatMul") == 2 and ops.count("MatMul") == 1 and "Gemm" not in ops
    errs = []
    for seed in range(20):
        x = np.random.default_rng(seed).standard_normal((1, 64)).astype(np.float32)
        ref, y = _run(tmp_path / "f32.onnx", x), _run(tmp_path / "int8.onnx", x)
        assert y.shape == ref.shape == (3, 1, 5)
        errs.append(np.sum((y - ref) ** 2) / np.sum(ref**2))
    err_db = 10 * np.log10(np.mean(errs))
    assert -55 < err_db < -25  # 8-bit weights and activations: a real, small error


def test_onnx_int8_fallback_on_the_shipped_model(tmp_path, monkeypatch, caplog):
    """Without the native stages, precision='int8' is ONNX Runtime's int8 graph, said in the log."""
    import gagnet
    import gagnet.native
    from gagnet.export import META_PRECISION, OnnxStreamingEnhancer

    from test_streaming import _speechlike_wave, _streamed

    def unavailable():
        raise gagnet.native.NativeUnavailable("no C compiler found (test)")

    monkeypatch.setattr(gagnet.native, "load_library", unavailable)
    monkeypatch.setenv("GAGNET_CACHE", str(tmp_path / "cache"))
    f32 = gagnet.StreamingEnhancer.from_pretrained(precision="fp32")
    with caplog.at_level("INFO", logger="gagnet.streaming"):
        q8 = gagnet.StreamingEnhancer.from_pretrained(precision="int8")
    assert "int8 in ONNX Runtime" in caplog.text and "no C compiler found (test)" in caplog.text
    assert (f32.precision, q8.precision, q8.engine) == ("fp32", "int8", "onnx")
    assert q8.limit_db == f32.limit_db == 12.0 and q8.latency_samples == f32.latency_samples == 320
    assert isinstance(q8._inner, OnnxStreamingEnhancer) and q8._inner.precision == "int8"
    cached = sorted(p.name for p in (tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(cached) == 2 and any(n.startswith("fast-step-int8-") for n in cached)
    graph = next((tmp_path / "cache" / "onnx").glob("fast-step-int8-*"))
    meta = {p.key: p.value for p in onnx.load(str(graph)).metadata_props}
    assert meta[META_PRECISION] == "int8"

    x = _speechlike_wave(2.0)
    ref = _streamed(f32, x, 160)
    for chunk in (160, 333):
        y = _streamed(q8, x, chunk)
        assert y.shape == x.shape and np.isfinite(y).all()
        err_db = 10 * np.log10(np.sum((y - ref) ** 2) / np.sum(ref**2))
        assert -45 < err_db < -20, err_db  # close to float32, but not the same graph


def test_int8_refusals():
    import gagnet

    with pytest.raises(ValueError, match="not in PyTorch"):
        gagnet.StreamingEnhancer.from_pretrained(backend="torch", precision="int8")
    with pytest.raises(ValueError, match="precision"):
        gagnet.StreamingEnhancer.from_pretrained(precision="fp16")


def test_export_cli_int8(tmp_path):
    from gagnet.export import META_PRECISION, OnnxStreamingEnhancer, run_cli

    out = tmp_path / "q8.onnx"
    assert run_cli(["export", "--config", "causal-bn", "--streaming", "--fast", "--int8", "--onnx", str(out)]) == 0
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta[META_PRECISION] == "int8"
    assert OnnxStreamingEnhancer(out).precision == "int8"
    no_fast = ["export", "--config", "causal-bn", "--streaming", "--int8", "--onnx", str(tmp_path / "x.onnx")]
    assert run_cli(no_fast) == 2
