"""Integer pipelines (experiments/qgraph.py): exact conv, the vectorised reference, and ResNet-20 end to end on the
20 lossless CIFAR-10 images: the fxbn integer network equals its exact-reference network bit for bit."""
import copy

import numpy as np
import pytest
from hypothesis import given, strategies as st

import fxbn
from conftest import DATA_DIR
from experiments import qgraph
from strategies import batchnorm_layers


@given(batchnorm_layers(max_channels=4), st.integers(0, 2 ** 32 - 1), st.integers(1, 2 ** 20))
def test_reference_fast_equals_python_reference(kw, seed, width):
    rng = np.random.default_rng(seed)
    c = kw["gamma"].shape[0]
    lo = rng.integers(-width, 1, size=c)
    hi = lo + rng.integers(0, 2 * width, size=c)
    try:
        layer = fxbn.from_batchnorm(**kw, in_range=np.stack([lo, hi], axis=1), in_dtype="int32")
    except fxbn.InfeasibleError:
        return  # half_even ties: nothing to evaluate
    x = rng.integers(lo, hi + 1, size=(200, c)).astype(np.int32)
    x[0], x[1] = lo, hi
    expected = layer.reference(x, axis=1, engine="python")
    assert np.array_equal(qgraph.reference_fast(layer, x), expected)
    # any guess converges to the same exact answer
    guess = rng.integers(layer.out_range[0], layer.out_range[1] + 1, size=x.shape)
    assert np.array_equal(qgraph.reference_fast(layer, x, guess), expected)


@pytest.mark.parametrize("stride,pad,depthwise", [(1, (1, 1, 1, 1), False), (2, (0, 1, 0, 1), False),
                                                  (1, (0, 0, 0, 0), False), (2, (1, 1, 1, 1), True)])
def test_conv_int_is_exact(stride, pad, depthwise):
    rng = np.random.default_rng(stride + sum(pad))
    xc = rng.integers(-255, 256, size=(2, 7, 6, 5)).astype(np.int16)
    w = rng.integers(-127, 128, size=(3, 3, 5) if depthwise else (3, 3, 5, 4)).astype(np.int8)
    got = qgraph.conv_int(xc, w, stride, pad, depthwise, term_bound=255 * 127 * 45)
    xp = np.pad(xc.astype(np.int64), ((0, 0), (pad[0], pad[1]), (pad[2], pad[3]), (0, 0)))
    ho, wo = (xp.shape[1] - 3) // stride + 1, (xp.shape[2] - 3) // stride + 1
    want = np.zeros(got.shape, np.int64)
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i * stride:i * stride + 3, j * stride:j * stride + 3, :]
            if depthwise:
                want[:, i, j, :] = np.einsum("nhwc,hwc->nc", patch, w.astype(np.int64))
            else:
                want[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, w.astype(np.int64))
    assert got.dtype == np.int32 and np.array_equal(got, want)
    # a bound beyond float64's exact integers is refused rather than rounded
    with pytest.raises(ValueError):
        qgraph.conv_int(xc, w, stride, pad, depthwise, term_bound=2 ** 53)


@pytest.fixture(scope="module")
def resnet20_lossless():
    path = DATA_DIR / "cifar10" / "resnet20.npz"
    if not path.exists() or not (DATA_DIR / "cifar10" / "lossless").is_dir():
        pytest.skip(f"shared data not found: {path}")
    from experiments import data, nets

    pixels, labels = data.cifar_lossless(DATA_DIR)
    graph = nets.cifar_resnet(path)
    graph.calibrate([pixels])
    graph.quantize()
    return graph, pixels, labels


def test_resnet20_integer_pipeline_equals_exact_reference(resnet20_lossless):
    graph, pixels, labels = resnet20_lossless
    assert len(pixels) == 20
    seen = {}

    def observe(node, acc, out):
        layer = graph.q[node.name]["layers"][0]
        seen[node.name] = (acc.min(axis=(0, 1, 2)) >= layer.in_range[:, 0]).all() \
            and (acc.max(axis=(0, 1, 2)) <= layer.in_range[:, 1]).all()

    logits_fxbn, real_fxbn = graph.forward_int(pixels, bn="fxbn", observe=observe)
    logits_ref, _ = graph.forward_int(pixels, bn="reference")
    logits_api, _ = graph.forward_int(pixels[:4], bn="reference_api")  # FixedPointBN.reference itself
    assert len(seen) == 19 and all(seen.values())  # real accumulators never leave the exact bounds
    assert logits_fxbn.dtype == np.int64 and np.array_equal(logits_fxbn, logits_ref)
    assert np.array_equal(logits_api, logits_ref[:4])
    assert np.mean(real_fxbn.argmax(axis=1) == labels) >= 0.9
    lf, lr, unit, diverged = graph.forward_pair(pixels)
    assert diverged == [] and np.array_equal(lf, logits_fxbn) and np.array_equal(lr, logits_ref)
    float_logits = graph.forward_float(pixels)
    assert np.mean(float_logits.argmax(axis=1) == labels) == 1.0  # as the data README states


def test_pipeline_comparison_detects_a_wrong_layer(resnet20_lossless):
    graph, pixels, _ = resnet20_lossless
    broken = copy.copy(graph)
    broken.q = dict(graph.q)
    name = "layer1.0.bn1"
    good = graph.q[name]["layers"][0]
    layer = good.replace(bias=good.bias + (good.multiplier.max() << 0) * 8)  # shifts some outputs by a few levels
    broken.q[name] = dict(graph.q[name], layers=[layer])
    lf, lr, _, diverged = broken.forward_pair(pixels)
    assert name in diverged and not np.array_equal(lf, lr)


def test_mobilenet_depthwise_pipeline_equals_exact_reference():
    """Depthwise layers have the widest BN ranges of the shared nets: 2 real ImageNet images through MobileNet v1."""
    path = DATA_DIR / "imagenet" / "mobilenet_v1_0.25_notop.npz"
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    pytest.importorskip("PIL", reason="Pillow decodes the JPEG images")
    from experiments import data, nets

    pixels, _, _ = data.imagenet_images(DATA_DIR, limit=2)
    graph = nets.mobilenet_v1(DATA_DIR)
    graph.calibrate([pixels])
    graph.quantize()
    assert sum(n.attrs.get("depthwise", False) for n in graph.nodes) == 13
    feats_fxbn, _ = graph.forward_int(pixels, bn="fxbn")
    feats_ref, _ = graph.forward_int(pixels, bn="reference")
    assert feats_fxbn.shape == (2, 7, 7, 256) and np.array_equal(feats_fxbn, feats_ref)
    # ReLU6 folded into the clamp: real outputs stay within [0, 6] (up to half a quantization step)
    act = graph.act_of(graph.output)
    assert feats_fxbn.min() >= 0 and feats_fxbn.max() * act.scale <= 6 + act.scale / 2
