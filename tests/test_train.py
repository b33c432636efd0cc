"""Training: the smoke config learns, and a SIGKILLed run resumes exactly."""
import csv
import fnmatch
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("lightning")

import torch  # noqa: E402

from gagnet import GaGNet, get_config  # noqa: E402
from gagnet.train import CONFIG_DIR, StepSampler, cosine_lr, load_train_config, save_weights  # noqa: E402


def _make_corpus(root: Path) -> tuple[Path, Path]:
    """A few harmonic 'voices' with syllable-like envelopes, and a few noises."""
    rng = np.random.default_rng(0)
    sr = 16000
    speech, noise = root / "speech", root / "noise"
    speech.mkdir(parents=True)
    noise.mkdir(parents=True)
    t = np.arange(int(1.5 * sr)) / sr
    for i in range(6):
        f0 = 110 + 25 * i
        voice = sum(np.sin(2 * np.pi * f0 * k * t * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))) / k for k in range(1, 12))
        env = np.clip(np.sin(2 * np.pi * (2 + 0.3 * i) * t), 0, None) ** 2
        sf.write(speech / f"s{i}.wav", (0.2 * voice * env).astype(np.float32), sr, subtype="PCM_16")
    for i in range(3):
        n = rng.standard_normal(2 * sr)
        if i == 1:
            n = np.cumsum(n)
            n -= np.convolve(n, np.ones(64) / 64, mode="same")
        sf.write(noise / f"n{i}.wav", (0.1 * n / np.abs(n).max()).astype(np.float32), sr, subtype="PCM_16")
    return speech, noise


def _overrides(root: Path, out: str, **extra) -> list[str]:
    speech, noise = root / "speech", root / "noise"
    items = {"data.speech": f"[{speech}]", "data.noise": f"[{noise}]", "out_dir": str(root / out), "threads": 1}
    items.update(extra)
    return [f"{k}={v}" for k, v in items.items()]


def _losses(path: Path) -> dict[int, float]:
    out = {}
    for r in csv.DictReader(path.open()):
        try:  # a row cut by SIGKILL is skipped; a resumed step overwrites the killed one
            out[int(r["step"])] = float(r["loss"])
        except (TypeError, ValueError):
            continue
    return out


def _run(args: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "gagnet.cli", "train", "--config", "smoke", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, **kw)


def test_step_sampler_walks_global_indices():
    s = StepSampler(3, 2)
    assert list(s) == [0, 1, 2, 3, 4, 5]
    s.step_fn = lambda: 5  # resumed after 5 steps of 2 mixtures
    assert list(s) == [10, 11, 12, 13, 14, 15]
    s.world, s.rank = 2, 1  # second of two DDP ranks
    assert list(s) == [21, 23, 25, 27, 29, 31]


def test_config_overrides_and_errors(tmp_path):
    cfg = load_train_config("smoke", ["data.snr_db=[1, 2]", "batch_size=3"])
    assert cfg.data.snr_db == (1, 2) and cfg.batch_size == 3 and cfg.model == "tiny"
    assert load_train_config("smoke", ["lr=1e-4", "max_minutes=2e1"]).lr == 1e-4  # YAML reads 1e-4 as text
    with pytest.raises(ValueError):
        load_train_config("smoke", ["lr=fast"])
    with pytest.raises(ValueError):
        load_train_config("smoke", ["nonsense=1"])
    with pytest.raises(FileNotFoundError):
        load_train_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("name", sorted(f.stem for f in CONFIG_DIR.glob("*.yaml")))
def test_every_packaged_recipe_loads(name):
    """A typo in a shipped recipe (an unknown key, a bad value) fails here, not an hour into a run;
    a recipe that continues a shipped model names one that ships."""
    from gagnet.config import get_config
    from gagnet.pretrained import ModelError, resolve

    cfg = load_train_config(name)
    get_config(cfg.model)  # raises on a network name that no preset has
    assert cfg.batch_size > 0 and cfg.lr > 0
    if cfg.init_weights:
        try:
            resolve(cfg.init_weights)
        except ModelError as e:  # a run's own weights (local/runs/...) need not exist here; a name must ship
            assert "no such model file" in str(e), f"{name}: {e}"


