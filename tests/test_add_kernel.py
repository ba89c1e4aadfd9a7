"""The add kernel's bodies (csrc/fxbn/add_kernel*.cpp) against the exact int64 formula.

The hand-written bodies serve two 8-bit inputs with a 32-bit accumulator: add_kernel_avx512.cpp (kernel ISA
x86-64-v4, and x86-64-v4+vbmi+vnni: vpdpwssd) and add_kernel_avx2.cpp ("avx2", FXBN_ISA=avx2), each with the plain,
split and fold modes (add_kernel_simd.hpp); everything else takes the compiler-vectorized loops.
Each body is run on every input/output dtype pair, multipliers that need the split (|A| >= 2^15, two vpmaddwd) and
those that do not, lengths that leave every tail class, short and long broadcast periods, 1 and 2 threads, and
out-of-range inputs (first index named; out= untouched with keep_y).  The comparison is clamp((A1*x1 + A2*x2 + B) >> s)
in NumPy int64, and through FixedPointAdd the exact Fraction reference.  test_mutations_are_caught shows that the
comparison fails for a parameter off by one on every body; test_no_access_past_the_arrays runs the bodies on arrays
that end right before an inaccessible page.
"""
import zlib

import numpy as np
import pytest

import fxbn
from fxbn import _core

import guard_pages


def _isas():
    before = _core.kernel_isa()
    found = []
    for name in ("x86-64-v4+vbmi+vnni", "x86-64-v4", "avx2", "baseline"):
        try:
            _core.kernel_isa(name)
            found.append(name)
        except ValueError:
            pass
    _core.kernel_isa(before)
    return found


ISAS = _isas()
LIMITS = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "uint16": (0, 65535)}

# (label, a1, a2, bias, shift): each fits 32 bits over any 8-bit box (checked in _params)
PARAMS = [
    ("split", 92123, 374487, 2382492, 19),                  # from_add's int8 layer: both multipliers >= 2^15
    ("split negative", -300001, 70000, -(1 << 16), 18),
    ("split low bit 15", 0x18000, -0x17FFF, 12345, 17),     # low halves with bit 15 set: signed-16 split
    ("no split", 1200, -32767, 99999, 15),                  # one vpmaddwd
    ("no split shift 0", 1, 1, -3, 0),
    ("shift >= 32", 1 << 20, -(1 << 20), 5, 40),            # every output is 0 or -1 before the clamp
    ("max width", (1 << 22) - 1, 1 << 21, -(1 << 29), 30),
    # the fold body (8-bit outputs: high halves by vpmaddubsw) needs s >= 16 and |h1| + |h2| <= 128; these two do not
    ("split, |h1| + |h2| > 128", 4500001, -4499999, 777, 23),
    ("split, shift < 16", 40000, -50001, 3, 12),
    ("fold, |h1| + |h2| = 128", 64 * 65536 - 5, -64 * 65536 + 9, -1, 16),
]
LENGTHS = [1, 31, 32, 33, 63, 64, 65, 95, 96, 127, 128, 129, 1000, 4097, 16385]  # AVX2 fold: 64-, 32-element steps


I8 = np.arange(-128, 128)
ALL1, ALL2 = (a.astype(np.int8) for a in np.meshgrid(I8, I8, indexing="ij"))  # every int8 pair
_REF = {}


def _exact_ref(layer):
    from fxbn import ops_reference as oref

    if "ref" not in _REF:
        s = layer.source
        _REF["ref"] = oref.add_outputs(ALL1, ALL2, s["in_scales"], s["in_zero_points"], s["out_scale"],
                                       s["out_zero_point"], *layer.out_range, layer.rounding).astype(np.int8)
    return _REF["ref"]


@pytest.fixture(params=ISAS)
def isa(request):
    before = _core.kernel_isa()
    _core.kernel_isa(request.param)
    yield request.param
    _core.kernel_isa(before)


def _params(p, d1, d2):
    _, a1, a2, b, s = p
    l1, h1 = LIMITS[d1]
    l2, h2 = LIMITS[d2]
    ends = [a1 * x1 + a2 * x2 + b for x1 in (l1, h1) for x2 in (l2, h2)]
    assert all(-(1 << 31) <= v < (1 << 31) for v in ends)
    return a1, a2, b, s


