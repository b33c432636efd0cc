"""A single-frame streaming step of a causal GaGNet, rebuilt for speed from its weights.

:class:`FastStep` computes exactly what a streaming :class:`~gagnet.model.GaGNet` computes for
one STFT frame, with all state explicit, but in a form meant for ONNX Runtime (few, cheap
nodes) and for eager or compiled PyTorch:

* everything is 1-D: one frame of the 2-D encoder is (1, C, F) and its causal gated convs
  become 1-D convs over ``[past frames; current frame]`` stacked along channels; the S-TCM
  part is (1, channels, 1);
* in each glance-gaze module the parallel work runs as one op: the four gated input convs
  (glance and gaze, main and gate) are one conv, the three S-TCM stacks (glance, gaze real,
  gaze imaginary) are grouped convs with ``groups=3`` (weights reordered exactly), and the
  gain and both residual outputs are one grouped conv;
* the cumulative instance norm is its single-frame recursion: each norm carries its running
  moments ``[mean; E[x^2]]`` (2, C), all norms share one decayed frame count ``n`` (1,), and
  the update is one tiny matrix product with coefficients computed once per step, followed by
  a batch norm op fed with that mean and variance (its affine part included). With
  ``cin_tau`` set the moments forget the past, so float32 is exact enough over any length;
  without decay they are kept in float64.

Supported: causal configurations with ``norm`` "cin" or "bn". Any trained checkpoint of such
a configuration works: nothing about the weights format changes.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .config import GaGNetConfig
from .model.encoder import ConvBlock, GatedConv2d
from .model.gagnet import GaGNet
from .model.norm import CumulativeInstanceNorm
from .model.stcm import SqueezedTCM
from .streaming import NotCausalError, StreamingEnhancer

#: Norms the fast step implements.
FAST_NORMS = ("cin", "bn")


def fast_step_supported(cfg: GaGNetConfig) -> bool:
    """True when :class:`FastStep` can be built for ``cfg``."""
    return cfg.causal and cfg.norm in FAST_NORMS


def _col(v: Tensor) -> Tensor:
    """(C,) -> (1, C, 1) float32, for per-channel ops on (1, C, L) tensors."""
    return v.detach().float().reshape(1, -1, 1).clone()


class _Norm(nn.Module):
    """One norm site (possibly several norms side by side), single frame, (1, C, L) -> (1, C, L).

    ``bn``: the fixed eval-mode batch norm. ``cin``: the state (2, C) holds the moments of the
    frames so far, ``[mean; E[x^2]]`` (zeros at the start of a stream), with the prior's
    pseudo-frames included. One step is a small matrix product: with the frame's per-channel
    sums ``s1 = sum x``, ``s2 = sum x^2`` over its L bins,
    ``new = coef @ [s1; s2; state; 1]``, where ``coef`` (2, 5) is
    ``[[b, 0, a, 0, 0], [0, b, 0, a, d]]`` and the scalars ``a``, ``b``, ``d`` of this step come
    from the shared decayed frame count (:meth:`FastStep.coefficients`). The output is then a
    batch norm with this mean and variance ``E[x^2] - mean^2``.
    """

    def __init__(self, norms: list[nn.Module], stats_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.kind = "cin" if isinstance(norms[0], CumulativeInstanceNorm) else "bn"
        self.register_buffer("weight", torch.cat([n.weight.detach() for n in norms]).float())
        self.register_buffer("bias", torch.cat([n.bias.detach() for n in norms]).float())
        if self.kind == "bn":
            self.register_buffer("mean", torch.cat([n.running_mean for n in norms]).float())
            self.register_buffer("var", torch.cat([n.running_var for n in norms]).float())
            self.eps = float(norms[0].eps)
            return
        self.eps = float(norms[0].eps)
        self.register_buffer("ones", torch.ones(1, self.weight.numel(), dtype=stats_dtype))

    def forward(self, x: Tensor, state: Tensor | None, coef: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """``x`` (1, C, L), ``state`` (2, C), ``coef`` (2, 5) of this step -> y (1, C, L), new state (2, C)."""
        if self.kind == "bn":
            return F.batch_norm(x, self.mean, self.var, self.weight, self.bias, False, 0.0, self.eps), None
        if x.shape[2] == 1:
            s1 = x.reshape(1, -1)
            s2 = s1 * s1
        else:
            s1, s2 = x.sum(2), (x * x).sum(2)
        if state.dtype != x.dtype:
            s1, s2 = s1.to(state.dtype), s2.to(state.dtype)
        new = torch.matmul(coef, torch.cat((s1, s2, state, self.ones), dim=0))
        mean, var = new[0], new[1] - new[0] * new[0]
        if var.dtype != x.dtype:
            mean, var = mean.to(x.dtype), var.to(x.dtype)
        return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps), new


class _Block(nn.Module):
    """A ConvBlock of the encoder for one frame: conv (gated or not), norm, PReLU.

    ``span`` past frames of the input are carried (gated convs with time kernel > 1).
    """

    def __init__(self, block: ConvBlock, stats_dtype: torch.dtype) -> None:
        super().__init__()
        layer = block.conv
        self.gated = isinstance(layer, GatedConv2d)
        conv = layer.conv if self.gated else layer
        w = conv.weight.detach()
        if isinstance(conv, nn.ConvTranspose2d):  # (Cin, Cout, 1, kf)
            self.transposed = True
            self.span = 0
            self.weight = nn.Parameter(w[:, :, 0].clone(), requires_grad=False)
        else:  # (Cout, Cin, kt, kf) -> (Cout, kt * Cin, kf), channel blocks oldest frame first
            self.transposed = False
            kt = w.shape[2]
            self.span = kt - 1
            self.weight = nn.Parameter(w.permute(0, 2, 1, 3).reshape(w.shape[0], -1, w.shape[3]).clone(),
                                       requires_grad=False)
        self.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        self.stride = conv.stride[1]
        self.cin = w.shape[0] if self.transposed else w.shape[1]
        self.cout = self.bias.shape[0] // (2 if self.gated else 1)
        self.kf = w.shape[3]
        self.norm = _Norm([block.norm], stats_dtype)
        self.prelu = nn.Parameter(block.act.weight.detach().clone(), requires_grad=False)

    def out_bins(self, f: int) -> int:
        """Output bins for ``f`` input bins."""
        return (f - 1) * self.stride + self.kf if self.transposed else (f - self.kf) // self.stride + 1

    def forward(self, x: Tensor, pad: Tensor | None, nstate: Tensor | None,
                coef: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(1, Cin, F) -> (1, Cout, F'), with the new past frames (1, span*Cin, F) and norm state."""
        new_pad = None
        if self.transposed:
            h = F.conv_transpose1d(x, self.weight, self.bias, stride=self.stride)
        else:
            if self.span:
                win = torch.cat((pad, x), dim=1)
                new_pad = win[:, self.cin :]
            else:
                win = x
            h = F.conv1d(win, self.weight, self.bias, stride=self.stride)
        if self.gated:
            m, g = h.chunk(2, dim=1)
            h = m * torch.sigmoid(g)
        h, new_n = self.norm(h, nstate, coef)
        return F.prelu(h, self.prelu), new_pad, new_n


