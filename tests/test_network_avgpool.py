"""fxbn.network's local average pooling (``avgpool``): window geometry, the integer output against an independent
exact rational computation, the exact reference path, and save / load with tampering refused."""
from fractions import Fraction

import numpy as np
import pytest

from fxbn.importers import BatchNormParams
from fxbn.network import Graph, Node, avgpool_counts, avgpool_windows, load
from network_files import assert_malformed_named, rewrite

CONFIGS = {   # kernel, stride, pad (t, b, l, r), count_include_pad
    "k2s2": ((2, 2), (2, 2), (0, 0, 0, 0), True),
    "k3s1p1 incl": ((3, 3), (1, 1), (1, 1, 1, 1), True),
    "k3s1p1 excl": ((3, 3), (1, 1), (1, 1, 1, 1), False),
    "k3s2p1 excl": ((3, 3), (2, 2), (1, 1, 1, 1), False),
    "k3x2 asym excl": ((3, 2), (2, 1), (1, 2, 0, 1), False),
}


def _brute_counts(h, w, kernel, stride, pad):
    (kh, kw), (sh, sw), (t, b, l, r) = kernel, stride, pad
    inside = np.zeros((h + t + b, w + l + r), np.int64)
    inside[t:t + h, l:l + w] = 1
    ho, wo = (h + t + b - kh) // sh + 1, (w + l + r - kw) // sw + 1
    return np.array([[inside[i * sh:i * sh + kh, j * sw:j * sw + kw].sum() for j in range(wo)] for i in range(ho)])


@pytest.mark.parametrize("kernel,stride,pad", [((3, 3), (1, 1), (1, 1, 1, 1)), ((3, 3), (2, 2), (1, 1, 1, 1)),
                                               ((2, 3), (1, 2), (1, 0, 2, 1)), ((5, 5), (3, 3), (2, 4, 4, 0)),
                                               ((4, 1), (1, 1), (3, 3, 0, 0))])
def test_window_counts_and_sizes(kernel, stride, pad):
    """avgpool_counts equals a brute-force count; avgpool_windows holds every count of every input size."""
    seen = set()
    for h in range(1, 12):
        for w in range(1, 12):
            try:
                want = _brute_counts(h, w, kernel, stride, pad)
            except ValueError:
                continue
            if want.size == 0:
                with pytest.raises(ValueError):
                    avgpool_counts(h, w, kernel, stride, pad)
                continue
            assert np.array_equal(avgpool_counts(h, w, kernel, stride, pad), want)
            seen |= set(want.reshape(-1).tolist())
    assert seen <= set(avgpool_windows(kernel, pad, False)) and 0 not in seen
    assert avgpool_windows(kernel, pad, True) == [kernel[0] * kernel[1]]


def _bn(rng, c):
    return BatchNormParams(rng.normal(1, 0.2, c).astype(np.float32), rng.normal(0, 0.3, c).astype(np.float32),
                           rng.normal(0, 0.3, c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32), 1e-5)


def pool_graph(kernel, stride, pad, cip, seed=0, act=None, size=9, output=None):
    """conv-bn-avgpool-conv-bn-gap-dense (output="ap": the pooled activation itself)."""
    rng = np.random.default_rng(seed)
    w = lambda *s: rng.normal(0, 0.4, s).astype(np.float32)  # noqa: E731
    nodes = [Node("input", "input"),
             Node("c1", "conv", ("input",), {"w": w(3, 3, 3, 4), "stride": 1, "pad": (1, 1, 1, 1)}),
             Node("b1", "bn", ("c1",), {"bn": _bn(rng, 4), "act": act}),
             Node("ap", "avgpool", ("b1",), {"kernel": kernel, "stride": stride, "pad": pad,
                                              "count_include_pad": cip}),
             Node("c2", "conv", ("ap",), {"w": w(1, 1, 4, 4), "stride": 1, "pad": (0, 0, 0, 0)}),
             Node("b2", "bn", ("c2",), {"bn": _bn(rng, 4), "act": "relu"}),
             Node("pool", "gap", ("b2",)),
             Node("fc", "dense", ("pool",), {"w": w(4, 5), "bias": w(5)})]
    g = Graph(nodes, input_mean=[0.5, 0.4, 0.3], input_std=[0.25, 0.2, 0.3], output=output)
    pixels = rng.integers(0, 256, size=(4, size, size, 3), dtype=np.uint8)
    g.calibrate([pixels])
    g.quantize()
    return g, pixels


