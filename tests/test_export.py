"""ONNX export: offline and streaming graphs agree with PyTorch; non-causal models do not stream."""
import numpy as np
import onnxruntime as ort
import pytest
import torch

from gagnet import GaGNet, WaveGaGNet, get_config
from gagnet.export import (
    ExportError,
    OnnxOfflineEnhancer,
    OnnxStreamingEnhancer,
    export_offline,
    export_streaming,
    initial_state,
    make_session,
    run_cli,
)
from gagnet.fast_step import FastStep
from gagnet.streaming import NotCausalError, StreamingEnhancer
from gagnet.train import save_weights

HOP = 160


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(**kw):
    torch.manual_seed(0)
    return WaveGaGNet(GaGNet(get_config("tiny", **kw))).eval()


@pytest.fixture(scope="module")
def tiny():
    return _model()  # norm "cin": causal


@pytest.fixture(scope="module")
def wave():
    return (0.1 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32)  # 2 s = 200 hops


@pytest.fixture(scope="module")
def offline_ref(tiny, wave):
    with torch.no_grad():
        return tiny(torch.from_numpy(wave)).numpy()


@pytest.fixture(scope="module")
def step_graph(tiny, tmp_path_factory):
    return export_streaming(tiny, tmp_path_factory.mktemp("onnx") / "step.onnx")


