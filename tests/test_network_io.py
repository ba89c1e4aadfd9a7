"""Graph.save / fxbn.network.load: a calibrated, quantized integer network round-trips bit for bit, and a hostile
or tampered file is refused with a ValueError naming the file and the field."""
import os
import pathlib
import zipfile

import numpy as np
import pytest

from fxbn.importers import BatchNormParams
from fxbn.network import Graph, Node, load
from network_files import assert_malformed_named, rewrite

DATA_DIR = pathlib.Path(os.environ.get("FXBN_DATA", pathlib.Path(__file__).resolve().parents[1] / ".." / "shared"
                                       / "data"))


def _bn(rng, c):
    return BatchNormParams(rng.normal(1, 0.2, c).astype(np.float32), rng.normal(0, 0.3, c).astype(np.float32),
                           rng.normal(0, 0.3, c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32), 1e-5)


def small_graph(seed=0):
    """conv-bn(relu)-conv-bn + add(relu), a leaky conv-bn, maxpool, gap, dense: every op a network file holds."""
    rng = np.random.default_rng(seed)
    w = lambda *s: rng.normal(0, 0.3, s).astype(np.float32)  # noqa: E731
    nodes = [Node("input", "input"),
             Node("c1", "conv", ("input",), {"w": w(3, 3, 3, 4), "stride": 1, "pad": (1, 1, 1, 1)}),
             Node("b1", "bn", ("c1",), {"bn": _bn(rng, 4), "act": "relu"}),
             Node("c2", "conv", ("b1",), {"w": w(3, 3, 4, 4), "stride": 1, "pad": (1, 1, 1, 1), "bias": w(4)}),
             Node("b2", "bn", ("c2",), {"bn": _bn(rng, 4), "act": None}),
             Node("sum", "add", ("b2", "b1"), {"relu": True}),
             Node("c3", "conv", ("sum",), {"w": w(3, 3, 4), "stride": 1, "pad": (1, 1, 1, 1), "depthwise": True}),
             Node("b3", "bn", ("c3",), {"bn": _bn(rng, 4), "act": ("leaky", 0.1)}),
             Node("mp", "maxpool", ("b3",), {"k": 2, "stride": 2, "pad": (0, 0, 0, 0)}),
             Node("pool", "gap", ("mp",)),
             Node("fc", "dense", ("pool",), {"w": w(4, 5), "bias": w(5)})]
    g = Graph(nodes, input_mean=[0.5, 0.4, 0.3], input_std=[0.25, 0.2, 0.3])
    pixels = rng.integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    g.calibrate([pixels])
    g.quantize()
    return g, pixels


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    g, pixels = small_graph()
    path = tmp_path_factory.mktemp("net") / "net.npz"
    g.save(path)
    return g, pixels, path


def _same_q(g, h):
    for name, e in g.q.items():
        f = h.q[name]
        for k in ("w_q", "w_scale", "w_deq"):
            if k in e:
                assert e[k].dtype == f[k].dtype and np.array_equal(e[k], f[k]), (name, k)
        if "layer" in e:
            assert e["layer"].to_dict() == f["layer"].to_dict()
        if "layers" in e:
            assert [x.to_dict() for x in e["layers"]] == [x.to_dict() for x in f["layers"]]
        for k in ("act", "act_in", "term_bound", "bias_fold_exact"):
            if k in e:
                assert e[k] == f[k], (name, k)


def test_round_trip_identical_integer_logits(saved):
    g, pixels, path = saved
    h = load(path)
    _same_q(g, h)
    assert h.acts == g.acts and h.rounding == g.rounding
    lg, _ = g.forward_int(pixels)
    lh, _ = h.forward_int(pixels)
    assert lg.dtype == lh.dtype == np.int64 and np.array_equal(lg, lh)
    fx, ref, _, diverged = h.forward_pair(pixels)
    assert np.array_equal(fx, ref) and diverged == []
    assert np.array_equal(g.forward_float(pixels, fake_quant=True), h.forward_float(pixels, fake_quant=True))
    # the loaded file holds no pickle: numpy refuses object arrays without allow_pickle, and there are none
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype.kind in "iufU" for k in z.files)



