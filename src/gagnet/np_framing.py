"""The streaming signal path (framing, STFT, compression, iSTFT, overlap-add) in numpy.

:class:`~gagnet.streaming.StreamingEnhancer` runs its signal path in torch, about twenty small
torch ops per 10 ms hop: some 0.6 ms on one thread, as much as a quarter of a fast ONNX step.
:class:`NumpyFraming` is the same path, with the same buffering, output and ``latency_samples``,
in numpy (a few microseconds per op). Mix it in before ``StreamingEnhancer`` in a class whose
network takes and returns numpy arrays through :meth:`NumpyFraming._estimate_np`, as
:class:`~gagnet.export.OnnxStreamingEnhancer` does.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """(k, n) frames -> ((k - 1) * hop + n,) their sum, frame i starting at ``i * hop``."""
    k, n = frames.shape
    out = np.zeros((k - 1) * hop + n, dtype=frames.dtype)
    if n % hop == 0:  # n / hop strided adds instead of k frame adds
        for j in range(n // hop):
            out[j * hop : j * hop + k * hop] += frames[:, j * hop : (j + 1) * hop].reshape(-1)
    else:
        for i in range(k):
            out[i * hop : i * hop + n] += frames[i]
    return out


class NumpyFraming:
    """``process`` / ``flush`` / ``reset`` of :class:`~gagnet.streaming.StreamingEnhancer` in numpy.

    Needs the attributes that ``StreamingEnhancer._setup`` sets (``cfg``, ``_win``, ``_env``,
    ``_delay_frames``, ``latency_samples``), ``_reset_net()``, and ``_estimate_np``.
    """

    def _estimate_np(self, spec: np.ndarray) -> np.ndarray:
        """Compressed noisy (1, 2, F, k) float32 -> last-stage estimate, same shape, state carried."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget everything: a new stream starts."""
        cfg = self.cfg
        self._reset_net()
        self._win_np = self._win.detach().cpu().numpy().astype(np.float32)
        self._env_np = None if self._env is None else self._env.detach().cpu().numpy().astype(np.float32)
        self._inbuf = np.zeros(cfg.win_length - cfg.hop_length, np.float32)  # causal left pad
        self._ola = np.zeros(cfg.n_fft - cfg.hop_length, np.float32)
        self._ready: list[np.ndarray] = [np.zeros(self.latency_samples, np.float32)]
        self._ready_len = self.latency_samples
        self._skip = cfg.win_length - cfg.hop_length + self._delay_frames * cfg.hop_length
        self._seen = 0
        self._given = 0
        self._frames = 0

    def _run_frames(self, n_frames: int) -> None:
        """Analyse ``n_frames`` frames from the input buffer, enhance and overlap-add them."""
        cfg = self.cfg
        hop, n_fft, c = cfg.hop_length, cfg.n_fft, cfg.compress
        if n_frames == 1:  # the usual streaming case: one hop in, one frame (fewer, cheaper ops)
            frames = self._inbuf[None, :n_fft]
        else:
            frames = self._inbuf[np.arange(n_frames)[:, None] * hop + np.arange(n_fft)]  # (k, n_fft)
        self._inbuf = self._inbuf[n_frames * hop :]
        spec = np.fft.rfft(frames * self._win_np, axis=-1)  # (k, F)
        mag = np.abs(spec)
        spec = spec * (mag**c / np.maximum(mag, 1e-12))
        x = np.empty((1, 2, spec.shape[1], n_frames), np.float32)
        x[0, 0], x[0, 1] = spec.real.T, spec.imag.T
        est = self._estimate_np(x)
        z = (est[0, 0] + 1j * est[0, 1].astype(np.float64)).T  # (k, F)
        mag = np.abs(z)
        z = z * (mag ** (1.0 / c) / np.maximum(mag, 1e-12))
        out = (np.fft.irfft(z, n=n_fft, axis=-1) * self._win_np).astype(np.float32)  # (k, n_fft)
        ola = out[0] if n_frames == 1 else overlap_add(out, hop)
        ola[: self._ola.size] += self._ola
        done, self._ola = ola[: n_frames * hop], ola[n_frames * hop :].copy()
        if self._env_np is not None:
            done = done / (self._env_np if n_frames == 1 else np.tile(self._env_np, n_frames))
        else:  # general window/hop: divide by the summed squared windows
            env = overlap_add(np.tile(self._win_np * self._win_np, (n_frames + 2, 1)), hop)
            done = done / np.maximum(env[n_fft - hop : n_fft - hop + n_frames * hop], 1e-8)
        if self._skip:
            cut = min(self._skip, done.size)
            done, self._skip = done[cut:], self._skip - cut
        self._ready.append(done)
        self._ready_len += done.size
        self._frames += n_frames

    def _take(self, n: int) -> np.ndarray:
        ready = np.concatenate(self._ready) if len(self._ready) > 1 else self._ready[0]
        out, rest = ready[:n], ready[n:]
        self._ready, self._ready_len = [rest], rest.size
        return out

    def process(self, chunk: np.ndarray | Tensor) -> np.ndarray | Tensor:
        """Feed samples; get the same number of (delayed) enhanced samples back."""
        is_np = not isinstance(chunk, Tensor)
        x = np.asarray(chunk if is_np else chunk.detach().cpu().numpy(), dtype=np.float32)
        x = self._finite(x)  # StreamingEnhancer's: NaN/Inf as 0, counted
        if x.ndim != 1:
            raise ValueError(f"expected a 1-D chunk of samples, got shape {tuple(x.shape)}")
        self._inbuf = np.concatenate((self._inbuf, x))
        self._seen += x.size
        avail = (self._inbuf.size - self.cfg.n_fft) // self.cfg.hop_length + 1
        if avail > 0:
            self._run_frames(avail)
        out = self._take(x.size)
        self._given += out.size
        return out.copy() if is_np else torch.from_numpy(out.copy())

    def flush(self, as_numpy: bool = True) -> np.ndarray | Tensor:
        """Finish the stream: the remaining ``latency_samples`` samples of output."""
        cfg = self.cfg
        need = cfg.frames(self._seen) + self._delay_frames - self._frames
        if need > 0:
            want = (need - 1) * cfg.hop_length + cfg.n_fft
            self._inbuf = np.concatenate((self._inbuf, np.zeros(max(0, want - self._inbuf.size), np.float32)))
            self._run_frames(need)
        out = self._take(self._seen + self.latency_samples - self._given).copy()
        self._given += out.size
        return out if as_numpy else torch.from_numpy(out)
