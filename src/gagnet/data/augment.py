"""Batch-wide augmentations of the batch mixer: speakers, microphones and channels.

Every function takes a batch of rows ``(R, L)`` float32 and per-row parameters ``(R,)`` and
works with tensor operations only, on whatever device the batch is on. The mixer draws the
parameters from its counter-based hash, so an augmented mixture is still a pure function of
(seed, index).

* :func:`resample_rows`: read each row at its own rate (speed perturbation: tempo and pitch
  together), by windowed-sinc interpolation, low-passed when the rate exceeds 1.
* :func:`time_stretch_rows`: phase-vocoder time stretch, tempo only.
* :func:`pitch_shift_rows`: pitch by a factor, tempo kept (stretch, then resample).
* :func:`formant_warp_rows`: the spectral envelope (cepstrally smoothed) warped along
  frequency by a factor, the harmonics left where they are: another vocal-tract length.
* :func:`channel_response`: zero-phase magnitude responses (EQ bands, tilt, band limits) and
  :func:`apply_response`, which filters rows with them in the frequency domain.
* :func:`gain_jumps`: piecewise-constant gain curves with short ramps.
"""
from __future__ import annotations

import math

import torch

#: Taps on each side of the windowed-sinc interpolator.
SINC_HALF_TAPS = 8
#: Samples interpolated per chunk (bounds the memory of the tap gather).
RESAMPLE_CHUNK = 16384
#: STFT of the phase vocoder and of the formant warp (32 ms window, 8 ms hop at 16 kHz).
STFT_N, STFT_HOP = 512, 128
#: Cepstral coefficients kept for the spectral envelope (quefrency below 1.5 ms at 16 kHz).
ENVELOPE_CEPSTRA = 24
#: Largest change of the envelope warp (dB), so that near-empty bins are not blown up.
WARP_LIMIT_DB = 20.0


def resample_rows(x: torch.Tensor, rate: torch.Tensor, length: int) -> torch.Tensor:
    """``(R, length)``: row ``r`` read at positions ``t * rate[r]`` of ``x[r]`` (zeros past
    its end), by a Hann-windowed sinc of :data:`SINC_HALF_TAPS` taps a side whose cut-off is
    ``min(1, 1 / rate)`` of Nyquist, so a faster reading does not alias."""
    rows, n = x.shape
    k = torch.arange(-SINC_HALF_TAPS + 1, SINC_HALF_TAPS + 1, device=x.device)
    cut = torch.clamp(1.0 / rate.double(), max=1.0)[:, None, None]
    padded = torch.nn.functional.pad(x, (SINC_HALF_TAPS, SINC_HALF_TAPS + 1))
    out = []
    for start in range(0, length, RESAMPLE_CHUNK):
        t = torch.arange(start, min(start + RESAMPLE_CHUNK, length), device=x.device, dtype=torch.float64)
        pos = t[None, :] * rate.double()[:, None]  # (R, C)
        base = torch.floor(pos)
        frac = (pos - base)[..., None]
        d = k[None, None, :] - frac  # distance of each tap from the reading point
        w = cut * torch.sinc(cut * d) * (0.5 + 0.5 * torch.cos(math.pi * d / SINC_HALF_TAPS))
        idx = (base.long()[..., None] + k[None, None, :] + SINC_HALF_TAPS).clamp(0, padded.shape[1] - 1)
        taps = torch.gather(padded, 1, idx.reshape(rows, -1)).reshape(idx.shape)
        out.append((taps.double() * w).sum(-1).float())
    return torch.cat(out, 1)


def _stft(x: torch.Tensor) -> torch.Tensor:
    window = torch.hann_window(STFT_N, device=x.device)
    return torch.stft(x, STFT_N, STFT_HOP, window=window, return_complex=True)


def _istft(spec: torch.Tensor, length: int) -> torch.Tensor:
    window = torch.hann_window(STFT_N, device=spec.device)
    return torch.istft(spec, STFT_N, STFT_HOP, window=window, length=length)


