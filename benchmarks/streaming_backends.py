"""Streaming cost per 10 ms hop of a causal GaGNet across back ends, and their equality to offline.

Back ends: the eager streaming twin (:class:`gagnet.streaming.StreamingEnhancer`), the fast
single-frame step (:mod:`gagnet.fast_step`) in eager PyTorch and under ``torch.compile``,
ONNX Runtime running the generic step graph and the fast one (``export_streaming(fast=True)``)
in float32 and with int8 weights, and the native int8 stages (:mod:`gagnet.native`, batch-norm
models), each with 1 and 2 threads, plus the offline real-time factor, all in the same run. Every back
end is also checked against offline processing (max abs difference of the waveforms). Not a test.

    python benchmarks/streaming_backends.py [--config causal | --model FILE] [--seconds 3]
        [--threads 1 2] [--no-compile] [--check-seconds 10] [--baseline-onnx OLD.onnx] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from gagnet import GaGNet, WaveGaGNet, get_config
from gagnet.benchmark import _Interference, _noise, machine_line, offline_rtf, streaming_stats
from gagnet.export import OnnxStreamingEnhancer, export_streaming
from gagnet.fast_step import FastStreamingEnhancer
from gagnet.native import NativeStreamingEnhancer, native_available, native_supported
from gagnet.streaming import StreamingEnhancer

log = logging.getLogger("streaming_backends")


class TorchFramedOnnx(OnnxStreamingEnhancer):
    """:class:`OnnxStreamingEnhancer` with the torch signal path of ``StreamingEnhancer`` (as before
    :mod:`gagnet.np_framing`): the baseline of ``--baseline-onnx``."""

    reset = StreamingEnhancer.reset
    process = StreamingEnhancer.process
    flush = StreamingEnhancer.flush
    _run_frames = StreamingEnhancer._run_frames
    _take = StreamingEnhancer._take


def _backends(model: WaveGaGNet, tmp: Path, threads: int, compile: bool,
              baseline: str | None = None) -> dict[str, Callable[[], Any]]:
    step = tmp / "step.onnx"
    fast = tmp / "fast.onnx"
    fast8 = tmp / "fast-int8.onnx"
    if not step.exists():
        export_streaming(model, step)
        export_streaming(model, fast, fast=True)
        export_streaming(model, fast8, fast=True, precision="int8")
    out: dict[str, Callable[[], Any]] = {
        "PyTorch eager, StreamingEnhancer": lambda: StreamingEnhancer(model),
        "PyTorch eager, FastStep": lambda: FastStreamingEnhancer(model),
    }
    if compile:
        out["torch.compile, FastStep"] = lambda: FastStreamingEnhancer(model, compile=True)
    out["ONNX Runtime, step graph"] = lambda: OnnxStreamingEnhancer(step, threads=threads)
    if baseline:
        out["ONNX Runtime, baseline graph, torch signal path"] = lambda: TorchFramedOnnx(baseline, threads=threads)
    out["ONNX Runtime, fast step"] = lambda: OnnxStreamingEnhancer(fast, threads=threads)
    out["ONNX Runtime, fast step, int8 graph"] = lambda: OnnxStreamingEnhancer(fast8, threads=threads)
    if native_supported(model.cfg) and native_available():
        out["ONNX Runtime encoder + native int8 stages"] = lambda: NativeStreamingEnhancer(model, threads=threads)
    return out


def max_error(model: WaveGaGNet, make: Callable[[], Any], seconds: float) -> float:
    """Max abs difference between the streamed (10 ms chunks, aligned) and the offline waveform."""
    x = _noise(int(seconds * model.cfg.sample_rate), seed=2).numpy()
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
        enh = make()
        hop = model.cfg.hop_length
        y = np.concatenate([enh.process(x[i : i + hop]) for i in range(0, len(x), hop)] + [enh.flush()])
    lat = enh.latency_samples
    return float(np.abs(y[lat : lat + len(x)] - ref).max())


def run(model: WaveGaGNet, seconds: float, threads: list[int], compile: bool, check_seconds: float,
        baseline: str | None = None) -> dict[str, Any]:
    """Time every back end at every thread count; returns a JSON-able dict."""
    monitor = _Interference()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        with monitor:
            offline = {t: offline_rtf(model, seconds, t)["rtf"] for t in threads}
        for t in threads:
            for name, make in _backends(model, tmp, t, compile, baseline).items():
                t0 = time.perf_counter()
                with monitor:
                    s = streaming_stats(model, seconds, threads=t, enhancer=make)
                log.info("%s, %d thread(s): %.2f ms/hop (%.0f s)", name, t, s["ms_per_hop_mean"],
                         time.perf_counter() - t0)
                rows.append({"backend": name, "threads": t, **s})
        errors = {}
        if check_seconds > 0:
            torch.set_num_threads(1)
            for name, make in _backends(model, tmp, 1, compile, baseline).items():
                errors[name] = max_error(model, make, check_seconds)
    return {"machine": machine_line(), "seconds": seconds, "offline_rtf": offline, "rows": rows,
            "max_abs_error_vs_offline": errors, "check_seconds": check_seconds,
            "other_load_cpus": monitor.cpus}


def format_table(res: dict[str, Any]) -> str:
    """Markdown table of ms per hop (mean, p95) per back end and thread count."""
    threads = sorted({r["threads"] for r in res["rows"]})
    names = list(dict.fromkeys(r["backend"] for r in res["rows"]))
    by = {(r["backend"], r["threads"]): r for r in res["rows"]}
    head = "| back end | " + " | ".join(f"{t} thread{'s' * (t > 1)}: ms/hop mean (p95)" for t in threads)
    head += " | max abs error vs offline |"
    lines = [head, "|" + "---|" * (len(threads) + 2)]
    for n in names:
        cells = [f"{by[n, t]['ms_per_hop_mean']:.2f} ({by[n, t]['ms_per_hop_p95']:.2f})" for t in threads]
        err = res["max_abs_error_vs_offline"].get(n)
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {'n/a' if err is None else f'{err:.1e}'} |")
    off = ", ".join(f"{t} thread(s) {v:.3f}" for t, v in res["offline_rtf"].items())
    lines.append(f"\noffline real-time factor: {off}; {res['machine']}; other load while timing: "
                 f"{res['other_load_cpus'] or 0:.2f} CPUs; error checked over {res['check_seconds']:g} s")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", default="causal", help="preset with random weights (default causal)")
    src.add_argument("--model", default=None, help="model file or shipped model name")
    p.add_argument("--seconds", type=float, default=3.0, help="seconds of noise streamed per timing")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (it takes a minute)")
    p.add_argument("--check-seconds", type=float, default=10.0, help="length of the equality check (0: skip)")
    p.add_argument("--baseline-onnx", default=None, metavar="FILE",
                   help="also time this streaming graph (e.g. one exported by an earlier version, same weights) "
                   "with the torch signal path StreamingEnhancer used before gagnet.np_framing")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.model:
        from gagnet.pretrained import load_model

        model = load_model(args.model).eval()
    else:
        torch.manual_seed(0)
        model = WaveGaGNet(GaGNet(get_config(args.config))).eval()
    res = run(model, args.seconds, args.threads, not args.no_compile, args.check_seconds, args.baseline_onnx)
    print(format_table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
