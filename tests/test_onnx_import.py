"""fxbn.onnx.importer: float ONNX models (torch.onnx.export of the real ResNet-20, and hand-built graphs) read into
fxbn.network.Graph; the integer network exported back to ONNX is bit-identical in onnxruntime; the quantize / check
CLI and ``python -m verify MODEL.onnx``."""
import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import fxbn.onnx as fo  # noqa: E402
from conftest import DATA_DIR  # noqa: E402
from fxbn import importers  # noqa: E402
from fxbn.onnx.importer import import_onnx  # noqa: E402
from fxbn.onnx.network import export_network  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
R20 = DATA_DIR / "cifar10" / "resnet20.npz"


def _needs_resnet():
    pytest.importorskip("torch")
    if not R20.is_file():
        pytest.skip("shared data absent")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """torch.onnx.export of the akamaster ResNet-20 module: BN nodes kept, and BN folded by the exporter."""
    _needs_resnet()
    import warnings

    from experiments import torch_resnet

    d = tmp_path_factory.mktemp("onnx_import")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept = torch_resnet.export_onnx(R20, d / "r20.onnx", fold_bn=False)
        folded = torch_resnet.export_onnx(R20, d / "r20f.onnx", fold_bn=True)
    return kept, folded


@pytest.fixture(scope="module")
def pixels():
    from experiments import data

    if not (DATA_DIR / "cifar10" / "lossless").is_dir():
        pytest.skip("shared data absent")
    return data.cifar_lossless(DATA_DIR)[0]


def _ort_float(path, graph, px):
    x = np.ascontiguousarray(graph.normalise(px).transpose(0, 3, 1, 2))
    sess = fo.session(onnx.load(str(path)) if not isinstance(path, onnx.ModelProto) else path, optimize=False)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _float_matches(graph, path, px, tol=1e-4):
    ours = graph.forward_float(px)
    theirs = _ort_float(path, graph, px)
    if ours.ndim == 4:           # feature maps: the graph is NHWC
        theirs = theirs.transpose(0, 2, 3, 1)
    return ours.shape == theirs.shape and np.abs(ours - theirs).max() <= tol * max(1.0, np.abs(theirs).max())


# ---------------------------------------------------------------------------------------------- ResNet-20
def test_exporter_output_is_what_a_user_gets(exported):
    """The files come from torch.onnx.export: option-A shortcut as Slice/Pad with exporter shape arithmetic,
    AveragePool + Shape/Gather/Concat/Reshape flatten, Gemm; the folded one has no BatchNormalization."""
    kept, folded = (onnx.load(str(p)) for p in exported)
    ops = {n.op_type for n in kept.graph.node}
    assert {"Conv", "BatchNormalization", "Slice", "Pad", "Shape", "Gather", "Reshape", "AveragePool", "Gemm"} <= ops
    assert "BatchNormalization" not in {n.op_type for n in folded.graph.node}
    assert sum(n.op_type == "Conv" and len(n.input) == 3 for n in folded.graph.node) == 19   # conv biases


def test_float_forward_equals_experiments_graph(exported, pixels):
    from experiments import nets

    ref = nets.cifar_resnet(R20)
    want = ref.forward_float(pixels)
    kept = import_onnx(exported[0], MEAN, STD)
    assert [n.op for n in kept.nodes] == [n.op for n in ref.nodes]
    assert np.array_equal(kept.forward_float(pixels), want)            # same float32 arithmetic, bit for bit
    folded = import_onnx(exported[1], MEAN, STD)
    assert sum(n.attrs.get("identity", False) for n in folded.nodes) == 19
    assert np.abs(folded.forward_float(pixels) - want).max() < 1e-4
    for g, path in zip((kept, folded), exported):
        assert _float_matches(g, path, pixels)                         # and the ONNX semantics (onnxruntime)


