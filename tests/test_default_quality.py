"""What the shipped default model does to clean and to near-clean speech (issue 18).

As ``gagnet enhance`` runs it (its attenuation limit included), the default model must:
* return clean speech with at most 0.1 WB-PESQ below the clean input itself;
* leave speech at 30 dB SNR no worse than its input on any of the issue's measures (means).

Material: formant-synthesised speech and generated noise made here (always), and the speakers
and noise files that the default model's training recipe held out (``../shared/data``, when
present; the recipe is named by the model's card).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import lfilter

from gagnet import pretrained
from gagnet.data import list_audio, split_holdout
from gagnet.data.synthetic import colored_noise, machine_noise

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FS = 16000
MEASURES = ["pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "csig", "cbak", "covl",
            "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"]
CLEAN_BAR = 0.1  # WB-PESQ the default may lose on clean speech
#: (F1, F2, F3, F4) in Hz of six vowels
VOWELS = [(730, 1090, 2440, 3400), (270, 2290, 3010, 3700), (300, 870, 2240, 3300),
          (530, 1840, 2480, 3500), (570, 840, 2410, 3300), (660, 1720, 2410, 3500)]


def _resonator(f: float, bandwidth: float) -> tuple[list[float], list[float]]:
    r = np.exp(-np.pi * bandwidth / FS)
    a = [1.0, -2 * r * np.cos(2 * np.pi * f / FS), r * r]
    return [sum(a)], a  # unit gain at 0 Hz


def synth_speech(seconds: float, seed: int) -> np.ndarray:
    """Formant-synthesised syllables at -26 dBFS: a glottal pulse train whose f0 wanders,
    through four vowel resonances, with fricative bursts and pauses. ``(N,)`` float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    t = np.arange(n) / FS
    f0 = rng.uniform(95, 210) * (1 + 0.12 * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 6))
                                 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    pulses = np.diff(np.floor(np.cumsum(f0 / FS)), prepend=0.0)
    source = lfilter([1.0], [1, -1.8, 0.81], pulses)  # the glottal roll-off, -12 dB/octave
    out = np.zeros(n)
    pos = int(0.15 * FS)
    while pos < n - int(0.1 * FS):
        end = min(n, pos + int(rng.uniform(0.16, 0.32) * FS))
        seg = source[pos:end]
        for f, bw in zip(VOWELS[rng.integers(len(VOWELS))], (70, 90, 120, 160)):
            seg = lfilter(*_resonator(f * rng.uniform(0.92, 1.08), bw), seg)
        out[pos:end] += seg * np.sin(np.linspace(0, np.pi, end - pos)) ** 0.6
        pos = end
        if rng.random() < 0.35:
            m = min(n - pos, int(rng.uniform(0.05, 0.12) * FS))
            out[pos:pos + m] += 0.02 * lfilter([1, -0.95], [1.0], rng.standard_normal(m)) * np.hanning(m)
            pos += m
        pos += int(rng.uniform(0.02, 0.25) * FS)
    return (10 ** (-26 / 20) * out / np.sqrt(np.mean(out ** 2))).astype(np.float32)


