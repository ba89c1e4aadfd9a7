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
_CHUNK = 1 << 15   # elements per block in peer_apply


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


def _srdhm(a, b):
    """SaturatingRoundingDoublingHighMul on int64 arrays holding int32 values (a is consumed: overwritten)."""
    overflow = (a == _I32_MIN) & (b == _I32_MIN) if np.any(np.asarray(b) == _I32_MIN) else None
    a *= b                                                        # |a*b| <= 2^62
    neg = a < 0
    a += 1 << 30                                                  # nudge: 2^30, or 1 - 2^30 when a*b < 0
    a -= neg * np.int64((1 << 31) - 1)
    a += (a < 0) * np.int64((1 << 31) - 1)                        # C division truncates toward zero
    a >>= 31
    if overflow is not None:
        a[overflow] = _I32_MAX
    return a


def _rounding_divide_by_pot(x, exponent):
    """RoundingDivideByPOT (round half away from zero) of int64 x by 2^exponent, in place."""
    if not np.any(exponent):
        return x
    mask = (np.int64(1) << exponent) - 1
    threshold = (mask >> 1) + (x < 0)
    above = (x & mask) > threshold
    x >>= exponent
    x += above
    return x


def _tflite_double(p, x, qmin, qmax):
    acc = x + p["bias"]
    np.clip(acc, _I32_MIN, _I32_MAX, out=acc)
    left = np.maximum(p["shift"], 0)
    if np.any(left):
        acc <<= left
        np.clip(acc, _I32_MIN, _I32_MAX, out=acc)
    y = _rounding_divide_by_pot(_srdhm(acc, p["M"]), np.maximum(-p["shift"], 0))
    y += p["offset"]
    return np.clip(y, qmin, qmax, out=y)


def _tflite_single(p, x, qmin, qmax):
    acc = x + p["bias"]
    np.clip(acc, _I32_MIN, _I32_MAX, out=acc)
    n = 31 - p["shift"]
    acc *= p["M"]
    acc += np.int64(1) << (n - 1)
    acc >>= n
    np.clip(acc, _I32_MIN, _I32_MAX, out=acc)
    acc += p["offset"]
    return np.clip(acc, qmin, qmax, out=acc)


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
    v = (x - p["zin"]).astype(np.float32)
    v *= p["alpha"]                                                # float32 products and sums, not fused
    v += p["beta"]
    np.rint(v, out=v)                                              # lrintf: round half to even
    n = v.astype(np.int64)
    n += p["zout"]
    return np.clip(n, qmin, qmax, out=n)


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
    """R(N / 2^m) for integer arrays N (int64 or object) and m >= 0 (an int, or int64 broadcasting with N), exactly."""
    if np.ndim(m) == 0 and m == 0:
        return N
    q = N >> m
    r = N - (q << m)
    half = (np.int64(1) << m) >> 1 if np.ndim(m) else 1 << (m - 1)
    shifted = np.asarray(m) > 0                                    # m == 0: nothing is rounded
    if rounding == "floor":
        return q
    if rounding == "half_up":
        return q + ((r >= half) & shifted)
    up = (r > half)
    tie = (r == half) & shifted
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


def _apply_channels(scheme, layer, params, x, channels, tiles=None):
    """Outputs for x (int64, shape (m, n_c)) whose column i belongs to channel channels[i].

    The work is done on the flattened block with every per-channel parameter tiled to the block's length (tiles:
    a cache shared by calls on blocks of at most as many rows): numpy's inner loops then run over the whole block.
    """
    qmin, qmax = layer.out_range
    x = np.asarray(x, np.int64)
    m, k = x.shape
    x = x.reshape(-1)
    tiles = {} if tiles is None else tiles

    def col(key, per_column):
        """One value per column of the block, tiled to the flattened block (cached under key)."""
        if key not in tiles or len(tiles[key]) < m * k:
            tiles[key] = np.tile(np.asarray(per_column), m)
        return tiles[key][:m * k]

    if scheme == "separate_scales":
        p = None
    else:
        p = {name: col(name, np.asarray(v)[channels]) for name, v in params.items()}
    if scheme in ("fxbn",) or scheme.startswith("fixed_bits_"):
        y = x * p["A"]
        y += p["B"]
        y >>= p["s"]
        y = np.clip(y, qmin, qmax, out=y)
    elif scheme in ("tflite_double", "tflite_single"):
        y = (_tflite_double if scheme == "tflite_double" else _tflite_single)(p, x, qmin, qmax)
    elif scheme == "pytorch_fp32":
        y = _pytorch(p, x, qmin, qmax)
    else:
        if "rows" not in tiles:                                    # per column, once per peer_apply call
            rows = [params["rows"][c] for c in channels]
            # "wide": A*x + B might leave int64 (|x| < 2^32): exact object arithmetic for that channel alone
            wide = np.array([max(abs(ia), 1).bit_length() + 33 > 62 or abs(ib).bit_length() > 61
                             for ia, ib, _ in rows], bool)
            narrow = [np.array([r[j] if not w else 0 for r, w in zip(rows, wide)], np.int64) for j in range(3)]
            tiles["rows"] = (rows, wide, narrow)
        rows, wide, narrow = tiles["rows"]
        ia, ib, sh = (col(name, v) for name, v in zip("abm", narrow))
        y = np.clip(_round_pow2(x * ia + ib, sh, layer.rounding), qmin, qmax).reshape(m, k)
        for i in np.flatnonzero(wide):
            a_i, b_i, m_i = rows[i]
            N = x.reshape(m, k)[:, i].astype(object) * a_i + b_i
            y[:, i] = np.clip(np.asarray(_round_pow2(N, m_i, layer.rounding)), qmin, qmax).astype(np.int64)
    return y.reshape(m, k)


def peer_apply(scheme, layer, x, axis=1, params=None):
    """Apply a peer scheme to an integer activation array whose `axis` holds the layer's channels.

    Parameters
    ----------
    scheme : str
        One of :data:`SCHEMES` (see the module docstring).
    layer : fxbn.FixedPointBN
        Supplies the real map (its source parameters), the output range and the rounding.
    x : ndarray of integers
    axis : int
    params : dict, optional
        ``scheme_parameters(scheme, layer)``, computed once by a caller that applies the same layer many times.

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
    if params is None:
        params = scheme_parameters(scheme, layer)
    moved = np.moveaxis(x, axis, -1)                              # a view; no copy for channels-last input
    flat = moved.reshape(-1, layer.channels)
    y = np.empty(flat.shape, np.int64)
    channels = np.arange(layer.channels)
    step = max(1, _CHUNK // layer.channels)                       # blocks small enough to stay in cache
    tiles = {}
    for i in range(0, len(flat), step):
        y[i:i + step] = _apply_channels(scheme, layer, params, flat[i:i + step].astype(np.int64), channels, tiles)
    return np.moveaxis(y.reshape(moved.shape), -1, axis)


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
                return _apply_channels(scheme, layer, params, (xp * sign)[:, None], [c])[:, 0]

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
