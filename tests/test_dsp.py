import pytest
import torch

from gagnet import WaveGaGNet, dsp, get_config

CFG = get_config("paper")


@pytest.mark.parametrize("seconds", [1.0, 1.2345, 0.05, 0.0011])
def test_stft_istft_reconstructs_any_length(seconds):
    n = int(seconds * 16000)
    x = torch.randn(2, n)
    spec = dsp.stft(x, CFG)
    assert spec.shape == (2, 161, CFG.frames(n))
    y = dsp.istft(spec, CFG, n)
    assert y.shape == x.shape
    assert torch.allclose(x, y, atol=1e-5)


def test_compression_round_trip_and_values():
    spec = torch.randn(1, 161, 8, dtype=torch.complex64)
    spec[0, 0, 0] = 0
    c = dsp.compress(spec, 0.5)
    assert c.shape == (1, 2, 161, 8)
    assert torch.allclose(dsp.magnitude(c), spec.abs().sqrt(), atol=1e-6)
    # phase is kept
    angle = torch.atan2(c[:, 1], c[:, 0])
    nz = spec.abs() > 1e-3
    assert torch.allclose(angle[nz], spec.angle()[nz], atol=1e-5)
    assert torch.allclose(dsp.decompress(c, 0.5), spec, atol=1e-5)
    assert c[0, :, 0, 0].abs().sum() == 0


@pytest.mark.parametrize("seconds", [1.0, 1.2345, 0.05])
def test_wave_model_preserves_length(seconds):
    n = int(round(seconds * 16000))
    model = WaveGaGNet("paper").eval()
    with torch.no_grad():
        assert model(torch.randn(n)).shape == (n,)
        assert model(torch.randn(3, n)).shape == (3, n)


def test_frame_mask_counts_frames_of_each_length():
    lengths = torch.tensor([16000, 800, 1])
    mask = dsp.frame_mask(lengths, CFG, CFG.frames(16000))
    assert mask.sum(1).tolist() == [CFG.frames(16000), CFG.frames(800), CFG.frames(1)]
