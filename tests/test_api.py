"""The public API: options, special channels, ties, bad input, layouts, persistence."""
import json

import numpy as np
import pytest

import fxbn
from exactness import exhaustive_mismatches, feasible_at


def int8_inputs(channels):
    return np.broadcast_to(np.arange(-128, 128, dtype=np.int8), (channels, 256))[None].copy()


# ---------------------------------------------------------------- ties
def test_half_even_ties_both_ways_are_impossible():
    """a = 0.5, b = 0 over int8: ties at every odd x round down at 1, up at 3, down at 5 ...: no (A, B, s)."""
    with pytest.raises(fxbn.InfeasibleError, match=r"channel 0: .*tie.*x = -?\d+"):
        fxbn.from_affine([0.5], [0.0], in_dtype="int8", rounding="half_even")
    # brute force over every input: infeasible at the largest shift, hence (monotone in s) at every shift
    xs = list(range(-128, 128))
    levels = [min(max(round(x / 2), -128), 127) for x in xs]  # Python's round is half-even, exact for x/2
    assert not feasible_at(levels, xs, 62, -128, 127)


def test_tie_error_names_the_channel():
    with pytest.raises(fxbn.InfeasibleError, match="channel 2"):
        fxbn.from_affine([0.3, 0.1, 0.5], [0.0, 0.0, 0.0], in_dtype="int8")


@pytest.mark.parametrize("rounding", ["half_up", "half_away", "floor"])
def test_ties_with_other_roundings_are_exact(rounding):
    layer = fxbn.from_affine([0.5, -0.5], [0.0, 0.5], in_dtype="int8", rounding=rounding)
    assert exhaustive_mismatches(layer, direct=True) == []


def test_one_tie_direction_is_feasible_under_half_even():
    # over [0, 2] the only tie is x = 1 (v = 0.5 rounds to 0)
    layer = fxbn.from_affine([0.5], [0.0], in_range=(0, 2), in_dtype="int8")
    assert exhaustive_mismatches(layer, direct=True) == []


# ---------------------------------------------------------------- special channels
def test_constant_and_saturating_channels():
    layer = fxbn.from_affine([0.0, 1e-12, 1e6, -1e6], [3.4, -7.6, 0.0, 0.0], in_dtype="int8")
    assert layer.multiplier[:2].tolist() == [0, 0] and layer.shift[:2].tolist() == [0, 0]
    assert layer.bias[:2].tolist() == [3, -8]
    assert exhaustive_mismatches(layer, direct=True) == []


def test_single_value_range_and_relu():
    layer = fxbn.from_affine([0.37], [1.2], in_range=(5, 5), in_dtype="int8")
    assert layer.multiplier[0] == 0 and layer.apply(np.array([[5]], np.int8)).item() == 3
    relu = fxbn.from_affine([0.05], [-2.0], in_dtype="int8", relu=True)
    assert relu.out_range == (0, 127)
    assert exhaustive_mismatches(relu, direct=True) == []


def test_relu6_batchnorm():
    bn = fxbn.from_batchnorm([1.0], [0.5], [0.0], [1.0], 0.0, in_scale=0.05, out_scale=0.05, out_zero_point=-128,
                             in_dtype="int8", relu="relu6")
    assert bn.out_range == (-128, -8)  # -128 + 6/0.05
    assert exhaustive_mismatches(bn, direct=True) == []


def test_common_shift():
    a, b = [0.013, 0.5, -0.21, 0.0], [3.2, 0.25, 1.0, 2.0]
    per = fxbn.from_affine(a, b, in_dtype="int8", rounding="half_up")
    com = fxbn.from_affine(a, b, in_dtype="int8", rounding="half_up", common_shift=True)
    assert set(com.shift.tolist()) == {per.shift.max()}
    assert exhaustive_mismatches(com) == []


def test_accumulator_and_multiplier_limits():
    a, b = [0.00123, -0.0456], [3.3, -7.1]
    wide = fxbn.from_affine(a, b, in_dtype="int32")
    assert (wide.accumulator_bits > 32).all()
    with pytest.raises(fxbn.InfeasibleError, match=r"channel 0: .*accumulator of \d+|channel 0: .*-bit"):
        fxbn.from_affine(a, b, in_dtype="int32", acc_bits=32)
    narrow = fxbn.from_affine(a, b, in_range=(-2000, 2000), in_dtype="int32", acc_bits=32)
    assert (narrow.accumulator_bits <= 32).all()
    need = int(wide.multiplier_bits.max())
    with pytest.raises(fxbn.InfeasibleError, match=r"multiplier of \d+ bits"):
        fxbn.from_affine(a, b, in_dtype="int32", max_multiplier_bits=need - 5)


