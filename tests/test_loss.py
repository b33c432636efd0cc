import torch

from gagnet import GaGNet, WaveGaGNet, dsp, get_config
from gagnet.loss import gagnet_loss, stage_weights


def test_stage_weights():
    assert stage_weights(3) == [0.1, 0.1, 1.0]


def test_loss_matches_definition():
    target = torch.randn(2, 2, 5, 7)
    ests = [torch.randn(2, 2, 5, 7) for _ in range(3)]
    ref = 0.0
    for w, e in zip([0.1, 0.1, 1.0], ests):
        ri = ((e - target) ** 2).mean()
        mag = ((e.norm(dim=1) - target.norm(dim=1)) ** 2).mean()
        ref += w * 0.5 * (ri + mag)
    assert torch.allclose(gagnet_loss(ests, target), ref.detach() if torch.is_tensor(ref) else torch.tensor(ref), atol=1e-6)


def test_loss_ignores_padded_frames():
    target = torch.randn(2, 2, 5, 10)
    ests = [torch.randn(2, 2, 5, 10) for _ in range(2)]
    mask = torch.ones(2, 10)
    mask[1, 6:] = 0
    base = gagnet_loss(ests, target, mask)
    ests2 = [e.clone() for e in ests]
    for e in ests2:
        e[1, :, :, 6:] += 100.0
    target2 = target.clone()
    target2[1, :, :, 6:] = -50.0
    assert torch.allclose(gagnet_loss(ests2, target2, mask), base)
    # and it equals the loss of the unpadded signal alone, frame-weighted
    assert not torch.allclose(gagnet_loss(ests2, target2), base)


def test_gradients_are_finite_through_model_and_loss():
    model = WaveGaGNet(GaGNet(get_config("tiny")))
    noisy = torch.randn(2, 4000)
    noisy[1, 2000:] = 0  # padding and exact zeros in the spectrum
    clean = torch.zeros(2, 4000)
    target = model.analyze(clean)
    ests = model.net(model.analyze(noisy))
    mask = dsp.frame_mask(torch.tensor([4000, 2000]), model.cfg, target.shape[-1])
    loss = gagnet_loss(ests, target, mask)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert torch.isfinite(loss)
