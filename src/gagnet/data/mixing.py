"""On-the-fly training mixtures: speech (optionally reverberant) plus noise at a random SNR.

Reverberation target: when a mixture is reverberated, the clean target is the *dry* speech
aligned to the direct path of the RIR (the RIR is scaled to a unit direct path), so the
network learns to dereverberate as well as denoise. The SNR and the level are those of the
speech as it appears in the mixture (reverberant when reverberated).
"""
from __future__ import annotations

import logging
import operator
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import DataConfig
from .pool import AudioPool
from .rir import RIRSource, reverberate

logger = logging.getLogger(__name__)

#: Mean-square power below which a signal counts as silent (-100 dBFS).
SILENCE_POWER = 1e-10
#: Largest absolute sample of the returned noisy and clean waves.
PEAK_LIMIT = 0.99
#: Each of several noises gets a gain uniform in this range (dB) before summing.
NOISE_GAIN_DB = (-10.0, 0.0)
#: Segment offsets tried for one whose power is at least ``ACTIVE_RATIO`` of the file's.
SEGMENT_TRIES = 4
ACTIVE_RATIO = 0.25


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """``(noisy, scaled_noise)``, both ``(N,)``, with ``power(speech) / power(scaled_noise)`` at ``snr_db``.

    Power is the mean square over the whole segment. Silent noise is returned as zeros
    (noisy = speech); with silent speech the noise is left unscaled.
    """
    speech = np.asarray(speech)
    noise = np.asarray(noise)
    if speech.shape != noise.shape:
        raise ValueError(f"speech {speech.shape} and noise {noise.shape} differ in shape")
    ps, pn = _power(speech), _power(noise)
    if pn < SILENCE_POWER:
        gain = 0.0
    elif ps < SILENCE_POWER:
        gain = 1.0
    else:
        gain = np.sqrt(ps / (pn * 10.0 ** (snr_db / 10.0)))
    scaled = (noise.astype(np.float64) * gain).astype(noise.dtype)
    return (speech + scaled).astype(np.result_type(speech, noise)), scaled


def _window(x: np.ndarray, start: int, length: int) -> np.ndarray:
    """``x[start:start + length]`` as float32, zeros where it runs off either end."""
    out = np.zeros(length, dtype=np.float32)
    lo, hi = max(start, 0), min(start + length, len(x))
    if hi > lo:
        out[lo - start : hi - start] = x[lo:hi]
    return out


def _check_range(name: str, r: Sequence[float], low: float | None = None) -> None:
    if len(r) != 2 or r[0] > r[1] or (low is not None and r[0] < low):
        raise ValueError(f"DataConfig.{name} must be (low, high) with low <= high, got {r!r}")


