"""The 8-bit template (csrc/fxbn/kernel_byte.cpp): 8-bit -> 8-bit channel-last layers on the AVX2 and AVX-512 byte
bodies, whose per-channel parameters are admitted only by an exhaustive check on every input of the channel's range.

Every channel sees all 256 input values here, so an output equal to the int64 formula on these tensors is the
formula on the whole input type.  The check itself is tested against an independent NumPy emulation of the
instruction sequence: a parameter changed by one unit is rejected exactly when it changes some in-range output."""
import numpy as np
import pytest

import fxbn
from fxbn import _core
from fxbn.api import DTYPE_RANGES

BYTE_ISAS = []
for _name in ("avx2", "x86-64-v4", "x86-64-v4+vbmi+vnni"):
    _before = _core.kernel_isa()
    try:
        _core.kernel_isa(_name)
        BYTE_ISAS.append(_name)
    except ValueError:
        pass
    finally:
        _core.kernel_isa(_before)

PAIRS = [("uint8", "uint8"), ("int8", "int8"), ("uint8", "int8"), ("int8", "uint8")]


@pytest.fixture(params=BYTE_ISAS or [None])
def isa(request):
    if request.param is None:
        pytest.skip("no x86 AVX2 / AVX-512 body on this machine")
    before = _core.kernel_isa()
    _core.kernel_isa(request.param)
    yield request.param
    _core.kernel_isa(before)


def bn(channels, tin, tout, rng, in_range=None, out_range=None):
    """A quantized BN like bench.py's, plus negative gammas (decreasing channels) and a few near-constant ones."""
    gamma = rng.uniform(0.5, 1.5, channels) * rng.choice([-1.0, 1.0], channels, p=[0.25, 0.75])
    gamma[::7] *= 0.02
    params = dict(gamma=gamma.astype(np.float32).astype(np.float64),
                  beta=rng.uniform(-0.5, 0.5, channels).astype(np.float32).astype(np.float64),
                  mean=rng.uniform(-0.3, 0.3, channels).astype(np.float32).astype(np.float64),
                  var=rng.uniform(0.5, 2.0, channels).astype(np.float32).astype(np.float64), eps=1e-5,
                  in_scale=0.05, out_scale=rng.uniform(0.02, 0.08),
                  in_zero_point=128 if tin == "uint8" else 0, out_zero_point=128 if tout == "uint8" else 0)
    return fxbn.from_batchnorm(**params, in_dtype=tin, out_dtype=tout, rounding="half_even", in_range=in_range,
                               out_range=out_range)


def expected(layer, x):
    acc = x.astype(np.int64) * layer.multiplier + layer.bias
    return np.clip(acc >> layer.shift, *layer.out_range).astype(layer.out_dtype)


def all_values(layer, outer, rng):
    """(outer, C) inputs: channel c sees every value of its range (outer >= 256), shuffled per channel."""
    lo, hi = layer.in_range[:, 0], layer.in_range[:, 1]
    x = np.empty((outer, layer.channels), np.int64)
    for c in range(layer.channels):
        vals = np.arange(lo[c], hi[c] + 1)
        x[:, c] = np.resize(vals, outer)
        rng.shuffle(x[:, c])
    return x.astype(layer.in_dtype)


def kernel(layer):
    return _core.Kernel(layer.multiplier, layer.bias, layer._shift32, layer._lo, layer._hi, *layer.out_range,
                        bool(np.all(layer.accumulator_bits <= 32)))


def emulate(params, x, in_signed, qmin, qmax, out_signed):
    """NumPy model of the byte bodies' lane: vpxor, vpunpck*bw(0, .), vpmulhuw, vpaddw, vpsubusw, vpmulhuw,
    vpackuswb, vpmaxub, vpminub, vpxor 0x80 -- written from the instruction definitions, not from the C++."""
    m, p, n, sm, flip = (params[:, k].astype(np.int64) for k in range(5))
    xb = x.astype(np.int64) & 0xFF
    w = (xb ^ flip) << 8
    u = (w * m) >> 16
    a = (u + p) & 0xFFFF
    v = np.maximum(a - n, 0)
    q = (v * sm) >> 16
    t = np.where(q >= 0x8000, q - 0x10000, q)
    ob = 0x80 if out_signed else 0
    b = np.clip(np.clip(t, 0, 255), qmin + ob, qmax + ob)
    out = (b ^ ob).astype(np.uint8)
    return out.view(np.int8) if out_signed else out