def test_mutated_graphs_are_detected(exported, pixels):
    """The float check above fails on a wrongly transposed weight, a dropped BN, a dropped folded bias, misread
    pads: each mutation of the imported graph is caught by comparing with onnxruntime's float run."""
    base = import_onnx(exported[0], MEAN, STD)
    assert _float_matches(base, exported[0], pixels)

    def mutated(path, edit):
        g = import_onnx(path, MEAN, STD)
        edit(g)
        return _float_matches(g, path, pixels)

    conv = "/layer2/layer2.1/conv1/Conv"
    assert not mutated(exported[0], lambda g: g.by_name[conv].attrs.update(
        w=g.by_name[conv].attrs["w"].transpose(1, 0, 2, 3)))                           # kh <-> kw
    assert not mutated(exported[0], lambda g: g.by_name[conv].attrs.update(
        w=g.by_name[conv].attrs["w"].transpose(0, 1, 3, 2)))                           # I <-> O (square)
    bn = "/layer2/layer2.1/bn1/BatchNormalization"
    ident = importers.BatchNormParams(np.ones(32, np.float32), np.zeros(32, np.float32), np.zeros(32, np.float32),
                                      np.ones(32, np.float32), 0.0)
    assert not mutated(exported[0], lambda g: g.by_name[bn].attrs.update(bn=ident))    # BN dropped
    folded_bn = next(n.name for n in import_onnx(exported[1], MEAN, STD).nodes if n.attrs.get("identity"))

    def drop_bias(g):
        p = g.by_name[folded_bn].attrs["bn"]
        g.by_name[folded_bn].attrs["bn"] = importers.BatchNormParams(p.gamma, 0 * p.beta, p.mean, p.var, p.eps)
    assert not mutated(exported[1], drop_bias)
    assert not mutated(exported[0], lambda g: g.by_name[conv].attrs.update(pad=(0, 2, 0, 2)))  # pads misread


def test_integer_logits_identical_to_experiments_graph(exported, pixels):
    """Same calibration -> the same activation quantization, the same FixedPointBN / FixedPointAdd layers and the
    same integer logits as the experiments' graph; BN epsilon read as the exporter's decimal (1e-5), not float32."""
    from experiments import nets

    ref = nets.cifar_resnet(R20)
    ref.calibrate([pixels])
    ref.quantize()
    g = import_onnx(exported[0], MEAN, STD)
    g.calibrate([pixels])
    g.quantize()
    ref_bn = [n.name for n in ref.nodes if n.op in ("bn", "add", "input")]
    our_bn = [n.name for n in g.nodes if n.op in ("bn", "add", "input")]
    for a, b in zip(ref_bn, our_bn):
        assert ref.acts[a] == g.acts[b], (a, b)
        qa, qb = ref.q[a], g.q[b]
        for la, lb in zip(qa.get("layers", [qa.get("layer")]), qb.get("layers", [qb.get("layer")])):
            assert la.to_dict() == lb.to_dict(), (a, b)
    assert np.array_equal(ref.forward_int(pixels)[0], g.forward_int(pixels)[0])
    # the test is sensitive: with float32 epsilon (9.99999974738e-06) the layers are other layers
    b = g.by_name[our_bn[1]]
    p = b.attrs["bn"]
    b.attrs["bn"] = importers.BatchNormParams(p.gamma, p.beta, p.mean, p.var, float(np.float32(p.eps)))
    g.quantize()
    assert g.q[b.name]["layers"][0].to_dict() != ref.q[ref_bn[1]]["layers"][0].to_dict()


@pytest.mark.parametrize("which", [0, 1], ids=["bn_kept", "bn_folded"])
def test_export_runs_bit_identical_in_onnxruntime(exported, pixels, which):
    g = import_onnx(exported[which], MEAN, STD)
    g.calibrate([pixels])
    g.quantize()
    lf = g.forward_int(pixels)[0]
    model = export_network(g, 32)
    for opt in (True, False):
        got = fo.session(model, optimize=opt).run(None, {"pixels": pixels})[0]
        assert np.array_equal(got, lf)
    # sensitive: one BN multiplier changed in the exported model -> differing logits
    init = next(t for t in model.graph.initializer if "BatchNormalization" in t.name or "bias" in t.name
                and t.data_type == TensorProto.INT64 and numpy_helper.to_array(t).size > 1)
    arr = numpy_helper.to_array(init).copy()
    arr.reshape(-1)[0] += 1 << 20
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    got = fo.session(model).run(None, {"pixels": pixels})[0]
    assert not np.array_equal(got, lf)


