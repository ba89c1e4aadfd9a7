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

The graphs do not check in_range: callers feed only inputs inside it (the outputs are proven only there).
Channels are the last axis (NHWC-style [..., C]); the graph takes a [K, C] tensor.
"""
import json
import os
import shutil
import subprocess

import numpy as np

__all__ = ["rescale_params", "rescale_report", "layer_to_tosa", "run_reference_model", "reference_model_path"]

_TOSA_DTYPES = {"int8": "INT8", "int16": "INT16", "int32": "INT32"}


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


def _ser():
    from serializer import tosa_serializer as ts   # tosa-tools
    return ts


def layer_to_tosa(layer, directory, rows, form=None):
    """Write a TOSA flatbuffer (``layer.tosa``) and its test descriptor (``desc.json``) taking a [rows, C] tensor
    of the layer's input type; ``form`` is "rescale", "int32", "add_rescale" or None (the first that applies, in
    that order).  Returns the form.

    Raises
    ------
    ValueError
        The layer cannot be expressed exactly in the requested form (naming the reason).
    """
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
        form = "rescale" if rp is not None else "int32" if c_accumulator_bits(layer) == 32 else "add_rescale"
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
    if form == "rescale":
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
    with open(os.path.join(directory, "layer.tosa"), "wb") as f:
        f.write(ser.serialize())
    with open(os.path.join(directory, "desc.json"), "w") as f:
        f.write(ser.writeJson("layer.tosa"))
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
    np.save(os.path.join(directory, desc["ifm_file"][0]), x)
    res = subprocess.run([reference_model_path(), "--test_desc", os.path.join(directory, "desc.json")],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"tosa_reference_model failed ({res.returncode}): {res.stdout[-2000:]}"
                           f"{res.stderr[-2000:]}")
    return np.load(os.path.join(directory, desc["ofm_file"][0]))
