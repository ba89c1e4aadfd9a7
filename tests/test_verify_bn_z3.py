"""The batchnorm bracket script (verify.smt.prove_batchnorm_bracket): QF_LIA with sqrt(var + eps) bracketed by exact
rationals.  Its verdicts equal exhaustive enumeration and the exact QF_NIA path, broken layers are refuted with a
real witness, coarse brackets are refined (or fall back to the exact path), perfect-square r is decided exactly."""
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fxbn
from verify import breakpoints, exact, smt

pytest.importorskip("z3")
ROUNDINGS = ("half_even", "half_up", "half_away", "floor")


def _reference(layer, c):
    """[y(x) for x in range] by fxbn.reference (exact, no breakpoints)."""
    _, _, _, lo, hi = exact.channel_params(layer, c)
    return [exact.reference_output(layer, c, x) for x in range(lo, hi + 1)]


def _errors(layer, c, ys=None):
    """{x: |f(x) - y(x)|} for every x in range, f in Python ints; `ys`: the reference, if already enumerated."""
    A, B, s, lo, hi = exact.channel_params(layer, c)
    ys = _reference(layer, c) if ys is None else ys
    return {x: abs(exact.fixed_output(A, B, s, x, *layer.out_range) - y) for x, y in zip(range(lo, hi + 1), ys)}


def _with(layer, A, B, s):
    return fxbn.FixedPointBN(A, B, s, layer.in_range, layer.out_range, layer.rounding, layer.source,
                             layer.out_dtype, layer.in_dtype)


def _broken(layer, how, c=0):
    A, B, s = layer.multiplier.copy(), layer.bias.copy(), layer.shift.copy()
    if how == "halved":                          # shift - 1 with halved parameters (s minimal: never exact)
        if s[c] == 0:
            return None
        A[c], B[c], s[c] = A[c] >> 1, B[c] >> 1, s[c] - 1
    else:
        what, delta = how
        if what == "A":
            A[c] += delta
        else:
            B[c] += (1 << max(0, int(s[c]) - 1)) if delta == "half" else delta       # "half": about half a level
    return _with(layer, A, B, s)


def _assert_decides(layer, c, bound, r, errs):
    bad = max(errs.values()) > bound
    assert r["status"] == ("refuted" if bad else "proved"), (r, bound)
    if bad:
        assert errs[r["witness"]] > bound            # a real counterexample, found by the solver


@st.composite
def bn_cases(draw):
    """One-channel from_batchnorm arguments: float32 statistics, or dyadic parameters with a perfect-square
    var + eps (then exact ties v = k + 1/2 happen); int8 inputs, or int16 inputs on a sub-range (enumerable)."""
    in_dtype = draw(st.sampled_from(["int8", "int16"]))
    if draw(st.booleans()):
        f32 = lambda lo, hi: float(draw(st.floats(float(np.float32(lo)), float(np.float32(hi)), width=32)))  # noqa
        kw = dict(gamma=[f32(-3, 3)], beta=[f32(-2, 2)], mean=[f32(-2, 2)], var=[f32(1e-4, 5)],
                  eps=draw(st.sampled_from([1e-5, 1e-3, 0.0])),
                  in_scale=f32(1e-3, 0.2) if in_dtype == "int8" else f32(1e-5, 4e-3), out_scale=f32(1e-3, 0.2))
    else:
        kw = dict(gamma=[draw(st.integers(-12, 12)) / 4], beta=[draw(st.integers(-16, 16)) / 8],
                  mean=[draw(st.integers(-16, 16)) / 8], var=[draw(st.sampled_from([0.25, 1.0, 2.25, 0.0625]))],
                  eps=0.0, in_scale=2.0 ** -draw(st.integers(1, 6 if in_dtype == "int8" else 11)),
                  out_scale=2.0 ** -draw(st.integers(0, 4)))
    if in_dtype == "int16":
        lo = draw(st.integers(-32768, 32767 - 1200))
        kw["in_range"] = (lo, lo + draw(st.integers(30, 1200)))
    kw.update(in_zero_point=draw(st.integers(-5, 5)), out_zero_point=draw(st.integers(-10, 10)),
              rounding=draw(st.sampled_from(ROUNDINGS)), relu=draw(st.sampled_from([False, False, True])),
              in_dtype=in_dtype)
    return kw


