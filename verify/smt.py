"""z3 encodings of one channel on its concrete numbers, independent of the C++ breakpoints.

The query is "exists an integer x in [lo, hi] with |f(x) - y(x)| > d"; unsat proves the bound (d = 0: exactness).

- f: floor as 2^s*q <= A*x + B < 2^s*(q + 1), the clamp as If.
- y: clamp(R(v), qmin, qmax) >= k  <=>  R(v) >= k for k in (qmin, qmax], and R(v) >= k is the level condition of
  fxbn.reference.level_threshold: v >= t or v > t, t = k or k - 1/2, strictness by rounding and the parity/sign
  of k.  Then f - y > d  <=>  f - d > qmin and not R(v) >= f - d,  and  y - f > d  <=>  f + d + 1 <= qmax and
  R(v) >= f + d + 1.
- affine form: v = a*x + b with a, b scaled by a common power of two to integers (QF_LIA).  The per-level
  split runs as one SMT-LIB2 script per channel (:func:`affine_level_script`: constants precomputed, no q
  variable, one z3 call); a non-unsat answer is re-derived through the Python API for the witness.
- batchnorm form: v >= t  <=>  P >= c*sqrt(r) with P = gamma*(in_scale*(x - zin) - mean),
  c = (t - zout)*out_scale - beta, r = var + eps, decided by the signs of P and c and a comparison of P^2 with
  c^2*r, all scaled to integers (QF_NIA); the square root never appears.
"""
import time
from fractions import Fraction

from verify import exact

_Z3 = None


def z3mod():
    """z3, imported on first use."""
    global _Z3
    if _Z3 is None:
        try:
            import z3
        except ImportError as e:
            raise RuntimeError("the z3 method needs z3-solver: pip install z3-solver") from e
        _Z3 = z3
    return _Z3


def solver_version():
    return z3mod().get_version_string()


def _strict(z3, k, rounding):
    """Whether R(v) >= k needs v > t (True) or v >= t, as a z3 Bool in the symbolic level k."""
    if rounding in ("floor", "half_up"):
        return z3.BoolVal(False)
    if rounding == "half_even":
        return k % 2 != 0
    return k <= 0  # half_away


def _strict_const(k, rounding):
    return rounding == "half_even" and k % 2 != 0 or rounding == "half_away" and k <= 0


def _affine_level(z3, src, x, rounding):
    """cond(k) for v = a*x + b."""
    (ia, ib), e = exact.common_scale(src["a"], src["b"])
    V = ia * x + ib                    # v * 2^e
    V2 = 2 * V
    D = 1 << e

    def cond(k):
        if rounding == "floor":
            return V >= k * D
        if isinstance(k, int):         # a constant level: no If, no parity term
            t2 = (2 * k - 1) * D
            return V2 > t2 if _strict_const(k, rounding) else V2 >= t2
        t2 = (2 * k - 1) * D          # 2 * t * 2^e
        return z3.If(_strict(z3, k, rounding), V2 > t2, V2 >= t2)

    return cond, "QF_LIA"


