"""Shift minimality judged against the options the layer was solved with (layer.solve_options)."""
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fxbn
from verify import breakpoints, exact, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _params(seed=1, n=6):
    rng = np.random.default_rng(seed)
    return rng.lognormal(-4, 1, n) * rng.choice([-1, 1], n), rng.normal(0, 20, n)


def _hand(layer, A, B, s, options=None):
    return fxbn.FixedPointBN(A, B, s, layer.in_range, layer.out_range, layer.rounding, layer.source,
                             layer.out_dtype, layer.in_dtype, solve_options=options)


def test_common_shift_layer_is_proved_minimal():
    a, b = _params()
    layer = fxbn.from_affine(a, b, in_dtype="int16", rounding="half_up", common_shift=True)
    per = fxbn.from_affine(a, b, in_dtype="int16", rounding="half_up")
    assert len(set(layer.shift.tolist())) == 1 and len(set(per.shift.tolist())) > 1   # a real common shift
    rec = run.verify_layer(layer, method="breakpoints")
    assert rec["verdict"] == rec["minimality"] == run.PROVED and rec["common_shift"] is True
    binding = [p["channel"] for p in rec["per_channel"] if p["minimal_shift"]]
    assert binding and all(int(per.shift[c]) == int(layer.shift[0]) for c in binding)
    assert all(p["minimal_shift"] is None for p in rec["per_channel"] if p["channel"] not in binding)
    # the same parameters without the recorded option: the non-binding channels are not minimal
    bare = _hand(layer, layer.multiplier, layer.bias, layer.shift)
    rec = run.verify_layer(bare, method="breakpoints")
    assert rec["minimality"] == rec["verdict"] == run.REFUTED and rec["common_shift"] is False


def test_common_shift_one_too_many_is_refuted():
    a, b = _params()
    layer = fxbn.from_affine(a, b, in_dtype="int16", rounding="half_up", common_shift=True)
    up = _hand(layer, layer.multiplier * 2, layer.bias * 2, layer.shift + 1, layer.solve_options)
    rec = run.verify_layer(up, method="breakpoints")
    assert all(p["breakpoints"] == run.PROVED for p in rec["per_channel"])         # still exact ...
    assert rec["minimality"] == rec["verdict"] == run.REFUTED                       # ... but S - 1 works
    assert "not minimal" in rec["minimality_reason"]
    A, B, S = layer.multiplier.copy(), layer.bias.copy(), layer.shift.copy()
    S[0] += 1
    A[0] *= 2
    B[0] *= 2
    mixed = _hand(layer, A, B, S, layer.solve_options)
    rec = run.verify_layer(mixed, method="breakpoints")
    assert rec["minimality"] == run.REFUTED and "differ" in rec["minimality_reason"]


def test_equal_shifts_without_common_option_are_judged_per_channel():
    # the old heuristic "all shifts equal => common shift" must be gone: equal shifts, one channel not minimal
    layer = fxbn.from_affine([0.25, 0.375], [-3.0, 1.0], in_dtype="int8", rounding="floor")
    assert layer.shift.tolist() == [2, 3]
    A, B, s = layer.multiplier.copy(), layer.bias.copy(), layer.shift.copy()
    A[0], B[0], s[0] = 2 * A[0], 2 * B[0], 3
    hand = _hand(layer, A, B, s)
    assert hand.solve_options == {}
    rec = run.verify_layer(hand, method="breakpoints")
    assert rec["common_shift"] is False and rec["minimality"] == run.REFUTED
    assert rec["per_channel"][0]["minimal_shift"] is False and rec["per_channel"][1]["minimal_shift"] is True


