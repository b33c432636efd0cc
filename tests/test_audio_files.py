"""Input discovery, output naming, header checks and atomic writing of gagnet.audio_files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gagnet import audio_files as af
from gagnet.audio_files import (
    AtomicAudioWriter,
    AudioFileError,
    BlockReader,
    choose_output,
    discover,
    plan_outputs,
    probe,
)


def _wav(path: Path, seconds: float = 0.1, sr: int = 16000, channels: int = 1, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.random.default_rng(0).standard_normal((int(seconds * sr), channels))
    sf.write(str(path), x.astype(np.float32), sr, subtype=subtype)
    return path


def test_discover_folder_tree_hidden_and_enhanced(tmp_path):
    _wav(tmp_path / "in" / "a.wav")
    _wav(tmp_path / "in" / "sub" / "deep" / "b.flac")
    _wav(tmp_path / "in" / "sub" / "C.WAV")
    _wav(tmp_path / "in" / "a_enhanced.wav")
    _wav(tmp_path / "in" / ".a.part1234.wav")  # an unfinished output
    _wav(tmp_path / "in" / ".hidden" / "x.wav")
    (tmp_path / "in" / "notes.txt").write_text("hi")
    d = discover([tmp_path / "in"], skip_enhanced=True)
    assert d.errors == []
    assert [f.rel.as_posix() for f in d.files] == ["a.wav", "sub/C.WAV", "sub/deep/b.flac"]
    d = discover([tmp_path / "in"])
    assert "a_enhanced.wav" in [f.rel.as_posix() for f in d.files]


def test_discover_glob_explicit_missing_and_empty_folder(tmp_path):
    _wav(tmp_path / "data" / "x" / "1.wav")
    _wav(tmp_path / "data" / "y" / "2.wav")
    (tmp_path / "empty").mkdir()
    (tmp_path / "t.txt").write_text("not audio")
    d = discover([f"{tmp_path}/data/**/*.wav", tmp_path / "t.txt", tmp_path / "nope.wav", tmp_path / "empty",
                  f"{tmp_path}/zz*.wav", tmp_path / "data" / "x" / "1.wav"])
    assert [f.rel.as_posix() for f in d.files] == ["x/1.wav", "y/2.wav", "t.txt"]  # duplicate dropped
    assert d.files[2].explicit and not d.files[0].explicit
    assert len(d.errors) == 3
    assert "nope.wav: no such file" in d.errors[0]
    assert "no audio files" in d.errors[1] and "empty" in d.errors[1]
    assert "pattern matches no audio" in d.errors[2]


def test_discover_leaves_out_the_output_folder(tmp_path):
    _wav(tmp_path / "in" / "a.wav")
    _wav(tmp_path / "in" / "out" / "a.wav")
    d = discover([tmp_path / "in"], exclude=[tmp_path / "in" / "out"])
    assert [f.rel.as_posix() for f in d.files] == ["a.wav"]


def test_plan_outputs(tmp_path):
    a = _wav(tmp_path / "in" / "a.wav")
    _wav(tmp_path / "in" / "s" / "b.flac")
    files = discover([tmp_path / "in"]).files
    plan = plan_outputs(files, None)
    assert [d.name for _, d in plan] == ["a_enhanced.wav", "b_enhanced.flac"]
    assert plan[1][1].parent == tmp_path / "in" / "s"
    plan = plan_outputs(files, tmp_path / "out")
    assert [d for _, d in plan] == [tmp_path / "out" / "a.wav", tmp_path / "out" / "s" / "b.flac"]
    one = discover([a]).files
    assert plan_outputs(one, tmp_path / "x.flac") == [(one[0], tmp_path / "x.flac")]
    assert plan_outputs(one, tmp_path / "folder") == [(one[0], tmp_path / "folder" / "a.wav")]
    with pytest.raises(AudioFileError, match="looks like a file name"):
        plan_outputs(files, tmp_path / "x.wav")


def test_inputs_from_two_folders_with_the_same_names_keep_their_folders(tmp_path):
    for d in ("d1", "d2"):
        _wav(tmp_path / d / "x.wav")
    _wav(tmp_path / "d1" / "only1.wav")
    _wav(tmp_path / "a" / "noisy" / "y.wav")
    _wav(tmp_path / "b" / "noisy" / "y.wav")
    _wav(tmp_path / "c" / "z.wav")
    files = discover([tmp_path / "d1", tmp_path / "d2", tmp_path / "c"]).files
    plan = {f.path.relative_to(tmp_path).as_posix(): d.relative_to(tmp_path / "o").as_posix()
            for f, d in plan_outputs(files, tmp_path / "o")}
    assert plan == {"d1/only1.wav": "d1/only1.wav", "d1/x.wav": "d1/x.wav", "d2/x.wav": "d2/x.wav", "c/z.wav": "z.wav"}
    files = discover([tmp_path / "a" / "noisy", tmp_path / "b" / "noisy" / "y.wav"]).files  # a folder and a file
    outs = sorted(d.relative_to(tmp_path / "o").as_posix() for _, d in plan_outputs(files, tmp_path / "o"))
    assert outs == ["a/noisy/y.wav", "b/noisy/y.wav"]


def test_probe_bad_files(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("this is not audio at all\n" * 10)
    good = _wav(tmp_path / "good.wav")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\xff\xff\x00\x00WAVEfmt " + bytes(range(7)) * 5)
    sf.write(str(tmp_path / "zero.wav"), np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(AudioFileError, match=r"empty file \(0 bytes\)"):
        probe(tmp_path / "empty.wav")
    for name in ("text.wav", "corrupt.wav"):
        with pytest.raises(AudioFileError, match="not a readable audio file") as e:
            probe(tmp_path / name)
        assert "\n" not in str(e.value)
    with pytest.raises(AudioFileError, match="no samples"):
        probe(tmp_path / "zero.wav")
    with pytest.raises(AudioFileError, match="no such file"):
        probe(tmp_path / "missing.wav")
    info = probe(good)
    assert (info.samplerate, info.channels, info.frames, info.format, info.subtype) == (16000, 1, 1600, "WAV", "PCM_16")


def test_block_reader_rejects_nan(tmp_path):
    x = np.zeros((5000, 2), np.float32)
    x[3210, 1] = np.nan
    sf.write(str(tmp_path / "nan.wav"), x, 16000, subtype="FLOAT")
    with BlockReader(tmp_path / "nan.wav", 1000) as r:
        with pytest.raises(AudioFileError, match=r"NaN or Inf samples \(first at 0.201 s\)"):
            list(r)
    sf.write(str(tmp_path / "ok.wav"), np.ones((2500, 2), np.float32) * 0.5, 8000, subtype="FLOAT")
    with BlockReader(tmp_path / "ok.wav", 1000) as r:
        sizes = [b.shape for b in r]
    assert sizes == [(1000, 2), (1000, 2), (500, 2)]


def test_choose_output_keeps_format_and_falls_back(tmp_path, monkeypatch):
    info = probe(_wav(tmp_path / "a.wav", subtype="PCM_24"))
    out = choose_output(info, tmp_path / "o.wav")
    assert (out.format, out.subtype, out.warning) == ("WAV", "PCM_24", None)
    out = choose_output(info, tmp_path / "o.flac")  # the output name asks for FLAC
    assert (out.format, out.subtype) == ("FLAC", "PCM_24")
    f_info = probe(_wav(tmp_path / "f.wav", subtype="FLOAT"))
    out = choose_output(f_info, tmp_path / "o.flac")
    assert (out.format, out.subtype) == ("FLAC", "PCM_16")
    # a format that libsndfile can read but not write
    real = af._can_write
    monkeypatch.setattr(af, "_can_write", lambda fmt, st, sr, ch: fmt != "WAV" and real(fmt, st, sr, ch))
    out = choose_output(info, tmp_path / "o.wav")
    assert (out.path.name, out.format, out.subtype) == ("o.flac", "FLAC", "PCM_24")
    assert "writing FLAC instead" in out.warning
    monkeypatch.setattr(af, "_can_write", real)
    opus = af.AudioInfo(tmp_path / "x.opus", 44100, 1, 100, "OGG", "OPUS")
    assert choose_output(opus, tmp_path / "y.opus").format == "FLAC"  # Opus has no 44.1 kHz


def test_atomic_writer(tmp_path):
    dst = tmp_path / "out" / "o.wav"
    info = probe(_wav(tmp_path / "a.wav"))
    fmt = choose_output(info, dst)
    with AtomicAudioWriter(fmt, 16000, 1) as w:
        assert w.tmp is not None and af.is_temp_path(w.tmp) and w.tmp.suffix == ".wav"
        assert w.tmp.parent == dst.parent and not dst.exists()
        w.write(np.full((100, 1), 2.0, np.float32))  # clipped for PCM_16
    y, _ = sf.read(str(dst), dtype="float32")
    assert y.shape == (100,) and np.all(y > 0.99) and np.all(y <= 1.0)
    before = dst.read_bytes()
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with AtomicAudioWriter(fmt, 16000, 1) as w:
                w.write(np.zeros((100, 1), np.float32))
                raise exc
        assert dst.read_bytes() == before
        assert sorted(p.name for p in dst.parent.iterdir()) == ["o.wav"]


def test_atomic_writer_unwritable(tmp_path):
    info = probe(_wav(tmp_path / "a.wav"))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(AudioFileError, match="cannot create output folder"):
        AtomicAudioWriter(choose_output(info, tmp_path / "afile" / "o.wav"), 16000, 1).__enter__()


def test_same_file(tmp_path):
    a = _wav(tmp_path / "a.wav")
    assert af.same_file(a, tmp_path / "." / "a.wav")
    assert not af.same_file(a, tmp_path / "b.wav")