def _stream(enh, x, chunk):
    out = [enh.process(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    return np.concatenate(out + [enh.flush()])


# ----------------------------------------------------------------------------- offline
@pytest.mark.parametrize("norm", ["cin", "in"])
def test_offline_graph_matches_pytorch(norm, tmp_path, wave):
    model = _model(norm=norm)
    path = export_offline(model, tmp_path / "offline.onnx")
    x = torch.from_numpy(wave[:16000])  # 1 s
    spec = model.analyze(x[None])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["spec"] and [o.name for o in sess.get_outputs()] == ["estimate"]
    assert sess.get_inputs()[0].shape[1:3] == [2, 161]
    with torch.no_grad():
        ref_spec = model.net(spec)[-1].numpy()
        ref_wave = model(x).numpy()
    est = sess.run(None, {"spec": spec.numpy()})[0]
    assert est.shape == ref_spec.shape and np.abs(est - ref_spec).max() < 1e-4
    # dynamic batch and frames
    two = np.concatenate([spec.numpy()[..., :37], -spec.numpy()[..., :37]])
    with torch.no_grad():
        ref_two = model.net(torch.from_numpy(two))[-1].numpy()
    assert np.abs(sess.run(None, {"spec": two})[0] - ref_two).max() < 1e-4
    y = OnnxOfflineEnhancer(path).enhance(wave[:16000])
    assert y.dtype == np.float32 and y.shape == (16000,)
    assert np.abs(y - ref_wave).max() < 1e-4


def test_offline_enhancer_batch_and_short(tiny, tmp_path, wave):
    enh = OnnxOfflineEnhancer(export_offline(tiny, tmp_path / "o.onnx"))
    x = np.stack([wave[:500], wave[1000:1500]])
    with torch.no_grad():
        ref = tiny(torch.from_numpy(x)).numpy()
    assert np.abs(enh.enhance(x) - ref).max() < 1e-4
    assert enh.enhance(wave[:1]).shape == (1,)


# ----------------------------------------------------------------------------- streaming graph
def test_step_graph_contract(tiny, step_graph, wave):
    """Feed new_state_i back as state_i by hand: 200 one-frame steps equal the offline network."""
    sess = make_session(step_graph, threads=1)
    names = [i.name for i in sess.get_inputs()]
    state = initial_state(step_graph)
    assert names == ["spec"] + [f"state_{i}" for i in range(len(state))]
    assert [o.name for o in sess.get_outputs()] == ["estimate"] + [f"new_state_{i}" for i in range(len(state))]
    assert sess.get_inputs()[0].shape == [1, 2, 161, 1]
    from_model = initial_state(tiny)
    assert [(s.shape, s.dtype) for s in state] == [(s.shape, s.dtype) for s in from_model]
    assert {s.dtype for s in state} == {np.dtype(np.float32), np.dtype(np.float64)}  # pads, cumulative norms
    spec = tiny.analyze(torch.from_numpy(wave[: 200 * HOP - 160])[None])  # 200 frames
    assert spec.shape[-1] == 200
    with torch.no_grad():
        ref = tiny.net(spec)[-1].numpy()
    outs = []
    for t in range(spec.shape[-1]):
        res = sess.run(None, {"spec": spec[..., t : t + 1].numpy(), **{f"state_{i}": s for i, s in enumerate(state)}})
        outs.append(res[0])
        state = res[1:]
    assert np.abs(np.concatenate(outs, axis=-1) - ref).max() < 1e-4


def test_onnx_streaming_equals_pytorch_streaming_and_offline(tiny, step_graph, wave, offline_ref):
    onnx_enh = OnnxStreamingEnhancer(step_graph, threads=1)
    assert onnx_enh.latency_samples == 320 and onnx_enh.frames_per_step == 1
    y_onnx = _stream(onnx_enh, wave, HOP)  # 200 hops of 10 ms
    y_torch = _stream(StreamingEnhancer(tiny), wave, HOP)
    lat = 320
    assert y_onnx.shape == y_torch.shape == (len(wave) + lat,)
    assert np.all(y_onnx[:lat] == 0)
    assert np.abs(y_onnx - y_torch).max() < 1e-4
    assert np.abs(y_onnx[lat:] - offline_ref).max() < 1e-4
    # reset starts a new stream; odd chunk sizes give the same output
    onnx_enh.reset()
    assert np.abs(_stream(onnx_enh, wave, 333) - y_onnx).max() < 1e-5


@pytest.mark.parametrize("k", [3, None])
def test_frames_per_step(tiny, wave, tmp_path, k):
    path = export_streaming(tiny, tmp_path / "step.onnx", frames_per_step=k)
    enh = OnnxStreamingEnhancer(path, threads=1)
    lat = 320 + (0 if k is None else (k - 1) * HOP)
    assert enh.frames_per_step == k and enh.latency_samples == lat
    x = wave[:8000]
    with torch.no_grad():
        ref = tiny(torch.from_numpy(x)).numpy()
    for chunk in (HOP, 333):
        enh.reset()
        y = _stream(enh, x, chunk)
        assert len(y) == len(x) + lat and np.all(y[:lat] == 0)
        assert np.abs(y[lat:] - ref).max() < 1e-4
    for n in (0, 100, 481):  # short streams still flush to full length
        enh.reset()
        assert len(_stream(enh, x[:n], 50)) == n + lat


def test_one_session_for_several_channels(step_graph, wave):
    sess = make_session(step_graph, threads=1)
    a, b = OnnxStreamingEnhancer(sess), OnnxStreamingEnhancer(sess)
    ya, yb = [], []
    for i in range(0, 4000, HOP):
        ya.append(a.process(wave[i : i + HOP]))
        yb.append(b.process(-wave[i : i + HOP]))
    alone = _stream(OnnxStreamingEnhancer(sess), wave[:4000], HOP)[:4000]
    assert np.abs(np.concatenate(ya) - alone).max() < 1e-6
    assert not np.allclose(np.concatenate(ya), np.concatenate(yb))


# ----------------------------------------------------------------------------- refusals
def test_non_causal_config_is_refused_for_streaming(tmp_path):
    with pytest.raises(NotCausalError):
        export_streaming(_model(norm="in"), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_graph_kinds_are_checked(tiny, step_graph, tmp_path):
    offline = export_offline(tiny, tmp_path / "o.onnx")
    with pytest.raises(ExportError, match="offline"):
        OnnxStreamingEnhancer(offline)
    with pytest.raises(ExportError, match="streaming"):
        OnnxOfflineEnhancer(step_graph)
    with pytest.raises(ValueError):
        export_streaming(tiny, tmp_path / "bad.onnx", frames_per_step=0)


# ----------------------------------------------------------------------------- CLI
def test_cli_export(tiny, tmp_path, capsys, wave):
    weights = tmp_path / "tiny.pt"
    save_weights(tiny.net, weights)
    out = tmp_path / "sub" / "m.onnx"
    assert run_cli(["export", "--onnx", str(out), "--streaming", "--model", str(weights)]) == 0
    assert "wrote" in capsys.readouterr().err
    y = _stream(OnnxStreamingEnhancer(out), wave[:4000], HOP)
    with torch.no_grad():
        ref = tiny(torch.from_numpy(wave[:4000])).numpy()
    assert np.abs(y[320:] - ref).max() < 1e-4

    assert run_cli(["export", "--onnx", str(tmp_path / "r.onnx"), "--config", "tiny"]) == 0
    assert "RANDOM" in capsys.readouterr().err
    assert OnnxOfflineEnhancer(tmp_path / "r.onnx").cfg.name == "tiny"


def test_model_files_attenuation_limit_travels_as_metadata(tiny, tmp_path, capsys):
    """The limit a model file names is stored in the graph's metadata, not applied by the graph."""
    assert OnnxOfflineEnhancer(export_offline(tiny, tmp_path / "plain.onnx")).atten_lim_db is None
    path = tmp_path / "limited.pt"
    torch.save({"config": tiny.cfg.to_dict(), "state_dict": tiny.net.state_dict(), "atten_lim_db": 12.0}, path)
    for argv, runner in (([], OnnxOfflineEnhancer), (["--streaming"], OnnxStreamingEnhancer)):
        out = tmp_path / f"m{len(argv)}.onnx"
        assert run_cli(["export", "--onnx", str(out), "--model", str(path), *argv]) == 0
        assert "12 dB attenuation limit is in the metadata" in capsys.readouterr().err
        assert runner(out).atten_lim_db == 12.0
    x = (0.1 * np.random.default_rng(4).standard_normal(3000)).astype(np.float32)
    with torch.no_grad():  # the graph is the network alone
        ref = tiny(torch.from_numpy(x)).numpy()
    assert np.abs(_stream(OnnxStreamingEnhancer(tmp_path / "m1.onnx"), x, HOP)[320:] - ref).max() < 1e-4
    with pytest.raises(ValueError):
        export_offline(tiny, tmp_path / "bad.onnx", atten_lim_db=-3.0)


def test_cli_export_fast(tiny, tmp_path, capsys, wave):
    out = tmp_path / "fast.onnx"
    weights = tmp_path / "tiny.pt"
    save_weights(tiny.net, weights)
    assert run_cli(["export", "--onnx", str(out), "--streaming", "--fast", "--model", str(weights)]) == 0
    err = capsys.readouterr().err
    assert "fast streaming step" in err
    assert len(initial_state(out)) == len(FastStep(tiny.net).initial_state())
    y = _stream(OnnxStreamingEnhancer(out), wave[:4000], HOP)
    with torch.no_grad():
        ref = tiny(torch.from_numpy(wave[:4000])).numpy()
    assert np.abs(y[320:] - ref).max() < 1e-4


def test_cli_export_never_replaces_a_file_unasked_nor_the_model_itself(tiny, tmp_path, capsys):
    weights = tmp_path / "tiny.pt"
    save_weights(tiny.net, weights)
    before = weights.read_bytes()
    assert run_cli(["export", "--onnx", str(weights), "--model", str(weights), "--overwrite"]) == 2
    assert "is the model file being exported" in capsys.readouterr().err
    assert weights.read_bytes() == before
    notes = tmp_path / "notes.onnx"
    notes.write_text("keep me")
    assert run_cli(["export", "--onnx", str(notes), "--config", "tiny"]) == 2
    assert "--overwrite replaces it" in capsys.readouterr().err
    assert notes.read_text() == "keep me"
    assert run_cli(["export", "--onnx", str(notes), "--model", str(weights), "--overwrite"]) == 0
    assert OnnxOfflineEnhancer(notes).cfg.name == tiny.cfg.name


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--fast", "--config", "tiny"], "--fast applies to --streaming"),
        (["--streaming", "--fast", "--frames-per-step", "2", "--config", "tiny"], "one frame per step"),
        (["--streaming", "--config", "paper"], "cannot stream"),
        (["--model", "/nonexistent/m.pt"], "no such model file"),
        ([], "no default model"),
        (["--frames-per-step", "2", "--config", "tiny"], "--streaming"),
    ],
)
def test_cli_export_errors(tmp_path, capsys, monkeypatch, argv, message):
    from gagnet import pretrained

    monkeypatch.setattr(pretrained, "DEFAULT_MODEL", None)  # for the "no default model" case
    assert run_cli(["export", "--onnx", str(tmp_path / "m.onnx"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("gagnet export:") and message in err[-1]
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("slopes", [(0.25, 0.0, 1.0), (-0.5, 0.3, 1.7)])  # max form, and the fallback
def test_split_prelu_is_exact(slopes):
    from gagnet.ort_ops import SplitPReLU, ort_friendly

    prelu = torch.nn.PReLU(3)
    with torch.no_grad():
        prelu.weight.copy_(torch.tensor(slopes))
    x = torch.randn(2, 3, 7, 5) * 10
    split = SplitPReLU(prelu)
    assert split.as_max == all(0 <= s <= 1 for s in slopes)
    assert torch.equal(split(x), prelu(x))
    assert torch.equal(SplitPReLU(torch.nn.PReLU())(x), torch.nn.PReLU()(x))  # one shared slope
    net = torch.nn.Sequential(torch.nn.Conv1d(3, 3, 1), torch.nn.Sequential(torch.nn.PReLU(3)))
    ort_friendly(net)
    assert isinstance(net[1][0], SplitPReLU)


@pytest.mark.parametrize("cin,bias", [(8, True), (16, False)])
def test_polyphase_conv_transpose_equals_conv_transpose(cin, bias):
    from gagnet.ort_ops import PolyphaseConvTranspose, ort_friendly

    torch.manual_seed(0)
    up = torch.nn.ConvTranspose2d(cin, 6, (1, 3), (1, 2), bias=bias)
    for f in (1, 5, 10):
        x = torch.randn(2, cin, 4, f)
        want = up(x)
        got = PolyphaseConvTranspose(up)(x)
        assert got.shape == want.shape == (2, 6, 4, 2 * f + 1)
        assert (got - want).abs().max() < 1e-5
    other = torch.nn.ConvTranspose2d(4, 4, (1, 3), (1, 2), padding=(0, 1))  # not the pattern: kept
    net = torch.nn.Sequential(up, other)
    ort_friendly(net)
    assert isinstance(net[0], PolyphaseConvTranspose) and isinstance(net[1], torch.nn.ConvTranspose2d)
