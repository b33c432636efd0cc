"""Data pipeline: loading, mixing, reverberation, paired folders, validation set, batching."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from gagnet.config import DataConfig
from gagnet.data import (
    AudioError,
    MixingDataset,
    PairedDataset,
    RIRSource,
    ValidationSet,
    collate,
    list_audio,
    load_audio,
    mix_at_snr,
    simulate_rir,
    split_holdout,
    split_sources,
)

SR = 16000
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _db(p: float) -> float:
    return 10.0 * np.log10(p)


def _power(x) -> float:
    return float(np.mean(np.asarray(x, dtype=np.float64) ** 2))


def _speechlike(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Amplitude-modulated harmonics with pauses: enough like speech for level logic."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(100, 220)
    x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 8))
    env = np.clip(np.sin(2 * np.pi * rng.uniform(2, 4) * t), 0, None)
    return (0.3 * x * env).astype(np.float32)


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    """Four short speech files (one shorter than a segment) and three noise files."""
    rng = np.random.default_rng(0)
    speech, noise = [], []
    for i, sec in enumerate((1.5, 2.5, 0.7, 3.0)):
        p = tmp_path / "speech" / f"spk{i % 2}" / f"utt{i}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, _speechlike(rng, sec), SR)
        speech.append(p)
    for i, sec in enumerate((0.5, 1.2, 2.0)):
        p = tmp_path / "noise" / f"n{i}.flac"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, (0.1 * rng.standard_normal(int(sec * SR))).astype(np.float32), SR)
        noise.append(p)
    return speech, noise


def _cfg(**kw) -> DataConfig:
    base = dict(segment_seconds=1.0, epoch_size=10, val_count=3, val_seconds=1.0, seed=7)
    base.update(kw)
    return DataConfig(**base)


@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.5, 20.0])
def test_mix_at_snr_hits_target(snr):
    rng = np.random.default_rng(1)
    speech = _speechlike(rng, 1.0)
    noise = rng.standard_normal(SR).astype(np.float32) * 3.0
    noisy, scaled = mix_at_snr(speech, noise, snr)
    assert noisy.shape == speech.shape and noisy.dtype == np.float32
    assert abs(_db(_power(speech) / _power(scaled)) - snr) < 0.1
    np.testing.assert_allclose(noisy, speech + scaled, atol=1e-6)


def test_mix_at_snr_silent_inputs_are_finite():
    x = np.ones(100, dtype=np.float32)
    zero = np.zeros(100, dtype=np.float32)
    noisy, scaled = mix_at_snr(x, zero, 5.0)
    assert np.all(scaled == 0) and np.array_equal(noisy, x)
    noisy, scaled = mix_at_snr(zero, x, 5.0)
    assert np.isfinite(noisy).all() and np.array_equal(scaled, x)


@pytest.mark.parametrize("snr", [-5.0, 20.0])
def test_items_keep_snr_after_level_scaling(corpus, snr):
    ds = MixingDataset(*corpus, _cfg(snr_db=(snr, snr), level_db=(-30.0, -20.0)))
    for i in range(4):
        item = ds[i]
        clean, noisy = item["clean"].double(), item["noisy"].double()
        assert item["snr"] == pytest.approx(snr)
        assert abs(_db(_power(clean) / _power(noisy - clean)) - snr) < 0.1
        level = _db(_power(clean))
        assert -30.0 - 0.1 < level < -20.0 + 0.1 or noisy.abs().max() > 0.98  # peak-limited
        assert noisy.abs().max() <= 0.99 + 1e-6


def test_items_peak_limited(corpus):
    ds = MixingDataset(*corpus, _cfg(snr_db=(-5.0, -5.0), level_db=(-3.0, -3.0)))
    item = ds[0]
    assert float(item["noisy"].abs().max()) == pytest.approx(0.99, abs=1e-6)
    assert abs(_db(_power(item["clean"]) / _power(item["noisy"] - item["clean"])) + 5.0) < 0.1


def test_items_deterministic_and_any_index(corpus):
    cfg = _cfg(noises_per_mix=(1, 3))
    a, b = MixingDataset(*corpus, cfg), MixingDataset(*corpus, cfg)
    assert len(a) == cfg.epoch_size
    for i in (0, 3, len(a), 10**6):
        x, y = a[i], b[i]
        assert x["noisy"].shape == (SR,) and x["noisy"].dtype == torch.float32
        assert torch.equal(x["noisy"], y["noisy"]) and torch.equal(x["clean"], y["clean"])
        assert x["snr"] == y["snr"]
    assert not torch.equal(a[0]["noisy"], a[1]["noisy"])
    assert not torch.equal(a[0]["noisy"], MixingDataset(*corpus, cfg, seed=8)[0]["noisy"])
    assert len(list(a)) == len(a)
    with pytest.raises(IndexError):
        a[-1]


def test_corrupt_speech_file_is_skipped(corpus, tmp_path, caplog):
    speech, noise = corpus
    bad = tmp_path / "speech" / "broken.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    ds = MixingDataset([bad] + speech, noise, _cfg())
    with caplog.at_level(logging.WARNING, logger="gagnet.data"):
        items = [ds[i] for i in range(12)]
    warnings = [r for r in caplog.records if "broken.wav" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert all(torch.isfinite(it["noisy"]).all() for it in items)
    # the same items come out of a fresh dataset, whatever it already knows to be bad
    fresh = MixingDataset([bad] + speech, noise, _cfg())
    assert torch.equal(fresh[11]["noisy"], items[11]["noisy"])

    nan_file = tmp_path / "nan.wav"
    sf.write(nan_file, np.full(SR, np.nan, dtype=np.float32), SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="no valid speech"):
        MixingDataset([bad, nan_file], noise, _cfg())[0]


def test_load_audio_errors(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), SR)
    for path in (empty, tmp_path / "missing.wav"):
        with pytest.raises(AudioError) as e:
            load_audio(path)
        assert "\n" not in str(e.value)
    inf = tmp_path / "inf.wav"
    sf.write(inf, np.array([0.0, np.inf], dtype=np.float32), SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or Inf"):
        load_audio(inf)


def test_resample_stereo_to_16k_mono(tmp_path):
    t = np.arange(44100) / 44100
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, -0.5 * left + 0.2], axis=1), 44100)
    x = load_audio(path, 16000)
    assert x.dtype == np.float32 and x.shape == (16000,)
    mid = x[1000:-1000]
    assert np.allclose(mid.mean(), 0.1, atol=1e-3)  # the channel average: 0.125 sin + 0.1
    assert np.sqrt(np.mean((mid - 0.1) ** 2)) == pytest.approx(0.125 / np.sqrt(2), rel=0.01)


def test_list_audio(tmp_path, corpus):
    speech, noise = corpus
    (tmp_path / "speech" / "notes.md").write_text("not audio")
    assert list_audio(tmp_path / "speech") == sorted(speech)
    lst = tmp_path / "list.txt"
    lst.write_text(f"# comment\nnoise/n1.flac\n\n{noise[0]}\n")
    assert list_audio([lst]) == [noise[1], noise[0]]
    (tmp_path / "nothing").mkdir()
    with pytest.raises(AudioError, match="no audio files found"):
        list_audio(tmp_path / "nothing")


def test_reverberation_path(corpus):
    cfg = _cfg(rir="simulate", reverb_prob=1.0)
    ds = MixingDataset(*corpus, cfg)
    for i in range(2):
        item = ds[i]
        assert item["noisy"].shape == (SR,) and item["clean"].shape == (SR,)
        assert torch.isfinite(item["noisy"]).all() and torch.isfinite(item["clean"]).all()
        assert float(item["noisy"].abs().max()) <= 0.99 + 1e-6
    assert torch.equal(ds[1]["noisy"], MixingDataset(*corpus, cfg)[1]["noisy"])


def test_simulated_rir_and_rir_folder(tmp_path):
    rir = simulate_rir(np.random.default_rng(0), SR)
    assert rir.dtype == np.float32 and np.isfinite(rir).all() and 0.1 * SR < len(rir) < 1.0 * SR
    folder = tmp_path / "rirs"
    folder.mkdir()
    sf.write(folder / "a.wav", np.stack([rir, rir[::-1]], axis=1), SR)
    src = RIRSource(str(folder), SR)
    np.testing.assert_allclose(src.draw(np.random.default_rng(0)), rir, atol=1e-4)  # first channel
    assert RIRSource(None).draw(np.random.default_rng(0)) is None


def test_validation_set_is_reproducible(corpus, tmp_path):
    cfg = _cfg(rir="simulate", reverb_prob=0.5)
    a = ValidationSet(*corpus, cfg).write(tmp_path / "a")
    b = ValidationSet(*corpus, cfg).write(tmp_path / "b")
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*.wav"))
    assert names == [f"{k}/{i:04d}.wav" for k in ("clean", "noisy") for i in range(cfg.val_count)]
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    info = sf.info(a / names[0])
    assert info.subtype == "PCM_16" and info.frames == int(cfg.val_seconds * SR)


def test_validation_snr_range_is_its_own(corpus):
    """Runs that train on other SNRs validate on the same mixtures when val_snr_db is fixed."""
    a = ValidationSet(*corpus, _cfg(snr_db=(-5.0, 40.0), val_snr_db=(0.0, 5.0), level_db=(-40.0, -10.0),
                                    val_level_db=(-30.0, -20.0), reverb_prob=0.0, val_reverb_prob=0.5, rir="simulate"))
    b = ValidationSet(*corpus, _cfg(snr_db=(10.0, 20.0), val_snr_db=(0.0, 5.0), level_db=(-30.0, -20.0),
                                    reverb_prob=0.5, rir="simulate"))
    assert all(0.0 <= x["snr"] <= 5.0 for x in a.items)
    assert all(torch.equal(x["noisy"], y["noisy"]) for x, y in zip(a.items, b.items))


def test_split_holdout_is_stable():
    files = [Path(f"/data/spk{i % 7}/utt{i}.wav") for i in range(400)]
    train, held = split_holdout(files, 0.1)
    assert 20 < len(held) < 60 and len(train) + len(held) == 400 and not set(train) & set(held)
    moved = [Path("/elsewhere") / f.relative_to("/data") for f in files]
    assert split_holdout(moved, 0.1)[1] == [Path("/elsewhere") / f.relative_to("/data") for f in held]
    assert split_holdout(files[:3], 0.01)[1] != []  # small sets still hold one out
    assert split_holdout(files, 0.0) == (files, [])


def test_split_holdout_by_speaker_keeps_voices_apart():
    files = [Path(f"/data/corpus/spk{i % 20}/utt{i}.wav") for i in range(400)]
    train, held = split_holdout(files, 0.2, by="speaker")
    spk = lambda ps: {p.parent.name for p in ps}  # noqa: E731
    assert held and not spk(train) & spk(held)  # no voice on both sides
    assert 1 <= len(spk(held)) <= 10 and len(train) + len(held) == 400
    assert spk(split_holdout(files, 0.001, by="speaker")[1])  # at least one speaker held out


def test_split_sources_holds_out_speakers_of_speech_and_files_of_noise(tmp_path):
    """The recipe-level split (training, the sweep, the comparison): speech as holdout_by says, noise by file."""
    for i in range(24):
        for path in (tmp_path / "speech" / f"spk{i % 8}" / f"u{i}.wav", tmp_path / "noise" / f"n{i}.wav"):
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, np.zeros(160, np.float32), SR)
    cfg = DataConfig(speech=[str(tmp_path / "speech")], noise=[str(tmp_path / "noise")], holdout_by="speaker",
                     holdout_fraction=0.3)
    (sp_train, sp_held), (no_train, no_held) = split_sources(cfg)
    assert (sp_train, sp_held) == split_holdout(list_audio([tmp_path / "speech"]), 0.3, by="speaker")
    assert (no_train, no_held) == split_holdout(list_audio([tmp_path / "noise"]), 0.3)  # by file, not speaker
    assert sp_held and not {p.parent for p in sp_train} & {p.parent for p in sp_held}


def _write_pairs(root: Path, names: list[str], n: int = SR) -> None:
    rng = np.random.default_rng(3)
    root.mkdir(parents=True)
    for name in names:
        sf.write(root / name, (0.1 * rng.standard_normal(n)).astype(np.float32), SR)


def test_paired_dataset(tmp_path):
    _write_pairs(tmp_path / "noisy", ["a.wav", "b.wav"])
    _write_pairs(tmp_path / "clean", ["a.flac", "b.wav"])
    ds = PairedDataset(tmp_path / "noisy", tmp_path / "clean")
    assert len(ds) == 2 and ds[0]["noisy"].shape == (SR,) and np.isnan(ds[0]["snr"])
    crop = PairedDataset(tmp_path / "noisy", tmp_path / "clean", segment_seconds=0.25, seed=1)
    x, y = crop[1], crop[1]
    assert x["noisy"].shape == (SR // 4,) and torch.equal(x["noisy"], y["noisy"])
    whole = ds[1]
    start = int(torch.nonzero(whole["noisy"] == x["noisy"][0])[0])
    assert torch.equal(whole["clean"][start : start + SR // 4], x["clean"])  # same crop on both sides
    longer = PairedDataset(tmp_path / "noisy", tmp_path / "clean", segment_seconds=2.0)
    assert longer[0]["noisy"].shape == (2 * SR,)


def test_paired_dataset_errors(tmp_path):
    _write_pairs(tmp_path / "noisy", ["a.wav", "only_noisy.wav"])
    _write_pairs(tmp_path / "clean", ["a.wav", "only_clean.wav"])
    with pytest.raises(AudioError, match="only_noisy") as e:
        PairedDataset(tmp_path / "noisy", tmp_path / "clean")
    assert "only_clean" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioError, match="no audio files"):
        PairedDataset(tmp_path / "empty", tmp_path / "clean")


def test_collate_pads():
    items = [
        {"noisy": torch.ones(5), "clean": torch.full((5,), 2.0), "snr": 3.0},
        {"noisy": torch.ones(3), "clean": torch.full((3,), 2.0), "snr": float("nan")},
    ]
    batch = collate(items)
    assert batch["noisy"].shape == (2, 5) and batch["clean"].shape == (2, 5)
    assert batch["lengths"].tolist() == [5, 3] and batch["lengths"].dtype == torch.long
    assert batch["noisy"][1].tolist() == [1, 1, 1, 0, 0] and batch["clean"][1, 3:].eq(0).all()
    assert batch["snr"][0] == 3.0 and torch.isnan(batch["snr"][1])


@pytest.mark.skipif(not (SHARED / "speech").is_dir(), reason="shared data pack not present")
def test_shared_data_pack():
    speech = list_audio(SHARED / "speech")[:40]
    noise = list_audio(SHARED / "noise")[:40]
    ds = MixingDataset(speech, noise, _cfg(segment_seconds=2.0))
    batch = collate([ds[i] for i in range(4)])
    assert batch["noisy"].shape == (4, 2 * SR) and torch.isfinite(batch["noisy"]).all()


def test_the_unseen_comparison_set_is_held_out_whole(monkeypatch):
    """recipes/unseen (issue 18's comparison set) lists every file once, relative to itself, from
    the shared data or local/; as a recipe it holds all of them out; shared files it names exist."""
    from gagnet.data import split_sources
    from gagnet.train import load_train_config

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    data = load_train_config("recipes/unseen/unseen.yaml").data
    (speech_train, speech_held), (noise_train, noise_held) = split_sources(data)
    assert not speech_train and not noise_train
    assert (len(speech_held), len(noise_held)) == (468, 35)
    for held in (speech_held, noise_held):
        assert len(set(held)) == len(held)
        for p in held:
            rel = Path(p).relative_to(Path("recipes", "unseen"))
            assert rel.parts[:4] == ("..", "..", "..", "shared") or rel.parts[:3] == ("..", "..", "local"), p
    if SHARED.is_dir():
        shared = [p for p in speech_held + noise_held if "shared" in Path(p).parts]
        assert shared and all(Path(p).is_file() for p in shared)
