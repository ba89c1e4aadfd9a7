"""fxbn.onnx: FixedPointBN layers as integer-only ONNX models, bit-identical in onnxruntime to FixedPointBN.apply."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import fxbn  # noqa: E402
import fxbn.onnx as fo  # noqa: E402
from conftest import DATA_DIR  # noqa: E402
from strategies import affine_layers  # noqa: E402


def f32(x):
    """x rounded to float32, held as float64: scales as deployment formats store them (two such scales
    multiply exactly, which conv_bn_layer requires)."""
    return float(np.float32(x))


A8 = np.array([0.03, -0.07, 0.0, 1e-3, -2.5, 40.0, 0.7, -0.011])
B8 = np.array([1.3, -0.2, 3.7, -100.2, 0.45, 7.1, -60.3, 2.2])
OPTS = ("ORT_ENABLE_ALL", "ORT_DISABLE_ALL")


def _identical(res, exhaustive=True):
    assert res["exhaustive"] is exhaustive, res
    for level in OPTS:
        assert res[level]["mismatches"] == 0, (level, res)
        assert res[level]["out_of_range"] == 0, (level, res)


def _bn(in_dtype, out_dtype, relu, rounding, channels=6, seed=0):
    rng = np.random.default_rng(seed)
    gamma = rng.normal(0, 1, channels)
    gamma[0] = -abs(gamma[0])                                       # a negative multiplier
    return fxbn.from_batchnorm(gamma, rng.normal(0, 0.5, channels), rng.normal(0, 1, channels),
                               rng.uniform(0.2, 3, channels), 1e-5, in_scale=0.03, out_scale=0.05,
                               in_zero_point=3 if in_dtype == "uint8" else 0, out_zero_point=-7 if relu else 4,
                               in_dtype=in_dtype, out_dtype=out_dtype, rounding=rounding, relu=relu)


# (layer factory, axis, rank, expected accumulator): every input type, rounding, relu/relu6, NCHW/NHWC/(N, C),
# int32 and int64 accumulators, negative and zero multipliers, every output type
LAYERS = {
    "int8_half_even_nchw": (lambda: fxbn.from_affine(A8, B8, in_dtype="int8"), 1, 4, "int32"),
    "int8_floor_nhwc": (lambda: fxbn.from_affine(A8, B8, in_dtype="int8", rounding="floor"), -1, 4, "int32"),
    "uint8_half_up_relu_nchw": (lambda: fxbn.from_affine(A8, B8, in_dtype="uint8", out_dtype="uint8",
                                                         rounding="half_up", relu=True), 1, 4, "int32"),
    "uint8_bn_relu6_nhwc": (lambda: _bn("uint8", "uint8", "relu6", "half_even"), -1, 4, "int32"),
    "int8_bn_half_away_nc": (lambda: _bn("int8", "int8", False, "half_away"), 1, 2, "int32"),
    "int16_half_up_nchw": (lambda: fxbn.from_affine(A8, B8, in_dtype="int16", rounding="half_up"), 1, 4, "int64"),
    "int16_half_away_nhwc_int16out": (lambda: fxbn.from_affine(A8 * 7, B8 * 30, in_dtype="int16",
                                                               out_dtype="int16", rounding="half_away"),
                                      -1, 4, "int64"),
    "int16_acc32_floor_nhwc": (lambda: fxbn.from_affine(np.delete(A8, 3), np.delete(B8, 3), in_dtype="int16",
                                                        rounding="floor", acc_bits=32),
                               -1, 3, "int32"),
    "int16_bn_uint16out_relu": (lambda: _bn("int16", "uint16", True, "half_up"), 1, 4, "int64"),
    "int8_channel_axis0_common_shift": (lambda: fxbn.from_affine(A8, B8, in_dtype="int8", common_shift=True),
                                        0, 3, "int32"),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_exhaustive_bit_identical_in_onnxruntime(name):
    """Every value of the input type in every channel, ORT graph optimizations on and off, auto and int64
    accumulators: the ONNX outputs are FixedPointBN.apply's, byte for byte (dtype included)."""
    make, axis, rank, acc = LAYERS[name]
    layer = make()
    model = fo.export_layer(layer, None, axis=axis, rank=rank)
    assert {p.key: p.value for p in model.metadata_props}["fxbn.acc"] == acc
    assert model.graph.node[0].attribute[0].i == (onnx.TensorProto.INT32 if acc == "int32" else
                                                  onnx.TensorProto.INT64)
    res = fo.check_layer(model, layer, budget=1 << 20)
    _identical(res)
    assert res["inputs"] == layer.channels * (np.iinfo(layer.in_dtype).max - np.iinfo(layer.in_dtype).min + 1)
    if acc == "int32":
        _identical(fo.check_layer(fo.export_layer(layer, None, axis=axis, rank=rank, acc="int64"), layer,
                                  budget=1 << 20))