def test_synth_speech_is_voiced_with_pauses():
    x = synth_speech(4.0, 0)
    assert x.shape == (4 * FS,) and np.isfinite(x).all()
    assert 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2))) == pytest.approx(-26, abs=0.01)
    frames = x[: x.size // 320 * 320].reshape(-1, 320)
    level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    assert (level < level.max() - 30).mean() > 0.1  # pauses
    spec = np.abs(np.fft.rfft(x[FS // 2: FS // 2 + 4096] * np.hanning(4096)))
    assert spec[np.fft.rfftfreq(4096, 1 / FS) < 1000].sum() > spec[np.fft.rfftfreq(4096, 1 / FS) > 4000].sum()


@functools.lru_cache(maxsize=None)
def _held_out(folder: str) -> tuple[Path, ...]:
    """Files of ``../shared/data/<folder>`` that the default model's training recipe (its
    card's ``recipe``) held out: speech as its ``holdout_by`` says, noise by file."""
    from gagnet.train import load_train_config

    cfg = load_train_config(pretrained.card(pretrained.DEFAULT_MODEL).get("recipe", "default-model")).data
    by = cfg.holdout_by if folder == "speech" else "file"
    return tuple(split_holdout(list_audio(SHARED / folder), cfg.holdout_fraction, by=by)[1])


def _held_out_clean(count: int, seconds: float) -> list[np.ndarray]:
    """Clips of the speech the default model's recipe held out, ``seconds`` long (from
    ``../shared/data/speech``)."""
    from gagnet.data.audio import load_audio

    held = _held_out("speech")
    clips = []
    for path in held[:: max(1, len(held) // (3 * count))]:
        x = load_audio(path, FS)
        if x.size >= seconds * FS and np.sqrt(np.mean(x ** 2)) > 1e-3:
            clips.append(x[: int(seconds * FS)].astype(np.float32))
        if len(clips) == count:
            break
    return clips


def _material(kind: str, count: int = 4, seconds: float = 4.0) -> list[np.ndarray]:
    if kind == "generated":
        return [synth_speech(seconds, seed) for seed in range(count)]
    if not (SHARED / "speech").is_dir():
        pytest.skip("../shared/data is not present")
    return _held_out_clean(count, seconds)


#: Shipped defaults measured short of this bar (issue 18 stays open until a default meets it).
#: Strict: once the default passes, these tests fail until its entry is removed here.
SHORT_OF_THE_BAR = {
    "causal-v1": "causal-v1 with its 12 dB limit loses 0.27 WB-PESQ on generated and 0.13 on held-out clean speech, "
                 "and lowers STOI, ESTOI, SI-SDR, CBAK and DNSMOS SIG at 30 dB SNR",
}


@pytest.fixture(scope="module")
def default_enhancer():
    from gagnet.enhance import Enhancer

    if pretrained.DEFAULT_MODEL is None:
        pytest.skip("no default model is shipped")
    return Enhancer.from_pretrained()  # as `gagnet enhance` runs it: with its attenuation limit


@pytest.fixture(autouse=True)
def _known_short(request):
    if request.node.name.startswith("test_default_model_") and pretrained.DEFAULT_MODEL in SHORT_OF_THE_BAR:
        request.applymarker(pytest.mark.xfail(strict=True, reason=SHORT_OF_THE_BAR[pretrained.DEFAULT_MODEL]))


@pytest.mark.parametrize("kind", ["generated", "held-out"])
def test_default_model_keeps_clean_speech_clean(default_enhancer, kind):
    from gagnet.metrics import score

    clips = _material(kind)
    lost = [score(x, x, metrics="pesq_wb")["pesq_wb"] - score(x, default_enhancer.enhance(x, FS), metrics="pesq_wb")["pesq_wb"]
            for x in clips]
    assert len(clips) >= 3
    assert np.mean(lost) <= CLEAN_BAR, np.round(lost, 3)


def _noise(i: int, n: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(100 + i)
    if kind == "generated" or not (SHARED / "noise").is_dir():
        gen = colored_noise if i % 2 == 0 else machine_noise
        return gen(rng, n / FS, FS)[:n]
    from gagnet.data.audio import load_audio

    held = _held_out("noise")
    x = load_audio(held[i % len(held)], FS)
    return np.resize(x, n)


@pytest.mark.parametrize("kind", ["generated", "held-out"])
def test_default_model_does_not_hurt_speech_at_30_db_snr(default_enhancer, kind):
    from gagnet.metrics import score

    clips = _material(kind)
    before, after = [], []
    for i, x in enumerate(clips):
        v = _noise(i, x.size, kind).astype(np.float64)
        v *= np.sqrt(np.mean(x.astype(np.float64) ** 2) / np.mean(v ** 2)) * 10 ** (-30 / 20)
        noisy = (x + v).astype(np.float32)
        before.append(score(x, noisy, metrics=MEASURES))
        after.append(score(x, default_enhancer.enhance(noisy, FS), metrics=MEASURES))
    worse = {m: (round(np.mean([b[m] for b in before]), 3), round(np.mean([a[m] for a in after]), 3))
             for m in MEASURES if np.mean([a[m] for a in after]) < np.mean([b[m] for b in before])}
    assert not worse, worse
