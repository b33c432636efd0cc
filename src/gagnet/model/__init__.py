"""The GaGNet network, one module per block of the paper."""
from .gagnet import GaGNet, GlanceGazeModule, count_parameters
from .wave import WaveGaGNet

__all__ = ["GaGNet", "GlanceGazeModule", "WaveGaGNet", "count_parameters"]