def _batchnorm_level(z3, src, x, lo, hi, rounding, fresh, defs):
    """cond(k) for the batchnorm form: P >= c*sqrt(r) by signs and squares, all integers.

    The auxiliary integers P, c are defined by equations appended to `defs`, which must be asserted at top level
    (cond(k) also appears negated)."""
    F = Fraction
    g, beta, mean = F(src["gamma"]), F(src["beta"]), F(src["mean"])
    s_in, s_out = F(src["in_scale"]), F(src["out_scale"])
    zin, zout = src["in_zero_point"], src["out_zero_point"]
    r = F(src["var"]) + F(src["eps"])
    half = 0 if rounding == "floor" else 1
    # 2P = p1*x + p0 and 2c = c1*k + c0 (t = k - half/2)
    p1, p0 = 2 * g * s_in, -2 * g * (s_in * zin + mean)
    c1, c0 = 2 * s_out, -half * s_out - 2 * zout * s_out - 2 * beta
    (ip1, ip0, ic1, ic0), _ = exact.common_scale(p1, p0, c1, c0)
    nr, dr = r.numerator, r.denominator
    pv = fresh("P")
    defs.append(pv == ip1 * x + ip0)
    ends = sorted((ip1 * lo + ip0, ip1 * hi + ip0))
    defs += [pv >= ends[0], pv <= ends[1]]          # redundant bounds: they help the nonlinear solver

    def cond(k):
        if isinstance(k, int):
            cv = ic1 * k + ic0
        else:
            cv = fresh("c")
            defs.append(cv == ic1 * k + ic0)
        pp, cc = pv * pv * dr, cv * cv * nr          # P^2 vs c^2 * r, scaled by dr
        ge = z3.Or(z3.And(cv <= 0, pv >= 0), z3.And(cv <= 0, pv < 0, pp <= cc), z3.And(cv > 0, pv > 0, pp >= cc))
        gt = z3.Or(z3.And(cv < 0, pv >= 0), z3.And(cv < 0, pv < 0, pp < cc), z3.And(cv == 0, pv > 0),
                   z3.And(cv > 0, pv > 0, pp > cc))
        if isinstance(k, int):
            return z3.simplify(gt if _strict_const(k, rounding) else ge)
        return z3.If(_strict(z3, k, rounding), gt, ge)

    return cond, "QF_NIA"


def _channel_query(layer, c):
    """Shared pieces of a channel's query: (z3, x, q, A, B, s, lo, hi, level condition, definitions, logic, the
    datapath facts lo <= x <= hi and 2^s*q <= A*x + B < 2^s*(q + 1))."""
    z3 = z3mod()
    A, B, s, lo, hi = exact.channel_params(layer, c)
    src = exact.channel_source(layer, c)
    x, q = z3.Ints("x q")
    counter = iter(range(1 << 30))
    defs = []

    def fresh(name):
        return z3.Int(f"{name}{next(counter)}")

    if src["form"] == "affine":
        cond, logic = _affine_level(z3, src, x, layer.rounding)
    else:
        cond, logic = _batchnorm_level(z3, src, x, lo, hi, layer.rounding, fresh, defs)
    acc, scale = A * x + B, 1 << s
    facts = [x >= lo, x <= hi, scale * q <= acc, acc < scale * (q + 1)]
    return z3, x, q, (A, B, s, lo, hi), cond, defs, logic, facts


def channel_assertions(layer, c, bound=0):
    """(assertions, x, logic) of the query 'some x in range has |f(x) - y(x)| > bound' for channel c."""
    z3, x, q, _, cond, defs, logic, facts = _channel_query(layer, c)
    qmin, qmax = layer.out_range
    f = z3.Int("f")
    d = int(bound)
    facts = facts + [f == z3.If(q < qmin, qmin, z3.If(q > qmax, qmax, q)), f >= qmin, f <= qmax]
    violation = z3.Or(z3.And(f - d > qmin, z3.Not(cond(f - d))), z3.And(f + d + 1 <= qmax, cond(f + d + 1)))
    return facts + defs + [violation], x, logic


def level_split(layer, c, bound=0):
    """(common assertions, [(level, assertions)], x, logic): the query split by the fixed-point output level.

    Over the x where f(x) = v the reference level k = v - d or v + d + 1 is a constant, so the batchnorm squares
    are quadratic in x alone; the split is exhaustive (every level f attains in range is listed)."""
    z3, x, q, (A, B, s, lo, hi), cond, defs, logic, facts = _channel_query(layer, c)
    qmin, qmax = layer.out_range
    common = facts + defs
    f_lo, f_hi = sorted(exact.fixed_output(A, B, s, v, qmin, qmax) for v in (lo, hi))
    d = int(bound)
    parts = []
    for v in range(f_lo, f_hi + 1):
        at_v = (q <= qmin) if v == qmin else (q >= qmax) if v == qmax else (q == v)
        bad = []
        if v - d > qmin:
            bad.append(z3.Not(cond(v - d)))
        if v + d + 1 <= qmax:
            bad.append(cond(v + d + 1))
        if bad:
            parts.append((v, [at_v, z3.Or(*bad)]))
    return common, parts, x, logic


