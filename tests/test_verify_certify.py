"""The vectorized breakpoint certificate: blocks of channels, wrapping int64 arithmetic at the range ends."""
import numpy as np

import fxbn
from verify import breakpoints, exact


def _per_channel_certificate(layer, engine="core"):
    """The certificate's conditions, one channel at a time, with Python integers (no wrapping, no blocks)."""
    d, T = layer.reference_breakpoints(engine)
    qmin, qmax = layer.out_range
    out = []
    for c in range(layer.channels):
        A, B, s, lo, hi = exact.channel_params(layer, c)
        sign = -1 if d[c] < 0 else 1
        lo_m, hi_m = exact.mirrored_range(int(d[c]), lo, hi)
        f = lambda xp: exact.fixed_output(A, B, s, xp * sign, qmin, qmax)  # noqa: E731
        if A * sign < 0:
            y = [qmin + sum(int(t) <= e for t in T[c]) for e in (lo_m, hi_m)]
            ok = f(lo_m) == y[0] and f(hi_m) == y[1] and y[0] == y[1]
        else:
            ok = all((t > hi_m or f(t) >= k) and (t <= lo_m or f(t - 1) < k)
                     for t, k in zip(T[c].tolist(), range(qmin + 1, qmax + 1)))
        out.append(ok)
    return out


def test_blocks_and_witnesses_over_many_channels():
    rng = np.random.default_rng(11)
    C = 2 * breakpoints._CHUNK + 37
    a = (rng.lognormal(-6, 1, C) * rng.choice([-1, 1], C)).astype(np.float32).astype(np.float64)
    b = rng.normal(0, 20, C).astype(np.float32).astype(np.float64)
    layer = fxbn.from_affine(a, b, in_dtype="int32", rounding="half_up")
    A, B, s = layer.multiplier.copy(), layer.bias.copy(), layer.shift.copy()
    broken = [5, breakpoints._CHUNK - 1, breakpoints._CHUNK, C - 1]
    B[broken[0]] += 1 << int(s[broken[0]])                 # one level too high somewhere
    A[broken[1]] += 3
    A[broken[2]] = -A[broken[2]]                           # slope of the wrong sign: decreasing in x'
    B[broken[3]] -= 1 << int(s[broken[3]])
    bad = fxbn.FixedPointBN(A, B, s, layer.in_range, layer.out_range, layer.rounding, layer.source, "int8", "int32")
    cert = breakpoints.certify(bad)
    failed = [c for c, r in enumerate(cert) if not r["proved"]]
    assert failed == broken
    assert [r["proved"] for r in cert] == _per_channel_certificate(bad)
    for c in failed:
        x = cert[c]["witness"]
        Ac, Bc, sc, lo, hi = exact.channel_params(bad, c)
        assert lo <= x <= hi
        assert exact.fixed_output(Ac, Bc, sc, x, *bad.out_range) != exact.reference_output(bad, c, x)
    assert all(r["proved"] for r in breakpoints.certify(layer))


def test_accumulator_wraps_beyond_the_range_end():
    """A*(hi + 1) + B exceeds int64 (A*hi + B does not): the masked out-of-range value must not matter."""
    A, B, s = (1 << 32) - 1, (1 << 31) + 10, 62
    hi = (1 << 31) - 1
    assert A * hi + B < 1 << 63 <= A * (hi + 1) + B
    for rounding in ("floor", "half_up"):
        layer = fxbn.FixedPointBN([A, A], [B, -(1 << 31) + 5], [s, s], [[-(1 << 31), hi]] * 2, (-128, 127), rounding,
                                  {"form": "affine", "a": np.array([A / 2.0 ** s] * 2),
                                   "b": np.array([B / 2.0 ** s, B / 2.0 ** s])}, "int8", "int32")
        cert = breakpoints.certify(layer)
        errs = breakpoints.exact_error(layer)
        assert [r["proved"] for r in cert] == _per_channel_certificate(layer) == [r["max_error"] == 0 for r in errs]
        assert cert[0]["proved"] is (rounding == "floor") and cert[1]["proved"] is False
        assert breakpoints.certify(layer, "python") == cert
