"""A FixedPointBN layer as a TOSA 1.0 graph (tosa-tools' serializer), run in the TOSA reference model.

Two forms, both computing exactly the layer's integer map (no rounding or scaling left to the runtime):

- ``rescale``: a single RESCALE (SINGLE_ROUND, per-channel, scale32), when its constraints admit the layer:
  RESCALE computes clamp_out(floor((M_c*(x - izp) + 2^(t_c - 1)) / 2^t_c) + ozp) with M_c in [0, 2^31), t_c in
  [2, 62], ONE input and ONE output zero point for the tensor, and the clamp to the whole output type.  The layer
  maps when, with M_c = A_c*2^k, t_c = s_c + k and izp = 0, one ozp shared by all channels makes each channel's
  map equal to the layer's on its whole in_range (checked exactly, ``rescale_params``), [qmin, qmax] is the whole
  output type and x stays in [-2^(t_c - 1), 2^(t_c - 1)) (k is raised until it does).
  ``rescale_report`` also gives the necessary conditions (A_c >= 0, A_c < 2^31, full output clamp): the share of
  layers passing them bounds the share a single RESCALE can express from above.
- ``int32``: CAST to int32, MUL (shift 0) by A_c, ADD B_c, ARITHMETIC_RIGHT_SHIFT by min(s_c, 31) (round false),
  MAXIMUM/MINIMUM with qmin/qmax (CLAMP has no int32 form), CAST to the output type; exact when every A_c*x and
  A_c*x + B_c fits int32 (the
  solver's accumulator bound <= 32 bits; TOSA's int32 MUL with shift 0 requires its product to fit).  Signed
  input and output types only (TOSA 1.0's CAST has no unsigned types).

- ``add_rescale``: an int32 ADD of a per-channel offset (the role a convolution's int32 bias plays), then RESCALE
  (zero points 0): exact when every channel's bias is equivalent to M_c*d_c + 2^(t_c - 1) (``add_rescale_params``,
  checked exactly); needs A_c > 0 and the whole output type as clamp, no width limit (RESCALE multiplies in 64 bits).

- ``multiword``: the exact A*x + B as two int32 words (``MULTIWORD``: MUL with shift m for the rounded high word
  of the 64-bit product, MUL with shift 0 + BITWISE_AND for its low word, the bias split at bit m, the carries by
  ARITHMETIC_RIGHT_SHIFT, then the shift by s - m and MAXIMUM/MINIMUM); exact whenever the product's high word and
  the sums fit int32 (``multiword_params`` checks it at the range ends): every layer of the shared networks,
  whose accumulators need 35..52 bits.  verify.lemmas ``tosa_multiword`` proves the step list in QF_BV.

The graphs do not check in_range: callers feed only inputs inside it (the outputs are proven only there).
Channels are the last axis (NHWC-style [..., C]); the graph takes a [K, C] tensor.
"""
import json
import os
import shutil
import subprocess

import numpy as np

from fxbn.atomic import write_files

__all__ = ["rescale_params", "rescale_report", "layer_to_tosa", "run_reference_model", "reference_model_path",
           "MULTIWORD", "MULTIWORD_WRONG", "multiword_steps", "multiword_params", "multiword_eval"]

_TOSA_DTYPES = {"int8": "INT8", "int16": "INT16", "int32": "INT32"}
_IO_FILE = "fxbn_io.json"


def _full_clamp(layer):
    info = np.iinfo(layer.out_dtype)
    return layer.out_range == (int(info.min), int(info.max))


def rescale_report(layer):
    """Dict: ``necessary`` (A_c >= 0 and < 2^31 for all c, and the clamp is the whole output type), ``single``
    (rescale_params found a single-RESCALE form) and ``reason`` (the first failed condition, or "")."""
    A = layer.multiplier
    if not _full_clamp(layer):
        return {"necessary": False, "single": False, "add_rescale": False,
                "reason": f"clamp {layer.out_range} is narrower than {layer.out_dtype.name} (RESCALE clamps to the "
                          "whole type: needs an extra CLAMP)"}
    if np.any(A < 0):
        return {"necessary": False, "single": False, "add_rescale": False,
                "reason": f"channel {int(np.flatnonzero(A < 0)[0])}: negative multiplier (RESCALE needs >= 0)"}
    if np.any(A >= 1 << 31):
        return {"necessary": False, "single": False, "add_rescale": False,
                "reason": "a multiplier needs more than 31 bits"}
    p = rescale_params(layer)
    if p is None:
        return {"necessary": True, "single": False, "add_rescale": add_rescale_params(layer) is not None,
                "reason": "no shared output zero point makes every channel equal to the layer (checked exactly)"}
    return {"necessary": True, "single": True, "add_rescale": True, "reason": ""}


