"""Training: the Lightning module, the data pipeline wiring and the ``gagnet train`` command.

One epoch of the loop is ``val_every_steps`` optimiser steps (or ``val_every_minutes`` of
them) followed by validation and a checkpoint. Training mixtures are a pure function of
(seed, global index) and step ``k`` trains on indices that depend on ``k`` alone
(:mod:`gagnet.data.sampling`), so a resumed run sees exactly the data an uninterrupted run
would have seen. With the batch mixer the loader yields only indices; the module mixes them
on its device (:meth:`on_before_batch_transfer`). The callbacks live in :mod:`gagnet.callbacks`.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import DataLoader

from .config import TrainConfig
from .dsp import frame_mask
from .loss import gagnet_loss, speech_anchor
from .model.gagnet import GaGNet, count_parameters
from .model.wave import WaveGaGNet
from . import callbacks
from .compile_cache import load_compile_cache
from .callbacks import append_row, cosine_lr, save_weights  # noqa: F401 (public here too)
from .data.sampling import StepBatches, StepSampler  # noqa: F401
from .val_scoring import BackgroundScorer, batch_si_sdr
from .weight_average import WeightAverage

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


def training_loss(net: GaGNet, noisy: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor,
                  residual_weight: float = 0.0, anchor: GaGNet | None = None,
                  anchor_weight: float = 0.0) -> torch.Tensor:
    """The loss a training step minimises, on (B, 2, F, T) compressed spectra and a (B, T) mask:
    the paper's, plus ``residual_weight`` times :func:`gagnet.loss.residual_noise` and, with an
    ``anchor`` network (frozen, in eval mode), ``anchor_weight`` times
    :func:`gagnet.loss.speech_anchor` of the last stages' estimates."""
    estimates = net(noisy)
    loss = gagnet_loss(estimates, clean, mask, noisy, residual_weight)
    if anchor is not None and anchor_weight > 0:
        with torch.no_grad():
            reference = anchor(noisy)[-1]
        loss = loss + anchor_weight * speech_anchor(estimates[-1], reference, clean, noisy, mask)
    return loss


