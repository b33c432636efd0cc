import json

from gagnet.cli import main


def test_info_reports_params_latency_and_causality(capsys):
    assert main(["info", "--config", "paper", "--config", "causal", "--json"]) == 0
    paper, causal = json.loads(capsys.readouterr().out)
    assert paper["parameters"] == causal["parameters"] == 5_948_137
    assert not paper["causal"] and causal["causal"]
    assert causal["latency_ms"] == 20.0 and paper["latency_ms"] is None
    assert 1e9 < paper["macs_per_second"] < 2e9
    assert paper["receptive_field_frames"] == 210


def test_info_table(capsys):
    assert main(["info", "--config", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "parameters" in out and "causal" in out