def _num(v):
    """An SMT-LIB2 integer literal."""
    return str(v) if v >= 0 else f"(- {-v})"


def affine_level_script(layer, c, bound=0, timeout_ms=None, rlimit=None, group=16):
    """(SMT-LIB2 text, [levels]) of the affine channel's query, split by fixed-point output level, as one script.

    Every constant is precomputed with Python integers; the script states the semantics, z3 decides them:
    x in [lo, hi]; acc = A*x + B; f(x) = v  <=>  2^s*v <= acc (v > qmin) and acc < 2^s*(v + 1) (v < qmax), the
    clamp folded into the one-sided ends; V = 2*v(x)*2^e = 2*ia*x + 2*ib (a, b scaled to integers) and
    R(v) >= k  <=>  V >= t(k), with t(k) = 2*k*2^e (floor) or (2k - 1)*2^e, plus 1 where the tie must go down
    (half_even at odd k, half_away at k <= 0): for integers, V > t  <=>  V >= t + 1.  The first check states that
    f leaves [f(lo), f(hi)] nowhere in range (the split is exhaustive); then (push)(assert)(check-sat)(pop) for
    the disjunction over `group` consecutive output levels v of: f = v and (R(v(x)) < v - d  or
    R(v(x)) >= v + d + 1).  Expected: unsat for every check.  No q variable: with the level fixed, each disjunct
    is linear in x alone.  ``levels`` lists, per check, None (the exhaustiveness check) or its output levels."""
    A, B, s, lo, hi = exact.channel_params(layer, c)
    qmin, qmax = layer.out_range
    src = exact.channel_source(layer, c)
    (ia, ib), e = exact.common_scale(src["a"], src["b"])
    D = 1 << e
    rounding = layer.rounding
    S = 1 << s
    d = int(bound)
    n = _num
    opts = f"(set-option :timeout {int(timeout_ms) if timeout_ms else 4294967295})"      # options outlive (reset)
    opts += "" if not rlimit else f"(set-option :rlimit {int(rlimit)})"

    def cond(k):                                         # R(v) >= k for a constant level k
        if rounding == "floor":
            return f"(>= V {n(2 * k * D)})"
        t2 = (2 * k - 1) * D
        return f"(>= V {n(t2 + 1 if _strict_const(k, rounding) else t2)})"

    f_lo, f_hi = sorted(exact.fixed_output(A, B, s, v, qmin, qmax) for v in (lo, hi))
    outside = ([f"(< acc {n(S * f_lo)})"] if f_lo > qmin else []) + \
        ([f"(>= acc {n(S * (f_hi + 1))})"] if f_hi < qmax else [])
    blocks = ["(push 1)(assert " + (outside[0] if len(outside) == 1 else f"(or {' '.join(outside)})")
              + ")(check-sat)(pop 1)\n" if outside else "(push 1)(assert false)(check-sat)(pop 1)\n"]
    levels = [None]
    cases = []
    for v in range(f_lo, f_hi + 1):
        bad = []
        if v - d > qmin:
            bad.append(f"(not {cond(v - d)})")
        if v + d + 1 <= qmax:
            bad.append(cond(v + d + 1))
        if not bad:
            continue
        at = ([f"(<= {n(S * v)} acc)"] if v > qmin else []) + ([f"(< acc {n(S * (v + 1))})"] if v < qmax else [])
        cases.append((v, f"(and {' '.join(at + [bad[0] if len(bad) == 1 else f'(or {chr(32).join(bad)})'])})"))
    for i in range(0, len(cases), group):          # `group` levels per check: fewer checks, same query
        part = cases[i:i + group]
        body = part[0][1] if len(part) == 1 else f"(or {' '.join(b for _, b in part)})"
        blocks.append(f"(push 1)(assert {body})(check-sat)(pop 1)\n")
        levels.append([v for v, _ in part])
    head = (f"(set-logic QF_LIA){opts}(declare-const x Int)(assert (<= {n(lo)} x))(assert (<= x {n(hi)}))"
            f"(define-fun acc () Int (+ (* {n(A)} x) {n(B)}))(define-fun V () Int (+ (* {n(2 * ia)} x) {n(2 * ib)}))\n")
    return head + "".join(blocks), levels


