"""Composite quality measures of Hu and Loizou (IEEE TASLP 16(1), 2008) and their parts.

Implemented from the definitions of the reference MATLAB code (``composite.m``, after Pellom
and Hansen), which all frame-based parts share:

* both signals get ``eps`` (2.2e-16) added, as the reference does, so digital silence is defined;
* frames of ``round(30 ms)`` (480 samples at 16 kHz) every ``floor(frame / 4)`` samples (75 %
  overlap), ``floor(N / hop - frame / hop)`` frames, window ``0.5 * (1 - cos(2 pi n / (L + 1)))``
  for ``n = 1..L``.

Measures:

* :func:`llr`: log-likelihood ratio of LPC models (autocorrelation method, Levinson-Durbin),
  ``log(a_e R_c a_e' / a_c R_c a_c')``. LPC order 10 below 10 kHz and 16 from 10 kHz up, as in
  the reference code (so 16 at 16 kHz). Per-frame values are limited to [0, 2] as in Hu and
  Loizou's evaluation and ``comp_llr.m`` (``composite.m`` itself does not limit them; pass
  ``clip=False`` for that), then the mean of the lowest 95 % of frames is taken.
* :func:`wss`: Klatt's weighted spectral slope on 25 Gaussian-shaped critical-band filters
  (centres 50 Hz to 3.6 kHz, -30 dB cut-off), FFT of ``2 ** nextpow2(2 * frame)`` points,
  ``Kmax = 20``, ``Klocmax = 1``, weights normalised per frame; mean of the lowest 95 %. The
  nearest-peak search copies the reference exactly, including its right-hand search returning
  the band just below the peak.
* :func:`ssnr`: segmental SNR, per-frame ``10 log10(S / (N + eps) + eps)`` limited to
  [-10, 35] dB, mean over all frames (no trimming).
* :func:`composite`: ``Csig``, ``Cbak``, ``Covl`` from the published regressions, each limited
  to [1, 5]. PESQ enters the formulas; ``pesq_mode="wb"`` (default) uses wide-band MOS-LQO as
  the Python implementations behind common speech-enhancement tables (MetricGAN+, CMGAN, ...)
  do; ``"nb"`` uses narrow-band MOS-LQO; ``"nb_raw"`` inverts the P.862.1 mapping to the raw
  P.862 score that the original MATLAB code was validated with.

Identical signals give LLR 0, WSS 0, SSNR 35 dB and Csig = Cbak = Covl = 5.
"""
from __future__ import annotations

import logging
import math

import numpy as np

from .intrusive import SAMPLE_RATE, check_pair, pesq_nb, pesq_wb

log = logging.getLogger(__name__)

_EPS = float(np.finfo(np.float64).eps)  # MATLAB's eps
ALPHA = 0.95  # fraction of (lowest) frame values kept for LLR and WSS
LLR_RANGE = (0.0, 2.0)
SSNR_RANGE = (-10.0, 35.0)
WSS_KMAX = 20.0
WSS_KLOCMAX = 1.0
# Critical-band centre frequencies and bandwidths (Hz) of the reference WSS implementation.
WSS_CENTRES = (
    50.0, 120.0, 190.0, 260.0, 330.0, 400.0, 470.0, 540.0, 617.372, 703.378, 798.717, 904.128,
    1020.38, 1148.30, 1288.72, 1442.54, 1610.70, 1794.16, 1993.93, 2211.08, 2446.71, 2701.97,
    2978.04, 3276.17, 3597.63,
)
WSS_BANDWIDTHS = (
    70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 77.3724, 86.0056, 95.3398, 105.411, 116.256,
    127.914, 140.423, 153.823, 168.154, 183.457, 199.776, 217.153, 235.631, 255.255, 276.072,
    298.126, 321.465, 346.136,
)
PESQ_MODES = ("wb", "nb", "nb_raw")


def _round_half_up(x: float) -> int:
    """MATLAB ``round`` for non-negative numbers (Python's ``round`` rounds half to even)."""
    return int(math.floor(x + 0.5))


def frame_signal(x: np.ndarray, fs: int = SAMPLE_RATE) -> np.ndarray:
    """Windowed analysis frames ``(n_frames, frame_len)`` of the reference framing."""
    win = _round_half_up(30.0 * fs / 1000.0)
    hop = win // 4
    n_frames = int(math.floor(x.size / hop - win / hop))
    if n_frames < 1:
        return np.zeros((0, win))
    idx = np.arange(win)[None, :] + hop * np.arange(n_frames)[:, None]
    window = 0.5 * (1.0 - np.cos(2.0 * np.pi * np.arange(1, win + 1) / (win + 1)))
    return x[idx] * window