def test_smoke_training_loss_falls(tmp_path):
    _make_corpus(tmp_path)
    p = _run(_overrides(tmp_path, "smoke"))
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-3000:]
    losses = _losses(tmp_path / "smoke" / "train_log.csv")
    steps = sorted(losses)
    assert steps[-1] == 12
    first = np.mean([losses[s] for s in steps[:3]])
    last = np.mean([losses[s] for s in steps[-3:]])
    assert last < 0.8 * first, (first, last)
    out = tmp_path / "smoke"
    # one full checkpoint (for resuming); the best weights alone
    assert [f.name for f in (out / "checkpoints").iterdir()] == ["last.ckpt"]
    assert (out / "model.pt").exists() and (out / "model_best.pt").exists() and (out / "val_log.csv").exists()
    assert any((out / "tb").glob("events.out.tfevents.*"))
    val = list(csv.DictReader((out / "val_log.csv").open()))
    assert [r["step"] for r in val] == ["4", "8", "12"] and all(float(r["val/si_sdr_noisy"]) > -50 for r in val)
    # the background scores of every validation, noisy baseline included, came back by the end
    scores = list(csv.DictReader((out / "val_scores.csv").open()))
    assert sorted(int(r["step"]) for r in scores) == [4, 8, 12]
    assert all(0 < float(r["stoi"]) <= 100 and 0 < float(r["stoi_noisy"]) <= 100 for r in scores)

    # a run that starts from weights validates them first: its curve begins where the last ended
    # (and the per-mixture loader path trains too)
    p = _run(_overrides(tmp_path, "stage2", init_weights=out / "model.pt", max_steps=4, **{"data.mixer": "files"}))
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-3000:]
    before = list(csv.DictReader((out / "val_log.csv").open()))
    after = list(csv.DictReader((tmp_path / "stage2" / "val_log.csv").open()))
    assert before[-1]["step"] == "12" and [r["step"] for r in after] == ["0", "4"]
    assert float(after[0]["val/loss"]) == pytest.approx(float(before[-1]["val/loss"]), rel=1e-4)


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    _make_corpus(tmp_path)
    extra = {"max_steps": 8, "val_every_steps": 2}
    ref = _run(_overrides(tmp_path, "ref", **extra))
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err.decode()[-3000:]

    victim = _run(_overrides(tmp_path, "cut", **extra))
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert victim.poll() is None, "the run finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_log = _losses(tmp_path / "cut" / "train_log.csv")
    assert max(killed_log) < 8

    resumed = _run(["--resume", *_overrides(tmp_path, "cut", **extra)])
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()[-3000:]
    a = _losses(tmp_path / "ref" / "train_log.csv")
    b = _losses(tmp_path / "cut" / "train_log.csv")
    assert sorted(a) == sorted(b) == list(range(1, 9))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-4, abs=1e-6), step

    # a run split by a clock (a time-limited machine), mid-epoch, then resumed: the same run again
    first = _run(_overrides(tmp_path, "split", stop_after_minutes=1e-6, **extra))
    assert first.wait(timeout=300) == 0
    assert sorted(_losses(tmp_path / "split" / "train_log.csv")) == [1]
    second = _run(["--resume", *_overrides(tmp_path, "split", **extra)])
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err.decode()[-3000:]
    c = _losses(tmp_path / "split" / "train_log.csv")
    assert sorted(c) == list(range(1, 9))
    for step in a:
        assert c[step] == pytest.approx(a[step], rel=1e-4, abs=1e-6), step


def test_existing_run_needs_resume(tmp_path):
    _make_corpus(tmp_path)
    (tmp_path / "again" / "checkpoints").mkdir(parents=True)
    (tmp_path / "again" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    p = _run(_overrides(tmp_path, "again"))
    _, err = p.communicate(timeout=120)
    assert p.returncode != 0 and b"--resume" in err


def test_cosine_lr_warms_up_then_decays_to_floor():
    peak, floor = 1e-3, 1e-5
    warm = [cosine_lr(0.0, s, peak, floor, 10) for s in range(10)]
    assert warm == sorted(warm) and warm[0] == pytest.approx(peak / 10) and warm[-1] == pytest.approx(peak)
    assert cosine_lr(0.5, 100, peak, floor, 10) == pytest.approx((peak + floor) / 2)
    assert cosine_lr(1.0, 100, peak, floor, 10) == pytest.approx(floor)
    assert cosine_lr(3.0, 100, peak, floor, 10) == pytest.approx(floor)  # past the budget: stays at the floor
    with pytest.raises(ValueError):
        load_train_config("smoke", ["lr_schedule=linear"])


def test_time_budget_stops_run_and_ends_cosine_at_floor(tmp_path):
    _make_corpus(tmp_path)
    extra = {"max_steps": 100000, "val_every_steps": 5, "lr_schedule": "cosine", "warmup_steps": 2,
             "max_minutes": 0.1, "min_lr": 1e-6}
    p = _run(_overrides(tmp_path, "budget", **extra))
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-3000:]
    rows = list(csv.DictReader((tmp_path / "budget" / "train_log.csv").open()))
    steps, lrs = [int(r["step"]) for r in rows], [float(r["lr"]) for r in rows]
    assert 3 < steps[-1] < 100000  # stopped by the clock, not by max_steps
    assert lrs[1] > lrs[0]  # warm-up
    assert max(lrs) > 1e-3 and lrs[-1] < 0.2 * max(lrs)  # decayed by the time budget
    assert (tmp_path / "budget" / "model.pt").exists()


