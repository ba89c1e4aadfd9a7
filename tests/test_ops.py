"""fxbn.ops: requantization, average pooling, multiply and the two-input add against their exact Fraction references
(fxbn.ops_reference, independent of the core and of the batchnorm-form mapping).  Each check is also run on a
deliberately wrong implementation (a float-rounded quotient, a mutated multiplier/bias/shift) and must catch it."""
import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fxbn
from fxbn import ops_reference as oref

ROUNDINGS = ("half_even", "half_up", "half_away", "floor")
I8 = np.arange(-128, 128)
ALL1, ALL2 = (a.astype(np.int8) for a in np.meshgrid(I8, I8, indexing="ij"))  # every int8 pair


def add_ref(layer, x1, x2):
    s = layer.source
    return oref.add_outputs(x1, x2, s["in_scales"], s["in_zero_points"], s["out_scale"], s["out_zero_point"],
                            *layer.out_range, layer.rounding)


def mismatches(y, ref):
    return int(np.count_nonzero(np.asarray(y, np.int64) != np.asarray(ref, np.int64)))


# ------------------------------------------------------------------------------------------------ the add
ADD_CASES = [((0.0123, 0.05), (3, -5), 0.07, 1), ((0.1, 0.3), (0, 0), 0.2, 0), ((0.01, 0.0173), (-7, 12), 0.031, -3),
             ((0.0391, 0.0117), (10, -128), 0.05, 0), ((0.02, 0.02), (0, 0), 0.04, 0)]


@pytest.mark.parametrize("case", ADD_CASES)
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_add_exhaustive_int8(case, rounding):
    scales, zps, so, zo = case
    try:
        layer = fxbn.from_add(scales, zps, so, zo, rounding=rounding)
    except fxbn.InfeasibleError as e:
        assert rounding == "half_even" and "tie" in str(e)
        return
    ref = add_ref(layer, ALL1, ALL2)
    assert mismatches(layer.apply(ALL1, ALL2), ref) == 0
    assert layer.check_exhaustive() is None
    # minimality: the core finds nothing at shift - 1, and halving the parameters (the natural candidate) fails
    if layer.shift > 0:
        assert not layer.feasible_at(layer.shift - 1)
        (a1, a2), b, s = layer.multipliers, layer.bias, layer.shift
        half = fxbn.FixedPointAdd((a1 // 2, a2 // 2), b // 2, s - 1, layer.in_ranges, layer.out_range, rounding,
                                  layer.source)
        assert mismatches(half.apply(ALL1, ALL2), ref) > 0
    assert layer.feasible_at(layer.shift)


@pytest.mark.parametrize("mutation", ["a1", "a2", "bias", "shift"])
def test_add_exhaustive_check_catches_mutations(mutation):
    layer = fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, 1)
    (a1, a2), b, s = layer.multipliers, layer.bias, layer.shift
    wrong = {"a1": ((a1 + 1, a2), b, s), "a2": ((a1, a2 - 1), b, s), "bias": ((a1, a2), b + (1 << (s - 1)), s),
             "shift": ((a1, a2), b, s + 1)}[mutation]
    bad = fxbn.FixedPointAdd(*wrong, layer.in_ranges, layer.out_range, layer.rounding, layer.source)
    assert mismatches(bad.apply(ALL1, ALL2), add_ref(layer, ALL1, ALL2)) > 0
    assert bad.check_exhaustive() is not None


def test_add_tflite_style_double_rounding_is_caught():
    # a wrong implementation: the two rescaled inputs rounded separately, then added (TFLite-like double rounding)
    layer = fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, 1, rounding="half_up")
    x1, x2 = ALL1.astype(np.int64), ALL2.astype(np.int64)
    r1, r2 = 0.0123 / 0.07, 0.05 / 0.07
    wrong = np.clip(np.floor(r1 * (x1 - 3) + 0.5) + np.floor(r2 * (x2 + 5) + 0.5) + 1, -128, 127)
    assert mismatches(wrong, add_ref(layer, ALL1, ALL2)) > 0


def test_add_half_even_tie_names_a_real_tie():
    with pytest.raises(fxbn.InfeasibleError) as e:
        fxbn.from_add((0.5, 0.5), (0, 0), 1.0, 0)
    msg = str(e.value)
    x1, x2 = (int(v) for v in msg.split("(x1, x2) = (")[1].split(")")[0].split(", "))
    v = oref.add_value(x1, x2, (0.5, 0.5), (0, 0), 1.0, 0)
    assert v - math.floor(v) == Fraction(1, 2)


