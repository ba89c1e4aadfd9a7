"""fxbn.onnx.network on every graph form experiments.nets builds (depthwise convs, ReLU6, LeakyReLU, max-pool with
'same'/qmin padding, conv bias folded into BN, logits conv, feature-extractor output): the exported integer-only
model's outputs in onnxruntime equal Graph.forward_int's exactly (optimizations on and off); a perturbed multiplier in
one exported layer is detected; the float export equals Graph.forward_float up to float rounding."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from conftest import DATA_DIR  # noqa: E402
from fxbn.importers import BatchNormParams  # noqa: E402
from fxbn.network import Graph, Node  # noqa: E402
from fxbn.onnx.network import export_float, export_network, logit_unit  # noqa: E402
from onnx import numpy_helper  # noqa: E402

import fxbn.onnx as fo  # noqa: E402

OPS = {"Transpose", "Cast", "Mul", "Add", "Sub", "Div", "Clip", "Max", "Pad", "ConvInteger", "MatMulInteger",
       "MaxPool", "ReduceSum", "MatMul", "Slice", "Identity"}
CONVS = ["matmul", "convinteger"]


def _bn(rng, c):
    return BatchNormParams(rng.uniform(0.5, 2, c), rng.normal(0, 0.5, c), rng.normal(0, 0.3, c),
                           rng.uniform(0.5, 2, c), 1e-3)


def small_net(seed=0, head="dense"):
    """A Graph with every op export_network handles besides shortcut_a (ResNet-20 covers it in test_onnx.py)."""
    rng = np.random.default_rng(seed)
    f = np.float32
    nodes = [Node("input", "input"),
             Node("c1", "conv", ("input",), {"w": rng.normal(0, 0.3, (3, 3, 3, 8)).astype(f), "stride": 2,
                                             "pad": (0, 1, 0, 1), "bias": rng.normal(0, 0.2, 8).astype(f)}),
             Node("b1", "bn", ("c1",), {"bn": _bn(rng, 8), "act": "relu"}),
             Node("pool", "maxpool", ("b1",), {"k": 3, "stride": 2, "pad": (1, 1, 1, 1)}),
             Node("dw", "conv", ("pool",), {"w": rng.normal(0, 0.5, (3, 3, 8)).astype(f), "stride": 1,
                                            "pad": (1, 1, 1, 1), "depthwise": True}),
             Node("bdw", "bn", ("dw",), {"bn": _bn(rng, 8), "act": "relu6"}),
             Node("pw", "conv", ("bdw",), {"w": rng.normal(0, 0.3, (1, 1, 8, 8)).astype(f), "stride": 1,
                                           "pad": (0, 0, 0, 0)}),
             Node("bpw", "bn", ("pw",), {"bn": _bn(rng, 8), "act": ("leaky", 0.1)}),
             Node("c3", "conv", ("bpw",), {"w": rng.normal(0, 0.3, (3, 3, 8, 8)).astype(f), "stride": 1,
                                           "pad": (1, 1, 1, 1)}),
             Node("b3", "bn", ("c3",), {"bn": _bn(rng, 8), "act": None}),
             Node("sum", "add", ("b3", "pool"), {"relu": True})]
    if head == "dense":
        nodes += [Node("gap", "gap", ("sum",)),
                  Node("fc", "dense", ("gap",), {"w": rng.normal(0, 0.3, (8, 5)).astype(f),
                                                 "bias": rng.normal(0, 0.1, 5).astype(f)})]
    elif head == "logits_conv":
        nodes += [Node("cls", "conv", ("sum",), {"w": rng.normal(0, 0.3, (1, 1, 8, 5)).astype(f), "stride": 1,
                                                    "pad": (0, 0, 0, 0), "bias": rng.normal(0, 0.1, 5).astype(f),
                                                    "logits": True}),
                  Node("gap", "gap", ("cls",))]
    g = Graph(nodes, [0.45, 0.5, 0.4], [0.25, 0.22, 0.27])
    pixels = rng.integers(0, 256, (12, 19, 19, 3), dtype=np.uint8)
    g.calibrate([pixels[:6]])
    g.quantize()
    return g, pixels


def run(model, pixels, opt):
    return fo.session(model, optimize=opt).run(None, {"pixels": pixels})[0]


def mismatches(model, graph, pixels):
    theirs = graph.forward_int(pixels, bn="fxbn")[0]
    out = {}
    for opt in (True, False):
        ours = run(model, pixels, opt)
        assert ours.dtype == np.int64 and ours.shape == theirs.shape
        out[opt] = int(np.any((ours != theirs).reshape(len(pixels), -1), axis=1).sum())
    return out, theirs


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("head", ["dense", "logits_conv"])
def test_small_net_bit_identical(head, conv):
    graph, pixels = small_net(head=head)
    model = export_network(graph, 19, conv=conv)
    ops = {n.op_type for n in model.graph.node}
    assert ops <= OPS and {"MaxPool", "Max", "ConvInteger" if conv == "convinteger" else "MatMulInteger"} <= ops
    if conv == "convinteger":
        dw = next(n for n in model.graph.node if n.name == "dw")
        assert dw.op_type == "ConvInteger" and next(a.i for a in dw.attribute if a.name == "group") == 8
    for t in list(model.graph.input) + list(model.graph.output):     # integer tensors at both ends
        assert t.type.tensor_type.elem_type in (onnx.TensorProto.UINT8, onnx.TensorProto.INT64)
    bad, theirs = mismatches(model, graph, pixels)
    assert bad == {True: 0, False: 0}
    assert len(np.unique(theirs, axis=0)) == len(pixels)                 # varied outputs, not a constant
    # the unit makes the integers the network's real logits
    real = graph.forward_int(pixels, bn="fxbn")[1]
    assert np.allclose(theirs * logit_unit(model), real, rtol=1e-12, atol=0)


def _perturb(model, name, fn):
    init = next(i for i in model.graph.initializer if i.name == name)
    init.CopyFrom(numpy_helper.from_array(fn(numpy_helper.to_array(init)), name))


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("target", ["bdw/multiplier", "b3/multiplier", "bpw/l1/multiplier", "sum/m1",
                                    "dw/tap11/w"])
def test_perturbed_multiplier_detected(target, conv):
    """Mutation check: one exported layer with its multipliers off by ~1% must make the comparison fail."""
    if target.startswith("dw/") and conv == "convinteger":
        target = "dw/w"
    graph, pixels = small_net()
    model = export_network(graph, 19, conv=conv)
    _perturb(model, target, lambda m: m + np.maximum(np.abs(m) // 100, 1).astype(m.dtype))
    bad, _ = mismatches(model, graph, pixels)
    assert bad[True] > 0 and bad[False] > 0, bad


def test_div_clamp_identity_exhaustive():
    """_div_clamp's claim: clamp(trunc(t / 2^s), lo, hi) == clamp(floor(t / 2^s), lo, hi) for every t when lo >= 0,
    over all t of 14 bits, s <= 8 and all 0 <= lo <= hi <= 12; and it is false for some t when lo < 0 (the reason
    for the offset)."""
    t = np.arange(-2 ** 13, 2 ** 13, dtype=np.int64)
    for s in range(9):
        trunc = np.trunc(t / 2 ** s).astype(np.int64)       # ONNX Div on integers
        floor = t >> s
        for lo in range(-2, 13):
            for hi in range(max(lo, 0), 13):
                same = np.array_equal(np.clip(trunc, lo, hi), np.clip(floor, lo, hi))
                assert same == (lo >= 0 or s == 0), (s, lo, hi)


def test_truncating_division_without_offset_detected():
    """Mutation check of the floor division: the same graph with one BN's offset o*2^s taken out of its bias and
    put after the Div (plain truncating division of a signed accumulator) differs from the integer network."""
    graph, pixels = small_net()
    model = export_network(graph, 19)
    layer = graph.q["b3"]["layers"][0]                      # int8 output, no ReLU: qmin = -128, o = 128
    shifts = layer.shift.astype(np.int64)                   # NHWC: per-channel constants of shape (C,)
    _perturb(model, "b3/bias", lambda bias: bias - (np.int64(128) << shifts).astype(bias.dtype))
    _perturb(model, "b3/qmin", lambda v: v - 128)
    _perturb(model, "b3/qmax", lambda v: v - 128)
    clip = next(n for n in model.graph.node if n.name == "b3/clipped")
    clip.output[0] = "b3/signed"
    model.graph.initializer.append(numpy_helper.from_array(np.array(128, numpy_helper.to_array(
        next(i for i in model.graph.initializer if i.name == "b3/qmin")).dtype), "b3/o"))
    model.graph.node.insert(list(model.graph.node).index(clip) + 1, onnx.helper.make_node(
        "Add", ["b3/signed", "b3/o"], ["b3/clipped"], name="b3/add_o"))
    bad, _ = mismatches(model, graph, pixels)
    assert bad[True] > 0 and bad[False] > 0, bad


@pytest.mark.parametrize("conv", CONVS)
def test_feature_extractor_output(conv):
    graph, pixels = small_net()
    graph.output = "bpw"                                 # MobileNet without top: the centred last activation, NHWC
    model = export_network(graph, 19, conv=conv)
    bad, theirs = mismatches(model, graph, pixels)
    assert theirs.ndim == 4 and bad == {True: 0, False: 0}


def test_accumulator_bound_refused():
    graph, pixels = small_net()
    graph.q["c3"]["term_bound"] = 2 ** 31
    with pytest.raises(ValueError, match="node c3: accumulator bound"):
        export_network(graph, 19)


def test_float_export_matches_forward_float():
    graph, pixels = small_net(head="logits_conv")
    model = export_float(graph, 19)
    x = np.ascontiguousarray(graph.normalise(pixels).transpose(0, 3, 1, 2))
    y = fo.session(model).run(None, {"image": x})[0]
    ref = graph.forward_float(pixels)
    assert np.allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def _imagenet(net, n_images, calib):
    if not (DATA_DIR / "imagenet" / "images" / "labels.txt").exists():
        pytest.skip(f"shared data not found: {DATA_DIR / 'imagenet'}")
    pytest.importorskip("PIL")
    from experiments import onnx_net

    return onnx_net, onnx_net.imagenet_network(DATA_DIR, net, limit=n_images, calib=calib, batch=n_images)


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("net", ["mobilenet", "darknet_tiny"])
def test_imagenet_nets_bit_identical(net, conv):
    """The real MobileNet v1 0.25 (depthwise, ReLU6, feature output) and Darknet-tiny (LeakyReLU, max-pool, logits
    conv): 0 differing outputs on a few ImageNet sample images, optimizations on and off."""
    onnx_net, (graph, pixels, labels, calib) = _imagenet(net, 3, 3)
    model = export_network(graph, 224, conv=conv)
    res, theirs = onnx_net.compare(graph, model, pixels, batch=3)
    assert {k: v[0] for k, v in res.items()} == {"ORT_ENABLE_ALL": 0, "ORT_DISABLE_ALL": 0}
    assert all(np.array_equal(v[1], theirs) for v in res.values())
    layer = next(i.name for i in model.graph.initializer if i.name.endswith("/multiplier")
                 and not i.name.startswith("input/"))
    _perturb(model, layer, lambda m: m + np.maximum(np.abs(m) // 100, 1).astype(m.dtype))
    res, _ = onnx_net.compare(graph, model, pixels, batch=3, theirs=theirs)
    assert all(v[0] > 0 for v in res.values()), layer


def test_resnet50_bit_identical():
    """Keras ResNet-50 (max-pool with qmin padding, conv biases folded into BN, 'same' padding, 16 residual adds):
    2 ImageNet images, convolutions by torch for speed (checked equal to the NumPy ones on the same images)."""
    pytest.importorskip("torch")
    if not (DATA_DIR / "imagenet" / "resnet50.npz").exists():
        pytest.skip("resnet50.npz not found")
    from experiments import onnx_net

    onnx_net.use_torch_conv(True)
    try:
        _, (graph, pixels, labels, calib) = _imagenet("resnet50", 2, 2)
        res, theirs = onnx_net.compare(graph, export_network(graph, 224), pixels, batch=2)
        res2, _ = onnx_net.compare(graph, export_network(graph, 224, conv="convinteger"), pixels, batch=2,
                                   theirs=theirs)
    finally:
        onnx_net.use_torch_conv(False)
    assert {k: v[0] for k, v in res.items()} == {"ORT_ENABLE_ALL": 0, "ORT_DISABLE_ALL": 0}
    assert {k: v[0] for k, v in res2.items()} == {"ORT_ENABLE_ALL": 0, "ORT_DISABLE_ALL": 0}
    assert np.array_equal(theirs[:1], graph.forward_int(pixels[:1])[0])       # NumPy convolutions: the same
