import torch

from gagnet import GaGNet, get_config
from gagnet.causality import check_causality
from gagnet.complexity import receptive_field_frames


def test_causal_config_passes():
    report = check_causality("causal")
    assert report.causal
    assert report.max_change_spectrum == 0.0 and report.max_change_wave == 0.0
    assert get_config("causal").causal


def test_paper_config_fails():
    report = check_causality("paper")
    assert not report.causal
    assert report.max_change_spectrum > 1e-4
    assert not get_config("paper").causal


def test_frame_layer_norm_and_batch_norm_configs_are_causal():
    assert check_causality(get_config("tiny", norm="fln")).causal
    assert check_causality(get_config("tiny", norm="bn")).causal


def test_non_causal_padding_is_detected():
    cfg = get_config("tiny", causal_conv=False)
    assert not cfg.causal
    assert not check_causality(cfg).causal


def test_receptive_field_matches_impulse_response():
    # frame layer norm has no cross-frame statistics, so the conv receptive field is all there is
    cfg = get_config("paper", norm="fln")
    net = GaGNet(cfg).eval()
    x = torch.randn(1, 2, 161, 260)
    y = x.clone()
    t0 = 20
    y[..., t0] += 1.0
    with torch.no_grad():
        d = (net(x)[-1] - net(y)[-1]).abs().amax(dim=(0, 1, 2))
    changed = d.nonzero().flatten()
    assert int(changed.min()) == t0
    assert int(changed.max()) == t0 + receptive_field_frames(cfg) - 1
