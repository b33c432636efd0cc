"""Training: the Lightning module, the data pipeline wiring and the ``gagnet train`` command.

One epoch of the loop is ``val_every_steps`` optimiser steps followed by validation and a
checkpoint, so every checkpoint sits on an epoch boundary. Training mixtures are a pure
function of (seed, global index) and the sampler walks indices in order, so a resumed run
sees exactly the data an uninterrupted run would have seen.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader, Sampler

from .config import TrainConfig
from .dsp import frame_mask
from .loss import gagnet_loss
from .model.gagnet import GaGNet, count_parameters
from .model.wave import WaveGaGNet
from .val_scoring import BackgroundScorer, batch_si_sdr

log = logging.getLogger(__name__)
CONFIG_DIR = Path(__file__).parent / "configs"


# --------------------------------------------------------------------------- config files
def load_train_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML file (a path or the name of a packaged config) and apply ``key=value`` overrides.

    Dotted keys reach into ``data``: ``data.segment_seconds=1.5``. Values are parsed as YAML.
    """
    p = Path(path)
    if not p.exists() and (CONFIG_DIR / f"{path}.yaml").exists():
        p = CONFIG_DIR / f"{path}.yaml"
    if not p.exists():
        raise FileNotFoundError(f"no config file {path!r} (packaged: {sorted(f.stem for f in CONFIG_DIR.glob('*.yaml'))})")
    d = yaml.safe_load(p.read_text()) or {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        node = d
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return TrainConfig.from_dict(d)


# --------------------------------------------------------------------------- sampling
class StepSampler(Sampler[int]):
    """Yields the global mixture indices of the next ``steps`` optimiser steps, in order.

    The first index comes from ``step_fn()`` (the trainer's global step, set once the
    trainer exists), so a resumed run continues with exactly the mixtures it would have
    seen; ranks of a DDP run interleave.
    """

    def __init__(self, steps: int, batch_size: int) -> None:
        self.steps, self.batch_size = steps, batch_size
        self.step_fn: Callable[[], int] = lambda: 0
        self.rank: int | None = None  # read from torch.distributed at each epoch unless set
        self.world: int | None = None

    def _ranks(self) -> tuple[int, int]:
        ddp = dist.is_available() and dist.is_initialized()
        rank = self.rank if self.rank is not None else (dist.get_rank() if ddp else 0)
        world = self.world if self.world is not None else (dist.get_world_size() if ddp else 1)
        return rank, world

    def __iter__(self) -> Iterator[int]:
        rank, world = self._ranks()
        base = self.step_fn() * self.batch_size * world
        log.debug("sampler starts at global step %d (mixture %d)", self.step_fn(), base)
        return iter(range(base + rank, base + world * len(self), world))

    def __len__(self) -> int:
        return self.steps * self.batch_size


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class StepBatches(torch.utils.data.IterableDataset):
    """Batches of global mixture indices ``(B,)`` int64 for the batch mixer, one per step.

    Like :class:`StepSampler`: the first batch belongs to step ``step_fn()``, ranks
    interleave, and one pass (a loop epoch) lasts ``steps`` steps, or ends early once
    ``stop`` is set (time-based validation; every rank sets it at the same step). Having no
    length, it lets Lightning validate when it ends, however many steps that took.
    """

    def __init__(self, steps: int, batch_size: int) -> None:
        self.steps, self.batch_size = steps, batch_size
        self.step_fn: Callable[[], int] = lambda: 0
        self.stop = False

    def __iter__(self) -> Iterator[torch.Tensor]:
        rank, world = _rank_world()
        start = self.step_fn()
        self.stop = False
        for step in range(start, start + self.steps):
            if self.stop:
                return
            base = step * self.batch_size * world
            yield torch.arange(base + rank, base + world * self.batch_size, world, dtype=torch.int64)


# --------------------------------------------------------------------------- module
def skip_nonfinite_step(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor], max_norm: float | None,
                        ) -> torch.Tensor:
    """Clip the gradients of ``params`` to ``max_norm`` (none when None or 0) and tell
    ``optimizer`` (fused Adam) to skip its next step if their norm is not finite. Returns the
    skip flag ``()`` float32 (1.0 = skipped) on the device, without reading it back: no host
    synchronisation."""
    grads = [p for p in params if p.grad is not None]
    if max_norm:
        norm = torch.nn.utils.clip_grad_norm_(grads, max_norm, foreach=True)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in grads], foreach=True)
    found = (~torch.isfinite(norm)).float()
    optimizer.found_inf = found  # read by the fused Adam kernel: no update, step count kept
    return found