def _array_of(meta, *where):
    node = next(n for n in meta["nodes"] if n["name"] == where[0])
    ref = node["attrs"]
    for k in where[1:]:
        ref = ref[k]
    return ref["array"]


def _bump_multiplier(m):
    m["q"]["b1"]["layers"][0]["multiplier"][0] += 1


def _bump_add_bias(m):
    m["q"]["sum"]["layer"]["bias"] += 1 << m["q"]["sum"]["layer"]["shift"]


def _shift_zero(m):
    m["q"]["b2"]["layers"][0]["shift"] = [0] * len(m["q"]["b2"]["layers"][0]["shift"])


def _act_scale(m):
    m["acts"]["b1"]["scale"] = float(np.float32(m["acts"]["b1"]["scale"] * 1.01))     # a float32 like every scale


def _w_q(m, a):
    a[m["q"]["c2"]["w_q"]["array"]][0, 0, 0, 0] += 1


def _gamma(m, a):
    a[_array_of(m, "b2", "bn", "bn", "gamma")][0] *= np.float32(1.5)


def _add_source(m):
    m["q"]["sum"]["layer"]["source"]["out_scale"] *= 1.001


def _term_bound(m):
    m["q"]["c1"]["term_bound"] += 1


def _input_layer(m):
    m["q"]["input"]["layer"]["bias"][1] += 1


