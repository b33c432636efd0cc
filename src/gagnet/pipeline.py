"""Multichannel audio at any rate through per-channel block processors at the model's rate.

Shared by ``gagnet enhance`` (files, block by block) and ``gagnet stream`` (stdin to stdout):
resample to the model rate with ``soxr.ResampleStream``, one processor per channel, resample
back, never emit more samples than have come in, and end with exactly as many as went in.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import soxr

from .attenuation import InputFloor
from .streaming import zero_nonfinite


class ChannelPipeline:
    """float32 ``(frames, channels)`` blocks in -> enhanced ``(frames, channels)`` blocks out.

    ``make_processor()`` is called once per channel and returns an object with
    ``process(x) -> ready`` and ``flush() -> rest`` (1-D float32) whose outputs add up to its
    input's length, aligned with it (e.g. :class:`~gagnet.streaming.DelayCompensated`).
    After ``push(..., last=True)`` the outputs add up to exactly the frames pushed. With
    ``floor`` > 0 each output sample is ``(1 - floor) * enhanced + floor * input``
    (see :mod:`gagnet.attenuation`). NaN/Inf input samples are taken as 0 (one would otherwise
    fill the network's state, seconds of output): :attr:`nonfinite` counts them.
    """

    def __init__(self, make_processor: Callable[[], Any], rate: int, channels: int, model_rate: int = 16000,
                 floor: float = 0.0) -> None:
        self.channels = int(channels)
        self.procs = [make_processor() for _ in range(self.channels)]
        same = int(rate) == int(model_rate)
        kw = dict(num_channels=self.channels, dtype="float32", quality="HQ")
        self.down = None if same else soxr.ResampleStream(int(rate), int(model_rate), **kw)
        self.up = None if same else soxr.ResampleStream(int(model_rate), int(rate), **kw)
        # processors may return different amounts per call: each channel waits for the slowest
        self.pending = [np.zeros(0, np.float32) for _ in range(self.channels)]
        self.n_in = 0
        self.n_out = 0
        self.done = False
        self.floor = InputFloor(floor)
        self.nonfinite = 0

    def _enhance(self, x: np.ndarray, last: bool) -> np.ndarray:
        for c, proc in enumerate(self.procs):
            parts = [proc.process(np.ascontiguousarray(x[:, c]))] if x.shape[0] else []
            if last:
                parts.append(proc.flush())
            if parts:
                self.pending[c] = np.concatenate([self.pending[c], *(np.asarray(a, np.float32).ravel() for a in parts)])
        k = min(p.shape[0] for p in self.pending)
        if last and any(p.shape[0] != k for p in self.pending):
            raise RuntimeError("block processor returned different lengths for different channels")
        ready = np.stack([p[:k] for p in self.pending], axis=1) if k else np.zeros((0, self.channels), np.float32)
        self.pending = [p[k:] for p in self.pending]
        return ready

    def push(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if self.done:
            raise RuntimeError("pipeline already finished")
        block = np.ascontiguousarray(block, dtype=np.float32).reshape(-1, self.channels)
        block, n = zero_nonfinite(block)
        self.nonfinite += n
        self.n_in += block.shape[0]
        self.floor.hold(block)
        x = block if self.down is None else self.down.resample_chunk(block, last=last)
        y = self._enhance(np.asarray(x, np.float32).reshape(-1, self.channels), last)
        if self.up is not None and (y.shape[0] or last):
            y = np.asarray(self.up.resample_chunk(y, last=last), np.float32).reshape(-1, self.channels)
        y = y[: max(0, self.n_in - self.n_out)]  # never ahead of the input
        if last:  # the end is padded (or was trimmed above) to the exact length
            short = self.n_in - self.n_out - y.shape[0]
            if short > 0:
                y = np.concatenate([y, np.zeros((short, self.channels), np.float32)])
            self.done = True
        self.n_out += y.shape[0]
        return self.floor.apply(y)


__all__ = ["ChannelPipeline"]
