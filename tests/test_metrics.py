import logging
import math

import numpy as np
import pytest

from gagnet.metrics import METRICS, composite as comp, dnsmos as dns, intrusive, parse_metrics, score

FS = 16000


def speech_like(seconds: float = 3.0, seed: int = 0, fs: int = FS) -> np.ndarray:
    """Harmonic tone with a gliding pitch plus band-limited breath noise, a syllable-rate
    envelope, pauses and a faint noise floor."""
    from scipy.signal import butter, lfilter

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / fs
    voiced = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 25))
    breath = lfilter(*butter(2, [300 / (fs / 2), 3400 / (fs / 2)], "band"), rng.standard_normal(t.size))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t + seed), 0, None) ** 1.5
    envelope *= np.sin(2 * np.pi * 0.4 * t) > -0.6  # pauses
    return envelope * (0.15 * voiced + 0.05 * breath) + 1e-4 * rng.standard_normal(t.size)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return speech_like()


def white_noise_at(clean: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    """Zero-mean white noise orthogonal to zero-mean ``clean``, scaled to an exact power ratio."""
    c = clean - clean.mean()
    n = np.random.default_rng(seed).standard_normal(clean.size)
    n -= n.mean()
    n -= (n @ c) / (c @ c) * c
    return n * np.sqrt((c @ c) / (n @ n) / 10 ** (snr_db / 10))


# ------------------------------------------------------------------ maxima for identical signals
def test_identical_signals_give_documented_maxima(x):
    s = score(x, x, metrics=[m for m in METRICS if not m.startswith("dnsmos")])
    assert s["pesq_wb"] == pytest.approx(4.643888, abs=1e-4)  # pesq 0.0.4, P.862.2 mapping of 4.5
    assert s["pesq_nb"] == pytest.approx(4.548638, abs=1e-4)  # P.862.1 mapping of 4.5
    assert s["stoi"] == pytest.approx(100.0, abs=1e-6)
    assert s["estoi"] == pytest.approx(100.0, abs=1e-6)
    assert s["si_sdr"] == pytest.approx(10 * np.log10(1 / np.finfo(float).eps), abs=0.01)
    assert s["ssnr"] == 35.0
    assert s["csig"] == s["cbak"] == s["covl"] == 5.0
    assert comp.llr(x, x) == pytest.approx(0.0, abs=1e-12)
    assert comp.wss(x, x) == pytest.approx(0.0, abs=1e-12)


def test_score_order_subset_and_unknown(x):
    assert list(score(x, x, metrics="ssnr,si_sdr")) == ["si_sdr", "ssnr"]
    assert parse_metrics(None) == list(METRICS)
    with pytest.raises(ValueError, match="unknown metric"):
        score(x, x, metrics=["pesq"])


# ------------------------------------------------------------------ derivable values
@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.5, 20.0])
def test_si_sdr_of_white_noise_at_exact_ratio(x, snr):
    noisy = x + white_noise_at(x, snr)
    assert intrusive.si_sdr(x, noisy) == pytest.approx(snr, abs=0.1)
    assert intrusive.si_sdr(x, -0.3 * noisy + 0.2) == pytest.approx(snr, abs=0.1)  # scale and offset invariant


@pytest.mark.parametrize("gain,expected", [(0.1, 20.0), (0.5, 20 * math.log10(2)), (1e-3, 35.0), (10.0, -10.0)])
def test_ssnr_at_constant_per_frame_snr(x, gain, expected):
    # x + g*x: every frame has SNR -20 log10(g) dB, limited to [-10, 35]
    frames = comp.ssnr_frames(x, x + gain * x)
    assert frames.size == math.floor(x.size / 120 - 4)  # 30 ms frames, 75 % overlap
    assert np.allclose(frames, expected, atol=1e-6)
    assert comp.ssnr(x, x + gain * x) == pytest.approx(expected, abs=1e-6)


def test_llr_and_wss_are_gain_invariant(x):
    assert comp.llr(x, 2.5 * x) == pytest.approx(0.0, abs=1e-6)
    assert comp.llr(x, 0.01 * x) == pytest.approx(0.0, abs=1e-6)
    assert comp.wss(x, 2.5 * x) == pytest.approx(0.0, abs=1e-6)


def test_llr_wss_grow_with_noise_and_llr_is_limited(x):
    values = [(comp.llr(x, x + white_noise_at(x, s)), comp.wss(x, x + white_noise_at(x, s))) for s in (30, 10, 0)]
    llrs, wsss = zip(*values)
    assert 0 < llrs[0] < llrs[1] < llrs[2] <= 2
    assert 0 < wsss[0] < wsss[1] < wsss[2]
    frames = comp.llr_frames(x, x + white_noise_at(x, -20))
    assert frames.max() <= 2.0 and frames.min() >= 0.0
    assert comp.llr(x, x + white_noise_at(x, -20), clip=False) >= comp.llr(x, x + white_noise_at(x, -20))


