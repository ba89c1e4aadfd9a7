"""The exact reference in pure Python: integers and Fractions, independent of the C++ core.

Every float parameter is taken as the exact dyadic rational it denotes.  The batchnorm form's square root is never
rounded: the sign of p - c*sqrt(r) is decided by comparing p^2 with c^2*r.

>>> from fractions import Fraction
>>> ch = AffineChannel(0.5, 0.0)
>>> [round_exact(ch.value(x), "half_even") for x in (1, 3, 5)]
[0, 2, 2]
>>> level_threshold(3, "half_even")
(Fraction(5, 2), True)
"""
from fractions import Fraction
import math

import numpy as np

ROUNDINGS = ("half_even", "half_up", "half_away", "floor")


def check_rounding(rounding):
    if rounding not in ROUNDINGS:
        raise ValueError(f"unknown rounding {rounding!r}; expected one of {', '.join(ROUNDINGS)}")


def round_exact(v, rounding):
    """R(v) for a rational v."""
    check_rounding(rounding)
    v = Fraction(v)
    if rounding == "floor":
        return math.floor(v)
    n = math.floor(v)
    frac = v - n
    if frac < Fraction(1, 2):
        return n
    if frac > Fraction(1, 2):
        return n + 1
    if rounding == "half_up":
        return n + 1
    if rounding == "half_even":
        return n if n % 2 == 0 else n + 1
    return n + 1 if v > 0 else n  # half_away


def level_threshold(k, rounding):
    """(t, strict): R(v) >= k  <=>  v > t (strict) or v >= t."""
    check_rounding(rounding)
    if rounding == "floor":
        return Fraction(k), False
    t = Fraction(2 * k - 1, 2)
    if rounding == "half_up":
        return t, False
    if rounding == "half_even":
        return t, k % 2 != 0
    return t, k <= 0  # half_away


class AffineChannel:
    """v(x) = a*x + b with a, b exact rationals."""

    def __init__(self, a, b):
        self.a = Fraction(a)
        self.b = Fraction(b)
        self.direction = (self.a > 0) - (self.a < 0)

    def value(self, x):
        return self.a * x + self.b

    def sign(self, x, t):
        """sign(v(x) - t)."""
        d = self.value(x) - t
        return (d > 0) - (d < 0)

    def estimate(self, t):
        """Float estimate of the x where v crosses t (direction != 0)."""
        return float((Fraction(t) - self.b) / self.a)

    def breakpoint(self, t, strict, lo, hi):
        """min{x' in [lo', hi'] : v(d*x') >= t (> t when strict)}, exactly, in mirrored coordinates x' = d*x."""
        # tau = (t - b)/|a| as one integer ratio N/D (D > 0)
        t = Fraction(t)
        a, b = abs(self.a), self.b
        N = (t.numerator * b.denominator - b.numerator * t.denominator) * a.denominator
        D = t.denominator * b.denominator * a.numerator
        T = N // D + 1 if strict else -((-N) // D)
        return min(max(T, lo), hi + 1)


