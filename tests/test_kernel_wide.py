"""The AVX2 int32 -> 8-bit bodies of issue 14 item 1, against the NumPy int64 formula: kernel ISA "avx2", and the
AVX-512 ISAs, which take widen_pixels too.

* widen_pixels (csrc/fxbn/kernel_avx2.cpp): channel-last int32 -> int8/uint8 layers whose every channel reaches
  s >= 32, with per-channel A, B, s held in registers for 16 channels at a time over runs of 16, 8 or 4 pixels (by
  the pixel's input bytes), and a min/max in registers when every channel has the same range, else a per-channel
  biased compare into one mask.  Covered: channel counts that are multiples of 8 (the body; 1032 past the
  stack-held min/max; around the run thresholds: 64/72, 512/520, 1024, 2048) and not (the periodic tables), pixel
  counts around the 4-pixel groups and the runs, the tensor's last pixel (the vector walk but its last 16 or 24
  channels, whose odd-element load would read past the array: the scalar formula), chunks that split
  a pixel (2 threads, and the 2^14-element blocks of out=), the first out-of-range element named, out= untouched on a
  violation, and a layer with one channel that keeps s < 32 (then the periodic tables serve the whole layer).
* the AVX-512 widen_pixels (csrc/fxbn/kernel_avx512.cpp; channels % 64 == 0, one [lo, hi] for every channel or no
  check): int32 -> int8/uint8 and int16 -> int16 (inputs scaled by 2^xk), 64 channels' parameters in zmm registers.
* widen_pixels_words (since h11-i16; AVX2, and the AVX-512 ISAs where channels % 64 != 0): int16 -> int16 channel-last
  where every channel admits input_shift_16, 16 channels from one load; layers with one channel that does not admit it
  (the widen_pixels fallback), a violation in every channel, unaligned out=, int16's extremes.
* widen_rows (by rows, int32 inputs): the odd elements from a second load one element on (the tensor's last
  32-block goes to the scalar tail) and vpsravd by s - 32.
A real layer's accumulator range (ResNet-50's conv accumulators span 17-26 bits) comes from the solver
(fxbn.from_affine with per-channel in_range); fixed integer layers reach the extremes (s = 63, negative
multipliers, |A| near 2^31, full int32 inputs).
"""
import numpy as np
import pytest

import fxbn
from fxbn import _core
from fxbn.api import FixedPointBN

from test_kernel_paths import ISAS, _active_inputs, expected, inputs, raw

pytestmark = pytest.mark.skipif("avx2" not in ISAS, reason="the CPU has no AVX2")


# widen_pixels serves the AVX-512 ISAs too (kernel.cpp apply_typed); widen_rows there is the AVX-512 body
X86_ISAS = [isa for isa in ISAS if isa in ("avx2", "x86-64-v4", "x86-64-v4+vbmi+vnni")]


@pytest.fixture(autouse=True, params=X86_ISAS)
def x86_isa(request):
    before = _core.kernel_isa()
    _core.kernel_isa(request.param)
    yield request.param
    _core.kernel_isa(before)


def real_layer(channels, rng, tout="int8", bits=(17, 26), one_range=False):
    """A conv-accumulator layer: per-channel ranges of 2^17..2^26 (ResNet-50's), outputs spread over the range.
    one_range: one [lo, hi] for every channel (a layer's declared accumulator range; the AVX-512 widen_pixels)."""
    if one_range:
        k = np.full(channels, rng.integers(bits[0] - 1, bits[1]))
        lo = -(np.int64(1) << k) + rng.integers(0, 1000)
        hi = (np.int64(1) << k) - 1 - rng.integers(0, 1000)
    else:
        k = rng.integers(bits[0] - 1, bits[1], channels)
        lo = -(np.int64(1) << k) + rng.integers(0, 1000, channels)
        hi = (np.int64(1) << k) - 1 - rng.integers(0, 1000, channels)
    a = 200.0 / (hi - lo) * rng.uniform(0.5, 1.5, channels) * rng.choice([-1.0, 1.0], channels)
    b = rng.uniform(-20, 20, channels) + (127.5 if tout == "uint8" else 0.0)
    return fxbn.from_affine(a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64),
                            in_range=(lo, hi), in_dtype="int32", out_dtype=tout, rounding="half_even")


def fixed_layer(A, B, s, lo, hi, tout, out_range):
    c = len(A)
    source = {"form": "affine", "a": np.zeros(c), "b": np.zeros(c)}
    in_range = np.stack([np.broadcast_to(lo, c), np.broadcast_to(hi, c)], axis=1).astype(np.int64)
    return FixedPointBN(np.array(A, np.int64), np.array(B, np.int64), np.array(s, np.int64), in_range, out_range,
                        "half_up", source, tout, "int32")


def extremes(channels, rng):
    """Full-range int32 inputs; every s >= 32 after widen_to_high: s up to 62, negative and near-2^31 multipliers."""
    A = rng.choice([(1 << 31) - 1, -(1 << 31) + 1, (1 << 25) + 7, -(1 << 24) - 3, 99999, 3000, -5000, 1], channels)
    s = np.where(np.abs(A) > (1 << 20), rng.integers(45, 56, channels), rng.integers(32, 40, channels))
    s[: min(2, channels)] = [62, 33][: min(2, channels)]
    B = (rng.integers(-(1 << 18), 1 << 18, channels) << (s - 20)).astype(np.int64)  # |A*x + B| < 2^63
    return A, B, s


PIXELS = (1, 3, 4, 5, 63, 64, 65, 131, 260)


@pytest.mark.parametrize("tout", ["int8", "uint8"])
@pytest.mark.parametrize("channels", [8, 16, 24, 64, 72, 12, 63])
def test_widen_pixels_real_layers(channels, tout):
    rng = np.random.default_rng(1400 + channels)
    check_pixels(real_layer(channels, rng, tout), PIXELS, rng, f"{channels} channels")


def exact_on_1_and_2_threads(layer, x):
    """Channel-last x in range: the exact outputs on one thread and on two."""
    want = expected(layer, x, -1)
    for threads in (1, 2):
        y, bad = raw(layer, x, -1, acc32=False, threads=threads)
        assert bad == -1
        np.testing.assert_array_equal(y, want)


def named_violation(layer, x, where, value, what):
    """x with the channel-last element `where` set to `value`, after checking that the kernel names that index on one
    thread and on two (`what`: the case, for the assertion message)."""
    xb = x.copy()
    xb.reshape(-1)[where] = value
    for threads in (1, 2):
        _, bad = raw(layer, xb, -1, acc32=False, threads=threads)
        assert bad == where, (*what, value, threads, bad)
    return xb


def check_pixels(layer, pixel_counts, rng, what):
    """Channel-last runs of each pixel count (2-D and 4-D shapes): the exact outputs, not just the clamps."""
    channels = layer.multiplier.shape[0]
    for n in pixel_counts:
        for shape in ((n, channels), (2, n, 1, channels)):
            x = inputs(layer, shape, -1, rng)
            want = expected(layer, x, -1)
            y, bad = raw(layer, x, -1, acc32=False)
            assert bad == -1
            np.testing.assert_array_equal(y, want, err_msg=f"{what}, {shape}")
            inside = (want > layer.out_range[0]) & (want < layer.out_range[1])
            assert n < 4 or inside.mean() > 0.3  # not just the clamps