_CTX = None


def _eval_script(text):
    """Run an SMT-LIB2 script in this process's scratch z3 context (reset first); the check-sat answers."""
    global _CTX
    z3 = z3mod()
    if _CTX is None:
        _CTX = z3.Context()
    try:
        out = z3.Z3_eval_smtlib2_string(_CTX.ref(), "(reset)" + text)
    except z3.Z3Exception as e:                 # any error (e.g. a canceled push) voids every answer
        out = "(error " + str(e)[:200]
    if "(error" in out:
        _CTX = None                             # options and spent resources outlive (reset): start afresh
        return ["error", out[:200]]
    return out.split()


def prove_channel_split(layer, c, bound=0, timeout_ms=10000, rlimit=None, smt2_path=None, fast=True):
    """prove_channel with the query split by output level.

    Affine channels (fast=True, no rlimit) run :func:`affine_level_script` in one z3 call; anything but unsat for
    every check (sat, unknown, an error) is re-derived with the Python API (one incremental solver, one check per
    level), which gives the witness or the reason.
    Batchnorm channels always use the API (QF_NIA, squares)."""
    if fast and layer.source["form"] == "affine" and not rlimit:      # rlimit: the API's per-solver semantics
        t_build = time.perf_counter()
        text, levels = affine_level_script(layer, c, bound, timeout_ms, rlimit)
        if smt2_path is not None:
            with open(smt2_path, "w") as fh:
                fh.write(f"; fxbn channel {c}: first check: f leaves [f(lo), f(hi)]; then one check per group of "
                         f"fixed-point output levels; sat iff some x in range has |f(x) - y(x)| > {bound}; expected: "
                         f"unsat for every check\n" + text)
        t0 = time.perf_counter()
        answers = _eval_script(text)
        seconds = time.perf_counter() - t0
        if answers == ["unsat"] * len(levels):
            return {"status": "proved", "logic": "QF_LIA", "checks": len(levels), "seconds": seconds,
                    "build_seconds": t0 - t_build, "encoding": "affine-script"}
        if answers and answers[0] == "sat":
            return {"status": "unknown", "logic": "QF_LIA", "checks": len(levels), "seconds": seconds,
                    "build_seconds": t0 - t_build, "reason": "the level split is not exhaustive (f leaves "
                                                             "[f(lo), f(hi)]): encoding error"}
        out = prove_channel_split(layer, c, bound, timeout_ms, rlimit, None, fast=False)
        out["seconds"] += seconds
        out["build_seconds"] += t0 - t_build
        first = next((i for i, a in enumerate(answers) if a != "unsat"), None)
        if out["status"] == "proved" and first is not None:
            out.update(status="unknown", reason=f"level {levels[first]}: the script answered "
                                                f"{answers[first]!r}, the API unsat")
        return out
    return _prove_split_api(layer, c, bound, timeout_ms, rlimit, smt2_path)


