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


def test_residual_noise_penalises_left_noise_not_clean_input():
    from gagnet.loss import residual_noise

    g = torch.Generator().manual_seed(0)
    speech = torch.randn(2, 2, 6, 9, generator=g)
    noise = 3 * torch.randn(2, 2, 6, 9, generator=g)
    noisy = speech + noise
    # a perfect estimate leaves nothing; passing the noisy input through leaves noise
    assert residual_noise(speech, speech, noisy) == 0
    left = residual_noise(noisy, speech, noisy)
    assert left > 0.1
    # attenuating speech is not residual noise: an all-zero output costs nothing here
    assert residual_noise(torch.zeros_like(speech), speech, noisy) == 0
    # clean input (noisy == target): no bin is noise-dominated, whatever the estimate
    assert residual_noise(noisy, speech, speech) == 0
    # noise alone (silent target): the whole output is residual, weighted 1
    silent = torch.zeros_like(speech)
    assert torch.allclose(residual_noise(noise, silent, noise), (noise.norm(dim=1) ** 2).mean())
    # gagnet_loss adds it to the last stage only, scaled, and needs the noisy spectrum
    ests = [noisy, noisy]
    base = gagnet_loss(ests, speech)
    assert torch.allclose(gagnet_loss(ests, speech, noisy=noisy, residual_weight=2.0), base + 2 * left)
    try:
        gagnet_loss(ests, speech, residual_weight=1.0)
    except ValueError:
        pass
    else:
        raise AssertionError("residual_weight without noisy must raise")


def test_residual_noise_ignores_padded_frames():
    from gagnet.loss import residual_noise

    speech, noisy = torch.randn(1, 2, 4, 8), 2 * torch.randn(1, 2, 4, 8)
    mask = torch.ones(1, 8)
    mask[0, 5:] = 0
    est = noisy.clone()
    base = residual_noise(est, speech, noisy, mask)
    est[..., 5:] += 50
    assert torch.allclose(residual_noise(est, speech, noisy, mask), base)
