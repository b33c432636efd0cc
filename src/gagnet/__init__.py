"""gagnet: the Glance and Gaze Network for single-channel speech enhancement.

Li, Zheng, Zhang and Li, "Glance and Gaze: A Collaborative Learning Framework for
Single-channel Speech Enhancement", Applied Acoustics 2022 (arXiv 2106.11789).
"""
from .config import PRESETS, GaGNetConfig, get_config
from . import dsp
from .model import GaGNet, WaveGaGNet, count_parameters

__version__ = "0.1.0"
__all__ = ["GaGNet", "GaGNetConfig", "PRESETS", "WaveGaGNet", "count_parameters", "get_config"]
