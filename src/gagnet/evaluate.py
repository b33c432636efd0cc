"""Evaluate enhanced speech against clean references: pairing, parallel scoring, summaries,
JSON/CSV output, plots and the ``gagnet evaluate`` subcommand.

Files are paired by relative path without extension, or, when names differ by a prefix, by a
trailing ``fileid_<N>`` token in the same sub-folder (``clean_fileid_3.wav`` and
``fileid_3.flac``). All audio is read as float, averaged to mono and resampled to 16 kHz.

A file whose metrics cannot be computed at all (unreadable, silent clean reference) is kept in
``files`` with an ``error`` message and NaN metrics; summaries skip NaN values and report, per
metric, the mean, the half-width of the 95 % confidence interval of the mean (Student t) and
``n``, the number of valid values. Means and intervals are ``None`` (never NaN) when there are
no valid values, and the interval is ``None`` below two values.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .attenuation import FROM_MODEL, parse_atten_lim
from .metrics import METRICS, SAMPLE_RATE, parse_metrics, resample, score

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aif", ".aiff", ".mp3")
_FILEID = re.compile(r"fileid_(\d+)$", re.IGNORECASE)
_SNR = re.compile(r"snr_?(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_MAX_LISTED = 10


# ----------------------------------------------------------------------------- pairing
@dataclass(frozen=True)
class Pair:
    """One evaluation item: the shared key (relative path without extension) and its files."""

    key: str
    clean: Path
    enhanced: Path
    noisy: Path | None = None


def _scan(directory: str | os.PathLike[str], role: str) -> dict[str, Path]:
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"{role} directory not found: {root}")
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in AUDIO_EXTENSIONS or path.name.startswith("."):
            continue
        key = path.relative_to(root).with_suffix("").as_posix()
        if key in found:
            raise ValueError(f"ambiguous {role} files: {found[key].name} and {path.name} share the name {key!r}")
        found[key] = path
    if not found:
        raise ValueError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {role} directory {root}")
    return found


def _fileid_token(key: str) -> tuple[str, str] | None:
    parent, _, name = key.rpartition("/")
    m = _FILEID.search(name)
    return (parent, str(int(m.group(1)))) if m else None


def _unique_tokens(keys: Iterable[str]) -> dict[tuple[str, str], str]:
    seen: dict[tuple[str, str], list[str]] = {}
    for k in keys:
        tok = _fileid_token(k)
        if tok is not None:
            seen.setdefault(tok, []).append(k)
    return {tok: ks[0] for tok, ks in seen.items() if len(ks) == 1}


def _match(ref: dict[str, Path], other: dict[str, Path]) -> tuple[dict[str, Path], list[str], list[str]]:
    """Map each ``ref`` key to a file of ``other``; also return the unmatched keys of both."""
    matched = {k: other[k] for k in ref if k in other}
    rest_ref = [k for k in ref if k not in matched]
    used = set(matched)
    rest_other = [k for k in other if k not in used]
    if rest_ref and rest_other:
        tokens_other = _unique_tokens(rest_other)
        tokens_ref = _unique_tokens(rest_ref)
        for tok, k in tokens_ref.items():
            if tok in tokens_other:
                matched[k] = other[tokens_other[tok]]
                used.add(tokens_other[tok])
        rest_ref = [k for k in ref if k not in matched]
        rest_other = [k for k in other if k not in used]
    return matched, rest_ref, rest_other


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f", ... ({len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else "")


def pair_files(
    clean_dir: str | os.PathLike[str],
    enhanced_dir: str | os.PathLike[str],
    noisy_dir: str | os.PathLike[str] | None = None,
) -> list[Pair]:
    """Pair the audio files of the folders (see module doc), sorted by key.

    Raises ``ValueError`` naming (the first 10 of) the files left without a partner on any side.
    """
    clean = _scan(clean_dir, "clean")
    others = {"enhanced": (enhanced_dir, _scan(enhanced_dir, "enhanced"))}
    if noisy_dir is not None:
        others["noisy"] = (noisy_dir, _scan(noisy_dir, "noisy"))
    matches: dict[str, dict[str, Path]] = {}
    problems = []
    for role, (directory, files) in others.items():
        matched, lone_clean, lone_other = _match(clean, files)
        matches[role] = matched
        if lone_clean:
            problems.append(f"{len(lone_clean)} clean file(s) without a match in {directory}: {_listing(lone_clean)}")
        if lone_other:
            problems.append(
                f"{len(lone_other)} {role} file(s) without a match in {clean_dir}: {_listing(lone_other)}"
            )
    if problems:
        raise ValueError("unmatched files: " + "; ".join(problems))
    noisy = matches.get("noisy", {})
    return [Pair(k, clean[k], matches["enhanced"][k], noisy.get(k)) for k in sorted(clean)]


def parse_snr(*names: str | os.PathLike[str] | None) -> float | None:
    """The SNR in dB from the first name carrying ``snr<number>`` (case-insensitive), else None."""
    for name in names:
        if name is None:
            continue
        m = _SNR.search(Path(name).name)
        if m:
            return float(m.group(1))
    return None


# ----------------------------------------------------------------------------- scoring
def load_audio(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an audio file as float64 mono (channels averaged) at 16 kHz."""
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    if data.shape[1] > 1:
        log.warning("%s has %d channels; averaging them", path, data.shape[1])
    return resample(data.mean(axis=1), rate, SAMPLE_RATE)