def _prove_split_api(layer, c, bound=0, timeout_ms=10000, rlimit=None, smt2_path=None):
    """The level split through the Python API: one incremental solver, one check per level."""
    z3 = z3mod()
    t_build = time.perf_counter()
    common, parts, x, logic = level_split(layer, c, bound)
    if smt2_path is not None:
        s0 = z3.Solver()
        s0.add(*common)
        text = s0.to_smt2().rsplit("(check-sat)", 1)[0]
        blocks = "".join("(push 1)\n" + "".join(f"(assert {e.sexpr()})\n" for e in extra) + "(check-sat)\n(pop 1)\n"
                         for _, extra in parts)
        with open(smt2_path, "w") as fh:
            fh.write(f"; fxbn channel {c}: one check per fixed-point output level; sat iff some x in range has "
                     f"|f(x) - y(x)| > {bound}; expected: unsat for every check\n(set-logic {logic})\n" + text
                     + blocks)
    solver = make_solver(common, logic, timeout_ms, rlimit)
    t0 = time.perf_counter()
    out = {"status": "proved", "logic": logic, "checks": len(parts)}
    for v, extra in parts:
        solver.push()
        solver.add(*extra)
        result = solver.check()
        if result == z3.sat:
            xv = solver.model().eval(x, model_completion=True).as_long()
            out.update(status="refuted", witness=xv)
            break
        if result != z3.unsat:
            out.update(status="unknown", reason=f"level {v}: {solver.reason_unknown()}")
            break
        solver.pop()
    out["seconds"] = time.perf_counter() - t0
    out["build_seconds"] = t0 - t_build
    if out["status"] == "refuted":
        _check_witness(layer, c, out["witness"], bound)
    return out


def _check_witness(layer, c, xv, bound):
    A, B, s, _, _ = exact.channel_params(layer, c)
    fx = exact.fixed_output(A, B, s, xv, *layer.out_range)
    yx = exact.reference_output(layer, c, xv)
    if abs(fx - yx) <= bound:
        raise RuntimeError(f"channel {c}: z3 model x={xv} does not violate the bound (f={fx}, y={yx}); "
                           "the encoding is wrong")


def make_solver(assertions, logic, timeout_ms=None, rlimit=None):
    z3 = z3mod()
    solver = z3.SolverFor(logic)
    if timeout_ms:
        solver.set("timeout", int(timeout_ms))
    if rlimit:
        solver.set("rlimit", int(rlimit))
    solver.add(*assertions)
    return solver


def to_smt2(assertions, logic, comment=""):
    """A self-contained SMT-LIB2 script (set-logic, declarations, asserts, check-sat) for any SMT solver."""
    z3 = z3mod()
    s = z3.Solver()
    s.add(*assertions)
    head = "".join(f"; {line}\n" for line in comment.splitlines())
    return head + f"(set-logic {logic})\n" + s.to_smt2()


def prove_channel(layer, c, bound=0, timeout_ms=10000, rlimit=None, smt2_path=None):
    """Decide the bound for channel c with z3.

    Returns
    -------
    dict
        ``status`` ("proved" | "refuted" | "unknown"), ``witness`` (int x, signed, re-checked in Python) when
        refuted, ``reason`` when unknown, ``seconds``, ``logic``.
    """
    z3 = z3mod()
    assertions, x, logic = channel_assertions(layer, c, bound)
    if smt2_path is not None:
        with open(smt2_path, "w") as fh:
            fh.write(to_smt2(assertions, logic, f"fxbn channel {c}: sat iff some x in range has |f(x) - y(x)| > "
                                                f"{bound}; expected: unsat"))
    solver = make_solver(assertions, logic, timeout_ms, rlimit)
    t0 = time.perf_counter()
    result = solver.check()
    seconds = time.perf_counter() - t0
    out = {"status": "unknown", "seconds": seconds, "logic": logic}
    if result == z3.unsat:
        out["status"] = "proved"
    elif result == z3.sat:
        xv = solver.model().eval(x, model_completion=True).as_long()   # Int sort: already signed
        _check_witness(layer, c, xv, bound)
        out.update(status="refuted", witness=xv)
    else:
        out["reason"] = solver.reason_unknown()
    return out


def max_error_channel(layer, c, start=0, limit=None, timeout_ms=10000):
    """Exact max |f - y| of channel c by z3 alone: the smallest d whose bound is proved, with a witness at d - 1."""
    d, witness = start, None
    limit = layer.out_range[1] - layer.out_range[0] if limit is None else limit
    while d <= limit:
        r = prove_channel(layer, c, d, timeout_ms)
        if r["status"] == "proved":
            return {"max_error": d, "witness": witness}
        if r["status"] == "unknown":
            return {"max_error": None, "reason": r.get("reason")}
        witness = r["witness"]
        d += 1
    return {"max_error": d, "witness": witness}