@pytest.mark.parametrize("out_range", [(-128, 127), (-100, 90), (0, 255)])
@pytest.mark.parametrize("channels", [8, 24, 40, 13])
def test_widen_pixels_extremes(channels, out_range):
    rng = np.random.default_rng(77 + channels)
    A, B, s = extremes(channels, rng)
    tout = "uint8" if out_range[0] == 0 else "int8"
    layer = fixed_layer(A, B, s, -(1 << 31), (1 << 31) - 1, tout, out_range)
    for shape in ((131, channels), (3, 5, 4, channels)):
        x = _active_inputs(layer, shape, -1, rng)
        y, bad = raw(layer, x, -1, acc32=False)
        assert bad == -1
        np.testing.assert_array_equal(y, expected(layer, x, -1), err_msg=f"{channels} channels, {shape}")


def test_widen_pixels_two_threads_and_split_pixels():
    """2 threads (the tensor is split at a 64-aligned element, inside a pixel when channels = 24 or 40) and a range
    violation named at its first index, in the first, a middle and the last pixel."""
    rng = np.random.default_rng(5)
    for channels in (24, 40, 64):
        layer = real_layer(channels, rng)
        x = inputs(layer, (1, 101, 103, channels), -1, rng)
        exact_on_1_and_2_threads(layer, x)
        middle = x.size // channels // 2 * channels
        for where in (0, 5, 12, middle + 3, middle + 9, middle + channels - 1, x.size - 2 * channels + 13,
                      x.size - channels + 2, x.size - 1):
            c = where % channels
            for value in (layer.in_range[c, 1] + 1, layer.in_range[c, 0] - 1):  # above and below the range
                named_violation(layer, x, where, value, (channels, where))


@pytest.mark.parametrize("channels", [24, 64])
def test_widen_pixels_out_kept(channels):
    """apply(x, out=y): blocks of 2^14 elements (not a multiple of 24 channels: a block ends inside a pixel); a
    violation leaves y as it was."""
    rng = np.random.default_rng(9)
    layer = real_layer(channels, rng)
    x = inputs(layer, (2, 60, 70, channels), -1, rng)
    for threads in (1, 2):
        y = np.full(x.shape, 7, np.int8)
        assert layer.apply(x, axis=-1, out=y, threads=threads) is y
        np.testing.assert_array_equal(y, expected(layer, x, -1))
        for where in ((1 << 14) + 5, x.size - 1, 3):
            xb = x.copy()
            xb.reshape(-1)[where] = layer.in_range[where % channels, 1] + 1
            before = rng.integers(-128, 128, x.shape).astype(np.int8)
            y = before.copy()
            with pytest.raises(ValueError, match="outside the in_range"):
                layer.apply(xb, axis=-1, out=y, threads=threads)
            np.testing.assert_array_equal(y, before)


def test_widen_pixels_mixed_shifts_fall_back():
    """One channel keeps s < 32 (A * 2^(32 - s) overflows int32): the periodic tables serve the whole layer."""
    rng = np.random.default_rng(3)
    A, B, s = extremes(16, rng)
    A[5], s[5], B[5] = (1 << 30) + 3, 20, 7
    layer = fixed_layer(A, B, s, -(1 << 31), (1 << 31) - 1, "int8", (-128, 127))
    x = _active_inputs(layer, (77, 16), -1, rng)
    y, bad = raw(layer, x, -1, acc32=False)
    assert bad == -1
    np.testing.assert_array_equal(y, expected(layer, x, -1))


@pytest.mark.parametrize("tout", ["int8", "uint8", "int16", "int32"])
def test_widen_rows_second_load(tout):
    """widen_rows with int32 inputs: rows whose end is the tensor's end (the odd-element load would read past it),
    row lengths around the 32-element blocks, 1 and 2 threads, a violation named in the last row."""
    rng = np.random.default_rng(11)
    layer = real_layer(5, rng, "uint8" if tout == "uint8" else "int8")
    if tout in ("int16", "int32"):
        layer = FixedPointBN(layer.multiplier, layer.bias, layer.shift, layer.in_range,
                             (-30000, 30000) if tout == "int16" else (-(1 << 31), (1 << 31) - 1), layer.rounding,
                             layer.source, tout, "int32")
    for inner in (64, 65, 95, 96, 97, 127, 3141):
        x = inputs(layer, (3, 5, inner), 1, rng)
        want = expected(layer, x, 1)
        for threads in (1, 2):
            y, bad = raw(layer, x, 1, acc32=False, threads=threads)
            assert bad == -1
            np.testing.assert_array_equal(y, want, err_msg=f"inner {inner}")
        xb = x.copy()
        xb[2, 4, -1] = layer.in_range[4, 1] + 1
        assert raw(layer, xb, 1, acc32=False)[1] == x.size - 1


def test_widen_pixels_many_channels():
    """1032 channels (before h7-pixels the per-channel min/max lived on the heap past 1024 channels); violations in the
    last channels of a late pixel and in the first pixel are named, and the outputs are exact."""
    rng = np.random.default_rng(21)
    layer = real_layer(1032, rng)
    x = inputs(layer, (1, 3, 6, 1032), -1, rng)
    for threads in (1, 2):
        y, bad = raw(layer, x, -1, acc32=False, threads=threads)
        assert bad == -1
        np.testing.assert_array_equal(y, expected(layer, x, -1))
    for where in (1032 * 13 + 1031, 1032 * 9 + 1025, 7):
        xb = x.copy()
        c = where % 1032
        xb.reshape(-1)[where] = layer.in_range[c, 0] - 1 if where % 2 else layer.in_range[c, 1] + 1
        assert raw(layer, xb, -1, acc32=False)[1] == where


# The AVX2 widen_pixels' runs by the pixel's input bytes (since h8-pix: 16 pixels up to 256 bytes, 8 up to 2 KiB,
# else 4) and the tensor's last pixel (its groups by the vector walk but the last 16, or 24, channels): channel counts
# on both sides of each threshold (72, 520: channels % 16 == 8), pixel counts around the runs.  The AVX-512 one
# (channels % 64 == 0; since h8-pix512: 16 pixels up to 2 KiB, else 4 (512 | 576 channels), and the tensor's last
# pixel by the vector walk, its last vector's second load masked at the array's end).
WIDE_CHANNELS = (64, 72, 512, 520, 576, 1024, 2048)


@pytest.mark.parametrize("one_range", [False, True])
@pytest.mark.parametrize("channels", WIDE_CHANNELS)
def test_widen_pixels_runs_by_width(channels, one_range):
    rng = np.random.default_rng(8100 + channels + one_range)
    layer = real_layer(channels, rng, "uint8" if channels % 16 else "int8", one_range=one_range)
    for n in (1, 2, 3, 4, 5, 7, 8, 9, 17, 49):
        if n * channels > 60000 and n != 49:
            continue
        x = inputs(layer, (1, n, 1, channels), -1, rng)
        exact_on_1_and_2_threads(layer, x)


@pytest.mark.parametrize("one_range", [False, True])
@pytest.mark.parametrize("channels", [520, 576, 2048, 24])
def test_widen_pixels_last_pixel(channels, one_range):
    """A violation in the tensor's last pixel (its vector part and its last channels, the formula's) is named; under
    out= (blocks of 2^14 elements: with 2048 channels the last block is the last pixel alone, with 520 channels x 32
    pixels it starts inside it) a violation anywhere leaves y as it was, and y is exact otherwise."""
    rng = np.random.default_rng(8200 + channels + one_range)
    layer = real_layer(channels, rng, one_range=one_range)
    n = {520: 32, 576: 29, 2048: 9, 24: 700}[channels]
    x = inputs(layer, (1, n, 1, channels), -1, rng)
    last = x.size - channels
    for where in (last, last + 7, last + channels - 17, last + channels - 16, last + channels - 9, x.size - 1,
                  last - 1, (1 << 14) + 3):
        c = where % channels
        for value in (layer.in_range[c, 1] + 1, layer.in_range[c, 0] - 1):
            xb = x.copy()
            xb.reshape(-1)[where] = value
            for threads in (1, 2):
                assert raw(layer, xb, -1, acc32=False, threads=threads)[1] == where, (where, value, threads)
            before = rng.integers(-128, 128, x.shape).astype(np.int8)
            y = before.copy()
            with pytest.raises(ValueError, match="outside the in_range"):
                layer.apply(xb, axis=-1, out=y, threads=1)
            np.testing.assert_array_equal(y, before)
    for threads in (1, 2):
        y = np.full(x.shape, 7, np.int8)
        layer.apply(x, axis=-1, out=y, threads=threads)
        np.testing.assert_array_equal(y, expected(layer, x, -1))


