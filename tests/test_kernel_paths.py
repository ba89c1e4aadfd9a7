"""The kernel gives identical results on every code path.

Every path is compared with the exact reference (layer.reference(x, engine="core")) and with a plain NumPy int64
evaluation of clamp((A*x + B) >> s, qmin, qmax):
  * each input dtype (int8, uint8, int16, int32) x each output dtype (int8, uint8, int16, uint16);
  * channel-first rows (NCHW, inner >= 64: per-row kernel), short rows and channel-last layouts (NHWC, (N, C):
    periodic-table kernel), with lengths that leave SIMD tails (1, 7, 63, 65, 1023);
  * the 32-bit accumulator, the 64-bit accumulator with a 32-bit multiplier (widening multiply) and with a 64-bit
    multiplier (the same map scaled by 2^k: (A*2^k, B*2^k, s+k));
  * every instruction set the CPU supports (x86-64-v4 / AVX2 / baseline bodies, selected with _core.kernel_isa);
  * 1 and 2 threads (tensors big enough for the kernel to split them), non-contiguous inputs, out=;
  * out-of-range inputs: the first offending index and value are named; with out= the output is untouched.
test_mutations_are_caught shows that the comparisons can fail: a raw kernel call with one parameter off by one is
detected on every path.
"""
import zlib

import numpy as np
import pytest

import fxbn
from fxbn import _core
from fxbn.api import DTYPE_RANGES, FixedPointBN
from fxbn.errors import InfeasibleError

import guard_pages

IN_DTYPES = ("int8", "uint8", "int16", "int32")
OUT_DTYPES = ("int8", "uint8", "int16", "uint16")
LENGTHS = (1, 7, 63, 65, 1023)


def _available_isas():
    before = _core.kernel_isa()
    found = []
    for name in ("x86-64-v4+vbmi+vnni", "x86-64-v4", "avx2", "neon", "baseline"):
        try:
            _core.kernel_isa(name)
            found.append(name)
        except ValueError:
            pass
    _core.kernel_isa(before)
    return found


ISAS = _available_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    before = _core.kernel_isa()
    _core.kernel_isa(request.param)
    yield request.param
    _core.kernel_isa(before)


# ---------------------------------------------------------------------------------------------- helpers
def expected(layer, x, axis=1):
    """clamp((A*x + B) >> s, qmin, qmax) in NumPy int64 (the solver proves every intermediate fits 64 bits)."""
    shape = [1] * x.ndim
    shape[axis % x.ndim] = -1
    A = layer.multiplier.reshape(shape)
    B = layer.bias.reshape(shape)
    s = layer.shift.reshape(shape)
    acc = x.astype(np.int64) * A + B
    return np.clip(acc >> s, *layer.out_range).astype(layer.out_dtype)


def make_layer(tin, tout, channels, rng, acc_bits=64, in_range=None):
    """A per-channel affine layer whose outputs cover the output range (some saturate, most do not)."""
    lo, hi = in_range if in_range is not None else DTYPE_RANGES[tin]
    qmin, qmax = DTYPE_RANGES[tout]
    span = (qmax - qmin) / (hi - lo)
    a = span * rng.uniform(0.6, 1.6, channels) * rng.choice([-1.0, 1.0], channels)
    center = (qmin + qmax) / 2
    b = center - a * (lo + hi) / 2 + rng.uniform(-0.1, 0.1, channels) * (qmax - qmin)
    a = a.astype(np.float32).astype(np.float64)  # float32 parameters, as real models have: 64-bit solutions exist
    b = b.astype(np.float32).astype(np.float64)
    rng_arg = None if in_range is None else (np.full(channels, lo), np.full(channels, hi))
    return fxbn.from_affine(a, b, in_range=rng_arg, in_dtype=tin, out_dtype=tout, rounding="half_up",
                            acc_bits=acc_bits)


def scaled(layer, k):
    """The same map with (A*2^k, B*2^k, s+k): a 64-bit multiplier for the same outputs."""
    return FixedPointBN(layer.multiplier << k, layer.bias << k, layer.shift + k, layer.in_range, layer.out_range,
                        layer.rounding, layer.source, layer.out_dtype, layer.in_dtype)


def inputs(layer, shape, axis, rng):
    """Random inputs inside each channel's range, with both range ends present."""
    lo = layer.in_range[:, 0]
    hi = layer.in_range[:, 1]
    bshape = [1] * len(shape)
    bshape[axis % len(shape)] = -1
    u = rng.random(shape)
    x = np.floor(lo.reshape(bshape) + u * (hi - lo + 1).reshape(bshape)).astype(np.int64)
    x = np.clip(x, lo.reshape(bshape), hi.reshape(bshape))
    # put each channel's two range ends somewhere
    idx = [slice(None)] * len(shape)
    for c in range(min(layer.channels, shape[axis % len(shape)])):
        idx[axis % len(shape)] = c
        sub = x[tuple(idx)].reshape(-1)
        if sub.size:
            sub[0] = lo[c]
            sub[-1] = hi[c]
        x[tuple(idx)] = sub.reshape(x[tuple(idx)].shape)
    return x.astype(layer.in_dtype)


