"""Enhancing audio: the :class:`Enhancer` API and the ``gagnet enhance`` / ``gagnet models`` commands.

Any rate and channel count goes in; each channel is resampled to 16 kHz (soxr), enhanced
by the block processor of :mod:`gagnet.streaming`, resampled back and trimmed to exactly
the input length. :meth:`Enhancer.enhance_file` streams: it reads blocks, resamples with
``soxr.ResampleStream`` and writes to a temporary file that is renamed onto the output only
when complete, so memory does not grow with the file and an interrupted run leaves no
partial output.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .attenuation import FROM_MODEL, floor_gain, parse_atten_lim
from .audio_files import (
    AtomicAudioWriter,
    AudioFileError,
    BlockReader,
    choose_output,
    discover,
    flac_fallback,
    one_line,
    output_is_file,
    plan_outputs,
    probe,
    read_head,
    read_tags,
    same_file,
)
from .build_cache import cached_file, discard
from .model import WaveGaGNet
from .pipeline import ChannelPipeline
from .streaming import make_block_processor

logger = logging.getLogger(__name__)

#: Length of the blocks read from files, in seconds (smaller when ``block_seconds`` is).
READ_SECONDS = 10.0
#: Files longer than this get a progress bar of their own.
LONG_FILE_SECONDS = 60.0
#: Seconds of audio shown by ``--plot``.
PLOT_SECONDS = 60.0


class EnhanceError(ValueError):
    """Input the enhancer cannot process; the message is one line."""


#: Back ends of :class:`Enhancer`: PyTorch, or ONNX Runtime on a graph exported once and cached.
BACKENDS = ("auto", "torch", "onnx")


def onnx_available() -> bool:
    """Whether ONNX export and ONNX Runtime are installed (the ``[export]`` extra)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def resolve_backend(backend: str, device: torch.device) -> str:
    """``auto``: ONNX Runtime on the CPU when installed (about twice as fast), else PyTorch,
    said once in the log."""
    if backend != "auto":
        return backend
    if device.type == "cpu" and onnx_available():
        return "onnx"
    logger.info("running the network in PyTorch%s", "" if device.type != "cpu" else
                " (ONNX Runtime, the faster CPU back end, is not installed: pip install 'gagnet[export]')")
    return "torch"


# --------------------------------------------------------------------------- block processor
def _make_processor(model: WaveGaGNet, block_seconds: float, session: Any = None) -> Any:
    """The per-channel block processor; with an ONNX Runtime ``session`` its graph runs the network."""
    if session is None:
        device = next(model.parameters()).device
        return make_block_processor(model, block_seconds=block_seconds, device=device)
    from .export import OnnxOfflineEnhancer, OnnxStreamingEnhancer
    from .streaming import DelayCompensated, OverlapBlockProcessor

    if model.cfg.causal:
        return DelayCompensated(OnnxStreamingEnhancer(session))
    return OverlapBlockProcessor(model, block_seconds, enhance_fn=OnnxOfflineEnhancer(session).enhance)


