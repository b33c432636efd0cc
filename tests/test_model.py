import pytest
import torch

from gagnet import GaGNet, GaGNetConfig, count_parameters, get_config


def test_paper_has_published_parameter_count():
    assert count_parameters(GaGNet("paper")) == 5_948_137


def test_causal_norm_keeps_parameter_count():
    # cumulative instance norm has the same affine parameters as instance norm
    assert count_parameters(GaGNet("causal")) == 5_948_137


def test_paper_config_values():
    cfg = get_config("paper")
    assert (cfg.sample_rate, cfg.win_length, cfg.hop_length, cfg.n_fft, cfg.n_freq) == (16000, 320, 160, 320, 161)
    assert (cfg.c, cfg.d_feat, cfg.kd1, cfg.cd1, cfg.p, cfg.q) == (64, 256, 3, 64, 2, 3)
    assert cfg.k1 == (2, 3) and cfg.k2 == (1, 3) and cfg.k_first == (2, 5)
    assert cfg.dilations == (1, 2, 5, 9) and cfg.unet_depths == (4, 3, 2, 1)
    assert cfg.norm == "in" and cfg.skip == "cat" and cfg.compress == 0.5
    assert cfg.feat_bins == 4 and not cfg.causal
    assert get_config("causal").causal


def test_every_stage_is_returned_with_input_shape():
    net = GaGNet("tiny").eval()
    x = torch.randn(2, 2, 161, 37)
    outs = net(x)
    assert len(outs) == net.cfg.q
    assert all(o.shape == x.shape for o in outs)
    # each stage refines the previous one: the estimates differ
    assert not torch.allclose(outs[0], outs[1])


def test_encoder_features_shape():
    net = GaGNet("paper")
    feat = net.encoder(torch.randn(1, 2, 11, 161))
    assert feat.shape == (1, 256, 11)


@pytest.mark.parametrize("norm", ["in", "bn", "cin", "fln"])
def test_all_norms_build_and_run(norm):
    cfg = get_config("tiny", norm=norm)
    net = GaGNet(cfg)
    out = net(torch.randn(2, 2, 161, 20))[-1]
    assert torch.isfinite(out).all()


def test_config_round_trip_and_validation():
    cfg = get_config("causal")
    assert GaGNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        GaGNetConfig(norm="ln")
    with pytest.raises(ValueError):
        GaGNetConfig(d_feat=200)
    with pytest.raises(ValueError):
        GaGNetConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError):
        get_config("nope")
