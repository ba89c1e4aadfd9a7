"""Exactness and minimality of the solver against independent references, over every input of the range."""
import numpy as np
import pytest
from hypothesis import example, given, strategies as st

import fxbn
from fxbn import reference as ref

from exactness import breakpoints_core_and_python, channel_is_minimal, exhaustive_mismatches, mutants
from strategies import affine_layers, batchnorm_layers

SMALL_DTYPES = ("int8", "uint8")


def solve_or_none(a, b, rounding, in_dtype):
    try:
        return fxbn.from_affine(a, b, in_dtype=in_dtype, rounding=rounding)
    except fxbn.InfeasibleError as e:
        # only exact ties that round both ways may make an unlimited solve impossible
        assert rounding in ("half_even", "half_away") and "tie" in str(e)
        return None


def kernel_matches_reference(layer):
    """apply() over every input of every channel equals the exact Python reference."""
    lo, hi = layer.in_range[:, 0].min(), layer.in_range[:, 1].max()
    dtype = layer.in_dtype
    xs = np.arange(lo, hi + 1, dtype=np.int64).astype(dtype)
    x = np.broadcast_to(xs, (layer.channels, xs.size))[None].copy()  # (1, C, inputs)
    return np.array_equal(layer.apply(x), layer.reference(x))


@given(affine_layers(), st.sampled_from(SMALL_DTYPES))
@example((np.array([0.5]), np.array([0.0]), "half_up"), "int8")
@example((np.array([0.5]), np.array([0.0]), "half_away"), "int8")
@example((np.array([-0.5, 0.25]), np.array([0.25, -0.125]), "half_even"), "int8")  # one tie direction each
@example((np.array([1e-300]), np.array([5e-324]), "half_even"), "uint8")            # dyadic extremes
@example((np.array([3.0, -7.0]), np.array([0.5, 1.5]), "half_even"), "int8")        # saturating, ties at every x
def test_affine_exhaustive_int8(params, in_dtype):
    a, b, rounding = params
    layer = solve_or_none(a, b, rounding, in_dtype)
    if layer is None:
        return
    assert exhaustive_mismatches(layer, direct=True) == []
    assert kernel_matches_reference(layer)


@given(affine_layers(max_channels=2))
def test_affine_exhaustive_int16(params):
    a, b, rounding = params
    layer = solve_or_none(a, b, rounding, "int16")
    if layer is None:
        return
    assert kernel_matches_reference(layer)
    assert exhaustive_mismatches(layer) == []


@given(batchnorm_layers(), st.sampled_from(SMALL_DTYPES))
def test_batchnorm_exhaustive_int8(kw, in_dtype):
    layer = fxbn.from_batchnorm(**kw, in_dtype=in_dtype)
    assert exhaustive_mismatches(layer, direct=True) == []
    assert kernel_matches_reference(layer)


@given(affine_layers(max_channels=2), st.sampled_from(SMALL_DTYPES))
@example((np.array([0.013]), np.array([3.2]), "half_even"), "int8")
def test_minimal_shift(params, in_dtype):
    a, b, rounding = params
    layer = solve_or_none(a, b, rounding, in_dtype)
    if layer is None:
        return
    for c in range(layer.channels):
        at_s, below_s = channel_is_minimal(layer, c)
        assert at_s and not below_s, f"channel {c}: shift {layer.shift[c]} is not minimal"


@given(batchnorm_layers(max_channels=2))
def test_minimal_shift_batchnorm(kw):
    layer = fxbn.from_batchnorm(**kw, in_dtype="int8")
    for c in range(layer.channels):
        at_s, below_s = channel_is_minimal(layer, c)
        assert at_s and not below_s


@given(affine_layers(max_channels=2), st.sampled_from(("int8", "int16", "int32")))
@example((np.array([1e-300, -2.0 ** -1000]), np.array([0.3, 1e300]), "half_even"), "int32")
@example((np.array([0.5, 2.0 ** 40]), np.array([2.0 ** -1074, -(2.0 ** 70)]), "half_even"), "int32")
def test_core_breakpoints_equal_python(params, in_dtype):
    """The C++ reference (long-double filter + exact fallback) equals the Fraction reference level by level."""
    a, b, rounding = params
    lo, hi = fxbn.DTYPE_RANGES[in_dtype]
    (d_core, T_core), (d_py, T_py) = breakpoints_core_and_python("affine", {"a": a, "b": b}, lo, hi, -128, 127,
                                                                 rounding)
    assert np.array_equal(d_core, d_py) and np.array_equal(T_core, T_py)


@given(batchnorm_layers(max_channels=2), st.sampled_from(("int8", "int32")))
def test_core_breakpoints_equal_python_batchnorm(kw, in_dtype):
    rounding = kw.pop("rounding")
    params = {k: np.atleast_1d(np.asarray(v, np.int64 if "zero" in k else np.float64)) for k, v in kw.items()}
    C = params["gamma"].size
    params = {k: np.ascontiguousarray(np.broadcast_to(v, (C,))) for k, v in params.items()}
    lo, hi = fxbn.DTYPE_RANGES[in_dtype]
    (d_core, T_core), (d_py, T_py) = breakpoints_core_and_python("batchnorm", params, lo, hi, -128, 127, rounding)
    assert np.array_equal(d_core, d_py) and np.array_equal(T_core, T_py)