def onnx_session(model: WaveGaGNet, threads: int | None = None, fast_step: bool = False,
                 precision: str = "fp32", encoder_only: bool = False) -> Any:
    """An ONNX Runtime session running ``model``'s network, exported on first use and cached.

    Causal models get the streaming graph with a dynamic frame count (state carried between
    blocks), others the offline graph; ``fast_step`` asks for the one-hop graph of
    :mod:`gagnet.fast_step` (causal models it supports), the quickest for streaming. The cache (``$GAGNET_CACHE``, else
    ``~/.cache/gagnet``; :mod:`gagnet.build_cache`) is keyed by a hash of the config, the weights and the
    versions of gagnet and torch; a damaged file found there is built again.
    ``precision="int8"`` (with ``fast_step``) gives the step with int8 weights;
    ``encoder_only`` (with ``fast_step``) its encoder alone (:func:`~gagnet.export.export_fast_encoder`).
    """
    import hashlib
    import json

    from . import __version__
    from .export import export_fast_encoder, export_offline, export_streaming, make_session

    net = model.net if isinstance(model, WaveGaGNet) else model
    h = hashlib.sha256(json.dumps([net.cfg.to_dict(), __version__, torch.__version__]).encode())
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    if precision != "fp32" and not fast_step:
        raise ValueError("int8 weights are offered for the fast streaming step only")
    if encoder_only:
        kind = "fast-encoder"
    else:
        kind = ("fast-step" if fast_step else "streaming" if net.cfg.causal else "offline") + "-int8" * (
            precision == "int8")

    def build(tmp: Path) -> None:
        if encoder_only:
            export_fast_encoder(model, tmp)
        elif fast_step:
            export_streaming(model, tmp, frames_per_step=1, fast=True, precision=precision)
        elif net.cfg.causal:
            export_streaming(model, tmp, frames_per_step=None)
        else:
            export_offline(model, tmp)

    name = f"{kind}-{h.hexdigest()[:20]}.onnx"
    path = cached_file(name, build, "exporting the network to ONNX (once per model)")
    try:
        return make_session(path, threads, low_memory=not fast_step)
    except Exception:  # a damaged file (onnxruntime's errors have no common base): build it again, once
        discard(path)
        return make_session(cached_file(name, build, "exporting the network to ONNX again"), threads,
                            low_memory=not fast_step)


# --------------------------------------------------------------------------- API
@dataclass
class FileReport:
    """What became of one file."""

    src: Path
    dst: Path
    seconds: float = 0.0
    status: str = "failed"  # "done", "skipped" or "failed"
    message: str = ""
    rtf: float | None = None  # processing time / audio duration
    elapsed: float = 0.0


ProgressFn = Callable[[float, float], None]


