"""The one configuration object: signal settings and network hyperparameters.

Every hyperparameter of the project is named here and nowhere else. Named presets:

* ``paper``  -- the published GaGNet (instance norm over the utterance, so not causal).
* ``causal`` -- the same network with cumulative instance norm: truly causal, streamable.
* ``tiny``   -- a very small network for tests and smoke runs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: Normalisations whose statistics only use past and present frames.
CAUSAL_NORMS = ("cin", "fln")
#: All normalisations: instance (published), batch, cumulative instance, frame-wise layer.
NORMS = ("in", "bn", "cin", "fln")


@dataclass(frozen=True)
class GaGNetConfig:
    """Signal and network settings of a GaGNet model.

    Signal: ``sample_rate`` Hz, a Hann window of ``win_length`` samples moved by
    ``hop_length``, an ``n_fft``-point FFT (``n_fft // 2 + 1`` bins) and magnitude
    power compression ``compress`` (0.5 = square root).

    Network (names follow the paper and the authors' file): ``c`` channels in the
    2-D encoder, ``k_first``/``k1`` gated-conv kernels (time, freq), ``k2`` UNet-block
    kernels, ``unet_depths`` per encoder layer, ``c_end`` channels of the last gated
    conv (``c_end * 4 = d_feat`` for 161 bins), ``kd1``/``cd1`` kernel and channels of
    the dilated S-TCM convs, ``d_feat`` 1-D feature channels, ``p`` S-TCM groups per
    block, ``q`` glance-gaze modules, ``dilations`` within a group.
    """

    sample_rate: int = 16000
    win_length: int = 320
    hop_length: int = 160
    n_fft: int = 320
    compress: float = 0.5

    cin: int = 2
    c: int = 64
    c_end: int = 64
    k_first: tuple[int, int] = (2, 5)
    k1: tuple[int, int] = (2, 3)
    k2: tuple[int, int] = (1, 3)
    unet_depths: tuple[int, ...] = (4, 3, 2, 1)
    kd1: int = 3
    cd1: int = 64
    d_feat: int = 256
    p: int = 2
    q: int = 3
    dilations: tuple[int, ...] = (1, 2, 5, 9)
    causal_conv: bool = True
    squeezed_gaze: bool = False
    gain_activation: str = "sigmoid"
    skip: str = "cat"
    norm: str = "in"
    norm_eps: float = 1e-5
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.skip not in ("cat", "add"):
            raise ValueError(f"skip must be 'cat' or 'add', got {self.skip!r}")
        if self.gain_activation not in ("sigmoid", "tanh", "relu"):
            raise ValueError(f"gain_activation must be sigmoid, tanh or relu, got {self.gain_activation!r}")
        if self.k2[0] != 1:
            raise ValueError("UNet-block kernels k2 must have time size 1 (they are not padded in time)")
        if self.hop_length > self.win_length or self.win_length > self.n_fft:
            raise ValueError("need hop_length <= win_length <= n_fft")
        if self.feat_bins * self.c_end != self.d_feat:
            raise ValueError(
                f"the encoder gives {self.c_end} x {self.feat_bins} = {self.c_end * self.feat_bins} "
                f"features per frame but d_feat is {self.d_feat}"
            )

    @property
    def n_freq(self) -> int:
        """Number of STFT bins, ``n_fft // 2 + 1`` (161 for the paper)."""
        return self.n_fft // 2 + 1

    @property
    def feat_bins(self) -> int:
        """Frequency bins left after the encoder's five stride-2 gated convs (4 for 161)."""
        f = (self.n_freq - self.k_first[1]) // 2 + 1
        for _ in range(len(self.unet_depths)):
            f = (f - self.k1[1]) // 2 + 1
        return f

    @property
    def causal(self) -> bool:
        """True when no output frame depends on a later input frame (in eval mode)."""
        return self.causal_conv and self.norm in CAUSAL_NORMS + ("bn",)

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency of a causal configuration: one analysis window."""
        return self.win_length

    def frames(self, n_samples: int) -> int:
        """STFT frames used for a signal of ``n_samples`` (see :mod:`gagnet.dsp`)."""
        return (n_samples + self.win_length - self.hop_length - 1) // self.hop_length + 1

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) for YAML, JSON and checkpoints."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GaGNetConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(d) - set(names)
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)

    def replace(self, **changes: Any) -> "GaGNetConfig":
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, GaGNetConfig] = {
    "paper": GaGNetConfig(name="paper"),
    "causal": GaGNetConfig(norm="cin", name="causal"),
    "tiny": GaGNetConfig(
        c=8, c_end=8, d_feat=32, cd1=8, p=1, q=2, unet_depths=(2, 1, 1, 1), norm="cin", name="tiny"
    ),
}


def get_config(name: str | GaGNetConfig, **overrides: Any) -> GaGNetConfig:
    """Look up a named preset (``paper``, ``causal``, ``tiny``) and apply overrides."""
    if isinstance(name, GaGNetConfig):
        cfg = name
    else:
        if name not in PRESETS:
            raise ValueError(f"unknown config {name!r}; choose from {sorted(PRESETS)}")
        cfg = PRESETS[name]
    return cfg.replace(**overrides) if overrides else cfg
