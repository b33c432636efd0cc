"""ChannelPipeline: resampling round trip, ragged processors, exact length, input floor."""
import numpy as np
import pytest

from gagnet.pipeline import ChannelPipeline


class _Ragged:
    """Identity processor that hands back its input in uneven pieces (at most what came in)."""

    def __init__(self, seed: int) -> None:
        self.buf = np.zeros(0, np.float32)
        self.rng = np.random.default_rng(seed)

    def process(self, x):
        self.buf = np.concatenate([self.buf, x])
        k = int(self.rng.integers(0, self.buf.shape[0] + 1))
        out, self.buf = self.buf[:k], self.buf[k:]
        return out

    def flush(self):
        out, self.buf = self.buf, np.zeros(0, np.float32)
        return out


@pytest.mark.parametrize("rate", [16000, 16000 * 3])
def test_ragged_channels_come_out_aligned_and_exact(rate):
    seeds = iter(range(10))
    t = np.arange(5000) / rate  # tones well below 8 kHz survive the trip to 16 kHz and back
    x = np.stack([np.sin(2 * np.pi * 300 * t), 0.5 * np.sin(2 * np.pi * 700 * t)], axis=1).astype(np.float32)
    pipe = ChannelPipeline(lambda: _Ragged(next(seeds)), rate, 2, 16000)
    cuts = [0, 7, 1200, 1201, 3333, 5000]
    out = [pipe.push(x[a:b], last=(b == 5000)) for a, b in zip(cuts, cuts[1:])]
    for i in range(len(out)):  # never ahead of the input
        assert sum(o.shape[0] for o in out[:i + 1]) <= cuts[i + 1]
    y = np.concatenate(out)
    assert y.shape == x.shape
    if rate == 16000:
        np.testing.assert_array_equal(y, x)
    else:  # through soxr down and back up: aligned, channels kept apart
        mid = slice(500, 4500)
        assert np.abs(y[mid] - x[mid]).max() < 0.01
    with pytest.raises(RuntimeError, match="already finished"):
        pipe.push(x[:10])


def test_floor_mixes_the_input_back():
    x = np.random.default_rng(1).standard_normal((3000, 1)).astype(np.float32)

    class Zero:
        def process(self, a):
            return np.zeros_like(a)

        def flush(self):
            return np.zeros(0, np.float32)

    pipe = ChannelPipeline(Zero, 16000, 1, 16000, floor=0.25)
    y = np.concatenate([pipe.push(x[:1000]), pipe.push(x[1000:], last=True)])
    np.testing.assert_allclose(y, 0.25 * x, rtol=1e-6)