class Enhancer:
    """Enhance waves and files with a :class:`~gagnet.model.WaveGaGNet`.

    >>> enh = Enhancer.from_pretrained("path/to/model.pt")        # doctest: +SKIP
    >>> clean = enh.enhance(noisy, 44100)                         # doctest: +SKIP
    >>> enh.enhance_file("noisy.flac", "clean.flac")              # doctest: +SKIP
    """

    def __init__(self, model: WaveGaGNet, device: str | torch.device = "cpu", block_seconds: float = 30.0,
                 backend: str = "auto", threads: int | None = None, atten_lim_db: float | None = None) -> None:
        if not block_seconds > 0 or not math.isfinite(block_seconds):
            raise ValueError(f"block_seconds must be a positive number, got {block_seconds}")
        if isinstance(atten_lim_db, str):
            raise ValueError(f"atten_lim_db must be a number of dB or None, got {atten_lim_db!r} "
                             "(Enhancer.from_pretrained takes 'model' for the model file's own limit)")
        #: Share of the input mixed back in: the noise is lowered by at most ``atten_lim_db``.
        self.floor = floor_gain(atten_lim_db)
        #: The attenuation limit in dB (None: no limit).
        self.atten_lim_db = None if atten_lim_db is None else float(atten_lim_db)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.device = torch.device(device)
        backend = resolve_backend(backend, self.device)
        if backend == "onnx" and self.device.type != "cpu":
            raise ValueError("the onnx back end runs on the CPU; use backend='torch' for a GPU")
        self.model = model.to(self.device).eval()
        self.block_seconds = float(block_seconds)
        self.backend = backend
        self._session = onnx_session(self.model, threads) if backend == "onnx" else None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        block_seconds: float = 30.0,
        backend: str = "auto",
        threads: int | None = None,
        atten_lim_db: float | str | None = FROM_MODEL,
    ) -> "Enhancer":
        """Load a shipped model by name, or a ``.pt``/``.ckpt`` file (see :func:`gagnet.pretrained.load_model`).

        ``backend``: ``"auto"`` (default) runs the network in ONNX Runtime on the CPU when it is
        installed (exported once and cached; about twice as fast as PyTorch), else in PyTorch;
        ``"onnx"`` or ``"torch"`` force one. ``threads`` is ONNX Runtime's thread count (None: all cores).
        ``atten_lim_db`` limits the attenuation: the output is ``(1 - g) * enhanced + g * input``
        with ``g = 10 ** (-atten_lim_db / 20)``, so some of the background stays. The default,
        ``"model"``, takes the limit the model file names (the shipped default model names one;
        files from ``gagnet train`` none); None: no limit, the network's own output.
        """
        from .pretrained import load_model, recommended_atten_lim

        model = load_model(name_or_path, device)
        if atten_lim_db == FROM_MODEL:
            atten_lim_db = recommended_atten_lim(name_or_path)
        elif isinstance(atten_lim_db, str):
            raise ValueError(f"atten_lim_db must be a number of dB, None or {FROM_MODEL!r}, got {atten_lim_db!r}")
        return cls(model, device=device, block_seconds=block_seconds,
                   backend=backend, threads=threads, atten_lim_db=atten_lim_db)

    @property
    def sample_rate(self) -> int:
        return int(self.model.cfg.sample_rate)

    def _pipeline(self, sample_rate: int, channels: int) -> ChannelPipeline:
        return ChannelPipeline(lambda: _make_processor(self.model, self.block_seconds, self._session),
                               sample_rate, channels, self.model.cfg.sample_rate, self.floor)

    def _chunk_frames(self, sample_rate: int) -> int:
        return max(1, int(round(min(READ_SECONDS, self.block_seconds) * sample_rate)))

    # ----------------------------------------------------------------- arrays
    def enhance(self, wave: np.ndarray | torch.Tensor, sample_rate: int) -> np.ndarray | torch.Tensor:
        """Enhance ``(samples,)`` or ``(channels, samples)`` audio at ``sample_rate``.

        Returns the same type (numpy array or torch tensor, same dtype and device) and shape;
        each channel is enhanced separately. Integer arrays are read as full-scale PCM.
        Raises :class:`EnhanceError` for NaN/Inf samples, empty input or a bad shape.
        """
        is_torch = isinstance(wave, torch.Tensor)
        arr = wave.detach().cpu().numpy() if is_torch else np.asarray(wave)
        if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool):
            if not (isinstance(sample_rate, float) and sample_rate.is_integer()):
                raise EnhanceError(f"sample_rate must be a whole number of Hz, got {sample_rate!r}")
        sample_rate = int(sample_rate)
        if sample_rate < 1:
            raise EnhanceError(f"sample_rate must be positive, got {sample_rate}")
        if arr.ndim not in (1, 2):
            raise EnhanceError(f"expected (samples,) or (channels, samples), got shape {tuple(arr.shape)}")
        if arr.shape[-1] == 0 or arr.size == 0:
            raise EnhanceError("no samples")
        dtype = arr.dtype
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            scale = float(-int(info.min)) if info.min < 0 else float(info.max)
            offset = 0.0 if info.min < 0 else (info.max + 1) / 2.0
            x = ((arr.astype(np.float64) - offset) / (scale if info.min < 0 else offset)).astype(np.float32)
        elif np.issubdtype(dtype, np.floating):
            x = arr.astype(np.float32)
        else:
            raise EnhanceError(f"unsupported sample type {dtype}")
        x2 = x.reshape(1, -1) if x.ndim == 1 else x
        if not np.isfinite(x2).all():
            raise EnhanceError("input contains NaN or Inf samples")
        channels, n = x2.shape
        pipe = self._pipeline(sample_rate, channels)
        step = self._chunk_frames(sample_rate)
        out = np.empty((n, channels), np.float32)
        pos = 0
        with torch.no_grad():
            for start in range(0, n, step):
                block = x2[:, start : start + step].T
                y = pipe.push(block, last=start + step >= n)
                out[pos : pos + y.shape[0]] = y
                pos += y.shape[0]
        assert pos == n, (pos, n)
        y2 = out.T
        y = y2[0] if x.ndim == 1 else y2
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            if info.min < 0:
                y = np.clip(np.round(y.astype(np.float64) * -int(info.min)), info.min, info.max)
            else:
                y = np.clip(np.round(y.astype(np.float64) * offset + offset), info.min, info.max)
        y = np.ascontiguousarray(y.astype(dtype, copy=False))
        if is_torch:
            return torch.from_numpy(y).to(device=wave.device)
        return y

    # ----------------------------------------------------------------- files
    def enhance_file(
        self,
        src: str | os.PathLike,
        dst: str | os.PathLike,
        overwrite: bool = False,
        progress: ProgressFn | None = None,
        protect: Collection[str | os.PathLike] = (),
    ) -> FileReport:
        """Enhance ``src`` into ``dst`` keeping its format, subtype, rate, channels and length.

        Returns a :class:`FileReport`; problems with the file give ``status="failed"`` and a
        one-line ``message`` rather than an exception (``KeyboardInterrupt`` still
        propagates, after the temporary file is removed). ``dst`` is never an input: it may
        not be ``src`` nor any path in ``protect`` (a frozenset is taken as resolved paths).
        An existing ``dst`` is skipped unless ``overwrite``. Formats libsndfile cannot write
        fall back to FLAC (``dst`` then ends in ``.flac``; see ``report.dst``).
        ``progress(done_seconds, total_seconds)`` is called after every block.
        """
        src, dst = Path(src), Path(dst)
        report = FileReport(src, dst)
        try:
            return self._enhance_file(src, dst, overwrite, progress, protect, report)
        except (AudioFileError, EnhanceError) as e:
            report.status, report.message = "failed", one_line(e)
        except MemoryError:
            report.status, report.message = "failed", f"{src}: out of memory"
        except Exception as e:  # one line per file in a batch; the traceback goes to the debug log
            logger.debug("enhancing %s failed", src, exc_info=True)
            report.status, report.message = "failed", f"{src}: {type(e).__name__}: {one_line(e)}"
        return report

    def _enhance_file(
        self, src: Path, dst: Path, overwrite: bool, progress: ProgressFn | None,
        protect: Collection[str | os.PathLike], report: FileReport,
    ) -> FileReport:
        info = probe(src)
        report.seconds = info.seconds
        out = choose_output(info, dst)

        protected = protect if isinstance(protect, frozenset) else frozenset(Path(p).resolve() for p in protect)

        def guard(path: Path) -> None:
            if same_file(path, src) or path.resolve() in protected:
                raise AudioFileError(f"{src}: refusing to write over an input file ({path})")

        guard(out.path)
        if out.path.exists() and not overwrite:
            report.dst, report.status = out.path, "skipped"
            report.message = f"{out.path} exists (use --overwrite to replace it)"
            return report
        t0 = time.perf_counter()
        pipe = self._pipeline(info.samplerate, info.channels)
        block = self._chunk_frames(info.samplerate)
        tags = read_tags(src)
        try:
            writer = AtomicAudioWriter(out, info.samplerate, info.channels, tags).__enter__()
        except AudioFileError:
            if out.format == "FLAC" or not out.path.parent.is_dir() or not os.access(out.path.parent, os.W_OK):
                raise
            out = flac_fallback(info, out.path, f"cannot write {out.format}/{out.subtype}")
            guard(out.path)
            if out.path.exists() and not overwrite:
                report.dst, report.status = out.path, "skipped"
                report.message = f"{out.path} exists (use --overwrite to replace it)"
                return report
            writer = AtomicAudioWriter(out, info.samplerate, info.channels, tags).__enter__()
        if out.warning:
            report.message = out.warning
        report.dst = out.path
        try:
            n_read = 0
            with BlockReader(src, block) as reader, torch.no_grad():
                for x in reader:
                    n_read += x.shape[0]
                    writer.write(pipe.push(x))
                    if progress is not None:
                        progress(n_read / info.samplerate, info.seconds)
                if n_read == 0:
                    raise AudioFileError(f"{src}: no samples")
                writer.write(pipe.push(np.zeros((0, info.channels), np.float32), last=True))
            if writer.frames_written != n_read:  # pragma: no cover - guarded by ChannelPipeline
                raise RuntimeError(f"wrote {writer.frames_written} samples for {n_read}")
        except BaseException as e:
            writer.__exit__(type(e), e, e.__traceback__)
            raise
        writer.__exit__(None, None, None)
        report.elapsed = time.perf_counter() - t0
        report.seconds = n_read / info.samplerate
        report.rtf = report.elapsed / report.seconds if report.seconds > 0 else None
        report.status = "done"
        return report


