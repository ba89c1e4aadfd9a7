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
- ``product_width`` (QF_NIA, unbounded integers): a c-bit signed multiplier times an In value lies in the signed
  range of c + bits(In) bits, for c = 16 (dp_periodic's |A| < 2^15), 32 (the widen multiplier) and w; so a product
  computed on that many bits is the exact integer product.  The SIMD lemmas compute their exact A*x on that width.

- ``onnx_floor_div``: the floor division of fxbn.onnx's exported subgraph (ONNX has no signed shift):
  Div(Sub(acc, Mod(acc, 2^s)), 2^s) with Mod fmod=0 (bvsmod) and truncating Div (bvsdiv) is floor(acc / 2^s) for
  every acc of w bits and s <= w - 2; plain Div and fmod=1 are refuted.

Each has a deliberately wrong variant (``WRONG``) that must be refuted: a logical shift, an int32 accumulator under
the 64-bit bound, a zero-extended signed input, monotonicity without the no-overflow condition, a cast to a too-narrow
output type, a product width one bit short.

SIMD bodies (``SIMD_LEMMAS``, named after the kernel function; each states SIMD result == clamp(floor((A*x + B) / 2^s))
under the checks the kernel makes before picking the body, plus the solver's accumulator bound; wrong variants in
``SIMD_WRONG``, each refuted):

- ``lut_rows``: VBMI 8-bit -> 8-bit rows, 256-entry table applied with two vpermt2b and a bit-7 blend; the raw byte
  is the index (no bias of 128).  Proved symbolically for all 256 inputs; ``lut_index_map`` also checks the index
  mapping exhaustively.
- ``widen_rows_high`` / ``widen_periodic_high``: vpmuldq (sext64(low32(a)) * sext64(low32(x))) + vpaddq, then for
  s in [32, 63] the high dwords, vpsrad/vpsravd by s - 32 and a 32-bit clamp.
- ``widen_rows_low`` / ``widen_periodic_low``: vpmuldq + vpaddq, vpsraq/vpsravq by s, 64-bit clamp, low dwords.
  The widen lemmas hold for every In including int32: per lane, (1) the vpmuldq product is the exact A*x, computed
  on max(64, 32 + bits) bits (exact by ``product_width``), and (2) the add/shift/clamp/narrow stage is
  clamp(floor((P + B) / 2^s)) for every 64-bit P; no case split, every variable over its full range.
- ``dp_periodic``: VNNI vpdpwssd with the pair (A, 0) (A in (-2^15, 2^15)): B + x_lo*a_lo + x_hi*a_hi mod 2^32.
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


def product_width(in_dtype, w, wrong=False):
    """Claim (integers): for a multiplier A in [-2^(c-1), 2^(c-1)) and x in In's range, A*x lies in
    [-2^(c+bits-1), 2^(c+bits-1)) for c = 16 (dp_periodic), 32 (the widen path's int32 multiplier, read by vpmuldq)
    and c = w: a product evaluated on c + bits bits is exact (signed x, and unsigned x, whose magnitude is below
    2^bits).  The SIMD lemmas rely on it to compute their exact A*x on no more bits than that.
    wrong: one bit fewer (fails at A = -2^(c-1), x = In's minimum, resp. 2^bits - 1 for unsigned x)."""
    z3 = z3mod()
    bits, signed = IN_BITS[in_dtype]
    A, x = z3.Ints("A x")
    x_lo, x_hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    claims = []
    for c in sorted({16, 32, w}):
        W = c + bits - (1 if wrong else 0)
        pre = z3.And(A >= -(1 << (c - 1)), A < (1 << (c - 1)), x >= x_lo, x <= x_hi)
        claims.append(z3.Implies(pre, z3.And(A * x >= -(1 << (W - 1)), A * x < (1 << (W - 1)))))
    return claims, {"A": A, "x": x}                                 # one query per c


def rescale_to_high(in_dtype, w, wrong=False):
    """Claim: for s in [1, w/2 - 1] and k = w/2 - s, if E * 2^k does not overflow w bits, then
    (E * 2^k) >> (w/2) == E >> s.  The kernel (widen_to_high, w = 64) replaces (A, B, s < 32) by (A*2^k, B*2^k, 32)
    when A*2^k fits int32, or else, for 8/16-bit inputs in widen_rows/widen_periodic, keeps A and scales the input:
    (A, x*2^k, B*2^k, 32) when x*2^k fits int32 for every x of the input type -- in both cases when (A*x + B)*2^k
    fits int64 at both ends of [lo, hi] (range_bound: then everywhere).  By product_width and the SIMD lemmas' dword
    claim the new products are exact, so the new accumulator is E*2^k either way and this lemma gives the same
    output.  wrong: k one too large (the shift by w/2 then divides by 2^(s - 1))."""
    z3 = z3mod()
    E, s = z3.BitVec("E", w), z3.BitVec("s", w)
    half = w // 2
    k = z3.BitVecVal(half, w) - s + (1 if wrong else 0)
    scaled = E << k
    pre = z3.And(z3.UGE(s, 1), z3.ULE(s, half - 1), (scaled >> k) == E)
    return z3.Implies(pre, (scaled >> half) == (E >> s)), {"E": E, "s": s}


def saturating_store(in_dtype, w, wrong=False):
    """Claim: where [qmin, qmax] is a signed 8/16-bit output type's whole range, the widen bodies' saturating
    narrowing (vpmovsdb / vpmovsdw: values above the type's maximum become the maximum, below its minimum the
    minimum) stores the same bits as the min/max clamp followed by the truncating narrowing (vpmovdb / vpmovdw).
    wrong: the unsigned saturation (vpmovusdb, which reads the lanes as unsigned) for a uint8 range [0, 255]."""
    z3 = z3mod()
    h = z3.BitVec("h", 32)
    claims = []
    for bits in (8, 16):
        lo, hi = (0, (1 << bits) - 1) if wrong else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        if wrong:
            sat = z3.If(z3.UGT(h, hi), z3.BitVecVal(hi, 32), h)                    # unsigned saturation
        else:
            sat = z3.If(h > hi, z3.BitVecVal(hi, 32), z3.If(h < lo, z3.BitVecVal(lo, 32), h))
        clamp = _clamp(z3, h, z3.BitVecVal(lo, 32), z3.BitVecVal(hi, 32))
        claims.append(z3.Extract(bits - 1, 0, sat) == z3.Extract(bits - 1, 0, clamp))
    return z3.And(*claims), {"h": h}


def pack_narrow(in_dtype, w, wrong=False):
    """Claim: pack_store64's narrowing of an int32 lane h to an 8-bit output -- vpackssdw (signed saturation to int16),
    then vpacksswb (int8: signed saturation to int8) or vpackuswb (uint8: int16 saturated to [0, 255]), then a byte
    min/max to [qmin, qmax] (compared as Out; dropped for int8 when [qmin, qmax] is int8's whole range) -- stores the
    low byte of clamp(h, qmin, qmax), for every h and every qmin <= qmax within Out's range.  (The packs interleave
    the elements of four vectors per 128-bit lane and one vpermd restores their order: data layout, checked by the
    kernel path tests.)  wrong: uint8 packed with the signed vpacksswb."""
    z3 = z3mod()
    h = z3.BitVec("h", 32)
    variables = {"h": h}

    def sat(v, lo, hi, bits):                                       # signed saturation of v to [lo, hi], bits wide
        return z3.If(v > hi, z3.BitVecVal(hi, bits), z3.If(v < lo, z3.BitVecVal(lo, bits),
                                                           z3.Extract(bits - 1, 0, v)))

    w16 = sat(h, -(1 << 15), (1 << 15) - 1, 16)                     # vpackssdw
    claims = []
    for out, sat_store in (("int8", True), ("int8", False), ("uint8", False)):
        if sat_store:
            qmin, qmax = z3.BitVecVal(-128, 32), z3.BitVecVal(127, 32)
            pre = []
        else:
            qmin, qmax = z3.BitVecs(f"qmin_{out} qmax_{out}", 32)
            variables.update({f"qmin_{out}": qmin, f"qmax_{out}": qmax})
            lo, hi = (-128, 127) if out == "int8" else (0, 255)
            pre = [qmin <= qmax, qmin >= lo, qmax <= hi]
        if out == "int8" or wrong:
            b = sat(w16, -128, 127, 8)                              # vpacksswb
        else:
            b = sat(w16, 0, 255, 8)                                 # vpackuswb: int16 in, [0, 255] out
        if not sat_store:                                           # vpmaxsb/vpminsb or vpmaxub/vpminub
            bl, bh = z3.Extract(7, 0, qmin), z3.Extract(7, 0, qmax)
            if out == "int8":
                b = z3.If(b > bl, b, bl)
                b = z3.If(b < bh, b, bh)
            else:
                b = z3.If(z3.UGT(b, bl), b, bl)
                b = z3.If(z3.ULT(b, bh), b, bh)
        claims.append(z3.Implies(z3.And(*pre), b == z3.Extract(7, 0, _clamp(z3, h, qmin, qmax))))
    return z3.And(*claims), variables


def onnx_floor_div(in_dtype, w, wrong=False):
    """Claim (fxbn.onnx's exported subgraph): with ONNX integer semantics -- Mod with fmod=0 takes the divisor's sign
    (SMT-LIB bvsmod), Div truncates toward zero (bvsdiv), Sub wraps -- q = Div(Sub(acc, Mod(acc, d)), d) with
    d = 2^s satisfies q*2^s <= acc < (q+1)*2^s, i.e. q = floor(acc / 2^s), for every w-bit acc and every
    s in [0, w - 2] (2^s positive in w bits; the exporter uses int32 only for s <= 30, int64 for s <= 62).  One
    claim per s (a constant divisor: the symbolic-divisor query took 18 s at 32 bits and did not finish in 60 s at
    64).  Mul and Add of the exported graph are the kernel's multiply-add (``multiply_add_truncates``,
    ``fits_sign_extends``: exact under the solver's bound), Clip and Cast are ``clamp_cast``.
    wrong: True or "plain_div" (Div alone: rounds negative acc toward zero); "fmod1" (Mod with fmod=1, the
    dividend's sign: C's %)."""
    z3 = z3mod()
    if wrong not in (False, None, True, "plain_div", "fmod1"):
        raise ValueError(f"onnx_floor_div: unknown wrong variant {wrong!r} (True, 'plain_div' or 'fmod1')")
    acc, s = z3.BitVec("acc", w), z3.BitVec("s", w)
    W = w + 2
    E = lambda v: _ext(z3, v, W)  # noqa: E731
    claims = []
    for k in range(w - 1):
        d = z3.BitVecVal(1 << k, w)
        if wrong in (True, "plain_div"):
            q = acc / d                                             # bvsdiv: ONNX Div on integers
        elif wrong == "fmod1":
            q = (acc - z3.SRem(acc, d)) / d                         # Mod fmod=1: sign of the dividend
        else:
            q = (acc - acc % d) / d                                 # BitVecRef % is bvsmod: Mod fmod=0
        p = z3.BitVecVal(1 << k, W)
        claims.append(z3.Implies(s == k, z3.And(E(q) * p <= E(acc), E(acc) < (E(q) + 1) * p)))
    return claims, {"acc": acc, "s": s}


LEMMAS = {
    "multiply_add_truncates": (multiply_add_truncates, "QF_BV"),
    "fits_sign_extends": (fits_sign_extends, "QF_BV"),
    "increment": (increment, "QF_BV"),
    "shift_is_floor": (shift_is_floor, "QF_BV"),
    "monotone_increasing": (monotone, "QF_BV"),
    "monotone_decreasing": (lambda i, w, wrong=False: monotone(i, w, wrong, decreasing=True), "QF_BV"),
    "clamp_cast": (clamp_cast, "QF_BV"),
    "range_bound": (range_bound, "QF_NIA"),
    "product_width": (product_width, "QF_NIA"),
    "rescale_to_high": (rescale_to_high, "QF_BV"),
    "saturating_store": (saturating_store, "QF_BV"),
    "pack_narrow": (pack_narrow, "QF_BV"),
    "onnx_floor_div": (onnx_floor_div, "QF_BV"),
}


# ------------------------------------------------------------------------------------------------ SIMD bodies
# One lemma per distinct arithmetic formulation of the hand-written AVX-512 bodies in csrc/fxbn/kernel.cpp, each
# stating that the SIMD result equals the mathematics clamp(floor((A*x + B) / 2^s), qmin, qmax) -- computed on exact
# integers: the product A*x on max(w, c + bits) bits for a c-bit multiplier and a bits-bit input, where it is exact
# (``product_width``), the sum A*x + B two bits wider, and the arithmetic shift there is floor division -- under
# the preconditions the kernel checks before it picks that body, plus the solver's accumulator bound (the exact
# A*x + B lies in Acc's range, which the scalar lemmas rely on too).  Instruction semantics are modelled at their real
# widths.  ``wrong`` is False, True (the first variant of SIMD_WRONG[name]) or a variant name from SIMD_WRONG[name].

SIMD_WRONG = {
    "lut_rows": ("bias128", "blend_swapped"),
    "widen_rows_high": ("logical_shift", "missing_s_ge_32", "zero_extend", "qminmax_not_int32",
                        "odd_load_not_offset", "input_shift_past_headroom"),
    "widen_rows_low": ("zero_extend", "missing_fit_check", "odd_lane_shifted_a"),
    "widen_periodic_high": ("logical_shift", "missing_s_ge_32", "zero_extend", "odd_a_from_even_table",
                            "input_shift_past_headroom"),
    "widen_periodic_low": ("zero_extend", "missing_fit_check", "logical_shift", "odd_a_from_even_table",
                           "input_shift_past_headroom"),
    "dp_periodic": ("zero_extend", "missing_a16_check", "unmasked_a"),
}


def _variant(name, wrong):
    if wrong is True:
        return SIMD_WRONG[name][0]
    if wrong and wrong not in SIMD_WRONG[name]:
        raise ValueError(f"{name}: unknown wrong variant {wrong!r} (one of {SIMD_WRONG[name]})")
    return wrong or None


def _math_sum(z3, P, B, s, qmin, qmax, w):
    """(fits, y) for an exact product P (a signed integer of P.size() >= w bits, computed by the caller on a width
    where it is exact, see ``product_width``): the solver's bound (the exact P + B within w bits) and
    clamp(floor((P + B) / 2^s)) on W = max(P.size(), w) + 2 bits (B, qmin, qmax signed; s unsigned, at most 63)."""
    W = max(P.size(), w) + 2
    E = _ext(z3, P, W) + _ext(z3, B, W)
    fits = z3.And(E >= -(1 << (w - 1)), E < (1 << (w - 1)))
    q = E >> _ext(z3, s, W, False)
    lo, hi = _ext(z3, qmin, W), _ext(z3, qmax, W)
    return fits, z3.If(q < lo, lo, z3.If(q > hi, hi, q))


def _clamp(z3, q, lo, hi):
    """_mm512_min_epi*(_mm512_max_epi*(q, lo), hi), signed."""
    m = z3.If(q > lo, q, lo)
    return z3.If(m < hi, m, hi)


def _fits_signed(z3, v, bits):
    return v == z3.SignExt(v.size() - bits, z3.Extract(bits - 1, 0, v))


def _same(z3, y_simd, y_math):
    return _ext(z3, y_simd, y_math.size()) == y_math


def lut_rows(in_dtype, w, wrong=False):
    """lut_rows (VBMI, 8-bit input and 8-bit output, rows of >= kLutRow; any accumulator: mul32, widen, mul64).

    The row's table is built as table[u] = (uint8)(Out)fixed_point((In)(uint8)u) for every u in [0, 256) and applied
    with lo = vpermt2b(t0, v, t1), hi = vpermt2b(t2, v, t3), y = blend(movepi8_mask(v), lo, hi): vpermt2b reads bits
    0..5 of each index byte and bit 6 picks the second table; the blend picks hi where bit 7 is set.  So the entry used
    for input byte v is idx = bit7*128 + bit6*64 + (v & 63), and the table is indexed by the raw byte (no bias of 128):
    the entry was computed from (In)(uint8)idx, which must equal x.  Proved symbolically for all 256 inputs (x is an
    8-bit variable) and all A, B, s, qmin, qmax at the real accumulator width w, for both Out = int8 and uint8 ([qmin,
    qmax] within Out's range); the table contents are the scalar fixed_point applied to the (symbolic) index, which is
    the loop that builds it.  ``lut_index_map`` checks the index mapping exhaustively as well.
    Wrong: ``bias128`` (table built from u - 128, the biased mapping, while indexed by the raw byte);
    ``blend_swapped`` (the blend picks lo where bit 7 is set)."""
    z3 = z3mod()
    bad = _variant("lut_rows", wrong)
    bits, signed = IN_BITS[in_dtype]
    assert bits == 8, "lut_rows: 8-bit inputs"
    A, B, s, qmin, qmax = z3.BitVecs("A B s qmin qmax", w)
    xi = z3.BitVec("x", 8)
    byte = xi                                                       # _mm512_loadu_si512: the raw bytes
    b7, b6, pos = z3.Extract(7, 7, byte), z3.Extract(6, 6, byte), z3.Extract(5, 0, byte)
    lo_idx = z3.Concat(z3.BitVecVal(0, 1), b6, pos)                 # vpermt2b(t0, v, t1): table[0..127]
    hi_idx = z3.Concat(z3.BitVecVal(1, 1), b6, pos)                 # vpermt2b(t2, v, t3): table[128..255]
    pick_hi = b7 == 1                                               # _mm512_movepi8_mask(v)
    if bad == "blend_swapped":
        pick_hi = z3.Not(pick_hi)
    idx = z3.If(pick_hi, hi_idx, lo_idx)
    v = idx - 128 if bad == "bias128" else idx                      # (In)(uint8)u: the same bits
    # Three claims, proved separately: (1) the entry looked up for x was computed from x itself ((In)(uint8)idx == x);
    # (2) every entry, table[u] = (uint8)(Out)fixed_point((In)(uint8)u), read back as Out is the mathematics for the
    # input (In)(uint8)u: (2a) the wrapping multiply-add is the exact A*u + B modulo 2^w, which is A*u + B itself
    # under the solver's bound (a value within w bits is the sign extension of its low w bits), (2b) for every
    # accumulator value the shift, clamp and byte round trip give clamp(floor(acc / 2^s)).  Together: the lookup for
    # x is clamp(floor((A*x + B) / 2^s)).
    index_claim = _ext(z3, v, w, signed) == _ext(z3, xi, w, signed)
    acc = A * _ext(z3, xi, w, signed) + B                           # fixed_point: wrapping multiply-add
    W = w + 8 + 2
    exact = _ext(z3, A, W) * _ext(z3, xi, W, signed) + _ext(z3, B, W)
    acc_claim = z3.Extract(w - 1, 0, exact) == acc                  # (2a) acc = A*u + B mod 2^w, and an exact E
    E = z3.BitVec("E", W)                                           # within w bits is its low w bits sign-extended
    fit_claim = z3.Implies(z3.And(E >= -(1 << (w - 1)), E < (1 << (w - 1))),
                           _ext(z3, z3.Extract(w - 1, 0, E), W) == E)
    ACC = z3.BitVec("acc", w)                                       # (2b) for every accumulator value
    q = _clamp(z3, ACC >> s, qmin, qmax)                            # arithmetic shift, clamp
    entry = z3.Extract(7, 0, q)                                     # (uint8)(Out)
    _, y_math = _math_sum(z3, ACC, z3.BitVecVal(0, w), s, qmin, qmax, w)
    claims = []
    for out_signed, lo_t, hi_t in ((True, -128, 127), (False, 0, 255)):
        pre = z3.And(qmin <= qmax, qmin >= lo_t, qmax <= hi_t)
        y = _ext(z3, entry, y_math.size(), out_signed)              # the stored byte read as Out
        claims.append(z3.Implies(pre, y == y_math))
    stage_claim = z3.Implies(z3.ULE(s, w - 1), z3.And(*claims))     # s = min(shift, w - 1) in the tables
    return [index_claim, acc_claim, fit_claim, stage_claim], {"A": A, "B": B, "s": s, "qmin": qmin, "qmax": qmax,
                                                              "x": xi, "acc": ACC, "E": E}


def lut_index_map(in_dtype):
    """Exhaustive check (all 256 bytes, plain Python) of the lut_rows index mapping: the vpermt2b + blend entry index
    is the input's raw byte, and the table-building loop's (In)(uint8)u recovers x.  Returns the list of failures."""
    bits, signed = IN_BITS[in_dtype]
    assert bits == 8
    fails = []
    for x in (range(-128, 128) if signed else range(256)):
        byte = x & 0xFF
        lo = ((byte >> 6) & 1) * 64 + (byte & 63)                   # vpermt2b over t0 | t1
        idx = (128 + lo) if byte & 0x80 else lo                     # blend on bit 7 with vpermt2b over t2 | t3
        v = (idx - 256 if idx >= 128 else idx) if signed else idx   # (In)(uint8)idx
        if idx != byte or v != x:
            fails.append((x, idx, v))
    return fails


def _mul_epi32(z3, a, b, bad):
    """vpmuldq (_mm512_mul_epi32): sext64(low32(a)) * sext64(low32(b)) per 64-bit lane (zero_extend: vpmuludq)."""
    ext = z3.ZeroExt if bad == "zero_extend" else z3.SignExt
    return ext(32, z3.Extract(31, 0, a)) * ext(32, z3.Extract(31, 0, b))


def _widen(in_dtype, wrong, rows, high):
    """Shared model of widen_rows / widen_periodic for one 64-bit lane pair (elements e = even, o = odd)."""
    name = f"widen_{'rows' if rows else 'periodic'}_{'high' if high else 'low'}"
    z3 = z3mod()
    bad = _variant(name, wrong)
    bits, signed = IN_BITS[in_dtype]
    qmin, qmax = z3.BitVecs("qmin qmax", 64)
    xe, xo = z3.BitVec("x_even", bits), z3.BitVec("x_odd", bits)
    fitcheck = bad != "missing_fit_check"                           # multipliers_fit_int32: then the int64
    mult = lambda n: (z3.SignExt(32, z3.BitVec(n, 32)) if fitcheck  # noqa: E731  multiplier is sext64 of an int32
                      else z3.BitVec(n, 64))
    if rows:                                                        # one channel per row: a, b, s hoisted
        Me = Mo = mult("A")                                         # the int64 multiplier p.multiplier[c]
        Be = Bo = z3.BitVec("B", 64)
        se = so = z3.BitVec("s", 64)
        variables = {"A": Me, "B": Be, "s": se}
    else:                                                           # per-entry tables
        Me, Mo = mult("A_even"), mult("A_odd")
        Be, Bo = z3.BitVecs("B_even B_odd", 64)
        se, so = z3.BitVecs("s_even s_odd", 64)
        variables = {"A_even": Me, "A_odd": Mo, "B_even": Be, "B_odd": Bo, "s_even": se, "s_odd": so}
    variables.update({"qmin": qmin, "qmax": qmax, "x_even": xe, "x_odd": xo})
    pre = [qmin <= qmax]
    if bad != "qminmax_not_int32":                                  # sizeof(Out) <= 4, [qmin, qmax] within Out
        pre += [_fits_signed(z3, qmin, 32), _fits_signed(z3, qmax, 32)]
    s_lo = 0 if (not high or bad == "missing_s_ge_32") else 32
    for s in {se, so} if not rows else (se,):                       # s = min(shift, 63); high: s >= 32 (checked)
        pre += [z3.UGE(s, s_lo), z3.ULE(s, 63)]
    Ae, Ao = z3.Extract(31, 0, Me), z3.Extract(31, 0, Mo)           # Coef = int32
    # widen_rows (s >= 32) and widen_periodic scale 8/16-bit inputs by 2^xk (vpsllvd; xk = 32 - s where A*2^xk
    # would overflow int32, ``rescale_to_high`` holds for either scaling) with xk <= max_input_shift<In>: x*2^xk
    # fits int32.  Int32 inputs are never scaled (limit 0); xk = 0 is the unscaled case.
    limit = 32 - bits - (0 if signed else 1) if bits < 32 else 0
    if bad == "input_shift_past_headroom":
        limit += 1
    if rows and not high:
        ke = ko = z3.BitVecVal(0, 32)
    elif rows:
        ke = ko = z3.BitVec("xk", 32)
        variables["xk"] = ke
    else:
        ke, ko = z3.BitVecs("xk_even xk_odd", 32)
        variables.update({"xk_even": ke, "xk_odd": ko})
    pre += [z3.ULE(ke, limit), z3.ULE(ko, limit)]
    x32 = lambda v, k: _ext(z3, v, 32, signed) << k  # noqa: E731     # load16 (cvtepi8/cvtepu8/cvtepi16_epi32), vpsllvd
    v = z3.Concat(x32(xo, ko), x32(xe, ke))                         # int32 lanes 2k (low) and 2k+1 (high)
    # the odd elements reach vpmuldq's low dword: widen_rows (s >= 32) loads x one element further on (load16(x + k +
    # 1): qword k holds x[2k + 1] low and x[2k + 2] high, a free input here); the other bodies use srli_epi64(v, 32)
    if rows and high:
        x_next = z3.BitVec("x_next", bits)
        variables["x_next"] = x_next
        vo = v if bad == "odd_load_not_offset" else z3.Concat(x32(x_next, ko), x32(xo, ko))
    else:
        vo = z3.LShR(v, 32)
    if rows:
        av = z3.SignExt(32, Ae)                                     # _mm512_set1_epi64(A[c]): int32 -> int64
        av_odd = z3.LShR(av, 32) if bad == "odd_lane_shifted_a" else av
    else:                                                           # the int64 table of sign-extended A, split per
        av = z3.SignExt(32, Ae)                                     # 16 entries into even then odd entries: two
        av_odd = av if bad == "odd_a_from_even_table" else z3.SignExt(32, Ao)  # aligned loads
    # Three claims per lane, proved separately (together they are the lane's lemma; splitting keeps z3 fast):
    # (1a) the dword vpmuldq reads is exactly x * 2^xk (extensions and shifts only);
    # (1b) for every such dword X, the vpmuldq product is the exact integer A*X, computed on W = max(64, c + 32) bits
    #      with c the multiplier's width: exact there (``product_width``, QF_NIA), so no wider W is needed.  With no
    #      slack bits the claim is a word-level identity (which dwords vpmuldq reads and how it extends them) that
    #      z3's rewriter decides; on 66 bits z3 re-derived the width fact by bit-blasting a 32x32 multiplier against
    #      a 66-bit one (3-25 s), and with the input shift inside the product claim it did not finish in 30 s;
    # (2) for every 64-bit product P, the vpaddq + shift + clamp + narrowing stage is clamp(floor((P + B) / 2^s)).
    # (1a), (1b) with P = the vpmuldq product, then (2), give the lane's result == clamp(floor((A*x*2^xk + B) / 2^s))
    # for every input: no case split, every variable over its full width (``rescale_to_high`` then relates the
    # scaled parameters to the layer's).
    claims = []
    shr = z3.LShR if bad == "logical_shift" else (lambda a, c: a >> c)
    lq, hq = z3.Extract(31, 0, qmin), z3.Extract(31, 0, qmax)       # _mm512_set1_epi32((int32_t)qmin)
    lanes = (("even", v, av, Me, xe, Be, se, ke), ("odd", vo, av_odd, Mo, xo, Bo, so, ko))
    for lane, vl, al, M, x, B, s, k in lanes:
        # (1a) the dword vpmuldq reads from the lane is exactly x * 2^xk (load16's extension, vpsllvd, the odd-lane
        #      load or shift): shifts and extensions only, no multiplier
        X = z3.Extract(31, 0, vl)
        claims.append(z3.Implies(z3.And(*pre), z3.SignExt(32, X) == _ext(z3, x, 64, signed) << z3.ZeroExt(32, k)))
        # (1b) for every dword Xf in that place, vpmuldq gives the exact A * Xf (a 32-bit multiplier or, without the
        #      fit check, a 64-bit one: exact on c + 32 bits, ``product_width``); with (1a), the exact A * x * 2^xk
        Xf = z3.BitVec(f"X_{lane}", 32)
        variables[f"X_{lane}"] = Xf
        prod = _mul_epi32(z3, z3.Concat(z3.Extract(63, 32, vl), Xf), al, bad)  # vpmuldq
        W = max(64, (32 if fitcheck else 64) + 32)
        claims.append(z3.Implies(z3.And(*pre), _ext(z3, prod, W) == _ext(z3, M, W) * _ext(z3, Xf, W)))
        P = z3.BitVec(f"P_{lane}", 64)
        variables[f"P_{lane}"] = P
        p = P + B                                                   # vpaddq (mod 2^64)
        if high:
            h = z3.Extract(63, 32, p)                               # high_dwords: mask_shuffle(po, 0x5555, pe, CDAB)
            cnt = s - 32                                            # rows: _mm_cvtsi64_si128(s - 32) (64-bit count)
            if rows:                                                # vpsrad: counts > 31 fill with the sign
                c32 = z3.If(z3.UGT(cnt, 31), z3.BitVecVal(31, 32), z3.Extract(31, 0, cnt))
            else:                                                   # s32 = (int32)(s - 32); vpsravd: same rule
                c32 = z3.Extract(31, 0, cnt)
                c32 = z3.If(z3.UGT(c32, 31), z3.BitVecVal(31, 32), c32)
            # rows skip vpsrad when s == 32 (a shift by 0); 32-bit clamp, or the saturating narrowing store where
            # [qmin, qmax] is the output type's range (the same bits: ``saturating_store``), or for 8-bit outputs
            # the packs of pack_store64 (the same bits: ``pack_narrow``)
            y = _clamp(z3, shr(h, c32), lq, hq)
        else:
            q = _clamp(z3, shr(p, z3.If(z3.UGT(s, 63), z3.BitVecVal(63, 64), s)), qmin, qmax)  # vpsraq/vpsravq
            y = z3.Extract(31, 0, q)                                # blend(pe, slli_epi64(po, 32)): low dwords
        fits, y_math = _math_sum(z3, P, B, s, qmin, qmax, 64)
        claims.append(z3.Implies(z3.And(fits, *pre), _same(z3, y, y_math)))
    return claims, variables                                        # one claim per lane, proved separately


def widen_rows_high(in_dtype, w=64, wrong=False):
    """widen_rows with s >= 32 (AVX-512 v4/vbmi, 64-bit accumulator, multipliers_fit_int32, sizeof(Out) <= 4, by-row):
    P = vpmuldq(x, A) + B per even/odd lane (the odd elements from the load at x + 1), the high dwords gathered by a
    masked vpshufd, vpsrad by s - 32, 32-bit clamp: (acc >> s) == ((acc >> 32) >> (s - 32)) for s in [32, 63] (the
    tables hold min(shift, 63)), clamp after.
    Wrong: ``logical_shift`` (vpsrld), ``missing_s_ge_32`` (the trick for s < 32: count s - 32 wraps, vpsrad fills
    with the sign), ``zero_extend`` (vpmuludq), ``qminmax_not_int32`` (the 32-bit clamp without sizeof(Out) <= 4),
    ``odd_load_not_offset`` (the odd product from the same load as the even one)."""
    return _widen(in_dtype, wrong, rows=True, high=True)


def widen_rows_low(in_dtype, w=64, wrong=False):
    """widen_rows with s < 32 (same path preconditions): vpmuldq + vpaddq, vpsraq by s, 64-bit clamp, low dwords
    stored (proved for every s in [0, 63]).  Wrong: ``zero_extend`` (vpmuludq), ``missing_fit_check`` (multiplier
    beyond int32: vpmuldq reads its low 32 bits), ``odd_lane_shifted_a`` (the odd product with srli_epi64(av, 32),
    which is right for the periodic table layout but reads A's sign bits for a broadcast A)."""
    return _widen(in_dtype, wrong, rows=True, high=False)


def widen_periodic_high(in_dtype, w=64, wrong=False):
    """widen_periodic<High=true> (v4/vbmi, widen, sizeof(Out) <= 4, periodic tables with period % 64 == 0, every
    s >= 32): A (sign-extended to int64) and B split even/odd per 16 entries, odd inputs by srli_epi64(v, 32), vpsravd
    by s32 = s - 32, 32-bit clamp.  Wrong: ``logical_shift``, ``missing_s_ge_32``, ``zero_extend``,
    ``odd_a_from_even_table`` (the odd product with the even entries of A)."""
    return _widen(in_dtype, wrong, rows=False, high=True)


def widen_periodic_low(in_dtype, w=64, wrong=False):
    """widen_periodic<High=false> (same, some s < 32): vpmuldq + vpaddq, vpsravq by per-entry s, 64-bit clamp, low
    dwords.  Wrong: ``zero_extend``, ``missing_fit_check``, ``logical_shift`` (vpsrlvq), ``odd_a_from_even_table``."""
    return _widen(in_dtype, wrong, rows=False, high=False)


def dp_periodic(in_dtype, w=32, wrong=False):
    """dp_periodic (VBMI+VNNI, 32-bit accumulator, 8/16-bit input, sizeof(Out) <= 4, periodic tables, every table A
    in (-32768, 32768)): the A table holds (uint16)A, i.e. the 16-bit pair (A, 0); x is widened to an int32 lane
    (cvtepi8/cvtepu8/cvtepi16_epi32), read by vpdpwssd as the pair (lo16, hi16):
    acc = B + sext32(x_lo * a_lo) + sext32(x_hi * a_hi) (mod 2^32, non-saturating), then vpsravd by s (<= 31) and a
    32-bit clamp.  A ranges over exactly the values the check admits (sext32 of a 16-bit value other than -2^15), so
    the exact A*x is computed on 16 + bits <= 32 bits (``product_width``) and the sum on 34: one end-to-end claim,
    every variable over its full range.
    Wrong: ``zero_extend`` (unsigned 16-bit words), ``missing_a16_check`` (|A| >= 2^15 allowed: any 32-bit A),
    ``unmasked_a`` (the table keeps sign-extended A, so a_hi = -1 for A < 0 and x_hi (= -1 for x < 0) leaks in)."""
    z3 = z3mod()
    bad = _variant("dp_periodic", wrong)
    bits, signed = IN_BITS[in_dtype]
    assert bits <= 16, "dp_periodic: 8/16-bit inputs"
    B, s, qmin, qmax = z3.BitVecs("B s qmin qmax", 32)
    if bad == "missing_a16_check":                                  # A: the (low 32 bits of the) multiplier, any
        A, c, pre_a = z3.BitVec("A", 32), 32, []
    else:                                                           # A in (-2^15, 2^15): the sign extension of a
        a16 = z3.BitVec("A16", 16)                                  # 16-bit value other than -2^15 (every such A)
        A, c, pre_a = z3.SignExt(16, a16), 16, [a16 != -(1 << 15)]
    xi = z3.BitVec("x", bits)
    xl = _ext(z3, xi, 32, signed)                                   # load16
    al = A if bad == "unmasked_a" else z3.ZeroExt(16, z3.Extract(15, 0, A))  # (Coef)(uint16_t)A
    ext = z3.ZeroExt if bad == "zero_extend" else z3.SignExt
    word = lambda v, k: ext(16, z3.Extract(16 * k + 15, 16 * k, v))  # noqa: E731
    acc = B + word(xl, 0) * word(al, 0) + word(xl, 1) * word(al, 1)  # vpdpwssd, int32 wrap
    y = _clamp(z3, acc >> s, qmin, qmax)                            # vpsravd (s <= 31), min/max_epi32
    Wp = max(32, c + bits)                                          # A*x is exact on c + bits bits (product_width)
    fits, y_math = _math_sum(z3, _ext(z3, A, Wp) * _ext(z3, xi, Wp, signed), B, s, qmin, qmax, 32)
    pre = [fits, z3.ULE(s, 31), qmin <= qmax] + pre_a
    return z3.Implies(z3.And(*pre), _same(z3, y, y_math)), {"A": A, "B": B, "s": s, "qmin": qmin, "qmax": qmax,
                                                            "x": xi}


# name -> (builder, logic, accumulator widths, input types): the kernel path each covers.
SIMD_LEMMAS = {
    "lut_rows": (lut_rows, "QF_BV", (32, 64), ("int8", "uint8")),
    "widen_rows_high": (widen_rows_high, "QF_BV", (64,), ("int8", "uint8", "int16", "int32")),
    "widen_rows_low": (widen_rows_low, "QF_BV", (64,), ("int8", "uint8", "int16", "int32")),
    "widen_periodic_high": (widen_periodic_high, "QF_BV", (64,), ("int8", "uint8", "int16", "int32")),
    "widen_periodic_low": (widen_periodic_low, "QF_BV", (64,), ("int8", "uint8", "int16", "int32")),
    "dp_periodic": (dp_periodic, "QF_BV", (32,), ("int8", "uint8", "int16")),
}


def _signed(v, signed=True):
    z3 = z3mod()
    val = v.as_long()
    if signed and z3.is_bv_value(v) and val >= 1 << (v.size() - 1):
        val -= 1 << v.size()         # z3 prints bit-vectors unsigned
    return val


INPUT_VARIABLES = ("x", "x_even", "x_odd", "x_next")   # the input value(s) x, reported with In's signedness


def prove(name, in_dtype="int32", acc_bits=64, wrong=False, timeout_ms=30000, smt2_path=None):
    """Prove (or refute) one lemma in one configuration.  ``name`` is a key of LEMMAS (scalar datapath) or of
    SIMD_LEMMAS (a kernel SIMD body; ``wrong`` may then name a variant of SIMD_WRONG[name]).  A SIMD lemma may be a
    list of claims (one per lane / stage), proved one solver call each; the timeout applies per call.

    Returns
    -------
    dict
        ``name``, ``config``, ``wrong``, ``status`` ("proved" | "refuted" | "unknown"), ``counterexample`` (signed
        values) when refuted, ``reason`` when unknown, ``seconds``, ``logic``.
    """
    z3 = z3mod()
    build, logic = LEMMAS[name] if name in LEMMAS else SIMD_LEMMAS[name][:2]
    claims, variables = build(in_dtype, acc_bits, wrong)
    if not isinstance(claims, list):
        claims = [claims]
    out = {"name": name, "config": f"in={in_dtype} acc=int{acc_bits}", "wrong": wrong, "logic": logic,
           "seconds": 0.0, "status": "proved"}
    scripts = []
    for claim in claims:
        # Each query in a fresh context: z3's search depends on the internal ids of the terms, so in a shared context
        # a query's time depends on what the process built before (a refutation of a wrong 32x32 product took 0.15 s
        # or 12 s); translated into its own context it is the same query every time, in the CLI, tests or a script.
        ctx = z3.Context()
        solver = z3.Solver(ctx=ctx)      # the default strategy: faster than SolverFor on the multiplier lemma
        solver.set("timeout", int(timeout_ms))
        solver.add(z3.Not(claim).translate(ctx))
        if smt2_path is not None:
            scripts.append(solver.to_smt2())
        t0 = time.perf_counter()
        r = solver.check()
        out["seconds"] += time.perf_counter() - t0
        if r == z3.sat:
            model = solver.model()
            out["status"] = "refuted"
            in_signed = IN_BITS[in_dtype][1]
            out["counterexample"] = {k: _signed(model.eval(v.translate(ctx), model_completion=True),
                                                in_signed or k not in INPUT_VARIABLES) for k, v in variables.items()}
            break
        if r != z3.unsat:
            out["status"] = "unknown"
            out["reason"] = solver.reason_unknown()
            if not wrong:
                break
    if smt2_path is not None:          # one file; several claims as (push)/(pop) scopes, one check-sat each
        with open(smt2_path, "w") as fh:
            fh.write(f"; fxbn lemma {name} in={in_dtype} acc=int{acc_bits}"
                     f"{' (wrong variant)' if wrong is True else f' (wrong variant {wrong})' if wrong else ''}: negated claim"
                     f"{f's ({len(scripts)} scopes)' if len(scripts) > 1 else ''}, expected: "
                     f"{'sat' if wrong else 'unsat'}\n(set-logic {logic})\n")
            if len(scripts) == 1:
                fh.write(scripts[0])
            else:
                for text in scripts:
                    fh.write("(push 1)\n" + text + "(pop 1)\n")
    return out


def prove_all(in_dtypes=("int8", "uint8", "int16", "int32"), acc_bits=(32, 64), timeout_ms=30000, smt2_dir=None):
    """Every lemma in every configuration (configuration-free lemmas once per accumulator width), then every SIMD
    lemma for each requested input type and accumulator width its kernel path serves (SIMD_LEMMAS)."""
    import os

    results = []
    for w in acc_bits:
        for name in LEMMAS:
            per_dtype = name in ("multiply_add_truncates", "increment", "product_width")
            for in_dtype in in_dtypes if per_dtype else in_dtypes[:1]:
                path = None if smt2_dir is None else os.path.join(smt2_dir, f"lemma.{name}.{in_dtype}.acc{w}.smt2")
                res = prove(name, in_dtype, w, False, timeout_ms, path)
                if not per_dtype:
                    res["config"] = f"acc=int{w}"
                results.append(res)
    for name, (_, _, widths, dtypes) in SIMD_LEMMAS.items():
        for w in (w for w in acc_bits if w in widths):
            for in_dtype in (d for d in in_dtypes if d in dtypes):
                path = None if smt2_dir is None else os.path.join(smt2_dir, f"lemma.{name}.{in_dtype}.acc{w}.smt2")
                results.append(prove(name, in_dtype, w, False, timeout_ms, path))
    return results
