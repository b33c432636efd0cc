"""Speed and memory of a model on this machine: the ``gagnet benchmark`` command.

For each model, :func:`benchmark` reports

* parameters, MACs per second of audio and algorithmic latency (from :mod:`gagnet.complexity`);
* the offline real-time factor (processing time / audio time) of :class:`~gagnet.model.WaveGaGNet`
  on ``seconds`` of noise, with one CPU thread and with all of them: the median of a few runs
  after a warm-up, under ``torch.inference_mode()``;
* for causal models, streaming with :class:`~gagnet.streaming.StreamingEnhancer` fed 10 ms
  (160-sample) chunks on one thread: mean and 95th percentile milliseconds per chunk and the
  streaming real-time factor; and the same for the fast single-frame step of
  :mod:`gagnet.fast_step` in ONNX Runtime (``streaming_fast_onnx``), the quickest correct back
  end, where the configuration allows it and ``onnx``/``onnxruntime`` are installed;
* the peak resident memory of enhancing a generated 60 s, 16 kHz wav file with
  :meth:`gagnet.enhance.Enhancer.enhance_file` in a fresh process, and that process's resident
  memory just after importing and building the model, so the increment is visible;
* how many CPUs other processes (and the hypervisor) took on average while the timings ran
  (``/proc/stat`` minus this process's own CPU time): timings on a busy machine say so.

How the peak memory is measured. Linux keeps, in a process's ``ru_maxrss``, the high-water mark
of the memory it had before ``exec``: a child started from this (large) process would report at
least this process's size. So a small stdlib-only Python process is started first, it starts the
probe and reads ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (kilobytes on Linux) once the probe has
ended: the probe is its only child and inherits only its few megabytes.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .config import PRESETS, GaGNetConfig, get_config
from .model import GaGNet, WaveGaGNet

#: Timed offline runs (after one warm-up run); the median is reported.
OFFLINE_RUNS = 3
#: Streaming chunks fed (and discarded) before timing, to warm up.
STREAM_WARMUP_HOPS = 20
#: Length of the generated file of the memory probe, in seconds.
MEMORY_SECONDS = 60.0
#: Average CPUs used by other processes while timing above which the table warns.
BUSY_CPUS = 0.1
#: Wall-clock limit of the memory probe, in seconds.
MEMORY_TIMEOUT = 900.0


class BenchmarkError(RuntimeError):
    """A benchmark that could not run; the message is one line."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# ----------------------------------------------------------------------------- machine
