"""Datapath lemmas: the C++ kernel's arithmetic is the mathematics the certificates and z3 proofs talk about.

The kernel (csrc/fxbn/kernel*.cpp) computes, in an Acc = int32 or int64 register, for an input of type In:

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

- ``codegen_expression``: the C expression fxbn.codegen emits (built from its template ``fxbn.codegen.EXPR``) is free
  of undefined behaviour and equals clamp(floor((A*x + B) / 2^s)) at int32_t/int64_t under the accumulator bound.
- ``onnx_floor_div``: the floor division of fxbn.onnx's exported subgraph (ONNX has no signed shift):
  Div(Sub(acc, Mod(acc, 2^s)), 2^s) with Mod fmod=0 (bvsmod) and truncating Div (bvsdiv) is floor(acc / 2^s) for
  every acc of w bits and s <= w - 2; plain Div and fmod=1 are refuted.
- ``onnx_div_clip``: the network exporter's shorter form (fxbn.onnx.network._div_clamp): Clip(Div(t, 2^s), lo, hi)
  with truncating Div equals clamp(floor(t / 2^s), lo, hi) for every w-bit t, s <= w - 2 and 0 <= lo <= hi; the
  same with lo = -1 allowed is refuted (why the exporter folds an offset o*2^s into t).

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

AVX2 bodies (csrc/fxbn/kernel_avx2.cpp, kernel ISA "avx2"):

- ``avx2_mul32_rows`` (mul32_rows and mul32_periodic): vpmaddwd with the pair (A, 0) for 8/16-bit inputs and
  |A| < 2^15, else vpmulld; vpaddd; vpsrad / vpsravd; 32-bit clamp.
- ``avx2_widen_rows``: the widen_rows_high lane claims with the odd elements by vpsrlq, plus the high-dword gather
  vpshufd 0xF5 + vpblendd 0xAA on a 128-bit lane; ``avx2_widen_periodic``: the same with the per-entry tables of
  widen_periodic_high (vpsravd by s - 32).
- ``avx2_widen_rows_int32``: avx2 widen_rows with int32 inputs (the odd elements from a second load one element on,
  vpsravd); ``avx2_widen_pixels``: int32 -> 8-bit channel-last with 8 channels' A (as dwords: vpsrlq 32 for the odd
  channels), B, s - 32 in registers; ``avx512_widen_pixels`` (kernel_avx512.cpp): the same lanes with 64 channels'
  parameters in zmm registers and high_dwords' masked vpshufd gather.
- ``avx2_widen_short`` (since h8-short): the per-channel check is pixel_range_check's biased one-compare, lo2 / w2
  blended at a row boundary; with one [lo, hi] for every channel x - lo into one vpmaxud accumulator compared with
  hi - lo (by induction; since h9-late, before vpminsd / vpmaxsd accumulators).
- ``pixel_range_check`` (both widen_pixels, since h7-pixels): the per-channel check x - (lo - 2^31) > (hi - lo) - 2^31
  (vpsubd, vpcmpgtd / vpcmpgtd into a mask, tables range32) is exactly x outside [lo, hi]; ``pixel_save``: under
  out= every output vector's old bytes reach the save buffer before the vector is stored (AVX-512: per 64-byte store;
  AVX2: a run's whole range first, and the tensor's last pixel whole before its tiles), so restoring the range walked
  gives back the output as it was.
- ``pixel_lane_check`` (the AVX2 widen_pixels with int32 inputs and per-channel ranges, since h10-pix): per lane
  x - lo (vpsubd, mod 2^32) into one vpmaxud accumulator per 8-channel group of a group pair and run, compared with
  hi - lo (range32's width ^ 2^31) by vpmaxud + vpcmpeqd at the pair's end, is exactly "some x of that lane outside
  [lo, hi]" (by induction over the vectors).
- ``avx2_byte_template`` / ``avx2_byte_lean`` / ``avx2_byte_rows``: the 8-bit template (kernel_byte.cpp): the full
  sequence; the same with the instructions the plan proved to be identities left out; NCHW rows with each row's lane
  broadcast.
- ``avx2_widen_rows_bytes``: avx2 widen_rows with 8-bit outputs: the high dwords gathered by one vshufps 0xDD
  (order [0, 2, 1, 3] per 128-bit lane, put back by a vpshufb after the packs), the shift by s - 32 as vpsraw after
  vpackssdw where s - 32 <= 8 (int8) / 7 (uint8) (also the AVX-512 widen_rows' pack_store64<WordShift>), else vpsravd.
- ``avx2_widen_pixels_bytes`` (since h7-pixavx2): avx2 widen_pixels with 8-bit outputs: the high dwords gathered by
  one vshufps 0xDD, the per-channel counts s - 32 permuted to the same [0, 2, 1, 3] order by one vpshufd 0xD8 per
  group and run, vpsravd, the packs, vpermd and one vpshufb putting each dword's bytes back in order.
- ``avx2_widen_pixels_unshifted`` (since h11-shift): the same body where every channel's s is 32 after
  widen_to_high: no vpsravd, the high dwords clamped as they are.
- ``avx2_widen_rows_words``: avx2 widen_rows int16 -> 16-bit with the input shift 16: x * 2^16 by vpunpck[lh]wd
  with zero, whose lane order vpackssdw / vpackusdw undoes (no vpermq).
- ``avx2_widen_pixels_words`` (since h11-i16): avx2 widen_pixels_words, int16 -> int16 channel-last with
  input_shift_16 on every channel: the four vpmuldq inputs of a group pair from one 32-byte load (vpslld 16, vpand
  0xFFFF0000, vpsrlq 32) against the A / B tables in the products' lane order, vshufps 0xDD, vpsravd by counts in
  its order, vpackssdw and one vpshufb back to channel order; the per-channel check as a biased word compare.
- ``avx2_pack_narrow``: the narrowing stores (vpackssdw/vpackusdw, vpacksswb/vpackuswb, vpermd/vpermq, narrow
  min/max) element by element with each instruction's 128-bit-lane structure.

NEON bodies (csrc/fxbn/kernel_neon.cpp, aarch64, kernel ISA "neon"; the right shift is sshl by a negative count,
modelled with the instruction's rule: the count is the signed low byte of the count lane):

- ``neon_mul32`` (rows and periodic): sxtl/uxtl widening, smlal/smlal2 with A within int16 for 8/16-bit inputs, else
  mla; sshl by -s; 32-bit clamp.
- ``neon_widen`` (rows and periodic): smlal/smlal2 32x32->64, sshl by -s, sqxtn to int32, 32-bit clamp.
- ``neon_narrow``: the stores (sqxtn/sqxtn2, sqxtun/sqxtun2 from int32 to 16 bits and from int16 to 8 bits, narrow
  min/max) element by element with the low/high half placement of the *2 forms.
"""
import time

from fxbn.atomic import write_file
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


def rescale_input_16(in_dtype, w, wrong=False):
    """Claim: for k = w/4 and s in [k, w - 1 - k], if E * 2^k does not overflow w bits, then (E * 2^k) >> (s + k) ==
    E >> s.  input_shift_16 (w = 64, k = 16; the AVX2 int16 -> 16-bit rows) replaces (A, B, s) by (A, x*2^16,
    B*2^16, s + 16) when (A*x + B)*2^16 fits int64 at both ends of [lo, hi] (range_bound: then everywhere); x*2^16 fits
    int32 for int16 x, so the new accumulator is E*2^16 and this lemma gives the same output.
    wrong: the shift by s + k - 1."""
    z3 = z3mod()
    E, s = z3.BitVec("E", w), z3.BitVec("s", w)
    k = w // 4
    scaled = E << k
    pre = z3.And(z3.UGE(s, k), z3.ULE(s, w - 1 - k), (scaled >> k) == E)
    return z3.Implies(pre, (scaled >> (s + k - (1 if wrong else 0))) == (E >> s)), {"E": E, "s": s}


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


def onnx_div_clip(in_dtype, w, wrong=False):
    """Claim (fxbn.onnx.network's BN/add subgraphs): Clip(Div(t, 2^s), lo, hi), Div truncating toward zero (bvsdiv),
    equals clamp(t >> s, lo, hi) -- the arithmetic shift is floor division (``shift_is_floor``) -- for every w-bit
    t, every s in [0, w - 2] and every lo, hi with 0 <= lo <= hi.  wrong: lo may be -1 (a negative clamp end: there
    trunc and floor differ after the clamp, e.g. t = -1, s = 1 gives 0 against -1)."""
    z3 = z3mod()
    t, lo, hi = z3.BitVecs("t lo hi", w)
    s = z3.BitVec("s", w)
    pre = z3.And(lo <= hi, lo >= (-1 if wrong else 0))
    claims = []
    for k in range(w - 1):
        q = t / z3.BitVecVal(1 << k, w)                             # ONNX Div on integers: bvsdiv
        claims.append(z3.Implies(z3.And(s == k, pre), _clamp(z3, q, lo, hi) == _clamp(z3, t >> k, lo, hi)))
    return claims, {"t": t, "s": s, "lo": lo, "hi": hi}


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
    "rescale_input_16": (rescale_input_16, "QF_BV"),
    "saturating_store": (saturating_store, "QF_BV"),
    "pack_narrow": (pack_narrow, "QF_BV"),
    "onnx_floor_div": (onnx_floor_div, "QF_BV"),
    "onnx_div_clip": (onnx_div_clip, "QF_BV"),
}


# ------------------------------------------------------------------------------------------------ SIMD bodies
# One lemma per distinct arithmetic formulation of the hand-written AVX-512 bodies in csrc/fxbn/kernel_<isa>.cpp, each
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
    "avx2_mul32_rows": ("zero_extend", "madd_unchecked_a", "madd_sign_extended_a", "logical_shift"),
    "avx2_widen_rows": ("shuffle_low_dwords", "blend_swapped", "logical_shift", "missing_s_ge_32", "zero_extend",
                        "input_shift_past_headroom"),
    "avx2_widen_periodic": ("shuffle_low_dwords", "blend_swapped", "logical_shift", "missing_s_ge_32",
                            "zero_extend", "odd_a_from_even_table"),
    "avx2_pack_narrow": ("no_permute", "uint8_signed_pack"),
    "avx2_widen_rows_bytes": ("word_shift_t9", "uint8_word_shift_t8", "no_byte_shuffle", "shufps_low_dwords",
                              "logical_shift", "zero_extend"),
    "avx2_widen_pixels_bytes": ("shift_table_unpermuted", "no_byte_shuffle", "shufps_low_dwords", "counts_of_tile8",
                                "logical_shift", "zero_extend"),
    "avx2_widen_pixels_unshifted": ("shift_dropped_t1", "no_byte_shuffle", "shufps_low_dwords", "zero_extend"),
    "avx2_widen_rows_words": ("unpack_zero_high", "halves_swapped", "logical_shift", "zero_extend"),
    "avx2_widen_pixels_words": ("products_channel_order", "odd_even_swapped", "missing_shift", "counts_channel_order",
                                "no_word_shuffle", "shufps_low_dwords", "check_unbiased", "logical_shift"),
    "avx2_widen_rows_int32": ("odd_load_not_offset", "shuffle_low_dwords", "blend_swapped", "logical_shift",
                              "missing_s_ge_32", "zero_extend"),
    "avx2_widen_pixels": ("odd_a_unshifted", "odd_load_not_offset", "shuffle_low_dwords", "blend_swapped",
                          "logical_shift", "missing_s_ge_32", "zero_extend", "input_shift_past_headroom"),
    "avx512_widen_pixels": ("odd_a_unshifted", "odd_load_not_offset", "mask_swapped", "shuffle_identity",
                            "logical_shift", "missing_s_ge_32", "zero_extend", "input_shift_past_headroom"),
    "pixel_range_check": ("unbiased", "width_unbiased", "not_strict"),
    "pixel_save": ("save_after_store", "one_save_skipped"),
    "neon_mul32": ("logical_shift", "zero_extend", "positive_count", "smlal_unchecked_a"),
    "neon_widen": ("truncating_narrow", "logical_shift", "zero_extend", "positive_count", "qminmax_not_int32"),
    "neon_narrow": ("truncating_narrow", "uint8_signed_narrow", "halves_swapped"),
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


def _widen(in_dtype, wrong, rows, high, name=None):
    """Shared model of widen_rows / widen_periodic (AVX-512) and avx2 widen_rows for one 64-bit lane pair (elements
    e = even, o = odd)."""
    name = name or f"widen_{'rows' if rows else 'periodic'}_{'high' if high else 'low'}"
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
    second_load = name in ("widen_rows_high", "avx2_widen_rows_int32") or (
        name in ("avx2_widen_pixels", "avx512_widen_pixels") and bits == 32)  # their int16 inputs: vpsrlq
    if high and second_load:
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
        if name in ("avx2_widen_pixels", "avx512_widen_pixels"):    # A of 8 (16) channels as dwords: the qword of
            pair = z3.Concat(Ao, Ae)                                # channels (2k, 2k + 1); vpmuldq reads its low
            av = pair                                               # dword, vpsrlq 32 brings the odd one down
            av_odd = pair if bad == "odd_a_unshifted" else z3.LShR(pair, 32)
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


# ------------------------------------------------------------------------------------------------ AVX2 bodies
# csrc/fxbn/kernel_avx2.cpp, picked when the kernel ISA is "avx2" (tests: _core.kernel_isa("avx2")).

def _pshufd(z3, v, imm):
    """vpshufd on one 128-bit lane: dword i of the result is dword (imm >> 2i) & 3 of v."""
    d = [z3.Extract(32 * k + 31, 32 * k, v) for k in range(4)]
    return z3.Concat(*[d[(imm >> (2 * i)) & 3] for i in reversed(range(4))])


def _blendd(z3, a, b, imm):
    """vpblendd on one 128-bit lane (imm's low 4 bits): dword i from b where bit i is set, else from a."""
    pick = lambda v, k: z3.Extract(32 * k + 31, 32 * k, v)  # noqa: E731
    return z3.Concat(*[pick(b if (imm >> i) & 1 else a, i) for i in reversed(range(4))])


def _avx2_widen(name, in_dtype, wrong, rows):
    """avx2 widen_rows / widen_periodic: the _widen lane claims plus the vpshufd 0xF5 + vpblendd 0xAA gather."""
    z3 = z3mod()
    bad = _variant(name, wrong)
    lane_bad = bad if bad not in ("shuffle_low_dwords", "blend_swapped") else None
    claims, variables = _widen(in_dtype, lane_bad, rows=rows, high=True, name=name)
    pe0, pe1, po0, po1 = z3.BitVecs("Pe0 Pe1 Po0 Po1", 64)
    variables.update({"Pe0": pe0, "Pe1": pe1, "Po0": po0, "Po1": po1})
    imm_s = 0xA0 if bad == "shuffle_low_dwords" else 0xF5
    imm_b = 0x5 if bad == "blend_swapped" else 0xA
    h = _blendd(z3, _pshufd(z3, z3.Concat(pe1, pe0), imm_s), z3.Concat(po1, po0), imm_b)
    hi = lambda v: z3.Extract(63, 32, v)  # noqa: E731
    claims.append(h == z3.Concat(hi(po1), hi(pe1), hi(po0), hi(pe0)))   # elements 3, 2, 1, 0 (high to low dword)
    return claims, variables


def avx2_widen_periodic(in_dtype, w=64, wrong=False):
    """AVX2 widen_periodic (64-bit accumulator, multipliers_fit_int32, sizeof(Out) <= 4, periodic tables with
    period % 64 == 0, every s >= 32): per-entry A (sign-extended int64, even entries then odd ones per 16-entry block:
    the even and odd products read different table entries), B likewise, vpsravd by s32 = s - 32; the lane claims of
    ``widen_periodic_high`` plus the gather of ``avx2_widen_rows``.  Wrong: ``shuffle_low_dwords``,
    ``blend_swapped``, ``logical_shift``, ``missing_s_ge_32``, ``zero_extend``, ``odd_a_from_even_table``."""
    return _avx2_widen("avx2_widen_periodic", in_dtype, wrong, rows=False)


def avx2_widen_rows(in_dtype, w=64, wrong=False):
    """AVX2 widen_rows (64-bit accumulator, multipliers_fit_int32, sizeof(Out) <= 4, by rows; rows with s < 32 take the
    portable loop): x * 2^xk by vpsllvd, the odd elements by vpsrlq 32, P = vpmuldq(x, A) + B per 64-bit lane,
    vpsrad by s - 32 of the high dwords, 32-bit clamp -- the per-lane claims of ``widen_rows_high`` with the AVX2
    odd-lane source -- plus the gather of the high dwords: vpshufd 0xF5 on the even products then vpblendd 0xAA with
    the odd ones puts floor(P / 2^32) of element k in dword k (modelled on a 128-bit lane: two even and two odd
    products, every bit symbolic).  The narrowing store is ``avx2_pack_narrow``.
    Wrong: ``shuffle_low_dwords`` (vpshufd 0xA0: the even products' low dwords), ``blend_swapped`` (vpblendd 0x55),
    ``logical_shift``, ``missing_s_ge_32``, ``zero_extend``, ``input_shift_past_headroom``.  With int32 inputs the
    body takes the odd elements from a second load instead: ``avx2_widen_rows_int32``."""
    return _avx2_widen("avx2_widen_rows", in_dtype, wrong, rows=True)


def avx2_widen_rows_int32(in_dtype, w=64, wrong=False):
    """AVX2 widen_rows with int32 inputs: ``avx2_widen_rows`` with the odd elements from a second load one element on
    (load8(x + k + 1): qword k holds x[2k + 1] in its low dword; the tensor's last 32-block goes to the scalar tail)
    instead of vpsrlq, and vpsravd by a broadcast s - 32 (the same count rule as vpsrad: counts above 31 fill with
    the sign).  Wrong: ``odd_load_not_offset`` (the odd products from the even elements' load), ``shuffle_low_dwords``,
    ``blend_swapped``, ``logical_shift``, ``missing_s_ge_32``, ``zero_extend``."""
    return _avx2_widen("avx2_widen_rows_int32", in_dtype, wrong, rows=True)