def test_time_budget_cosine_counts_from_the_end_of_the_compiling_step(monkeypatch):
    """Minutes spent before step 1 (compilation) do not eat the schedule; a resumed run keeps
    the start and the budget, even when given another max_minutes."""
    from types import SimpleNamespace

    from gagnet import callbacks

    def config(minutes):
        return load_train_config("smoke", ["lr_schedule=cosine", f"max_minutes={minutes}", "max_steps=1000000",
                                           "warmup_steps=1", "lr=1e-3", "min_lr=1e-5", "log_every_steps=25"])

    clock = {"minutes": 0.0}
    monkeypatch.setattr(callbacks, "_training_minutes", lambda trainer: clock["minutes"])
    group = {"lr": 0.0}
    trainer = SimpleNamespace(global_step=0, strategy=SimpleNamespace(broadcast=lambda v, src=0: v),
                              optimizers=[SimpleNamespace(param_groups=[group])])

    def lr_at(cb, step, minutes):
        trainer.global_step, clock["minutes"] = step, minutes
        cb.on_train_batch_start(trainer, None, None, 0)
        return group["lr"]

    cb = callbacks.budget_schedule_callback(config(10))
    lr_at(cb, 0, 0.0)
    assert lr_at(cb, 1, 4.0) == pytest.approx(1e-3)  # 4 minutes of compiling: still the peak
    assert lr_at(cb, 26, 7.0) == pytest.approx(cosine_lr(0.5, 26, 1e-3, 1e-5, 1))  # half of the 6 minutes left
    resumed = callbacks.budget_schedule_callback(config(12))  # a second call given more minutes
    resumed.load_state_dict(cb.state_dict())
    assert lr_at(resumed, 50, 7.0) == pytest.approx(cosine_lr(0.5, 50, 1e-3, 1e-5, 1))  # no jump
    assert lr_at(resumed, 80, 10.0) == pytest.approx(1e-5)
    assert lr_at(resumed, 110, 11.5) == pytest.approx(1e-5)  # past the saved budget: the floor
    old = callbacks.budget_schedule_callback(config(10))  # a checkpoint without them: from 0 over the new budget
    old.load_state_dict({})
    assert lr_at(old, 50, 5.0) == pytest.approx(cosine_lr(0.5, 50, 1e-3, 1e-5, 1))


def test_init_from_carries_weights_across_norms(tmp_path):
    """A batch-norm network starts from cumulative-norm weights: convs and norm affines carry
    over, running statistics start fresh; a different architecture is refused."""
    import torch

    from gagnet.config import get_config
    from gagnet.model.gagnet import GaGNet
    from gagnet.train import init_from, save_weights

    torch.manual_seed(0)
    src = GaGNet(get_config("tiny"))
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path / "model.pt"
    save_weights(src, path)
    dst = GaGNet(get_config("tiny", norm="bn"))
    init_from(dst, str(path))
    src_sd, dst_sd = src.state_dict(), dst.state_dict()
    for k, v in src_sd.items():
        assert torch.equal(dst_sd[k], v), k
    assert any(k.endswith("running_var") for k in dst_sd)
    with pytest.raises(ValueError, match="missing"):
        init_from(GaGNet(get_config("tiny", q=3)), str(path))


def test_freeze_batch_norm_stats_keeps_running_statistics():
    import torch

    from gagnet.config import get_config
    from gagnet.model.gagnet import GaGNet
    from gagnet.train import freeze_batch_norm_stats

    torch.manual_seed(0)
    net = GaGNet(get_config("tiny", norm="bn")).train()
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    assert freeze_batch_norm_stats(net) > 0
    x = torch.randn(2, 2, 161, 20)
    net(x)[-1].pow(2).mean().backward()
    after = net.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.weight.grad is not None and not bn.training
    net.train()  # an unfrozen step moves them
    net(x)
    assert not all(torch.equal(net.state_dict()[k], v) for k, v in before.items())


