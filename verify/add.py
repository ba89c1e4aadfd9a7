"""Verify saved two-input add layers (fxbn.FixedPointAdd): exhaustive certificate, z3 proof, minimality certificate.

- exhaustive: every pair of the box, the fixed-point output in exact int64 arithmetic (accumulator_bits <= 64) against
  the Fraction reference of fxbn.ops_reference (independent of the C++ core).
- z3: no (x1, x2) in the box with clamp(floor((A1*x1 + A2*x2 + B)/2^s)) != clamp(R(v)), v encoded exactly as an
  integer linear expression over the common denominator of the scales, R by its defining inequalities; one QF_LIA
  check per row (~2 min for an int8 x int8 box).
- minimality: z3 shows that no integers (A1, A2, B) satisfy, at shift s - 1, the binding constraints (each row's
  hull vertices of the first/last pair of every output level, computed here from the exhaustive reference).
"""
import time
from fractions import Fraction
from math import lcm

import numpy as np

from fxbn import ops_reference as oref
from fxbn.atomic import write_file

PROVED, REFUTED, UNKNOWN = "PROVED", "REFUTED", "UNKNOWN"
_MAX_PYTHON_PAIRS = 1 << 18


def _grid(layer):
    (l1, h1), (l2, h2) = layer.in_ranges
    x1, x2 = np.meshgrid(np.arange(l1, h1 + 1, dtype=np.int64), np.arange(l2, h2 + 1, dtype=np.int64),
                         indexing="ij")
    return x1, x2


def fixed_outputs(layer, x1, x2):
    (a1, a2), b, s = layer.multipliers, layer.bias, layer.shift
    acc = np.int64(a1) * x1 + np.int64(a2) * x2 + np.int64(b)  # exact: accumulator_bits <= 64 over the box
    return np.clip(acc >> s, *layer.out_range)


def reference_outputs(layer, x1, x2):
    src = layer.source
    return oref.add_outputs(x1, x2, src["in_scales"], src["in_zero_points"], src["out_scale"],
                            src["out_zero_point"], *layer.out_range, layer.rounding)


def _integer_scales(layer):
    src = layer.source
    fr = [Fraction(src["in_scales"][0]), Fraction(src["in_scales"][1]), Fraction(src["out_scale"])]
    d = lcm(*(f.denominator for f in fr))
    return [int(f * d) for f in fr]


def z3_prove(layer, timeout_ms=10000, smt2_path=None):
    """{"status": "proved"/"refuted"/"unknown", "seconds", "witness"}: the add is exact on the whole box.

    One QF_LIA check per row x1 (x1 a constant, r and q bounded): no x2 in the row with
    clamp(q) != clamp(r), q = floor((A1*x1 + A2*x2 + B)/2^s), r = R(v) by its defining inequalities.  Every row
    unsat proves the claim (~0.5 s per row for int8 scales with 53-bit mantissas).
    """
    import z3

    t0 = time.perf_counter()
    (l1, h1), (l2, h2) = layer.in_ranges
    qmin, qmax = layer.out_range
    (a1, a2), b, s = layer.multipliers, layer.bias, layer.shift
    S1, S2, So = _integer_scales(layer)
    src = layer.source
    z1, z2 = src["in_zero_points"]
    zo = src["out_zero_point"]
    rd = layer.rounding
    accs = [a1 * u + a2 * w + b for u in (l1, h1) for w in (l2, h2)]
    q_lo, q_hi = (min(accs) >> s) - 1, (max(accs) >> s) + 1
    vs = [Fraction(S1 * (u - z1) + S2 * (w - z2) + So * zo, So) for u in (l1, h1) for w in (l2, h2)]
    r_lo, r_hi = int(min(vs)) - 2, int(max(vs)) + 2  # R(v) of any pair lies between the corners' (v is affine)

    def clamp(v):
        return z3.If(v < qmin, qmin, z3.If(v > qmax, qmax, v))

    out = {"witness": None, "encoding": "per-row QF_LIA", "checks": 0}
    for row in range(l1, h1 + 1):
        x2, q, r, h = z3.Ints("x2 q r h")
        sol = z3.SolverFor("QF_LIA")
        sol.set("timeout", int(timeout_ms))
        sol.add(l2 <= x2, x2 <= h2, q_lo <= q, q <= q_hi, r_lo <= r, r <= r_hi)
        acc = a1 * row + a2 * x2 + b
        sol.add(q * (2 ** s) <= acc, acc < (q + 1) * (2 ** s))
        W = S1 * (row - z1) + S2 * (x2 - z2) + So * zo  # v = W / So
        if rd == "floor":
            sol.add(r * So <= W, W < (r + 1) * So)
        else:
            lo_eq, hi_eq = 2 * W == (2 * r - 1) * So, 2 * W == (2 * r + 1) * So
            if rd == "half_up":
                lo_ok, hi_ok = z3.BoolVal(True), z3.BoolVal(False)
            elif rd == "half_even":
                lo_ok = hi_ok = r == 2 * h
            else:  # half_away
                lo_ok, hi_ok = r >= 1, r <= -1
            sol.add(z3.Or(2 * W > (2 * r - 1) * So, z3.And(lo_eq, lo_ok)))
            sol.add(z3.Or(2 * W < (2 * r + 1) * So, z3.And(hi_eq, hi_ok)))
        sol.add(clamp(q) != clamp(r))
        if smt2_path and row == l1:
            write_file(smt2_path, sol.to_smt2())
        res = sol.check()
        out["checks"] += 1
        if res == z3.sat:
            m = sol.model()
            out.update(status="refuted", witness=[row, m[x2].as_long()])
            break
        if res != z3.unsat:
            out.update(status="unknown", reason=f"row x1 = {row}: {sol.reason_unknown()}")
            break
    else:
        out["status"] = "proved"
    out["seconds"] = time.perf_counter() - t0
    return out


