"""widen_short (csrc/fxbn/kernel_avx2.cpp, kernel_avx512.cpp): int32 -> int8/uint8 NCHW layers whose rows are short
(8 <= inner < 64, e.g. ResNet-50's last stage, 2048 x 7 x 7), every channel s >= 32 after widen_to_high: the flat
range walked in SIMD vectors with the current channel's parameters broadcast, the vector that reaches a row boundary
blended with the next channel's (kernel.cpp apply_short; the AVX-512 body for inner >= 16, the AVX2 one otherwise and
on the AVX2 ISA).  Against the exact NumPy int64 formula on every x86 ISA: row lengths around the 8- and 16-lane
vectors, odd channel counts, outer > 1, chunks that start mid-row (2 threads), per-channel ranges and shifts, full
int32 ranges (no check), violations named at the first, a middle, the last element and on both sides of a row
boundary, out= left byte for byte as it was on a violation, and reads/writes that stop at the arrays' ends."""
import numpy as np
import pytest

import fxbn
import guard_pages
from fxbn import _core

from test_kernel_paths import _active_inputs, expected, inputs, raw
from test_kernel_wide import X86_ISAS, extremes, fixed_layer, real_layer, x86_isa  # noqa: F401 (the autouse fixture)

pytestmark = pytest.mark.skipif(not X86_ISAS, reason="the CPU has no AVX2")

INNERS = (8, 9, 15, 16, 17, 31, 49, 63)


def exact(layer, x, threads=(1, 2)):
    want = expected(layer, x, 1)
    for t in threads:
        y, bad = raw(layer, x, 1, acc32=False, threads=t)
        assert bad == -1, (x.shape, t, bad)
        np.testing.assert_array_equal(y, want, err_msg=f"{x.shape} threads={t}")
    return want


@pytest.mark.parametrize("tout", ["int8", "uint8"])
@pytest.mark.parametrize("inner", INNERS)
def test_short_rows_real_layers(inner, tout):
    """Per-channel ranges (the range check) and per-channel shifts; odd channel counts and outer > 1."""
    rng = np.random.default_rng(1700 + inner)
    for channels in (3, 7, 64):
        layer = real_layer(channels, rng, tout)
        for outer in (1, 3):
            x = inputs(layer, (outer, channels, inner), 1, rng)
            want = exact(layer, x)
            inside = (want > layer.out_range[0]) & (want < layer.out_range[1])
            assert inside.mean() > 0.3  # not just the clamps


@pytest.mark.parametrize("out_range", [(-128, 127), (-100, 90), (0, 255)])
@pytest.mark.parametrize("inner", INNERS)
def test_short_rows_extremes_no_check(inner, out_range):
    """Full int32 inputs (no range check), s from 32 to 62, negative and near-2^31 multipliers; the int8 whole range
    takes the saturating packs."""
    rng = np.random.default_rng(77 + inner)
    tout = "uint8" if out_range[0] == 0 else "int8"
    for channels in (5, 13):
        A, B, s = extremes(channels, rng)
        layer = fixed_layer(A, B, s, -(1 << 31), (1 << 31) - 1, tout, out_range)
        x = _active_inputs(layer, (2, channels, inner), 1, rng)
        exact(layer, x, threads=(1,))


