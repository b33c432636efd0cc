"""The authors' weights load strictly and give the authors' outputs.

``tests/data/official_keys_*.txt`` list every state_dict key and shape of the authors'
``GaGNet.py`` (paper settings with IN, BN, and the squeezed gaze path). Set
``GAGNET_OFFICIAL_PY=/path/to/GaGNet.py`` to also compare outputs with their file.
"""
import importlib.util
import os
from pathlib import Path

import pytest
import torch

from gagnet import GaGNet, count_parameters
from gagnet.compat import (
    OfficialGaGNet,
    from_official,
    native_to_official,
    official_to_native,
    to_official,
)

DATA = Path(__file__).parent / "data"


def _official_state_dict(name: str) -> dict[str, torch.Tensor]:
    sd = {}
    for line in (DATA / f"official_keys_{name}.txt").read_text().splitlines():
        key, shape = line.split("\t")
        dims = [int(s) for s in shape.split(",")] if shape else []
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(dims) + 0.5
        else:
            sd[key] = torch.randn(dims) * 0.1
    return sd


@pytest.mark.parametrize("name,norm,params", [("IN", "in", 5_948_137), ("BN", "bn", 5_948_137),
                                              ("IN_squeezed", "in", 4_857_577)])
def test_official_state_dict_is_consumed_completely_and_strictly(name, norm, params):
    sd = _official_state_dict(name)
    model = from_official(sd)
    assert isinstance(model, OfficialGaGNet)
    assert model.net.cfg.norm == norm
    assert count_parameters(model) == params
    # every official tensor landed at its mapped place, unchanged
    native = model.net.state_dict()
    assert len(native) == len(sd)
    for key, value in sd.items():
        assert torch.equal(native[official_to_native(key)], value), key
    # and maps back to exactly the authors' names
    assert to_official(native).keys() == sd.keys()


def test_unknown_or_missing_keys_are_refused():
    sd = _official_state_dict("IN")
    extra = dict(sd, **{"gags.0.glance_block.bogus.weight": torch.zeros(1)})
    with pytest.raises(KeyError):
        from_official(extra)
    missing = dict(sd)
    missing.pop("gags.1.gaze_block.linear_r.bias")
    with pytest.raises(RuntimeError):
        from_official(missing)


def test_dataparallel_prefix_is_accepted():
    sd = {f"module.{k}": v for k, v in _official_state_dict("IN").items()}
    assert count_parameters(from_official(sd)) == 5_948_137


def test_drop_in_io_layout():
    model = from_official(_official_state_dict("IN")).eval()
    x = torch.randn(2, 2, 13, 161)  # (B, 2, T, F), the authors' input
    with torch.no_grad():
        outs = model(x)
    assert len(outs) == 3 and all(o.shape == (2, 2, 161, 13) for o in outs)


def test_native_names_round_trip():
    keys = GaGNet("paper").state_dict().keys()
    assert {official_to_native(native_to_official(k)) for k in keys} == set(keys)


OFFICIAL = os.environ.get("GAGNET_OFFICIAL_PY")


@pytest.mark.skipif(not OFFICIAL, reason="set GAGNET_OFFICIAL_PY to the authors' GaGNet.py")
@pytest.mark.parametrize("norm_type,squeezed", [("IN", False), ("BN", False), ("IN", True)])
def test_outputs_equal_authors_file(norm_type, squeezed):
    spec = importlib.util.spec_from_file_location("official_gagnet", OFFICIAL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ref = mod.GaGNet(cin=2, k1=(2, 3), k2=(1, 3), c=64, kd1=3, cd1=64, d_feat=256, p=2, q=3, dilas=[1, 2, 5, 9],
                     fft_num=320, is_u2=True, is_causal=True, is_squeezed=squeezed, acti_type="sigmoid",
                     intra_connect="cat", norm_type=norm_type)
    torch.manual_seed(0)
    with torch.no_grad():  # BN: non-trivial running statistics
        for name, t in ref.state_dict().items():
            if "running_var" in name:
                t.copy_(torch.rand_like(t) + 0.5)
            elif "running_mean" in name:
                t.copy_(torch.randn_like(t) * 0.1)
    ref.eval()
    ours = from_official(ref.state_dict()).eval()
    x = torch.randn(2, 2, 150, 161)
    with torch.no_grad():
        f32 = max(float((p - r).abs().max()) for p, r in zip(ref(x), ours(x)))
        ref64, ours64 = ref.double(), ours.double()
        f64 = max(float((p - r).abs().max()) for p, r in zip(ref64(x.double()), ours64(x.double())))
    print(f"authors' model vs ours ({norm_type}, squeezed={squeezed}): max abs diff {f32:.2e} (float32), {f64:.2e} (float64)")
    assert f64 < 1e-10  # the same arithmetic
    assert f32 < 2e-5  # float32 rounding only; the authors' own float32 output is ~2.5e-5 from float64