@settings(max_examples=12)
@given(affine_layers(max_channels=4), st.sampled_from(["int8", "uint8", "int16"]), st.sampled_from([1, -1]))
def test_random_layers_exhaustive(params, in_dtype, axis):
    a, b, rounding = params
    try:
        layer = fxbn.from_affine(a, b, in_dtype=in_dtype, rounding=rounding)
    except fxbn.InfeasibleError:                                    # ties with half_even: no exact layer to export
        return
    res = fo.check_layer(fo.export_layer(layer, None, axis=axis, rank=4), layer, budget=1 << 20, optimize=(True,))
    assert res["exhaustive"] and res["ORT_ENABLE_ALL"]["mismatches"] == 0, res
    assert res["ORT_ENABLE_ALL"]["out_of_range"] == 0


def test_int32_full_range_sampled_with_range_ends():
    """Full int32 range (int64 accumulator): sampled, the range ends and every breakpoint +-1 included."""
    layer = fxbn.from_affine(A8 * 1e-4, B8, in_dtype="int32", rounding="half_up")
    values, exhaustive = fo.check_inputs(layer)
    assert not exhaustive
    for c in range(layer.channels):
        assert {-(2 ** 31), -(2 ** 31) + 1, 2 ** 31 - 2, 2 ** 31 - 1} <= set(values[c].tolist())
    d, T = layer.reference_breakpoints("core")
    t = [v * (1 if d[1] >= 0 else -1) for v in T[1] if -(2 ** 31) <= v * (1 if d[1] >= 0 else -1) < 2 ** 31]
    assert set(t) <= set(values[1].tolist())
    for axis, rank in ((1, 4), (-1, 4), (1, 2)):
        model = fo.export_layer(layer, None, axis=axis, rank=rank)
        assert {p.key: p.value for p in model.metadata_props}["fxbn.acc"] == "int64"
        _identical(fo.check_layer(model, layer), exhaustive=False)


def test_int32_narrow_range_int32_accumulator_and_range_count():
    """An int32 layer on an accumulator-style range (24 bits) solved for a 32-bit accumulator exports with int32
    arithmetic; its out_of_range output counts exactly the inputs outside their channel's range."""
    lo, hi = -(2 ** 23), 2 ** 23 - 1
    a = np.array([3, -5, 1, 7, -1, 11, 2, -9]) / 2 ** 16                     # dyadic: 32 bits suffice
    b = np.array([1.55, -0.2, 4.05, -99.7, 0.8, 7.3, -59.95, 2.3])
    layer = fxbn.from_affine(a, b, in_dtype="int32", in_range=(lo, hi), rounding="half_up", acc_bits=32)
    model = fo.export_layer(layer, None, axis=1, rank=2)
    assert fo.accumulator_type(layer) == "int32"
    _identical(fo.check_layer(model, layer), exhaustive=False)
    rng = np.random.default_rng(5)
    x = rng.integers(lo, hi, (100, 8), endpoint=True).astype(np.int32)
    x[3, 2], x[7, 5], x[9, 0] = hi + 1, lo - 1, np.iinfo(np.int32).min
    y, bad = fo.run(model, x)
    assert int(bad) == 3
    x[3, 2], x[7, 5], x[9, 0] = hi, lo, 0
    y, bad = fo.run(model, x, optimize=False)
    assert int(bad) == 0 and np.array_equal(y, layer.apply(x, axis=1))