@settings(max_examples=30, deadline=None)
@given(bn_cases(), st.sampled_from([None, ("A", 1), ("A", -1), ("B", 1), ("B", -1), ("B", "half"), "halved"]),
       st.sampled_from([0, 0, 1]))
def test_bracket_matches_enumeration_and_nia(kw, how, bound):
    try:
        layer = fxbn.from_batchnorm(**kw)
    except fxbn.InfeasibleError:
        return
    if how is not None:
        layer = _broken(layer, how)
        if layer is None:
            return
    errs = _errors(layer, 0)
    r = smt.prove_channel_split(layer, 0, bound)
    assert r["encoding"] == "batchnorm-bracket-script" and r["logic"] == "QF_LIA"     # decided without fallback
    assert r["refinements"] == 0                           # ... and at the default precision
    _assert_decides(layer, 0, bound, r, errs)
    _assert_decides(layer, 0, bound, smt.prove_batchnorm_bracket(layer, 0, bound, bits=0), errs)   # coarse start
    old = smt._prove_split_api(layer, 0, bound)            # the exact QF_NIA path agrees
    assert old["status"] == r["status"]
    if how == "halved" and bound == 0:
        assert r["status"] == "refuted"                    # the solver's shift is minimal


def _admissible_bias(layer, c, ys):
    """[B_min, B_max]: every B in it (multiplier and shift kept) is exact over the range, B_min - 1 and B_max + 1
    are not (exactness is an interval in B: f is monotone in B pointwise).  By enumeration, exact integers."""
    A, B, s, lo, hi = exact.channel_params(layer, c)
    qmin, qmax = layer.out_range
    xs = range(lo, hi + 1)

    def ok(b):
        return all(exact.fixed_output(A, b, s, x, qmin, qmax) == y for x, y in zip(xs, ys))

    assert ok(B)
    ends = []
    for sign in (1, -1):
        good, step = B, 1
        while ok(good + sign * step):
            good, step = good + sign * step, step * 2
        bad = good + sign * step                      # ok(good), not ok(bad): bisect
        while abs(bad - good) > 1:
            mid = (good + bad) // 2
            good, bad = (mid, bad) if ok(mid) else (good, mid)
        ends.append(good)
    return ends[1], ends[0]


def test_broken_layers_are_refuted_with_witness():
    kws = [dict(gamma=[1.3, -0.7], beta=[0.3, -0.2], mean=[0.1, 0.2], var=[1.3, 0.7], eps=1e-5, in_scale=0.02,
                out_scale=0.05, in_dtype="int8"),
           dict(gamma=[0.9, -1.1], beta=[0.05, 0.4], mean=[-0.2, 0.3], var=[0.8, 1.7], eps=1e-3, in_scale=3e-4,
                out_scale=0.04, in_dtype="int16", in_range=(-1500, 1500))]
    refuted_A = 0
    for kw, rounding in zip(kws * 2, ROUNDINGS):
        layer = fxbn.from_batchnorm(**kw, rounding=rounding)
        for c in range(layer.channels):
            ys = _reference(layer, c)
            b_min, b_max = _admissible_bias(layer, c, ys)
            A, B, s = layer.multiplier.copy(), layer.bias.copy(), layer.shift.copy()
            for b, expect in ((b_min, "proved"), (b_max, "proved"), (b_min - 1, "refuted"), (b_max + 1, "refuted")):
                B[c] = b
                lay = _with(layer, A, B, s)
                r = smt.prove_channel_split(lay, c)
                assert r["status"] == expect and r["encoding"] == "batchnorm-bracket-script", (rounding, c, b, r)
                if expect == "refuted":
                    assert _errors(lay, c, ys)[r["witness"]] > 0
            for how in (("A", 1), ("A", -1), "halved"):
                lay = _broken(layer, how, c)
                errs = _errors(lay, c, ys)
                r = smt.prove_channel_split(lay, c)
                _assert_decides(lay, c, 0, r, errs)
                refuted_A += how != "halved" and r["status"] == "refuted"
                if how == "halved":
                    assert r["status"] == "refuted"
    assert refuted_A >= 4