def _want(a1, a2, b, s, x1, x2, qmin, qmax):
    v = (a1 * x1.astype(np.int64) + a2 * np.asarray(x2).astype(np.int64) + b) >> s
    return np.clip(v, qmin, qmax)


def _kernel(a1, a2, b, s, box, qmin, qmax):
    return _core.AddKernel(a1, a2, b, s, box, qmin, qmax, True)


@pytest.mark.parametrize("d1,d2", [("int8", "int8"), ("int8", "uint8"), ("uint8", "int8"), ("uint8", "uint8")])
@pytest.mark.parametrize("dout", ["int8", "uint8", "int16", "uint16"])
def test_bodies_equal_the_int64_formula(isa, d1, d2, dout):
    rng = np.random.default_rng(zlib.crc32(f"{isa}{d1}{d2}{dout}".encode()))
    olo, ohi = LIMITS[dout]
    for p in PARAMS:
        a1, a2, b, s = _params(p, d1, d2)
        box = (*LIMITS[d1], *LIMITS[d2])
        for qmin, qmax in ((olo, ohi), (olo + 3, ohi - 5), (max(olo, -7), min(ohi, 9))):
            k = _kernel(a1, a2, b, s, box, qmin, qmax)
            for n in LENGTHS:
                x1 = rng.integers(*LIMITS[d1], n, endpoint=True).astype(d1)
                x2 = rng.integers(*LIMITS[d2], n, endpoint=True).astype(d2)
                y = np.full(n, 77, dout)
                assert k.run(x1, x2, y, n, n, 1) == (-1, 0)
                want = _want(a1, a2, b, s, x1, x2, qmin, qmax)
                assert np.array_equal(y.astype(np.int64), want), (p[0], n, qmin, qmax)


