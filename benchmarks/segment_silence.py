"""Share of digital zeros in the clean targets of training segments, for both mixers.

A segment whose target is mostly padding trains the network to output silence. This mixes
``--count`` segments of ``--seconds`` from the given speech and noise (training files only,
after the same hold-out split as ``gagnet train``) with the batch mixer and with the
per-mixture file mixer, and reports for each the share of clean samples that are exact zeros
and the share of segments that are more than 10 % zeros. Not a test.

    python benchmarks/segment_silence.py --speech ../shared/data/speech --noise ../shared/data/noise
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from gagnet.config import DataConfig
from gagnet.data import MixingDataset, list_audio, split_holdout
from gagnet.data.batch_mixing import build_mixer


def _summary(clean: torch.Tensor, seconds: float) -> dict:
    zeros = (clean == 0).double().mean(-1)
    return {"zero_fraction": round(float(zeros.mean()), 5),
            "segments_over_10pct_zeros": round(float((zeros > 0.1).double().mean()), 4),
            "mixing_s": round(seconds, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speech", nargs="+", required=True)
    ap.add_argument("--noise", nargs="+", required=True)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--count", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = DataConfig(speech=tuple(args.speech), noise=tuple(args.noise), segment_seconds=args.seconds, seed=args.seed,
                     cache_mb=4096)
    speech, _ = split_holdout(list_audio(cfg.speech), cfg.holdout_fraction)
    noise, _ = split_holdout(list_audio(cfg.noise), cfg.holdout_fraction)
    mixer = build_mixer(speech, noise, cfg, workers=2)
    t = time.perf_counter()
    batch = torch.cat([mixer(torch.arange(i, min(i + 64, args.count)))["clean"] for i in range(0, args.count, 64)])
    rows = {"batch mixer": _summary(batch, time.perf_counter() - t)}
    files = MixingDataset(speech, noise, cfg)
    t = time.perf_counter()
    per_item = torch.stack([files[i]["clean"] for i in range(args.count)])
    rows["file mixer"] = _summary(per_item, time.perf_counter() - t)
    print(json.dumps({"speech_files": len(speech), "speech_hours": round(mixer.speech.seconds / 3600, 3),
                      "segments": f"{args.count} x {args.seconds} s", "mixers": rows}, indent=2))


if __name__ == "__main__":
    main()