def test_coarse_bracket_is_refined_or_falls_back():
    layer = fxbn.from_batchnorm([1.3, -0.7], [0.3, -0.2], [0.1, 0.2], [1.3, 0.7], 0.0, in_scale=0.02,
                                out_scale=0.05, in_dtype="int8", rounding="half_even")
    ys = _reference(layer, 0)
    errs = _errors(layer, 0, ys)
    assert max(errs.values()) == 0
    text, levels, bracket = smt.batchnorm_bracket_script(layer, 0, bits=0)          # sqrt(r) in [1, 2]
    assert (bracket["L"], bracket["H"]) == (1, 2)
    assert "sat" in smt._eval_script(text)           # the coarse relaxation is satisfiable: artefacts only
    r = smt.prove_batchnorm_bracket(layer, 0, bits=0)
    assert r["status"] == "proved" and r["refinements"] >= 1 and r["encoding"] == "batchnorm-bracket-script"
    assert r["bracket_bits"] == 64 * r["refinements"]
    b_min, b_max = _admissible_bias(layer, 0, ys)
    B = layer.bias.copy()
    B[0] = b_max + 1
    bad = _with(layer, layer.multiplier, B, layer.shift)
    bad_errs = _errors(bad, 0, ys)
    for bits in (0, 1, 3):
        _assert_decides(bad, 0, 0, smt.prove_batchnorm_bracket(bad, 0, bits=bits), bad_errs)
    # no refinement allowed: the artefacts send the channel to the exact QF_NIA path, which decides it
    for lay, e in ((layer, errs), (bad, bad_errs)):
        r = smt.prove_batchnorm_bracket(lay, 0, bits=0, refine_bits=0, rounds=1)
        if r["status"] == "proved":
            assert r["encoding"] == "batchnorm-nia-api (bracket fallback)" and r["fallback_reason"]
        _assert_decides(lay, 0, 0, r, e)


def _tie_inputs(layer, c):
    """The x in range where v(x) = k + 1/2 exactly (var + eps a perfect square: v rational)."""
    src = exact.channel_source(layer, c)
    r = Fraction(src["var"]) + Fraction(src["eps"])
    root = Fraction(math.isqrt(r.numerator), math.isqrt(r.denominator))
    assert root * root == r
    _, _, _, lo, hi = exact.channel_params(layer, c)
    out = []
    for x in range(lo, hi + 1):
        v = (Fraction(src["gamma"]) * (Fraction(src["in_scale"]) * (x - src["in_zero_point"]) - Fraction(src["mean"]))
             / root + Fraction(src["beta"])) / Fraction(src["out_scale"]) + src["out_zero_point"]
        if v - math.floor(v) == Fraction(1, 2):
            out.append(x)
    return out


@pytest.mark.parametrize("rounding,in_range", [("half_even", (-3, 19)), ("half_away", None), ("half_up", (-40, 60))])
def test_perfect_square_r_with_ties(rounding, in_range):
    layer = fxbn.from_batchnorm([1.0, -0.75], [0.0, 0.25], [0.0, 0.125], [0.25, 2.25], 0.0, in_scale=1 / 16,
                                out_scale=1.0, in_dtype="int8", rounding=rounding, in_range=in_range)
    assert len(_tie_inputs(layer, 0)) >= 2            # v(x) = x/8: exact ties (both directions under half_even)
    for c in range(2):
        text, levels, bracket = smt.batchnorm_bracket_script(layer, c)
        assert bracket["L"] == bracket["H"]           # sqrt(1/4) = 1/2, sqrt(9/4) = 3/2: the bracket is exact
        assert smt._eval_script(text) == ["unsat"] * len(levels)
        A, B, s = layer.multiplier.copy(), layer.bias.copy(), layer.shift.copy()
        ys = _reference(layer, c)
        b_min, b_max = _admissible_bias(layer, c, ys)
        for b in (b_min, b_max, b_min - 1, b_max + 1):
            B[c] = b
            lay = _with(layer, A, B, s)
            errs = _errors(lay, c, ys)
            for bits in (None, 0):
                _assert_decides(lay, c, 0, smt.prove_batchnorm_bracket(lay, c, bits=bits), errs)
            # exact bracket: every sat check holds a real violation, so no refinement is ever needed
            r = smt.prove_batchnorm_bracket(lay, c, refine_bits=0, rounds=0)
            assert r["encoding"] == "batchnorm-bracket-script"
            _assert_decides(lay, c, 0, r, errs)


