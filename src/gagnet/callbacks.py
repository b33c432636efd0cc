"""The Lightning callbacks of ``gagnet train``: step and validation logs, the time-budgeted
cosine schedule, the clocks that end epochs and invocations, the one full checkpoint, the
exported weights and the DDP rank audit.

Whatever a callback decides by the clock is rank 0's decision, broadcast to every rank, so
DDP ranks stay in step (same rate, same epoch ends, same stop).
"""
from __future__ import annotations

import csv
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig
from .data.sampling import StepBatches
from .model.gagnet import GaGNet

logger = logging.getLogger(__name__)


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` to a CSV (header from the first row's keys; later rows follow it)."""
    new = not path.exists()
    keys = list(row) if new else next(csv.reader(path.open()))
    with path.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(keys)
        w.writerow([row.get(k, "") if not isinstance(row.get(k), float) else f"{row[k]:.6g}" for k in keys])


def atomic_checkpoint_io():
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        """Write to a temporary file, then rename: a killed run never leaves half a checkpoint."""

        def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            torch.save(checkpoint, tmp)
            os.replace(tmp, path)

    return AtomicCheckpointIO()


def step_log_callback(path: Path, every: int):
    import lightning as L

    class StepLog(L.Callback):
        """Appends (step, mean train loss, lr, steps skipped so far, seconds since the fit began)
        every ``every`` steps to a CSV; a resumed run continues the same file. Losses stay on
        the device between rows (no sync per step)."""

        def __init__(self) -> None:
            self._losses: list[torch.Tensor] = []
            self._t0 = time.monotonic()

        def on_train_start(self, trainer, pl_module) -> None:
            self._t0 = time.monotonic()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.global_rank != 0:
                return
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self._losses.append(loss.detach())
            if trainer.global_step % every and trainer.global_step > 1:
                return
            # the one read-back from the device, every `every` steps
            mean, skipped = torch.stack([torch.stack(self._losses).float().mean(),
                                         pl_module.skipped.float().reshape(())]).tolist()
            self._losses = []
            lr = trainer.optimizers[0].param_groups[0]["lr"]
            new = not path.exists()
            with path.open("a", newline="") as f:
                w = csv.writer(f)
                if new:
                    w.writerow(["step", "loss", "lr", "skipped", "seconds"])
                # seconds: wall time since this fit began (compilation and validation included)
                w.writerow([trainer.global_step, f"{mean:.8g}", f"{lr:.6g}", int(skipped),
                            f"{time.monotonic() - self._t0:.3f}"])
            if trainer.logger is not None:
                trainer.logger.log_metrics({"train/skipped_steps": skipped}, trainer.global_step)

        def on_validation_end(self, trainer, pl_module) -> None:
            if trainer.global_rank != 0 or trainer.sanity_checking:
                return
            row = {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith("val/")}
            append_row(path.with_name("val_log.csv"), {"step": trainer.global_step, **row})

    return StepLog()


def cosine_lr(progress: float, step: int, peak: float, floor: float, warmup_steps: int) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay from ``peak`` to ``floor`` as
    ``progress`` goes from 0 to 1 (clamped)."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    p = min(max(progress, 0.0), 1.0)
    return warm * (floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * p)))


def _training_minutes(trainer) -> float:
    """Training time of the run so far (minutes), by Lightning's resumable timer."""
    from lightning.pytorch.callbacks import Timer

    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    return (timer.time_elapsed("train") if timer is not None else 0.0) / 60.0


def budget_schedule_callback(cfg: TrainConfig):
    import lightning as L

    class BudgetedCosine(L.Callback):
        """Sets the rate before every step from :func:`cosine_lr`, with progress the larger of
        ``step / max_steps`` and (with ``max_minutes``) the training time spent over the budget,
        read from Lightning's resumable timer: a run cut short by its time budget still ends
        at the low rate instead of mid-decay.

        The time counts from the end of the run's first step, which holds the compilation
        (261 s of the first call of the 2026-12-06 lease, whose fit then stopped at 480 s):
        counting from the start spent half the schedule before training. The start and the
        budget are kept in the checkpoint, so a resumed run goes on with the same schedule even
        when it is given a different ``max_minutes`` (the lease's second call is): minutes
        past the saved budget run at the floor. A checkpoint without them counts from 0 over
        the new budget, as before.

        The time is rank 0's, broadcast every ``log_every_steps`` steps and held in between,
        so every DDP rank sets the same rate at every step (their own clocks drift apart, and
        so would their weights)."""

        def __init__(self) -> None:
            self._minutes = 0.0
            self._read_at = -1
            self.start_minutes: float | None = None
            self.budget_minutes: float | None = cfg.max_minutes or None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            step = trainer.global_step
            progress = step / max(cfg.max_steps, 1)
            if cfg.max_minutes:
                first_after_compile = step == 1 and self.start_minutes is None
                if first_after_compile or self._read_at < 0 or step - self._read_at >= cfg.log_every_steps:
                    self._minutes = float(trainer.strategy.broadcast(_training_minutes(trainer), src=0))
                    self._read_at = step
                if self.start_minutes is None and step >= 1:
                    self.start_minutes = self._minutes if step == 1 else 0.0
                start = self.start_minutes or 0.0
                span = self.budget_minutes - start  # set whenever max_minutes is (here or from the checkpoint)
                progress = max(progress, (self._minutes - start) / span if span > 0 else 1.0)
            lr = cosine_lr(progress, step, cfg.lr, cfg.min_lr, cfg.warmup_steps)
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = lr

        def state_dict(self) -> dict:
            return {"start_minutes": self.start_minutes, "budget_minutes": self.budget_minutes}

        def load_state_dict(self, state_dict: dict) -> None:
            self.start_minutes = state_dict.get("start_minutes")
            saved = state_dict.get("budget_minutes")
            if saved and cfg.max_minutes and saved != cfg.max_minutes:
                logger.info("keeping the checkpoint's schedule over %.2f min (max_minutes now %.2f; "
                            "minutes past it run at the floor rate)", saved, cfg.max_minutes)
            self.budget_minutes = saved or cfg.max_minutes or None

    return BudgetedCosine()


def _rank_zero_clock(minutes: float, every: int, restart: str, when_due):
    """A callback that calls ``when_due(trainer)`` once ``minutes`` have passed since the last
    ``restart`` hook (``on_train_epoch_start`` or ``on_train_start``). Rank 0's clock decides,
    read and broadcast every ``every`` steps, so every DDP rank acts at the same step."""
    import lightning as L

    class RankZeroClock(L.Callback):
        def __init__(self) -> None:
            self._start = time.monotonic()

        def _restart(self, trainer, pl_module) -> None:
            self._start = time.monotonic()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.global_step % every:
                return
            due = time.monotonic() - self._start >= 60.0 * minutes
            if trainer.strategy.broadcast(due, src=0):
                when_due(trainer)

    setattr(RankZeroClock, restart, RankZeroClock._restart)
    return RankZeroClock()


def validation_clock_callback(cfg: TrainConfig, batches: StepBatches):
    """Ends the loop epoch (so Lightning validates and checkpoints) once ``val_every_minutes``
    have passed since it began."""

    def end_epoch(trainer) -> None:
        batches.stop = True

    return _rank_zero_clock(cfg.val_every_minutes, cfg.log_every_steps, "on_train_epoch_start", end_epoch)


def stop_clock_callback(cfg: TrainConfig):
    """Stops this invocation once its fit has run ``stop_after_minutes``."""

    def stop(trainer) -> None:
        trainer.should_stop = True

    return _rank_zero_clock(cfg.stop_after_minutes, cfg.log_every_steps, "on_train_start", stop)


def log_throughput(path: str | Path, audio_per_step: float) -> dict[str, float] | None:
    """End-to-end throughput of the last invocation in a ``train_log.csv``: steps and seconds
    from its first logged row (the compiling step excluded) to its last, validation included.
    None with fewer than three rows."""
    rows = list(csv.DictReader(Path(path).open()))
    # rows of the last invocation: after the last restart of the seconds column
    cut = max((i for i in range(1, len(rows)) if float(rows[i]["seconds"]) < float(rows[i - 1]["seconds"])),
              default=0)
    rows = rows[cut:]
    if len(rows) < 3:
        return None
    s0, t0 = int(rows[1]["step"]), float(rows[1]["seconds"])
    s1, t1 = int(rows[-1]["step"]), float(rows[-1]["seconds"])
    return {"first_step": int(rows[0]["step"]), "from_step": s0, "to_step": s1, "seconds": t1 - t0,
            "audio_s_per_s": (s1 - s0) * audio_per_step / (t1 - t0), "skipped": int(rows[-1]["skipped"])}


def rank_audit_callback(path: Path):
    import hashlib
    import json

    import lightning as L

    class RankAudit(L.Callback):
        """Appends one line per rank and per ``fit`` to ``ranks/rank<R>.jsonl``: world size,
        batch size, first and last step, the mixture indices it trained on (the first
        :data:`AUDIT_INDICES`) and a SHA-256 of its weights at the end: shows that DDP ranks
        drew disjoint data and ended with the same weights."""

        def __init__(self) -> None:
            self._indices: list[torch.Tensor] = []
            self._first = 0

        def on_train_start(self, trainer, pl_module) -> None:
            self._indices, self._first = [], trainer.global_step

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if isinstance(batch, dict) and "index" in batch and len(self._indices) * len(batch["index"]) < AUDIT_INDICES:
                self._indices.append(batch["index"].detach())  # stays on the device until the end

        def on_train_end(self, trainer, pl_module) -> None:
            digest = hashlib.sha256()
            for k, v in pl_module.model.net.state_dict().items():
                digest.update(k.encode())
                digest.update(v.detach().float().cpu().numpy().tobytes())
            idx = torch.cat(self._indices).cpu().tolist() if self._indices else []
            line = {"rank": trainer.global_rank, "world_size": trainer.world_size, "batch_size": pl_module.cfg.batch_size,
                    "first_step": self._first, "last_step": trainer.global_step, "indices": idx,
                    "weights_sha256": digest.hexdigest()}
            out = path / f"rank{trainer.global_rank}.jsonl"
            out.parent.mkdir(parents=True, exist_ok=True)
            with out.open("a") as f:
                f.write(json.dumps(line) + "\n")

    return RankAudit()


#: Mixture indices each rank records per run in ``ranks/rank<R>.jsonl``.
AUDIT_INDICES = 100_000


def last_checkpoint_callback(path: Path):
    import lightning as L
    from lightning.pytorch.trainer.states import TrainerFn

    class LastCheckpoint(L.Callback):
        """Writes the one full checkpoint (weights, optimiser, loop, callbacks) after every
        validation of a fit and when the fit ends, for resuming; the best weights alone go to
        ``model_best.pt``."""

        def __init__(self) -> None:
            self._saved_at = -1

        def _save(self, trainer) -> None:
            if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking \
                    and trainer.global_step != self._saved_at:
                trainer.save_checkpoint(path)  # every rank calls it; rank 0 writes
                self._saved_at = trainer.global_step

        def on_validation_end(self, trainer, pl_module) -> None:
            self._save(trainer)

        def on_train_end(self, trainer, pl_module) -> None:
            self._save(trainer)  # a run stopped by a time limit resumes from its last step

    return LastCheckpoint()


def export_callback(path: Path):
    import lightning as L

    class ExportWeights(L.Callback):
        """Keeps ``model.pt`` (config + network weights of the latest validation, no optimiser)
        and ``model_best.pt`` (those of the lowest ``val/loss`` so far) next to the checkpoints:
        the best weights cost a third of a full checkpoint. With ``ema_decay`` these are the
        weight average's (the one validated); the raw weights stay in the checkpoint."""

        def __init__(self) -> None:
            self.best = math.inf
            self.validated_at = -1

        def state_dict(self) -> dict[str, float]:
            return {"best": self.best}

        def load_state_dict(self, state: dict[str, float]) -> None:
            self.best = float(state.get("best", math.inf))

        def on_validation_end(self, trainer, pl_module) -> None:
            if trainer.sanity_checking:
                return
            self.validated_at = trainer.global_step
            loss = trainer.callback_metrics.get("val/loss")
            better = loss is not None and float(loss) < self.best
            if better:
                self.best = float(loss)
            if trainer.global_rank == 0:
                state = pl_module.export_state()
                save_weights(pl_module.model.net, path, state)
                if better:
                    save_weights(pl_module.model.net, path.with_name("model_best.pt"), state)

        def on_train_end(self, trainer, pl_module) -> None:
            # a run stopped by max_minutes ends between validations: keep its last steps too
            if trainer.global_rank == 0:
                save_weights(pl_module.model.net, path, pl_module.export_state())

    return ExportWeights()


def compile_cache_callback(path: Path):
    import threading

    import lightning as L

    from .compile_cache import collect_compile_cache, compile_misses, write_compile_cache

    class SaveCompileCache(L.Callback):
        """Rank 0 writes ``torch.compile``'s cache to ``path`` (:mod:`gagnet.compile_cache`) after
        the first training step of the invocation, and again when the fit ends, whenever something
        was compiled from scratch since the last write: a run that found everything in the cache
        leaves the file as it was. The artifacts are collected on the training thread and
        compressed in another, so training goes on meanwhile; a failure is logged, never raised."""

        def __init__(self) -> None:
            self._misses = 0
            self._writer: threading.Thread | None = None

        def _write(self, payload: bytes, n: int) -> None:
            try:
                write_compile_cache(path, payload, n)
            except Exception as e:
                logger.warning("compile cache %s not written (%s: %s)", path, type(e).__name__, e)

        def _save(self, trainer) -> None:
            misses = compile_misses()
            if trainer.global_rank != 0 or misses <= self._misses:
                return
            self._misses = misses  # once per new compile, even if the write fails
            if self._writer is not None:
                self._writer.join()  # one writer at a time: the later file holds everything
            try:
                collected = collect_compile_cache()
            except Exception as e:
                logger.warning("compile cache not collected (%s: %s)", type(e).__name__, e)
                return
            if collected:
                # not a daemon: the interpreter waits for it before exiting
                self._writer = threading.Thread(target=self._write, args=collected, name="compile-cache")
                self._writer.start()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if self._misses == 0:
                self._save(trainer)

        def on_train_end(self, trainer, pl_module) -> None:
            self._save(trainer)
            if self._writer is not None:
                self._writer.join()

    return SaveCompileCache()


def save_weights(net: GaGNet, path: Path, state: dict[str, torch.Tensor] | None = None) -> None:
    """Save ``{"config": ..., "state_dict": ...}`` of ``net`` (or of ``state``, e.g. its weight
    average): loadable with ``torch.load(weights_only=True)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"config": net.cfg.to_dict(), "state_dict": net.state_dict() if state is None else state}, tmp)
    os.replace(tmp, path)
