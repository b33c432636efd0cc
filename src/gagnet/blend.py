"""Weight blends of two runs ("model soups"): ``(1 - alpha) * A + alpha * B``, tensor by tensor.

Two fine-tunings of the same start often lie in one basin, where the blend scores better than
either: in issue 18, 0.7 * ``causal-v2-wip`` + 0.3 * the H100 lease that continued it beat both
on WB-PESQ, STOI, ESTOI and CBAK on unseen mixtures (``recipes/compare_held_out.py --blend``). Batch-norm running
statistics are blended like the weights; integer buffers (``num_batches_tracked``) come from
B. Re-estimating the blend's statistics on training batches instead (100 batches of 8 x 4 s of
stage 2's mixtures) was far worse on unseen mixtures, SI-SDR -0.5 dB against 10.1 dB: the
runs behind ``causal-v2-wip`` trained with frozen statistics, and their weights rely on them.
"""
from __future__ import annotations

import os
from pathlib import Path

from .callbacks import save_weights
from .model import GaGNet
from .pretrained import load_model


def blend_networks(a: str | os.PathLike, b: str | os.PathLike, alpha: float) -> GaGNet:
    """A GaGNet with ``(1 - alpha) * A + alpha * B`` (names or paths, as :func:`~gagnet.pretrained.load_model`).

    Raises ``ValueError`` when ``alpha`` is outside [0, 1] or the two configs differ.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    na, nb = load_model(a).net, load_model(b).net
    if na.cfg != nb.cfg:
        raise ValueError(f"cannot blend different networks: {a} and {b} have different configs")
    sa = na.state_dict()
    mixed = {k: (1 - alpha) * sa[k] + alpha * v if v.is_floating_point() else v for k, v in nb.state_dict().items()}
    nb.load_state_dict(mixed)
    return nb


def blend_files(a: str | os.PathLike, b: str | os.PathLike, alpha: float, path: str | os.PathLike) -> Path:
    """Write the blend as a ``model.pt`` (fp32, ``{"config", "state_dict"}``) at ``path``; returns it."""
    save_weights(blend_networks(a, b, alpha), Path(path))
    return Path(path)