def shape3(x, axis):
    axis %= x.ndim
    return (int(np.prod(x.shape[:axis], dtype=np.int64)), x.shape[axis], int(np.prod(x.shape[axis + 1:],
                                                                                          dtype=np.int64)))


def raw(layer, x, axis=1, acc32=None, threads=1, multiplier=None, bias=None, shift=None):
    """A direct kernel call (optionally with a forced accumulator path or mutated parameters); returns (y, bad)."""
    xc = np.ascontiguousarray(x)
    y = np.empty(xc.shape, layer.out_dtype)
    s3 = shape3(xc, axis)
    if acc32 is None:
        acc32 = bool(np.all(layer.accumulator_bits <= 32))
    bad = _core.apply_kernel(xc.reshape(s3), y.reshape(s3),
                             layer.multiplier if multiplier is None else multiplier,
                             layer.bias if bias is None else bias,
                             layer._shift32 if shift is None else shift,
                             layer._lo, layer._hi, layer.out_range[0], layer.out_range[1], acc32, threads)
    return y, bad


def layouts(channels, length):
    """(shape, axis) for NCHW with inner = length, NHWC with length positions, and (N, C)."""
    return [((2, channels, length), 1),
            ((2, length, channels), -1),
            ((length, channels), -1)]


def variants(tin, tout, rng, channels=3):
    """(label, layer, acc32) for every accumulator path that this dtype pair can take."""
    out = []
    base = make_layer(tin, tout, channels, rng)
    fits32 = bool(np.all(base.accumulator_bits <= 32))
    multiplier_fits32 = bool(np.all(np.abs(base.multiplier) < 2 ** 31))
    assert multiplier_fits32
    out.append(("acc64/widen", base, False))
    if fits32:
        out.append(("acc32", base, True))
    else:
        narrow = None
        for in_range in ((-3000, 3000), (-300, 300), (0, 100)):
            lo = max(in_range[0], DTYPE_RANGES[tin][0])
            try:
                narrow = make_layer(tin, tout, channels, rng, acc_bits=32, in_range=(lo, in_range[1]))
                break
            except InfeasibleError:
                continue
        if narrow is not None:
            out.append(("acc32(narrow range)", narrow, True))
    headroom = 62 - int(base.accumulator_bits.max())
    k = min(headroom, 62 - int(base.shift.max()), 40)
    if k > 0 and int(np.abs(base.multiplier).max()) << k >= 2 ** 31:
        big = scaled(base, k)
        assert np.all(big.accumulator_bits <= 64)
        out.append(("acc64/mul64", big, False))
    return out


# ---------------------------------------------------------------------------------------------- every path
@pytest.mark.parametrize("tout", OUT_DTYPES)
@pytest.mark.parametrize("tin", IN_DTYPES)
def test_every_path_matches_reference(isa, tin, tout):
    rng = np.random.default_rng(zlib.crc32(f"{tin}->{tout}".encode()))
    labels = set()
    for label, layer, acc32 in variants(tin, tout, rng):
        labels.add(label.split("(")[0])
        for length in LENGTHS:
            for shape, axis in layouts(layer.channels, length):
                x = inputs(layer, shape, axis, rng)
                want = expected(layer, x, axis)
                ref = layer.reference(x, axis=axis, engine="core")
                assert np.array_equal(want, ref), (label, shape)  # the formula is the exact map
                y, bad = raw(layer, x, axis, acc32=acc32)
                assert bad == -1
                assert np.array_equal(y, want), (isa, label, shape, axis)
                got = layer.apply(x, axis=axis)
                assert got.dtype == layer.out_dtype and np.array_equal(got, want), (isa, label, shape)
    assert {"acc64/widen"} <= labels
    if tin != "int32" or tout in ("int8", "uint8"):
        assert "acc32" in labels, (tin, tout, labels)


def test_acc32_and_mul64_paths_are_reached():
    """The variants used above do exercise all three arithmetic paths."""
    rng = np.random.default_rng(1)
    for tin in IN_DTYPES:
        labels = {v[0].split("(")[0] for v in variants(tin, "int8", rng)}
        assert {"acc32", "acc64/widen"} <= labels, (tin, labels)
        if tin != "int32":
            assert "acc64/mul64" in labels, (tin, labels)


@pytest.mark.parametrize("tin,tout", [("uint8", "uint8"), ("int8", "int8"), ("int32", "int8"), ("int16", "int16"),
                                      ("int32", "uint16")])
def test_many_channels_channel_last(isa, tin, tout):
    rng = np.random.default_rng(7)
    layer = make_layer(tin, tout, 70, rng)
    for shape in ((5, 70), (3, 2, 3, 70)):
        x = inputs(layer, shape, -1, rng)
        assert np.array_equal(layer.apply(x, axis=-1), expected(layer, x, -1))
    x = inputs(layer, (3, 70, 2), 1, rng)  # inner 2: periodic tables with inner > 1
    assert np.array_equal(layer.apply(x, axis=1), expected(layer, x, 1))
    assert np.array_equal(layer.apply(x, axis=1), layer.reference(x, axis=1, engine="core"))