def _prepare(clean: np.ndarray, enhanced: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, e = check_pair(clean, enhanced)
    return c + _EPS, e + _EPS


def _trimmed_mean(values: np.ndarray, name: str) -> float:
    """Mean of the lowest ``ALPHA`` fraction of the frame values (NaN if there are none)."""
    if values.size == 0:
        log.warning("%s undefined: signal shorter than two analysis frames; returning NaN", name)
        return float("nan")
    keep = _round_half_up(values.size * ALPHA)
    return float(np.mean(np.sort(values)[:keep]))


def _autocorr(frames: np.ndarray, order: int) -> np.ndarray:
    n = frames.shape[1]
    return np.stack([np.sum(frames[:, : n - k] * frames[:, k:], axis=1) for k in range(order + 1)], axis=1)


def _lpc(r: np.ndarray) -> np.ndarray:
    """Levinson-Durbin on autocorrelations ``(F, p + 1)``: predictor polynomials ``[1, -a]``."""
    n_frames, p1 = r.shape
    order = p1 - 1
    a = np.zeros((n_frames, order))
    err = r[:, 0].copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(order):
            acc = np.sum(a[:, :i] * r[:, i:0:-1], axis=1)
            k = (r[:, i + 1] - acc) / err
            prev = a[:, :i].copy()
            a[:, :i] = prev - k[:, None] * prev[:, ::-1]
            a[:, i] = k
            err = (1.0 - k * k) * err
    return np.concatenate([np.ones((n_frames, 1)), -a], axis=1)


def llr_frames(
    clean: np.ndarray, enhanced: np.ndarray, fs: int = SAMPLE_RATE, order: int | None = None, clip: bool = True
) -> np.ndarray:
    """Per-frame log-likelihood ratios, limited to [0, 2] unless ``clip`` is false."""
    c, e = _prepare(clean, enhanced)
    if order is None:
        order = 10 if fs < 10000 else 16
    fc, fe = frame_signal(c, fs), frame_signal(e, fs)
    if fc.shape[0] == 0:
        return np.zeros(0)
    rc = _autocorr(fc, order)
    a_c = _lpc(rc)
    a_e = _lpc(_autocorr(fe, order))
    lag = np.abs(np.arange(order + 1)[:, None] - np.arange(order + 1)[None, :])
    toeplitz = rc[:, lag]  # (F, p + 1, p + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        num = np.einsum("fi,fij,fj->f", a_e, toeplitz, a_e)
        den = np.einsum("fi,fij,fj->f", a_c, toeplitz, a_c)
        values = np.log(num / den)
    bad = ~np.isfinite(values)
    if bad.any():
        log.debug("LLR: %d degenerate frame(s) set to the maximum", int(bad.sum()))
        values[bad] = LLR_RANGE[1]
    return np.clip(values, *LLR_RANGE) if clip else np.maximum(values, 0.0)


def llr(
    clean: np.ndarray, enhanced: np.ndarray, fs: int = SAMPLE_RATE, order: int | None = None, clip: bool = True
) -> float:
    """Log-likelihood ratio: mean of the lowest 95 % of frame values (0 for identical signals)."""
    return _trimmed_mean(llr_frames(clean, enhanced, fs, order, clip), "LLR")


def _critical_band_filters(fs: int, n_half: int) -> np.ndarray:
    max_freq = fs / 2.0
    bins = np.arange(n_half)
    centres = np.asarray(WSS_CENTRES)
    widths = np.asarray(WSS_BANDWIDTHS)
    f0 = np.floor(centres / max_freq * n_half)
    bw = widths / max_freq * n_half
    norm = np.log(widths[0]) - np.log(widths)
    filt = np.exp(-11.0 * ((bins[None, :] - f0[:, None]) / bw[:, None]) ** 2 + norm[:, None])
    min_factor = math.exp(-30.0 / (2.0 * 2.303))  # -30 dB point
    return filt * (filt > min_factor)


def _band_energies_db(frames: np.ndarray, filters: np.ndarray, n_fft: int) -> np.ndarray:
    spec = np.abs(np.fft.rfft(frames, n_fft, axis=1)) ** 2
    energy = spec[:, : n_fft // 2] @ filters.T
    return 10.0 * np.log10(np.maximum(energy, 1e-10))


def _nearest_peaks(energy: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """Per band, the nearest spectral peak as the reference searches for it."""
    n_frames, n_slopes = slope.shape
    rows = np.arange(n_frames)
    # nxt[:, i]: first j >= i with slope <= 0 (n_slopes if none); prv[:, i]: last j <= i with slope > 0 (-1 if none)
    nxt = np.empty((n_frames, n_slopes), dtype=np.int64)
    prv = np.empty((n_frames, n_slopes), dtype=np.int64)
    following = np.full(n_frames, n_slopes)
    for i in range(n_slopes - 1, -1, -1):
        following = np.where(slope[:, i] <= 0, i, following)
        nxt[:, i] = following
    preceding = np.full(n_frames, -1)
    for i in range(n_slopes):
        preceding = np.where(slope[:, i] > 0, i, preceding)
        prv[:, i] = preceding
    right = energy[rows[:, None], nxt - 1]  # the reference takes the band before the first fall
    left = energy[rows[:, None], prv + 1]
    return np.where(slope > 0, right, left)


def wss_frames(clean: np.ndarray, enhanced: np.ndarray, fs: int = SAMPLE_RATE) -> np.ndarray:
    """Per-frame weighted spectral slope distances."""
    c, e = _prepare(clean, enhanced)
    fc, fe = frame_signal(c, fs), frame_signal(e, fs)
    if fc.shape[0] == 0:
        return np.zeros(0)
    n_fft = 1 << int(math.ceil(math.log2(2 * fc.shape[1])))
    filters = _critical_band_filters(fs, n_fft // 2)
    weights = []
    slopes = []
    for frames in (fc, fe):
        energy = _band_energies_db(frames, filters, n_fft)
        slope = np.diff(energy, axis=1)
        peaks = _nearest_peaks(energy, slope)
        body = energy[:, :-1]
        w_max = WSS_KMAX / (WSS_KMAX + energy.max(axis=1, keepdims=True) - body)
        w_locmax = WSS_KLOCMAX / (WSS_KLOCMAX + peaks - body)
        weights.append(w_max * w_locmax)
        slopes.append(slope)
    w = 0.5 * (weights[0] + weights[1])
    return np.sum(w * (slopes[0] - slopes[1]) ** 2, axis=1) / np.sum(w, axis=1)


def wss(clean: np.ndarray, enhanced: np.ndarray, fs: int = SAMPLE_RATE) -> float:
    """Weighted spectral slope: mean of the lowest 95 % of frame values (0 for identical signals)."""
    return _trimmed_mean(wss_frames(clean, enhanced, fs), "WSS")


def ssnr_frames(clean: np.ndarray, enhanced: np.ndarray, fs: int = SAMPLE_RATE) -> np.ndarray:
    """Per-frame SNRs in dB, limited to [-10, 35]."""
    c, e = _prepare(clean, enhanced)
    fc, fe = frame_signal(c, fs), frame_signal(e, fs)
    signal = np.sum(fc**2, axis=1)
    noise = np.sum((fc - fe) ** 2, axis=1)
    return np.clip(10.0 * np.log10(signal / (noise + _EPS) + _EPS), *SSNR_RANGE)


def ssnr(clean: np.ndarray, enhanced: np.ndarray, fs: int = SAMPLE_RATE) -> float:
    """Segmental SNR in dB: mean of all frame values (35 for identical signals)."""
    values = ssnr_frames(clean, enhanced, fs)
    if values.size == 0:
        log.warning("SSNR undefined: signal shorter than two analysis frames; returning NaN")
        return float("nan")
    return float(np.mean(values))


def nb_raw_from_mos(mos_lqo: float) -> float:
    """Raw P.862 score from a P.862.1 narrow-band MOS-LQO (inverse of the published mapping)."""
    y = (mos_lqo - 0.999) / 4.0
    if not 0.0 < y < 1.0:
        return float("nan")
    return (4.6607 - math.log(1.0 / y - 1.0)) / 1.4945


def composite_from_measures(pesq: float, llr_value: float, wss_value: float, ssnr_value: float) -> dict[str, float]:
    """Csig, Cbak and Covl from precomputed PESQ, LLR, WSS and SSNR, each limited to [1, 5]."""
    csig = 3.093 - 1.029 * llr_value + 0.603 * pesq - 0.009 * wss_value
    cbak = 1.634 + 0.478 * pesq - 0.007 * wss_value + 0.063 * ssnr_value
    covl = 1.594 + 0.805 * pesq - 0.512 * llr_value - 0.007 * wss_value
    return {k: float(np.clip(v, 1.0, 5.0)) for k, v in (("csig", csig), ("cbak", cbak), ("covl", covl))}


def composite_pesq(clean: np.ndarray, enhanced: np.ndarray, pesq_mode: str = "wb") -> float:
    """The PESQ value that enters the composite formulas for ``pesq_mode``."""
    if pesq_mode == "wb":
        return pesq_wb(clean, enhanced)
    if pesq_mode == "nb":
        return pesq_nb(clean, enhanced)
    if pesq_mode == "nb_raw":
        return nb_raw_from_mos(pesq_nb(clean, enhanced))
    raise ValueError(f"pesq_mode must be one of {', '.join(PESQ_MODES)}, got {pesq_mode!r}")


def composite(
    clean: np.ndarray,
    enhanced: np.ndarray,
    fs: int = SAMPLE_RATE,
    pesq_mode: str = "wb",
    pesq_value: float | None = None,
    llr_clip: bool = True,
) -> dict[str, float]:
    """Composite measures ``{"csig", "cbak", "covl"}`` (Hu and Loizou 2008), each in [1, 5].

    ``pesq_value`` skips the PESQ computation when it is already known (it must match
    ``pesq_mode``). PESQ itself needs ``fs == 16000``. ``llr_clip=False`` leaves per-frame LLR
    values above 2 as they are, like ``composite.m`` and its common Python ports.
    """
    if pesq_value is None:
        if fs != SAMPLE_RATE:
            raise ValueError(f"composite needs {SAMPLE_RATE} Hz signals for PESQ, got {fs}")
        pesq_value = composite_pesq(clean, enhanced, pesq_mode)
    return composite_from_measures(
        pesq_value, llr(clean, enhanced, fs, clip=llr_clip), wss(clean, enhanced, fs), ssnr(clean, enhanced, fs)
    )