# ---------------------------------------------------------------------------------------------- hand-built graphs
def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def _model(nodes, inits, out_shape, in_shape=("N", 3, 8, 8), opset=17):
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _bn_inits(p, c, rng):
    f = np.float32
    return [_init(p + "g", rng.uniform(0.5, 1.5, c).astype(f)), _init(p + "b", rng.normal(0, 0.3, c).astype(f)),
            _init(p + "m", rng.normal(0, 0.3, c).astype(f)), _init(p + "v", rng.uniform(0.5, 2, c).astype(f))]


def _zoo_model():
    """Depthwise conv, conv bias + BN, Clip(0, 6), LeakyRelu, Pad before conv, MaxPool with pads, residual Add+Relu,
    GlobalAveragePool + Flatten, MatMul + Add bias."""
    rng = np.random.default_rng(1)
    f = np.float32
    inits = [_init("w1", rng.normal(0, 0.3, (6, 3, 3, 3)).astype(f)), _init("b1", rng.normal(0, 0.2, 6).astype(f)),
             _init("wd", rng.normal(0, 0.5, (6, 1, 3, 3)).astype(f)),
             _init("w2", rng.normal(0, 0.3, (6, 6, 1, 3)).astype(f)), _init("b2", rng.normal(0, 0.2, 6).astype(f)),
             _init("lo", np.array(0, f)), _init("hi", np.array(6, f)),
             _init("pads", np.array([0, 0, 0, 1, 0, 0, 0, 1], np.int64)),
             _init("fc", rng.normal(0, 0.5, (6, 4)).astype(f)), _init("fcb", rng.normal(0, 0.1, 4).astype(f))]
    inits += _bn_inits("n1", 6, rng) + _bn_inits("nd", 6, rng)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "n1g", "n1b", "n1m", "n1v"], ["n1"], name="bn1",
                              epsilon=1e-3),
             helper.make_node("Clip", ["n1", "lo", "hi"], ["a1"], name="relu6"),
             helper.make_node("Conv", ["a1", "wd"], ["cd"], name="dw", group=6, pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["cd", "ndg", "ndb", "ndm", "ndv"], ["nd"], name="bnd"),
             helper.make_node("LeakyRelu", ["nd"], ["ad"], name="leaky", alpha=0.1),
             helper.make_node("Pad", ["ad", "pads"], ["pd"], name="pad"),
             helper.make_node("Conv", ["pd", "w2", "b2"], ["c2"], name="conv2", pads=[0, 0, 0, 0]),
             helper.make_node("Add", ["c2", "a1"], ["s"], name="add"),
             helper.make_node("Relu", ["s"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["mp"], name="pool", kernel_shape=[3, 3], strides=[2, 2],
                              pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["mp"], ["gp"], name="gap"),
             helper.make_node("Flatten", ["gp"], ["fl"], name="flat"),
             helper.make_node("MatMul", ["fl", "fc"], ["mm"], name="fc"),
             helper.make_node("Add", ["mm", "fcb"], ["y"], name="fc_bias")]
    return _model(nodes, inits, ("N", 4))


def test_zoo_of_supported_ops_matches_onnxruntime():
    model = _zoo_model()
    onnx.checker.check_model(model)
    g = import_onnx(model, [0.4, 0.5, 0.6], [0.2, 0.25, 0.3])
    ops = [(n.name, n.op) for n in g.nodes]
    assert ops == [("input", "input"), ("conv1", "conv"), ("bn1", "bn"), ("dw", "conv"), ("bnd", "bn"),
                   ("conv2", "conv"), ("conv2/bias", "bn"), ("add", "add"), ("pool", "maxpool"), ("gap", "gap"),
                   ("fc", "dense")]
    assert g.by_name["bn1"].attrs["act"] == "relu6" and g.by_name["bnd"].attrs["act"] == ("leaky", 0.1)
    assert g.by_name["dw"].attrs["depthwise"] and g.by_name["conv2"].attrs["pad"] == (0, 0, 1, 1)
    assert g.by_name["add"].attrs["relu"] and g.by_name["bn1"].attrs["bn"].eps == 1e-3
    px = np.random.default_rng(2).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    assert _float_matches(g, model, px)
    g.calibrate([px])
    g.quantize()
    lf, lr, _, diverged = g.forward_pair(px)
    assert np.array_equal(lf, lr) and diverged == []
    # sensitive: the depthwise weights read as (kh, kw) transposed, or the pad dropped, do not match
    w = g.by_name["dw"].attrs["w"]
    g.by_name["dw"].attrs["w"] = w.transpose(1, 0, 2)
    assert not _float_matches(g, model, px)
    g.by_name["dw"].attrs["w"] = w
    g.by_name["conv2"].attrs["pad"] = (0, 0, 0, 0)
    with pytest.raises((ValueError, AssertionError)):
        assert _float_matches(g, model, px)
    g.by_name["conv2"].attrs["pad"] = (0, 0, 1, 1)
    assert _float_matches(g, model, px)


