"""The streaming twin of :class:`~gagnet.model.wave.WaveGaGNet`.

A causal GaGNet keeps three kinds of state between calls: the past frames of every causal
convolution (:class:`~gagnet.model.timepad.CausalTimePad`), the running statistics of the
cumulative instance norms, and the STFT input buffer and iSTFT overlap. With those carried,
a signal fed in chunks of any size gives the offline output, delayed by
``latency_samples`` (one window, 20 ms for the paper's STFT).

For configurations that are not causal (the published instance norm), long signals are
processed in overlapping blocks instead (:class:`OverlapBlockProcessor`).
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from . import dsp
from .attenuation import InputFloor, floor_gain
from .config import GaGNetConfig
from .model.gagnet import GaGNet
from .model.wave import WaveGaGNet

log = logging.getLogger(__name__)
#: ``atten_lim_db`` default: the limit the model (or Enhancer) names.
FROM_MODEL = "model"


class NotCausalError(ValueError):
    """Raised when a configuration that looks at the future is asked to stream."""


def _stateful(net: nn.Module) -> Iterator[nn.Module]:
    return (m for m in net.modules() if hasattr(m, "streaming") and hasattr(m, "cache"))


def set_streaming(net: nn.Module, on: bool) -> None:
    """Switch every stateful layer of ``net`` into (or out of) streaming mode, clearing its state."""
    for m in _stateful(net):
        m.streaming = on
        m.cache = None


def get_state(net: nn.Module) -> list[Tensor | None]:
    """The carried state of every stateful layer, in module order."""
    return [m.cache for m in _stateful(net)]


def set_state(net: nn.Module, state: list[Tensor | None]) -> None:
    """Load a state taken with :func:`get_state`."""
    layers = list(_stateful(net))
    if len(layers) != len(state):
        raise ValueError(f"state has {len(state)} entries, the network {len(layers)}")
    for m, s in zip(layers, state):
        m.cache = s


def _streaming_backend(backend: str, net: GaGNet, device: torch.device) -> str:
    """``auto``: the ONNX fast step where it applies and onnxruntime is installed, else torch."""
    from .fast_step import fast_step_supported

    if backend not in ("auto", "torch", "onnx"):
        raise ValueError(f"backend must be auto, torch or onnx, got {backend!r}")
    if backend != "auto":
        return backend
    if not net.cfg.causal:
        return "torch"  # refused below with NotCausalError
    from .enhance import onnx_available

    if device.type == "cpu" and onnx_available() and fast_step_supported(net.cfg):
        return "onnx"
    log.info("streaming in PyTorch (the ONNX fast step needs onnxruntime on the CPU and a config it supports)")
    return "torch"


def _fast_streamer(net: GaGNet, threads: int, precision: str) -> Any:
    """The fastest streamer installed for ``net`` at ``precision``: int8 prefers the C stages of
    :mod:`gagnet.native` (weight-only int8) and falls back, with a log line, to ONNX Runtime's
    int8 graph (:mod:`gagnet.quantize`); float32 is the ONNX fast step."""
    from .enhance import onnx_session
    from .export import OnnxStreamingEnhancer

    wave = WaveGaGNet(net)
    if precision == "int8":
        from .native import NativeStreamingEnhancer, NativeUnavailable, native_supported

        why = f"config {net.cfg.name!r} ({net.cfg.norm}) is not one they run"
        if native_supported(net.cfg):
            try:
                return NativeStreamingEnhancer(wave, threads)
            except NativeUnavailable as e:
                why = str(e)
        log.info("int8 in ONNX Runtime (inputs of each product rounded to 8 bits too): the native int8 stages "
                 "are unavailable: %s", why)
    return OnnxStreamingEnhancer(onnx_session(wave, threads, fast_step=True, precision=precision))


#: Weight precisions of the streaming step ("auto": see :func:`resolve_precision`).
PRECISIONS = ("auto", "fp32", "int8")


def resolve_precision(precision: str, backend: str, cfg: GaGNetConfig) -> str:
    """``auto`` -> ``int8`` where the native int8 stages run (the ONNX fast step's back end, a
    batch-norm config, a C compiler: :mod:`gagnet.native`), else ``fp32``; others unchanged.
    ``backend`` is the one chosen (``onnx`` or ``torch``); int8 on ``torch`` raises ValueError.

    On the 47 DNS no-reverb dev clips the native int8 stages change the default model's mean
    WB-PESQ by +0.00002 and STOI by +0.005 (streamed, 12 dB limit), so they are the default.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and backend != "onnx":
        raise ValueError("int8 weights run on the fast step (ONNX Runtime and the native int8 stages), not in "
                         "PyTorch: use backend 'auto' or 'onnx', with onnxruntime installed and a causal config "
                         "with norm cin or bn, on the CPU")
    if precision != "auto":
        return precision
    if backend == "onnx":
        from .native import NativeUnavailable, load_library, native_supported

        if native_supported(cfg):
            try:
                load_library()
                return "int8"
            except NativeUnavailable as e:
                log.info("streaming in float32: the native int8 stages are unavailable: %s", e)
    return "fp32"


