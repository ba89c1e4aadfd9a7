"""The AVX2 widen_rows with 8-bit outputs (int32 -> int8 / uint8 NCHW rows) aligns its stores to 32 bytes: one
unaligned block at a row's start, then the block at `head` (y + head 32-byte aligned) rewriting part of the first with
the same outputs, then aligned blocks.  Under out= it saves y's old bytes as it stores (Job::save) into a buffer as
aligned as y (run_chunks_keeping's save_like_y), the first block's and then the bytes [32, head + 32) before the
block at head overwrites them.  Covered here: every output offset mod 32 (so every head), row lengths around the
peel's bound (lim >= head + 64) and the 32-element blocks, the tensor's last row (int32's odd-element load), 1 and 2
threads, the 2^14-element blocks of out= (a chunk starting mid-row), outputs over 1 MiB (non-temporal save), and
violations in the first block, in [32, head + 32), just after it and in later rows: named at their index and `out`
left byte-for-byte as it was.
"""
import numpy as np
import pytest

import fxbn
from fxbn import _core

from test_kernel_paths import ISAS, expected, inputs, raw
from test_kernel_wide import real_layer, x86_isa  # noqa: F401 (x86_isa: the autouse fixture, every x86 ISA)

pytestmark = pytest.mark.skipif("avx2" not in ISAS, reason="the CPU has no AVX2")


def at_offset(shape, dtype, offset):
    """An array of `shape` whose data starts `offset` bytes past a 64-byte boundary."""
    n = int(np.prod(shape))
    raw_bytes = np.empty(n + 128, np.uint8)
    start = (-raw_bytes.ctypes.data) % 64 + offset
    return raw_bytes[start:start + n].view(dtype).reshape(shape)


def check_offsets(layer, shape, offsets, wheres, rng, threads_list=(1, 2)):
    c = layer.channels
    tout = layer.out_dtype
    x = inputs(layer, shape, 1, rng)
    want = expected(layer, x, 1)
    hi = layer.in_range[:, 1]
    for offset in offsets:
        for threads in threads_list:
            y = at_offset(shape, tout, offset)
            y[...] = 7
            assert layer.apply(x, axis=1, out=y, threads=threads) is y
            np.testing.assert_array_equal(y, want, err_msg=f"offset {offset}, t={threads}")
            y[...] = 7
            k = _core.Kernel(layer.multiplier, layer.bias, layer._shift32, layer._lo, layer._hi,
                             layer.out_range[0], layer.out_range[1], False)
            outer, _, inner = layer._shape3(x, 1)[2]
            assert k.run(x, y, outer, inner, threads) == -1
            np.testing.assert_array_equal(y, want, err_msg=f"kernel, offset {offset}, t={threads}")
            for where in wheres:
                xb = x.copy()
                ch = (where // shape[2]) % c
                xb.reshape(-1)[where] = hi[ch] + 1
                assert raw(layer, xb, 1, acc32=False, threads=threads)[1] == where
                y = at_offset(shape, tout, offset)
                info = np.iinfo(tout)
                y[...] = rng.integers(info.min, info.max + 1, shape).astype(tout)
                before = y.tobytes()
                with pytest.raises(ValueError, match="outside the in_range"):
                    layer.apply(xb, axis=1, out=y, threads=threads)
                assert y.tobytes() == before, (offset, threads, where)


@pytest.mark.parametrize("tout", ["int8", "uint8"])
@pytest.mark.parametrize("inner", [64, 95, 96, 97, 127, 128, 129, 200, 3141])
def test_every_head_small(tout, inner):
    """Every output offset mod 32 and row lengths around the peel's bound; violations in the first block of a late
    row, in its [32, head + 32), just after, and the last element."""
    rng = np.random.default_rng(900 + inner)
    layer = real_layer(6, rng, tout)
    shape = (3, 6, inner)
    late = (2 * 6 + 4) * inner  # the start of a late row: earlier rows were written (and saved) first
    wheres = sorted({late, late + 5, late + 31, late + 32, late + 40, late + 63, min(late + 64, late + inner - 1),
                     3 * 6 * inner - 1})
    check_offsets(layer, shape, range(0, 33), wheres, rng)


@pytest.mark.parametrize("tout", ["int8", "uint8"])
def test_every_head_blocks_of_out(tout):
    """Rows split by the 2^14-element blocks of out= and by the two threads' chunks (a block starting mid-row, at an
    offset that is not the row's), violations around a block's start."""
    rng = np.random.default_rng(77)
    layer = real_layer(8, rng, tout)
    inner = 4000  # 480 KB of input and output: two threads' chunks
    shape = (3, 8, inner)
    b = 1 << 14
    wheres = [b - 1, b, b + 20, b + 40, b + 70, 2 * b + 3, 3 * 8 * inner - 1]
    check_offsets(layer, shape, (0, 1, 15, 16, 17, 31), wheres, rng)


@pytest.mark.parametrize("tout", ["int8", "uint8"])
def test_every_head_large(tout):
    """Outputs over 1 MiB: the save buffer as aligned as y takes non-temporal stores from each row's head on."""
    rng = np.random.default_rng(78)
    layer = real_layer(16, rng, tout)
    inner = 3136
    shape = (22, 16, inner)
    assert np.prod(shape) > 1 << 20
    n = int(np.prod(shape))
    wheres = [0, 37, n // 2 + 50, n - 1]
    check_offsets(layer, shape, (0, 1, 16, 31), wheres, rng)


STREAM_OUT_BYTES = 16 << 20  # kernel.cpp kStreamOutBytes


@pytest.mark.parametrize("side", ["below", "above"])
def test_streamed_outputs_around_the_bound(side):
    """Input + output bytes just below and just above kStreamOutBytes (above: without out=, y written with
    non-temporal stores from each row's aligned head on): every output offset class (0, 1, 16, 31 mod 32), 1 and 2
    threads, exact; out= (the save path, never streamed) exact and untouched on a late violation."""
    rng = np.random.default_rng(79)
    layer = real_layer(16, rng, "int8")
    inner = 3141  # odd: rows start at every offset mod 32
    per_image = 16 * inner * 5  # int32 in + int8 out
    bound = STREAM_OUT_BYTES
    images = bound // per_image + (1 if side == "above" else 0)
    shape = (images, 16, inner)
    total = int(np.prod(shape)) * 5
    assert (total >= bound) == (side == "above")
    x = inputs(layer, shape, 1, rng)
    want = expected(layer, x, 1)
    k = _core.Kernel(layer.multiplier, layer.bias, layer._shift32, layer._lo, layer._hi,
                     layer.out_range[0], layer.out_range[1], False)
    for offset in (0, 1, 16, 31):
        for threads in (1, 2):
            y = at_offset(shape, "int8", offset)
            y[...] = 7
            assert k.run(x, y, shape[0], inner, threads) == -1
            assert np.array_equal(y, want), (side, offset, threads)
            y2 = layer.apply(x, axis=1, threads=threads)
            assert np.array_equal(y2, want), (side, offset, threads)
    y = at_offset(shape, "int8", 16)
    assert layer.apply(x, axis=1, out=y) is y
    assert np.array_equal(y, want)
    xb = x.copy()
    xb.reshape(-1)[x.size - 5] = layer.in_range[15, 1] + 1
    y[...] = rng.integers(-128, 128, shape).astype(np.int8)
    before = y.tobytes()
    with pytest.raises(ValueError, match="outside the in_range"):
        layer.apply(xb, axis=1, out=y)
    assert y.tobytes() == before
