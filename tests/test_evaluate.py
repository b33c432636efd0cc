import argparse
import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gagnet import evaluate as ev

FS = 16000
FAST = ["pesq_wb", "stoi", "si_sdr", "ssnr"]
DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dev" / "dns_no_reverb"


def speech_like(seconds: float = 2.0, seed: int = 0, fs: int = FS) -> np.ndarray:
    from scipy.signal import butter, lfilter

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.7 * t + seed)) / fs
    voiced = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 25))
    breath = lfilter(*butter(2, [300 / (fs / 2), 3400 / (fs / 2)], "band"), rng.standard_normal(t.size))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t + seed), 0, None) ** 1.5
    return envelope * (0.15 * voiced + 0.05 * breath) + 1e-4 * rng.standard_normal(t.size)


def noise(n: int, level: float, seed: int) -> np.ndarray:
    return level * np.random.default_rng(100 + seed).standard_normal(n)


@pytest.fixture
def dataset(tmp_path):
    """clean/clean_fileid_<i>.wav, enhanced/fileid_<i>.flac, noisy/noisy_snr<k>_fileid_<i>.wav."""
    dirs = {k: tmp_path / k for k in ("clean", "enhanced", "noisy")}
    for d in dirs.values():
        d.mkdir()
    for i, snr in enumerate((0, 5, 10)):
        x = speech_like(seed=i)
        sf.write(dirs["clean"] / f"clean_fileid_{i}.wav", x, FS)
        sf.write(dirs["enhanced"] / f"fileid_{i}.flac", x + noise(x.size, 0.003, i), FS)
        sf.write(dirs["noisy"] / f"noisy_snr{snr}_fileid_{i}.wav", x + noise(x.size, 0.03, i), FS)
    return dirs


# ------------------------------------------------------------------ pairing
def test_pairs_by_fileid_and_snr_names(dataset):
    pairs = ev.pair_files(dataset["clean"], dataset["enhanced"], dataset["noisy"])
    assert [p.key for p in pairs] == ["clean_fileid_0", "clean_fileid_1", "clean_fileid_2"]
    assert pairs[1].enhanced.name == "fileid_1.flac" and pairs[1].noisy.name == "noisy_snr5_fileid_1.wav"
    assert ev.parse_snr(pairs[1].noisy) == 5.0
    assert ev.parse_snr("a_SNR-2.5_b.wav") == -2.5 and ev.parse_snr("fileid_3.wav") is None


def test_pairs_by_relative_path(tmp_path):
    for side, ext in (("c", "wav"), ("e", "flac")):
        for sub in ("a", "b"):
            (tmp_path / side / sub).mkdir(parents=True)
            sf.write(tmp_path / side / sub / f"utt.{ext}", np.zeros(100), FS)
    pairs = ev.pair_files(tmp_path / "c", tmp_path / "e")
    assert [p.key for p in pairs] == ["a/utt", "b/utt"]
    assert pairs[0].enhanced == tmp_path / "e" / "a" / "utt.flac"


def test_unmatched_names_are_listed(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "e").mkdir()
    for i in range(13):
        sf.write(tmp_path / "c" / f"utt{i:02d}.wav", np.zeros(100), FS)
    sf.write(tmp_path / "e" / "utt00.wav", np.zeros(100), FS)
    sf.write(tmp_path / "e" / "other.wav", np.zeros(100), FS)
    with pytest.raises(ValueError) as info:
        ev.pair_files(tmp_path / "c", tmp_path / "e")
    msg = str(info.value)
    assert "12 clean file(s) without a match" in msg and "utt01, utt02" in msg and "(2 more)" in msg
    assert "1 enhanced file(s) without a match" in msg and "other" in msg
    assert "\n" not in msg


def test_missing_or_empty_dirs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not found"):
        ev.pair_files(tmp_path / "nope", tmp_path / "empty")
    with pytest.raises(ValueError, match="no audio files"):
        ev.pair_files(tmp_path / "empty", tmp_path / "empty")