@st.composite
def add_params(draw):
    s1, s2, so = (10.0 ** draw(st.floats(-3, 0)) for _ in range(3))
    if draw(st.booleans()):  # dyadic scales: exact ties occur
        s1, s2, so = (draw(st.integers(1, 64)) / 2.0 ** draw(st.integers(3, 9)) for _ in range(3))
    d1, d2 = draw(st.sampled_from(["int8", "uint8"])), draw(st.sampled_from(["int8", "uint8"]))
    z1, z2 = draw(st.integers(-20, 20)) + (128 if d1 == "uint8" else 0), draw(st.integers(-20, 20)) + (
        128 if d2 == "uint8" else 0)
    zo = draw(st.integers(-10, 10))
    return dict(in_scales=(s1, s2), in_zero_points=(z1, z2), out_scale=so, out_zero_point=zo, in_dtypes=(d1, d2),
                out_dtype=draw(st.sampled_from(["int8", "uint8", "int16"])), rounding=draw(st.sampled_from(ROUNDINGS)),
                relu=draw(st.booleans()))


@given(add_params(), st.integers(0, 2 ** 32 - 1))
@settings(max_examples=40)
def test_add_hypothesis(params, seed):
    try:
        layer = fxbn.from_add(**params)
    except fxbn.InfeasibleError as e:
        # only ties can make it infeasible: the named pair must be an exact tie
        assert params["rounding"] == "half_even"
        x1, x2 = (int(v) for v in str(e).split("(x1, x2) = (")[1].split(")")[0].split(", "))
        v = oref.add_value(x1, x2, params["in_scales"], params["in_zero_points"], params["out_scale"],
                           params["out_zero_point"])
        assert v - math.floor(v) == Fraction(1, 2)
        return
    assert layer.check_exhaustive() is None
    rng = np.random.default_rng(seed)
    (l1, h1), (l2, h2) = layer.in_ranges
    x1 = rng.integers(l1, h1 + 1, 3000).astype(params["in_dtypes"][0])
    x2 = rng.integers(l2, h2 + 1, 3000).astype(params["in_dtypes"][1])
    assert mismatches(layer.apply(x1, x2), add_ref(layer, x1, x2)) == 0
    if layer.shift > 0:
        assert not layer.feasible_at(layer.shift - 1)


def test_add_int16_by_int8():
    layer = fxbn.from_add((0.0007, 0.05), (0, 3), 0.06, -2, in_dtypes=("int16", "int8"), rounding="half_up")
    assert layer.check_exhaustive() is None
    x1 = np.random.default_rng(1).integers(-32768, 32768, 5000).astype(np.int16)
    x2 = np.random.default_rng(2).integers(-128, 128, 5000).astype(np.int8)
    assert mismatches(layer.apply(x1, x2), add_ref(layer, x1, x2)) == 0


def test_add_broadcasting_and_out():
    layer = fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, 1)
    rng = np.random.default_rng(0)
    x1 = rng.integers(-128, 128, (2, 3, 4, 5)).astype(np.int8)
    for shape in [(2, 3, 4, 5), (4, 5), (1, 5), (3, 1, 1), (1,), ()]:
        x2 = rng.integers(-128, 128, shape).astype(np.int8)
        want = add_ref(layer, x1, np.broadcast_to(x2, x1.shape))
        assert mismatches(layer.apply(x1, x2), want) == 0, shape
        out = np.empty(x1.shape, np.int8)
        assert layer.apply(x1, x2, out=out) is out and mismatches(out, want) == 0
    # out aliasing x1 (in place)
    x1b = x1.copy()
    want = add_ref(layer, x1b, x1b[::-1])
    x2 = x1b[::-1].copy()
    layer.apply(x1b, x2, out=x1b)
    assert mismatches(x1b, want) == 0
    with pytest.raises(ValueError, match="broadcast"):
        layer.apply(x1[:1], x1)
    with pytest.raises(ValueError, match="dtype"):
        layer.apply(x1.astype(np.int32), x1)


def test_add_range_errors_leave_out_untouched():
    layer = fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, 1, in_ranges=((-100, 100), (-128, 127)))
    x1 = np.zeros((3, 4), np.int8)
    x2 = np.zeros((3, 4), np.int8)
    x1[2, 1] = 101
    out = np.full((3, 4), 7, np.int8)
    with pytest.raises(ValueError, match=r"x1 at \[2, 1\] is 101"):
        layer.apply(x1, x2, out=out)
    assert (out == 7).all()
    with pytest.raises(ValueError, match="x1 at"):
        layer.apply(x1, x2)
    with pytest.raises(ValueError, match="x1 at"):
        layer.reference(x1, x2)
    x1[2, 1] = 0
    layer2 = fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, 1, in_ranges=((-128, 127), (0, 127)))
    x2[1, 3] = -1
    with pytest.raises(ValueError, match=r"x2 at \[0, 3\] is -1"):
        layer2.apply(x1, x2[1], out=out)  # broadcast x2 row
    assert (out == 7).all()


