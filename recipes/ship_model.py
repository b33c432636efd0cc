"""Write a trained ``model.pt`` as a shipped model: fp16 weights, summary, recipe, attenuation limit.

    python recipes/ship_model.py local/runs/causal-v2-cpu/model_best.pt causal-v2 \\
        --summary "causal GaGNet ...; card: causal-v2.md" --recipe causal-v2-cpu --atten-lim 12

writes ``src/gagnet/pretrained/causal-v2.pt`` (the card ``causal-v2.md`` is written by hand
beside it) and prints how far the fp16 network's output moves from the fp32 one on a test
signal. ``--recipe`` names the packaged training config whose held-out files the quality tests
use (``tests/test_default_quality.py``); ``--atten-lim off`` ships no limit.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from gagnet.pretrained import PRETRAINED_DIR, load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights", type=Path, help="model.pt / model_best.pt from gagnet train")
    ap.add_argument("name", help="shipped name, e.g. causal-v2")
    ap.add_argument("--summary", required=True, help="one line for `gagnet models`")
    ap.add_argument("--recipe", required=True, help="packaged config the model was trained with")
    ap.add_argument("--atten-lim", default="off", help="dB, or off")
    args = ap.parse_args()

    obj = torch.load(args.weights, map_location="cpu", weights_only=True)
    half = {k: v.half() if v.is_floating_point() else v for k, v in obj["state_dict"].items()}
    out = {"config": obj["config"], "state_dict": half, "card": {"summary": args.summary, "recipe": args.recipe}}
    if args.atten_lim != "off":
        out["atten_lim_db"] = float(args.atten_lim)
    dst = PRETRAINED_DIR / f"{args.name}.pt"
    torch.save(out, dst)
    x = 0.1 * torch.randn(16000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = load_model(args.weights)(x), load_model(dst)(x)
    rel = float((a - b).norm() / a.norm())
    print(f"wrote {dst} ({dst.stat().st_size / 2**20:.1f} MiB); fp16 vs fp32 output: {20 * torch.log10(torch.tensor(rel)):.1f} dB")


if __name__ == "__main__":
    main()