@given(affine_layers(max_channels=2))
def test_float64_reference_agrees_where_exact(params):
    """NumPy's float64 path (rint is half-even) agrees wherever a*x + b is exact in float64."""
    a, b, _ = params
    layer = solve_or_none(a, b, "half_even", "int8")
    if layer is None:
        return
    xs = np.arange(-128, 128)
    y = layer.apply(np.broadcast_to(xs.astype(np.int8), (layer.channels, 256))[None].copy())[0]
    for c in range(layer.channels):
        v = a[c] * xs.astype(np.float64) + b[c]
        exact = np.array([ref.AffineChannel(a[c], b[c]).value(int(x)) == ref.Fraction(float(t))
                          for x, t in zip(xs, v)])
        y64 = np.clip(np.rint(v), -128, 127)
        assert np.array_equal(y64[exact], y[c][exact])


# ---------------------------------------------------------------- the checks above reject wrong implementations
@pytest.mark.parametrize("a,b,rounding,in_dtype", [
    (0.013, 3.2, "half_even", "int8"),
    (-0.7, 1.1, "half_up", "int8"),
    (0.0371, -2.6, "floor", "uint8"),
    (0.25, 0.375, "half_away", "int8"),
])
def test_checks_reject_mutants(a, b, rounding, in_dtype):
    layer = fxbn.from_affine([a], [b], in_dtype=in_dtype, rounding=rounding)
    assert exhaustive_mismatches(layer, direct=True) == []
    assert kernel_matches_reference(layer)
    for name, bad in mutants(layer).items():
        if name == "shift-1" and layer.shift[0] == 0:
            continue
        assert exhaustive_mismatches(bad, direct=True), name
        assert not kernel_matches_reference(bad), name
    # the brute-force minimality check finds a solution one shift higher, and none for a wrong shift's layer
    at_s, below_s = channel_is_minimal(layer, 0)
    assert at_s and not below_s


def test_minimality_check_rejects_a_non_minimal_shift():
    layer = fxbn.from_affine([0.013], [3.2], in_dtype="int8")
    s = int(layer.shift[0])
    bigger = fxbn.FixedPointBN(layer.multiplier * 2, layer.bias * 2, layer.shift + 1, layer.in_range,
                               layer.out_range, layer.rounding, layer.source, "int8", "int8")
    assert exhaustive_mismatches(bigger) == []  # still exact ...
    at_s, below_s = channel_is_minimal(bigger, 0)
    assert at_s and below_s and bigger.shift[0] == s + 1  # ... but the check sees it is not minimal


def test_rounding_swap_is_caught():
    """A layer solved for half_up but audited as half_even must fail at the ties."""
    layer = fxbn.from_affine([0.5], [0.0], in_dtype="int8", rounding="half_up")
    wrong = fxbn.FixedPointBN(layer.multiplier, layer.bias, layer.shift, layer.in_range, layer.out_range,
                              "half_even", layer.source, "int8", "int8")
    assert exhaustive_mismatches(wrong, direct=True)


@pytest.mark.parametrize("in_dtype", ["int8", "int32"])
@pytest.mark.parametrize("rounding", ["half_even", "half_away", "floor"])
def test_core_breakpoints_extreme_batchnorm(in_dtype, rounding):
    """Cancellation in var + eps, tiny and huge gammas, exact square roots (ties), huge means."""
    params = {
        "gamma": np.array([1.0, 1e-30, 3e20, -2.0, 0.5, 1.0]),
        "beta": np.array([0.0, 0.25, -1e3, 0.5, 0.0, 1e-300]),
        "mean": np.array([0.0, 0.0, 1e10, -0.25, 0.0, 0.0]),
        "var": np.array([-0.9999999999999999e-5, 1.0, 2.0, 3.0, 0.0, 1e300]),
        "eps": np.array([1e-5, 1e-5, 0.0, 1.0, 2.0 ** -1074, 0.0]),
        "in_scale": np.array([1e-3, 0.5, 1e-12, 0.125, 1.0, 1e150]),
        "out_scale": np.array([0.5, 0.25, 1.0, 0.25, 1e-300, 1.0]),
        "in_zero_point": np.array([0, 3, -7, 0, 0, 0], np.int64),
        "out_zero_point": np.array([0, -5, 2, 1, 0, 0], np.int64),
    }
    lo, hi = fxbn.DTYPE_RANGES[in_dtype]
    (d_core, T_core), (d_py, T_py) = breakpoints_core_and_python("batchnorm", params, lo, hi, -128, 127, rounding)
    assert np.array_equal(d_core, d_py) and np.array_equal(T_core, T_py)