def test_add_save_load_and_validation(tmp_path):
    layer = fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, 1, relu=True)
    for ext in ("json", "npz"):
        path = tmp_path / f"add.{ext}"
        layer.save(path)
        back = fxbn.load(path)
        assert isinstance(back, fxbn.FixedPointAdd)
        assert back.to_dict() == layer.to_dict()
        assert mismatches(back.apply(ALL1, ALL2), layer.apply(ALL1, ALL2)) == 0
    d = layer.to_dict()
    json.dumps(d)
    for key, value, match in [("format", "x", "FixedPointAdd"), ("shift", 63, "shift"), ("shift", 1.5, "shift"),
                              ("multipliers", [1], "multipliers"), ("in_ranges", [[-200, 0], [0, 1]], "in_ranges"),
                              ("out_range", [0, 300], "out_range"), ("rounding", "up", "rounding")]:
        bad = dict(d, **{key: value})
        with pytest.raises(ValueError, match=match):
            fxbn.FixedPointAdd.from_dict(bad)
    with pytest.raises(ValueError, match="out_scale"):
        fxbn.FixedPointAdd.from_dict(dict(d, source=dict(d["source"], out_scale=-1.0)))


def test_add_bad_arguments():
    with pytest.raises(ValueError, match="in_scales"):
        fxbn.from_add((0.0, 0.1), (0, 0), 0.1)
    with pytest.raises(ValueError, match="in_dtypes"):
        fxbn.from_add((0.1, 0.1), (0, 0), 0.1, in_dtypes=("int32", "int8"))
    with pytest.raises(ValueError, match="in_ranges"):
        fxbn.from_add((0.1, 0.1), (0, 0), 0.1, in_ranges=((0, 300), (0, 1)))
    with pytest.raises(ValueError, match="pairs"):
        fxbn.from_add((0.1, 0.1), (0, 0), 0.1, in_dtypes=("int16", "int16"))


# ------------------------------------------------------------------------------------------------ one-input ops
def _requant_exact(acc, acc_scale, out_scale, zo, bias, qmin, qmax, rounding):
    return oref.outputs((oref.requant_value(a, acc_scale, out_scale, zo, bias) for a in acc), qmin, qmax, rounding)


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_requant_exhaustive(rounding):
    acc_scale = np.array([0.0004, 0.0011, 3.1e-5])
    bias = np.array([120, -40, 7])
    rq = fxbn.from_requant(acc_scale, 0.05, 3, bias=bias, in_range=(-20000, 20000), rounding=rounding)
    acc = np.arange(-20000, 20001, dtype=np.int32)
    x = np.stack([acc] * 3, axis=1)
    y = rq.apply(x, axis=1)
    for c in range(3):
        assert y[:, c].tolist() == _requant_exact(acc.tolist(), acc_scale[c], 0.05, 3, bias[c], -128, 127,
                                                  rounding)


def test_requant_float_quotient_is_wrong_and_caught():
    # acc_scale/out_scale rounds to exactly 1.5 in float, but the exact ratio is not 3/2: under half_even a
    # from_affine on the float quotient rounds the (false) ties of 1.5*acc to even, the exact requant does not
    out_scale = 0.3
    acc_scale = 1.5 * out_scale
    assert acc_scale / out_scale == 1.5 and Fraction(acc_scale) / Fraction(out_scale) != Fraction(3, 2)
    acc = np.arange(-80, 81, dtype=np.int32)
    exact = _requant_exact(acc.tolist(), acc_scale, out_scale, 0, 0, -128, 127, "half_even")
    rq = fxbn.from_requant(acc_scale, out_scale, 0, in_range=(-80, 80))
    assert rq.apply(acc).tolist() == exact
    with pytest.raises(fxbn.InfeasibleError):  # the float quotient has exact ties: refused under half_even
        fxbn.from_affine(acc_scale / out_scale, 0.0, in_range=(-80, 80))
    wrong = fxbn.from_affine(acc_scale / out_scale, 0.0, in_range=(-80, 80), rounding="half_up")
    assert mismatches(wrong.apply(acc.reshape(1, 1, -1)).reshape(-1), exact) > 0


@given(st.floats(-6, -1), st.floats(-3, 0), st.integers(-20, 20), st.integers(-5000, 5000),
       st.sampled_from(ROUNDINGS))
