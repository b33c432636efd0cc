"""Weight blends of two runs ("model soups"): ``(1 - alpha) * A + alpha * B``, tensor by tensor.

Two fine-tunings of the same start often lie in one basin, where the blend scores better than
either: in issue 18, 0.7 * ``causal-v2-wip`` + 0.3 * the H100 lease that continued it beat both
on WB-PESQ, STOI, ESTOI and CBAK on unseen mixtures (``recipes/compare_held_out.py --blend``). Batch-norm running
statistics are blended like the weights; integer buffers (``num_batches_tracked``) come from
B. Re-estimating the blend's statistics on training batches instead (100 batches of 8 x 4 s of
stage 2's mixtures) was far worse on unseen mixtures, SI-SDR -0.5 dB against 10.1 dB: the
runs behind ``causal-v2-wip`` trained with frozen statistics, and their weights rely on them.
A layer-wise blend gives some modules their own alpha (``modules``); between ``causal-v2-wip``
and ``causal-v1`` it moved DNSMOS BAK most through the encoder (docs/training.md (h)).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .callbacks import save_weights
from .model import GaGNet
from .pretrained import load_model


def _alpha_of(name: str, alpha: float, modules: Mapping[str, float]) -> float:
    """The alpha of tensor ``name``: that of the longest module path it sits under, else ``alpha``."""
    under = [m for m in modules if name.startswith(m + ".")]
    return modules[max(under, key=len)] if under else alpha


def blend_networks(a: str | os.PathLike, b: str | os.PathLike, alpha: float,
                   modules: Mapping[str, float] | None = None) -> GaGNet:
    """A GaGNet with ``(1 - alpha) * A + alpha * B`` (names or paths, as :func:`~gagnet.pretrained.load_model`).

    ``modules`` gives some modules their own alpha, by module path (``{"encoder": 1.0,
    "stages.1.glance": 0.5}``): a layer-wise blend. Raises ``ValueError`` when an alpha is outside
    [0, 1], a module path names no tensor, or the two configs differ.
    """
    modules = dict(modules or {})
    for value in (alpha, *modules.values()):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {value}")
    na, nb = load_model(a).net, load_model(b).net
    if na.cfg != nb.cfg:
        raise ValueError(f"cannot blend different networks: {a} and {b} have different configs")
    sa = na.state_dict()
    unknown = [m for m in modules if not any(k.startswith(m + ".") for k in sa)]
    if unknown:
        raise ValueError(f"no such module in the network: {', '.join(unknown)}")
    mixed = {}
    for k, v in nb.state_dict().items():
        w = _alpha_of(k, alpha, modules)
        mixed[k] = (1 - w) * sa[k] + w * v if v.is_floating_point() else v
    nb.load_state_dict(mixed)
    return nb


def blend_files(a: str | os.PathLike, b: str | os.PathLike, alpha: float, path: str | os.PathLike,
                modules: Mapping[str, float] | None = None) -> Path:
    """Write the blend as a ``model.pt`` (fp32, ``{"config", "state_dict"}``) at ``path``; returns it."""
    save_weights(blend_networks(a, b, alpha, modules), Path(path))
    return Path(path)