def test_doubled_hand_built_layer_flagged_by_cli(tmp_path):
    layer = fxbn.from_affine([0.0123, -0.37], [3.25, 0.1], in_dtype="int8", rounding="half_up")
    _hand(layer, layer.multiplier, layer.bias, layer.shift).save(tmp_path / "good.json")
    doubled = _hand(layer, layer.multiplier * 2, layer.bias * 2, layer.shift + 1)
    doubled.save(tmp_path / "doubled.json")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "verify", "--quiet", "--method", "breakpoints"]
    good = subprocess.run(cmd + [str(tmp_path / "good.json")], capture_output=True, text=True, cwd=ROOT, env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    r = subprocess.run(cmd + ["--json", str(tmp_path / "c.json"), str(tmp_path / "doubled.json")],
                       capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 1 and "shift is not minimal" in r.stdout
    rec = json.loads((tmp_path / "c.json").read_text())["layers"][0]
    for c, p in enumerate(rec["per_channel"]):
        assert p["breakpoints"] == "PROVED" and p["minimal_shift"] is False
        A, B, s = p["smaller_parameters"]
        assert s == int(layer.shift[c]) and abs(A) <= abs(int(layer.multiplier[c]))


def test_solved_with_limits_is_not_flagged():
    rng = np.random.default_rng(5)
    a, b = rng.lognormal(-3, 1, 8) * rng.choice([-1, 1], 8), rng.normal(0, 20, 8)
    for kw in ({"acc_bits": 32}, {"acc_bits": 32, "max_multiplier_bits": 16}, {"acc_bits": 32, "common_shift": True}):
        layer = fxbn.from_affine(a, b, in_dtype="int8", rounding="half_up", **kw)
        assert layer.solve_options["acc_bits"] == 32
        rec = run.verify_layer(layer, method="breakpoints")
        assert rec["verdict"] == rec["minimality"] == run.PROVED, (kw, rec["minimality_reason"])
        assert "within the recorded limits" in rec["claims"][1]
        loaded = fxbn.FixedPointBN.from_dict(json.loads(json.dumps(layer.to_dict())))
        assert loaded.solve_options == layer.solve_options
        assert run.verify_layer(loaded, method="breakpoints")["minimality"] == run.PROVED


def test_shift_above_minimum_accepted_only_when_limits_exclude_smaller():
    """(2A, 2B, s + 1) is exact; whether s + 1 is minimal depends on the recorded accumulator limit."""
    layer = fxbn.from_affine([0.0123], [3.25], in_dtype="int8", rounding="half_up")
    A, B, s = (int(v[0]) for v in (layer.multiplier, layer.bias, layer.shift))
    lo, hi = exact.channel_params(layer, 0)[3:]
    acc = lambda A, B: max(exact.signed_bits(v) for v in (A * lo, A * hi, A * lo + B, A * hi + B, B))  # noqa: E731
    w = acc(2 * A, 2 * B)
    loose = _hand(layer, [2 * A], [2 * B], [s + 1], {"acc_bits": w, "max_multiplier_bits": None,
                                                     "common_shift": False})
    m = breakpoints.minimality(loose, "python")[0]
    assert m["minimal"] is False and m["method"] == breakpoints.LIMITS_AWARE
    sA, sB, ss = m["smaller"]
    assert ss == s and acc(sA, sB) <= w
    assert run.verify_layer(loose, method="breakpoints")["minimality"] == run.REFUTED
    # a limit below what (2A, 2B) needs: the layer itself violates the options it claims
    tight = _hand(layer, [2 * A], [2 * B], [s + 1], {"acc_bits": w - 1, "max_multiplier_bits": None,
                                                     "common_shift": False})
    rec = run.verify_layer(tight, method="breakpoints")
    assert rec["minimality"] == run.REFUTED and "exceeds" in rec["minimality_reason"]


def _brute_feasible(T, qmin, qmax, lo_m, hi_m, sign, t, acc_bits, mult_bits):
    """Every (A', B) in the box the limits allow, checked against the reference on every x' (numpy)."""
    xs = np.arange(lo_m, hi_m + 1, dtype=np.int64)
    y = qmin + np.searchsorted(np.asarray(T, np.int64), xs, side="right")
    wl, wh = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    top = min(wh, (1 << (mult_bits - 1)) - (0 if sign < 0 else 1))
    Bs = np.arange(wl, wh + 1, dtype=np.int64)
    for A in range(0, top + 1):
        if not all(wl <= A * x <= wh for x in (lo_m, hi_m)):
            continue
        acc = A * xs[None, :] + Bs[:, None]
        ok = ((acc >= wl) & (acc <= wh)).all(axis=1)
        ok &= (np.clip(acc >> t, qmin, qmax) == y[None, :]).all(axis=1)
        if ok.any():
            return True
    return False


@pytest.mark.parametrize("seed", range(24))
def test_limits_aware_feasibility_is_exact(seed):
    """feasible_at with limits agrees with enumerating every (A, B) within small widths."""
    rng = np.random.default_rng(seed)
    a = float(np.float32(rng.uniform(0.05, 0.6) * rng.choice([-1, 1])))
    b = float(np.float32(rng.normal(0, 3)))
    lo = int(rng.integers(-20, 12))
    layer = fxbn.from_affine([a], [b], in_dtype="int8", in_range=(lo, lo + int(rng.integers(3, 14))),
                             rounding="half_up", out_range=(-16, 15))
    d, T = layer.reference_breakpoints("python")
    sign = -1 if d[0] < 0 else 1
    lo_m, hi_m = exact.mirrored_range(int(d[0]), *exact.channel_params(layer, 0)[3:])
    qmin, qmax = layer.out_range
    checked = refused = 0
    s = int(layer.shift[0])
    for t, acc_bits, mult_bits in itertools.product(range(max(0, s - 2), s + 3), range(5, 12), (2, 3, 4, 5, 6, 8)):
        lim = breakpoints.limit_constraints(lo_m, hi_m, sign, acc_bits, mult_bits)
        ok, detail = breakpoints.feasible_at(T[0], qmin, qmax, lo_m, hi_m, t, lim)
        brute = _brute_feasible(T[0], qmin, qmax, lo_m, hi_m, sign, t, acc_bits, mult_bits)
        assert ok == brute, (t, acc_bits, mult_bits)
        if ok:
            A, B = detail
            trial = fxbn.FixedPointBN([A * sign], [B], [t], layer.in_range, layer.out_range, layer.rounding,
                                      layer.source, layer.out_dtype, layer.in_dtype)
            assert all(r["proved"] for r in breakpoints.certify(trial, "python"))
            assert trial.accumulator_bits[0] <= acc_bits and trial.multiplier_bits[0] <= mult_bits
        checked += ok
        refused += not ok
    assert checked and refused
