"""Independent checks used by the property tests (and run against deliberately wrong implementations).

Nothing here uses the C++ solver's hull logic: the reference comes from fxbn.reference (Fractions), the fixed-point
map is evaluated with Python integers, and minimality is decided by brute force over every input of the range.
"""
import numpy as np

import fxbn
from fxbn import reference as ref


def all_inputs(layer, c):
    lo, hi = (int(v) for v in layer.in_range[c])
    return range(lo, hi + 1)


def fixed_point_outputs(multiplier, bias, shift, xs, qmin, qmax):
    """clamp((A*x + B) >> s) with Python integers (no overflow, floor shift)."""
    return [min(max((multiplier * x + bias) >> shift, qmin), qmax) for x in xs]


def exhaustive_mismatches(layer, direct=False):
    """[(channel, x, fixed, reference)] over every input of every channel's range (ranges up to 2^16)."""
    qmin, qmax = layer.out_range
    out = []
    for c in range(layer.channels):
        xs = list(all_inputs(layer, c))
        fx = fixed_point_outputs(int(layer.multiplier[c]), int(layer.bias[c]), int(layer.shift[c]), xs, qmin, qmax)
        model = layer._channel_model(c)
        if direct:
            rf = [ref.output_at(model, x, qmin, qmax, layer.rounding) for x in xs]
        else:
            d, T = ref.breakpoints(model, xs[0], xs[-1], qmin, qmax, layer.rounding)
            rf = ref.outputs_from_breakpoints(d, T, np.array(xs), qmin).tolist()
        out += [(c, x, f, r) for x, f, r in zip(xs, fx, rf) if f != r]
    return out


def feasible_at(levels, xs, shift, qmin, qmax):
    """Exists integers A >= 0, B with clamp(floor((A*x + B)/2^shift)) == levels[x] for every x (non-decreasing
    levels)?  Brute force over all constraint pairs of all inputs, exact integers."""
    scale = 1 << shift
    lower = [(x, k * scale) for x, k in zip(xs, levels) if k > qmin]            # A*x + B >= k*2^s
    upper = [(x, (k + 1) * scale - 1) for x, k in zip(xs, levels) if k < qmax]  # A*x + B <= (k+1)*2^s - 1
    a_lo, a_hi = 0, None
    for xi, L in lower:
        for xj, U in upper:
            if xi == xj:
                if L > U:
                    return False
            elif xj > xi:      # A <= (U - L)/(xj - xi)
                v = (U - L) // (xj - xi)
                a_hi = v if a_hi is None else min(a_hi, v)
            else:              # A >= (L - U)/(xi - xj)
                a_lo = max(a_lo, -((U - L) // (xi - xj)))
    return a_hi is None or a_lo <= a_hi


def channel_is_minimal(layer, c):
    """(feasible at s, feasible at s - 1) by brute force, in mirrored coordinates."""
    qmin, qmax = layer.out_range
    model = layer._channel_model(c)
    lo, hi = (int(v) for v in layer.in_range[c])
    d = model.direction if model.direction != 0 else 1
    xs = list(range(lo, hi + 1)) if d > 0 else list(range(-hi, -lo + 1))
    levels = [ref.output_at(model, d * x, qmin, qmax, layer.rounding) for x in xs]
    s = int(layer.shift[c])
    return feasible_at(levels, xs, s, qmin, qmax), (s > 0 and feasible_at(levels, xs, s - 1, qmin, qmax))


def mutants(layer):
    """Deliberately wrong variants of a layer, each guaranteed to differ from the reference somewhere in range:
    the bias just above / just below the admissible interval for the layer's (A, s), and (A/2, B/2, s - 1) where
    s > 0 is minimal.  Every property test must reject each of them."""
    qmin, qmax = layer.out_range
    out = {}
    A0, B0, s0 = layer.multiplier.copy(), layer.bias.copy(), layer.shift.copy()
    above, below, halved = B0.copy(), B0.copy(), (A0 // 2, B0 // 2, np.maximum(s0 - 1, 0))
    for c in range(layer.channels):
        xs = list(all_inputs(layer, c))
        model = layer._channel_model(c)
        levels = [ref.output_at(model, x, qmin, qmax, layer.rounding) for x in xs]
        A, scale = int(A0[c]), 1 << int(s0[c])
        ups = [(k + 1) * scale - 1 - A * x for x, k in zip(xs, levels) if k < qmax]
        lows = [k * scale - A * x for x, k in zip(xs, levels) if k > qmin]
        above[c] = min(ups) + 1 if ups else B0[c]
        below[c] = max(lows) - 1 if lows else B0[c]
    for name, (A, B, s) in (("bias above interval", (A0, above, s0)), ("bias below interval", (A0, below, s0)),
                            ("shift-1", halved)):
        out[name] = fxbn.FixedPointBN(A, B, s, layer.in_range, layer.out_range, layer.rounding, layer.source,
                                      layer.out_dtype, layer.in_dtype)
    return out


def breakpoints_core_and_python(form, params, lo, hi, qmin, qmax, rounding):
    """Reference breakpoints of every channel from the C++ core and from fxbn.reference (no solve needed)."""
    from fxbn import _core

    C = len(params[next(iter(params))])
    los, his = np.full(C, lo, np.int64), np.full(C, hi, np.int64)
    if form == "affine":
        core = _core.breakpoints_affine(params["a"], params["b"], los, his, qmin, qmax, rounding)
        models = [ref.AffineChannel(float(a), float(b)) for a, b in zip(params["a"], params["b"])]
    else:
        keys = ("gamma", "beta", "mean", "var", "eps", "in_scale", "out_scale")
        zkeys = ("in_zero_point", "out_zero_point")
        core = _core.breakpoints_batchnorm(*(params[k] for k in keys + zkeys), los, his, qmin, qmax, rounding)
        models = [ref.BatchNormChannel(*(float(params[k][c]) for k in keys), *(int(params[k][c]) for k in zkeys))
                  for c in range(C)]
    py = [ref.breakpoints(m, lo, hi, qmin, qmax, rounding) for m in models]
    return core, (np.array([d for d, _ in py], np.int8), np.array([T for _, T in py], np.int64))