# --------------------------------------------------------------------------- plotting
def _spectrogram_db(x: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    n_fft = 1 << max(6, int(round(math.log2(0.032 * sr))))
    hop = n_fft // 4
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    spec = np.abs(np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=-1)).T
    db = 20 * np.log10(spec + 1e-10)
    return db, hop


def plot_spectrograms(noisy: str | os.PathLike, enhanced: str | os.PathLike, png: str | os.PathLike,
                      max_seconds: float = PLOT_SECONDS) -> Path:
    """PNG with the noisy and enhanced spectrograms (first channel, first ``max_seconds``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    png = Path(png)
    panels = []
    for title, path in (("noisy", noisy), ("enhanced", enhanced)):
        x, sr = read_head(path, max_seconds)
        db, hop = _spectrogram_db(x, sr)
        panels.append((title, Path(path), db, sr, x.size / sr))
    top = max(float(p[2].max()) for p in panels)
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True, constrained_layout=True)
    for ax, (title, path, db, sr, dur) in zip(axes, panels):
        im = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=top - 90, vmax=top,
                       extent=(0.0, max(dur, 1e-3), 0.0, sr / 2000.0), interpolation="nearest")
        ax.set_title(f"{title}: {path.name}", fontsize=9)
        ax.set_ylabel("frequency (kHz)")
    axes[-1].set_xlabel("time (s)")
    fig.colorbar(im, ax=list(axes), label="dB")
    tmp = png.with_name(f".{png.stem}.part{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=100, format="png")
        os.replace(tmp, png)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return png


# --------------------------------------------------------------------------- CLI
def _err(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"gagnet enhance: {one_line(msg)}", file=sys.stderr)


def _bars(args: argparse.Namespace) -> bool | None:
    """tqdm's ``disable`` for the progress bars: off with ``--no-progress``, else shown on a terminal."""
    return True if getattr(args, "no_progress", False) else None


