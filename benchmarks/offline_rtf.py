"""Offline speed of the paper network: this project (eager and ONNX Runtime) against the authors' model.

Same weights, same 10 s spectrum input, same run, network only (the STFT costs both sides the
same). Reports seconds per second of audio (real-time factor) with 1 and 2 threads, the ratio
to the authors' time, and each output's max abs difference from the authors' last-stage
estimate. The authors' ``GaGNet.py`` is not shipped; pass its path. Not a test.

    python benchmarks/offline_rtf.py --official /path/to/GaGNet.py [--seconds 10] [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_throughput import _official  # noqa: E402

from gagnet import WaveGaGNet  # noqa: E402
from gagnet.benchmark import machine_line  # noqa: E402
from gagnet.compat import to_official  # noqa: E402
from gagnet.export import export_offline, make_session  # noqa: E402


def _median_time(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(official: str, seconds: float = 10.0, runs: int = 5, threads: tuple[int, ...] = (1, 2)) -> dict:
    """Time the authors' model, ours in PyTorch and ours in ONNX Runtime on one random-weight paper network."""
    torch.manual_seed(0)
    wave = WaveGaGNet("paper").eval()
    ours = wave.net
    ref = _official(official).eval()
    ref.load_state_dict(to_official(ours.state_dict()))
    noisy = 0.1 * torch.randn(1, int(seconds * 16000))
    spec = wave.analyze(noisy)  # (1, 2, F, T) compressed
    spec_np = spec.numpy()
    onnx_path = Path(tempfile.mkdtemp()) / "paper.onnx"
    export_offline(wave, onnx_path)
    with torch.no_grad():
        want = ref(spec.transpose(2, 3).contiguous())[-1].numpy()
    rows = []
    for n in threads:
        torch.set_num_threads(n)
        session = make_session(onnx_path, n)
        name = session.get_inputs()[0].name
        outs = {}

        def authors() -> None:
            with torch.no_grad():
                outs["authors"] = ref(spec.transpose(2, 3).contiguous())[-1].numpy()

        def eager() -> None:
            with torch.no_grad():
                outs["eager"] = ours(spec)[-1].numpy()

        def onnx() -> None:
            outs["onnx"] = session.run(None, {name: spec_np})[0]

        timed = {}
        for _ in range(2):  # interleaved twice; keep each one's best median
            for key, fn in (("authors", authors), ("eager", eager), ("onnx", onnx)):
                timed[key] = min(timed.get(key, float("inf")), _median_time(fn, runs))
        for key in ("authors", "eager", "onnx"):
            rows.append({"threads": n, "model": key, "rtf": round(timed[key] / seconds, 4),
                         "vs_authors": round(timed[key] / timed["authors"], 3),
                         "max_abs_diff": float(np.abs(outs[key] - want).max())})
    return {"machine": machine_line(), "seconds": seconds, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, help="path to the authors' GaGNet.py")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    print(json.dumps(measure(args.official, args.seconds, args.runs, tuple(args.threads)), indent=2))


if __name__ == "__main__":
    main()
