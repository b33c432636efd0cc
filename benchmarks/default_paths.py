"""The paths a user reaches first, timed in one run on one thread, each with its error figure.

Streaming (the shipped default model, 10 ms chunks fed to ``process``, framing and the model's
attenuation limit included):

* ``StreamingEnhancer.from_pretrained()``: the default, ``precision="auto"``: the encoder in ONNX
  Runtime and the glance-gaze stages in C with weight-only int8 (:mod:`gagnet.native`);
* ``from_pretrained(precision="fp32")``: the ONNX fast step in float32;
* ``precision="int8"`` without a C compiler: ONNX Runtime's int8 graph (:mod:`gagnet.quantize`);
* ``from_pretrained(backend="torch")``: the PyTorch fallback.

Each row's error is its largest difference from ``Enhancer.from_pretrained(backend="torch")
.enhance`` (offline, same limit) on ``examples/noisy_example.flac``; the int8 row also gives
the level of its difference from the float32 stream. With ``--dev DIR`` (the DNS no-reverb
dev set: ``DIR/noisy``, ``DIR/clean``) the int8 step's mean WB-PESQ and STOI change against
the float32 step is measured over every clip, streamed the same way, with the limit and
without it.

Offline (``--official GaGNet.py``): the paper network with random weights on the same 10 s
input, the authors' model against ours in PyTorch and in ONNX Runtime (the default offline
back end), as ``benchmarks/offline_rtf.py``. Not a test.

    python benchmarks/default_paths.py --official /path/to/GaGNet.py [--dev ../shared/data/dev/dns_no_reverb]
        [--seconds 5] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parent))
from offline_rtf import measure as offline_measure  # noqa: E402

import gagnet  # noqa: E402
from gagnet.benchmark import _Interference, machine_info, machine_line, streaming_stats  # noqa: E402
from gagnet.metrics import pesq_wb, stoi  # noqa: E402
from gagnet.pretrained import load_model  # noqa: E402

log = logging.getLogger("default_paths")
EXAMPLE = Path(__file__).parent.parent / "examples" / "noisy_example.flac"

ROWS = {
    "from_pretrained(precision='fp32') (ONNX fast step, float32)": {"precision": "fp32"},
    "default: from_pretrained() (native int8 stages)": {},
    "precision='int8' without a C compiler (ONNX Runtime int8 graph)": {"precision": "int8", "no_native": True},
    "from_pretrained(backend='torch') (PyTorch fallback)": {"backend": "torch"},
}


class _no_native:
    """Within it, the native stages are unavailable (as on a machine without a C compiler)."""

    def __init__(self, on: bool) -> None:
        self.on = on

    def __enter__(self) -> None:
        import gagnet.native as nat

        self.saved = nat.load_library
        if self.on:
            def unavailable() -> Any:
                raise nat.NativeUnavailable("benchmark row without the native stages")
            nat.load_library = unavailable

    def __exit__(self, *exc: object) -> None:
        import gagnet.native as nat

        nat.load_library = self.saved


def _stream(enh: Any, x: np.ndarray, chunk: int = 160) -> np.ndarray:
    enh.reset()
    out = [enh.process(x[i : i + chunk]) for i in range(0, len(x), chunk)] + [enh.flush()]
    return np.concatenate(out)[enh.latency_samples :]


def _db(err: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(err**2) / np.sum(ref**2)))


def streaming(seconds: float, torch_seconds: float) -> dict[str, Any]:
    """ms per hop and the error of each streaming row (one thread)."""
    model = load_model(None).eval()
    x, rate = sf.read(EXAMPLE, dtype="float32")
    assert rate == 16000 and x.ndim == 1
    ref = gagnet.Enhancer.from_pretrained(backend="torch").enhance(x, rate)
    rows, f32 = [], None
    monitor = _Interference()
    for name, kw in ROWS.items():
        kw = dict(kw)
        off = kw.pop("no_native", False)
        with _no_native(off):
            enh = gagnet.StreamingEnhancer.from_pretrained(threads=1, **kw)
        with monitor:
            s = streaming_stats(model, torch_seconds if kw.get("backend") == "torch" else seconds, 1, lambda: enh)
        y = _stream(enh, x)
        row = {"path": name, "ms_per_hop_mean": s["ms_per_hop_mean"], "ms_per_hop_p95": s["ms_per_hop_p95"],
               "hops": s["hops"], "max_abs_vs_offline": float(np.abs(y - ref).max())}
        if f32 is None:
            f32 = y
        elif enh.precision == "int8":
            row["diff_vs_float32_db"] = _db(y - f32, f32)
        row["engine"] = enh.engine
        log.info("%s: %.3f ms/hop, error %.1e", name, row["ms_per_hop_mean"], row["max_abs_vs_offline"])
        rows.append(row)
    return {"rows": rows, "other_load_cpus": monitor.cpus}


def dev_change(dev: Path) -> dict[str, Any]:
    """Mean WB-PESQ / STOI of the float32 step and both int8 steps over the dev clips, with and without the limit."""
    out: dict[str, Any] = {}
    for limit in ("model", None):
        kw = {} if limit == "model" else {"atten_lim_db": None}
        enh = {p: gagnet.StreamingEnhancer.from_pretrained(precision=p, threads=1, **kw) for p in ("fp32", "int8")}
        with _no_native(True):
            enh["int8-onnx"] = gagnet.StreamingEnhancer.from_pretrained(precision="int8", threads=1, **kw)
        scores: dict[str, list[tuple[float, float]]] = {p: [] for p in enh}
        files = sorted((dev / "noisy").glob("*.flac"))
        for f in files:
            x, rate = sf.read(f, dtype="float32")
            c, _ = sf.read(dev / "clean" / f.name, dtype="float32")
            for p, e in enh.items():
                y = _stream(e, x)
                scores[p].append((pesq_wb(c, y), stoi(c, y)))
        a = np.array(scores["fp32"])
        key = "with_limit" if limit == "model" else "network_alone"
        out[key] = {"clips": len(files), "fp32_pesq_wb": a[:, 0].mean(), "fp32_stoi": a[:, 1].mean()}
        for p in ("int8", "int8-onnx"):
            b = np.array(scores[p])
            d = b - a
            out[key].update({f"{p}_pesq_wb": b[:, 0].mean(), f"{p}_stoi": b[:, 1].mean(),
                             f"{p}_pesq_wb_change": d[:, 0].mean(), f"{p}_stoi_change": d[:, 1].mean(),
                             f"{p}_pesq_wb_change_max_abs": np.abs(d[:, 0]).max(),
                             f"{p}_stoi_change_max_abs": np.abs(d[:, 1]).max()})
        log.info("%s: %s", key, out[key])
    return {k: {kk: float(vv) for kk, vv in v.items()} for k, v in out.items()}


def table(res: dict[str, Any]) -> str:
    lines = ["| path (one thread) | ms per 10 ms hop, mean (p95) | error |", "|---|---|---|"]
    res = json.loads(json.dumps(res))  # plain floats
    for r in res["streaming"]["rows"]:
        err = f"max abs {r['max_abs_vs_offline']:.1e} from offline"
        if "diff_vs_float32_db" in r:
            err += f"; {r['diff_vs_float32_db']:.1f} dB from float32"
        lines.append(f"| {r['path']} | {r['ms_per_hop_mean']:.2f} ({r['ms_per_hop_p95']:.2f}) | {err} |")
    for r in res.get("offline", {}).get("rows", []):
        lines.append(f"| offline, paper network, {r['model']}: s per s of audio | {r['rtf']:.4f} "
                     f"({r['vs_authors']:.3f}x the authors') | max abs {r['max_abs_diff']:.1e} from the authors' |")
    load = res["streaming"]["other_load_cpus"] or 0
    lines.append(f"\n{res['machine']}; other load while timing the streams: {load:.2f} CPUs")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", default=None, help="the authors' GaGNet.py (adds the offline rows)")
    ap.add_argument("--dev", type=Path, default=None,
                    help="dev folder with noisy/ and clean/ (adds the int8 dev change)")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds streamed per ONNX timing")
    ap.add_argument("--torch-seconds", type=float, default=1.0, help="seconds streamed for the PyTorch timing")
    ap.add_argument("--offline-seconds", type=float, default=10.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    res: dict[str, Any] = {"machine": machine_line({**machine_info(), "threads": [1]}),
                           "streaming": streaming(args.seconds, args.torch_seconds)}
    if args.official:
        res["offline"] = offline_measure(args.official, args.offline_seconds, runs=5, threads=(1,))
    if args.dev:
        res["dev_int8_change"] = dev_change(args.dev)
    print(table(res))
    if "dev_int8_change" in res:
        print(json.dumps(res["dev_int8_change"], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