@pytest.mark.parametrize("tin,tout", PAIRS)
@pytest.mark.parametrize("channels", [64, 3, 67, 100])
def test_every_input_of_every_channel(isa, tin, tout, channels):
    """NHWC with C a multiple of 32/64 and not (3, 67, 100), lengths with tails, 1 and 2 threads (2^20 elements are
    split), against the int64 formula on all 256 inputs of every channel; the template serves the channels."""
    rng = np.random.default_rng(channels * 7 + len(tin) + 3 * len(tout))
    layer = bn(channels, tin, tout, rng)
    k = kernel(layer)
    for outer, threads in ((256, 1), (259, 1), (997, 2), ((1 << 20) // channels + 5, 2)):
        x = all_values(layer, outer, rng)
        y = np.empty(x.shape, layer.out_dtype)
        assert k.run(x, y, outer, 1, threads) == -1
        np.testing.assert_array_equal(y, expected(layer, x), err_msg=f"{isa} {tin}->{tout} C={channels} {outer}")
    found = k.byte_template_channels(tin, tout)
    assert found > 0, "the byte template was not used"
    _, ok = _core.byte_template(layer.multiplier, layer.bias, layer._shift32, layer._lo, layer._hi,
                                *layer.out_range, tin, tout)
    assert found == int(ok.sum())


@pytest.mark.parametrize("tin,tout", PAIRS)
def test_narrow_ranges_and_range_errors(isa, tin, tout):
    """Declared input ranges narrower than the type and a narrower output range (the range check runs in the byte
    loop and the tail); the first offending element is named; with keep_out the output is left as it was."""
    rng = np.random.default_rng(5)
    info = np.iinfo(tin)
    c = 67
    lo = rng.integers(int(info.min), int(info.min) + 60, c)
    hi = rng.integers(int(info.max) - 60, int(info.max) + 1, c)
    qmin, qmax = DTYPE_RANGES[tout]
    layer = bn(c, tin, tout, rng, in_range=(lo, hi), out_range=(qmin + 10, qmax - 20))
    k = kernel(layer)
    x = all_values(layer, 1500, rng)
    y = np.empty(x.shape, layer.out_dtype)
    assert k.run(x, y, x.shape[0], 1, 1) == -1
    np.testing.assert_array_equal(y, expected(layer, x))
    assert k.byte_template_channels(tin, tout) > 0
    for flat in (5, 64 * 11 + 3, x.size - 2):       # in the vector loop and in the tail
        for high in (False, True):
            xb = x.copy().reshape(-1)
            ch = flat % c
            if (not high and lo[ch] == info.min) or (high and hi[ch] == info.max):
                continue
            xb[flat] = hi[ch] + 1 if high else lo[ch] - 1
            xb = xb.reshape(x.shape)
            for threads in (1, 2):
                before = np.full(x.shape, 7, layer.out_dtype)
                out = before.copy()
                assert k.run(xb, out, x.shape[0], 1, threads, keep_out=True) == flat
                np.testing.assert_array_equal(out, before)
            with pytest.raises(ValueError, match=f"channel {ch}"):
                layer.apply(xb, axis=-1, out=np.empty(x.shape, layer.out_dtype))


def test_layer_apply_out_and_overlap(isa):
    rng = np.random.default_rng(9)
    layer = bn(64, "uint8", "uint8", rng)
    x = all_values(layer, 3136, rng).reshape(1, 56, 56, 64)
    want = expected(layer, x)
    out = np.empty_like(want)
    layer.apply(x, axis=-1, out=out, threads=2)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(layer.apply(x, axis=-1), want)
    xc = x.copy()
    layer.apply(xc, axis=-1, out=xc)                   # out overlapping x
    np.testing.assert_array_equal(xc, want)


@pytest.mark.parametrize("tin,tout", PAIRS)
def test_check_accepts_exactly_the_exact_parameters(tin, tout):
    """The exhaustive check (the only way parameters reach the kernel) against the NumPy model: the search's
    parameters pass and emulate to the formula; every one-unit change of m, p, n or the shift multiplier in one
    channel is accepted exactly when the emulated outputs stay equal on every in-range input -- so the wrong ones
    (most of them) are rejected, and the check skipped would let them through (a mutation the kernel tests see)."""
    rng = np.random.default_rng(len(tin) * 5 + len(tout))
    layer = bn(40, tin, tout, rng)
    args = (layer.multiplier, layer.bias, layer._shift32, layer._lo, layer._hi, *layer.out_range)
    params, ok = _core.byte_template(*args, tin, tout)
    assert ok.sum() >= 36
    x = np.arange(int(np.iinfo(tin).min), int(np.iinfo(tin).max) + 1)
    in_s, out_s = tin == "int8", tout == "int8"
    qmin, qmax = layer.out_range
    for c in np.flatnonzero(ok):
        want = np.clip((x * layer.multiplier[c] + layer.bias[c]) >> layer.shift[c], qmin, qmax)
        got = emulate(np.repeat(params[c:c + 1], x.size, 0), x, in_s, qmin, qmax, out_s).astype(np.int64)
        np.testing.assert_array_equal(got, want)
    rejected = 0
    for c in np.flatnonzero(ok)[:12]:
        for col in range(4):
            for d in (-1, 1):
                bad = params.copy()
                bad[c, col] = (bad[c, col] + d) & 0xFFFF
                _, ok2 = _core.byte_template(*args, tin, tout, params=bad)
                want = np.clip((x * layer.multiplier[c] + layer.bias[c]) >> layer.shift[c], qmin, qmax)
                same = np.array_equal(emulate(np.repeat(bad[c:c + 1], x.size, 0), x, in_s, qmin, qmax, out_s)
                                      .astype(np.int64), want)
                assert ok2[c] == same, (c, col, d)
                assert np.array_equal(ok2[np.arange(len(ok)) != c], ok[np.arange(len(ok)) != c])
                rejected += not ok2[c]
    assert rejected >= 12
    # a whole output unit off (p + 2^S) is always rejected
    bad = params.copy()
    S = 16 - np.log2(params[:, 3].clip(1)).astype(int)
    bad[:, 1] = bad[:, 1] + (1 << S)
    _, ok3 = _core.byte_template(*args, tin, tout, params=bad)
    assert not ok3[ok & (bad[:, 1] < 65536)].any()


def _mixed_template_layer(c=37):
    """A uint8 layer where every third channel's slope (300) needs m > 65535, so its parameters fail the check."""
    m = np.where(np.arange(c) % 3 == 0, 300 << 8, 77)
    m = np.where(np.arange(c) % 5 == 1, -91, m)
    b = np.where(np.arange(c) % 3 == 0, -(300 << 8) * 128, 1 << 9)
    s = np.full(c, 8)
    source = {"form": "affine", "a": np.zeros(c), "b": np.zeros(c)}
    return fxbn.FixedPointBN(m.astype(np.int64), b.astype(np.int64), s.astype(np.int64),
                             np.array([(0, 255)] * c, np.int64), (0, 255), "half_up", source, "uint8", "uint8")


def test_without_template_channels_the_fixups_are_exact(isa):
    """Channels whose parameters fail the check (forced here: huge slopes need m > 65535) take the exact table in the
    bodies' fix-up pass, beside template channels in the same vectors."""
    c = 37
    layer = _mixed_template_layer(c)
    k = kernel(layer)
    rng = np.random.default_rng(1)
    for outer, threads in ((300, 1), ((1 << 20) // c + 3, 2)):
        x = all_values(layer, outer, rng)
        y = np.empty_like(x)
        assert k.run(x, y, outer, 1, threads) == -1
        np.testing.assert_array_equal(y, expected(layer, x))
    found = k.byte_template_channels("uint8", "uint8")
    assert 0 < found < c
    hard = [i for i in range(c) if i % 3 == 0 and i % 5 != 1]
    assert found == c - len(hard)


# ------------------------------------------------------------------------------------------------ lean bodies, rows
def all_values_3d(layer, outer, inner, rng):
    """(outer, C, inner) inputs: channel c sees every value of its range (outer * inner >= 256), shuffled."""
    lo, hi = layer.in_range[:, 0], layer.in_range[:, 1]
    x = np.empty((outer, layer.channels, inner), np.int64)
    for c in range(layer.channels):
        vals = np.resize(np.arange(lo[c], hi[c] + 1), outer * inner)
        rng.shuffle(vals)
        x[:, c, :] = vals.reshape(outer, inner)
    return x.astype(layer.in_dtype)


def affine8(channels, tin, tout, rng, offset_low, out_range=None):
    """Explicit fixed-point layers: slopes in (0, 2], s = 8; offset_low: outputs reach the bottom of the type (the
    lanes need n > 0), else every output stays above it (every n = 0: the body without vpsubusw)."""
    info_in, info_out = np.iinfo(tin), np.iinfo(tout)
    m = rng.integers(1, 512, channels)
    if offset_low:
        target0 = rng.integers(int(info_out.min) - 100, int(info_out.min) + 20, channels)
    else:
        target0 = rng.integers(int(info_out.min) + 5, int(info_out.min) + 40, channels)
    # y(x) = (m * x + b) >> 8 with y(min input) = target0
    b = (target0 << 8) - m * int(info_in.min)
    s = np.full(channels, 8)
    source = {"form": "affine", "a": np.zeros(channels), "b": np.zeros(channels)}
    q = out_range if out_range is not None else (int(info_out.min), int(info_out.max))
    return fxbn.FixedPointBN(m.astype(np.int64), b.astype(np.int64), s.astype(np.int64),
                             np.array([(int(info_in.min), int(info_in.max))] * channels, np.int64), q, "half_up",
                             source, out_dtype=tout, in_dtype=tin)


LAYOUTS = [(64, 1), (32, 1), (16, 2), (8, 8), (48, 1), (100, 1)]  # period 64 (tables in registers) and longer


@pytest.mark.parametrize("tin,tout", PAIRS)
@pytest.mark.parametrize("kind", ["bn", "bn_narrow_out", "bn_floor_out", "low", "high", "high_narrow_out"])
def test_lean_variants_channel_last(isa, tin, tout, kind):
    """The byte bodies with and without the flip vpxor (BN with negative gammas vs slopes all positive), vpsubusw
    (outputs reaching the type's bottom vs not) and the clamp (a narrower output range), with a period of 64
    (tables held in registers) and longer ones, 1 and 2 threads, every input of every channel."""
    rng = np.random.default_rng(len(kind) * 13 + len(tin) + 5 * len(tout))
    qmin, qmax = DTYPE_RANGES[tout]
    narrow = (qmin + 7, qmax - 9) if kind.endswith("narrow_out") else (qmin + 7, qmax) if kind.endswith("floor_out") \
        else None
    for channels, inner in LAYOUTS:
        if kind.startswith("bn"):
            layer = bn(channels, tin, tout, rng, out_range=narrow)
        else:
            layer = affine8(channels, tin, tout, rng, kind == "low", out_range=narrow)
        k = kernel(layer)
        for outer, threads in ((256 // inner + 3, 1), ((1 << 20) // (channels * inner) + 1, 2)):
            x = all_values_3d(layer, outer, inner, rng)
            y = np.empty(x.shape, layer.out_dtype)
            assert k.run(x, y, outer, inner, threads) == -1
            np.testing.assert_array_equal(y, expected3(layer, x),
                                          err_msg=f"{isa} {kind} {tin}->{tout} C={channels} inner={inner}")
        found = k.byte_template_channels(tin, tout)
        assert found == channels if not kind.startswith("bn") else found > 0


def expected3(layer, x):
    """The int64 formula on an (outer, C, inner) array."""
    acc = x.astype(np.int64) * layer.multiplier[None, :, None] + layer.bias[None, :, None]
    return np.clip(acc >> layer.shift[None, :, None], *layer.out_range).astype(layer.out_dtype)


@pytest.mark.parametrize("tin,tout", PAIRS)
@pytest.mark.parametrize("kind", ["bn", "bn_narrow_out", "bn_floor_out", "low", "high"])
@pytest.mark.parametrize("inner", [256, 100, 3136])
def test_nchw_rows(isa, tin, tout, kind, inner):
    """NCHW rows (inner >= 64): on AVX2 the template with each row's lane in registers (vpaddw or vpsubusw, vpxor or
    not per row), rows with tails (100 = 3 * 32 + 4), chunks splitting rows (2 threads), every input of every
    channel.  Other ISAs run their own row bodies on the same tensors."""
    rng = np.random.default_rng(inner + len(kind) + len(tin) * 3 + len(tout))
    qmin, qmax = DTYPE_RANGES[tout]
    narrow = (qmin + 3, qmax - 11) if kind.endswith("narrow_out") else (qmin + 3, qmax) if kind.endswith("floor_out") \
        else None
    channels = 5 if inner == 3136 else 37
    layer = bn(channels, tin, tout, rng, out_range=narrow) if kind.startswith("bn") else \
        affine8(channels, tin, tout, rng, kind == "low", out_range=narrow)
    k = kernel(layer)
    for outer, threads in ((-(-256 // inner) + 1, 1), ((1 << 20) // (channels * inner) + 1, 2)):
        x = all_values_3d(layer, outer, inner, rng)
        y = np.empty(x.shape, layer.out_dtype)
        assert k.run(x, y, outer, inner, threads) == -1
        np.testing.assert_array_equal(y, expected3(layer, x), err_msg=f"{isa} {kind} {tin}->{tout} inner={inner}")
    if isa == "avx2":
        found = k.byte_template_channels(tin, tout)
        assert found == channels if not kind.startswith("bn") else found > 0


@pytest.mark.parametrize("tin,tout", PAIRS)
def test_nchw_rows_range_errors(isa, tin, tout):
    """NCHW rows with declared ranges narrower than the type: in range exact; an element outside its channel's range
    in a row's vector steps or its tail is named, and with keep_out the output is left as it was."""
    rng = np.random.default_rng(11)
    info = np.iinfo(tin)
    c, inner = 7, 100
    lo = rng.integers(int(info.min), int(info.min) + 60, c)
    hi = rng.integers(int(info.max) - 60, int(info.max) + 1, c)
    layer = bn(c, tin, tout, rng, in_range=(lo, hi))
    k = kernel(layer)
    x = all_values_3d(layer, 4, inner, rng)
    y = np.empty(x.shape, layer.out_dtype)
    assert k.run(x, y, 4, inner, 1) == -1
    np.testing.assert_array_equal(y, expected3(layer, x))
    for flat in (5, inner * 9 + 40, inner * 10 + 97, x.size - 1):
        ch = (flat // inner) % c
        for high in (False, True):
            if (not high and lo[ch] == info.min) or (high and hi[ch] == info.max):
                continue
            xb = x.copy().reshape(-1)
            xb[flat] = hi[ch] + 1 if high else lo[ch] - 1
            xb = xb.reshape(x.shape)
            for threads in (1, 2):
                before = np.full(x.shape, 7, layer.out_dtype)
                out = before.copy()
                assert k.run(xb, out, 4, inner, threads, keep_out=True) == flat
                np.testing.assert_array_equal(out, before)


def test_nchw_rows_without_template_channels(isa):
    """Rows of channels whose parameters fail the check take the exact table, beside template rows."""
    c = 37
    layer = _mixed_template_layer(c)
    k = kernel(layer)
    rng = np.random.default_rng(2)
    for outer, inner, threads in ((2, 130, 1), (3, 256, 2)):
        x = all_values_3d(layer, outer, inner, rng)
        y = np.empty_like(x)
        assert k.run(x, y, outer, inner, threads) == -1
        np.testing.assert_array_equal(y, expected3(layer, x))
    if isa == "avx2":
        hard = [i for i in range(c) if i % 3 == 0 and i % 5 != 1]
        assert k.byte_template_channels("uint8", "uint8") == c - len(hard)
