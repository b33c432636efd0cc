"""Compare candidate weights on a recipe's held-out mixtures with every measure (never dev/).

Each model runs with the network alone (no attenuation limit) on ``--count`` mixtures of
``--seconds`` made from the speakers and noise files the recipe holds out, and on the held-out
clean speech itself. Prints one row per model: the 11 measures of issue 18 on the mixtures, then
the WB-PESQ and STOI change on clean speech (what the model costs clean input). ``--blend A B``
adds the weight blends ``(1 - a) * A + a * B`` for each ``--alphas`` value, ``--modules`` giving
some modules their own alpha (:mod:`gagnet.blend`)::

    python recipes/compare_held_out.py --config src/gagnet/configs/causal-v2-stage2.yaml \\
        --models causal-v1 START.pt LEASE.pt --blend START.pt LEASE.pt --alphas 0.3 0.5 0.7

After the table, each model is set against each ``--against`` model (default ``causal-v1`` and
``causal-v2-wip``, evaluated too when not listed): on how many of the 11 measures it is higher,
and which it is not (issue 18's rule: a model replaces another only when it is higher on all).

Rows are labelled by the model's name or path (blends: ``blend a``). Held out means held out by
``--config``'s split only. Runs trained with another split may have trained on part of it:
``--exclude-trained-by`` drops every file that another recipe trains on, matched by parent
folder and name without suffix. The 2026-12-06 lease's pack split differently; the files no run
has trained on are listed in ``recipes/unseen/`` (``--config recipes/unseen/unseen.yaml``;
docs/training.md (h)). About 2 minutes per model for 64 mixtures of 6 s on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import soundfile as sf
import yaml

from gagnet.blend import blend_files
from gagnet.data.validation import source_name
from gagnet.enhance import Enhancer
from gagnet.evaluate import evaluate

MEASURES = ["pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "csig", "cbak", "covl",
            "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"]
CLEAN = ["pesq_wb", "stoi"]


def beats(row: dict[str, float], ref: dict[str, float]) -> list[str]:
    """The measures of :data:`MEASURES` on which ``row`` is not higher than ``ref`` (every measure
    is better higher): ``[]`` when ``row`` beats ``ref`` on all of them."""
    return [m for m in MEASURES if not row[m] > ref[m]]


def _loose_key(path: Path) -> str:
    """Parent folder and stem: the same for a file and its packed copy, in either pack layout
    (``0/<path>.ogg`` before packs kept split keys, ``<k>/<two folders>/<path>.wav.ogg`` since)."""
    return f"{path.parent.name}/{Path(source_name(path)).stem}"


def unseen_config(config: Path, exclude: list[str], folder: Path) -> Path:
    """A copy of ``config`` whose speech and noise are the files it holds out that none of the
    ``exclude`` recipes trains on (lists in ``folder``; every listed file is held out)."""
    from gagnet.data import split_sources
    from gagnet.train import load_train_config

    cfg = yaml.safe_load(config.read_text())
    data = load_train_config(str(config)).data
    seen: set[str] = set()
    for name in exclude:
        for trained, _ in split_sources(load_train_config(name).data):
            seen |= {_loose_key(p) for p in trained}
    folder.mkdir(parents=True, exist_ok=True)
    for kind, (_, held) in zip(("speech", "noise"), split_sources(data)):
        kept = [str(Path(p).resolve()) for p in held if _loose_key(Path(p)) not in seen]
        print(f"{kind}: {len(held)} held out by {config.name}, {len(kept)} of them trained on by none of {exclude}")
        (folder / f"{kind}.txt").write_text("\n".join(kept) + "\n")
        cfg["data"][kind] = [str((folder / f"{kind}.txt").resolve())]
    cfg["data"]["holdout_fraction"] = 1.0
    (folder / "unseen.yaml").write_text(yaml.safe_dump(cfg))
    return folder / "unseen.yaml"


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
    ap.add_argument("--modules", type=json.loads, default=None, metavar="JSON",
                    help='per-module alphas for the blends, e.g. \'{"encoder": 1, "stages.1.glance": 0.5}\' (gagnet.blend)')
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--snr", type=float, nargs=2, default=(-5.0, 20.0))
    ap.add_argument("--exclude-trained-by", nargs="*", default=[], metavar="CONFIG",
                    help="drop held-out files that these recipes train on (e.g. a recipe with another split)")
    ap.add_argument("--unseen-dir", type=Path, help="keep the --exclude-trained-by lists and unseen.yaml here "
                    "(for recipes/atten_lim_sweep.py --config DIR/unseen.yaml)")
    ap.add_argument("--keep", type=Path, help="folder to keep the blended weights in")
    ap.add_argument("--json", type=Path, help="write the table here")
    ap.add_argument("--against", nargs="*", default=["causal-v1", "causal-v2-wip"], metavar="MODEL",
                    help="models to set every other against, measure by measure (evaluated too)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="gagnet-compare-") as tmp:
        root = Path(tmp)
        config = unseen_config(args.config, args.exclude_trained_by, args.unseen_dir or root / "unseen") if args.exclude_trained_by else args.config
        held_out_set(config, args.count, args.seconds, tuple(args.snr), root / "set")
        models = list(args.models) + [m for m in args.against if m not in args.models]
        if args.blend:
            keep = args.keep or root / "blends"
            keep.mkdir(parents=True, exist_ok=True)
            models += [(f"blend {a:g}", str(blend_files(*args.blend, a, keep / f"blend_{a:g}.pt", args.modules)))
                       for a in args.alphas]
        models = [m if isinstance(m, tuple) else (m, m) for m in models]
        table = {}
        cols = [*MEASURES, *(f"clean_{m}" for m in CLEAN)]
        print(f"{'model':<36} " + " ".join(f"{m:>13}" for m in cols))
        for i, (label, model) in enumerate(models):
            out = root / f"m{i}"
            enhance_dir(model, root / "set" / "noisy", out / "noisy")
            enhance_dir(model, root / "set" / "clean", out / "clean")
            first = i == 0  # the noisy input is scored once
            r = evaluate(root / "set" / "clean", out / "noisy", noisy_dir=root / "set" / "noisy" if first else None,
                         metrics=MEASURES, progress=False)
            c = evaluate(root / "set" / "clean", out / "clean", noisy_dir=root / "set" / "clean", metrics=CLEAN, progress=False)
            row = {m: r["summary"][m]["mean"] for m in MEASURES}
            row |= {f"clean_{m}": c["improvement"][m]["mean"] for m in CLEAN}
            if first:
                table["noisy"] = {m: r["noisy_summary"][m]["mean"] for m in MEASURES}
                print(f"{'noisy':<36} " + " ".join(f"{table['noisy'][m]:13.3f}" for m in MEASURES))
            table[label] = row
            print(f"{label[-36:]:<36} " + " ".join(f"{row[m]:13.3f}" for m in cols), flush=True)
        for ref in args.against:
            for label, row in table.items():
                if label not in (ref, "noisy"):
                    lost = beats(row, table[ref])
                    print(f"{label} against {ref}: higher on {len(MEASURES) - len(lost)}/{len(MEASURES)}"
                          + (f" (not on {', '.join(lost)})" if lost else ""))
        if args.json:
            args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
