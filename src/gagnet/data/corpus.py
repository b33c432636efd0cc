"""A set of audio files decoded once into one int16 tensor, for mixing on the device.

Every file is decoded to 16 kHz mono, stripped of the runs of digital zeros at its two ends
(padding, not speech or noise), scaled to a peak of :data:`PEAK` and stored as int16 in one
flat tensor with per-file starts and lengths. Levels are drawn again by the mixer, so the
per-file scaling loses nothing and keeps the int16 resolution. Today's training pack
(about 4.5 h) is about 0.5 GB in this form: small enough to sit on a GPU for a whole run.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .audio import AudioError, load_audio

log = logging.getLogger(__name__)

#: Peak of every stored file (as a fraction of int16 full scale).
PEAK = 0.99
#: Files shorter than this after trimming (seconds) are left out.
MIN_SECONDS = 0.1
SCALE = 1.0 / 32768.0


def _trimmed_int16(audio: np.ndarray) -> np.ndarray:
    """``audio`` peak-normalised to :data:`PEAK` as int16, without the zero runs at its ends."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak == 0.0:
        return np.zeros(0, dtype=np.int16)
    q = np.round(audio * (PEAK * 32767.0 / peak)).astype(np.int16)
    nz = np.flatnonzero(q)
    return q[nz[0] : nz[-1] + 1] if nz.size else q[:0]


def _decode(path: str, sample_rate: int, loader: Callable[[Path], np.ndarray] | None) -> np.ndarray | str:
    try:
        audio = loader(Path(path)) if loader else load_audio(path, sample_rate)
    except AudioError as e:
        return str(e)
    return _trimmed_int16(np.asarray(audio, dtype=np.float32))


@dataclass
class Corpus:
    """Decoded files: ``audio`` ``(S,)`` int16, ``starts`` and ``lengths`` ``(F,)`` int64.

    File ``i`` is ``audio[starts[i]:starts[i] + lengths[i]] * SCALE`` (float, peak 0.99).
    """

    audio: torch.Tensor
    starts: torch.Tensor
    lengths: torch.Tensor
    names: list[str]
    sample_rate: int = 16000

    @classmethod
    def from_files(cls, files: Sequence[str | Path], sample_rate: int = 16000, workers: int = 0,
                   loader: Callable[[Path], np.ndarray] | None = None, kind: str = "audio",
                   min_seconds: float = MIN_SECONDS) -> "Corpus":
        """Decode ``files`` (in processes when ``workers`` > 1); unreadable and silent files,
        and those shorter than ``min_seconds`` once trimmed, are left out (the unreadable
        ones logged). Raises :class:`AudioError` if none is left."""
        paths = [str(f) for f in files]
        job = functools.partial(_decode, sample_rate=sample_rate, loader=loader)
        if workers > 1 and len(paths) > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                decoded = list(pool.map(job, paths, chunksize=max(1, len(paths) // (8 * workers))))
        else:
            decoded = [job(p) for p in paths]
        return cls._build(paths, decoded, sample_rate, kind, min_seconds)

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], sample_rate: int = 16000, kind: str = "audio",
                    min_seconds: float = 0.0) -> "Corpus":
        """A corpus of float arrays (trimmed and scaled like decoded files), named by position."""
        decoded = [_trimmed_int16(np.asarray(a, dtype=np.float32)) for a in arrays]
        return cls._build([f"{kind}_{i}" for i in range(len(arrays))], decoded, sample_rate, kind, min_seconds)

    @classmethod
    def _build(cls, paths: list[str], decoded: list, sample_rate: int, kind: str, min_seconds: float) -> "Corpus":
        keep, names, skipped = [], [], 0
        min_len = max(int(min_seconds * sample_rate), 1)
        for p, d in zip(paths, decoded):
            if isinstance(d, str):
                log.warning("skipping %s file: %s", kind, d)
                skipped += 1
            elif len(d) < min_len:
                skipped += 1
            else:
                keep.append(d)
                names.append(p)
        if not keep:
            raise AudioError(f"no usable {kind} file among {len(paths)}")
        lengths = torch.tensor([len(k) for k in keep], dtype=torch.int64)
        starts = torch.cumsum(lengths, 0) - lengths
        audio = torch.from_numpy(np.concatenate(keep))
        log.info("%s corpus: %d files (%d left out), %.2f h, %.0f MB as int16", kind, len(keep), skipped,
                 audio.numel() / sample_rate / 3600, audio.numel() * 2 / 1e6)
        return cls(audio, starts, lengths, names, sample_rate)

    def __post_init__(self) -> None:
        #: Length of the shortest file (samples), kept on the host so that no draw reads the device.
        self.shortest = int(self.lengths.min()) if self.lengths.numel() else 0

    def __len__(self) -> int:
        return len(self.names)

    @property
    def seconds(self) -> float:
        return self.audio.numel() / self.sample_rate

    @property
    def device(self) -> torch.device:
        return self.audio.device

    def to(self, device: torch.device | str) -> "Corpus":
        return Corpus(self.audio.to(device), self.starts.to(device), self.lengths.to(device), self.names,
                      self.sample_rate)

    def file(self, i: int) -> torch.Tensor:
        """File ``i`` as float32 ``(lengths[i],)``."""
        s, n = int(self.starts[i]), int(self.lengths[i])
        return self.audio[s : s + n].float() * SCALE

    def save(self, path: str | Path) -> None:
        torch.save({"audio": self.audio.cpu(), "starts": self.starts.cpu(), "lengths": self.lengths.cpu(),
                    "names": self.names, "sample_rate": self.sample_rate}, path)

    @classmethod
    def load(cls, path: str | Path) -> "Corpus":
        d = torch.load(path, map_location="cpu", weights_only=True)
        return cls(d["audio"], d["starts"], d["lengths"], list(d["names"]), int(d["sample_rate"]))