def zero_nonfinite(x: np.ndarray) -> tuple[np.ndarray, int]:
    """``x`` with its NaN/Inf samples set to 0 (``x`` itself when it has none), and their count: one NaN
    would otherwise fill a causal network's state, seconds of output."""
    bad = ~np.isfinite(x)
    n = int(bad.sum())
    return (np.where(bad, np.zeros((), x.dtype), x), n) if n else (x, 0)


class StreamingEnhancer:
    """Frame-synchronous, stateful enhancement of a 16 kHz mono stream.

    ``process(chunk)`` takes any number of samples (1 to millions) and returns exactly as
    many: the offline output delayed by ``latency_samples`` (the first ``latency_samples``
    samples of the stream are zeros). ``flush()`` returns the last ``latency_samples``
    samples, so the concatenated output, from sample ``latency_samples`` on, equals
    offline processing of the whole input. ``reset()`` starts a new stream.
    Chunks may be numpy arrays or torch tensors (1-D); outputs are of the same kind.

    ``model``: a network (``WaveGaGNet``/``GaGNet``: PyTorch unless ``backend`` says
    otherwise, no attenuation limit unless ``atten_lim_db`` gives one) or an
    :class:`~gagnet.Enhancer` (its network and limit, and the fastest back end installed).
    ``backend``: ``auto`` (the ONNX fast step when onnxruntime is installed and the config is
    one it supports; else PyTorch, said in the log), ``torch`` or ``onnx``. With a limit of
    ``g = 10 ** (-dB / 20)`` the output is ``(1 - g) * enhanced + g * input``, the input
    delayed by ``latency_samples`` like the enhanced stream: the same as
    :meth:`~gagnet.Enhancer.enhance` with that limit.

    ``precision``: ``fp32`` runs the network as trained (equal to offline within 1e-4);
    ``int8`` runs the fast step with int8 weights: the native stages (:mod:`gagnet.native`,
    weight-only int8, about -40 dB from float32) where they build, else ONNX Runtime's int8
    graph (:mod:`gagnet.quantize`, about -30 dB); ``auto`` (the default) is int8 where the
    native stages run, else fp32 (:func:`resolve_precision`). int8 needs the fast step, so
    ``backend`` ``auto`` or ``onnx``.
    """

    # subclasses that run the network elsewhere set up through _setup() alone: no limit, no facade
    _inner: Any = None
    _floor: float = 0.0
    limit_db: float | None = None
    backend = "torch"
    precision = "fp32"
    engine = "torch"
    #: NaN/Inf input samples taken as 0 so far (one would fill the state with NaN, seconds of output).
    nonfinite = 0

    def __init__(self, model: Any, device: str | torch.device = "cpu", backend: str | None = None,
                 atten_lim_db: float | None | str = FROM_MODEL, threads: int = 1, precision: str = "auto") -> None:
        enhancer = hasattr(model, "model") and hasattr(model, "atten_lim_db")  # an Enhancer
        if enhancer:
            limit = model.atten_lim_db if atten_lim_db == FROM_MODEL else atten_lim_db
            model = model.model
        else:
            limit = None if atten_lim_db == FROM_MODEL else atten_lim_db
        net = model.net if isinstance(model, WaveGaGNet) else model
        #: The attenuation limit applied to the output (dB; None: the network's output alone).
        self.limit_db = limit
        self._floor = floor_gain(limit)
        # an Enhancer (or from_pretrained) gets the fastest back end installed; a bare network
        # the PyTorch twin unless asked otherwise
        backend = backend or ("auto" if enhancer else "torch")
        self._inner = None
        self.backend = _streaming_backend(backend, net, torch.device(device))
        #: Weight precision of the network as run: "fp32" or "int8".
        self.precision = resolve_precision(precision, self.backend, net.cfg)
        if self.backend == "onnx":
            self._inner = _fast_streamer(net, threads, self.precision)
            #: What runs the network: "torch", "onnx" (the ONNX fast step) or "native" (the encoder
            #: in ONNX Runtime, the stages in C with int8 weights: :mod:`gagnet.native`).
            self.engine = self._inner.engine
            self.cfg, self.latency_samples, self.device = self._inner.cfg, self._inner.latency_samples, torch.device("cpu")
        else:
            self._setup(net.cfg, device)
            self.net = copy.deepcopy(net).to(self.device).eval()
        self.reset()

    @classmethod
    def from_pretrained(cls, name_or_path: str | None = None, backend: str = "auto",
                        atten_lim_db: float | None | str = FROM_MODEL, threads: int = 1,
                        precision: str = "auto") -> "StreamingEnhancer":
        """A shipped model by name (default: the default model) or a ``.pt``/``.ckpt`` file, with
        the attenuation limit the model names (``atten_lim_db``: a number of dB, or None for the
        network alone) and the fastest back end installed: the ONNX fast step when onnxruntime is
        there (exported once and cached), else PyTorch (said in the log). ``precision``: ``auto``
        (int8 where the native stages run, else float32), ``fp32`` or ``int8`` (see the class).
        With ``precision="fp32"`` the output is :meth:`gagnet.Enhancer.enhance`'s with the same
        settings (within 1e-4), delayed by ``latency_samples``; int8 is within about -40 dB."""
        from .pretrained import load_model, recommended_atten_lim

        model = load_model(name_or_path)
        limit = recommended_atten_lim(name_or_path) if atten_lim_db == FROM_MODEL else atten_lim_db
        return cls(model, backend=backend, atten_lim_db=limit, threads=threads, precision=precision)

    def _setup(self, cfg: GaGNetConfig, device: str | torch.device, delay_frames: int = 0) -> None:
        """Signal-path settings, shared with subclasses that run the network elsewhere (ONNX).

        ``delay_frames``: whole frames by which :meth:`_estimate` returns its estimates late
        (a network run on blocks of frames); they add to ``latency_samples`` and are drained
        by :meth:`flush`.
        """
        if not cfg.causal:
            raise NotCausalError(
                f"config {cfg.name!r} (norm={cfg.norm!r}, causal_conv={cfg.causal_conv}) looks at future frames "
                "and cannot stream; use a causal configuration such as 'causal'"
            )
        self.cfg = cfg
        self.device = torch.device(device)
        self._delay_frames = delay_frames
        self.latency_samples = cfg.latency_samples + delay_frames * cfg.hop_length
        w = dsp.window(cfg, self.device)
        self._win = w
        self._env = (w * w).reshape(2, cfg.hop_length).sum(0) if cfg.n_fft == 2 * cfg.hop_length else None

    # -- the network: the only part subclasses replace ---------------------------------------
    def _reset_net(self) -> None:
        """Clear the network's carried state."""
        set_streaming(self.net, True)

    def _estimate(self, spec: Tensor) -> Tensor:
        """Compressed noisy (1, 2, F, k) -> last-stage estimate (1, 2, F, k), state carried."""
        return self.net(spec)[-1]

    def reset(self) -> None:
        """Forget everything: a new stream starts."""
        if getattr(self, "_floor", 0.0) > 0:  # the input, delayed like the output, for the limit
            self._dry = InputFloor(self._floor)
            self._dry.hold(np.zeros((self.latency_samples, 1), np.float32))
        if getattr(self, "_inner", None) is not None:
            self._inner.reset()
            return
        cfg = self.cfg
        self._reset_net()
        self._inbuf = torch.zeros(cfg.win_length - cfg.hop_length, device=self.device)  # causal left pad
        self._ola = torch.zeros(cfg.n_fft - cfg.hop_length, device=self.device)
        self._ready: list[Tensor] = [torch.zeros(self.latency_samples, device=self.device)]
        self._ready_len = self.latency_samples
        # padded positions before the first real sample (and the frames of the estimates' delay)
        self._skip = cfg.win_length - cfg.hop_length + self._delay_frames * cfg.hop_length
        self._seen = 0
        self._given = 0
        self._frames = 0
        self._as_numpy = True  # flush()'s output type follows the last chunk's

    # -- frames --------------------------------------------------------------------------
    @torch.no_grad()
    def _run_frames(self, n_frames: int) -> None:
        """Analyse ``n_frames`` frames from the input buffer, enhance and overlap-add them."""
        cfg = self.cfg
        hop, n_fft = cfg.hop_length, cfg.n_fft
        frames = self._inbuf[: (n_frames - 1) * hop + n_fft].unfold(0, n_fft, hop)  # (k, n_fft)
        self._inbuf = self._inbuf[n_frames * hop :]
        spec = torch.fft.rfft(frames * self._win, dim=-1).T.unsqueeze(0)  # (1, F, k)
        est = self._estimate(dsp.compress(spec, cfg.compress))
        out = torch.fft.irfft(dsp.decompress(est, cfg.compress)[0].T, n=n_fft, dim=-1) * self._win  # (k, n_fft)
        ola = dsp.overlap_add(out.unsqueeze(0), hop)[0]
        ola[: self._ola.numel()] += self._ola
        done, self._ola = ola[: n_frames * hop], ola[n_frames * hop :].clone()
        if self._env is not None:
            done = done / self._env.repeat(n_frames)
        else:  # general window/hop: divide by the summed squared windows
            env = dsp.overlap_add((self._win * self._win).expand(1, n_frames + 2, -1), hop)[0]
            done = done / env[n_fft - hop : n_fft - hop + n_frames * hop].clamp_min(1e-8)
        if self._skip:
            cut = min(self._skip, done.numel())
            done, self._skip = done[cut:], self._skip - cut
        self._ready.append(done)
        self._ready_len += done.numel()
        self._frames += n_frames

    def _take(self, n: int) -> Tensor:
        ready = torch.cat(self._ready) if len(self._ready) > 1 else self._ready[0]
        out, rest = ready[:n], ready[n:]
        self._ready, self._ready_len = [rest], rest.numel()
        return out

    # -- public --------------------------------------------------------------------------
    def process(self, chunk: np.ndarray | Tensor) -> np.ndarray | Tensor:
        """Feed samples; get the same number of (delayed) enhanced samples back."""
        chunk = self._finite(chunk)
        out = self._inner.process(chunk) if self._inner is not None else self._stream(chunk)
        if self._floor > 0:
            x = chunk.detach().cpu().numpy() if isinstance(chunk, Tensor) else np.asarray(chunk)
            self._dry.hold(np.asarray(x, np.float32).reshape(-1, 1))
            out = self._limit(out)
        return out

    def _finite(self, chunk: np.ndarray | Tensor) -> np.ndarray | Tensor:
        """``chunk`` with NaN/Inf samples set to 0 (counted in :attr:`nonfinite`, logged once)."""
        if isinstance(chunk, Tensor):
            bad = ~torch.isfinite(chunk)
            n = int(bad.sum())
            out = chunk.masked_fill(bad, 0.0) if n else chunk
        else:
            out, n = zero_nonfinite(np.asarray(chunk))
            out = out if n else chunk
        if n and not self.nonfinite:
            log.warning("NaN/Inf input samples are taken as 0 (StreamingEnhancer.nonfinite counts them)")
        self.nonfinite += n
        return out

    def _limit(self, out: np.ndarray | Tensor) -> np.ndarray | Tensor:
        """``(1 - g) * out + g * input`` with the input delayed like ``out``."""
        if isinstance(out, Tensor):
            mixed = self._dry.apply(out.detach().cpu().numpy().reshape(-1, 1))[:, 0]
            return torch.from_numpy(np.ascontiguousarray(mixed)).to(out.device)
        return self._dry.apply(out.reshape(-1, 1))[:, 0]

    def flush(self, as_numpy: bool | None = None) -> np.ndarray | Tensor:
        """Finish the stream: the remaining ``latency_samples`` samples of output, as numpy or
        a tensor like the last chunk given (``as_numpy`` overrides; numpy if none was given)."""
        if self._inner is not None:
            out = self._inner.flush(True if as_numpy is None else as_numpy)
        else:
            out = self._drain(as_numpy)
        return self._limit(out) if self._floor > 0 else out

    def _stream(self, chunk: np.ndarray | Tensor) -> np.ndarray | Tensor:
        is_np = self._as_numpy = not isinstance(chunk, Tensor)
        x = torch.as_tensor(np.asarray(chunk, dtype=np.float32) if is_np else chunk, device=self.device).float()
        if x.dim() != 1:
            raise ValueError(f"expected a 1-D chunk of samples, got shape {tuple(x.shape)}")
        self._inbuf = torch.cat((self._inbuf, x))
        self._seen += x.numel()
        avail = (self._inbuf.numel() - self.cfg.n_fft) // self.cfg.hop_length + 1
        if avail > 0:
            self._run_frames(avail)
        out = self._take(x.numel())
        self._given += out.numel()
        return out.cpu().numpy() if is_np else out

    def _drain(self, as_numpy: bool | None = None) -> np.ndarray | Tensor:
        as_numpy = self._as_numpy if as_numpy is None else as_numpy
        cfg = self.cfg
        need = cfg.frames(self._seen) + self._delay_frames - self._frames
        if need > 0:
            want = (need - 1) * cfg.hop_length + cfg.n_fft
            self._inbuf = torch.cat((self._inbuf, self._inbuf.new_zeros(max(0, want - self._inbuf.numel()))))
            self._run_frames(need)
        out = self._take(self._seen + self.latency_samples - self._given)
        self._given += out.numel()
        return out.cpu().numpy() if as_numpy else out


