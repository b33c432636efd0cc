"""A single-frame streaming step of a causal GaGNet, rebuilt for speed from its weights.

:class:`FastStep` computes exactly what a streaming :class:`~gagnet.model.GaGNet` computes for
one STFT frame, with all state explicit, but in a form meant for ONNX Runtime (few, cheap
nodes) and for eager or compiled PyTorch:

* one frame of the 2-D encoder is (F, C), bins by channels, and every encoder conv is a
  gather of the rows its taps read plus one matrix product with a constant (taps * Cin, Cout)
  weight (see :class:`_Block`), which ONNX Runtime packs once; causal gated convs read
  ``[past frames, current frame]`` side by side along channels;
* in each glance-gaze module the parallel work runs as one op: the four gated input convs
  (glance and gaze, main and gate) are one matrix product, the three S-TCM stacks (glance,
  gaze real, gaze imaginary) run side by side as (3, 1, channels) with every 1x1 and dilated
  conv one batched matrix product of constant (3, in, out) weights (ONNX Runtime's Conv on a
  single frame cost up to three times as much), and the gain and both residual outputs are
  one batched product;
* batch norms (``bn``) are per-channel affine maps folded into the products next to them;
* the past inputs of every dilated conv of every stage are one state tensor
  (:class:`_TcmWindows`): one gather per frame reads all past taps, one gather writes the
  next state;
* every cumulative instance norm is its single-frame recursion, and all norm sites of a kind
  share one state: the running mean and variance of every channel of every encoder site
  (:class:`_BinNorms`) and of every S-TCM site (:class:`_TcmNorms`), plus one decayed frame
  count ``n`` (1,). What depends on the old state only is computed for all sites at once;
  per site a frame then costs a handful of small ops and one batch-norm op. The state is kept
  in float64 (a float32 state drifts over long streams); the per-site work is float32.

Supported: causal configurations with ``norm`` "cin" (with ``cin_prior > 0``) or "bn". Any
trained checkpoint of such a configuration works: nothing about the weights format changes.
"""
from __future__ import annotations

import math
from collections.abc import Callable

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
    return cfg.causal and cfg.norm in FAST_NORMS and (cfg.norm != "cin" or cfg.cin_prior > 0)


def _unit(slope: Tensor) -> bool:
    """True when every PReLU slope is in [0, 1], where ``max(h, w h)`` is exact."""
    return bool(((slope >= 0) & (slope <= 1)).all())


def _prelu(h: Tensor, slope: Tensor, unit: bool) -> Tensor:
    """PReLU with slopes broadcast over ``h``'s last dim, as ``max(h, w h)`` when every slope is in
    [0, 1] (``unit``, see :func:`_unit`), else ``relu(h) + w min(h, 0)``: ONNX Runtime's PRelu
    broadcasts the slopes element by element, at several times the cost."""
    if unit:
        return torch.maximum(h, h * slope)
    return torch.relu(h) + slope * torch.clamp(h, max=0.0)


class _Norm(nn.Module):
    """The parameters of one norm site (possibly several norms side by side, concatenated).

    Called on a frame (1, C, L) it applies the fixed eval-mode batch norm (``bn``); the
    cumulative norms (``cin``) are applied by :class:`_BinNorms` and :class:`_TcmNorms`,
    which hold the state of all sites and use ``weight``, ``bias`` and ``eps`` from here.
    """

    def __init__(self, norms: list[nn.Module]) -> None:
        super().__init__()
        self.kind = "cin" if isinstance(norms[0], CumulativeInstanceNorm) else "bn"
        self.eps = float(norms[0].eps)
        self.register_buffer("weight", torch.cat([n.weight.detach() for n in norms]).float())
        self.register_buffer("bias", torch.cat([n.bias.detach() for n in norms]).float())
        if self.kind == "bn":  # eval-mode batch norm is the per-channel affine map scale * x + shift
            mean = torch.cat([n.running_mean for n in norms]).double()
            var = torch.cat([n.running_var for n in norms]).double()
            scale = self.weight.double() / torch.sqrt(var + self.eps)
            self.register_buffer("scale", scale.float())
            self.register_buffer("shift", (self.bias.double() - mean * scale).float())


