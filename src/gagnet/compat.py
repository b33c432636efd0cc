"""The authors' state_dict in and out.

The authors' ``GaGNet.py`` names its weights after its own classes
(``en.meta_unet_list.0.in_conv.0.conv.1.weight``, ``gags.0.glance_block.tcn_g.0.tcns.3.d_conv.3.weight``,
...). :func:`official_to_native` and :func:`native_to_official` translate key names,
and :func:`from_official` builds a drop-in replacement of the authors' model from their
weights: same input (B, 2, T, F), same list of (B, 2, F, T) outputs.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch.nn as nn
from torch import Tensor

from .config import GaGNetConfig, get_config
from .model.gagnet import GaGNet

# (official pattern, native replacement); named groups carry indices and leaf names across.
_LEAF = r"(?P<x>weight|bias|running_mean|running_var|num_batches_tracked)"
_STCM = [  # inside one S-TCM
    (r"in_conv\.weight", "squeeze.weight"),
    (r"d_conv\.0\.weight", "act1.weight"),
    (rf"d_conv\.1\.norm\.{_LEAF}", r"norm1.\g<x>"),
    (r"d_conv\.3\.weight", "dconv.weight"),
    (r"out_conv\.0\.weight", "act2.weight"),
    (rf"out_conv\.1\.norm\.{_LEAF}", r"norm2.\g<x>"),
    (r"out_conv\.2\.weight", "expand.weight"),
]
_BLOCK = [  # 2-D conv/norm/PReLU paths inside one encoder layer
    (r"in_conv\.0\.conv\.1", "entry.conv.conv"),
    (r"in_conv\.1\.norm", "entry.norm"),
    (r"in_conv\.2", "entry.act"),
    (r"enco\.(?P<j>\d+)\.conv\.0", r"unet.down.\g<j>.conv"),
    (r"enco\.(?P<j>\d+)\.conv\.1\.norm", r"unet.down.\g<j>.norm"),
    (r"enco\.(?P<j>\d+)\.conv\.2", r"unet.down.\g<j>.act"),
    (r"deco\.(?P<j>\d+)\.deconv\.0", r"unet.up.\g<j>.conv"),
    (r"deco\.(?P<j>\d+)\.deconv\.1\.norm", r"unet.up.\g<j>.norm"),
    (r"deco\.(?P<j>\d+)\.deconv\.2", r"unet.up.\g<j>.act"),
]


def _rules() -> list[tuple[str, str]]:
    rules: list[tuple[str, str]] = []
    for off, nat in _BLOCK:
        rules.append((rf"en\.meta_unet_list\.(?P<i>\d+)\.{off}\.{_LEAF}", rf"encoder.layers.\g<i>.{nat}.\g<x>"))
    rules += [
        (rf"en\.last_conv\.0\.conv\.1\.{_LEAF}", r"encoder.exit.conv.conv.\g<x>"),
        (rf"en\.last_conv\.1\.norm\.{_LEAF}", r"encoder.exit.norm.\g<x>"),
        (rf"en\.last_conv\.2\.{_LEAF}", r"encoder.exit.act.\g<x>"),
    ]
    blocks = [("glance_block", "glance"), ("gaze_block", "gaze")]
    for ob, nb in blocks:
        rules += [
            (rf"gags\.(?P<k>\d+)\.{ob}\.in_conv_main\.{_LEAF}", rf"stages.\g<k>.{nb}.inp.main.\g<x>"),
            (rf"gags\.(?P<k>\d+)\.{ob}\.in_conv_gate\.0\.{_LEAF}", rf"stages.\g<k>.{nb}.inp.gate.\g<x>"),
        ]
    rules += [
        (rf"gags\.(?P<k>\d+)\.glance_block\.linear_g\.0\.{_LEAF}", r"stages.\g<k>.glance.gain.\g<x>"),
        (rf"gags\.(?P<k>\d+)\.gaze_block\.linear_r\.{_LEAF}", r"stages.\g<k>.gaze.out_real.\g<x>"),
        (rf"gags\.(?P<k>\d+)\.gaze_block\.linear_i\.{_LEAF}", r"stages.\g<k>.gaze.out_imag.\g<x>"),
    ]
    stacks = [("glance_block.tcn_g", "glance.tcm"), ("gaze_block.tcm_r", "gaze.tcm_real"),
              ("gaze_block.tcm_i", "gaze.tcm_imag"), ("gaze_block.tcm_ri", "gaze.tcm")]
    for os_, ns in stacks:
        for off, nat in _STCM:
            rules.append((
                rf"gags\.(?P<k>\d+)\.{re.escape(os_)}\.(?P<g>\d+)\.tcns\.(?P<m>\d+)\.{off}",
                rf"stages.\g<k>.{ns}.\g<g>.\g<m>.{nat}",
            ))
    return rules


_RULES = [(re.compile(rf"^{o}$"), n) for o, n in _rules()]


def official_to_native(key: str) -> str:
    """Translate one of the authors' state_dict keys into this project's name."""
    for pattern, repl in _RULES:
        if pattern.match(key):
            return pattern.sub(repl, key)
    raise KeyError(f"not a key of the authors' GaGNet: {key!r}")


def _inverse_rules() -> list[tuple[re.Pattern[str], str]]:
    out = []
    for o, n in _rules():
        # Turn the native replacement into a pattern and the official pattern into a replacement.
        pat = re.escape(n)
        for name in ("i", "j", "k", "g", "m"):
            pat = pat.replace(re.escape(rf"\g<{name}>"), rf"(?P<{name}>\d+)")
        pat = pat.replace(re.escape(r"\g<x>"), _LEAF)
        repl = o
        for name in ("i", "j", "k", "g", "m"):
            repl = repl.replace(rf"(?P<{name}>\d+)", rf"\g<{name}>")
        repl = repl.replace(_LEAF, r"\g<x>").replace("\\.", ".")
        out.append((re.compile(rf"^{pat}$"), repl))
    return out


_INVERSE = _inverse_rules()


def native_to_official(key: str) -> str:
    """Translate one of this project's state_dict keys into the authors' name."""
    for pattern, repl in _INVERSE:
        if pattern.match(key):
            return pattern.sub(repl, key)
    raise KeyError(f"no official name for {key!r}")


def to_official(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """This project's state_dict -> the authors' key names (loads into their ``GaGNet``)."""
    return {native_to_official(k): v for k, v in state_dict.items()}


def infer_config(state_dict: Mapping[str, Tensor], **overrides: Any) -> GaGNetConfig:
    """Read sizes (c, d_feat, cd1, p, q, bins, norm, squeeze) off the authors' weights.

    Dilations, kernel of the dilated conv and causal padding are not visible in the
    weights; they default to the paper's and can be given in ``overrides``.
    """
    sd = state_dict
    q = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("gags."))
    p = 1 + max(int(k.split(".")[4]) for k in sd if k.startswith("gags.0.glance_block.tcn_g."))
    n_dil = 1 + max(int(k.split(".")[6]) for k in sd if k.startswith("gags.0.glance_block.tcn_g.0.tcns."))
    depths = []
    for i in range(1 + max(int(k.split(".")[2]) for k in sd if k.startswith("en.meta_unet_list."))):
        depths.append(1 + max(int(k.split(".")[4]) for k in sd if k.startswith(f"en.meta_unet_list.{i}.enco.")))
    first = sd["en.meta_unet_list.0.in_conv.0.conv.1.weight"]
    sq = sd["gags.0.glance_block.tcn_g.0.tcns.0.in_conv.weight"]
    kw: dict[str, Any] = dict(
        cin=first.shape[1], c=first.shape[0] // 2, k_first=tuple(first.shape[2:]),
        k1=tuple(sd["en.last_conv.0.conv.1.weight"].shape[2:]),
        k2=tuple(sd["en.meta_unet_list.0.enco.0.conv.0.weight"].shape[2:]),
        c_end=sd["en.last_conv.0.conv.1.weight"].shape[0] // 2, unet_depths=tuple(depths),
        d_feat=sq.shape[1], cd1=sq.shape[0], p=p, q=q,
        kd1=sd["gags.0.glance_block.tcn_g.0.tcns.0.d_conv.3.weight"].shape[-1],
        n_fft=(sd["gags.0.glance_block.linear_g.0.weight"].shape[0] - 1) * 2,
        win_length=(sd["gags.0.glance_block.linear_g.0.weight"].shape[0] - 1) * 2,
        norm="bn" if any(k.endswith("running_mean") for k in sd) else "in",
        squeezed_gaze=any(".tcm_ri." in k for k in sd),
        skip="cat" if sd["en.meta_unet_list.0.deco.1.deconv.0.weight"].shape[0] == 2 * first.shape[0] // 2
        else "add",
        name="official",
    )
    if n_dil != len(get_config("paper").dilations) and "dilations" not in overrides:
        raise ValueError(f"the weights have {n_dil} S-TCMs per group; pass dilations=(...) explicitly")
    kw.update(overrides)
    return GaGNetConfig(**kw)


class OfficialGaGNet(nn.Module):
    """Drop-in replacement of the authors' model, built on :class:`GaGNet`.

    ``forward`` takes (B, 2, T, F) compressed real/imag spectra (the authors' layout) and
    returns the per-stage list of (B, 2, F, T) estimates, as their model does.
    """

    def __init__(self, net: GaGNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.net(x.transpose(2, 3))


def from_official(state_dict: Mapping[str, Tensor], **config_overrides: Any) -> OfficialGaGNet:
    """Build :class:`OfficialGaGNet` from the authors' state_dict, consumed strictly.

    Every key must be known and every weight of the network must be given; anything
    else raises. ``config_overrides`` set what the weights do not show (dilations, causal).
    """
    sd = dict(state_dict)
    if any(k.startswith("module.") for k in sd):  # saved from DataParallel
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
    cfg = infer_config(sd, **config_overrides)
    net = GaGNet(cfg)
    net.load_state_dict({official_to_native(k): v for k, v in sd.items()}, strict=True)
    return OfficialGaGNet(net)
