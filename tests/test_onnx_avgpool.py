"""Local ONNX AveragePool end to end: torch.nn.AvgPool2d exported by torch.onnx.export (and models built with
onnx.helper) -> import_onnx -> calibrate / quantize -> the integer network equals its exact reference ->
export_network -> onnxruntime (graph optimizations on and off) gives the integer network's logits bit for bit;
the quantize / check CLI and ``python -m verify`` on the saved avgpool layers."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import fxbn  # noqa: E402
import fxbn.onnx as fo  # noqa: E402
from fxbn.onnx.importer import import_onnx  # noqa: E402
from fxbn.onnx.network import export_float, export_network  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

TORCH_POOLS = {   # nn.AvgPool2d keywords
    "k2s2": dict(kernel_size=2, stride=2),
    "k3s1p1 incl": dict(kernel_size=3, stride=1, padding=1, count_include_pad=True),
    "k3s1p1 excl": dict(kernel_size=3, stride=1, padding=1, count_include_pad=False),
    "k3s2p1": dict(kernel_size=3, stride=2, padding=1),
    "k3s2p1 excl": dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
}


def _torch_model(pool, seed=0):
    import torch

    torch.manual_seed(seed)
    nn = torch.nn
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(**pool),
                      nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(8, 10))
    with torch.no_grad():                     # non-trivial BN statistics
        for bn in (m[1], m[5]):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    return m.eval()


def _export_torch(module, path, size=12):
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, size, size),), str(path), input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                          opset_version=17, dynamo=False, training=torch.onnx.TrainingMode.PRESERVE)
    return path


def _pixels(n, size, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _ort_float(model, graph, px):
    x = np.ascontiguousarray(graph.normalise(px).transpose(0, 3, 1, 2))
    sess = fo.session(model, optimize=False)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _float_close(graph, model, px, tol=1e-4, nchw_out=True):
    ours, theirs = graph.forward_float(px), _ort_float(model, graph, px)
    if ours.ndim == 4 and nchw_out:
        theirs = theirs.transpose(0, 2, 3, 1)
    return ours.shape == theirs.shape and np.abs(ours - theirs).max() <= tol * max(1.0, np.abs(theirs).max())


def _ort_int(model, px):
    return [fo.session(model, optimize=opt).run(None, {"pixels": px})[0] for opt in (True, False)]


def _end_to_end(graph, model, px, size):
    """Float import = the ONNX model; integer network = its exact reference; onnxruntime = the integer network."""
    assert _float_close(graph, model, px)
    graph.calibrate([px])
    graph.quantize()
    lf, lr, _, diverged = graph.forward_pair(px)
    assert np.array_equal(lf, lr) and diverged == []
    assert np.array_equal(graph.forward_int(px)[0], lf)
    for conv in ("matmul", "convinteger"):
        exported = export_network(graph, size, conv=conv)
        onnx.checker.check_model(exported, full_check=True)
        for got in _ort_int(exported, px):
            assert got.dtype == np.int64 and np.array_equal(got, lf), conv
    return lf


@pytest.mark.parametrize("case", sorted(TORCH_POOLS))
def test_torch_avgpool_bit_identical_in_onnxruntime(tmp_path, case):
    pytest.importorskip("torch")
    path = _export_torch(_torch_model(TORCH_POOLS[case]), tmp_path / "m.onnx")
    model = onnx.load(str(path))
    assert "AveragePool" in [n.op_type for n in model.graph.node]
    g = import_onnx(model, MEAN, STD)
    pool = next(n for n in g.nodes if n.op == "avgpool")
    kw = TORCH_POOLS[case]
    k, s, p = kw["kernel_size"], kw["stride"], kw.get("padding", 0)
    assert pool.attrs == {"kernel": (k, k), "stride": (s, s), "pad": (p,) * 4,
                          "count_include_pad": kw.get("count_include_pad", True)}
    px = _pixels(12, 12, 1)
    _end_to_end(g, model, px, 12)
    # the torch module itself agrees with the imported float network
    import torch

    with torch.no_grad():
        want = _torch_model(kw)(torch.from_numpy(np.ascontiguousarray(g.normalise(px).transpose(0, 3, 1, 2))))
    assert np.abs(g.forward_float(px) - want.numpy()).max() < 1e-4 * max(1.0, float(want.abs().max()))


# ---------------------------------------------------------------------------------------------- onnx.helper
def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def _helper_model(pool_attrs, pre_pad=None, size=10, output_pool=False):
    """Conv+BN+Relu, [Pad], AveragePool(pool_attrs), [Conv+BN+Relu, GlobalAveragePool, Flatten, Gemm]."""
    rng = np.random.default_rng(7)
    f = np.float32
    inits = [_init("w1", rng.normal(0, 0.3, (6, 3, 3, 3)).astype(f)), _init("b1", rng.normal(0, 0.2, 6).astype(f)),
             _init("w2", rng.normal(0, 0.3, (6, 6, 1, 1)).astype(f)),
             _init("fc", rng.normal(0, 0.5, (5, 6)).astype(f)), _init("fcb", rng.normal(0, 0.1, 5).astype(f))]
    for p in ("n1", "n2"):
        inits += [_init(p + "g", rng.uniform(0.5, 1.5, 6).astype(f)), _init(p + "b", rng.normal(0, 0.3, 6).astype(f)),
                  _init(p + "m", rng.normal(0, 0.3, 6).astype(f)), _init(p + "v", rng.uniform(0.5, 2, 6).astype(f))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "n1g", "n1b", "n1m", "n1v"], ["n1"], name="bn1"),
             helper.make_node("Relu", ["n1"], ["r1"], name="relu1")]
    src = "r1"
    if pre_pad is not None:
        inits.append(_init("pads", np.array(pre_pad, np.int64)))
        nodes.append(helper.make_node("Pad", ["r1", "pads"], ["padded"], name="pad"))
        src = "padded"
    nodes.append(helper.make_node("AveragePool", [src], ["ap" if not output_pool else "y"], name="avgpool",
                                  **pool_attrs))
    if not output_pool:
        nodes += [helper.make_node("Conv", ["ap", "w2"], ["c2"], name="conv2"),
                  helper.make_node("BatchNormalization", ["c2", "n2g", "n2b", "n2m", "n2v"], ["n2"], name="bn2"),
                  helper.make_node("Relu", ["n2"], ["r2"], name="relu2"),
                  helper.make_node("GlobalAveragePool", ["r2"], ["gp"], name="gap"),
                  helper.make_node("Flatten", ["gp"], ["fl"], name="flat"),
                  helper.make_node("Gemm", ["fl", "fc", "fcb"], ["y"], name="fc", transB=1)]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5] if not output_pool else None)
    g = helper.make_graph(nodes, "avg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
                          [out], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    return m


HELPER_POOLS = {   # attrs, pre-Pad, expected (kernel, stride, pad (t, b, l, r), count_include_pad)
    "asym pads, 3x2 kernel, excl": (dict(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 2, 1]), None,
                                    ((3, 2), (2, 1), (1, 2, 0, 1), False)),
    "asym pads incl": (dict(kernel_shape=[3, 3], strides=[1, 2], pads=[2, 1, 0, 2], count_include_pad=1), None,
                       ((3, 3), (1, 2), (2, 0, 1, 2), True)),
    "SAME_UPPER excl": (dict(kernel_shape=[4, 4], strides=[3, 3], auto_pad="SAME_UPPER"), None,
                        ((4, 4), (3, 3), (1, 2, 1, 2), False)),
    "SAME_LOWER incl": (dict(kernel_shape=[4, 4], strides=[3, 3], auto_pad="SAME_LOWER", count_include_pad=1), None,
                        ((4, 4), (3, 3), (2, 1, 2, 1), True)),
    "VALID 5x5 s1": (dict(kernel_shape=[5, 5], auto_pad="VALID"), None, ((5, 5), (1, 1), (0, 0, 0, 0), False)),
    "Pad(0) + AveragePool": (dict(kernel_shape=[3, 3], strides=[2, 2]), [0, 0, 1, 1, 0, 0, 1, 1],
                             ((3, 3), (2, 2), (1, 1, 1, 1), True)),
}


@pytest.mark.parametrize("case", sorted(HELPER_POOLS))
def test_helper_avgpool_bit_identical_in_onnxruntime(case):
    attrs, pre_pad, want = HELPER_POOLS[case]
    model = _helper_model(attrs, pre_pad)
    onnx.checker.check_model(model, full_check=True)
    g = import_onnx(model, MEAN, STD)
    pool = g.by_name["avgpool"]
    assert (pool.attrs["kernel"], pool.attrs["stride"], pool.attrs["pad"], pool.attrs["count_include_pad"]) == want
    _end_to_end(g, model, _pixels(10, 10, 2), 10)


def test_avgpool_as_the_output_and_export_float():
    """The pooled activation as the model's output (a feature extractor): centred int64 outputs, bit-identical;
    export_float writes the same float network back (AveragePool) for peers."""
    model = _helper_model(dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), output_pool=True)
    g = import_onnx(model, MEAN, STD)
    assert g.output == "avgpool"
    px = _pixels(6, 10, 3)
    out = _end_to_end(g, model, px, 10)
    assert out.shape == (6, 5, 5, 6)
    back = export_float(g, 10)
    assert "AveragePool" in [n.op_type for n in back.graph.node]
    assert _float_close(g, back, px, nchw_out=False)        # export_float's feature maps are NHWC


# ---------------------------------------------------------------------------------------------- sensitivity
def _quantized(attrs):
    model = _helper_model(attrs)
    g = import_onnx(model, MEAN, STD)
    px = _pixels(10, 10, 4)
    g.calibrate([px])
    g.quantize()
    return g, px


def _edit_init(model, name, fn):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    t = next(i for i in m.graph.initializer if i.name == name)
    t.CopyFrom(numpy_helper.from_array(fn(numpy_helper.to_array(t).copy()), name))
    return m


def test_exported_border_divisors_and_padding_matter():
    """The bit-identity checks above can fail: the exported model with one border position rescaled as a full
    window, or padded with 0 instead of the zero point, gives other logits in onnxruntime."""
    g, px = _quantized(dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]))      # excl: 3 window sizes
    lf = g.forward_int(px)[0]
    model = export_network(g, 10)
    layers = {la.op["window"]: la for la in g.q["avgpool"]["layers"]}
    mult = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "avgpool/multiplier"))
    assert mult.shape == (1, 10, 10, 1) and mult[0, 0, 0, 0] == layers[4].multiplier[0] \
        and mult[0, 0, 1, 0] == layers[6].multiplier[0] and mult[0, 1, 1, 0] == layers[9].multiplier[0]

    def corner_as_full(name, value9):
        def fn(a):
            a[0, 0, 0, 0] = value9
            return a
        return fn

    o = 128 if g.q["avgpool"]["act"].dtype == "int8" else 0
    for name, value in (("avgpool/multiplier", int(layers[9].multiplier[0])),
                        ("avgpool/bias", int(layers[9].bias[0]) + (o << int(layers[9].shift[0]))),
                        ("avgpool/divisor", 1 << int(layers[9].shift[0]))):
        bad = _edit_init(model, name, corner_as_full(name, value))
        assert all(not np.array_equal(got, lf) for got in _ort_int(bad, px)), name
    gi, pxi = _quantized(dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=1))
    zp = gi.act_of("relu1" if "relu1" in gi.by_name else "bn1").zero_point
    model = export_network(gi, 10)
    assert int(numpy_helper.to_array(next(i for i in model.graph.initializer
                                          if i.name == "avgpool/pad_value"))) == zp != 0
    bad = _edit_init(model, "avgpool/pad_value", lambda a: np.zeros_like(a))
    lf = gi.forward_int(pxi)[0]
    assert all(not np.array_equal(got, lf) for got in _ort_int(bad, pxi))


def _unsupported(**attrs):
    return _helper_model(attrs)


BAD = {
    "ceil_mode": (dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1), "ceil_mode=1"),
    "dilations": (dict(kernel_shape=[3, 3], dilations=[2, 2]), r"dilations \[2, 2\]"),
    "pads as big as the kernel": (dict(kernel_shape=[2, 2], pads=[2, 0, 0, 0]), r"pads \[2, 0, 0, 0\] not smaller"),
    "3-D kernel": (dict(kernel_shape=[3, 3, 3]), r"kernel_shape \[3, 3, 3\]"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_unsupported_avgpool_names_the_node(case):
    attrs, message = BAD[case]
    with pytest.raises(ValueError, match=r"'avgpool' \(AveragePool\): " + message):
        import_onnx(_helper_model(attrs), MEAN, STD)


def test_activation_after_avgpool_and_mixed_pads_refused():
    model = _helper_model(dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    relu = helper.make_node("Relu", ["ap"], ["apr"], name="relu_after_pool")
    nodes = list(model.graph.node)
    k = next(i for i, n in enumerate(nodes) if n.name == "avgpool")
    nodes.insert(k + 1, relu)
    nodes[k + 2].input[0] = "apr"
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    with pytest.raises(ValueError, match=r"'relu_after_pool' \(Relu\): an activation is supported only"):
        import_onnx(model, MEAN, STD)
    with pytest.raises(ValueError, match=r"'avgpool' \(AveragePool\): a Pad before"):
        import_onnx(_helper_model(dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), [0, 0, 1, 1, 0, 0, 1, 1]),
                    MEAN, STD)


# ---------------------------------------------------------------------------------------------- CLI and verify
def cli(module, *args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)


def test_cli_quantize_check_and_verify(tmp_path):
    """python -m fxbn.onnx quantize --layers DIR + check --reference on a model with a border-dividing
    AveragePool; the saved avgpool layers (one per window size) are the graph's and python -m verify proves them."""
    onnx.save(_helper_model(dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])), str(tmp_path / "m.onnx"))
    np.save(tmp_path / "px.npy", _pixels(12, 10, 5))
    r = cli("fxbn.onnx", "quantize", tmp_path / "m.onnx", "--calib", tmp_path / "px.npy", "--out",
            tmp_path / "m.int.onnx", "--layers", tmp_path / "layers", "--input-mean", ",".join(map(str, MEAN)),
            "--input-std", ",".join(map(str, STD)))
    assert r.returncode == 0, r.stderr
    c = cli("fxbn.onnx", "check", tmp_path / "m.int.onnx", "--images", tmp_path / "px.npy", "--reference")
    assert c.returncode == 0 and "fxbn vs exact reference     0" in c.stdout and "IDENTICAL" in c.stdout, c.stdout
    files = sorted(f for f in os.listdir(tmp_path / "layers") if f.startswith("avgpool"))
    assert files == [f"avgpool.n{n}.json" for n in (1, 2, 3, 4, 6, 9)], files
    g = import_onnx(str(tmp_path / "m.onnx"), MEAN, STD)
    g.calibrate([np.load(tmp_path / "px.npy")])
    g.quantize()
    for layer in g.q["avgpool"]["layers"]:
        saved = fxbn.load(str(tmp_path / "layers" / f"avgpool.n{layer.op['window']}.json"))
        assert saved.to_dict() == layer.to_dict()
    pytest.importorskip("z3")
    v = cli("verify", "--quiet", tmp_path / "layers", "--method", "breakpoints")
    proved = [line for line in v.stdout.splitlines() if "avgpool" in line and "PROVED" in line]
    assert v.returncode == 0 and len(proved) == 6, v.stdout + v.stderr
    # and verify can fail: the N=6 layer with its multiplier + 1 is refuted
    import json

    bad = tmp_path / "bad"
    bad.mkdir()
    rec = json.loads((tmp_path / "layers" / "avgpool.n6.json").read_text())
    rec["multiplier"][0] += 1
    (bad / "avgpool.n6.json").write_text(json.dumps(rec))
    v = cli("verify", "--quiet", bad, "--method", "breakpoints")
    assert v.returncode == 1 and "REFUTED  avgpool.n6" in v.stdout, v.stdout + v.stderr
