"""Speech-enhancement metrics and :func:`score`, which computes any subset of them for a pair.

Metric names, in report order (:data:`METRICS`), with the value for identical signals:

* ``pesq_wb``: wide-band PESQ, P.862.2 MOS-LQO (4.644 with pesq 0.0.4)
* ``pesq_nb``: narrow-band PESQ, P.862.1 MOS-LQO (4.549)
* ``stoi``, ``estoi``: STOI and extended STOI in percent (100)
* ``si_sdr``: scale-invariant SDR in dB (capped at 156.5 dB)
* ``ssnr``: segmental SNR in dB, frames limited to [-10, 35] (35)
* ``csig``, ``cbak``, ``covl``: Hu and Loizou composite measures with WB-PESQ inside, [1, 5] (5)
* ``dnsmos_sig``, ``dnsmos_bak``, ``dnsmos_ovrl``, ``dnsmos_p808``: DNSMOS of the enhanced
  signal alone (non-intrusive)

Undefined values: a clean reference that is silent or constant makes :func:`score` raise
``ValueError`` (unless only the non-intrusive DNSMOS metrics are asked for). A metric that is
undefined for a particular estimate (e.g. PESQ of an all-zero signal, SI-SDR of a constant
one) is NaN with a logged warning; summaries skip NaN and report how many values were valid.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from . import composite as _composite  # modules stay importable as metrics.composite / metrics.dnsmos
from . import dnsmos as _dnsmos
from . import intrusive as _intrusive
from .composite import llr, ssnr, wss
from .intrusive import SAMPLE_RATE, estoi, pesq_nb, pesq_wb, si_sdr, stoi

log = logging.getLogger(__name__)

METRICS: tuple[str, ...] = (
    "pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "ssnr", "csig", "cbak", "covl",
    "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808",
)
COMPOSITE = ("csig", "cbak", "covl")
DNSMOS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")
NON_INTRUSIVE = frozenset(DNSMOS)

__all__ = [
    "METRICS", "SAMPLE_RATE", "estoi", "llr", "parse_metrics", "pesq_nb",
    "pesq_wb", "resample", "score", "si_sdr", "ssnr", "stoi", "wss",
]


def parse_metrics(metrics: Iterable[str] | str | None) -> list[str]:
    """Validate metric names (a list or a comma-separated string) and return them in report order."""
    if metrics is None:
        return list(METRICS)
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else [str(m).strip() for m in metrics]
    names = [m for m in names if m]
    unknown = sorted(set(names) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s): {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    if not names:
        raise ValueError("no metrics selected")
    return [m for m in METRICS if m in names]


def resample(x: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resample with soxr (VHQ) to ``target`` Hz; returns float64."""
    x = np.asarray(x, dtype=np.float64)
    if rate == target:
        return x
    import soxr

    return np.asarray(soxr.resample(x, rate, target, quality="VHQ"), dtype=np.float64)


def score(
    clean: np.ndarray,
    enhanced: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    metrics: Iterable[str] | str | None = None,
    enhanced_rate: int | None = None,
) -> dict[str, float]:
    """Metrics of ``enhanced`` against ``clean``: ``{name: value}`` in :data:`METRICS` order.

    Both signals are resampled to 16 kHz (``enhanced_rate`` defaults to ``sample_rate``) and cut
    to the shorter length. Raises ``ValueError`` for bad input and for a silent/constant clean
    reference when an intrusive metric is requested; undefined metrics are NaN (see module doc).
    """
    names = parse_metrics(metrics)
    c = np.asarray(clean, dtype=np.float64)
    e = np.asarray(enhanced, dtype=np.float64)
    if c.ndim != 1 or e.ndim != 1:
        raise ValueError(f"expected 1-D mono signals, got shapes {c.shape} and {e.shape}")
    if not (np.isfinite(c).all() and np.isfinite(e).all()):
        raise ValueError("signal contains NaN or Inf")
    c = resample(c, sample_rate)
    e = resample(e, enhanced_rate or sample_rate)
    n = min(c.size, e.size)
    if n == 0:
        raise ValueError("empty signal")
    if c.size != e.size:
        log.debug("trimming to %d samples (clean %d, enhanced %d)", n, c.size, e.size)
        c, e = c[:n], e[:n]
    intrusive = [m for m in names if m not in NON_INTRUSIVE]
    if intrusive and np.ptp(c) == 0.0:
        raise ValueError("clean reference is silent or constant: intrusive metrics are undefined")

    cache: dict[str, Any] = {}

    def get(key: str, fn: Callable[[], Any]) -> Any:
        if key not in cache:
            cache[key] = fn()
        return cache[key]

    simple = {
        "pesq_wb": lambda: _intrusive.pesq_wb(c, e),
        "pesq_nb": lambda: _intrusive.pesq_nb(c, e),
        "stoi": lambda: _intrusive.stoi(c, e),
        "estoi": lambda: _intrusive.estoi(c, e),
        "si_sdr": lambda: _intrusive.si_sdr(c, e),
        "ssnr": lambda: _composite.ssnr(c, e),
    }

    def composite_values() -> dict[str, float]:
        pesq, seg = get("pesq_wb", simple["pesq_wb"]), get("ssnr", simple["ssnr"])
        return _composite.composite_from_measures(pesq, _composite.llr(c, e), _composite.wss(c, e), seg)

    out: dict[str, float] = {}
    for name in names:
        if name in simple:
            out[name] = get(name, simple[name])
        elif name in COMPOSITE:
            out[name] = get("composite", composite_values)[name]
        else:
            out[name] = get("dnsmos", lambda: _dnsmos.dnsmos(e))[name]
    return {m: float(out[m]) for m in names}
