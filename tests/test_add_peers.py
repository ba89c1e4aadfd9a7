"""experiments.add_peers: the residual adds' real inputs are collected through Graph.forward_int(observe_add=), fxbn's
add outputs equal the exact reference (0 wrong), a mutated add layer is counted wrong, and each peer's count on the
pair histogram equals running it on the network's own tensors."""
import os
import pathlib

import numpy as np
import pytest

from fxbn.ops import FixedPointAdd

DATA_DIR = pathlib.Path(os.environ.get("FXBN_DATA", pathlib.Path(__file__).resolve().parents[1] / ".." / "shared"
                                       / "data"))
needs_data = pytest.mark.skipif(not (DATA_DIR / "cifar10" / "resnet20.npz").exists(),
                                reason="shared data not available")


def _small():
    from test_network_io import small_graph

    return small_graph()


def test_observe_add_sees_the_inputs_the_add_layer_received():
    g, pixels = _small()
    seen = []
    logits, _ = g.forward_int(pixels, observe_add=lambda node, x1, x2, y: seen.append((node.name, x1, x2, y)))
    assert [s[0] for s in seen] == ["sum"]
    _, x1, x2, y = seen[0]
    layer = g.q["sum"]["layer"]
    assert np.array_equal(y, layer.apply(x1, x2)) and np.array_equal(y, layer.reference(x1, x2))
    # the observed inputs are the add's sources in the same run
    vals = {}
    g.forward_int(pixels, observe=lambda node, acc, out: vals.__setitem__(node.name, out))
    assert np.array_equal(x1, vals["b2"]) and np.array_equal(x2, vals["b1"])
    assert np.array_equal(logits, g.forward_int(pixels)[0])  # observing changes nothing


def _mutated(layer):
    """The same add with its bias moved by 2^(s-1): half an output step, so some pairs round the other way."""
    return FixedPointAdd(layer.multipliers, layer.bias + (1 << (layer.shift - 1)), layer.shift, layer.in_ranges,
                         layer.out_range, layer.rounding, layer.source, [d.name for d in layer.in_dtypes],
                         layer.out_dtype.name)


def test_counts_zero_for_fxbn_and_a_mutated_add_is_counted():
    from experiments import add_peers

    g, pixels = _small()
    exact, _, hist, wrong, outputs, exact_real, _ = add_peers.observe_network(g, pixels, batch=2)
    logits, real = g.forward_int(pixels)
    assert np.array_equal(exact, logits) and np.array_equal(exact_real, real)  # top-1 ranks the real logits
    rows, errors = add_peers.count_peers(g, hist, ["add_requant"])
    assert rows["sum"]["outputs"] == outputs["sum"] == pixels.shape[0] * 8 * 8 * 4
    assert rows["sum"]["wrong"]["fxbn"] == 0 and wrong["sum"] == 0 and not errors
    g.q["sum"] = dict(g.q["sum"], layer=_mutated(g.q["sum"]["layer"]))
    _, _, hist, wrong, _, _, _ = add_peers.observe_network(g, pixels, batch=2)
    rows, _ = add_peers.count_peers(g, hist, [])
    assert wrong["sum"] > 0 and rows["sum"]["wrong"]["fxbn"] > 0


def test_a_wrong_peer_is_counted(monkeypatch):
    from experiments import add_peers

    g, pixels = _small()
    _, _, hist, _, _, _, _ = add_peers.observe_network(g, pixels, batch=4)
    layer = g.q["sum"]["layer"]

    def off_by_one(x1, x2, a1, a2, out, relu):
        return np.minimum(layer.reference(x1, x2).astype(np.int16) + 1, 127).astype(np.int8)

    monkeypatch.setitem(add_peers.PEER_FUNCS, "off_by_one", off_by_one)
    rows, _ = add_peers.count_peers(g, hist, ["off_by_one"])
    seen = []
    g.forward_int(pixels, observe_add=lambda node, x1, x2, y: seen.append((x1.reshape(-1), x2.reshape(-1))))
    x1, x2 = seen[0]
    direct = int(np.count_nonzero(off_by_one(x1, x2, None, None, None, None) != layer.reference(x1, x2)))
    assert rows["sum"]["wrong"]["off_by_one"] == direct > 0