def compile_loss(net: GaGNet, backend: str = "inductor", residual_weight: float = 0.0,
                 anchor: GaGNet | None = None, anchor_weight: float = 0.0) -> Callable[..., torch.Tensor]:
    """:func:`training_loss` of ``net`` as ``(noisy, clean, mask) -> loss``, under ``torch.compile``
    (inductor).

    The same function of the same parameters (the module itself is untouched, so its state
    dict and the eager path are unchanged). Inductor fuses each norm, PReLU and gate with its
    neighbours, runs the 2-D convolutions channels-last and fuses the loss into the last
    stages, which cuts the memory traffic of the forward and backward passes. Shapes are
    compiled statically (a training run sees one batch shape); the first call compiles
    (minutes on a small CPU, seconds from inductor's on-disk cache). ``backend`` is
    ``torch.compile``'s (``aot_eager`` traces the same graphs without generating code).
    """

    def loss(noisy: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return training_loss(net, noisy, clean, mask, residual_weight, anchor, anchor_weight)

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


def freeze_all_but(net: torch.nn.Module, patterns: Sequence[str]) -> int:
    """Freeze every parameter of ``net`` whose name matches none of the glob ``patterns``
    (``fnmatch``, e.g. ``"stages.*.gaze.out_*"``). Returns the number of values left to train;
    a pattern that matches nothing raises ``ValueError`` (a typo would silently train nothing)."""
    from fnmatch import fnmatchcase

    names = [name for name, _ in net.named_parameters()]
    unused = [pat for pat in patterns if not any(fnmatchcase(name, pat) for name in names)]
    if unused:
        raise ValueError(f"trainable: {unused} match no parameter (names look like {names[0]!r})")
    kept = 0
    for name, p in net.named_parameters():
        p.requires_grad_(any(fnmatchcase(name, pat) for pat in patterns))
        kept += p.numel() if p.requires_grad else 0
    return kept


def anchor_network(cfg: TrainConfig) -> GaGNet:
    """The frozen network ``anchor_weight`` pulls towards: ``cfg.init_weights``, in eval mode.

    Loaded from ``init_weights`` itself (not from the run's current weights), so that a resumed
    run keeps the same anchor (``TrainConfig`` refuses ``anchor_weight`` without it)."""
    net = GaGNet(cfg.model_config())
    init_from(net, cfg.init_weights)
    return net.eval().requires_grad_(False)


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
            # the start network that anchor_weight pulls towards (frozen; in a tuple, so that it
            # is no submodule either); it follows the module to its device in on_fit_start
            self._anchor = (anchor_network(self.cfg),) if self.cfg.anchor_weight > 0 else ()
            self._compiled_loss = (compile_loss(self.model.net, residual_weight=self.cfg.residual_noise_weight,
                                                anchor=self._anchor[0] if self._anchor else None,
                                                anchor_weight=self.cfg.anchor_weight)
                                   if self.cfg.compile else None)
            self._val_examples: list[dict[str, Any]] = []
            self.mixer = None  # BatchMixer, set by train(); mixes index batches on the device
            self.skipped = torch.zeros(())  # optimiser steps skipped for non-finite gradients
            self._scorer = None
            self._val_sdr: list[torch.Tensor] = []
            self._val_sdr_noisy_rows: list[torch.Tensor] = []
            self._val_sdr_noisy: float | None = None
            self._noisy_sent = False
            # validation, model.pt and model_best.pt use the average when ema_decay is set
            self.ema = WeightAverage(self.model.net, self.cfg.ema_decay) if self.cfg.ema_decay else None
            if self.cfg.trainable:
                freeze_all_but(self.model.net, self.cfg.trainable)

        def export_state(self) -> dict[str, torch.Tensor]:
            """The weights ``model.pt`` stores: the moving average when there is one."""
            return self.ema.state_dict() if self.ema is not None else self.model.net.state_dict()

        def _spectra(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            """Compressed noisy and clean spectra of a batch, and its frame mask."""
            noisy = self.model.analyze(batch["noisy"])
            clean = self.model.analyze(batch["clean"])
            return noisy, clean, frame_mask(batch["lengths"], self.model.cfg, noisy.shape[-1])

        def _loss(self, batch: dict[str, torch.Tensor], compiled: bool = False) -> torch.Tensor:
            noisy, clean, mask = self._spectra(batch)
            if compiled and self._compiled_loss is not None:
                return self._compiled_loss(noisy, clean, mask)
            return training_loss(self.model.net, noisy, clean, mask, self.cfg.residual_noise_weight,
                                 self._anchor[0] if self._anchor else None, self.cfg.anchor_weight)

        def on_fit_start(self) -> None:
            if self.mixer is not None:
                self.mixer.to(self.device)
            for net in self._anchor:
                net.to(self.device)
            self.skipped = self.skipped.to(self.device)
            if self.ema is not None:
                self.ema.start()  # from the weights the fit starts with, unless a checkpoint restored it

        def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
            if isinstance(batch, torch.Tensor):  # global mixture indices (on the host): mixed on the device
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

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self.ema is not None:
                self.ema.update()

        def on_validation_epoch_start(self) -> None:
            if self.ema is not None:  # validate the average; the raw weights return at the epoch's end
                self.ema.swap_in()

        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
            if getattr(self.trainer.precision_plugin, "scaler", None) is not None:  # fp16: the scaler skips
                return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
            found = skip_nonfinite_step(optimizer, list(self.parameters()), gradient_clip_val)
            self.skipped = self.skipped.to(found.device) + found

        def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            checkpoint["gagnet"] = {"world_size": self.trainer.world_size, "batch_size": self.cfg.batch_size,
                                    "skipped_steps": float(self.skipped)}
            if self.ema is not None:
                checkpoint["gagnet"]["weight_average"] = self.ema.checkpoint()

        def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            meta = checkpoint.get("gagnet", {})
            self.skipped = torch.tensor(float(meta.get("skipped_steps", 0.0)))
            if self.ema is not None and "weight_average" in meta:
                self.ema.load_checkpoint(meta["weight_average"])
            then = (meta.get("world_size"), meta.get("batch_size"))
            now = (self.trainer.world_size, self.cfg.batch_size)
            if None not in then and then != now:
                log.warning("resuming a run trained on %d process(es) x batch %d with %d x %d: from here on the "
                            "mixtures differ from those of an unbroken run (step k now reads indices from "
                            "k x %d); keep world size and batch size to resume exactly",
                            then[0], then[1], now[0], now[1], now[0] * now[1])

        def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
            noisy, clean, mask = self._spectra(batch)
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
            if self.ema is not None:
                self.ema.swap_out()
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
                append_row(path, {"step": step, **scores})

        def finish_scores(self) -> None:
            if self._scorer is not None:
                self.write_scores(self._scorer.collect(wait=True))
                self._scorer.close()
                self._scorer = None

        def configure_optimizers(self):
            # fused: one kernel for all parameters, and it skips a step when told of non-finite gradients
            params = [p for p in self.parameters() if p.requires_grad]
            opt = torch.optim.Adam(params, lr=self.cfg.lr, fused=True)
            if self.cfg.lr_schedule == "cosine":  # set per step by the BudgetedCosine callback
                return opt
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                # torch counts the bad validations it tolerates; ours counts the ones that trigger
                opt, mode="min", factor=self.cfg.plateau_factor, patience=self.cfg.plateau_patience - 1,
                min_lr=self.cfg.min_lr,
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/loss", "interval": "epoch"}}

    return GaGNetModule(cfg.to_dict())


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
    from .data import MixingDataset, ValidationSet, collate, split_sources
    from .data.batch_mixing import build_mixer

    sr = cfg.model_config().sample_rate
    (speech_train, speech_val), (noise_train, noise_val) = split_sources(cfg.data)
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
    total, trained = sum(p.numel() for p in module.model.parameters()), count_parameters(module.model)
    log.info("model %s: %s parameters%s", cfg.model, f"{total:,}",
             "" if trained == total else f", {trained:,} of them trained (trainable: {', '.join(cfg.trainable)})")
    train_dl, val_dl, mixer = make_dataloaders(cfg)
    module.mixer = mixer
    if cfg.val_every_minutes and mixer is None:
        raise ValueError("val_every_minutes needs data.mixer: batch")
    cuda = torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda")
    if cuda:  # fixed input shapes: let cuDNN pick its fastest kernels; TF32 for float32 work
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    precision = cfg.precision if cfg.precision != "auto" else ("bf16-mixed" if cuda else "32-true")
    if cfg.compile and cfg.compile_cache:  # before anything compiles (docs/training.md (e))
        load_compile_cache(cfg.compile_cache)
    export = callbacks.export_callback(out / "model.pt")  # its last validated step decides a final validation
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
            callbacks.last_checkpoint_callback(last),
            LearningRateMonitor(logging_interval="step"),
            callbacks.step_log_callback(out / "train_log.csv", cfg.log_every_steps),
            export,
            callbacks.rank_audit_callback(out / "ranks"),
        ] + ([callbacks.budget_schedule_callback(cfg)] if cfg.lr_schedule == "cosine" else [])
          + ([callbacks.validation_clock_callback(cfg, train_dl.dataset)] if cfg.val_every_minutes else [])
          + ([callbacks.stop_clock_callback(cfg)] if cfg.stop_after_minutes else [])
          + ([callbacks.compile_cache_callback(Path(cfg.compile_cache))] if cfg.compile and cfg.compile_cache else []),
        plugins=[callbacks.atomic_checkpoint_io()],
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        log_every_n_steps=cfg.log_every_steps,
        enable_checkpointing=False,  # our own: LastCheckpoint and ExportWeights
        enable_progress_bar=True,
    )
    (train_dl.dataset if mixer is not None else train_dl.sampler).step_fn = lambda: trainer.global_step
    if cfg.init_weights and not (resume and last.exists()):
        # step 0 of the validation curve: the weights this run starts from
        trainer.validate(module, val_dl, verbose=False)
    try:
        trainer.fit(module, train_dl, val_dl, ckpt_path=str(last) if resume and last.exists() else None)
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
    p.add_argument("--config", required=True, help="YAML file, or a packaged config (src/gagnet/configs/): paper, causal, shared, smoke, "
                   "augmented, default-model, lease, causal-v2-stage1..4, ...")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoints/last.ckpt")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. batch_size=4 data.snr_db=[0,10]")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("curves", help="plot the loss and validation curves of a training run")
    p.add_argument("run", help="the run's out_dir")
    p.add_argument("-o", "--output", default="curves.png", help="PNG to write")
    p.set_defaults(func=cmd_curves)