def test_lpc_order_follows_reference(x):
    # order 16 at 16 kHz (10 below 10 kHz); explicit orders are honoured
    y = x + white_noise_at(x, 10)
    assert comp.llr(x, y) == pytest.approx(comp.llr(x, y, order=16))
    assert comp.llr(x, y) != pytest.approx(comp.llr(x, y, order=10))


def test_composite_formulas_and_limits():
    c = comp.composite_from_measures(pesq=2.5, llr_value=0.5, wss_value=30.0, ssnr_value=5.0)
    assert c["csig"] == pytest.approx(3.093 - 1.029 * 0.5 + 0.603 * 2.5 - 0.009 * 30)
    assert c["cbak"] == pytest.approx(1.634 + 0.478 * 2.5 - 0.007 * 30 + 0.063 * 5)
    assert c["covl"] == pytest.approx(1.594 + 0.805 * 2.5 - 0.512 * 0.5 - 0.007 * 30)
    low = comp.composite_from_measures(pesq=1.0, llr_value=2.0, wss_value=150.0, ssnr_value=-10.0)
    assert low == {"csig": 1.0, "cbak": 1.0, "covl": 1.0}


def test_composite_pesq_modes(x):
    y = x + white_noise_at(x, 5)
    wb, nb = intrusive.pesq_wb(x, y), intrusive.pesq_nb(x, y)
    assert comp.composite(x, y) == comp.composite(x, y, pesq_value=wb)
    assert comp.composite(x, y, pesq_mode="nb") == comp.composite(x, y, pesq_value=nb)
    assert comp.nb_raw_from_mos(4.548638343811035) == pytest.approx(4.5, abs=1e-4)
    with pytest.raises(ValueError, match="pesq_mode"):
        comp.composite(x, y, pesq_mode="xx")


# ------------------------------------------------------------------ undefined values and input handling
def test_silent_or_constant_clean_raises(x):
    for clean in (np.zeros_like(x), np.full_like(x, 0.3)):
        with pytest.raises(ValueError, match="silent or constant"):
            score(clean, x, metrics=["si_sdr"])


def test_silent_estimate_gives_nan_with_warning(x, caplog):
    with caplog.at_level(logging.WARNING):
        s = score(x, np.zeros_like(x), metrics=["pesq_wb", "si_sdr", "ssnr"])
    assert math.isnan(s["pesq_wb"]) and math.isnan(s["si_sdr"])
    assert s["ssnr"] == pytest.approx(0.0, abs=1e-6)  # noise == clean in every frame
    assert "PESQ-WB undefined" in caplog.text and "SI-SDR undefined" in caplog.text


def test_too_short_for_stoi_gives_nan(x, caplog):
    with caplog.at_level(logging.WARNING):
        assert math.isnan(intrusive.stoi(x[:3000], x[:3000]))


def test_length_mismatch_is_trimmed(x):
    s = score(x, np.concatenate([x, 0.1 * np.ones(5000)]), metrics=["si_sdr", "ssnr"])
    assert s["ssnr"] == 35.0 and s["si_sdr"] > 150


def test_resampled_enhanced_matches(x):
    import soxr

    up = soxr.resample(x, FS, 48000, quality="VHQ")
    s = score(x, up, sample_rate=FS, enhanced_rate=48000, metrics=["pesq_wb", "si_sdr"])
    assert s["si_sdr"] > 30 and s["pesq_wb"] > 4.5


def test_bad_input_raises(x):
    with pytest.raises(ValueError, match="1-D"):
        score(np.stack([x, x]), x)
    with pytest.raises(ValueError, match="NaN"):
        score(x, np.full_like(x, np.nan))
    with pytest.raises(ValueError, match="length"):
        intrusive.si_sdr(x, x[:-1])


# ------------------------------------------------------------------ DNSMOS
def test_dnsmos_offline_models_and_ranges(x):
    assert (dns.model_dir() / "sig_bak_ovr.onnx").is_file()
    clean = dns.dnsmos(x)
    noisy = dns.dnsmos(x + white_noise_at(x, -5))
    assert list(clean) == ["dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"]
    assert all(1.0 <= v <= 5.0 for v in [*clean.values(), *noisy.values()])
    assert noisy["dnsmos_bak"] < clean["dnsmos_bak"]


def test_dnsmos_features_shape_and_filterbank():
    fb = dns.mel_filterbank()
    assert fb.shape == (120, 161) and (fb >= 0).all()
    feats = dns.mel_features(np.random.default_rng(0).standard_normal(144000) * 0.1)
    assert feats.shape == (900, 120)  # the P.808 model's input
    assert feats.max() == pytest.approx(1.0) and feats.min() >= -1.0 - 1e-9  # (dB + 40) / 40, 80 dB range
