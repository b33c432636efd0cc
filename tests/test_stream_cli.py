"""``gagnet stream``: WAV/raw stdin -> enhanced stdout, same format and length, equal to offline."""
import argparse
import io
import struct
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from gagnet import GaGNet, WaveGaGNet, get_config
from gagnet.stream_cli import SampleFormat, StreamFormatError, read_wav_header, register, run_stream, wav_header
from gagnet.train import save_weights


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    model = WaveGaGNet(GaGNet(get_config("tiny"))).eval()  # norm "cin": causal
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_weights(model.net, path)
    return model, path


def _offline(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def _wav_bytes(x, rate, subtype):
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def _cli(args, data, timeout=240):
    cmd = [sys.executable, "-m", "gagnet.stream_cli", "stream", "--threads", "1", *args]
    return subprocess.run(cmd, input=data, capture_output=True, timeout=timeout)


def _args(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["stream", *argv])


def _run(argv, data):
    out = io.BytesIO()
    code = run_stream(_args(argv), io.BytesIO(data), out)
    return code, out.getvalue()


# ----------------------------------------------------------------------------- through a pipe
def test_wav_pipe_equals_offline(tiny):
    model, path = tiny
    x = (0.1 * np.random.default_rng(0).standard_normal(16000 + 77)).astype(np.float32)
    res = _cli(["--model", str(path)], _wav_bytes(x, 16000, "FLOAT"))
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout[:4] == b"RIFF"
    y, rate = sf.read(io.BytesIO(res.stdout), dtype="float32", always_2d=True)
    assert rate == 16000 and y.shape == (len(x), 1)
    assert sf.info(io.BytesIO(res.stdout)).subtype == "FLOAT"
    assert np.abs(y[:, 0] - _offline(model, x)).max() < 1e-4


def test_nan_in_a_float_stream_is_taken_as_zero_not_spread(tiny, capsys):
    """One NaN would fill the causal state and seconds of output; it is taken as 0, with a warning
    and a count, and the output equals the offline output of the input with a 0 there."""
    model, path = tiny
    x = (0.1 * np.random.default_rng(1).standard_normal(8000)).astype(np.float32)
    x[3000], x[5000] = np.nan, np.inf
    code, out = _run(["--model", str(path), "--backend", "torch"], _wav_bytes(x, 16000, "FLOAT"))
    err = capsys.readouterr().err
    assert code == 0 and "NaN/Inf samples in the input are taken as 0" in err and "2 NaN/Inf input sample(s)" in err
    y, _ = sf.read(io.BytesIO(out), dtype="float32")
    assert np.isfinite(y).all() and y.shape == x.shape
    assert np.abs(y - _offline(model, np.nan_to_num(x, nan=0.0, posinf=0.0))).max() < 1e-4


def test_raw_44k_stereo_s16_keeps_length(tiny):
    _, path = tiny
    n = 44100 + 37
    x = (3000 * np.random.default_rng(1).standard_normal((n, 2))).astype("<i2")
    res = _cli(["--model", str(path), "--raw", "--rate", "44100", "--channels", "2", "--format", "s16le"], x.tobytes())
    assert res.returncode == 0, res.stderr.decode()
    assert len(res.stdout) == x.nbytes
    y = np.frombuffer(res.stdout, dtype="<i2").reshape(n, 2)
    assert np.abs(y).max() > 0 and not np.array_equal(y[:, 0], y[:, 1])


# ----------------------------------------------------------------------------- in process
def test_onnx_s16_wav_equals_offline(tiny):
    model, path = tiny
    x = (0.1 * np.random.default_rng(2).standard_normal(9000)).astype(np.float32)
    data = _wav_bytes(x, 16000, "PCM_16")
    code, out = _run(["--model", str(path), "--onnx"], data)
    assert code == 0
    y, rate = sf.read(io.BytesIO(out), dtype="float32")
    x16, _ = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == 16000 and y.shape == x.shape and sf.info(io.BytesIO(out)).subtype == "PCM_16"
    assert np.abs(y - _offline(model, x16)).max() < 1e-4  # s16 quantisation is 1.5e-5


def test_atten_lim_mixes_the_aligned_input_back(tiny):
    model, path = tiny
    x = (0.1 * np.random.default_rng(5).standard_normal(12000)).astype(np.float32)
    code, out = _run(["--model", str(path), "--atten-lim", "10"], _wav_bytes(x, 16000, "FLOAT"))
    assert code == 0
    y, _ = sf.read(io.BytesIO(out), dtype="float32")
    g = 10 ** (-10 / 20)
    assert np.abs(y - ((1 - g) * _offline(model, x) + g * x)).max() < 1e-4


def test_model_files_attenuation_limit_is_the_default(tiny, tmp_path):
    import torch

    model, _ = tiny
    path = tmp_path / "limited.pt"
    torch.save({"config": model.cfg.to_dict(), "state_dict": model.net.state_dict(), "atten_lim_db": 10.0}, path)
    x = (0.1 * np.random.default_rng(6).standard_normal(6000)).astype(np.float32)
    g = 10 ** (-10 / 20)
    for argv, expected in ([[], (1 - g) * _offline(model, x) + g * x], [["--atten-lim", "off"], _offline(model, x)]):
        code, out = _run(["--model", str(path), *argv], _wav_bytes(x, 16000, "FLOAT"))
        assert code == 0
        y, _ = sf.read(io.BytesIO(out), dtype="float32")
        assert np.abs(y - expected).max() < 1e-4
    from gagnet.export import export_streaming

    graph = export_streaming(model, tmp_path / "limited.onnx", atten_lim_db=10.0)  # the limit in its metadata
    for argv, expected in ([[], (1 - g) * _offline(model, x) + g * x], [["--atten-lim", "0"], x]):
        code, out = _run(["--model", str(graph), *argv], _wav_bytes(x, 16000, "FLOAT"))
        assert code == 0
        y, _ = sf.read(io.BytesIO(out), dtype="float32")
        assert np.abs(y - expected).max() < 1e-4


@pytest.mark.parametrize("argv", [["--onnx"], []], ids=["onnx", "default"])
def test_onnx_uses_the_fast_step(tiny, monkeypatch, tmp_path, argv):
    import gagnet.export as ex

    monkeypatch.setenv("GAGNET_CACHE", str(tmp_path / "cache"))  # exported here, not found in a cache

    seen = []
    real = ex.export_streaming

    def spy(*args, **kw):
        seen.append(kw.get("fast"))
        return real(*args, **kw)

    monkeypatch.setattr(ex, "export_streaming", spy)
    x = (0.1 * np.random.default_rng(3).standard_normal(4000)).astype(np.float32)
    code, out = _run(["--model", str(tiny[1]), *argv], _wav_bytes(x, 16000, "FLOAT"))
    assert code == 0 and seen == [True]  # the default is the ONNX fast step too
    y, _ = sf.read(io.BytesIO(out), dtype="float32")
    assert np.abs(y - _offline(tiny[0], x)).max() < 1e-4


def test_int8_step_is_close_and_torch_int8_is_refused(tiny, capsys):
    x = (0.1 * np.random.default_rng(4).standard_normal(8000)).astype(np.float32)
    code, out = _run(["--model", str(tiny[1]), "--precision", "int8"], _wav_bytes(x, 16000, "FLOAT"))
    assert code == 0
    y, _ = sf.read(io.BytesIO(out), dtype="float32")
    ref = _offline(tiny[0], x)
    err_db = 10 * np.log10(np.sum((y - ref) ** 2) / np.sum(ref**2))
    assert y.shape == x.shape and -50 < err_db < -15  # int8: close, not equal
    argv = ["--model", str(tiny[1]), "--precision", "int8", "--backend", "torch"]
    code, _ = _run(argv, _wav_bytes(x, 16000, "FLOAT"))
    err = capsys.readouterr().err
    assert code == 2 and "not in PyTorch" in err and len(err.strip().splitlines()) == 1


def test_exported_onnx_model_and_raw_stereo_f32(tiny, tmp_path):
    from gagnet.export import export_streaming

    model, _ = tiny
    graph = export_streaming(model, tmp_path / "step.onnx")
    x = (0.1 * np.random.default_rng(3).standard_normal((5000, 2))).astype("<f4")
    code, out = _run(["--model", str(graph), "--raw", "--channels", "2", "--format", "f32le"], x.tobytes())
    assert code == 0
    y = np.frombuffer(out, dtype="<f4").reshape(-1, 2)
    assert y.shape == x.shape
    for c in range(2):
        assert np.abs(y[:, c] - _offline(model, x[:, c])).max() < 1e-4


def test_wav_to_a_regular_file_gets_its_real_length(tiny, tmp_path):
    _, path = tiny
    x = (0.1 * np.random.default_rng(4).standard_normal((3000, 3))).astype(np.float32)
    dst = tmp_path / "out.wav"
    with open(dst, "wb") as f:
        assert run_stream(_args(["--model", str(path)]), io.BytesIO(_wav_bytes(x, 22050, "PCM_24")), f) == 0
    info = sf.info(dst)
    assert (info.frames, info.channels, info.samplerate, info.subtype) == (3000, 3, 22050, "PCM_24")


def test_unknown_length_wav_header(tiny):
    _, path = tiny
    fmt = SampleFormat(1, 16, 1, 16000)
    x = np.zeros((1234, 1), np.float32)
    code, out = _run(["--model", str(path)], wav_header(fmt, None) + fmt.encode(x))
    assert code == 0
    got, length = read_wav_header(io.BytesIO(out))
    assert got == fmt and length is None  # streamed out with the length unknown
    assert len(out) == 44 + 2 * 1234


@pytest.mark.parametrize("tag, bits", [(1, 8), (1, 16), (1, 24), (1, 32), (3, 32), (3, 64)])
def test_sample_formats_round_trip(tag, bits):
    fmt = SampleFormat(tag, bits, 2, 16000)
    x = np.random.default_rng(5).uniform(-0.99, 0.99, (100, 2)).astype(np.float32)
    data = fmt.encode(x)
    assert len(data) == 100 * fmt.frame_bytes
    assert np.abs(fmt.decode(data) - x).max() <= 1.0 / (1 << (bits - 1)) + 1e-7
    assert read_wav_header(io.BytesIO(wav_header(fmt, len(data))))[0] == fmt


@pytest.mark.parametrize(
    "argv, data, message",
    [
        ([], b"not a wav file at all", "not a WAV stream"),
        (["--rate", "8000"], b"", "--raw"),
        (["--config", "paper"], None, "not causal"),
        (["--model", "/nonexistent.pt"], None, "no such model file"),
        (["--config", "tiny", "--atten-lim", "-2"], None, "--atten-lim must be a number of dB >= 0"),
    ],
)
def test_errors_are_one_line(tiny, capsys, argv, data, message):
    if data is None:
        data = _wav_bytes(np.zeros(160, np.float32), 16000, "PCM_16")
    code, out = _run(argv, data)
    assert code == 2 and out == b""
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("gagnet stream:") and message in err[-1]


def test_truncated_header_is_reported():
    with pytest.raises(StreamFormatError):
        read_wav_header(io.BytesIO(b"RIFF" + struct.pack("<I", 100) + b"WAVEfmt "))