def compile_loss(net: GaGNet, backend: str = "inductor") -> Callable[..., torch.Tensor]:
    """The training loss of ``net``, ``(noisy, clean, mask) -> gagnet_loss(net(noisy), clean, mask)``
    on compressed spectra, under ``torch.compile`` (inductor).

    The same function of the same parameters (the module itself is untouched, so its state
    dict and the eager path are unchanged). Inductor fuses each norm, PReLU and gate with its
    neighbours, runs the 2-D convolutions channels-last and fuses the loss into the last
    stages, which cuts the memory traffic of the forward and backward passes. Shapes are
    compiled statically (a training run sees one batch shape); the first call compiles
    (minutes on a small CPU, seconds from inductor's on-disk cache). ``backend`` is
    ``torch.compile``'s (``aot_eager`` traces the same graphs without generating code).
    """

    def loss(noisy: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return gagnet_loss(net(noisy), clean, mask)

    return torch.compile(loss, backend=backend, dynamic=False)


def freeze_batch_norm_stats(net: torch.nn.Module) -> int:
    """Put every batch norm of ``net`` in eval mode: it normalises with its running statistics
    and stops updating them, while its weight and bias still train. For fine-tuning with batches
    too small for reliable batch statistics (e.g. 4 mixtures on a CPU after 32 on a GPU).
    Returns the number of layers frozen."""
    layers = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in layers:
        m.eval()
    return len(layers)


def make_module(cfg: TrainConfig):
    """Build the LightningModule for ``cfg`` (Lightning is imported lazily)."""
    import lightning as L

    class GaGNetModule(L.LightningModule):
        """GaGNet with the paper's loss, Adam, and halving of the rate on plateau."""

        def __init__(self, train_cfg: dict[str, Any]) -> None:
            super().__init__()
            self.save_hyperparameters({"train_cfg": train_cfg})
            self.cfg = TrainConfig.from_dict(train_cfg)
            self.model = WaveGaGNet(GaGNet(self.cfg.model_config()))
            # training steps only (validation has other shapes and eval mode); a plain function,
            # so that it is no submodule and the state dict stays the network's own
            self._compiled_loss = compile_loss(self.model.net) if self.cfg.compile else None
            self._val_examples: list[dict[str, Any]] = []
            self.mixer = None  # BatchMixer, set by train(); mixes index batches on the device
            self.skipped = torch.zeros(())  # optimiser steps skipped for non-finite gradients
            self._scorer = None
            self._val_sdr: list[torch.Tensor] = []
            self._val_sdr_noisy_rows: list[torch.Tensor] = []
            self._val_sdr_noisy: float | None = None
            self._noisy_sent = False

        def _loss(self, batch: dict[str, torch.Tensor], compiled: bool = False) -> torch.Tensor:
            noisy = self.model.analyze(batch["noisy"])
            clean = self.model.analyze(batch["clean"])
            mask = frame_mask(batch["lengths"], self.model.cfg, noisy.shape[-1])
            if compiled and self._compiled_loss is not None:
                return self._compiled_loss(noisy, clean, mask)
            return gagnet_loss(self.model.net(noisy), clean, mask)

        def on_fit_start(self) -> None:
            if self.mixer is not None:
                self.mixer.to(self.device)
            self.skipped = self.skipped.to(self.device)

        def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
            if isinstance(batch, torch.Tensor):  # global mixture indices: mix them here, on the device
                mixed = self.mixer(batch)
                mixed["index"] = batch
                return mixed
            return batch

        def on_train_epoch_start(self) -> None:
            if self.cfg.freeze_bn_stats:  # Lightning has just put every module in train mode
                freeze_batch_norm_stats(self.model)

        def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
            loss = self._loss(batch, compiled=True)
            # not on the progress bar: that would read the loss back every step
            self.log("train/loss", loss, batch_size=batch["noisy"].shape[0])
            return loss

        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
            if getattr(self.trainer.precision_plugin, "scaler", None) is not None:  # fp16: the scaler skips
                return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
            found = skip_nonfinite_step(optimizer, list(self.parameters()), gradient_clip_val)
            self.skipped = self.skipped.to(found.device) + found

        def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            checkpoint["gagnet"] = {"world_size": self.trainer.world_size, "batch_size": self.cfg.batch_size,
                                    "skipped_steps": float(self.skipped)}

        def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            meta = checkpoint.get("gagnet", {})
            self.skipped = torch.tensor(float(meta.get("skipped_steps", 0.0)))
            then = (meta.get("world_size"), meta.get("batch_size"))
            now = (self.trainer.world_size, self.cfg.batch_size)
            if None not in then and then != now:
                log.warning("resuming a run trained on %d process(es) x batch %d with %d x %d: from here on the "
                            "mixtures differ from those of an unbroken run (step k now reads indices from "
                            "k x %d); keep world size and batch size to resume exactly",
                            then[0], then[1], now[0], now[1], now[0] * now[1])

        def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
            noisy = self.model.analyze(batch["noisy"])
            clean = self.model.analyze(batch["clean"])
            mask = frame_mask(batch["lengths"], self.model.cfg, noisy.shape[-1])
            estimates = self.model.net(noisy)
            loss = gagnet_loss(estimates, clean, mask)
            self.log("val/loss", loss, sync_dist=True, batch_size=batch["noisy"].shape[0])
            n = batch["noisy"].shape[-1]
            enhanced = self.model.synthesize(estimates[-1], n).float()
            self._val_sdr.append(batch_si_sdr(batch["clean"], enhanced, batch["lengths"]))
            if self._val_sdr_noisy is None:  # the validation set is fixed: its noisy baseline, once
                self._val_sdr_noisy_rows.append(batch_si_sdr(batch["clean"], batch["noisy"], batch["lengths"]))
            need = self.cfg.val_metric_clips - len(self._val_examples)
            if need > 0 and self.global_rank == 0:
                for i in range(min(need, batch["noisy"].shape[0])):
                    n = int(batch["lengths"][i])
                    self._val_examples.append({
                        "noisy": batch["noisy"][i, :n].float().cpu().numpy(),
                        "clean": batch["clean"][i, :n].float().cpu().numpy(),
                        "enhanced": enhanced[i, :n].cpu().numpy(),
                    })

        def on_validation_epoch_end(self) -> None:
            if self._val_sdr:
                self.log("val/si_sdr", torch.cat(self._val_sdr).mean().float(), sync_dist=True)
            if self._val_sdr_noisy_rows:
                self._val_sdr_noisy = float(torch.cat(self._val_sdr_noisy_rows).mean())
            self._val_sdr, self._val_sdr_noisy_rows = [], []
            if self._val_sdr_noisy is not None:
                self.log("val/si_sdr_noisy", self._val_sdr_noisy)
            examples, self._val_examples = self._val_examples, []
            if not examples or self.global_rank != 0 or self.trainer.sanity_checking:
                return
            if self._scorer is None:
                self._scorer = BackgroundScorer()
            clean = [e["clean"] for e in examples]
            noisy = None if self._noisy_sent else [e["noisy"] for e in examples]
            self._noisy_sent = True
            self._scorer.submit(self.global_step, clean, [e["enhanced"] for e in examples], noisy)
            self.write_scores(self._scorer.collect())
            _log_media(self.logger, examples[:2], self.model.cfg.sample_rate, self.global_step)

        def write_scores(self, results: list[tuple[int, dict[str, float]]]) -> None:
            """Scores of earlier validations, now done: TensorBoard (at their own step) and
            ``val_scores.csv``."""
            if not results:
                return
            exp = getattr(self.logger, "experiment", None)
            path = Path(self.cfg.out_dir) / "val_scores.csv"
            for step, scores in results:
                for name, value in scores.items():
                    if exp is not None and hasattr(exp, "add_scalar"):
                        exp.add_scalar(f"val/{name}", value, step)
                _append_row(path, {"step": step, **scores})

        def finish_scores(self) -> None:
            if self._scorer is not None:
                self.write_scores(self._scorer.collect(wait=True))
                self._scorer.close()
                self._scorer = None

        def configure_optimizers(self):
            # fused: one kernel for all parameters, and it skips a step when told of non-finite gradients
            opt = torch.optim.Adam(self.parameters(), lr=self.cfg.lr, fused=True)
            if self.cfg.lr_schedule == "cosine":  # set per step by the BudgetedCosine callback
                return opt
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                # torch counts the bad validations it tolerates; ours counts the ones that trigger
                opt, mode="min", factor=self.cfg.plateau_factor, patience=self.cfg.plateau_patience - 1,
                min_lr=self.cfg.min_lr,
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/loss", "interval": "epoch"}}

    return GaGNetModule(cfg.to_dict())


def _append_row(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` to a CSV (header from the first row's keys; later rows follow it)."""
    new = not path.exists()
    keys = list(row) if new else next(csv.reader(path.open()))
    with path.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(keys)
        w.writerow([row.get(k, "") if not isinstance(row.get(k), float) else f"{row[k]:.6g}" for k in keys])


def _log_media(logger: Any, examples: list[dict[str, Any]], sample_rate: int, step: int) -> None:
    """Audio and before/after spectrogram images of validation clips to TensorBoard."""
    exp = getattr(logger, "experiment", None)
    if exp is None or not hasattr(exp, "add_audio"):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    for i, e in enumerate(examples):
        for key in ("noisy", "enhanced", "clean"):
            exp.add_audio(f"val_{i}/{key}", torch.from_numpy(e[key]).unsqueeze(0), step, sample_rate)
        fig, axes = plt.subplots(1, 3, figsize=(12, 3), sharey=True)
        for ax, key in zip(axes, ("noisy", "enhanced", "clean")):
            spec = np.abs(np.fft.rfft(_frames(e[key]), axis=-1)).T
            ax.imshow(20 * np.log10(spec + 1e-6), origin="lower", aspect="auto", vmin=-80, vmax=20, cmap="magma",
                      extent=(0, len(e[key]) / sample_rate, 0, sample_rate / 2000))
            ax.set_title(key)
            ax.set_xlabel("s")
        axes[0].set_ylabel("kHz")
        fig.tight_layout()
        exp.add_figure(f"val_{i}/spectrograms", fig, step)
        plt.close(fig)


def _frames(x: Any, n: int = 512, hop: int = 128) -> Any:
    import numpy as np

    if len(x) < n:
        x = np.pad(x, (0, n - len(x)))
    idx = np.arange(0, len(x) - n + 1, hop)[:, None] + np.arange(n)[None, :]
    return x[idx] * np.hanning(n)


# --------------------------------------------------------------------------- data wiring
def make_dataloaders(cfg: TrainConfig) -> tuple[DataLoader, DataLoader, Any]:
    """Training loader, the fixed validation loader, and the batch mixer (None with
    ``data.mixer: files``).

    With the batch mixer the training loader yields index batches ``(B,)`` that the module
    mixes on its device (:class:`~gagnet.data.batch_mixing.BatchMixer`); with ``files`` it
    yields mixed batches from loader workers.
    """
    from .data import MixingDataset, ValidationSet, collate, list_audio, split_holdout
    from .data.batch_mixing import build_mixer

    sr = cfg.model_config().sample_rate
    speech = list_audio(cfg.data.speech)
    noise = list_audio(cfg.data.noise)
    speech_train, speech_val = split_holdout(speech, cfg.data.holdout_fraction)
    noise_train, noise_val = split_holdout(noise, cfg.data.holdout_fraction)
    if not speech_val or not noise_val:  # tiny sets: validate on the training files rather than on nothing
        speech_val, noise_val = speech_val or speech_train, noise_val or noise_train
    log.info("speech: %d train / %d held out; noise: %d / %d", len(speech_train), len(speech_val),
             len(noise_train), len(noise_val))
    val_set = ValidationSet(speech_val, noise_val, cfg.data, sample_rate=sr)
    val = DataLoader(val_set, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate, num_workers=0)
    if cfg.data.mixer == "batch":
        mixer = build_mixer(speech_train, noise_train, cfg.data, sr, workers=os.cpu_count() or 1)
        train = DataLoader(StepBatches(cfg.val_every_steps, cfg.batch_size), batch_size=None, num_workers=0)
        return train, val, mixer
    train_set = MixingDataset(speech_train, noise_train, cfg.data, sample_rate=sr)
    workers = cfg.data.num_workers
    train = DataLoader(train_set, batch_size=cfg.batch_size, sampler=StepSampler(cfg.val_every_steps, cfg.batch_size),
                       collate_fn=collate, num_workers=workers, persistent_workers=workers > 0, drop_last=True,
                       pin_memory=torch.cuda.is_available())
    return train, val, None


# --------------------------------------------------------------------------- trainer
def _atomic_checkpoint_io():
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


def _step_log_callback(path: Path, every: int):
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
            _append_row(path.with_name("val_log.csv"), {"step": trainer.global_step, **row})

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


def _budget_schedule_callback(cfg: TrainConfig):
    import lightning as L

    class BudgetedCosine(L.Callback):
        """Sets the rate before every step from :func:`cosine_lr`, with progress the larger of
        ``step / max_steps`` and (with ``max_minutes``) the training time spent over the budget,
        read from Lightning's resumable timer: a run cut short by its time budget still ends
        at the low rate instead of mid-decay.

        The time is rank 0's, broadcast every ``log_every_steps`` steps and held in between,
        so every DDP rank sets the same rate at every step (their own clocks drift apart, and
        so would their weights)."""

        def __init__(self) -> None:
            self._minutes = 0.0
            self._read_at = -1

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            step = trainer.global_step
            progress = step / max(cfg.max_steps, 1)
            if cfg.max_minutes:
                if self._read_at < 0 or step - self._read_at >= cfg.log_every_steps:
                    self._minutes = float(trainer.strategy.broadcast(_training_minutes(trainer), src=0))
                    self._read_at = step
                progress = max(progress, self._minutes / cfg.max_minutes)
            lr = cosine_lr(progress, step, cfg.lr, cfg.min_lr, cfg.warmup_steps)
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = lr

    return BudgetedCosine()


def _validation_clock_callback(cfg: TrainConfig, batches: StepBatches):
    import lightning as L

    class ValidationClock(L.Callback):
        """Ends the loop epoch (so Lightning validates and checkpoints) once
        ``val_every_minutes`` of training time have passed since it began. Rank 0's clock
        decides, broadcast every ``log_every_steps`` steps, so all ranks end at the same step."""

        def __init__(self) -> None:
            self._start = time.monotonic()

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self._start = time.monotonic()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.global_step % cfg.log_every_steps:
                return
            due = time.monotonic() - self._start >= 60.0 * cfg.val_every_minutes
            if trainer.strategy.broadcast(due, src=0):
                batches.stop = True

    return ValidationClock()


def _stop_clock_callback(cfg: TrainConfig):
    import lightning as L

    class StopClock(L.Callback):
        """Stops this invocation after ``stop_after_minutes`` of training time (rank 0's clock,
        checked every ``log_every_steps`` steps)."""

        def __init__(self) -> None:
            self._start = time.monotonic()

        def on_train_start(self, trainer, pl_module) -> None:
            self._start = time.monotonic()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.global_step % cfg.log_every_steps:
                return
            due = time.monotonic() - self._start >= 60.0 * cfg.stop_after_minutes
            if trainer.strategy.broadcast(due, src=0):
                trainer.should_stop = True

    return StopClock()


def _rank_audit_callback(path: Path):
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


def _last_checkpoint_callback(path: Path):
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


def _export_callback(path: Path):
    import lightning as L

    class ExportWeights(L.Callback):
        """Keeps ``model.pt`` (config + network weights of the latest validation, no optimiser)
        and ``model_best.pt`` (those of the lowest ``val/loss`` so far) next to the checkpoints:
        the best weights cost a third of a full checkpoint."""

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
                save_weights(pl_module.model.net, path)
                if better:
                    save_weights(pl_module.model.net, path.with_name("model_best.pt"))

        def on_train_end(self, trainer, pl_module) -> None:
            # a run stopped by max_minutes ends between validations: keep its last steps too
            if trainer.global_rank == 0:
                save_weights(pl_module.model.net, path)

    return ExportWeights()


def save_weights(net: GaGNet, path: Path) -> None:
    """Save ``{"config": ..., "state_dict": ...}``: loadable with ``torch.load(weights_only=True)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"config": net.cfg.to_dict(), "state_dict": net.state_dict()}, tmp)
    os.replace(tmp, path)


_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")


def init_from(net: GaGNet, source: str) -> None:
    """Load the network weights of ``source`` (shipped name, model.pt or checkpoint) into ``net``.

    The sources' norm may differ from ``net``'s (e.g. batch norm fine-tuned from cumulative
    instance norm weights): the per-channel weight and bias carry over, and batch-norm running
    statistics missing from the source start from their defaults. Any other mismatch raises.
    """
    from .pretrained import load_model

    missing, unexpected = net.load_state_dict(load_model(source).net.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith(_NORM_STATS)]
    unexpected = [k for k in unexpected if not k.endswith(_NORM_STATS)]
    if missing or unexpected:
        raise ValueError(f"init_weights {source}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    log.info("initialised from %s", source)


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Run (or resume) training; returns the output folder."""
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import TensorBoardLogger

    out = Path(cfg.out_dir)
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if not resume and last.exists():
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another out_dir")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    L.seed_everything(cfg.seed, workers=True)
    module = make_module(cfg)
    if cfg.init_weights and not (resume and last.exists()):
        init_from(module.model.net, cfg.init_weights)
    log.info("model %s: %s parameters", cfg.model, f"{count_parameters(module.model):,}")
    train_dl, val_dl, mixer = make_dataloaders(cfg)
    module.mixer = mixer
    if cfg.val_every_minutes and mixer is None:
        raise ValueError("val_every_minutes needs data.mixer: batch")
    cuda = torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda")
    if cuda:  # fixed input shapes: let cuDNN pick its fastest kernels; TF32 for float32 work
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    precision = cfg.precision if cfg.precision != "auto" else ("bf16-mixed" if cuda else "32-true")
    trainer = L.Trainer(
        max_steps=cfg.max_steps,
        max_time=datetime.timedelta(minutes=cfg.max_minutes) if cfg.max_minutes else None,
        max_epochs=-1,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=precision,
        gradient_clip_val=cfg.grad_clip,
        logger=TensorBoardLogger(str(out), name="tb", version=""),
        callbacks=[
            _last_checkpoint_callback(last),
            LearningRateMonitor(logging_interval="step"),
            _step_log_callback(out / "train_log.csv", cfg.log_every_steps),
            _export_callback(out / "model.pt"),
            _rank_audit_callback(out / "ranks"),
        ] + ([_budget_schedule_callback(cfg)] if cfg.lr_schedule == "cosine" else [])
          + ([_validation_clock_callback(cfg, train_dl.dataset)] if cfg.val_every_minutes else [])
          + ([_stop_clock_callback(cfg)] if cfg.stop_after_minutes else []),
        plugins=[_atomic_checkpoint_io()],
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        log_every_n_steps=cfg.log_every_steps,
        enable_progress_bar=True,
    )
    (train_dl.dataset if mixer is not None else train_dl.sampler).step_fn = lambda: trainer.global_step
    if cfg.init_weights and not (resume and last.exists()):
        # step 0 of the validation curve: the weights this run starts from
        trainer.validate(module, val_dl, verbose=False)
    try:
        trainer.fit(module, train_dl, val_dl, ckpt_path=str(last) if resume and last.exists() else None)
        export = next(c for c in trainer.callbacks if type(c).__name__ == "ExportWeights")
        if export.validated_at != trainer.global_step:  # stopped by a clock between validations
            trainer.validate(module, val_dl, verbose=False)
    finally:
        module.finish_scores()  # the background scores of the last validations
    return out


# --------------------------------------------------------------------------- CLI
def cmd_train(args: argparse.Namespace) -> int:
    try:
        cfg = load_train_config(args.config, args.overrides)
        train(cfg, resume=args.resume)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"gagnet train: {e}", file=sys.stderr)
        return 2
    return 0


def plot_curves(run_dir: str | Path, out_png: str | Path) -> Path:
    """Training loss (smoothed) and validation loss / PESQ of a run folder, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    run = Path(run_dir)
    train_rows = [r for r in csv.DictReader((run / "train_log.csv").open()) if r.get("loss")]
    steps = {}
    for r in train_rows:  # a resumed step replaces the one a crash cut short
        try:
            steps[int(r["step"])] = float(r["loss"])
        except ValueError:
            continue
    x = np.array(sorted(steps))
    y = np.array([steps[s] for s in x])
    k = max(1, len(y) // 50)
    smooth = np.convolve(y, np.ones(k) / k, mode="valid")
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    ax[0].plot(x, y, color="0.8", lw=0.6, label="train (logged rows)")
    ax[0].plot(x[k - 1:], smooth, color="C0", label=f"train (mean of {k} rows)")
    vpath = run / "val_log.csv"
    metric_label = "WB-PESQ"
    if vpath.exists():
        val = list(csv.DictReader(vpath.open()))
        vx = [int(r["step"]) for r in val]
        ax[0].plot(vx, [float(r["val/loss"]) for r in val], "o-", color="C3", label="validation")
        # scores: val_scores.csv (computed in the background) or, in older runs, val_log.csv
        spath = run / "val_scores.csv"
        scores = [{f"val/{k}" if k != "step" else k: v for k, v in r.items()} for r in csv.DictReader(spath.open())] \
            if spath.exists() else val
        scores = sorted(scores, key=lambda r: int(r["step"]))
        sx = [int(r["step"]) for r in scores]
        # WB-PESQ when the run could compute it, else STOI, else SI-SDR
        keys = scores[0].keys() if scores else ()
        metric, metric_label = next(((m, lab) for m, lab in (("val/pesq_wb", "WB-PESQ"), ("val/stoi", "STOI (%)"))
                                     if m in keys), ("val/si_sdr", "SI-SDR (dB)"))
        if metric == "val/si_sdr":
            scores, sx = val, vx
        if scores and metric in scores[0]:
            ax[1].plot(sx, [float(r[metric]) for r in scores], "o-", color="C2", label="enhanced")
            if scores[0].get(f"{metric}_noisy"):
                ax[1].plot(sx, [float(r[f"{metric}_noisy"]) for r in scores], "--", color="0.5", label="noisy")
            ax[1].legend()
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("loss")
    ax[0].set_yscale("log")
    ax[0].legend()
    ax[1].set_xlabel("step")
    ax[1].set_ylabel(f"{metric_label} (validation clips)")
    fig.suptitle(f"training run {run.name}")
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def cmd_curves(args: argparse.Namespace) -> int:
    try:
        print(plot_curves(args.run, args.output))
    except FileNotFoundError as e:
        print(f"gagnet curves: {e}", file=sys.stderr)
        return 2
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train GaGNet from a YAML config (Lightning)")
    p.add_argument("--config", required=True, help="YAML file, or a packaged config: paper, causal, smoke, shared")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoints/last.ckpt")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. batch_size=4 data.snr_db=[0,10]")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("curves", help="plot the loss and validation curves of a training run")
    p.add_argument("run", help="the run's out_dir")
    p.add_argument("-o", "--output", default="curves.png", help="PNG to write")
    p.set_defaults(func=cmd_curves)
