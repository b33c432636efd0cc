"""Compare candidate weights on a recipe's held-out mixtures with every measure (never dev/).

Each model runs with the network alone (no attenuation limit) on ``--count`` mixtures of
``--seconds`` made from the speakers and noise files the recipe holds out, and on the held-out
clean speech itself. Prints one row per model: the 11 measures of issue 18 on the mixtures, then
the WB-PESQ and STOI change on clean speech (what the model costs clean input). ``--blend A B``
adds the weight blends ``(1 - a) * A + a * B`` for each ``--alphas`` value
(:mod:`gagnet.blend`)::

    python recipes/compare_held_out.py --config src/gagnet/configs/causal-v2-stage2.yaml \\
        --models causal-v1 causal-v2-wip --blend causal-v2-wip run/model_fp16.pt --alphas 0.3 0.5 0.7

About 2 minutes per model for 64 mixtures of 6 s on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import soundfile as sf

from gagnet.blend import blend_files
from gagnet.enhance import Enhancer
from gagnet.evaluate import evaluate

MEASURES = ["pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "csig", "cbak", "covl",
            "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"]
CLEAN = ["pesq_wb", "stoi"]


def enhance_dir(model: str, src: Path, dst: Path) -> None:
    network = Enhancer.from_pretrained(model, atten_lim_db=None)
    dst.mkdir(parents=True)
    for path in sorted(src.glob("*.wav")):
        x, sr = sf.read(path, dtype="float32")
        sf.write(dst / path.name, network.enhance(x, sr), sr, subtype="FLOAT")


def main() -> None:
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from atten_lim_sweep import held_out_set

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, default=Path("src/gagnet/configs/causal-v2-stage2.yaml"))
    ap.add_argument("--models", nargs="*", default=["causal-v1", "causal-v2-wip"])
    ap.add_argument("--blend", nargs=2, metavar=("A", "B"))
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.5])
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--snr", type=float, nargs=2, default=(-5.0, 20.0))
    ap.add_argument("--keep", type=Path, help="folder to keep the blended weights in")
    ap.add_argument("--json", type=Path, help="write the table here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="gagnet-compare-") as tmp:
        root = Path(tmp)
        held_out_set(args.config, args.count, args.seconds, tuple(args.snr), root / "set")
        models = list(args.models)
        if args.blend:
            keep = args.keep or root / "blends"
            keep.mkdir(parents=True, exist_ok=True)
            models += [str(blend_files(*args.blend, a, keep / f"blend_{a:g}.pt")) for a in args.alphas]
        table = {}
        print(f"{'model':<28} " + " ".join(f"{m:>11}" for m in MEASURES) + "  " + " ".join(f"clean_{m:>4}" for m in CLEAN))
        for i, model in enumerate(models):
            out = root / f"m{i}"
            enhance_dir(model, root / "set" / "noisy", out / "noisy")
            enhance_dir(model, root / "set" / "clean", out / "clean")
            r = evaluate(root / "set" / "clean", out / "noisy", noisy_dir=root / "set" / "noisy", metrics=MEASURES, progress=False)
            c = evaluate(root / "set" / "clean", out / "clean", noisy_dir=root / "set" / "clean", metrics=CLEAN, progress=False)
            row = {m: r["summary"][m]["mean"] for m in MEASURES}
            row |= {f"clean_{m}": c["improvement"][m]["mean"] for m in CLEAN}
            if i == 0:
                noisy = {m: r["noisy_summary"][m]["mean"] for m in MEASURES}
                table["noisy"] = noisy
                print(f"{'noisy':<28} " + " ".join(f"{noisy[m]:11.3f}" for m in MEASURES))
            table[model] = row
            print(f"{Path(model).name[-28:]:<28} " + " ".join(f"{row[m]:11.3f}" for m in MEASURES)
                  + "  " + " ".join(f"{row['clean_' + m]:10.3f}" for m in CLEAN), flush=True)
        if args.json:
            args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