def test_zoo_asymmetric_pads_and_kernel():
    """ONNX pads are [top, left, bottom, right]: an asymmetric pad with a 4x2 kernel keeps an 8x8 map only when read
    so (read as (t, l, b, r) the shapes differ)."""
    rng = np.random.default_rng(3)
    inits = [_init("w", rng.normal(0, 0.4, (5, 3, 4, 2)).astype(np.float32))] + _bn_inits("n", 5, rng)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="c", pads=[1, 0, 2, 1]),
             helper.make_node("BatchNormalization", ["c", "ng", "nb", "nm", "nv"], ["y"], name="bn")]
    model = _model(nodes, inits, ("N", 5, 8, 8))
    g = import_onnx(model, [0.5] * 3, [0.25] * 3)
    assert g.by_name["c"].attrs["pad"] == (1, 2, 0, 1)
    px = np.random.default_rng(4).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    assert _float_matches(g, model, px)
    g.by_name["c"].attrs["pad"] = (1, 0, 2, 1)
    with pytest.raises((ValueError, AssertionError)):
        assert _float_matches(g, model, px)


def _folded_model():
    rng = np.random.default_rng(5)
    f = np.float32
    inits = [_init("w1", rng.normal(0, 0.3, (8, 3, 3, 3)).astype(f)), _init("b1", rng.normal(0, 0.5, 8).astype(f)),
             _init("w2", rng.normal(0, 0.3, (8, 8, 3, 3)).astype(f)), _init("b2", rng.normal(0, 0.5, 8).astype(f)),
             _init("axes", np.array([2, 3], np.int64)), _init("fc", rng.normal(0, 0.5, (5, 8)).astype(f)),
             _init("fcb", rng.normal(0, 0.1, 5).astype(f))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="c1", pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="c2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "r1"], ["s"], name="s"),
             helper.make_node("ReduceMean", ["s", "axes"], ["m"], name="mean", keepdims=0),
             helper.make_node("Gemm", ["m", "fc", "fcb"], ["y"], name="fc", transB=1)]
    return _model(nodes, inits, ("N", 5), in_shape=("N", 3, "H", "W"), opset=18)


def test_folded_conv_network_exports_bit_identical():
    """Conv with bias and no BN (identity BN carrying the bias), ReduceMean, Gemm: exported and run in
    onnxruntime with integer logits identical to the library's integer network."""
    model = _folded_model()
    g = import_onnx(model, [0.5] * 3, [0.25] * 3, size=8)
    assert [n.op for n in g.nodes] == ["input", "conv", "bn", "conv", "bn", "add", "gap", "dense"]
    px = np.random.default_rng(6).integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
    assert _float_matches(g, model, px)
    g.calibrate([px])
    g.quantize()
    lf, lr, _, diverged = g.forward_pair(px)
    assert np.array_equal(lf, lr) and diverged == []
    exported = export_network(g, 8)
    for opt in (True, False):
        assert np.array_equal(fo.session(exported, optimize=opt).run(None, {"pixels": px})[0], lf)


