"""Breakpoint certificates: exact integer comparison of two step functions at every level boundary.

The reference y is non-decreasing in the mirrored coordinate x' = d*x and is fully described by its breakpoints
T(k) = min{x' : y >= k}.  The fixed-point map f'(x') = clamp(floor((A*d*x' + B) / 2^s)) is monotone in x' (datapath
lemma ``monotone``); when A*d >= 0 it is non-decreasing and f' == y on [lo', hi'] iff for every level k

    T(k) <= hi'  =>  f'(T(k)) >= k          (the first input of level >= k reaches it)
    T(k) >  lo'  =>  f'(T(k) - 1) <  k      (the last input below stays below)

When A*d < 0, f' is non-increasing and both maps are equal iff both are the same constant, decided at the two
ends.  A failing condition names its input: that input is a counterexample (re-checked in pure Python).

The same structure gives the exact maximum error and mismatch count of any monotone map against y, for int32
ranges, from a few hundred evaluations (:func:`compare_monotone`); minimality of s is certified by showing that
the (A, B) constraints at s - 1 are infeasible (:func:`minimality`).
"""
import numpy as np



def _mirror(layer, direction):
    lo, hi = layer.in_range[:, 0], layer.in_range[:, 1]
    neg = direction < 0
    return np.where(neg, -hi, lo), np.where(neg, -lo, hi)


def _fixed_at(layer, xprime, sign):
    """f at original x = sign*x' for int64 arrays (C, K); A*x + B fits 64 bits over in_range (FixedPointBN checks)."""
    qmin, qmax = layer.out_range
    x = xprime * sign[:, None]
    acc = layer.multiplier[:, None] * x + layer.bias[:, None]
    return np.clip(acc >> layer.shift[:, None], qmin, qmax)


def check_reference_breakpoints(direction, T, lo_m, hi_m):
    """Raise RuntimeError unless every row of T is non-decreasing within [lo', hi' + 1]."""
    if T.shape[1] == 0:
        return
    bad = (T < lo_m[:, None]) | (T > hi_m[:, None] + 1)
    bad[:, 1:] |= T[:, 1:] < T[:, :-1]
    if bad.any():
        c = int(np.flatnonzero(bad.any(axis=1))[0])
        raise RuntimeError(f"reference breakpoints of channel {c} are not a non-decreasing step function within "
                           f"[{lo_m[c]}, {hi_m[c] + 1}]: {T[c].tolist()[:8]}...")


def certify(layer, engine="core"):
    """Breakpoint certificate for every channel.

    Parameters
    ----------
    layer : fxbn.FixedPointBN
    engine : {"core", "python"}
        Which implementation computes the reference breakpoints (the C++ core or fxbn.reference's Fractions).

    Returns
    -------
    list of dict
        Per channel: ``proved`` (bool), ``witness`` (None or int x where f(x) != y(x)), ``checks`` (number of
        integer comparisons).
    """
    d, T = layer.reference_breakpoints(engine)
    d = np.asarray(d, np.int64)
    T = np.asarray(T, np.int64)
    qmin, qmax = layer.out_range
    lo_m, hi_m = _mirror(layer, d)
    check_reference_breakpoints(d, T, lo_m, hi_m)
    C, K = T.shape
    sign = np.where(d < 0, -1, 1)
    slope = layer.multiplier * sign                      # A' = A*d: the slope of f in x'
    k = np.arange(qmin + 1, qmax + 1, dtype=np.int64)[None, :]
    upper = T <= hi_m[:, None]
    lower = T > lo_m[:, None]
    at_T = _fixed_at(layer, np.where(upper, T, lo_m[:, None]), sign)
    below_T = _fixed_at(layer, np.where(lower, T - 1, lo_m[:, None]), sign)
    fail_up = upper & (at_T < k)
    fail_low = lower & (below_T >= k)
    # decreasing f': equal iff both constant and equal, decided at the ends
    ends = np.stack([lo_m, hi_m], axis=1)
    f_ends = _fixed_at(layer, ends, sign)
    y_ends = qmin + (T[:, None, :] <= ends[:, :, None]).sum(axis=2)
    dec_witness = np.where(f_ends[:, 0] != y_ends[:, 0], ends[:, 0], ends[:, 1]) * sign
    dec_fail = (f_ends != y_ends).any(axis=1) | (f_ends[:, 0] != f_ends[:, 1])
    any_up, any_low = fail_up.any(axis=1), fail_low.any(axis=1)
    first_up = T[np.arange(C), fail_up.argmax(axis=1)] if K else np.zeros(C, np.int64)
    first_low = T[np.arange(C), fail_low.argmax(axis=1)] - 1 if K else np.zeros(C, np.int64)
    inc_witness = np.where(any_up, first_up, first_low) * sign
    decreasing = slope < 0
    failed = np.where(decreasing, dec_fail, any_up | any_low)
    witness = np.where(decreasing, dec_witness, inc_witness)
    checks = np.where(decreasing, 2, upper.sum(axis=1) + lower.sum(axis=1))
    return [{"proved": not f, "witness": int(w) if f else None, "checks": int(n)}
            for f, w, n in zip(failed.tolist(), witness.tolist(), checks.tolist())]