# The AVX-512 widen_pixels (csrc/fxbn/kernel_avx512.cpp; the AVX-512 ISAs, channels % 64 == 0, one [lo, hi] for every
# channel, per-channel ranges since h7-pixels, or no check): 64 channels' parameters in registers, runs of 16 pixels.
ZMM_PIXELS = (1, 2, 15, 16, 17, 33, 131)


@pytest.mark.parametrize("tout", ["int8", "uint8"])
@pytest.mark.parametrize("channels", [64, 128, 192])
def test_widen_pixels_one_range(channels, tout):
    rng = np.random.default_rng(2400 + channels)
    for bits in ((17, 17), (24, 24), (26, 26)):
        check_pixels(real_layer(channels, rng, tout, bits, one_range=True), ZMM_PIXELS, rng,
                     f"{channels} channels, {bits}")


@pytest.mark.parametrize("out_range", [(-128, 127), (-100, 90), (0, 255)])
@pytest.mark.parametrize("channels", [64, 128])
def test_widen_pixels_one_range_extremes(channels, out_range):
    """Full int32 ranges (no check) and the extremes of s, A, B, on 64 and 128 channels."""
    rng = np.random.default_rng(177 + channels)
    A, B, s = extremes(channels, rng)
    tout = "uint8" if out_range[0] == 0 else "int8"
    layer = fixed_layer(A, B, s, -(1 << 31), (1 << 31) - 1, tout, out_range)
    for shape in ((131, channels), (3, 5, 4, channels), (1, channels)):
        x = _active_inputs(layer, shape, -1, rng)
        y, bad = raw(layer, x, -1, acc32=False)
        assert bad == -1
        np.testing.assert_array_equal(y, expected(layer, x, -1), err_msg=f"{channels} channels, {shape}")


@pytest.mark.parametrize("channels", [576, 2048])
def test_widen_pixels_no_check_wide(channels):
    """Full int32 ranges (no check) and the extremes of s, A, B on the AVX-512 body's runs of 4 pixels (more than 2 KiB
    per pixel), pixel counts around the runs; the tensor's last pixel (its last vector's masked second load) included,
    and the last element's odd-lane partner at its extremes."""
    rng = np.random.default_rng(8300 + channels)
    A, B, s = extremes(channels, rng)
    layer = fixed_layer(A, B, s, -(1 << 31), (1 << 31) - 1, "int8", (-128, 127))
    for n in (1, 3, 4, 5, 8, 9, 13):
        x = _active_inputs(layer, (1, n, 1, channels), -1, rng)
        for value in (np.iinfo(np.int32).min, np.iinfo(np.int32).max):
            x.reshape(-1)[-1] = value
            x.reshape(-1)[-2] = -value - 1
            exact_on_1_and_2_threads(layer, x)


@pytest.mark.parametrize("channels", [64, 128])
def test_widen_pixels_one_range_threads_and_violations(channels):
    """2 threads, and a violation (above and below the shared range) named at its first index: in the first pixel,
    a middle one, the tensor's last pixel (scalar) and the one before it (the body), in either 8-channel group of a
    16-channel pair and in each 16-channel vector of a 64-channel block."""
    rng = np.random.default_rng(15 + channels)
    layer = real_layer(channels, rng, one_range=True)
    x = inputs(layer, (1, 37, 41, channels), -1, rng)
    exact_on_1_and_2_threads(layer, x)
    middle = x.size // channels // 2 * channels
    for where in (0, 5, 12, middle + 3, middle + 9, middle + 30, middle + channels - 1, x.size - 2 * channels + 1,
                  x.size - 2 * channels + 14, x.size - channels + 2, x.size - 1):
        for value in (layer.in_range[0, 1] + 1, layer.in_range[0, 0] - 1, np.iinfo(np.int32).min):
            named_violation(layer, x, where, value, (channels, where))


def test_widen_pixels_one_range_out_kept():
    """apply(x, out=y) with the shared range: exact, and a violation leaves y as it was."""
    rng = np.random.default_rng(19)
    layer = real_layer(64, rng, one_range=True)
    x = inputs(layer, (2, 60, 70, 64), -1, rng)
    for threads in (1, 2):
        y = np.full(x.shape, 7, np.int8)
        assert layer.apply(x, axis=-1, out=y, threads=threads) is y
        np.testing.assert_array_equal(y, expected(layer, x, -1))
        for where in ((1 << 14) + 5, x.size - 1, x.size - 65, 3):
            xb = x.copy()
            xb.reshape(-1)[where] = layer.in_range[0, 1] + 1
            before = rng.integers(-128, 128, x.shape).astype(np.int8)
            y = before.copy()
            with pytest.raises(ValueError, match="outside the in_range"):
                layer.apply(xb, axis=-1, out=y, threads=threads)
            np.testing.assert_array_equal(y, before)


def int16_layer(channels, rng, out_range=(-32768, 32767), in_range=(-32768, 32767)):
    """int16 -> int16 with 64-bit accumulators: multipliers of 19-31 bits (within int32) and shifts 20-29, which
    widen_to_high brings to 32 by scaling the input (x * 2^(32 - s) fits int32)."""
    s = rng.integers(20, 30, channels)
    A = np.round(np.exp2(s) * rng.uniform(0.3, 1.5, channels) * rng.choice([-1.0, 1.0], channels)).astype(np.int64)
    B = (rng.integers(-3000, 3000, channels) << s) + rng.integers(0, 1 << 20, channels)
    source = {"form": "affine", "a": np.zeros(channels), "b": np.zeros(channels)}
    if in_range == "per_channel":
        half = rng.integers(1000, 32000, channels)
        ranges = np.stack([-half, half - 1], axis=1).astype(np.int64)
    else:
        ranges = np.tile(np.array(in_range, np.int64), (channels, 1))
    return FixedPointBN(A, B, s.astype(np.int64), ranges, out_range, "half_up", source, "int16", "int16")


def int16_inputs(layer, shape, rng):
    lo, hi = layer.in_range[:, 0], layer.in_range[:, 1]
    x = np.floor(lo + rng.random(shape) * (hi - lo + 1)).astype(np.int64)
    x = np.clip(x, lo, hi).astype(np.int16)
    x.reshape(-1)[:2] = (lo[0], hi[1 % layer.channels] if shape[-1] > 1 else lo[0])
    return x