def _hours(seconds: float) -> str:
    h = seconds / 3600.0
    return f"{h:.2f}" if h >= 0.01 or h == 0 else f"{h:.4f}"


def _run_batch(enhancer: "Enhancer", bar: Any, inputs: frozenset[Path], reports: list[FileReport],
               args: argparse.Namespace) -> int:
    """Enhance every (input, output) pair of ``bar``; returns the number of failures."""
    from tqdm import tqdm

    written: set[Path] = set()
    plots: set[Path] = set()
    n_failed = 0
    for item, dst in bar:
        bar.set_postfix_str(item.path.name, refresh=False)
        inner: dict[str, Any] = {}

        def progress(done: float, total: float, _inner: dict = inner, _name: str = item.path.name) -> None:
            if total < LONG_FILE_SECONDS:
                return
            if "bar" not in _inner:
                _inner["bar"] = tqdm(total=round(total, 1), desc=_name, unit="s", leave=False, disable=_bars(args),
                                     file=sys.stderr, dynamic_ncols=True, position=1)
            b = _inner["bar"]
            b.update(round(min(done, total), 1) - b.n)

        if dst.resolve() in written:
            rep = FileReport(item.path, dst, message=f"{item.path}: output {dst} is also the output of another input")
        else:
            try:
                rep = enhancer.enhance_file(item.path, dst, overwrite=args.overwrite, progress=progress,
                                            protect=inputs)
            finally:
                if "bar" in inner:
                    inner["bar"].close()
        reports.append(rep)
        written.add(rep.dst.resolve())
        if rep.status == "failed":
            n_failed += 1
            _err(rep.message)
            continue
        if rep.status == "skipped":
            tqdm.write(f"skipped {item.path}: {rep.message}", file=sys.stdout)
            continue
        if rep.message:  # a format fallback warning
            _err(f"warning: {rep.message}")
        if args.plot:
            png = rep.dst.with_suffix(".png")
            if png.resolve() in plots:  # x.wav and x.flac in one folder: the second gets x_<its extension>.png
                png = rep.dst.with_name(f"{rep.dst.stem}_{rep.dst.suffix.lstrip('.')}.png")
            plots.add(png.resolve())
            try:
                plot_spectrograms(rep.src, rep.dst, png)
            except Exception as e:  # the audio is written; a plot problem is only a warning
                _err(f"warning: {rep.dst}: could not plot spectrograms ({type(e).__name__}: {one_line(e)})")
    return n_failed