TAMPERED = {   # well-formed files whose integer network is not the one the floats and calibration define
    "bn multiplier + 1": (_bump_multiplier, None, "q.b1.layers[0]"),
    "add bias + 2^s": (_bump_add_bias, None, "q.sum.layer"),
    "bn shift 0": (_shift_zero, None, "q.b2.layers"),
    "activation scale": (_act_scale, None, "q.b1."),
    "int8 weight + 1": (None, _w_q, "q.c2.w_q"),
    "bn gamma": (None, _gamma, "q.b2.layers"),
    "add source scale": (_add_source, None, "q.sum.layer"),
    "accumulator bound": (_term_bound, None, "q.c1.term_bound"),
    "input layer bias": (_input_layer, None, "q.input.layer"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_file_refused(saved, tmp_path, case):
    g, pixels, path = saved
    edit_meta, edit_arrays, field = TAMPERED[case]
    bad = rewrite(path, tmp_path / "bad.npz", edit_meta, edit_arrays)
    with pytest.raises(ValueError) as e:
        load(bad)
    assert str(bad) in str(e.value) and field in str(e.value), str(e.value)


def test_tampering_is_caught_by_the_check(saved, tmp_path):
    """The refusals above come from load's check: without it the same tampered files load (and compute differently),
    so the tampering tests can fail."""
    g, pixels, path = saved
    bad = rewrite(path, tmp_path / "bad.npz", _bump_add_bias)
    h = load(bad, check=False)
    assert not np.array_equal(h.forward_int(pixels)[0], g.forward_int(pixels)[0])
    bad = rewrite(path, tmp_path / "bad2.npz", None, _w_q)
    h = load(bad, check=False)
    assert not np.array_equal(h.q["c2"]["w_q"], g.q["c2"]["w_q"])


def _del(key):
    return lambda m: m.pop(key)


MALFORMED = {
    "format": (lambda m: m.update(format="fxbn.FixedPointBN"), "format"),
    "version": (lambda m: m.update(version=2), "version"),
    "version bool": (lambda m: m.update(version=True), "version"),
    "missing acts": (_del("acts"), "acts"),
    "unknown top field": (lambda m: m.update(extra=1), "unknown field"),
    "unknown op": (lambda m: m["nodes"][1].update(op="softmax"), "nodes[1].op"),
    "forward src": (lambda m: m["nodes"][1].update(src=["b1"]), "nodes[1].src"),
    "add with one src": (lambda m: next(n for n in m["nodes"] if n["name"] == "sum").update(src=["b1"]), ".src"),
    "stride string": (lambda m: m["nodes"][1]["attrs"].update(stride="1"), "nodes[1].attrs.stride"),
    "stride 0": (lambda m: m["nodes"][1]["attrs"].update(stride=0), "nodes[1].attrs.stride"),
    "pad three": (lambda m: m["nodes"][1]["attrs"].update(pad={"tuple": [1, 1, 1]}), "attrs.pad"),
    "unknown attr": (lambda m: m["nodes"][1]["attrs"].update(dilation=2), "unknown field"),
    "act bogus": (lambda m: next(n for n in m["nodes"] if n["name"] == "b1")["attrs"].update(act="gelu"), "act"),
    "leaky alpha 2": (lambda m: next(n for n in m["nodes"] if n["name"] == "b3")["attrs"].update(
        act={"tuple": ["leaky", 2.0]}), "act"),
    "duplicate name": (lambda m: m["nodes"][2].update(name="c1"), "nodes[2].name"),
    "output": (lambda m: m.update(output="nowhere"), "output"),
    "input_std 0": (lambda m: m["input_std"].__setitem__(0, 0.0), "input_std[0]"),
    "input_mean nan": (lambda m: m["input_mean"].__setitem__(0, float("nan")), "input_mean[0]"),
    "rounding": (lambda m: m.update(rounding="stochastic"), "rounding"),
    "act scale negative": (lambda m: m["acts"]["b1"].update(scale=-0.1), "acts.b1.scale"),
    "act qmin string": (lambda m: m["acts"]["b1"].update(qmin="0"), "acts.b1.qmin"),
    "act range outside dtype": (lambda m: m["acts"]["b1"].update(qmax=300), "acts.b1"),
    "missing q entry": (lambda m: m["q"].pop("b2"), "q"),
    "layer multiplier float": (lambda m: m["q"]["b1"]["layers"][0]["multiplier"].__setitem__(0, 1.5), "q.b1"),
    "add layer format": (lambda m: m["q"]["sum"]["layer"].update(format="fxbn.FixedPointBN"), "q.sum"),
    "three layers": (lambda m: m["q"]["b1"].update(layers=m["q"]["b1"]["layers"] * 3), "q.b1.layers"),
    "term_bound float": (lambda m: m["q"]["c1"].update(term_bound=3.0), "q.c1.term_bound"),
    "array ref unknown": (lambda m: m["q"]["c1"].update(w_q={"array": "a9999"}), "q.c1.w_q"),
    "array used twice": (lambda m: m["q"]["c2"].update(w_q=m["q"]["c1"]["w_q"]), "q.c2.w_q"),
    "solver option string": (lambda m: m["solver_options"].update(acc_bits="64"), "solver_options.acc_bits"),
    "solver option unknown": (lambda m: m["solver_options"].update(threads=2), "solver_options"),
    "bn eps 0": (lambda m: next(n for n in m["nodes"] if n["name"] == "b1")["attrs"]["bn"].update(eps=0.0), "eps"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_field_named(saved, tmp_path, case):
    assert_malformed_named(saved[2], tmp_path, *MALFORMED[case])


ARRAY_EDITS = {
    "w_q as int16": (lambda m, a: a.__setitem__(m["q"]["c1"]["w_q"]["array"],
                                                 a[m["q"]["c1"]["w_q"]["array"]].astype(np.int16)), "q.c1.w_q"),
    "w_q reshaped": (lambda m, a: a.__setitem__(m["q"]["c1"]["w_q"]["array"],
                                                 a[m["q"]["c1"]["w_q"]["array"]].reshape(9, 3, 4)), "q.c1"),
    "gamma nan": (lambda m, a: a[_array_of(m, "b1", "bn", "bn", "gamma")].__setitem__(0, np.nan), "gamma"),
    "var negative": (lambda m, a: a[_array_of(m, "b1", "bn", "bn", "var")].__setitem__(0, -1), "var"),
    "bn length": (lambda m, a: a.__setitem__(_array_of(m, "b1", "bn", "bn", "beta"), np.zeros(3, np.float32)),
                  "differ in length"),
    "w integer": (lambda m, a: a.__setitem__(_array_of(m, "c1", "w"), np.zeros((3, 3, 3, 4), np.int32)),
                  "nodes[1].attrs.w"),
    "unused array": (lambda m, a: a.__setitem__("a999", np.zeros(2)), "unused"),
    "big-endian": (lambda m, a: a.__setitem__(_array_of(m, "c1", "w"), a[_array_of(m, "c1", "w")].astype(">f4")),
                   "native"),
    "complex": (lambda m, a: a.__setitem__(_array_of(m, "c1", "w"), a[_array_of(m, "c1", "w")].astype(np.complex64)),
                "dtype"),
    "string entry": (lambda m, a: a.__setitem__("note", np.zeros(1)), "unexpected entry"),
}


@pytest.mark.parametrize("case", sorted(ARRAY_EDITS))
def test_bad_arrays_named(saved, tmp_path, case):
    g, pixels, path = saved
    edit, field = ARRAY_EDITS[case]
    bad = rewrite(path, tmp_path / "bad.npz", None, edit)
    with pytest.raises(ValueError) as e:
        load(bad)
    assert str(bad) in str(e.value) and field in str(e.value), str(e.value)


def test_hostile_containers(saved, tmp_path):
    g, pixels, path = saved
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="not an npz"):
        load(junk)
    with pytest.raises(ValueError, match=r"\.npz"):
        load(tmp_path / "net.json")
    nometa = tmp_path / "nometa.npz"
    np.savez(nometa, a0=np.zeros(3))
    with pytest.raises(ValueError, match="no 'meta'"):
        load(nometa)
    notjson = tmp_path / "notjson.npz"
    np.savez(notjson, meta=np.array("{not json"))
    with pytest.raises(ValueError, match="not valid JSON"):
        load(notjson)
    objarr = tmp_path / "obj.npz"
    np.savez(objarr, meta=np.array("{}"), a0=np.array([{"x": 1}], dtype=object))   # a pickled entry
    with pytest.raises(ValueError, match="dtype object"):
        load(objarr)
    # a header declaring a huge array (a decompression bomb in spirit): refused before any data is read
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(bomb, "w") as zout:
        for item in zin.namelist():
            zout.writestr(item, zin.read(item))
        header = {"descr": "<f8", "fortran_order": False, "shape": (1 << 20, 1 << 10)}
        buf = bytearray(b"\x93NUMPY\x01\x00")
        text = repr(header).encode() + b" "
        text += b" " * ((64 - (len(buf) + 2 + len(text) + 1) % 64) % 64) + b"\n"
        buf += len(text).to_bytes(2, "little") + text
        zout.writestr("a9999.npy", bytes(buf))
    with pytest.raises(ValueError, match="more than"):
        load(bomb)
    deep = tmp_path / "deep.npz"
    np.savez(deep, meta=np.array("[" * 100000 + "]" * 100000))
    with pytest.raises(ValueError, match=str(deep)):
        load(deep)


def test_save_refuses_unquantized_and_writes_atomically(tmp_path):
    g = Graph([Node("input", "input"), Node("pool", "gap", ("input",))], [0.5] * 3, [0.2] * 3)
    with pytest.raises(ValueError, match="not calibrated"):
        g.save(tmp_path / "x.npz")
    with pytest.raises(ValueError, match="npz"):
        small_graph()[0].save(tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not (DATA_DIR / "cifar10" / "resnet20.npz").exists(), reason="shared data not available")
def test_resnet20_round_trip(tmp_path):
    """The real ResNet-20 (calibrated as experiments.run on a few test images): saved, loaded with every check,
    identical int64 logits on the 20 lossless CIFAR-10 images."""
    from experiments import data, nets

    g = nets.cifar_resnet(DATA_DIR / "cifar10" / "resnet20.npz")
    px, _ = data.cifar_lossless(DATA_DIR) if hasattr(data, "cifar_lossless") else data.cifar_test(DATA_DIR, 2)
    g.calibrate([px])
    g.quantize()
    path = tmp_path / "resnet20.npz"
    g.save(path)
    h = load(path)
    assert np.array_equal(g.forward_int(px)[0], h.forward_int(px)[0])
    _same_q(g, h)
