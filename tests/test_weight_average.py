"""The weight average (``ema_decay``): its arithmetic, the swap for validation, and a training run
that exports the average and resumes it exactly."""
import pytest
import torch

from gagnet.pretrained import load_model
from gagnet.weight_average import WeightAverage


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))


def test_average_follows_the_formula_over_parameters_and_running_statistics():
    net = _net()
    avg = WeightAverage(net, decay=0.75)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    expected = {k: v.clone().float() for k, v in start.items() if v.is_floating_point()}
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with torch.inference_mode():  # as in the validation before a fine-tuning run's first step
        avg.start()
    for i in range(3):
        net.train()
        loss = net(torch.randn(8, 3) + i).square().mean()  # train mode: running statistics move too
        opt.zero_grad()
        loss.backward()
        opt.step()
        avg.update()
        for k, v in net.state_dict().items():
            if k in expected:
                expected[k] = 0.75 * expected[k] + 0.25 * v.float()
    state = avg.state_dict()
    assert set(state) == set(net.state_dict())
    for k, v in expected.items():
        torch.testing.assert_close(state[k], v, rtol=1e-6, atol=1e-7)
        assert not torch.equal(state[k], net.state_dict()[k]), k  # the raw weights moved on
    assert state["1.num_batches_tracked"] == net.state_dict()["1.num_batches_tracked"] == 3


def test_swap_puts_the_average_in_and_the_raw_weights_back():
    net = _net()
    avg = WeightAverage(net, decay=0.5)
    avg.start()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    avg.update()
    raw = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(5, 3)
    net.eval()
    with avg.swapped():
        swapped_state = {k: v.clone() for k, v in net.state_dict().items()}
        y_avg = net(x)
    for k, v in avg.state_dict().items():
        torch.testing.assert_close(swapped_state[k], v)
    for k, v in net.state_dict().items():
        assert torch.equal(v, raw[k]), k
    assert not torch.allclose(y_avg, net(x))
    avg.swap_out()  # nothing swapped in: no-op
    assert all(torch.equal(v, raw[k]) for k, v in net.state_dict().items())


def test_checkpoint_round_trip_and_foreign_network():
    net = _net()
    avg = WeightAverage(net, decay=0.9)
    avg.update()
    again = WeightAverage(_net(), decay=0.9)
    again.load_checkpoint(avg.checkpoint())
    for k, v in avg.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v)
    other = WeightAverage(torch.nn.Linear(3, 2), decay=0.9)
    with pytest.raises(ValueError, match="another network"):
        other.load_checkpoint(avg.checkpoint())
    with pytest.raises(ValueError):
        WeightAverage(net, decay=1.0)


def test_training_exports_the_average_and_resumes_it_exactly(tmp_path):
    pytest.importorskip("lightning")
    from test_train import _make_corpus, _overrides, _run

    _make_corpus(tmp_path)
    extra = {"max_steps": 4, "val_every_steps": 2, "ema_decay": 0.5}
    ref = _run(_overrides(tmp_path, "ref", **extra))
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err.decode()[-3000:]
    first = _run(_overrides(tmp_path, "split", stop_after_minutes=1e-6, **extra))  # stops after step 1
    assert first.wait(timeout=300) == 0
    second = _run(["--resume", *_overrides(tmp_path, "split", **extra)])
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err.decode()[-3000:]

    exported = torch.load(tmp_path / "ref" / "model.pt", weights_only=True)["state_dict"]
    resumed = torch.load(tmp_path / "split" / "model.pt", weights_only=True)["state_dict"]
    last = tmp_path / "ref" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=False)
    raw = load_model(last).net.state_dict()
    average = ckpt["gagnet"]["weight_average"]
    moved = 0
    for name, saved in zip(average["names"], average["average"]):
        torch.testing.assert_close(exported[name], saved.to(exported[name].dtype))
        torch.testing.assert_close(resumed[name], exported[name], rtol=1e-4, atol=1e-6)
        moved += not torch.equal(exported[name], raw[name])
    assert moved > len(average["names"]) // 2  # the file holds the average, not the raw weights