def time_stretch_rows(x: torch.Tensor, rate: torch.Tensor, length: int) -> torch.Tensor:
    """``(R, length)``: each row played ``rate[r]`` times as fast, pitch kept (phase vocoder:
    magnitudes interpolated between frames, phases advanced by each bin's measured frequency)."""
    spec = _stft(x)  # (R, F, T)
    rows, bins, frames = spec.shape
    out_frames = length // STFT_HOP + 1
    pos = torch.arange(out_frames, device=x.device, dtype=torch.float64)[None, :] * rate.double()[:, None]
    lo = pos.floor().long().clamp(0, frames - 2)
    frac = (pos - lo.double()).clamp(0, 1).float()[:, None, :]
    gather = lambda i: torch.gather(spec, 2, i[:, None, :].expand(rows, bins, -1))  # noqa: E731
    a, b = gather(lo), gather(lo + 1)
    mag = (1 - frac) * a.abs() + frac * b.abs()
    omega = 2 * math.pi * STFT_HOP * torch.arange(bins, device=x.device)[None, :, None] / STFT_N
    step = torch.angle(b) - torch.angle(a) - omega
    step = step - 2 * math.pi * torch.round(step / (2 * math.pi)) + omega  # phase advance per hop
    phase = torch.angle(spec[:, :, :1]) + torch.cumsum(torch.cat([torch.zeros_like(step[..., :1]), step[..., :-1]], -1), -1)
    return _istft(torch.polar(mag, phase), length)


def pitch_shift_rows(x: torch.Tensor, factor: torch.Tensor, length: int, max_factor: float | None = None
                     ) -> torch.Tensor:
    """``(R, length)``: f0 (and every frequency) times ``factor[r]``, tempo kept: stretched to
    ``factor`` times the duration, then read ``factor`` times as fast. ``x`` must hold at
    least ``length`` samples. ``max_factor`` bounds ``factor`` (given, it spares reading the
    factors back from the device, and keeps the FFT shapes the same from batch to batch)."""
    top = float(factor.max()) if max_factor is None else max_factor
    long = int(math.ceil(length * top)) + STFT_N
    stretched = time_stretch_rows(x, 1.0 / factor, long)
    return resample_rows(stretched, factor, length)