def test_int32_accumulator_refused_where_not_proven():
    layer = fxbn.from_affine(A8, B8, in_dtype="int16", rounding="half_up")
    with pytest.raises(ValueError, match=r"acc='int32' is not proven.*channel \d"):
        fo.export_layer(layer, acc="int32")
    small = fxbn.from_affine(A8, B8, in_dtype="int8")
    assert fo.accumulator_type(small, "int8") == "int32"

    def by_hand(A, B, s, lo=-128, hi=127):
        return fxbn.FixedPointBN([A], [B], [s], [[lo, hi]], (-128, 127), "floor",
                                 {"form": "affine", "a": [A / 2.0 ** s], "b": [B / 2.0 ** s]}, in_dtype="int8")

    assert fo.accumulator_type(by_hand(3, 5, 30)) == "int32"
    assert fo.accumulator_type(by_hand(3, 5, 31)) == "int64"                 # 2^31 is not an int32
    assert fo.accumulator_type(by_hand(2 ** 23, 0, 0)) == "int32"            # 2^23 * -128 = -2^30
    assert fo.accumulator_type(by_hand(2 ** 24, 0, 0)) == "int32"            # 2^24 * -128 = -2^31: fits
    assert fo.accumulator_type(by_hand(2 ** 24, -1, 0)) == "int64"           # -2^31 - 1 does not
    assert fo.accumulator_type(by_hand(2 ** 24, 2 ** 24 - 1, 0)) == "int32"  # 2^24 * 127 + B = 2^31 - 1
    assert fo.accumulator_type(by_hand(2 ** 24, 2 ** 24, 0)) == "int64"      # 2^31
    assert fo.accumulator_type(by_hand(2 ** 40, 0, 0, 0, 0)) == "int64"      # A itself beyond int32
    with pytest.raises(ValueError, match="channel 0 has shift 31 > 30"):
        fo.export_layer(by_hand(3, 5, 31), acc="int32")


def test_bad_arguments_raise():
    layer = fxbn.from_affine(A8, B8, in_dtype="int8")
    with pytest.raises(ValueError, match="axis 4 is out of bounds for rank 4"):
        fo.export_layer(layer, axis=4)
    with pytest.raises(ValueError, match="in_dtype must be one of"):
        fo.export_layer(layer, in_dtype="int64")
    with pytest.raises(ValueError, match="acc must be"):
        fo.export_layer(layer, acc="int16")
    narrow = fxbn.from_affine([0.5], [0.25], in_dtype="int32", in_range=(1000, 2000), rounding="floor")
    with pytest.raises(ValueError, match="in_dtype int8 holds no value of the in_range of channel 0"):
        fo.export_layer(narrow, in_dtype="int8")


