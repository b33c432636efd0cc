"""Weight blends of two runs (gagnet.blend)."""
import pytest
import torch

from gagnet.blend import blend_files, blend_networks
from gagnet.callbacks import save_weights
from gagnet.config import get_config
from gagnet.model.gagnet import GaGNet
from gagnet.pretrained import load_model


def _saved(tmp_path, name, seed, **overrides):
    torch.manual_seed(seed)
    net = GaGNet(get_config("tiny", norm="bn", **overrides))
    with torch.no_grad():
        for t in [*net.parameters(), *(b for n, b in net.named_buffers() if "running" in n)]:
            t.add_(torch.rand_like(t))
        for n, b in net.named_buffers():
            if n.endswith("num_batches_tracked"):
                b.fill_(10 + seed)
    path = tmp_path / f"{name}.pt"
    save_weights(net, path)
    return path, net.state_dict()


def test_blend_is_the_weighted_mean_of_weights_and_statistics(tmp_path):
    (pa, sa), (pb, sb) = _saved(tmp_path, "a", 0), _saved(tmp_path, "b", 1)
    for alpha in (0.0, 0.3, 1.0):
        mixed = blend_networks(pa, pb, alpha).state_dict()
        for k, v in sb.items():
            want = (1 - alpha) * sa[k] + alpha * v if v.is_floating_point() else v
            torch.testing.assert_close(mixed[k], want, msg=k)
    running = [k for k in sb if k.endswith("running_var")]
    assert running and not torch.equal(sa[running[0]], sb[running[0]])
    counts = [k for k in sb if k.endswith("num_batches_tracked")]
    assert counts and int(sa[counts[0]]) != int(sb[counts[0]])  # integer buffers: B's, not blended
    out = blend_files(pa, pb, 0.5, tmp_path / "blend.pt")
    k = next(k for k in sb if sb[k].is_floating_point())
    torch.testing.assert_close(load_model(out).net.state_dict()[k], (sa[k] + sb[k]) / 2)


def test_blend_refuses_other_networks_and_alphas(tmp_path):
    (pa, _), (pc, _) = _saved(tmp_path, "a", 0), _saved(tmp_path, "c", 1, q=3)
    with pytest.raises(ValueError, match="different"):
        blend_networks(pa, pc, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        blend_networks(pa, pa, 1.5)


def test_layer_wise_blend_gives_each_module_its_own_alpha(tmp_path):
    (pa, sa), (pb, sb) = _saved(tmp_path, "a", 0), _saved(tmp_path, "b", 1)
    modules = {"encoder": 1.0, "stages.0": 0.25, "stages.0.gaze": 0.75}  # the longest path wins
    mixed = blend_networks(pa, pb, 0.5, modules).state_dict()
    seen = set()
    for k, v in sb.items():
        if not v.is_floating_point():
            continue
        alpha = (1.0 if k.startswith("encoder.") else 0.75 if k.startswith("stages.0.gaze.")
                 else 0.25 if k.startswith("stages.0.") else 0.5)
        seen.add(alpha)
        torch.testing.assert_close(mixed[k], (1 - alpha) * sa[k] + alpha * v, msg=k)
    assert seen == {1.0, 0.75, 0.25, 0.5}
    with pytest.raises(ValueError, match="no such module"):
        blend_networks(pa, pb, 0.5, {"stages.9": 1.0})
    with pytest.raises(ValueError, match="alpha"):
        blend_networks(pa, pb, 0.5, {"encoder": -0.1})
    out = blend_files(pa, pb, 0.0, tmp_path / "lw.pt", {"encoder": 1.0})
    k = next(k for k in sb if k.startswith("encoder.") and sb[k].is_floating_point())
    torch.testing.assert_close(load_model(out).net.state_dict()[k], sb[k])
