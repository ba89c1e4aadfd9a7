"""Hostile inputs: every way in must give exact outputs or a ValueError that names what is wrong — never a silent
wrong number, never a half-written out=.

Each case here was a silent wrong output (or a crash reported as something else) before the checks it exercises
existed; the comments name what used to happen.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fxbn

ARRAY_DTYPES = [np.int8, np.uint8, np.int16, np.int32, np.uint16, np.int64, np.uint32, np.float32, np.bool_,
                np.dtype(">i4"), np.dtype(">i2")]
IN_DTYPES = ["int8", "uint8", "int16", "int32"]
OUT_DTYPES = ["int8", "uint8", "int16", "uint16"]


def _values(dtype, rng, shape):
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(dtype)
    if dtype.kind == "f":
        return rng.integers(-5, 5, shape).astype(dtype)
    info = np.iinfo(dtype)
    v = rng.integers(max(info.min, -2 ** 40), min(int(info.max), 2 ** 40) + 1, shape, dtype=np.int64)
    v.flat[:4] = [info.min, info.max, 0, 5] if info.min < 0 else [0, info.max, 1, 5]
    return v.astype(dtype)


def _small_values(dtype, rng, shape):
    """Values every supported integer dtype holds and an int8/uint8 layer range may contain."""
    return rng.integers(5, 100, shape).astype(dtype)


def _layer(in_dtype, out_dtype, narrow=False):
    in_range = {"int8": (-100, 120), "uint8": (3, 250), "int16": (-3000, 30000), "int32": (-5, 2 ** 20)}[in_dtype] \
        if narrow else None
    return fxbn.from_affine([0.5, 0.25, -0.75], [1.0, -3.0, 7.5], in_dtype=in_dtype, out_dtype=out_dtype,
                            rounding="half_up", in_range=in_range)


def _exact_or_value_error(layer, x, axis, out):
    """apply must equal the exact reference, or raise ValueError leaving out untouched."""
    before = None if out is None else out.copy()
    try:
        y = layer.apply(x, axis=axis, out=out)
    except ValueError:
        if out is not None:
            assert np.array_equal(out, before), "out= was written although apply raised"
        with pytest.raises(ValueError):        # the reference agrees that x is not a valid input
            layer.reference(x, axis=axis)
        return "error"
    assert np.array_equal(y, layer.reference(x, axis=axis)), "silent wrong output"
    if out is not None:
        assert y is out
    return "exact"


@pytest.mark.parametrize("in_dtype", IN_DTYPES)
@pytest.mark.parametrize("narrow", [False, True])
def test_every_array_dtype_against_every_layer(in_dtype, narrow):
    """(array dtype x layer in_dtype x out dtype x layout x out=): exact outputs or ValueError.  Before: an
    int8 layer applied to uint8 data cast its bounds into the array's type, and 12,700 of 12,800 outputs were
    wrong without an error."""
    rng = np.random.default_rng(hash((in_dtype, narrow)) % 2 ** 32)
    seen = set()
    for out_dtype in OUT_DTYPES:
        layer = _layer(in_dtype, out_dtype, narrow)
        for dtype in ARRAY_DTYPES:
            for gen in (_values, _small_values):
                for axis, shape in ((1, (5, 3, 70)), (-1, (4, 33, 3))):
                    x = gen(dtype, rng, shape)
                    for mode in ("fresh", "prefilled"):
                        out = None if mode == "fresh" else np.full(shape, 7, layer.out_dtype)
                        seen.add((np.dtype(dtype).name, _exact_or_value_error(layer, x, axis, out)))
    # both outcomes happen: a supported dtype whose values fit is computed, an unsupported one refused
    assert ("uint8", "exact") in seen and ("int64", "error") in seen and ("float32", "error") in seen


def test_values_outside_in_range_in_a_narrower_dtype_raise():
    """Before: an int8 array with values in [-56, -24] passed a layer declared for [200, 1000] (the bounds
    wrapped into int8), in apply and in reference."""
    layer = fxbn.from_affine([0.5], [1.0], in_dtype="int16", in_range=(200, 1000), rounding="half_up")
    x = np.arange(-56, -23, dtype=np.int8).reshape(1, 1, -1)
    for f in (layer.apply, layer.reference):
        with pytest.raises(ValueError, match=r"x\[0, 0, 0\] = -56 is outside the in_range of channel 0"):
            f(x)
    out = np.full(x.shape, 9, np.int8)
    with pytest.raises(ValueError):
        layer.apply(x, out=out)
    assert (out == 9).all()


@pytest.mark.parametrize("offset", [1, -1, 0, 3])
@pytest.mark.parametrize("in_dtype,out_dtype", [("int8", "int8"), ("int16", "int8"), ("int8", "int16"),
                                                ("int32", "uint8")])
def test_out_overlapping_the_input(offset, in_dtype, out_dtype):
    """out= sharing memory with x (views of one buffer, offset by a few elements, or the same memory) is
    computed through a temporary.  Before: 14,801 wrong of 15,000."""
    layer = fxbn.from_affine([0.5, 0.25], [1.0, -3.0], in_dtype=in_dtype, out_dtype=out_dtype, rounding="half_up")
    isz, osz = np.dtype(in_dtype).itemsize, np.dtype(out_dtype).itemsize
    n = 15000
    raw = np.zeros(n * max(isz, osz) + 64, np.uint8)
    x = raw[16:16 + n * isz].view(in_dtype).reshape(-1, 2, 1)
    x[...] = (np.arange(x.size) % 100).reshape(x.shape)
    start = 16 + offset * osz
    out = raw[start:start + n * osz].view(out_dtype).reshape(x.shape)
    assert np.shares_memory(x, out)
    expected = layer.reference(x.copy())
    assert layer.apply(x, out=out) is out
    assert np.array_equal(out, expected)


def test_out_read_only_strided_or_overlapping_short_rows():
    """apply(x, out=) with the out checks and the overlap test of the C fast path (Kernel.try_apply): a read-only or non-contiguous out of the right shape and dtype is refused with out untouched;
    an out sharing bytes with x (int32 -> int8 short rows, the widen_short body) is computed through a temporary."""
    rng = np.random.default_rng(14)
    layer = fxbn.from_affine(rng.uniform(0.001, 0.01, 64), rng.uniform(-20, 20, 64), in_range=(-(1 << 20), 1 << 20),
                             in_dtype="int32", out_dtype="int8", rounding="half_even")
    x = rng.integers(-(1 << 20), 1 << 20, (2, 64, 7, 7)).astype(np.int32)
    want = layer.reference(x)
    ro = np.full(x.shape, 9, np.int8)
    ro.flags.writeable = False
    strided = np.full(x.shape + (2,), 9, np.int8)[..., 0]
    for out in (ro, strided):
        with pytest.raises(ValueError, match="out must be"):
            layer.apply(x, out=out)
        assert (out == 9).all()
    for offset in (0, 1, x.nbytes - x.size):
        raw = np.zeros(x.nbytes + x.size, np.uint8)
        xs = raw[:x.nbytes].view(np.int32).reshape(x.shape)
        xs[...] = x
        out = raw[offset:offset + x.size].view(np.int8).reshape(x.shape)
        assert np.shares_memory(xs, out) == (offset < x.nbytes)
        assert layer.apply(xs, axis=1, out=out) is out
        np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("kwargs,match", [
    # before: -2**63+10 overflowed x - zero_point in int64: (15, 38, 6) with y(10) = 2 (exact 3) and a false proof
    (dict(in_zero_point=-2 ** 63 + 10, out_zero_point=-((2 ** 63 - 10) // 4)), "in_zero_point = -9223372036854775798"),
    (dict(in_zero_point=2 ** 64 - 1), "in_zero_point = 18446744073709551615 is outside"),   # before: became -1
    (dict(in_zero_point=2 ** 63), "in_zero_point = 9223372036854775808 is outside"),      # before: -2**63
    (dict(out_zero_point=1e20), "out_zero_point = 100000000000000000000 is outside"),     # before: -2**63
    (dict(out_zero_point=2 ** 31), "out_zero_point = 2147483648 is outside"),
    (dict(out_zero_point=0.5), "out_zero_point is 0.5: expected an integer"),
    (dict(in_zero_point=True), "in_zero_point is True: expected an integer"),
])
def test_zero_points_beyond_the_documented_bound(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fxbn.from_batchnorm(1, 0, 0, 1, 0, in_scale=0.25, out_scale=1, in_range=(-10, 10), out_dtype="int16",
                            rounding="floor", **kwargs)


@pytest.mark.parametrize("zin,zout", [(-2 ** 31, 2 ** 31 - 1), (2 ** 31 - 1, -2 ** 31), (-2 ** 31, -2 ** 31)])
def test_zero_points_at_the_bound_are_exact(zin, zout):
    """At the accepted extremes the layer equals the independent Fraction reference and its shift is minimal."""
    from verify import run

    scale = 2.0 ** -20
    layer = fxbn.from_batchnorm([1.5, -0.7], [0.25, 3.0], [0.5, -2.0], [2.0, 0.3], 1e-5, in_scale=scale,
                                out_scale=2.0 ** -30, in_zero_point=zin, out_zero_point=zout,
                                in_range=(-2 ** 31, 2 ** 31 - 1), out_dtype="int16", rounding="half_up")
    rec = run.verify_layer(layer, method="breakpoints", engine="python")
    assert rec["verdict"] == rec["minimality"] == run.PROVED
    x = np.array([[-2 ** 31, -2 ** 31], [2 ** 31 - 1, 2 ** 31 - 1], [0, 12345]], np.int32)
    assert np.array_equal(layer.apply(x), layer.reference(x))


@pytest.mark.parametrize("value,match", [
    (np.longdouble(1) / 3, "not exactly representable as float64"),     # before: rounded (y(3) = 0, exact 1)
    (2 ** 60 + 1, "not exactly representable as float64"),
    (np.int64(2 ** 53 + 1), "not exactly representable as float64"),
    (10 ** 400, "too large for float64"),
    ("0.5", "must be numeric"),
    (None, "real numbers"),
])
def test_parameters_that_float64_cannot_hold(value, match):
    with pytest.raises(ValueError, match=match):
        fxbn.from_affine(value, 0.0, in_dtype="int8")


def test_exactly_representable_wide_parameters_are_taken():
    layer = fxbn.from_affine(np.longdouble(0.375), np.float32(-2.5), in_dtype="int8", rounding="floor")
    x = np.arange(-128, 128, dtype=np.int8).reshape(-1, 1)
    assert np.array_equal(layer.apply(x), layer.reference(x))


@pytest.mark.parametrize("call,match", [
    (lambda: fxbn.from_affine(1.0, 0.0, relu="relu6"), "relu='relu6' needs the output scale"),   # was TypeError
    (lambda: fxbn.from_affine(1.0, 0.0, out_range=5), "out_range must be a pair"),              # "int not iterable"
    (lambda: fxbn.from_affine(1.0, 0.0, out_range=(1.7, 5.9)), r"out_range\[0\] is 1.7"),       # was truncated
    (lambda: fxbn.from_affine(1.0, 0.0, out_range="ab"), "out_range must be a pair"),
    (lambda: fxbn.from_affine(1.0, 0.0, relu="yes"), "relu must be"),
    (lambda: fxbn.from_affine(1.0, 0.0, in_range=(0.5, 3)), r"in_range low is 0.5"),
    (lambda: fxbn.from_affine(1.0, 0.0, in_range=[[0, 1, 2]]), "in_range must be"),
])
def test_constructor_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("kwargs,match", [
    (dict(axis=None), "axis must be an integer"),                 # was a raw TypeError
    (dict(axis=1.0), "axis must be an integer"),
    (dict(threads=2 ** 40), "threads must be None"),              # was a raw OverflowError
    (dict(threads=-1), "threads must be None"),
    (dict(threads=1.5), "threads must be None"),
    (dict(out=np.zeros((4, 2), np.int16)), "out must be"),
    (dict(out=np.zeros((4, 2), np.dtype(">i1").newbyteorder(">"))[:, ::-1]), "out must be"),
])
def test_apply_errors_name_the_argument(kwargs, match):
    layer = fxbn.from_affine([0.5, 0.25], [1.0, -3.0], in_dtype="int8", rounding="half_up")
    with pytest.raises(ValueError, match=match):
        layer.apply(np.zeros((4, 2), np.int8), **kwargs)


def test_kernel_refuses_foreign_byte_order():
    """The raw kernel binding reads a dtype by kind and size: a big-endian array must not be read as native."""
    from fxbn import _core

    layer = fxbn.from_affine([0.5], [1.0], in_dtype="int32", rounding="half_up")
    x = np.arange(10, dtype=">i4").reshape(1, 1, -1)
    y = np.zeros(x.shape, np.int8)
    with pytest.raises(ValueError, match="byte order"):
        _core.apply_kernel(x, y, layer.multiplier, layer.bias, layer.shift.astype(np.int32), layer.in_range[:, 0].copy(),
                           layer.in_range[:, 1].copy(), *layer.out_range, True, 1)
    assert np.array_equal(layer.apply(x.reshape(1, 1, -1).astype(np.int32)), layer.reference(x.astype(np.int32)))


def test_common_shift_memory_is_bounded():
    """common_shift=True with uint16 outputs kept every channel's 65,535-entry step function at once (8,000
    channels: 4.1 GB).  Now 1,000 channels solve within a few hundred MB (the old code needed ~560 MB more)."""
    code = ("import resource, numpy as np, fxbn\n"
            "rng = np.random.default_rng(0)\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "l = fxbn.from_affine(rng.uniform(0.5, 3, 1000), rng.uniform(-100, 100, 1000), in_dtype='int16',\n"
            "                     out_dtype='uint16', rounding='floor', common_shift=True)\n"
            "assert len(set(l.shift.tolist())) == 1\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    grew_mb = int(r.stdout.strip())
    assert grew_mb < 200, f"peak memory grew by {grew_mb} MB"


# ---------------------------------------------------------------------------------------------- saved files
def _saved(tmp_path):
    layer = fxbn.from_affine([0.3, 2.0], [1.0, 2.5], in_dtype="uint8", out_dtype="uint8", rounding="half_up")
    layer.save(tmp_path / "good.json")
    return layer, json.loads((tmp_path / "good.json").read_text())


def _mutations(record):
    """(name, mutated record, expect) for every field: wrong type, wrong value, missing.  expect is "invalid"
    (ValueError at load even without the exactness check) or "inexact" (well-formed, but not exact)."""
    out = []

    def add(name, f, expect="invalid"):
        r = json.loads(json.dumps(record))
        f(r)
        out.append((name, r, expect))

    for key in list(record):
        add(f"missing {key}", lambda r, k=key: r.pop(k), "invalid" if key not in ("channels", "solve_options")
            else "valid")
    for key in ("multiplier", "bias", "shift"):
        for bad in (10.5, "5", None, True, [1], 2 ** 63, -2 ** 63 - 1, float("nan")):
            add(f"{key}[0] = {bad!r}", lambda r, k=key, b=bad: r[k].__setitem__(0, b))
        add(f"{key} not a list", lambda r, k=key: r.__setitem__(k, 3))
        add(f"{key} too short", lambda r, k=key: r.__setitem__(k, r[k][:1]))
    add("multiplier + 1", lambda r: r["multiplier"].__setitem__(0, r["multiplier"][0] + 1), "inexact")
    add("bias + 2^s", lambda r: r["bias"].__setitem__(1, r["bias"][1] + 2 ** r["shift"][1]), "inexact")
    add("shift 0", lambda r: r["shift"].__setitem__(0, 0), "inexact")
    add("shift 63", lambda r: r["shift"].__setitem__(0, 63))
    add("shift -1", lambda r: r["shift"].__setitem__(0, -1))
    for bad in ([127, -128], [0, 256], [-1, 10], [0], 5, [0.5, 10], None):
        add(f"out_range {bad!r}", lambda r, b=bad: r.__setitem__("out_range", b))
    add("out_range [0, 100]", lambda r: r.__setitem__("out_range", [0, 100]), "valid")   # the clamp is the spec
    for bad in ([[5, 4], [0, 255]], [[0, 256], [0, 255]], [[0, 1, 2], [0, 255]], [[0, "1"], [0, 255]], [0, 255]):
        add(f"in_range {bad!r}", lambda r, b=bad: r.__setitem__("in_range", b))
    for key, bad in (("out_dtype", "int8"), ("out_dtype", "float32"), ("out_dtype", 3), ("in_dtype", "float32"),
                     ("in_dtype", "int8"), ("rounding", "nearest"), ("rounding", None), ("format", "other"),
                     ("version", 2), ("version", True), ("channels", 3), ("channels", "2"), ("source", [1]),
                     ("solve_options", {"acc_bits": 1}), ("solve_options", {"common_shift": 1}),
                     ("solve_options", {"magic": 1}), ("solve_options", [1]), ("extra", 1)):
        add(f"{key} = {bad!r}", lambda r, k=key, b=bad: r.__setitem__(k, b))
    add("in_dtype int16", lambda r: r.__setitem__("in_dtype", "int16"), "valid")   # same inputs, wider type
    for k, bad in (("a", float("nan")), ("a", "0.3"), ("a", None), ("b", float("inf")), ("b", True)):
        add(f"source.{k}[0] = {bad!r}", lambda r, k=k, b=bad: r["source"][k].__setitem__(0, b))
    add("source.a changed", lambda r: r["source"]["a"].__setitem__(0, 0.31), "inexact")
    add("source.a short", lambda r: r["source"].__setitem__("a", [0.3]))
    add("source form", lambda r: r["source"].__setitem__("form", "batchnorm"))
    add("source.extra", lambda r: r["source"].__setitem__("gamma", [1.0, 1.0]))
    add("zero channels", lambda r: [r.__setitem__(k, []) for k in ("multiplier", "bias", "shift", "in_range")]
        and None)
    return out


def test_file_fuzz_load(tmp_path):
    """Every mutated field of a saved layer: load raises ValueError (validation, or the exactness re-check for
    well-formed but tampered files) or loads a layer that is exact — never a layer that computes wrong numbers.
    Before: out_dtype int8 on a [0, 255] layer loaded and wrapped 54 of 256 outputs; multiplier + 1, shift 0,
    swapped out_range, shift 10.5 and "5", in_dtype float32 all loaded."""
    layer, record = _saved(tmp_path)
    x = np.stack([np.arange(256, dtype=np.uint8)] * 2, axis=1)
    counts = {}
    for i, (name, r, expect) in enumerate(_mutations(record)):
        for ext in (".json", ".npz"):
            path = tmp_path / f"m{i}{ext}"
            if ext == ".json":
                path.write_text(json.dumps(r))
            else:
                keys = ("multiplier", "bias", "shift", "in_range")
                if not all(k in r and isinstance(r[k], list) for k in keys):
                    continue
                flat = [e for k in keys for v in r[k] for e in (v if isinstance(v, list) else [v])]
                if not all(type(e) is int and -2 ** 63 <= e < 2 ** 63 for e in flat):
                    continue                # an npz holds int64 arrays: these mutations are the JSON file's
                try:
                    arrays = {k: np.asarray(r[k], np.int64) for k in keys}
                except ValueError:          # ragged in_range
                    continue
                meta = {k: v for k, v in r.items() if k not in arrays}
                np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
            try:
                loaded = fxbn.load(path)
            except ValueError as e:
                assert str(path) in str(e), name
                outcome = "inexact" if "exact reference" in str(e) else "invalid"
            else:
                outcome = "valid"
                assert np.array_equal(loaded.apply(x), loaded.reference(x)), name
            assert outcome == expect, (name, ext, outcome)
            if outcome == "inexact":            # well-formed: loads without the check, and verify refutes it
                fxbn.load(path, check=False)
            counts[outcome] = counts.get(outcome, 0) + 1
    assert counts["invalid"] > 50 and counts["inexact"] >= 8 and counts["valid"] >= 4


def test_npz_bomb_is_refused_from_its_header(tmp_path):
    """A 0.4 MB npz declaring a 50M-entry array: refused from the .npy header before any data is read
    (before: +0.78 GB for 3 s)."""
    layer, record = _saved(tmp_path)
    meta = {k: v for k, v in record.items() if k not in ("multiplier", "bias", "shift", "in_range")}
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), multiplier=np.zeros(50_000_000, np.int64),
                        bias=np.zeros(2, np.int64), shift=np.zeros(2, np.int64), in_range=np.zeros((2, 2), np.int64))
    assert os.path.getsize(path) < 1_000_000
    code = ("import resource, sys, fxbn\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    fxbn.load(sys.argv[1])\nexcept ValueError as e:\n    print(e)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    message, grew_mb = r.stdout.strip().splitlines()
    assert "declares 50000000 channels" in message
    assert int(grew_mb) < 50
    for content in (b"", b"PK\x03\x04garbage", b"\x00" * 100):
        (tmp_path / "g.npz").write_bytes(content)
        with pytest.raises(ValueError, match="not an npz file"):
            fxbn.load(tmp_path / "g.npz")
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ValueError, match="not valid JSON"):
        fxbn.load(tmp_path / "deep.json")


def _verify(*args):
    return subprocess.run([sys.executable, "-m", "verify", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_verify_never_reports_a_malformed_file_as_refuted(tmp_path):
    """Exit 1 means a real refutation; malformed files and bad options are usage errors (64) with a one-line
    message, never a traceback.  Well-formed tampered files are refuted (1) with a counterexample."""
    layer, record = _saved(tmp_path)
    muts = _mutations(record)
    picked = [m for m in muts if m[2] == "invalid"][::4] + [m for m in muts if m[2] == "inexact"]
    for i, (name, r, expect) in enumerate(picked):
        path = tmp_path / f"v{i}.json"
        path.write_text(json.dumps(r))
        res = _verify("--method", "breakpoints", path)
        assert "Traceback" not in res.stderr, (name, res.stderr)
        if expect == "invalid":
            assert res.returncode == 64, (name, res.returncode, res.stdout, res.stderr)
            assert len(res.stderr.strip().splitlines()) == 1 and str(path) in res.stderr
        else:
            assert res.returncode == 1 and "REFUTED" in res.stdout, (name, res.stdout)
    for content, name in ((b"", "empty.npz"), (b"PK\x03\x04junk", "junk.npz"), (b"[" * 50000, "deep.json"),
                          (b"\xff\xfe", "bin.json")):
        (tmp_path / name).write_bytes(content)
        res = _verify(tmp_path / name)
        assert res.returncode == 64 and "Traceback" not in res.stderr, (name, res.stderr)


@pytest.mark.parametrize("opts", [["--timeout", "nan"], ["--timeout", "inf"], ["--timeout", "1e-9"],
                                  ["--timeout", "-1"], ["--json", "{tmp}/missing/cert.json"],
                                  ["--lemmas", "--in-dtypes", "bogus"], ["--lemmas", "--acc-bits", "16"],
                                  ["--jobs", "0"], ["--rlimit", "0"], ["--bound", "-1"], ["--json", "{tmp}"]])
def test_verify_bad_options_are_usage_errors(tmp_path, opts):
    """Before: tracebacks with exit 1 (--timeout nan/inf, --json into a missing directory after printing PROVED,
    --in-dtypes bogus); --acc-bits 16 reported a lemma REFUTED; --timeout 1e-9 switched z3's timeout off."""
    _saved(tmp_path)
    opts = [o.replace("{tmp}", str(tmp_path)) for o in opts]
    res = _verify(*opts, tmp_path / "good.json")
    assert res.returncode == 64, res
    assert "PROVED" not in res.stdout and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_verify_certificate_has_the_store_claim(tmp_path):
    """The proof covers the store into out_dtype: a claim of its own in the certificate."""
    _saved(tmp_path)
    res = _verify("--method", "breakpoints", "--json", tmp_path / "c.json", tmp_path / "good.json")
    assert res.returncode == 0
    rec = json.loads((tmp_path / "c.json").read_text())["layers"][0]
    assert rec["store"]["verdict"] == "PROVED" and rec["store"]["out_dtype_range"] == [0, 255]
    assert any("lies within out_dtype uint8" in c for c in rec["claims"])