def test_model_is_standard_integer_only_onnx():
    """onnx.checker (full check with shape inference), opset 18 of the default domain, every tensor (inputs,
    outputs, initializers, inferred intermediates) an integer or bool type, and only the documented ops."""
    layer = _bn("uint8", "uint8", True, "half_even")
    model = fo.export_layer(layer, None, axis=1, rank=4)
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", fo.OPSET)] and fo.OPSET == 18
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    ints = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT16, onnx.TensorProto.UINT16,
            onnx.TensorProto.INT32, onnx.TensorProto.INT64, onnx.TensorProto.BOOL}
    infos = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    assert {v.name for v in inferred.graph.value_info} >= {"v", "ax", "acc", "rem", "multiple", "q", "clipped"}
    assert all(v.type.tensor_type.elem_type in ints for v in infos), infos
    assert all(t.data_type in ints for t in model.graph.initializer)
    ops = {n.op_type for n in model.graph.node}
    assert ops <= {"Cast", "Mul", "Add", "Mod", "Sub", "Div", "Clip", "Less", "Greater", "Or", "ReduceSum",
                   "Constant"}
    mod = next(n for n in model.graph.node if n.op_type == "Mod")
    assert onnx.helper.get_attribute_value(mod.attribute[0]) == 0          # fmod=0
    stored, axis, rank = fo.model_layer(model)
    assert stored.to_dict() == layer.to_dict() and (axis, rank) == (1, 4)


def test_import_onnx_is_the_real_package():
    """fxbn.onnx's `onnx` is the ONNX package, not fxbn's own fxbn/onnx.  Judged by the package directory, not by the
    name "fxbn" in the path (a checkout in a folder named fxbn holds its venv's onnx under that name too)."""
    ours = pathlib.Path(fxbn.__file__).resolve().parent
    assert fo.onnx.__name__ == "onnx" and fo.onnx is onnx and ours not in pathlib.Path(onnx.__file__).resolve().parents


def test_doctests():
    import doctest

    result = doctest.testmod(fo)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------------------------------------ the op semantics
def _edge_values(w, k, rng):
    lo, hi, d = -(1 << (w - 1)), (1 << (w - 1)) - 1, 1 << k
    edges = [lo, lo + 1, lo + d - 1, lo + d, -d - 1, -d, -d + 1, -1, 0, 1, d - 1, d, d + 1, hi - d, hi - 1, hi]
    return np.array(edges + rng.integers(lo, hi, 64, endpoint=True).tolist(), np.int64)


