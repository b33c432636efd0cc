"""gagnet enhance / gagnet models and the Enhancer API, with a tiny random model."""
from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from gagnet import GaGNet, WaveGaGNet, get_config
from gagnet import enhance as enh_mod
from gagnet import pretrained
from gagnet.config import TrainConfig
from gagnet.enhance import Enhancer, EnhanceError, run_cli
from gagnet.pretrained import ModelError, load_model
from gagnet.train import save_weights




pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_net() -> GaGNet:
    torch.manual_seed(0)
    return GaGNet(get_config("tiny")).eval()


@pytest.fixture(scope="module")
def model_pt(tmp_path_factory, tiny_net) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_weights(tiny_net, path)
    return path


@pytest.fixture(scope="module")
def enhancer(model_pt) -> Enhancer:
    return Enhancer.from_pretrained(model_pt, block_seconds=0.5)


def _write(path: Path, x: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, subtype=subtype)
    return path


def _noise(n: int, channels: int = 1, seed: int = 0, scale: float = 0.1) -> np.ndarray:
    x = scale * np.random.default_rng(seed).standard_normal((n, channels)).astype(np.float32)
    return x[:, 0] if channels == 1 else x


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = run_cli(["enhance", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _err_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


# --------------------------------------------------------------------------- formats
@pytest.mark.parametrize(
    "sr,channels,subtype",
    [
        (8000, 1, "PCM_16"),
        (16000, 2, "FLOAT"),
        (22050, 1, "PCM_24"),
        (44100, 2, "PCM_16"),
        (48000, 1, "FLOAT"),
        (48000, 2, "PCM_24"),
        (8000, 2, "FLOAT"),
        (22050, 2, "PCM_16"),
    ],
)
def test_enhance_file_keeps_rate_channels_subtype_length(tmp_path, enhancer, sr, channels, subtype):
    n = int(0.6 * sr) + 13  # odd length
    src = _write(tmp_path / "in.wav", _noise(n, channels), sr, subtype)
    rep = enhancer.enhance_file(src, tmp_path / "out.wav")
    assert rep.status == "done", rep.message
    assert rep.seconds == pytest.approx(n / sr) and rep.rtf is not None and rep.rtf > 0
    a, b = sf.info(str(src)), sf.info(str(rep.dst))
    assert (b.samplerate, b.channels, b.frames, b.subtype, b.format) == (sr, channels, n, subtype, "WAV")
    y, _ = sf.read(str(rep.dst), dtype="float32", always_2d=True)
    assert np.isfinite(y).all() and np.abs(y).max() > 0


@pytest.mark.parametrize("name", ["in.flac", "in.wav"])
def test_the_inputs_tags_are_kept(tmp_path, enhancer, name):
    src = tmp_path / name
    with sf.SoundFile(str(src), "w", 16000, 1, subtype="PCM_16") as f:
        f.title, f.artist, f.comment = "Interview 3", "Field team", "take 2"
        f.write(_noise(8000))
    rep = enhancer.enhance_file(src, tmp_path / "out" / name)
    assert rep.status == "done", rep.message
    with sf.SoundFile(str(rep.dst)) as f:
        assert (f.title, f.artist, f.comment) == ("Interview 3", "Field team", "take 2")


def test_flac_and_unwritable_format_fallback(tmp_path, enhancer, monkeypatch):
    src = _write(tmp_path / "in.flac", _noise(7001, 2), 22050, "PCM_24")
    rep = enhancer.enhance_file(src, tmp_path / "o.flac")
    assert rep.status == "done" and sf.info(str(rep.dst)).subtype == "PCM_24" and sf.info(str(rep.dst)).frames == 7001
    from gagnet import audio_files as af

    src = _write(tmp_path / "in.wav", _noise(5000), 16000, "PCM_16")
    monkeypatch.setattr(af, "_can_write", lambda fmt, st, sr, ch: fmt == "FLAC")  # e.g. mp3 on an old libsndfile
    rep = enhancer.enhance_file(src, tmp_path / "o2.wav")
    assert rep.status == "done" and rep.dst == tmp_path / "o2.flac" and "writing FLAC instead" in rep.message
    assert sf.info(str(rep.dst)).format == "FLAC" and sf.info(str(rep.dst)).frames == 5000


# --------------------------------------------------------------------------- API
@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("shape", [(4001,), (1, 4001), (2, 3999)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_api_returns_type_and_shape(enhancer, kind, shape, dtype):
    x = 0.1 * np.random.default_rng(1).standard_normal(shape).astype(dtype)
    wave = torch.from_numpy(x) if kind == "torch" else x
    y = enhancer.enhance(wave, 22050)
    assert type(y) is type(wave) and tuple(y.shape) == shape and y.dtype == wave.dtype
    assert np.isfinite(np.asarray(y)).all()


def test_api_int16_channels_independent(enhancer):
    x = (np.random.default_rng(2).standard_normal((2, 8000)) * 3000).astype(np.int16)
    y = enhancer.enhance(x, 16000)
    assert y.dtype == np.int16 and y.shape == x.shape
    y0 = enhancer.enhance(x[0], 16000)
    np.testing.assert_array_equal(y[0], y0)  # each channel on its own


def test_api_bad_input(enhancer):
    x = np.zeros(1000, np.float32)
    x[10] = np.nan
    with pytest.raises(EnhanceError, match="NaN or Inf"):
        enhancer.enhance(x, 16000)
    with pytest.raises(EnhanceError, match="NaN or Inf"):
        enhancer.enhance(torch.tensor([0.0, float("inf")]), 16000)
    with pytest.raises(EnhanceError, match="no samples"):
        enhancer.enhance(np.zeros(0, np.float32), 16000)
    with pytest.raises(EnhanceError, match="shape"):
        enhancer.enhance(np.zeros((1, 2, 3), np.float32), 16000)
    with pytest.raises(EnhanceError, match="sample_rate"):
        enhancer.enhance(np.zeros(10, np.float32), 0)


@pytest.mark.parametrize("name", ["silence", "dc", "clipped"])
def test_api_silence_dc_clipped_finite(enhancer, name):
    n = 12345
    x = {
        "silence": np.zeros(n, np.float32),
        "dc": np.full(n, 0.3, np.float32),
        "clipped": np.clip(3 * np.sin(np.arange(n) * 0.05), -1, 1).astype(np.float32),
    }[name]
    y = enhancer.enhance(x, 44100)
    assert y.shape == x.shape and np.isfinite(y).all()


class _LaggingFIR:
    """A causal test processor y[t] = 0.5 x[t] + 0.25 x[t-1] whose output lags by varying amounts."""

    def __init__(self, model=None, block_seconds=None, session=None):
        self.prev = np.float32(0.0)
        self.held = np.zeros(0, np.float32)
        self.calls = 0

    def process(self, chunk):
        y = 0.5 * chunk + 0.25 * np.concatenate([[self.prev], chunk[:-1]]).astype(np.float32)
        self.prev = chunk[-1]
        self.held = np.concatenate([self.held, y.astype(np.float32)])
        self.calls += 1
        k = max(0, self.held.size - 37 * (self.calls % 4))  # hold back 0 .. 111 samples
        out, self.held = self.held[:k], self.held[k:]
        return out

    def flush(self):
        out, self.held = self.held, np.zeros(0, np.float32)
        return out


@pytest.mark.parametrize("sr,channels", [(44100, 1), (8000, 2), (16000, 2)])
def test_pipeline_matches_whole_resample_process_resample(tiny_net, monkeypatch, sr, channels):
    """Streamed resampling, blocks and exact-length trimming equal whole-signal processing."""
    monkeypatch.setattr(enh_mod, "_make_processor", _LaggingFIR)
    n = sr + 77
    x = 0.1 * np.random.default_rng(3).standard_normal((channels, n)).astype(np.float32)
    y = Enhancer(WaveGaGNet(tiny_net), block_seconds=0.13).enhance(x, sr)
    assert y.shape == x.shape
    for c in range(channels):
        x16 = soxr.resample(x[c], sr, 16000, quality="HQ") if sr != 16000 else x[c]
        y16 = 0.5 * x16 + 0.25 * np.concatenate([[0.0], x16[:-1]])
        ref = soxr.resample(y16.astype(np.float32), 16000, sr, quality="HQ")[:n] if sr != 16000 else y16
        ref = np.pad(ref, (0, n - ref.size))
        np.testing.assert_allclose(y[c], ref, atol=1e-6)


def test_block_versus_whole_through_enhance_file(tmp_path, model_pt, tiny_net):
    assert tiny_net.cfg.causal
    n = 16000 * 3 + 111
    x = _noise(n, seed=4)
    src = _write(tmp_path / "in.wav", x, 16000, "FLOAT")
    small = Enhancer.from_pretrained(model_pt, block_seconds=0.37)
    rep = small.enhance_file(src, tmp_path / "out.wav")
    assert rep.status == "done"
    y, _ = sf.read(str(rep.dst), dtype="float32")
    with torch.no_grad():
        ref = WaveGaGNet(tiny_net)(torch.from_numpy(x)).numpy()
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, atol=1e-4)


@pytest.mark.parametrize("sr,channels", [(16000, 1), (44100, 2)])
def test_atten_lim_mixes_the_aligned_input_back(model_pt, sr, channels):
    """Output = (1 - g) * enhanced + g * input, sample-aligned through blocks and resampling."""
    x = _noise(sr * 2 + 333, channels, seed=6).T
    plain = Enhancer.from_pretrained(model_pt, block_seconds=0.37).enhance(x, sr)
    g = 10 ** (-6.0 / 20)
    limited = Enhancer.from_pretrained(model_pt, block_seconds=0.37, atten_lim_db=6.0).enhance(x, sr)
    np.testing.assert_allclose(limited, (1 - g) * plain + g * x, atol=1e-6)
    assert np.abs(plain - x).max() > 1e-2  # the model does change the input
    passthrough = Enhancer.from_pretrained(model_pt, block_seconds=0.37, atten_lim_db=0.0).enhance(x, sr)
    np.testing.assert_allclose(passthrough, x, atol=1e-7)


def test_atten_lim_bad_values(model_pt, tmp_path, capsys):
    for bad in (-3.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="atten_lim_db"):
            Enhancer.from_pretrained(model_pt, atten_lim_db=bad)
    src = _write(tmp_path / "a.wav", _noise(1600), 16000)
    rc, _, err = _cli(capsys, src, "--model", model_pt, "--atten-lim", "-1")
    assert rc == 2 and _err_lines(err) == ["gagnet enhance: --atten-lim must be a number of dB >= 0, off or model, got -1"]
    rc, _, err = _cli(capsys, src, "--model", model_pt, "--atten-lim", "12")
    assert rc == 0 and (tmp_path / "a_enhanced.wav").is_file()


def test_model_file_names_its_attenuation_limit(tmp_path, tiny_net, model_pt, capsys):
    """A file's atten_lim_db is the default of from_pretrained and the CLI; None / off turn it off."""
    path = tmp_path / "limited.pt"
    torch.save({"config": tiny_net.cfg.to_dict(), "state_dict": tiny_net.state_dict(), "atten_lim_db": 6.0}, path)
    assert pretrained.recommended_atten_lim(path) == 6.0 and pretrained.recommended_atten_lim(model_pt) is None
    x = _noise(16000 + 77, seed=3)
    raw = Enhancer.from_pretrained(path, atten_lim_db=None)
    limited = Enhancer.from_pretrained(path)
    assert raw.atten_lim_db is None and limited.atten_lim_db == 6.0
    g = 10 ** (-6.0 / 20)
    np.testing.assert_allclose(limited.enhance(x, 16000), (1 - g) * raw.enhance(x, 16000) + g * x, atol=1e-6)
    assert Enhancer.from_pretrained(path, atten_lim_db=20.0).atten_lim_db == 20.0
    with pytest.raises(ValueError, match="atten_lim_db must be a number of dB, None or 'model'"):
        Enhancer.from_pretrained(path, atten_lim_db="loud")

    src = _write(tmp_path / "a.wav", x, 16000, "FLOAT")
    rc, out, err = _cli(capsys, src, "--model", path, "-o", tmp_path / "default")
    assert rc == 0 and err == "" and "noise lowered by at most 6 dB" in out
    rc, out, err = _cli(capsys, src, "--model", path, "-o", tmp_path / "off", "--atten-lim", "off")
    assert rc == 0 and "lowered" not in out
    y_default, _ = sf.read(str(tmp_path / "default" / "a.wav"), dtype="float32")
    y_off, _ = sf.read(str(tmp_path / "off" / "a.wav"), dtype="float32")
    np.testing.assert_allclose(y_default, (1 - g) * y_off + g * x, atol=1e-6)

    legacy = tmp_path / "legacy.pt"  # torch's old non-zip format cannot be memory-mapped
    torch.save({"config": tiny_net.cfg.to_dict(), "state_dict": tiny_net.state_dict(), "atten_lim_db": 9.0}, legacy,
               _use_new_zipfile_serialization=False)
    assert Enhancer.from_pretrained(legacy).atten_lim_db == 9.0
    with pytest.raises(ValueError, match="Enhancer.from_pretrained takes 'model'"):
        Enhancer(load_model(path), atten_lim_db="model")

    for bad in (-1.0, float("nan"), "loud"):
        torch.save({"config": tiny_net.cfg.to_dict(), "state_dict": tiny_net.state_dict(), "atten_lim_db": bad},
                   tmp_path / "bad.pt")
        with pytest.raises(ModelError, match="atten_lim_db must be a finite number of dB >= 0"):
            Enhancer.from_pretrained(tmp_path / "bad.pt")


def test_non_causal_model_in_blocks(tmp_path):
    net = GaGNet(get_config("tiny", norm="in")).eval()
    assert not net.cfg.causal
    src = _write(tmp_path / "in.wav", _noise(22050 * 2 + 5, 2), 22050, "PCM_16")
    rep = Enhancer(WaveGaGNet(net), block_seconds=0.5).enhance_file(src, tmp_path / "out.wav")
    assert rep.status == "done", rep.message
    y, sr = sf.read(str(rep.dst), dtype="float32")
    assert sr == 22050 and y.shape == (22050 * 2 + 5, 2) and np.isfinite(y).all()


def test_interrupt_leaves_no_file(tmp_path, enhancer, monkeypatch):
    src = _write(tmp_path / "in.wav", _noise(16000 * 3), 16000)
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.wav").write_bytes(b"old")
    real = enh_mod._make_processor

    class Boom:
        def __init__(self, model, block_seconds, session=None):
            self.inner, self.calls = real(model, block_seconds, session), 0

        def process(self, chunk):
            self.calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt
            return self.inner.process(chunk)

        def flush(self):
            return self.inner.flush()

    monkeypatch.setattr(enh_mod, "_make_processor", Boom)
    with pytest.raises(KeyboardInterrupt):
        enhancer.enhance_file(src, out / "new.wav")
    with pytest.raises(KeyboardInterrupt):
        enhancer.enhance_file(src, out / "kept.wav", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["kept.wav"]
    assert (out / "kept.wav").read_bytes() == b"old"


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_killed_mid_run_leaves_no_output(tmp_path, model_pt, sig):
    src = _write(tmp_path / "long.wav", _noise(48000 * 60, seed=5), 48000)
    out = tmp_path / "out"
    out.mkdir()
    code = "import sys; from gagnet.enhance import run_cli; sys.exit(run_cli(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "enhance", str(src), "-o", str(out), "--model", str(model_pt),
         "--block-seconds", "0.5"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in out.iterdir() if p.name.startswith(".long.part")]
            if temps and (temps[0].stat().st_size > 0):
                break  # writing has started
            time.sleep(0.005)
        assert proc.poll() is None, "finished before it could be stopped: " + proc.stderr.read().decode()
        os.kill(proc.pid, getattr(signal, sig))
        rc = proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert not (out / "long.wav").exists()
    left = [p.name for p in out.iterdir()]
    if sig == "SIGTERM":  # cleaned up, one line on stderr
        assert rc == 130 and left == []
        err = proc.stderr.read().decode().strip()
        assert err == "gagnet enhance: interrupted; the file in progress was not written"
    else:  # nothing could run: only the hidden temporary name may remain
        assert all(name.startswith(".long.part") and name.endswith(".wav") for name in left)


# --------------------------------------------------------------------------- CLI
def test_cli_default_output_next_to_input(tmp_path, model_pt, capsys):
    src = _write(tmp_path / "a.wav", _noise(9000), 16000)
    rc, out, err = _cli(capsys, src, "--model", model_pt)
    assert rc == 0 and err == ""
    assert (tmp_path / "a_enhanced.wav").is_file()
    assert "1 file (0 failed, 0 skipped)" in out and "h of audio, real-time factor" in out
    # rerunning on the folder does not enhance the outputs again, and skips the existing one
    rc, out, err = _cli(capsys, tmp_path, "--model", model_pt)
    assert rc == 0 and "1 file (0 failed, 1 skipped)" in out
    assert not (tmp_path / "a_enhanced_enhanced.wav").exists()


def test_cli_skip_existing_unless_overwrite(tmp_path, model_pt, capsys):
    src = _write(tmp_path / "a.wav", _noise(9000), 16000)
    dst = tmp_path / "out" / "a.wav"
    dst.parent.mkdir()
    dst.write_bytes(b"previous")
    rc, out, _ = _cli(capsys, src, "-o", tmp_path / "out", "--model", model_pt)
    assert rc == 0 and dst.read_bytes() == b"previous" and "1 skipped" in out
    rc, out, _ = _cli(capsys, src, "-o", tmp_path / "out", "--model", model_pt, "--overwrite")
    assert rc == 0 and sf.info(str(dst)).frames == 9000 and "0 skipped" in out


def test_cli_never_writes_over_an_input(tmp_path, model_pt, capsys):
    src = _write(tmp_path / "a.wav", _noise(9000), 16000)
    other = _write(tmp_path / "b.wav", _noise(9000, seed=1), 16000)
    before = src.read_bytes(), other.read_bytes()
    rc, _, err = _cli(capsys, src, "-o", src, "--model", model_pt, "--overwrite")
    assert rc == 1 and len(_err_lines(err)) == 1 and "refusing to write over an input" in err
    rc, _, err = _cli(capsys, tmp_path, "-o", tmp_path, "--model", model_pt, "--overwrite")
    assert rc == 1 and len(_err_lines(err)) == 2
    # the output of one input would be another input of the batch
    sub = tmp_path / "sub"
    _write(sub / "b.wav", _noise(9000, seed=2), 16000)
    rc, _, err = _cli(capsys, sub / "b.wav", other, "-o", tmp_path, "--model", model_pt, "--overwrite")
    assert rc == 1 and "refusing" in err
    assert (src.read_bytes(), other.read_bytes()) == before


def test_cli_single_file_output_name(tmp_path, model_pt, capsys):
    src = _write(tmp_path / "a.wav", _noise(9000), 16000, "PCM_24")
    rc, _, err = _cli(capsys, src, "-o", tmp_path / "new" / "clean.wav", "--model", model_pt)
    assert rc == 0 and err == ""
    assert sf.info(str(tmp_path / "new" / "clean.wav")).subtype == "PCM_24"


def test_cli_folder_tree_and_glob(tmp_path, model_pt, capsys):
    for rel in ("a.wav", "x/b.flac", "x/y/c.wav"):
        _write(tmp_path / "in" / rel, _noise(5000), 16000)
    rc, out, err = _cli(capsys, tmp_path / "in", "-o", tmp_path / "out", "--model", model_pt)
    assert rc == 0 and err == "" and "3 files (0 failed, 0 skipped)" in out
    got = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert got == ["a.wav", "x/b.flac", "x/y/c.wav"]
    assert sf.info(str(tmp_path / "out" / "x" / "b.flac")).format == "FLAC"
    rc, out, err = _cli(capsys, f"{tmp_path}/in/**/*.wav", "-o", tmp_path / "g", "--model", model_pt)
    assert rc == 0 and err == ""
    got = sorted(p.relative_to(tmp_path / "g").as_posix() for p in (tmp_path / "g").rglob("*") if p.is_file())
    assert got == ["a.wav", "x/y/c.wav"]


def test_cli_plot(tmp_path, model_pt, capsys):
    src = _write(tmp_path / "a.wav", _noise(30000, 2), 22050)
    rc, _, err = _cli(capsys, src, "-o", tmp_path / "out", "--model", model_pt, "--plot")
    assert rc == 0 and err == ""
    png = tmp_path / "out" / "a.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    _write(tmp_path / "two" / "b.flac", _noise(8000), 16000)
    _write(tmp_path / "two" / "b.wav", _noise(8000, seed=1), 16000)
    rc, _, err = _cli(capsys, tmp_path / "two", "-o", tmp_path / "out2", "--model", model_pt, "--plot")
    assert rc == 0 and err == ""
    assert sorted(p.name for p in (tmp_path / "out2").glob("*.png")) == ["b.png", "b_wav.png"]  # one plot each


def _bad_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.wav").write_bytes(b"")
    sf.write(str(folder / "zero.wav"), np.zeros((0, 1), np.float32), 16000)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + b"\xff" * 20)
    (folder / "text.wav").write_text("just some text, renamed to .wav\n" * 20)
    x = _noise(8000)
    x[5000] = np.inf
    sf.write(str(folder / "nan.wav"), x, 16000, subtype="FLOAT")
    (folder / "noaudio").mkdir(exist_ok=True)
    (folder / "noaudio" / "readme.txt").write_text("nothing to see")
    return {
        "empty": folder / "empty.wav",
        "zero": folder / "zero.wav",
        "corrupt": folder / "corrupt.wav",
        "text": folder / "text.wav",
        "nan": folder / "nan.wav",
        "noaudio": folder / "noaudio",
    }


@pytest.mark.parametrize("case", ["empty", "zero", "corrupt", "text", "nan", "noaudio"])
def test_cli_bad_input_one_line_others_run(tmp_path, model_pt, capsys, case):
    bad = _bad_inputs(tmp_path / "bad")[case]
    good = _write(tmp_path / "good.wav", _noise(6000), 16000)
    rc, out, err = _cli(capsys, bad, good, "-o", tmp_path / "out", "--model", model_pt)
    lines = _err_lines(err)
    assert rc == 1
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("gagnet enhance: ") and str(bad) in lines[0]
    assert (tmp_path / "out" / "good.wav").is_file()
    assert not (tmp_path / "out" / bad.name).exists()
    assert "(1 failed, 0 skipped)" in out


def test_cli_bad_inputs_messages(tmp_path, model_pt, capsys):
    paths = _bad_inputs(tmp_path / "bad")
    rc, _, err = _cli(capsys, *paths.values(), "-o", tmp_path / "out", "--model", model_pt)
    assert rc == 1
    lines = _err_lines(err)
    assert len(lines) == len(paths)
    text = "\n".join(lines)
    for needle in ("empty file (0 bytes)", "zero.wav: no samples", "corrupt.wav: not a readable audio file",
                   "text.wav: not a readable audio file", "NaN or Inf", "noaudio: folder has no audio files"):
        assert needle in text
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cli_usage_errors(tmp_path, model_pt, capsys, monkeypatch):
    rc, _, err = _cli(capsys, tmp_path / "missing.wav", "--model", model_pt)
    assert rc == 2 and len(_err_lines(err)) == 1 and "no such file" in err
    (tmp_path / "empty_dir").mkdir()
    rc, _, err = _cli(capsys, tmp_path / "empty_dir", "--model", model_pt)
    assert rc == 2 and len(_err_lines(err)) == 1
    src = _write(tmp_path / "a.wav", _noise(4000), 16000)
    monkeypatch.setattr(pretrained, "DEFAULT_MODEL", None)
    rc, _, err = _cli(capsys, src)  # no --model and no default
    assert rc == 2 and _err_lines(err) == [
        "gagnet enhance: no default model is shipped yet; pass --model PATH (a model.pt or .ckpt from gagnet train)"
    ]
    rc, _, err = _cli(capsys, src, "--model", tmp_path / "nope.pt")
    assert rc == 2 and len(_err_lines(err)) == 1 and "no such model file" in err
    rc, _, err = _cli(capsys, src, "--model", model_pt, "--block-seconds", "0")
    assert rc == 2 and "--block-seconds" in err


def test_cli_unwritable_output(tmp_path, model_pt, capsys):
    src = _write(tmp_path / "a.wav", _noise(4000), 16000)
    (tmp_path / "file").write_text("in the way")
    rc, _, err = _cli(capsys, src, "-o", tmp_path / "file", "--model", model_pt)
    assert rc == 1 and len(_err_lines(err)) == 1 and "a file is in the way" in err
    rc, _, err = _cli(capsys, src, "-o", tmp_path / "file" / "x.wav", "--model", model_pt)
    assert rc == 1 and len(_err_lines(err)) == 1 and "a file is in the way" in err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permissions")
def test_cli_no_write_permission(tmp_path, model_pt, capsys):
    src = _write(tmp_path / "a.wav", _noise(4000), 16000)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, _, err = _cli(capsys, src, "-o", ro, "--model", model_pt)
    finally:
        ro.chmod(0o755)
    assert rc == 1 and len(_err_lines(err)) == 1 and "Permission denied" in err


def test_cli_no_write_permission_simulated(tmp_path, model_pt, capsys, monkeypatch):
    """The same as above for root, who ignores permissions: creating the temporary file fails."""
    from gagnet import audio_files as af

    real_open = os.open

    def deny(path, *a, **k):
        if ".part" in os.fspath(path):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(af.os, "open", deny)
    src = _write(tmp_path / "a.wav", _noise(4000), 16000)
    rc, _, err = _cli(capsys, src, "-o", tmp_path / "ro", "--model", model_pt)
    assert rc == 1 and len(_err_lines(err)) == 1 and "Permission denied" in err
    assert list((tmp_path / "ro").iterdir()) == []


@pytest.mark.parametrize("name", ["silence", "dc", "clipped"])
def test_cli_silence_dc_clipped(tmp_path, model_pt, capsys, name):
    n = 11025 + 3
    x = {
        "silence": np.zeros(n, np.float32),
        "dc": np.full(n, -0.4, np.float32),
        "clipped": np.clip(4 * np.sin(np.arange(n) * 0.07), -1, 1).astype(np.float32),
    }[name]
    src = _write(tmp_path / f"{name}.wav", x, 11025, "PCM_16")
    rc, _, err = _cli(capsys, src, "-o", tmp_path / "out", "--model", model_pt)
    assert rc == 0 and err == ""
    y, sr = sf.read(str(tmp_path / "out" / f"{name}.wav"), dtype="float32")
    assert sr == 11025 and y.shape == (n,) and np.isfinite(y).all()


# --------------------------------------------------------------------------- models
def test_models_listing_marks_the_default_and_its_limit(capsys):
    assert pretrained.DEFAULT_MODEL is None or pretrained.DEFAULT_MODEL in pretrained.available()
    assert run_cli(["models"]) == 0
    out = capsys.readouterr().out
    if not pretrained.available():
        assert "No model is shipped yet" in out
    for name in pretrained.available():
        line = next(x for x in out.splitlines() if x[2:].startswith(name + " "))
        assert line.startswith("*") == (name == pretrained.DEFAULT_MODEL)
        limit = pretrained.recommended_atten_lim(name)
        assert ("[--atten-lim" in line) == (limit is not None)
        if limit is not None:
            assert f"[--atten-lim {limit:g} by default]" in line


@pytest.mark.parametrize("name", sorted(pretrained.available()) or [None])
def test_every_shipped_model_loads_streams_and_is_labelled(name):
    """Each shipped file loads as a causal model whose stream equals its offline output; a
    placeholder says so in its name and card and is never the default."""
    if name is None:
        pytest.skip("no model is shipped")
    from gagnet.streaming import StreamingEnhancer

    info = pretrained.card(name)
    assert info["summary"] and "\n" not in info["summary"]
    if "placeholder" in name or "PLACEHOLDER" in info["summary"]:
        assert "placeholder" in name and "PLACEHOLDER" in info["summary"]
        assert pretrained.DEFAULT_MODEL != name
    assert pretrained.resolve(name).stat().st_size <= 25 * 2**20
    model = load_model(name)
    torch.manual_seed(0)
    x = 0.1 * torch.randn(4000)
    with torch.no_grad():
        offline = model(x)
    assert torch.isfinite(offline).all() and offline.shape == x.shape
    stream = StreamingEnhancer(model)
    out = torch.cat([stream.process(x[i:i + 333]) for i in range(0, len(x), 333)] + [stream.flush()])
    d = stream.latency_samples
    assert (out[d:d + len(x)] - offline).abs().max() < 1e-4


def test_default_model_runs_without_model_and_names_its_limit(tmp_path, capsys):
    """`gagnet enhance FILE` uses the shipped default with the limit its file names."""
    if pretrained.DEFAULT_MODEL is None:
        pytest.skip("no default model is shipped")
    limit = pretrained.recommended_atten_lim(None)
    x = _noise(8000, seed=9)
    src = _write(tmp_path / "a.wav", x, 16000, "FLOAT")
    rc, out, err = _cli(capsys, src)
    assert rc == 0 and err == ""
    if limit is not None:
        assert f"at most {limit:g} dB" in out
    y, _ = sf.read(str(tmp_path / "a_enhanced.wav"), dtype="float32")
    raw = Enhancer.from_pretrained(atten_lim_db=None).enhance(x, 16000)
    g = 0.0 if limit is None else 10 ** (-limit / 20)
    np.testing.assert_allclose(y, (1 - g) * raw + g * x, atol=1e-5)


def test_from_pretrained_without_default(monkeypatch):
    monkeypatch.setattr(pretrained, "DEFAULT_MODEL", None)
    with pytest.raises(ModelError, match="no default model is shipped yet; pass --model PATH"):
        Enhancer.from_pretrained()
    assert issubclass(ModelError, ValueError)


def test_shipped_model_fp16_card_and_listing(tmp_path, tiny_net, monkeypatch, capsys):
    sd = {k: v.half() if v.is_floating_point() else v for k, v in tiny_net.state_dict().items()}
    card = {"summary": "tiny test model\nwith a second line", "data": "none"}
    torch.save({"config": tiny_net.cfg.to_dict(), "state_dict": sd, "card": card}, tmp_path / "tiny-test.pt")
    (tmp_path / "tiny-test.md").write_text("# tiny test\n")
    torch.save({"config": tiny_net.cfg.to_dict(), "state_dict": sd}, tmp_path / "nocard.pt")
    (tmp_path / "nocard.md").write_text("\n# A model card headline\n\nbody\n")
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    assert pretrained.available() == {
        "nocard": "A model card headline",
        "tiny-test": "tiny test model with a second line",
    }
    m = load_model("tiny-test")
    assert all(p.dtype == torch.float32 for p in m.parameters())
    ref = GaGNet(tiny_net.cfg).eval()
    ref.load_state_dict({k: v.float() for k, v in sd.items()})
    x = torch.randn(5000)
    with torch.no_grad():
        torch.testing.assert_close(m(x), WaveGaGNet(ref)(x), atol=0, rtol=0)
    monkeypatch.setattr(pretrained, "DEFAULT_MODEL", "tiny-test")
    assert pretrained.resolve(None) == tmp_path / "tiny-test.pt"
    assert run_cli(["models"]) == 0
    out = capsys.readouterr().out
    assert "* tiny-test" in out and "tiny test model" in out and "default" in out
    with pytest.raises(ModelError, match=r"unknown model 'other' \(shipped models: nocard, tiny-test\)"):
        load_model("other")


def test_load_model_pt_and_lightning_ckpt(tmp_path, tiny_net, model_pt):
    ckpt = {
        "epoch": 3,
        "global_step": 1000,
        "hyper_parameters": {"train_cfg": TrainConfig(model="tiny").to_dict()},
        "state_dict": {"model.net." + k: v for k, v in tiny_net.state_dict().items()},
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    x = torch.randn(4000)
    with torch.no_grad():
        ref = WaveGaGNet(tiny_net)(x)
        for path in (model_pt, tmp_path / "last.ckpt"):
            m = load_model(path)
            assert isinstance(m, WaveGaGNet) and not m.training
            torch.testing.assert_close(m(x), ref)


def test_load_model_errors(tmp_path, tiny_net):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file at all")
    torch.save({"weights": 1}, tmp_path / "dict.pt")
    torch.save(tiny_net.state_dict(), tmp_path / "raw.pt")
    bad = dict(tiny_net.state_dict())
    bad.pop(next(iter(bad)))
    torch.save({"config": tiny_net.cfg.to_dict(), "state_dict": bad}, tmp_path / "missing_key.pt")
    torch.save({"config": get_config("causal").to_dict(), "state_dict": tiny_net.state_dict()}, tmp_path / "shape.pt")
    torch.save({"config": tiny_net.cfg.to_dict(), "state_dict": tiny_net.state_dict(), "when": datetime.date(2026, 1, 1)},
               tmp_path / "objects.pt")
    (tmp_path / "zip.pt").write_bytes(b"PK\x03\x04 but a broken archive")
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07")
    _write(tmp_path / "audio.wav", _noise(100), 16000)
    cases = {
        "empty.pt": "empty file",
        "junk.pt": "not a PyTorch weights file",
        "audio.wav": "not a PyTorch weights file",
        "m.onnx": "an ONNX graph; `gagnet stream --model` runs it",
        "objects.pt": "holds Python objects besides weights, which are not loaded",
        "zip.pt": "cannot load",
        "dict.pt": "not a gagnet model file",
        "raw.pt": "not a gagnet model file",
        "missing_key.pt": "1 missing",
        "shape.pt": "do not match",
        "nope.pt": "no such model file",
    }
    for name, needle in cases.items():
        with pytest.raises(ModelError) as e:
            load_model(tmp_path / name)
        assert needle in str(e.value) and "\n" not in str(e.value), (name, str(e.value))
        assert "weights_only" not in str(e.value)  # torch's advice to load unsafely is not passed on
    with pytest.raises(ModelError, match="unknown model 'no-such-name'"):
        load_model("no-such-name")


# --------------------------------------------------------------------------- onnx back end
@pytest.mark.parametrize("kw", [{"norm": "cin"}, {"norm": "cin", "cin_tau": 2.0}, {"norm": "in"}])
def test_onnx_backend_matches_torch_and_caches(tmp_path, monkeypatch, kw):
    """The ONNX Runtime back end gives the PyTorch output (causal: state carried across
    blocks, also with a decaying norm whose eager sums run in 60-frame chunks while each
    block here has 100 frames; non-causal: the same overlapping blocks) and exports each
    model only once."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("GAGNET_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(1)
    norm = kw["norm"]
    model = WaveGaGNet(GaGNet(get_config("tiny", **kw))).eval()
    x = (0.1 * np.random.default_rng(3).standard_normal((2, 50001))).astype(np.float32)
    ref = Enhancer(model, block_seconds=1.0).enhance(x, 22050)
    fast = Enhancer(model, block_seconds=1.0, backend="onnx")
    out = fast.enhance(x, 22050)
    assert out.shape == x.shape and np.abs(out - ref).max() < 1e-4
    cached = sorted((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(cached) == 1 and cached[0].name.startswith("streaming" if norm == "cin" else "offline")
    stamp = cached[0].stat().st_mtime_ns
    again = Enhancer(model, block_seconds=1.0, backend="onnx").enhance(x, 22050)
    np.testing.assert_array_equal(again, out)
    assert sorted((tmp_path / "cache" / "onnx").glob("*")) == cached and cached[0].stat().st_mtime_ns == stamp


def test_onnx_backend_refusals(tiny_net):
    with pytest.raises(ValueError, match="backend must be one of auto, torch, onnx"):
        Enhancer(WaveGaGNet(tiny_net), backend="tensorrt")
    with pytest.raises(ValueError, match="the onnx back end runs on the CPU"):
        Enhancer(WaveGaGNet(tiny_net), device="cuda", backend="onnx")


def test_cli_backend_onnx(tmp_path, monkeypatch, capsys, model_pt):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("GAGNET_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "in.flac"
    sf.write(str(src), (0.1 * np.random.default_rng(5).standard_normal(12000)).astype(np.float32), 16000,
             subtype="PCM_24")
    outs = {}
    for backend in ("torch", "onnx"):
        rc, _, err = _cli(capsys, src, "-o", tmp_path / backend, "--model", model_pt, "--backend", backend)
        assert rc == 0 and err == ""
        outs[backend], sr = sf.read(str(tmp_path / backend / "in.flac"), dtype="float32")
    assert np.abs(outs["onnx"] - outs["torch"]).max() < 1e-4


def test_progress_bar_on_a_terminal_unless_no_progress(model_pt, tmp_path, monkeypatch):
    """On a terminal the batch shows a bar (with the file being enhanced); --no-progress hides it
    and leaves the summary line."""
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    src = _write(tmp_path / "a.wav", _noise(1600), 16000)
    shown = {}
    for flag in ((), ("--no-progress",)):
        err = Terminal()
        monkeypatch.setattr(sys, "stderr", err)
        rc = run_cli(["enhance", str(src), "--model", str(model_pt), "-o", str(tmp_path / f"out{len(flag)}"), *flag])
        assert rc == 0
        shown[flag] = err.getvalue()
    assert "enhance: 100%" in shown[()] and "1/1" in shown[()]
    assert "enhance:" not in shown[("--no-progress",)] and "1/1" not in shown[("--no-progress",)]