def test_store_claim_is_refuted_for_a_range_the_dtype_cannot_hold():
    """The check behind the claim is independent of the constructor's: fed a layer whose out_range exceeds its
    out_dtype (built around the constructor's validation), it refutes."""
    from verify import run

    layer = fxbn.from_affine([0.3, 2.0], [1.0, 2.5], in_dtype="uint8", out_dtype="uint8", rounding="half_up")
    forged = object.__new__(fxbn.FixedPointBN)
    forged.__dict__.update(layer.__dict__)
    forged._out_dtype = np.dtype("int8")      # the old loader's behaviour: out_dtype changed, out_range kept
    assert run._store_check(forged)["verdict"] == run.REFUTED
    assert run._store_check(layer)["verdict"] == run.PROVED


def test_the_build_fails_closed_only_when_asked():
    """-Werror only with FXBN_WERROR=1 (CI), not for users' installs."""
    import re

    text = open(os.path.join(os.path.dirname(__file__), "..", "setup.py")).read()
    assert re.search(r'STRICT = \["-Wall", "-Wextra"\] \+ \(\["-Werror".*\] if WERROR else \[\]\)', text)


def test_io_does_not_import_the_layer_class():
    """fxbn.io reads and writes records only (the import circle with fxbn.api is gone)."""
    import ast

    tree = ast.parse(open(os.path.join(os.path.dirname(fxbn.__file__), "io.py")).read())
    names = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + \
        [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not any(str(m).startswith("fxbn") for m in names)


def _fast_case_layer():
    return fxbn.from_affine([0.5, 0.25, -0.75], [1.0, -3.0, 7.5], in_dtype="int16", out_dtype="int16",
                            rounding="half_up")


def _declined_cases():
    """(name, x, axis, out, threads) that apply's C fast path (Kernel.try_apply) must hand back to the checked
    Python path: each is a way in whose validation or handling lives there."""
    rng = np.random.default_rng(7)
    x = rng.integers(-300, 300, (4, 3, 5)).astype(np.int16)
    raw = np.zeros(x.nbytes + 8, np.uint8)
    shared = raw[2:2 + x.nbytes].view(np.int16).reshape(x.shape)
    shared[...] = x
    return [
        ("list input", x.tolist(), 1, None, None),
        ("uint16 input", x.astype(np.uint16), 1, None, None),
        ("int64 input", x.astype(np.int64), 1, None, None),
        ("big-endian input", x.astype(">i2"), 1, None, None),
        ("non-contiguous input", np.asfortranarray(x), 1, None, None),
        ("0-d input", np.int16(3), 0, None, None),
        ("bool axis", x, True, None, None),
        ("axis beyond ndim", x, 3, None, None),
        ("huge axis", x, 2 ** 70, None, None),
        ("numpy-int axis", x, np.int64(1), None, None),
        ("wrong channel count", x.reshape(4, 5, 3), 1, None, None),
        ("numpy-int threads", x, 1, None, np.int64(1)),
        ("too many threads", x, 1, None, 1025),
        ("negative threads", x, 1, None, -1),
        ("out of another dtype", x, 1, np.empty(x.shape, np.int8), None),
        ("big-endian out", x, 1, np.empty(x.shape, ">i2"), None),
        ("out of another shape, same size", x, 1, np.empty((3, 4, 5), np.int16), None),
        ("out of another rank", x, 1, np.empty((12, 5), np.int16), None),
        ("non-contiguous out", x, 1, np.empty((4, 3, 10), np.int16)[:, :, ::2], None),
        ("read-only out", x, 1, np.empty(x.shape, np.int16), None),
        ("out subclass", x, 1, np.empty(x.shape, np.int16).view(np.memmap), None),
        ("out overlapping x", shared, 1, raw[:x.nbytes].view(np.int16).reshape(x.shape), None),
        ("out is x", x.copy(), 1, "x", None),
    ]


@pytest.mark.parametrize("case", range(23))
def test_fast_path_declines_what_it_does_not_check(case):
    """Kernel.try_apply returns None for each unusual way in, and apply still gives exact outputs or a ValueError
    leaving out untouched (the checked path).  A fast path that took one of these would write through a wrong
    shape, a wrong dtype, a swapped byte order or an overlapping buffer."""
    layer = _fast_case_layer()
    cases = _declined_cases()
    assert len(cases) == 23
    name, x, axis, out, threads = cases[case]
    if isinstance(out, str):
        out = x
    if name == "read-only out":
        out.flags.writeable = False
    kernel = layer._bound_kernel()
    assert kernel.try_apply(x, axis, out, threads, layer.out_dtype) is None, name
    xs = np.asarray(x)
    if out is not None and out.shape == xs.shape and out.dtype == layer.out_dtype and out.flags.c_contiguous \
            and out.flags.writeable and xs.dtype.kind in "iu" and xs.dtype.itemsize <= 4 \
            and xs.dtype.isnative and xs.dtype != np.uint16:
        expected = layer.reference(xs.copy(), axis=axis)
        assert layer.apply(x, axis=axis, out=out, threads=threads) is out
        assert np.array_equal(out, expected), name
    else:
        before = None if out is None else np.array(out, copy=True)
        try:
            y = layer.apply(x, axis=axis, out=out, threads=threads)
        except ValueError:
            if out is not None:
                assert np.array_equal(out, before), name
        else:
            assert np.array_equal(y, layer.reference(xs, axis=int(axis))), name


def test_fast_path_takes_the_common_case():
    """The common case does run in try_apply (so the tests above and the kernel tests exercise it): fresh and given
    out, every input dtype, a range violation reported as its flat index with out untouched."""
    layer = fxbn.from_affine([0.5, 0.25, -0.75], [1.0, -3.0, 7.5], in_dtype="int32", out_dtype="int8",
                             rounding="half_up", in_range=(-1000, 1000))
    kernel = layer._bound_kernel()
    rng = np.random.default_rng(3)
    for dtype in (np.int8, np.uint8, np.int16, np.int32):
        x = rng.integers(0, 100, (2, 3, 17)).astype(dtype)
        y = kernel.try_apply(x, 1, None, None, layer.out_dtype)
        assert isinstance(y, np.ndarray) and np.array_equal(y, layer.reference(x))
        out = np.full(x.shape, 9, np.int8)
        assert kernel.try_apply(x, -2, out, 1, layer.out_dtype) is out
        assert np.array_equal(out, layer.reference(x))
    x = rng.integers(-1000, 1001, (2, 17, 3)).astype(np.int32)
    x[1, 5, 2] = 1001
    out = np.full(x.shape, 9, np.int8)
    assert kernel.try_apply(x, -1, out, 0, layer.out_dtype) == np.ravel_multi_index((1, 5, 2), x.shape)
    assert (out == 9).all()
    with pytest.raises(ValueError, match=r"x\[1, 5, 2\] = 1001 is outside the in_range of channel 2"):
        layer.apply(x, axis=-1, out=out)
    assert (out == 9).all()
