"""The C++ hull search of the minimality certificate (fxbn._core.minimality_hull_search) against the Python
feasible_at: the same verdicts and certificates on many random and real layers, and a wrong core answer is caught
by the Python re-check of its certificate."""
import numpy as np
import pytest

import fxbn
from verify import breakpoints, run
from shared_net_layers import real_layers


def _layers():
    rng = np.random.default_rng(7)
    for seed in range(24):
        n = int(rng.integers(1, 40))
        a = rng.lognormal(-5, 2, n) * rng.choice([-1, 1], n)
        b = rng.normal(0, 30, n)
        in_dtype = ["int8", "uint8", "int16", "int32"][seed % 4]
        rounding = ["half_even", "half_up", "half_away", "floor"][seed // 4 % 4]
        layer = fxbn.from_affine(a, b, in_dtype=in_dtype, rounding=rounding, out_dtype="int8" if seed % 3 else "uint8")
        yield f"random{seed}", layer
        # the same numbers one shift too many (feasible at s - 1: the core hands those channels to Python)
        yield f"random{seed}_up", fxbn.FixedPointBN(layer.multiplier * 2, layer.bias * 2, layer.shift + 1,
                                                    layer.in_range, layer.out_range, layer.rounding, layer.source,
                                                    layer.out_dtype, layer.in_dtype)


@pytest.mark.parametrize("name,layer", list(_layers()))
def test_core_hulls_match_python(name, layer):
    core = breakpoints.minimality(layer, hulls="core")
    py = breakpoints.minimality(layer, hulls="python")
    assert core == py
    assert any(m["minimal"] for m in core) or name.endswith("_up")


def test_core_hulls_match_python_on_real_layers():
    layers = real_layers()
    if not layers:
        pytest.skip("shared data absent")
    for name, layer in layers.items():
        assert breakpoints.minimality(layer, hulls="core") == breakpoints.minimality(layer, hulls="python"), name


def test_core_answers_are_rechecked(monkeypatch):
    a = np.random.default_rng(3).lognormal(-4, 1, 8)
    layer = fxbn.from_affine(a, np.linspace(-20, 20, 8), in_dtype="int16", rounding="half_even")
    good = breakpoints._core_hulls
    status, idx = good(*_args(layer))
    assert set(status) == {1}                          # every channel minimal by two crossing bounds

    def swapped(*args):                                 # the two constraints of channel 0 exchanged: no certificate
        st, ix = good(*args)
        ix[0] = [ix[0][2], ix[0][3], ix[0][0], ix[0][1]]
        return st, ix

    monkeypatch.setattr(breakpoints, "_core_hulls", swapped)
    with pytest.raises(RuntimeError, match="channel 0"):
        breakpoints.minimality(layer)

    def looser(*args):                                  # a lower bound of the slope that does not bind
        st, ix = good(*args)
        ix[0][2] = ix[0][3] = -1
        return st, ix

    monkeypatch.setattr(breakpoints, "_core_hulls", looser)
    with pytest.raises(RuntimeError, match="channel 0"):
        breakpoints.minimality(layer)

    def feasible(*args):                                # "feasible": decided again by Python, still minimal
        st, ix = good(*args)
        return [0] * len(st), ix

    monkeypatch.setattr(breakpoints, "_core_hulls", feasible)
    assert breakpoints.minimality(layer) == breakpoints.minimality(layer, hulls="python")
    assert run.verify_layer(layer, method="breakpoints")["minimality"] == run.PROVED


def _args(layer):
    d, T = layer.reference_breakpoints("core")
    lo_m, hi_m = breakpoints._mirror(layer, np.asarray(d, np.int64))
    return T, lo_m, hi_m, layer.shift, layer.out_range[0]
