"""Room impulse responses: simulated shoebox rooms or measured files, and reverberation.

:func:`simulate_rir` runs the image source method of pyroomacoustics up to reflection
order ``max_order`` (about 10 ms per RIR) and, when the room needs more orders to reach its
RT60, replaces the part past the order's complete radius by Gaussian noise decaying by
60 dB per RT60, matched in level to the images just before it.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .audio import AudioError, list_audio, load_audio
from .pool import AudioPool

logger = logging.getLogger(__name__)

#: Room floor size (m, both sides), height (m) and RT60 (s) ranges of simulated rooms.
ROOM_SIDE_M = (3.0, 10.0)
ROOM_HEIGHT_M = (2.5, 4.0)
RT60_S = (0.2, 0.8)
#: Distance of source and microphone from every wall, and from each other (m).
WALL_MARGIN_M = 0.5
MIN_DISTANCE_M = 0.5


def _fft_convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Full linear convolution ``(len(a) + len(b) - 1,)`` in float64."""
    n = len(a) + len(b) - 1
    nfft = 1 << (n - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(a, nfft) * np.fft.rfft(b, nfft), nfft)[:n]


def _late_tail(
    ism: np.ndarray, start: int, end: int, rt60: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """``ism`` faded out at ``start`` and continued by a decaying noise tail up to ``end``."""
    win = int(0.02 * sample_rate)
    fade = int(0.005 * sample_rate)
    level = np.sqrt(np.mean(ism[max(start - win, 0) : start] ** 2))
    out = np.zeros(max(end, start + fade))
    head = ism[: len(out)]
    out[: len(head)] = head
    t = np.arange(start - fade, len(out))
    decay = 10.0 ** (-3.0 * (t - (start - win / 2)) / (rt60 * sample_rate))
    tail = rng.standard_normal(len(t)) * level * decay
    ramp = np.sin(0.5 * np.pi * np.arange(fade) / fade)
    tail[:fade] *= ramp
    out[start - fade : start] *= ramp[::-1]
    out[start:] = 0.0
    out[start - fade :] += tail
    return out


def simulate_rir(rng: np.random.Generator, sample_rate: int = 16000, max_order: int = 20) -> np.ndarray:
    """A random shoebox-room impulse response ``(L,)`` float32, ``L`` about RT60 seconds.

    Floor sides uniform in :data:`ROOM_SIDE_M`, height in :data:`ROOM_HEIGHT_M`, RT60 in
    :data:`RT60_S`; source and microphone uniform in the room, away from the walls and
    each other. Deterministic for a given ``rng`` state.
    """
    import pyroomacoustics as pra

    c = float(pra.constants.get("c"))
    for _ in range(100):
        dims = np.array([rng.uniform(*ROOM_SIDE_M), rng.uniform(*ROOM_SIDE_M), rng.uniform(*ROOM_HEIGHT_M)])
        rt60 = float(rng.uniform(*RT60_S))
        lo, hi = np.full(3, WALL_MARGIN_M), dims - WALL_MARGIN_M
        src, mic = rng.uniform(lo, hi), rng.uniform(lo, hi)
        dist = float(np.linalg.norm(src - mic))
        if dist < MIN_DISTANCE_M:
            continue
        try:
            absorption, full_order = pra.inverse_sabine(rt60, dims, c=c)
        except ValueError:
            continue
        break
    else:  # pragma: no cover - the ranges above always admit a room
        raise RuntimeError("could not draw a valid room")
    room = pra.ShoeBox(
        dims, fs=sample_rate, materials=pra.Material(absorption), max_order=min(full_order, max_order)
    )
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    ism = np.asarray(room.rir[0][0], dtype=np.float64)
    direct = int(np.argmax(np.abs(ism)))
    end = direct + int(rt60 * sample_rate)
    if full_order > max_order:
        # every image within this radius has order <= max_order, so the ISM part is complete up to it
        radius = max((max_order - 3) / float(np.sum(1.0 / dims)), dist + 3.0)
        start = min(direct + int((radius - dist) / c * sample_rate), len(ism))
        ism = _late_tail(ism, start, end, rt60, sample_rate, rng)
    else:
        ism = ism[: max(end, direct + 1)]
    return ism.astype(np.float32)


def reverberate(source: np.ndarray, rir: np.ndarray, start: int, length: int) -> np.ndarray:
    """``source[start:start + length]`` (zeros outside) convolved with ``rir``: ``(length,)``.

    The RIR is scaled to a unit direct path (its largest sample) and the output is aligned
    to it, so the dry segment is the direct-path part of the result. Earlier samples of
    ``source`` contribute their reverberant tail.
    """
    rir = np.asarray(rir, dtype=np.float64)
    direct = int(np.argmax(np.abs(rir)))
    if rir[direct] == 0.0:
        raise AudioError("impulse response is all zeros")
    rir = rir / rir[direct]
    ctx = len(rir)
    lo, hi = max(start - ctx, 0), min(start + length, len(source))
    seg = np.zeros(length + ctx)
    if hi > lo:
        seg[lo - (start - ctx) : hi - (start - ctx)] = source[lo:hi]
    wet = _fft_convolve(seg, rir)
    return wet[ctx + direct : ctx + direct + length].astype(np.float32)


def _load_rir(path: Path, sample_rate: int) -> np.ndarray:
    """First channel of an impulse-response file; all-zero files are unusable."""
    rir = load_audio(path, sample_rate, channel=0)
    if not np.any(rir):
        raise AudioError(f"{path}: impulse response is all zeros")
    return rir


class RIRSource:
    """Impulse responses from ``spec``: None (none), ``"simulate"`` or a folder / file list.

    :meth:`draw` returns ``(L,)`` float32 or None when ``spec`` is None. Files are decoded
    through an :class:`~gagnet.data.pool.AudioPool` (first channel, resampled).
    """

    def __init__(self, spec: str | Path | Sequence[str | Path] | None, sample_rate: int = 16000) -> None:
        self.spec = spec
        self.sample_rate = sample_rate
        self.pool: AudioPool | None = None
        if spec is not None and spec != "simulate":
            files = list_audio(spec)
            loader = functools.partial(_load_rir, sample_rate=sample_rate)
            self.pool = AudioPool(files, "impulse response", sample_rate, loader)

    @property
    def enabled(self) -> bool:
        return self.spec is not None

    def draw(self, rng: np.random.Generator) -> np.ndarray | None:
        if self.spec is None:
            return None
        if self.pool is None:
            return simulate_rir(rng, self.sample_rate)
        return np.asarray(self.pool.draw(rng))