def test_nonfinite_gradients_skip_the_step_without_a_sync():
    import torch

    from gagnet.train import skip_nonfinite_step

    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(lin.parameters(), lr=0.1, fused=True)
    before = [p.detach().clone() for p in lin.parameters()]
    lin(torch.randn(2, 4)).sum().backward()
    lin.weight.grad[0, 0] = float("nan")
    skipped = skip_nonfinite_step(opt, list(lin.parameters()), 5.0)
    opt.step()
    assert float(skipped) == 1.0 and all(torch.equal(a, p) for a, p in zip(before, lin.parameters()))
    assert all(int(opt.state[p]["step"]) == 0 for p in lin.parameters())  # the step was not counted
    opt.zero_grad()
    lin(torch.randn(2, 4)).sum().backward()
    skipped = skip_nonfinite_step(opt, list(lin.parameters()), 5.0)
    opt.step()
    assert float(skipped) == 0.0 and not torch.equal(before[0], lin.weight)


def test_ddp_two_ranks_disjoint_data_equal_weights_and_resume(tmp_path):
    """Two CPU processes (gloo): disjoint mixture indices, identical weights at the end under a
    time-budgeted cosine rate (its progress comes from rank 0), and a resume that continues
    the same index sequence."""
    import json

    _make_corpus(tmp_path)
    extra = {"accelerator": "cpu", "devices": 2, "strategy": "ddp", "val_every_steps": 4, "lr_schedule": "cosine",
             "max_minutes": 5, "warmup_steps": 2, "log_every_steps": 2}
    for steps, resume in ((8, []), (12, ["--resume"])):
        p = _run([*resume, *_overrides(tmp_path, "ddp", max_steps=steps, **extra)])
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-3000:]
    runs = {r: [json.loads(line) for line in (tmp_path / "ddp" / "ranks" / f"rank{r}.jsonl").open()] for r in (0, 1)}
    assert [(x["first_step"], x["last_step"]) for x in runs[0]] == [(0, 8), (8, 12)]
    batch = runs[0][0]["batch_size"]
    for part in (0, 1):
        a, b = (set(runs[r][part]["indices"]) for r in (0, 1))
        assert not a & b, "ranks drew the same mixtures"
        assert runs[0][part]["weights_sha256"] == runs[1][part]["weights_sha256"], "weights differ across ranks"
        assert runs[0][part]["world_size"] == 2
    seen = [i for r in (0, 1) for x in runs[r] for i in x["indices"]]
    assert sorted(seen) == list(range(12 * batch * 2))  # every mixture once, in the order an unbroken run takes


def test_validation_on_a_time_interval(tmp_path):
    _make_corpus(tmp_path)
    p = _run(_overrides(tmp_path, "clock", max_steps=9, val_every_steps=1000, val_every_minutes=1e-6, log_every_steps=3))
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-3000:]
    steps = [int(r["step"]) for r in csv.DictReader((tmp_path / "clock" / "val_log.csv").open())]
    # every check (each 3 steps) found the interval passed; the epoch then ends after the batch
    # the loader had already fetched, on every rank alike
    assert steps[:2] == [4, 7]
    assert (tmp_path / "clock" / "checkpoints" / "last.ckpt").exists()


def test_resume_with_another_batch_size_says_so(tmp_path):
    _make_corpus(tmp_path)
    p = _run(_overrides(tmp_path, "bs", max_steps=4))
    assert p.wait(timeout=300) == 0
    p = _run(["--resume", *_overrides(tmp_path, "bs", max_steps=6, batch_size=2)])
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-3000:]
    assert b"trained on 1 process(es) x batch 4 with 1 x 2" in err


def test_residual_noise_weight_reaches_the_training_loss():
    """The training step's loss (eager and through compile_loss) is the paper's plus the weighted
    residual-noise term; validation and the default keep the paper's loss alone."""
    import torch

    from gagnet.dsp import frame_mask
    from gagnet.loss import gagnet_loss, residual_noise
    from gagnet.train import compile_loss, make_module

    torch.manual_seed(0)
    n = 4000
    batch = {"noisy": 0.1 * torch.randn(2, n), "clean": 0.05 * torch.randn(2, n), "lengths": torch.tensor([n, 3000])}
    plain = make_module(load_train_config("smoke"))
    module = make_module(load_train_config("smoke", ["residual_noise_weight=0.5"]))
    module.model.load_state_dict(plain.model.state_dict())
    with torch.no_grad():
        noisy, clean, mask = module._spectra(batch)
        ests = module.model.net(noisy)
        paper = gagnet_loss(ests, clean, mask)
        extra = residual_noise(ests[-1], clean, noisy, mask)
        assert extra > 0
        torch.testing.assert_close(plain._loss(batch), paper)
        torch.testing.assert_close(module._loss(batch), paper + 0.5 * extra)
        torch._dynamo.reset()
        torch.testing.assert_close(compile_loss(module.model.net, backend="eager", residual_weight=0.5)(noisy, clean, mask),
                                   paper + 0.5 * extra)
    with pytest.raises(ValueError):
        load_train_config("smoke", ["residual_noise_weight=-1"])