def formant_warp_rows(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``x`` with its spectral envelope moved up in frequency by ``factor[r]`` (formants at
    ``factor`` times their frequency, as a shorter vocal tract gives) and its fine structure
    (harmonics, f0) kept. The envelope is the cepstrally smoothed log magnitude of each frame."""
    spec = _stft(x)
    rows, bins, frames = spec.shape
    logmag = torch.log(spec.abs().clamp_min(1e-7))
    cep = torch.fft.irfft(logmag, n=2 * (bins - 1), dim=1)
    lifter = torch.zeros(cep.shape[1], device=x.device)
    lifter[:ENVELOPE_CEPSTRA] = 1.0
    lifter[-ENVELOPE_CEPSTRA + 1:] = 1.0
    env = torch.fft.rfft(cep * lifter[None, :, None], dim=1).real  # (R, F, T) log envelope
    src = torch.arange(bins, device=x.device, dtype=torch.float64)[None, :] / factor.double()[:, None]  # (R, F)
    lo = src.floor().long().clamp(0, bins - 2)
    frac = (src - lo.double()).clamp(0, 1).float()[:, :, None]
    take = lambda i: torch.gather(env, 1, i[:, :, None].expand(rows, bins, frames))  # noqa: E731
    warped = (1 - frac) * take(lo) + frac * take(lo + 1)
    limit = WARP_LIMIT_DB / 20.0 * math.log(10.0)
    gain = torch.exp((warped - env).clamp(-limit, limit))
    return _istft(spec * gain, x.shape[1])


def channel_response(freqs: torch.Tensor, centres: torch.Tensor, gains_db: torch.Tensor, widths: torch.Tensor,
                     tilt_db: torch.Tensor, highpass: torch.Tensor, lowpass: torch.Tensor) -> torch.Tensor:
    """Magnitude responses ``(R, F)`` at ``freqs`` ``(F,)`` Hz: bell bands (``centres``,
    ``gains_db``, ``widths`` in octaves, all ``(R, M)``; a band of 0 dB is no band), a tilt of
    ``tilt_db`` ``(R,)`` dB per octave about 1 kHz (held beyond 62.5 Hz and 8 kHz), and
    raised-cosine band edges, an octave wide below ``highpass`` and 10 % of ``lowpass`` above
    it (``(R,)`` Hz; 0 and inf for none)."""
    octaves = torch.log2(freqs.clamp_min(1.0))[None, None, :] - torch.log2(centres)[..., None]
    db = (gains_db[..., None] * torch.exp(-0.5 * (octaves / widths[..., None]) ** 2)).sum(1)
    db = db + tilt_db[:, None] * torch.log2(freqs.clamp(62.5, 8000.0) / 1000.0)[None, :]
    h = 10.0 ** (db / 20.0)
    hp = torch.log2(freqs.clamp_min(1.0))[None, :] - torch.log2(highpass.clamp_min(1e-3))[:, None]  # octaves above
    h = h * torch.where(hp >= 0, 1.0, torch.where(hp <= -1, 0.0, 0.5 + 0.5 * torch.cos(math.pi * hp)))
    lp = (freqs[None, :] - lowpass[:, None]) / (0.1 * lowpass[:, None])
    h = h * torch.where(lp <= 0, 1.0, torch.where(lp >= 1, 0.0, 0.5 + 0.5 * torch.cos(math.pi * lp)))
    return h


def apply_response(x: torch.Tensor, response_fn, sample_rate: int, pad: int = 4096) -> torch.Tensor:
    """Rows of ``x`` filtered with zero phase by ``response_fn(freqs) -> (R, F)``, in the
    frequency domain (zero-padded by ``pad`` so the short responses do not wrap around)."""
    n = x.shape[1] + pad
    nfft = 1 << (n - 1).bit_length()
    freqs = torch.fft.rfftfreq(nfft, 1.0 / sample_rate, device=x.device)
    y = torch.fft.irfft(torch.fft.rfft(x, nfft) * response_fn(freqs).to(x.dtype), nfft)
    return y[:, : x.shape[1]]


def gain_jumps(u_times: torch.Tensor, u_gains: torch.Tensor, count: torch.Tensor, length: int, max_db: float,
               sample_rate: int, ramp_ms: float = 10.0) -> torch.Tensor:
    """Gain curves ``(R, length)``: ``count[r]`` (1 to M) jumps at instants ``u_times``
    ``(R, M)`` (fractions of the segment) to levels ``u_gains`` (uniform in [0, 1) mapped to
    ±``max_db``), each reached over a ``ramp_ms`` linear ramp; the curve starts at 0 dB."""
    t = torch.arange(length, device=u_times.device, dtype=torch.float64)[None, None, :]
    at = (u_times.double() * length)[..., None]
    ramp = ramp_ms * 1e-3 * sample_rate
    used = torch.arange(u_times.shape[1], device=u_times.device)[None, :] < count[:, None]
    order = torch.argsort(torch.where(used, u_times.double(), 2.0), dim=1)
    levels = torch.where(used, (2 * u_gains.double() - 1) * max_db, 0.0)
    at, levels = torch.gather(at[..., 0], 1, order)[..., None], torch.gather(levels, 1, order)
    prev = torch.cat([torch.zeros_like(levels[:, :1]), levels[:, :-1]], 1)
    steps = torch.where(torch.gather(used, 1, order), levels - prev, 0.0)[..., None]
    db = (steps * ((t - at) / ramp).clamp(0, 1)).sum(1)
    return (10.0 ** (db / 20.0)).float()
