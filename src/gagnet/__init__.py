"""gagnet: the Glance and Gaze Network for single-channel speech enhancement.

Li, Zheng, Zhang and Li, "Glance and Gaze: A Collaborative Learning Framework for
Single-channel Speech Enhancement", Applied Acoustics 2022 (arXiv 2106.11789).
"""
from .config import PRESETS, GaGNetConfig, get_config
from . import dsp
from .model import GaGNet, WaveGaGNet, count_parameters

__version__ = "0.1.0"
__all__ = [
    "Enhancer",
    "GaGNet",
    "GaGNetConfig",
    "PRESETS",
    "StreamingEnhancer",
    "WaveGaGNet",
    "count_parameters",
    "get_config",
]


def __getattr__(name: str):
    # file handling needs the [audio] extra (soundfile, soxr): import it only when asked for
    if name == "Enhancer":
        from .enhance import Enhancer

        return Enhancer
    if name == "StreamingEnhancer":
        from .streaming import StreamingEnhancer

        return StreamingEnhancer
    raise AttributeError(f"module 'gagnet' has no attribute {name!r}")
