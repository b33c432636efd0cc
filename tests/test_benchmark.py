import argparse
import json
import math

import pytest

from gagnet import benchmark as bm
from gagnet.config import get_config
from gagnet.model import GaGNet

SECONDS = 0.3  # short inputs: these tests check the plumbing, never the speed


def _positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def tiny_result():
    return bm.benchmark("tiny", seconds=SECONDS, memory=False, runs=1, threads=1)


def test_causal_tiny_has_all_figures(tiny_result):
    r = tiny_result
    for key in ("model", "causal", "parameters", "macs_per_second", "latency_ms", "offline", "streaming",
                "memory", "machine"):
        assert key in r
    assert r["model"] == "tiny" and r["causal"] is True and r["memory"] is None
    assert r["parameters"] > 1000 and _positive(r["macs_per_second"]) and r["latency_ms"] == pytest.approx(20.0)
    off = r["offline"]
    assert _positive(off["rtf_1_thread"]) and _positive(off["rtf_all_threads"]) and off["threads_all"] >= 1
    s = r["streaming"]
    assert s["threads"] == 1 and s["hop_ms"] == pytest.approx(10.0) and s["hops"] == round(SECONDS * 100)
    for k in ("ms_per_hop_mean", "ms_per_hop_p95", "rtf"):
        assert _positive(s[k]), k
    assert s["ms_per_hop_p95"] <= s["ms_per_hop_max"]
    assert s["rtf"] == pytest.approx(s["ms_per_hop_mean"] / s["hop_ms"])
    f = r["streaming_fast_onnx"]  # the fast step in ONNX Runtime (tiny: cin, causal)
    assert f["threads"] == 1 and f["hops"] == s["hops"] and _positive(f["ms_per_hop_mean"])
    assert "ONNX Runtime fast step" in bm.format_table(r)
    m = r["machine"]
    assert m["cpu"] and m["torch"] and m["threads"][0] == 1
    assert m["other_load_cpus"] is None or m["other_load_cpus"] >= 0
    json.dumps(r, allow_nan=False)  # JSON-able as is


def test_non_causal_reports_not_applicable(tiny_result):
    r = bm.benchmark(get_config("tiny", norm="in"), seconds=SECONDS, memory=False, runs=1, threads=1)
    assert r["causal"] is False and r["latency_ms"] is None and r["streaming"] is None
    assert _positive(r["offline"]["rtf_1_thread"])
    text = bm.format_table([tiny_result, r])
    assert text.startswith("machine: ") and text.count("\n\nmodel ") == 2
    for header in ("parameters", "MACs per second of audio", "algorithmic latency",
                   "offline real-time factor, 1 thread", "streaming ms per 10 ms hop, 1 thread",
                   "streaming real-time factor, 1 thread", "peak memory", "CPU taken by others while timing"):
        assert header in text
    assert "n/a (not causal)" in text and "whole utterance" in text and "20.0 ms" in text


def test_threads_restored_and_model_objects_accepted():
    import torch

    before = torch.get_num_threads()
    r = bm.benchmark(GaGNet(get_config("tiny")), seconds=0.1, memory=False, runs=1, threads=2)
    assert torch.get_num_threads() == before
    assert r["offline"]["threads_all"] == 2 and r["machine"]["threads"] == [1, 2]
    with pytest.raises(ValueError):
        bm.benchmark("tiny", seconds=0.0, memory=False)


def test_memory_probe_on_a_checkpoint(tmp_path, capsys):
    from gagnet.train import save_weights

    ckpt = tmp_path / "model.pt"
    save_weights(GaGNet(get_config("tiny")), ckpt)
    r = bm.benchmark(ckpt, seconds=0.1, memory=True, runs=1, memory_seconds=2.0, threads=1)
    assert r["checkpoint"] == str(ckpt) and "tiny" in r["model"]
    m = r["memory"]
    assert m["file_seconds"] == 2.0
    assert _positive(m["peak_rss_mb"]) and _positive(m["baseline_rss_mb"])
    # the probe starts fresh: its peak is its own, not this (larger) test process's
    assert m["baseline_rss_mb"] <= m["peak_rss_mb"] < 4000
    assert m["increment_mb"] == pytest.approx(m["peak_rss_mb"] - m["baseline_rss_mb"])
    assert "peak memory, 2 s file" in bm.format_table([r])


def _parser():
    parser = argparse.ArgumentParser(prog="gagnet")
    bm.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_prints_table_and_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    args = _parser().parse_args(["benchmark", "--config", "tiny", "--seconds", "0.1", "--no-memory", "--threads", "1",
                                 "--json", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert text.startswith("machine: ") and "offline real-time factor" in text
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and rows[0]["model"] == "tiny" and rows[0]["memory"] is None


@pytest.mark.parametrize("argv,expected", [
    (["--checkpoint", "/does/not/exist.pt"], "no such model file"),
    (["--config", "tiny", "--seconds", "0"], "--seconds must be a positive number"),
])
def test_cli_errors_are_one_line_exit_2(argv, expected, capsys):
    args = _parser().parse_args(["benchmark", "--no-memory", *argv])
    assert bm.cmd_benchmark(args) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err