def _hull(points, upper):
    h = []
    for p in points:
        while len(h) >= 2:
            (ou, ok), (au, ak) = h[-2], h[-1]
            cr = (au - ou) * (p[1] - ok) - (ak - ok) * (p[0] - ou)
            if (cr >= 0) if upper else (cr <= 0):
                h.pop()
            else:
                break
        h.append(p)
    return h


def binding_points(layer, y):
    """(P, Q): per row, hull vertices of (x1, first x2 of level k, k) and (x1, last x2 below level k, k)."""
    (l1, h1), (l2, h2) = layer.in_ranges
    qmin, qmax = layer.out_range
    P, Q = [], []
    for i, x1 in enumerate(range(l1, h1 + 1)):
        row = y[i]
        rp, rq = [], []
        for k in range(qmin + 1, qmax + 1):
            T = int(np.searchsorted(row, k, side="left")) + l2  # first x2 with y >= k (row is non-decreasing)
            if T <= h2:
                if rp and rp[-1][0] == T:
                    rp[-1] = (T, k)
                else:
                    rp.append((T, k))
            if T > l2 and (not rq or rq[-1][0] != T - 1):
                rq.append((T - 1, k))
        P += [(x1, u, k) for u, k in _hull(rp, True)]
        Q += [(x1, u, k) for u, k in _hull(rq, False)]
    return P, Q


def z3_minimality(layer, y, timeout_ms=10000):
    """{"status": "proved" (no exact parameters at shift - 1) / "refuted" (smaller parameters) / "unknown"}."""
    import z3

    t0 = time.perf_counter()
    s = layer.shift - 1
    if s < 0:
        return {"status": "proved", "seconds": 0.0, "reason": "shift 0"}
    if np.all(y == y.flat[0]):
        return {"status": "refuted", "seconds": 0.0, "smaller": [0, 0, int(y.flat[0]) << s, s]}
    P, Q = binding_points(layer, y)
    A1, A2, B = z3.Ints("A1 A2 B")
    sol = z3.Solver()
    sol.set("timeout", int(timeout_ms))
    # A1, A2 >= 0 and <= (qmax - qmin + 1)*2^s lose no solution: y is non-decreasing in each input, and a
    # non-constant direction bounds its multiplier by the output span (DESIGN.md); a constant one admits 0
    top = (layer.out_range[1] - layer.out_range[0] + 1) * 2 ** s
    sol.add(A1 >= 0, A1 <= top, A2 >= 0, A2 <= top)
    for x1, u, k in P:
        sol.add(A1 * x1 + A2 * u + B >= k * 2 ** s)
    for x1, u, k in Q:
        sol.add(A1 * x1 + A2 * u + B <= k * 2 ** s - 1)
    res = sol.check()
    out = {"seconds": time.perf_counter() - t0, "constraints": len(P) + len(Q)}
    if res == z3.unsat:
        out["status"] = "proved"
    elif res == z3.sat:
        m = sol.model()
        out["status"] = "refuted"
        out["smaller"] = [m[A1].as_long(), m[A2].as_long(), m[B].as_long(), s]
    else:
        out["status"] = "unknown"
    return out