# ---------------------------------------------------------------------------------------------- exact error
def monotone_boundaries(g, pl, ph):
    """Points x' in (pl, ph] where a monotone integer function g changes value, by vectorized bisection.

    g maps an int64 array of x' to int64 outputs; it must be monotone (either direction) on [pl, ph].
    """
    gl, gh = (int(v) for v in g(np.array([pl, ph], np.int64)))
    if gl == gh:
        return np.empty(0, np.int64)
    up = gh > gl
    levels = np.arange(min(gl, gh) + 1, max(gl, gh) + 1, dtype=np.int64)
    a = np.full(levels.shape, pl, np.int64)
    b = np.full(levels.shape, ph, np.int64)        # predicate holds at ph, never at pl
    while True:
        active = a < b
        if not active.any():
            break
        m = a + (b - a) // 2
        gm = g(m)
        pred = (gm >= levels) if up else (gm < levels)
        b = np.where(active & pred, m, b)
        a = np.where(active & ~pred, m + 1, a)
    return np.unique(a)


def compare_monotone(g, T, qmin, pl, ph):
    """Exact comparison on [pl, ph] of a monotone map g(x') with the reference step function of breakpoints T.

    Returns
    -------
    dict
        ``max_error`` (max |g - y|), ``mismatches`` (number of x' with g != y), ``witness_xprime`` (an x' where
        |g - y| is maximal, or None), ``g``, ``y`` at the witness, ``signed_max`` (largest g - y) and
        ``signed_min``.
    """
    T = np.asarray(T, np.int64)
    inner_T = T[(T > pl) & (T <= ph)]
    pts = np.unique(np.concatenate([[pl], inner_T, monotone_boundaries(g, pl, ph)]))
    lengths = np.diff(np.append(pts, ph + 1))
    gv = np.asarray(g(pts), np.int64)
    yv = qmin + np.searchsorted(T, pts, side="right")
    diff = gv - yv
    i = int(np.argmax(np.abs(diff)))
    err = int(abs(diff[i]))
    return {"max_error": err, "mismatches": int(lengths[diff != 0].sum()),
            "witness_xprime": int(pts[i]) if err else None, "g": int(gv[i]), "y": int(yv[i]),
            "signed_max": int(diff.max()), "signed_min": int(diff.min())}


def exact_error(layer, engine="core"):
    """Per channel: exact max |f(x) - y(x)| over in_range, the number of mismatching x, and a witness x."""
    d, T = layer.reference_breakpoints(engine)
    qmin, _ = layer.out_range
    lo_m, hi_m = _mirror(layer, np.asarray(d, np.int64))
    out = []
    for c in range(layer.channels):
        sign = -1 if d[c] < 0 else 1
        A, B, s = int(layer.multiplier[c]), int(layer.bias[c]), int(layer.shift[c])

        def g(xp, A=A, B=B, s=s, sign=sign):
            return np.clip((A * (np.asarray(xp, np.int64) * sign) + B) >> s, *layer.out_range)

        r = compare_monotone(g, T[c], qmin, int(lo_m[c]), int(hi_m[c]))
        r["witness"] = None if r["witness_xprime"] is None else r["witness_xprime"] * sign
        out.append(r)
    return out


