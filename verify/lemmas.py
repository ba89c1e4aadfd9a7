"""Datapath lemmas: the C++ kernel's arithmetic is the mathematics the certificates and z3 proofs talk about.

The kernel (csrc/fxbn/kernel.cpp) computes, in an Acc = int32 or int64 register, for an input of type In:

    acc = (Acc)((U)A * (U)(Acc)x + (U)B)        wrapping unsigned multiply-add, U = unsigned Acc
    q   = acc >> min(s, w - 1)                  arithmetic shift, w = bits of Acc
    y   = (Out)min(max(q, qmin), qmax)

Lemmas, symbolic in A, B, s, x (and qmin, qmax) at the real widths, proved in QF_BV (unsat of the negation):

- ``multiply_add_truncates``: the wrapping acc is the exact integer A*x + B modulo 2^w, and
  ``fits_sign_extends``: a value in Acc's range is the sign extension of its low w bits; together: if the exact
  A*x + B lies in Acc's range, the kernel's acc equals it (no overflow).
- ``increment``: acc(x + 1) == acc(x) + A modulo 2^w (the step from one input to the next).
- ``shift_is_floor``: acc >> min(s, w - 1) == floor(acc / 2^s) for every s in [0, 62] (negative acc included).
- ``monotone``: for A >= 0 (resp. A <= 0), if acc + A does not overflow, the shift-and-clamp stage gives
  y(acc) <= y(acc + A) (resp. >=); with ``increment`` and the no-overflow pair the kernel is monotone in x on any
  range where the solver's width bound holds -- the property the breakpoint certificate relies on.
- ``clamp_cast``: qmin <= y <= qmax, y is the mathematical clamp of q, and the cast to Out loses nothing when
  [qmin, qmax] lies in Out's range.
- ``range_bound`` (QF_NIA, unbounded integers): if A*lo + B, A*hi + B and B fit w bits, A*x + B fits for every x in
  [lo, hi] -- the solver bounds the endpoints only.

Each has a deliberately wrong variant (``WRONG``) that must be refuted: a logical shift, an int32 accumulator under
the 64-bit bound, a zero-extended signed input, monotonicity without the no-overflow condition, a cast to a too-narrow output type.
"""
import time

from verify.smt import z3mod

IN_BITS = {"int8": (8, True), "uint8": (8, False), "int16": (16, True), "int32": (32, True)}
OUT_TYPES = {"int8": (8, True), "uint8": (8, False), "int16": (16, True), "uint16": (16, False)}


def _ext(z3, v, width, signed=True):
    return z3.SignExt(width - v.size(), v) if signed else z3.ZeroExt(width - v.size(), v)


def _shift_amount(z3, s, w):
    return z3.If(z3.ULT(s, w - 1), s, z3.BitVecVal(w - 1, s.size()))


def multiply_add_truncates(in_dtype, w, wrong=False):
    """Claim: the wrapping multiply-add is the exact A*x + B modulo 2^w (its low w bits).  wrong: x zero-extended
    where the kernel sign-extends (signed inputs)."""
    z3 = z3mod()
    bits, signed = IN_BITS[in_dtype]
    W = w + bits + 2
    A, B = z3.BitVecs("A B", w)
    xi = z3.BitVec("x", bits)
    acc = A * _ext(z3, xi, w, signed and not wrong) + B
    exact = _ext(z3, A, W) * _ext(z3, xi, W, signed) + _ext(z3, B, W)
    return z3.Extract(w - 1, 0, exact) == acc, {"A": A, "B": B, "x": xi}


def fits_sign_extends(in_dtype, w, wrong=False):
    """Claim: an exact value E in Acc's range is the sign extension of its low w bits; with
    ``multiply_add_truncates``: exact A*x + B in range => the kernel's acc equals it (no overflow).
    wrong: the int32 accumulator under the 64-bit bound (the int32 path used where it overflows)."""
    z3 = z3mod()
    bits, _ = IN_BITS[in_dtype]
    acc_w = 32 if wrong else w
    bound_w = 64 if wrong else w
    W = max(w, 64) + bits + 2
    E = z3.BitVec("E", W)
    fits = z3.And(E >= -(1 << (bound_w - 1)), E < (1 << (bound_w - 1)))
    return z3.Implies(fits, _ext(z3, z3.Extract(acc_w - 1, 0, E), W) == E), {"E": E}