@pytest.mark.parametrize("inner", (9, 17, 49, 63))
def test_short_rows_two_threads_mid_row(inner):
    """Tensors large enough for two threads: the second chunk starts at a 64-aligned flat offset inside a row."""
    rng = np.random.default_rng(inner)
    for shape in ((1, 1111, inner), (2, 613, inner)):
        layer = real_layer(shape[1], rng)
        x = inputs(layer, shape, 1, rng)
        half = (x.size + 1) // 2
        assert ((half + 63) // 64 * 64) % inner != 0
        exact(layer, x)


def boundary_positions(size, inner):
    """First, middle and last elements, and both sides of row boundaries (inside a vector that straddles one)."""
    r = size // inner // 2
    return sorted({0, 1, size // 2, size - 1, size - 2, inner - 1, inner, r * inner - 1, r * inner, r * inner + 1,
                   size - inner, size - inner - 1})


@pytest.mark.parametrize("inner", (8, 15, 16, 17, 49, 63))
def test_short_rows_violations_named(inner):
    rng = np.random.default_rng(300 + inner)
    channels = 601
    layer = real_layer(channels, rng)
    x = inputs(layer, (2, channels, inner), 1, rng)
    for where in boundary_positions(x.size, inner):
        c = (where // inner) % channels
        for value in (layer.in_range[c, 1] + 1, layer.in_range[c, 0] - 1):
            xb = x.copy()
            xb.reshape(-1)[where] = value
            for threads in (1, 2):
                _, bad = raw(layer, xb, 1, acc32=False, threads=threads)
                assert bad == where, (inner, where, value, threads, bad)


@pytest.mark.parametrize("tout", ["int8", "uint8"])
@pytest.mark.parametrize("inner", (8, 16, 49, 63))
def test_short_rows_out_kept(inner, tout):
    """apply(x, out=y) saves y's old bytes in the body (Job::save): a clean call writes all of y; a violation (first,
    middle, last element, row boundaries, past the first 2^14-element block) leaves y byte for byte as it was."""
    rng = np.random.default_rng(900 + inner)
    channels = 1025
    layer = real_layer(channels, rng, tout)
    x = inputs(layer, (3, channels, inner), 1, rng)
    want = expected(layer, x, 1)
    for threads in (1, 2):
        y = np.full(x.shape, 7, layer.out_dtype)
        assert layer.apply(x, axis=1, out=y, threads=threads) is y
        np.testing.assert_array_equal(y, want)
        for where in boundary_positions(x.size, inner) + [(1 << 14) + 3]:
            xb = x.copy()
            xb.reshape(-1)[where] = layer.in_range[(where // inner) % channels, 1] + 1
            before = rng.integers(0, 256, x.shape).astype(np.uint8).view(layer.out_dtype)
            y = before.copy()
            with pytest.raises(ValueError, match="outside the in_range"):
                layer.apply(xb, axis=1, out=y, threads=threads)
            np.testing.assert_array_equal(y, before, err_msg=f"inner {inner}, violation at {where}, t={threads}")


def test_short_rows_mixed_shifts_fall_back():
    """One channel keeps s < 32 (A * 2^(32 - s) overflows int32): the periodic tables serve the layer, exactly."""
    rng = np.random.default_rng(3)
    A, B, s = extremes(16, rng)
    A[5], s[5], B[5] = (1 << 30) + 3, 20, 7
    layer = fixed_layer(A, B, s, -(1 << 31), (1 << 31) - 1, "int8", (-128, 127))
    for inner in (7, 8, 49):
        exact(layer, _active_inputs(layer, (2, 16, inner), 1, rng), threads=(1,))


def test_short_rows_kernel_cache():
    """_core.Kernel keeps the per-channel tables between calls (and per shape): repeated and interleaved shapes."""
    rng = np.random.default_rng(8)
    layer = real_layer(96, rng)
    k = _core.Kernel(layer.multiplier, layer.bias, layer._shift32, layer._lo, layer._hi, layer.out_range[0],
                     layer.out_range[1], False)
    for inner in (49, 16, 49, 9, 63, 49):
        x = inputs(layer, (2, 96, inner), 1, rng)
        y = np.empty(x.shape, layer.out_dtype)
        k.run(x, y, 2, inner, 1)
        np.testing.assert_array_equal(y, expected(layer, x, 1), err_msg=f"inner {inner}")


GUARD_SCRIPT = r"""
import sys
import numpy as np
from fxbn import _core
from guard_pages import guarded
sys.path.insert(0, sys.argv[1])
from test_kernel_wide import real_layer
from test_kernel_paths import expected

rng = np.random.default_rng(6)
runs = 0
for isa in sys.argv[2:]:
    _core.kernel_isa(isa)
    for tout in ("int8", "uint8"):
        for inner in (8, 15, 16, 17, 49, 63):
            for channels in (5, 64, 1200):
                layer = real_layer(channels, rng, tout)
                lo, hi = layer.in_range[:, 0].reshape(1, -1, 1), layer.in_range[:, 1].reshape(1, -1, 1)
                x = guarded((1, channels, inner), "int32")
                x[...] = np.clip(rng.integers(-(1 << 20), 1 << 20, x.shape), lo, hi)
                for threads in (1, 2):
                    y = guarded(x.shape, tout)
                    layer.apply(x, axis=1, out=y, threads=threads)
                    assert np.array_equal(y, expected(layer, np.array(x), 1)), (isa, inner, channels)
                    runs += 1
print("ok", runs)
"""


def test_no_access_past_the_arrays(x86_isa):
    """Inputs and outputs ending right before an inaccessible page (the odd-element loads read one element on)."""
    import os
    res = guard_pages.run(GUARD_SCRIPT, os.path.dirname(os.path.abspath(__file__)), x86_isa)
    assert res.returncode == 0 and res.stdout.startswith("ok"), (res.returncode, res.stdout, res.stderr[-2000:])


@pytest.mark.parametrize("inner", (8, 9, 17, 49, 63))
def test_short_rows_one_range(inner):
    """One [lo, hi] for every channel (a layer's declared accumulator range: the AVX2 body's min/max accumulators):
    exact outputs, violations just outside either end named at the first, middle and last element and on both sides
    of row boundaries (1 and 2 threads: chunks that start mid-row), out= untouched."""
    rng = np.random.default_rng(2100 + inner)
    channels = 601
    layer = real_layer(channels, rng, one_range=True)
    lo, hi = (int(v) for v in layer.in_range[0])
    assert (layer.in_range[:, 0] == lo).all() and (layer.in_range[:, 1] == hi).all()
    x = inputs(layer, (2, channels, inner), 1, rng)
    x.reshape(-1)[::97] = lo
    x.reshape(-1)[1::89] = hi
    want = exact(layer, x)
    for where in boundary_positions(x.size, inner):
        for value in (hi + 1, lo - 1, np.iinfo(np.int32).max, np.iinfo(np.int32).min):
            xb = x.copy()
            xb.reshape(-1)[where] = value
            for threads in (1, 2):
                _, bad = raw(layer, xb, 1, acc32=False, threads=threads)
                assert bad == where, (inner, where, value, threads, bad)
            before = np.full(x.shape, 5, np.int8)
            y = before.copy()
            with pytest.raises(ValueError, match="outside the in_range"):
                layer.apply(xb, axis=1, out=y, threads=1)
            np.testing.assert_array_equal(y, before)
    y = np.zeros(x.shape, np.int8)
    layer.apply(x, axis=1, out=y, threads=1)
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("inner", (8, 15, 49, 63))
def test_short_rows_neighbour_ranges(inner):
    """Per-channel ranges that differ between neighbouring rows (the biased lo2 / w2 blended at a row boundary): a
    value inside channel c + 1's range but outside channel c's (and the reverse) on both sides of the boundary, and
    channels whose range reaches int32's ends (lo - 2^31 and (hi - lo) - 2^31 wrap there), with int32's extremes."""
    rng = np.random.default_rng(2300 + inner)
    channels = 64
    imin, imax = np.iinfo(np.int32).min, np.iinfo(np.int32).max
    k = np.where(np.arange(channels) % 2 == 0, 18, 26)
    lo = -(np.int64(1) << k)
    hi = (np.int64(1) << k) - 1
    lo[5], hi[9], lo[13], hi[13] = imin, imax, imin + 1, imax - 1
    a = 200.0 / (hi - lo).astype(np.float64) * rng.uniform(0.5, 1.5, channels)
    b = rng.uniform(-20, 20, channels)
    layer = fxbn.from_affine(a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64),
                             in_range=(lo, hi), in_dtype="int32", out_dtype="int8", rounding="half_even")
    assert all(layer.in_range[c, 0] == lo[c] and layer.in_range[c, 1] == hi[c] for c in range(channels)), \
        "the layer's ranges were narrowed: the values below would not test the blend at the declared ranges"
    x = inputs(layer, (2, channels, inner), 1, rng)
    exact(layer, x)
    flat = x.reshape(-1)
    for r in (0, 3, 4, 5, 8, 9, 12, 13, 2 * channels - 2):
        for where in (r * inner + inner - 1, (r + 1) * inner, r * inner, (r + 1) * inner - 2):
            if where >= flat.size:
                continue
            c = (where // inner) % channels
            for value in (lo[c] - 1, hi[c] + 1, imin, imax, lo[(c + 1) % channels], hi[(c + 1) % channels],
                          lo[c - 1], hi[c - 1]):
                if not imin <= value <= imax:
                    continue
                xb = x.copy()
                xb.reshape(-1)[where] = value
                inside = lo[c] <= value <= hi[c]
                for threads in (1, 2):
                    y, bad = raw(layer, xb, 1, acc32=False, threads=threads)
                    assert bad == (-1 if inside else where), (inner, where, value, threads, bad)
                    if inside:
                        np.testing.assert_array_equal(y, expected(layer, xb, 1))


@pytest.mark.parametrize("bounds", [(-(1 << 31), 1 << 20), (-(1 << 20), (1 << 31) - 1), (-(1 << 31) + 1, (1 << 31) - 2),
                                    (-3, 4), ((1 << 30) + 5, (1 << 30) + 900)])
@pytest.mark.parametrize("inner", (8, 49))
def test_short_rows_one_range_biased(inner, bounds):
    """One [lo, hi] for every channel, the AVX2 body's biased check (x - lo, mod 2^32, into one unsigned max compared
    with hi - lo): ranges reaching int32's ends (x - lo wraps past 2^31), narrow ones and ones away from 0; values
    just outside either end, int32's extremes and lo + 2^31 / hi - 2^31 (where a signed max or an unbiased x would
    differ) at the first and last element of the tensor and of a row, in the first vector and the scalar tail; out=
    left as it was, and a clean call exact."""
    lo, hi = bounds
    rng = np.random.default_rng(4100 + inner + (hi & 0xFFFF))
    channels = 61
    width = float(hi - lo)
    a = 200.0 / width * rng.uniform(0.5, 1.5, channels)
    b = rng.uniform(-20, 20, channels) - a * (lo + width / 2)
    layer = fxbn.from_affine(a.astype(np.float32).astype(np.float64), b, in_range=(lo, hi), in_dtype="int32",
                             out_dtype="int8", rounding="half_even")
    assert (layer.in_range[:, 0] == lo).all() and (layer.in_range[:, 1] == hi).all()
    x = np.clip(np.rint(rng.uniform(lo, hi, (2, channels, inner))), lo, hi).astype(np.int32)
    x.reshape(-1)[::37] = lo
    x.reshape(-1)[1::41] = hi
    want = exact(layer, x)
    imin, imax = np.iinfo(np.int32).min, np.iinfo(np.int32).max
    wrap = lambda v: (v + (1 << 31)) % (1 << 32) - (1 << 31)  # noqa: E731
    values = {v for v in (lo - 1, hi + 1, imin, imax, wrap(lo + (1 << 31)), wrap(hi - (1 << 31)), wrap(hi + (1 << 31)))
              if imin <= v <= imax and not lo <= v <= hi}
    assert values
    for where in sorted({0, 1, 7, inner - 1, inner, 5 * inner - 1, x.size - 40, x.size - 2, x.size - 1}):
        for value in sorted(values):
            xb = x.copy()
            xb.reshape(-1)[where] = value
            _, bad = raw(layer, xb, 1, acc32=False, threads=1)
            assert bad == where, (inner, bounds, where, value, bad)
            before = np.full(x.shape, -9, np.int8)
            y = before.copy()
            with pytest.raises(ValueError, match="outside the in_range"):
                layer.apply(xb, axis=1, out=y, threads=1)
            np.testing.assert_array_equal(y, before, err_msg=f"{bounds} violation {value} at {where}")
    y = np.zeros(x.shape, np.int8)
    layer.apply(x, axis=1, out=y, threads=1)
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("tout", ["int8", "uint8"])
@pytest.mark.parametrize("inner", (8, 17, 49, 63))
def test_short_rows_no_shift(inner, tout):
    """Every channel widened to s = 32 (s <= 32 declared: the AVX2 body drops the per-lane vpsravd), with one range
    and with the full int32 range; then the same layer with one channel (in the middle, then the last) at s > 32,
    which must take the per-lane shift again."""
    rng = np.random.default_rng(5100 + inner)
    channels = 37
    A = rng.integers(1 << 8, 1 << 18, channels) * rng.choice([-1, 1], channels)
    s = rng.integers(24, 33, channels)
    B = rng.integers(-(1 << 22), 1 << 22, channels)
    out_range = (0, 255) if tout == "uint8" else (-128, 127)
    for shifted in (None, 5, channels - 1):
        s2 = s.copy()
        if shifted is not None:
            s2[shifted] = 40
        for lo, hi in ((-(1 << 23), (1 << 23) - 1), (-(1 << 31), (1 << 31) - 1)):
            layer = fixed_layer(A, B, s2, lo, hi, tout, out_range)
            x = np.clip(_active_inputs(layer, (2, channels, inner), 1, rng), lo, hi).astype(np.int32)
            want = exact(layer, x, threads=(1,))
            assert ((want > out_range[0]) & (want < out_range[1])).mean() > 0.2  # not just the clamps
