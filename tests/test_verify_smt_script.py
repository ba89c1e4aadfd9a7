"""The affine z3 script (one z3 call per channel): its own answers agree with enumeration, bounds included."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fxbn
from verify import exact, smt
from strategies import small_affine_layers

pytest.importorskip("z3")


def _errors(layer, c):
    A, B, s, lo, hi = exact.channel_params(layer, c)
    return [abs(exact.fixed_output(A, B, s, x, *layer.out_range) - exact.reference_output(layer, c, x))
            for x in range(lo, hi + 1)]


def _layer(A, B, s, layer):
    return fxbn.FixedPointBN(A, B, s, layer.in_range, layer.out_range, layer.rounding, layer.source,
                             layer.out_dtype, layer.in_dtype)


@settings(max_examples=40, deadline=None)
@given(small_affine_layers(max_channels=2), st.integers(-3, 3), st.sampled_from(["A", "B"]), st.integers(0, 1))
def test_script_answers_match_enumeration(params, delta, what, d):
    a, b, rounding, in_dtype = params
    try:
        layer = fxbn.from_affine(a, b, in_dtype=in_dtype, rounding=rounding)
    except fxbn.InfeasibleError:
        return
    A, B, s = layer.multiplier.copy(), layer.bias.copy(), layer.shift.copy()
    (A if what == "A" else B)[0] += delta * (1 if what == "A" else 1 << max(0, int(s[0]) - 1))
    bad = _layer(A, B, s, layer)
    for c in range(bad.channels):
        text, levels = smt.affine_level_script(bad, c, d)
        answers = smt._eval_script(text)
        assert len(answers) == len(levels) and answers[0] == "unsat"        # the split is exhaustive
        violated = max(_errors(bad, c)) > d
        assert ("sat" in answers) == violated
        r = smt.prove_channel_split(bad, c, d)
        assert r["status"] == ("refuted" if violated else "proved")
        if violated:
            assert abs(exact.fixed_output(*exact.channel_params(bad, c)[:3], r["witness"], *bad.out_range)
                       - exact.reference_output(bad, c, r["witness"])) > d


def test_script_and_api_agree_on_int32_channels():
    rng = np.random.default_rng(7)
    a = (rng.lognormal(-7, 1, 4) * rng.choice([-1, 1], 4)).astype(np.float32).astype(np.float64)
    b = rng.normal(0, 20, 4).astype(np.float32).astype(np.float64)
    for rounding in ("half_even", "half_up", "half_away", "floor"):
        layer = fxbn.from_affine(a, b, in_dtype="int32", rounding=rounding)
        bad = _layer(layer.multiplier, layer.bias - 1, layer.shift, layer)
        for lay in (layer, bad):
            for c in range(lay.channels):
                fast = smt.prove_channel_split(lay, c)
                api = smt.prove_channel_split(lay, c, fast=False)
                assert fast["status"] == api["status"], (rounding, c)
        assert all(smt.prove_channel_split(layer, c)["encoding"] == "affine-script" for c in range(4))


def test_limits_and_script_errors_are_never_proofs():
    layer = fxbn.from_affine([0.0123], [3.25], in_dtype="int32", rounding="half_even")
    r = smt.prove_channel_split(layer, 0, rlimit=1)
    assert r["status"] == "unknown" and r["reason"]
    text, levels = smt.affine_level_script(layer, 0)
    # a script error (here an undeclared symbol in one check) voids every answer, including z3's later "unsat"s
    broken = text.replace("(check-sat)", "(assert (< y 0))(check-sat)", 1)
    assert smt._eval_script(broken)[0] == "error"
    assert smt._eval_script(text) == ["unsat"] * len(levels)
