"""Peak memory and speed of ``gagnet enhance`` on long files: 10 s, 5 min and 60 min.

Each measurement enhances a generated 16 kHz wav file with :class:`gagnet.Enhancer` in a fresh
process and reads the process's peak resident memory (``gagnet.benchmark.peak_memory``).
Weights are fixed per config (saved once), so the ONNX back end exports its graph on the first
probe only; that first probe is reported as ``first_use``. Not a test.

    python benchmarks/enhance_memory.py [--config paper causal] [--backend torch onnx] [--seconds 10 300 3600]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

from gagnet import GaGNet, WaveGaGNet, get_config
from gagnet.benchmark import machine_line, peak_memory
from gagnet.train import save_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", nargs="+", default=["paper", "causal"])
    ap.add_argument("--backend", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx"])
    ap.add_argument("--seconds", nargs="+", type=float, default=[10.0, 300.0, 3600.0])
    args = ap.parse_args()
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory(prefix="gagnet-mem-") as tmp:
        os.environ["GAGNET_CACHE"] = str(Path(tmp) / "cache")  # inherited by the probes: a cold cache
        for name in args.config:
            torch.manual_seed(0)
            model = WaveGaGNet(GaGNet(get_config(name))).eval()
            ckpt = Path(tmp) / f"{name}.pt"
            save_weights(model.net, ckpt)
            for backend in args.backend:
                runs = ([("first_use", args.seconds[0])] if backend == "onnx" else []) + [
                    ("", s) for s in args.seconds]
                for tag, sec in runs:
                    r = peak_memory(model, checkpoint=str(ckpt), seconds=sec, backend=backend, timeout=4 * sec + 600)
                    row = {"config": name, "backend": backend, "file_s": sec, "peak_rss_mb": round(r["peak_rss_mb"]),
                           "after_load_mb": round(r["baseline_rss_mb"]), "rtf": r["probe_rtf"],
                           "threads": r["probe_threads"]}
                    if tag:
                        row["note"] = "first use: includes the ONNX export"
                    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