@pytest.mark.parametrize("peer", ["litert_ref", "litert_builtin"])
def test_litert_kernels_equal_the_tflite_reference_arithmetic(peer):
    """The one-op .tflite model carries the node's parameters as TFLite's kernels read them: LiteRT's output equals
    TFLite's ADD reference arithmetic written out in Python integers, on every pair of the small graph's add box
    (and a zero point moved by one is seen, so the comparison can fail)."""
    from experiments import add_peers

    reason = add_peers.peer_available(peer)
    if reason:
        pytest.skip(reason)
    g, _ = _small()
    node = g.by_name["sum"]
    a1, a2, out, relu = add_peers.add_params(g, node)
    g1, g2 = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    x1, x2 = g1.reshape(-1).astype(np.int8), g2.reshape(-1).astype(np.int8)
    got = add_peers.PEER_FUNCS[peer](x1, x2, a1, a2, out, relu)
    assert np.array_equal(got, add_peers.emulate_tflite_add(x1, x2, a1, a2, out, relu))
    moved = a1.__class__(a1.scale, a1.zero_point + 1, a1.dtype)
    assert not np.array_equal(got, add_peers.emulate_tflite_add(x1, x2, moved, a2, out, relu))


@pytest.fixture(scope="module")
def resnet20_adds():
    """ResNet-20 on 10 real CIFAR-10 images: the graph, an AddObserver after one run, and every add's tensors."""
    from experiments import add_peers, data, nets

    g = nets.cifar_resnet(DATA_DIR / "cifar10" / "resnet20.npz")
    px, _ = data.cifar_test(DATA_DIR, limit_per_class=1)
    g.calibrate([px])
    g.quantize()
    obs = add_peers.AddObserver(g)
    tensors = {}

    def both(node, x1, x2, y):
        obs(node, x1, x2, y)
        tensors[node.name] = (x1, x2)

    g.forward_int(px, observe_add=both)
    return g, obs, tensors


@needs_data
@pytest.mark.parametrize("peer", ["litert_xnnpack", "litert_builtin", "litert_ref", "onnxruntime", "torch",
                                  "add_requant"])
def test_peer_histogram_count_equals_direct_count(peer, resnet20_adds):
    """On 10 real CIFAR-10 images through ResNet-20: the weighted count over distinct pairs equals the count of the
    peer run on every add's actual tensors; fxbn 0 both ways."""
    from experiments import add_peers

    reason = add_peers.peer_available(peer)
    if reason:
        pytest.skip(reason)
    g, obs, tensors = resnet20_adds
    rows, errors = add_peers.count_peers(g, obs.hist, [peer])
    assert not errors
    assert len(rows) == 9
    for node in g.nodes:
        if node.op != "add":
            continue
        x1, x2 = (t.reshape(-1) for t in tensors[node.name])
        (l1, _), (l2, h2) = g.q[node.name]["layer"].in_ranges
        idx = (x1.astype(np.intp) - l1) * (h2 - l2 + 1) + (x2.astype(np.intp) - l2)
        ref = add_peers.exact_outputs(g, node.name, idx)
        direct = add_peers.PEER_FUNCS[peer](x1, x2, *add_peers.add_params(g, node))
        assert rows[node.name]["wrong"][peer] == int(np.count_nonzero(np.asarray(direct).reshape(-1) != ref))
        assert rows[node.name]["wrong"]["fxbn"] == obs.fxbn_wrong[node.name] == 0
        assert rows[node.name]["outputs"] == x1.size


@needs_data
def test_cli_small_sample(tmp_path):
    """The CLI on 10 images: fxbn 0, the JSON written, logits of the approximate-add network compared."""
    import json

    from experiments import add_peers

    add_peers.main(["--nets", "resnet20", "--limit-per-class", "1", "--calib-per-class", "1", "--workers", "1",
                    "--peers", "add_requant", "--out", str(tmp_path)])
    r = json.loads((tmp_path / "add_peers_resnet20.json").read_text())
    assert r["totals"]["fxbn"] == 0 and r["totals"]["fxbn_in_network"] == 0
    assert r["end_to_end"]["images"] == 10 and r["totals"]["outputs"] > 0
    assert 0 <= r["end_to_end"]["top1_changed_images"] <= r["end_to_end"]["logits_changed_images"] <= 10
