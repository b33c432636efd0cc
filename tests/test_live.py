"""gagnet live: the device callback, driven by a fake stream, gives the offline output."""
from __future__ import annotations

import types

import numpy as np

import gagnet
from gagnet.live import BLOCK, LiveCallback


def _clip(seconds: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(7)
    t = np.arange(int(16000 * seconds)) / 16000
    speech = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6)) * (np.sin(2 * np.pi * 2.5 * t) > 0)
    return (0.05 * speech + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def test_callback_path_equals_offline_and_counts_dropouts():
    enhancer = gagnet.Enhancer.from_pretrained()
    stream = gagnet.StreamingEnhancer(enhancer, precision="fp32")  # float32: equal to offline
    callback = LiveCallback(stream, 16000)
    x = _clip()
    out = []
    ok = types.SimpleNamespace(input_overflow=False, output_underflow=False)
    dropped = types.SimpleNamespace(input_overflow=True, output_underflow=False)
    for i in range(0, len(x), BLOCK):  # the device's blocks, as PortAudio would hand them over
        indata = x[i : i + BLOCK, None].copy()
        outdata = np.zeros((len(indata), 2), np.float32)  # a stereo output device
        callback(indata, outdata, len(indata), None, dropped if i == 10 * BLOCK else ok)
        assert np.array_equal(outdata[:, 0], outdata[:, 1])
        out.append(outdata[:, 0].copy())
    y = np.concatenate(out)
    lat = stream.latency_samples
    ref = enhancer.enhance(x, 16000)
    assert np.abs(y[lat:] - ref[: len(x) - lat]).max() < 1e-4  # the offline output, one latency late
    assert np.abs(y[:lat]).max() < 1e-3  # before that, only the limit's share of silence
    assert callback.blocks == len(x) // BLOCK and callback.dropouts == 1