def avx2_widen_pixels(in_dtype, w=64, wrong=False):
    """AVX2 widen_pixels (int32 -> 8-bit and int16 -> int16 channel-last, channels % 8 == 0, every s >= 32 after
    widen_to_high): 8 channels' parameters in registers, lane k of a vector is channel g + k of one pixel; int16
    inputs scaled by 2^xk per channel (vpsllvd, xk <= 16) and their odd elements by vpsrlq 32.  Per lane pair (channels
    2k, 2k + 1): A loaded as 8 dwords, so the qword holds (A_odd, A_even): vpmuldq reads A_even from its low dword,
    and vpsrlq 32 brings A_odd down for the odd product; the odd elements from a second load one element on; B of
    the even and of the odd channels from two qword vectors; vpsravd by the per-channel s - 32; the high-dword gather
    of ``avx2_widen_rows``.  The narrowing store is ``avx2_pack_narrow`` (2 pixels x 16 channels packed together,
    or 4 pixels x 8 channels in the last group where channels % 16 == 8; int16 outputs: vpackssdw + vpermq of one
    pixel's 16 channels, store_lanes' 16-bit step).  The body walks runs of pixels one pair of groups at a time (since
    h6-pixels; 16 pixels per run, since h8-pix 8 or 4 where a pixel's inputs pass 256 bytes or 2 KiB), int32 inputs
    walk the tensor's last pixel as tiles with itself (h2 = h0, h3 = h1: an instance of the tile claim) but its last 16
    or 24 channels (the scalar formula: the odd-element load there would read past the array; since h8-pix, before
    all of it), and the AVX-512 ISAs take it where their own widen_pixels does not serve; since h10-late with 8-bit
    outputs and channels % 16 == 0 a pixel split by a chunk's ends is walked by group pairs as tiles with themselves
    (no new lane arithmetic); none of
    these changes a lane's instructions, which are what this lemma states.
    Wrong: ``odd_a_unshifted`` (the odd product with the qword as loaded: A_even), ``odd_load_not_offset`` (int32
    inputs), ``shuffle_low_dwords``, ``blend_swapped``, ``logical_shift``, ``missing_s_ge_32``, ``zero_extend``,
    ``input_shift_past_headroom``."""
    return _avx2_widen("avx2_widen_pixels", in_dtype, wrong, rows=False)


def avx512_widen_pixels(in_dtype, w=64, wrong=False):
    """AVX-512 widen_pixels (int32 -> 8-bit and int16 -> int16 channel-last, channels % 64 == 0, every s >= 32 after
    widen_to_high; per-channel ranges since h7-pixels): 64 channels' parameters in zmm registers, lane k of
    a vector is channel g + k of one pixel.  Per lane pair (channels 2k, 2k + 1): A loaded as 16 dwords, so the
    qword holds (A_odd, A_even): vpmuldq reads A_even from its low dword, and vpsrlq 32 (once per block) brings A_odd
    down; int32 inputs: the odd elements from a second load one element on; int16 inputs: x * 2^xk per channel
    (vpsllvd, xk <= 16), the odd elements by vpsrlq 32; B of the even and of the odd channels from two qword vectors
    (per 16 channels: the 8 even ones, then the 8 odd ones); vpsravd by the per-channel s - 32.  The high dwords are
    gathered by high_dwords' masked vpshufd (_mm512_mask_shuffle_epi32(po, 0x5555, pe, CDAB): the even dwords from
    pe with each qword's dwords swapped, the odd ones kept from po), modelled on a 128-bit lane (the shuffle and the
    mask repeat per lane).  The narrowing store is pack_store64 for 8-bit outputs (the same packs as
    ``avx2_pack_narrow`` per 128-bit lane; ``pack_narrow``) and clamp_store16 for int16 (``saturating_store``); the
    range check is ``pixel_range_check`` per channel (since h7-pixels; before, a min/max against one shared [lo, hi]).
    Wrong: ``odd_a_unshifted``, ``odd_load_not_offset``, ``mask_swapped`` (mask 0xAAAA), ``shuffle_identity``
    (vpshufd 0xE4: the even products' low dwords), ``logical_shift``, ``missing_s_ge_32``, ``zero_extend``,
    ``input_shift_past_headroom`` (``odd_load_not_offset`` concerns the int32 inputs only)."""
    z3 = z3mod()
    name = "avx512_widen_pixels"
    bad = _variant(name, wrong)
    lane_bad = bad if bad not in ("mask_swapped", "shuffle_identity") else None
    claims, variables = _widen(in_dtype, lane_bad, rows=False, high=True, name=name)
    pe0, pe1, po0, po1 = z3.BitVecs("Pe0 Pe1 Po0 Po1", 64)
    variables.update({"Pe0": pe0, "Pe1": pe1, "Po0": po0, "Po1": po1})
    mask = 0xA if bad == "mask_swapped" else 0x5                    # the 128-bit lane's 4 bits of 0x5555
    shuffled = _pshufd(z3, z3.Concat(pe1, pe0), 0xE4 if bad == "shuffle_identity" else 0xB1)  # CDAB = 0xB1
    h = _blendd(z3, z3.Concat(po1, po0), shuffled, mask)            # merge masking: set bits from the shuffle
    hi = lambda v: z3.Extract(63, 32, v)  # noqa: E731
    claims.append(h == z3.Concat(hi(po1), hi(pe1), hi(po0), hi(pe0)))   # elements 3, 2, 1, 0 (high to low dword)
    return claims, variables


def avx2_mul32_rows(in_dtype, w=32, wrong=False):
    """AVX2 mul32_rows / mul32_periodic (32-bit accumulator, sizeof(Out) <= 4; per lane, so by-row broadcasts and
    per-entry tables alike): acc = vpmaddwd(x, (A, 0)) + B for 8/16-bit inputs when A in (-2^15, 2^15) (the table or
    broadcast holds (uint16)A), else vpmulld(x, A) + B (mod 2^32); vpsrad / vpsravd by s <= 31; 32-bit clamp.
    Claims, proved separately: (1) per multiply path, acc is the exact A*x + B modulo 2^32 (vpmaddwd: each int32
    lane read as the signed 16-bit pair (lo, hi), lo*a_lo + hi*a_hi); (2) for every exact E within 32 bits (the
    solver's accumulator bound), the shift and clamp of its low 32 bits is clamp(floor(E / 2^s)).  The narrowing
    store is ``avx2_pack_narrow``.
    Wrong: ``zero_extend`` (vpmovzx for a signed input), ``madd_unchecked_a`` (vpmaddwd for any A: only its low 16
    bits count), ``madd_sign_extended_a`` (the pair (A, -1) for A < 0: hi * -1 leaks in), ``logical_shift``
    (vpsrld)."""
    z3 = z3mod()
    bad = _variant("avx2_mul32_rows", wrong)
    bits, signed = IN_BITS[in_dtype]
    B, s, qmin, qmax = z3.BitVecs("B s qmin qmax", 32)
    xi = z3.BitVec("x", bits)
    variables = {"B": B, "s": s, "qmin": qmin, "qmax": qmax, "x": xi}
    xl = _ext(z3, xi, 32, signed and bad != "zero_extend")               # load8: vpmovsx / vpmovzx
    W = 32 + max(bits, 16) + 2
    exact = lambda A: _ext(z3, A, W) * _ext(z3, xi, W, signed) + _ext(z3, B, W)  # noqa: E731
    claims = []
    A = z3.BitVec("A", 32)                                               # vpmulld: any int32 multiplier
    variables["A"] = A
    claims.append(z3.Extract(31, 0, exact(A)) == xl * A + B)
    if bits <= 16:                                                       # vpmaddwd with the pair (A, 0)
        if bad == "madd_unchecked_a":
            Am, pre = z3.BitVec("A_madd", 32), []
        else:
            a16 = z3.BitVec("A16", 16)
            Am, pre = z3.SignExt(16, a16), [a16 != -(1 << 15)]
        variables["A_madd"] = Am
        al = Am if bad == "madd_sign_extended_a" else z3.ZeroExt(16, z3.Extract(15, 0, Am))
        word = lambda v, k: z3.SignExt(16, z3.Extract(16 * k + 15, 16 * k, v))  # noqa: E731
        madd = word(xl, 0) * word(al, 0) + word(xl, 1) * word(al, 1)
        claims.append(z3.Implies(z3.And(*pre), z3.Extract(31, 0, exact(Am)) == madd + B))
    E = z3.BitVec("E", W)                                                # (2) every exact value within 32 bits
    variables["E"] = E
    fits, y_math = _math_sum(z3, E, z3.BitVecVal(0, 32), s, qmin, qmax, 32)
    acc = z3.Extract(31, 0, E)
    q = z3.LShR(acc, s) if bad == "logical_shift" else acc >> s
    y = _clamp(z3, q, qmin, qmax)
    claims.append(z3.Implies(z3.And(fits, z3.ULE(s, 31), qmin <= qmax), _same(z3, y, y_math)))
    return claims, variables


def _sat(z3, v, lo, hi, bits):
    """Saturation of the signed value v to [lo, hi], stored on `bits` bits (vpackssdw/vpacksswb: signed bounds;
    vpackusdw/vpackuswb: [0, 2^bits - 1])."""
    return z3.If(v > hi, z3.BitVecVal(hi, bits), z3.If(v < lo, z3.BitVecVal(lo, bits), z3.Extract(bits - 1, 0, v)))


def avx2_pack_narrow(in_dtype, w=32, wrong=False):
    """AVX2 store_lanes: int32 lanes h (elements 0..31, four vectors of 8) clamped to [qmin, qmax] and narrowed.
    8-bit Out: w01 = vpackssdw(h0, h1), w23 = vpackssdw(h2, h3) (per 128-bit lane: 4 dwords of the first operand
    then 4 of the second), vpacksswb / vpackuswb(w01, w23) (per lane: 8 words of each), vpermd (0,4,1,5,2,6,3,7),
    byte min/max (dropped for int8 with [qmin, qmax] = [-128, 127]).  16-bit Out: vpackssdw / vpackusdw(h0, h1),
    vpermq 0xD8, word min/max (dropped for int16 with its whole range).  Modelled element by element with the lane
    structure of each instruction; claim: output element i is the low bits of clamp(h_i, qmin, qmax) for every
    h_i and every qmin <= qmax within Out's range.
    Wrong: ``no_permute`` (the vpermd / vpermq left out), ``uint8_signed_pack`` (uint8 packed with vpacksswb)."""
    z3 = z3mod()
    bad = _variant("avx2_pack_narrow", wrong)
    h = [z3.BitVec(f"h{i}", 32) for i in range(32)]
    variables = {f"h{i}": h[i] for i in range(32)}

    packs = _packs_lanes

    claims = []
    for out, bits, signed, full in (("int8", 8, True, True), ("int8", 8, True, False), ("uint8", 8, False, False),
                                    ("int16", 16, True, True), ("int16", 16, True, False),
                                    ("uint16", 16, False, False)):
        lo_t, hi_t = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        qmin, qmax, pre = _out_bounds(z3, out, lo_t, hi_t, full, variables)
        if bits == 8:
            ws = lambda v: _sat(z3, v, -(1 << 15), (1 << 15) - 1, 16)  # noqa: E731  vpackssdw
            w01, w23 = packs(h[0:8], h[8:16], ws), packs(h[16:24], h[24:32], ws)
            if signed or bad == "uint8_signed_pack":
                bs = lambda v: _sat(z3, v, -128, 127, 8)  # noqa: E731  vpacksswb
            else:
                bs = lambda v: _sat(z3, v, 0, 255, 8)  # noqa: E731  vpackuswb
            packed = packs(w01, w23, bs)                                  # 32 bytes
            order = list(range(8)) if bad == "no_permute" else [0, 4, 1, 5, 2, 6, 3, 7]
            elems = [b for d in order for b in packed[4 * d:4 * d + 4]]   # vpermd: dword i <- dword order[i]
            count = 32
        else:
            sat = ((lambda v: _sat(z3, v, -(1 << 15), (1 << 15) - 1, 16)) if signed  # vpackssdw
                   else (lambda v: _sat(z3, v, 0, (1 << 16) - 1, 16)))            # vpackusdw
            packed = packs(h[0:8], h[8:16], sat)                          # 16 words
            order = [0, 1, 2, 3] if bad == "no_permute" else [0, 2, 1, 3]  # vpermq 0xD8
            elems = [wd for qd in order for wd in packed[4 * qd:4 * qd + 4]]
            count = 16
        for i in range(count):
            e = elems[i] if full else _narrow_minmax(z3, elems[i], qmin, qmax, signed)  # vpmax/vpmin
            claims.append(z3.Implies(z3.And(*pre), e == z3.Extract(bits - 1, 0, _clamp(z3, h[i], qmin, qmax))))
    return claims, variables                                        # one claim per output element (fast so)


def _shufps(z3, a, b, imm):
    """vshufps on one 128-bit lane (integer data): dwords 0, 1 from a, dwords 2, 3 from b, each picked by 2 bits."""
    pick = lambda v, k: z3.Extract(32 * k + 31, 32 * k, v)  # noqa: E731
    return z3.Concat(pick(b, (imm >> 6) & 3), pick(b, (imm >> 4) & 3), pick(a, (imm >> 2) & 3), pick(a, imm & 3))


def _packs_lanes(a, b, sat):
    """vpacks*: per 128-bit lane, a's half-lane elements, then b's, each through sat."""
    n = len(a) // 2
    return [sat(v) for v in a[:n] + b[:n] + a[n:] + b[n:]]