class _BatchedSTCM(nn.Module):
    """S parallel S-TCMs (one per stack) as grouped convs on (1, S * d_feat, 1)."""

    def __init__(self, layers: list[SqueezedTCM], stats_dtype: torch.dtype) -> None:
        super().__init__()
        s = len(layers)
        self.groups = s
        self.dilation = layers[0].dilation
        self.span = (layers[0].dconv.kernel_size[0] - 1) * self.dilation
        cat = lambda name: torch.cat([getattr(m, name).weight.detach() for m in layers])  # noqa: E731
        self.squeeze = nn.Parameter(cat("squeeze"), requires_grad=False)  # (S*cd1, d_feat, 1)
        self.act1 = nn.Parameter(cat("act1"), requires_grad=False)
        self.norm1 = _Norm([m.norm1 for m in layers], stats_dtype)
        self.dconv = nn.Parameter(cat("dconv"), requires_grad=False)  # (S*cd1, cd1, kd1)
        self.act2 = nn.Parameter(cat("act2"), requires_grad=False)
        self.norm2 = _Norm([m.norm2 for m in layers], stats_dtype)
        self.expand = nn.Parameter(cat("expand"), requires_grad=False)  # (S*d_feat, cd1, 1)

    def forward(self, x: Tensor, pad: Tensor, n1: Tensor | None, n2: Tensor | None,
                coef: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """x (1, S*d_feat, 1), pad (1, S*cd1, span) past dconv inputs -> x', pad', norm states."""
        g = self.groups
        h = F.prelu(F.conv1d(x, self.squeeze, groups=g), self.act1)
        h, n1 = self.norm1(h, n1, coef)
        win = torch.cat((pad, h), dim=2)
        h = F.conv1d(win, self.dconv, dilation=self.dilation, groups=g)
        h, n2 = self.norm2(F.prelu(h, self.act2), n2, coef)
        return x + F.conv1d(h, self.expand, groups=g), win[:, :, 1:], n1, n2


class _Stage(nn.Module):
    """One glance-gaze module for one frame: (1, d_feat, 1) features, (1, 2, F, 1) previous -> refined."""

    def __init__(self, stage: nn.Module, cfg: GaGNetConfig, stats_dtype: torch.dtype) -> None:
        super().__init__()
        gl, gz = stage.glance, stage.gaze
        d = cfg.d_feat
        convs = [gl.inp.main, gz.inp.main, gl.inp.gate, gz.inp.gate]
        self.inp = nn.Parameter(torch.cat([c.weight.detach() for c in convs]), requires_grad=False)
        self.inp_bias = nn.Parameter(torch.cat([c.bias.detach() for c in convs]), requires_grad=False)
        # stacks: glance, gaze real, gaze imaginary (a squeezed gaze's one stack serves both)
        stacks = [gl.tcm, gz.tcm, gz.tcm] if gz.shared else [gl.tcm, gz.tcm_real, gz.tcm_imag]
        layers = [[m for group in st for m in group] for st in stacks]
        self.tcms = nn.ModuleList(_BatchedSTCM(list(ms), stats_dtype) for ms in zip(*layers))
        self.register_buffer("pick", torch.cat((torch.arange(2 * d), torch.arange(d, 2 * d))))
        outs = [gl.gain, gz.out_real, gz.out_imag]
        self.out = nn.Parameter(torch.cat([c.weight.detach() for c in outs]), requires_grad=False)
        self.out_bias = nn.Parameter(torch.cat([c.bias.detach() for c in outs]), requires_grad=False)
        self.act = gl.act
        self.n_freq = cfg.n_freq

    def forward(self, feat: Tensor, prev: Tensor, state: list[Tensor | None],
                coef: Tensor | None) -> tuple[Tensor, list[Tensor | None]]:
        """``state``: per S-TCM position (dconv pad, norm1, norm2); returns the estimate and the new state."""
        x = torch.cat((feat, prev.reshape(1, -1, 1)), dim=1)
        m, g = F.conv1d(x, self.inp, self.inp_bias).chunk(2, dim=1)
        h = (m * torch.sigmoid(g)).index_select(1, self.pick)  # (1, 3*d_feat, 1)
        new: list[Tensor | None] = []
        for i, tcm in enumerate(self.tcms):
            h, pad, n1, n2 = tcm(h, state[3 * i], state[3 * i + 1], state[3 * i + 2], coef)
            new += [pad, n1, n2]
        o = F.conv1d(h, self.out, self.out_bias, groups=3).reshape(1, 3, self.n_freq, 1)
        gain, res = o.split((1, 2), dim=1)
        return self.act(gain) * prev + res, new


class FastStep(nn.Module):
    """One frame of a causal GaGNet: ``(spec, *state) -> (estimate, *new_state)``.

    ``spec`` and ``estimate`` are (1, 2, F, 1) compressed real/imag spectra (the last stage's
    estimate); the state tensors are listed by :meth:`initial_state` (all zeros at the start of
    a stream). Built from the weights of ``net``, which is left untouched.
    """

    def __init__(self, net: GaGNet) -> None:
        super().__init__()
        cfg = net.cfg
        if not cfg.causal:
            raise NotCausalError(f"config {cfg.name!r} looks at future frames and cannot stream")
        if cfg.norm not in FAST_NORMS:
            raise ValueError(f"the fast step supports norm in {FAST_NORMS}, not {cfg.norm!r}")
        self.cfg = cfg
        enc = net.encoder
        blocks: list[ConvBlock] = []
        self.unet_layout: list[int] = []  # depth of each encoder layer's UNet
        for layer in enc.layers:
            blocks.append(layer.entry)
            blocks += list(layer.unet.down) + list(layer.unet.up)
            self.unet_layout.append(len(layer.unet.down))
        blocks.append(enc.exit)
        self.skip_cat = cfg.skip == "cat"
        self.cin = cfg.norm == "cin"
        self.decay = math.exp(-1.0 / cfg.cin_tau) if cfg.cin_tau else 1.0
        self.prior = float(cfg.cin_prior)
        # statistics that forget (cin_tau) fit float32; plain cumulative ones are kept in float64
        self.stats_dtype = torch.float32 if self.decay < 1.0 else torch.float64
        self.blocks = nn.ModuleList(_Block(b, self.stats_dtype) for b in blocks)
        self.stages = nn.ModuleList(_Stage(s, cfg, self.stats_dtype) for s in net.stages)
        sel = torch.zeros(3, 2, 5, dtype=self.stats_dtype)  # where a, d and b go in coef (see _Norm)
        sel[0, 0, 2] = sel[0, 1, 3] = 1.0
        sel[1, 1, 4] = 1.0
        sel[2, 0, 0] = sel[2, 1, 1] = 1.0
        self.register_buffer("sel", sel)
        self._zeros = self._probe()

    def coefficients(self, n: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The norms' step scalars from the decayed frame count ``n`` (1,) of the frames so far.

        Returns the new count, the (2, 5) part of every norm's ``coef`` that does not depend on
        its bin count L, and the part to divide by L. With ``m = n + prior`` before and
        ``m' = decay * n + 1 + prior`` after this frame: ``a = decay * m / m'`` scales the old
        moments, ``b = 1 / (L m')`` the frame's sums, and ``d = prior / m' - a (prior / m - [n = 0])``
        moves the prior's undecayed share of the second moment (the state starts at zero, where
        the prior alone would give a second moment of 1: hence the first-frame term).
        """
        p = self.prior
        new_n = n * self.decay + 1.0
        m, m2 = n + p, new_n + p
        a = self.decay * m / m2
        d = p / m2 - a * (p / m - (n == 0).to(n.dtype))
        return new_n, a * self.sel[0] + d * self.sel[1], self.sel[2] / m2

    # -- state layout ------------------------------------------------------------------------
    def _probe(self) -> list[Tensor]:
        """Zero states, of the shapes one frame run without state asks for."""
        with torch.no_grad():
            outs = self._run(torch.zeros(1, 2, self.cfg.n_freq, 1), None)
        return [torch.zeros_like(s) for s in outs[1:]]

    def initial_state(self) -> list[Tensor]:
        """Zero state tensors (a new stream), in the order of ``forward``'s ``*state``."""
        return [z.clone() for z in self._zeros]

    # -- the step ---------------------------------------------------------------------------
    def forward(self, spec: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        """(1, 2, F, 1) spectrum and state -> (1, 2, F, 1) estimate and the new state."""
        return self._run(spec, list(state))

    def _run(self, spec: Tensor, state: list[Tensor] | None) -> tuple[Tensor, ...]:
        """The step; with ``state=None`` every state starts as zeros of the shape it needs."""
        it = iter(state) if state is not None else None
        new: list[Tensor] = []

        def take(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> Tensor:
            return next(it) if it is not None else torch.zeros(shape, dtype=dtype)

        stats = self.stats_dtype
        if self.cin:
            n = take((1,), stats)
            new_n, base, per_bin = self.coefficients(n)
            new.append(new_n)
        coefs: dict[int, Tensor] = {}

        def block(i: int, x: Tensor) -> Tensor:
            b = self.blocks[i]
            pad = take((1, b.span * x.shape[1], x.shape[2])) if b.span else None
            ns = take((2, b.cout), stats) if self.cin else None
            bins = b.out_bins(x.shape[2])
            if self.cin and bins not in coefs:
                coefs[bins] = base + per_bin * (1.0 / bins)
            y, new_pad, new_ns = b(x, pad, ns, coefs.get(bins))
            new.extend(s for s in (new_pad, new_ns) if s is not None)
            return y

        x = spec[..., 0]  # (1, 2, F): one frame of the encoder's (B, 2, T, F)
        i = 0
        for depth in self.unet_layout:
            x = block(i, x)
            h, skips = x, []
            for j in range(depth):
                h = block(i + 1 + j, h)
                skips.append(h)
            for j in range(depth):
                if j > 0:
                    s = skips[-(j + 1)]
                    h = torch.cat((h, s), dim=1) if self.skip_cat else h + s
                h = block(i + 1 + depth + j, h)
            x = x + h
            i += 1 + 2 * depth
        feat = block(i, x).reshape(1, -1, 1)  # (1, c_end * feat_bins, 1), channel-major as offline
        prev = spec
        c = 3 * self.cfg.cd1
        for stage in self.stages:
            st: list[Tensor | None] = []
            for tcm in stage.tcms:
                st.append(take((1, c, tcm.span)))
                st += [take((2, c), stats), take((2, c), stats)] if self.cin else [None, None]
            if self.cin and 1 not in coefs:
                coefs[1] = base + per_bin
            prev, st_new = stage(feat, prev, st, coefs.get(1))
            new.extend(s for s in st_new if s is not None)
        return (prev, *new)


class FastStreamingEnhancer(StreamingEnhancer):
    """:class:`~gagnet.streaming.StreamingEnhancer` running a :class:`FastStep` in PyTorch.

    Same interface and output; ``compile=True`` wraps the step in ``torch.compile`` (the first
    frame then takes a minute or so to compile).
    """

    def __init__(self, model: nn.Module, compile: bool = False) -> None:
        net = getattr(model, "net", model)
        self.step = FastStep(net).eval()
        self._fn = torch.compile(self.step, fullgraph=True, dynamic=False) if compile else self.step
        self._setup(net.cfg, "cpu")
        self.reset()

    def _reset_net(self) -> None:
        self._state = self.step.initial_state()

    def _estimate(self, spec: Tensor) -> Tensor:
        outs = []
        for t in range(spec.shape[3]):
            res = self._fn(spec[..., t : t + 1], *self._state)
            outs.append(res[0])
            self._state = list(res[1:])
        return torch.cat(outs, dim=3)