def _same_map(A, B, s, A2, B2, s2, lo, hi, qmin, qmax):
    """clamp(floor((A*x + B) / 2^s)) == clamp(floor((A2*x + B2) / 2^s2)) for every integer x in [lo, hi], A, A2 >= 0:
    both are nondecreasing steps, equal iff they agree at lo and first reach each level q in (qmin, qmax] at the
    same x (exact integer arithmetic)."""
    def first(a, b, t, q):                         # least x in [lo, hi + 1] with floor((a*x + b) / 2^t) >= q
        if a == 0:
            return lo if (b >> t) >= q else hi + 1
        x = -((b - (q << t)) // a)                 # ceil((q*2^t - b) / a)
        return min(max(x, lo), hi + 1)

    clamp = lambda v: min(max(v, qmin), qmax)  # noqa: E731
    if clamp((A * lo + B) >> s) != clamp((A2 * lo + B2) >> s2):
        return False
    return all(first(A, B, s, q) == first(A2, B2, s2, q) for q in range(qmin + 1, qmax + 1))


def rescale_params(layer):
    """(multiplier int32[C], shift int8[C], output_zp) of a single RESCALE equal to the layer on every input of its
    range, or None.  Per channel M = A*2^k, t = s + k (k raised until t >= 2 and the inputs lie in
    [-2^(t-1), 2^(t-1)), RESCALE's requirement); the shared output zero point is searched among each channel's
    nearest candidates (B*2^k - 2^(t-1)) / 2^t (+-1), and each channel's equality is checked exactly."""
    if not _full_clamp(layer) or np.any(layer.multiplier < 0) or layer.in_dtype.name not in _TOSA_DTYPES \
            or layer.out_dtype.name not in _TOSA_DTYPES or layer.out_dtype.name == "int32":
        return None
    qmin, qmax = layer.out_range
    chans = []
    for A, B, s, (lo, hi) in zip(layer.multiplier.tolist(), layer.bias.tolist(), layer.shift.tolist(),
                                 layer.in_range.tolist()):
        k = max(0, 2 - s)
        while lo < -(1 << (s + k - 1)) or hi >= 1 << (s + k - 1):
            k += 1
        m, t = A << k, s + k
        if m >= 1 << 31 or t > 62:
            return None
        chans.append((A, B, s, lo, hi, m, t))
    candidates = set()
    for A, B, s, lo, hi, m, t in chans:
        z = ((B << (t - s)) - (1 << (t - 1))) >> t
        candidates.update((z - 1, z, z + 1))
    info = np.iinfo(layer.out_dtype)
    signed16 = layer.out_dtype.name != "int8"       # TOSA 1.0: a nonzero output zero point only for int8 outputs
    for ozp in sorted(candidates, key=abs):
        if not info.min <= ozp <= info.max or (signed16 and ozp != 0):
            continue
        # RESCALE adds ozp after the shift and clamps to the type: in the shifted domain that is bias ozp*2^t with
        # the clamp [qmin, qmax] (the whole type) applied after the addition
        if all(_same_map(A, B, s, m, (1 << (t - 1)) + (ozp << t), t, lo, hi, qmin, qmax)
               for A, B, s, lo, hi, m, t in chans):
            return (np.array([c[5] for c in chans], np.int32), np.array([c[6] for c in chans], np.int8), int(ozp))
    return None


def add_rescale_params(layer):
    """(offset int32[C], multiplier int32[C], shift int8[C]) such that an int32 ADD of offset_c followed by RESCALE
    (zero points 0) equals the layer on every input of its range, or None.  The per-channel offset plays the part of
    the per-channel bias RESCALE lacks (as a conv's int32 bias would): per channel, M = A*2^k, t = s + k and offset
    d with M*d + 2^(t-1) an exactly equivalent bias (candidates around (B*2^k - 2^(t-1)) / M, checked exactly);
    k is raised until x + d lies in [-2^(t-1), 2^(t-1)) as RESCALE requires."""
    if not _full_clamp(layer) or np.any(layer.multiplier <= 0) or layer.in_dtype.name not in _TOSA_DTYPES \
            or layer.out_dtype.name not in ("int8", "int16"):
        return None
    qmin, qmax = layer.out_range
    D, M, T = [], [], []
    for A, B, s, (lo, hi) in zip(layer.multiplier.tolist(), layer.bias.tolist(), layer.shift.tolist(),
                                 layer.in_range.tolist()):
        found = None
        k = max(0, 2 - s)
        while found is None and A << k < 1 << 31 and s + k <= 62:
            m, t = A << k, s + k
            d0 = ((B << k) - (1 << (t - 1))) // m
            for d in (d0, d0 + 1, d0 - 1):
                if -(1 << 31) <= lo + d and hi + d < 1 << 31 and -(1 << (t - 1)) <= lo + d \
                        and hi + d < 1 << (t - 1) and _same_map(A, B, s, m, m * d + (1 << (t - 1)), t, lo, hi,
                                                                 qmin, qmax):
                    found = (d, m, t)
                    break
            k += 1
        if found is None:
            return None
        D.append(found[0])
        M.append(found[1])
        T.append(found[2])
    return np.array(D, np.int32), np.array(M, np.int32), np.array(T, np.int8)



# ------------------------------------------------------------------------------------------------ multi-word int32
# The multi-word form: the exact A*x + B (35..52 bits on the shared networks' layers) never exists as one int32.
# TOSA's int32 MUL gives both words of the exact 64-bit product P = A*x (spec: shift > 0 -> round-half-up of
# P / 2^shift, REQUIRE'd to fit int32; shift 0 -> the low 32 bits of P), so with a common split m in [1, 30] and the
# bias split B = BH*2^m + BL, 0 <= BL < 2^m (per channel, exact integers):
#   H  = MUL(x, A, shift m)        = floor((P + 2^(m-1)) / 2^m)      high word, rounded
#   r  = MUL(x, A, shift 0) & MASK  = P mod 2^m                       low word (MASK = 2^m - 1)
#   c1 = r >> (m - 1)               = [r >= 2^(m-1)]                  the rounding MUL added
#   c2 = (r + BL) >> m              = [r + BL >= 2^m]                 the carry of the low words (< 2^31: m <= 30)
#   u  = H + (c2 - c1)              = floor((P + BL) / 2^m)
#   g  = u + BH                     = floor((P + B) / 2^m)
#   q  = g >> K, K = min(s - m, 31) = floor((P + B) / 2^s)             (|g| < 2^31: K = 31 gives the same floor)
#   y  = MINIMUM(MAXIMUM(q, qmin), qmax), CAST to Out
# Every ADD/SUB result fits int32 and every shift amount lies in [0, 31] when H, u and g fit int32 (each a
# nondecreasing function of P, checked at the range ends by multiword_params).  verify.lemmas ``tosa_multiword``
# proves this step list (the same tuple, interpreted with the spec's int32 semantics) equal to
# clamp(floor((A*x + B) / 2^s)) in QF_BV, and refutes the wrong variants below.
MULTIWORD = (
    ("H", "mul_shift", "x", "A", "M"),
    ("L", "mul_low", "x", "A"),
    ("r", "and", "L", "MASK"),
    ("c1", "shr", "r", "M1"),
    ("t", "add", "r", "BL"),
    ("c2", "shr", "t", "M"),
    ("d", "sub", "c2", "c1"),
    ("u", "add", "H", "d"),
    ("g", "add", "u", "BH"),
    ("q", "shr", "g", "K"),
    ("y", "clamp", "q", "QMIN", "QMAX"),
)
# wrong variants (for the lemma's refutations and the runtime mutation tests): the low-word carry dropped, the carry
# taken one bit low (a limb split at m - 1), the MUL's rounding increment left in
MULTIWORD_WRONG = ("no_carry", "carry_at_m_minus_1", "rounding_kept")


def multiword_steps(wrong=None):
    """MULTIWORD, or one of its MULTIWORD_WRONG variants (tests and lemma refutations only)."""
    if wrong is None:
        return MULTIWORD
    if wrong not in MULTIWORD_WRONG:
        raise ValueError(f"unknown multi-word variant {wrong!r} (one of {MULTIWORD_WRONG})")
    swap = {"no_carry": ("d", "sub", "ZERO", "c1"), "carry_at_m_minus_1": ("c2", "shr", "t", "M1"),
            "rounding_kept": ("d", "sub", "c2", "ZERO")}[wrong]
    return tuple(swap if st[0] == swap[0] else st for st in MULTIWORD)


def _fits32(v):
    return -(1 << 31) <= v < 1 << 31


def multiword_params(layer):
    """The multi-word form's constants: dict with ``m`` (the common split, 1..30) and int32 [C] arrays ``A``,
    ``BH``, ``BL``, ``K``, or raises ValueError naming the channel and the intermediate that cannot fit int32.

    Per channel (exact integers): a shift s below m is lifted to m (A*2^(m-s), B*2^(m-s): the same map); B = BH*2^m
    + BL with 0 <= BL < 2^m; K = min(s - m, 31).  The largest m in [1, 30] is taken for which every A and BH fits
    int32 and H, u, g (see MULTIWORD) fit int32 at both ends of every channel's in_range (they are nondecreasing in
    P = A*x, and P is monotone in x, so the ends bound them)."""
    if layer.out_dtype.name not in _TOSA_DTYPES or layer.in_dtype.name not in _TOSA_DTYPES:
        raise ValueError(f"TOSA export: {layer.in_dtype.name} -> {layer.out_dtype.name} needs unsigned types "
                         "(not supported here)")
    chans = list(zip(layer.multiplier.tolist(), layer.bias.tolist(), layer.shift.tolist(), layer.in_range.tolist()))
    why = ""
    for m in range(30, 0, -1):
        out = {"A": [], "BH": [], "BL": [], "K": []}
        for c, (A, B, s, (lo, hi)) in enumerate(chans):
            k = max(0, m - s)
            A2, B2, s2 = A << k, B << k, s + k
            BH, BL = B2 >> m, B2 & ((1 << m) - 1)
            if not _fits32(A2) or not _fits32(BH):
                why = f"channel {c}: multiplier {A2} or bias high word {BH} does not fit int32 (m = {m})"
                break
            ends = [A2 * lo, A2 * hi]
            vals = [(P + (1 << (m - 1))) >> m for P in ends] + [(P + BL) >> m for P in ends] \
                + [(P + B2) >> m for P in ends]
            if not all(_fits32(v) for v in vals):
                why = f"channel {c}: an intermediate word needs more than 32 bits (m = {m})"
                break
            for key, v in (("A", A2), ("BH", BH), ("BL", BL), ("K", min(s2 - m, 31))):
                out[key].append(v)
        else:
            return {"m": m, **{k: np.array(v, np.int32) for k, v in out.items()}}
    raise ValueError(f"no multi-word int32 form: {why}")


def multiword_eval(layer, x, wrong=None):
    """NumPy model of the multi-word steps with TOSA's int32 semantics (every REQUIRE asserted), channels last;
    for checks and for the tests' mutation baselines."""
    p = multiword_params(layer)
    m = p["m"]
    x = np.asarray(x).astype(np.int64)
    ops = {"x": x, "A": p["A"].astype(np.int64), "BH": p["BH"].astype(np.int64), "BL": p["BL"].astype(np.int64),
           "K": p["K"].astype(np.int64), "M": m, "M1": m - 1, "MASK": (1 << m) - 1, "ZERO": 0,
           "QMIN": layer.out_range[0], "QMAX": layer.out_range[1]}

    def req(v):
        if np.any(v < -(1 << 31)) or np.any(v >= 1 << 31):
            raise ArithmeticError("int32 REQUIRE violated")
        return v

    for name, op, *args in multiword_steps(wrong):
        a = [ops[v] for v in args]
        if op == "mul_shift":
            v = req((a[0] * a[1] + (1 << (a[2] - 1))) >> a[2])
        elif op == "mul_low":
            v = ((a[0] * a[1]) & 0xFFFFFFFF).astype(np.int64)
            v = np.where(v >= 1 << 31, v - (1 << 32), v)
        elif op == "and":
            v = a[0] & a[1]
        elif op == "shr":
            v = a[0] >> a[1]
        elif op == "add":
            v = req(a[0] + a[1])
        elif op == "sub":
            v = req(a[0] - a[1])
        elif op == "clamp":
            v = np.minimum(np.maximum(a[0], a[1]), a[2])
        else:
            raise ValueError(f"unknown step op {op!r}")
        ops[name] = v
    return ops[MULTIWORD[-1][0]].astype(layer.out_dtype)


def _emit_multiword(ser, ts, layer, x, out, rows, wrong=None):
    from tosa import DType, NanPropagationMode, Op

    p = multiword_params(layer)
    m, C = p["m"], layer.channels
    I32, I8 = DType.DType().INT32, DType.DType().INT8
    per_channel = {k: p[k] for k in ("A", "BH", "BL", "K")}
    scalars = {"M": m, "M1": m - 1, "MASK": (1 << m) - 1, "ZERO": 0, "QMIN": layer.out_range[0],
               "QMAX": layer.out_range[1]}
    consts = {}

    def operand(name, shift_input=False):
        if name in tensors:
            return tensors[name]
        key = (name, shift_input)
        if key not in consts:
            if shift_input:                                   # MUL's shift: an int8 [1] tensor
                consts[key] = ser.addConst([1], I8, np.array([scalars[name]], np.int8))
            elif name in per_channel:
                consts[key] = ser.addConst([1, C], I32, per_channel[name].reshape(1, C))
            else:
                consts[key] = ser.addConst([1, 1], I32, np.array([[scalars[name]]], np.int32))
        return consts[key]

    src = x
    if layer.in_dtype.name != "int32":
        src = ser.addIntermediate([rows, C], I32)
        ser.addOperator(Op.Op().CAST, [x.name], [src.name], _attr(ts, "CastAttribute"))
    tensors = {"x": src}
    nan = NanPropagationMode.NanPropagationMode().PROPAGATE
    steps = multiword_steps(wrong)
    for i, (name, op, *args) in enumerate(steps):
        last_to_out = i == len(steps) - 1 and layer.out_dtype.name == "int32"   # no CAST int32 -> int32 in TOSA
        res = out if last_to_out else ser.addIntermediate([rows, C], I32)
        if op in ("mul_shift", "mul_low"):
            sh = operand(args[2], True) if op == "mul_shift" else operand("ZERO", True)
            ser.addOperator(Op.Op().MUL, [operand(args[0]).name, operand(args[1]).name, sh.name], [res.name],
                            _attr(ts, "MulAttribute"))
        elif op == "clamp":
            mid = ser.addIntermediate([rows, C], I32)
            ser.addOperator(Op.Op().MAXIMUM, [operand(args[0]).name, operand(args[1]).name], [mid.name],
                            _attr(ts, "MaximumAttribute", nan))
            ser.addOperator(Op.Op().MINIMUM, [mid.name, operand(args[2]).name], [res.name],
                            _attr(ts, "MinimumAttribute", nan))
        else:
            code, attr = {"and": ("BITWISE_AND", ("BitwiseAndAttribute",)), "add": ("ADD", ("AddAttribute",)),
                          "sub": ("SUB", ("SubAttribute",)),
                          "shr": ("ARITHMETIC_RIGHT_SHIFT", ("ArithmeticRightShiftAttribute", False))}[op]
            ser.addOperator(getattr(Op.Op(), code), [operand(a).name for a in args], [res.name], _attr(ts, *attr))
        tensors[name] = res
    if layer.out_dtype.name != "int32":
        ser.addOperator(Op.Op().CAST, [tensors[steps[-1][0]].name], [out.name], _attr(ts, "CastAttribute"))


def _ser():
    from serializer import tosa_serializer as ts   # tosa-tools
    return ts


def layer_to_tosa(layer, directory, rows, form=None, wrong=None):
    """Write a TOSA flatbuffer (``layer.tosa``) and its test descriptor (``desc.json``) taking a [rows, C] tensor
    of the layer's input type; ``form`` is "rescale", "int32", "add_rescale", "multiword" or None (the first that
    applies, in that order).  Returns the form.  ``wrong`` (tests only): a MULTIWORD_WRONG variant of the
    multi-word steps.

    Raises
    ------
    ValueError
        The layer cannot be expressed exactly in the requested form (naming the reason).
    """
    from fxbn.api import _positive_rows, _require_layer

    _require_layer(layer, "layer_to_tosa")
    rows = _positive_rows(rows)
    ts = _ser()
    from tosa import DType, Op, NanPropagationMode, RoundingMode

    C = layer.channels
    in_name, out_name = layer.in_dtype.name, layer.out_dtype.name
    if in_name not in _TOSA_DTYPES or out_name not in _TOSA_DTYPES:
        raise ValueError(f"TOSA export: {in_name} -> {out_name} needs unsigned types (not supported here)")
    from fxbn.codegen import c_accumulator_bits

    rp = rescale_params(layer)
    ap = add_rescale_params(layer) if rp is None else None
    if form is None:
        form = "rescale" if rp is not None else "int32" if c_accumulator_bits(layer) == 32 else \
            "add_rescale" if ap is not None else "multiword"
    if form not in ("rescale", "int32", "add_rescale", "multiword"):
        raise ValueError(f"form must be 'rescale', 'int32', 'add_rescale' or 'multiword', got {form!r}")
    if form == "multiword":
        multiword_params(layer)                       # raises with the reason before anything is written
    if form == "rescale" and rp is None:
        raise ValueError(f"no single RESCALE: {rescale_report(layer)['reason']}")
    if form == "add_rescale" and ap is None:
        raise ValueError("no exact ADD + RESCALE form: "
                         + (rescale_report(layer)["reason"] or "no per-channel offset reproduces the biases"))

    if form == "int32" and c_accumulator_bits(layer) != 32:
        raise ValueError("int32 TOSA form: A*x + B needs more than 32 bits for this layer")
    dt = lambda name: getattr(DType.DType(), _TOSA_DTYPES[name])  # noqa: E731
    I32 = DType.DType().INT32
    os.makedirs(directory, exist_ok=True)
    ser = ts.TosaSerializer(directory)
    x = ser.addPlaceholder([rows, C], dt(in_name), None)
    out = ser.addOutput([rows, C], dt(out_name))
    if form == "multiword":
        _emit_multiword(ser, ts, layer, x, out, rows, wrong)
    elif form == "rescale":
        M, T, ozp = rp
        mul = ser.addConst([C], I32, M)
        sh = ser.addConst([C], DType.DType().INT8, T)
        izp = ser.addConst([1], dt(in_name), np.zeros(1, layer.in_dtype))
        oz = ser.addConst([1], dt(out_name), np.array([ozp], layer.out_dtype))
        attr = ts.TosaSerializerAttribute()
        attr.RescaleAttribute(True, RoundingMode.RoundingMode().SINGLE_ROUND, True, False, False)
        ser.addOperator(Op.Op().RESCALE, [x.name, mul.name, sh.name, izp.name, oz.name], [out.name], attr)
    elif form == "add_rescale":
        D, M, T = ap
        src = x
        if in_name != "int32":
            src = ser.addIntermediate([rows, C], I32)
            ser.addOperator(Op.Op().CAST, [x.name], [src.name], _attr(ts, "CastAttribute"))
        off = ser.addConst([1, C], I32, D.reshape(1, C))
        shifted = ser.addIntermediate([rows, C], I32)
        ser.addOperator(Op.Op().ADD, [src.name, off.name], [shifted.name], _attr(ts, "AddAttribute"))
        mul = ser.addConst([C], I32, M)
        sh = ser.addConst([C], DType.DType().INT8, T)
        izp = ser.addConst([1], I32, np.zeros(1, np.int32))
        oz = ser.addConst([1], dt(out_name), np.zeros(1, layer.out_dtype))
        attr = ts.TosaSerializerAttribute()
        attr.RescaleAttribute(True, RoundingMode.RoundingMode().SINGLE_ROUND, True, False, False)
        ser.addOperator(Op.Op().RESCALE, [shifted.name, mul.name, sh.name, izp.name, oz.name], [out.name], attr)
    else:
        w = c_accumulator_bits(layer)
        A = ser.addConst([1, C], I32, layer.multiplier.astype(np.int32).reshape(1, C))
        B = ser.addConst([1, C], I32, layer.bias.astype(np.int32).reshape(1, C))
        S = ser.addConst([1, C], I32, np.minimum(layer.shift, w - 1).astype(np.int32).reshape(1, C))
        zero_shift = ser.addConst([1], DType.DType().INT8, np.zeros(1, np.int8))
        t = [None] + [ser.addIntermediate([rows, C], I32) for _ in range(5)]
        src = x                                # CAST int32 -> int32 is not a TOSA operation
        if in_name != "int32":
            src = ser.addIntermediate([rows, C], I32)
            ser.addOperator(Op.Op().CAST, [x.name], [src.name], _attr(ts, "CastAttribute"))
        ser.addOperator(Op.Op().MUL, [src.name, A.name, zero_shift.name], [t[1].name], _attr(ts, "MulAttribute"))
        ser.addOperator(Op.Op().ADD, [t[1].name, B.name], [t[2].name], _attr(ts, "AddAttribute"))
        ser.addOperator(Op.Op().ARITHMETIC_RIGHT_SHIFT, [t[2].name, S.name], [t[3].name],
                        _attr(ts, "ArithmeticRightShiftAttribute", False))
        # TOSA 1.0's CLAMP has no int32 form: MAXIMUM then MINIMUM with [1, 1] constants
        qmin = ser.addConst([1, 1], I32, np.array([[layer.out_range[0]]], np.int32))
        qmax = ser.addConst([1, 1], I32, np.array([[layer.out_range[1]]], np.int32))
        nan = NanPropagationMode.NanPropagationMode().PROPAGATE
        ser.addOperator(Op.Op().MAXIMUM, [t[3].name, qmin.name], [t[5].name], _attr(ts, "MaximumAttribute", nan))
        ser.addOperator(Op.Op().MINIMUM, [t[5].name, qmax.name], [t[4].name], _attr(ts, "MinimumAttribute", nan))
        ser.addOperator(Op.Op().CAST, [t[4].name], [out.name], _attr(ts, "CastAttribute"))
    # the three files all new or all old; _IO_FILE: what run_reference_model may feed the graph
    write_files({os.path.join(directory, "layer.tosa"): bytes(ser.serialize()),
                 os.path.join(directory, "desc.json"): ser.writeJson("layer.tosa"),
                 os.path.join(directory, _IO_FILE): json.dumps({"in_dtype": in_name, "shape": [rows, C]})})
    return form


def _attr(ts, name, *args):
    attr = ts.TosaSerializerAttribute()
    getattr(attr, name)(*args)
    return attr


def reference_model_path():
    """The tosa_reference_model executable (tosa-tools), or None."""
    import sys

    here = os.path.join(os.path.dirname(sys.executable), "tosa_reference_model")
    return here if os.path.exists(here) else shutil.which("tosa_reference_model")


def run_reference_model(directory, x):
    """Run the graph written by layer_to_tosa on x ([rows, C], the layer's input type); returns the output array."""
    with open(os.path.join(directory, "desc.json")) as f:
        desc = json.load(f)
    try:
        with open(os.path.join(directory, _IO_FILE)) as f:
            io = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{directory}: no {_IO_FILE} (not written by layer_to_tosa)") from None
    # the reference model converts an input of another type to the graph's (int16 300 -> int8 44): refuse it here
    if not isinstance(x, np.ndarray) or x.dtype != np.dtype(io["in_dtype"]) or list(x.shape) != io["shape"]:
        what = f"a {type(x).__name__}" if not isinstance(x, np.ndarray) else f"{x.dtype} of shape {x.shape}"
        raise ValueError(f"x must be a {io['in_dtype']} array of shape {tuple(io['shape'])} (the graph's input), "
                         f"got {what}")
    np.save(os.path.join(directory, desc["ifm_file"][0]), x)
    res = subprocess.run([reference_model_path(), "--test_desc", os.path.join(directory, "desc.json")],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"tosa_reference_model failed ({res.returncode}): {res.stdout[-2000:]}"
                           f"{res.stderr[-2000:]}")
    return np.load(os.path.join(directory, desc["ofm_file"][0]))
