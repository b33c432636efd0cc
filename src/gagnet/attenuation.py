"""Attenuation limit: mix the input back into the enhanced output, sample-aligned.

With a limit of ``L`` dB the output is ``(1 - g) * enhanced + g * input`` with
``g = 10 ** (-L / 20)``: the background is lowered by at most about ``L`` dB instead of removed
(0 dB returns the input). A model file may recommend a limit (its ``atten_lim_db`` key, see
:func:`gagnet.pretrained.recommended_atten_lim`); :data:`FROM_MODEL` asks for that one. The
enhanced samples arrive later than the input samples they belong to (block processing, network
delay, resampling), so the input is held until its output comes.
"""
from __future__ import annotations

import math

import numpy as np


#: ``atten_lim_db`` value meaning "the limit the model file recommends" (none if it names none).
FROM_MODEL = "model"

#: CLI words for "no limit".
NO_LIMIT_WORDS = ("off", "none")


def parse_atten_lim(text: str) -> float | str | None:
    """A CLI ``--atten-lim`` value: dB >= 0, ``off``/``none`` (None: no limit) or ``model`` (:data:`FROM_MODEL`).

    Raises ``ValueError`` with a one-line message for anything else.
    """
    word = str(text).strip().lower()
    if word in NO_LIMIT_WORDS:
        return None
    if word == FROM_MODEL:
        return FROM_MODEL
    try:
        db = float(word)
    except ValueError:
        db = float("nan")
    try:
        floor_gain(db)
    except ValueError:
        raise ValueError(f"--atten-lim must be a number of dB >= 0, off or model, got {text}") from None
    return db + 0.0  # -0 -> 0


def floor_gain(atten_lim_db: float | None) -> float:
    """``g`` for a limit in dB (None: no limit, 0). Raises ``ValueError`` for negative or non-finite dB."""
    if atten_lim_db is None:
        return 0.0
    if not (atten_lim_db >= 0 and math.isfinite(atten_lim_db)):
        raise ValueError(f"atten_lim_db must be a finite number of dB >= 0, got {atten_lim_db}")
    return 10.0 ** (-atten_lim_db / 20.0)


class InputFloor:
    """Holds ``(frames, channels)`` input blocks and mixes them into the outputs that match them.

    Call :meth:`hold` with every input block and :meth:`apply` with every output block, in
    order; the outputs must line up with the inputs sample for sample (output ``i`` belongs to
    input ``i``) and never run ahead of them.
    """

    def __init__(self, gain: float) -> None:
        self.gain = float(gain)
        self._held: list[np.ndarray] = []

    def hold(self, block: np.ndarray) -> None:
        if self.gain > 0 and block.shape[0]:
            self._held.append(block)

    def apply(self, out: np.ndarray) -> np.ndarray:
        k = out.shape[0]
        if self.gain <= 0 or k == 0:
            return out
        held = np.concatenate(self._held) if len(self._held) > 1 else self._held[0]
        x, rest = held[:k], held[k:]
        self._held = [rest] if rest.shape[0] else []
        return ((1.0 - self.gain) * out + self.gain * x).astype(np.float32, copy=False)