def _bytes_in_order(z3, w01, w23, signed, shuffle=True):
    """The 32 bytes of vpacks[su]wb(w01, w23), vpermd [0, 4, 1, 5, 2, 6, 3, 7] and (shuffle) the vpshufb that swaps
    bytes 1 and 2 of every dword: each 16-bit lane back in the order of the gathered elements."""
    bs = ((lambda v: _sat(z3, v, -128, 127, 8)) if signed         # vpacksswb
          else (lambda v: _sat(z3, v, 0, 255, 8)))                # vpackuswb
    packed = _packs_lanes(w01, w23, bs)
    elems = [b for d in (0, 4, 1, 5, 2, 6, 3, 7) for b in packed[4 * d:4 * d + 4]]   # vpermd
    if shuffle:
        elems = [elems[4 * (i // 4) + [0, 2, 1, 3][i % 4]] for i in range(32)]  # vpshufb
    return elems


def _high_dwords_gathered(z3, variables, low_dwords=False):
    """One 128-bit lane of vshufps(pe, po, 0xDD) (0x88 with low_dwords: a wrong variant) holds the high dwords of the
    even products pe and the odd ones po as elements 0, 2, 1, 3 (low to high)."""
    pe0, pe1, po0, po1 = z3.BitVecs("Pe0 Pe1 Po0 Po1", 64)
    variables.update({"Pe0": pe0, "Pe1": pe1, "Po0": po0, "Po1": po1})
    g = _shufps(z3, z3.Concat(pe1, pe0), z3.Concat(po1, po0), 0x88 if low_dwords else 0xDD)
    hi = lambda v: z3.Extract(63, 32, v)  # noqa: E731
    return g == z3.Concat(hi(po1), hi(po0), hi(pe1), hi(pe0))


def avx2_widen_rows_bytes(in_dtype, w=64, wrong=False):
    """AVX2 widen_rows with 8-bit outputs (store_bytes_shuffled), and the word shift of the AVX-512 widen_rows'
    pack_store64<WordShift>: the lane claims of ``avx2_widen_rows`` (``avx2_widen_rows_int32`` for int32 inputs), then
    (gather) vshufps 0xDD takes the high dwords of the even products (elements 0, 2 of a 128-bit lane) and of the odd
    ones (1, 3) in one op: dwords [0, 2, 1, 3]; (narrowing) for 32 int32 lanes h in that order (h_k: elements
    8k..8k+7, 128-bit lanes [0, 2, 1, 3] and [4, 6, 5, 7]) and t = s - 32: kShiftDwords vpsravd by t before the
    packs (any t <= 31), or kShiftWords vpackssdw then vpsraw by t (t <= 8 for int8, 7 for uint8: a lane saturated
    to int16 and shifted by such t still saturates at the 8-bit pack), or none (t = 0); vpacksswb / vpackuswb,
    vpermd (0,4,1,5,2,6,3,7), vpshufb (bytes 0,2,1,3 of every dword), byte min/max (dropped for int8's whole range).
    Claim per output element i: its byte is the low byte of clamp(h_i >> t, qmin, qmax) -- with the lane claims,
    clamp(floor((A*x + B) / 2^s)).  Wrong: ``word_shift_t9`` (vpsraw for t = 9, int8), ``uint8_word_shift_t8``
    (vpsraw for t = 8, uint8), ``no_byte_shuffle`` (the vpshufb left out), ``shufps_low_dwords`` (vshufps 0x88),
    ``logical_shift``, ``zero_extend``."""
    z3 = z3mod()
    name = "avx2_widen_rows_bytes"
    bad = _variant(name, wrong)
    lane_name = "avx2_widen_rows_int32" if in_dtype == "int32" else "avx2_widen_rows"
    lane_bad = bad if bad in ("logical_shift", "zero_extend") else None
    claims, variables = _widen(in_dtype, lane_bad, rows=True, high=True, name=lane_name)
    claims.append(_high_dwords_gathered(z3, variables, bad == "shufps_low_dwords"))
    # narrowing of 32 lanes in the gathered order
    h = [z3.BitVec(f"h{i}", 32) for i in range(32)]
    variables.update({f"h{i}": h[i] for i in range(32)})
    lane_order = [0, 2, 1, 3, 4, 6, 5, 7]
    vecs = [[h[8 * k + lane_order[p]] for p in range(8)] for k in range(4)]
    t = z3.BitVec("t", 32)
    variables["t"] = t

    packs = _packs_lanes

    ws = lambda v: _sat(z3, v, -(1 << 15), (1 << 15) - 1, 16)  # noqa: E731  vpackssdw
    for out, signed, full in (("int8", True, True), ("int8", True, False), ("uint8", False, False)):
        lo_t, hi_t = (-128, 127) if signed else (0, 255)
        qmin, qmax, pre = _out_bounds(z3, out, lo_t, hi_t, full, variables)
        t_words = (9 if bad == "word_shift_t9" else 8) if signed else (8 if bad == "uint8_word_shift_t8" else 7)
        for shift, t_max in (("none", 0), ("words", t_words), ("dwords", 31)):
            if shift == "dwords":                                         # vpsravd (counts <= 31 here)
                hv = [[v >> t for v in vec] for vec in vecs]
            else:
                hv = vecs
            w01, w23 = packs(hv[0], hv[1], ws), packs(hv[2], hv[3], ws)
            if shift == "words":                                          # vpsraw by t (<= 15: no sign fill)
                t16 = z3.Extract(15, 0, t)
                w01, w23 = [v >> t16 for v in w01], [v >> t16 for v in w23]
            elems = _bytes_in_order(z3, w01, w23, signed, bad != "no_byte_shuffle")
            t_pre = [z3.ULE(t, t_max)]
            for i in range(32):
                e = elems[i] if full else _narrow_minmax(z3, elems[i], qmin, qmax, signed)
                want = z3.Extract(7, 0, _clamp(z3, h[i] >> t, qmin, qmax))
                claims.append(z3.Implies(z3.And(*(pre + t_pre)), e == want))
    return claims, variables


def avx2_widen_pixels_bytes(in_dtype, w=64, wrong=False):
    """AVX2 widen_pixels with 8-bit outputs (int32 inputs; since h7-pixavx2): the lane claims of ``avx2_widen_pixels``
    (per-channel A as dwords, B, the odd elements from the load one element on), then (gather) vshufps 0xDD takes
    the high dwords of the even products (channels 0, 2 of a 128-bit lane) and of the odd ones (1, 3) in one op:
    dwords [0, 2, 1, 3]; (counts) the group's 8 counts t_c = s_c - 32 (the s32 table, loaded once per group and run)
    permuted by vpshufd 0xD8 to the same order, so vpsravd shifts each lane by its own channel's count; (narrowing)
    the four vectors of a tile (2 pixels x 16 channels: groups [g, g + 8) and [g + 8, g + 16) of pixel p, then of
    pixel p + 1; or, in the last group where channels % 16 == 8, 4 pixels x 8 channels) through vpackssdw,
    vpacksswb / vpackuswb, vpermd (0,4,1,5,2,6,3,7), vpshufb (bytes 0,2,1,3 of every dword), byte min/max (dropped
    for int8's whole range).  Claim per output byte i of the tile: the low byte of clamp(h_i >> t_(channel of i),
    qmin, qmax), h_i the high dword of element i's P + B -- with the lane claims, clamp(floor((A*x + B) / 2^s)).
    Wrong: ``shift_table_unpermuted`` (the counts as loaded, in channel order), ``no_byte_shuffle`` (the vpshufb left
    out), ``shufps_low_dwords`` (vshufps 0x88), ``counts_of_tile8`` (the 16-channel tile shifted with the first
    group's counts for both groups), ``logical_shift``, ``zero_extend``."""
    z3 = z3mod()
    name = "avx2_widen_pixels_bytes"
    bad = _variant(name, wrong)
    lane_bad = bad if bad in ("logical_shift", "zero_extend") else None
    claims, variables = _widen(in_dtype, lane_bad, rows=False, high=True, name="avx2_widen_pixels")
    claims.append(_high_dwords_gathered(z3, variables, bad == "shufps_low_dwords"))
    # the counts: vpshufd 0xD8 of the channel-ordered counts puts channel order[p] at position p of a 128-bit lane
    t = [z3.BitVec(f"t{c}", 32) for c in range(16)]
    variables.update({f"t{c}": t[c] for c in range(16)})
    for half in (0, 4):
        cl = z3.Concat(*[t[half + k] for k in reversed(range(4))])
        perm = cl if bad == "shift_table_unpermuted" else _pshufd(z3, cl, 0xD8)
        want_perm = z3.Concat(*[t[half + [0, 2, 1, 3][k]] for k in reversed(range(4))])
        claims.append(perm == want_perm)
    h = [z3.BitVec(f"h{i}", 32) for i in range(32)]
    variables.update({f"h{i}": h[i] for i in range(32)})
    lane_order = [0, 2, 1, 3, 4, 6, 5, 7]
    count_order = lane_order if bad != "shift_table_unpermuted" else list(range(8))
    pre_t = [z3.ULE(tc, 31) for tc in t]                                  # s in [32, 63]

    for channels_per_pixel in (16, 8):                                    # the tiles: 2 x 16 and 4 x 8
        group_of = (lambda k: k % 2) if channels_per_pixel == 16 and bad != "counts_of_tile8" else (lambda k: 0)
        vecs = [[h[8 * k + lane_order[p]] >> t[8 * group_of(k) + count_order[p]] for p in range(8)]
                for k in range(4)]                                        # vshufps order, vpsravd
        if bad == "logical_shift":
            vecs = [[z3.LShR(h[8 * k + lane_order[p]], t[8 * group_of(k) + count_order[p]]) for p in range(8)]
                    for k in range(4)]
        claims += _tile_byte_claims(z3, vecs, lambda i: h[i] >> t[i % channels_per_pixel], variables, pre_t,
                                    bad != "no_byte_shuffle")
    return claims, variables


def _tile_byte_claims(z3, vecs, want, variables, pre=(), shuffle=True):
    """A tile's four vectors of 8 int32 lanes (vshufps order) through vpackssdw, vpacksswb / vpackuswb, vpermd,
    vpshufb (shuffle) and the byte min/max (dropped for int8's whole range), for int8 outputs (whole and narrowed
    range) and uint8: claims that output byte i is the low byte of clamp(want(i), qmin, qmax), under pre."""
    ws = lambda v: _sat(z3, v, -(1 << 15), (1 << 15) - 1, 16)  # noqa: E731  vpackssdw
    claims = []
    for out, signed, full in (("int8", True, True), ("int8", True, False), ("uint8", False, False)):
        lo_t, hi_t = (-128, 127) if signed else (0, 255)
        qmin, qmax, q_pre = _out_bounds(z3, out, lo_t, hi_t, full, variables)
        w01, w23 = _packs_lanes(vecs[0], vecs[1], ws), _packs_lanes(vecs[2], vecs[3], ws)
        elems = _bytes_in_order(z3, w01, w23, signed, shuffle)
        for i in range(32):
            e = elems[i] if full else _narrow_minmax(z3, elems[i], qmin, qmax, signed)
            want_i = z3.Extract(7, 0, _clamp(z3, want(i), qmin, qmax))
            claims.append(z3.Implies(z3.And(*q_pre, *pre), e == want_i))
    return claims


def avx2_widen_pixels_unshifted(in_dtype, w=64, wrong=False):
    """AVX2 widen_pixels with 8-bit outputs where every channel's t = s - 32 is 0 after widen_to_high (int32 inputs;
    since h11-shift: widen_pixels<.., kShiftNone>, picked by kernel.cpp pixel_prepare when no s32 entry is non-zero):
    the lane claims of ``avx2_widen_pixels`` (the dword vpmuldq reads, the exact product), then (stage) for every
    64-bit product P and B with P + B within int64 and s = 32, the high dword of P + B (vpaddq, vshufps 0xDD) with no
    vpsravd, clamped, is clamp(floor((P + B) / 2^s)); (gather) vshufps 0xDD gives the high dwords in order [0, 2, 1,
    3] per 128-bit lane; (narrowing) the four vectors of a tile (2 pixels x 16 channels, or 4 pixels x 8 in a lone
    last group: with no per-channel count both give byte i from element i of the tile in vshufps order) through
    vpackssdw, vpacksswb / vpackuswb, vpermd (0,4,1,5,2,6,3,7), vpshufb (bytes 0,2,1,3 of every dword), byte
    min/max (dropped for int8's whole range): output byte i is the low byte of clamp(h_i, qmin, qmax).
    Wrong: ``shift_dropped_t1`` (the unshifted body where some channel has s = 33), ``no_byte_shuffle`` (the
    vpshufb left out), ``shufps_low_dwords`` (vshufps 0x88), ``zero_extend`` (vpmuludq)."""
    z3 = z3mod()
    name = "avx2_widen_pixels_unshifted"
    bad = _variant(name, wrong)
    lane_bad = bad if bad == "zero_extend" else None
    claims, variables = _widen(in_dtype, lane_bad, rows=False, high=True, name="avx2_widen_pixels")
    # (stage) no vpsravd: the high dword itself, for s = 32 (the only s the dispatch admits for this body)
    P, B, s = z3.BitVecs("P_stage B_stage s_stage", 64)
    qmin, qmax = variables["qmin"], variables["qmax"]
    variables.update({"P_stage": P, "B_stage": B, "s_stage": s})
    fits, y_math = _math_sum(z3, P, B, s, qmin, qmax, 64)
    h = z3.Extract(63, 32, P + B)                                       # vpaddq, vshufps 0xDD: the high dword
    y = _clamp(z3, h, z3.Extract(31, 0, qmin), z3.Extract(31, 0, qmax))
    s_pre = z3.And(z3.UGE(s, 32), z3.ULE(s, 33)) if bad == "shift_dropped_t1" else s == 32
    pre = [qmin <= qmax, _fits_signed(z3, qmin, 32), _fits_signed(z3, qmax, 32), s_pre]
    claims.append(z3.Implies(z3.And(fits, *pre), _same(z3, y, y_math)))
    claims.append(_high_dwords_gathered(z3, variables, bad == "shufps_low_dwords"))
    # (narrowing) 32 int32 lanes h_i of a tile, 8 per vector in vshufps order
    hs = [z3.BitVec(f"h{i}", 32) for i in range(32)]
    variables.update({f"h{i}": hs[i] for i in range(32)})
    lane_order = [0, 2, 1, 3, 4, 6, 5, 7]
    vecs = [[hs[8 * k + lane_order[p]] for p in range(8)] for k in range(4)]
    claims += _tile_byte_claims(z3, vecs, lambda i: hs[i], variables, (), bad != "no_byte_shuffle")
    return claims, variables


def avx2_widen_rows_words(in_dtype, w=64, wrong=False):
    """AVX2 widen_rows, int16 -> 16-bit rows with the input shift 16 (input_shift_16: s + 16 >= 32): the lane claims
    of ``avx2_widen_rows`` (the input shift xk <= 16 is symbolic there) with x * 2^16 made by vpunpcklwd / vpunpckhwd
    with zero, then vpackssdw / vpackusdw of the two unpacks' results and the word min/max -- no vpermq.  Claims:
    (unpack) dword j of vpunpcklwd(0, raw) is raw word j times 2^16 (vpunpckhwd: word 4 + j), per 128-bit lane;
    (layout and narrowing) with h of elements [0-3 | 8-11] (from the low unpack) and [4-7 | 12-15] (high), output
    word i is the low 16 bits of clamp(h_i, qmin, qmax) for int16 (its whole range: no min/max) and int16 / uint16
    with any [qmin, qmax] within them.  Wrong: ``unpack_zero_high`` (vpunpcklwd(raw, 0): x zero-extended, not
    shifted), ``halves_swapped`` (the high unpack's lanes packed first), ``logical_shift``, ``zero_extend``."""
    z3 = z3mod()
    bad = _variant("avx2_widen_rows_words", wrong)
    lane_bad = bad if bad in ("logical_shift", "zero_extend") else None
    claims, variables = _avx2_widen("avx2_widen_rows", in_dtype, lane_bad, rows=True)
    raw = [z3.BitVec(f"w{i}", 16) for i in range(8)]                  # one 128-bit lane of raw int16 inputs
    variables.update({f"w{i}": raw[i] for i in range(8)})
    zero = z3.BitVecVal(0, 16)
    for j in range(8):                                                # lo: words 0-3, hi: words 4-7
        d = z3.Concat(zero, raw[j]) if bad == "unpack_zero_high" else z3.Concat(raw[j], zero)
        claims.append(d == z3.SignExt(16, raw[j]) << 16)
    h = [z3.BitVec(f"h{i}", 32) for i in range(16)]
    variables.update({f"h{i}": h[i] for i in range(16)})
    h_lo, h_hi = h[0:4] + h[8:12], h[4:8] + h[12:16]
    if bad == "halves_swapped":
        h_lo, h_hi = h_hi, h_lo
    for out, signed, full in (("int16", True, True), ("int16", True, False), ("uint16", False, False)):
        lo_t, hi_t = (-(1 << 15), (1 << 15) - 1) if signed else (0, (1 << 16) - 1)
        qmin, qmax, pre = _out_bounds(z3, out, lo_t, hi_t, full, variables)
        sat = lambda v: _sat(z3, v, lo_t if signed else 0, hi_t, 16)  # noqa: E731  vpackssdw / vpackusdw
        words = [sat(v) for v in h_lo[:4] + h_hi[:4] + h_lo[4:] + h_hi[4:]]  # per 128-bit lane: a's 4, then b's 4
        for i in range(16):
            e = words[i] if full else _narrow_minmax(z3, words[i], qmin, qmax, signed)
            claims.append(z3.Implies(z3.And(*pre), e == z3.Extract(15, 0, _clamp(z3, h[i], qmin, qmax))))
    return claims, variables


# kernel.cpp pixel_words_tables: the channel (of a 16-channel group pair) of each vpmuldq product lane, and of each
# count in the order vshufps 0xDD leaves the products' high dwords
WORDS_PRODUCTS = (0, 4, 8, 12, 2, 6, 10, 14, 1, 5, 9, 13, 3, 7, 11, 15)
WORDS_COUNTS = (0, 4, 2, 6, 8, 12, 10, 14, 1, 5, 3, 7, 9, 13, 11, 15)
WORDS_SHUFFLE = (0, 1, 8, 9, 4, 5, 12, 13, 2, 3, 10, 11, 6, 7, 14, 15)   # widen_pixels_words' vpshufb, per lane


def avx2_widen_pixels_words(in_dtype, w=64, wrong=False):
    """AVX2 widen_pixels_words (since h11-i16): int16 -> int16 channel-last where every channel admits input_shift_16
    (kernel.cpp pixel_words_tables: xk = 16, B * 2^16, s + 16 in [32, 63]; ``rescale_input_16`` relates them to the
    layer's parameters).  A group pair's 16 int16 inputs (channels 0-15 of one pixel, one 32-byte load, modelled as
    16 words at their real places in the 256-bit register) become the four vpmuldq inputs ev = vpslld(raw, 16),
    vpsrlq(ev, 32), od = vpand(raw, 0xFFFF0000), vpsrlq(od, 32).  Claims:
    (placement) the low dword of qword k of product vector v (the dword vpmuldq reads) is x_c * 2^16 (int16 x_c
    sign-extended) for the channel c = WORDS_PRODUCTS[4v + k] whose A and B the table holds at that place;
    (product) for every such dword X and any high dword, vpmuldq with the table's sign-extended A is the exact A * X;
    (stage) for every 64-bit product P, the high dword of P + B (vpaddq) shifted by the count s - 32 (vpsravd, s in
    [32, 63]) and clamped is clamp(floor((P + B) / 2^s)) where P + B fits int64;
    (order) for the 16 sums S_k (lane k of the products, channel WORDS_PRODUCTS[k]) and the per-channel counts t_c
    (table order WORDS_COUNTS): vshufps 0xDD of (pa, pb) and of (pc, pd) per 128-bit lane, vpsravd by the table's
    counts, vpackssdw, the vpshufb WORDS_SHUFFLE and (not int16's whole range) the word min/max give, as output word
    c, the low 16 bits of clamp(hi(S of channel c) >> t_c, qmin, qmax);
    (check) the per-channel word check (x - lo2) > w2 (vpsubw, vpcmpgtw; lo2 = lo ^ 2^15, w2 = (hi - lo) ^ 2^15, 16
    bits) is set exactly when x < lo or x > hi, for lo <= hi within int16.
    Wrong: ``products_channel_order`` (A and B tables in plain channel order), ``odd_even_swapped`` (ev by vpand, od
    by vpslld), ``missing_shift`` (ev = raw, no vpslld), ``counts_channel_order`` (the counts unpermuted),
    ``no_word_shuffle`` (the vpshufb left out), ``shufps_low_dwords`` (vshufps 0x88), ``check_unbiased`` (the word
    check without the 2^15 bias), ``logical_shift`` (vpsrlvd)."""
    z3 = z3mod()
    name = "avx2_widen_pixels_words"
    bad = _variant(name, wrong)
    assert in_dtype == "int16", "int16 inputs"
    claims, variables = [], {}
    dw = lambda v, i: z3.Extract(32 * i + 31, 32 * i, v)  # noqa: E731   dword i of a vector
    qw = lambda v, i: z3.Extract(64 * i + 63, 64 * i, v)  # noqa: E731   qword i
    # (placement)
    xs = [z3.BitVec(f"x{c}", 16) for c in range(16)]
    variables.update({f"x{c}": xs[c] for c in range(16)})
    raw = z3.Concat(*reversed(xs))                                        # word c of the load is channel c
    mask = z3.Concat(*[z3.BitVecVal(0xFFFF0000, 32)] * 8)
    slli = z3.Concat(*[dw(raw, i) << 16 for i in reversed(range(8))])    # vpslld 16
    ev = raw if bad == "missing_shift" else slli
    od = raw & mask                                                       # vpand
    if bad == "odd_even_swapped":
        ev, od = od, ev
    order = tuple(range(16)) if bad == "products_channel_order" else WORDS_PRODUCTS
    srlq = lambda v: z3.Concat(*[z3.LShR(qw(v, k), 32) for k in reversed(range(4))])  # noqa: E731  vpsrlq 32
    vectors = (ev, srlq(ev), od, srlq(od))
    for v, vec in enumerate(vectors):
        for k in range(4):
            c = order[4 * v + k]
            claims.append(z3.Extract(31, 0, qw(vec, k)) == z3.SignExt(16, xs[c]) << 16)
    # (product)
    A, X, junk = z3.BitVec("A", 32), z3.BitVec("X", 32), z3.BitVec("X_high", 32)
    variables.update({"A": A, "X": X, "X_high": junk})
    claims.append(_mul_epi32(z3, z3.Concat(junk, X), z3.SignExt(32, A), None) == z3.SignExt(32, A) * z3.SignExt(32, X))
    # (stage)
    P, B, s, qmin, qmax = z3.BitVec("P", 64), z3.BitVec("B", 64), z3.BitVec("s", 64), *z3.BitVecs("qmin qmax", 64)
    variables.update({"P": P, "B": B, "s": s, "qmin": qmin, "qmax": qmax})
    cnt = z3.Extract(31, 0, s - 32)
    hi = z3.Extract(63, 32, P + B)
    shifted = z3.LShR(hi, cnt) if bad == "logical_shift" else hi >> cnt
    y = _clamp(z3, shifted, z3.Extract(31, 0, qmin), z3.Extract(31, 0, qmax))
    fits, y_math = _math_sum(z3, P, B, s, qmin, qmax, 64)
    pre = [z3.UGE(s, 32), z3.ULE(s, 63), qmin <= qmax, _fits_signed(z3, qmin, 32), _fits_signed(z3, qmax, 32)]
    claims.append(z3.Implies(z3.And(fits, *pre), _same(z3, y, y_math)))
    # (order)
    S = [z3.BitVec(f"S{k}", 64) for k in range(16)]                       # the sums, product lane k
    t = [z3.BitVec(f"t{c}", 32) for c in range(16)]                       # the channels' counts s - 32
    variables.update({f"S{k}": S[k] for k in range(16)})
    variables.update({f"t{c}": t[c] for c in range(16)})
    imm = 0x88 if bad == "shufps_low_dwords" else 0xDD
    corder = tuple(range(16)) if bad == "counts_channel_order" else WORDS_COUNTS
    dwords = lambda qs: [d for q in qs for d in (z3.Extract(31, 0, q), z3.Extract(63, 32, q))]  # noqa: E731

    def shufps(a, b):                                                     # per 128-bit lane, dword lists
        out = []
        for lane in (0, 4):
            out += [a[lane + ((imm >> 0) & 3)], a[lane + ((imm >> 2) & 3)],
                    b[lane + ((imm >> 4) & 3)], b[lane + ((imm >> 6) & 3)]]
        return out

    pa, pb, pc, pd = (dwords(S[4 * v:4 * v + 4]) for v in range(4))
    h0 = [d >> t[corder[i]] for i, d in enumerate(shufps(pa, pb))]      # vpsravd (counts <= 31)
    h1 = [d >> t[corder[8 + i]] for i, d in enumerate(shufps(pc, pd))]
    if bad == "logical_shift":
        h0 = [z3.LShR(d, t[corder[i]]) for i, d in enumerate(shufps(pa, pb))]
        h1 = [z3.LShR(d, t[corder[8 + i]]) for i, d in enumerate(shufps(pc, pd))]
    ws = lambda v: _sat(z3, v, -(1 << 15), (1 << 15) - 1, 16)  # noqa: E731  vpackssdw
    packed = _packs_lanes(h0, h1, ws)
    if bad != "no_word_shuffle":                                          # vpshufb: word pairs of bytes
        assert all(WORDS_SHUFFLE[2 * i] % 2 == 0 and WORDS_SHUFFLE[2 * i + 1] == WORDS_SHUFFLE[2 * i] + 1
                   for i in range(8))
        packed = [packed[8 * (i // 8) + WORDS_SHUFFLE[2 * (i % 8)] // 2] for i in range(16)]
    channel_of = {k: (tuple(range(16)) if bad == "products_channel_order" else WORDS_PRODUCTS)[k] for k in range(16)}
    lane_of = {c: k for k, c in channel_of.items()}
    pre_t = [z3.ULE(tc, 31) for tc in t]
    for full in (True, False):
        lo_q, hi_q, pre_q = _out_bounds(z3, "int16", -(1 << 15), (1 << 15) - 1, full, variables)
        for c in range(16):
            e = packed[c] if full else _narrow_minmax(z3, packed[c], lo_q, hi_q, True)
            want = z3.Extract(15, 0, _clamp(z3, z3.Extract(63, 32, S[lane_of[c]]) >> t[c], lo_q, hi_q))
            claims.append(z3.Implies(z3.And(*(pre_q + pre_t)), e == want))
    # (check)
    x, lo, hi_r = z3.BitVecs("x lo hi", 16)
    variables.update({"x": x, "lo": lo, "hi": hi_r})
    bias = z3.BitVecVal(0 if bad == "check_unbiased" else 1 << 15, 16)
    flag = (x - (lo ^ bias)) > ((hi_r - lo) ^ bias)
    claims.append(z3.Implies(lo <= hi_r, flag == z3.Or(x < lo, x > hi_r)))
    return claims, variables


# ------------------------------------------------------------------------------------------------ NEON bodies
# csrc/fxbn/kernel_neon.cpp, picked on aarch64 (kernel ISA "neon"; tests/test_aarch64_qemu.py under qemu-user).

def _sshl(z3, v, count, logical=False):
    """sshl (vshlq_s32 / vshlq_s64; ushl, vshlq_u32 / vshlq_u64, when logical) on one lane: the shift is the signed
    low byte of the count lane; a negative shift is a right shift by its magnitude (arithmetic for sshl: by the lane
    width or more gives the sign in every bit; logical for ushl: 0), else a left shift (by the width or more: 0)."""
    sh = z3.SignExt(v.size() - 8, z3.Extract(7, 0, count))
    right = z3.LShR(v, -sh) if logical else v >> -sh
    return z3.If(sh < 0, right, v << sh)


def _neon_x32(z3, xi, bits, signed, zero_extend=False):
    """The int32 lane of an input: 8-bit inputs sxtl (vmovl_s8) or, for uint8, uxtl (vmovl_u8) to 16 bits, the 16-bit
    lane read signed; then sxtl (vmovl_s16) to 32 bits.  Returns (x16 or None, x32)."""
    if bits == 32:
        return None, xi
    x16 = xi if bits == 16 else (z3.ZeroExt(8, xi) if (zero_extend or not signed) else z3.SignExt(8, xi))
    return x16, z3.SignExt(16, x16)


def neon_mul32(in_dtype, w=32, wrong=False):
    """NEON rows / periodic, 32-bit accumulator (sizeof(Out) <= 4; per lane, so broadcast A, B, s and per-entry tables
    alike): acc = smlal(B, x16, A16) (vmlal_s16 / vmlal_high_s16: B + sext32(x16) * sext32(A16) mod 2^32) for 8/16-bit
    inputs when A lies in [-2^15, 2^15) (by rows; checked per row), else mla(B, x32, A) (vmlaq_s32, mod 2^32); then
    sshl(acc, -s) (vshlq_s32 with vdupq_n_s32(-s) or vnegq_s32 of the s table, s <= 31) and the 32-bit clamp.
    Claims, proved separately: (1) per multiply path, acc is the exact A*x + B modulo 2^32; (2) for every exact E within
    32 bits (the solver's accumulator bound), sshl by -s and the clamp of its low 32 bits is clamp(floor(E / 2^s)).
    The narrowing store is ``neon_narrow``.
    Wrong: ``logical_shift`` (ushl), ``zero_extend`` (uxtl for a signed 8-bit input), ``positive_count`` (sshl by +s:
    a left shift), ``smlal_unchecked_a`` (smlal for any A: only its low 16 bits count)."""
    z3 = z3mod()
    bad = _variant("neon_mul32", wrong)
    bits, signed = IN_BITS[in_dtype]
    B, s, qmin, qmax = z3.BitVecs("B s qmin qmax", 32)
    xi = z3.BitVec("x", bits)
    variables = {"B": B, "s": s, "qmin": qmin, "qmax": qmax, "x": xi}
    x16, x32 = _neon_x32(z3, xi, bits, signed, bad == "zero_extend")
    W = 32 + max(bits, 16) + 2
    exact = lambda A: _ext(z3, A, W) * _ext(z3, xi, W, signed) + _ext(z3, B, W)  # noqa: E731
    A = z3.BitVec("A", 32)                                               # mla: any int32 multiplier
    variables["A"] = A
    claims = [z3.Extract(31, 0, exact(A)) == x32 * A + B]
    if bits <= 16:
        # smlal with (int16)A, for the A the row check admits (the sign extension of a 16-bit value; every A
        # without the check): (a) the 16-bit lane holds x exactly; (b) for every 16-bit X there, B + the product of
        # the sign-extended halves is B + A*X mod 2^32, A*X computed exactly on c + 16 bits (``product_width``)
        claims.append(z3.SignExt(16, x16) == _ext(z3, xi, 32, signed))
        if bad == "smlal_unchecked_a":
            As, c = z3.BitVec("A_smlal", 32), 32
        else:
            As, c = z3.SignExt(16, z3.BitVec("A16", 16)), 16
        X = z3.BitVec("X16", 16)
        variables.update({"A_smlal": As, "X16": X})
        Wp = max(32, c + 16)
        acc = B + z3.SignExt(16, X) * z3.SignExt(16, z3.Extract(15, 0, As))
        claims.append(z3.Extract(31, 0, _ext(z3, As, Wp) * _ext(z3, X, Wp)) + B == acc)
    E = z3.BitVec("E", W)                                                # (2) every exact value within 32 bits
    variables["E"] = E
    fits, y_math = _math_sum(z3, E, z3.BitVecVal(0, 32), s, qmin, qmax, 32)
    count = s if bad == "positive_count" else -s
    y = _clamp(z3, _sshl(z3, z3.Extract(31, 0, E), count, bad == "logical_shift"), qmin, qmax)
    claims.append(z3.Implies(z3.And(fits, z3.ULE(s, 31), qmin <= qmax), _same(z3, y, y_math)))
    return claims, variables


def neon_widen(in_dtype, w=64, wrong=False):
    """NEON rows / periodic, 64-bit accumulator with a 32-bit multiplier (multipliers_fit_int32, sizeof(Out) <= 4;
    per lane): P = smlal(B, x32, A) (vmlal_s32 / vmlal_high_s32: B + sext64(x32) * sext64(A) mod 2^64), sshl(P, -s)
    (vshlq_s64, s = min(shift, 63)), sqxtn to int32 (vqmovn_s64 / vqmovn_high_s64), 32-bit clamp (in the store,
    ``neon_narrow``).  Claims, proved separately: (1a) the int32 lane holds x exactly; (1b) for every int32 X in that
    lane, smlal's product is the exact A*X (on 64 bits, where it is exact: ``product_width``); (2) for every 64-bit
    product P and B with P + B within 64 bits, the shift, saturation and clamp give clamp(floor((P + B) / 2^s)) --
    sqxtn loses nothing because qmin and qmax fit int32.
    Wrong: ``truncating_narrow`` (xtn: the low 32 bits), ``logical_shift`` (ushl), ``zero_extend`` (umlal),
    ``positive_count`` (sshl by +s), ``qminmax_not_int32`` (the same with [qmin, qmax] beyond int32)."""
    z3 = z3mod()
    bad = _variant("neon_widen", wrong)
    bits, signed = IN_BITS[in_dtype]
    B, s, qmin, qmax = z3.BitVecs("B s qmin qmax", 64)
    A, X = z3.BitVecs("A X", 32)
    xi = z3.BitVec("x", bits)
    P = z3.BitVec("P", 64)
    variables = {"A": A, "B": B, "s": s, "qmin": qmin, "qmax": qmax, "x": xi, "X": X, "P": P}
    _, x32 = _neon_x32(z3, xi, bits, signed)
    claims = [z3.SignExt(32, x32) == _ext(z3, xi, 64, signed)]          # (1a)
    ext = z3.ZeroExt if bad == "zero_extend" else z3.SignExt
    claims.append(ext(32, X) * ext(32, A) == z3.SignExt(32, X) * z3.SignExt(32, A))  # (1b): exact on 64 bits
    pre = [qmin <= qmax, z3.ULE(s, 63)]
    if bad != "qminmax_not_int32":
        pre += [_fits_signed(z3, qmin, 32), _fits_signed(z3, qmax, 32)]
    count = s if bad == "positive_count" else -s
    q = _sshl(z3, P + B, count, bad == "logical_shift")
    n = z3.Extract(31, 0, q) if bad == "truncating_narrow" else _sat(z3, q, -(1 << 31), (1 << 31) - 1, 32)
    y = _clamp(z3, n, z3.Extract(31, 0, qmin), z3.Extract(31, 0, qmax))
    fits, y_math = _math_sum(z3, P, B, s, qmin, qmax, 64)
    claims.append(z3.Implies(z3.And(fits, *pre), _same(z3, y, y_math)))
    return claims, variables


def neon_narrow(in_dtype, w=32, wrong=False):
    """NEON store16: int32 lanes q0..q3 (elements 0-3, 4-7, 8-11, 12-15) clamped to [qmin, qmax] and stored as Out.
    int8 / uint8: w0 = sqxtn2(sqxtn(q0), q1), w1 = sqxtn2(sqxtn(q2), q3) (int32 -> int16, saturating; the *2 form
    fills the high half), then sqxtn2(sqxtn(w0), w1) (int8) or sqxtun2(sqxtun(w0), w1) (uint8), byte min/max (dropped
    for int8 with [qmin, qmax] = [-128, 127]).  int16: w0, w1, word min/max (dropped for the whole int16 range).
    uint16: sqxtun2(sqxtun(q0), q1) (int32 -> uint16), unsigned word min/max.  Claim: output element i is the low
    bits of clamp(h_i, qmin, qmax) for every int32 h_i and every qmin <= qmax within Out's range.
    Wrong: ``truncating_narrow`` (xtn for the int32 -> int16 sqxtn), ``uint8_signed_narrow`` (sqxtn to int8 for a
    uint8 output), ``halves_swapped`` (the *2 form's operand in the low half)."""
    z3 = z3mod()
    bad = _variant("neon_narrow", wrong)
    h = [z3.BitVec(f"h{i}", 32) for i in range(16)]
    variables = {f"h{i}": h[i] for i in range(16)}

    def narrow2(a, b, f):           # f(sqxtn(a)) in the low half, f(b) in the high half (xtn2 / sqxtn2 / sqxtun2)
        lo, hi = [f(v) for v in a], [f(v) for v in b]
        return hi + lo if bad == "halves_swapped" else lo + hi

    s16 = ((lambda v: z3.Extract(15, 0, v)) if bad == "truncating_narrow"
           else (lambda v: _sat(z3, v, -(1 << 15), (1 << 15) - 1, 16)))
    claims = []
    for out, bits, signed, full in (("int8", 8, True, True), ("int8", 8, True, False), ("uint8", 8, False, False),
                                    ("int16", 16, True, True), ("int16", 16, True, False),
                                    ("uint16", 16, False, False)):
        lo_t, hi_t = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        qmin, qmax, pre = _out_bounds(z3, out, lo_t, hi_t, full, variables)
        if out == "uint16":
            u16 = lambda v: _sat(z3, v, 0, (1 << 16) - 1, 16)  # noqa: E731  sqxtun
            elems = narrow2(h[0:4], h[4:8], u16) + narrow2(h[8:12], h[12:16], u16)
        else:
            w0, w1 = narrow2(h[0:4], h[4:8], s16), narrow2(h[8:12], h[12:16], s16)
            if bits == 16:
                elems = w0 + w1
            elif signed or bad == "uint8_signed_narrow":
                elems = narrow2(w0, w1, lambda v: _sat(z3, v, -128, 127, 8))           # sqxtn
            else:
                elems = narrow2(w0, w1, lambda v: _sat(z3, v, 0, 255, 8))              # sqxtun
        for i in range(16):
            e = elems[i] if full else _narrow_minmax(z3, elems[i], qmin, qmax, signed)  # smax/smin, umax/umin
            claims.append(z3.Implies(z3.And(*pre), e == z3.Extract(bits - 1, 0, _clamp(z3, h[i], qmin, qmax))))
    return claims, variables


# name -> (builder, logic, accumulator widths, input types): the kernel path each covers.
def pixel_range_check(in_dtype, w=32, wrong=False):
    """The per-channel range check of widen_pixels (AVX2 and AVX-512, since h7-pixels): kernel.cpp pixel_prepare
    stores per channel lo2 = (uint32)(int32)lo ^ 2^31 and w2 = (uint32)(hi - lo) ^ 2^31 (lo <= hi within In: the entry
    points clip [lo, hi] to In, a channel whose range misses In never reaches a body); per lane the body computes
    d = x - lo2 (vpsubd, mod 2^32) and flags d > w2 as signed int32 (vpcmpgtd / vpcmpgtd into a mask), OR-ed over every
    lane and pixel.  Claim: the flag of a lane is set exactly when x < lo or x > hi, for every x, lo, hi of In (x
    sign-extended to the int32 lane as load8 / load16 do); the OR over lanes is then "some input out of range".
    Wrong: ``unbiased`` (x - lo > hi - lo without the 2^31 bias: wrong where x - lo wraps), ``width_unbiased``
    (lo biased, the width not), ``not_strict`` (>=: flags x == hi)."""
    z3 = z3mod()
    bad = _variant("pixel_range_check", wrong)
    bits, signed = IN_BITS[in_dtype]
    x, lo, hi = z3.BitVecs("x lo hi", bits)
    x32, lo32, hi32 = (_ext(z3, v, 32, signed) for v in (x, lo, hi))
    bias = z3.BitVecVal(0 if bad == "unbiased" else 1 << 31, 32)
    lo2 = lo32 ^ bias
    w2 = (hi32 - lo32) ^ (z3.BitVecVal(0, 32) if bad == "width_unbiased" else bias)
    d = x32 - lo2
    flag = d >= w2 if bad == "not_strict" else d > w2                # signed compare (vpcmpgtd)
    outside = z3.Or(x32 < lo32, x32 > hi32) if signed else z3.Or(z3.ULT(x32, lo32), z3.UGT(x32, hi32))
    pre = (lo32 <= hi32) if signed else z3.ULE(lo32, hi32)
    return z3.Implies(pre, flag == outside), {"x": x, "lo": lo, "hi": hi}


def pixel_save(in_dtype, w=32, wrong=False):
    """The save of widen_pixels under out= (keep_out_on_error, Job::save), in the two orders the bodies use: the AVX-512
    body copies each 64-byte store's old bytes to the same offset of the save buffer just before the store
    (interleaved), the AVX2 body copies a run's whole output range (its pixels x channels, contiguous) before the
    run's first store (save all, then store).  Modelled: a chunk's stores go to 4 disjoint 16-byte vectors of y, each
    with a new value; the save buffer holds anything before; after a violation run_chunks_keeping copies back the
    saved range of every block the body walked (it walks the whole chunk, so every store was preceded by its save).
    Claim, for both orders: after the restore y is byte for byte what it was.  Wrong: ``save_after_store`` (the copy
    taken after the store), ``one_save_skipped`` (vector 2 not saved: the buffer's old contents come back)."""
    z3 = z3mod()
    bad = _variant("pixel_save", wrong)
    n = 4
    y0 = [z3.BitVec(f"y{k}", 128) for k in range(n)]           # y as it was
    new = [z3.BitVec(f"v{k}", 128) for k in range(n)]          # the body's outputs
    junk = [z3.BitVec(f"save{k}", 128) for k in range(n)]      # the save buffer before the call
    claims = []
    for interleaved in (True, False):
        y, save = list(y0), list(junk)
        order = [(k, op) for k in range(n) for op in ("save", "store")] if interleaved else \
            [(k, "save") for k in range(n)] + [(k, "store") for k in range(n)]
        if bad == "save_after_store":                          # each save moved after its store
            order = [(k, op) for k in range(n) for op in ("store", "save")]
        for k, op in order:
            if op == "store":
                y[k] = new[k]
            elif not (bad == "one_save_skipped" and k == 2):
                save[k] = y[k]
        claims.append(z3.And(*[save[k] == y0[k] for k in range(n)]))  # memcpy(y, saved, reached bytes)
    variables = {f"y{k}": y0[k] for k in range(n)}
    variables.update({f"v{k}": new[k] for k in range(n)})
    variables.update({f"save{k}": junk[k] for k in range(n)})
    return claims, variables


SIMD_LEMMAS = {
    "lut_rows": (lut_rows, "QF_BV", (32, 64), ("int8", "uint8")),
    "widen_rows_high": (widen_rows_high, "QF_BV", (64,), ("int8", "uint8", "int16", "int32")),
    "widen_rows_low": (widen_rows_low, "QF_BV", (64,), ("int8", "uint8", "int16", "int32")),
    "widen_periodic_high": (widen_periodic_high, "QF_BV", (64,), ("int8", "uint8", "int16", "int32")),
    "widen_periodic_low": (widen_periodic_low, "QF_BV", (64,), ("int8", "uint8", "int16", "int32")),
    "dp_periodic": (dp_periodic, "QF_BV", (32,), ("int8", "uint8", "int16")),
    "avx2_mul32_rows": (avx2_mul32_rows, "QF_BV", (32,), ("int8", "uint8", "int16", "int32")),
    "avx2_widen_rows": (avx2_widen_rows, "QF_BV", (64,), ("int8", "uint8", "int16", "int32")),
    "avx2_widen_rows_int32": (avx2_widen_rows_int32, "QF_BV", (64,), ("int32",)),
    "avx2_widen_pixels": (avx2_widen_pixels, "QF_BV", (64,), ("int32", "int16")),
    "avx512_widen_pixels": (avx512_widen_pixels, "QF_BV", (64,), ("int32", "int16")),
    "pixel_range_check": (pixel_range_check, "QF_BV", (32,), ("int32", "int16")),
    "pixel_save": (pixel_save, "QF_BV", (32,), ("int32",)),
    "avx2_widen_periodic": (avx2_widen_periodic, "QF_BV", (64,), ("int8", "uint8", "int16", "int32")),
    "avx2_pack_narrow": (avx2_pack_narrow, "QF_BV", (32,), ("int8",)),
    "avx2_widen_rows_bytes": (avx2_widen_rows_bytes, "QF_BV", (64,), ("int8", "uint8", "int16", "int32")),
    "avx2_widen_rows_words": (avx2_widen_rows_words, "QF_BV", (64,), ("int16",)),
    "avx2_widen_pixels_words": (avx2_widen_pixels_words, "QF_BV", (64,), ("int16",)),
    "avx2_widen_pixels_bytes": (avx2_widen_pixels_bytes, "QF_BV", (64,), ("int32",)),
    "avx2_widen_pixels_unshifted": (avx2_widen_pixels_unshifted, "QF_BV", (64,), ("int32",)),
    "neon_mul32": (neon_mul32, "QF_BV", (32,), ("int8", "uint8", "int16", "int32")),
    "neon_widen": (neon_widen, "QF_BV", (64,), ("int8", "uint8", "int16", "int32")),
    "neon_narrow": (neon_narrow, "QF_BV", (32,), ("int8",)),
}


# ------------------------------------------------------------------------------------------------ 8-bit template
def _sub_floor(z3, a, n):
    """a > n ? a - n : 0 (byte_template's vpsubusw) written as a - min(a, n): the same function (``_byte_lean`` proves
    it), in the form z3's rewriter reduces to a when n is 0."""
    return a - z3.If(z3.ULT(a, n), a, n)


def _byte_spec(z3, xb, flip, m, p, n, sm, qlo, qhi, ob, sub_as_min=False):
    """kernel_impl.hpp byte_template, one element (the reference the exhaustive check runs): its uint32 products
    w * m and v * sm have factors below 2^16, so they are the 32-bit products of zero-extended 16-bit words."""
    w = z3.Concat(xb ^ flip, z3.BitVecVal(0, 8))                    # (x ^ flip) << 8, below 2^16
    u = z3.Extract(31, 16, z3.ZeroExt(16, w) * z3.ZeroExt(16, m))  # (w * m) >> 16
    a = u + p                                                       # (u + p) & 0xFFFF
    v = _sub_floor(z3, a, n) if sub_as_min else z3.If(z3.UGT(a, n), a - n, z3.BitVecVal(0, 16))
    q = z3.Extract(31, 16, z3.ZeroExt(16, v) * z3.ZeroExt(16, sm))  # (v * sm) >> 16
    t = q                                                           # int16_t(q)
    b = z3.If(t < 0, z3.BitVecVal(0, 8), z3.If(t > 255, z3.BitVecVal(255, 8), z3.Extract(7, 0, t)))
    b = z3.If(z3.ULT(b, qlo), qlo, b)
    b = z3.If(z3.UGT(b, qhi), qhi, b)
    return b ^ ob


def _byte_template(in_dtype, width, wrong, name):
    z3 = z3mod()
    bad = _variant(name, wrong)
    signed_in = IN_BITS[in_dtype][1]
    x = [z3.BitVec(f"x{i}", 8) for i in range(width)]
    flip = [z3.BitVec(f"flip{i}", 8) for i in range(width)]
    lo = [z3.BitVec(f"lo{i}", 8) for i in range(width)]
    hi = [z3.BitVec(f"hi{i}", 8) for i in range(width)]
    half = width // 2
    # the tables as kernel_byte.cpp lays them out: m_lo, m_hi, p_lo, p_hi, n_lo, n_hi, sm_lo, sm_hi (width/2 words)
    tab = {nm: [[z3.BitVec(f"{nm}_{h}_{k}", 16) for k in range(half)] for h in (0, 1)] for nm in "mpns"}
    qlo, qhi = z3.BitVecs("qlo qhi", 8)
    variables = {"qlo": qlo, "qhi": qhi}
    for i in range(width):
        variables.update({f"x{i}": x[i], f"flip{i}": flip[i]})
    zero = z3.BitVecVal(0, 8)

    def unpack(a, b, high):        # vpunpck[lh]bw per 128-bit lane: word j = a[j (+8)] | b[j (+8)] << 8
        out = []
        for lane in range(width // 16):
            for j in range(8):
                e = 16 * lane + (8 if high else 0) + j
                out.append(z3.Concat(b[e], a[e]))
        return out

    def mulhi(a, b, signed=False):  # vpmulhuw / vpmulhw
        ext = z3.SignExt if signed else z3.ZeroExt
        return z3.Extract(31, 16, ext(16, a) * ext(16, b))

    def packus(a, b):               # vpackuswb per lane: 8 words of a, then 8 of b, signed words saturated to u8
        sat = lambda v: z3.If(v < 0, zero, z3.If(v > 255, z3.BitVecVal(255, 8), z3.Extract(7, 0, v)))  # noqa: E731
        if bad == "signed_pack":    # vpacksswb
            sat = lambda v: z3.If(v < -128, z3.BitVecVal(128, 8), z3.If(v > 127, z3.BitVecVal(127, 8),  # noqa: E731
                                                                           z3.Extract(7, 0, v)))
        out = []
        for lane in range(width // 16):
            out += [sat(a[8 * lane + j]) for j in range(8)] + [sat(b[8 * lane + j]) for j in range(8)]
        return out

    xf = [x[i] ^ flip[i] for i in range(width)]
    if bad == "unpack_operands_swapped":
        w0, w1 = unpack(xf, [zero] * width, False), unpack(xf, [zero] * width, True)
    else:
        w0, w1 = unpack([zero] * width, xf, False), unpack([zero] * width, xf, True)
    tl = {nm: (tab[nm][1], tab[nm][0]) if bad == "halves_swapped" else (tab[nm][0], tab[nm][1]) for nm in "mpns"}
    halves = []
    for h, wv in ((0, w0), (1, w1)):
        u = [mulhi(wv[k], tl["m"][h][k], bad == "signed_mulhi") for k in range(half)]
        v = [z3.If(z3.UGT(u[k] + tl["p"][h][k], tl["n"][h][k]), u[k] + tl["p"][h][k] - tl["n"][h][k],
                   z3.BitVecVal(0, 16)) for k in range(half)]                     # vpaddw, vpsubusw
        halves.append([mulhi(v[k], tl["s"][h][k]) for k in range(half)])
    packed = packus(halves[0], halves[1])
    claims = []
    for ob in (0, 0x80):
        for i in range(width):
            b = z3.If(z3.ULT(packed[i], qlo), qlo, packed[i])                      # vpmaxub
            b = z3.If(z3.UGT(b, qhi), qhi, b)                                      # vpminub
            y = b ^ ob                                                             # vpxor (int8 outputs)
            h, k = (i % 16) // 8, (i // 16) * 8 + i % 8                           # kernel_byte.cpp's layout
            spec = _byte_spec(z3, x[i], flip[i], tab["m"][h][k], tab["p"][h][k], tab["n"][h][k], tab["s"][h][k],
                              qlo, qhi, z3.BitVecVal(ob, 8))
            claims.append(y == spec)
    # the range check: AVX2 vpmax/vpmin + vpxor (signed for int8 inputs), AVX-512 vpcmp masks
    for i in range(width):
        outside = z3.Or(x[i] < lo[i], x[i] > hi[i]) if signed_in else z3.Or(z3.ULT(x[i], lo[i]), z3.UGT(x[i], hi[i]))
        use_signed = signed_in and bad != "unsigned_check_for_int8"
        mx = z3.If(x[i] > lo[i], x[i], lo[i]) if use_signed else z3.If(z3.UGT(x[i], lo[i]), x[i], lo[i])
        mn = z3.If(x[i] < hi[i], x[i], hi[i]) if use_signed else z3.If(z3.ULT(x[i], hi[i]), x[i], hi[i])
        claims.append(((mx ^ x[i]) | (mn ^ x[i]) != 0) == outside)
        variables.update({f"lo{i}": lo[i], f"hi{i}": hi[i]})
    return claims, variables


def avx2_byte_template(in_dtype, w=32, wrong=False):
    """AVX2 byte_periodic (kernel_avx2.cpp; 8-bit -> 8-bit channel-last layers, 32 elements per step): vpxor flip,
    vpunpcklbw / vpunpckhbw with zero, vpmulhuw m, vpaddw p, vpsubusw n, vpmulhuw sm, vpackuswb, vpmaxub / vpminub,
    vpxor 0x80 (int8 outputs), modelled with each instruction's 128-bit-lane structure and the table layout
    kernel_byte.cpp builds.  Claims: output element i is kernel_impl.hpp's byte_template of x_i with the parameters
    the layout stores for element i, for every input, parameter and clamp byte (so the exhaustive per-channel check
    of byte_template, which alone admits parameters, is a check of the body); and the range check's max/min/xor is
    nonzero exactly when x_i is outside [lo_i, hi_i] (signed bytes for int8 inputs).
    Wrong: ``unpack_operands_swapped`` (x in the low byte: x, not x << 8), ``halves_swapped`` (the high unpacked
    half reads the low half's tables), ``signed_mulhi`` (vpmulhw), ``signed_pack`` (vpacksswb),
    ``unsigned_check_for_int8`` (vpmaxub/vpminub on int8 inputs)."""
    return _byte_template(in_dtype, 32, wrong, "avx2_byte_template")


_BYTE_WRONG = ("unpack_operands_swapped", "halves_swapped", "signed_mulhi", "signed_pack", "unsigned_check_for_int8")
SIMD_WRONG["avx2_byte_template"] = _BYTE_WRONG
SIMD_LEMMAS["avx2_byte_template"] = (avx2_byte_template, "QF_BV", (32,), ("int8", "uint8"))


# The lean AVX2 byte bodies (kernel_avx2.cpp byte_step with its Ops mask): avx2_byte_template's sequence with the
# instructions the plan proved to be identities left out.
_LEAN_FLIP, _LEAN_SUB, _LEAN_CLAMP, _LEAN_NOADD = 1, 2, 4, 8


def _byte_lean(in_dtype, wrong, name, rows):
    z3 = z3mod()
    bad = _variant(name, wrong)
    width, half = 32, 16
    zero8, zero16 = z3.BitVecVal(0, 8), z3.BitVecVal(0, 16)
    x = [z3.BitVec(f"x{i}", 8) for i in range(width)]
    qlo, qhi = z3.BitVecs("qlo qhi", 8)
    variables = {"qlo": qlo, "qhi": qhi}
    variables.update({f"x{i}": x[i] for i in range(width)})
    if rows:   # one channel per row: every lane reads the same broadcast scalars
        fl = z3.BitVec("flip", 8)
        flip = [fl] * width
        sc = {nm: z3.BitVec(nm, 16) for nm in "mpns"}
        tab = {nm: [[sc[nm]] * half for _ in (0, 1)] for nm in "mpns"}
        variables.update({"flip": fl, **sc})
        # byte_rows' modes: n == 0 (no vpsubusw), p == 0 (no vpaddw), both kept; flip == 0 (no vpxor) or kept
        masks = [f | c | sub for f in (0, _LEAN_FLIP) for c in (0, _LEAN_CLAMP)
                 for sub in (0, _LEAN_SUB | _LEAN_NOADD, _LEAN_SUB)]
    else:      # periodic tables in kernel_byte.cpp's layout (loaded per step or held in registers)
        flip = [z3.BitVec(f"flip{i}", 8) for i in range(width)]
        tab = {nm: [[z3.BitVec(f"{nm}_{h}_{k}", 16) for k in range(half)] for h in (0, 1)] for nm in "mpns"}
        variables.update({f"flip{i}": flip[i] for i in range(width)})
        masks = list(range(8))   # byte_periodic_ops: flip, sub, clamp; vpaddw always
    words = [tab[nm][h][k] for nm in "mpns" for h in (0, 1) for k in range(half)]

    def unpack(b, high):           # vpunpck[lh]bw(zero, b) per 128-bit lane: word j = b[j (+8)] << 8
        return [z3.Concat(b[16 * lane + (8 if high else 0) + j], zero8) for lane in range(2) for j in range(8)]

    def mulhi(a, b):               # vpmulhuw
        return z3.Extract(31, 16, z3.ZeroExt(16, a) * z3.ZeroExt(16, b))

    def packus(a, b):              # vpackuswb per lane
        sat = lambda v: z3.If(v < 0, zero8, z3.If(v > 255, z3.BitVecVal(255, 8), z3.Extract(7, 0, v)))  # noqa: E731
        return [sat(v) for lane in range(2) for v in a[8 * lane:8 * lane + 8] + b[8 * lane:8 * lane + 8]]

    claims = []
    for ops in masks:
        # the plan's facts that make each left-out instruction an identity (kernel_byte.cpp sets the flags from them)
        hyp = []
        if not ops & _LEAN_FLIP and bad != "flip_dropped_without_zero_flips":
            hyp += [f == 0 for f in flip]
        if not ops & _LEAN_SUB and bad != "sub_dropped_without_zero_n":
            hyp += [w == 0 for w in (tab["n"][0] + tab["n"][1])]
        if ops & _LEAN_NOADD and bad != "add_dropped_without_zero_p":
            hyp += [w == 0 for w in (tab["p"][0] + tab["p"][1])]
        if not ops & _LEAN_CLAMP:
            hyp += [qhi == 255] + ([] if bad == "clamp_dropped_with_qlo" else [qlo == 0])
        xf = [x[i] ^ flip[i] for i in range(width)] if ops & _LEAN_FLIP else x
        halves = []
        for h in (0, 1):
            u = [mulhi(w, tab["m"][h][k]) for k, w in enumerate(unpack(xf, h == 1))]
            v = u if ops & _LEAN_NOADD else [u[k] + tab["p"][h][k] for k in range(half)]
            if ops & _LEAN_SUB:
                v = [_sub_floor(z3, v[k], tab["n"][h][k]) for k in range(half)]
            halves.append([mulhi(v[k], tab["s"][h][k]) for k in range(half)])
        packed = packus(halves[0], halves[1])
        for ob in (0, 0x80):
            for i in range(width):
                b = packed[i]
                if ops & _LEAN_CLAMP:
                    b = z3.If(z3.UGT(z3.If(z3.ULT(b, qlo), qlo, b), qhi), qhi, z3.If(z3.ULT(b, qlo), qlo, b))
                y = b ^ ob
                h, k = (i % 16) // 8, (i // 16) * 8 + i % 8
                spec = _byte_spec(z3, x[i], flip[i], tab["m"][h][k], tab["p"][h][k], tab["n"][h][k], tab["s"][h][k],
                                  qlo, qhi, z3.BitVecVal(ob, 8), sub_as_min=True)
                claims.append(z3.Implies(z3.And(hyp) if hyp else z3.BoolVal(True), y == spec))
    # the spec's vpsubusw as a - min(a, n) is byte_template's a > n ? a - n : 0, for every pair of words
    a16, n16 = z3.BitVecs("sub_a sub_n", 16)
    claims.append(_sub_floor(z3, a16, n16) == z3.If(z3.UGT(a16, n16), a16 - n16, zero16))
    variables.update({"sub_a": a16, "sub_n": n16})
    if not rows:
        variables.update({str(w): w for w in words})
    # the range check is byte_step's, unchanged from avx2_byte_template (its lemma covers it)
    return claims, variables


def avx2_byte_lean(in_dtype, w=32, wrong=False):
    """AVX2 byte_periodic with its Ops mask (kernel_avx2.cpp byte_step; the tables loaded per step or, for a period of
    64 elements, held in registers): avx2_byte_template's sequence with vpxor flip left out when every flip is 0,
    vpsubusw when every n is 0, vpmaxub / vpminub when [qlo, qhi] = [0, 255].  Claims, for each of the 8 masks and
    both output signednesses: under the facts that make the left-out instructions identities, output element i is
    kernel_impl.hpp's byte_template of x_i with element i's parameters (so the exhaustive per-channel check of
    byte_template still checks the body).  Wrong: each fact dropped or weakened: ``sub_dropped_without_zero_n``,
    ``flip_dropped_without_zero_flips``, ``clamp_dropped_with_qlo`` (only qhi = 255 required)."""
    return _byte_lean(in_dtype, wrong, "avx2_byte_lean", rows=False)


def avx2_byte_rows(in_dtype, w=32, wrong=False):
    """AVX2 byte_rows (NCHW rows: one channel per row): byte_step with the row's lane broadcast in registers, in the
    modes byte_rows picks per row: vpaddw p only (n == 0), vpsubusw n only (p == 0) or both; vpxor flip or not
    (flip == 0); the clamp kept or left out ([qlo, qhi] = [0, 255]).  Claims as for avx2_byte_lean.  Wrong:
    ``add_dropped_without_zero_p``, ``sub_dropped_without_zero_n``, ``flip_dropped_without_zero_flips``."""
    return _byte_lean(in_dtype, wrong, "avx2_byte_rows", rows=True)


SIMD_WRONG["avx2_byte_lean"] = ("sub_dropped_without_zero_n", "flip_dropped_without_zero_flips", "clamp_dropped_with_qlo")
SIMD_WRONG["avx2_byte_rows"] = ("add_dropped_without_zero_p", "sub_dropped_without_zero_n",
                                "flip_dropped_without_zero_flips")
SIMD_LEMMAS["avx2_byte_lean"] = (avx2_byte_lean, "QF_BV", (32,), ("int8", "uint8"))
SIMD_LEMMAS["avx2_byte_rows"] = (avx2_byte_rows, "QF_BV", (32,), ("int8", "uint8"))


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
    build, logic = LEMMAS[name] if name in LEMMAS else EXPORT_LEMMAS[name] if name in EXPORT_LEMMAS \
        else SIMD_LEMMAS[name][:2]
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
        head = (f"; fxbn lemma {name} in={in_dtype} acc=int{acc_bits}"
                f"{' (wrong variant)' if wrong is True else f' (wrong variant {wrong})' if wrong else ''}: negated claim"
                f"{f's ({len(scripts)} scopes)' if len(scripts) > 1 else ''}, expected: "
                f"{'sat' if wrong else 'unsat'}\n(set-logic {logic})\n")
        body = scripts[0] if len(scripts) == 1 else "".join("(push 1)\n" + text + "(pop 1)\n" for text in scripts)
        write_file(smt2_path, head + body)
    return out


def prove_all(in_dtypes=("int8", "uint8", "int16", "int32"), acc_bits=(32, 64), timeout_ms=30000, smt2_dir=None):
    """Every lemma in every configuration (configuration-free lemmas once per accumulator width), then every SIMD
    lemma for each requested input type and accumulator width its kernel path serves (SIMD_LEMMAS)."""
    import os

    results = []
    for w in acc_bits:
        for name in LEMMAS:
            per_dtype = name in ("multiply_add_truncates", "increment", "product_width", "codegen_expression")
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


# ------------------------------------------------------------------------------------------------ generated C
CODEGEN_WRONG = ("trunc_div", "uncapped_shift", "bias_after_shift")


def _codegen_steps(wrong):
    from fxbn import codegen

    steps = codegen.EXPR
    if wrong == "trunc_div":                                        # C's / (truncating) in place of >>
        steps = tuple(("q", "div", "acc", "S") if st[0] == "q" else st for st in steps)
    elif wrong == "bias_after_shift":
        steps = (("p", "mul", "A", "x"), ("acc", "shr", "p", "S"), ("q", "add", "acc", "B"), steps[-1])
    return steps


def codegen_expression(in_dtype, w, wrong=False):
    """Claim: the C expression fxbn.codegen emits (its template ``fxbn.codegen.EXPR``, interpreted here step by step
    with C99's semantics at the accumulator type int{w}_t) is free of undefined behaviour and, cast to each output
    type, equals clamp(floor((A*x + B) / 2^s), qmin, qmax), for every x of In, every s in [0, 62] (the emitted shift
    is S = min(s, w - 1), as codegen writes its shift array), every A, B, and every qmin <= qmax within Out's range,
    under the solver's accumulator bound (the exact A*x and A*x + B lie in int{w}_t).  Each step is evaluated on
    exact integers (w + bits(In) + 2 bits; the product A*x through z3's signed no-overflow predicates);
    * and + must stay within int{w}_t (signed overflow is undefined), >> needs an amount below w and is arithmetic
    (the generated static assertion), 1 << S needs S < w - 1.  One claim per output type.
    wrong: ``trunc_div`` (C's / in place of >>), ``uncapped_shift`` (S = s: shifts of w or more, undefined),
    ``bias_after_shift``."""
    z3 = z3mod()
    bad = CODEGEN_WRONG[0] if wrong is True else (wrong or None)
    if bad and bad not in CODEGEN_WRONG:
        raise ValueError(f"codegen_expression: unknown wrong variant {wrong!r} (one of {CODEGEN_WRONG})")
    bits, signed = IN_BITS[in_dtype]
    W = w + bits + 2                                                # A*x + B exact (product_width), sign included
    A, B, s, qmin, qmax = z3.BitVecs("A B s qmin qmax", w)
    xi = z3.BitVec("x", bits)
    E = lambda v, sg=True: _ext(z3, v, W, sg)  # noqa: E731
    fits = lambda v: z3.And(v >= -(1 << (w - 1)), v < (1 << (w - 1)))  # noqa: E731
    S = s if bad == "uncapped_shift" else _shift_amount(z3, s, w)
    operand = {"A": E(A), "B": E(B), "x": E(xi, signed), "S": E(S, False), "QMIN": E(qmin), "QMAX": E(qmax)}
    # A*x: both operands are int{w}_t values, so the product is exact iff z3's signed no-overflow/no-underflow
    # predicates hold (their definition), and then it is the sign extension of the w-bit product; cheaper for the
    # solver than a (w + bits)-bit multiplication (int32 x int32: 66 bits), same meaning
    xw = _ext(z3, xi, w, signed)
    p_fits = z3.And(z3.BVMulNoOverflow(A, xw, True), z3.BVMulNoUnderflow(A, xw))
    P = E(A * xw)
    defined = []
    for name, op, *args in _codegen_steps(bad):
        a = [operand[v] for v in args]
        if op == "mul" and sorted(args) == ["A", "x"]:
            v = P
            defined.append(p_fits)
        elif op == "mul":
            v = a[0] * a[1]
            defined.append(fits(v))
        elif op == "add":
            v = a[0] + a[1]
            defined.append(fits(v))
        elif op == "shr":
            v = a[0] >> a[1]
            defined.append(z3.ULT(a[1], w))
        elif op == "div":
            defined.append(z3.ULT(a[1], w - 1))
            v = a[0] / (z3.BitVecVal(1, W) << a[1])                 # bvsdiv: truncates toward zero, as C99's /
        elif op == "clamp":
            v = z3.If(a[0] < a[1], a[1], z3.If(a[0] > a[2], a[2], a[0]))
        else:
            raise ValueError(f"unknown template op {op!r}")
        operand[name] = v
    y = operand[codegen_result_name(bad)]
    q = (P + E(B)) >> E(s, False)
    y_math = z3.If(q < E(qmin), E(qmin), z3.If(q > E(qmax), E(qmax), q))
    pre = [p_fits, fits(P + E(B)), z3.ULE(s, 62), qmin <= qmax]
    claims = []
    for out, (obits, osigned) in OUT_TYPES.items():
        lo_t = -(1 << (obits - 1)) if osigned else 0
        hi_t = (1 << (obits - 1)) - 1 if osigned else (1 << obits) - 1
        cast = _ext(z3, z3.Extract(obits - 1, 0, y), W, osigned)   # (Out)y
        out_pre = pre + [qmin >= lo_t, qmax <= hi_t]
        claims.append(z3.Implies(z3.And(*out_pre), z3.And(*defined, cast == y_math)))
    return claims, {"A": A, "B": B, "s": s, "qmin": qmin, "qmax": qmax, "x": xi}


def codegen_result_name(wrong=None):
    return _codegen_steps(wrong)[-1][0]


LEMMAS["codegen_expression"] = (codegen_expression, "QF_BV")


# ------------------------------------------------------------------------------------------------ the add bodies
# csrc/fxbn/add_kernel_avx512.cpp and add_kernel_avx2.cpp (two 8-bit inputs, 32-bit accumulator): every instruction
# before the 16-bit-output permute acts per 128-bit lane, identically on both ISAs, so one lane is modelled.

def _add8_coefs(z3, A, bad):
    """make_coefs (add_kernel_simd.hpp): A = h*2^16 + l modulo 2^32 with l the sign-extended low 16 bits."""
    lo = z3.Extract(15, 0, A)
    if bad == "split_high_unadjusted":                               # h = A >> 16, ignoring l's sign
        hi = z3.Extract(31, 16, A)
    else:
        hi = z3.Extract(31, 16, A - z3.SignExt(16, lo))
    return hi, lo


def _out_bounds(z3, out, lo_t, hi_t, full, variables):
    """(qmin, qmax, preconditions) of a store to `out`: its whole range [lo_t, hi_t] (full) or symbolic bounds
    within it (added to `variables`)."""
    if full:
        return z3.BitVecVal(lo_t, 32), z3.BitVecVal(hi_t, 32), []
    qmin, qmax = z3.BitVecs(f"qmin_{out} qmax_{out}", 32)
    variables.update({f"qmin_{out}": qmin, f"qmax_{out}": qmax})
    return qmin, qmax, [qmin <= qmax, qmin >= lo_t, qmax <= hi_t]


def _narrow_minmax(z3, e, qmin, qmax, osigned):
    """The bodies' min/max of the packed narrow lanes e with the low bits of qmin, qmax (signed or unsigned)."""
    lb, hb = z3.Extract(e.size() - 1, 0, qmin), z3.Extract(e.size() - 1, 0, qmax)
    if osigned:
        e = z3.If(e > lb, e, lb)
        return z3.If(e < hb, e, hb)
    e = z3.If(z3.UGT(e, lb), e, lb)
    return z3.If(z3.ULT(e, hb), e, hb)


def add8_lanes(in_dtype, w=32, wrong=False):
    """The add bodies' lane arithmetic, for inputs of in_dtype (int8: the x ^ 0x80 fold; uint8: none).
    Claims, proved separately: (1) the pair layout: in one 128-bit lane, lo = vpunpcklbw(u1, u2), hi = vpunpckhbw,
    p_k = vpshufb(lo | hi, idx0 | idx1) put the zero-extended 16-bit pair (u1[e], u2[e]) in dword j of p_k for
    e = 4k + j (bytes symbolic); (2) per dword, for every 32-bit A1, A2, B and 8-bit x1, x2: u = x ^ 0x80 for a
    signed input, v = (vpmaddwd(p, (h1, h2)) << 16) + vpmaddwd(p, (l1, l2)) + B' with B' = B - 128*A_i per signed
    input is A1*x1 + A2*x2 + B modulo 2^32 (a chain of six claims, see (2a)-(2f) below), and the
    one-vpmaddwd body (no split) is too when h1 = h2 = 0; with the solver's bound (the exact sum within 32 bits)
    the wrapped v is the exact sum (``fits_sign_extends``); (3) for every
    exact E within 32 bits and s in [0, 62], vpsrad then vpackssdw and vpacksswb / vpackuswb (8-bit Out), vpackssdw /
    vpackusdw (16-bit Out), then min/max with [qmin, qmax] inside Out, is clamp(floor(E / 2^s)), and so are the packs
    alone when [qmin, qmax] is Out's whole range (the bodies then leave the min/max out); (4) the packs
    return the lane's elements in order (vpackssdw(r0, r1), vpackssdw(r2, r3), vpacksswb: byte e from r_{e/4}
    dword e%4); ``add8_index_map`` checks the 16-bit outputs' cross-lane permutes (vperm2i128 on AVX2, vpermt2q on
    AVX-512) exhaustively.
    Wrong: ``bias_fold_toggled`` (B - 128*A left out for a signed input, added for an unsigned one),
    ``split_high_unadjusted`` (h = A >> 16 although
    vpmaddwd reads l as signed), ``single_madd_unchecked`` (one vpmaddwd for any A), ``pair_order_swapped`` (idx1
    used for p0)."""
    z3 = z3mod()
    bad = _variant("add8_lanes", wrong)
    bits, signed1 = IN_BITS[in_dtype]
    assert bits == 8, "add8_lanes: 8-bit inputs"
    claims, variables = [], {}
    # (1) layout, bytes symbolic
    ua = [z3.BitVec(f"u1_{e}", 8) for e in range(16)]
    ub = [z3.BitVec(f"u2_{e}", 8) for e in range(16)]
    lo = [v for e in range(8) for v in (ua[e], ub[e])]               # vpunpcklbw: a0 b0 a1 b1 ...
    hi = [v for e in range(8, 16) for v in (ua[e], ub[e])]
    zero = z3.BitVecVal(0, 8)
    idx0 = [v for j in range(8) for v in (j, None)]                  # (0, -1, 1, -1, ...): None = high bit set
    idx1 = [v for j in range(8, 16) for v in (j, None)]
    shuf = lambda src, idx: [zero if i is None else src[i] for i in idx]  # noqa: E731  vpshufb, in-lane
    p = [shuf(lo, idx1 if bad == "pair_order_swapped" else idx0), shuf(lo, idx1), shuf(hi, idx0), shuf(hi, idx1)]
    for k in range(4):
        for j in range(4):
            e = 4 * k + j
            dword = z3.Concat(p[k][4 * j + 3], p[k][4 * j + 2], p[k][4 * j + 1], p[k][4 * j])
            claims.append(dword == z3.Concat(zero, ub[e], zero, ua[e]))
    # (2) arithmetic on one dword, as a chain of claims that z3 decides instantly (a direct multiplier equivalence
    # times out): (2a) the split: h*2^16 + l == A for every 32-bit A; (2b) vpslld 16 is * 2^16; (2c) the input
    # word: vpmaddwd reads the zero-extended u as a signed word, and u = x + 128 for a signed x (x ^ 0x80);
    # (2d) per input, the polynomial identity (H*W)*2^16 + L*W - F == (H*2^16 + L)*X with W = X + 128 and
    # F = 128*(H*2^16 + L) for a signed input (W = X, F = 0 unsigned), for all 32-bit H, L, X; (2e) the vpmaddwd
    # sums and the bias: the kernel's ((Ph1 + Ph2) << 16) + (Pl1 + Pl2) + B' is the sum of the per-input terms plus
    # B for any products; (2f) the one-vpmaddwd body: with h1 = h2 = 0 the high vpmaddwd is 0.
    A, B = z3.BitVecs("A B", 32)
    variables.update({"A": A, "B": B})
    h, l = _add8_coefs(z3, A, bad)
    claims.append(z3.SignExt(16, h) * 65536 + z3.SignExt(16, l) == A)                            # (2a)
    P = z3.BitVec("P", 32)
    claims.append(P << 16 == P * 65536)                                                           # (2b)
    x = z3.BitVec("x", 8)
    variables["x"] = x
    u = x ^ 0x80 if signed1 else x
    claims.append(z3.SignExt(16, z3.ZeroExt(8, u)) == (_ext(z3, x, 32, signed1) + (128 if signed1 else 0)))  # (2c)
    H, L, X = z3.BitVecs("H L X", 32)
    variables.update({"H": H, "L": L, "X": X})
    Ap = H * 65536 + L
    fold = signed1 != (bad == "bias_fold_toggled")
    W, F = (X + 128, 128 * Ap) if signed1 else (X, z3.BitVecVal(0, 32))
    if fold != signed1:
        F = z3.BitVecVal(0, 32) if signed1 else 128 * Ap
    claims.append((H * W) * 65536 + L * W - F == Ap * X)                                          # (2d)
    Ph1, Pl1, Ph2, Pl2, F1, F2 = z3.BitVecs("Ph1 Pl1 Ph2 Pl2 F1 F2", 32)
    claims.append(((Ph1 + Ph2) << 16) + (Pl1 + Pl2) + (B - F1 - F2)
                  == (Ph1 * 65536 + Pl1 - F1) + (Ph2 * 65536 + Pl2 - F2) + B)                   # (2e)
    h1, h2 = z3.BitVecs("h1 h2", 16)
    W1, W2 = z3.BitVecs("W1 W2", 32)
    variables.update({"h1": h1, "h2": h2})
    pre = [] if bad == "single_madd_unchecked" else [h1 == 0, h2 == 0]
    claims.append(z3.Implies(z3.And(*pre), z3.SignExt(16, h1) * W1 + z3.SignExt(16, h2) * W2 == 0))  # (2f)
    # (3) shift, saturating packs, narrow clamp: one element (the packs are per element), every Out
    E = z3.BitVec("E", 34)
    s = z3.BitVec("s", 32)
    variables.update({"E": E, "s": s})
    fits, _ = _math_sum(z3, E, z3.BitVecVal(0, 32), s, z3.BitVecVal(0, 32), z3.BitVecVal(0, 32), 32)
    r = z3.Extract(31, 0, E) >> s                                     # vpsrad: counts >= 32 fill with the sign
    for out, obits, osigned in (("int8", 8, True), ("uint8", 8, False), ("int16", 16, True), ("uint16", 16, False)):
        qmin, qmax = z3.BitVecs(f"qmin_{out} qmax_{out}", 32)
        variables.update({f"qmin_{out}": qmin, f"qmax_{out}": qmax})
        lo_t, hi_t = (-(1 << (obits - 1)), (1 << (obits - 1)) - 1) if osigned else (0, (1 << obits) - 1)
        pre = [fits, z3.ULE(s, 62), qmin <= qmax, qmin >= lo_t, qmax <= hi_t]
        if obits == 8:
            wd = _sat(z3, r, -(1 << 15), (1 << 15) - 1, 16)           # vpackssdw
            e = _sat(z3, z3.SignExt(16, wd), lo_t, hi_t, 8)           # vpacksswb / vpackuswb
        else:
            e = _sat(z3, r, lo_t, hi_t, 16)                           # vpackssdw / vpackusdw
        y_math = _clamp(z3, _ext(z3, E, 36) >> _ext(z3, s, 36, False), _ext(z3, qmin, 36), _ext(z3, qmax, 36))
        # without the min/max (the bodies' Clamp = false) when [qmin, qmax] is Out's whole range
        claims.append(z3.Implies(z3.And(*pre, qmin == lo_t, qmax == hi_t), z3.Extract(obits - 1, 0, y_math) == e))
        claims.append(z3.Implies(z3.And(*pre), z3.Extract(obits - 1, 0, y_math) == _narrow_minmax(z3, e, qmin, qmax,
                                                                                             osigned)))
    # (4) the 8-bit packs' element order within the lane (data movement of tagged dwords)
    tags = [[z3.BitVec(f"r{k}_{j}", 8) for j in range(4)] for k in range(4)]
    packs = lambda a, b: a + b  # noqa: E731  per lane: a's elements, then b's
    order = packs(packs(tags[0], tags[1]), packs(tags[2], tags[3]))
    for e in range(16):
        claims.append(order[e] == tags[e // 4][e % 4])
    return claims, variables


def add8_index_map(wrong=False):
    """Exhaustive check (plain Python) of the add bodies' element order on both ISAs and both output widths: the
    per-lane pshufb split and packs, then for 16-bit outputs vperm2i128 0x20 / 0x31 (AVX2) or vpermt2q
    (0,1,8,9,2,3,10,11) / (4,5,12,13,6,7,14,15) (AVX-512).  Returns the list of (isa, width, position, element)
    failures.  ``wrong``: the permutes left out (the 16-bit vectors stored as packed), which must fail."""
    fails = []
    for isa, lanes in (("avx2", 2), ("avx512", 4)):
        n = 16 * lanes
        # r_k lane L dword j holds element 16L + 4k + j
        r = [[16 * (i // 4) + 4 * k + (i % 4) for i in range(4 * lanes)] for k in range(4)]
        packs = lambda a, b, m: [v for L in range(lanes) for v in a[m * L:m * (L + 1)] + b[m * L:m * (L + 1)]]  # noqa
        w01, w23 = packs(r[0], r[1], 4), packs(r[2], r[3], 4)
        b8 = packs(w01, w23, 8)
        fails += [(isa, 8, i, v) for i, v in enumerate(b8) if v != i]
        q = [w01[4 * i:4 * i + 4] for i in range(2 * lanes)] + [w23[4 * i:4 * i + 4] for i in range(2 * lanes)]
        if wrong:
            o = w01 + w23
        elif isa == "avx2":   # 128-bit halves: o0 = (w01.lane0, w23.lane0), o1 = (w01.lane1, w23.lane1)
            o = w01[0:8] + w23[0:8] + w01[8:16] + w23[8:16]
        else:                 # qword indices into (w01 | w23)
            o = [v for qi in (0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15) for v in q[qi]]
        fails += [(isa, 16, i, v) for i, v in enumerate(o) if v != i]
        assert len(o) == n
    return fails


def add8_fold(in_dtype, w=32, wrong=False):
    """The fold body of the add (add_kernel_body.inc ``fold_words``; 8-bit Out, split coefficients with s >= 16 and
    |h1| + |h2| <= 128, h1, h2 <= 127), for inputs of in_dtype.  Claims: (1) layout, per 128-bit lane, bytes
    symbolic: with lo = vpunpcklbw(u1, u2) (hi likewise for elements 8..15), dword j of vpshufb(lo, even) is the
    zero-extended pair (u1[2j], u2[2j]) and of vpshufb(lo, odd) the pair of element 2j + 1; word e of lo (the
    vpmaddubsw operand) is the byte pair (u1[e], u2[e]); vpblendw 0xAA of (vpsrld(te, 16), to) puts element e in
    word e, and vpacksswb(t_lo, t_hi) element e in byte e; the AVX2 body's 64-element step (two vectors per
    input, their unpacked halves processed together) stores every element at its own position; (2a) vpmaddubsw((u1, u2), (h1, h2) bytes) (signed
    saturation) is the low word of vpmaddwd((u1, u2), (h1, h2)) for h1, h2 <= 127 with |h1| + |h2| <= 128;
    (2b) for every 32-bit T (the wrapped vpmaddwd((u1, u2), (l1, l2)) + B') and Hsum, with V = T + (Hsum << 16)
    modulo 2^32 (the exact sum, by add8_lanes (2a)-(2e) and the 32-bit bound), s in [16, 62] and [qmin, qmax]
    inside Out: t = high word of T + low word of Hsum modulo 2^16, vpsraw(t, s - 16), vpacksswb / vpackuswb, then
    min/max (or not, when [qmin, qmax] is Out's whole range) is clamp(floor(V / 2^s), qmin, qmax).
    Wrong: ``no_magnitude_bound`` (the |h1| + |h2| <= 128 condition dropped: vpmaddubsw saturates),
    ``shift_not_reduced`` (vpsraw by s instead of s - 16), ``maddubs_bytes_swapped`` (h2 in the low byte of the
    vpmaddubsw operand), ``even_odd_swapped`` (the odd index vector used for the even elements),
    ``step64_halves_swapped`` (the AVX2 64-element step packs the second vector's hi before its lo)."""
    z3 = z3mod()
    bad = _variant("add8_fold", wrong)
    bits, signed1 = IN_BITS[in_dtype]
    assert bits == 8, "add8_fold: 8-bit inputs"
    claims, variables = [], {}
    # (1) layout
    ua = [z3.BitVec(f"u1_{e}", 8) for e in range(8)]
    ub = [z3.BitVec(f"u2_{e}", 8) for e in range(8)]
    lo = [v for e in range(8) for v in (ua[e], ub[e])]
    zero = z3.BitVecVal(0, 8)
    even = [0, -1, 1, -1, 4, -1, 5, -1, 8, -1, 9, -1, 12, -1, 13, -1]
    odd = [2, -1, 3, -1, 6, -1, 7, -1, 10, -1, 11, -1, 14, -1, 15, -1]
    if bad == "even_odd_swapped":
        even = odd
    shuf = lambda idx: [zero if i < 0 else lo[i] for i in idx]  # noqa: E731  vpshufb, in-lane
    pe, po = shuf(even), shuf(odd)
    for j in range(4):
        for p, e in ((pe, 2 * j), (po, 2 * j + 1)):
            claims.append(z3.Concat(p[4 * j + 3], p[4 * j + 2], p[4 * j + 1], p[4 * j])
                          == z3.Concat(zero, ub[e], zero, ua[e]))
    for e in range(8):
        claims.append(z3.Concat(lo[2 * e + 1], lo[2 * e]) == z3.Concat(ub[e], ua[e]))
    tag_e = [z3.BitVec(f"te_{j}", 8) for j in range(4)]      # whatever te's dword j holds: element 2j, per (1)
    tag_o = [z3.BitVec(f"to_{j}", 8) for j in range(4)]
    blend = [tag_e[k // 2] if k % 2 == 0 else tag_o[k // 2] for k in range(8)]   # vpblendw 0xAA, word k
    for k in range(8):
        claims.append(blend[k] == (tag_e if k % 2 == 0 else tag_o)[k // 2])
    packed = list(range(8)) + list(range(8, 16))              # vpacksswb(t_lo, t_hi): per lane 8 words of each
    claims.append(z3.BoolVal(packed == list(range(16))))
    # the AVX2 64-element step (add_kernel_body.inc step2_fold): loads v = 0, 1 at y + 32v; w = (lo(v0), hi(v0),
    # lo(v1), hi(v1)), word q of lane L of w[j] is element 32*(j // 2) + 16L + 8*(j % 2) + q; store v packs
    # (t[2v], t[2v + 1]) lane by lane.  Every stored byte must hold its own element (tags: the 64 element indices).
    tag = [z3.BitVecVal(e, 8) for e in range(64)]
    w_el = lambda j, L, q: tag[32 * (j // 2) + 16 * L + 8 * (j % 2) + q]  # noqa: E731
    halves = ((0, 1), (3, 2)) if bad == "step64_halves_swapped" else ((0, 1), (2, 3))
    for v, (ja, jb) in enumerate(halves):
        for L in range(2):
            for r in range(16):
                got = w_el(ja, L, r) if r < 8 else w_el(jb, L, r - 8)
                claims.append(got == tag[32 * v + 16 * L + r])
    # (2) arithmetic, one element, as two claims z3 decides quickly (the direct statement times out): add8_lanes
    # (2a)-(2e) proved V = T + (Hsum << 16) modulo 2^32 is A1*x1 + A2*x2 + B, for T = vpmaddwd(p, (l1, l2)) + B' and
    # Hsum = vpmaddwd(p, (h1, h2)), and ``fits_sign_extends`` that V is then the exact sum; here (2a) vpmaddubsw on
    # the byte pairs is the low word of Hsum within the fold bound, (2b) for every 32-bit T and Hsum and s in [16, 62]
    # the 16-bit path on (high word of T, low word of Hsum) is clamp(floor(V / 2^s)) with the packs (and min/max).
    h1, h2 = z3.BitVecs("h1 h2", 16)
    g1, g2 = z3.BitVecs("g1 g2", 8)
    u1, u2 = z3.BitVecs("u1 u2", 8)
    variables.update({"h1": h1, "h2": h2, "g1": g1, "g2": g2, "u1": u1, "u2": u2})
    mag = lambda h: z3.If(h < 0, -_ext(z3, h, h.size() + 2), _ext(z3, h, h.size() + 2))  # noqa: E731  no wrap
    bound = lambda a, b: [] if bad == "no_magnitude_bound" else [mag(a) + mag(b) <= 128]  # noqa: E731
    # the fold bound keeps h1, h2 within 8 bits (make_coefs: h <= 127 and |h1| + |h2| <= 128) ...
    claims.append(z3.Implies(z3.And(h1 <= 127, h2 <= 127, *bound(h1, h2)),
                             z3.And(*(h == z3.SignExt(8, z3.Extract(7, 0, h)) for h in (h1, h2)))))
    # ... so with 8-bit g1, g2: the products of vpmaddwd's exact sum are exact on 16 bits (|g*u| <= 128*255)
    b1, b2 = (g2, g1) if bad == "maddubs_bytes_swapped" else (g1, g2)   # the bytes of k.hbytes
    prod = lambda g, u: z3.SignExt(8, g) * z3.ZeroExt(8, u)  # noqa: E731
    Mx = z3.SignExt(2, prod(b1, u1)) + z3.SignExt(2, prod(b2, u2))                                   # 18 bits
    M = _sat(z3, Mx, -(1 << 15), (1 << 15) - 1, 16)                                                   # vpmaddubsw
    claims.append(z3.Implies(z3.And(*bound(g1, g2)), M == prod(g1, u1) + prod(g2, u2)))              # (2a)
    T, Hs = z3.BitVecs("T Hsum", 32)
    s = z3.BitVec("s", 32)
    variables.update({"T": T, "Hsum": Hs, "s": s})
    V = T + (Hs << 16)
    t = z3.Extract(31, 16, T) + z3.Extract(15, 0, Hs)
    cnt = s if bad == "shift_not_reduced" else s - 16
    r = t >> z3.If(z3.ULT(cnt, 16), z3.Extract(15, 0, cnt), z3.BitVecVal(15, 16))                  # vpsraw
    for out, osigned in (("int8", True), ("uint8", False)):
        qmin, qmax = z3.BitVecs(f"qmin_{out} qmax_{out}", 32)
        variables.update({f"qmin_{out}": qmin, f"qmax_{out}": qmax})
        lo_t, hi_t = (-128, 127) if osigned else (0, 255)
        e = _sat(z3, r, lo_t, hi_t, 8)                                                              # vpacks*wb
        y_math = _clamp(z3, z3.SignExt(2, V) >> z3.ZeroExt(2, s), z3.SignExt(2, qmin), z3.SignExt(2, qmax))
        opre = [z3.UGE(s, 16), z3.ULE(s, 62), qmin <= qmax, qmin >= lo_t, qmax <= hi_t]
        claims.append(z3.Implies(z3.And(*opre, qmin == lo_t, qmax == hi_t), z3.Extract(7, 0, y_math) == e))
        claims.append(z3.Implies(z3.And(*opre), z3.Extract(7, 0, y_math) == _narrow_minmax(z3, e, qmin, qmax,
                                                                                       osigned)))     # (2b)
    return claims, variables


SIMD_WRONG["add8_fold"] = ("no_magnitude_bound", "shift_not_reduced", "maddubs_bytes_swapped", "even_odd_swapped",
                          "step64_halves_swapped")
SIMD_LEMMAS["add8_fold"] = (add8_fold, "QF_BV", (32,), ("int8", "uint8"))


SIMD_WRONG["add8_lanes"] = ("bias_fold_toggled", "split_high_unadjusted", "single_madd_unchecked", "pair_order_swapped")
SIMD_LEMMAS["add8_lanes"] = (add8_lanes, "QF_BV", (32,), ("int8", "uint8"))


# ------------------------------------------------------------------------------------------------ TOSA multi-word
def tosa_multiword(in_dtype, w=32, wrong=False, splits=range(1, 31)):
    """Claim: the multi-word int32 TOSA graph of fxbn.export_tosa (its step list ``MULTIWORD``, interpreted step by
    step with the TOSA 1.0 specification's int32 semantics) satisfies every REQUIRE of the specification and equals
    clamp(floor((A*x + B) / 2^s), qmin, qmax), for every int32 x (int8/int16 inputs reach it through CAST, a sign
    extension, so this covers them; ``in_dtype`` and ``w`` do not change the claim), every int32 A, every split m in
    [1, 30] (one claim per m), B = BH*2^m + BL with int32 BH and 0 <= BL < 2^m, every s = m + j with j in
    [0, 62 - m] (emitted K = min(j, 31)), every qmin <= qmax, under the fit conditions export_tosa.multiword_params
    checks: the exact floor((A*x + 2^(m-1)) / 2^m), floor((A*x + BL) / 2^m) and floor((A*x + B) / 2^m) lie in int32.

    Semantics (specification pseudocode): MUL int32 with shift > 0: (P + 2^(shift-1)) >> shift in int64, REQUIRE the
    result fits int32; shift 0: the low 32 bits of P, where P = sext64(a)*sext64(b); ADD/SUB: REQUIRE the exact
    result fits int32; ARITHMETIC_RIGHT_SHIFT: REQUIRE 0 <= amount <= 31, arithmetic; BITWISE_AND; MAXIMUM then
    MINIMUM.  Both MULs of x and A read the same product P, the exact A*x (|P| <= 2^62: a product of two int32
    values, cf. ``product_width``); it is a free 64-bit term with that bound here (a 64-bit multiplier circuit makes
    the query intractable, and the claim depends on x and A only through P).  wrong: ``no_carry``,
    ``carry_at_m_minus_1``, ``rounding_kept`` (export_tosa.MULTIWORD_WRONG; each must be refuted)."""
    from fxbn import export_tosa

    z3 = z3mod()
    bad = export_tosa.MULTIWORD_WRONG[0] if wrong is True else (wrong or None)
    steps = export_tosa.multiword_steps(bad)
    W = 68                                                           # exact: |A*x + B| < 2^63 + 2^62
    BH, BL, qmin, qmax = z3.BitVecs("BH BL qmin qmax", 32)
    P = z3.BitVec("P", 64)
    j = z3.BitVec("j", 8)
    E = lambda v, sg=True: _ext(z3, v, W, sg)  # noqa: E731
    fits = lambda v: z3.And(v >= -(1 << 31), v < (1 << 31))  # noqa: E731 -- v on W bits
    K = z3.If(z3.UGT(j, 31), z3.BitVecVal(31, 32), z3.ZeroExt(24, j))
    one = z3.BitVecVal(1, W)

    def interpret(value, todo, required):
        for name, op, *args in todo:
            if op in ("mul_shift", "mul_low"):
                if sorted(args[:2]) != ["A", "x"]:
                    raise ValueError(f"step {name}: MUL of {args[:2]} (the lemma models the product A*x only)")
                if op == "mul_shift":
                    sh = value[args[2]]
                    h = (P + (1 << (sh - 1))) >> sh
                    required.append(z3.And(h >= -(1 << 31), h < (1 << 31)))
                    value[name] = z3.Extract(31, 0, h)
                else:
                    value[name] = z3.Extract(31, 0, P)
                continue
            a = [z3.BitVecVal(value[v], 32) if isinstance(value[v], int) else value[v] for v in args]
            if op == "and":
                v = a[0] & a[1]
            elif op == "shr":
                required.append(z3.ULE(a[1], 31))
                v = a[0] >> a[1]
            elif op in ("add", "sub"):
                exact = E(a[0]) + E(a[1]) if op == "add" else E(a[0]) - E(a[1])
                required.append(fits(exact))
                v = z3.Extract(31, 0, exact)
            elif op == "clamp":
                v = z3.If(a[0] < a[1], a[1], z3.If(a[0] > a[2], a[2], a[0]))
            else:
                raise ValueError(f"unknown step op {op!r}")
            value[name] = v
        return value

    # Two parts per m, proved separately (one query each; together the whole claim): the words (every step before
    # the shift by K: its operand is floor((A*x + B) / 2^m)) and the stage (the shift by K and the clamp: for every
    # W-bit V whose floor(V / 2^m) fits int32, they give clamp(floor(V / 2^(m + j)))), symbolic in j.
    cut = next(i for i, st in enumerate(steps) if "K" in st[2:])
    word = steps[cut][2]
    claims = []
    PW = z3.SignExt(W - 64, P)
    for m in splits:
        value = interpret({"BH": BH, "BL": BL, "M": m, "M1": m - 1, "MASK": z3.BitVecVal((1 << m) - 1, 32),
                           "ZERO": z3.BitVecVal(0, 32)}, steps[:cut], required := [])
        B = (E(BH) << m) + E(BL, False)
        pre = [P >= -(1 << 62), P <= 1 << 62, z3.ULT(BL, 1 << m),
               fits((PW + (1 << (m - 1))) >> m), fits((PW + E(BL, False)) >> m), fits((PW + B) >> m)]
        claims.append(z3.Implies(z3.And(*pre), z3.And(*required, E(value[word]) == (PW + B) >> m)))
    V = z3.BitVec("V", W)
    for m in splits:
        value = interpret({word: z3.Extract(31, 0, V >> m), "K": K, "QMIN": qmin, "QMAX": qmax}, steps[cut:],
                          required := [])
        q = V >> (m + E(j, False))
        y_math = z3.If(q < E(qmin), E(qmin), z3.If(q > E(qmax), E(qmax), q))
        pre = [z3.ULE(j, 62 - m), qmin <= qmax, fits(V >> m)]
        claims.append(z3.Implies(z3.And(*pre), z3.And(*required, E(value[steps[-1][0]]) == y_math)))
    return claims, {"P": P, "BH": BH, "BL": BL, "j": j, "qmin": qmin, "qmax": qmax, "V": V}


# Lemmas about exported graphs rather than the kernel: looked up by prove() by name, not run by prove_all (the full
# tosa_multiword proof is 60 queries, ~90 s):  python -c "from verify import lemmas; print(lemmas.prove('tosa_multiword'))"
EXPORT_LEMMAS = {"tosa_multiword": (tosa_multiword, "QF_BV")}


# ------------------------------------------------------------------------------------------------ short NCHW rows
# widen_short (kernel_avx2.cpp, kernel_avx512.cpp): int32 -> 8-bit NCHW rows of inner < kMinRow elements, the current
# channel's parameters broadcast, blended with the next channel's in the vector that reaches a row boundary.  The
# lemmas state the routing: every operand each instruction reads for element j is element j's own channel's -- then
# each lane is the per-entry lane of ``avx2_widen_periodic`` / ``widen_periodic_high`` (per-lane A, B, s - 32; the
# odd elements from the second load of ``avx2_widen_rows_int32``), and the stores are ``avx2_widen_rows_bytes``
# (kShiftNone) / ``pack_narrow``.

def _short_boundary(z3, lanes, bad):
    """The scalar walk: a vector at flat p with p < row_end <= p + lanes (the branch taken), rows of inner >= lanes:
    lane j lies in the current row iff j < b = row_end - p, every other lane in the next row (one boundary), and
    after row_end += inner the next vector (p + lanes) again starts before row_end (the invariant the walk keeps)."""
    p, row_end, inner = z3.BitVecs("p row_end inner", 64)
    min_inner = lanes - 1 if bad == "inner_one_short" else lanes
    pre = [p >= 0, inner >= min_inner, inner < 64, p < row_end, row_end <= p + lanes, row_end < (1 << 40)]
    b = row_end - p
    claims = []
    for j in range(lanes):
        cur = p + j < row_end
        nxt = z3.And(p + j >= row_end, p + j < row_end + inner)
        claims.append(z3.Implies(z3.And(*pre), z3.And(cur == (j < b), z3.Or(cur, nxt), z3.ULE(b, lanes), b >= 1)))
    claims.append(z3.Implies(z3.And(*pre), p + lanes < row_end + inner))
    return claims, {"p": p, "row_end": row_end, "inner": inner}


def _short_operands(z3, lanes, bad):
    """_short_boundary's claims and variables, plus the boundary lane b, the current and next channel's 32-bit
    operands (A, t, lo, hi), their 64-bit B and the lanes' inputs x_j (all registered in the variables)."""
    claims, variables = _short_boundary(z3, lanes, bad)
    bvar = z3.BitVec("b", 32)
    names = "A_cur A_next t_cur t_next lo_cur lo_next hi_cur hi_next"
    ops32 = z3.BitVecs(names, 32)
    Bc, Bn = z3.BitVecs("B_cur B_next", 64)
    x = [z3.BitVec(f"x{j}", 32) for j in range(lanes)]
    variables.update({"b": bvar, "B_cur": Bc, "B_next": Bn, **{f"x{j}": x[j] for j in range(lanes)}})
    variables.update(dict(zip(names.split(), ops32)))
    return claims, variables, bvar, ops32, (Bc, Bn), x


def _blendv(z3, cur, nxt, mask, width):
    """vpblendvb on one width-bit element: byte k from nxt where bit 7 of mask's byte k is set, else from cur."""
    pick = lambda v, k: z3.Extract(8 * k + 7, 8 * k, v)  # noqa: E731
    return z3.Concat(*[z3.If(z3.Extract(8 * k + 7, 8 * k + 7, mask) == 1, pick(nxt, k), pick(cur, k))
                       for k in reversed(range(width // 8))])


def _reduce_lanes(f, xs):
    """A horizontal reduction by f as the kernels do it once per chunk: the 256-bit, then 128-bit halves, then
    vpshufd 0x4E and 0xB1; lane 0 holds the result."""
    h = list(xs)
    while len(h) > 4:
        h = [f(h[j], h[j + len(h) // 2]) for j in range(len(h) // 2)]
    h = [f(h[j], h[j ^ 2]) for j in range(4)]
    return f(h[0], h[1])


def _short_one_range(z3, variables, bad, lanes=8):
    """widen_short's OneRange check (8 lanes: AVX2; 16: AVX-512, whose _mm512_reduce_min_epi32 / max first takes the
    lane-wise min / max of the two 256-bit halves -- an instance of the step claim -- then reduces 8 lanes the same
    way), by induction over the vectors of a chunk: the accumulators start at
    INT32_MAX / INT32_MIN (no lane below lo or above hi: an empty chunk flags nothing); a step vpminsd / vpmaxsd of a
    vector v into accumulators mn / mx (lane by lane) has some lane below lo (above hi) exactly when mn (mx) or v had
    one (claimed lane by lane); reduce_min / reduce_max (the halves, then vpshufd 0x4E, 0xB1) are below lo (above hi)
    exactly when some lane of mn (mx) is, so flag = reduce_min(mn) < lo | reduce_max(mx) > hi is set exactly when
    some lane of some vector was outside [lo, hi]."""
    lo, hi = z3.BitVecs("range_lo range_hi", 32)
    mn = [z3.BitVec(f"mn{j}", 32) for j in range(lanes)]
    mx = [z3.BitVec(f"mx{j}", 32) for j in range(lanes)]
    v = [z3.BitVec(f"v{j}", 32) for j in range(lanes)]
    variables.update({"range_lo": lo, "range_hi": hi, **{f"mn{j}": mn[j] for j in range(lanes)},
                      **{f"mx{j}": mx[j] for j in range(lanes)}, **{f"v{j}": v[j] for j in range(lanes)}})
    smin = lambda p, q: z3.If(p < q, p, q)  # noqa: E731
    smax = lambda p, q: z3.If(p > q, p, q)  # noqa: E731
    below = lambda lanes: z3.Or(*[e < lo for e in lanes])  # noqa: E731
    above = lambda lanes: z3.Or(*[e > hi for e in lanes])  # noqa: E731
    int_min, int_max = z3.BitVecVal(-(1 << 31), 32), z3.BitVecVal((1 << 31) - 1, 32)

    init_mn = int_min if bad == "one_range_init_swapped" else int_max
    # 16 lanes: the first halving (lane j with lane j + 8) is the step's lane claim; the rest the 8-lane reduction
    low, high = _reduce_lanes(smin, mn[:8]) < lo, _reduce_lanes(smax, mx[:8]) > hi
    flag = high if bad == "one_range_max_only" else z3.Or(low, high)
    pre = lo <= hi
    # the reductions one claim each, then the flag of them; the step lane by lane (the OR over lanes of both sides
    # then agree)
    return ([z3.Implies(pre, z3.Not(z3.Or(below([init_mn] * lanes), above([int_min] * lanes)))),
             low == below(mn[:8]), high == above(mx[:8]), flag == z3.Or(low, high)]
            + [(smin(mn[j], v[j]) < lo) == z3.Or(mn[j] < lo, v[j] < lo) for j in range(lanes)]
            + [(smax(mx[j], v[j]) > hi) == z3.Or(mx[j] > hi, v[j] > hi) for j in range(lanes)])


def _short_one_range_biased(z3, variables, bad, lanes=8):
    """The AVX2 widen_short's OneRange check (since h9-late): every vector's lanes x - lo (vpsubd, mod 2^32) into one
    vpmaxud accumulator (from 0), reduced once per chunk (the 128-bit halves, then vpshufd 0x4E, 0xB1, vpmaxud) and
    flagged when the maximum exceeds hi - lo (unsigned; kernel_avx2.cpp reduce_max_u).  Claims: with lo <= hi,
    x - lo > hi - lo (unsigned) exactly when x < lo or x > hi; the initial 0 flags nothing; a step vpmaxud of u into
    accumulator lane acc exceeds hi - lo exactly when acc or u did (lane by lane, so by induction the accumulator
    exceeds it in some lane exactly when some lane of some vector was outside [lo, hi]); the reduction exceeds it
    exactly when some accumulator lane does."""
    lo, hi = z3.BitVecs("range_lo range_hi", 32)
    acc = [z3.BitVec(f"acc{j}", 32) for j in range(lanes)]
    v = [z3.BitVec(f"v{j}", 32) for j in range(lanes)]
    variables.update({"range_lo": lo, "range_hi": hi, **{f"acc{j}": acc[j] for j in range(lanes)},
                      **{f"v{j}": v[j] for j in range(lanes)}})
    signed = bad == "one_range_signed_max"
    umax = lambda p, q: z3.If((p > q) if signed else z3.UGT(p, q), p, q)  # noqa: E731
    width = hi if bad == "one_range_width_hi" else hi - lo
    over = lambda e: z3.UGT(e, width)  # noqa: E731
    biased = (lambda e: e) if bad == "one_range_unbiased" else (lambda e: e - lo)  # noqa: E731

    pre = lo <= hi
    zero = z3.BitVecVal(0, 32)
    return ([z3.Implies(pre, z3.Not(over(zero))),
             over(_reduce_lanes(umax, acc)) == z3.Or(*[over(e) for e in acc])]
            # every lane the same vpsubd and the same compare: the lane claim once, on lane 0
            + [z3.Implies(pre, over(biased(v[0])) == z3.Or(v[0] < lo, v[0] > hi))]
            + [over(umax(acc[j], biased(v[j]))) == z3.Or(over(acc[j]), over(biased(v[j]))) for j in range(lanes)])


def avx2_widen_short(in_dtype, w=64, wrong=False):
    """AVX2 widen_short: with the boundary at lane b (1..8), the mask table kShortMasks[b] (dwords j >= b; qwords i
    with 2i >= b and with 2i + 1 >= b; dwords in vshufps 0xDD's order [0, 2, 1, 3] per 128-bit lane) and vpblendvb of
    the current and next channel's broadcasts (since h9-late from one packed entry per channel, Job::short_params,
    whose entry `channels` repeats channel 0 so that the next channel's broadcast needs no wrap; vpblendvb written
    out as inline asm, the same instruction): the dword vpmuldq reads as A for the even product of element 2i (a's
    dword 2i) and, after vpsrlq 32, for the odd one (a's dword 2i + 1), the qwords of B added to each, the vpsravd
    count at the element's position after vshufps 0xDD, and the range check's lo2 = lo ^ 2^31, w2 = (hi - lo) ^ 2^31
    (j.range32, blended by the element-order mask) are element j's channel's (current for j < b, next otherwise); the
    biased check (vpsubd, vpcmpgtd: x_j - lo2 > w2 signed, ``pixel_range_check``) flags element j exactly when x_j is
    outside its channel's [lo, hi] (since h8-short; before, vpcmpgtd against blended lo and hi).  One range for every
    channel (OneRange): nothing of the range blended, every vector's lanes x - lo into one vpmaxud accumulator
    reduced once per chunk and compared with hi - lo (``_short_one_range_biased``, since h9-late; h8-short had
    vpminsd / vpmaxsd accumulators, two ops per vector).  Plus the walk (``_short_boundary``).
    Wrong: ``mask_off_by_one`` (lanes j > b), ``odd_b_even_mask`` (B of the odd elements blended by the even mask),
    ``shift_mask_element_order`` (s - 32 blended by the element-order mask), ``odd_a_unshifted`` (the odd product
    with a as blended), ``inner_one_short`` (rows of 7), ``range_unbiased`` (lo2 = lo, w2 = hi - lo),
    ``range_not_blended`` (the current channel's lo2 / w2 in every lane), ``one_range_signed_max`` (vpmaxsd in place
    of vpmaxud), ``one_range_unbiased`` (x, not x - lo, into the accumulator), ``one_range_width_hi`` (the maximum
    compared with hi, not hi - lo), ``no_shift_nonzero_t`` (the vpsravd dropped whatever the channels' s - 32).
    Since h9-late the body has a no-shift instantiation, taken when every channel's s - 32 is 0: no vpsravd, t not
    blended (claimed: the skipped vpsravd is by 0 in every lane, so the identity)."""
    z3 = z3mod()
    bad = _variant("avx2_widen_short", wrong)
    claims, variables, bvar, (Ac, An, tc, tn, loc, lon, hic, hin), (Bc, Bn), x = _short_operands(z3, 8, bad)
    claims += _short_one_range_biased(z3, variables, bad)
    ones32, zero32 = z3.BitVecVal(-1, 32), z3.BitVecVal(0, 32)
    ones64, zero64 = z3.BitVecVal(-1, 64), z3.BitVecVal(0, 64)
    at_least = lambda j: z3.UGE(z3.BitVecVal(j, 32), bvar)  # noqa: E731  element j takes the next channel
    first = 1 if bad == "mask_off_by_one" else 0
    m = [z3.If(at_least(j - first) if j >= first else z3.BoolVal(False), ones32, zero32) for j in range(8)]
    me = [z3.If(at_least(2 * i), ones64, zero64) for i in range(4)]
    mo = me if bad == "odd_b_even_mask" else [z3.If(at_least(2 * i + 1), ones64, zero64) for i in range(4)]
    order = [0, 2, 1, 3, 4, 6, 5, 7]                                 # vshufps 0xDD: position p holds element order[p]
    mt = m if bad == "shift_mask_element_order" else [z3.If(at_least(order[q]), ones32, zero32) for q in range(8)]
    a = [_blendv(z3, Ac, An, m[j], 32) for j in range(8)]            # set1_epi32(A): A in every dword
    ao = a if bad == "odd_a_unshifted" else [a[2 * i + 1] for i in range(4) for _ in (0, 1)]  # vpsrlq 32: qword i
    be = [_blendv(z3, Bc, Bn, me[i], 64) for i in range(4)]
    bo = [_blendv(z3, Bc, Bn, mo[i], 64) for i in range(4)]
    t = [_blendv(z3, tc, tn, mt[q], 32) for q in range(8)]
    bias = z3.BitVecVal(0 if bad == "range_unbiased" else 1 << 31, 32)
    lo2c, lo2n = loc ^ bias, lon ^ bias                              # j.range32 (kernel.cpp apply_short)
    w2c, w2n = (hic - loc) ^ bias, (hin - lon) ^ bias
    mr = [zero32] * 8 if bad == "range_not_blended" else m
    lo2 = [_blendv(z3, lo2c, lo2n, mr[j], 32) for j in range(8)]
    w2 = [_blendv(z3, w2c, w2n, mr[j], 32) for j in range(8)]
    pre = z3.And(z3.UGE(bvar, 1), z3.ULE(bvar, 8), loc <= hic, lon <= hin)
    for j in range(8):
        own = lambda cur, nxt: z3.If(z3.ULT(z3.BitVecVal(j, 32), bvar), cur, nxt)  # noqa: E731
        i = j // 2
        a_read = a[2 * i] if j % 2 == 0 else ao[2 * i]              # vpmuldq: the low dword of qword i
        b_read = be[i] if j % 2 == 0 else bo[i]
        t_read = t[order.index(j)]
        flagged = x[j] - lo2[j] > w2[j]                              # vpsubd, vpcmpgtd (signed)
        claims.append(z3.Implies(pre, z3.And(a_read == own(Ac, An), b_read == own(Bc, Bn), t_read == own(tc, tn),
                                             flagged == z3.Or(x[j] < own(loc, lon), x[j] > own(hic, hin)))))
        # no-shift instantiation (every channel's s - 32 is 0, kernel.cpp apply_short): vpsravd dropped, t not
        # blended -- the lane it skips is vpsravd by the count element j reads, 0
        h = z3.BitVec(f"h{j}", 32)
        variables[f"h{j}"] = h
        zero_t = z3.BoolVal(True) if bad == "no_shift_nonzero_t" else z3.And(tc == 0, tn == 0)
        claims.append(z3.Implies(z3.And(pre, zero_t), h >> t_read == h))
    return claims, variables


def avx512_widen_short(in_dtype, w=64, wrong=False):
    """AVX-512 widen_short: with the boundary at lane b (1..16), the k-masks m = 0xFFFF << b (dwords: A, s - 32, lo,
    hi), me = 0xFF << ceil(b / 2) and mo = 0xFF << floor(b / 2) (qwords: B of the even and of the odd elements) and
    vpblendmd / vpblendmq of the current and next channel's broadcasts: the dword vpmuldq reads as A for element j
    (a's dword 2i, or after vpsrlq 32 dword 2i + 1), the qword of B added, the vpsravd count (high_dwords leaves the
    elements in order) and lo / hi are element j's channel's; the check (vpcmpd ge, then le under that mask, AND-ed
    into ok) clears element j's bit exactly when x_j is outside its channel's [lo, hi]; with one [lo, hi] for every
    channel (since h8-short) the vpminsd / vpmaxsd accumulators of ``_short_one_range`` with 16 lanes.  Plus the walk
    (``_short_boundary``).  Wrong: ``mask_off_by_one`` (0xFFFF << (b + 1)), ``odd_b_ceil`` (mo = me),
    ``even_b_floor`` (me = mo), ``odd_a_unshifted``, ``inner_one_short`` (rows of 15), ``one_range_max_only``,
    ``one_range_init_swapped``."""
    z3 = z3mod()
    bad = _variant("avx512_widen_short", wrong)
    claims, variables, bvar, (Ac, An, tc, tn, loc, lon, hic, hin), (Bc, Bn), x = _short_operands(z3, 16, bad)
    claims += _short_one_range(z3, variables, bad, lanes=16)
    k16 = (z3.BitVecVal(0xFFFF, 32) << (bvar + (1 if bad == "mask_off_by_one" else 0))) & 0xFFFF
    half_up, half_down = z3.UDiv(bvar + 1, 2), z3.UDiv(bvar, 2)
    ke = (z3.BitVecVal(0xFF, 32) << (half_down if bad == "even_b_floor" else half_up)) & 0xFF
    ko = (z3.BitVecVal(0xFF, 32) << (half_up if bad == "odd_b_ceil" else half_down)) & 0xFF
    bit = lambda k, i: z3.Extract(i, i, k) == 1  # noqa: E731
    a = [z3.If(bit(k16, j), An, Ac) for j in range(16)]              # vpblendmd: next where the mask bit is set
    ao = a if bad == "odd_a_unshifted" else [a[2 * i + 1] for i in range(8) for _ in (0, 1)]
    be = [z3.If(bit(ke, i), Bn, Bc) for i in range(8)]
    bo = [z3.If(bit(ko, i), Bn, Bc) for i in range(8)]
    t = [z3.If(bit(k16, j), tn, tc) for j in range(16)]
    lo = [z3.If(bit(k16, j), lon, loc) for j in range(16)]
    hi = [z3.If(bit(k16, j), hin, hic) for j in range(16)]
    pre = z3.And(z3.UGE(bvar, 1), z3.ULE(bvar, 16))
    for j in range(16):
        own = lambda cur, nxt: z3.If(z3.ULT(z3.BitVecVal(j, 32), bvar), cur, nxt)  # noqa: E731
        i = j // 2
        a_read = a[2 * i] if j % 2 == 0 else ao[2 * i]
        b_read = be[i] if j % 2 == 0 else bo[i]
        in_range = z3.And(x[j] >= lo[j], x[j] <= hi[j])             # vpcmpd nlt, then vpcmpd le under that mask
        claims.append(z3.Implies(pre, z3.And(a_read == own(Ac, An), b_read == own(Bc, Bn), t[j] == own(tc, tn),
                                             in_range == z3.And(x[j] >= own(loc, lon), x[j] <= own(hic, hin)))))
    return claims, variables


SIMD_WRONG["avx2_widen_short"] = ("mask_off_by_one", "odd_b_even_mask", "shift_mask_element_order", "odd_a_unshifted",
                                  "inner_one_short", "range_unbiased", "range_not_blended", "one_range_signed_max",
                                  "one_range_unbiased", "one_range_width_hi", "no_shift_nonzero_t")
SIMD_WRONG["avx512_widen_short"] = ("mask_off_by_one", "odd_b_ceil", "even_b_floor", "odd_a_unshifted",
                                    "inner_one_short", "one_range_max_only", "one_range_init_swapped")
SIMD_LEMMAS["avx2_widen_short"] = (avx2_widen_short, "QF_BV", (64,), ("int32",))
SIMD_LEMMAS["avx512_widen_short"] = (avx512_widen_short, "QF_BV", (64,), ("int32",))


def pixel_lane_check(in_dtype, w=32, wrong=False):
    """The per-channel range check of the AVX2 widen_pixels with int32 inputs (kPixelPerLane, since h10-pix; before,
    ``pixel_range_check``'s biased compare on every vector): per 8-channel group of a group pair and run, an
    accumulator (from 0) takes vpmaxud(acc, x - lo) for every vector of the group (vpsubd mod 2^32, lo from Job::lo per
    lane); at the pair's end the body forms width = w2 ^ 2^31 from range32's biased width w2 = (hi - lo) ^ 2^31
    (kernel.cpp pixel_prepare), within = (vpmaxud(acc, width) == width) (vpcmpeqd) and ORs its complement into the
    chunk's mask.  Claims, with lo <= hi (int32): x - lo > hi - lo (unsigned) exactly when x < lo or x > hi; the
    initial 0 is within; a step vpmaxud of u into acc exceeds the width exactly when acc or u did (so by induction the
    accumulator exceeds it exactly when some vector's lane was outside [lo, hi]); width is hi - lo; within is false
    exactly when acc exceeds the width.  Wrong: ``signed_max`` (vpmaxsd: x - lo past 2^31 looks small),
    ``unbiased`` (x, not x - lo, into the accumulator), ``width_biased`` (range32's w2 compared as it is),
    ``final_signed_max`` (the end's vpmaxsd)."""
    z3 = z3mod()
    bad = _variant("pixel_lane_check", wrong)
    x, lo, hi, acc = z3.BitVecs("x lo hi acc", 32)
    bias = z3.BitVecVal(1 << 31, 32)
    umax = lambda p, q: z3.If(z3.UGT(p, q), p, q)  # noqa: E731  vpmaxud
    smax = lambda p, q: z3.If(p > q, p, q)  # noqa: E731  vpmaxsd
    step_max = smax if bad == "signed_max" else umax
    end_max = smax if bad == "final_signed_max" else umax
    w2 = (hi - lo) ^ bias                                           # j.range32[C + c]
    width = w2 if bad == "width_biased" else w2 ^ bias
    u = x if bad == "unbiased" else x - lo
    over = lambda e: end_max(e, width) != width  # noqa: E731  the complement of vpcmpeqd(vpmaxud(e, width), width)
    pre = lo <= hi
    zero = z3.BitVecVal(0, 32)
    claims = [z3.Implies(pre, z3.Not(over(zero))),
              z3.Implies(pre, over(u) == z3.Or(x < lo, x > hi)),
              z3.Implies(pre, over(step_max(acc, u)) == z3.Or(over(acc), over(u)))]
    return claims, {"x": x, "lo": lo, "hi": hi, "acc": acc}


SIMD_WRONG["pixel_lane_check"] = ("signed_max", "unbiased", "width_biased", "final_signed_max")
SIMD_LEMMAS["pixel_lane_check"] = (pixel_lane_check, "QF_BV", (32,), ("int32",))
