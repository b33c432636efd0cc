"""DNSMOS P.835 (SIG, BAK, OVRL) and P.808 (Reddy et al., ICASSP 2021/2022), non-intrusive.

The ONNX models come from the ``speechmos`` wheel (``dnsmos_models/sig_bak_ovr.onnx`` and
``model_v8.onnx``), found on disk so nothing is downloaded. ``speechmos``'s own wrapper needs
``librosa`` only to make the P.808 model's input; this module makes the same features with
numpy (librosa >= 0.9 defaults: centred, zero-padded STFT with a periodic Hann window of
``n_fft = 321``, hop 160, 120 Slaney-normalised Slaney-scale mel bands, ``power_to_db`` relative
to the maximum with an 80 dB floor, then ``(dB + 40) / 40``) and follows the same procedure:
audio shorter than 9.01 s is repeated, 9.01 s windows every 1 s are scored, the P.835 outputs
are mapped with the published (non-personalised) polynomials and all scores averaged.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .intrusive import SAMPLE_RATE

log = logging.getLogger(__name__)

INPUT_SECONDS = 9.01
_N_FFT = 321
_HOP = 160
_N_MELS = 120
# Polynomials (highest power first) mapping the raw P.835 outputs to MOS.
_POLY_SIG = (-0.08397278, 1.22083953, 0.0052439)
_POLY_BAK = (-0.13166888, 1.60915514, -0.39604546)
_POLY_OVRL = (-0.06766283, 1.11546468, 0.04602535)
_num_threads = 0  # 0: onnxruntime's default
_state: dict[str, Any] = {"pid": None, "sessions": None}
# Sessions inherited through fork() are never used or destroyed in the child: their thread
# pools do not exist there, and destroying them waits for those threads forever.
_orphans: list[Any] = []


def _drop_sessions() -> None:
    if _state["sessions"] is not None and _state["pid"] != os.getpid():
        _orphans.append(_state["sessions"])
    _state["sessions"] = None


def set_num_threads(n: int) -> None:
    """Intra-op threads for the ONNX sessions (0: onnxruntime's default), e.g. 1 in pool workers."""
    global _num_threads
    if int(n) != _num_threads:
        _num_threads = int(n)
        _drop_sessions()


def model_dir() -> Path:
    """Directory holding the DNSMOS ONNX files of the installed ``speechmos`` package."""
    spec = importlib.util.find_spec("speechmos")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("DNSMOS needs the 'speechmos' package (pip install speechmos), which ships the models")
    path = Path(list(spec.submodule_search_locations)[0]) / "dnsmos_models"
    if not (path / "sig_bak_ovr.onnx").is_file() or not (path / "model_v8.onnx").is_file():
        raise RuntimeError(f"DNSMOS model files missing in {path}")
    return path


def _sessions() -> tuple[Any, Any]:
    """The (P.835, P.808) inference sessions of this process, created on first use."""
    if _state["pid"] != os.getpid():
        _drop_sessions()
    if _state["sessions"] is None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if _num_threads > 0:
            opts.intra_op_num_threads = _num_threads
            opts.inter_op_num_threads = 1
        path = model_dir()
        providers = ["CPUExecutionProvider"]
        p835 = ort.InferenceSession(str(path / "sig_bak_ovr.onnx"), opts, providers=providers)
        p808 = ort.InferenceSession(str(path / "model_v8.onnx"), opts, providers=providers)
        _state.update(pid=os.getpid(), sessions=(p835, p808))
    return _state["sessions"]


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3.0, 1000.0, math.log(6.4) / 27.0
    mel = f / f_sp
    high = f >= min_log_hz
    return np.where(high, min_log_hz / f_sp + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep, mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3.0, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """(120, 161) triangular Slaney-normalised mel filters for 16 kHz, ``n_fft = 321``."""
    fft_freqs = np.fft.rfftfreq(_N_FFT, 1.0 / SAMPLE_RATE)
    mel_points = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2.0), _N_MELS + 2))
    widths = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2:] - mel_points[:-2]))[:, None]
    return weights


def mel_features(segment: np.ndarray) -> np.ndarray:
    """P.808 model input ``(frames, 120)`` for one segment (the model takes 144000 samples)."""
    x = np.pad(np.asarray(segment, dtype=np.float64), _N_FFT // 2)
    n_frames = 1 + (x.size - _N_FFT) // _HOP
    idx = np.arange(_N_FFT)[None, :] + _HOP * np.arange(n_frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(_N_FFT) / _N_FFT)  # periodic Hann
    power = np.abs(np.fft.rfft(x[idx] * window, axis=1)) ** 2
    mel = power @ mel_filterbank().T
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    db -= 10.0 * np.log10(max(float(mel.max()), 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    return (db + 40.0) / 40.0


def _segments(audio: np.ndarray) -> np.ndarray:
    need = int(INPUT_SECONDS * SAMPLE_RATE)
    while audio.size < need:
        audio = np.concatenate([audio, audio])
    n_hops = int(math.floor(audio.size / SAMPLE_RATE) - INPUT_SECONDS) + 1
    segs = [audio[i * SAMPLE_RATE : i * SAMPLE_RATE + need] for i in range(n_hops)]
    return np.stack([s for s in segs if s.size == need])


def dnsmos(audio: np.ndarray) -> dict[str, float]:
    """DNSMOS of a 16 kHz mono float signal: ``dnsmos_sig``, ``dnsmos_bak``, ``dnsmos_ovrl``,
    ``dnsmos_p808`` (MOS scale, roughly 1 to 5)."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"DNSMOS expects a non-empty 1-D signal, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("signal contains NaN or Inf")
    p835, p808 = _sessions()
    segs = _segments(x)
    raw = p835.run(None, {"input_1": segs.astype(np.float32)})[0]  # (N, 3): sig, bak, ovrl
    feats = np.stack([mel_features(s[:-_HOP]) for s in segs]).astype(np.float32)
    p808_mos = p808.run(None, {"input_1": feats})[0][:, 0]
    return {
        "dnsmos_sig": float(np.mean(np.polyval(_POLY_SIG, raw[:, 0]))),
        "dnsmos_bak": float(np.mean(np.polyval(_POLY_BAK, raw[:, 1]))),
        "dnsmos_ovrl": float(np.mean(np.polyval(_POLY_OVRL, raw[:, 2]))),
        "dnsmos_p808": float(np.mean(p808_mos)),
    }