class DelayCompensated:
    """Wraps a processor with a fixed delay so that outputs line up with inputs.

    ``process`` returns whatever is ready (possibly fewer samples at the start), and
    ``flush`` the rest; all outputs together have exactly the input's length.
    """

    def __init__(self, inner: StreamingEnhancer) -> None:
        self.inner = inner
        self._drop = inner.latency_samples

    def process(self, chunk: np.ndarray) -> np.ndarray:
        out = self.inner.process(chunk)
        if self._drop:
            cut = min(self._drop, len(out))
            out, self._drop = out[cut:], self._drop - cut
        return out

    def flush(self) -> np.ndarray:
        out = self.inner.flush()
        if self._drop:
            cut = min(self._drop, len(out))
            out, self._drop = out[cut:], self._drop - cut
        return out


class OverlapBlockProcessor:
    """Bounded-memory processing for non-causal models: overlapping blocks, cross-faded.

    Blocks of ``block_seconds`` are enhanced offline with ``overlap_seconds`` of shared
    context on each side, and joined with a linear cross-fade inside the overlap. Inputs
    and outputs are 16 kHz float32 numpy arrays; all outputs together have the input's length.
    ``enhance_fn`` (a whole block (N,) -> (N,)) replaces the PyTorch model, e.g. an ONNX graph.
    """

    def __init__(self, model: WaveGaGNet, block_seconds: float = 30.0, overlap_seconds: float = 1.0,
                 device: str | torch.device = "cpu",
                 enhance_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        sr = model.cfg.sample_rate
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self._enhance_fn = enhance_fn  # (N,) float32 -> (N,): another runtime for the network
        self.block = int(block_seconds * sr)
        self.overlap = min(int(overlap_seconds * sr), self.block // 2)
        self._buf = np.zeros(0, dtype=np.float32)
        self._tail: np.ndarray | None = None  # enhanced overlap region awaiting the next block
        self._started = False

    @torch.no_grad()
    def _enhance(self, x: np.ndarray) -> np.ndarray:
        if self._enhance_fn is not None:
            return np.asarray(self._enhance_fn(np.ascontiguousarray(x)), dtype=np.float32)
        return self.model(torch.from_numpy(np.ascontiguousarray(x)).to(self.device)).cpu().numpy()

    def _emit(self, final: bool) -> np.ndarray:
        out = []
        ov = self.overlap
        while len(self._buf) >= self.block + ov or (final and len(self._buf) > 0):
            seg = self._buf[: self.block + ov] if not final else self._buf
            y = self._enhance(seg)
            if self._tail is not None:
                n = min(ov, len(y), len(self._tail))
                fade = np.linspace(0.0, 1.0, n + 2, dtype=np.float32)[1:-1]
                y[:n] = self._tail[:n] * (1 - fade) + y[:n] * fade
            if final and len(seg) == len(self._buf):
                out.append(y)
                self._buf = self._buf[:0]
                self._tail = None
                break
            keep = len(seg) - ov  # the last `ov` samples are redone by the next block
            out.append(y[:keep])
            self._tail = y[keep:]
            self._buf = self._buf[keep:]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        self._buf = np.concatenate((self._buf, np.asarray(chunk, dtype=np.float32)))
        return self._emit(final=False)

    def flush(self) -> np.ndarray:
        return self._emit(final=True)


def make_block_processor(model: WaveGaGNet, block_seconds: float = 30.0, device: str | torch.device = "cpu"):
    """A processor with ``process(chunk) -> ready`` and ``flush() -> rest`` for long signals.

    Causal models stream with carried state (identical to whole-signal processing);
    others use :class:`OverlapBlockProcessor`. All outputs together have the input's length.
    """
    if model.cfg.causal:
        return DelayCompensated(StreamingEnhancer(model, device))
    log.info("config %r is not causal: processing in overlapping %.0f s blocks", model.cfg.name, block_seconds)
    return OverlapBlockProcessor(model, block_seconds, device=device)