class MixingDataset(Dataset):
    """Mixtures of ``cfg.segment_seconds`` made on the fly; item ``i`` is a pure function of ``(seed, i)``.

    Items are ``{"noisy": (N,) float32, "clean": (N,) float32, "snr": float, "index": int}``
    with ``N = round(segment_seconds * sample_rate)``. Speech shorter than a segment is
    followed by further utterances (their zero runs at the ends trimmed), not by padding.
    Any non-negative index is valid (``len`` is ``cfg.epoch_size``, one epoch). Unreadable files are logged once per
    process, excluded and redrawn; :class:`~gagnet.data.audio.AudioError` is raised only
    when no readable speech or noise file remains.
    """

    def __init__(
        self,
        speech_files: Sequence[str | Path],
        noise_files: Sequence[str | Path],
        cfg: DataConfig,
        sample_rate: int = 16000,
        seed: int | None = None,
    ) -> None:
        if cfg.segment_seconds <= 0:
            raise ValueError(f"DataConfig.segment_seconds must be positive, got {cfg.segment_seconds}")
        if not 0.0 <= cfg.reverb_prob <= 1.0:
            raise ValueError(f"DataConfig.reverb_prob must be in [0, 1], got {cfg.reverb_prob}")
        _check_range("snr_db", cfg.snr_db)
        _check_range("level_db", cfg.level_db)
        _check_range("noises_per_mix", cfg.noises_per_mix, low=0)
        self.cfg = cfg
        self.sample_rate = sample_rate
        self.seed = cfg.seed if seed is None else int(seed)
        self.length = int(round(cfg.segment_seconds * sample_rate))
        self.speech = AudioPool(speech_files, "speech", sample_rate, cache_files=1 << 20, cache_mb=cfg.cache_mb)
        self.noise = AudioPool(noise_files, "noise", sample_rate, cache_files=1 << 20, cache_mb=cfg.cache_mb)
        self.rirs = RIRSource(cfg.rir if cfg.reverb_prob > 0 else None, sample_rate)

    def __len__(self) -> int:
        return self.cfg.epoch_size

    def __iter__(self) -> Iterator[dict]:
        return (self[i] for i in range(len(self)))

    def _speech_segment(self, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """A speech signal and the start of the chosen segment in it (zeros outside)."""
        speech = self.speech.draw(rng)
        n = self.length
        if len(speech) <= n:  # shorter than the segment: from a random point, then more utterances
            parts = [np.trim_zeros(speech)]
            parts[0] = parts[0][int(rng.integers(0, max(len(parts[0]), 1))):]
            total = len(parts[0])
            while total < n:
                parts.append(np.trim_zeros(self.speech.draw(rng)))
                total += len(parts[-1])
            return np.concatenate(parts), 0
        threshold = ACTIVE_RATIO * _power(speech)
        best, best_power = 0, -1.0
        for _ in range(SEGMENT_TRIES):
            start = int(rng.integers(0, len(speech) - n + 1))
            p = _power(speech[start : start + n])
            if p >= threshold:
                return speech, start
            if p > best_power:
                best, best_power = start, p
        return speech, best

    def _noise_segment(self, rng: np.random.Generator) -> np.ndarray:
        """Sum of ``noises_per_mix`` noise segments, each at unit RMS times a random gain."""
        n = self.length
        total = np.zeros(n, dtype=np.float64)
        lo, hi = self.cfg.noises_per_mix
        for _ in range(int(rng.integers(lo, hi + 1))):
            noise = self.noise.draw(rng)
            start = int(rng.integers(0, max(len(noise) - n, 0) + 1))
            if len(noise) < n:  # loop short noises
                seg = noise[(start + np.arange(n)) % len(noise)]
            else:
                seg = noise[start : start + n]
            gain = 10.0 ** (rng.uniform(*NOISE_GAIN_DB) / 20.0)
            p = _power(seg)
            if p >= SILENCE_POWER:
                total += seg * (gain / np.sqrt(p))
        return total.astype(np.float32)

    def __getitem__(self, index: int) -> dict:
        index = operator.index(index)
        if index < 0:
            raise IndexError(f"MixingDataset index must be non-negative, got {index}")
        rng_speech, rng_room, rng_noise, rng_mix = np.random.default_rng([self.seed, index]).spawn(4)
        source, start = self._speech_segment(rng_speech)
        clean = _window(source, start, self.length)
        speech = clean
        if self.rirs.enabled and rng_room.random() < self.cfg.reverb_prob:
            speech = reverberate(source, self.rirs.draw(rng_room), start, self.length)
        noise = self._noise_segment(rng_noise)
        snr = float(rng_mix.uniform(*self.cfg.snr_db))
        noisy, scaled = mix_at_snr(speech, noise, snr)
        if _power(scaled) == 0.0:
            snr = float("inf")
        level_db = rng_mix.uniform(*self.cfg.level_db)
        ref = _power(speech)
        if ref < SILENCE_POWER:
            ref = _power(noisy)
        gain = 10.0 ** (level_db / 20.0) / np.sqrt(ref) if ref >= SILENCE_POWER else 1.0
        peak = gain * max(float(np.max(np.abs(noisy))), float(np.max(np.abs(clean))))
        if peak > PEAK_LIMIT:
            gain *= PEAK_LIMIT / peak
        return {
            "noisy": torch.from_numpy((noisy * gain).astype(np.float32)),
            "clean": torch.from_numpy((clean * gain).astype(np.float32)),
            "snr": snr,
            "index": index,
        }