# ------------------------------------------------------------------ evaluation
def test_evaluate_summary_noisy_and_improvement(dataset):
    r = ev.evaluate(dataset["clean"], dataset["enhanced"], dataset["noisy"], metrics=FAST, workers=1, progress=False)
    assert r["metrics"] == FAST and r["n_files"] == 3 and not r["errors"]
    assert [row["snr"] for row in r["files"]] == [0.0, 5.0, 10.0]
    for m in FAST:
        s, n, d = r["summary"][m], r["noisy_summary"][m], r["improvement"][m]
        assert s["n"] == n["n"] == d["n"] == 3 and s["ci95"] > 0
        assert d["mean"] == pytest.approx(s["mean"] - n["mean"])
        assert d["mean"] > 0  # less noise in "enhanced" than in "noisy"
    si = [row["si_sdr"] for row in r["files"]]
    assert r["summary"]["si_sdr"]["mean"] == pytest.approx(np.mean(si))
    from scipy.stats import t

    assert r["summary"]["si_sdr"]["ci95"] == pytest.approx(t.ppf(0.975, 2) * np.std(si, ddof=1) / math.sqrt(3))
    table = ev.format_summary(r)
    assert "pesq_wb" in table and "±" in table and "Δ" in table and "noisy" in table


def test_parallel_matches_serial(dataset):
    from gagnet.metrics import dnsmos

    dnsmos.dnsmos(speech_like(0.5))  # this process now holds ONNX Runtime sessions; forked workers must not reuse them
    os.remove(dataset["clean"] / "clean_fileid_2.wav")  # one file per worker keeps this quick
    os.remove(dataset["enhanced"] / "fileid_2.flac")
    serial = ev.evaluate(dataset["clean"], dataset["enhanced"], metrics=["si_sdr", "ssnr"], workers=1, progress=False)
    parallel = ev.evaluate(dataset["clean"], dataset["enhanced"], metrics=["si_sdr", "ssnr", "dnsmos_ovrl"],
                           workers=2, progress=False)
    for a, b in zip(serial["files"], parallel["files"]):
        assert a["file"] == b["file"] and a["si_sdr"] == b["si_sdr"] and a["ssnr"] == b["ssnr"]
        assert 1.0 <= b["dnsmos_ovrl"] <= 5.0
    assert "noisy_summary" not in parallel


def test_length_mismatch_and_resampling(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "e").mkdir()
    x = speech_like()
    import soxr

    sf.write(tmp_path / "c" / "long.wav", x, FS)
    sf.write(tmp_path / "e" / "long.wav", np.concatenate([x, 0.2 * np.ones(4000)]), FS)  # trimmed away
    sf.write(tmp_path / "c" / "hi.wav", x, FS)
    sf.write(tmp_path / "e" / "hi.wav", soxr.resample(x, FS, 48000, quality="VHQ"), 48000, subtype="FLOAT")
    r = ev.evaluate(tmp_path / "c", tmp_path / "e", metrics=["pesq_wb", "si_sdr", "ssnr"], workers=1, progress=False)
    rows = {row["file"]: row for row in r["files"]}
    assert rows["long"]["ssnr"] == 35.0 and rows["long"]["si_sdr"] > 80  # identical after trimming (16-bit)
    assert rows["hi"]["si_sdr"] > 30 and rows["hi"]["pesq_wb"] > 4.5
    assert [w["file"] for w in r["warnings"]] == ["long"] and "scored on the first 2.00 s" in r["warnings"][0]["warning"]
    assert "warning" not in rows["long"]  # resampling's few samples of difference are not flagged


def test_cli_exits_1_when_a_file_cannot_be_scored(dataset, capsys):
    (dataset["enhanced"] / "fileid_1.flac").write_bytes(b"not audio")
    args = _parser().parse_args(["evaluate", "--clean", str(dataset["clean"]), "--enhanced", str(dataset["enhanced"]),
                                 "--metrics", "si_sdr", "--workers", "1", "--no-progress"])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "3 file(s)" in out and "1 failed" in out


