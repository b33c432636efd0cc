"""Reading audio files as 16 kHz mono float32 arrays, and finding them on disk."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

logger = logging.getLogger(__name__)

#: File extensions :func:`list_audio` collects from folders (lower case).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus")


class AudioError(ValueError):
    """An audio file or source that cannot be used; the message is one line."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def load_audio(path: str | Path, sample_rate: int = 16000, channel: int | None = None) -> np.ndarray:
    """Read any libsndfile format as float32 mono ``(N,)`` at ``sample_rate``.

    Channels are averaged (or only ``channel`` is kept when given); other rates are
    resampled with soxr ``HQ``. Raises :class:`AudioError` for unreadable or empty files
    and for NaN/Inf samples.
    """
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError, TypeError, EOFError) as e:  # LibsndfileError is a RuntimeError
        raise AudioError(f"{path}: cannot read audio ({_one_line(e)})") from None
    if data.size == 0:
        raise AudioError(f"{path}: no samples")
    if channel is None:
        mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    elif -data.shape[1] <= channel < data.shape[1]:
        mono = data[:, channel]
    else:
        raise AudioError(f"{path}: no channel {channel} (has {data.shape[1]})")
    if not np.isfinite(mono).all():
        raise AudioError(f"{path}: contains NaN or Inf samples")
    if sr != sample_rate:
        mono = soxr.resample(mono, sr, sample_rate, quality="HQ")
        if mono.size == 0:
            raise AudioError(f"{path}: no samples left after resampling {sr} -> {sample_rate} Hz")
    return np.ascontiguousarray(mono, dtype=np.float32)


def _read_list(txt: Path) -> list[Path]:
    """Paths listed one per line in ``txt`` (blank lines and ``#`` comments skipped)."""
    try:
        lines = txt.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise AudioError(f"{txt}: cannot read file list ({_one_line(e)})") from None
    out = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line).expanduser()
            out.append(p if p.is_absolute() else txt.parent / p)
    return out


def list_audio(sources: str | Path | Iterable[str | Path]) -> list[Path]:
    """Audio files of ``sources``: folders (recursive, sorted), ``.txt`` lists or files.

    A ``.txt`` source lists one path per line, relative paths being taken from the list's
    folder; its order is kept. Duplicates are dropped. Raises :class:`AudioError` when a
    source does not exist or nothing is found.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    sources = [Path(s).expanduser() for s in sources]
    found: list[Path] = []
    for src in sources:
        if src.is_dir():
            found += sorted(p for p in src.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
        elif src.is_file() and src.suffix.lower() == ".txt":
            found += _read_list(src)
        elif src.is_file():
            found.append(src)
        else:
            raise AudioError(f"no such folder, file list or audio file: {src}")
    found = list(dict.fromkeys(found))
    if not found:
        raise AudioError(f"no audio files found in {', '.join(str(s) for s in sources) or '(no sources)'}")
    return found
