"""Intrusive (reference-based) metrics on 16 kHz mono float signals of equal length.

* :func:`pesq_wb`, :func:`pesq_nb`: ITU-T P.862.2 / P.862.1 MOS-LQO from the ``pesq`` package.
  With ``pesq==0.0.4`` identical signals give 4.643888 (WB) and 4.548638 (NB), the MOS-LQO
  mappings of the raw P.862 maximum 4.5. When PESQ cannot be computed (no utterances found,
  signal shorter than 1/4 s, a silent degraded signal) the result is NaN with a warning.
* :func:`stoi`, :func:`estoi`: short-time objective intelligibility (``pystoi``), in percent.
  NaN with a warning when the clean signal has too few non-silent frames.
* :func:`si_sdr`: scale-invariant SDR in dB of zero-mean signals. The residual energy is floored
  at ``eps`` times the target energy, so identical signals give 10*log10(1/eps) = 156.5 dB
  rather than infinity; a silent (or constant) estimate gives NaN with a warning.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
_EPS = float(np.finfo(np.float64).eps)


def check_pair(clean: np.ndarray, enhanced: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return both signals as 1-D float64 arrays; raise ``ValueError`` unless they are
    finite, mono, non-empty and of equal length."""
    c = np.asarray(clean, dtype=np.float64)
    e = np.asarray(enhanced, dtype=np.float64)
    if c.ndim != 1 or e.ndim != 1:
        raise ValueError(f"expected 1-D mono signals, got shapes {c.shape} and {e.shape}")
    if c.size == 0 or e.size == 0:
        raise ValueError("empty signal")
    if c.size != e.size:
        raise ValueError(f"signals differ in length: {c.size} vs {e.size} samples")
    if not (np.isfinite(c).all() and np.isfinite(e).all()):
        raise ValueError("signal contains NaN or Inf")
    return c, e


def _pesq(clean: np.ndarray, enhanced: np.ndarray, mode: str) -> float:
    import pesq

    c, e = check_pair(clean, enhanced)
    try:
        return float(pesq.pesq(SAMPLE_RATE, c, e, mode))
    except (pesq.PesqError, ValueError) as err:
        # pesq raises PesqError subclasses (NoUtterancesError, BufferTooShortError) and a
        # ValueError when the degraded signal is all zeros.
        log.warning("PESQ-%s undefined (%s: %s); returning NaN", mode.upper(), type(err).__name__, err)
        return float("nan")


def pesq_wb(clean: np.ndarray, enhanced: np.ndarray) -> float:
    """Wide-band PESQ (P.862.2 MOS-LQO, range about 1.04 to 4.64)."""
    return _pesq(clean, enhanced, "wb")


def pesq_nb(clean: np.ndarray, enhanced: np.ndarray) -> float:
    """Narrow-band PESQ (P.862.1 MOS-LQO, range about 1.02 to 4.55)."""
    return _pesq(clean, enhanced, "nb")


def _stoi(clean: np.ndarray, enhanced: np.ndarray, extended: bool) -> float:
    from pystoi import stoi as _pystoi

    c, e = check_pair(clean, enhanced)
    name = "ESTOI" if extended else "STOI"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(_pystoi(c, e, SAMPLE_RATE, extended=extended))
    if any("Not enough STFT frames" in str(w.message) for w in caught) or not np.isfinite(value):
        # pystoi returns a placeholder 1e-5 when too few non-silent frames remain.
        log.warning("%s undefined (too few non-silent frames in the clean signal); returning NaN", name)
        return float("nan")
    return 100.0 * value


def stoi(clean: np.ndarray, enhanced: np.ndarray) -> float:
    """STOI (Taal et al. 2011) in percent."""
    return _stoi(clean, enhanced, extended=False)


def estoi(clean: np.ndarray, enhanced: np.ndarray) -> float:
    """Extended STOI (Jensen and Taal 2016) in percent."""
    return _stoi(clean, enhanced, extended=True)


def si_sdr(clean: np.ndarray, enhanced: np.ndarray) -> float:
    """Scale-invariant SDR (Le Roux et al. 2019) in dB, both signals made zero-mean first."""
    c, e = check_pair(clean, enhanced)
    c = c - c.mean()
    e = e - e.mean()
    cc = float(np.dot(c, c))
    if cc == 0.0:
        raise ValueError("SI-SDR undefined: the clean reference is silent or constant")
    target = (np.dot(c, e) / cc) * c
    t_energy = float(np.dot(target, target))
    if t_energy == 0.0 or float(np.dot(e, e)) == 0.0:
        log.warning("SI-SDR undefined (silent, constant or orthogonal estimate); returning NaN")
        return float("nan")
    residual = e - target
    r_energy = max(float(np.dot(residual, residual)), _EPS * t_energy)
    return 10.0 * float(np.log10(t_energy / r_energy))