def test_speech_anchor_pulls_towards_the_start_network_where_speech_dominates(tmp_path):
    """``anchor_weight`` adds the distance from the ``init_weights`` network's output, weighted by
    how much of each bin is speech: nothing while the weights are the start's, the paper's
    distance where the input is clean speech, nothing where it is noise alone; the compiled step
    computes the same; a run without init_weights is refused."""
    from gagnet.loss import gagnet_loss, speech_anchor
    from gagnet.train import compile_loss, make_module

    torch.manual_seed(0)
    start = tmp_path / "start.pt"
    save_weights(GaGNet(get_config("tiny")), start)
    n = 4000
    batch = {"noisy": 0.1 * torch.randn(2, n), "clean": 0.05 * torch.randn(2, n), "lengths": torch.tensor([n, 3000])}
    module = make_module(load_train_config("smoke", [f"init_weights={start}", "anchor_weight=2"]))
    module.model.net.load_state_dict(torch.load(start, weights_only=True)["state_dict"])
    module.model.net.eval()  # the anchor is in eval mode; so the two agree while the weights do
    with torch.no_grad():
        noisy, clean, mask = module._spectra(batch)
        ests = module.model.net(noisy)
        torch.testing.assert_close(module._loss(batch), gagnet_loss(ests, clean, mask))
        for p in module.model.net.parameters():
            p.add_(0.01 * torch.randn_like(p))
        moved = module.model.net(noisy)
        reference = module._anchor[0](noisy)[-1]
        extra = speech_anchor(moved[-1], reference, clean, noisy, mask)
        assert extra > 0
        torch.testing.assert_close(module._loss(batch), gagnet_loss(moved, clean, mask) + 2 * extra)
        torch._dynamo.reset()
        compiled = compile_loss(module.model.net, backend="eager", anchor=module._anchor[0], anchor_weight=2)
        torch.testing.assert_close(compiled(noisy, clean, mask), gagnet_loss(moved, clean, mask) + 2 * extra)
        # clean input: every bin is speech, so the term is the paper's distance of the last stage
        paper = gagnet_loss([moved[-1]], reference, mask)
        torch.testing.assert_close(speech_anchor(moved[-1], reference, noisy, noisy, mask), paper)
        # noise alone (silent target): nothing to keep
        assert speech_anchor(moved[-1], reference, torch.zeros_like(noisy), noisy, mask) == 0
    with pytest.raises(ValueError, match="init_weights"):
        load_train_config("smoke", ["anchor_weight=1"])
    with pytest.raises(ValueError):
        load_train_config("smoke", [f"init_weights={start}", "anchor_weight=-1"])


def test_trainable_patterns_train_only_what_they_name(tmp_path):
    """``trainable`` freezes every other parameter through a real run: from the same start, the
    named heads move and the rest come out bit for bit; a pattern naming nothing is refused."""
    from gagnet.train import freeze_all_but

    net = GaGNet(get_config("tiny"))
    with pytest.raises(ValueError, match="match no parameter"):
        freeze_all_but(net, ["stages.*.glance.gain.*", "stages.*.glanse.*"])
    heads = ["stages.*.glance.gain.*", "stages.*.gaze.out_*"]
    kept = freeze_all_but(net, heads)
    assert 0 < kept < sum(p.numel() for p in net.parameters())

    _make_corpus(tmp_path)
    torch.manual_seed(1)
    start = GaGNet(get_config("tiny"))
    save_weights(start, tmp_path / "start.pt")
    run = _run(_overrides(tmp_path, "heads", max_steps=3, val_every_steps=3, init_weights=tmp_path / "start.pt",
                          trainable="[" + ",".join(heads) + "]"))
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err.decode()[-3000:]
    after = torch.load(tmp_path / "heads" / "model.pt", weights_only=True)["state_dict"]
    moved, frozen = 0, 0
    for name, p in start.named_parameters():
        if any(fnmatch.fnmatchcase(name, pat) for pat in heads):
            moved += not torch.equal(after[name], p.detach())
        else:
            assert torch.equal(after[name], p.detach()), name
            frozen += 1
    assert moved >= 4 and frozen > 10, (moved, frozen)
