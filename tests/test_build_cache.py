"""The build cache: files made once, kept under a size bound, rebuilt when damaged, and made in a
temporary folder when the cache folder cannot be written."""
import os
import time

import numpy as np
import pytest

from gagnet import build_cache
from gagnet.build_cache import cached_file, prune


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GAGNET_CACHE", str(tmp_path / "c"))
    monkeypatch.setattr(build_cache, "_fallback", [])
    return tmp_path / "c" / "onnx"


def _builder(size: int, calls: list):
    def build(tmp):
        calls.append(tmp)
        tmp.write_bytes(b"x" * size)
    return build


def test_built_once_then_reused_and_marked_used(cache):
    calls = []
    path = cached_file("a.bin", _builder(10, calls), "making a")
    assert path == cache / "a.bin" and path.read_bytes() == b"x" * 10 and len(calls) == 1
    os.utime(path, (1000.0, 1000.0))
    assert cached_file("a.bin", _builder(10, calls), "making a") == path and len(calls) == 1
    st = path.stat()
    assert st.st_mtime == 1000.0 and st.st_atime > time.time() - 60  # used now, built then
    assert [p.name for p in cache.iterdir()] == ["a.bin"]  # no temporary file left


def test_a_failed_build_leaves_nothing_under_the_name(cache):
    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("export failed")
    with pytest.raises(RuntimeError):
        cached_file("b.bin", broken, "making b")
    assert list(cache.iterdir()) == []


def test_prune_drops_the_least_recently_used_first(tmp_path):
    for i, name in enumerate(["old", "mid", "new", "keep"]):
        (tmp_path / name).write_bytes(b"x" * 100)
        os.utime(tmp_path / name, (1000.0 + i, 1000.0 + i))
    os.utime(tmp_path / "keep", (1.0, 1.0))  # oldest, but the file just built
    (tmp_path / ".x.tmp").write_bytes(b"x" * 500)  # being written by another process
    gone = prune(tmp_path, tmp_path / "keep", 250)
    assert [p.name for p in gone] == ["old", "mid"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".x.tmp", "keep", "new"]


def test_the_cache_stays_under_its_bound(cache, monkeypatch):
    monkeypatch.setenv("GAGNET_CACHE_MB", "0.0025")  # 2,500 bytes: two files of 1,000
    calls = []
    for i, name in enumerate(["a", "b", "c"]):
        cached_file(name, _builder(1000, calls), "making")
        os.utime(cache / name, (2000.0 + i, 2000.0 + i))
    assert sorted(p.name for p in cache.iterdir()) == ["b", "c"]
    cached_file("b", _builder(1000, calls), "making")  # b is used again, so c goes next
    cached_file("d", _builder(1000, calls), "making")
    assert sorted(p.name for p in cache.iterdir()) == ["b", "d"] and len(calls) == 4


def test_an_unwritable_cache_folder_means_a_temporary_one(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("GAGNET_CACHE", str(blocker))
    monkeypatch.setattr(build_cache, "_fallback", [])
    calls = []
    with caplog.at_level("WARNING", logger="gagnet.build_cache"):
        a = cached_file("a.bin", _builder(5, calls), "making a")
        b = cached_file("b.bin", _builder(5, calls), "making b")
        assert cached_file("a.bin", _builder(5, calls), "making a") == a
    assert a.parent == b.parent == build_cache._fallback[0] and a.read_bytes() == b"x" * 5 and len(calls) == 2
    assert caplog.text.count("cannot write the cache folder") == 1 and "$GAGNET_CACHE" in caplog.text
    assert blocker.read_text() == "not a folder"


def test_a_damaged_onnx_graph_is_built_again(cache, caplog):
    pytest.importorskip("onnxruntime")
    from gagnet.config import get_config
    from gagnet.enhance import Enhancer
    from gagnet.model import GaGNet, WaveGaGNet

    model = WaveGaGNet(GaGNet(get_config("tiny"))).eval()
    x = (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    ref = Enhancer(model, backend="onnx").enhance(x, 16000)
    (graph,) = cache.glob("*.onnx")
    graph.write_bytes(graph.read_bytes()[:1000])  # truncated, as by a full disk or a killed copy
    with caplog.at_level("WARNING", logger="gagnet.build_cache"):
        out = Enhancer(model, backend="onnx").enhance(x, 16000)
    assert "is damaged; rebuilding it" in caplog.text
    np.testing.assert_array_equal(out, ref)
    assert graph.stat().st_size > 1000