class BatchNormChannel:
    """v(x) = (gamma*(in_scale*(x - in_zero_point) - mean)/sqrt(var + eps) + beta)/out_scale + out_zero_point."""

    def __init__(self, gamma, beta, mean, var, eps, in_scale, out_scale, in_zero_point=0, out_zero_point=0):
        self.gamma, self.beta, self.mean = Fraction(gamma), Fraction(beta), Fraction(mean)
        self.r = Fraction(var) + Fraction(eps)
        if self.r <= 0:
            raise ValueError("var + eps must be positive")
        self.in_scale, self.out_scale = Fraction(in_scale), Fraction(out_scale)
        if self.in_scale <= 0 or self.out_scale <= 0:
            raise ValueError("scales must be positive")
        self.in_zero_point, self.out_zero_point = int(in_zero_point), int(out_zero_point)
        self.direction = (self.gamma > 0) - (self.gamma < 0)

    def sign(self, x, t):
        """sign(v(x) - t) = sign(P - c*sqrt(r)), P = gamma*(s_in*(x - z_in) - mean), c = (t - z_out)*s_out - beta."""
        P = self.gamma * (self.in_scale * (x - self.in_zero_point) - self.mean)
        c = (Fraction(t) - self.out_zero_point) * self.out_scale - self.beta
        sp, sc = (P > 0) - (P < 0), (c > 0) - (c < 0)
        if sc == 0:
            return sp
        if sp == 0:
            return -sc
        if sp != sc:
            return sp
        d = P * P - c * c * self.r
        sq = (d > 0) - (d < 0)
        return sq if sp > 0 else -sq

    def value_estimate(self, x):
        return float((self.gamma * (self.in_scale * (x - self.in_zero_point) - self.mean)) / Fraction(
            math.sqrt(float(self.r))) + self.beta) / float(self.out_scale) + self.out_zero_point

    def estimate(self, t):
        c = (Fraction(t) - self.out_zero_point) * self.out_scale - self.beta
        return float(self.in_zero_point + (self.mean + c * Fraction(math.sqrt(float(self.r))) / self.gamma)
                     / self.in_scale)

    def breakpoint(self, t, strict, lo, hi):
        d = self.direction

        def pred(xp):
            s = self.sign(d * xp, t)
            return s > 0 or (s == 0 and not strict)

        return _monotone_search(pred, d * self.estimate(t), lo, hi)


def _monotone_search(pred, estimate, lo, hi):
    """Smallest x in [lo, hi] with pred(x) (pred non-decreasing), hi + 1 if none; exact, seeded by an estimate."""
    if math.isfinite(estimate):
        g = min(max(math.ceil(estimate), lo), hi)
    else:
        g = lo if estimate < 0 else hi
    # bracket [a, b]: pred false below a (or a == lo), pred true at b (or b == hi + 1)
    step = 1
    if pred(g):
        b, a = g, g - 1
        while a >= lo and pred(a):
            b, a, step = a, max(a - step, lo - 1), step * 2
        a = a + 1
    else:
        a, b = g + 1, g + 1
        while b <= hi and not pred(b):
            a, b, step = b + 1, min(b + step, hi + 1), step * 2
    while a < b:
        m = (a + b) // 2
        if pred(m):
            b = m
        else:
            a = m + 1
    return a


def breakpoints(channel, lo, hi, qmin, qmax, rounding):
    """(direction, [T(k) for k = qmin+1..qmax]) in mirrored coordinates x' = direction*x (as the C++ core)."""
    check_rounding(rounding)
    d = channel.direction
    lo_m, hi_m = (lo, hi) if d >= 0 else (-hi, -lo)
    T = []
    for k in range(qmin + 1, qmax + 1):
        t, strict = level_threshold(k, rounding)
        if d == 0:
            s = channel.sign(lo, t)
            T.append(lo_m if (s > 0 or (s == 0 and not strict)) else hi_m + 1)
        else:
            T.append(channel.breakpoint(t, strict, lo_m, hi_m))
    return d, T


def output_at(channel, x, qmin, qmax, rounding):
    """y(x) = clamp(R(v(x)), qmin, qmax) for one integer x, by direct exact rounding (not through breakpoints)."""
    if isinstance(channel, AffineChannel):
        return min(max(round_exact(channel.value(x), rounding), qmin), qmax)
    # R(v) >= k <=> condition(k): find the largest such k near a float estimate, exactly
    def reaches(k):
        t, strict = level_threshold(k, rounding)
        s = channel.sign(x, t)
        return s > 0 or (s == 0 and not strict)

    est = channel.value_estimate(x)
    k = min(max(int(math.floor(est)) if math.isfinite(est) else qmin, qmin), qmax)
    while k > qmin and not reaches(k):
        k -= 1
    while k < qmax and reaches(k + 1):
        k += 1
    return k


def outputs_from_breakpoints(direction, T, x, qmin):
    """y for an integer array x of one channel: qmin + #{k : T(k) <= x'}."""
    xp = np.asarray(x, dtype=np.int64) * (direction if direction != 0 else 1)
    return qmin + np.searchsorted(np.asarray(T, dtype=np.int64), xp, side="right")