def increment(in_dtype, w, wrong=False):
    """Claim: acc(x + 1) == acc(x) + A (mod 2^w).  wrong: acc(x + 1) == acc(x) + 1."""
    z3 = z3mod()
    bits, signed = IN_BITS[in_dtype]
    A, B = z3.BitVecs("A B", w)
    xi = z3.BitVec("x", bits)
    top = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    x = _ext(z3, xi, w, signed)
    acc = lambda v: A * v + B  # noqa: E731
    step = 1 if wrong else A
    return z3.Implies(xi != top, acc(x + 1) == acc(x) + step), {"A": A, "B": B, "x": xi}


def shift_is_floor(in_dtype, w, wrong=False):
    """Claim: q = acc >> min(s, w-1) satisfies q*2^s <= acc < (q+1)*2^s for s in [0, 62].  wrong: logical shift."""
    z3 = z3mod()
    acc, s = z3.BitVecs("acc s", w)
    sh = _shift_amount(z3, s, w)
    q = z3.LShR(acc, sh) if wrong else acc >> sh
    W = 2 * w + 2
    p = z3.BitVecVal(1, W) << _ext(z3, s, W, False)
    E = lambda v: _ext(z3, v, W)  # noqa: E731
    return z3.Implies(z3.ULE(s, 62), z3.And(E(q) * p <= E(acc), E(acc) < (E(q) + 1) * p)), {"acc": acc, "s": s}


def _stage(z3, acc, s, qmin, qmax, w):
    q = acc >> _shift_amount(z3, s, w)
    return z3.If(q < qmin, qmin, z3.If(q > qmax, qmax, q))


def monotone(in_dtype, w, wrong=False, decreasing=False):
    """Claim: A >= 0 and acc + A without signed overflow => stage(acc) <= stage(acc + A) (A <= 0: >=).
    wrong: the no-overflow condition dropped."""
    z3 = z3mod()
    A, acc, s, qmin, qmax = z3.BitVecs("A acc s qmin qmax", w)
    pre = [qmin <= qmax, (A <= 0) if decreasing else (A >= 0)]
    if not wrong:
        pre.append(z3.BVAddNoOverflow(acc, A, True))
        if decreasing:
            pre.append(z3.BVAddNoUnderflow(acc, A))
    y0, y1 = _stage(z3, acc, s, qmin, qmax, w), _stage(z3, acc + A, s, qmin, qmax, w)
    claim = (y0 >= y1) if decreasing else (y0 <= y1)
    return z3.Implies(z3.And(*pre), claim), {"A": A, "acc": acc, "s": s, "qmin": qmin, "qmax": qmax}


def clamp_cast(in_dtype, w, wrong=False, out_dtype="int8"):
    """Claim: the clamp is the mathematical clamp and the cast to Out is lossless.  wrong: uint8 bounds cast to
    int8."""
    z3 = z3mod()
    obits, osigned = OUT_TYPES["int8" if wrong else out_dtype]
    rbits, rsigned = OUT_TYPES["uint8" if wrong else out_dtype]
    q, qmin, qmax = z3.BitVecs("q qmin qmax", w)
    lo_t = -(1 << (rbits - 1)) if rsigned else 0
    hi_t = (1 << (rbits - 1)) - 1 if rsigned else (1 << rbits) - 1
    y = z3.If(q < qmin, qmin, z3.If(q > qmax, qmax, q))
    cast = _ext(z3, z3.Extract(obits - 1, 0, y), w, osigned)
    math_clamp = z3.If(q <= qmin, qmin, z3.If(q >= qmax, qmax, q))
    pre = z3.And(qmin <= qmax, qmin >= lo_t, qmax <= hi_t)
    return z3.Implies(pre, z3.And(y >= qmin, y <= qmax, y == math_clamp, cast == y)), {"q": q, "qmin": qmin,
                                                                                       "qmax": qmax}


