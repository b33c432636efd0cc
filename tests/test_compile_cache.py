"""The carried compile cache (``TrainConfig.compile_cache``): a file written by one process lets a
fresh process, with an empty inductor cache folder, compile the same step without compiling
anything from scratch. Each process runs apart, so that no in-memory cache can help."""
import json
import lzma
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from gagnet.compile_cache import load_compile_cache, machine, read_header, return_compile_cache

from test_compile import needs_inductor

CHILD = textwrap.dedent("""
    import json, sys, types
    import torch
    from gagnet.callbacks import compile_cache_callback
    from gagnet.compile_cache import compile_misses, load_compile_cache
    from pathlib import Path

    mode, path = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    loaded = load_compile_cache(path) if mode == "load" else 0
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv1d(4, 8, 3), torch.nn.PReLU(), torch.nn.Conv1d(8, 2, 1))
    x = torch.randn(2, 4, 50)
    step = torch.compile(lambda x: net(x).square().mean(), dynamic=False)
    step(x).backward()
    saver = compile_cache_callback(path)
    writes = []
    for rank in (1, 0, 0):  # rank 1 never writes; rank 0 once, then only after new misses
        trainer = types.SimpleNamespace(global_rank=rank)
        before = path.stat().st_mtime_ns if path.exists() else None
        saver.on_train_batch_end(trainer, None, None, None, 0)
        saver.on_train_end(trainer, None)  # waits for the writer thread; nothing new to save
        writes.append(path.exists() and path.stat().st_mtime_ns != before)
    print(json.dumps({"loaded": loaded, "misses": compile_misses(), "writes": writes}))
""")


def _child(tmp_path, mode: str, cache_file, cache_dir: str) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / cache_dir))
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(cache_file)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_inductor
def test_a_cache_file_spares_a_fresh_process_the_compile(tmp_path):
    cache_file = tmp_path / "compile_cache.xz"
    first = _child(tmp_path, "save", cache_file, "inductor-a")
    assert first["misses"] > 0, "a fresh inductor folder must compile from scratch"
    assert first["writes"] == [False, True, False]
    header = read_header(cache_file)
    assert header["torch"] == torch.__version__ and header["device"] == machine()["device"]
    assert header["artifacts"] > 0

    second = _child(tmp_path, "load", cache_file, "inductor-b")  # another empty folder
    assert second["loaded"] == header["artifacts"]
    assert second["misses"] == 0, "everything should have come from the carried file"
    assert second["writes"] == [False, False, False]  # nothing new: the file is left alone


def test_a_missing_or_broken_cache_file_loads_nothing(tmp_path, caplog):
    assert load_compile_cache(tmp_path / "absent.xz") == 0
    broken = tmp_path / "broken.xz"
    broken.write_bytes(b"not xz at all")
    assert load_compile_cache(broken) == 0
    caplog.clear()
    other = tmp_path / "other.xz"
    with lzma.open(other, "wb") as f:  # a readable header, then artifacts torch cannot read
        f.write(json.dumps({"torch": "0.0", "device": "elsewhere", "artifacts": 1}).encode() + b"\n")
        f.write(b"garbage")
    with caplog.at_level("WARNING"):
        assert load_compile_cache(other) == 0
    assert "made with torch 0.0 on elsewhere" in caplog.text
    assert "not loaded" in caplog.text


def test_the_cache_goes_back_in_parts_only_when_they_fit_the_return(tmp_path):
    """A device call returns 8 files, 64 MiB together: the cache comes back whole or in parts that
    join to the same bytes, and not at all (nothing half written) beside too much."""
    cache = tmp_path / "compile_cache.xz"
    payload = np.random.default_rng(0).integers(0, 256, 2500, dtype=np.uint8).tobytes()
    cache.write_bytes(payload)
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.pt").write_bytes(bytes(3000))
    limits = dict(part_bytes=1000, max_files=5, max_bytes=6000, spare_bytes=100)
    # three parts beside 3000 bytes: 5,500 + 100 spare fit the 6,000, and 4 files the 5
    written = return_compile_cache(cache, out, **limits)
    assert [f.name for f in written] == [f"compile_cache.xz.part0{i}" for i in range(3)]
    assert b"".join(f.read_bytes() for f in written) == payload
    assert [len(f.read_bytes()) for f in written] == [1000, 1000, 500]
    # a second return beside those would pass the bytes and the file count: nothing written
    before = sorted(f.name for f in out.iterdir())
    assert return_compile_cache(cache, out, **limits) == []
    assert sorted(f.name for f in out.iterdir()) == before
    # too many files even where the bytes would fit
    crowded = tmp_path / "crowded"
    crowded.mkdir()
    for i in range(3):
        (crowded / f"f{i}").write_bytes(b"x")
    assert return_compile_cache(cache, crowded, **limits) == []
    # one part when it fits in one
    single = tmp_path / "single"
    single.mkdir()
    assert [f.name for f in return_compile_cache(cache, single, part_bytes=4000)] == ["compile_cache.xz"]
    assert (single / "compile_cache.xz").read_bytes() == payload