def test_requant_hypothesis(log_acc, log_out, zo, bias, rounding):
    acc_scale, out_scale = 10.0 ** log_acc, 10.0 ** log_out
    try:
        rq = fxbn.from_requant(acc_scale, out_scale, zo, bias=bias, in_range=(-3000, 3000), rounding=rounding)
    except fxbn.InfeasibleError:
        assert rounding == "half_even"
        return
    acc = np.arange(-3000, 3001, dtype=np.int32)
    assert rq.apply(acc).tolist() == _requant_exact(acc.tolist(), acc_scale, out_scale, zo, bias, -128, 127,
                                                    rounding)


@pytest.mark.parametrize("window,in_dtype", [(4, "int8"), ((3, 3), "uint8"), (49, "int8")])
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_avgpool_exhaustive(window, in_dtype, rounding):
    n = math.prod(window) if isinstance(window, tuple) else window
    zin = 128 if in_dtype == "uint8" else -3
    try:
        pool = fxbn.from_avgpool(window, 0.031, zin, 0.02, 5, in_dtype=in_dtype, rounding=rounding)
    except fxbn.InfeasibleError:
        assert rounding == "half_even"
        return
    lo, hi = fxbn.DTYPE_RANGES[in_dtype]
    sums = np.arange(n * lo, n * hi + 1, dtype=np.int32)
    want = oref.outputs((oref.avgpool_value(s, n, 0.031, zin, 0.02, 5) for s in sums.tolist()), -128, 127,
                        rounding)
    assert pool.apply(sums).tolist() == want
    # a wrong implementation (the mean rounded to an integer before requantization) is caught
    mean_first = [min(max(oref.round_exact(Fraction(0.031) * (oref.round_exact(Fraction(s, n), "half_even")
                                                              - zin) / Fraction(0.02) + 5, rounding), -128), 127)
                  for s in sums.tolist()]
    assert mismatches(mean_first, want) > 0


def test_avgpool_shapes_and_save(tmp_path):
    pool = fxbn.from_avgpool((7, 7), 0.031, -3, 0.02, 5)
    x = np.random.default_rng(0).integers(-128, 128, (2, 8, 7, 7), dtype=np.int8)
    s = x.sum(axis=(2, 3), dtype=np.int32)
    out = np.empty(s.shape, np.int8)
    assert pool.apply(s, out=out) is out
    assert (out == pool.reference(s)).all()
    path = tmp_path / "pool.json"
    pool.save(path)
    back = fxbn.load(path)
    assert isinstance(back, fxbn.FixedPointRescale) and back.op == pool.op and back.op["kind"] == "avgpool"
    assert (back.apply(s) == out).all()
    with pytest.raises(ValueError, match="outside the in_range"):
        pool.apply(np.array([49 * 128], np.int32))
    with pytest.raises(ValueError, match="window"):
        fxbn.from_avgpool(0, 0.1, 0, 0.1)


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_mul_exhaustive_int8(rounding):
    zps = (4, -2)
    try:
        mul = fxbn.from_mul((0.02, 0.03), zps, 0.01, 1, rounding=rounding)
    except fxbn.InfeasibleError:
        assert rounding == "half_even"
        return
    p = np.unique(fxbn.ops.mul_input(ALL1, ALL2, zps))  # every product of an int8 pair
    want = oref.outputs((oref.mul_value(v, 1, (0.02, 0.03), (0, 0), 0.01, 1) for v in p.tolist()), -128, 127,
                        rounding)
    assert mul.apply(p).tolist() == want
    # a wrong implementation: the product of the two scales rounded to a float32 first
    s12 = float(np.float32(0.02 * 0.03))
    wrong = oref.outputs((Fraction(s12) * v / Fraction(0.01) + 1 for v in p.tolist()), -128, 127, rounding)
    assert mismatches(wrong, want) > 0


def test_add_every_kernel_isa_body():
    layer = fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, 1)
    wide = fxbn.FixedPointAdd(layer.multipliers, layer.bias, layer.shift, layer.in_ranges, layer.out_range,
                              layer.rounding, layer.source, out_dtype="int16")
    ref = add_ref(layer, ALL1, ALL2)
    big1, big2 = np.tile(ALL1, (5, 1)), np.tile(ALL2, (5, 1))  # large enough for the threaded path
    try:
        for isa in ("baseline", "avx2", "x86-64-v4"):
            try:
                fxbn._core.kernel_isa(isa)
            except ValueError:
                continue
            assert mismatches(layer.apply(ALL1, ALL2), ref) == 0, isa
            assert mismatches(wide.apply(ALL1, ALL2), ref) == 0, isa
            assert mismatches(layer.apply(big1, big2, threads=2), np.tile(ref, (5, 1))) == 0, isa
    finally:
        fxbn._core.kernel_isa("auto")
