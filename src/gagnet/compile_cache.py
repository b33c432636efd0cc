"""A file of ``torch.compile``'s cache, carried from one machine to the next.

A GPU lease starts on a bare machine, and the cold compile of the training step took 261 s
of the first lease's 582 s call; the second call, on the same machine with inductor's disk
cache still there, reached its first step in 29 s (docs/training.md (e)). This module keeps
what that disk cache holds in one portable file: the graphs of dynamo/AOT autograd,
inductor's generated code and the Triton kernels, as ``torch.compiler.save_cache_artifacts``
serialises them (paths stripped), compressed with xz, behind a one-line JSON header that
says where they were made.

Inductor keys its entries by the graph, the torch and Triton versions and the GPU's name,
so a file made on another card or another torch simply misses (the step compiles as if no
file were there). The header lets the log say so up front.

File layout: ``xz( header JSON + b"\\n" + artifacts )``.

A device call returns at most 8 files of 16 MiB, 64 MiB together: :func:`return_compile_cache`
sends the file back in parts, and only when they fit beside what the call returns already.
"""
from __future__ import annotations

import json
import logging
import os
import platform
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)


def machine() -> dict[str, str]:
    """What a cache entry is keyed on besides the graph: torch's version and the device."""
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu {platform.machine()}"
    return {"torch": torch.__version__, "device": device}


def _count(info: Any) -> int:
    """Artifacts in a ``torch.compiler`` CacheInfo (None: none)."""
    return sum(len(v) for v in info.artifacts.values()) if info is not None else 0


def read_header(path: str | Path) -> dict[str, Any]:
    """The header of a cache file: ``torch``, ``device`` and ``artifacts`` (how many)."""
    import lzma

    with lzma.open(path, "rb") as f:
        return json.loads(f.readline())


def load_compile_cache(path: str | Path) -> int:
    """Hot-load a cache file into this process's compile caches before anything compiles.

    Returns the number of artifacts loaded: 0 when the file is missing or unreadable (logged;
    training then compiles from scratch, as it would without the file)."""
    import lzma

    path = Path(path)
    if not path.is_file():
        return 0
    try:
        with lzma.open(path, "rb") as f:
            header = json.loads(f.readline())
            payload = f.read()
        here = machine()
        if {k: header.get(k) for k in here} != here:
            logger.warning("compile cache %s was made with torch %s on %s, this is torch %s on %s: "
                           "expect a cold compile", path, header.get("torch"), header.get("device"),
                           here["torch"], here["device"])
        info = torch.compiler.load_cache_artifacts(payload)
    except Exception as e:  # a bad file must never stop a training run
        logger.warning("compile cache %s not loaded (%s: %s)", path, type(e).__name__, e)
        return 0
    n = _count(info)
    if not n:
        logger.warning("compile cache %s not loaded (torch read no artifacts from it)", path)
        return 0
    logger.info("compile cache %s: %d artifacts loaded (made with torch %s on %s)", path, n,
                header.get("torch"), header.get("device"))
    return n


def collect_compile_cache() -> tuple[bytes, int] | None:
    """What this process has compiled (or loaded) so far, serialised: ``(artifacts, how many)``,
    or None when there is nothing. Fast; :func:`write_compile_cache` does the slow compression."""
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return None
    payload, info = saved
    n = _count(info)
    return (payload, n) if n else None


def write_compile_cache(path: str | Path, payload: bytes, n: int) -> int:
    """Compress ``payload`` (``n`` artifacts) to ``path`` behind its header, atomically (lzma
    releases the GIL, so this may run in a thread beside training). Returns the bytes written."""
    import lzma

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with lzma.open(tmp, "wb", preset=6) as f:
        f.write(json.dumps(dict(machine(), artifacts=n)).encode() + b"\n")
        f.write(payload)
    os.replace(tmp, path)
    size = path.stat().st_size
    logger.info("compile cache %s: %d artifacts, %.1f MB", path, n, size / 1e6)
    return size


def compile_misses() -> int:
    """Graphs compiled from scratch in this process so far (inductor and AOT autograd cache misses)."""
    from torch._dynamo.utils import counters

    return counters["inductor"]["fxgraph_cache_miss"] + counters["aot_autograd"]["autograd_cache_miss"]


MiB = 1024 * 1024


def return_compile_cache(path: str | Path, out: str | Path, *, part_bytes: int = 15 * MiB, max_files: int = 8,
                         max_bytes: int = 64 * MiB, spare_bytes: int = 256 * 1024) -> list[Path]:
    """Copy the cache file ``path`` into the return folder ``out``: whole when it fits in
    ``part_bytes``, else as ``<name>.part00``, ``.part01``, ... of ``part_bytes`` (joined with
    ``cat``). Only when the copies fit beside what ``out`` holds already within ``max_files``
    files and ``max_bytes`` bytes, less ``spare_bytes`` for lines written later; otherwise
    nothing is written. Returns the files written ([] when it did not fit)."""
    path, out = Path(path), Path(out)
    size = path.stat().st_size
    parts = max(1, -(-size // part_bytes))
    held = [f for f in out.iterdir() if f.is_file()]
    used = sum(f.stat().st_size for f in held)
    if len(held) + parts > max_files or used + size + spare_bytes > max_bytes:
        logger.info("compile cache %s (%d bytes, %d part(s)) does not fit beside %d files of %d bytes", path, size,
                    parts, len(held), used)
        return []
    if parts == 1:
        names = [out / path.name]
    else:
        names = [out / f"{path.name}.part{i:02d}" for i in range(parts)]
    with path.open("rb") as src:
        for name in names:
            name.write_bytes(src.read(part_bytes))
    return names