@pytest.mark.parametrize("gamma,in_scale", [(2.0 ** -20, 1 / 16), (1.0, 1.0)])
def test_perfect_square_with_a_large_denominator_is_exact_at_any_extra_precision(gamma, in_scale):
    # var = 2^-40: sqrt(r) = 2^-20 needs a 20-bit bracket; bracket_bits guarantees it even with no extra bits
    # (v = x/8 + 1/8 with ties, and v = 2^20*x + 3/8, whose crossings are all near 0)
    layer = fxbn.from_batchnorm([gamma], [0.125 if gamma < 1 else 0.375], [0.0], [2.0 ** -40], 0.0,
                                in_scale=in_scale, out_scale=1.0, in_dtype="int8", rounding="half_up")
    assert len(_tie_inputs(layer, 0)) >= (2 if gamma < 1 else 0)
    bits = smt.bracket_bits(layer, 0, extra=0)
    assert bits >= 20 and smt.batchnorm_bracket_script(layer, 0, bits=bits)[2]["L"] == (1 << (bits - 20))
    ys = _reference(layer, 0)
    for delta in (0, 1, -1):
        B = layer.bias.copy()
        B[0] += delta << max(0, int(layer.shift[0]) - 2)
        lay = _with(layer, layer.multiplier, B, layer.shift)
        r = smt.prove_batchnorm_bracket(lay, 0, bits=bits, refine_bits=0, rounds=0)
        assert r["encoding"] == "batchnorm-bracket-script"            # exact bracket: never an artefact
        _assert_decides(lay, 0, 0, r, _errors(lay, 0, ys))


def test_sqrt_bracket_is_exact_and_nested():
    rs = [Fraction(1, 4), Fraction(9, 4), Fraction(2), Fraction(1.3) + Fraction(1e-5), Fraction(3, 7),
          Fraction(float(np.float32(1e-4))), Fraction(12345678901234567, 1 << 40)]
    for r in rs:
        prev = None
        for bits in range(0, 90, 7):
            L, H = smt.sqrt_bracket(r, bits)
            assert L * L <= r * 4 ** bits <= H * H and H - L <= 1
            assert (L == H) == (Fraction(L, 1 << bits) ** 2 == r)
            if prev is not None:                      # finer brackets nest in coarser ones
                step = 1 << 7
                assert prev[0] * step <= L and H <= prev[1] * step
            prev = (L, H)
    assert smt.sqrt_bracket(Fraction(1, 4), 1) == (1, 1) and smt.sqrt_bracket(Fraction(1, 4), 0) == (0, 1)
    with pytest.raises(ValueError):
        smt.sqrt_bracket(Fraction(0), 3)


def test_int32_channels_agree_with_certificate_and_nia():
    rng = np.random.default_rng(5)
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731
    layer = fxbn.from_batchnorm(f32(rng.uniform(0.5, 1.5, 3)) * [1, -1, 1], f32(rng.uniform(-0.5, 0.5, 3)),
                                f32(rng.uniform(-0.3, 0.3, 3)), f32(rng.uniform(0.5, 2, 3)), 1e-5,
                                in_scale=float(np.float32(6e-6)), out_scale=0.05, in_dtype="int32",
                                in_range=(-(1 << 20), 1 << 20), rounding="half_even")
    for lay in (layer, _broken(layer, ("B", -1), 1), _broken(layer, ("A", 1), 2)):
        cert = breakpoints.certify(lay)
        for c in range(3):
            r = smt.prove_channel_split(lay, c)
            assert r["encoding"] == "batchnorm-bracket-script" and r["refinements"] == 0
            assert (r["status"] == "proved") == cert[c]["proved"], c
            if r["status"] == "refuted":
                A, B, s, _, _ = exact.channel_params(lay, c)
                w = r["witness"]
                assert exact.fixed_output(A, B, s, w, *lay.out_range) != exact.reference_output(lay, c, w)
    assert smt._prove_split_api(layer, 1)["status"] == "proved"


def test_rlimit_keeps_the_api_semantics():
    layer = fxbn.from_batchnorm([1.2], [0.3], [0.1], [1.3], 1e-5, in_scale=2e-7, out_scale=0.05, in_dtype="int32")
    r = smt.prove_channel_split(layer, 0, rlimit=1)
    assert r["status"] == "unknown" and r["reason"] and r["encoding"] == "level-split-api"
    small = fxbn.from_batchnorm([1.2], [0.3], [0.1], [1.3], 1e-5, in_scale=0.02, out_scale=0.05, in_dtype="int8")
    assert smt.prove_channel_split(small, 0, fast=False)["encoding"] == "level-split-api"
