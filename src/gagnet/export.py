"""ONNX export of GaGNet: an offline graph and a single-step streaming graph, and their runners.

Both graphs are **spectrum in, spectrum out**. They hold the network only; the STFT, the
power compression and the iSTFT stay on the host (numpy/torch, :mod:`gagnet.dsp`), because
ONNX's STFT/DFT support differs across runtimes and versions, and the host-side signal path
is tiny next to the network (about 1 % of the work).

* :func:`export_offline` -- input ``spec`` (B, 2, F, T) compressed real/imag noisy spectrum
  (F = 161 for the paper's STFT; batch and frames dynamic), output ``estimate``
  (B, 2, F, T), the last stage. :class:`OnnxOfflineEnhancer` runs it on waves.
* :func:`export_streaming` -- causal configurations only: input ``spec`` (1, 2, F, k) with
  ``k = frames_per_step`` (or any k when exported with ``frames_per_step=None``) and one input
  ``state_i`` per carried state tensor; outputs ``estimate`` (1, 2, F, k) and ``new_state_i``.
  All state is explicit: feed the ``new_state_i`` of one call as the ``state_i`` of the next,
  starting from zeros (:func:`initial_state`). The states are the past frames of every causal
  convolution, float32 (1, C, span[, F']), and the running (count, sum, sum of squares) of
  every cumulative instance norm, float64 (1, C, 3): float64 exports and runs in ONNX
  Runtime, so it is kept, and long streams stay exact as in PyTorch.
  :class:`OnnxStreamingEnhancer` is :class:`~gagnet.streaming.StreamingEnhancer` with the
  network call replaced by the ONNX step: same framing, overlap-add, ``process``/``flush``/
  ``reset`` and ``latency_samples`` (one window, plus ``k - 1`` hops when ``k > 1`` frames
  must be gathered before a step can run).

Every exported file carries its configuration in the ONNX metadata (``gagnet.config``, JSON),
so the runners need nothing but the file, and the attenuation limit the model file named
(``gagnet.atten_lim_db``; the runners expose it as ``atten_lim_db``; ``gagnet stream`` applies
it, the graph itself never does). The graphs are traced with torch's TorchScript
exporter (``dynamo=False``), which needs no ``onnxscript``.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from . import dsp
from .attenuation import floor_gain
from .config import PRESETS, GaGNetConfig
from .model.gagnet import GaGNet
from .model.wave import WaveGaGNet
from .np_framing import NumpyFraming
from .ort_ops import ort_friendly
from .streaming import NotCausalError, StreamingEnhancer, get_state, set_state, set_streaming

log = logging.getLogger(__name__)

#: ONNX metadata keys written by the exporters.
META_GRAPH = "gagnet.graph"  # "offline" or "streaming"
META_CONFIG = "gagnet.config"  # GaGNetConfig.to_dict() as JSON
META_FRAMES = "gagnet.frames_per_step"  # an integer, or "dynamic"
META_LATENCY = "gagnet.latency_samples"
META_ATTEN = "gagnet.atten_lim_db"  # the attenuation limit the model file named, in dB (absent: none)
META_PRECISION = "gagnet.precision"  # "int8" for a graph with int8 weights (absent: float32)

#: Weight precisions of the fast streaming step: float32, or int8 (:mod:`gagnet.quantize`).
PRECISIONS = ("fp32", "int8")

DEFAULT_OPSET = 17


class ExportError(ValueError):
    """A graph that cannot be exported or a file that is not a gagnet ONNX graph (one line)."""


# --------------------------------------------------------------------------- modules traced
def _gagnet(model: WaveGaGNet | GaGNet) -> GaGNet:
    if isinstance(model, WaveGaGNet):
        return model.net
    if isinstance(model, GaGNet):
        return model
    raise TypeError(f"expected a WaveGaGNet or GaGNet, got {type(model).__name__}")


class _OfflineGraph(nn.Module):
    """Compressed spectrum -> last-stage estimate, no state."""

    def __init__(self, net: GaGNet) -> None:
        super().__init__()
        self.net = ort_friendly(copy.deepcopy(net).eval())
        set_streaming(self.net, False)

    def forward(self, spec: Tensor) -> Tensor:
        return self.net(spec)[-1]


def _probe_state(net: GaGNet) -> tuple[int, list[int], list[Tensor]]:
    """Run one dummy frame through a streaming copy of ``net``.

    Returns the number of stateful layers, the indices of those that carry a state (a
    zero-span pad keeps none) and zero tensors of the shapes and dtypes of their states.
    """
    probe = copy.deepcopy(net).eval()
    set_streaming(probe, True)
    with torch.no_grad():
        probe(torch.zeros(1, 2, net.cfg.n_freq, 1))
    state = get_state(probe)
    slots = [i for i, s in enumerate(state) if s is not None]
    return len(state), slots, [torch.zeros_like(state[i]) for i in slots]


class _StepGraph(nn.Module):
    """One streaming step with explicit state: (spec, *state) -> (estimate, *new_state)."""

    def __init__(self, net: GaGNet) -> None:
        super().__init__()
        self.n_layers, self.slots, self.zeros = _probe_state(net)
        self.net = ort_friendly(copy.deepcopy(net).eval())
        set_streaming(self.net, True)

    def forward(self, spec: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        full: list[Tensor | None] = [None] * self.n_layers
        for i, s in zip(self.slots, state):
            full[i] = s
        set_state(self.net, full)  # each layer's .cache comes from the graph inputs
        est = self.net(spec)[-1]
        new = get_state(self.net)
        set_state(self.net, [None] * self.n_layers)
        return (est, *(new[i] for i in self.slots))


# --------------------------------------------------------------------------- export
def _write(module: nn.Module, args: tuple[Tensor, ...], path: str | os.PathLike, opset: int,
           input_names: list[str], output_names: list[str], dynamic_axes: dict[str, dict[int, str]] | None,
           meta: dict[str, str]) -> Path:
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # legacy-exporter deprecation and constant-folding notes
            torch.onnx.export(
                module, args, str(tmp), dynamo=False, opset_version=opset, input_names=input_names,
                output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True,
            )
        proto = onnx.load(str(tmp))
        onnx.helper.set_model_props(proto, meta)
        proto.doc_string = "GaGNet speech enhancement, spectrum in / spectrum out (see gagnet.export)"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_offline(model: WaveGaGNet | GaGNet, path: str | os.PathLike, opset: int = DEFAULT_OPSET,
                   atten_lim_db: float | None = None) -> Path:
    """Write the network as an ONNX graph on compressed spectra; returns the path.

    ``atten_lim_db`` (the limit a model file names) is stored as metadata for the runners;
    the graph itself is the network alone.

    Input ``spec`` (B, 2, F, T) -- ``dsp.compress(dsp.stft(wave))``, F = ``cfg.n_freq`` --
    and output ``estimate`` (B, 2, F, T), the last stage; B and T are dynamic. The STFT,
    compression and iSTFT are not in the graph (see :class:`OnnxOfflineEnhancer`). Any
    configuration exports, causal or not.
    """
    net = _gagnet(model)
    cfg = net.cfg
    example = torch.zeros(1, 2, cfg.n_freq, 16)
    meta = {META_GRAPH: "offline", META_CONFIG: json.dumps(cfg.to_dict()), **_limit_meta(atten_lim_db)}
    return _write(_OfflineGraph(net), (example,), path, opset, ["spec"], ["estimate"],
                  {"spec": {0: "batch", 3: "frames"}, "estimate": {0: "batch", 3: "frames"}}, meta)


def export_streaming(model: WaveGaGNet | GaGNet, path: str | os.PathLike, frames_per_step: int | None = 1,
                     opset: int = DEFAULT_OPSET, fast: bool = False, atten_lim_db: float | None = None,
                     precision: str = "fp32") -> Path:
    """Write one streaming step of a causal network as an ONNX graph with explicit state.

    Inputs ``spec`` (1, 2, F, ``frames_per_step``) and ``state_0`` ... ``state_{n-1}``;
    outputs ``estimate`` (1, 2, F, ``frames_per_step``) and ``new_state_0`` ... (same shapes
    and dtypes as the inputs). ``frames_per_step=None`` leaves the frame axis dynamic (any
    number of frames per call). Start from :func:`initial_state`. Raises
    :class:`~gagnet.streaming.NotCausalError` for configurations that look at the future.

    ``fast=True`` exports :class:`~gagnet.fast_step.FastStep` instead (one frame per step only,
    norms "cin" or "bn"): the same contract and output, with a different, smaller state
    layout (one float64 mean and variance vector for all encoder norms and one for all S-TCM
    norms) and several times fewer operations per step; :class:`OnnxStreamingEnhancer` runs
    either. ``gagnet export --streaming --fast`` writes it. ``precision="int8"`` (fast step
    only) stores its matrix products with int8 weights (:func:`gagnet.quantize.quantize_int8`:
    a quarter of the bytes, an error of about -30 dB against float32).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "fp32" and not fast:
        raise ValueError("int8 weights are offered for the fast streaming step only (fast=True)")
    net = _gagnet(model)
    cfg = net.cfg
    if not cfg.causal:
        raise NotCausalError(
            f"config {cfg.name!r} (norm={cfg.norm!r}, causal_conv={cfg.causal_conv}) looks at future frames "
            "and cannot stream; export it with export_offline, or use a causal configuration such as 'causal'"
        )
    if frames_per_step is not None and (int(frames_per_step) != frames_per_step or frames_per_step < 1):
        raise ValueError(f"frames_per_step must be a positive integer or None, got {frames_per_step!r}")
    if fast:
        from .fast_step import FastStep

        if frames_per_step != 1:
            raise ValueError("the fast streaming step takes exactly one frame per step (frames_per_step=1)")
        step: nn.Module = FastStep(net).eval()
        zeros = step.initial_state()
    else:
        step = _StepGraph(net)
        zeros = step.zeros
    k = 1 if frames_per_step is None else int(frames_per_step)
    n = len(zeros)
    inputs = ["spec"] + [f"state_{i}" for i in range(n)]
    outputs = ["estimate"] + [f"new_state_{i}" for i in range(n)]
    dynamic = {"spec": {3: "frames"}, "estimate": {3: "frames"}} if frames_per_step is None else None
    delay = 0 if frames_per_step is None else k - 1
    meta = {
        META_GRAPH: "streaming",
        META_CONFIG: json.dumps(cfg.to_dict()),
        META_FRAMES: "dynamic" if frames_per_step is None else str(k),
        META_LATENCY: str(cfg.latency_samples + delay * cfg.hop_length),
        **_limit_meta(atten_lim_db),
    }
    example = (torch.zeros(1, 2, cfg.n_freq, k), *zeros)
    if precision == "fp32":
        return _write(step, example, path, opset, inputs, outputs, dynamic, meta)
    from .quantize import quantize_int8

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.f32.tmp")
    try:
        _write(step, example, tmp, opset, inputs, outputs, dynamic, {**meta, META_PRECISION: precision})
        quantize_int8(tmp, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_fast_encoder(model: WaveGaGNet | GaGNet, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Write the encoder part of the fast step (:class:`~gagnet.fast_step.FastStep` with
    ``encoder_only``; causal batch-norm configs): inputs ``spec`` (1, 2, F, 1) and ``state_i``,
    outputs ``features`` (1, d_feat) and ``new_state_i``. :mod:`gagnet.native` runs the stages."""
    from .fast_step import FastStep

    net = _gagnet(model)
    step = FastStep(net, encoder_only=True).eval()
    zeros = step.initial_state()
    n = len(zeros)
    meta = {META_GRAPH: "fast-encoder", META_CONFIG: json.dumps(net.cfg.to_dict())}
    return _write(step, (torch.zeros(1, 2, net.cfg.n_freq, 1), *zeros), path, opset,
                  ["spec"] + [f"state_{i}" for i in range(n)], ["features"] + [f"new_state_{i}" for i in range(n)],
                  None, meta)


# --------------------------------------------------------------------------- runtime
def bind_state_pairs(session: Any, inputs: dict[str, np.ndarray],
                     outputs: dict[str, np.ndarray]) -> tuple[list[list[np.ndarray]], list[Any]]:
    """Two sets of zero state buffers and two ONNX Runtime I/O bindings of a streaming graph.

    Binding p reads ``state_i`` from set p and writes ``new_state_i`` into set 1 - p, so the
    sets are used in turn and a step allocates nothing; ``inputs`` and ``outputs`` (name ->
    buffer) are bound in both. Returns ``(sets, bindings)``.
    """
    import onnxruntime as ort

    names = [i.name for i in session.get_inputs() if i.name.startswith("state_")]
    zeros = initial_state(session)
    sets = [[z.copy() for z in zeros] for _ in range(2)]
    bindings = []
    for parity in range(2):
        b = session.io_binding()
        for name, buf in inputs.items():
            b.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(buf))
        for name, buf in outputs.items():
            b.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(buf))
        for i, name in enumerate(names):
            b.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(sets[parity][i]))
            b.bind_ortvalue_output("new_" + name, ort.OrtValue.ortvalue_from_numpy(sets[1 - parity][i]))
        bindings.append(b)
    return sets, bindings


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}


def make_session(path: str | os.PathLike, threads: int | None = None, profile: bool = False,
                 low_memory: bool = False) -> Any:
    """An ONNX Runtime CPU session; ``threads`` sets the intra-op thread count (None: ORT's default).

    ``low_memory`` turns off ONNX Runtime's memory pattern planning, which otherwise keeps one
    preallocated block per input shape (about a quarter less peak memory on long blocks).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if low_memory:
        opts.enable_mem_pattern = False
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    if profile:
        opts.enable_profiling = True
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise ExportError(f"{path}: cannot load the ONNX graph ({' '.join(str(e).split())[:200]})") from None


def _limit_meta(atten_lim_db: float | None) -> dict[str, str]:
    if atten_lim_db is None:
        return {}
    floor_gain(atten_lim_db)  # ValueError for a bad limit
    return {META_ATTEN: repr(float(atten_lim_db))}


def _limit_of(meta: dict[str, str]) -> float | None:
    """The attenuation limit a graph's metadata names (None: none)."""
    if META_ATTEN not in meta:
        return None
    try:
        db = float(meta[META_ATTEN])
        floor_gain(db)
    except ValueError:
        raise ExportError(f"invalid {META_ATTEN} metadata {meta[META_ATTEN]!r}") from None
    return db


def _as_session(source: Any, threads: int | None) -> Any:
    return make_session(source, threads) if isinstance(source, (str, os.PathLike)) else source


def _meta(session: Any, want: str) -> tuple[GaGNetConfig, dict[str, str]]:
    meta = dict(session.get_modelmeta().custom_metadata_map)
    graph = meta.get(META_GRAPH)
    if graph is None or META_CONFIG not in meta:
        raise ExportError("not a gagnet ONNX graph (no gagnet.config metadata); export it with gagnet.export")
    if graph != want:
        raise ExportError(f"this is a gagnet {graph} graph, a {want} graph is needed")
    try:
        cfg = GaGNetConfig.from_dict(json.loads(meta[META_CONFIG]))
    except (TypeError, ValueError) as e:
        raise ExportError(f"invalid gagnet.config metadata ({e})") from None
    return cfg, meta


def initial_state(source: str | os.PathLike | WaveGaGNet | GaGNet | Any) -> list[np.ndarray]:
    """Zero states for the streaming graph: one array per ``state_i`` input, in order.

    ``source``: an exported streaming graph (path or onnxruntime session; shapes and dtypes
    are read from its inputs) or the PyTorch model it was exported from.
    """
    if isinstance(source, (WaveGaGNet, GaGNet)):
        return [z.numpy() for z in _probe_state(_gagnet(source))[2]]
    session = _as_session(source, None)
    out = []
    for inp in session.get_inputs():
        if not inp.name.startswith("state_"):
            continue
        if not all(isinstance(d, int) for d in inp.shape) or inp.type not in _ORT_DTYPES:
            raise ExportError(f"state input {inp.name} has no fixed shape and float type ({inp.shape}, {inp.type})")
        out.append(np.zeros(inp.shape, dtype=_ORT_DTYPES[inp.type]))
    return out


class OnnxOfflineEnhancer:
    """Run an :func:`export_offline` graph on 16 kHz waves.

    The STFT, compression, inverse compression and iSTFT run on the host with the
    functions of :mod:`gagnet.dsp` (torch tensors), exactly as :class:`~gagnet.model.WaveGaGNet`.
    """

    def __init__(self, path: str | os.PathLike | Any, threads: int | None = None) -> None:
        self.session = _as_session(path, threads)
        self.cfg, meta = _meta(self.session, "offline")
        #: The attenuation limit the exported model named (dB; None: none). Not applied here.
        self.atten_lim_db = _limit_of(meta)

    def estimate(self, spec: np.ndarray) -> np.ndarray:
        """Compressed (B, 2, F, T) float32 -> last-stage estimate, same shape."""
        return self.session.run(["estimate"], {"spec": np.ascontiguousarray(spec, dtype=np.float32)})[0]

    def enhance(self, wave: np.ndarray) -> np.ndarray:
        """(N,) or (B, N) 16 kHz float32 -> enhanced, same shape and length."""
        x = torch.as_tensor(np.asarray(wave, dtype=np.float32))
        squeeze = x.dim() == 1
        if squeeze:
            x = x.unsqueeze(0)
        if x.dim() != 2:
            raise ValueError(f"expected (samples,) or (batch, samples), got shape {tuple(x.shape)}")
        cfg = self.cfg
        spec = dsp.compress(dsp.stft(x, cfg), cfg.compress)
        est = torch.from_numpy(self.estimate(spec.numpy()))
        y = dsp.istft(dsp.decompress(est, cfg.compress), cfg, x.shape[-1]).numpy()
        return y[0] if squeeze else y


class OnnxStreamingEnhancer(NumpyFraming, StreamingEnhancer):
    """:class:`~gagnet.streaming.StreamingEnhancer` whose network is an :func:`export_streaming` graph.

    Same interface and output (within float tolerance): ``process(chunk)`` returns as many
    samples as it gets, delayed by ``latency_samples``; ``flush()`` the rest; ``reset()``
    starts anew. Framing and overlap-add are those of the base class, run in numpy
    (:class:`~gagnet.np_framing.NumpyFraming`: a few microseconds per op where torch takes tens).
    ``source`` is a path or an onnxruntime session (share one between channels);
    ``threads`` sets ONNX Runtime's intra-op threads when a path is given (default 1: a
    10 ms step is a few thousand tiny kernels, which more threads only slow down).

    A graph with a fixed ``frames_per_step = k > 1`` runs once k frames have arrived, so
    ``latency_samples`` grows by ``(k - 1)`` hops; a dynamic graph runs whatever is ready.
    State and I/O buffers are bound once (ONNX Runtime I/O binding, two state sets used in
    turn), so a step allocates nothing.
    """

    engine = "onnx"

    def __init__(self, source: str | os.PathLike | Any, threads: int | None = 1) -> None:
        self.session = _as_session(source, threads)
        cfg, meta = _meta(self.session, "streaming")
        #: The attenuation limit the exported model named (dB; None: none). Not applied here.
        self.atten_lim_db = _limit_of(meta)
        #: Weight precision of the graph: "fp32" or "int8".
        self.precision = meta.get(META_PRECISION, "fp32")
        spec_in = next(i for i in self.session.get_inputs() if i.name == "spec")
        k = spec_in.shape[3]
        self.frames_per_step: int | None = k if isinstance(k, int) else None
        if meta.get(META_FRAMES) not in (None, "dynamic" if self.frames_per_step is None else str(k)):
            raise ExportError(f"frames_per_step metadata {meta.get(META_FRAMES)!r} does not match the graph ({k})")
        self._setup(cfg, "cpu", delay_frames=0 if self.frames_per_step is None else self.frames_per_step - 1)
        self._bind()
        self.reset()

    # -- I/O binding: two sets of state buffers used in turn, spec/estimate buffers fixed ----
    def _bind(self) -> None:
        f = self.cfg.n_freq
        k = self.frames_per_step or 1
        self._spec = np.zeros((1, 2, f, k), np.float32)
        self._est = np.zeros((1, 2, f, k), np.float32)
        fixed = self.frames_per_step is not None  # a dynamic frame count binds spec/estimate per step
        self._sets, self._bindings = bind_state_pairs(self.session, {"spec": self._spec} if fixed else {},
                                                      {"estimate": self._est} if fixed else {})
        self._parity = 0

    def _step(self, spec: np.ndarray) -> np.ndarray:
        """Run the graph once on (1, 2, F, k) and advance the state; returns the estimate."""
        b = self._bindings[self._parity]
        if self.frames_per_step is None:  # frame count changes from call to call
            import onnxruntime as ort

            est = np.empty(spec.shape, np.float32)
            b.bind_ortvalue_input("spec", ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(spec)))
            b.bind_ortvalue_output("estimate", ort.OrtValue.ortvalue_from_numpy(est))
        else:
            self._spec[...] = spec
            est = self._est
        self.session.run_with_iobinding(b)
        self._parity = 1 - self._parity
        return est.copy() if est is self._est else est

    @property
    def state(self) -> list[np.ndarray]:
        """The current carried state (copies), as fed to ``state_i`` on the next step."""
        return [s.copy() for s in self._sets[self._parity]]

    # -- the StreamingEnhancer hooks --------------------------------------------------------
    def _reset_net(self) -> None:
        for buf in self._sets[0] + self._sets[1]:
            buf.fill(0)
        self._parity = 0
        f = self.cfg.n_freq
        self._pending = np.zeros((1, 2, f, 0), np.float32)  # frames waiting for a full step
        self._queue = np.zeros((1, 2, f, self._delay_frames), np.float32)  # estimates not yet handed out

    def _estimate(self, spec: Tensor) -> Tensor:
        return torch.from_numpy(self._estimate_np(spec.detach().cpu().numpy()))

    def _estimate_np(self, x: np.ndarray) -> np.ndarray:
        if self.frames_per_step is None:
            return self._step(x)
        n, k = x.shape[3], self.frames_per_step
        pending = np.concatenate((self._pending, x), axis=3) if self._pending.shape[3] else x
        outs = [self._queue] if self._queue.shape[3] else []
        done = 0
        while pending.shape[3] - done >= k:
            outs.append(self._step(pending[..., done : done + k]))
            done += k
        self._pending = pending[..., done:]
        ready = np.concatenate(outs, axis=3) if len(outs) > 1 else outs[0]
        self._queue = ready[..., n:]
        return np.ascontiguousarray(ready[..., :n])


# --------------------------------------------------------------------------- CLI
def _err(msg: str) -> None:
    first = str(msg).strip().splitlines()[0] if str(msg).strip() else type(msg).__name__
    print(f"gagnet export: {' '.join(first.split())[:300]}", file=sys.stderr)


def load_for_cli(model: str | None, config: str | None, command: str) -> WaveGaGNet:
    """The model named by ``--model`` or, with random weights, by an explicit ``--config``.

    Raises ``ValueError`` (one line) when neither works.
    """
    from .pretrained import ModelError, load_model

    if model is not None and config is not None:
        raise ValueError("give either --model or --config, not both")
    if config is not None:
        if config not in PRESETS:
            raise ValueError(f"--config {config}: unknown; choose from {', '.join(sorted(PRESETS))}")
        print(f"gagnet {command}: warning: --config {config} gives a network with RANDOM weights "
              "(for testing and timing only); pass --model for a trained one", file=sys.stderr)
        return WaveGaGNet(config).eval()
    try:
        return load_model(model)
    except ModelError as e:
        raise ValueError(str(e)) from None


def cmd_export(args: argparse.Namespace) -> int:
    """``gagnet export``: 0 on success, 2 on any error (one line on stderr)."""
    try:
        if args.frames_per_step < 0:
            raise ValueError(f"--frames-per-step must be 0 (any) or positive, got {args.frames_per_step}")
        if args.frames_per_step != 1 and not args.streaming:
            raise ValueError("--frames-per-step applies to --streaming graphs only")
        if args.fast and not args.streaming:
            raise ValueError("--fast applies to --streaming graphs only")
        if args.fast and args.frames_per_step != 1:
            raise ValueError("--fast takes exactly one frame per step (--frames-per-step 1)")
        if args.int8 and not args.fast:
            raise ValueError("--int8 applies to the fast streaming step only (--streaming --fast)")
        model = load_for_cli(args.model, args.config, "export")
        from .pretrained import recommended_atten_lim

        limit = None if args.config is not None else recommended_atten_lim(args.model)
        out = Path(os.path.expanduser(args.onnx))
        if out.is_dir():
            raise ValueError(f"--onnx {out}: is a folder; give a file name such as model.onnx")
        if out.exists():
            src = None if args.model is None else Path(os.path.expanduser(args.model))
            if src is not None and src.exists() and os.path.samefile(out, src):
                raise ValueError(f"--onnx {out} is the model file being exported; give another name")
            if not args.overwrite:
                raise ValueError(f"--onnx {out} exists; --overwrite replaces it")
        if args.streaming:
            k = args.frames_per_step or None
            export_streaming(model, out, frames_per_step=k, opset=args.opset, fast=args.fast, atten_lim_db=limit,
                             precision="int8" if args.int8 else "fp32")
            n_state = len(initial_state(out))
            lat = model.cfg.latency_samples + (0 if k is None else k - 1) * model.cfg.hop_length
            kind = "streaming step" if not args.fast else "fast streaming step" + " with int8 weights" * args.int8
            what = (f"{kind}, {'any number of' if k is None else k} frame(s) per call, {n_state} state "
                    f"tensors, latency {lat} samples ({1000 * lat / model.cfg.sample_rate:g} ms)")
        else:
            export_offline(model, out, opset=args.opset, atten_lim_db=limit)
            what = "offline graph, spec (B, 2, F, T) -> estimate (B, 2, F, T)"
        if limit is not None:
            what += f"; the model's {limit:g} dB attenuation limit is in the metadata ({META_ATTEN}), not the graph"
    except (ValueError, OSError, RuntimeError) as e:  # NotCausalError and ExportError are ValueErrors
        _err(e)
        return 2
    print(f"gagnet export: wrote {out}: {what}", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    """Add ``export`` to the ``gagnet`` subcommands."""
    p = sub.add_parser(
        "export", help="export the network to ONNX (offline graph or streaming step)",
        description="Export GaGNet to ONNX. The graph is spectrum in, spectrum out: the STFT, power "
        "compression and iSTFT stay on the host (see gagnet.export). --streaming writes a single-step graph "
        "with all state as explicit inputs/outputs (causal models only).",
    )
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="output file")
    p.add_argument("--streaming", action="store_true", help="single-step streaming graph with explicit state")
    p.add_argument("--frames-per-step", type=int, default=1, metavar="K",
                   help="frames per streaming step (default 1 = 10 ms; 0 = any number per call)")
    p.add_argument("--fast", action="store_true",
                   help="with --streaming: export the fast single-frame step (gagnet.fast_step; causal models with "
                   "norm cin or bn, one frame per step): same output, a smaller state, several times faster")
    p.add_argument("--int8", action="store_true",
                   help="with --streaming --fast: int8 weights (matrix products in a quarter of the bytes, the file about 40 %% of float32's; about -30 dB error; see "
                   "gagnet.quantize)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="NAME|PATH", default=None,
                     help="shipped model name, or a model.pt / .ckpt from `gagnet train`")
    src.add_argument("--config", metavar="NAME", default=None,
                     help=f"preset ({', '.join(sorted(PRESETS))}) with RANDOM weights, for testing and timing")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --onnx file (never the model's own)")
    p.set_defaults(func=cmd_export)


def run_cli(argv: Sequence[str]) -> int:
    """Run ``gagnet export ...`` from an argument list (for tests)."""
    parser = argparse.ArgumentParser(prog="gagnet")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.func(args) or 0)


if __name__ == "__main__":  # python -m gagnet.export export ...
    sys.exit(run_cli(sys.argv[1:]))