def verify_add_layer(layer, name="add", method="both", minimality=True, timeout_ms=10000, smt2_dir=None):
    """A JSON-ready record in the shape of verify.run.verify_layer's (one "channel")."""
    import os

    dt = ",".join(d.name for d in layer.in_dtypes)
    record = {"name": name, "channels": 1, "form": "add", "rounding": layer.rounding, "in_dtype": dt,
              "out_dtype": layer.out_dtype.name, "out_range": list(layer.out_range), "bound": 0, "method": method,
              "seconds": {},
              "claims": ["for every integer pair (x1, x2) in in_ranges: clamp((A1*x1 + A2*x2 + B) >> s, qmin, qmax) "
                         f"= clamp(R((s1*(x1 - z1) + s2*(x2 - z2))/s_out + z_out), qmin, qmax), R = {layer.rounding}"]
              + (["the shift is minimal: no integers (A1, A2, B) are exact at s - 1"] if minimality else [])}
    per = {"channel": 0}
    witness = None
    y = None
    pairs = (layer.in_ranges[0][1] - layer.in_ranges[0][0] + 1) * (layer.in_ranges[1][1] - layer.in_ranges[1][0] + 1)
    if method in ("breakpoints", "both") or minimality:
        t0 = time.perf_counter()
        if pairs <= _MAX_PYTHON_PAIRS:
            x1, x2 = _grid(layer)
            y = reference_outputs(layer, x1, x2)
            f = fixed_outputs(layer, x1, x2)
            bad = np.argwhere(f != y)
            per["exhaustive_method"] = "python-fractions"
            per["mismatches"] = int(bad.shape[0])
            per["max_error"] = int(np.abs(f - y).max())
            if bad.shape[0]:
                witness = [int(x1[tuple(bad[0])]), int(x2[tuple(bad[0])])]
        else:
            res = layer.check_exhaustive()
            per["exhaustive_method"] = "core"
            per["mismatches"] = None if res is None else 1
            per["max_error"] = 0 if res is None else None
            witness = None if res is None else list(res)
        if method in ("breakpoints", "both"):
            per["breakpoints"] = PROVED if witness is None else REFUTED
        record["seconds"]["breakpoints"] = time.perf_counter() - t0
    if method in ("z3", "both"):
        path = None if smt2_dir is None else os.path.join(smt2_dir, f"{name}.smt2")
        z = z3_prove(layer, timeout_ms, path)
        per["z3"] = z["status"].upper()
        per["z3_seconds"] = round(z["seconds"], 6)
        if z["status"] == "refuted" and witness is None:
            witness = z["witness"]
        if z["status"] == "unknown":
            per["z3_reason"] = z.get("reason")
        record["seconds"]["z3"] = z["seconds"]
    verdicts = {per[m] for m in ("breakpoints", "z3") if m in per}
    per["verdict"] = REFUTED if REFUTED in verdicts else UNKNOWN if UNKNOWN in verdicts else PROVED
    if minimality:
        if y is None:
            record["minimality"] = UNKNOWN
            record["minimality_reason"] = f"the box has {pairs} pairs; the minimality certificate needs <= 2^18"
        else:
            m = z3_minimality(layer, y, 6 * timeout_ms)  # one z3 call over ~2k constraints: ~10 s here
            record["seconds"]["minimality"] = m["seconds"]
            per["minimal_shift"] = True if m["status"] == "proved" else None
            per["minimality_method"] = "z3 over row-hull binding constraints"
            if "constraints" in m:
                per["minimality_constraints"] = m["constraints"]
            if m["status"] == "refuted":
                per["minimal_shift"] = False
                per["smaller_parameters"] = m["smaller"]
            record["minimality"] = {"proved": PROVED, "refuted": REFUTED}.get(m["status"], UNKNOWN)
            record["minimality_reason"] = None if m["status"] == "proved" else (
                f"exact parameters exist at shift {layer.shift - 1}" if m["status"] == "refuted"
                else "z3 returned unknown")
    record["refutations"] = []
    if witness is not None:
        a, b = witness
        x1a, x2a = np.array([a], np.int64), np.array([b], np.int64)
        src = layer.source
        v = oref.add_value(a, b, src["in_scales"], src["in_zero_points"], src["out_scale"], src["out_zero_point"])
        record["refutations"].append({
            "channel": 0, "x": [a, b], "fixed_point": int(fixed_outputs(layer, x1a, x2a)[0]),
            "reference": int(reference_outputs(layer, x1a, x2a)[0]), "reference_value": str(v),
            "reference_value_float": float(v),
            "example": f"layer.apply(np.array([{a}]), np.array([{b}])) vs layer.reference(...)"})
    record["per_channel"] = [per]
    record["verdict"] = per["verdict"]
    if record.get("minimality") == REFUTED and record["verdict"] == PROVED:
        record["verdict"] = REFUTED
    record["max_error"] = per.get("max_error")
    record["parameters"] = [{"multipliers": list(layer.multipliers), "bias": layer.bias, "shift": layer.shift,
                             "in_ranges": [list(r) for r in layer.in_ranges], "source": dict(layer.source)}]
    record["accumulator_bits"] = layer.accumulator_bits
    record["multiplier_bits"] = layer.multiplier_bits
    return record
