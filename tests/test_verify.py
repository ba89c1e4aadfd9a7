"""verify/: breakpoint certificate and z3 proofs agree with exhaustive enumeration, broken layers are refuted."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fxbn
from verify import breakpoints, exact, run, smt
from strategies import batchnorm_layers, breakages, small_affine_layers

pytest.importorskip("z3")


def exhaustive(layer, c):
    """(max |f - y|, mismatches, [x with f != y]) by enumerating every x, f in Python ints, y by fxbn.reference."""
    A, B, s, lo, hi = exact.channel_params(layer, c)
    bad, err = [], 0
    for x in range(lo, hi + 1):
        e = abs(exact.fixed_output(A, B, s, x, *layer.out_range) - exact.reference_output(layer, c, x))
        if e:
            bad.append(x)
            err = max(err, e)
    return err, len(bad), bad


def broken(layer, what, delta, c=0):
    A, B, s = layer.multiplier.copy(), layer.bias.copy(), layer.shift.copy()
    {"A": A, "B": B, "s": s}[what][c] += delta
    s = np.clip(s, 0, 62)
    return fxbn.FixedPointBN(A, B, s, layer.in_range, layer.out_range, layer.rounding, layer.source,
                             layer.out_dtype, layer.in_dtype)


def solve_or_skip(a, b, rounding, in_dtype):
    try:
        return fxbn.from_affine(a, b, in_dtype=in_dtype, rounding=rounding)
    except fxbn.InfeasibleError:
        return None


def check_layer_against_exhaustive(layer):
    cert = breakpoints.certify(layer)
    errs = breakpoints.exact_error(layer)
    for c in range(layer.channels):
        err, count, bad = exhaustive(layer, c)
        assert cert[c]["proved"] == (count == 0)
        if count:
            assert cert[c]["witness"] in bad
        assert errs[c]["max_error"] == err and errs[c]["mismatches"] == count
        if err:
            w = errs[c]["witness"]
            A, B, s, _, _ = exact.channel_params(layer, c)
            assert abs(exact.fixed_output(A, B, s, w, *layer.out_range) - exact.reference_output(layer, c, w)) == err
        z = smt.prove_channel_split(layer, c)
        assert z["status"] == ("proved" if count == 0 else "refuted")
        if count:
            assert z["witness"] in bad


@settings(max_examples=30)
@given(small_affine_layers(), breakages())
def test_affine_methods_match_enumeration(params, breakage):
    a, b, rounding, in_dtype = params
    layer = solve_or_skip(a, b, rounding, in_dtype)
    if layer is None:
        return
    check_layer_against_exhaustive(layer)
    check_layer_against_exhaustive(broken(layer, *breakage))


def test_broken_parameters_are_refuted_with_witness():
    layer = fxbn.from_affine([0.0123, -0.37, 0.5], [3.25, 0.1, 0.0], in_dtype="int8", rounding="half_up")
    refuted = set()
    for what in ("A", "B", "s"):
        for c in range(3):
            deltas = [-1, 1] + ([1 << (int(layer.shift[c]) - 1)] if what == "B" and layer.shift[c] > 0 else [])
            for delta in deltas:
                if what == "s" and layer.shift[c] + delta < 0:
                    continue
                bad = broken(layer, what, delta, c)
                _, count, xs = exhaustive(bad, c)
                rec = run.verify_layer(bad, method="both", minimality=False)
                expect = run.PROVED if count == 0 else run.REFUTED
                assert rec["per_channel"][c]["breakpoints"] == expect and rec["per_channel"][c]["z3"] == expect
                if count:
                    refuted.add(what)
                    assert rec["verdict"] == run.REFUTED
                    ref = [r for r in rec["refutations"] if r["channel"] == c][0]
                    assert ref["x"] in xs and ref["fixed_point"] != ref["reference"]
                    assert ref["example"] == f"@example(channel={c}, x={ref['x']})"
    assert refuted == {"A", "B", "s"}


@settings(max_examples=8)
@given(batchnorm_layers(max_channels=1), st.sampled_from(["A", "B"]))
def test_batchnorm_methods_match_enumeration(kw, what):
    rounding = kw.pop("rounding")
    try:
        layer = fxbn.from_batchnorm(**kw, in_dtype="int8", rounding=rounding)
    except fxbn.InfeasibleError:
        return
    check_layer_against_exhaustive(layer)
    check_layer_against_exhaustive(broken(layer, what, 1))


@given(small_affine_layers(max_channels=2), st.integers(0, 2))
def test_bound_form_and_max_error(params, d):
    a, b, rounding, in_dtype = params
    layer = solve_or_skip(a, b, rounding, in_dtype)
    if layer is None:
        return
    layer = broken(layer, "B", 1 << max(0, int(layer.shift[0]) - 1))     # an error of about 1/2 to 1 level
    err, _, _ = exhaustive(layer, 0)
    z = smt.prove_channel_split(layer, 0, bound=d)
    assert z["status"] == ("proved" if err <= d else "refuted")
    rec = run.verify_layer(layer, method="breakpoints", bound=d, minimality=False)
    assert rec["per_channel"][0]["breakpoints"] == (run.PROVED if err <= d else run.REFUTED)
    assert rec["per_channel"][0]["max_error"] == err
    assert smt.max_error_channel(layer, 0)["max_error"] == err


@given(small_affine_layers(max_channels=2))
def test_minimality_certificate(params):
    a, b, rounding, in_dtype = params
    layer = solve_or_skip(a, b, rounding, in_dtype)
    if layer is None:
        return
    d, T = layer.reference_breakpoints("python")
    qmin, qmax = layer.out_range
    for c, m in enumerate(breakpoints.minimality(layer, "python")):
        s = int(layer.shift[c])
        lo_m, hi_m = exact.mirrored_range(int(d[c]), *exact.channel_params(layer, c)[3:])
        ok, (A, B) = breakpoints.feasible_at(T[c], qmin, qmax, lo_m, hi_m, s)
        assert ok      # the solver's shift is feasible, and the (A, B) found there is exact:
        sign = -1 if d[c] < 0 else 1
        trial = fxbn.FixedPointBN([A * sign], [B], [s], layer.in_range[c:c + 1], layer.out_range, layer.rounding,
                                  {k: (v if isinstance(v, str) else np.asarray(v)[c:c + 1])
                                   for k, v in layer.source.items()}, layer.out_dtype, layer.in_dtype)
        assert exhaustive(trial, 0)[1] == 0
        assert m["minimal"] is (None if s == 0 else True)


def test_non_minimal_shift_is_reported():
    layer = fxbn.from_affine([0.25], [-3.0], in_dtype="int8", rounding="floor")      # (1, -12, 2)
    doubled = fxbn.FixedPointBN(layer.multiplier * 2, layer.bias * 2, layer.shift + 1, layer.in_range,
                                layer.out_range, layer.rounding, layer.source, "int8", "int8")
    rec = run.verify_layer(doubled, method="breakpoints")
    assert rec["per_channel"][0]["breakpoints"] == run.PROVED
    assert rec["per_channel"][0]["minimal_shift"] is False and rec["minimality"] == run.REFUTED
    assert run.verify_layer(layer, method="breakpoints")["minimality"] == run.PROVED


def test_int32_range_certificate_and_z3_agree():
    rng = np.random.default_rng(3)
    layer = fxbn.from_affine(rng.lognormal(-6, 1, 3) * [1, -1, 1], rng.normal(0, 20, 3), in_dtype="int32",
                             rounding="half_up")
    rec = run.verify_layer(layer)
    assert rec["verdict"] == run.PROVED
    bad = broken(layer, "B", -1, c=1)
    errs = breakpoints.exact_error(bad)
    cert = breakpoints.certify(bad)
    z = smt.prove_channel_split(bad, 1)
    assert (errs[1]["max_error"] == 0) == cert[1]["proved"] == (z["status"] == "proved")
    for w in filter(None, (errs[1]["witness"], cert[1]["witness"], z.get("witness"))):
        A, B, s, _, _ = exact.channel_params(bad, 1)
        assert exact.fixed_output(A, B, s, w, *bad.out_range) != exact.reference_output(bad, 1, w)


def test_python_and_core_engines_agree():
    layer = fxbn.from_affine([0.013, -0.2], [1.5, -3.0], in_dtype="int16", rounding="half_even")
    assert [r["proved"] for r in breakpoints.certify(layer, "python")] == [True, True]
    bad = broken(layer, "A", 1)
    assert breakpoints.certify(bad, "python")[0] == breakpoints.certify(bad, "core")[0]