def test_batchnorm_matches_affine_when_exactly_affine():
    # var + eps = 4 (sqrt exact): a = gamma*s_in/(2*s_out), b = (beta - gamma*mean/2)/s_out
    bn = fxbn.from_batchnorm([1.5, -0.75], [0.25, 1.0], [0.5, -1.0], [3.0, 4.0], [1.0, 0.0], in_scale=0.125,
                             out_scale=0.25, in_dtype="int8", rounding="half_up")
    af = fxbn.from_affine([1.5 * 0.125 / 0.5, -0.75 * 0.125 / 0.5], [(0.25 - 0.375) / 0.25, (1.0 - 0.375) / 0.25],
                          in_dtype="int8", rounding="half_up")
    x = int8_inputs(2)
    assert np.array_equal(bn.reference(x), af.reference(x))
    assert np.array_equal(bn.shift, af.shift)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs,match", [
    (dict(a=[0.1, float("nan")], b=[0.0, 0.0]), r"a\[1\] is nan"),
    (dict(a=[0.1], b=[float("inf")]), r"b\[0\] is inf"),
    (dict(a=[0.1, 0.2], b=[0.0, 0.0, 0.0]), "mismatched lengths"),
    (dict(a=[0.1], b=[0.0], rounding="nearest"), "unknown rounding 'nearest'"),
    (dict(a=[0.1], b=[0.0], in_dtype="float32"), "in_dtype"),
    (dict(a=[0.1], b=[0.0], out_dtype="int64"), "out_dtype"),
    (dict(a=[0.1], b=[0.0], out_range=(5, 3)), "out_range"),
    (dict(a=[0.1, 0.2], b=[0.0, 0.0], in_range=[[0, 5], [7, 6]]), "in_range of channel 1 is empty"),
    (dict(a=[0.1], b=[0.0], in_range=(-300, 5), in_dtype="int8"), "exceeds in_dtype int8"),
    (dict(a=[0.1], b=[0.0], acc_bits=128), "acc_bits"),
])
def test_bad_affine_parameters(kwargs, match):
    a, b = kwargs.pop("a"), kwargs.pop("b")
    with pytest.raises(ValueError, match=match):
        fxbn.from_affine(a, b, **kwargs)


@pytest.mark.parametrize("change,match", [
    (dict(var=[1.0, -1.0]), "var \\+ eps of channel 1"),
    (dict(in_scale=[0.1, 0.0]), "in_scale of channel 1"),
    (dict(out_scale=-0.5), "out_scale of channel 0"),
    (dict(mean=[0.0, float("nan")]), r"mean\[1\] is nan"),
    (dict(gamma=[1.0, 2.0, 3.0]), "mismatched lengths"),
    (dict(out_zero_point=0.5), "out_zero_point is 0.5: expected an integer"),
])
def test_bad_batchnorm_parameters(change, match):
    kw = dict(gamma=[1.0, 2.0], beta=[0.0, 0.1], mean=[0.0, 0.2], var=[1.0, 2.0], eps=1e-5, in_scale=0.1,
              out_scale=0.2)
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        fxbn.from_batchnorm(kw.pop("gamma"), kw.pop("beta"), kw.pop("mean"), kw.pop("var"), kw.pop("eps"), **kw,
                            in_dtype="int8")


# ---------------------------------------------------------------- kernel layouts and errors
@pytest.fixture(scope="module")
def layer3():
    return fxbn.from_batchnorm([1.2, -0.8, 0.3], [0.1, 0.0, -0.4], [0.5, -0.2, 0.0], [2.0, 0.5, 1.0], 1e-5,
                               in_scale=0.02, out_scale=0.05, in_dtype="int8")


def test_layouts_agree(layer3):
    rng = np.random.default_rng(0)
    nchw = rng.integers(-128, 128, size=(2, 3, 5, 7)).astype(np.int8)
    y = layer3.apply(nchw, axis=1)
    assert y.dtype == np.int8 and np.array_equal(y, layer3.reference(nchw, axis=1))
    nhwc = np.ascontiguousarray(nchw.transpose(0, 2, 3, 1))
    assert np.array_equal(layer3.apply(nhwc, axis=-1), y.transpose(0, 2, 3, 1))
    strided = nchw.transpose(0, 2, 3, 1)  # non-contiguous view
    assert np.array_equal(layer3(strided, axis=3), y.transpose(0, 2, 3, 1))
    nc = nchw[:, :, 0, 0]
    assert np.array_equal(layer3.apply(nc), y[:, :, 0, 0])
    for dtype in (np.int16, np.int32):
        assert np.array_equal(layer3.apply(nchw.astype(dtype)), y)


def test_out_of_range_input_is_reported():
    layer = fxbn.from_affine([0.1, 0.2], [0.0, 0.0], in_range=[[-10, 10], [0, 100]], in_dtype="int16")
    x = np.zeros((4, 2, 3), np.int16)
    x[2, 1, 1] = 101
    with pytest.raises(ValueError, match=r"x\[2, 1, 1\] = 101 is outside the in_range of channel 1, \[0, 100\]"):
        layer.apply(x)
    out = np.full(x.shape, 7, np.int8)
    with pytest.raises(ValueError, match="channel 1"):
        layer.apply(x, out=out)
    assert (out == 7).all()  # nothing half-written
    with pytest.raises(ValueError, match="channel 1"):
        layer.reference(x)


