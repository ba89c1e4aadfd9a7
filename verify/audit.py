"""Peer audit: the exact error of the integer BN schemes in use today, on the same layer, against the exact reference.

Scheme names (``peer_apply(scheme, layer, x, axis=1)``; all take integer inputs, return int64 outputs):

- ``"fxbn"``: the layer itself, clamp((A*x + B) >> s).
- ``"tflite_double"``: gemmlowp / TFLite double rounding.  The real multiplier a becomes a 31-bit fixed-point
  (quantized_multiplier, shift) by frexp (QuantizeMultiplier); the bias is folded into the int32 accumulator as
  round(b' / a) (b' = b minus the output zero point, which is added after, as TFLite's output_offset);
  acc = x + bias (int32), then SaturatingRoundingDoublingHighMul(acc << left_shift, quantized_multiplier), then
  RoundingDivideByPOT(right_shift), plus the output offset, clamped.  Int32 additions and the left shift saturate
  (a wrapping int32 overflow would only make the peer worse).
- ``"tflite_single"``: TFLite's single-rounding variant: (acc * quantized_multiplier + 2^(n-1)) >> n with a
  64-bit product, n = 31 - shift, plus the output offset, clamped (same accumulator and offset as above).
- ``"pytorch_fp32"``: PyTorch's quantized batch norm (float32): alpha, beta computed as in its
  compute_fused_params (float32 inv_sigma, alpha = inv_sigma*gamma*(in_scale/out_scale), beta = (beta -
  mean*inv_sigma*gamma)/out_scale), then out_zero_point + lrintf(alpha*(x - in_zero_point) + beta) in float32,
  round half to even, not fused, clamped.  Affine layers use alpha = float32(a), beta = float32(b).
- ``"separate_scales"``: a and b rounded independently to 16-bit signed mantissas (A_a / 2^sa, B_b / 2^sb), then
  R(A_a*x / 2^sa + B_b / 2^sb) exactly with the layer's rounding, clamped.
- ``"fixed_bits_8"``, ``"fixed_bits_16"``: the fxbn form with the multiplier rounded to 8 or 16 signed bits:
  the largest s with |round(a*2^s)| < 2^(bits-1) (and a 64-bit accumulator), A = round(a*2^s),
  B = round((b + 1/2)*2^s) (floor rounding: round(b*2^s)), clamp((A*x + B) >> s).

Every scheme is monotone in x, so :func:`audit_layer` computes the exact maximum error and mismatch count over the
whole in_range from the breakpoint structure (a few hundred evaluations per channel, int32 ranges included), and
by enumeration when the range has at most 2^16 inputs.
"""
from fractions import Fraction
import math

import numpy as np

from verify import breakpoints, exact

SCHEMES = ("fxbn", "tflite_double", "tflite_single", "pytorch_fp32", "separate_scales", "fixed_bits_8",
           "fixed_bits_16")
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1


def _round_half_away(v):
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