def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (or what the platform module knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Processor", "cpu model") and value.strip():
                    return _one_line(value)
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def machine_info() -> dict[str, Any]:
    """CPU model, CPU count, torch version and the thread counts the benchmark uses."""
    n = available_cpus()
    return {
        "cpu": cpu_model(),
        "cpus": n,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": sorted({1, n}),
    }


def machine_line(info: dict[str, Any] | None = None) -> str:
    """One line: ``machine: <CPU> (N CPUs), torch X, Python Y, timed with 1 and N threads``."""
    info = info or machine_info()
    threads = " and ".join(str(t) for t in info["threads"])
    word = "thread" if info["threads"] == [1] else "threads"
    return (f"machine: {info['cpu']} ({info['cpus']} CPU{'s' if info['cpus'] != 1 else ''}), "
            f"torch {info['torch']}, Python {info['python']}, timed with {threads} {word}")


# ----------------------------------------------------------------------------- model
def _resolve(cfg_or_model: Any) -> tuple[WaveGaGNet, str, str | None]:
    """(model in eval mode, display name, checkpoint path or None)."""
    if isinstance(cfg_or_model, WaveGaGNet):
        return cfg_or_model.eval(), cfg_or_model.cfg.name, None
    if isinstance(cfg_or_model, GaGNet):
        return WaveGaGNet(cfg_or_model).eval(), cfg_or_model.cfg.name, None
    if isinstance(cfg_or_model, GaGNetConfig):
        return WaveGaGNet(GaGNet(cfg_or_model)).eval(), cfg_or_model.name, None
    if isinstance(cfg_or_model, str) and cfg_or_model in PRESETS:
        cfg = get_config(cfg_or_model)
        return WaveGaGNet(GaGNet(cfg)).eval(), cfg.name, None
    if isinstance(cfg_or_model, (str, os.PathLike)):
        from .pretrained import load_model, resolve

        path = resolve(cfg_or_model)  # ModelError (one line) when it is neither a preset, a shipped name nor a file
        model = load_model(path)
        return model, f"{Path(path).name} ({model.cfg.name})", str(path)
    raise TypeError(f"expected a preset name, GaGNetConfig, GaGNet, WaveGaGNet or a model file, got {cfg_or_model!r}")


class _threads:
    """``with _threads(n):`` runs torch with ``n`` intra-op threads, then restores the old count."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        self.old = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.old)


def _noise(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(n, generator=g)


# ----------------------------------------------------------------------------- timing
def _system_busy_seconds() -> tuple[float, float] | None:
    """(busy, stolen) CPU-seconds of all CPUs since boot: busy counts user, nice, system, irq,
    softirq and the time the hypervisor gave to other machines (steal); None when unknown."""
    try:
        with open("/proc/stat") as fh:
            f = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    steal = f[7] if len(f) > 7 else 0
    tick = os.sysconf("SC_CLK_TCK")
    return (f[0] + f[1] + f[2] + f[5] + f[6] + steal) / tick, steal / tick


class _Interference:
    """How much CPU other processes (and the hypervisor) took while this one was being timed.

    ``with monitor:`` blocks add up wall time, busy CPU time of the whole system and this
    process's own CPU time; :attr:`cpus` is the average number of CPUs the rest used.
    """

    def __init__(self) -> None:
        self.wall = self.busy = self.own = self.stolen = 0.0
        self.known = True

    def __enter__(self) -> "_Interference":
        self._t = (time.perf_counter(), _system_busy_seconds(), sum(os.times()[:2]))
        return self

    def __exit__(self, *exc: object) -> None:
        t0, b0, o0 = self._t
        b1 = _system_busy_seconds()
        self.wall += time.perf_counter() - t0
        self.own += sum(os.times()[:2]) - o0
        if b0 is None or b1 is None:
            self.known = False
        else:
            self.busy += b1[0] - b0[0]
            self.stolen += b1[1] - b0[1]

    @property
    def cpus(self) -> float | None:
        """Average CPUs taken by other processes and the hypervisor while timing."""
        if not self.known or self.wall <= 0:
            return None
        return max(0.0, (self.busy - self.own) / self.wall)

    @property
    def stolen_cpus(self) -> float | None:
        """The part of :attr:`cpus` the hypervisor gave to other machines (steal time)."""
        if not self.known or self.wall <= 0:
            return None
        return max(0.0, self.stolen / self.wall)


#: Collects the interference of the timings of the running :func:`benchmark` (None outside it).
_monitor: _Interference | None = None


class _timed:
    """``with _timed():`` counts the block in the running benchmark's interference monitor."""

    def __enter__(self) -> None:
        if _monitor is not None:
            _monitor.__enter__()

    def __exit__(self, *exc: object) -> None:
        if _monitor is not None:
            _monitor.__exit__(*exc)


def offline_rtf(model: WaveGaGNet, seconds: float, threads: int, runs: int = OFFLINE_RUNS) -> dict[str, Any]:
    """Median real-time factor of ``model`` on ``seconds`` of noise with ``threads`` threads."""
    n = max(1, int(round(seconds * model.cfg.sample_rate)))
    x = _noise(n).unsqueeze(0)
    times = []
    with _threads(threads), torch.inference_mode(), _timed():
        model(x)  # warm-up
        for _ in range(max(1, runs)):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    audio = n / model.cfg.sample_rate
    return {"threads": threads, "runs": len(times), "rtf": statistics.median(times) / audio,
            "rtf_runs": [t / audio for t in times]}


def streaming_stats(model: WaveGaGNet, seconds: float, threads: int = 1,
                    enhancer: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Feed ``seconds`` of noise to a :class:`StreamingEnhancer` one hop (10 ms) at a time.

    ``enhancer``: builds the streaming processor timed instead (any object with ``process`` and
    ``reset``, such as :class:`~gagnet.fast_step.FastStreamingEnhancer` or
    :class:`~gagnet.export.OnnxStreamingEnhancer`); torch runs with ``threads`` threads.
    """
    from .streaming import StreamingEnhancer

    cfg = model.cfg
    hop = cfg.hop_length
    n_hops = max(1, int(round(seconds * cfg.sample_rate / hop)))
    x = _noise(n_hops * hop, seed=1).numpy()
    chunks = [np.ascontiguousarray(x[i * hop : (i + 1) * hop]) for i in range(n_hops)]
    times = np.empty(n_hops)
    with _threads(threads), torch.inference_mode(), _timed():
        stream = enhancer() if enhancer is not None else StreamingEnhancer(model)
        for c in chunks[:STREAM_WARMUP_HOPS]:  # warm-up, then a fresh stream is timed
            stream.process(c)
        stream.reset()
        for i, c in enumerate(chunks):
            t0 = time.perf_counter()
            stream.process(c)
            times[i] = time.perf_counter() - t0
    ms = times * 1000.0
    hop_ms = 1000.0 * hop / cfg.sample_rate
    return {
        "threads": threads,
        "hop_ms": hop_ms,
        "hops": n_hops,
        "ms_per_hop_mean": float(ms.mean()),
        "ms_per_hop_p95": float(np.percentile(ms, 95)),
        "ms_per_hop_max": float(ms.max()),
        "rtf": float(ms.sum() / (n_hops * hop_ms)),
    }


def fast_onnx_streaming_stats(model: WaveGaGNet, seconds: float) -> dict[str, Any] | None:
    """:func:`streaming_stats` of the fast single-frame step in ONNX Runtime, 1 thread.

    That is the quickest correct streaming back end (see ``benchmarks/streaming_backends.py``);
    None when it does not apply: a configuration :mod:`gagnet.fast_step` cannot build, or
    ``onnx`` / ``onnxruntime`` not installed.
    """
    from .fast_step import fast_step_supported

    if not fast_step_supported(model.cfg):
        return None
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    from .export import OnnxStreamingEnhancer, export_streaming

    with tempfile.TemporaryDirectory() as d:
        path = export_streaming(model, Path(d) / "fast_step.onnx", fast=True)
        return streaming_stats(model, seconds, threads=1, enhancer=lambda: OnnxStreamingEnhancer(path, threads=1))


# ----------------------------------------------------------------------------- memory
# Runs in the probe process: import, build the model, note the resident memory, enhance the file.
_PROBE = r"""
import json, sys
spec = json.loads(sys.argv[1])
from gagnet.benchmark import _memory_probe_main
print(json.dumps(_memory_probe_main(spec)))
"""

# Runs in a small stdlib-only process whose only child is the probe (see the module doc).
_WRAPPER = r"""
import json, resource, subprocess, sys
try:
    p = subprocess.run([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=float(sys.argv[3]))
    rc, out, err = p.returncode, p.stdout, p.stderr
except subprocess.TimeoutExpired:
    rc, out, err = None, "", "timed out"
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": rc, "stdout": out, "stderr": err[-4000:], "children_maxrss_kb": ru.ru_maxrss}))
"""


def _rss_kb() -> float:
    """Resident memory of this process now, in KB (Linux); NaN when unknown."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1024.0
    except (OSError, ValueError, IndexError):
        return math.nan


def _hwm_kb() -> float:
    """High-water resident memory of this process's current image (``VmHWM``), in KB; NaN when unknown."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return math.nan


def _memory_probe_main(spec: dict[str, Any]) -> dict[str, Any]:
    """The probe: build the model as ``spec`` says, then enhance ``spec['src']`` into ``spec['dst']``."""
    from .enhance import Enhancer

    if spec.get("checkpoint"):
        from .pretrained import load_model

        model = load_model(spec["checkpoint"])
    else:
        model = WaveGaGNet(GaGNet(GaGNetConfig.from_dict(spec["config"]))).eval()
    baseline = _rss_kb()
    report = Enhancer(model, backend=spec.get("backend", "torch")).enhance_file(spec["src"], spec["dst"], overwrite=True)
    return {"status": report.status, "message": report.message, "baseline_rss_kb": baseline,
            "hwm_kb": _hwm_kb(), "rtf": report.rtf, "threads": torch.get_num_threads()}


def peak_memory(model: WaveGaGNet, checkpoint: str | None = None, seconds: float = MEMORY_SECONDS,
                timeout: float = MEMORY_TIMEOUT, backend: str = "torch") -> dict[str, Any]:
    """Peak and baseline resident memory (MB) of enhancing a ``seconds`` long 16 kHz wav in a fresh process.

    ``backend`` is the :class:`~gagnet.enhance.Enhancer` back end; with ``"onnx"`` a graph not
    yet in the cache is exported inside the probe, and that export counts towards the peak.

    The probe loads ``checkpoint`` when given, else builds ``model``'s configuration with fresh
    weights (memory does not depend on their values).
    """
    import soundfile as sf

    sr = model.cfg.sample_rate
    with tempfile.TemporaryDirectory(prefix="gagnet-bench-") as tmp:
        src, dst = Path(tmp) / "noisy.wav", Path(tmp) / "enhanced.wav"
        sf.write(src, np.clip(_noise(int(round(seconds * sr)), seed=2).numpy(), -1, 1), sr, subtype="PCM_16")
        spec: dict[str, Any] = {"src": str(src), "dst": str(dst), "backend": backend}
        if checkpoint is not None:
            spec["checkpoint"] = str(checkpoint)
        else:
            spec["config"] = model.cfg.to_dict()
        env = dict(os.environ)
        pkg_root = str(Path(__file__).resolve().parents[1])  # so the probe imports this very package
        env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _WRAPPER, _PROBE, json.dumps(spec), str(timeout)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, timeout=timeout + 60,
            )
        except subprocess.TimeoutExpired:
            raise BenchmarkError(f"memory probe did not finish within {timeout:.0f} s") from None
        wall = time.perf_counter() - t0
    try:
        outer = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise BenchmarkError(f"memory probe failed: {_one_line(proc.stderr)[-300:] or 'no output'}") from None
    if outer["rc"] != 0:
        lines = [ln for ln in outer["stderr"].strip().splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit status {outer['rc']}"
        raise BenchmarkError(f"memory probe failed: {_one_line(why)[:300]}")
    inner = json.loads(outer["stdout"].strip().splitlines()[-1])
    if inner["status"] != "done":
        raise BenchmarkError(f"memory probe could not enhance its file: {_one_line(inner['message'])[:300]}")
    peak = outer["children_maxrss_kb"] / 1024.0  # ru_maxrss is in KB on Linux
    base = inner["baseline_rss_kb"] / 1024.0
    return {
        "file_seconds": float(seconds),
        "peak_rss_mb": peak,
        "baseline_rss_mb": base,
        "increment_mb": peak - base,
        "probe_hwm_mb": inner["hwm_kb"] / 1024.0,
        "probe_rtf": inner["rtf"],
        "probe_threads": inner["threads"],
        "probe_wall_s": wall,
    }


# ----------------------------------------------------------------------------- benchmark
@functools.lru_cache(maxsize=16)
def _complexity(cfg: GaGNetConfig) -> Any:
    from .complexity import complexity

    return complexity(cfg)


def benchmark(cfg_or_model: Any, seconds: float = 10.0, memory: bool = True, *,
              runs: int = OFFLINE_RUNS, memory_seconds: float = MEMORY_SECONDS,
              threads: int | None = None) -> dict[str, Any]:
    """Measure one model; returns a JSON-able dict (see the module doc).

    ``cfg_or_model``: a preset name, a :class:`GaGNetConfig`, a :class:`GaGNet` or
    :class:`WaveGaGNet`, or a model file / shipped model name (loaded with
    :func:`gagnet.pretrained.load_model`). ``seconds``: length of the timed offline input and
    of the streamed signal. ``memory``: run the peak-memory probe on a ``memory_seconds`` file.
    ``threads``: the "all threads" count (default: the CPUs available to this process).
    """
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"seconds must be a positive number, got {seconds}")
    if memory and not (memory_seconds > 0 and math.isfinite(memory_seconds)):
        raise ValueError(f"memory_seconds must be a positive number, got {memory_seconds}")
    model, name, checkpoint = _resolve(cfg_or_model)
    model = model.to("cpu").eval()
    cfg = model.cfg
    cx = _complexity(cfg)
    n_all = int(threads) if threads else available_cpus()
    info = machine_info()
    info["threads"] = sorted({1, n_all})

    global _monitor
    _monitor = monitor = _Interference()
    try:
        one = offline_rtf(model, seconds, 1, runs)
        every = one if n_all == 1 else offline_rtf(model, seconds, n_all, runs)
        streaming = streaming_stats(model, seconds, threads=1) if cfg.causal else None
        fast = fast_onnx_streaming_stats(model, seconds) if cfg.causal else None
    finally:
        _monitor = None
    info["other_load_cpus"] = monitor.cpus
    info["stolen_cpus"] = monitor.stolen_cpus
    result: dict[str, Any] = {
        "model": name,
        "checkpoint": checkpoint,
        "config": cfg.to_dict(),
        "causal": bool(cfg.causal),
        "parameters": int(cx.parameters),
        "macs_per_second": float(cx.macs_per_second),
        "latency_ms": cx.latency_ms,
        "offline": {
            "seconds": float(seconds),
            "runs": one["runs"],
            "rtf_1_thread": one["rtf"],
            "rtf_all_threads": every["rtf"],
            "threads_all": n_all,
        },
        "streaming": streaming,  # PyTorch eager StreamingEnhancer
        "streaming_fast_onnx": fast,  # the fast step in ONNX Runtime (None where it does not apply)
        "memory": peak_memory(model, checkpoint, memory_seconds) if memory else None,
        "machine": info,
    }
    return result


# ----------------------------------------------------------------------------- table
def _mb(x: float) -> str:
    return f"{x:,.0f} MB"


def format_table(rows: list[dict[str, Any]] | dict[str, Any]) -> str:
    """The machine line, then one two-column table per result of :func:`benchmark`."""
    if isinstance(rows, dict):
        rows = [rows]
    if not rows:
        return machine_line()
    tables = []
    for r in rows:
        off = r["offline"]
        n_all = off["threads_all"]
        lat = f"{r['latency_ms']:.1f} ms" if r["latency_ms"] is not None else "whole utterance (not causal)"
        items = [
            ("model", r["model"]),
            ("parameters", f"{r['parameters']:,}"),
            ("MACs per second of audio", f"{r['macs_per_second'] / 1e9:.3f} G"),
            ("algorithmic latency", lat),
            ("offline real-time factor, 1 thread",
             f"{off['rtf_1_thread']:.3f}  ({off['seconds']:g} s noise, median of {off['runs']} runs)"),
        ]
        if n_all != 1:
            items.append((f"offline real-time factor, {n_all} threads", f"{off['rtf_all_threads']:.3f}"))
        s = r["streaming"]
        if s is None:
            items += [("streaming ms per 10 ms hop, 1 thread", "n/a (not causal)"),
                      ("streaming real-time factor, 1 thread", "n/a (not causal)")]
        else:
            items += [
                (f"streaming ms per {s['hop_ms']:g} ms hop, 1 thread",
                 f"mean {s['ms_per_hop_mean']:.2f}, p95 {s['ms_per_hop_p95']:.2f}  ({s['hops']} hops)"),
                ("streaming real-time factor, 1 thread", f"{s['rtf']:.3f}"),
            ]
            f = r.get("streaming_fast_onnx")
            if f is not None:
                items += [
                    (f"streaming ms per {f['hop_ms']:g} ms hop, 1 thread, ONNX Runtime fast step",
                     f"mean {f['ms_per_hop_mean']:.2f}, p95 {f['ms_per_hop_p95']:.2f}  (RTF {f['rtf']:.3f})"),
                ]
        load = r.get("machine", {}).get("other_load_cpus")
        if load is not None:
            stolen = r["machine"].get("stolen_cpus") or 0.0
            note = "quiet" if load < BUSY_CPUS else "others competed: timings are pessimistic"
            if stolen >= 0.01:
                note = f"{stolen:.2f} of it stolen by the hypervisor; {note}"
            items.append(("CPU taken by others while timing", f"{load:.2f} CPUs on average ({note})"))
        m = r["memory"]
        if m is None:
            items.append(("peak memory", "not measured"))
        else:
            items.append((f"peak memory, {m['file_seconds']:g} s file",
                          f"{_mb(m['peak_rss_mb'])}  (after import + model: {_mb(m['baseline_rss_mb'])}, "
                          f"+{_mb(m['increment_mb'])} enhancing)"))
        width = max(len(k) for k, _ in items)
        tables.append("\n".join(f"{k:<{width}}  {v}" for k, v in items))
    return machine_line(rows[0].get("machine")) + "\n\n" + "\n\n".join(tables)


# ----------------------------------------------------------------------------- command line
def _jsonable(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _err(msg: str) -> None:
    print(f"gagnet benchmark: error: {_one_line(msg)}", file=sys.stderr)


def cmd_benchmark(args: argparse.Namespace) -> int:
    """``gagnet benchmark``: print the tables (and write JSON); 2 with a one-line error on failure."""
    import logging

    log = logging.getLogger(__name__)
    seconds = getattr(args, "seconds", 10.0)
    if not (seconds > 0 and math.isfinite(seconds)):
        _err(f"--seconds must be a positive number, got {seconds}")
        return 2
    memory_seconds = getattr(args, "memory_seconds", MEMORY_SECONDS)
    if not (memory_seconds > 0 and math.isfinite(memory_seconds)):
        _err(f"--memory-seconds must be a positive number, got {memory_seconds}")
        return 2
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        _err(f"--threads must be at least 1, got {threads}")
        return 2
    models: list[Any] = list(getattr(args, "config", None) or [])
    models += [Path(p) for p in (getattr(args, "checkpoint", None) or [])]
    if not models:
        models = ["paper", "causal"]
    rows = []
    try:
        for m in models:
            log.info("benchmarking %s ...", m)
            rows.append(benchmark(m, seconds=seconds, memory=not getattr(args, "no_memory", False),
                                  memory_seconds=memory_seconds, threads=threads))
        print(format_table(rows))
        if getattr(args, "json", None):
            out = Path(args.json)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(_jsonable(rows), indent=2, allow_nan=False) + "\n")
    except (ValueError, OSError, BenchmarkError, TypeError) as e:  # ModelError is a ValueError
        _err(str(e))
        return 2
    return 0


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``benchmark`` to the ``gagnet`` subcommands."""
    p = subparsers.add_parser(
        "benchmark", help="parameters, MACs, latency, real-time factors and memory on this machine",
        description="Measure models on this CPU: parameters, MACs, algorithmic latency, offline real-time factor "
        "(1 thread and all threads), streaming cost per 10 ms hop (causal models) and peak memory for a 60 s file.",
    )
    p.add_argument("--config", action="append", choices=sorted(PRESETS), help="preset (repeatable)")
    p.add_argument("--checkpoint", action="append", metavar="FILE",
                   help="model file (model.pt / .ckpt from gagnet train, or a shipped model name; repeatable)")
    p.add_argument("--seconds", type=_float, default=10.0, metavar="S",
                   help="seconds of noise timed offline and streamed (default 10)")
    p.add_argument("--memory-seconds", type=_float, default=MEMORY_SECONDS, metavar="S",
                   help=f"length of the file of the memory probe (default {MEMORY_SECONDS:g})")
    p.add_argument("--threads", type=int, metavar="N",
                   help="thread count of the 'all threads' timing (default: the CPUs available, here "
                   f"{available_cpus()})")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory probe")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    p.set_defaults(func=cmd_benchmark)
    return p


__all__ = ["BenchmarkError", "benchmark", "cmd_benchmark", "format_table", "machine_info", "machine_line", "register"]
