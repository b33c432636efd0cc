"""The numpy signal path of the ONNX streaming enhancer."""
import numpy as np
import pytest
import torch

from gagnet import GaGNet, WaveGaGNet, get_config
from gagnet.export import OnnxStreamingEnhancer, export_streaming
from gagnet.np_framing import overlap_add

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("n, hop", [(320, 160), (300, 160), (512, 128)])
def test_overlap_add_matches_the_frame_loop(n, hop):
    frames = np.random.default_rng(0).standard_normal((7, n)).astype(np.float32)
    want = np.zeros(6 * hop + n, np.float32)
    for i, f in enumerate(frames):
        want[i * hop : i * hop + n] += f
    assert np.allclose(overlap_add(frames, hop), want, atol=1e-6)


def test_tensor_chunks_and_odd_sizes(tmp_path):
    torch.manual_seed(0)
    model = WaveGaGNet(GaGNet(get_config("tiny"))).eval()
    path = export_streaming(model, tmp_path / "fast.onnx", fast=True)
    x = (0.1 * np.random.default_rng(1).standard_normal(5000)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    enh = OnnxStreamingEnhancer(path)
    sizes = [1, 7, 160, 333, 999]
    outs, i, k = [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        y = enh.process(torch.from_numpy(x[i : i + n]))
        assert isinstance(y, torch.Tensor) and y.numel() == len(x[i : i + n])
        outs.append(y.numpy())
        i, k = i + n, k + 1
    tail = enh.flush(as_numpy=False)
    assert isinstance(tail, torch.Tensor) and tail.numel() == enh.latency_samples
    y = np.concatenate(outs + [tail.numpy()])
    assert np.abs(y[320:] - ref).max() < 1e-4
    with pytest.raises(ValueError, match="1-D"):
        enh.process(np.zeros((2, 3), np.float32))