def test_silent_files_never_give_nan_in_summary(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "e").mkdir()
    x = speech_like()
    sf.write(tmp_path / "c" / "ok.wav", x, FS)
    sf.write(tmp_path / "e" / "ok.wav", x + noise(x.size, 0.01, 0), FS)
    sf.write(tmp_path / "c" / "silent_ref.wav", np.zeros_like(x), FS)  # clean silent: error row
    sf.write(tmp_path / "e" / "silent_ref.wav", x, FS)
    sf.write(tmp_path / "c" / "silent_out.wav", x, FS)  # enhanced silent: PESQ/SI-SDR NaN
    sf.write(tmp_path / "e" / "silent_out.wav", np.zeros_like(x), FS)
    r = ev.evaluate(tmp_path / "c", tmp_path / "e", metrics=FAST, workers=1, progress=False)
    assert [e["file"] for e in r["errors"]] == ["silent_ref"]
    assert "silent or constant" in r["errors"][0]["error"]
    assert r["summary"]["pesq_wb"]["n"] == 1 and r["summary"]["ssnr"]["n"] == 2
    assert r["summary"]["pesq_wb"]["ci95"] is None  # one value: no interval
    for s in r["summary"].values():
        assert s["mean"] is not None and math.isfinite(s["mean"])
    out = tmp_path / "r.json"
    ev.write_json(r, out)
    json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    ev.write_csv(r, tmp_path / "r.csv")
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert rows[1]["file"] == "silent_out" and rows[1]["pesq_wb"] == "" and rows[1]["ssnr"] != ""


def test_all_metrics_on_one_file(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "e").mkdir()
    x = speech_like(seconds=3.0)
    sf.write(tmp_path / "c" / "a.wav", x, FS)
    sf.write(tmp_path / "e" / "a.wav", x + noise(x.size, 0.005, 1), FS)
    r = ev.evaluate(tmp_path / "c", tmp_path / "e", workers=1, progress=False)
    assert list(r["summary"]) == list(ev.METRICS)
    assert all(s["n"] == 1 for s in r["summary"].values())
    assert 1 <= r["summary"]["csig"]["mean"] <= 5 and 1 <= r["summary"]["dnsmos_ovrl"]["mean"] <= 5


def test_plots(dataset, tmp_path):
    r = ev.evaluate(dataset["clean"], dataset["enhanced"], dataset["noisy"], metrics=["si_sdr", "ssnr"],
                    workers=1, progress=False)
    paths = ev.make_plots(r, tmp_path / "plots", dataset["clean"], dataset["enhanced"], dataset["noisy"],
                          n_spectrograms=2)
    names = sorted(p.name for p in paths)
    assert names[0] == "metrics_by_snr.png" and len(names) == 3
    assert all(p.stat().st_size > 1000 for p in paths)
    assert ev._snr_buckets([0.0, 5.0, None])[1] == ["0 dB", "5 dB", "unknown"]
    assert ev._snr_buckets([float(s) for s in range(0, 40, 3)])[1][0] == "[0, 5) dB"


# ------------------------------------------------------------------ command line
def _parser():
    parser = argparse.ArgumentParser(prog="gagnet")
    ev.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_prints_table_and_writes_outputs(dataset, tmp_path, capsys):
    args = _parser().parse_args([
        "evaluate", "--clean", str(dataset["clean"]), "--enhanced", str(dataset["enhanced"]),
        "--noisy", str(dataset["noisy"]), "--metrics", "si_sdr,ssnr", "--workers", "1", "--no-progress",
        "--json", str(tmp_path / "o.json"), "--csv", str(tmp_path / "o.csv"),
    ])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "si_sdr" in out and "ssnr" in out and "pesq_wb" not in out
    assert json.loads((tmp_path / "o.json").read_text())["summary"]["si_sdr"]["n"] == 3
    assert (tmp_path / "o.csv").read_text().startswith("file,snr,si_sdr,ssnr,noisy_si_sdr,noisy_ssnr,error")