def test_cli_check_with_exact_reference_on_a_small_model(tmp_path):
    onnx.save(_folded_model(), str(tmp_path / "small.onnx"))
    np.save(tmp_path / "px.npy", np.random.default_rng(6).integers(0, 256, (16, 8, 8, 3), dtype=np.uint8))
    r = cli("quantize", tmp_path / "small.onnx", "--calib", tmp_path / "px.npy", "--out", tmp_path / "s.int.onnx",
            "--input-mean", "0.5,0.5,0.5", "--input-std", "0.25,0.25,0.25", "--size", 8)
    assert r.returncode == 0, r.stderr
    c = cli("check", tmp_path / "s.int.onnx", "--images", tmp_path / "px.npy", "--reference")
    assert c.returncode == 0 and "fxbn vs exact reference     0" in c.stdout and "IDENTICAL" in c.stdout, c.stdout
    r = cli("quantize", tmp_path / "small.onnx", "--calib", tmp_path / "px.npy", "--out", tmp_path / "s.int.onnx",
            "--input-mean", "0.5,0.5,0.5", "--input-std", "0.25,0.25,0.25")
    assert r.returncode == 64 and "give --size" in r.stderr


def _one_conv(**conv_attrs):
    w = np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)
    return _model([helper.make_node("Conv", ["x", "w"], ["y"], name="theconv", **conv_attrs)], [_init("w", w)],
                  ("N", 4, 8, 8))


