"""Exact per-channel semantics in Python integers: the fixed-point map, the reference, and integer scalings.

Nothing here rounds.  Floats are taken as the dyadic rationals they denote (``Fraction(float)``); the batchnorm
square root is never evaluated (signs are decided by comparing squares in :mod:`fxbn.reference`).
"""
from fractions import Fraction

import numpy as np

from fxbn import reference as ref

BN_FLOAT_KEYS = ("gamma", "beta", "mean", "var", "eps", "in_scale", "out_scale")
BN_INT_KEYS = ("in_zero_point", "out_zero_point")


def channel_params(layer, c):
    """(A, B, s, lo, hi) of channel c as Python ints."""
    return (int(layer.multiplier[c]), int(layer.bias[c]), int(layer.shift[c]), int(layer.in_range[c, 0]),
            int(layer.in_range[c, 1]))


def channel_model(layer, c):
    """The exact reference model of channel c (fxbn.reference.AffineChannel or BatchNormChannel)."""
    s = layer.source
    if s["form"] == "affine":
        return ref.AffineChannel(float(s["a"][c]), float(s["b"][c]))
    return ref.BatchNormChannel(*(float(s[k][c]) for k in BN_FLOAT_KEYS), *(int(s[k][c]) for k in BN_INT_KEYS))


def channel_source(layer, c):
    """The source parameters of channel c as a dict of exact floats / ints (for certificates)."""
    s = layer.source
    keys = ("a", "b") if s["form"] == "affine" else BN_FLOAT_KEYS + BN_INT_KEYS
    out = {"form": s["form"]}
    for k in keys:
        v = np.asarray(s[k]).reshape(-1)[c]
        out[k] = int(v) if k in BN_INT_KEYS else float(v)
    return out


def fixed_output(A, B, s, x, qmin, qmax):
    """clamp(floor((A*x + B) / 2^s), qmin, qmax) with Python integers (>> on ints is floor division)."""
    return min(max((A * x + B) >> s, qmin), qmax)


def reference_output(layer, c, x):
    """The exact reference output of channel c at integer x (fxbn.reference, not the C++ core)."""
    qmin, qmax = layer.out_range
    return ref.output_at(channel_model(layer, c), int(x), qmin, qmax, layer.rounding)


def reference_value(layer, c, x):
    """(exact value, float) of v(x) before rounding: a Fraction for the affine form; for the batchnorm form, whose
    value is irrational in general, a string 'P/sqrt(r)/out_scale + ...' and a float estimate."""
    model = channel_model(layer, c)
    if isinstance(model, ref.AffineChannel):
        v = model.value(int(x))
        return f"{v.numerator}/{v.denominator}" if v.denominator != 1 else str(v.numerator), float(v)
    P = model.gamma * (model.in_scale * (int(x) - model.in_zero_point) - model.mean)
    exact = f"({P} / sqrt({model.r}) + {model.beta}) / {model.out_scale} + {model.out_zero_point}"
    return exact, model.value_estimate(int(x))


def mirrored_range(direction, lo, hi):
    """[lo', hi'] in the coordinates x' = direction*x used by the breakpoints (direction 0 keeps x)."""
    return (-hi, -lo) if direction < 0 else (lo, hi)


def dyadic(value):
    """(numerator, exponent) with value == numerator * 2**exponent exactly (value a float or a dyadic Fraction)."""
    f = Fraction(value)
    den = f.denominator
    if den & (den - 1):
        raise ValueError(f"{value!r} is not a dyadic rational")
    return f.numerator, -(den.bit_length() - 1)


def common_scale(*values):
    """(integers, e) with values[i] == integers[i] / 2**e, e >= 0 the smallest such exponent."""
    pairs = [dyadic(v) for v in values]
    e = max([0] + [-p for _, p in pairs])
    return [n << (e + p) for n, p in pairs], e


def example_snippet(layer, c, x):
    """A paste-ready hypothesis @example for the failing input."""
    return f"@example(channel={c}, x={int(x)})"


def signed_bits(v):
    """Smallest signed width holding the integer v."""
    return (v if v >= 0 else ~v).bit_length() + 1
