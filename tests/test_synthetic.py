"""Synthetic noise generators, the noise corpus writer and the make-noise command."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gagnet.data import AudioError, list_audio, load_audio
from gagnet.data import synthetic as S

SR = 16000
PLAIN = {
    "colored": S.colored_noise,
    "white": S.white_noise,
    "pink": S.pink_noise,
    "brown": S.brown_noise,
    "blue": S.blue_noise,
    "violet": S.violet_noise,
    "hum": S.hum,
    "crackle": S.crackle,
    "keyboard": S.keyboard,
    "clicks": S.clicks,
    "machine": S.machine_noise,
}
F0S = (110.0, 170.0, 230.0)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _welch(x: np.ndarray, n: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and mean periodogram of Hann-windowed frames (50 % overlap)."""
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(x, dtype=np.float64), n)[:: n // 2]
    power = np.mean(np.abs(np.fft.rfft(frames * np.hanning(n), axis=1)) ** 2, axis=0)
    return np.fft.rfftfreq(n, 1.0 / SR), power


def _slope_db_per_octave(x: np.ndarray) -> float:
    f, p = _welch(x)
    band = (f >= 100) & (f <= 6000)
    return float(np.polyfit(np.log2(f[band]), 10 * np.log10(p[band]), 1)[0])


def _kurtosis(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.mean(x**4) / np.mean(x**2) ** 2)


def _voice(f0: float, seconds: float, seed: int) -> np.ndarray:
    """A harmonic 'voice' at a fixed ``f0`` with syllable-like amplitude modulation."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 6))
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 6))
    return (0.2 * x * env).astype(np.float32)


@pytest.fixture
def voices(tmp_path: Path) -> list[Path]:
    paths = []
    for i, f0 in enumerate(F0S):
        p = tmp_path / "voices" / f"spk{i}" / f"utt{i}.flac"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, _voice(f0, 1.5 + 0.5 * i, i), SR, subtype="PCM_16")
        paths.append(p)
    return paths


# --------------------------------------------------------------------------- generators


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_generators_are_deterministic_finite_and_sized(name: str) -> None:
    gen = PLAIN[name]
    a, b = gen(_rng(3), 1.3, SR), gen(_rng(3), 1.3, SR)
    c = gen(_rng(4), 1.3, SR)
    assert a.dtype == np.float32 and a.shape == (round(1.3 * SR),)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.isfinite(a).all()
    assert np.sqrt(np.mean(a.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
    assert gen(_rng(0), 0.5, 8000).shape == (4000,)


def test_generators_reject_bad_lengths() -> None:
    with pytest.raises(ValueError):
        S.pink_noise(_rng(), 0.0, SR)


@pytest.mark.parametrize(
    "name,expected", [("white", 0.0), ("pink", -3.01), ("brown", -6.02), ("blue", 3.01), ("violet", 6.02)]
)
def test_colored_noise_slope(name: str, expected: float) -> None:
    x = PLAIN[name](_rng(1), 4.0, SR)
    assert _slope_db_per_octave(x) == pytest.approx(expected, abs=0.5)


def test_random_exponent_is_within_range() -> None:
    slopes = [_slope_db_per_octave(S.colored_noise(_rng(s), 2.0, SR)) for s in range(8)]
    assert all(-6.6 < v < 6.6 for v in slopes)
    assert max(slopes) - min(slopes) > 2.0  # the exponent does vary


@pytest.mark.parametrize("mains", [50.0, 60.0, None])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hum_fundamental_is_largest_peak(mains: float | None, seed: int) -> None:
    x = S.hum(_rng(seed), 4.0, SR, mains_hz=mains)
    f, p = _welch(x, n=8192)
    low = f < 1000
    peak = float(f[low][np.argmax(p[low])])
    assert min(abs(peak - 50.0), abs(peak - 60.0)) < 2.0
    if mains is not None:
        assert peak == pytest.approx(mains, abs=2.0)
    # the harmonics are there too
    k2 = np.argmin(np.abs(f - 2 * peak))
    assert p[k2] > 1e3 * np.median(p)


@pytest.mark.parametrize("gen", [S.crackle, S.keyboard, S.clicks])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clicks_are_sparse(gen, seed: int) -> None:
    x = gen(_rng(seed), 3.0, SR)
    assert _kurtosis(x) > 20.0  # Gaussian noise: 3
    loud = np.abs(x) > 0.1 * np.abs(x).max()
    assert loud.mean() < 0.1


def test_machine_noise_has_stationary_tones() -> None:
    x = S.machine_noise(_rng(5), 4.0, SR)
    f, p = _welch(x, n=8192)
    assert p.max() > 30 * np.median(p)  # tonal peaks stand above the noise
    assert _kurtosis(x) < 10.0


# --------------------------------------------------------------------------- babble


def test_babble_uses_only_the_given_sources(voices: list[Path]) -> None:
    loaded: list[Path] = []

    def loader(path: Path) -> np.ndarray:
        loaded.append(Path(path))
        return load_audio(path, SR)

    x = S.babble(_rng(0), 3.0, SR, sources=voices, loader=loader, warp=(1.0, 1.0))
    assert x.shape == (3 * SR,) and np.isfinite(x).all()
    assert set(loaded) <= set(voices)
    assert len(set(loaded)) >= 2 and len(loaded) >= 3
    # its spectral peaks are harmonics of the voices' f0s
    f, p = _welch(x, n=8192)
    top = f[np.argsort(p)[-8:]]
    for freq in top:
        assert min(abs(freq / f0 - round(freq / f0)) * f0 for f0 in F0S) < 3.0, freq


def test_babble_follows_its_sources(voices: list[Path]) -> None:
    only = [voices[2]]  # 230 Hz only
    x = S.babble(_rng(1), 2.0, SR, sources=only, warp=(1.0, 1.0))
    f, p = _welch(x, n=8192)
    assert abs(f[np.argmax(p)] / 230.0 - round(f[np.argmax(p)] / 230.0)) * 230.0 < 3.0
    a = S.babble(_rng(1), 2.0, SR, sources=voices)
    b = S.babble(_rng(1), 2.0, SR, sources=voices)
    assert np.array_equal(a, b)


def test_babble_skips_bad_files_and_fails_without_any(voices: list[Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"not audio")
    silent = tmp_path / "silence.flac"  # like Asterisk's silence/*.flac: a -80 dBFS floor
    sf.write(silent, 1e-4 * np.random.default_rng(0).standard_normal(SR), SR, subtype="PCM_16")
    loaded: list[Path] = []

    def loader(path: Path) -> np.ndarray:
        loaded.append(Path(path))
        return load_audio(path, SR)

    x = S.babble(_rng(2), 3.0, SR, sources=[broken, silent, *voices], loader=loader)
    assert np.isfinite(x).all() and np.any(x)
    assert loaded.count(broken) <= 1 and loaded.count(silent) <= 1  # tried once, then excluded
    # no dropouts: every 100-ms frame has speech
    frames = np.mean(x.reshape(-1, SR // 10).astype(np.float64) ** 2, axis=1)
    assert frames.min() > 1e-3
    for bad in (broken, silent):
        with pytest.raises(AudioError):
            S.babble(_rng(2), 1.0, SR, sources=[bad])
    with pytest.raises(AudioError):
        S.babble(_rng(2), 1.0, SR, sources=[])


# --------------------------------------------------------------------------- corpus


def test_mixes_name_known_generators() -> None:
    for kind, parts in S.MIXES.items():
        assert parts and all(name in S.GENERATORS and lo <= hi for name, lo, hi in parts), kind


def test_plan_corpus_is_balanced() -> None:
    counts = S.plan_corpus(2.0, 10.0, ["a", "b", "c", "d", "e"])
    assert sum(counts.values()) == 12 and max(counts.values()) - min(counts.values()) <= 1


def test_write_noise_corpus(voices: list[Path], tmp_path: Path) -> None:
    kinds = list(S.MIXES)
    minutes = len(kinds) * 2 * 0.5 / 60  # two 0.5-s clips per kind
    a = S.write_noise_corpus(tmp_path / "a", minutes, tmp_path / "voices", seed=7, clip_seconds=0.5)
    b = S.write_noise_corpus(tmp_path / "b", minutes, voices, seed=7, clip_seconds=0.5)
    expected = sorted(f"{k}/{k}_{i:04d}.flac" for k in kinds for i in range(2))
    files_a = sorted(p.relative_to(tmp_path / "a").as_posix() for p in list_audio(tmp_path / "a"))
    assert files_a == expected
    assert a["clips"] == {k: 2 for k in kinds} and a["total_clips"] == len(expected)
    for rel in expected:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
        info = sf.info(tmp_path / "a" / rel)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (SR, 1, SR // 2, "PCM_16")
        data, _ = sf.read(tmp_path / "a" / rel)
        assert np.isfinite(data).all() and np.abs(data).max() <= S.CLIP_PEAK + 1e-4 and np.any(data)
    assert (tmp_path / "a" / "corpus.json").read_bytes() == (tmp_path / "b" / "corpus.json").read_bytes()
    assert json.loads((tmp_path / "a" / "corpus.json").read_text())["seed"] == 7

    c = S.write_noise_corpus(tmp_path / "c", minutes, voices, seed=8, clip_seconds=0.5)
    assert c["clips"] == a["clips"]
    hum0 = Path("hum") / "hum_0000.flac"
    assert (tmp_path / "c" / hum0).read_bytes() != (tmp_path / "a" / hum0).read_bytes()

    with pytest.raises(FileExistsError):
        S.write_noise_corpus(tmp_path / "a", minutes, voices, seed=7, clip_seconds=0.5)
    S.write_noise_corpus(tmp_path / "a", 1 / 60, voices, seed=7, clip_seconds=0.5, kinds=["hum"], overwrite=True)
    assert [p.name for p in list_audio(tmp_path / "a")] == ["hum_0000.flac", "hum_0001.flac"]


def test_write_noise_corpus_without_babble(tmp_path: Path) -> None:
    summary = S.write_noise_corpus(tmp_path / "n", 0.1, None, seed=0, clip_seconds=0.5)
    assert summary["clips"] and not any("babble" in k for k in summary["clips"])
    with pytest.raises(AudioError):
        S.write_noise_corpus(tmp_path / "m", 0.1, [], kinds=["babble"], clip_seconds=0.5)


def test_make_noise_command(voices: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser(prog="gagnet")
    S.register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "cli"
    args = parser.parse_args(
        ["make-noise", str(out), "--minutes", "0.1", "--babble", str(voices[0]), str(voices[1]),
         "--babble", str(voices[2]), "--seed", "3", "--clip-seconds", "0.5", "--kinds", "babble,hum"]
    )
    assert args.babble == [str(v) for v in voices]
    assert args.func(args) == 0
    assert "wrote 12 clips" in capsys.readouterr().out
    assert len(list_audio(out / "babble")) == 6 and len(list_audio(out / "hum")) == 6
    assert args.func(args) == 2  # not empty now
    assert "not empty" in capsys.readouterr().err