def _after_conv(op, inputs=(), inits=(), **attrs):
    w = np.random.default_rng(0).normal(size=(3, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node(op, ["c", *inputs], ["y"], name="bad", **attrs)]
    return _model(nodes, [_init("w", w), *inits], ("N", 3, 8, 8))


BAD = {
    "op": (_after_conv("Sigmoid"), r"'bad' \(Sigmoid\): operator Sigmoid is not supported"),
    "dilations": (_one_conv(dilations=[2, 2]), r"'theconv' \(Conv\): dilations \[2, 2\]"),
    "auto_pad": (_one_conv(auto_pad="SAME_UPPER"), r"'theconv' \(Conv\): auto_pad"),
    "group": (_model([helper.make_node("Conv", ["x", "w"], ["y"], name="g3", group=3)],
                     [_init("w", np.ones((6, 1, 3, 3), np.float32))], ("N", 6, 6, 6)), r"'g3' \(Conv\): group 3"),
    "ceil_mode": (_after_conv("MaxPool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
                  r"'bad' \(MaxPool\): ceil_mode"),
    "clip": (_after_conv("Clip", ["lo", "hi"], [_init("lo", np.array(0, np.float32)),
                                                _init("hi", np.array(1, np.float32))]), r"'bad' \(Clip\): Clip\(0.0, 1.0\)"),
    "avgpool": (_after_conv("AveragePool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
                r"'bad' \(AveragePool\): ceil_mode=1"),
    "nonconst_weight": (_model([helper.make_node("Identity", ["x"], ["r"], name="r"),
                                helper.make_node("Conv", ["x", "r"], ["y"], name="dyn")], [], ("N", 3, 6, 6)),
                        r"'dyn' \(Conv\): weight 'r' is not a constant"),
    "bn_after_input": (_model([helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], name="bnx")],
                             [_init(k, np.ones(3, np.float32)) for k in "gbmv"], ("N", 3, 8, 8)),
                      r"'bnx' \(BatchNormalization\): BatchNormalization must directly follow a Conv"),
    "dynamic": (_model([helper.make_node("Conv", ["x", "w"], ["y"], name="c")],
                       [_init("w", np.ones((2, 3, 1, 1), np.float32))], ("N", 2, "H", "W"), ("N", 3, "H", "W")),
                r"symbolic height/width"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_unsupported_models_name_the_node(case):
    model, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        import_onnx(model, [0.5] * 3, [0.25] * 3)


def test_bad_arguments():
    model = _one_conv(pads=[1, 1, 1, 1])
    with pytest.raises(ValueError, match="input_mean must be 3 finite numbers"):
        import_onnx(model, [0.5] * 2, [0.25] * 3)
    with pytest.raises(ValueError, match="input_std must be positive"):
        import_onnx(model, [0.5] * 3, [0.25, 0, 1])
    with pytest.raises(ValueError, match="has height 8"):
        import_onnx(model, [0.5] * 3, [0.25] * 3, size=10)
    with pytest.raises(ValueError, match="cannot read as an ONNX model"):
        import_onnx(__file__, [0.5] * 3, [0.25] * 3)


def test_importer_doctests():
    import doctest

    import fxbn.onnx.importer as m

    assert doctest.testmod(m).failed == 0


# ---------------------------------------------------------------------------------------------- CLI and verify
def cli(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "fxbn.onnx", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope="module")
def quantized(exported, pixels, tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    np.savez(d / "calib.npz", pixels=pixels)
    np.save(d / "check.npy", pixels[:8])
    r = cli("quantize", exported[0], "--calib", d / "calib.npz", "--out", d / "r20.int.onnx", "--layers",
            d / "layers", "--activations", d / "acts.json", "--input-mean", ",".join(map(str, MEAN)),
            "--input-std", ",".join(map(str, STD)), "--batch", 8)
    assert r.returncode == 0, r.stderr
    return d, r


def test_cli_quantize_and_check_end_to_end(quantized, exported, pixels):
    d, r = quantized
    assert "20 calibration images, 19 BN layers, 9 adds" in r.stdout
    assert "calibrating [" in r.stderr and "3/3" in r.stderr                     # the progress bar
    assert len(os.listdir(d / "layers")) == 1 + 19 + 9
    c = cli("check", d / "r20.int.onnx", "--images", d / "check.npy")
    assert c.returncode == 0, c.stderr
    assert "8 images" in c.stdout and c.stdout.count(" 0") >= 2 and "IDENTICAL" in c.stdout
    # the CLI's network is the library's: same as importing + calibrating in-process
    g = import_onnx(exported[0], MEAN, STD)
    g.calibrate([pixels[i:i + 8] for i in range(0, 20, 8)])
    g.quantize()
    got = fo.session(str(d / "r20.int.onnx")).run(None, {"pixels": pixels})[0]
    assert np.array_equal(got, g.forward_int(pixels)[0])
    import fxbn

    layer = fxbn.load(str(d / "layers" / "layer2_layer2.1_bn1_BatchNormalization.json"))
    assert layer.to_dict() == g.q["/layer2/layer2.1/bn1/BatchNormalization"]["layers"][0].to_dict()


def test_cli_check_detects_a_tampered_model(quantized, tmp_path):
    d, _ = quantized
    model = onnx.load(str(d / "r20.int.onnx"))
    init = next(t for t in model.graph.initializer if t.name.endswith("/bias") and "layer3" in t.name
                and t.data_type == TensorProto.INT64)
    arr = numpy_helper.to_array(init).copy()
    arr.reshape(-1)[:] += 1 << 22
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(model, str(tmp_path / "bad.int.onnx"))
    c = cli("check", tmp_path / "bad.int.onnx", "--images", d / "check.npy")
    assert c.returncode == 1 and "MISMATCH" in c.stdout, (c.stdout, c.stderr)


def test_cli_check_refuses_a_changed_float_model(quantized, exported, tmp_path):
    d, _ = quantized
    c = cli("check", d / "r20.int.onnx", "--images", d / "check.npy", "--model", exported[1])
    assert c.returncode == 64 and "SHA-256 differs" in c.stderr and len(c.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("edit, message", [
    (["--input-mean", "0.4,x,0.4"], "--input-mean '0.4,x,0.4': expected comma-separated numbers"),
    (["--input-mean", "0.4,0.4"], "input_mean must be 3 finite numbers"),
    (["--input-std", "0.2,0,0.2"], "input_std must be positive"),
    (["--calib", "MISSING.npy"], "MISSING.npy: no such file or directory"),
    (["--calib", "{d}/float.npy"], "pixels must be uint8, got float32"),
    (["--calib", "{d}/small.npy"], r"pixels of shape \(2, 16, 16, 3\), expected \(N, 32, 32, C\)"),
    (["--size", "0"], "--size 0: must be positive"),
    (["--out", "{d}/nodir/x.onnx"], "does not exist"),
    (["--limit", "0"], "--limit 0: must be positive"),
])
def test_cli_quantize_usage_errors(exported, tmp_path, edit, message):
    np.save(tmp_path / "float.npy", np.zeros((2, 32, 32, 3), np.float32))
    np.save(tmp_path / "small.npy", np.zeros((2, 16, 16, 3), np.uint8))
    np.save(tmp_path / "ok.npy", np.zeros((2, 32, 32, 3), np.uint8))
    args = {"--calib": str(tmp_path / "ok.npy"), "--out": str(tmp_path / "o.int.onnx"),
            "--input-mean": "0.4,0.4,0.4", "--input-std": "0.2,0.2,0.2"}
    extra = []
    for k, v in zip(edit[::2], edit[1::2]):
        v = v.format(d=tmp_path)
        if k in args:
            args[k] = v
        else:
            extra += [k, v]
    r = cli("quantize", exported[0], *[x for kv in args.items() for x in kv], *extra)
    assert r.returncode == 64, (r.stdout, r.stderr)
    assert message in r.stderr or __import__("re").search(message, r.stderr), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o.int.onnx").exists()


def test_cli_usage_errors_on_models(tmp_path, quantized):
    d, _ = quantized
    onnx.save(BAD["op"][0], str(tmp_path / "sigmoid.onnx"))
    np.save(tmp_path / "px.npy", np.zeros((2, 8, 8, 3), np.uint8))
    r = cli("quantize", tmp_path / "sigmoid.onnx", "--calib", tmp_path / "px.npy", "--out", tmp_path / "o.onnx",
            "--input-mean", "0,0,0", "--input-std", "1,1,1")
    assert r.returncode == 64 and "'bad' (Sigmoid)" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("check", d / "r20.int.onnx")
    assert r.returncode == 64 and "network model: check it with --images" in r.stderr
    r = cli("quantize", tmp_path / "missing.onnx", "--calib", tmp_path / "px.npy", "--out", tmp_path / "o.onnx",
            "--input-mean", "0,0,0", "--input-std", "1,1,1")
    assert r.returncode == 64 and "missing.onnx: no such file" in r.stderr
    r = cli("quantize", tmp_path / "sigmoid.onnx")
    assert r.returncode == 64 and "required" in r.stderr


def test_verify_reads_onnx_models(quantized, exported, capsys):
    """python -m verify MODEL.onnx --activations: the 19 layers of the imported graph, proved, and equal to those the
    quantize CLI saved; a folded export gives 19 identity-BN layers."""
    pytest.importorskip("z3")
    from verify import __main__ as verify_main
    from verify import model as vmodel

    d, _ = quantized
    acts = vmodel.load_activations(str(d / "acts.json"))
    m = vmodel.load_model(str(exported[0]))
    layers = vmodel.build_layers([m], acts)
    assert len(layers) == 19
    import fxbn

    for name, layer, _ in layers:
        saved = fxbn.load(str(d / "layers" / (name.strip("/").replace("/", "_") + ".json")))
        assert saved.to_dict() == layer.to_dict(), name
    code = verify_main.main(["--quiet", str(exported[0]), "--activations", str(d / "acts.json"), "--method",
                             "breakpoints"])
    out = capsys.readouterr().out
    assert code == 0 and out.count("PROVED") >= 19, out
    folded = vmodel.load_model(str(exported[1]))
    assert len(folded.pairs) == 19 and all(p.bn.endswith("/bias") for p in folded.pairs)
    with pytest.raises(vmodel.ModelError, match=r"'bad' \(Sigmoid\)"):
        path = d / "sigmoid.onnx"
        onnx.save(BAD["op"][0], str(path))
        vmodel.load_model(str(path))


def test_cli_quantize_reads_an_image_directory(exported, tmp_path):
    pytest.importorskip("PIL")
    r = cli("quantize", exported[0], "--calib", DATA_DIR / "cifar10" / "lossless", "--limit", 4, "--out",
            tmp_path / "d.int.onnx", "--input-mean", ",".join(map(str, MEAN)), "--input-std", ",".join(map(str, STD)))
    assert r.returncode == 0 and "4 calibration images" in r.stdout, r.stderr
    from fxbn.onnx.quantize import load_images
    from experiments import data

    assert np.array_equal(load_images(DATA_DIR / "cifar10" / "lossless", 32), data.cifar_lossless(DATA_DIR)[0])