def range_bound(in_dtype, w, wrong=False):
    """Claim (integers): endpoint values within w bits => A*x + B within w bits on [lo, hi].  wrong: only B and
    A*lo + B bounded."""
    z3 = z3mod()
    A, B, x, lo, hi = z3.Ints("A B x lo hi")
    m, M = -(1 << (w - 1)), (1 << (w - 1)) - 1
    fits = lambda e: z3.And(e >= m, e <= M)  # noqa: E731
    pre = [lo <= x, x <= hi, fits(A * lo + B), fits(B)]
    if not wrong:
        pre.append(fits(A * hi + B))
    return z3.Implies(z3.And(*pre), fits(A * x + B)), {"A": A, "B": B, "x": x, "lo": lo, "hi": hi}


LEMMAS = {
    "multiply_add_truncates": (multiply_add_truncates, "QF_BV"),
    "fits_sign_extends": (fits_sign_extends, "QF_BV"),
    "increment": (increment, "QF_BV"),
    "shift_is_floor": (shift_is_floor, "QF_BV"),
    "monotone_increasing": (monotone, "QF_BV"),
    "monotone_decreasing": (lambda i, w, wrong=False: monotone(i, w, wrong, decreasing=True), "QF_BV"),
    "clamp_cast": (clamp_cast, "QF_BV"),
    "range_bound": (range_bound, "QF_NIA"),
}


def _signed(v):
    z3 = z3mod()
    val = v.as_long()
    if z3.is_bv_value(v) and val >= 1 << (v.size() - 1):
        val -= 1 << v.size()         # z3 prints bit-vectors unsigned
    return val


def prove(name, in_dtype="int32", acc_bits=64, wrong=False, timeout_ms=30000, smt2_path=None):
    """Prove (or refute) one lemma in one configuration.

    Returns
    -------
    dict
        ``name``, ``config``, ``wrong``, ``status`` ("proved" | "refuted" | "unknown"), ``counterexample`` (signed
        values) when refuted, ``reason`` when unknown, ``seconds``, ``logic``.
    """
    z3 = z3mod()
    build, logic = LEMMAS[name]
    claim, variables = build(in_dtype, acc_bits, wrong)
    solver = z3.Solver()             # the default strategy: faster than SolverFor on the multiplier lemma
    solver.set("timeout", int(timeout_ms))
    solver.add(z3.Not(claim))
    if smt2_path is not None:
        with open(smt2_path, "w") as fh:
            fh.write(f"; fxbn lemma {name} in={in_dtype} acc=int{acc_bits}{' (wrong variant)' if wrong else ''}: "
                     f"negated claim, expected: {'sat' if wrong else 'unsat'}\n(set-logic {logic})\n"
                     + solver.to_smt2())
    t0 = time.perf_counter()
    r = solver.check()
    out = {"name": name, "config": f"in={in_dtype} acc=int{acc_bits}", "wrong": wrong, "logic": logic,
           "seconds": time.perf_counter() - t0}
    if r == z3.unsat:
        out["status"] = "proved"
    elif r == z3.sat:
        model = solver.model()
        out["status"] = "refuted"
        out["counterexample"] = {k: _signed(model.eval(v, model_completion=True)) for k, v in variables.items()}
    else:
        out["status"] = "unknown"
        out["reason"] = solver.reason_unknown()
    return out


def prove_all(in_dtypes=("int8", "uint8", "int16", "int32"), acc_bits=(32, 64), timeout_ms=30000, smt2_dir=None):
    """Every lemma in every configuration (configuration-free lemmas once per accumulator width)."""
    import os

    results = []
    for w in acc_bits:
        for name in LEMMAS:
            dtypes = in_dtypes if name in ("multiply_add_truncates", "increment") else in_dtypes[:1]
            for in_dtype in dtypes:
                path = None if smt2_dir is None else os.path.join(smt2_dir, f"lemma.{name}.{in_dtype}.acc{w}.smt2")
                res = prove(name, in_dtype, w, False, timeout_ms, path)
                if name not in ("multiply_add_truncates", "increment"):
                    res["config"] = f"acc=int{w}"
                results.append(res)
    return results
