"""Datasets of ready-made (noisy, clean) file pairs in two parallel folders."""
from __future__ import annotations

import logging
import operator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .audio import AudioError, list_audio, load_audio

logger = logging.getLogger(__name__)

#: Unmatched names quoted in the error message, per side.
_MAX_LISTED = 10


def _keyed(folder: Path) -> dict[str, Path]:
    """Audio files under ``folder`` keyed by relative path without extension."""
    if not folder.is_dir():
        raise AudioError(f"not a folder: {folder}")
    out: dict[str, Path] = {}
    for path in list_audio(folder):
        key = path.relative_to(folder).with_suffix("").as_posix()
        if key in out:
            raise AudioError(f"two files with the name {key!r} in {folder}: {out[key].name}, {path.name}")
        out[key] = path
    return out


def _quote(names: list[str]) -> str:
    more = f", ... ({len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else ""
    return ", ".join(names[:_MAX_LISTED]) + more


class PairedDataset(Dataset):
    """Pairs ``noisy_dir/x`` with ``clean_dir/x`` by relative path (extension ignored).

    Items are ``{"noisy": (N,) float32, "clean": (N,) float32, "snr": nan}``: whole files
    (cut to the shorter of the two), or with ``segment_seconds`` a crop of that length
    that is a pure function of ``(seed, index)``, the same for noisy and clean (zero-padded
    at the end when the file is shorter). Raises :class:`AudioError` for empty folders
    and for names present on one side only.
    """

    def __init__(
        self,
        noisy_dir: str | Path,
        clean_dir: str | Path,
        sample_rate: int = 16000,
        segment_seconds: float | None = None,
        seed: int = 0,
    ) -> None:
        noisy, clean = _keyed(Path(noisy_dir)), _keyed(Path(clean_dir))
        only_noisy = sorted(set(noisy) - set(clean))
        only_clean = sorted(set(clean) - set(noisy))
        if only_noisy or only_clean:
            parts = []
            if only_noisy:
                parts.append(f"{len(only_noisy)} only in {noisy_dir}: {_quote(only_noisy)}")
            if only_clean:
                parts.append(f"{len(only_clean)} only in {clean_dir}: {_quote(only_clean)}")
            raise AudioError("noisy and clean files do not match; " + "; ".join(parts))
        if segment_seconds is not None and segment_seconds <= 0:
            raise ValueError(f"segment_seconds must be positive, got {segment_seconds}")
        self.keys = sorted(noisy)
        self.pairs = [(noisy[k], clean[k]) for k in self.keys]
        self.sample_rate = sample_rate
        self.length = None if segment_seconds is None else int(round(segment_seconds * sample_rate))
        self.seed = seed
        self._warned: set[int] = set()

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        index = operator.index(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        index %= len(self)
        noisy_path, clean_path = self.pairs[index]
        noisy = load_audio(noisy_path, self.sample_rate)
        clean = load_audio(clean_path, self.sample_rate)
        n = min(len(noisy), len(clean))
        if len(noisy) != len(clean) and index not in self._warned:
            self._warned.add(index)
            logger.warning(
                "%s: noisy has %d samples, clean %d; using the first %d", self.keys[index], len(noisy), len(clean), n
            )
        noisy, clean = noisy[:n], clean[:n]
        if self.length is not None:
            rng = np.random.default_rng([self.seed, index])
            start = int(rng.integers(0, max(n - self.length, 0) + 1))
            pad = (0, max(self.length - n, 0))
            noisy, clean = (np.pad(x[start : start + self.length], pad) for x in (noisy, clean))
        return {"noisy": torch.from_numpy(noisy), "clean": torch.from_numpy(clean), "snr": float("nan")}