@pytest.mark.parametrize("in_range", [(-32768, 32767), (-20000, 20000), "per_channel"])
@pytest.mark.parametrize("out_range", [(-32768, 32767), (-5, 3000)])
@pytest.mark.parametrize("channels", [64, 128, 72, 16, 8])
def test_widen_pixels_int16(channels, out_range, in_range):
    """int16 -> int16 channel-last: the AVX-512 widen_pixels (channels % 64 == 0, one range or none), else the AVX2
    one (pairs of 8-channel groups; 72 and 8 channels: a lone last group)."""
    rng = np.random.default_rng(3100 + channels)
    layer = int16_layer(channels, rng, out_range, in_range)
    for n in ZMM_PIXELS:
        for shape in ((n, channels), (2, n, 1, channels)):
            x = int16_inputs(layer, shape, rng)
            want = expected(layer, x, -1)
            for threads in (1, 2):
                y, bad = raw(layer, x, -1, acc32=False, threads=threads)
                assert bad == -1
                np.testing.assert_array_equal(y, want, err_msg=f"{channels} channels, {shape}, {threads}")
            inside = (want > out_range[0]) & (want < out_range[1])
            assert n < 4 or inside.mean() > 0.03  # not just the clamps


@pytest.mark.parametrize("in_range", [(-20000, 20000), "per_channel"])
@pytest.mark.parametrize("channels", [64, 128, 72])
def test_widen_pixels_int16_violations(channels, in_range):
    """A violation of the int16 range named at its first index (1 and 2 threads); out= left untouched."""
    rng = np.random.default_rng(41 + channels)
    layer = int16_layer(channels, rng, in_range=in_range)
    x = int16_inputs(layer, (1, 29, 31, channels), rng)
    middle = x.size // channels // 2 * channels
    for where in (0, 12, middle + 9, middle + 30, middle + channels - 1, x.size - channels + 2, x.size - 1):
        c = where % channels
        for value in (layer.in_range[c, 1] + 1, layer.in_range[c, 0] - 1, -32768):
            named_violation(layer, x, where, value, (channels, where))
    xb = x.copy()
    xb.reshape(-1)[x.size - 3] = 32767
    before = rng.integers(-100, 100, x.shape).astype(np.int16)
    y = before.copy()
    with pytest.raises(ValueError, match="outside the in_range"):
        layer.apply(xb, axis=-1, out=y)
    np.testing.assert_array_equal(y, before)


# h7-pixels: the pixel bodies' per-channel range check (x - (lo - 2^31) > (hi - lo) - 2^31 into one mask; the AVX-512
# widen_pixels now takes per-channel ranges too), their in-loop save under out= (Job::save: each store's old bytes
# copied first, the whole chunk walked after a violation) and the tables kept in the layer's KernelCache.
SAVE_CHANNELS = [8, 16, 24, 64, 72, 128, 2048]


def per_channel_layer(tin, tout, channels, rng):
    """Per-channel asymmetric ranges and per-channel shifts (int32: 17-26-bit accumulators; int16: ranges inside
    int16, input shifts 3-12)."""
    if tin == "int16":
        return int16_layer(channels, rng, in_range="per_channel")
    return real_layer(channels, rng, tout)


