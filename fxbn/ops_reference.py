"""Exact references of the other rescalings of an integer network, in pure Python (integers and Fractions).

Independent of the C++ core and of how fxbn.ops maps each op onto the batchnorm form: every float parameter is taken
as the exact rational it denotes, and each output is clamp(R(v), qmin, qmax) of the exact real value v.

>>> v = requant_value(1000, 0.001, 0.5, 3, bias=24)  # 0.001*(1000 + 24)/0.5 + 3, with the float 0.001 exact
>>> v == Fraction(0.001) * 1024 * 2 + 3, float(v)
(True, 5.048)
>>> outputs([requant_value(1000, 0.001, 0.5, 3, bias=24)], -128, 127, "half_even")
[5]
>>> add_value(10, -4, (0.5, 0.25), (0, 0), 1.0, 0)  # 0.5*10 + 0.25*(-4)
Fraction(4, 1)
"""
from fractions import Fraction

import numpy as np

from fxbn.reference import round_exact


def requant_value(acc, acc_scale, out_scale, out_zero_point=0, bias=0):
    """acc_scale*(acc + bias)/out_scale + out_zero_point: a conv/linear accumulator requantized."""
    return Fraction(acc_scale) * (int(acc) + int(bias)) / Fraction(out_scale) + int(out_zero_point)


def avgpool_value(window_sum, window, in_scale, in_zero_point, out_scale, out_zero_point=0):
    """The mean of `window` inputs whose integer sum is window_sum, requantized:
    in_scale*(window_sum - window*in_zero_point)/(window*out_scale) + out_zero_point."""
    n = int(window)
    return (Fraction(in_scale) * (int(window_sum) - n * int(in_zero_point)) / (n * Fraction(out_scale))
            + int(out_zero_point))


def mul_value(x1, x2, in_scales, in_zero_points, out_scale, out_zero_point=0):
    """s1*(x1 - z1) * s2*(x2 - z2) / out_scale + out_zero_point."""
    (s1, s2), (z1, z2) = in_scales, in_zero_points
    return (Fraction(s1) * Fraction(s2) * ((int(x1) - int(z1)) * (int(x2) - int(z2))) / Fraction(out_scale)
            + int(out_zero_point))


def add_value(x1, x2, in_scales, in_zero_points, out_scale, out_zero_point=0):
    """(s1*(x1 - z1) + s2*(x2 - z2))/out_scale + out_zero_point."""
    (s1, s2), (z1, z2) = in_scales, in_zero_points
    return ((Fraction(s1) * (int(x1) - int(z1)) + Fraction(s2) * (int(x2) - int(z2))) / Fraction(out_scale)
            + int(out_zero_point))


def outputs(values, qmin, qmax, rounding):
    """[clamp(R(v), qmin, qmax) for v in values]."""
    return [min(max(round_exact(v, rounding), qmin), qmax) for v in values]


def add_outputs(x1, x2, in_scales, in_zero_points, out_scale, out_zero_point, qmin, qmax, rounding):
    """The exact add reference for integer arrays (x2 broadcast against x1), as an int64 array of x1's shape.

    Exact rationals are computed once per distinct (x1, x2) pair, so whole 8-bit boxes are cheap.
    """
    x1 = np.asarray(x1, np.int64)
    x2 = np.broadcast_to(np.asarray(x2, np.int64), x1.shape)
    pairs, inverse = np.unique(np.stack([x1.reshape(-1), x2.reshape(-1)], axis=1), axis=0, return_inverse=True)
    ys = outputs((add_value(a, b, in_scales, in_zero_points, out_scale, out_zero_point) for a, b in pairs.tolist()),
                 qmin, qmax, rounding)
    return np.asarray(ys, np.int64)[np.asarray(inverse).reshape(-1)].reshape(x1.shape)
