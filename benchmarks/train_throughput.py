"""Training throughput (audio-seconds per second) of this project's GaGNet and the authors' model.

Same batch (4 x 3 s of 16 kHz noise-like input), same loss, Adam, same machine, same run.
The authors' model comes from their ``GaGNet.py`` when ``--official PATH`` is given (it
is not shipped here); both use the paper configuration (instance norm). With ``--compile``
this project's network is also timed compiled, with its loss (``torch.compile``, as
``TrainConfig.compile`` trains it: :func:`gagnet.train.compile_loss`): same initial weights,
same math; the compilation happens in an untimed first step whose duration, less one step,
is reported as ``compile_s``. The models take turns step by step, so that a change of load
hits all of them alike, and each row is the median of its steps. Not a test.

    python benchmarks/train_throughput.py --official /path/to/GaGNet.py [--compile] [--steps 5] [--threads 2]

End to end (``--e2e CONFIG [key=value ...]``): runs ``gagnet train`` on that config's real data
for ``--minutes``, reads the run's ``train_log.csv`` and reports its audio-s/s after the first
logged row (compilation excluded, validation included), then, in the same process, the
pure-compute ceiling: the same network, batch, precision and compilation on random waves
already on the device (no data path, no Lightning), and the ratio of the two.

    python benchmarks/train_throughput.py --e2e lease --minutes 3 --device cuda
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import time

import torch

from gagnet import WaveGaGNet, get_config
from gagnet.compat import to_official
from gagnet.dsp import frame_mask
from gagnet.loss import gagnet_loss


def _official(path: str) -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location("official_gagnet", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.GaGNet(cin=2, k1=(2, 3), k2=(1, 3), c=64, kd1=3, cd1=64, d_feat=256, p=2, q=3, dilas=[1, 2, 5, 9],
                      fft_num=320, is_u2=True, is_causal=True, is_squeezed=False, acti_type="sigmoid",
                      intra_connect="cat", norm_type="IN")


class _Trainer:
    """One optimiser step of a model on the fixed batch: the loss, Adam and clipping of training.
    ``forward`` maps the noisy spectrum to the stage estimates; ``loss_fn`` (noisy, clean, mask)
    -> loss replaces it and the loss where given (this project's compiled training loss)."""

    def __init__(self, forward, params, noisy, clean, lengths, cfg: str, device: str, loss_fn=None,
                 bf16: bool = False) -> None:
        self.forward, self.params, self.device, self.bf16 = forward, params, device, bf16
        self.loss_fn = loss_fn or (lambda n, c, mask: gagnet_loss(self.forward(n), c, mask))
        self.opt = torch.optim.Adam(params, lr=5e-4, fused=True)  # as gagnet train
        self.wave = WaveGaGNet(get_config(cfg))
        self.batch = noisy, clean, lengths

    def step(self) -> tuple[float, float]:
        """One step; returns (seconds, loss)."""
        noisy, clean, lengths = self.batch
        t = time.perf_counter()
        n, c = self.wave.analyze(noisy), self.wave.analyze(clean)
        with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.loss_fn(n, c, frame_mask(lengths, self.wave.cfg, n.shape[-1]))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 5.0)
        self.opt.step()
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t, float(loss.detach())


def _end_to_end(args: argparse.Namespace) -> dict:
    """``gagnet train`` on a config's data for ``args.minutes``, then the compute ceiling."""
    import tempfile

    from gagnet.callbacks import log_throughput
    from gagnet.train import compile_loss, load_train_config, train

    out = tempfile.mkdtemp(prefix="gagnet-e2e-")
    cfg = load_train_config(args.e2e, [*args.overrides, f"stop_after_minutes={args.minutes}",
                                       f"max_minutes={args.minutes}", f"out_dir={out}", f"threads={args.threads}"])
    train(cfg)
    audio = cfg.batch_size * cfg.data.segment_seconds
    t = log_throughput(f"{out}/train_log.csv", audio)
    e2e = t["audio_s_per_s"]
    # the ceiling: the same network, batch, precision and compilation on waves already on the device
    n = int(cfg.data.segment_seconds * 16000)
    noisy = 0.1 * torch.randn(cfg.batch_size, n, device=args.device)
    clean = 0.05 * torch.randn(cfg.batch_size, n, device=args.device)
    lengths = torch.full((cfg.batch_size,), n, device=args.device)
    net = WaveGaGNet(cfg.model_config()).net.to(args.device).train()
    bf16 = "bf16" in cfg.precision or (cfg.precision == "auto" and args.device == "cuda")
    tr = _Trainer(net, list(net.parameters()), noisy, clean, lengths, cfg.model, args.device,
                  compile_loss(net) if cfg.compile else None, bf16=bf16)
    tr.wave = WaveGaGNet(cfg.model_config())
    tr.step()
    secs = statistics.median(tr.step()[0] for _ in range(args.steps))
    ceiling = audio / secs
    return {"config": args.e2e, "overrides": args.overrides, "batch": f"{cfg.batch_size} x {cfg.data.segment_seconds} s",
            "precision": cfg.precision, "compile": cfg.compile, "device": _device_name(args.device),
            "end_to_end_audio_s_per_s": round(e2e, 1), "end_to_end_steps": f"{t['from_step']}..{t['to_step']} in {t['seconds']:.1f} s",
            "ceiling_audio_s_per_s": round(ceiling, 1), "ratio": round(e2e / ceiling, 3), "run": out}