@pytest.mark.parametrize("extra,expected", [
    (["--metrics", "nope"], "unknown metric"),
    (["--clean", "/does/not/exist"], "clean directory not found"),
])
def test_cli_bad_input_exits_2_with_one_line(dataset, capsys, extra, expected):
    argv = ["evaluate", "--clean", str(dataset["clean"]), "--enhanced", str(dataset["enhanced"]), "--no-progress"]
    args = _parser().parse_args(argv + extra)
    assert ev.cmd_evaluate(args) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_unmatched_exits_2(dataset, capsys):
    os.remove(dataset["enhanced"] / "fileid_1.flac")
    ns = argparse.Namespace(clean=str(dataset["clean"]), enhanced=str(dataset["enhanced"]), noisy=None,
                            metrics="ssnr", workers=1, json=None, csv=None, plots=None, no_progress=True)
    assert ev.cmd_evaluate(ns) == 2
    assert "clean_fileid_1" in capsys.readouterr().err


@pytest.fixture
def model_set(tmp_path):
    """A tiny random model (gagnet.train.save_weights) and 2 short clean/noisy pairs, one in a sub-folder."""
    import torch

    from gagnet.config import get_config
    from gagnet.model import GaGNet
    from gagnet.train import save_weights

    torch.manual_seed(0)
    ckpt = tmp_path / "model.pt"
    save_weights(GaGNet(get_config("tiny")), ckpt)
    for i, sub in enumerate(("", "sub")):
        for side in ("clean", "noisy"):
            (tmp_path / side / sub).mkdir(parents=True, exist_ok=True)
        x = speech_like(seconds=0.6, seed=i)
        sf.write(tmp_path / "clean" / sub / f"clean_fileid_{i}.wav", x, FS)
        sf.write(tmp_path / "noisy" / sub / f"noisy_snr5_fileid_{i}.wav", x + noise(x.size, 0.03, i), FS)
    return {"model": ckpt, "clean": tmp_path / "clean", "noisy": tmp_path / "noisy"}


def test_cli_model_enhances_into_folder_then_scores(model_set, tmp_path, capsys):
    out = tmp_path / "out" / "enhanced"
    args = _parser().parse_args([
        "evaluate", "--clean", str(model_set["clean"]), "--noisy", str(model_set["noisy"]),
        "--model", str(model_set["model"]), "--enhanced", str(out), "--metrics", "si_sdr,ssnr",
        "--workers", "1", "--no-progress", "--json", str(tmp_path / "o.json"),
    ])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "noisy (mean" in text and "Δ enhanced − noisy" in text
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))
    assert names == ["noisy_snr5_fileid_0.wav", "sub/noisy_snr5_fileid_1.wav"]
    r = json.loads((tmp_path / "o.json").read_text())
    assert r["model"] == str(model_set["model"]) and r["n_files"] == 2 and not r["errors"]
    assert r["summary"]["si_sdr"]["n"] == 2 and r["improvement"]["ssnr"]["n"] == 2
    assert r["atten_lim_db"] is None and "no attenuation limit" in text


def test_cli_model_attenuation_limit_is_applied_and_reported(model_set, tmp_path, capsys):
    """--atten-lim 0 returns the input: the enhanced files score exactly as the noisy ones."""
    args = _parser().parse_args([
        "evaluate", "--clean", str(model_set["clean"]), "--noisy", str(model_set["noisy"]),
        "--model", str(model_set["model"]), "--atten-lim", "0", "--metrics", "si_sdr",
        "--workers", "1", "--no-progress", "--json", str(tmp_path / "o.json"),
    ])
    assert args.func(args) == 0
    assert "attenuation limit 0 dB" in capsys.readouterr().out
    r = json.loads((tmp_path / "o.json").read_text())
    assert r["atten_lim_db"] == 0.0
    assert abs(r["improvement"]["si_sdr"]["mean"]) < 0.05  # 16-bit rounding only