class _sigterm_as_interrupt:
    """Within the block, SIGTERM raises KeyboardInterrupt, so temporary files are cleaned up."""

    def __enter__(self) -> None:
        import signal
        import threading

        self._old = None
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM"):
            def handler(signum: int, frame: Any) -> None:
                raise KeyboardInterrupt

            self._old = signal.signal(signal.SIGTERM, handler)

    def __exit__(self, *exc: object) -> None:
        import signal

        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def cmd_enhance(args: argparse.Namespace) -> int:
    """``gagnet enhance``: exit 0 when all went well, 1 when a file failed, 2 on usage errors."""
    from tqdm import tqdm

    if not (args.block_seconds > 0 and math.isfinite(args.block_seconds)):
        _err(f"--block-seconds must be positive, got {args.block_seconds}")
        return 2
    try:
        atten_lim = parse_atten_lim(args.atten_lim)
    except ValueError as e:
        _err(str(e))
        return 2
    try:
        device = torch.device(args.device)
    except (RuntimeError, ValueError):
        _err(f"--device {args.device}: not a device name (use cpu or cuda)")
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        _err(f"--device {args.device}: no CUDA device is available")
        return 2

    exclude = [args.output] if args.output else []
    found = discover(args.inputs, exclude=exclude, skip_enhanced=args.output is None)
    for line in found.errors:
        _err(line)
    if not found.files:
        if not found.errors:
            _err("no inputs given")
        return 2
    try:
        plan = plan_outputs(found.files, args.output)
    except AudioFileError as e:
        _err(str(e))
        return 2
    if args.output and not output_is_file(args.output, found.files):
        out_dir = Path(os.path.expanduser(args.output))
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            _err(f"-o {out_dir}: cannot create the output folder (a file is in the way)")
            return 1
        except OSError as e:
            _err(f"-o {out_dir}: cannot create the output folder ({one_line(e.strerror or e)})")
            return 1

    try:
        enhancer = Enhancer.from_pretrained(args.model, device=args.device, block_seconds=args.block_seconds,
                                            backend=args.backend, atten_lim_db=atten_lim)
    except ValueError as e:  # ModelError, or a back end the device cannot run
        _err(str(e))
        return 2
    except ImportError as e:
        _err(f"--backend onnx needs onnx and onnxruntime (pip install 'gagnet[export]'): {e}")
        return 2

    inputs = frozenset(f.path.resolve() for f in found.files)
    reports: list[FileReport] = []
    n_failed = len(found.errors)
    bar = tqdm(plan, desc="enhance", unit="file", disable=_bars(args), file=sys.stderr, dynamic_ncols=True)
    try:
        with _sigterm_as_interrupt():
            n_failed += _run_batch(enhancer, bar, inputs, reports, args)
    except KeyboardInterrupt:
        bar.close()
        _err("interrupted; the file in progress was not written")
        return 130
    bar.close()

    done = [r for r in reports if r.status == "done"]
    skipped = sum(r.status == "skipped" for r in reports)
    audio = sum(r.seconds for r in done)
    spent = sum(r.elapsed for r in done)
    rtf = f"{spent / audio:.3f}" if audio > 0 else "n/a"
    total = len(reports) + len(found.errors)
    print(f"{total} file{'s' if total != 1 else ''} ({n_failed} failed, {skipped} skipped), "
          f"{_hours(audio)} h of audio, real-time factor {rtf}{_limit_note(enhancer.atten_lim_db)}")
    return 1 if n_failed else 0


