"""The glance-gaze stages of the fast streaming step in C, with int8 weights.

A 10 ms hop of the paper-size model reads about 24 MB of float32 weights, most of them in the
glance-gaze modules, and in ONNX Runtime it also pays a fixed cost for each of several hundred
small operations. :class:`NativeStreamingEnhancer` splits the hop in two:

* the encoder runs in ONNX Runtime (:class:`~gagnet.fast_step.FastStep` with
  ``encoder_only``, float32, exported once and cached), giving the features (d_feat,);
* the q glance-gaze modules run in one C call (``native_stages.c``): every matrix product is
  **weight-only int8 with float32 accumulation**: int8 weights with one float32 scale per output
  column, each product accumulated in float32 from the float32 input and then scaled. The
  norms are batch norms folded into the products by the fast step (so: ``norm="bn"`` only).

The C file is compiled on first use with the system's C compiler (``$CC``, else ``cc``; with
``-O3 -march=native``) into the cache folder (``$GAGNET_CACHE``), keyed by the source, the
compiler and this CPU's flags. Without a compiler :func:`load_library` raises
:class:`NativeUnavailable` and :class:`~gagnet.streaming.StreamingEnhancer` falls back to
ONNX Runtime's int8 graph (:mod:`gagnet.quantize`), saying so in the log.

Weights are packed per product as (ceil(N / 64), K, 64) int8, columns zero-padded to a multiple
of 64, so the C loop streams each block of 64 columns contiguously.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .config import GaGNetConfig
from .fast_step import FastStep
from .model.wave import WaveGaGNet
from .np_framing import NumpyFraming
from .quantize import quantize_columns
from .streaming import StreamingEnhancer

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("native_stages.c")
BLOCK = 64  # output columns per packed block (as in native_stages.c)
_ACTIVATIONS = {"sigmoid": 0, "tanh": 1, "relu": 2}
_LIB: ctypes.CDLL | None = None


class NativeUnavailable(RuntimeError):
    """The C stages cannot be built or loaded here (no compiler, or it failed)."""


def native_supported(cfg: GaGNetConfig) -> bool:
    """True when the C stages can run ``cfg``: causal, batch norm, sizes within the C buffers."""
    return (cfg.causal and cfg.norm == "bn" and cfg.gain_activation in _ACTIVATIONS and cfg.d_feat <= 1024
            and cfg.n_freq <= 1024 and cfg.kd1 <= 16 and cfg.kd1 * cfg.cd1 <= 1024 and cfg.cd1 <= 1024)


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def load_library() -> ctypes.CDLL:
    """The compiled C stages (built on first use, then cached); raises :class:`NativeUnavailable`."""
    global _LIB
    if _LIB is not None:
        return _LIB
    from .build_cache import cached_file

    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise NativeUnavailable("no C compiler found (set $CC or install gcc)")
    flags = ["-O3", "-march=native", "-shared", "-fPIC", "-std=c99"]
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join([cc, *flags, platform.machine(), _cpu_flags()]).encode())

    def build(tmp: Path) -> None:
        try:
            res = subprocess.run([cc, *flags, "-o", str(tmp), str(SOURCE), "-lm"], capture_output=True, text=True,
                                 timeout=120)
        except (OSError, subprocess.SubprocessError) as e:
            raise NativeUnavailable(f"cannot run {cc}: {e}") from None
        if res.returncode != 0:
            raise NativeUnavailable(f"{cc} failed: {' '.join(res.stderr.split())[:200]}")

    try:
        path = cached_file(f"native-stages-{key.hexdigest()[:16]}.so", build,
                           "compiling the int8 stages (once per machine)")
    except OSError as e:  # an unwritable cache folder
        raise NativeUnavailable(f"cannot write the compiled stages: {e}") from None
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise NativeUnavailable(f"cannot load {path}: {e}") from None
    lib.gagnet_stages.argtypes = [ctypes.c_void_p] * 7 + [ctypes.c_longlong]
    lib.gagnet_stages.restype = ctypes.c_int
    _LIB = lib
    return lib


def native_available() -> bool:
    """True when the C stages build and load here."""
    try:
        load_library()
    except NativeUnavailable as e:
        log.debug("native int8 stages unavailable: %s", e)
        return False
    return True


class _Mat(ctypes.Structure):
    _fields_ = [("w", ctypes.c_void_p), ("scale", ctypes.c_void_p), ("bias", ctypes.c_void_p),
                ("k", ctypes.c_int), ("n", ctypes.c_int)]


def pack_int8(w: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, N) float weights -> int8 (ceil(N / 64), K, 64) and float32 column scales (ceil(N / 64) * 64,)."""
    w = np.asarray(w.detach().cpu().double() if isinstance(w, Tensor) else w, dtype=np.float64)
    k, n = w.shape
    cols = -(-n // BLOCK) * BLOCK
    padded = np.zeros((k, cols))
    padded[:, :n] = w
    q, scale = quantize_columns(padded)
    return np.ascontiguousarray(q.reshape(k, -1, BLOCK).transpose(1, 0, 2)), scale.reshape(-1)


class NativeStages:
    """The packed int8 weights of a :class:`FastStep`'s stages and the C call that runs them.

    :meth:`bind` fixes four float32 C-contiguous buffers: features (d_feat,) and spectrum
    (2, F) in, the dilated convs' past inputs (:attr:`window_size`,: zeros at the start of a
    stream, updated in place) and the estimate (2, F) out; :meth:`run` then runs frame t.
    """

    def __init__(self, step: FastStep) -> None:
        cfg = step.cfg
        if not native_supported(cfg):
            raise ValueError(f"the native stages need a causal batch-norm config, not {cfg.name!r} ({cfg.norm})")
        self.lib = load_library()
        self._keep: list[np.ndarray] = []
        mats: list[tuple[Any, int, int]] = []  # (weights (K, N), bias or None)
        vecs: list[np.ndarray] = []
        f32 = lambda t: np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)  # noqa: E731
        dilations = [t.dilation for t in step.stages[0].tcms]
        for stage in step.stages:
            mats.append((stage.inp, f32(stage.inp_bias)))
            for tcm in stage.tcms:
                scale1 = torch.ones(tcm.act1.shape) if tcm.fold1 else tcm.scale1
                for s in range(3):
                    mats += [(tcm.squeeze[s], None), (tcm.dconv[s], None), (tcm.expand[s], f32(tcm.expand_bias[s, 0]))]
                    vecs += [f32(tcm.act1[s, 0]), f32(scale1[s, 0]), f32(tcm.shift1[s, 0]), f32(tcm.act2[s, 0])]
            for s in range(3):
                mats.append((stage.out[s], f32(stage.out_bias[s, 0])))
        self._mats = (_Mat * len(mats))()
        for i, (w, bias) in enumerate(mats):
            q, scale = pack_int8(w)
            self._keep += [q, scale] + ([bias] if bias is not None else [])
            self._mats[i] = _Mat(q.ctypes.data, scale.ctypes.data, bias.ctypes.data if bias is not None else None,
                                 w.shape[0], w.shape[1])
        self._keep += vecs
        self._vecs = (ctypes.c_void_p * len(vecs))(*[v.ctypes.data for v in vecs])
        act = _ACTIVATIONS[cfg.gain_activation]
        self._dims = np.array([cfg.q, len(dilations), 3, cfg.d_feat, cfg.cd1, cfg.n_freq, cfg.kd1, act, *dilations],
                              np.int32)
        #: Length of the window state (floats).
        self.window_size = cfg.q * 3 * cfg.cd1 * sum((cfg.kd1 - 1) * d for d in dilations)
        self.n_freq = cfg.n_freq
        #: Weights in int8 and their bytes (scales and biases aside).
        self.int8_params = int(sum(w.shape[0] * w.shape[1] for w, _ in mats))
        self._fixed = [ctypes.c_void_p(self._dims.ctypes.data), ctypes.cast(self._mats, ctypes.c_void_p),
                       ctypes.cast(self._vecs, ctypes.c_void_p)]

    def bind(self, feat: np.ndarray, spec: np.ndarray, windows: np.ndarray, out: np.ndarray) -> None:
        """Fix the buffers :meth:`run` reads and writes (kept alive here)."""
        bufs = (feat, spec, windows, out)
        if any(b.dtype != np.float32 or not b.flags.c_contiguous for b in bufs):
            raise ValueError("native stages: buffers must be C-contiguous float32")
        self._bufs = bufs
        self._args = [*self._fixed, *(ctypes.c_void_p(b.ctypes.data) for b in bufs)]

    def run(self, frame: int) -> None:
        """Frame ``frame`` (counted from 0 since the windows were zero): the estimate into the out buffer."""
        if self.lib.gagnet_stages(*self._args, frame) != 0:
            raise RuntimeError("native stages: dimensions beyond the C buffers")


