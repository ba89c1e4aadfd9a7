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
    # non-decreasing rows are inside [lo', hi' + 1] iff their first and last entries are
    bad = (T[:, 0] < lo_m) | (T[:, -1] > hi_m + 1)
    if T.shape[1] > 1:
        bad |= (T[:, 1:] < T[:, :-1]).any(axis=1)
    if bad.any():
        c = int(np.flatnonzero(bad)[0])
        raise RuntimeError(f"reference breakpoints of channel {c} are not a non-decreasing step function within "
                           f"[{lo_m[c]}, {hi_m[c] + 1}]: {T[c].tolist()[:8]}...")


_CHUNK = 1024          # channels per block: the (block, levels) int64 temporaries stay in cache


def _certify_decreasing(layer, idx, T, lo_m, hi_m, sign):
    """(failed, witness) for channels idx whose fixed-point slope in x' is negative: equal iff both maps are the
    same constant, decided at the two ends."""
    qmin, _ = layer.out_range
    ends = np.stack([lo_m[idx], hi_m[idx]], axis=1)
    x = ends * sign[idx, None]
    f_ends = np.clip((layer.multiplier[idx, None] * x + layer.bias[idx, None]) >> layer.shift[idx, None],
                     *layer.out_range)
    y_ends = qmin + (T[idx][:, None, :] <= ends[:, :, None]).sum(axis=2)
    witness = np.where(f_ends[:, 0] != y_ends[:, 0], ends[:, 0], ends[:, 1]) * sign[idx]
    failed = (f_ends != y_ends).any(axis=1) | (f_ends[:, 0] != f_ends[:, 1])
    return failed, witness