def test_cli_model_uses_a_removed_temporary_folder(model_set, tmp_path, monkeypatch, capsys):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    ns = argparse.Namespace(clean=str(model_set["clean"]), noisy=str(model_set["noisy"]), enhanced=None,
                            model=str(model_set["model"]), metrics="ssnr", workers=1, json=None, csv=None,
                            plots=None, no_progress=True)
    assert ev.cmd_evaluate(ns) == 0
    assert "ssnr" in capsys.readouterr().out
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("argv,expected", [
    (["--model", "x.pt"], "--model needs --noisy"),
    ([], "give --enhanced DIR, or --model"),
    (["--enhanced", "x", "--atten-lim", "6"], "--atten-lim applies to --model"),
    (["--model", "x.pt", "--noisy", "y", "--atten-lim", "loud"], "--atten-lim must be a number of dB >= 0, off or model"),
])
def test_cli_model_usage_errors_exit_2(model_set, capsys, argv, expected):
    args = _parser().parse_args(["evaluate", "--clean", str(model_set["clean"]), "--no-progress", *argv])
    assert ev.cmd_evaluate(args) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_model_missing_file_and_clashing_folder_exit_2(model_set, capsys):
    base = ["evaluate", "--clean", str(model_set["clean"]), "--noisy", str(model_set["noisy"]), "--no-progress"]
    args = _parser().parse_args(base + ["--model", str(model_set["noisy"].parent / "nope.pt")])
    assert ev.cmd_evaluate(args) == 2
    assert "no such model file" in capsys.readouterr().err
    args = _parser().parse_args(base + ["--model", str(model_set["model"]), "--enhanced", str(model_set["noisy"])])
    assert ev.cmd_evaluate(args) == 2
    err = capsys.readouterr().err
    assert "must be outside the noisy folder" in err and err.count("\n") == 1


# ------------------------------------------------------------------ project data (optional)
@pytest.mark.skipif(not DEV.is_dir() or not os.environ.get("GAGNET_DEV_EVAL"),
                    reason="set GAGNET_DEV_EVAL=1 with shared/data present (about 2 minutes)")
def test_dev_set_reproduces_reference_means():
    ref = {"noisy": (1.564, 2.152, 91.49, 80.41, 9.79), "gagnet_official": (3.160, 3.604, 97.08, 93.25, 18.72)}
    tol = (0.005, 0.005, 0.05, 0.05, 0.05)
    names = ["pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr"]
    r = ev.evaluate(DEV / "clean", DEV / "gagnet_official", DEV / "noisy", metrics=names, progress=False)
    assert r["n_files"] == 47 and not r["errors"]
    for summary, system in (("summary", "gagnet_official"), ("noisy_summary", "noisy")):
        for m, want, t in zip(names, ref[system], tol):
            assert r[summary][m]["mean"] == pytest.approx(want, abs=t), (system, m)


@pytest.mark.skipif(not DEV.is_dir() or not os.environ.get("GAGNET_DEV_EVAL"),
                    reason="set GAGNET_DEV_EVAL=1 with shared/data present (about 2 minutes)")
def test_default_model_beats_noisy_on_every_dev_metric(tmp_path):
    """The shipped default model, as `gagnet enhance` runs it, improves every measure over noisy."""
    from gagnet import pretrained

    if pretrained.DEFAULT_MODEL is None:
        pytest.skip("no default model is shipped")
    ev.enhance_folder(pretrained.DEFAULT_MODEL, DEV / "noisy", tmp_path / "enhanced", progress=False)
    r = ev.evaluate(DEV / "clean", tmp_path / "enhanced", DEV / "noisy", progress=False)
    assert r["n_files"] == 47 and not r["errors"]
    worse = [m for m in r["metrics"] if r["improvement"][m]["mean"] <= 0]
    assert not worse, worse
