"""The faster paths of a whole-model proof give the certificates of the previous ones: the C++ minimality hulls
(verify.breakpoints.minimality(hulls="core")), the incremental batchnorm thresholds of verify.smt.exact_block and the
streamed JSON writer; and a wrong bias hidden in one channel of a big batch of a real layer is still refuted and
named."""
import io
import json
import math
from fractions import Fraction

import numpy as np
import pytest

import fxbn
from verify import breakpoints, exact, run, smt
from verify.__main__ import _default, write_json
from shared_net_layers import real_layers

TIMING = {"seconds", "z3_seconds", "z3_build_seconds", "z3_median_seconds", "created"}


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _direct_thresholds(layer, c, ks):
    """_level_thresholds' batchnorm thresholds, each C(k)*sqrt(r) bracket product computed on its own."""
    src = exact.channel_source(layer, c)
    ip1, ip0, ic1, ic0, nr, dr = smt._bn_integers(src, layer.rounding)
    qmin, qmax = layer.out_range
    cmax = max(abs(ic1 * k + ic0) for k in (qmin, qmax + 1))
    p = max(0, cmax.bit_length() - abs(ip1).bit_length()) + 64
    if math.isqrt(nr) ** 2 == nr and math.isqrt(dr) ** 2 == dr:
        p = max(p, (dr.bit_length() - 1) // 2 + 1)
    p = max(p, cmax.bit_length() + 32)
    L, H = smt.sqrt_bracket(Fraction(nr, dr), p)
    out = []
    for k in ks:
        C = ic1 * k + ic0
        wl, wh = (C * L, C * H) if C >= 0 else (C * H, C * L)
        if smt._strict_const(k, layer.rounding):
            wl, wh = wl + 1, wh + 1
        out.append((-((-wh) >> p), -((-wl) >> p)))
    return (ip1, ip0), out


def _bn_layer(rounding, seed, in_dtype="int16", square=False):
    rng = np.random.default_rng(seed)
    m = 6
    # square: var + eps exact squares of dyadics (sqrt(r) exact, the bracket has no gap)
    var = np.array([0.25, 4.0, 1.0, 0.5625, 16.0, 2.25]) - 0.0625 if square else rng.lognormal(0, 1, m)
    return fxbn.from_batchnorm(gamma=rng.normal(1, 0.5, m), beta=rng.normal(0, 1, m), mean=rng.normal(0, 1, m),
                               var=var, eps=0.0625, in_scale=rng.lognormal(-6, 1, m), out_scale=0.05,
                               in_zero_point=0, out_zero_point=int(rng.integers(-5, 5)), in_dtype=in_dtype,
                               rounding=rounding)


@pytest.mark.parametrize("rounding", ["half_even", "half_up", "half_away", "floor"])
@pytest.mark.parametrize("seed", range(3))
def test_incremental_thresholds_are_the_direct_ones(rounding, seed):
    layer = _bn_layer(rounding, seed, square=seed == 2)
    qmin, qmax = layer.out_range
    for c in range(layer.channels):
        for ks in (range(qmin + 1, qmax + 1), range(-3, 9), range(0)):
            assert smt._level_thresholds(layer, c, ks) == _direct_thresholds(layer, c, ks)


def test_incremental_thresholds_on_real_layers():
    layers = real_layers()
    if not layers:
        pytest.skip("shared data absent")
    for name, layer in layers.items():
        if layer.source["form"] != "batchnorm":
            continue
        qmin, qmax = layer.out_range
        for c in range(0, layer.channels, 7):
            ks = range(qmin + 1, qmax + 1)
            assert smt._level_thresholds(layer, c, ks) == _direct_thresholds(layer, c, ks), (name, c)


def _ceil_div(m, g):
    return -(-m // g)


@pytest.mark.parametrize("rounding", ["half_even", "half_up", "half_away", "floor"])
def test_reduced_thresholds_are_the_direct_ones_divided_by_the_gcd(rounding):
    """exact_block's symbol sym/g (g = gcd of its coefficients) and thresholds ceil(M/g): the direct thresholds of
    both forms divided with Python's own ceiling, and each reduced symbol's coefficients coprime."""
    layers = [_bn_layer(rounding, seed, square=seed == 2) for seed in range(3)]
    layers.append(fxbn.from_affine([0.3, -0.7, 0.01, 0.0], [1.5, 0.25, -3.0, 2.0], in_dtype="int16",
                                   rounding=rounding))
    layers += [lay for lay in real_layers().values()][:2]
    for layer in layers:
        qmin, qmax = layer.out_range
        for c in range(min(layer.channels, 8)):
            ks = range(qmin + 1, qmax + 1)
            (r1, r0), th = smt._level_thresholds(layer, c, ks)
            (q1, q0), thr = smt._level_thresholds(layer, c, ks, reduced=True)
            g = math.gcd(r1, r0) or 1
            assert (q1 * g, q0 * g) == (r1, r0) and math.gcd(q1, q0) in (0, 1)
            assert thr == [(_ceil_div(b, g), _ceil_div(a, g)) for b, a in th]
            if layer.source["form"] == "affine":
                assert g % 2 == 0                            # V = 2*v*2^e: always even


def test_certificate_unchanged_by_core_hulls_and_json_writer(monkeypatch):
    layers = dict(list(real_layers().items())[:3]) or {"bn": _bn_layer("half_even", 0), "affine": fxbn.from_affine(
        [0.3, -0.7, 0.01], [1.5, 0.25, -3.0], in_dtype="int16")}
    python_min = breakpoints.minimality
    for name, layer in layers.items():
        new = run.verify_layer(layer, name, method="breakpoints")
        monkeypatch.setattr(breakpoints, "minimality", lambda lay, engine="core": python_min(lay, engine, "python"))
        old = run.verify_layer(layer, name, method="breakpoints")
        monkeypatch.undo()
        assert new["minimality"] == run.PROVED
        assert _strip(new) == _strip(old), name
        buf = io.StringIO()
        write_json({"layers": [new]}, buf)
        assert json.loads(buf.getvalue()) == json.loads(json.dumps({"layers": [new]}, indent=1, default=_default))


def test_wrong_bias_in_one_channel_of_a_real_batch_is_refuted_and_named():
    layers = real_layers()
    name = next((n for n, lay in layers.items() if n.startswith("resnet50") and lay.channels >= 64), None)
    if name is None:
        pytest.skip("shared data absent")
    layer = layers[name]
    c_bad = 45
    B = layer.bias.copy()
    B[c_bad] += 1 << max(0, int(layer.shift[c_bad]) - 1)               # half an output level
    bad = fxbn.FixedPointBN(layer.multiplier, B, layer.shift, layer.in_range, layer.out_range, layer.rounding,
                            layer.source, layer.out_dtype, layer.in_dtype)
    assert breakpoints.exact_error(bad)[c_bad]["max_error"] > 0
    proved = smt.prove_batch(bad, range(32, 64))
    assert set(proved) == set(range(32, 64)) - {c_bad}
    sub = range(0, 64)
    z = run.run_z3(fxbn.FixedPointBN(bad.multiplier[:64], bad.bias[:64], bad.shift[:64], bad.in_range[:64],
                                     bad.out_range, bad.rounding,
                                     {k: (v if isinstance(v, str) else np.asarray(v)[:64])
                                      for k, v in bad.source.items()}, bad.out_dtype, bad.in_dtype))
    assert [c for c in sub if z[c]["status"] != "proved"] == [c_bad]
    assert z[c_bad]["status"] == "refuted"
    A, Bc, s, _, _ = exact.channel_params(bad, c_bad)
    x = z[c_bad]["witness"]
    assert exact.fixed_output(A, Bc, s, x, *bad.out_range) != exact.reference_output(bad, c_bad, x)