def _limit_note(atten_lim_db: float | None) -> str:
    return "" if atten_lim_db is None else f", noise lowered by at most {atten_lim_db:g} dB (--atten-lim off: no limit)"


def cmd_models(args: argparse.Namespace) -> int:
    """``gagnet models``: the shipped models with their summaries; the default is marked."""
    from . import pretrained

    models = pretrained.available()
    if not models:
        print("No model is shipped yet; pass --model PATH (a model.pt or .ckpt from `gagnet train`) to gagnet enhance.")
        return 0
    width = max(len(n) for n in models)
    for name, summary in models.items():
        mark = "*" if name == pretrained.DEFAULT_MODEL else " "
        try:
            limit = pretrained.recommended_atten_lim(name)
        except pretrained.ModelError:
            limit = None
        note = "" if limit is None else f" [--atten-lim {limit:g} by default]"
        print(f"{mark} {name:<{width}}  {summary}{note}")
    if pretrained.DEFAULT_MODEL in models:
        print("(* = default)")
    else:
        print("No default model; pass --model NAME or PATH to gagnet enhance.")
    return 0


def register(sub: Any) -> None:
    """Add ``enhance`` and ``models`` to the ``gagnet`` subcommands."""
    p = sub.add_parser(
        "enhance", help="enhance audio files (any rate, any channels; format kept)",
        description="Enhance audio files. Inputs are files, folders (searched recursively) and glob patterns. "
        "Outputs keep the input's format, subtype, sample rate, channels and length.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio file, folder or glob pattern (quote it)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="output folder (tree of input folders kept); for a single input file, a name with an audio "
                   "extension names the output file. Default: <stem>_enhanced<suffix> next to each input")
    p.add_argument("--model", metavar="NAME|PATH", default=None,
                   help="shipped model name (see `gagnet models`), or a model.pt / .ckpt from `gagnet train`")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto (default): ONNX Runtime on the CPU when installed (about twice as fast; the graph is "
                   "exported on first use and cached in ~/.cache/gagnet), else PyTorch; or force torch / onnx")
    p.add_argument("--atten-lim", default=FROM_MODEL, metavar="DB|off",
                   help="lower the noise by at most DB decibels: mix the input back in at -DB dB "
                   "(e.g. 12 keeps some ambience; 0 returns the input); off: the network's output alone. "
                   "Default: the limit the model names (see `gagnet models`; none for files from gagnet train)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    p.add_argument("--plot", action="store_true",
                   help="also write <output stem>.png with noisy and enhanced spectrograms "
                   f"(first channel, first {PLOT_SECONDS:.0f} s; <stem>_<extension>.png for a second output of one stem)")
    p.add_argument("--block-seconds", type=float, default=30.0, metavar="S",
                   help="seconds of audio per processing block (memory vs. speed; default 30)")
    p.add_argument("--no-progress", action="store_true",
                   help="hide the progress bars (shown by default when stderr is a terminal)")
    p.set_defaults(func=cmd_enhance)

    p = sub.add_parser("models", help="list the shipped models")
    p.set_defaults(func=cmd_models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gagnet")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def run_cli(argv: Sequence[str]) -> int:
    """Run ``gagnet enhance ...`` / ``gagnet models`` from an argument list (for tests)."""
    args = build_parser().parse_args(list(argv))
    return int(args.func(args) or 0)


if __name__ == "__main__":  # python -m gagnet.enhance enhance ...
    sys.exit(run_cli(sys.argv[1:]))