class NativeStreamingEnhancer(NumpyFraming, StreamingEnhancer):
    """:class:`~gagnet.streaming.StreamingEnhancer` with the encoder in ONNX Runtime and the
    glance-gaze stages in C with int8 weights (see the module docstring).

    Same interface, framing and latency as the float32 streamers; the output differs from
    float32 by the weights' rounding (about -40 dB on the shipped model). ``model``: a causal
    batch-norm network (``WaveGaGNet``/``GaGNet``).
    """

    #: Weight precision of the network as run, and what runs it.
    precision = "int8"
    engine = "native"

    def __init__(self, model: WaveGaGNet | Any, threads: int | None = 1) -> None:
        from .enhance import onnx_session

        net = getattr(model, "net", model)
        wave = model if isinstance(model, WaveGaGNet) else WaveGaGNet(net)
        self.stages = NativeStages(FastStep(net).eval())
        self.session = onnx_session(wave, threads, fast_step=True, encoder_only=True)
        self._setup(net.cfg, "cpu")
        self._bind()
        self.reset()

    def _bind(self) -> None:
        from .export import bind_state_pairs

        self._spec = np.zeros((1, 2, self.cfg.n_freq, 1), np.float32)
        self._feat = np.zeros((1, self.cfg.d_feat), np.float32)
        self._sets, self._bindings = bind_state_pairs(self.session, {"spec": self._spec}, {"features": self._feat})
        self._frame = np.zeros((2, self.cfg.n_freq), np.float32)
        self._est = np.zeros((2, self.cfg.n_freq), np.float32)
        self._windows = np.zeros(self.stages.window_size, np.float32)
        self.stages.bind(self._feat, self._frame, self._windows, self._est)
        self._parity = self._t = 0

    def _reset_net(self) -> None:
        for buf in self._sets[0] + self._sets[1]:
            buf.fill(0)
        self._windows.fill(0)
        self._parity = self._t = 0

    def _estimate(self, spec: Tensor) -> Tensor:
        return torch.from_numpy(self._estimate_np(spec.detach().cpu().numpy()))

    def _estimate_np(self, x: np.ndarray) -> np.ndarray:
        out = np.empty(x.shape, np.float32)
        for t in range(x.shape[3]):
            self._spec[...] = x[..., t : t + 1]
            self.session.run_with_iobinding(self._bindings[self._parity])
            self._parity = 1 - self._parity
            self._frame[...] = x[0, :, :, t]
            self.stages.run(self._t)
            self._t += 1
            out[0, :, :, t] = self._est
        return out