def _init_worker() -> None:
    from .metrics import dnsmos

    dnsmos.set_num_threads(1)  # one process per core already


def _score_pair(pair: Pair, metrics: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"file": pair.key, "snr": parse_snr(pair.noisy, pair.clean, pair.enhanced)}
    row.update({m: math.nan for m in metrics})
    if pair.noisy is not None:
        row.update({f"noisy_{m}": math.nan for m in metrics})
    row["error"] = None
    try:
        clean = load_audio(pair.clean)
        enhanced = load_audio(pair.enhanced)
        gap = abs(clean.size - enhanced.size)
        if gap > max(SAMPLE_RATE // 100, 0.01 * max(clean.size, enhanced.size)):  # over 10 ms and 1 %
            row["warning"] = (f"lengths differ (clean {clean.size / SAMPLE_RATE:.2f} s, enhanced "
                              f"{enhanced.size / SAMPLE_RATE:.2f} s): scored on the first "
                              f"{min(clean.size, enhanced.size) / SAMPLE_RATE:.2f} s")
        row.update(score(clean, enhanced, SAMPLE_RATE, metrics))
        if pair.noisy is not None:
            noisy = score(clean, load_audio(pair.noisy), SAMPLE_RATE, metrics)
            row.update({f"noisy_{m}": v for m, v in noisy.items()})
    except (ValueError, RuntimeError, OSError) as err:
        row["error"] = f"{type(err).__name__}: {err}"
    return row


def _stats(values: Iterable[float]) -> dict[str, Any]:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return {"mean": None, "ci95": None, "n": 0}
    ci = None
    if n >= 2:
        from scipy.stats import t

        ci = float(t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return {"mean": float(v.mean()), "ci95": ci, "n": n}


def summarize(rows: Sequence[dict[str, Any]], metrics: Sequence[str], prefix: str = "") -> dict[str, dict[str, Any]]:
    """``{metric: {"mean", "ci95", "n"}}`` over the rows' finite values of ``prefix + metric``."""
    return {m: _stats(r.get(prefix + m) for r in rows) for m in metrics}


def _improvement(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per-file enhanced minus noisy, summarised like a metric (pairs with both values finite)."""
    def diff(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

    return {m: _stats(diff(r.get(m), r.get(f"noisy_{m}")) for r in rows) for m in metrics}


def evaluate(
    clean_dir: str | os.PathLike[str],
    enhanced_dir: str | os.PathLike[str],
    noisy_dir: str | os.PathLike[str] | None = None,
    metrics: Iterable[str] | str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score every paired file and summarise.

    Returns ``{"files": [rows], "summary": {...}, "metrics", "n_files", "errors", "seconds", ...}``;
    with ``noisy_dir`` also ``"noisy_summary"`` (noisy vs clean) and ``"improvement"`` (per-file
    enhanced minus noisy, summarised like the metrics). Rows hold ``file``, ``snr`` (parsed from
    the names or None), the metrics, ``noisy_<metric>`` and ``error`` (None when fine).
    """
    from tqdm import tqdm

    names = parse_metrics(metrics)
    pairs = pair_files(clean_dir, enhanced_dir, noisy_dir)
    workers = max(1, int(workers or os.cpu_count() or 1))
    workers = min(workers, len(pairs))
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(pairs), desc="evaluate", unit="file", disable=not progress) as bar:
        if workers == 1:
            for pair in pairs:
                rows.append(_score_pair(pair, names))
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
                futures = [pool.submit(_score_pair, pair, names) for pair in pairs]
                for fut in as_completed(futures):
                    rows.append(fut.result())
                    bar.update()
    rows.sort(key=lambda r: r["file"])
    errors = [{"file": r["file"], "error": r["error"]} for r in rows if r["error"]]
    for e in errors:
        log.warning("%s: %s", e["file"], e["error"])
    warnings = [{"file": r["file"], "warning": r.pop("warning")} for r in rows if "warning" in r]
    for w in warnings:
        log.warning("%s: %s", w["file"], w["warning"])
    result: dict[str, Any] = {
        "clean_dir": str(clean_dir),
        "enhanced_dir": str(enhanced_dir),
        "noisy_dir": None if noisy_dir is None else str(noisy_dir),
        "metrics": names,
        "n_files": len(rows),
        "seconds": round(time.perf_counter() - start, 3),
        "errors": errors,
        "warnings": warnings,
        "summary": summarize(rows, names),
        "files": rows,
    }
    if noisy_dir is not None:
        result["noisy_summary"] = summarize(rows, names, prefix="noisy_")
        result["improvement"] = _improvement(rows, names)
    return result


# ----------------------------------------------------------------------------- output
def _fmt(value: float | None, ci: float | None = None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    text = f"{value:+.3f}" if signed else f"{value:.3f}"
    return text + (f" ± {ci:.3f}" if ci is not None else "")


def format_summary(result: dict[str, Any]) -> str:
    """Plain-text table: metric, enhanced mean ± 95 % CI, n, and noisy and Δ columns when present."""
    has_noisy = "noisy_summary" in result
    header = ["metric", "enhanced (mean ± 95% CI)", "n"]
    if has_noisy:
        header += ["noisy (mean ± 95% CI)", "Δ enhanced − noisy"]
    lines = [header]
    for m in result["metrics"]:
        s = result["summary"][m]
        line = [m, _fmt(s["mean"], s["ci95"]), str(s["n"])]
        if has_noisy:
            ns, d = result["noisy_summary"][m], result["improvement"][m]
            line += [_fmt(ns["mean"], ns["ci95"]), _fmt(d["mean"], d["ci95"], signed=True)]
        lines.append(line)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    footer = f"{result['n_files']} file(s), {result['seconds']:.1f} s"
    if result.get("errors"):
        footer += f", {len(result['errors'])} failed (see 'errors')"
    if result.get("warnings"):
        footer += f", {len(result['warnings'])} scored on the shorter of two different lengths (see 'warnings')"
    if result.get("model") is not None:
        limit = result.get("atten_lim_db")
        footer += f"; model {result['model']}, " + ("no attenuation limit" if limit is None
                                                   else f"attenuation limit {limit:g} dB")
    return "\n".join(text + [footer])


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write the result as strict JSON (NaN and infinities become null)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(_jsonable(result), indent=2, allow_nan=False) + "\n")


def write_csv(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write one row per file: file, snr, metrics, noisy_<metric> (if any), error; NaN left empty."""
    metrics = result["metrics"]
    columns = ["file", "snr", *metrics]
    if "noisy_summary" in result:
        columns += [f"noisy_{m}" for m in metrics]
    columns.append("error")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in result["files"]:
            writer.writerow({k: ("" if v is None else v) for k, v in _jsonable(row).items()})


# ----------------------------------------------------------------------------- plots
def _snr_buckets(snrs: Sequence[float | None]) -> tuple[list[str], list[str]]:
    """A bucket label per file and the labels in display order."""
    known = sorted({s for s in snrs if s is not None})
    if not known:
        return ["all"] * len(snrs), ["all"]
    if len(known) <= 6:
        label = {s: f"{s:g} dB" for s in known}
        order = [label[s] for s in known]
        labels = [label[s] if s is not None else "unknown" for s in snrs]
    else:
        def bin_of(s: float) -> str:
            lo = 5 * math.floor(s / 5)
            return f"[{lo}, {lo + 5}) dB"

        order = list(dict.fromkeys(bin_of(s) for s in known))
        labels = [bin_of(s) if s is not None else "unknown" for s in snrs]
    if "unknown" in labels:
        order.append("unknown")
    return labels, order


def _spectrogram_db(x: np.ndarray, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    x = np.pad(x, (0, max(0, n_fft - x.size)))
    n_frames = 1 + (x.size - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * np.hanning(n_fft), axis=1)).T
    return 20.0 * np.log10(spec + 1e-8)


def _pick_examples(rows: Sequence[dict[str, Any]], metrics: Sequence[str], n: int) -> list[dict[str, Any]]:
    """Worst, median and best files by the first metric (then evenly spaced), up to ``n``."""
    ok = [r for r in rows if not r.get("error")]
    key = next((m for m in metrics if any(np.isfinite(r[m]) for r in ok)), None)
    if key is None or n <= 0:
        return ok[: max(n, 0)]
    ranked = sorted((r for r in ok if np.isfinite(r[key])), key=lambda r: r[key])
    if len(ranked) <= n:
        return ranked
    idx = sorted({round(i * (len(ranked) - 1) / max(n - 1, 1)) for i in range(n)})
    return [ranked[i] for i in idx]


def make_plots(
    result: dict[str, Any],
    out_dir: str | os.PathLike[str],
    clean_dir: str | os.PathLike[str],
    enhanced_dir: str | os.PathLike[str],
    noisy_dir: str | os.PathLike[str] | None = None,
    n_spectrograms: int = 3,
) -> list[Path]:
    """Write ``metrics_by_snr.png`` (box plots per SNR bucket, enhanced and noisy side by side)
    and ``spectrogram_<file>.png`` for up to ``n_spectrograms`` files (worst, median, best by the
    first metric). Returns the written paths."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [r for r in result["files"] if not r.get("error")]
    metrics = result["metrics"]
    has_noisy = "noisy_summary" in result
    written: list[Path] = []

    labels, order = _snr_buckets([r.get("snr") for r in rows])
    ncols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows), constrained_layout=True)
    FigureCanvasAgg(fig)
    for i, m in enumerate(metrics):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        series = [("enhanced", "", "tab:blue")] + ([("noisy", "noisy_", "tab:gray")] if has_noisy else [])
        width = 0.8 / len(series)
        for j, (name, prefix, color) in enumerate(series):
            values = [r[prefix + m] for r in rows]
            data = [[v for v, lab in zip(values, labels) if lab == b and np.isfinite(v)] for b in order]
            pos = [k + (j - (len(series) - 1) / 2) * width for k in range(len(order))]
            keep = [(p, d) for p, d in zip(pos, data) if d]
            if keep:
                bp = ax.boxplot([d for _, d in keep], positions=[p for p, _ in keep], widths=width * 0.9,
                                patch_artist=True, manage_ticks=False)
                for box in bp["boxes"]:
                    box.set_facecolor(color)
                    box.set_alpha(0.6)
            ax.plot([], [], color=color, lw=6, alpha=0.6, label=name)
        counts = [sum(1 for lab in labels if lab == b) for b in order]
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([f"{b}\n(n={c})" for b, c in zip(order, counts)], fontsize=7)
        ax.set_title(m)
        if i == 0 and has_noisy:
            ax.legend(fontsize=7)
    fig.suptitle("metric distributions by SNR")
    path = out / "metrics_by_snr.png"
    fig.savefig(path, dpi=100)
    written.append(path)

    if n_spectrograms > 0 and rows:
        pairs = {p.key: p for p in pair_files(clean_dir, enhanced_dir, noisy_dir)}
        for row in _pick_examples(rows, metrics, n_spectrograms):
            pair = pairs.get(row["file"])
            if pair is None:
                continue
            panels = ([("noisy", pair.noisy)] if pair.noisy is not None else []) + [
                ("enhanced", pair.enhanced), ("clean", pair.clean)
            ]
            specs = [(name, _spectrogram_db(load_audio(p))) for name, p in panels]
            vmax = max(float(s.max()) for _, s in specs)
            fig = Figure(figsize=(4.5 * len(specs), 3.4), constrained_layout=True)
            FigureCanvasAgg(fig)
            for k, (name, s) in enumerate(specs):
                ax = fig.add_subplot(1, len(specs), k + 1)
                dur = (s.shape[1] * 128) / SAMPLE_RATE
                im = ax.imshow(s, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 80, vmax=vmax,
                               extent=(0.0, dur, 0.0, SAMPLE_RATE / 2000.0))
                ax.set_title(name)
                ax.set_xlabel("time (s)")
                if k == 0:
                    ax.set_ylabel("frequency (kHz)")
            fig.colorbar(im, ax=fig.axes, label="dB", shrink=0.9)
            scores = ", ".join(f"{m} {row[m]:.2f}" for m in metrics[:3] if np.isfinite(row[m]))
            fig.suptitle(f"{row['file']}  ({scores})" if scores else row["file"], fontsize=9)
            path = out / f"spectrogram_{re.sub(r'[^A-Za-z0-9_.-]+', '_', row['file'])}.png"
            fig.savefig(path, dpi=100)
            written.append(path)
    log.info("wrote %d plot(s) to %s", len(written), out)
    return written


# ----------------------------------------------------------------------------- command line
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to a ``gagnet`` sub-parser set."""
    p = subparsers.add_parser(
        "evaluate",
        help="score enhanced speech against clean references",
        description="Score enhanced files against clean references (PESQ, STOI, SI-SDR, SSNR, composite, "
        "DNSMOS); with --noisy also the unprocessed input and the improvement.",
    )
    p.add_argument("--clean", required=True, metavar="DIR", help="clean reference files")
    p.add_argument("--model", metavar="NAME|PATH",
                   help="enhance every --noisy file with this model first (shipped name, or a model.pt / .ckpt "
                   "from gagnet train), then score the results")
    p.add_argument("--atten-lim", default=FROM_MODEL, metavar="DB|off",
                   help="with --model: its attenuation limit, as in gagnet enhance (default: the model's own; "
                   "off: the network's output alone)")
    p.add_argument("--enhanced", metavar="DIR",
                   help="enhanced files to score; with --model, the folder the enhanced files are written to "
                   "(created; default: a temporary folder, removed afterwards)")
    p.add_argument("--noisy", metavar="DIR", help="unprocessed noisy files (adds noisy and Δ columns)")
    p.add_argument(
        "--metrics", metavar="A,B,...", help=f"comma-separated subset of: {', '.join(METRICS)} (default: all)"
    )
    p.add_argument("--workers", type=_positive_int, metavar="N", help="processes (default: CPU count)")
    p.add_argument("--json", metavar="OUT", help="write per-file values and summaries as JSON")
    p.add_argument("--csv", metavar="OUT", help="write per-file values as CSV")
    p.add_argument("--plots", metavar="DIR", help="write distribution and spectrogram plots")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_evaluate)
    return p


def _nested(a: Path, b: Path) -> bool:
    """True when folders ``a`` and ``b`` are the same or one lies inside the other."""
    a, b = a.resolve(), b.resolve()
    return a == b or a in b.parents or b in a.parents


def enhance_folder(model: str, noisy_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                   progress: bool = True, atten_lim_db: float | str | None = FROM_MODEL) -> list[Path]:
    """Enhance every audio file of ``noisy_dir`` with ``model`` into ``out_dir``, keeping relative paths.

    ``model`` is a shipped model name or a model file (:func:`gagnet.pretrained.load_model`);
    ``atten_lim_db`` as in :meth:`gagnet.enhance.Enhancer.from_pretrained` (default: the model's own).
    Existing outputs are replaced. Raises ``ValueError`` (one line) when the model cannot be
    loaded or a file cannot be enhanced; returns the written paths.
    """
    from tqdm import tqdm

    from .enhance import Enhancer

    noisy = _scan(noisy_dir, "noisy")
    out = Path(out_dir)
    if _nested(out, Path(noisy_dir)):
        raise ValueError(f"the enhanced folder {out} must be outside the noisy folder {noisy_dir} and not contain it")
    inputs = frozenset(p.resolve() for p in noisy.values())
    enhancer = Enhancer.from_pretrained(model, atten_lim_db=atten_lim_db)  # ModelError is a one-line ValueError
    written: list[Path] = []
    failed: list[str] = []
    root = Path(noisy_dir)
    for src in tqdm(list(noisy.values()), desc="enhance", unit="file", disable=not progress):
        dst = out / src.relative_to(root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        report = enhancer.enhance_file(src, dst, overwrite=True, protect=inputs)
        if report.status != "done":
            failed.append(report.message or str(src))
        else:
            written.append(report.dst)
    if failed:
        raise ValueError(f"could not enhance {len(failed)} of {len(noisy)} file(s) (first: {failed[0]})")
    return written


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run :func:`evaluate` for parsed arguments and print the table; 2 on bad input.

    With ``--model`` the ``--noisy`` files are enhanced first (into ``--enhanced`` when given,
    else into a temporary folder removed afterwards) and the results are scored.
    """
    import contextlib
    import tempfile

    model = getattr(args, "model", None)
    noisy_dir = getattr(args, "noisy", None)
    try:
        if model is not None and noisy_dir is None:
            raise ValueError("--model needs --noisy DIR (the files to enhance)")
        if model is None and getattr(args, "enhanced", None) is None:
            raise ValueError("give --enhanced DIR, or --model NAME|PATH with --noisy DIR")
        metrics = parse_metrics(args.metrics) if getattr(args, "metrics", None) else None
        atten_lim = parse_atten_lim(getattr(args, "atten_lim", FROM_MODEL))
        if model is None and atten_lim != FROM_MODEL:
            raise ValueError("--atten-lim applies to --model; it cannot change files already enhanced")
        if model is not None and atten_lim == FROM_MODEL:  # resolved once: used and reported
            from .pretrained import recommended_atten_lim

            atten_lim = recommended_atten_lim(model)
        progress = not getattr(args, "no_progress", False)
        with contextlib.ExitStack() as stack:
            enhanced_dir = args.enhanced
            if model is not None:
                _, lone_clean, lone_noisy = _match(_scan(args.clean, "clean"), _scan(noisy_dir, "noisy"))
                if lone_clean or lone_noisy:  # fail before the (slow) enhancement
                    raise ValueError(
                        f"unmatched files: {len(lone_clean)} clean file(s) without a match in {noisy_dir}"
                        + (f" ({_listing(lone_clean)})" if lone_clean else "")
                        + f", {len(lone_noisy)} noisy file(s) without a match in {args.clean}"
                        + (f" ({_listing(lone_noisy)})" if lone_noisy else "")
                    )
                if enhanced_dir is not None and _nested(Path(enhanced_dir), Path(args.clean)):
                    raise ValueError(f"--enhanced {enhanced_dir} must be outside the clean folder {args.clean} "
                                     "and not contain it")
                if enhanced_dir is None:
                    enhanced_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="gagnet-evaluate-"))
                else:
                    try:
                        Path(enhanced_dir).mkdir(parents=True, exist_ok=True)
                    except (FileExistsError, NotADirectoryError):
                        raise ValueError(f"--enhanced {enhanced_dir}: cannot create the folder (a file is in the way)")
                enhance_folder(model, noisy_dir, enhanced_dir, progress=progress, atten_lim_db=atten_lim)
            result = evaluate(
                args.clean,
                enhanced_dir,
                noisy_dir=noisy_dir,
                metrics=metrics,
                workers=getattr(args, "workers", None),
                progress=progress,
            )
            if model is not None:
                result["model"] = str(model)
                result["atten_lim_db"] = atten_lim
                result["enhanced_dir"] = None if args.enhanced is None else str(args.enhanced)
            if result["n_files"] == len(result["errors"]):
                raise ValueError(f"no file could be scored (first error: {result['errors'][0]['error']})")
            print(format_summary(result))
            if getattr(args, "json", None):
                write_json(result, args.json)
            if getattr(args, "csv", None):
                write_csv(result, args.csv)
            if getattr(args, "plots", None):
                make_plots(result, args.plots, args.clean, enhanced_dir, noisy_dir)
    except (ValueError, OSError) as err:
        print(f"gagnet evaluate: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 1 if result["errors"] else 0  # like gagnet enhance: a file that could not be scored fails the run
