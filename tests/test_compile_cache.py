"""The carried compile cache (``TrainConfig.compile_cache``): a file written by one process lets a
fresh process, with an empty inductor cache folder, compile the same step without compiling
anything from scratch. Each process runs apart, so that no in-memory cache can help."""
import json
import lzma
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from gagnet.compile_cache import load_compile_cache, machine, read_header

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