def _exact_pool(g, x):
    """The avgpool's integer outputs from its integer input x, by Fractions: for each window its N input elements
    (N = kh*kw with padding at the zero point when padding counts), y = clamp(floor(s_in*(sum - N*z_in) /
    (N*s_out) + z_out + 1/2)) (round half up, the graph's rounding)."""
    node = g.by_name["ap"]
    a = node.attrs
    (kh, kw), (sh, sw), (t, b, l, r) = a["kernel"], a["stride"], a["pad"]
    ai, ao = g.act_of("b1"), g.q["ap"]["act"]
    n_, h, w, c = x.shape
    ho, wo = (h + t + b - kh) // sh + 1, (w + l + r - kw) // sw + 1
    sin, sout = Fraction(ai.scale), Fraction(ao.scale)
    out = np.zeros((n_, ho, wo, c), np.int64)
    for i in range(ho):
        for j in range(wo):
            rows = [y for y in range(i * sh - t, i * sh - t + kh)]
            cols = [z for z in range(j * sw - l, j * sw - l + kw)]
            cells = [(y, z) for y in rows for z in cols if 0 <= y < h and 0 <= z < w]
            n = kh * kw if a["count_include_pad"] else len(cells)
            for k in range(n_):
                for ch in range(c):
                    total = sum(int(x[k, y, z, ch]) for y, z in cells) + (n - len(cells)) * ai.zero_point
                    v = sin * (total - n * ai.zero_point) / (n * sout) + ao.zero_point
                    q = (v + Fraction(1, 2)).__floor__()
                    out[k, i, j, ch] = min(max(q, ao.qmin), ao.qmax)
    return out


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_integer_avgpool_is_the_exact_average(case):
    """The integer network's pooled activation equals the exact rational average of the integer inputs (an
    independent computation: window membership, divisor and padding by brute force), fxbn's layers equal their
    exact reference, and the fake-quant float network agrees."""
    kernel, stride, pad, cip = CONFIGS[case]
    g, px = pool_graph(kernel, stride, pad, cip, act="relu" if cip else None)
    gi, _ = pool_graph(kernel, stride, pad, cip, act="relu" if cip else None, output="b1")
    gp, _ = pool_graph(kernel, stride, pad, cip, act="relu" if cip else None, output="ap")
    x = gi.forward_int(px)[0] + gi.act_of("b1").zero_point
    pooled = gp.forward_int(px)[0] + gp.act_of("ap").zero_point
    assert np.array_equal(pooled, _exact_pool(gp, x))
    want_windows = avgpool_windows(kernel, pad, cip)
    assert [layer.op["window"] for layer in g.q["ap"]["layers"]] == want_windows
    for bn in ("fxbn", "reference", "reference_api"):
        assert np.array_equal(gp.forward_int(px, bn=bn)[0], pooled - gp.act_of("ap").zero_point)
    lf, lr, unit, diverged = g.forward_pair(px)
    assert np.array_equal(lf, lr) and diverged == []
    fq = g.forward_float(px, fake_quant=True)
    assert np.abs(fq - lf * unit).max() < 1e-4 * max(1.0, np.abs(fq).max())


def test_exact_check_detects_wrong_geometry():
    """The rational check is sensitive: the same graph read with the padding counted (or the zero point as 0)
    gives other outputs."""
    kernel, stride, pad, _ = CONFIGS["k3s1p1 excl"]
    gp, px = pool_graph(kernel, stride, pad, False, output="ap")
    gi, _ = pool_graph(kernel, stride, pad, False, output="b1")
    x = gi.forward_int(px)[0] + gi.act_of("b1").zero_point
    good = _exact_pool(gp, x)
    gp.by_name["ap"].attrs["count_include_pad"] = True      # the excl layers for N=9 only: border windows wrong
    assert not np.array_equal(gp.forward_int(px)[0] + gp.act_of("ap").zero_point, good)
    gp.by_name["ap"].attrs["count_include_pad"] = False
    l6, l9 = gp.q["ap"]["layers"][-2:]                     # the N=6 and N=9 layers relabelled as each other
    l6.op, l9.op = dict(l9.op), dict(l6.op)
    assert not np.array_equal(gp.forward_int(px)[0] + gp.act_of("ap").zero_point, good)


def test_missing_window_layer_is_an_error():
    gp, px = pool_graph((3, 3), (2, 2), (1, 1, 1, 1), False, output="ap")
    gp.q["ap"]["layers"] = [la for la in gp.q["ap"]["layers"] if la.op["window"] != 6]
    with pytest.raises(ValueError, match="ap: no layer for the window size 6"):
        gp.forward_int(px)


# ---------------------------------------------------------------------------------------------- save / load
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    g, px = pool_graph((3, 3), (2, 2), (1, 1, 1, 1), False, size=8)
    path = tmp_path_factory.mktemp("avgnet") / "net.npz"
    g.save(path)
    return g, px, path


