"""gagnet pack: a training set re-encoded as Opus that still decodes to the same speech."""
import json

import numpy as np
import pytest
import soundfile as sf

from gagnet.cli import main
from gagnet.data import MixingDataset, list_audio, load_audio
from gagnet.config import DataConfig
from gagnet.data.pack import make_pack

SR = 16000


def _voice(seconds: float, f0: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    env = np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    return (0.2 * env * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))).astype(np.float32)


@pytest.fixture
def sources(tmp_path):
    speech, noise = tmp_path / "speech" / "spk1", tmp_path / "noise"
    speech.mkdir(parents=True)
    noise.mkdir()
    sf.write(speech / "a.wav", _voice(1.5, 140), SR, subtype="PCM_16")
    sf.write(speech / "b.flac", _voice(2.0, 210), SR)
    sf.write(tmp_path / "c44.wav", _voice(1.0, 180, 44100), 44100)  # listed, other rate: resampled
    (tmp_path / "list.txt").write_text("c44.wav\n")
    rng = np.random.default_rng(0)
    sf.write(noise / "n.wav", (0.1 * rng.standard_normal(2 * SR)).astype(np.float32), SR)
    return tmp_path


def test_pack_writes_decodable_opus_and_summary(sources, tmp_path):
    out = tmp_path / "pack"
    summary = make_pack(out, [str(sources / "speech"), str(sources / "list.txt")], [str(sources / "noise")],
                        rirs=2, workers=1)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.ogg"))
    top = sources.name  # each source's folder keeps its own two names: the split keys need them
    assert files == [f"noise/0/{top}/noise/n.wav.ogg", f"speech/0/{top}/speech/spk1/a.wav.ogg",
                     f"speech/0/{top}/speech/spk1/b.flac.ogg", f"speech/1/{sources.parent.name}/{top}/c44.wav.ogg"]
    assert len(list((out / "rir").glob("*.flac"))) == 2
    assert summary["speech"]["files"] == 3 and summary["speech"]["seconds"] == pytest.approx(4.5, abs=0.05)
    written = json.loads((out / "pack.json").read_text())
    assert written["noise"]["files"] == 1 and written["keeps_split_keys"] is True  # gpu_lease.sh greps for it
    # near-transparent: the decoded speech is the original up to coding noise well below the signal
    ref = load_audio(sources / "speech" / "spk1" / "b.flac")
    dec = load_audio(out / "speech" / "0" / top / "speech" / "spk1" / "b.flac.ogg")
    n = min(len(ref), len(dec))
    snr = 10 * np.log10(np.sum(ref[:n] ** 2) / np.sum((ref[:n] - dec[:n]) ** 2))
    assert abs(len(dec) - len(ref)) < 0.01 * SR and snr > 15, snr
    # and a pack trains like any other folder
    ds = MixingDataset(list_audio(out / "speech"), list_audio(out / "noise"),
                       DataConfig(segment_seconds=1.0, rir=str(out / "rir"), reverb_prob=1.0))
    item = ds[0]
    assert item["noisy"].shape == (SR,) and np.isfinite(item["noisy"].numpy()).all()


def test_pack_refuses_a_non_empty_folder(sources, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    code = main(["pack", str(out), "--speech", str(sources / "speech"), "--noise", str(sources / "noise")])
    assert code == 2 and "not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "x"


def test_a_pack_holds_out_what_its_sources_hold_out(tmp_path):
    """Packed speakers and files hash as the originals do, so a lease on the pack and a CPU run on
    the sources validate on the same voices and noise (speakers straight in the source folder too)."""
    from gagnet.data.validation import source_name, split_holdout

    root = tmp_path / "data"
    for spk in ("emodb", "grid/s1", "grid/s2", "vcc/SF1", "vcc/TM2", "arctic/bdl"):
        for i in range(2):
            (root / "speech" / spk).mkdir(parents=True, exist_ok=True)
            sf.write(root / "speech" / spk / f"u{i}.wav", _voice(0.6, 120 + 10 * i), SR)
    sf.write(root / "speech" / "loose.wav", _voice(0.6, 150), SR)  # key: data/speech
    for name in ("n1.wav", "n0.25_x.flac", "cafe.ogg", "street.wav", "hum.flac"):
        (root / "noise" / "real").mkdir(parents=True, exist_ok=True)
        sf.write(root / "noise" / "real" / name, (0.05 * np.random.default_rng(1).standard_normal(SR // 2)).astype(np.float32), SR)
    out = tmp_path / "pack"
    make_pack(out, [str(root / "speech")], [str(root / "noise")], workers=1)

    def held(files, by):
        train, held = split_holdout(files, 0.4, by=by)
        assert train and held
        return sorted(f"{p.parent.name}/{source_name(p)}" for p in held)

    for kind, by in (("speech", "speaker"), ("noise", "file")):
        original, packed = list_audio(root / kind), list_audio(out / kind)
        assert len(packed) == len(original)
        assert held(original, by) == held(packed, by), kind