def check_pixels_saved(layer, n_pixels, rng):
    """apply(out=) on 1 and 2 threads, twice (the second call takes the kept tables): exact; then a violation above
    and below the range, in one of channels 0-7 and in a later channel, at the first, a middle and the last pixel:
    named at its index (raw kernel and apply) and `out` left byte-for-byte as it was."""
    c = layer.channels
    tin, tout = layer.in_dtype, layer.out_dtype
    x = int16_inputs(layer, (n_pixels, c), rng) if tin == "int16" else inputs(layer, (1, n_pixels, 1, c), -1, rng)
    want = expected(layer, x, -1)
    for threads in (1, 2):
        for _ in range(2):
            y = np.full(x.shape, 7, tout)
            assert layer.apply(x, axis=-1, out=y, threads=threads) is y
            np.testing.assert_array_equal(y, want, err_msg=f"{c} channels, {x.shape}, t={threads}")
    lo, hi = layer.in_range[:, 0], layer.in_range[:, 1]
    info = np.iinfo(tin)
    later = [c - 1, c // 2 + 5] if c > 8 else [c - 1]
    for pixel in (0, n_pixels // 2, n_pixels - 1):
        for ch in [3 % c] + later:
            where = pixel * c + ch
            for value in (hi[ch] + 1, lo[ch] - 1):
                if not info.min <= value <= info.max:
                    continue
                xb = named_violation(layer, x, where, value, (c, pixel, ch))
                for threads in (1, 2):
                    before = rng.integers(info.min if tout == tin else np.iinfo(tout).min,
                                          np.iinfo(tout).max, x.shape, dtype=np.int64).astype(tout)
                    y = before.copy()
                    with pytest.raises(ValueError, match="outside the in_range"):
                        layer.apply(xb, axis=-1, out=y, threads=threads)
                    assert y.tobytes() == before.tobytes(), (c, pixel, ch, value, threads)


@pytest.mark.parametrize("tin,tout", [("int32", "int8"), ("int32", "uint8"), ("int16", "int16")])
@pytest.mark.parametrize("channels", SAVE_CHANNELS)
def test_widen_pixels_per_channel_ranges_saved(channels, tin, tout):
    """Small outputs spanning several 2^14-element blocks of out= (and a pixel split by a block's end where
    2^14 % channels != 0)."""
    rng = np.random.default_rng(7700 + channels)
    layer = per_channel_layer(tin, tout, channels, rng)
    check_pixels_saved(layer, max(3, (3 << 14) // channels + 3), rng)


@pytest.mark.parametrize("tin,tout", [("int32", "int8"), ("int16", "int16")])
@pytest.mark.parametrize("channels", [24, 64, 2048])
def test_widen_pixels_per_channel_ranges_saved_large(channels, tin, tout):
    """Outputs over 1 MiB: the save buffer is written with non-temporal stores where the offsets allow."""
    rng = np.random.default_rng(7800 + channels)
    layer = per_channel_layer(tin, tout, channels, rng)
    n = ((1 << 20) // np.dtype(tout).itemsize + 4096) // channels + 1
    check_pixels_saved(layer, n, rng)


PIXEL_GUARD_SCRIPT = r"""
import sys
import numpy as np
import fxbn
from fxbn import _core
from guard_pages import guarded

rng = np.random.default_rng(77)
runs = 0
for isa in sys.argv[1:]:
    _core.kernel_isa(isa)
    for c in (8, 24, 64, 128):
        k = rng.integers(16, 25, c)
        lo, hi = -(np.int64(1) << k) + rng.integers(0, 100, c), (np.int64(1) << k) - 1
        a = 200.0 / (hi - lo) * rng.uniform(0.5, 1.5, c)
        for per_channel in (True, False):
            rl, rh = (lo, hi) if per_channel else (np.full(c, lo.min()), np.full(c, hi.max()))
            layer = fxbn.from_affine(a, rng.uniform(-20, 20, c), in_range=(rl, rh), in_dtype="int32")
            for pixels in (1, 2, 33, 257):
                x = guarded((pixels, c), "int32")
                x[...] = np.clip(rng.normal(0, 1, (pixels, c)) * (rh - rl) / 8, rl, rh).astype(np.int32)
                y = guarded((pixels, c), "int8")
                layer.apply(x, axis=-1, out=y, threads=1)
                assert np.array_equal(y, layer.apply(np.array(x), axis=-1)), (isa, c, pixels)
                x[-1, -1] = rh[-1] + 1
                y[...] = 5
                try:
                    layer.apply(x, axis=-1, out=y, threads=1)
                    raise AssertionError("no violation reported")
                except ValueError:
                    pass
                assert np.all(y == 5), (isa, c, pixels)
                runs += 1
print("ok", runs)
"""


def test_widen_pixels_no_access_past_the_arrays(x86_isa):
    """Channel-last int32 -> int8 inputs and outputs ending right before an inaccessible page (per-channel and one
    range, out= with its in-loop save, a violation in the very last element): an overrun is a segfault."""
    import guard_pages
    res = guard_pages.run(PIXEL_GUARD_SCRIPT, x86_isa)
    assert res.returncode == 0 and res.stdout.startswith("ok"), (res.returncode, res.stdout, res.stderr[-2000:])


# h7-pixavx2: the AVX2 widen_pixels with 8-bit outputs gathers the high dwords with one vshufps (channels [0, 2, 1, 3]
# per 128-bit lane) and shifts each lane by its channel's s - 32 from the count table permuted to that order; a
# vpshufb after the packs puts the bytes back.  Layers whose neighbouring channels' shifts differ by 0, 1 and many
# bits catch a count in the wrong lane and bytes left in vshufps order.
def shift_pattern_layer(channels, tout, pattern, rng):
    """Per-channel s in [32, 62] by pattern ("equal", "one_bit": 40 / 41 alternating, "many": 32..62 with channels 1
    and 2 apart), per-channel ranges 2^(s-20) (within int32) and A giving outputs across the range."""
    c = np.arange(channels)
    if pattern == "equal":
        s = np.full(channels, 44)
    elif pattern == "one_bit":
        s = 40 + (c % 2)
    else:
        s = rng.integers(32, 63, channels)
        s[1], s[2] = 33, 61
    k = np.clip(s - 20, 8, 31)
    lo, hi = -(np.int64(1) << k), (np.int64(1) << k) - 1
    sign = rng.choice([-1, 1], channels)
    A = np.minimum(np.round(rng.uniform(80, 120, channels) * 2.0 ** (s - k)), (1 << 31) - 1).astype(np.int64) * sign
    offset = 127 if tout == "uint8" else 0
    B = np.array([(int(rng.integers(-30, 31)) + offset) << int(sc) if sc <= 54
                  else int(rng.integers(-(1 << 60), 1 << 60)) for sc in s], np.int64)
    return fixed_layer(A, B, s, lo, hi, tout, (0, 255) if tout == "uint8" else (-128, 127))


@pytest.mark.parametrize("pattern", ["equal", "one_bit", "many"])
@pytest.mark.parametrize("tout", ["int8", "uint8"])
@pytest.mark.parametrize("channels", [8, 16, 24, 72])
def test_widen_pixels_bytes_shift_order(channels, tout, pattern):
    rng = np.random.default_rng(9100 + channels)
    layer = shift_pattern_layer(channels, tout, pattern, rng)
    for n in (1, 2, 3, 5, 17, 33):
        for shape in ((n, channels), (2, n, 1, channels)):
            x = inputs(layer, shape, -1, rng)
            y, bad = raw(layer, x, -1, acc32=False)
            assert bad == -1
            np.testing.assert_array_equal(y, expected(layer, x, -1), err_msg=f"{channels} {pattern} {shape}")


@pytest.mark.parametrize("tout", ["int8", "uint8"])
@pytest.mark.parametrize("channels", [16, 24])
def test_widen_pixels_bytes_shift_order_saved(channels, tout):
    """The same layers under out=: exact, and every violation leaves `out` untouched."""
    rng = np.random.default_rng(9200 + channels)
    check_pixels_saved(shift_pattern_layer(channels, tout, "many", rng), 37, rng)


# The AVX2 widen_pixels on a checked int32 input over 1 MiB whose runs are at most 4 KiB (since h9-bigpix: its inputs
# prefetched in address order kSeqAhead bytes ahead, a second instantiation of the walk): channels % 16 == 8 (24,
# 56), 64 and 128 (runs of 16 and 8 pixels), one range and per-channel ranges, the tensor just at 1 MiB (the other
# walk) and past it, chunks of 2 threads, violations in the first, a middle and the last pixel (its scalar channels
# and the vector ones), out= untouched on a violation.
@pytest.mark.parametrize("one_range", [True, False])
@pytest.mark.parametrize("channels", [24, 56, 64, 128])
def test_widen_pixels_sequential_prefetch_large(channels, one_range):
    rng = np.random.default_rng(9900 + channels + one_range)
    layer = real_layer(channels, rng, "int8" if channels % 3 else "uint8", one_range=one_range)
    at_limit = -(-(1 << 18) // channels)  # pixels of the first tensor over 1 MiB
    for pixels in (at_limit - 1, at_limit + 1, at_limit + 37):
        x = inputs(layer, (1, pixels, 1, channels), -1, rng)
        exact_on_1_and_2_threads(layer, x)
    middle = x.size // channels // 2 * channels
    for where in (3, middle - channels + 9, middle + 17, x.size - 2 * channels + 30, x.size - 20, x.size - 1):
        c = where % channels
        xb = x.copy()
        xb.reshape(-1)[where] = layer.in_range[c, 1] + 1 if where % 2 else layer.in_range[c, 0] - 1
        for threads in (1, 2):
            _, bad = raw(layer, xb, -1, acc32=False, threads=threads)
            assert bad == where, (channels, where, threads, bad)
            before = rng.integers(0, 100, x.shape).astype(layer.out_dtype)
            y = before.copy()
            with pytest.raises(ValueError, match="outside the in_range"):
                layer.apply(xb, axis=-1, out=y, threads=threads)
            assert y.tobytes() == before.tobytes(), (channels, where, threads)
    for threads in (1, 2):
        y = np.zeros(x.shape, layer.out_dtype)
        assert layer.apply(x, axis=-1, out=y, threads=threads) is y
        np.testing.assert_array_equal(y, expected(layer, x, -1))


# h10-pix: the AVX2 widen_pixels' per-channel check with int32 inputs (kPixelPerLane: per lane x - lo, mod 2^32, into
# one vpmaxud accumulator per 8-channel group of a group pair and run, compared with hi - lo at the pair's end;
# ``pixel_lane_check``).  Ranges reaching int32's ends make x - lo exceed 2^31 (only an unsigned max and compare flag
# them); a violation in each channel of a pair (either accumulator), at the runs' edges and in the tensor's last pixel.
LANE_CHECK_PIXELS = 37  # runs of 16 pixels: 0-15, 16-31, then 32-35 and the tensor's last pixel (its own walk)


def lane_check_layer(channels, rng):
    """Per-channel ranges (16-31 bits; a few channels within 1-3 of int32's ends) and s of 32-39, A scaled so that the
    outputs spread over int8."""
    c = channels
    k = rng.integers(16, 31, c)
    lo = -(np.int64(1) << k) + rng.integers(0, 1000, c)
    hi = (np.int64(1) << k) - 1 - rng.integers(0, 1000, c)
    wide = rng.choice(c, size=max(2, c // 8), replace=False)
    k[wide] = 31
    lo[wide] = -(np.int64(1) << 31) + rng.integers(1, 4, len(wide))
    hi[wide] = (np.int64(1) << 31) - 1 - rng.integers(1, 4, len(wide))
    s = rng.integers(32, 40, c)
    A = rng.integers(np.int64(1) << (s + 5 - k), np.int64(1) << (s + 6 - k)) * rng.choice([-1, 1], c)
    B = rng.integers(-(np.int64(1) << (s - 2)), np.int64(1) << (s - 2))
    return fixed_layer(A, B, s, lo, hi, "int8", (-128, 127))


@pytest.mark.parametrize("channels", [16, 24, 64, 72])
def test_widen_pixels_lane_check_every_channel(channels):
    """Exact outputs with every channel's range ends present (1 and 2 threads); then, at every channel of the first
    pixel, the runs' edges (15, 16, 31, 32), the one before the last and the last: a value above and below the range
    (and int32's ends where the range does not reach them) named at its index by the kernel on 1 and 2 threads, and
    apply(out=) raising with `out` byte for byte as it was."""
    rng = np.random.default_rng(9100 + channels)
    layer = lane_check_layer(channels, rng)
    n, c = LANE_CHECK_PIXELS, channels
    x = inputs(layer, (1, n, 1, c), -1, rng)
    exact_on_1_and_2_threads(layer, x)
    lo, hi = layer.in_range[:, 0], layer.in_range[:, 1]
    i32 = np.iinfo(np.int32)
    before = rng.integers(-128, 128, x.shape).astype(np.int8)
    for pixel in (0, 15, 16, 31, 32, n - 2, n - 1):
        for ch in range(c):
            where = pixel * c + ch
            for value in {int(hi[ch]) + 1, int(lo[ch]) - 1, i32.max, i32.min}:
                if not (i32.min <= value <= i32.max) or lo[ch] <= value <= hi[ch]:
                    continue
                xb = named_violation(layer, x, where, value, (c, pixel, ch))
                y = before.copy()
                with pytest.raises(ValueError, match="outside the in_range"):
                    layer.apply(xb, axis=-1, out=y, threads=1 + where % 2)
                assert y.tobytes() == before.tobytes(), (c, pixel, ch, value)


# h10-late: the AVX2 widen_pixels (csrc/fxbn/kernel_avx2.cpp; on the AVX-512 ISAs where channels % 64 != 0), int32
# -> 8-bit with channels % 16 == 0: a pixel split by a chunk's ends (2 threads: run_chunks cuts at a multiple of 64
# elements; out= beyond 1 MiB: blocks of 2^14) walked 16 channels at a time as tiles with themselves (`part`), and
# the tensor's last pixel likewise but its last 16 elements (the formula).  2056 channels (% 16 == 8) take the
# formula there.  Two threads only from 2^18 bytes read + written (kernel.cpp thread_count): split_pixels() picks a
# pixel count whose two chunks meet inside a pixel.  Small channel counts (48, 144) split too.
WIDE_PIXEL_CHANNELS = (48, 144, 1024, 1040, 2048, 2064, 2056)


def split_pixels(channels):
    """The smallest pixel count whose tensor runs on 2 threads with the cut inside a pixel, and that cut."""
    n = -(-(1 << 18) // (5 * channels))
    while True:
        total = n * channels
        cut = ((total + 1) // 2 + 63) // 64 * 64
        if cut % channels:
            return n, cut
        n += 1


@pytest.mark.parametrize("one_range", [False, True])
@pytest.mark.parametrize("channels", WIDE_PIXEL_CHANNELS)
def test_widen_pixels_wide_exact(channels, one_range):
    rng = np.random.default_rng(10100 + channels + one_range)
    layer = real_layer(channels, rng, "uint8" if channels % 32 else "int8", one_range=one_range)
    for n in (1, 2, 3, 5, 6, split_pixels(channels)[0]):
        x = inputs(layer, (1, n, 1, channels), -1, rng)
        exact_on_1_and_2_threads(layer, x)


@pytest.mark.parametrize("one_range", [False, True])
@pytest.mark.parametrize("channels", [144, 1040, 2048])
def test_widen_pixels_wide_violations(channels, one_range):
    """A violation at the first and last element, at group and pixel edges, on both sides of the 2-thread cut (inside
    a pixel), in the tensor's last pixel (its vector part and the formula's last 16) is named on 1 and 2 threads;
    under out= y is left as it was (1 and 2 threads)."""
    rng = np.random.default_rng(10200 + channels + one_range)
    layer = real_layer(channels, rng, one_range=one_range)
    n, cut = split_pixels(channels)
    x = inputs(layer, (1, n, 1, channels), -1, rng)
    last = x.size - channels
    cut_pixel = cut // channels * channels
    places = (0, 7, 8, 15, 16, channels - 1, channels, 4 * channels + 17, cut_pixel, cut_pixel + 9, cut - 1, cut,
              cut + 15, cut + 16, cut_pixel + channels - 1, last - 1, last, last + 40, x.size - 17, x.size - 16,
              x.size - 9, x.size - 1)
    for k, where in enumerate(places):
        c = where % channels
        value = layer.in_range[c, 1] + 1 if k % 2 else layer.in_range[c, 0] - 1
        xb = x.copy()
        xb.reshape(-1)[where] = value
        for threads in (1, 2):
            assert raw(layer, xb, -1, acc32=False, threads=threads)[1] == where, (where, threads)
        for threads in (1, 2):
            before = rng.integers(-128, 128, x.shape).astype(np.int8)
            y = before.copy()
            with pytest.raises(ValueError, match="outside the in_range"):
                layer.apply(xb, axis=-1, out=y, threads=threads)
            np.testing.assert_array_equal(y, before, err_msg=f"{where}, {threads} threads")


def test_widen_pixels_wide_unaligned_and_out_blocks():
    """x and y at odd addresses (x 4 bytes past a 64-byte boundary, y 1 byte), and out= beyond 1 MiB (blocks of 2^14
    elements, most ending inside a pixel): exact, and y untouched by a violation in a late block."""
    rng = np.random.default_rng(10300)
    channels = 2048
    layer = real_layer(channels, rng, one_range=True)
    for n, threads in ((7, 1), (split_pixels(channels)[0], 2), (520, 1), (520, 2)):
        xa = inputs(layer, (1, n, 1, channels), -1, rng)
        xbuf = np.empty(xa.size + 17, np.int32)
        first = (-(xbuf.ctypes.data // 4) % 16) + 1  # 4 bytes past a 64-byte boundary
        x = xbuf[first:first + xa.size].reshape(xa.shape)
        x[...] = xa
        ybuf = np.empty(xa.size + 64, np.int8)
        yfirst = (-ybuf.ctypes.data % 64) + 1
        y = ybuf[yfirst:yfirst + xa.size].reshape(xa.shape)
        assert layer.apply(x, axis=-1, out=y, threads=threads) is y
        np.testing.assert_array_equal(y, expected(layer, x, -1), err_msg=f"{n} pixels, {threads} threads")
        if n == 520:
            for where in (x.size - 3 * (1 << 14) + 5, x.size - 1):
                xb = x.copy()
                xb.reshape(-1)[where] = layer.in_range[0, 1] + 1
                before = rng.integers(-128, 128, x.shape).astype(np.int8)
                y[...] = before
                with pytest.raises(ValueError, match="outside the in_range"):
                    layer.apply(xb, axis=-1, out=y, threads=threads)
                np.testing.assert_array_equal(y, before)


def test_widen_pixels_int16_split_pixel():
    """int16 -> int16 channel-last, 2048 channels, one range (the AVX-512 widen_pixels on its ISAs, the AVX2 one on
    avx2; both take a pixel split by the 2-thread cut by the formula): exact on 1 and 2 threads, a violation on both
    sides of the cut named, out= untouched."""
    rng = np.random.default_rng(10400)
    channels = 2048
    layer = int16_layer(channels, rng, in_range=(-20000, 20000))
    x = int16_inputs(layer, (1, 33, 1, channels), rng)  # 2 threads cut at element 33792: inside pixel 16
    cut = 33792
    assert cut % channels and x.size * 4 >= 1 << 18
    want = expected(layer, x, -1)
    for threads in (1, 2):
        y, bad = raw(layer, x, -1, acc32=False, threads=threads)
        assert bad == -1
        np.testing.assert_array_equal(y, want)
    for where in (cut - channels // 2, cut - 1, cut, cut + 63, cut + 64, cut + channels // 2 - 1):
        xb = x.copy()
        xb.reshape(-1)[where] = 20001 if where % 2 else -20001
        for threads in (1, 2):
            assert raw(layer, xb, -1, acc32=False, threads=threads)[1] == where, (where, threads)
            before = rng.integers(-100, 100, x.shape).astype(np.int16)
            y = before.copy()
            with pytest.raises(ValueError, match="outside the in_range"):
                layer.apply(xb, axis=-1, out=y, threads=threads)
            np.testing.assert_array_equal(y, before)


# h11-shift: the AVX2 widen_pixels with 8-bit outputs where every channel's t = s - 32 is 0 after widen_to_high (s <= 32
# and A*2^(32 - s) within int32: 17-bit accumulators, bench "int32->int8 +-2^16") takes a body without the per-lane
# vpsravd (widen_pixels<.., kShiftNone>, ``avx2_widen_pixels_unshifted``); one channel with t > 0 (1, 8, 9) sends the
# layer back to the vpsravd body.  Inputs near each channel's output edges (the values whose output is qmin - 1, qmin,
# qmax, qmax + 1, and 0 / -1) and at the range ends; 1 and 2 threads, violations, out= and split pixels.
def unshifted_layer(channels, rng, tout="int8", shifts=(16, 33), one_range=False, extra=None):
    """Per-channel s in [shifts) (t = 0 after widen_to_high when s <= 32), ranges of 2^14..2^20 (one range: 2^16),
    A giving outputs over about 1.4x the output range (both clamps reached), B with random low bits.  extra: {channel:
    s} forced (with A, B scaled to keep the outputs spread)."""
    c = channels
    s = rng.integers(shifts[0], shifts[1], c)
    if extra:
        for ch, sc in extra.items():
            s[ch] = sc
    k = np.full(c, 16) if one_range else rng.integers(14, 21, c)
    lo, hi = -(np.int64(1) << k), (np.int64(1) << k) - 1
    A = np.round(360.0 / 2.0 ** (k + 1) * 2.0 ** s * rng.uniform(0.6, 1.0, c) * rng.choice([-1, 1], c)).astype(np.int64)
    A = np.where(A == 0, 1, A)
    offset = 128 if tout == "uint8" else 0
    B = ((rng.integers(-40, 41, c) + offset).astype(np.int64) << s) + rng.integers(0, 1 << 12, c)
    out_range = (0, 255) if tout == "uint8" else (-128, 127)
    return fixed_layer(A, B, s, lo, hi, tout, out_range)


def edge_inputs(layer, shape, rng):
    """Random inputs in range, a quarter of them replaced by the inputs whose exact outputs lie at the output edges
    (qmin - 1 .. qmin + 1, qmax - 1 .. qmax + 1, -1, 0) give or take one."""
    x = inputs(layer, shape, -1, rng)
    c = layer.channels
    A, B, s = (v.astype(object) for v in (layer.multiplier, layer.bias, layer.shift))
    qmin, qmax = layer.out_range
    flat = x.reshape(-1, c)
    lo, hi = layer.in_range[:, 0], layer.in_range[:, 1]
    for row in range(0, flat.shape[0], 4):
        for ch in range(c):
            target = int(rng.choice([qmin - 1, qmin, qmin + 1, qmax - 1, qmax, qmax + 1, -1, 0]))
            v = ((target << int(s[ch])) - int(B[ch])) // int(A[ch]) + int(rng.integers(-1, 2))
            flat[row, ch] = min(max(v, int(lo[ch])), int(hi[ch]))
    return x


def check_exact(layer, x):
    want = expected(layer, x, -1)
    for threads in (1, 2):
        y, bad = raw(layer, x, -1, acc32=False, threads=threads)
        assert bad == -1
        np.testing.assert_array_equal(y, want, err_msg=f"{layer.channels} channels, {x.shape}, {threads} threads")
    return want


@pytest.mark.parametrize("one_range", [False, True])
@pytest.mark.parametrize("tout", ["int8", "uint8"])
@pytest.mark.parametrize("channels", [8, 16, 24, 64, 72, 2048])
def test_widen_pixels_unshifted_exact(channels, tout, one_range):
    """Every channel t = 0 after widen_to_high: exact at the output edges and range ends, pixel counts around the
    runs and tiles (odd last pixels, lone last groups), 1 and 2 threads; the outputs reach both clamps and the
    inside."""
    rng = np.random.default_rng(11100 + channels + 7 * one_range + (tout == "uint8"))
    layer = unshifted_layer(channels, rng, tout, one_range=one_range)
    for n in (1, 2, 3, 5, 17, 33) if channels < 2048 else (1, 3, 9):
        x = edge_inputs(layer, (1, n, 1, channels), rng)
        want = check_exact(layer, x)
        if n >= 17:
            assert (want == layer.out_range[0]).any() and (want == layer.out_range[1]).any()
            assert ((want > layer.out_range[0]) & (want < layer.out_range[1])).mean() > 0.3


@pytest.mark.parametrize("tout", ["int8", "uint8"])
@pytest.mark.parametrize("t", [1, 8, 9])
@pytest.mark.parametrize("channels", [16, 24, 64])
def test_widen_pixels_one_channel_shifted(channels, t, tout):
    """Every channel t = 0 but one with t = 1, 8 or 9 (s = 32 + t; in the last channel, channel 0, or a middle one):
    the vpsravd body serves the whole layer, exactly."""
    for ch in (channels - 1, 0, channels // 2 + 3):
        rng = np.random.default_rng(11200 + channels + t + ch)
        layer = unshifted_layer(channels, rng, tout, extra={ch: 32 + t})
        for n in (2, 5, 33):
            check_exact(layer, edge_inputs(layer, (1, n, 1, channels), rng))


@pytest.mark.parametrize("tout", ["int8", "uint8"])
@pytest.mark.parametrize("channels", [16, 24, 64, 72])
def test_widen_pixels_mixed_small_shifts(channels, tout):
    """t in 0..8 per channel (s of 16..40: bench's +-2^23 layer), t = 8 and t = 0 both present, and every t = 8."""
    rng = np.random.default_rng(11300 + channels)
    for shifts, extra in (((16, 41), {0: 40, 1: 16}), ((40, 41), None)):
        layer = unshifted_layer(channels, rng, tout, shifts=shifts, extra=extra)
        for n in (1, 3, 17, 33):
            check_exact(layer, edge_inputs(layer, (1, n, 1, channels), rng))


@pytest.mark.parametrize("one_range", [False, True])
@pytest.mark.parametrize("channels", [16, 24, 64, 2048])
def test_widen_pixels_unshifted_violations_saved(channels, one_range):
    """Every t = 0: apply(out=) exact on 1 and 2 threads; violations above and below the range at the first, a middle
    and the last pixel named (raw kernel, 1 and 2 threads), out= left byte for byte as it was."""
    rng = np.random.default_rng(11400 + channels + one_range)
    layer = unshifted_layer(channels, rng, "int8" if channels % 3 else "uint8", one_range=one_range)
    check_pixels_saved(layer, max(3, (1 << 14) // channels + 3) if channels < 2048 else 5, rng)


@pytest.mark.parametrize("channels", [48, 144, 2048])
def test_widen_pixels_unshifted_split_pixels(channels):
    """Every t = 0, a tensor whose 2-thread cut falls inside a pixel (`part`): exact on 1 and 2 threads, a violation on
    both sides of the cut and in the tensor's last pixel named, out= untouched."""
    rng = np.random.default_rng(11500 + channels)
    layer = unshifted_layer(channels, rng)
    n, cut = split_pixels(channels)
    x = edge_inputs(layer, (1, n, 1, channels), rng)
    check_exact(layer, x)
    for where in (cut - 1, cut, cut + 17, x.size - channels + 5, x.size - 1):
        c = where % channels
        xb = named_violation(layer, x, where, layer.in_range[c, 1] + 1 if where % 2 else layer.in_range[c, 0] - 1,
                             (channels, where))
        for threads in (1, 2):
            before = rng.integers(-128, 128, x.shape).astype(np.int8)
            y = before.copy()
            with pytest.raises(ValueError, match="outside the in_range"):
                layer.apply(xb, axis=-1, out=y, threads=threads)
            assert y.tobytes() == before.tobytes(), (channels, where, threads)


# h11-i16: widen_pixels_words (csrc/fxbn/kernel_avx2.cpp; the AVX2 ISA, and the AVX-512 ones where channels % 64 != 0):
# int16 -> int16 channel-last where every channel admits input_shift_16 (int16_layer's do: s 20-29, |A*x + B| well
# under 2^47), a group pair's 16 lanes from one 32-byte load.  A layer with one channel that does not admit it takes
# widen_pixels (xk = 32 - s per channel) for every channel.
WORDS_CHANNELS = [8, 16, 24, 64, 72, 2048]


def words_layer(channels, rng, in_range, out_range=(-32768, 32767), fallback=None):
    """int16_layer, or with channel 5 not admitting input_shift_16 (fallback): ``s48`` (s + 16 > 63), ``s12`` (s < 16,
    a small A that widen_to_high scales instead), ``b_wide`` (s = 40, |B| >= 2^47: (A*x + B) * 2^16 leaves int64)."""
    layer = int16_layer(channels, rng, out_range, in_range)
    if fallback is None:
        return layer
    A, B, s = layer.multiplier.copy(), layer.bias.copy(), layer.shift.copy()
    c = 5
    if fallback == "s48":
        A[c], s[c], B[c] = (1 << 30) - 12345, 48, (int(rng.integers(-3000, 3000)) << 48) + 777
    elif fallback == "s12":
        A[c], s[c], B[c] = -1000, 12, int(rng.integers(-(1 << 20), 1 << 20))
    else:
        A[c], s[c], B[c] = (1 << 31) - 1, 40, (1 << 48) + 12345
    source = {"form": "affine", "a": np.zeros(channels), "b": np.zeros(channels)}
    return FixedPointBN(A, B, s, layer.in_range, out_range, "half_up", source, "int16", "int16")


def words_inputs(layer, n_pixels, rng):
    """(n_pixels, channels) inputs in range, every channel's lo in pixel 0 and hi in the last pixel; 65536 elements
    or more split by 2 threads at a 64-element multiple (inside a pixel unless channels divides it)."""
    x = int16_inputs(layer, (n_pixels, layer.channels), rng)
    x[0], x[-1] = layer.in_range[:, 0], layer.in_range[:, 1]
    return x


def misaligned(a):
    """A copy of `a` 2 bytes past a 32-byte boundary."""
    buf = np.empty(a.nbytes + 64, np.uint8)
    off = (-buf.ctypes.data) % 32 + 2
    v = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
    v[...] = a
    return v


def two_thread_pixels(channels):
    """Pixels enough for 2 threads (256 KiB of int16 inputs and outputs), plus 3."""
    return (1 << 16) // channels + 3


@pytest.mark.parametrize("fallback", [None, "s48", "s12", "b_wide"])
@pytest.mark.parametrize("in_range", [(-32768, 32767), (-20000, 20000), "per_channel"])
@pytest.mark.parametrize("channels", WORDS_CHANNELS)
def test_widen_pixels_words_exact(channels, in_range, fallback):
    """Exact on 1 and 2 threads (raw kernel), and through apply(out=) with unaligned inputs and outputs; int16's
    whole output range (no min/max) and a narrow one; no check, one range, per-channel ranges."""
    rng = np.random.default_rng(11160 + channels)
    for out_range in ((-32768, 32767), (-5, 3000)):
        layer = words_layer(channels, rng, in_range, out_range, fallback)
        for n in (1, 2, 17, two_thread_pixels(channels)):
            x = words_inputs(layer, n, rng)
            want = expected(layer, x, -1)
            exact_on_1_and_2_threads(layer, x)
            for threads in (1, 2):
                xu, yu = misaligned(x), misaligned(np.full(x.shape, 9, np.int16))
                assert layer.apply(xu, axis=-1, out=yu, threads=threads) is yu
                np.testing.assert_array_equal(yu, want, err_msg=f"{channels} {in_range} {fallback} {n} {threads}")
            inside = (want > out_range[0]) & (want < out_range[1])
            assert n < 17 or inside.mean() > 0.03  # not just the clamps


@pytest.mark.parametrize("fallback", [None, "s12"])
@pytest.mark.parametrize("in_range", [(-20000, 20000), "per_channel"])
@pytest.mark.parametrize("channels", WORDS_CHANNELS)
def test_widen_pixels_words_violations(channels, in_range, fallback):
    """A violation in every channel (above or below its range; pixels spread over the tensor, the pixel the 2-thread
    cut splits among them) named at its index on 1 and 2 threads; apply(out=) raises and leaves out= byte-identical
    (unaligned out=, 1 and 2 threads)."""
    rng = np.random.default_rng(11170 + channels)
    layer = words_layer(channels, rng, in_range, fallback=fallback)
    n = two_thread_pixels(channels)
    x = words_inputs(layer, n, rng)
    total = x.size
    cut = ((total + 1) // 2 + 63) // 64 * 64
    cut_pixel = cut // channels
    step = max(1, channels // 64)  # 2048 channels: every channel's index but a stride of the out= checks
    for c in range(channels):
        pixel = (cut_pixel, 0, n - 1, (c * 7919) % n)[c % 4]
        where = pixel * channels + c
        value = layer.in_range[c, 1] + 1 if c % 2 else layer.in_range[c, 0] - 1
        xb = named_violation(layer, x, where, value, (channels, c, pixel))
        if c % step:
            continue
        for threads in (1, 2):
            before = rng.integers(-32768, 32767, x.shape, endpoint=True).astype(np.int16)
            y = misaligned(before)
            with pytest.raises(ValueError, match="outside the in_range"):
                layer.apply(misaligned(xb), axis=-1, out=y, threads=threads)
            assert y.tobytes() == before.tobytes(), (channels, c, value, threads)


@pytest.mark.parametrize("channels", [24, 72, 2048])
def test_widen_pixels_words_int16_extremes(channels):
    """Inputs at int16's ends (-32768, 32767) in every channel and lane position, |A| up to 2^31 - 1 and B near the
    input_shift_16 limit: (A*x + B) * 2^16 just inside int64."""
    rng = np.random.default_rng(11180 + channels)
    A = rng.choice([(1 << 31) - 1, -(1 << 31) + 1, (1 << 29) + 3, -(1 << 20) - 1], channels)
    s = rng.integers(30, 48, channels)  # s + 16 <= 63
    B = rng.integers(-(1 << 45), 1 << 45, channels)  # |A*x + B| < 2^46 + 2^45 < 2^47
    source = {"form": "affine", "a": np.zeros(channels), "b": np.zeros(channels)}
    ranges = np.tile(np.array([-32768, 32767], np.int64), (channels, 1))
    for out_range in ((-32768, 32767), (-1000, 1000)):
        layer = FixedPointBN(A, B, s, ranges, out_range, "half_up", source, "int16", "int16")
        ends = np.array([-32768, 32767, -32767, 32766, 0, -1], np.int16)
        x = rng.choice(ends, (two_thread_pixels(channels), channels)).astype(np.int16)
        exact_on_1_and_2_threads(layer, x)
