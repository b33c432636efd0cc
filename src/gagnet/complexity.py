"""Cost and context of a configuration: parameters, MACs, receptive field, latency."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import GaGNetConfig, get_config
from .model.gagnet import GaGNet, count_parameters
from .model.stcm import stcm_receptive_field
from .model.wave import WaveGaGNet


@dataclass
class Complexity:
    """What ``gagnet info`` prints. MACs are counted by torch's FLOP counter (MAC = FLOP / 2)."""

    config: str
    parameters: int
    macs_per_second: float
    receptive_field_frames: int
    receptive_field_ms: float
    norm_context: str
    latency_ms: float | None
    causal: bool

    def as_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        """Human-readable two-column table."""
        lat = f"{self.latency_ms:.1f} ms (one window)" if self.latency_ms is not None else "whole utterance (not causal)"
        rows = [
            ("config", self.config),
            ("parameters", f"{self.parameters:,}"),
            ("MACs per second of audio", f"{self.macs_per_second / 1e9:.3f} G"),
            ("conv receptive field", f"{self.receptive_field_frames} frames = {self.receptive_field_ms:.0f} ms of past"),
            ("norm statistics", self.norm_context),
            ("algorithmic latency", lat),
            ("causal", "yes" if self.causal else "no"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


_NORM_CONTEXT = {
    "in": "whole utterance (instance norm)",
    "bn": "none at inference (batch norm, running statistics)",
    "cin": "all past frames (cumulative instance norm)",
    "fln": "current frame only (frame layer norm)",
}


def receptive_field_frames(cfg: GaGNetConfig) -> int:
    """Frames of past context seen by the convolutions, current frame included.

    Each gated conv with time kernel k adds k - 1 frames; each glance-gaze stage adds one
    S-TCM stack, and stages are chained through their estimates.
    """
    enc = (cfg.k_first[0] - 1) + len(cfg.unet_depths[1:]) * (cfg.k1[0] - 1) + (cfg.k1[0] - 1)
    span = stcm_receptive_field(cfg)
    if not cfg.causal_conv:
        span //= 2
    return enc + cfg.q * span + 1


def macs_per_second(cfg: GaGNetConfig) -> float:
    """Multiply-accumulates of the network and signal path for one second of audio."""
    model = WaveGaGNet(GaGNet(cfg)).eval()
    x = torch.zeros(1, cfg.sample_rate)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2.0


def complexity(cfg: GaGNetConfig | str) -> Complexity:
    """Measure parameters and MACs, and derive receptive field and latency, for ``cfg``."""
    cfg = get_config(cfg)
    rf = receptive_field_frames(cfg)
    return Complexity(
        config=cfg.name,
        parameters=count_parameters(GaGNet(cfg)),
        macs_per_second=macs_per_second(cfg),
        receptive_field_frames=rf,
        receptive_field_ms=1000.0 * ((rf - 1) * cfg.hop_length + cfg.win_length) / cfg.sample_rate,
        norm_context=(
            f"past frames, weights decaying over {cfg.cin_tau * cfg.hop_length / cfg.sample_rate:g} s "
            "(decaying cumulative instance norm)"
            if cfg.norm == "cin" and cfg.cin_tau else _NORM_CONTEXT[cfg.norm]
        ),
        latency_ms=1000.0 * cfg.latency_samples / cfg.sample_rate if cfg.causal else None,
        causal=cfg.causal,
    )
