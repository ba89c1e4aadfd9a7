"""The z3 level scripts (one z3 call per channel): the affine script's answers agree with enumeration, bounds
included; the batchnorm bracket script over-approximates every real violation, is complete at its default precision,
and its SMT-LIB2 files replay in a fresh z3 process."""
import subprocess
import sys

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


# ------------------------------------------------------------------ batchnorm channels: the bracket script
def _bn_layer(rounding, in_dtype="int8", **kw):
    args = dict(gamma=[1.3, -0.7], beta=[0.3, -0.2], mean=[0.1, 0.2], var=[1.3, 0.7], eps=1e-5, in_scale=0.02,
                out_scale=0.05)
    args.update(kw)
    return fxbn.from_batchnorm(**args, in_dtype=in_dtype, rounding=rounding)


@pytest.mark.parametrize("rounding", ["half_even", "half_up", "half_away", "floor"])
def test_bracket_script_checks_over_approximate_the_violations(rounding):
    layer = _bn_layer(rounding)
    for what, delta in (("B", 0), ("B", 1), ("B", -1), ("A", 1), ("A", -1)):
        A, B, s = layer.multiplier.copy(), layer.bias.copy(), layer.shift.copy()
        (A if what == "A" else B)[:] += delta * (1 if what == "A" else 1 << max(0, int(s[0]) - 2))
        bad = _layer(A, B, s, layer)
        for c in range(bad.channels):
            Ac, Bc, sc, lo, _ = exact.channel_params(bad, c)
            for d in (0, 1):
                errs = _errors(bad, c)
                wrong = {exact.fixed_output(Ac, Bc, sc, lo + i, *bad.out_range) for i, e in enumerate(errs) if e > d}
                for bits in (0, 3, None):           # a coarse bracket, and the default precision
                    text, levels, _ = smt.batchnorm_bracket_script(bad, c, d, bits=bits)
                    answers = smt._eval_script(text)
                    assert len(answers) == len(levels) and answers[0] == "unsat"      # the split is exhaustive
                    for lv, a in zip(levels[1:], answers[1:]):
                        if wrong & set(lv):         # sound at any precision: a real violation is never missed
                            assert a == "sat", (what, delta, c, d, bits, lv)
                        elif bits is None:          # complete at the default precision
                            assert a == "unsat", (what, delta, c, d, lv)


def test_bracket_smt2_replays_in_fresh_process(tmp_path):
    good = _bn_layer("half_even")
    int32 = _bn_layer("half_up", "int32", in_scale=float(np.float32(6e-6)), in_range=(-(1 << 20), 1 << 20))
    bad = _layer(good.multiplier + [1, 0], good.bias, good.shift, good)
    runs = {"good.ch0": smt.prove_channel_split(good, 0, smt2_path=str(tmp_path / "good.ch0.smt2")),
            "int32.ch1": smt.prove_channel_split(int32, 1, smt2_path=str(tmp_path / "int32.ch1.smt2")),
            "bad.ch0": smt.prove_channel_split(bad, 0, smt2_path=str(tmp_path / "bad.ch0.smt2")),
            # refined from a 0-bit bracket: the file holds the whole script at the final precision
            "refined.ch1": smt.prove_batchnorm_bracket(good, 1, bits=0, smt2_path=str(tmp_path / "refined.ch1.smt2"))}
    assert runs["refined.ch1"]["refinements"] >= 1 and runs["bad.ch0"]["status"] == "refuted"
    script = ("import sys, z3\n"
              "for path in sys.argv[1:]:\n"
              "    ctx = z3.Context()\n"
              "    res = z3.Z3_eval_smtlib2_string(ctx.ref(), open(path).read()).split()\n"
              "    print(path.rsplit('/', 1)[-1][:-5], ','.join(res))\n")
    r = subprocess.run([sys.executable, "-c", script, *[str(tmp_path / f"{k}.smt2") for k in runs]],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    answers = {k: v.split(",") for k, v in (line.split(" ") for line in r.stdout.strip().splitlines())}
    for name, res in runs.items():
        text = (tmp_path / f"{name}.smt2").read_text()
        assert text.startswith("; fxbn channel") and "batchnorm-bracket-script" in text
        assert "unsat for every check" in text and "sqrt(r) in [L/2^" in text
        assert res["encoding"] == "batchnorm-bracket-script" and "error" not in answers[name]
        if res["status"] == "proved":
            assert set(answers[name]) == {"unsat"}
        else:
            assert "sat" in answers[name]
    assert len(answers["good.ch0"]) == runs["good.ch0"]["checks"]
