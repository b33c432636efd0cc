"""Choose a model's attenuation limit on held-out mixtures of its training recipe (never dev/).

Makes ``--count`` mixtures of ``--seconds`` from the files the recipe holds out for validation
(speakers or files, as the recipe's ``holdout_by`` says), enhances them once with the network
alone, mixes the input back in at each limit (the same rule as ``gagnet enhance --atten-lim``)
and prints the mean change against the input by SNR band, plus a row "clean" where the input is
the held-out clean speech itself (its WB-PESQ change is what the model costs clean speech). The
choice it prints: the strongest limit with no SNR band losing STOI, ESTOI or SI-SDR and clean
speech losing at most ``--clean-bar`` WB-PESQ; "none" when even the weakest limit fails. The
shipped ``causal-v1`` limit (12 dB) came from the first rule alone::

    python recipes/atten_lim_sweep.py --model causal-v1 --config src/gagnet/configs/default-model.yaml

(needs that recipe's local data: see docs/training.md (d); about 25 minutes on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from gagnet.attenuation import floor_gain
from gagnet.config import TrainConfig
from gagnet.data import ValidationSet, split_sources
from gagnet.enhance import Enhancer
from gagnet.evaluate import evaluate

BANDS = [(-np.inf, 5.0), (5.0, 15.0), (15.0, 22.5), (22.5, np.inf)]
GUARDED = ["stoi", "estoi", "si_sdr"]  # no SNR band may lose these against its input
METRICS = ["pesq_wb", "stoi", "estoi", "si_sdr", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"]


def held_out_set(config: Path, count: int, seconds: float, snr: tuple[float, float], folder: Path) -> list[float]:
    """Write ``folder/{noisy,clean}/NNNN.wav``; returns each mixture's SNR."""
    cfg = TrainConfig.from_dict(yaml.safe_load(config.read_text()))
    # val_snr_db too: the validation set mixes at it when the recipe sets one (before 2026-12-06
    # it was left alone, so recipes with val_snr_db -5..20 never filled the band above 22.5 dB)
    data = cfg.data.replace(val_count=count, val_seconds=seconds, snr_db=list(snr), val_snr_db=list(snr), val_seed=12345)
    (_, speech), (_, noise) = split_sources(data)
    vs = ValidationSet(speech, noise, data)
    vs.write(folder)
    return [float(item["snr"]) for item in vs.items]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="causal-v1")
    ap.add_argument("--config", type=Path, default=Path("src/gagnet/configs/default-model.yaml"))
    ap.add_argument("--limits", type=float, nargs="+", default=[20, 15, 12, 9, 6])
    ap.add_argument("--count", type=int, default=96)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--snr", type=float, nargs=2, default=(-5.0, 30.0))
    ap.add_argument("--clean-bar", type=float, default=0.1, help="WB-PESQ clean speech may lose (default 0.1)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="gagnet-sweep-") as tmp:
        root = Path(tmp)
        snrs = held_out_set(args.config, args.count, args.seconds, tuple(args.snr), root)
        network = Enhancer.from_pretrained(args.model, atten_lim_db=None)
        inputs = {"noisy": sorted((root / "noisy").glob("*.wav")), "clean": sorted((root / "clean").glob("*.wav"))}
        limits = [None, *sorted(args.limits, reverse=True)]  # strongest first
        for kind, paths in inputs.items():
            for lim in limits:
                (root / f"{kind}_{lim}").mkdir()
            for path in paths:
                x, sr = sf.read(path, dtype="float32")
                y = network.enhance(x, sr)
                for lim in limits:
                    g = floor_gain(lim)
                    sf.write(root / f"{kind}_{lim}" / path.name, (1 - g) * y + g * x, sr, subtype="FLOAT")
        snr_of = {p.stem: s for p, s in zip(inputs["noisy"], snrs)}
        print("mean change against the input; rows: limit and SNR band ('clean': clean speech as the input)")
        print(f"{'limit':<6} {'band':<11} " + " ".join(f"{m:>11}" for m in METRICS))
        strongest = "none"
        for lim in limits:
            r = evaluate(root / "clean", root / f"noisy_{lim}", noisy_dir=root / "noisy", metrics=METRICS, progress=False)
            rows = {band: [] for band in [*BANDS, None]}
            for f in r["files"]:
                delta = [f[m] - f["noisy_" + m] for m in METRICS]
                band = next(b for b in BANDS if b[0] <= snr_of[Path(f["file"]).stem] < b[1])
                rows[band].append(delta)
                rows[None].append(delta)
            c = evaluate(root / "clean", root / f"clean_{lim}", noisy_dir=root / "clean", metrics=METRICS, progress=False)
            rows["clean"] = [[f[m] - f["noisy_" + m] for m in METRICS] for f in c["files"]]
            label = "off" if lim is None else f"{lim:g} dB"
            ok = True
            for band, deltas in rows.items():
                name = band if isinstance(band, str) else "all" if band is None else f"{band[0]:g}..{band[1]:g}"
                means = np.nanmean(np.array(deltas, float), axis=0) if deltas else np.full(len(METRICS), np.nan)
                print(f"{label:<6} {name:<11} " + " ".join(f"{v:11.3f}" for v in means) + f"   n={len(deltas)}")
                if band is not None and band != "clean" and deltas:
                    ok &= all(means[METRICS.index(m)] >= 0 for m in GUARDED)
                if band == "clean":
                    ok &= means[METRICS.index("pesq_wb")] >= -args.clean_bar
            if ok and strongest == "none":  # limits run strongest first
                strongest = lim
        print(f"choice: {strongest} (strongest limit with no band losing {', '.join(GUARDED)} "
              f"and clean speech losing at most {args.clean_bar:g} WB-PESQ)")

if __name__ == "__main__":
    main()