class _Block(nn.Module):
    """A ConvBlock of the encoder for one frame, channels last: conv (gated or not), norm, PReLU.

    A frame is (F, C), bins by channels. The conv gathers, for every output bin, the input
    rows its taps read, side by side: ``cols`` (F', taps * Cin); then one matrix product with
    the weights stored as (taps * Cin, Cout) gives (F', Cout). ONNX Runtime packs such a
    constant right-hand matrix once; its Conv (im2col and packing per call) ran these small
    convs 1.5-4 times slower. A transposed conv reads an extra zero row for the taps
    that fall between input bins (about half of them at stride 2). ``span`` past frames of the
    input are carried (gated convs with time kernel > 1), side by side with the current one.
    """

    def __init__(self, block: ConvBlock, f_in: int) -> None:
        super().__init__()
        layer = block.conv
        self.gated = isinstance(layer, GatedConv2d)
        conv = layer.conv if self.gated else layer
        w = conv.weight.detach()
        kf, stride = w.shape[3], conv.stride[1]
        self.transposed = isinstance(conv, nn.ConvTranspose2d)
        if self.transposed:  # (Cin, Cout, 1, kf); output bin o reads input bin (o - j) / stride by tap j
            self.span = 0
            self.cin = w.shape[0]
            self.f_out = (f_in - 1) * stride + kf
            weight = w[:, :, 0].permute(2, 0, 1).reshape(kf * self.cin, -1)  # row j * Cin + ci
            o = torch.arange(self.f_out)[:, None] - torch.arange(kf)
            idx = torch.where((o >= 0) & (o % stride == 0) & (o // stride < f_in), o // stride, f_in)
            self.register_buffer("zero_row", torch.zeros(1, self.cin))
        else:  # (Cout, Cin, kt, kf); the window holds kt frames, oldest first: row (j * kt + t) * Cin + ci
            self.span = w.shape[2] - 1
            self.cin = w.shape[1]
            self.f_out = (f_in - kf) // stride + 1
            weight = w.permute(3, 2, 1, 0).reshape(kf * w.shape[2] * self.cin, -1)
            idx = torch.arange(self.f_out)[:, None] * stride + torch.arange(kf)
        self.register_buffer("idx", idx.reshape(-1))
        weight, bias = weight.float().clone(), conv.bias.detach().float().clone()
        self.norm = _Norm([block.norm])
        self.shift: nn.Parameter | None = None
        if self.norm.kind == "bn":  # the norm's scale goes into the conv (its main half when gated)
            c = self.norm.scale.numel()
            weight[:, :c] *= self.norm.scale
            bias[:c] *= self.norm.scale
            if self.gated:  # m s * sigmoid(g) + shift
                self.shift = nn.Parameter(self.norm.shift.clone(), requires_grad=False)
            else:
                bias += self.norm.shift
        self.weight = nn.Parameter(weight.contiguous(), requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)
        self.prelu = nn.Parameter(block.act.weight.detach().clone(), requires_grad=False)
        self.unit = _unit(self.prelu)

    def forward(self, x: Tensor, pad: Tensor | None,
                norm: Callable[[_Norm, Tensor], Tensor]) -> tuple[Tensor, Tensor | None]:
        """(F, Cin) -> (F', Cout), with the new past frames (F, span*Cin); ``norm(site, h)`` applies a
        cumulative norm (batch norm is folded into the conv)."""
        win = torch.cat((pad, x), dim=1) if pad is not None else x
        new_pad = None if pad is None else x if self.span == 1 else win[:, self.cin :]
        if self.transposed:
            win = torch.cat((win, self.zero_row))
        cols = win.index_select(0, self.idx).reshape(self.f_out, -1)
        h = torch.addmm(self.bias, cols, self.weight)
        if self.gated:
            m, g = h.chunk(2, dim=1)
            h = m * torch.sigmoid(g)
        if self.norm.kind != "bn":
            h = norm(self.norm, h)
        elif self.shift is not None:
            h = h + self.shift
        return _prelu(h, self.prelu, self.unit), new_pad


class _BatchedSTCM(nn.Module):
    """S parallel S-TCMs (one per stack) on (S, 1, d_feat): every 1x1 and dilated conv of the S
    stacks is one batched matrix product with constant (S, in, out) weights.

    The dilated conv reads ``kd1`` taps, oldest first: the ``kd1 - 1`` past normalised squeeze
    outputs (gathered for all layers at once by :class:`FastStep`, see :class:`_TcmWindows`)
    and the current one. A batch norm (``bn``) is a per-channel affine map: the second one is
    folded into the expand weights and a bias; the first one's scale folds into the squeeze
    weights where it is positive (PReLU commutes with a positive scale), and its shift stays a
    sum, because the past taps are its outputs (zeros before the stream starts).
    """

    def __init__(self, layers: list[SqueezedTCM]) -> None:
        super().__init__()
        s = len(layers)
        c = layers[0].squeeze.weight.shape[0]
        k = layers[0].dconv.kernel_size[0]
        self.dilation = layers[0].dilation
        self.span = (k - 1) * self.dilation
        stack = lambda ws: torch.stack([w.detach().float() for w in ws]).contiguous()  # noqa: E731
        squeeze = stack([m.squeeze.weight[:, :, 0].t() for m in layers])  # (S, d_feat, cd1)
        self.act1 = nn.Parameter(stack([m.act1.weight.reshape(1, -1) for m in layers]), requires_grad=False)
        # row j * cd1 + ci of tap j: (S, kd1 * cd1, cd1)
        self.dconv = nn.Parameter(stack([m.dconv.weight.permute(2, 1, 0).reshape(k * c, c) for m in layers]),
                                  requires_grad=False)
        self.act2 = nn.Parameter(stack([m.act2.weight.reshape(1, -1) for m in layers]), requires_grad=False)
        self.unit1, self.unit2 = _unit(self.act1), _unit(self.act2)
        self.norm1 = _Norm([m.norm1 for m in layers])
        self.norm2 = _Norm([m.norm2 for m in layers])
        expand = stack([m.expand.weight[:, :, 0].t() for m in layers])  # (S, cd1, d_feat)
        self.bn = self.norm1.kind == "bn"
        self.fold1 = self.bn and bool((self.norm1.scale > 0).all())
        if self.bn:
            scale1 = self.norm1.scale.reshape(s, 1, c)
            if self.fold1:  # s PReLU(z) = PReLU(s z) for s > 0
                squeeze = squeeze * scale1
            else:
                self.register_buffer("scale1", scale1.clone())
            self.register_buffer("shift1", self.norm1.shift.reshape(s, 1, c).clone())
            # (h s2 + b2) E = h (s2 E) + b2 E
            self.register_buffer("expand_bias", torch.bmm(self.norm2.shift.reshape(s, 1, c), expand))
            expand = expand * self.norm2.scale.reshape(s, c, 1)
        self.squeeze = nn.Parameter(squeeze.contiguous(), requires_grad=False)
        self.expand = nn.Parameter(expand.contiguous(), requires_grad=False)

    def forward(self, x: Tensor, past: Tensor, norm: Callable[[_Norm, Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        """x (S, 1, d_feat), past (S, 1, (kd1 - 1) cd1) the past taps -> x' and this frame's tap (S, 1, cd1).

        ``norm(site, h)`` applies one of this layer's two cumulative norm sites to (1, S * cd1, 1)
        (and keeps its state); batch norms are applied here.
        """
        h = _prelu(torch.matmul(x, self.squeeze), self.act1, self.unit1)
        if self.fold1:
            h = h + self.shift1
        elif self.bn:
            h = h * self.scale1 + self.shift1
        else:
            h = norm(self.norm1, h.reshape(1, -1, 1)).reshape(h.shape)
        u = _prelu(torch.matmul(torch.cat((past, h), dim=2), self.dconv), self.act2, self.unit2)
        if self.bn:
            return x + self.expand_bias + torch.matmul(u, self.expand), h
        u = norm(self.norm2, u.reshape(1, -1, 1)).reshape(u.shape)
        return x + torch.matmul(u, self.expand), h


class _TcmWindows(nn.Module):
    """The past dilated-conv inputs of every S-TCM of every stage, as one state tensor.

    State (S, R, cd1): layer i owns rows ``[o_i, o_i + span_i)``, its last ``span_i`` normalised
    squeeze outputs, oldest first (zeros at the start). Everything a frame reads from it is in
    the past, so one gather at the start of the frame gives every layer its ``kd1 - 1`` past
    taps (:meth:`past`), and one concat and gather at the end drop each layer's oldest row and
    append its new one (:meth:`advance`): two ops per frame instead of four per layer.
    """

    def __init__(self, spans: list[int], dilations: list[int], kd1: int) -> None:
        super().__init__()
        offsets = [sum(spans[:i]) for i in range(len(spans))]
        self.rows = sum(spans)
        self.n_layers, self.taps = len(spans), kd1 - 1
        past = [o + j * d for o, d in zip(offsets, dilations) for j in range(kd1 - 1)]
        nxt = [r for i, (o, n) in enumerate(zip(offsets, spans)) for r in [*range(o + 1, o + n), self.rows + i]]
        self.register_buffer("past_rows", torch.tensor(past))
        self.register_buffer("next_rows", torch.tensor(nxt))

    def past(self, state: Tensor) -> list[Tensor]:
        """(S, R, C) -> per layer (S, 1, (kd1 - 1) C), its past taps oldest first."""
        s, _, c = state.shape
        taps = state.index_select(1, self.past_rows).reshape(s, self.n_layers, self.taps * c)
        return list(taps.split(1, dim=1))

    def advance(self, state: Tensor, new: list[Tensor]) -> Tensor:
        """The next state from this frame's taps ``new`` (per layer (S, 1, C))."""
        return torch.cat([state, *new], dim=1).index_select(1, self.next_rows)


class _TcmNorms(nn.Module):
    """Every cumulative norm site of the S-TCMs (one bin each, L = 1), with one state for all.

    The state is the running ``mean`` and variance ``var`` of every channel of every site,
    two vectors (K,) with K = sites * C, site j at ``[j*C, (j+1)*C)`` in call order (zeros at
    the start of a stream). With the step scalars ``a``, ``b`` (= 1/m'), ``d`` of
    :meth:`FastStep.scalars` a frame x moves the moments to ``m' = a m + b x`` and
    ``q' = a q + d + b x^2`` (``q = var + mean^2``), so, with ``u = a m / (1 - b)`` and
    ``t = x - u``::

        m'   = u + b t
        var' = r + c t^2,   r = a var + d + a m^2 (1 - a - b) / (1 - b),   c = b (1 - b)
        y    = w (x - m') / sqrt(var' + eps) + bias = w (1 - b) t / sqrt(c t^2 + r + eps) + bias
             = batch_norm(x, mean=u, var=t^2 + R, weight=w sqrt((1 - b) / b), bias),
               R = (r + eps) / c - eps

    ``u``, ``R`` and the weight depend on the old state only and are computed for all sites at
    once by :meth:`begin`; per site a frame then costs a subtraction, a product, a sum and one
    batch-norm op (:meth:`apply`), and :meth:`finish` forms the new state of all sites at once
    (float64, from r). Needs ``0 < b < 1``, i.e. a positive prior (``cin_prior > 0``).
    """

    def __init__(self, sites: list[_Norm], stats_dtype: torch.dtype) -> None:
        super().__init__()
        self.c = sites[0].weight.numel()
        self.n_sites = len(sites)
        self.eps = sites[0].eps
        self.stats_dtype = stats_dtype
        self.register_buffer("weight", torch.cat([s.weight for s in sites]))
        for j, site in enumerate(sites):
            self.register_buffer(f"bias{j}", site.bias.clone())
        self._step: dict[str, object] = {}

    @property
    def size(self) -> int:
        """K, the length of each state vector."""
        return self.n_sites * self.c

    def begin(self, mean: Tensor, var: Tensor, a: Tensor, b: Tensor, d: Tensor) -> None:
        """Start a frame from the state ``mean``, ``var`` (K,) and the step scalars (1,)."""
        one_b = 1.0 - b
        u = mean * (a / one_b)
        r = var * a + d + mean * mean * (a * (1.0 - a - b) / one_b)
        c = b * one_b
        f32 = torch.float32
        self._step = {
            "u": u, "b": b, "r": r, "c": c, "j": 0, "t": [],
            "us": u.to(f32).split(self.c), "Rs": ((r + self.eps) / c - self.eps).to(f32).split(self.c),
            "ws": (self.weight * torch.sqrt(one_b / b).to(f32)).split(self.c),
        }

    def apply(self, x: Tensor) -> Tensor:
        """Normalise the next site's frame ``x`` (1, C, 1)."""
        st = self._step
        j = st["j"]
        st["j"] = j + 1
        t = x.reshape(-1) - st["us"][j]
        st["t"].append(t)
        return F.batch_norm(x, st["us"][j], t * t + st["Rs"][j], st["ws"][j], getattr(self, f"bias{j}"), False,
                            0.0, self.eps)

    def finish(self) -> tuple[Tensor, Tensor]:
        """The new state ``(mean', var')`` (K,) after every site has been applied once."""
        st, self._step = self._step, {}
        if st["j"] != self.n_sites:
            raise RuntimeError(f"{st['j']} of {self.n_sites} S-TCM norm sites applied")
        t = torch.cat(st["t"]).to(self.stats_dtype)
        return st["u"] + st["b"] * t, st["r"] + st["c"] * t * t


class _BinNorms(nn.Module):
    """Every cumulative norm site of the encoder (L bins each), with one state for all.

    State: running ``mean`` and variance ``var`` (K,) of every channel of every site, as in
    :class:`_TcmNorms`. A frame x (L, C) (bins by channels) with sums ``s1``, ``s2`` over its
    bins gives ``m' = a m + b s1`` and ``q' = a (var + m^2) + d + b s2`` with ``b = 1 / (L m')``:
    ``P = a m`` and ``Q = a (var + m^2) + d`` come from the old state for all sites at once
    (:meth:`begin`), and per site ``b s1 + P`` is one vector-matrix product plus P
    ((b, ..., b) @ x + P), as is ``b s2 + Q``; the output is a batch-norm op with mean ``m'``
    and variance ``q' - m'^2``.
    """

    def __init__(self, sites: list[_Norm], bins: list[int], stats_dtype: torch.dtype) -> None:
        super().__init__()
        self.sizes = [s.weight.numel() for s in sites]
        self.bins = bins
        self.eps = sites[0].eps
        self.stats_dtype = stats_dtype
        for j, site in enumerate(sites):
            self.register_buffer(f"weight{j}", site.weight.clone())
            self.register_buffer(f"bias{j}", site.bias.clone())
        for L in sorted(set(bins)):
            self.register_buffer(f"avg{L}", torch.full((L,), 1.0 / L))
        self._step: dict[str, object] = {}

    @property
    def size(self) -> int:
        """K, the length of each state vector."""
        return sum(self.sizes)

    def begin(self, mean: Tensor, var: Tensor, a: Tensor, inv_m2: Tensor, d: Tensor) -> None:
        """Start a frame from the state ``mean``, ``var`` (K,) and the step scalars (1,)."""
        f32 = torch.float32
        p = (mean * a).to(f32)
        q = ((var + mean * mean) * a + d).to(f32)
        inv = inv_m2.to(f32)
        self._step = {
            "j": 0, "m": [], "v": [], "ps": p.split(self.sizes), "qs": q.split(self.sizes),
            # negated: ``P - (-b) @ x`` is ``P + b @ x`` exactly, and a MatMul feeding a Sub stays
            # one node in ONNX Runtime (MatMul + Add becomes Reshape, Gemm, Reshape)
            "nbs": {L: getattr(self, f"avg{L}") * -inv for L in sorted(set(self.bins))},
        }

    def apply(self, x: Tensor) -> Tensor:
        """Normalise the next site's frame ``x`` (L, C)."""
        st = self._step
        j = st["j"]
        st["j"] = j + 1
        nb = st["nbs"][self.bins[j]]
        m = st["ps"][j] - nb @ x
        v = st["qs"][j] - nb @ (x * x) - m * m
        st["m"].append(m)
        st["v"].append(v)
        return F.batch_norm(x, m, v, getattr(self, f"weight{j}"), getattr(self, f"bias{j}"), False, 0.0, self.eps)

    def finish(self) -> tuple[Tensor, Tensor]:
        """The new state ``(mean', var')`` (K,) after every site has been applied once."""
        st, self._step = self._step, {}
        if st["j"] != len(self.sizes):
            raise RuntimeError(f"{st['j']} of {len(self.sizes)} encoder norm sites applied")
        return torch.cat(st["m"]).to(self.stats_dtype), torch.cat(st["v"]).to(self.stats_dtype)


class _Stage(nn.Module):
    """One glance-gaze module for one frame: (1, d_feat) features, (1, 2, F, 1) previous -> refined.

    The features come bin-major (the encoder runs channels last: feature ``f * c_end + c`` is
    channel c of bin f, where the model flattens channel-major), so the input conv's feature
    weights are permuted to match. The four gated input convs (glance and gaze, main and gate)
    are one matrix product; the three stacks (glance, gaze real, gaze imaginary) run batched,
    and so do the gain and the two residual outputs.
    """

    def __init__(self, stage: nn.Module, cfg: GaGNetConfig, feat_bins: int) -> None:
        super().__init__()
        gl, gz = stage.glance, stage.gaze
        d = cfg.d_feat
        convs = [gl.inp.main, gz.inp.main, gl.inp.gate, gz.inp.gate]
        w = torch.cat([c.weight.detach()[:, :, 0] for c in convs])  # (4 d, d_feat + 2 F), features channel-major
        order = torch.arange(d).reshape(-1, feat_bins).t().reshape(-1)  # bin-major position -> model's
        self.inp = nn.Parameter(torch.cat((w[:, order], w[:, d:]), dim=1).t().float().contiguous(),
                                requires_grad=False)  # (d_feat + 2 F, 4 d)
        self.inp_bias = nn.Parameter(torch.cat([c.bias.detach() for c in convs]).float(), requires_grad=False)
        # stacks: glance, gaze real, gaze imaginary (a squeezed gaze's one stack serves both)
        stacks = [gl.tcm, gz.tcm, gz.tcm] if gz.shared else [gl.tcm, gz.tcm_real, gz.tcm_imag]
        layers = [[m for group in st for m in group] for st in stacks]
        self.tcms = nn.ModuleList(_BatchedSTCM(list(ms)) for ms in zip(*layers))
        self.register_buffer("pick", torch.cat((torch.arange(2 * d), torch.arange(d, 2 * d))))
        outs = [gl.gain, gz.out_real, gz.out_imag]
        self.out = nn.Parameter(torch.stack([c.weight.detach()[:, :, 0].t().float() for c in outs]).contiguous(),
                                requires_grad=False)  # (3, d_feat, F)
        self.out_bias = nn.Parameter(torch.stack([c.bias.detach().float().reshape(1, -1) for c in outs]),
                                     requires_grad=False)  # (3, 1, F)
        self.act = gl.act
        self.n_freq = cfg.n_freq

    def forward(self, feat: Tensor, prev: Tensor, pasts: list[Tensor],
                norm: Callable[[_Norm, Tensor], Tensor]) -> tuple[Tensor, list[Tensor]]:
        """``pasts``: the past dconv taps of each S-TCM position; returns the estimate and this frame's taps."""
        x = torch.cat((feat, prev.reshape(1, -1)), dim=1)
        m, g = torch.addmm(self.inp_bias, x, self.inp).chunk(2, dim=1)
        h = (m * torch.sigmoid(g)).index_select(1, self.pick).reshape(3, 1, -1)  # glance, gaze, gaze
        new: list[Tensor] = []
        for tcm, past in zip(self.tcms, pasts):
            h, tap = tcm(h, past, norm)
            new.append(tap)
        o = torch.matmul(h, self.out) + self.out_bias  # (3, 1, F)
        gain, res = o.split((1, 2), dim=0)
        return self.act(gain).reshape(1, 1, -1, 1) * prev + res.reshape(1, 2, -1, 1), new


class FastStep(nn.Module):
    """One frame of a causal GaGNet: ``(spec, *state) -> (estimate, *new_state)``.

    ``spec`` and ``estimate`` are (1, 2, F, 1) compressed real/imag spectra (the last stage's
    estimate); the state tensors are listed by :meth:`initial_state` (all zeros at the start of
    a stream). Built from the weights of ``net``, which is left untouched. With
    ``encoder_only`` (batch norm only) the step stops at the encoder: ``(spec, *encoder_state)
    -> (features (1, d_feat), *new_encoder_state)``, the features bin-major as the stages'
    input weights here expect (:mod:`gagnet.native` runs the stages).
    """

    def __init__(self, net: GaGNet, encoder_only: bool = False) -> None:
        super().__init__()
        cfg = net.cfg
        if encoder_only and cfg.norm != "bn":
            raise ValueError("encoder_only needs norm 'bn' (cumulative norms share their state with the stages)")
        #: Return the encoder's features (1, d_feat) instead of the estimate (the stages run elsewhere).
        self.encoder_only = encoder_only
        if not cfg.causal:
            raise NotCausalError(f"config {cfg.name!r} looks at future frames and cannot stream")
        if cfg.norm not in FAST_NORMS:
            raise ValueError(f"the fast step supports norm in {FAST_NORMS}, not {cfg.norm!r}")
        if cfg.norm == "cin" and cfg.cin_prior <= 0:
            raise ValueError("the fast step needs a positive cin_prior (the first frame's variance is 0 without it)")
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
        # the norm state is float64 (the per-site work is float32): a float32 state drifts, even
        # with cin_tau (paper-size model, 60 s: 8e-5 off offline, 2e-4 after a loud passage)
        self.stats_dtype = torch.float64
        self.blocks = nn.ModuleList()
        f = cfg.n_freq  # the blocks run in list order, each on the bins of the one before
        for b in blocks:
            self.blocks.append(_Block(b, f))
            f = self.blocks[-1].f_out
        self.stages = nn.ModuleList(_Stage(s, cfg, f) for s in net.stages)
        tcms = [tcm for st in self.stages for tcm in st.tcms]
        self.windows = _TcmWindows([t.span for t in tcms], [t.dilation for t in tcms], cfg.kd1)
        # every norm of a kind shares one state and a batched update (see _BinNorms, _TcmNorms)
        self.enc_norms: _BinNorms | None = None
        self.tcm_norms: _TcmNorms | None = None
        if self.cin:
            self.enc_norms = _BinNorms([blk.norm for blk in self.blocks], [blk.f_out for blk in self.blocks],
                                       self.stats_dtype)
            sites = [site for st in self.stages for tcm in st.tcms for site in (tcm.norm1, tcm.norm2)]
            self.tcm_norms = _TcmNorms(sites, self.stats_dtype)
        self._zeros = self._probe()

    def scalars(self, n: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The cumulative norms' step scalars ``a``, ``1/m'``, ``d`` from the decayed frame count ``n`` (1,).

        With ``m = n + prior`` before and ``m' = decay * n + 1 + prior`` after this frame, a
        frame of L bins with per-channel sums s1, s2 moves the moments ``[mean; E[x^2]]`` to
        ``a * [mean; E[x^2]] + [s1; s2] / (L m') + [0; d]``: ``a = decay * m / m'`` scales the
        old moments and ``d = prior / m' - a (prior / m - [n = 0])`` moves the prior's
        undecayed share of the second moment (the state starts at zero, where the prior alone
        would give a second moment of 1: hence the first-frame term).
        """
        p = self.prior
        m, m2 = n + p, n * self.decay + 1.0 + p
        a = self.decay * m / m2
        d = p / m2 - a * (p / m - (n == 0).to(n.dtype))
        return a, 1.0 / m2, d

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
        en, tn = self.enc_norms, self.tcm_norms
        if en is not None and tn is not None:
            n = take((1,), stats)
            new.append(n * self.decay + 1.0)
            scalars = self.scalars(n)
            en.begin(take((en.size,), stats), take((en.size,), stats), *scalars)
            tn.begin(take((tn.size,), stats), take((tn.size,), stats), *scalars)
            at = len(new)
            enc_norm = lambda site, h: en.apply(h)  # noqa: E731
            tcm_norm = lambda site, h: tn.apply(h)  # noqa: E731
        else:  # batch norm: folded into the blocks and S-TCMs
            enc_norm = tcm_norm = None  # type: ignore[assignment]

        def block(i: int, x: Tensor) -> Tensor:
            b = self.blocks[i]
            pad = take((x.shape[0], b.span * x.shape[1])) if b.span else None
            y, new_pad = b(x, pad, enc_norm)
            if new_pad is not None:
                new.append(new_pad)
            return y

        x = spec[0, :, :, 0].t()  # (F, 2): one frame of the encoder's (B, 2, T, F), channels last
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
        feat = block(i, x).reshape(1, -1)  # (1, feat_bins * c_end), bin-major (see _Stage)
        if self.encoder_only:
            return (feat, *new)
        prev = spec
        windows = take((3, self.windows.rows, self.cfg.cd1))
        pasts, taps = self.windows.past(windows), []
        for stage in self.stages:
            n = len(stage.tcms)
            prev, new_taps = stage(feat, prev, pasts[:n], tcm_norm)
            pasts, taps = pasts[n:], taps + new_taps
        new.append(self.windows.advance(windows, taps))
        if en is not None and tn is not None:
            new[at:at] = [*en.finish(), *tn.finish()]
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