@pytest.mark.parametrize("period", [1, 3, 64, 100, 5000])
def test_broadcast_periods_and_threads(isa, period):
    """x2 repeated every `period` elements (short periods are tiled in the core), 1 and 2 threads on a tensor large
    enough to be split."""
    rng = np.random.default_rng(period)
    a1, a2, b, s = _params(PARAMS[0], "int8", "int8")
    k = _kernel(a1, a2, b, s, (-128, 127, -128, 127), -128, 127)
    n = period * ((1 << 19) // period + 1)
    x1 = rng.integers(-128, 128, n).astype(np.int8)
    x2 = rng.integers(-128, 128, period).astype(np.int8)
    want = _want(a1, a2, b, s, x1, np.tile(x2, n // period), -128, 127)
    for threads in (1, 2):
        y = np.empty(n, np.int8)
        assert k.run(x1, x2, y, n, period, threads) == (-1, 0)
        assert np.array_equal(y, want), threads


@pytest.mark.parametrize("keep_y", [False, True])
def test_out_of_box_inputs_are_reported(isa, keep_y):
    """A narrowed box: the first offending index (x1 or x2, whichever comes first) is reported by the fused check
    (keep_y=False) and by the read-only check (keep_y=True), which leaves y untouched."""
    a1, a2, b, s = _params(PARAMS[0], "int8", "int8")
    k = _kernel(a1, a2, b, s, (-100, 100, -50, 127), -128, 127)
    rng = np.random.default_rng(3)
    for n, i, which, value in [(1000, 999, 1, 101), (1000, 5, 2, -51), (70000, 65536, 1, -101), (33, 32, 2, -128),
                               (64, 63, 1, 127), (96, 40, 2, -51), (128, 32, 1, -101), (200, 127, 2, -60)]:
        x1 = rng.integers(-100, 101, n).astype(np.int8)
        x2 = rng.integers(-50, 128, n).astype(np.int8)
        (x1 if which == 1 else x2)[i] = value
        y = np.full(n, 7, np.int8)
        assert k.run(x1, x2, y, n, n, 1, keep_y) == (i, which)
        if keep_y:
            assert (y == 7).all()
    # without an error, a narrowed box computes the same outputs either way
    x1 = rng.integers(-100, 101, 5000).astype(np.int8)
    x2 = rng.integers(-50, 128, 5000).astype(np.int8)
    y = np.empty(5000, np.int8)
    assert k.run(x1, x2, y, 5000, 5000, 1, keep_y) == (-1, 0)
    assert np.array_equal(y, _want(a1, a2, b, s, x1, x2, -128, 127))


def test_layer_apply_every_body_exhaustive_and_overlap(isa):
    """FixedPointAdd.apply on every body: all 65,536 int8 pairs against the exact Fraction reference (through the
    solver's own layer), out= aliasing an input, out= untouched on a range error."""
    layer = fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, 1)
    ref = _exact_ref(layer)
    assert np.array_equal(layer.apply(ALL1, ALL2), ref)
    x = ALL1.copy()
    layer.apply(x, ALL2, out=x)
    assert np.array_equal(x, ref)
    narrow = fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, 1, in_ranges=((-128, 126), (-128, 127)))
    out = np.full(ALL1.shape, 5, np.int8)
    with pytest.raises(ValueError, match="x1 at"):
        narrow.apply(ALL1, ALL2, out=out)
    assert (out == 5).all()


def test_mutations_are_caught(isa):
    """The comparison can fail: on every body, a kernel with one parameter changed (a multiplier off by 2^(s-4) or
    with bit 15 flipped -- the split's sign boundary --, the bias off by 2^s, the shift off by one) differs from the
    formula."""
    rng = np.random.default_rng(11)
    n = 4097
    x1 = rng.integers(-128, 128, n).astype(np.int8)
    x2 = rng.integers(-128, 128, n).astype(np.int8)
    for p in PARAMS[:4]:
        a1, a2, b, s = _params(p, "int8", "int8")
        want = _want(a1, a2, b, s, x1, x2, -128, 127)
        da = 1 << max(0, s - 4)  # a multiplier off by 2^(s-4): an output off by up to 8 levels
        for wrong in ((a1 + da, a2, b, s), (a1, a2 - da, b, s), (a1, a2 ^ 0x8000, b, s), (a1, a2, b + (1 << s), s),
                      (a1, a2, b, s + 1)):
            y = np.empty(n, np.int8)
            _kernel(*wrong, (-128, 127, -128, 127), -128, 127).run(x1, x2, y, n, n, 1)
            assert not np.array_equal(y.astype(np.int64), want), (p[0], wrong)


GUARD_SCRIPT = r"""
import sys
import numpy as np
from fxbn import _core
from guard_pages import guarded

rng = np.random.default_rng(5)
runs = 0
for isa in sys.argv[1:]:
    _core.kernel_isa(isa)
    for d1, d2, dout in (("int8", "int8", "int8"), ("uint8", "int8", "int16"), ("int8", "uint8", "uint16"),
                         ("uint8", "uint8", "uint8")):
        qmin, qmax = (-100, 100) if dout.startswith("int") else (0, 200)
        k = _core.AddKernel(92123, 374487, 2382492 - (1 << 27), 19, (-128, 255, -128, 255), qmin, qmax, True)
        for n, period in ((64, 64), (32, 32), (128, 128), (33, 33), (65, 65), (1, 1), (4096, 64), (4095, 5),
                          (640, 64)):
            x1 = guarded(n, d1)
            x1[...] = rng.integers(*((-128, 128) if d1 == "int8" else (0, 256)), n)
            x2 = guarded(period, d2)
            x2[...] = rng.integers(*((-128, 128) if d2 == "int8" else (0, 256)), period)
            y = guarded(n, dout)
            assert k.run(x1, x2, y, n, period, 1) == (-1, 0)
            v = (92123 * x1.astype(np.int64) + 374487 * np.tile(x2, n // period).astype(np.int64) + 2382492
                 - (1 << 27)) >> 19
            assert np.array_equal(y.astype(np.int64), np.clip(v, qmin, qmax)), (isa, d1, d2, dout, n)
            runs += 1
print("ok", runs)
"""


def test_no_access_past_the_arrays():
    """x1, x2 and y end right before an inaccessible page, on every body: lengths that are whole SIMD steps (32, 64,
    128), tails (33, 65, 1) and short broadcast periods: a read or write past an array is a segfault of the child."""
    res = guard_pages.run(GUARD_SCRIPT, *ISAS)
    assert res.returncode == 0 and res.stdout.startswith("ok"), (res.returncode, res.stdout, res.stderr[-2000:])


def test_lemma_add8_lanes_and_index_map():
    """The bodies' lane arithmetic is proved (verify/lemmas.py add8_lanes and, for the fold mode, add8_fold; QF_BV,
    int8 and uint8 inputs), each wrong variant is refuted, and the element order of both ISAs' packs and permutes is checked exhaustively."""
    pytest.importorskip("z3")
    from verify import lemmas

    assert lemmas.add8_index_map() == []
    assert {f[:2] for f in lemmas.add8_index_map(wrong=True)} == {("avx2", 16), ("avx512", 16)}
    for name in ("add8_lanes", "add8_fold"):
        for d in ("int8", "uint8"):
            assert lemmas.prove(name, d, 32, timeout_ms=20000)["status"] == "proved", (name, d)
            for variant in lemmas.SIMD_WRONG[name]:
                assert lemmas.prove(name, d, 32, wrong=variant, timeout_ms=20000)["status"] == "refuted", variant


def test_apply_fast_path_and_its_fallbacks(isa):
    """apply's fast path (AddKernel.run_same: same-shape contiguous arrays) against the general path and the int64
    formula, and every argument that must leave it: broadcasting, non-contiguous or read-only arrays, an out
    overlapping an input, wrong out dtype / shape, non-native byte order, unsupported dtypes (clear ValueErrors)."""
    layer = fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, 1)
    a1, a2 = layer.multipliers
    rng = np.random.default_rng(17)
    x1 = rng.integers(-128, 128, (3, 5, 67)).astype(np.int8)
    x2 = rng.integers(-128, 128, (3, 5, 67)).astype(np.int8)
    want = _want(a1, a2, layer.bias, layer.shift, x1, x2, -128, 127).astype(np.int8)
    k = layer._get_kernel()
    y = np.empty_like(x1)
    assert k.run_same(x1, x2, y, 1, b"b", True) == (-1, 0) and np.array_equal(y, want)
    assert np.array_equal(layer.apply(x1, x2), want)
    out = np.empty_like(x1)
    assert layer.apply(x1, x2, out=out) is out and np.array_equal(out, want)
    # not qualifying: None from run_same, the general path gives the same result
    for args in ((x1, x2[:1], y), (x1[:, :, ::2], x2[:, :, ::2], y[:, :, ::2]), (x1, x2, x1), (x1, x2, y[0]),
                 (x1, x2, y.astype(np.int16)), (x1.astype(">i2"), x2, y), (x1.astype(np.float32), x2, y)):
        assert k.run_same(*args, 1, b"b", True) is None
    assert np.array_equal(layer.apply(x1, x2[:1]), _want(a1, a2, layer.bias, layer.shift, x1, x2[:1], -128, 127))
    assert np.array_equal(layer.apply(x1[:, :, ::2], x2[:, :, ::2]), want[:, :, ::2])
    x = x1.copy()
    layer.apply(x, x2, out=x)
    assert np.array_equal(x, want)
    ro = np.empty_like(x1)
    ro.flags.writeable = False
    for bad_out in (ro, np.empty(x1.shape, np.int16), np.empty((3, 5, 66), np.int8), [0] * x1.size):
        with pytest.raises(ValueError, match="out must be"):
            layer.apply(x1, x2, out=bad_out)
    with pytest.raises(ValueError, match="dtype float32"):
        layer.apply(x1.astype(np.float32), x2, out=out)
    narrow = fxbn.from_add((0.0123, 0.05), (3, -5), 0.07, 1, in_ranges=((-128, 127), (-100, 127)))
    bad = np.clip(x2, -100, 127).astype(np.int8)
    bad[2, 4, 66] = -101
    out = np.full(x1.shape, 9, np.int8)
    with pytest.raises(ValueError, match=r"x2 at \[2, 4, 66\] is -101"):
        narrow.apply(x1, bad, out=out)
    assert (out == 9).all()
    with pytest.raises(ValueError, match=r"x2 at \[2, 4, 66\] is -101"):
        narrow.apply(x1, bad)