def certify(layer, engine="core"):
    """Breakpoint certificate for every channel.

    For a non-decreasing f' (A' = A*d >= 0) and every level k in (qmin, qmax]: f'(T(k)) >= k when T(k) <= hi', and
    f'(T(k) - 1) < k when T(k) > lo'.  As k lies in (qmin, qmax] the clamp never decides these comparisons, so they
    are floor((A'*x' + B) / 2^s) >= k on the unclamped value; A'*(T - 1) + B is computed as (A'*T + B) - A' in
    wrapping int64, exact whenever the true value fits 64 bits, which FixedPointBN guarantees over in_range (the
    out-of-range values T = hi' + 1 and T - 1 = lo' - 1 are masked out).  Blocks of channels, no Python loop
    per channel.

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
    bias, shift = layer.bias, layer.shift
    failed = np.zeros(C, bool)
    witness = np.zeros(C, np.int64)
    checks = np.zeros(C, np.int64)
    if K:
        k = np.arange(qmin + 1, qmax + 1, dtype=np.int64)
        rows = np.arange(min(C, _CHUNK))
        with np.errstate(over="ignore"):
            for start in range(0, C, _CHUNK):
                sl = slice(start, min(C, start + _CHUNK))
                Tb = T[sl]
                a = slope[sl, None]
                s = shift[sl, None]
                upper = Tb <= hi_m[sl, None]
                lower = Tb > lo_m[sl, None]
                acc = Tb * a
                acc += bias[sl, None]                    # A'*T + B
                q = acc >> s
                fail_up = q < k
                fail_up &= upper
                acc -= a                                 # A'*(T - 1) + B
                acc >>= s
                fail_low = acc >= k
                fail_low &= lower
                any_up, any_low = fail_up.any(axis=1), fail_low.any(axis=1)
                failed[sl] = any_up | any_low
                checks[sl] = np.count_nonzero(upper, axis=1) + np.count_nonzero(lower, axis=1)
                bad = np.flatnonzero(failed[sl])
                if bad.size:
                    r = rows[:Tb.shape[0]]
                    first_up = Tb[r, fail_up.argmax(axis=1)]
                    first_low = Tb[r, fail_low.argmax(axis=1)] - 1
                    witness[sl] = np.where(any_up, first_up, first_low) * sign[sl]
    decreasing = np.flatnonzero(slope < 0)
    if decreasing.size:
        failed[decreasing], witness[decreasing] = _certify_decreasing(layer, decreasing, T, lo_m, hi_m, sign)
        checks[decreasing] = 2
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


def limit_constraints(lo_m, hi_m, sign, acc_bits=None, max_multiplier_bits=None):
    """The width limits of fxbn's solver as constraints on (A', B) in mirrored coordinates, or None.

    The solver requires signed_bits(A) <= max_multiplier_bits (A = sign*A') and that A*lo, A*hi, A*lo + B,
    A*hi + B and B all fit acc_bits signed bits (the extremes over [lo, hi] of the linear maps A*x, A*x + B).
    The A*x + B and B conditions are further points of the same form as the exactness constraints (B is A'*0 + B);
    the A*x conditions and the multiplier width bound A' to an interval.

    Returns
    -------
    dict or None
        ``low``, ``up`` (extra (x', bound) points: A'*x' + B >= bound / <= bound), ``a_min``, ``a_max`` (None:
        unbounded), ``acc_bits``, ``max_multiplier_bits``; None when neither limit is given.
    """
    if acc_bits is None and max_multiplier_bits is None:
        return None
    low, up, a_min, a_max = [], [], 0, None
    if acc_bits is not None:
        w_lo, w_hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
        for x in sorted({lo_m, hi_m, 0}):
            low.append((x, w_lo))
            up.append((x, w_hi))
        for x in (lo_m, hi_m):                      # w_lo <= A'*x <= w_hi
            if x > 0:
                hi_b, lo_b = w_hi // x, _ceil_div(w_lo, x)
            elif x < 0:
                hi_b, lo_b = w_lo // x, _ceil_div(w_hi, x)
            else:
                continue
            a_max = hi_b if a_max is None else min(a_max, hi_b)
            a_min = max(a_min, lo_b)
    if max_multiplier_bits is not None and max_multiplier_bits < 64:
        m = int(max_multiplier_bits)
        top = (1 << (m - 1)) if sign < 0 else (1 << (m - 1)) - 1      # A = sign*A' in [-2^(m-1), 2^(m-1) - 1]
        a_max = top if a_max is None else min(a_max, top)
    return {"low": low, "up": up, "a_min": a_min, "a_max": a_max, "acc_bits": acc_bits,
            "max_multiplier_bits": max_multiplier_bits}


def feasible_at(Tc, qmin, qmax, lo_m, hi_m, s, limits=None):
    """Exact feasibility of fixed-point parameters at shift s for one channel (mirrored coordinates).

    With `limits` (:func:`limit_constraints`) only parameters within the solver's width limits count.  The
    feasible A' form the integer interval cut out by every (lower i, upper j) pair, A'*(xj - xi) <= Uj - Li
    (integers: for integer A' the bias interval [max_i(Li - A'*xi), min_j(Uj - A'*xj)] has integer ends), and the
    limits' A' interval; only hull vertices can bind.

    Returns
    -------
    (bool, detail)
        (True, (A', B)) with a smallest feasible slope A' >= 0 in x' and its smallest B; or (False, certificate):
        two constraints whose A-bounds cross (``{"A_at_most": (value, pair), "A_at_least": (value, pair)}``; a
        pair is the string "limits" when the bound comes from the width limits), or one pair at the same input
        that is contradictory (``{"pair": ...}``).
    """
    k = range(qmin + 1, qmax + 1)
    low, up = _constraints(Tc, k, lo_m, hi_m, s)
    a_max, a_min = None, (0, None)              # A' >= 0: a negative slope cannot reproduce a non-decreasing map
    if limits is not None:
        low, up = low + limits["low"], up + limits["up"]
        if limits["a_min"] > 0:
            a_min = (limits["a_min"], "limits")
        if limits["a_max"] is not None:
            a_max = (limits["a_max"], "limits")
    # exact bounds on A from every (lower i, upper j) pair: A*(xj - xi) <= Uj - Li
    hull_up = _hull_up(up)                      # once, not per lower vertex
    for xi, Li in _hull_low(low):
        for xj, Uj in hull_up:
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


def _core_hulls(T, lo_m, hi_m, shift, qmin):
    """(status, idx) of the C++ hull search for every channel at its shift - 1 (fxbn._core.minimality_hull_search)."""
    from fxbn import _core
    T = np.ascontiguousarray(T, np.int64)
    if T.ndim != 2:
        return None
    status, idx = _core.minimality_hull_search(T, np.ascontiguousarray(lo_m, np.int64),
                                               np.ascontiguousarray(hi_m, np.int64),
                                               np.ascontiguousarray(np.asarray(shift) - 1, np.int32), int(qmin))
    return status.tolist(), idx.tolist()


def _checked_certificate(fast, c, Tc, qmin, lo_m, hi_m, s):
    """:func:`feasible_at`'s infeasibility certificate for channel c from the core's constraint indices, every
    bound recomputed with Python integers and checked to cross; None when the core found the channel feasible or
    did not handle it (the caller decides it with :func:`feasible_at`)."""
    status, idx = fast[0][c], fast[1][c]
    if status not in (1, 2):
        return None

    def low(i):                                     # A'*x + B >= L at a lower point: T(k) <= hi'
        if not 0 <= i < len(Tc) or int(Tc[i]) > hi_m:
            raise RuntimeError(f"channel {c}: the core's minimality certificate names no lower constraint ({i})")
        return int(Tc[i]), (qmin + 1 + i) << s

    def up(j):                                      # A'*x + B <= U at an upper point: T(k) > lo'
        if not 0 <= j < len(Tc) or int(Tc[j]) <= lo_m:
            raise RuntimeError(f"channel {c}: the core's minimality certificate names no upper constraint ({j})")
        return int(Tc[j]) - 1, ((qmin + 1 + j) << s) - 1

    if status == 2:
        (xi, Li), (xj, Uj) = low(idx[0]), up(idx[1])
        if xi != xj or Uj >= Li:
            raise RuntimeError(f"channel {c}: the core's same-input minimality certificate does not hold")
        return {"pair": (xi, Li, xj, Uj)}
    (xi, Li), (xj, Uj) = low(idx[0]), up(idx[1])
    if xj - xi <= 0:
        raise RuntimeError(f"channel {c}: the core's upper A bound is not from an increasing pair")
    a_max = ((Uj - Li) // (xj - xi), (xi, Li, xj, Uj))
    a_min = (0, None)
    if idx[2] >= 0:
        (xi, Li), (xj, Uj) = low(idx[2]), up(idx[3])
        if xj - xi >= 0:
            raise RuntimeError(f"channel {c}: the core's lower A bound is not from a decreasing pair")
        a_min = (_ceil_div(Uj - Li, xj - xi), (xi, Li, xj, Uj))
    if not a_max[0] < a_min[0]:
        raise RuntimeError(f"channel {c}: the core's minimality certificate bounds do not cross: {a_max}, {a_min}")
    return {"A_at_most": a_max, "A_at_least": a_min}


UNCONSTRAINED = "unconstrained (no (A, B) at shift - 1)"
LIMITS_AWARE = "limits-aware (no (A, B) within acc_bits / max_multiplier_bits at shift - 1, decided exactly)"


def solve_limits(layer):
    """(acc_bits, max_multiplier_bits) recorded in layer.solve_options, (None, None) for hand-built layers."""
    opts = getattr(layer, "solve_options", None) or {}
    acc = opts.get("acc_bits")
    mb = opts.get("max_multiplier_bits")
    return (None if acc is None else int(acc)), (None if mb is None else int(mb))


def minimality(layer, engine="core", hulls="core"):
    """Per channel with s > 0: is the shift minimal, i.e. are the (A, B) constraints at s - 1 infeasible?

    The layer's ``solve_options`` are honoured: with acc_bits / max_multiplier_bits recorded, a shift above the
    unconstrained minimum is minimal iff no exact parameters *within those limits* exist at s - 1 (decided exactly,
    :func:`limit_constraints`); the unconstrained verdict is reported alongside.

    Returns
    -------
    list of dict
        ``minimal`` (bool or None when s == 0), ``method`` (UNCONSTRAINED or LIMITS_AWARE), ``certificate``
        (crossing constraints) or ``smaller`` ((A, B, s - 1) that works at s - 1, within the limits if any, in
        original coordinates); ``unconstrained_smaller`` when only the limits exclude a smaller shift.

    hulls : {"core", "python"}
        Who searches the hulls of the unconstrained case: the C++ core (:func:`fxbn._core.minimality_hull_search`,
        exact 128-bit integers) names the two binding constraints and every bound of its certificate is re-derived
        and checked here with Python integers (a wrong claim raises RuntimeError); channels it finds feasible or
        does not handle, and every limits-aware decision, run :func:`feasible_at`.  "python": :func:`feasible_at`
        alone.  Both give the same certificates.

    Examples
    --------
    >>> import fxbn
    >>> layer = fxbn.from_affine([0.3, -0.7], [1.5, 0.25])
    >>> [m["minimal"] for m in minimality(layer)] == [m["minimal"] for m in minimality(layer, hulls="python")]
    True
    """
    if hulls not in ("core", "python"):
        raise ValueError(f"hulls must be 'core' or 'python', got {hulls!r}")
    d, T = layer.reference_breakpoints(engine)
    qmin, qmax = layer.out_range
    lo_m, hi_m = _mirror(layer, np.asarray(d, np.int64))
    acc_bits, mult_bits = solve_limits(layer)
    shifts = layer.shift.tolist()
    fast = _core_hulls(T, lo_m, hi_m, layer.shift, qmin) if hulls == "core" else None
    out = []
    for c in range(layer.channels):
        s = shifts[c]
        if s == 0:
            out.append({"minimal": None})
            continue
        sign = -1 if d[c] < 0 else 1
        lo_c, hi_c = int(lo_m[c]), int(hi_m[c])
        detail = None if fast is None else _checked_certificate(fast, c, T[c], qmin, lo_c, hi_c, s - 1)
        if detail is not None:
            out.append({"minimal": True, "method": UNCONSTRAINED, "certificate": detail})
            continue
        ok, detail = feasible_at(T[c], qmin, qmax, lo_c, hi_c, s - 1)
        if not ok:
            out.append({"minimal": True, "method": UNCONSTRAINED, "certificate": detail})
            continue
        smaller = (detail[0] * sign, detail[1], s - 1)
        limits = limit_constraints(lo_c, hi_c, sign, acc_bits, mult_bits)
        if limits is None:
            out.append({"minimal": False, "method": UNCONSTRAINED, "smaller": smaller})
            continue
        ok_l, detail_l = feasible_at(T[c], qmin, qmax, lo_c, hi_c, s - 1, limits)
        if ok_l:
            out.append({"minimal": False, "method": LIMITS_AWARE, "smaller": (detail_l[0] * sign, detail_l[1], s - 1)})
        else:
            out.append({"minimal": True, "method": LIMITS_AWARE, "certificate": detail_l,
                        "unconstrained_smaller": smaller})
    return out


def layer_minimality(layer, mins):
    """The layer-level minimality verdict from :func:`minimality`'s per-channel results and layer.solve_options.

    Per-channel shifts: every shift s > 0 must be minimal.  common_shift (as recorded in solve_options, never
    inferred from equal shifts): all shifts must be equal, and some channel must be infeasible at S - 1 (within
    the limits, if any), i.e. S is the largest per-channel minimal shift, or more only where the limits force it.

    Returns
    -------
    dict
        ``proved`` (bool), ``common_shift`` (bool), ``binding`` (channels that need the common shift), ``reason``.
    """
    opts = getattr(layer, "solve_options", None) or {}
    common = bool(opts.get("common_shift"))
    acc_bits, mult_bits = solve_limits(layer)
    out = {"common_shift": common, "limits": {"acc_bits": acc_bits, "max_multiplier_bits": mult_bits}}
    over = []
    if acc_bits is not None:
        over += [("accumulator_bits", c) for c in np.flatnonzero(layer.accumulator_bits > acc_bits).tolist()]
    if mult_bits is not None:
        over += [("multiplier_bits", c) for c in np.flatnonzero(layer.multiplier_bits > mult_bits).tolist()]
    if over:
        what, c = over[0]
        return dict(out, proved=False, reason=f"channel {c}: {what} exceeds the recorded solve limit")
    if common:
        shifts = set(layer.shift.tolist())
        if len(shifts) > 1:
            return dict(out, proved=False, reason=f"solve_options.common_shift, but the shifts differ: "
                                                  f"{sorted(shifts)}")
        S = shifts.pop()
        binding = [c for c, m in enumerate(mins) if m["minimal"]]
        if S == 0 or binding:
            return dict(out, proved=True, binding=binding, reason=None if S == 0 else
                        f"common shift {S}: channel(s) {binding[:8]} have no exact parameters at {S - 1}")
        return dict(out, proved=False, binding=[], reason=f"common shift {S} is not minimal: every channel has "
                                                          f"exact parameters at {S - 1}"
                    + (" within the limits" if acc_bits is not None or mult_bits is not None else ""))
    bad = [c for c, m in enumerate(mins) if m["minimal"] is False]
    return dict(out, proved=not bad, reason=None if not bad else f"channel(s) {bad[:8]}: shift is not minimal")
