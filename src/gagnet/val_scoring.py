"""Validation scores that keep off the training loop: SI-SDR on the device, and WB-PESQ and
STOI in a background process.

:func:`batch_si_sdr` scores every validation clip on the device in one pass. The CPU
metrics of a few clips go to :class:`BackgroundScorer`, which runs them in one spawned
process while training goes on and hands back each validation's scores, with its step,
once they are done. The noisy input's scores are the same at every validation, so they
are computed once, with the first submission.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


def batch_si_sdr(reference: torch.Tensor, estimate: torch.Tensor, lengths: torch.Tensor,
                 eps: float = 1e-8) -> torch.Tensor:
    """SI-SDR in dB of each row of ``estimate`` against ``reference`` (both ``(B, N)``, the
    first ``lengths[b]`` samples valid; zero-mean over them): ``(B,)`` float64."""
    n = reference.shape[-1]
    mask = (torch.arange(n, device=reference.device)[None, :] < lengths[:, None]).double()
    count = mask.sum(-1, keepdim=True).clamp_min(1)
    r = reference.double() * mask
    e = estimate.double() * mask
    r = (r - r.sum(-1, keepdim=True) / count) * mask
    e = (e - e.sum(-1, keepdim=True) / count) * mask
    alpha = (e * r).sum(-1, keepdim=True) / (r.square().sum(-1, keepdim=True) + eps)
    target = alpha * r
    residual = e - target
    return 10.0 * torch.log10((target.square().sum(-1) + eps) / (residual.square().sum(-1) + eps))


def _score(clean: list[np.ndarray], signals: list[np.ndarray], suffix: str) -> dict[str, float]:
    """Mean WB-PESQ (when ``pesq`` is installed) and STOI (%) of ``signals`` against ``clean``."""
    from .metrics.intrusive import pesq_wb, stoi

    out: dict[str, float] = {}
    if importlib.util.find_spec("pesq") is not None:
        p = [v for v in (pesq_wb(c, s) for c, s in zip(clean, signals)) if math.isfinite(v)]
        if p:
            out[f"pesq_wb{suffix}"] = float(np.mean(p))
    if importlib.util.find_spec("pystoi") is not None:
        s = [v for v in (stoi(c, x) for c, x in zip(clean, signals)) if math.isfinite(v)]
        if s:
            out[f"stoi{suffix}"] = float(np.mean(s))
    return out


class BackgroundScorer:
    """Scores validation clips in one background process, one validation at a time.

    :meth:`submit` queues ``(step, clean, enhanced[, noisy])`` and returns at once;
    :meth:`collect` returns ``[(step, scores), ...]`` of the finished ones (``wait=True``
    waits for all). With ``background=False`` it scores in the calling process (tests).
    """

    def __init__(self, background: bool = True) -> None:
        self.background = background
        self._pool: ProcessPoolExecutor | None = None
        self._pending: list[tuple[int, Future | dict]] = []
        self._noisy: dict[str, float] | None = None
        self._noisy_future: Future | dict | None = None

    def _run(self, fn: Any, *args: Any) -> Future | dict:
        if not self.background:
            return fn(*args)
        if self._pool is None:  # spawn: the child never touches the parent's CUDA context
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        return self._pool.submit(fn, *args)

    def submit(self, step: int, clean: list[np.ndarray], enhanced: list[np.ndarray],
               noisy: list[np.ndarray] | None = None) -> None:
        if noisy is not None and self._noisy is None and self._noisy_future is None:
            self._noisy_future = self._run(_score, clean, noisy, "_noisy")
        self._pending.append((step, self._run(_score, clean, enhanced, "")))

    @staticmethod
    def _result(job: Future | dict) -> dict:
        return job.result() if isinstance(job, Future) else job

    def collect(self, wait: bool = False) -> list[tuple[int, dict[str, float]]]:
        if self._noisy_future is not None and (wait or not isinstance(self._noisy_future, Future)
                                               or self._noisy_future.done()):
            self._noisy, self._noisy_future = self._result(self._noisy_future), None
        done, left = [], []
        for step, job in self._pending:
            if wait or not isinstance(job, Future) or job.done():
                try:
                    scores = self._result(job)
                except Exception as e:  # a metric failure must not end a training run
                    log.warning("validation scores of step %d failed: %s", step, e)
                    continue
                done.append((step, {**scores, **(self._noisy or {})}))
            else:
                left.append((step, job))
        self._pending = left
        return done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
