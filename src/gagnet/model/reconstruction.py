"""Collaborative reconstruction of the glance gain and the gaze residual."""
from __future__ import annotations

from torch import Tensor


def reconstruct(prev: Tensor, gain: Tensor, residual: Tensor) -> Tensor:
    """Apply ``gain`` to the magnitude of ``prev`` keeping its phase, then add ``residual``.

    ``prev`` (B, 2, F, T) real/imag, ``gain`` (B, F, T), ``residual`` (B, 2, F, T).
    Scaling the magnitude with the phase kept is exactly scaling real and imaginary
    parts, so no magnitude/phase round trip is needed: ``|X| g cos(angle X) = g Re X``.
    """
    return gain.unsqueeze(1) * prev + residual
