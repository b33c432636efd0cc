"""Training throughput (audio-seconds per second) of this project's GaGNet and the authors' model.

Same batch (4 x 3 s of 16 kHz noise-like input), same loss, Adam, same machine, same run.
The authors' model comes from their ``GaGNet.py`` when ``--official PATH`` is given (it
is not shipped here); both use the paper configuration (instance norm). Not a test.

    python benchmarks/train_throughput.py --official /path/to/GaGNet.py [--steps 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import time

import torch

from gagnet import WaveGaGNet, get_config
from gagnet.compat import to_official
from gagnet.dsp import frame_mask
from gagnet.loss import gagnet_loss


def _official(path: str) -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location("official_gagnet", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.GaGNet(cin=2, k1=(2, 3), k2=(1, 3), c=64, kd1=3, cd1=64, d_feat=256, p=2, q=3, dilas=[1, 2, 5, 9],
                      fft_num=320, is_u2=True, is_causal=True, is_squeezed=False, acti_type="sigmoid",
                      intra_connect="cat", norm_type="IN")


def _steps(forward, params, noisy, clean, lengths, cfg, steps: int, device: str) -> tuple[float, float]:
    """Time ``steps`` optimiser steps after one warm-up; returns (seconds per step, last loss)."""
    opt = torch.optim.Adam(params, lr=5e-4)
    wave = WaveGaGNet(get_config(cfg))

    def one() -> float:
        n, c = wave.analyze(noisy), wave.analyze(clean)
        mask = frame_mask(lengths, wave.cfg, n.shape[-1])
        loss = gagnet_loss(forward(n), c, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        return float(loss)

    one()
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        loss = one()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps, loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", help="path to the authors' GaGNet.py")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n = int(args.seconds * 16000)
    noisy = (0.1 * torch.randn(args.batch, n)).to(args.device)
    clean = (0.05 * torch.randn(args.batch, n)).to(args.device)
    lengths = torch.full((args.batch,), n, device=args.device)
    audio = args.batch * args.seconds
    rows = []
    ours = WaveGaGNet("paper").net.to(args.device)
    candidates = [("gagnet (this project), paper", ours, ours)]
    if args.official:
        ref = _official(args.official).to(args.device)
        ref.load_state_dict(to_official(ours.state_dict()))
        # the authors' model takes (B, 2, T, F) and returns (B, 2, F, T) estimates
        candidates.append(("authors' GaGNet.py, paper", ref, lambda x: ref(x.transpose(2, 3).contiguous())))
    for name, module, fwd in candidates:
        module.train()
        sec, loss = _steps(fwd, list(module.parameters()), noisy, clean, lengths, "paper", args.steps, args.device)
        rows.append({"model": name, "s_per_step": round(sec, 4), "audio_s_per_s": round(audio / sec, 2),
                     "loss_after": round(loss, 6)})
    info = {"device": args.device if args.device != "cpu" else platform.processor() or "cpu",
            "threads": torch.get_num_threads(), "batch": f"{args.batch} x {args.seconds} s", "rows": rows}
    if len(rows) == 2:
        info["speedup"] = round(rows[0]["audio_s_per_s"] / rows[1]["audio_s_per_s"], 3)
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