def quantize_multiplier(m):
    """TFLite QuantizeMultiplier: (quantized_multiplier int32, shift) with m ~ q * 2^(shift - 31)."""
    if m == 0:
        return 0, 0
    q, shift = math.frexp(m)
    q_fixed = _round_half_away(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        return _I32_MAX, 30
    return int(q_fixed), int(shift)


def _tflite_params(layer):
    a, b = layer.affine
    offset = np.zeros(layer.channels, np.int64)
    if layer.source["form"] == "batchnorm":
        offset = np.asarray(layer.source["out_zero_point"], np.int64).reshape(-1).copy()
    M, shift, bias = [], [], []
    for c in range(layer.channels):
        qm, sh = quantize_multiplier(float(a[c]))
        M.append(qm)
        shift.append(sh)
        bias.append(0 if a[c] == 0 else int(np.clip(np.round((b[c] - offset[c]) / a[c]), _I32_MIN, _I32_MAX)))
    return {"M": np.array(M, np.int64), "shift": np.array(shift, np.int64), "bias": np.array(bias, np.int64),
            "offset": offset}


def _sat32(v):
    return np.clip(v, _I32_MIN, _I32_MAX)


def _srdhm(a, b):
    """SaturatingRoundingDoublingHighMul on int64 arrays holding int32 values."""
    overflow = (a == _I32_MIN) & (b == _I32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    num = ab + nudge
    high = np.where(num >= 0, num >> 31, -((-num) >> 31))        # C division truncates toward zero
    return np.where(overflow, _I32_MAX, high)


def _rounding_divide_by_pot(x, exponent):
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def _tflite_double(p, x, qmin, qmax):
    acc = _sat32(x + p["bias"])
    left = np.maximum(p["shift"], 0)
    right = np.maximum(-p["shift"], 0)
    acc = _sat32(acc << left)
    y = _rounding_divide_by_pot(_srdhm(acc, p["M"]), right)
    return np.clip(y + p["offset"], qmin, qmax)


def _tflite_single(p, x, qmin, qmax):
    acc = _sat32(x + p["bias"])
    n = 31 - p["shift"]
    y = _sat32((acc * p["M"] + (np.int64(1) << (n - 1))) >> n)
    return np.clip(y + p["offset"], qmin, qmax)


def _pytorch_params(layer):
    s = layer.source
    f32 = np.float32
    if s["form"] == "affine":
        return {"alpha": np.asarray(s["a"]).astype(f32), "beta": np.asarray(s["b"]).astype(f32),
                "zin": np.zeros(layer.channels, np.int64), "zout": np.zeros(layer.channels, np.int64)}
    var, eps = np.asarray(s["var"]).astype(f32), np.asarray(s["eps"]).astype(f32)
    inv_sigma = (1.0 / np.sqrt(var + eps).astype(np.float64)).astype(f32)
    g, beta, mean = (np.asarray(s[k]).astype(f32) for k in ("gamma", "beta", "mean"))
    ratio = np.asarray(s["in_scale"], np.float64) / np.asarray(s["out_scale"], np.float64)
    alpha = ((inv_sigma * g).astype(np.float64) * ratio).astype(f32)
    b = ((beta - mean * inv_sigma * g).astype(np.float64) / np.asarray(s["out_scale"], np.float64)).astype(f32)
    return {"alpha": alpha, "beta": b, "zin": np.asarray(s["in_zero_point"], np.int64),
            "zout": np.asarray(s["out_zero_point"], np.int64)}


def _pytorch(p, x, qmin, qmax):
    xf = (x - p["zin"]).astype(np.float32)
    v = (xf * p["alpha"]).astype(np.float32) + p["beta"]
    n = np.rint(v.astype(np.float32)).astype(np.int64)            # lrintf: round half to even
    return np.clip(n + p["zout"], qmin, qmax)


def _mantissa16(v):
    """(m, e) with v ~ m / 2^e, |m| < 2^15 (round half to even), exact 0 for 0."""
    if v == 0:
        return 0, 0
    _, e2 = math.frexp(v)
    e = 15 - e2
    m = round(Fraction(v) * Fraction(2) ** e)
    if abs(m) >= 1 << 15:
        m, e = round(Fraction(m, 2)), e - 1
    return int(m), int(e)


def _round_pow2(N, m, rounding):
    """R(N / 2^m) for integer arrays N (int64 or object) and m >= 0, exactly."""
    if m == 0:
        return N
    q = N >> m
    r = N - (q << m)
    half = 1 << (m - 1)
    if rounding == "floor":
        return q
    if rounding == "half_up":
        return q + (r >= half)
    up = (r > half)
    tie = r == half
    if rounding == "half_even":
        return q + (up | (tie & (q % 2 != 0)))
    return q + (up | (tie & (q >= 0)))       # half_away: a tie rounds up iff the value is positive


def _separate_params(layer):
    a, b = layer.affine
    rows = []
    for c in range(layer.channels):
        ma, ea = _mantissa16(float(a[c]))
        mb, eb = _mantissa16(float(b[c]))
        m = max(ea, eb, 0)
        rows.append((ma << (m - ea), mb << (m - eb), m))
    return rows


def _fixed_bits_params(layer, bits):
    a, b = layer.affine
    rows = []
    for c in range(layer.channels):
        fa, fb = Fraction(float(a[c])), Fraction(float(b[c]))
        half = Fraction(0) if layer.rounding == "floor" else Fraction(1, 2)
        lo, hi = (int(v) for v in layer.in_range[c])
        chosen = (0, round(fb + half), 0)
        for s in range(0, 63):
            A = round(fa * (1 << s))
            B = round((fb + half) * (1 << s))
            if abs(A) >= 1 << (bits - 1) or max(abs(A * lo + B), abs(A * hi + B), abs(B)) >= 1 << 62:
                break
            chosen = (A, B, s)
        rows.append(chosen)
    return rows


def scheme_parameters(scheme, layer):
    """The per-channel integer/float parameters a scheme derives from the layer's real map."""
    if scheme == "fxbn":
        return {"A": layer.multiplier, "B": layer.bias, "s": layer.shift}
    if scheme in ("tflite_double", "tflite_single"):
        return _tflite_params(layer)
    if scheme == "pytorch_fp32":
        return _pytorch_params(layer)
    if scheme == "separate_scales":
        return {"rows": _separate_params(layer)}
    if scheme.startswith("fixed_bits_"):
        rows = _fixed_bits_params(layer, int(scheme.rsplit("_", 1)[1]))
        return {"A": np.array([r[0] for r in rows], np.int64), "B": np.array([r[1] for r in rows], np.int64),
                "s": np.array([r[2] for r in rows], np.int64)}
    raise ValueError(f"unknown scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")


def _apply_channels(scheme, layer, params, x, channels):
    """Outputs for x (int64, shape (n_c, m)) whose row i belongs to channel channels[i]."""
    qmin, qmax = layer.out_range
    x = np.asarray(x, np.int64)
    col = lambda v: np.asarray(v)[channels][:, None]  # noqa: E731
    if scheme in ("fxbn",) or scheme.startswith("fixed_bits_"):
        return np.clip((col(params["A"]) * x + col(params["B"])) >> col(params["s"]), qmin, qmax)
    if scheme in ("tflite_double", "tflite_single"):
        p = {k: col(v) for k, v in params.items()}
        return (_tflite_double if scheme == "tflite_double" else _tflite_single)(p, x, qmin, qmax)
    if scheme == "pytorch_fp32":
        p = {k: col(v) for k, v in params.items()}
        return _pytorch(p, x, qmin, qmax)
    out = np.empty(x.shape, np.int64)
    for i, c in enumerate(channels):
        ia, ib, m = params["rows"][c]
        xs = x[i]
        wide = max(abs(ia), 1).bit_length() + 33 > 62 or abs(ib).bit_length() > 61
        N = (xs.astype(object) * ia + ib) if wide else xs * ia + ib
        out[i] = np.clip(np.asarray(_round_pow2(N, m, layer.rounding)), qmin, qmax).astype(np.int64)
    return out


def peer_apply(scheme, layer, x, axis=1):
    """Apply a peer scheme to an integer activation array whose `axis` holds the layer's channels.

    Parameters
    ----------
    scheme : str
        One of :data:`SCHEMES` (see the module docstring).
    layer : fxbn.FixedPointBN
        Supplies the real map (its source parameters), the output range and the rounding.
    x : ndarray of integers
    axis : int

    Returns
    -------
    ndarray of int64, the shape of x.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise ValueError(f"x must hold integers, got dtype {x.dtype}")
    axis %= x.ndim
    if x.shape[axis] != layer.channels:
        raise ValueError(f"x has {x.shape[axis]} entries on axis {axis}, the layer has {layer.channels} channels")
    params = scheme_parameters(scheme, layer)
    moved = np.moveaxis(x, axis, 0).reshape(layer.channels, -1).astype(np.int64)
    y = _apply_channels(scheme, layer, params, moved, np.arange(layer.channels))
    return np.moveaxis(y.reshape(np.moveaxis(x, axis, 0).shape), 0, axis)


def audit_layer(layer, schemes=SCHEMES, engine="core", enumerate_limit=1 << 16):
    """Exact per-channel error of each scheme against the exact reference over the whole in_range.

    Returns
    -------
    list of dict
        One per scheme: ``scheme``, ``max_error`` (over channels), ``mismatches`` (inputs, summed over channels),
        ``inputs`` (total), ``witness`` ({channel, x, peer, reference}) of a maximal error, ``per_channel``
        (max_error, mismatches), ``method`` ("enumeration" or "breakpoints").
    """
    d, T = layer.reference_breakpoints(engine)
    qmin, _ = layer.out_range
    rows = []
    for scheme in schemes:
        params = scheme_parameters(scheme, layer)
        per, witness, total = [], None, 0
        for c in range(layer.channels):
            lo, hi = (int(v) for v in layer.in_range[c])
            total += hi - lo + 1
            sign = -1 if d[c] < 0 else 1
            lo_m, hi_m = exact.mirrored_range(int(d[c]), lo, hi)

            def g(xp, c=c, sign=sign):
                xp = np.asarray(xp, np.int64)
                return _apply_channels(scheme, layer, params, (xp * sign)[None, :], [c])[0]

            if hi - lo + 1 <= enumerate_limit:
                xp = np.arange(lo_m, hi_m + 1, dtype=np.int64)
                diff = g(xp) - (qmin + np.searchsorted(T[c], xp, side="right"))
                i = int(np.argmax(np.abs(diff)))
                r = {"max_error": int(abs(diff[i])), "mismatches": int((diff != 0).sum()),
                     "witness_xprime": int(xp[i]) if diff[i] else None}
                method = "enumeration"
            else:
                r = breakpoints.compare_monotone(g, T[c], qmin, lo_m, hi_m)
                method = "breakpoints"
            per.append({"max_error": r["max_error"], "mismatches": r["mismatches"]})
            if r["witness_xprime"] is not None and (witness is None or r["max_error"] > witness["error"]):
                x = r["witness_xprime"] * sign
                witness = {"channel": c, "x": int(x), "error": r["max_error"],
                           "peer": int(g(np.array([r["witness_xprime"]]))[0]),
                           "reference": exact.reference_output(layer, c, x)}
        rows.append({"scheme": scheme, "max_error": max(p["max_error"] for p in per),
                     "mismatches": sum(p["mismatches"] for p in per), "inputs": total, "witness": witness,
                     "per_channel": per, "method": method})
    return rows


def summary_lines(rows):
    """One human-readable line per scheme."""
    out = []
    for r in rows:
        w = r["witness"]
        where = "" if w is None else (f", e.g. channel {w['channel']} x={w['x']}: {w['peer']} vs exact "
                                      f"{w['reference']}")
        out.append(f"{r['scheme']:16s} max error {r['max_error']}, {r['mismatches']} of {r['inputs']} inputs "
                   f"wrong ({r['method']}){where}")
    return out
