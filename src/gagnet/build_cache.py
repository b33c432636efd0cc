"""Files gagnet builds once and reuses: ONNX graphs of each set of weights, the native int8 stages.

They live in ``$GAGNET_CACHE/onnx`` (else ``$XDG_CACHE_HOME/gagnet/onnx``, else
``~/.cache/gagnet/onnx``). A file is written under a temporary name and renamed when complete,
so a crash never leaves half a file under the real name. The folder is kept under
``$GAGNET_CACHE_MB`` megabytes (default 1024) by deleting the files used least recently: every
set of weights ever run adds a graph of 10 to 25 MB. Where the folder cannot be written (a
read-only home, some containers) the file is built in a temporary folder for this process
alone, with one warning.
"""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

#: Default bound of the cache folder, in MB (``$GAGNET_CACHE_MB`` overrides it; 0: no bound).
DEFAULT_LIMIT_MB = 1024

_fallback: list[Path] = []  # the process's temporary folder, once made


def cache_dir() -> Path:
    """The cache folder (not created)."""
    base = os.environ.get("GAGNET_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gagnet")
    return Path(base) / "onnx"


def _temporary_dir(why: OSError, folder: Path) -> Path:
    if not _fallback:
        tmp = Path(tempfile.mkdtemp(prefix="gagnet-cache-"))
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        _fallback.append(tmp)
        logger.warning("cannot write the cache folder %s (%s); building in %s for this run only "
                       "(set $GAGNET_CACHE to a writable folder to keep the files)",
                       folder, why.strerror or why, tmp)
    return _fallback[0]


def _limit_bytes() -> int:
    text = os.environ.get("GAGNET_CACHE_MB", "")
    try:
        mb = float(text) if text.strip() else DEFAULT_LIMIT_MB
    except ValueError:
        logger.warning("ignoring $GAGNET_CACHE_MB=%r (not a number of MB)", text)
        mb = DEFAULT_LIMIT_MB
    return int(mb * 1e6) if mb > 0 else 0


def prune(folder: Path, keep: Path, limit: int) -> list[Path]:
    """Delete the least recently used files of ``folder`` (never ``keep``, nor files being
    written) until it holds at most ``limit`` bytes. Returns the deleted paths."""
    files = []
    for p in folder.iterdir():
        if p.is_file() and not p.name.startswith("."):
            st = p.stat()
            files.append((max(st.st_atime, st.st_mtime), st.st_size, p))
    total = sum(size for _, size, _ in files)
    gone = []
    for _, size, p in sorted(files):  # oldest use first
        if total <= limit:
            break
        if p == keep:
            continue
        try:
            p.unlink()
        except OSError:
            continue
        total -= size
        gone.append(p)
    if gone:
        logger.info("cache %s: removed %d file(s) used least recently, to stay under %.0f MB "
                    "($GAGNET_CACHE_MB)", folder, len(gone), limit / 1e6)
    return gone


def cached_file(name: str, build: Callable[[Path], None], what: str) -> Path:
    """The cache's file ``name``, made by ``build(tmp)`` on first use under a temporary name
    and renamed when complete (``what`` is logged then). A file found is marked as used now
    (its access time; the modification time stays that of its build)."""
    folder = _fallback[0] if _fallback else cache_dir()
    path = folder / name
    if path.is_file():
        try:  # last use is the access time, set here (mounts may not keep it); the mtime stays the build's
            os.utime(path, (time.time(), path.stat().st_mtime))
        except OSError:
            pass
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe.{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        folder = _temporary_dir(e, folder)
        path = folder / name
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    logger.info("%s: %s", what, path)
    try:
        build(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    limit = _limit_bytes()
    if limit and not _fallback:
        prune(folder, path, limit)
    return path


def discard(path: Path) -> None:
    """Remove a cached file found unreadable, so that the next :func:`cached_file` rebuilds it."""
    logger.warning("cached file %s is damaged; rebuilding it", path)
    path.unlink(missing_ok=True)