def _device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return platform.processor() or "cpu"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--e2e", metavar="CONFIG", help="end-to-end mode: gagnet train on this config, then the ceiling")
    ap.add_argument("--minutes", type=float, default=3.0, help="end-to-end mode: minutes of training")
    ap.add_argument("overrides", nargs="*", help="end-to-end mode: config overrides key=value")
    ap.add_argument("--official", help="path to the authors' GaGNet.py")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per model (after one untimed step)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compile", action="store_true", help="also time this project's network under torch.compile")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.e2e:
        print(json.dumps(_end_to_end(args), indent=2))
        return
    n = int(args.seconds * 16000)
    noisy = (0.1 * torch.randn(args.batch, n)).to(args.device)
    clean = (0.05 * torch.randn(args.batch, n)).to(args.device)
    lengths = torch.full((args.batch,), n, device=args.device)
    audio = args.batch * args.seconds
    ours = WaveGaGNet("paper").net.to(args.device)
    initial = {k: v.clone() for k, v in ours.state_dict().items()}
    candidates = [("gagnet (this project), paper", ours, ours, None)]
    if args.compile:
        from gagnet.train import compile_loss

        # a second copy with the same initial weights, so that every row trains from the same start
        twin = WaveGaGNet("paper").net.to(args.device)
        twin.load_state_dict(initial)
        candidates.append(("gagnet (this project), paper, torch.compile", twin, twin, compile_loss(twin)))
    if args.official:
        ref = _official(args.official).to(args.device)
        ref.load_state_dict(to_official(initial))
        # the authors' model takes (B, 2, T, F) and returns (B, 2, F, T) estimates
        candidates.append(("authors' GaGNet.py, paper", ref, lambda x: ref(x.transpose(2, 3).contiguous()), None))
    trainers, rows = [], []
    for name, module, fwd, loss_fn in candidates:
        module.train()
        trainers.append(_Trainer(fwd, list(module.parameters()), noisy, clean, lengths, "paper", args.device, loss_fn))
        warm, _ = trainers[-1].step()  # untimed: allocator warm-up, and compilation for a compiled network
        rows.append({"model": name, "first_step_s": warm})
    # the models take turns step by step, so that a change of load on the machine hits all of them alike
    times: list[list[float]] = [[] for _ in candidates]
    losses = [0.0] * len(candidates)
    for _ in range(args.steps):
        for i, tr in enumerate(trainers):
            sec, losses[i] = tr.step()
            times[i].append(sec)
    for row, ts, loss in zip(rows, times, losses):
        sec = statistics.median(ts)
        warm = row.pop("first_step_s")
        row.update({"s_per_step": round(sec, 4), "audio_s_per_s": round(audio / sec, 2), "loss_after": round(loss, 6)})
        if "torch.compile" in row["model"]:
            row["compile_s"] = round(max(warm - sec, 0.0), 1)  # the untimed first step, less one step
    info = {"device": _device_name(args.device),
            "threads": torch.get_num_threads(), "batch": f"{args.batch} x {args.seconds} s",
            "timing": f"median of {args.steps} interleaved steps per model", "rows": rows}
    authors = [r for r in rows if r["model"].startswith("authors")]
    if authors:  # this project's rows over the authors' model
        ref_rate = authors[0]["audio_s_per_s"]
        info["speedup"] = round(rows[0]["audio_s_per_s"] / ref_rate, 3)
        if args.compile:
            info["speedup_compiled"] = round(rows[1]["audio_s_per_s"] / ref_rate, 3)
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