# ---------------------------------------------------------------------------------------------- minimality
def _constraints(Tc, k, lo_m, hi_m, s):
    """(xs_low, L, xs_up, U): A*x + B >= L at xs_low and A*x + B <= U at xs_up, Python ints."""
    low = [(int(t), int(kk) << s) for t, kk in zip(Tc, k) if t <= hi_m]
    up = [(int(t) - 1, (int(kk) << s) - 1) for t, kk in zip(Tc, k) if t > lo_m]
    return low, up


def feasible_at(Tc, qmin, qmax, lo_m, hi_m, s):
    """Exact feasibility of fixed-point parameters at shift s for one channel (mirrored coordinates).

    Returns
    -------
    (bool, detail)
        (True, (A', B)) with a smallest feasible slope A' >= 0 in x' and its smallest B; or (False, certificate):
        two constraints whose A-bounds cross (``{"A_at_most": (value, pair), "A_at_least": (value, pair)}``),
        or one pair at the same input that is contradictory (``{"pair": ...}``).
    """
    k = range(qmin + 1, qmax + 1)
    low, up = _constraints(Tc, k, lo_m, hi_m, s)
    # exact bounds on A from every (lower i, upper j) pair: A*(xj - xi) <= Uj - Li
    a_max, a_min = None, (0, None)              # A' >= 0: a negative slope cannot reproduce a non-decreasing map
    for xi, Li in _hull_low(low):
        for xj, Uj in _hull_up(up):
            dx, dv = xj - xi, Uj - Li
            if dx > 0:
                bound = dv // dx
                if a_max is None or bound < a_max[0]:
                    a_max = (bound, (xi, Li, xj, Uj))
            elif dx < 0:
                bound = _ceil_div(dv, dx)                # A*dx <= dv with dx < 0: A >= ceil(dv / dx)
                if bound > a_min[0]:
                    a_min = (bound, (xi, Li, xj, Uj))
            elif dv < 0:
                return False, {"pair": (xi, Li, xj, Uj)}
    if a_max is not None and a_max[0] < a_min[0]:
        return False, {"A_at_most": a_max, "A_at_least": a_min}
    A = a_min[0]
    B = max([L - A * x for x, L in low], default=min([U - A * x for x, U in up], default=0))
    return True, (A, B)


def _ceil_div(a, b):
    return -((-a) // b)


def _hull_low(points):
    """Lower constraints that can bind: with A >= 0, B >= L - A*x; keep the upper-convex envelope in (x, L)."""
    return _envelope(sorted(set(points)), upper=True)


def _hull_up(points):
    return _envelope(sorted(set(points)), upper=False)


def _envelope(pts, upper):
    """Upper (or lower) convex hull of points sorted by x; only hull vertices can define the extreme A bounds."""
    hull = []
    for p in pts:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            cross = (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1)
            if (cross >= 0) if upper else (cross <= 0):
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def minimality(layer, engine="core"):
    """Per channel with s > 0: is the shift minimal, i.e. are the (A, B) constraints at s - 1 infeasible?

    Returns
    -------
    list of dict
        ``minimal`` (bool or None when s == 0), ``certificate`` (crossing constraints) or ``smaller`` ((A, B) that
        works at s - 1, in original coordinates).
    """
    d, T = layer.reference_breakpoints(engine)
    qmin, qmax = layer.out_range
    lo_m, hi_m = _mirror(layer, np.asarray(d, np.int64))
    out = []
    for c in range(layer.channels):
        s = int(layer.shift[c])
        if s == 0:
            out.append({"minimal": None})
            continue
        ok, detail = feasible_at(T[c], qmin, qmax, int(lo_m[c]), int(hi_m[c]), s - 1)
        if ok:
            A, B = detail
            out.append({"minimal": False, "smaller": (A * (-1 if d[c] < 0 else 1), B, s - 1)})
        else:
            out.append({"minimal": True, "certificate": detail})
    return out
