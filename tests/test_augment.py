"""The augmentations do what they claim: f0, formants, responses, clipping, gain jumps; and
in the mixer they are deterministic per (seed, index)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gagnet.config import AugmentConfig, DataConfig
from gagnet.data.augment import (
    apply_response,
    channel_response,
    formant_warp_rows,
    gain_jumps,
    pitch_shift_rows,
    resample_rows,
    time_stretch_rows,
)
from gagnet.data.batch_mixing import BatchMixer
from gagnet.data.corpus import Corpus

SR = 16000


def _harmonic(f0: float, seconds: float = 1.0, formant: float | None = None) -> torch.Tensor:
    """A harmonic tone; with ``formant``, harmonics weighted by a resonance there (a vowel)."""
    t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
    x = torch.zeros_like(t)
    for k in range(1, int(7000 / f0)):
        f = k * f0
        w = 1.0 / k if formant is None else 1.0 / (1.0 + ((f - formant) / 150.0) ** 2)
        x += w * torch.sin(2 * np.pi * f * t + 0.3 * k)
    return (0.3 * x / x.abs().max()).float()


def _f0(x: torch.Tensor, lo: float = 60.0, hi: float = 500.0) -> float:
    """f0 by the autocorrelation peak, refined by parabolic interpolation."""
    y = x.double().numpy()
    y = y - y.mean()
    ac = np.fft.irfft(np.abs(np.fft.rfft(y, 2 * len(y))) ** 2)[: len(y)]
    a, b = int(SR / hi), int(SR / lo)
    i = a + int(np.argmax(ac[a:b]))
    p = 0.5 * (ac[i - 1] - ac[i + 1]) / (ac[i - 1] - 2 * ac[i] + ac[i + 1])
    return SR / (i + p)


def _envelope_peak(x: torch.Tensor) -> float:
    """Frequency of the largest harmonic of a steady vowel."""
    spec = np.abs(np.fft.rfft(x.double().numpy() * np.hanning(len(x))))
    return float(np.argmax(spec) * SR / len(x))


def test_speed_resampling_scales_pitch_and_duration():
    x = _harmonic(150.0, 1.2)[None]
    y = resample_rows(x, torch.tensor([1.1]), 12000)[0]
    assert _f0(y) == pytest.approx(165.0, rel=0.01)
    slow = resample_rows(x, torch.tensor([0.9]), 12000)[0]
    assert _f0(slow) == pytest.approx(135.0, rel=0.01)
    same = resample_rows(x, torch.tensor([1.0]), 12000)[0]
    assert torch.allclose(same, x[0, :12000], atol=1e-5)  # rate 1 is the identity


@pytest.mark.parametrize("semitones", [-3.0, 2.0])
def test_pitch_shift_moves_f0_by_the_ratio_and_keeps_duration(semitones):
    ratio = 2 ** (semitones / 12)
    x = _harmonic(160.0, 1.5)
    y = pitch_shift_rows(x[None], torch.tensor([ratio]), len(x))[0]
    assert y.shape == x.shape
    assert _f0(y[2000:-2000]) == pytest.approx(160.0 * ratio, rel=0.015)
    # tempo kept: a tone burst stays where it was
    burst = torch.zeros(SR)
    burst[6000:10000] = _harmonic(200.0, 0.25)
    z = pitch_shift_rows(burst[None], torch.tensor([ratio]), SR)[0]
    energy = z.square()
    centre = float((energy * torch.arange(SR)).sum() / energy.sum())
    assert centre == pytest.approx(8000, abs=300)


def test_time_stretch_keeps_pitch():
    x = _harmonic(180.0, 1.0)
    y = time_stretch_rows(x[None], torch.tensor([0.8]), 12000)[0]
    assert _f0(y[1000:-1000]) == pytest.approx(180.0, rel=0.01)


def test_formant_warp_moves_the_envelope_not_f0():
    x = _harmonic(125.0, 1.0, formant=1000.0)
    y = formant_warp_rows(x[None], torch.tensor([1.25]))[0]
    assert _envelope_peak(x) == pytest.approx(1000.0, abs=20)
    assert _envelope_peak(y) == pytest.approx(1250.0, abs=130)  # moved by the factor (within a harmonic)
    assert _f0(y) == pytest.approx(125.0, rel=0.01)


def test_eq_matches_its_response():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 8 * SR, generator=g)
    args = (torch.tensor([[500.0, 3000.0]]), torch.tensor([[6.0, -9.0]]), torch.tensor([[0.5, 0.7]]),
            torch.tensor([1.5]), torch.tensor([100.0]), torch.tensor([6000.0]))
    y = apply_response(noise, lambda f: channel_response(f, *args), SR)
    # measured gain in bands against the designed response
    f = torch.fft.rfftfreq(8 * SR, 1 / SR)
    measured = (torch.fft.rfft(y).abs() / torch.fft.rfft(noise).abs()).square()
    designed = channel_response(f, *args)[0].square()
    for lo, hi in ((300, 700), (900, 1100), (2500, 3500), (4500, 5200)):
        band = (f >= lo) & (f < hi)
        got = 10 * torch.log10(measured[0, band].mean())
        want = 10 * torch.log10(designed[band].mean())
        assert float(got) == pytest.approx(float(want), abs=0.5), (lo, hi)
    assert float(designed[f > 6700].max()) == 0.0 and float(designed[f < 45].max()) == 0.0


def test_gain_jumps_reach_their_levels():
    u_t = torch.tensor([[0.5, 0.25, 0.9]])
    u_g = torch.tensor([[1.0, 0.0, 0.75]])  # +6, -6, (unused) dB
    curve = gain_jumps(u_t, u_g, torch.tensor([2]), SR, 6.0, SR)[0]
    db = 20 * torch.log10(curve)
    assert float(db[100]) == pytest.approx(0.0, abs=1e-4)
    assert float(db[6000]) == pytest.approx(-6.0, abs=1e-3)  # the jump at 0.25
    assert float(db[12000]) == pytest.approx(6.0, abs=1e-3)  # the jump at 0.5; the third is unused
    assert float(db[-1]) == pytest.approx(6.0, abs=1e-3)


def _corpora() -> tuple[Corpus, Corpus]:
    rng = np.random.default_rng(1)
    speech = Corpus.from_arrays([_harmonic(f0, 1.5, formant=700.0 + 50 * i).numpy() for i, f0 in
                                 enumerate((110.0, 140.0, 190.0, 230.0))], SR, kind="speech")
    noise = Corpus.from_arrays([0.1 * rng.standard_normal(SR).astype(np.float32) for _ in range(3)], SR, kind="noise")
    return speech, noise


ALL = AugmentConfig(speed_prob=0.5, pitch_prob=0.5, formant_prob=0.5, eq_prob=0.5, bandlimit_prob=0.5,
                    clip_prob=0.3, gain_jump_prob=0.3, noise_reverb_prob=0.5, reverb_target_ms=50.0,
                    noise_only_prob=0.1, clean_only_prob=0.1)


def test_augmented_mixer_is_deterministic_per_index():
    speech, noise = _corpora()
    rirs = Corpus.from_arrays([np.exp(-np.arange(3000) / 500.0).astype(np.float32) * np.random.default_rng(2)
                               .standard_normal(3000).astype(np.float32)], SR, kind="rir")
    cfg = DataConfig(segment_seconds=1.0, reverb_prob=0.5, augment=ALL, seed=5)
    mixer = BatchMixer(speech, noise, cfg, rirs)
    a = mixer(torch.arange(24))
    b = mixer(torch.tensor([7, 3]))
    for key in ("noisy", "clean"):
        assert torch.allclose(b[key][0], a[key][7], atol=1e-6) and torch.allclose(b[key][1], a[key][3], atol=1e-6)
        assert bool(torch.isfinite(a[key]).all()) and float(a[key].abs().max()) <= 0.99 + 1e-6
    again = BatchMixer(speech, noise, cfg.replace(seed=6), rirs)(torch.arange(24))
    assert not torch.allclose(again["noisy"], a["noisy"])


def test_clean_only_and_noise_only_segments():
    speech, noise = _corpora()
    clean_only = BatchMixer(speech, noise, DataConfig(segment_seconds=1.0, augment=AugmentConfig(clean_only_prob=1.0)))
    out = clean_only(torch.arange(6))
    assert torch.equal(out["noisy"], out["clean"]) and bool(torch.isinf(out["snr"]).all())  # no noise added
    noise_only = BatchMixer(speech, noise, DataConfig(segment_seconds=1.0, augment=AugmentConfig(noise_only_prob=1.0),
                                                      level_db=(-30.0, -30.0)))
    out = noise_only(torch.arange(6))
    assert float(out["clean"].abs().max()) == 0.0
    level = 10 * torch.log10(out["noisy"].double().square().mean(-1))
    assert torch.allclose(level, torch.full_like(level, -30.0), atol=1e-3)  # the noise takes the level


def test_clipping_hits_the_mixture_only():
    speech, noise = _corpora()
    cfg = DataConfig(segment_seconds=1.0, level_db=(-20.0, -20.0), augment=AugmentConfig(clip_prob=1.0, clip_at=(0.5, 0.5)))
    out = BatchMixer(speech, noise, cfg)(torch.arange(4))
    peak = out["noisy"].abs().amax(-1, keepdim=True)
    flat = (out["noisy"].abs() >= peak * 0.9999).double().mean(-1)
    assert bool((flat > 0.01).all())  # a plateau at the clipping level
    assert bool(((out["clean"].abs() >= out["clean"].abs().amax(-1, keepdim=True) * 0.9999).double().mean(-1)
                 < 0.01).all())  # the target is not clipped