# ---------------------------------------------------------------------------------------------- threads
BIG = [("uint8", "uint8", (1, 3, 1_200_001), 1), ("uint8", "uint8", (400_003, 3), -1),
       ("int32", "int8", (2, 3, 300_007), 1), ("int32", "int8", (300_007, 2), -1),
       ("int16", "int16", (1, 5, 250_001), 1), ("int8", "uint16", (350_001, 2), -1)]


@pytest.mark.parametrize("tin,tout,shape,axis", BIG)
def test_two_threads_match_one(tin, tout, shape, axis):
    """Tensors of >= 2 MB, so that the kernel does split them between two threads (odd sizes: uneven chunks)."""
    rng = np.random.default_rng(3)
    layer = make_layer(tin, tout, shape[axis], rng)
    x = inputs(layer, shape, axis, rng)
    want = expected(layer, x, axis)
    for threads in (1, 2, 0):
        assert np.array_equal(layer.apply(x, axis=axis, threads=threads), want), threads
    assert np.array_equal(layer.reference(x, axis=axis, engine="core"), want)
    if np.all(layer.accumulator_bits <= 32):
        y, bad = raw(layer, x, axis, acc32=False, threads=2)
        assert bad == -1 and np.array_equal(y, want)


@pytest.mark.parametrize("threads", [1, 2])
def test_out_of_range_first_index_with_threads(threads):
    rng = np.random.default_rng(4)
    for shape, axis in (((1, 2, 1_100_001), 1), ((550_001, 2), -1)):
        layer = make_layer("uint8", "uint8", 2, rng, in_range=(10, 200))
        x = inputs(layer, shape, axis, rng)
        n = x.size
        for positions in ([n - 1], [n // 2 + 17, n - 5], [3, n - 1], [n // 2 - 1, n // 2 + 1], [0]):
            xb = x.copy()
            flat = xb.reshape(-1)
            for p in positions:
                flat[p] = 255 if p % 2 else 0
            y, bad = raw(layer, xb, axis, threads=threads)
            assert bad == positions[0], (shape, positions, bad)
            assert _core.check_range(xb.reshape(shape3(xb, axis)), layer._lo, layer._hi) == positions[0]


# ---------------------------------------------------------------------------------------------- API behaviour
def test_non_contiguous_inputs(isa):
    rng = np.random.default_rng(5)
    for tin, tout in (("uint8", "uint8"), ("int32", "int8"), ("int16", "uint16")):
        layer = make_layer(tin, tout, 4, rng)
        base = inputs(layer, (2, 4, 9, 22), 1, rng)
        for x, axis in ((base[:, :, :, ::2], 1), (base[:, :, ::-1, 1:20:3], 1),
                        (base.transpose(0, 2, 3, 1), -1), (base.transpose(0, 2, 3, 1)[:, ::2], 3)):
            assert not x.flags.c_contiguous
            assert np.array_equal(layer.apply(x, axis=axis), expected(layer, x, axis))
            assert np.array_equal(layer.apply(x, axis=axis), layer.reference(x, axis=axis, engine="core"))


def test_out_argument(isa):
    rng = np.random.default_rng(6)
    for tin, tout, shape, axis in (("int8", "int8", (2, 3, 65), 1), ("int32", "uint8", (7, 3), -1)):
        layer = make_layer(tin, tout, 3, rng)
        x = inputs(layer, shape, axis, rng)
        out = np.full(shape, 7, layer.out_dtype)
        res = layer.apply(x, axis=axis, out=out)
        assert res is out and np.array_equal(out, expected(layer, x, axis))
        with pytest.raises(ValueError):
            layer.apply(x, axis=axis, out=np.empty(shape, np.int32))


@pytest.mark.parametrize("tin", IN_DTYPES)
def test_out_of_range_is_reported(isa, tin):
    rng = np.random.default_rng(8)
    dlo, dhi = DTYPE_RANGES[tin]
    lo, hi = (dlo + 3, dhi - 3) if tin != "int32" else (-5000, 5000)
    layer = make_layer(tin, "int8", 3, rng, in_range=(lo, hi))
    for shape, axis in (((2, 3, 1023), 1), ((2, 3, 7), 1), ((65, 3), -1), ((2, 5, 7, 3), -1)):
        x = inputs(layer, shape, axis, rng)
        n = x.size
        for p, value in ((n - 1, hi + 1), (n // 2, lo - 1), (0, dlo), (n - 2, dhi)):
            xb = x.copy()
            xb.reshape(-1)[p] = value
            if p != n - 1:
                xb.reshape(-1)[n - 1] = dhi  # a later offender too: the first one is named
            idx = np.unravel_index(p, shape)
            where = f"x[{', '.join(str(int(i)) for i in idx)}] = {value} "
            with pytest.raises(ValueError) as e:
                layer.apply(xb, axis=axis)
            assert where in str(e.value), (str(e.value), where)
            out = np.full(shape, 42, np.int8)
            with pytest.raises(ValueError) as e:
                layer.apply(xb, axis=axis, out=out)
            assert where in str(e.value)
            assert np.all(out == 42), "out= must be left untouched on error"
            _, bad = raw(layer, xb, axis)
            assert bad == p
            _, bad = raw(layer, xb, axis, acc32=False)
            assert bad == p


# ---------------------------------------------------------------------------------------------- the tests can fail
@pytest.mark.parametrize("tin,tout", [("uint8", "uint8"), ("int8", "int16"), ("int16", "int8"), ("int32", "int8"),
                                      ("int32", "uint16")])
def test_mutations_are_caught(isa, tin, tout):
    """A raw kernel call with one channel's bias, multiplier or shift off by one differs from the reference on every
    path (so the comparisons above can fail), and an out-of-range element is never missed."""
    rng = np.random.default_rng(9)
    for label, layer, acc32 in variants(tin, tout, rng):
        for length in (65, 1023):
            for shape, axis in layouts(layer.channels, length):
                x = inputs(layer, shape, axis, rng)
                want = layer.reference(x, axis=axis, engine="core")
                c = 1
                s = int(layer.shift[c])
                mutations = {
                    "bias": dict(bias=layer.bias + np.where(np.arange(layer.channels) == c, 1 << s, 0)),
                    "multiplier": dict(multiplier=layer.multiplier + np.where(np.arange(layer.channels) == c,
                                                                              layer.multiplier[c] // 4 or 1, 0)),
                    "shift": dict(shift=layer._shift32 + np.where(np.arange(layer.channels) == c, 1, 0)
                                  .astype(np.int32)),
                }
                for name, kw in mutations.items():
                    y, _ = raw(layer, x, axis, acc32=acc32, **kw)
                    assert not np.array_equal(y, want), (isa, label, shape, name, "mutation not detected")
                y, _ = raw(layer, x, axis, acc32=acc32)
                assert np.array_equal(y, want)


@pytest.mark.parametrize("tin,tout", [("int32", "int8"), ("int32", "uint8"), ("int16", "int8"), ("int16", "uint8")])
def test_widening_paths_all_shifts_at_least_32(isa, tin, tout):
    """The AVX-512 widening bodies take floor(P / 2^32) first when every shift is >= 32: the same map scaled to
    shifts >= 32 (and a multiplier that still fits 32 bits), channel-first and channel-last, in range and not."""
    rng = np.random.default_rng(11)
    lo, hi = (-20000, 20000) if tin == "int32" else DTYPE_RANGES[tin]
    base = make_layer(tin, tout, 5, rng, in_range=(lo + 1, hi - 1))
    k = 32 - int(base.shift.min())
    assert k > 0
    layer = scaled(base, k)
    assert np.all(layer.shift >= 32) and np.all(np.abs(layer.multiplier) < 2 ** 31), layer
    for shape, axis in (((3, 5, 1023), 1), ((2, 5, 65), 1), ((1023, 5), -1), ((3, 7, 5), -1), ((1, 5), -1)):
        x = inputs(layer, shape, axis, rng)
        want = base.reference(x, axis=axis, engine="core")
        assert np.array_equal(expected(layer, x, axis), want)
        y, bad = raw(layer, x, axis, acc32=False)
        assert bad == -1 and np.array_equal(y, want), (isa, shape)
        assert np.array_equal(layer.apply(x, axis=axis), want)
        xb = x.copy()
        p = x.size - 1 - x.size // 3
        xb.reshape(-1)[p] = lo
        _, bad = raw(layer, xb, axis, acc32=False)
        assert bad == p
        y, _ = raw(layer, x, axis, acc32=False, bias=layer.bias + (np.int64(1) << layer.shift))
        assert not np.array_equal(y, want)


def test_short_rows_beyond_the_table_limit(isa):
    """channels * inner above the periodic-table limit (2^18 entries) with rows shorter than 64: the per-row kernel
    takes over (rows of 32 and 1 elements)."""
    rng = np.random.default_rng(12)
    layer = make_layer("int8", "int8", 9000, rng, in_range=(-100, 100))
    for shape, axis in (((1, 9000, 32), 1), ((2, 9000, 31), 1)):
        x = inputs(layer, shape, axis, rng)
        assert np.array_equal(layer.apply(x, axis=axis), expected(layer, x, axis))
        xb = x.copy()
        xb.reshape(-1)[x.size - 40] = 101
        _, bad = raw(layer, xb, axis)
        assert bad == x.size - 40


def _fixed_layer(multiplier, bias, shift, in_range, out_range, tin, tout):
    """A layer given by its integers (the outputs are compared with the int64 formula, not a real map)."""
    c = len(multiplier)
    source = {"form": "affine", "a": np.zeros(c), "b": np.zeros(c)}
    return FixedPointBN(np.array(multiplier, np.int64), np.array(bias, np.int64), np.array(shift, np.int64),
                        np.array([in_range] * c, np.int64), out_range, "half_up", source, tout, tin)


def _active_inputs(layer, shape, axis, rng):
    """int32 inputs of the layer's full range: half uniform, half where the output is not clamped (both ends
    of the range included)."""
    full = np.iinfo(np.int32)
    x = rng.integers(full.min, full.max, shape, dtype=np.int64, endpoint=True)
    bshape = [1] * len(shape)
    bshape[axis % len(shape)] = -1
    A, B, s = (v.astype(np.float64).reshape(bshape) for v in (layer.multiplier, layer.bias, layer.shift))
    qmin, qmax = layer.out_range
    y = rng.uniform(qmin - 2, qmax + 3, shape)                   # a target output, then the x that gives it
    active = np.clip(np.round((y * 2.0 ** s - B) / A), full.min, full.max).astype(np.int64)
    x = np.where(rng.random(shape) < 0.5, x, active + rng.integers(-2, 3, shape))
    x = np.clip(x, full.min, full.max)
    x.reshape(-1)[:2] = (full.min, full.max)
    return x.astype(np.int32)


@pytest.mark.parametrize("tout,out_range", [("int8", (-128, 127)), ("int8", (-100, 90)), ("uint8", (0, 255)),
                                            ("int16", (-32768, 32767)), ("int16", (-5, 3000))])
def test_widen_regimes(isa, tout, out_range):
    """The 64-bit-accumulator bodies per channel regime: shifts < 32 rescaled to 32 ((A*2^k, B*2^k, 32) when A*2^k
    fits int32 and the accumulator int64), shifts > 32 (a 32-bit shift after the high dword), shifts < 32 that cannot
    be rescaled (the 64-bit shift path), negative multipliers, s = 0; with the saturating narrowing store (the
    output range is the whole int8 / int16 range) and the min/max clamp; rows (NCHW) and periodic tables (NHWC)."""
    rng = np.random.default_rng(21)
    full = (-(1 << 31), (1 << 31) - 1)
    mixed = ([3000, (1 << 20) + 1, 1 << 28, 1000, -5000, 1, 77, -(1 << 14)],          # rows: every regime
             [-(1 << 40), 12345, 1 << 47, 3, 1 << 40, -7, 5 << 20, 1 << 30],
             [20, 40, 20, 5, 31, 0, 24, 33])
    rescalable = ([3000, (1 << 20) + 1, -5000, 70000, 1, -3, 1 << 17, 9],             # all high after rescaling
                  [1 << 30, -(1 << 33), 5, -(1 << 40), 1 << 20, 0, 99, -1],
                  [20, 40, 31, 26, 1, 2, 30, 32])
    for A, B, s in (mixed, rescalable):
        layer = _fixed_layer(A, B, s, full, out_range, "int32", tout)
        assert np.all(layer.accumulator_bits <= 64) and np.all(np.abs(layer.multiplier) < 2 ** 31)
        for shape, axis in (((2, 8, 1023), 1), ((3, 8, 65), 1), ((130, 8), -1), ((2, 33, 8), -1)):
            x = _active_inputs(layer, shape, axis, rng)
            want = expected(layer, x, axis)
            inside = (want > out_range[0]) & (want < out_range[1])
            assert inside.mean() > 0.25, inside.mean()                                # not just the clamps
            y, bad = raw(layer, x, axis, acc32=False)
            assert bad == -1 and np.array_equal(y, want), (isa, tout, out_range, shape)
            # a bias off by 2^s moves every output that is not clamped: caught on this path too
            y, _ = raw(layer, x, axis, acc32=False, bias=layer.bias + (np.int64(1) << layer.shift))
            assert not np.array_equal(y, want)


@pytest.mark.parametrize("tout,out_range", [("int8", (-128, 127)), ("int8", (-100, 90)), ("uint8", (0, 255)),
                                            ("uint8", (3, 250))])
def test_widen_rows_byte_shifts(isa, tout, out_range):
    """widen_rows with 8-bit outputs per t = s - 32 around the bounds of the shift after vpackssdw (vpsraw where
    t <= 8 for int8, 7 for uint8; vpsravd before the packs above; none at t = 0): high dwords far beyond int16
    (saturation before the shift) and outputs inside the range, every row length class, with keep_out (apply(out=))
    and without."""
    rng = np.random.default_rng(40)
    full = (-(1 << 31), (1 << 31) - 1)
    s = [32, 33, 38, 39, 40, 41, 45, 62]
    A = [(1 << 30) - 3, -(1 << 29) - 1, (1 << 30) + 5, -(1 << 30), (1 << 30) + 1, 1 << 30, -(3 << 28), (1 << 31) - 1]
    B = [1 << 33, -(1 << 36), 1 << 37, -5, 1 << 38, -(1 << 39), 1 << 43, 1 << 60]
    layer = _fixed_layer(A, B, s, full, out_range, "int32", tout)
    for shape in ((2, 8, 64), (1, 8, 1000), (2, 8, 3141)):
        x = _active_inputs(layer, shape, 1, rng)
        want = expected(layer, x, 1)
        y, bad = raw(layer, x, 1, acc32=False)
        assert bad == -1 and np.array_equal(y, want), (isa, tout, out_range, shape)
        y = np.full(shape, 9, layer.out_dtype)
        layer.apply(x, axis=1, out=y, threads=1)
        np.testing.assert_array_equal(y, want, err_msg=f"{isa} {tout} {out_range} {shape} out=")


@pytest.mark.parametrize("tin", ["int8", "uint8", "int16"])
@pytest.mark.parametrize("tout,out_range", [("int8", (-128, 127)), ("int8", (-100, 90)), ("uint8", (0, 255)),
                                            ("int16", (-32768, 32767)), ("int16", (-5, 3000))])
def test_widen_input_scaling(isa, tin, tout, out_range):
    """8/16-bit inputs on the 64-bit accumulator: a shift s < 32 whose A*2^(32-s) overflows int32 reaches the
    high-dword path by scaling the input instead (x*2^k with k = 32 - s, when that fits int32 for every x of the input
    type: k <= 24 for int8, 23 for uint8, 16 for int16), next to channels that scale A, a shift > 32 and channels
    left on the 64-bit shift path (k beyond the input's headroom, or the scaled accumulator beyond int64); rows and
    periodic tables, every block size and tail."""
    rng = np.random.default_rng(33)
    info = np.iinfo(tin)
    A = np.array([(1 << 29) + 12345, 3 << 28, -(1 << 30) - 7, 1000, (1 << 30) - 1, 5 << 20, 77777, -(3 << 27)])
    # k = 32 - s: 2, 3, 1 (input scaled), 12 (A scaled), 16 (input), s > 32, 24 (input for int8 only: the limit;
    # uint8 and int16 stay on the 64-bit path), 17 (input for int8 and uint8, one past int16's limit)
    s = np.array([30, 29, 31, 20, 16, 40, 8, 15])
    B = np.array([int(rng.integers(-(1 << (int(v) + 3)), 1 << (int(v) + 3))) for v in s])
    layer = _fixed_layer(A, B, s, (int(info.min), int(info.max)), out_range, tin, tout)
    assert np.all(layer.accumulator_bits <= 64)
    for shape, axis in (((2, 8, 1023), 1), ((3, 8, 64), 1), ((3, 8, 65), 1), ((130, 8), -1), ((2, 33, 8), -1)):
        bshape = [1] * len(shape)
        bshape[axis % len(shape)] = -1
        target = rng.uniform(out_range[0] - 2, out_range[1] + 3, shape)   # half the inputs where the output moves
        active = np.round((target * 2.0 ** s.reshape(bshape) - B.reshape(bshape)) / A.reshape(bshape))
        x = np.where(rng.random(shape) < 0.5, rng.integers(info.min, int(info.max) + 1, shape),
                     np.clip(active + rng.integers(-2, 3, shape), info.min, info.max)).astype(tin)
        x.reshape(-1)[:2] = (info.min, info.max)
        want = expected(layer, x, axis)
        inside = (want > out_range[0]) & (want < out_range[1])
        assert inside.mean() > 0.2, inside.mean()
        y, bad = raw(layer, x, axis, acc32=False)
        assert bad == -1 and np.array_equal(y, want), (isa, tin, tout, out_range, shape)
        y, _ = raw(layer, x, axis, acc32=False, bias=layer.bias + (np.int64(1) << layer.shift))
        assert not np.array_equal(y, want)


GUARD_SCRIPT = r"""
import sys
import numpy as np
import fxbn
from fxbn import _core
from guard_pages import guarded

rng = np.random.default_rng(5)
layers = [fxbn.from_affine(10.0 ** rng.uniform(-4, -2, 8), rng.uniform(-50, 50, 8), in_dtype="int32")]
for tin, tout in (("int8", "int8"), ("uint8", "uint8"), ("int16", "int16"), ("int8", "int16")):
    layers.append(fxbn.from_batchnorm(rng.uniform(0.5, 2, 8), rng.uniform(-1, 1, 8), rng.uniform(-1, 1, 8),
                                      rng.uniform(0.5, 2, 8), 1e-5, in_scale=0.02, out_scale=0.05,
                                      in_dtype=tin, out_dtype=tout))
shapes = [((2, 8, 64), 1), ((1, 8, 48), 1), ((3, 8, 1024), 1), ((64, 8), -1), ((100, 8), -1), ((8, 8, 8), -1)]
runs = 0
for isa in sys.argv[1:]:
    _core.kernel_isa(isa)
    for layer in layers:
        info = np.iinfo(layer.in_dtype)
        lo, hi = max(info.min, -(1 << 20)), min(info.max, 1 << 20)
        for shape, axis in shapes:
            x = guarded(shape, layer.in_dtype)
            x[...] = rng.integers(lo, hi + 1, shape)
            y = guarded(shape, layer.out_dtype)
            layer.apply(x, axis=axis, out=y, threads=1)
            assert np.array_equal(y, layer.apply(np.array(x), axis=axis)), (isa, layer.in_dtype, shape)
            runs += 1
print("ok", runs)
"""


def test_no_access_past_the_arrays():
    """Inputs and outputs that end right before an inaccessible page, on every ISA body, 8/16/32-bit inputs, rows
    whose length is a multiple of 16 and 64 (the SIMD blocks end exactly at the end of the tensor) and periodic
    tables: a read or write past either array is a segfault of the child process, not a silent pass."""
    res = guard_pages.run(GUARD_SCRIPT, *ISAS)
    assert res.returncode == 0 and res.stdout.startswith("ok"), (res.returncode, res.stdout, res.stderr[-2000:])


# ---------------------------------------------------------------------------------------------- AVX2 bodies
# (label, tin, tout, multiplier, bias, shift, in_range, out_range, acc32): each reaches one hand-written AVX2 body of
# csrc/fxbn/kernel_avx2.cpp (by rows for inner >= 64, periodic tables otherwise).
AVX2_CASES = [
    ("mul32 vpmaddwd uint8", "uint8", "uint8", [300, -700, 1], [5000, 180000, -3], [9, 10, 0], (0, 255), (0, 255),
     True),
    ("mul32 vpmaddwd int8 sat", "int8", "int8", [-32767, 32767, 5], [100, -7, 0], [8, 9, 0], (-128, 127),
     (-128, 127), True),
    ("mul32 vpmaddwd int16", "int16", "int8", [301, -29999, 3], [7, 123456, -9], [11, 20, 6], (-32768, 32767),
     (-100, 90), True),
    ("mul32 vpmulld int16", "int16", "int16", [70000, -40000, 32768], [5, -17, 1 << 20], [15, 14, 16],
     (-20000, 20000), (-32768, 32767), True),
    ("mul32 vpmulld int8 uint16", "int8", "uint16", [1 << 20, -(1 << 18), 40000], [1 << 27, 1 << 26, 12345],
     [13, 11, 4], (-128, 127), (0, 65535), True),
    ("mul32 int32", "int32", "int8", [1000, -3, 50], [123, -45678, 9], [12, 3, 8], (-(1 << 20), 1 << 20),
     (-128, 127), True),
    ("mul32 int32 out", "uint8", "int32", [123456, -7, 1], [-5, 3, 1 << 30], [3, 0, 2], (0, 255),
     (-(1 << 31), (1 << 31) - 1), True),
    ("widen s >= 32", "int32", "int8", [(1 << 25) + 7, -(1 << 24) - 3, 99999], [1 << 40, -(1 << 39) + 5, 3],
     [40, 39, 26], (-(1 << 31), (1 << 31) - 1), (-128, 127), False),
    ("widen s >= 32 uint8 out", "int32", "uint8", [(1 << 30) + 1, -(1 << 29), 1 << 20], [1 << 45, 1 << 44, 0],
     [45, 44, 35], (-(1 << 31), (1 << 31) - 1), (0, 255), False),
    ("widen s < 32", "int32", "int16", [(1 << 30) + 3, -(1 << 30) - 5, (1 << 31) - 1], [7, -9, 1 << 33],
     [31, 30, 31], (-(1 << 31), (1 << 31) - 1), (-32768, 32767), False),
    ("widen input shift", "int16", "int8", [(1 << 30) + 11, -(1 << 29) - 1, 3 << 28], [1 << 30, -(1 << 29), 5],
     [29, 28, 31], (-32768, 32767), (-128, 127), False),
]
AVX2_SHAPES = [((2, 3, 64), 1), ((1, 3, 95), 1), ((2, 3, 3141), 1), ((7, 3), -1), ((33, 3), -1), ((3, 5, 3), -1),
               ((2, 41, 3), -1)]


@pytest.mark.skipif("avx2" not in ISAS, reason="the CPU has no AVX2")
@pytest.mark.parametrize("case", AVX2_CASES, ids=[c[0] for c in AVX2_CASES])
def test_avx2_bodies(case):
    """Each hand-written AVX2 body (kernel_isa("avx2")) against the exact int64 formula: rows of 64 (whole pack
    blocks), 95 and 3141 (tails of every length class), channel-last tables, 1 and 2 threads (a tensor large enough to
    be split), and the first out-of-range element named."""
    label, tin, tout, m, b, s, in_range, out_range, acc32 = case
    before = _core.kernel_isa()
    _core.kernel_isa("avx2")
    try:
        layer = _fixed_layer(m, b, s, in_range, out_range, tin, tout)
        rng = np.random.default_rng(zlib.crc32(label.encode()))
        for shape, axis in AVX2_SHAPES + [((4, 3, 120011), 1)]:
            if tin == "int32" and not acc32 and in_range[0] == -(1 << 31):
                x = _active_inputs(layer, shape, axis, rng)
            else:
                x = inputs(layer, shape, axis, rng)
            for threads in (1, 2):
                y, bad = raw(layer, x, axis, acc32=acc32, threads=threads)
                assert bad == -1, (label, shape, threads)
                np.testing.assert_array_equal(y, expected(layer, x, axis), err_msg=f"{label} {shape} t={threads}")
            if in_range != DTYPE_RANGES[tin]:
                xb = x.copy()
                flat = xb.reshape(-1)
                k = flat.size * 2 // 3
                flat[k] = in_range[1] + 1
                _, bad = raw(layer, xb, axis, acc32=acc32)
                assert bad == k, (label, shape, bad, k)
    finally:
        _core.kernel_isa(before)


# ---------------------------------------------------------------------------------------------- out= kept on error
@pytest.mark.parametrize("tin,tout", [("int32", "int8"), ("uint8", "uint8"), ("int16", "int16")])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_out_kept_when_a_late_block_fails(isa, tin, tout, layout):
    """apply(x, out=y) checks the range in the same pass as it writes y (the kernel saves each block of y before
    writing it, _core.Kernel.run(keep_out=True)): a violation in a late block -- after blocks of 2^14 elements were
    written, on 1 and 2 threads -- must leave y exactly as it was, and a violation-free call must write all of it."""
    rng = np.random.default_rng(14)
    info = np.iinfo(tin)
    lo, hi = max(int(info.min), -(1 << 23)), min(int(info.max), (1 << 23) - 1)
    if tin != "int32":
        lo, hi = int(info.min) + 1, int(info.max) - 1
    layer = make_layer(tin, tout, 64, rng, in_range=(lo, hi))
    # 1.26M elements: over 2 MB of input + output even for uint8, so that threads=2 splits the tensor
    shape, axis = ((3, 64, 80, 82), 1) if layout == "NCHW" else ((3, 80, 82, 64), -1)
    x = inputs(layer, shape, axis, rng)
    for threads in (1, 2):
        y = np.full(shape, 7, layer.out_dtype)
        assert layer.apply(x, axis=axis, out=y, threads=threads) is y
        np.testing.assert_array_equal(y, expected(layer, x, axis))
        for where in (x.size - 1, x.size // 2 + 5, x.size // 2 - 5, (1 << 14) + 3, 0):
            xb = x.copy()
            xb.reshape(-1)[where] = hi + 1
            before = rng.integers(np.iinfo(tout).min, np.iinfo(tout).max, shape).astype(tout)
            y = before.copy()
            with pytest.raises(ValueError, match="outside the in_range"):
                layer.apply(xb, axis=axis, out=y, threads=threads)
            np.testing.assert_array_equal(y, before, err_msg=f"out= changed: violation at {where}, t={threads}")


def test_kept_tables_follow_shape_isa_and_types():
    """A layer's kernel keeps each call's prepared tables (KernelCache) for the next call of the same shape: calls
    with other row lengths (short NCHW rows: periodic tables as large as the tensor), channel-last, other output
    types and every ISA body, interleaved and repeated on one layer, must each give the exact outputs; and a range
    violation after a kept call must still be reported with `out` untouched."""
    rng = np.random.default_rng(31)
    c = 16
    a = 10.0 ** rng.uniform(-4, -2, c)
    b = rng.uniform(-50, 50, c)
    lo, hi = -(1 << 22), (1 << 22) - 1
    layers = {out: fxbn.from_affine(a, b, in_range=(np.full(c, lo), np.full(c, hi)), in_dtype="int32",
                                    out_dtype=out) for out in ("int8", "uint8", "int16")}
    shapes = [((2, c, 7, 7), 1), ((2, c, 5, 10), 1), ((1, c, 3, 3), 1), ((2, c, 9, 8), 1), ((3, 5, c), -1),
              ((1, c, 64), 1)]
    before = _core.kernel_isa()
    try:
        for rnd in range(2):
            for isa in ISAS:
                _core.kernel_isa(isa)
                for out, layer in layers.items():
                    for shape, axis in shapes:
                        x = np.clip(rng.normal(0, 1 << 19, shape), lo, hi).astype(np.int32)
                        y = layer.apply(x, axis=axis)
                        assert np.array_equal(y, expected(layer, x, axis)), (rnd, isa, out, shape)
                        if rnd == 1 and shape == shapes[0][0]:
                            x.reshape(-1)[-3] = hi + 1
                            keep = np.full(shape, 7, layer.out_dtype)
                            with pytest.raises(ValueError, match="outside"):
                                layer.apply(x, axis=axis, out=keep)
                            assert np.all(keep == 7), (isa, out)
    finally:
        _core.kernel_isa(before)


def test_large_outputs_untouched_on_violation():
    """Outputs over 1 MiB (the save buffer is written with non-temporal stores: by the row bodies themselves, or by
    the block copy before the other bodies), channel-last and NCHW, 8/16-bit outputs: an out-of-range input at the
    first, middle or last element raises and leaves `out` byte-for-byte as it was; in-range calls are exact."""
    rng = np.random.default_rng(41)
    c = 64
    lo, hi = -(1 << 23), (1 << 23) - 1
    a = 10.0 ** rng.uniform(-4, -2, c)
    b = rng.uniform(-50, 50, c)
    before = _core.kernel_isa()
    try:
        for out in ("int8", "int16"):
            layer = fxbn.from_affine(a, b, in_range=(np.full(c, lo), np.full(c, hi)), in_dtype="int32",
                                     out_dtype=out)
            for isa in ISAS:
                _core.kernel_isa(isa)
                for shape, axis in (((24, 28, 28, c), -1), ((24, c, 28, 28), 1)):
                    x = np.clip(rng.normal(0, hi / 8, shape), lo, hi).astype(np.int32)
                    y = np.empty(shape, layer.out_dtype)
                    assert y.nbytes > 1 << 20
                    layer.apply(x, axis=axis, out=y, threads=1)
                    assert np.array_equal(y, expected(layer, x, axis)), (out, isa, shape)
                    for where in (0, x.size // 2, x.size - 1):
                        xx = x.copy()
                        xx.reshape(-1)[where] = hi + 1
                        y = rng.integers(-100, 100, shape).astype(layer.out_dtype)
                        y0 = y.copy()
                        with pytest.raises(ValueError, match="outside"):
                            layer.apply(xx, axis=axis, out=y, threads=1)
                        assert np.array_equal(y, y0), (out, isa, shape, where)
    finally:
        _core.kernel_isa(before)