@pytest.mark.parametrize("w", [32, 64])
def test_onnxruntime_mod_div_semantics_are_the_lemmas(w):
    """The lemma onnx_floor_div models ONNX Mod(fmod=0) as bvsmod (the divisor's sign) and Div as bvsdiv
    (truncation toward zero).  onnxruntime's int32/int64 kernels agree, for every divisor 2^k the exporter uses and
    accumulator values at both ends of the range; and the chain gives floor (Python's >>) where plain Div does not."""
    from onnx import helper

    elem = onnx.TensorProto.INT32 if w == 32 else onnx.TensorProto.INT64
    npt = np.int32 if w == 32 else np.int64
    nodes = [helper.make_node("Mod", ["v", "d"], ["m"], fmod=0), helper.make_node("Div", ["v", "d"], ["t"]),
             helper.make_node("Sub", ["v", "m"], ["vm"]), helper.make_node("Div", ["vm", "d"], ["q"])]
    vi = lambda n: helper.make_tensor_value_info(n, elem, ["L"])  # noqa: E731
    graph = helper.make_graph(nodes, "sem", [vi("v"), vi("d")], [vi("m"), vi("t"), vi("q")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", fo.OPSET)])
    model.ir_version = 8
    rng = np.random.default_rng(w)
    vs, ds = [], []
    for k in range(w - 1):
        v = _edge_values(w, k, rng)
        vs.append(v)
        ds.append(np.full(v.shape, 1 << k, np.int64))
    v, d = np.concatenate(vs), np.concatenate(ds)
    trunc = np.array([abs(a) // b * (1 if a >= 0 else -1) for a, b in zip(v.tolist(), d.tolist())], np.int64)
    plain_div_differs = 0
    for opt in (True, False):
        m, t, q = fo.session(model, opt).run(None, {"v": v.astype(npt), "d": d.astype(npt)})
        assert np.array_equal(m.astype(np.int64), v % d)                   # Python %: the divisor's sign
        assert np.array_equal(t.astype(np.int64), trunc)                   # truncation toward zero
        floor = np.array([a >> k for a, k in zip(v.tolist(), [int(x).bit_length() - 1 for x in d.tolist()])])
        assert np.array_equal(q.astype(np.int64), floor)
        plain_div_differs += int(np.sum(t.astype(np.int64) != floor))
    assert plain_div_differs > 0


# ------------------------------------------------------------------------------------------------ mutations
def _mutate(model, how):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    if how == "plain_div":                    # Div of the accumulator itself: the Mod/Sub correction skipped
        div = next(n for n in g.node if n.op_type == "Div")
        div.input[0] = "acc"
    elif how == "fmod1":
        mod = next(n for n in g.node if n.op_type == "Mod")
        mod.attribute[0].i = 1
    elif how == "multiplier_plus_one":        # one channel's A off by one
        init = next(t for t in g.initializer if t.name == "multiplier")
        arr = onnx.numpy_helper.to_array(init).copy()
        arr.flat[3] += 1
        init.CopyFrom(onnx.numpy_helper.from_array(arr, "multiplier"))
    elif how == "shift_minus_one":
        init = next(t for t in g.initializer if t.name == "divisor")
        arr = onnx.numpy_helper.to_array(init).copy()
        arr.flat[int(np.argmax(arr.ravel()))] //= 2
        init.CopyFrom(onnx.numpy_helper.from_array(arr, "divisor"))
    return m


@pytest.mark.parametrize("how", ["plain_div", "fmod1", "multiplier_plus_one", "shift_minus_one"])
def test_check_detects_wrong_models(how):
    """The check is not vacuous: each deliberately wrong graph gives mismatches, with ORT optimizations on and off."""
    layer = fxbn.from_affine(A8, B8, in_dtype="int16", rounding="half_up")
    bad = _mutate(fo.export_layer(layer, None, axis=1, rank=4), how)
    res = fo.check_layer(bad, layer, budget=1 << 20)
    for level in OPTS:
        assert res[level]["mismatches"] > 0 and res[level]["first"] is not None, (how, res)


# ------------------------------------------------------------------------------------------------ CLI
def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fxbn.onnx", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_export_and_check(tmp_path):
    layers = tmp_path / "layers"
    layers.mkdir()
    fxbn.from_affine(A8, B8, in_dtype="int8").save(layers / "a.json")
    fxbn.from_affine(A8 * 1e-4, B8, in_dtype="int32", rounding="floor").save(layers / "b.npz")
    out = tmp_path / "out"
    r = _cli("export", str(layers), "--out", str(out), "--axis", "-1")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.onnx", "b.onnx"]
    assert "accumulator int32" in r.stdout and "accumulator int64" in r.stdout
    for stem, ext in (("a", "json"), ("b", "npz")):
        r = _cli("check", str(out / f"{stem}.onnx"), str(layers / f"{stem}.{ext}"))
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.count("mismatches 0, out_of_range 0") == 2 and "IDENTICAL" in r.stdout
    assert "every input" in _cli("check", str(out / "a.onnx"), str(layers / "a.json")).stdout
    # a wrong model: exit 1 and the first mismatch printed
    onnx.save(_mutate(onnx.load(str(out / "a.onnx")), "plain_div"), str(tmp_path / "bad.onnx"))
    r = _cli("check", str(tmp_path / "bad.onnx"), str(layers / "a.json"))
    assert r.returncode == 1 and "MISMATCH" in r.stdout and "first: channel" in r.stdout, r.stdout


def test_cli_usage_errors(tmp_path):
    r = _cli("export", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o"))
    assert r.returncode == 64 and "no such file" in r.stderr
    assert not (tmp_path / "o").exists()
    (tmp_path / "x.json").write_text(json.dumps({"format": "other"}))
    r = _cli("export", str(tmp_path / "x.json"), "--out", str(tmp_path / "o"))
    assert r.returncode == 64 and "x.json" in r.stderr and not (tmp_path / "o").exists()
    assert _cli("frobnicate").returncode == 64


# ------------------------------------------------------------------------------------------------ real layers
def test_resnet20_layers_bit_identical():
    """The 19 FixedPointBN layers of the real ResNet-20 (shared weights, exact accumulator bounds as in_range,
    int32 inputs), exported NCHW: identical to FixedPointBN.apply at the range ends, every breakpoint +-1 and random
    accumulator values, ORT optimizations on and off, no input out of range."""
    path = DATA_DIR / "cifar10" / "resnet20.npz"
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    from fxbn import importers

    arrays = dict(np.load(path))
    pairs = importers.state_dict_conv_bn_pairs(arrays)
    act_in = {bn: importers.ActivationQuant(f32(0.03), -128 if bn != "bn1" else 0) for _, bn in pairs}
    act_out = {bn: importers.ActivationQuant(f32(0.05), -128) for _, bn in pairs}
    imported = importers.from_named_arrays(arrays, pairs, act_in, act_out, eps=1e-5,
                                           relu={bn: True for _, bn in pairs})
    assert len(imported) == 19
    accs = set()
    for name, (layer, _, _) in imported.items():
        model = fo.export_layer(layer, None, axis=1, rank=4)
        accs.add({p.key: p.value for p in model.metadata_props}["fxbn.acc"])
        res = fo.check_layer(model, layer, samples=512)
        for level in OPTS:
            assert res[level]["mismatches"] == 0 and res[level]["out_of_range"] == 0, (name, res)
    assert accs                                               # the accumulator types the real layers needed


def test_resnet20_integer_network_bit_identical():
    """The experiments' whole ResNet-20 integer network (uint8 pixels -> int64 logits: MatMulInteger convolutions,
    fxbn.onnx BN subgraphs, requantizing adds, pooling, dense) exported by experiments.onnx_net: its logits in
    onnxruntime equal Graph.forward_int's (FixedPointBN.apply) on a sample of CIFAR-10 test images, optimizations
    on and off; the same graph with one BN's division by 2^s left out differs."""
    if not (DATA_DIR / "cifar10" / "resnet20.npz").exists() or not (DATA_DIR / "cifar10" / "test").is_dir():
        pytest.skip(f"shared data not found: {DATA_DIR / 'cifar10'}")
    from experiments import onnx_net

    graph, pixels, labels = onnx_net.cifar_network(DATA_DIR, "resnet20", limit_per_class=4, calib_per_class=4)
    model = onnx_net.export_graph(graph, 32)
    assert {n.op_type for n in model.graph.node} <= {"Cast", "Mul", "Add", "Sub", "Div", "Clip", "Pad",
                                                    "Slice", "MatMulInteger", "ReduceSum", "MatMul", "Identity"}
    res, theirs = onnx_net.compare(graph, model, pixels, batch=20)
    assert len(pixels) == 40 and len(np.unique(theirs.argmax(1))) > 3      # real, varied predictions
    for level in OPTS:
        bad, ours = res[level]
        assert bad == 0 and ours.dtype == np.int64 and np.array_equal(ours, theirs), level
    unit = np.array(json.loads({p.key: p.value for p in model.metadata_props}["fxbn.logit_unit"]))
    assert np.array_equal(res["ORT_ENABLE_ALL"][1][:8] * unit, graph.forward_int(pixels[:8], bn="fxbn")[1])
    clip = next(n for n in model.graph.node if n.name == "layer1.0.bn2/clipped")
    assert clip.input[0] == "layer1.0.bn2/q"
    clip.input[0] = "layer1.0.bn2/acc"                  # the division by 2^s left out
    res, _ = onnx_net.compare(graph, model, pixels, batch=20)
    assert all(res[level][0] > 0 for level in OPTS), {k: v[0] for k, v in res.items()}