def test_round_trip(saved):
    g, px, path = saved
    h = load(path)
    assert [x.to_dict() for x in h.q["ap"]["layers"]] == [x.to_dict() for x in g.q["ap"]["layers"]]
    assert h.q["ap"]["act"] == g.q["ap"]["act"] and h.acts == g.acts
    assert h.by_name["ap"].attrs == g.by_name["ap"].attrs
    assert np.array_equal(h.forward_int(px)[0], g.forward_int(px)[0])
    lf, lr, _, diverged = h.forward_pair(px)
    assert np.array_equal(lf, lr) and diverged == []



def _ap(m):
    return next(n for n in m["nodes"] if n["name"] == "ap")


def _bump(k, field):
    def edit(m):
        m["q"]["ap"]["layers"][k][field][0] += 1
    return edit


def _swap_layers(m):
    ls = m["q"]["ap"]["layers"]
    ls[-1], ls[-2] = ls[-2], ls[-1]


def _window_and_op(m):     # a consistent-looking record: the N=9 layer relabelled as N=6 and vice versa
    ls = m["q"]["ap"]["layers"]
    ls[-1], ls[-2] = ls[-2], ls[-1]
    ls[-1]["op"], ls[-2]["op"] = ls[-2]["op"], ls[-1]["op"]


TAMPERED = {   # well-formed; only the re-check (exactness + re-quantization) can refuse them
    "multiplier + 1": (_bump(-1, "multiplier"), "q.ap.layers"),
    "bias + 1": (_bump(0, "bias"), "q.ap.layers"),
    "out scale": (lambda m: m["acts"]["ap"].update(scale=float(np.float32(m["acts"]["ap"]["scale"] * 1.01))), "q.ap"),
    "count_include_pad flipped": (lambda m: _ap(m)["attrs"].update(count_include_pad=True), "q.ap"),
}

MALFORMED = {  # refused by the structural validation, with or without the check
    "kernel scalar": (lambda m: _ap(m)["attrs"].update(kernel=3), "attrs.kernel"),
    "kernel three": (lambda m: _ap(m)["attrs"].update(kernel={"tuple": [3, 3, 3]}), "attrs.kernel"),
    "stride 0": (lambda m: _ap(m)["attrs"].update(stride={"tuple": [0, 2]}), "attrs.stride"),
    "pad as big as kernel": (lambda m: _ap(m)["attrs"].update(pad={"tuple": [3, 1, 1, 1]}), "attrs.pad"),
    "cip int": (lambda m: _ap(m)["attrs"].update(count_include_pad=0), "attrs.count_include_pad"),
    "cip missing": (lambda m: _ap(m)["attrs"].pop("count_include_pad"), "attrs"),
    "unknown attr": (lambda m: _ap(m)["attrs"].update(ceil_mode=True), "unknown field"),
    "one layer missing": (lambda m: m["q"]["ap"]["layers"].pop(), "q.ap.layers"),
    "layers out of order": (_swap_layers, "q.ap.layers[4]"),
    "op kind": (lambda m: m["q"]["ap"]["layers"][0]["op"].update(kind="requant"), "q.ap.layers[0]"),
    # each layer's op must state the window its source was solved for (before: loaded, and without the check the
    # N=9 layer rescaled the windows of 6 pixels)
    "layers relabelled": (_window_and_op, "q.ap.layers["),
    "no act": (lambda m: m["q"]["ap"].pop("act"), "q.ap"),
    "no calibration": (lambda m: m["acts"].pop("ap"), "acts"),
    "q entry missing": (lambda m: m["q"].pop("ap"), "q"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_file_refused(saved, tmp_path, case):
    g, px, path = saved
    edit, field = TAMPERED[case]
    bad = rewrite(path, tmp_path / "bad.npz", edit)
    with pytest.raises(ValueError) as e:
        load(bad)
    assert str(bad) in str(e.value) and field in str(e.value), str(e.value)


def test_tampering_changes_the_network_without_the_check(saved, tmp_path):
    """The refusals above come from the check: loaded without it, a tampered avgpool computes differently."""
    g, px, path = saved
    for k, edit in enumerate((_bump(-1, "multiplier"),)):
        bad = rewrite(path, tmp_path / f"bad{k}.npz", edit)
        h = load(bad, check=False)
        gp = Graph(h.nodes, h.input_mean, h.input_std, output="ap")
        gp.acts, gp.q = h.acts, h.q
        gg = Graph(g.nodes, g.input_mean, g.input_std, output="ap")
        gg.acts, gg.q = g.acts, g.q
        big = np.random.default_rng(3).integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
        assert not np.array_equal(gp.forward_int(big)[0], gg.forward_int(big)[0]), k


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_field_named(saved, tmp_path, case):
    assert_malformed_named(saved[2], tmp_path, *MALFORMED[case])


def test_network_doctests():
    import doctest

    import fxbn.network

    assert doctest.testmod(fxbn.network).failed == 0