def test_out_range_check_skipped_only_when_the_dtype_cannot_leave_the_range():
    # in_range = int8's range: int8 inputs need no check pass (cached per dtype), int16 inputs still do
    layer = fxbn.from_affine([0.1, 0.2], [0.0, 0.0], in_range=[[-128, 127], [-128, 127]], in_dtype="int16")
    x8 = np.arange(-128, 128, dtype=np.int8).reshape(-1, 2)
    out8 = np.empty(x8.shape, np.int8)
    assert np.array_equal(layer.apply(x8, axis=1, out=out8), layer.reference(x8, axis=1))
    x16 = x8.astype(np.int16)
    x16[5, 0] = 128
    out16 = np.full(x16.shape, 9, np.int8)
    with pytest.raises(ValueError, match=r"x\[5, 0\] = 128 is outside the in_range of channel 0"):
        layer.apply(x16, axis=1, out=out16)
    assert (out16 == 9).all()
    assert layer._covers(np.dtype(np.int8)) and not layer._covers(np.dtype(np.int16))


def test_bad_apply_arguments(layer3):
    with pytest.raises(ValueError, match="dtype float32"):
        layer3.apply(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="3 channels"):
        layer3.apply(np.zeros((1, 4), np.int8))
    with pytest.raises(ValueError, match="out must be"):
        layer3.apply(np.zeros((1, 3), np.int8), out=np.zeros((1, 3), np.int16))


def test_parameters_are_read_only_and_replace_rebinds(layer3):
    """The parameters apply, save and verify read are one and the same: read-only arrays behind properties
    without setters; replace() builds a new, validated layer with its own kernel binding.  Copies and pickles
    of a layer that has run use their own arrays."""
    import copy
    import pickle

    x = np.arange(-128, 127, dtype=np.int8)[:252].reshape(-1, 3)
    y = layer3.apply(x)
    for clone in (copy.deepcopy(layer3), pickle.loads(pickle.dumps(layer3)), copy.copy(layer3)):
        assert np.array_equal(clone.apply(x), y)
        with pytest.raises(ValueError, match="read-only"):
            clone.bias[0] += 1
    for name in ("multiplier", "bias", "shift", "in_range", "out_range", "rounding", "source", "out_dtype"):
        with pytest.raises(AttributeError):
            setattr(layer3, name, getattr(layer3, name))
    for name in ("multiplier", "bias", "shift", "in_range"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(layer3, name)[0] = 0
    with pytest.raises(TypeError):
        layer3.source["a"] = 1
    changed = layer3.replace(bias=layer3.bias + (np.int64(1) << layer3.shift))   # every unclamped output one up
    moved = changed.apply(x)
    assert not np.array_equal(moved, y)
    assert np.all(moved >= y)
    assert np.array_equal(layer3.apply(x), y)                         # the original keeps its own binding
    with pytest.raises(ValueError, match="does not equal the exact reference"):
        changed.check_exact()
    layer3.check_exact()
    flipped = changed.replace(multiplier=-changed.multiplier)
    assert not np.array_equal(flipped.apply(x), moved)
    with pytest.raises(TypeError, match="unknown field"):
        layer3.replace(multiplier_bits=[1, 2, 3])


# ---------------------------------------------------------------- persistence
@pytest.mark.parametrize("ext", [".json", ".npz"])
def test_save_load_round_trip(tmp_path, layer3, ext):
    path = tmp_path / ("layer" + ext)
    layer3.save(path)
    back = fxbn.load(path)
    for name in ("multiplier", "bias", "shift", "in_range"):
        assert np.array_equal(getattr(back, name), getattr(layer3, name))
    assert back.out_range == layer3.out_range and back.rounding == layer3.rounding
    for k, v in layer3.source.items():
        assert k == "form" and v == back.source[k] or np.array_equal(np.asarray(v), np.asarray(back.source[k]))
    assert back.to_dict() == layer3.to_dict()
    x = int8_inputs(3)
    assert np.array_equal(back.reference(x), layer3.reference(x))


def test_json_is_exact_and_readable(tmp_path):
    layer = fxbn.from_affine([0.1], [2.0 ** -60], in_dtype="int8")
    d = json.loads(json.dumps(layer.to_dict()))
    assert d["source"]["a"] == [0.1] and d["source"]["b"] == [2.0 ** -60]
    assert isinstance(d["multiplier"][0], int)
    assert "FixedPointBN(channels=1" in repr(layer)


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not an fxbn.FixedPointBN record"):
        fxbn.load(bad)
    with pytest.raises(ValueError, match="use .json or .npz"):
        fxbn.load(tmp_path / "x.txt")
    d = fxbn.from_affine([0.1, 0.2], [0.0, 0.0], in_dtype="int8").to_dict()
    d["bias"] = d["bias"][:1]
    with pytest.raises(ValueError, match=r"bias has shape \(1,\), expected \(2,\)"):
        fxbn.FixedPointBN.from_dict(d)
