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
  c^2*r, all scaled to integers (QF_NIA); the square root never appears.  This exact encoding is the ground
  truth (:func:`_prove_split_api`); the fast path (:func:`prove_batchnorm_bracket`) brackets sqrt(r) between
  rationals L/2^p <= sqrt(r) <= H/2^p computed and checked with Python integers and runs one QF_LIA script
  whose checks over-approximate the real violations (unsat for every check: proved); a sat check is settled by
  evaluating its model exactly (a real violation: refuted), else by refining the bracket, else by the exact path.
- batches (:func:`prove_batch`): many channels per z3 call, one (push)...(pop) block each; at bound 0
  (:func:`exact_block`) f = y iff for every output threshold k, f >= k  <=>  y >= k, one xor of two atoms per k
  (A*x + B >= 2^s*k against the reference symbol's threshold); z3's time is mostly parsing and preprocessing the
  atoms, so fewer atoms, no negative numerals and shorter ones (the symbol divided by its coefficients' gcd) are
  what makes it faster.
"""
import math
import re
import threading
import time
from fractions import Fraction

from fxbn.atomic import write_file

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


def _bn_integers(src, rounding):
    """(ip1, ip0, ic1, ic0, nr, dr): R(v) >= k  <=>  ip1*x + ip0 >= (ic1*k + ic0)*sqrt(nr/dr) (> where the tie at
    level k goes down), all Python integers: 2P = p1*x + p0 and 2c = c1*k + c0 (t = k - half/2) scaled by one
    common power of two, r = var + eps = nr/dr in lowest terms."""
    F = Fraction
    g, beta, mean = F(src["gamma"]), F(src["beta"]), F(src["mean"])
    s_in, s_out = F(src["in_scale"]), F(src["out_scale"])
    zin, zout = src["in_zero_point"], src["out_zero_point"]
    r = F(src["var"]) + F(src["eps"])
    half = 0 if rounding == "floor" else 1
    p1, p0 = 2 * g * s_in, -2 * g * (s_in * zin + mean)
    c1, c0 = 2 * s_out, -half * s_out - 2 * zout * s_out - 2 * beta
    (ip1, ip0, ic1, ic0), _ = exact.common_scale(p1, p0, c1, c0)
    return ip1, ip0, ic1, ic0, r.numerator, r.denominator


def _batchnorm_level(z3, src, x, lo, hi, rounding, fresh, defs):
    """cond(k) for the batchnorm form: P >= c*sqrt(r) by signs and squares, all integers.

    The auxiliary integers P, c are defined by equations appended to `defs`, which must be asserted at top level
    (cond(k) also appears negated)."""
    ip1, ip0, ic1, ic0, nr, dr = _bn_integers(src, rounding)
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
    src = exact.channel_source(layer, c)
    (ia, ib), e = exact.common_scale(src["a"], src["b"])
    D = 1 << e
    rounding = layer.rounding
    n = _num

    def conds(k):                                        # (R(v) < k, R(v) >= k) for a constant level k
        if rounding == "floor":
            t = 2 * k * D
        else:
            t2 = (2 * k - 1) * D
            t = t2 + 1 if _strict_const(k, rounding) else t2
        return f"(not (>= V {n(t)}))", f"(>= V {n(t)})"

    return _split_script(layer, c, bound, timeout_ms, rlimit, group, "QF_LIA",
                         f"(define-fun V () Int (+ (* {n(2 * ia)} x) {n(2 * ib)}))", conds)


def _split_script(layer, c, bound, timeout_ms, rlimit, group, logic, define, conds, only=None, get_x=False):
    """The level-split script shared by the affine and the batchnorm-bracket encodings.

    ``conds(k)`` gives the SMT-LIB2 terms (violation below level k, violation at or above level k), i.e. relaxations
    (or exact forms) of R(v(x)) < k and R(v(x)) >= k in the symbols x and those of ``define``.  ``only``: a list of
    output levels to check (no exhaustiveness check) instead of every level f attains in range; ``get_x``: ask
    for the model's x after each level check (only for checks known to be sat: else z3 reports an error)."""
    A, B, s, lo, hi = exact.channel_params(layer, c)
    qmin, qmax = layer.out_range
    S = 1 << s
    d = int(bound)
    n = _num
    opts = f"(set-option :timeout {int(timeout_ms) if timeout_ms else 4294967295})"      # options outlive (reset)
    opts += "" if not rlimit else f"(set-option :rlimit {int(rlimit)})"
    f_lo, f_hi = sorted(exact.fixed_output(A, B, s, v, qmin, qmax) for v in (lo, hi))
    blocks, levels = [], []
    if only is None:
        outside = ([f"(< acc {n(S * f_lo)})"] if f_lo > qmin else []) + \
            ([f"(>= acc {n(S * (f_hi + 1))})"] if f_hi < qmax else [])
        blocks.append("(push 1)(assert " + (outside[0] if len(outside) == 1 else f"(or {' '.join(outside)})")
                      + ")(check-sat)(pop 1)\n" if outside else "(push 1)(assert false)(check-sat)(pop 1)\n")
        levels.append(None)
    cases = []
    for v in (range(f_lo, f_hi + 1) if only is None else only):
        bad = []
        if v - d > qmin:
            bad.append(conds(v - d)[0])
        if v + d + 1 <= qmax:
            bad.append(conds(v + d + 1)[1])
        if not bad:
            continue
        at = ([f"(<= {n(S * v)} acc)"] if v > qmin else []) + ([f"(< acc {n(S * (v + 1))})"] if v < qmax else [])
        cases.append((v, f"(and {' '.join(at + [bad[0] if len(bad) == 1 else f'(or {chr(32).join(bad)})'])})"))
    for i in range(0, len(cases), group):          # `group` levels per check: fewer checks, same query
        part = cases[i:i + group]
        body = part[0][1] if len(part) == 1 else f"(or {' '.join(b for _, b in part)})"
        blocks.append(f"(push 1)(assert {body})(check-sat){'(get-value (x))' if get_x else ''}(pop 1)\n")
        levels.append([v for v, _ in part])
    head = (f"(set-logic {logic}){opts}(declare-const x Int)(assert (<= {n(lo)} x))(assert (<= x {n(hi)}))"
            f"(define-fun acc () Int (+ (* {n(A)} x) {n(B)})){define}\n")
    return head + "".join(blocks), levels


def sqrt_bracket(r, bits):
    """(L, H) with L/2^bits <= sqrt(r) <= H/2^bits, exactly: L = floor(sqrt(r)*2^bits), H = ceil(...), so H - L <= 1
    and L == H iff sqrt(r)*2^bits is an integer (r a perfect square of a dyadic and bits large enough).  Checked with
    Python integers (L^2 <= r*4^bits <= H^2); never asserted in a script."""
    r = Fraction(r)
    nr, dr = r.numerator, r.denominator
    if nr <= 0 or bits < 0:
        raise ValueError(f"sqrt_bracket needs r > 0 and bits >= 0, got r={r}, bits={bits}")
    scaled = nr << (2 * bits)                         # r*4^bits = scaled/dr
    L = math.isqrt(scaled // dr)                      # floor(sqrt(floor(y))) == floor(sqrt(y))
    H = L if L * L * dr == scaled else L + 1
    if not (L * L * dr <= scaled <= H * H * dr and H - L <= 1):
        raise AssertionError(f"sqrt bracket of {r} at {bits} bits is wrong: L={L}, H={H}")
    return L, H


def bracket_bits(layer, c, extra=64):
    """Default precision of the batchnorm bracket: the bits of max|C(k)|/|p1| (the crossings' magnitude) plus
    `extra`, and at least what makes a perfect-square r exact (sqrt(nr/2^m) = sqrt(nr)/2^(m/2))."""
    ip1, _, ic1, ic0, nr, dr = _bn_integers(exact.channel_source(layer, c), layer.rounding)
    qmin, qmax = layer.out_range
    cmax = max(abs(ic1 * k + ic0) for k in (qmin, qmax + 1))
    bits = max(0, cmax.bit_length() - abs(ip1).bit_length()) + int(extra)
    if math.isqrt(nr) ** 2 == nr and math.isqrt(dr) ** 2 == dr:
        bits = max(bits, (dr.bit_length() - 1) // 2 + 1)
    return bits


def batchnorm_bracket_script(layer, c, bound=0, timeout_ms=None, rlimit=None, group=16, bits=None, only=None,
                             get_x=False):
    """(SMT-LIB2 text, [levels], bracket) of a batchnorm channel's query, split by output level, in QF_LIA.

    R(v(x)) >= k  <=>  P >= C(k)*sqrt(r)  (P > ... where the tie at k goes down), with P = ip1*x + ip0 and
    C(k) = ic1*k + ic0 integers (:func:`_bn_integers`).  With sqrt(r) in [L/2^p, H/2^p] (:func:`sqrt_bracket`,
    exact integers), W = C*sqrt(r)*2^p lies in [min(C*L, C*H), max(C*L, C*H)], so a real violation below level k
    (P*2^p < W, or <= W) implies P*2^p < max(C*L, C*H) (or <=), and a real violation at or above k (P*2^p >= W, or
    > W) implies P*2^p >= min(C*L, C*H) (or >); P is an integer, so P*2^p < K  <=>  P < ceil(K/2^p) and
    P*2^p >= K  <=>  P >= ceil(K/2^p) (the script's constants stay the size of P's, whatever p).  The script
    (structure of :func:`affine_level_script`) asserts these implied, linear conditions: every check
    over-approximates the real violations of its levels, so unsat for every check proves the channel; a sat
    answer may be an artefact of the bracket (exact when L == H, e.g. r = 1/4).  ``bits`` defaults to
    :func:`bracket_bits`; ``only`` / ``get_x`` as in :func:`_split_script`.  ``bracket``: {"bits": p, "L": L,
    "H": H, "r": (nr, dr), "C": (ic1, ic0)}."""
    src = exact.channel_source(layer, c)
    rounding = layer.rounding
    ip1, ip0, ic1, ic0, nr, dr = _bn_integers(src, rounding)
    p = bracket_bits(layer, c) if bits is None else int(bits)
    L, H = sqrt_bracket(Fraction(nr, dr), p)
    n = _num

    def conds(k):
        C = ic1 * k + ic0
        wl, wh = sorted((C * L, C * H))
        strict = _strict_const(k, rounding)
        # P*2^p < K  <=>  P < ceil(K/2^p) and P*2^p >= K  <=>  P >= ceil(K/2^p), P an integer
        below, above = -((-(wh + 1 if strict else wh)) >> p), -((-(wl + 1 if strict else wl)) >> p)
        return f"(< P {n(below)})", f"(>= P {n(above)})"

    text, levels = _split_script(layer, c, bound, timeout_ms, rlimit, group, "QF_LIA",
                                 f"(define-fun P () Int (+ (* {n(ip1)} x) {n(ip0)}))", conds, only, get_x)
    return text, levels, {"bits": p, "L": L, "H": H, "r": (nr, dr), "C": (ic1, ic0)}


def _bracket_header(c, bound, bracket):
    p, L, H, (nr, dr), (ic1, ic0) = bracket["bits"], bracket["L"], bracket["H"], bracket["r"], bracket["C"]
    lines = [
        f"fxbn channel {c}, batchnorm form: encoding batchnorm-bracket-script (QF_LIA), bracket of {p} bits.",
        f"r = var + eps = {nr}/{dr};  sqrt(r) in [L/2^{p}, H/2^{p}] with L = {L}, H = {H}"
        + (" (exact: L = H)" if L == H else "") + ",",
        f"checked with exact integers in Python: L^2*{dr} <= {nr}*4^{p} <= H^2*{dr} (not asserted here: a false",
        "ground assertion would make every check unsat).",
        "The reference's level condition R(v(x)) >= k is P >= C(k)*sqrt(r) (> where the tie at k goes down), with",
        f"P = ip1*x + ip0 (defined below) and C(k) = ic1*k + ic0 integers (ic1 = {ic1}, ic0 = {ic0}).",
        "C*sqrt(r)*2^p lies between C*L and C*H, so a real violation below level k (P*2^p < C*sqrt(r)*2^p)",
        "implies P*2^p < max(C*L, C*H), and one at or above level k implies P*2^p >= min(C*L, C*H) (strict:",
        "<= and >, i.e. < K + 1 and >= K + 1); P is an integer, so P*2^p < K <=> P < ceil(K/2^p) and",
        "P*2^p >= K <=> P >= ceil(K/2^p): the constants below.  Each check thus asserts conditions implied by the",
        "real violations of its levels (an over-approximation), hence sound.",
        "First check: f leaves [f(lo), f(hi)] (the split is exhaustive); then one check per group of fixed-point",
        f"output levels, sat if some x in range may have |f(x) - y(x)| > {bound}.",
        "Expected: unsat for every check, which proves the bound for every x in range (a sat answer may be an",
        "artefact of the bracket: fxbn then evaluates the model exactly and refines the bracket).",
    ]
    return "".join(f"; {line}\n" for line in lines)


_MODEL_X = re.compile(r"\(\(x\s+(?:\(-\s*(\d+)\)|(\d+))\)\)")


def _bracket_model(layer, c, bound, timeout_ms, part, bits):
    """x of a model of the bracket check over the levels `part` (known sat), or None."""
    text, _, _ = batchnorm_bracket_script(layer, c, bound, timeout_ms, None, len(part), bits, part, get_x=True)
    out, _ = _eval_raw(text)
    if out is None or not out.split() or out.split()[0] != "sat":
        return None
    m = _MODEL_X.search(out)
    if m is None:
        return None
    return -int(m.group(1)) if m.group(1) is not None else int(m.group(2))


def prove_batchnorm_bracket(layer, c, bound=0, timeout_ms=10000, smt2_path=None, bits=None, refine_bits=64,
                            rounds=3, group=16):
    """Decide a batchnorm channel with :func:`batchnorm_bracket_script` (QF_LIA, one z3 call when it proves).

    unsat for every check: proved.  A sat check: the model's x is evaluated exactly (fixed point vs
    exact.reference_output); a real violation is the witness (refuted), otherwise the sat levels are re-checked
    with `refine_bits` more bits, up to `rounds` times; anything still undecided (or an unknown / error answer)
    falls back to the exact per-level QF_NIA path (:func:`_prove_split_api`), the ground truth."""
    t_start = time.perf_counter()
    solve = [0.0]

    def run(text):
        t0 = time.perf_counter()
        answers = _eval_script(text)
        solve[0] += time.perf_counter() - t0
        return answers

    text, levels, bracket = batchnorm_bracket_script(layer, c, bound, timeout_ms, None, group, bits)
    first_bits = p = bracket["bits"]
    answers = run(text)
    out = {"status": "proved", "logic": "QF_LIA", "checks": len(levels), "encoding": "batchnorm-bracket-script",
           "bracket_bits": p, "refinements": 0}

    def finish():
        if smt2_path is not None:
            full, fb = (text, bracket) if p == first_bits else batchnorm_bracket_script(
                layer, c, bound, timeout_ms, None, group, p)[::2]
            write_file(smt2_path, _bracket_header(c, bound, fb) + full)
        out["bracket_bits"] = p
        out["seconds"] = solve[0]
        out["build_seconds"] = time.perf_counter() - t_start - solve[0]
        if out["status"] == "refuted":
            _check_witness(layer, c, out["witness"], bound)
        return out

    A, B, s, _, _ = exact.channel_params(layer, c)
    qmin, qmax = layer.out_range
    reason = None
    if len(answers) != len(levels) or any(a not in ("sat", "unsat") for a in answers):
        bad = next((i for i, a in enumerate(answers) if a not in ("sat", "unsat")), len(answers))
        reason = f"the bracket script answered {answers[bad] if bad < len(answers) else 'too few answers'!r}"
    elif answers[0] == "sat":
        out.update(status="unknown", reason="the level split is not exhaustive (f leaves [f(lo), f(hi)]): "
                                            "encoding error")
        return finish()
    else:
        pending = [lv for lv, a in zip(levels[1:], answers[1:]) if a == "sat"]
        for rnd in range(rounds + 1):
            if not pending:
                return finish()
            artefacts = []
            for part in pending:
                t0 = time.perf_counter()
                xv = _bracket_model(layer, c, bound, timeout_ms, part, p)
                solve[0] += time.perf_counter() - t0
                if xv is None:
                    reason = f"output levels {part[0]}..{part[-1]}: no model from the bracket script"
                    break
                if abs(exact.fixed_output(A, B, s, xv, qmin, qmax) - exact.reference_output(layer, c, xv)) > bound:
                    out.update(status="refuted", witness=xv)
                    return finish()
                artefacts += part
            if reason is not None or rnd == rounds:
                break
            p += int(refine_bits)
            out["refinements"] += 1
            rtext, rlevels, _ = batchnorm_bracket_script(layer, c, bound, timeout_ms, None, group, p, artefacts)
            answers = run(rtext)
            out["checks"] += len(rlevels)
            if len(answers) != len(rlevels) or any(a not in ("sat", "unsat") for a in answers):
                reason = f"the refined bracket script ({p} bits) answered {answers[:1]!r}"
                break
            pending = [lv for lv, a in zip(rlevels, answers) if a == "sat"]
        if reason is None:
            lv = [v for part in pending for v in part]
            reason = (f"{len(lv)} output levels ({lv[0]}..{lv[-1]}): sat, no real violation at the models, up to a "
                      f"{p}-bit bracket")
    res = _prove_split_api(layer, c, bound, timeout_ms, None, smt2_path)
    res["encoding"] = "batchnorm-nia-api (bracket fallback)"
    res["fallback_reason"] = reason
    res["bracket_bits"] = p
    res["refinements"] = out["refinements"]
    res["checks"] += out["checks"]
    res["seconds"] += solve[0]
    res["build_seconds"] = time.perf_counter() - t_start - res["seconds"]
    return res


_LOCAL = threading.local()        # one scratch z3 context per thread (contexts are not thread-safe)


def _eval_raw(text):
    """Run an SMT-LIB2 script in this thread's scratch z3 context (reset first); z3's output, None on any error."""
    z3 = z3mod()
    ctx = getattr(_LOCAL, "ctx", None)
    if ctx is None:
        ctx = _LOCAL.ctx = z3.Context()
    try:
        out = z3.Z3_eval_smtlib2_string(ctx.ref(), "(reset)" + text)
    except z3.Z3Exception as e:                 # any error (e.g. a canceled push) voids every answer
        out = "(error " + str(e)[:200]
    if "(error" in out:
        _LOCAL.ctx = None                       # options and spent resources outlive (reset): start afresh
        return None, out[:200]
    return out, None


def _eval_script(text):
    """Run an SMT-LIB2 script in this process's scratch z3 context (reset first); the check-sat answers."""
    out, err = _eval_raw(text)
    return ["error", err] if out is None else out.split()


def prove_channel_split(layer, c, bound=0, timeout_ms=10000, rlimit=None, smt2_path=None, fast=True):
    """prove_channel with the query split by output level.

    Affine channels (fast=True, no rlimit) run :func:`affine_level_script` in one z3 call; anything but unsat for
    every check (sat, unknown, an error) is re-derived with the Python API (one incremental solver, one check per
    level), which gives the witness or the reason.
    Batchnorm channels (fast=True, no rlimit) run :func:`prove_batchnorm_bracket` (QF_LIA script, the square
    root bracketed by exact rationals; the exact QF_NIA API path as fallback).  With rlimit, or fast=False, both
    forms use the API (one incremental solver, the rlimit's per-solver semantics)."""
    if fast and layer.source["form"] != "affine" and not rlimit:
        return prove_batchnorm_bracket(layer, c, bound, timeout_ms, smt2_path)
    if fast and layer.source["form"] == "affine" and not rlimit:      # rlimit: the API's per-solver semantics
        t_build = time.perf_counter()
        text, levels = affine_level_script(layer, c, bound, timeout_ms, rlimit)
        if smt2_path is not None:
            write_file(smt2_path, f"; fxbn channel {c}: first check: f leaves [f(lo), f(hi)]; then one check per "
                                  f"group of fixed-point output levels; sat iff some x in range has |f(x) - y(x)| > "
                                  f"{bound}; expected: unsat for every check\n" + text)
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
        write_file(smt2_path, f"; fxbn channel {c}: one check per fixed-point output level; sat iff some x in range "
                              f"has |f(x) - y(x)| > {bound}; expected: unsat for every check\n(set-logic {logic})\n"
                              + text + blocks)
    solver = make_solver(common, logic, timeout_ms, rlimit)
    t0 = time.perf_counter()
    out = {"status": "proved", "logic": logic, "checks": len(parts), "encoding": "level-split-api"}
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
        write_file(smt2_path, to_smt2(assertions, logic, f"fxbn channel {c}: sat iff some x in range has "
                                                         f"|f(x) - y(x)| > {bound}; expected: unsat"))
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


def _channel_encoding(layer, c):
    """(logic, define, conds) of channel c for the level/threshold scripts: the affine form exactly, the batchnorm
    form through the default sqrt bracket (:func:`batchnorm_bracket_script`'s relaxation)."""
    rounding = layer.rounding
    n = _num
    src = exact.channel_source(layer, c)
    if src["form"] == "affine":
        (ia, ib), e = exact.common_scale(src["a"], src["b"])
        D = 1 << e

        def conds(k):
            if rounding == "floor":
                t = 2 * k * D
            else:
                t = (2 * k - 1) * D + (1 if _strict_const(k, rounding) else 0)
            return f"(< V {n(t)})", f"(>= V {n(t)})"

        return f"(define-fun V () Int (+ (* {n(2 * ia)} x) {n(2 * ib)}))", conds
    ip1, ip0, ic1, ic0, nr, dr = _bn_integers(src, rounding)
    p = bracket_bits(layer, c)
    L, H = sqrt_bracket(Fraction(nr, dr), p)

    def conds(k):
        C = ic1 * k + ic0
        wl, wh = (C * L, C * H) if C >= 0 else (C * H, C * L)
        strict = _strict_const(k, rounding)
        below, above = -((-(wh + 1 if strict else wh)) >> p), -((-(wl + 1 if strict else wl)) >> p)
        return f"(< P {n(below)})", f"(>= P {n(above)})"

    return f"(define-fun P () Int (+ (* {n(ip1)} x) {n(ip0)}))", conds


def threshold_block(layer, c, bound=0):
    """One channel's query as a self-contained (push)...(check-sat)(pop) SMT-LIB2 block, split by output threshold.

    f - y > d  <=>  some k has f >= k + d and y < k (k = y + 1);  y - f > d  <=>  some k has f < k - d and y >= k
    (k = y).  For qmin < j <= qmax, f >= j  <=>  acc >= 2^s*j (the clamp is monotone in q); f >= j is false for
    j > qmax and f < j false for j <= qmin.  With f confined to [f(lo), f(hi)] (a disjunct of the same query
    states that it leaves it), the thresholds k in [max(qmin + 1, f(lo) - d), min(qmax, f(hi) + d + 1)] suffice
    (k = max(y + 1, f(lo) - d), resp. min(y, f(hi) + d + 1)).  y >= k is the level condition R(v(x)) >= k, exact
    for the affine form and over-approximated (both ways) by the sqrt bracket for the batchnorm form, as in
    :func:`batchnorm_bracket_script`: unsat proves the bound for every x in range, sat may be a bracket artefact.
    One check per channel, its symbols declared inside the push, so many channels share one z3 call."""
    A, B, s, lo, hi = exact.channel_params(layer, c)
    qmin, qmax = layer.out_range
    S = 1 << s
    d = int(bound)
    n = _num
    define, conds = _channel_encoding(layer, c)
    f_lo, f_hi = sorted(exact.fixed_output(A, B, s, v, qmin, qmax) for v in (lo, hi))
    parts = ([f"(< acc {n(S * f_lo)})"] if f_lo > qmin else []) + \
        ([f"(>= acc {n(S * (f_hi + 1))})"] if f_hi < qmax else [])
    for k in range(max(qmin + 1, f_lo - d), min(qmax, f_hi + d + 1) + 1):
        below, above = conds(k)
        if k + d <= qmax:
            parts.append(f"(and (>= acc {n(S * (k + d))}) {below})")
        if k - d > qmin:
            parts.append(f"(and (< acc {n(S * (k - d))}) {above})")
    body = "false" if not parts else parts[0] if len(parts) == 1 else f"(or {' '.join(parts)})"
    return (f"(push 1)(declare-const x Int)(define-fun acc () Int (+ (* {n(A)} x) {n(B)})){define}"
            f"(assert (<= {n(lo)} x))(assert (<= x {n(hi)}))(assert {body})(check-sat)(pop 1)\n")


def _level_thresholds(layer, c, ks, reduced=False):  # ks: a range of consecutive levels
    """((r1, r0), [(below_k, above_k)] for k in ks): the reference's linear symbol sym = r1*x + r0 (integers) and
    its thresholds: R(v(x)) < k implies sym < below_k and R(v(x)) >= k implies sym >= above_k; so below_k ==
    above_k means sym >= above_k <=> R(v(x)) >= k.

    Affine: sym = V = 2*v(x)*2^e (exact, below == above).  Batchnorm: sym = P and the square root bracketed as in
    :func:`batchnorm_bracket_script`, with at least bits(max|C(k)|) + 32 bits, so that for all but the rare level
    whose threshold lies within |C(k)|*2^-p of a lattice point the two integers coincide and the check is exact.
    reduced: the symbol divided by g = gcd(r1, r0) and every threshold M by ceil(M/g) (for an integer sym' = sym/g,
    sym < M  <=>  sym' < ceil(M/g) and sym >= M  <=>  sym' >= ceil(M/g), so the implications hold for sym'); the
    batchnorm thresholds are then ceil(ceil(W/2^p)/g) = -((-W >> p) // g)."""
    rounding = layer.rounding
    src = exact.channel_source(layer, c)
    if src["form"] == "affine":
        (ia, ib), e = exact.common_scale(src["a"], src["b"])
        D = 1 << e
        out = []
        for k in ks:
            t = 2 * k * D if rounding == "floor" else (2 * k - 1) * D + (1 if _strict_const(k, rounding) else 0)
            out.append((t, t))
        r1, r0 = 2 * ia, 2 * ib
        g = (math.gcd(r1, r0) or 1) if reduced else 1
        if g > 1:
            return (r1 // g, r0 // g), [(-(-t // g),) * 2 for t, _ in out]
        return (r1, r0), out
    ip1, ip0, ic1, ic0, nr, dr = _bn_integers(src, rounding)
    qmin, qmax = layer.out_range
    cmax = max(abs(ic1 * k + ic0) for k in (qmin, qmax + 1))
    p = max(0, cmax.bit_length() - abs(ip1).bit_length()) + 64
    if math.isqrt(nr) ** 2 == nr and math.isqrt(dr) ** 2 == dr:
        p = max(p, (dr.bit_length() - 1) // 2 + 1)
    p = max(p, cmax.bit_length() + 32)
    L, H = sqrt_bracket(Fraction(nr, dr), p)
    out = []
    g = (math.gcd(ip1, ip0) or 1) if reduced else 1   # 0: gamma = 0
    sym = (ip1 // g, ip0 // g) if g > 1 else (ip1, ip0)
    if not ks:
        return sym, out
    half_even, half_away = rounding == "half_even", rounding == "half_away"
    k = ks[0]
    C = ic1 * k + ic0
    CL, step = C * L, ic1 * L             # C(k)*L and C(k)*H = C(k)*L + C(k)*(H - L), H - L in {0, 1}: additions
    gap = H - L
    for k in ks:                          # ks: consecutive levels
        CH = CL + C if gap else CL
        wl, wh = (CL, CH) if C >= 0 else (CH, CL)
        if half_even and k & 1 or half_away and k <= 0:          # _strict_const: the tie goes down
            wl, wh = wl + 1, wh + 1
        out.append((-((-wh) >> p), -((-wl) >> p)) if g == 1 else (-(((-wh) >> p) // g), -(((-wl) >> p) // g)))
        C += ic1
        CL += step
    return sym, out


def exact_block(layer, c):
    """Channel c's exactness query (bound 0) as one (push)...(check-sat)(pop) SMT-LIB2 block: one xor per threshold.

    f = y on [lo, hi]  <=>  for every k in (qmin, qmax]: f >= k  <=>  y >= k  (two integer functions agree iff
    their upper level sets do).  f >= k  <=>  A*x + B >= 2^s*k (the clamp is monotone); y >= k  <=>  R(v(x)) >= k
    <=>  sym >= M_k for the reference's linear symbol (:func:`_level_thresholds`; where the batchnorm bracket leaves
    a gap, the two one-sided implications of :func:`threshold_block` instead).  As there, f is confined to
    [f(lo), f(hi)] by one more disjunct, so the thresholds k in [max(qmin + 1, f(lo)), min(qmax, f(hi) + 1)]
    suffice (f != y at x: k = f if y < f, k = f + 1 if y > f lie in that range).  The query
    is 'some x in range and some k with (f >= k) xor (y >= k)'; unsat proves f = y for every x in range.
    Half as many atoms as :func:`threshold_block` at bound 0, and every numeral made non-negative by adding the
    same constant to a symbol's definition and to its thresholds (z3 parses (- n) as an application): parsing
    the text is most of z3's time, mostly its numerals (z3 reads them digit by digit in rationals).  So the
    symbol is divided by the gcd g of its two coefficients (the batchnorm gamma's odd mantissa, ~7 digits of
    the ~27; at least 2 for the affine form), sym = g*sym', and each threshold with it: for an integer sym',
    g*sym' >= M  <=>  sym' >= ceil(M/g) and g*sym' < M  <=>  sym' < ceil(M/g), so a level whose two one-sided
    thresholds coincide still coincides (and its single atom is still exact: y >= k  =>  sym' >= ceil(M_above/g),
    y < k  =>  sym' < ceil(M_below/g))."""
    A, B, s, lo, hi = exact.channel_params(layer, c)
    qmin, qmax = layer.out_range
    S = 1 << s
    f_lo, f_hi = sorted(exact.fixed_output(A, B, s, v, qmin, qmax) for v in (lo, hi))
    ks = range(max(qmin + 1, f_lo), min(qmax, f_hi + 1) + 1)
    (r1, r0), th = _level_thresholds(layer, c, ks, reduced=True)
    ka = max(0, -S * f_lo)                     # the smallest accumulator threshold: every k in ks is >= f(lo)
    kr = max(0, -min((above for _, above in th), default=0))     # below >= above (ceilings of wh >= wl)
    parts = ([f"(< a {S * f_lo + ka})"] if f_lo > qmin else []) + \
        ([f"(>= a {S * (f_hi + 1) + ka})"] if f_hi < qmax else [])
    acc = S * ks.start + ka if ks else 0
    for below, above in th:
        if below == above:
            parts.append(f"(xor (>= a {acc}) (>= r {above + kr}))")
        else:
            ge = f"(>= a {acc})"
            parts.append(f"(and {ge} (< r {below + kr})) (and (not {ge}) (>= r {above + kr}))")
        acc += S
    n = _num
    body = "false" if not parts else parts[0] if len(parts) == 1 else f"(or {' '.join(parts)})"
    return (f"(push 1)(declare-const x Int)(define-fun a () Int (+ (* {n(A)} x) {n(B + ka)}))"
            f"(define-fun r () Int (+ (* {n(r1)} x) {n(r0 + kr)}))(assert (<= {n(lo)} x))(assert (<= x {n(hi)}))"
            f"(assert {body})(check-sat)(pop 1)\n")


def batch_eligible(layer, rlimit=None, smt2_path=None):
    """Whether channels of this layer can be proved in batches (:func:`prove_batch`): the fast paths' conditions."""
    return not rlimit and smt2_path is None


def prove_batch(layer, channels, bound=0, timeout_ms=10000):
    """{channel: result} for the channels that one z3 call over their :func:`exact_block` (bound 0) or
    :func:`threshold_block` (bound > 0) scripts proves
    (unsat); the others (sat, unknown, an error) are absent: the caller decides them one by one
    (:func:`prove_channel_split`, which reports the exact counterexample).  Each proved channel's ``seconds`` is
    its share of the call (``batch`` channels), ``build_seconds`` likewise."""
    channels = list(channels)
    if not channels:
        return {}
    t0 = time.perf_counter()
    opts = f"(set-option :timeout {int(timeout_ms) if timeout_ms else 4294967295})"
    block = exact_block if int(bound) == 0 else (lambda lay, c: threshold_block(lay, c, bound))
    text = "(set-logic QF_LIA)" + opts + "".join(block(layer, c) for c in channels)
    t1 = time.perf_counter()
    answers = _eval_script(text)
    t2 = time.perf_counter()
    if len(answers) != len(channels):
        return {}
    n = len(channels)
    logic = "QF_LIA"
    kind = "xor" if int(bound) == 0 else "threshold"
    encoding = f"affine-{kind}-batch" if layer.source["form"] == "affine" else f"batchnorm-bracket-{kind}-batch"
    return {c: {"status": "proved", "logic": logic, "checks": 1, "encoding": encoding, "batch": n,
                "seconds": (t2 - t1) / n, "build_seconds": (t1 - t0) / n}
            for c, a in zip(channels, answers) if a == "unsat"}
