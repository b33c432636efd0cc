"""Attenuation limit: gain from dB, and input held until the output it belongs to arrives."""
import numpy as np
import pytest

from gagnet.attenuation import FROM_MODEL, InputFloor, floor_gain, parse_atten_lim


def test_floor_gain():
    assert floor_gain(None) == 0.0
    assert floor_gain(0.0) == 1.0
    assert floor_gain(20.0) == pytest.approx(0.1)
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            floor_gain(bad)


def test_parse_atten_lim():
    assert parse_atten_lim("12") == 12.0 and parse_atten_lim(" 0 ") == 0.0
    assert parse_atten_lim("off") is None and parse_atten_lim("None") is None
    assert parse_atten_lim("model") == FROM_MODEL
    for bad in ("-1", "nan", "inf", "loud", ""):
        with pytest.raises(ValueError, match="--atten-lim must be a number of dB >= 0, off or model"):
            parse_atten_lim(bad)


def test_outputs_lagging_in_ragged_blocks_meet_their_own_inputs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 2)).astype(np.float32)
    y = rng.standard_normal((1000, 2)).astype(np.float32)  # "enhanced", aligned with x
    floor = InputFloor(0.25)
    got, i_in, i_out = [], 0, 0
    for n_in, n_out in [(100, 0), (300, 250), (0, 100), (350, 400), (250, 250)]:
        floor.hold(x[i_in:i_in + n_in])
        got.append(floor.apply(y[i_out:i_out + n_out]))
        i_in, i_out = i_in + n_in, i_out + n_out
    assert i_in == i_out == 1000
    np.testing.assert_allclose(np.concatenate(got), 0.75 * y + 0.25 * x, rtol=1e-6)


def test_no_limit_passes_output_through():
    floor = InputFloor(0.0)
    y = np.ones((5, 1), np.float32)
    floor.hold(np.zeros((5, 1), np.float32))
    assert floor.apply(y) is y
