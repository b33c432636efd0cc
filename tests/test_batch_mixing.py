"""The batch mixer: a pure function of (seed, index), no padded silence, SNR, level, peak,
noise looping and reverberation with a dry target."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gagnet.config import DataConfig
from gagnet.data.batch_mixing import BatchMixer, fill_speech, loop_crops, uniform, zero_fraction
from gagnet.data.corpus import Corpus

SR = 16000


def _utterance(rng: np.random.Generator, seconds: float, pad: float = 0.2) -> np.ndarray:
    """Harmonic 'speech' with digital-zero padding at both ends, like a gated recording."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(100, 220)
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)) * (0.2 + np.abs(np.sin(2 * np.pi * 3 * t)))
    z = np.zeros(int(pad * SR))
    return np.concatenate([z, 0.3 * x, z]).astype(np.float32)


@pytest.fixture(scope="module")
def corpora() -> tuple[Corpus, Corpus]:
    rng = np.random.default_rng(0)
    speech = Corpus.from_arrays([_utterance(rng, s) for s in (0.6, 0.9, 1.3, 0.7, 2.0)], SR, kind="speech")
    noise = Corpus.from_arrays([rng.standard_normal(int(s * SR)).astype(np.float32) * 0.1 for s in (0.3, 1.0, 2.5)],
                               SR, kind="noise")
    return speech, noise


def _cfg(**kw) -> DataConfig:
    base = dict(segment_seconds=4.0, snr_db=(0.0, 10.0), level_db=(-30.0, -20.0), noises_per_mix=(1, 2), seed=3)
    base.update(kw)
    return DataConfig(**base)


def test_uniform_is_a_pure_function_of_seed_index_and_stream():
    idx = torch.tensor([0, 5, 1 << 40, 7])
    a = uniform(1, idx, 2, 3)
    assert a.shape == (4, 3) and a.dtype == torch.float64 and bool(((a >= 0) & (a < 1)).all())
    assert torch.equal(uniform(1, idx[1:2], 2, 3), a[1:2])  # the batch around an index does not matter
    assert not torch.equal(uniform(2, idx, 2, 3), a) and not torch.equal(uniform(1, idx, 3, 3), a)
    big = uniform(0, torch.arange(20000), 1, 1).flatten().numpy()
    assert abs(big.mean() - 0.5) < 0.01 and abs(np.quantile(big, 0.1) - 0.1) < 0.01  # roughly uniform


def test_corpus_trims_zero_runs_and_scales(corpora):
    speech, _ = corpora
    first = speech.file(0).numpy()
    assert first[0] != 0 and first[-1] != 0 and abs(np.abs(first).max() - 0.99) < 1e-3
    assert len(first) < int((0.6 + 0.4) * SR)  # the 0.2 s zero pads are gone


def test_items_do_not_depend_on_their_batch(corpora):
    mixer = BatchMixer(*corpora, _cfg(reverb_prob=0.0))
    whole = mixer(torch.arange(10, 18))
    part = mixer(torch.tensor([13, 11]))
    for key in ("noisy", "clean", "snr"):
        assert torch.equal(part[key][0], whole[key][3]) and torch.equal(part[key][1], whole[key][1])
    assert not torch.equal(whole["clean"][0], whole["clean"][1])
    assert whole["noisy"].shape == (8, 4 * SR) and bool((whole["lengths"] == 4 * SR).all())


def test_segments_hold_no_padded_silence(corpora):
    """Utterances of 0.6-2 s, padded with zeros in their files, fill 4 s segments back to back."""
    speech, _ = corpora
    clean = fill_speech(speech, 0, torch.arange(64), 4 * SR)
    assert zero_fraction(clean) < 0.01
    mixer = BatchMixer(*corpora, _cfg())
    assert zero_fraction(mixer(torch.arange(32))["clean"]) < 0.01


def test_snr_level_and_peak(corpora):
    mixer = BatchMixer(*corpora, _cfg(level_db=(-25.0, -25.0)))
    out = mixer(torch.arange(40))
    clean, noise = out["clean"].double(), (out["noisy"] - out["clean"]).double()
    snr = 10 * torch.log10(clean.square().mean(-1) / noise.square().mean(-1))
    assert torch.allclose(snr, out["snr"].double(), atol=1e-3)
    assert bool(((out["snr"] >= 0) & (out["snr"] <= 10)).all())
    level = 10 * torch.log10(clean.square().mean(-1))
    peak = torch.maximum(out["noisy"].abs().amax(-1), out["clean"].abs().amax(-1))
    unlimited = peak < 0.9899
    assert torch.allclose(level[unlimited], torch.full_like(level[unlimited], -25.0), atol=1e-3)
    assert bool((peak <= 0.99 + 1e-6).all())
    loud = BatchMixer(*corpora, _cfg(level_db=(0.0, 0.0)))(torch.arange(8))  # forced into the limiter
    assert torch.allclose(torch.maximum(loud["noisy"].abs().amax(-1), loud["clean"].abs().amax(-1)),
                          torch.full((8,), 0.99), atol=1e-5)


def test_noise_free_mixtures(corpora):
    out = BatchMixer(*corpora, _cfg(noises_per_mix=(0, 0)))(torch.arange(4))
    assert torch.equal(out["noisy"], out["clean"]) and bool(torch.isinf(out["snr"]).all())


def test_short_noise_is_looped(corpora):
    _, noise = corpora
    crops = loop_crops(noise, torch.tensor([[0]]), torch.tensor([[100]]), 3 * int(noise.lengths[0]))
    n = int(noise.lengths[0])
    x = crops[0, 0]
    assert torch.equal(x[:n], x[n : 2 * n]) and torch.equal(x[: n - 100], noise.file(0)[100:])


def test_reverberation_keeps_the_dry_target(corpora):
    """With an impulse response of a direct path and one echo, the speech in the mixture is
    the dry target plus the echo; a delta response changes nothing."""
    speech, noise = corpora
    delay, echo = 400, 0.5
    h = np.zeros(1200, dtype=np.float32)
    h[100], h[100 + delay] = 1.0, echo  # direct path after 100 samples of pre-delay
    rirs = Corpus.from_arrays([h], SR, kind="rir")
    cfg = _cfg(noises_per_mix=(0, 0), reverb_prob=1.0, level_db=(-25.0, -25.0))
    out = BatchMixer(speech, noise, cfg, rirs)(torch.arange(6))
    assert not torch.allclose(out["clean"], out["noisy"], atol=1e-3)
    # noisy = g * (x[t] + echo * x[t - delay]) with the same gain g on the target x
    x, y = out["clean"], out["noisy"]
    pred = x[:, delay:] + echo * x[:, :-delay]
    assert torch.allclose(y[:, delay:], pred, atol=1e-5)
    delta = Corpus.from_arrays([np.eye(1, 50, 10, dtype=np.float32)[0]], SR, kind="rir")
    same = BatchMixer(speech, noise, cfg, delta)(torch.arange(6))
    assert torch.allclose(same["noisy"], same["clean"], atol=1e-6)


def test_bad_settings_are_refused(corpora):
    with pytest.raises(ValueError):
        BatchMixer(*corpora, _cfg(snr_db=(5.0, 0.0)))
    with pytest.raises(ValueError):
        DataConfig(mixer="gpu")
    with pytest.raises(IndexError):
        BatchMixer(*corpora, _cfg())(torch.tensor([-1]))
