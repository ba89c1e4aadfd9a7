"""A calibrated, quantized :class:`fxbn.network.Graph` on disk: one .npz (no pickle) holding the float parameters,
the calibration, and the integer layers.

The file is data only: numeric arrays (float parameters, int8 weights, their float64 scales) and one JSON string
``meta`` (the nodes, calibration, rounding, solver options and every layer's exact record).  Reading treats it as
hostile, like :mod:`fxbn.io`: every array's shape and dtype come from its .npy header and are bounded before any
data is read; every field is validated (types, ranges, names, array shapes); every failure is a ValueError naming
the file and the field.  By default, :func:`load` also re-checks that the integer network is the one the float
parameters and calibration define: each layer exact against its source (breakpoint certificate for FixedPointBN,
the exhaustive test for FixedPointAdd), and the whole quantization redone from the loaded floats and calibration,
field by field equal to the loaded one (int8 weights, scales, accumulator bounds, layers).

>>> import os, tempfile, numpy as np
>>> from fxbn.network import Graph, Node, load
>>> from fxbn.importers import BatchNormParams
>>> rng = np.random.default_rng(0)
>>> bn = BatchNormParams(np.ones(4), np.zeros(4), np.zeros(4), np.ones(4), 1e-5)
>>> g = Graph([Node("input", "input"),
...            Node("c1", "conv", ("input",), {"w": rng.normal(size=(3, 3, 3, 4)).astype(np.float32),
...                                             "stride": 1, "pad": (1, 1, 1, 1)}),
...            Node("b1", "bn", ("c1",), {"bn": bn, "act": "relu"}), Node("pool", "gap", ("b1",))],
...           input_mean=[0.5] * 3, input_std=[0.25] * 3)
>>> pixels = rng.integers(0, 256, size=(2, 8, 8, 3), dtype=np.uint8)
>>> _ = g.calibrate([pixels]); _ = g.quantize()
>>> path = os.path.join(tempfile.mkdtemp(), "net.npz")
>>> g.save(path)
>>> h = load(path)
>>> bool((h.forward_int(pixels)[0] == g.forward_int(pixels)[0]).all())
True
"""
import json
import math
import os
import zipfile

import numpy as np

from fxbn import atomic, importers
from fxbn.io import _json, _npy_header, _open_npz

FORMAT, VERSION = "fxbn.network.Graph", 1
MAX_ARRAYS = 4096
MAX_ELEMENTS = 1 << 28                # all arrays together (ResNet-50: ~51M)
MAX_META_BYTES = 256 << 20
OPS = ("input", "conv", "bn", "add", "maxpool", "shortcut_a", "gap", "dense", "avgpool")
ACTS = (None, "relu", "relu6")
ROUNDINGS = ("half_even", "half_up", "half_away", "floor")

# attrs per op: name -> (kind, required)
_ATTRS = {
    "input": {},
    "conv": {"w": ("farray", True), "stride": ("posint", True), "pad": ("pad", True), "bias": ("farray?", False),
             "depthwise": ("bool", False), "logits": ("bool", False)},
    "bn": {"bn": ("bn", True), "act": ("act", True)},
    "add": {"relu": ("bool", False)},
    "maxpool": {"k": ("posint", True), "stride": ("posint", True), "pad": ("pad", True)},
    "shortcut_a": {"out_channels": ("posint", True)},
    "gap": {},
    "dense": {"w": ("farray", True), "bias": ("farray", True)},
    "avgpool": {"kernel": ("pair", True), "stride": ("pair", True), "pad": ("pad", True),
                "count_include_pad": ("bool", True)},
}
_ACT_FIELDS = ("scale", "zero_point", "dtype", "qmin", "qmax")
_Q_KEYS = {"input": {"layer", "act"}, "conv": {"w_q", "w_scale", "term_bound"}, "bn": {"layers", "act", "act_in",
           "bias_fold_exact"}, "add": {"layer", "act"}, "dense": {"w_q", "w_scale", "act_in"},
           "avgpool": {"layers", "act"}}


# ---------------------------------------------------------------------------------------------- writing
def save(graph, path):
    """Write a calibrated, quantized graph to ``path`` (.npz), atomically (temporary file, then rename)."""
    if not str(path).lower().endswith(".npz"):
        raise ValueError(f"{path}: a network is saved as .npz")
    if not graph.acts or not graph.q:
        raise ValueError("the graph is not calibrated and quantized (call calibrate() and quantize() first)")
    arrays = {}

    def arr(value, dtype=None):
        key = f"a{len(arrays)}"
        arrays[key] = np.ascontiguousarray(value if dtype is None else np.asarray(value, dtype))
        return {"array": key}

    def attr(value):
        if isinstance(value, np.ndarray):
            return arr(value)
        if isinstance(value, importers.BatchNormParams):
            return {"bn": {k: arr(np.asarray(getattr(value, k))) for k in ("gamma", "beta", "mean", "var")},
                    "eps": float(value.eps)}
        if isinstance(value, tuple):
            return {"tuple": [attr(v) for v in value]}
        if isinstance(value, (np.integer, np.floating, np.bool_)):
            return value.item()
        return value

    nodes = [{"name": n.name, "op": n.op, "src": list(n.src), "attrs": {k: attr(v) for k, v in n.attrs.items()}}
             for n in graph.nodes]
    q = {}
    for node in graph.nodes:
        e = graph.q.get(node.name)
        if not e or (node.op == "conv" and node.attrs.get("logits")):   # the classifier conv: quantized lazily
            continue
        out = {}
        for k in sorted(_Q_KEYS.get(node.op, set()) & set(e)):
            v = e[k]
            if k == "layer":
                out[k] = v.to_dict()
            elif k == "layers":
                out[k] = [layer.to_dict() for layer in v]
            elif k in ("act", "act_in"):
                out[k] = _act_dict(v)
            elif k == "w_q":
                out[k] = arr(v, np.int8)
            elif k == "w_scale":
                out[k] = arr(v, np.float64)
            elif k == "term_bound":
                out[k] = int(v)
            else:
                out[k] = bool(v)
        q[node.name] = out
    meta = {"format": FORMAT, "version": VERSION, "input_mean": [float(v) for v in graph.input_mean],
            "input_std": [float(v) for v in graph.input_std], "output": graph.output, "nodes": nodes,
            "acts": {k: _act_dict(v) for k, v in graph.acts.items()},
            "rounding": getattr(graph, "rounding", "half_up"),
            "solver_options": dict(getattr(graph, "solver_options", None) or {}), "q": q}
    atomic.write_file(path, lambda f: np.savez(f, meta=np.array(json.dumps(meta)), **arrays))


def _act_dict(a):
    return {"scale": float(a.scale), "zero_point": int(a.zero_point), "dtype": str(a.dtype), "qmin": int(a.qmin),
            "qmax": int(a.qmax)}


# ---------------------------------------------------------------------------------------------- reading
class _Reader:
    """Field validation with the file named in every error."""

    def __init__(self, path):
        self.path = path

    def fail(self, field, msg):
        return ValueError(f"{self.path}: {field}: {msg}")

    def obj(self, field, v, keys, optional=()):
        if not isinstance(v, dict):
            raise self.fail(field, f"must be an object, got {type(v).__name__}")
        missing = [k for k in keys if k not in v]
        if missing:
            raise self.fail(field, f"lacks {', '.join(missing)}")
        unknown = sorted(str(k) for k in set(v) - set(keys) - set(optional))
        if unknown:
            raise self.fail(field, f"unknown field(s) {', '.join(unknown)}")
        return v

    def int(self, field, v, lo=None, hi=None):
        if type(v) is not int or (lo is not None and v < lo) or (hi is not None and v > hi):
            bounds = "" if lo is None and hi is None else f" in [{lo}, {hi}]"
            raise self.fail(field, f"must be an integer{bounds}, got {v!r}")
        return v

    def float(self, field, v, positive=False):
        if type(v) is not float or not math.isfinite(v) or (positive and not v > 0):
            raise self.fail(field, f"must be a finite {'positive ' if positive else ''}float, got {v!r}")
        return v

    def str(self, field, v, choices=None):
        if not isinstance(v, str) or (choices is not None and v not in choices):
            raise self.fail(field, f"must be one of {choices}" if choices else f"must be a string, got {v!r}")
        return v

    def bool(self, field, v):
        if type(v) is not bool:
            raise self.fail(field, f"must be true or false, got {v!r}")
        return v

    def act(self, field, v):
        self.obj(field, v, _ACT_FIELDS)
        try:
            return importers.ActivationQuant(self.float(f"{field}.scale", v["scale"], True),
                                             self.int(f"{field}.zero_point", v["zero_point"], -2 ** 31, 2 ** 31 - 1),
                                             self.str(f"{field}.dtype", v["dtype"], ("int8", "uint8", "int16")),
                                             self.int(f"{field}.qmin", v["qmin"]), self.int(f"{field}.qmax", v["qmax"]))
        except ValueError as e:
            if str(e).startswith(str(self.path)):
                raise
            raise self.fail(field, str(e)) from None


def _read_npz(path):
    """(meta dict, {key: array}) with every size bounded before data is read."""
    with _open_npz(path) as zf:
        names = zf.namelist()
        if "meta.npy" not in names:
            raise ValueError(f"{path}: not an fxbn network file (no 'meta' entry)")
        if len(names) > MAX_ARRAYS + 1 or len(set(names)) != len(names):
            raise ValueError(f"{path}: {len(names)} entries (at most {MAX_ARRAYS} arrays, no duplicates)")
        shape, dtype = _npy_header(zf, "meta.npy", path)
        if shape != () or dtype.kind != "U" or dtype.itemsize > MAX_META_BYTES:
            raise ValueError(f"{path}: meta must be one string of at most {MAX_META_BYTES} bytes, got shape {shape} "
                             f"dtype {dtype}")
        headers, total = {}, 0
        for name in names:
            if name == "meta.npy":
                continue
            if not (name.startswith("a") and name.endswith(".npy") and name[1:-4].isdigit()):
                raise ValueError(f"{path}: unexpected entry {name!r}")
            shape, dtype = _npy_header(zf, name, path)
            if dtype.kind not in "iuf" or dtype.itemsize > 8 or dtype.byteorder == ">" or len(shape) > 4:
                raise ValueError(f"{path}: array {name[:-4]} has dtype {dtype} shape {shape} (numeric, native "
                                 "order, at most 4 dimensions)")
            total += int(np.prod(shape, dtype=object))
            if total > MAX_ELEMENTS:
                raise ValueError(f"{path}: arrays hold more than {MAX_ELEMENTS} elements")
            headers[name[:-4]] = (shape, dtype)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = _json(str(z["meta"]), path)
            arrays = {k: z[k] for k in headers}
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path}: unreadable npz data ({e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: meta is not a JSON object")
    return meta, arrays


def load(path, *, check=True):
    """Read a graph written by :meth:`fxbn.network.Graph.save`.

    Parameters
    ----------
    path : str or os.PathLike
        An .npz file.
    check : bool
        True (default): re-check every layer exact against its source and redo the quantization from the loaded
        float parameters and calibration, requiring the loaded integer network to equal it field by field.  False:
        structural validation only (every field's type, range and shape; layers rebuilt through their strict
        constructors).

    Raises
    ------
    ValueError
        Naming the file and the field: malformed, tampered or inconsistent content.
    """
    from fxbn.api import FixedPointBN
    from fxbn.network import POINTS, Graph, Node, avgpool_windows
    from fxbn.ops import FixedPointAdd, FixedPointRescale

    path = os.fspath(path)
    if not path.lower().endswith(".npz"):
        raise ValueError(f"{path}: a network file is .npz")
    meta, arrays = _read_npz(path)
    r = _Reader(path)
    r.obj("meta", meta, ("format", "version", "input_mean", "input_std", "output", "nodes", "acts", "rounding",
                         "solver_options", "q"))
    if meta["format"] != FORMAT:
        raise r.fail("format", f"must be {FORMAT!r}, got {meta['format']!r}")
    r.int("version", meta["version"], VERSION, VERSION)
    used = set()

    def array(field, ref, kinds, ndims):
        r.obj(field, ref, ("array",))
        key = ref["array"]
        if not isinstance(key, str) or key not in arrays:
            raise r.fail(field, f"names no array of the file ({key!r})")
        if key in used:
            raise r.fail(field, f"array {key} is used twice")
        used.add(key)
        a = arrays[key]
        if a.dtype.kind not in kinds or a.ndim not in ndims or 0 in a.shape:
            raise r.fail(field, f"array of dtype {a.dtype} shape {a.shape}; expected kind {kinds}, {ndims} dims")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise r.fail(field, "holds a non-finite value")
        return a

    # nodes
    if not isinstance(meta["nodes"], list) or not meta["nodes"] or len(meta["nodes"]) > 100_000:
        raise r.fail("nodes", "must be a non-empty list")
    nodes, names = [], set()
    for i, nd in enumerate(meta["nodes"]):
        f = f"nodes[{i}]"
        r.obj(f, nd, ("name", "op", "src", "attrs"))
        name = r.str(f"{f}.name", nd["name"])
        if name in names or not name:
            raise r.fail(f"{f}.name", f"{name!r} is empty or not unique")
        op = r.str(f"{f}.op", nd["op"], OPS)
        src = nd["src"]
        if not isinstance(src, list) or not all(isinstance(s, str) and s in names for s in src):
            raise r.fail(f"{f}.src", f"must name earlier nodes, got {src!r}")
        want = {"input": 0, "add": 2}.get(op, 1)
        if len(src) != want:
            raise r.fail(f"{f}.src", f"op {op} takes {want} input(s), got {len(src)}")
        schema = _ATTRS[op]
        r.obj(f"{f}.attrs", nd["attrs"], [k for k, (_, req) in schema.items() if req],
              [k for k, (_, req) in schema.items() if not req])
        attrs = {}
        for k, v in nd["attrs"].items():
            kind, fa = schema[k][0], f"{f}.attrs.{k}"
            if kind == "farray" or (kind == "farray?" and v is not None):
                attrs[k] = array(fa, v, "f", (1, 2, 3, 4))
            elif kind == "farray?":
                attrs[k] = None
            elif kind == "posint":
                attrs[k] = r.int(fa, v, 1, 1 << 16)
            elif kind == "bool":
                attrs[k] = r.bool(fa, v)
            elif kind in ("pair", "pad"):  # (kh, kw) >= 1 or (top, bottom, left, right) >= 0
                n, low = (2, 1) if kind == "pair" else (4, 0)
                r.obj(fa, v, ("tuple",))
                t = v["tuple"]
                if not isinstance(t, list) or len(t) != n:
                    raise r.fail(fa, f"must be {n} integers, got {t!r}")
                attrs[k] = tuple(r.int(fa, p, low, 1 << 16) for p in t)
            elif kind == "act":
                if isinstance(v, dict):
                    r.obj(fa, v, ("tuple",))
                    t = v["tuple"]
                    if not (isinstance(t, list) and len(t) == 2 and t[0] == "leaky"):
                        raise r.fail(fa, f"must be null, 'relu', 'relu6' or ['leaky', alpha], got {t!r}")
                    alpha = r.float(fa, t[1], True)
                    if not alpha < 1:
                        raise r.fail(fa, f"leaky alpha must lie in (0, 1), got {alpha}")
                    attrs[k] = ("leaky", alpha)
                elif v in ACTS:
                    attrs[k] = v
                else:
                    raise r.fail(fa, f"must be null, 'relu', 'relu6' or ['leaky', alpha], got {v!r}")
            elif kind == "bn":
                r.obj(fa, v, ("bn", "eps"))
                r.obj(f"{fa}.bn", v["bn"], ("gamma", "beta", "mean", "var"))
                p = {n: array(f"{fa}.bn.{n}", v["bn"][n], "f", (1,)) for n in ("gamma", "beta", "mean", "var")}
                if len({a.shape for a in p.values()}) != 1:
                    raise r.fail(f"{fa}.bn", "gamma, beta, mean and var differ in length")
                if (p["var"] < 0).any():
                    raise r.fail(f"{fa}.bn.var", "holds a negative variance")
                attrs[k] = importers.BatchNormParams(p["gamma"], p["beta"], p["mean"], p["var"],
                                                     r.float(f"{fa}.eps", v["eps"], True))
        nodes.append(Node(name, op, tuple(src), attrs))
        names.add(name)
    if nodes[0].op != "input" or sum(n.op == "input" for n in nodes) != 1:
        raise r.fail("nodes", "the first node, and only it, must be the input")
    by_name = {n.name: n for n in nodes}
    for n in nodes:
        if n.op == "bn" and (by_name[n.src[0]].op != "conv" or by_name[n.src[0]].attrs.get("logits")):
            raise r.fail(f"nodes.{n.name}.src", "a bn node follows a (non-classifier) conv")
        if n.op == "conv":
            w = n.attrs["w"]
            if w.ndim != (3 if n.attrs.get("depthwise") else 4):
                raise r.fail(f"nodes.{n.name}.attrs.w", f"shape {w.shape} does not fit a "
                             f"{'depthwise ' if n.attrs.get('depthwise') else ''}convolution")
        if n.op == "avgpool":
            (kh, kw), (t, b, left, right) = n.attrs["kernel"], n.attrs["pad"]
            if max(t, b) >= kh or max(left, right) >= kw:
                raise r.fail(f"nodes.{n.name}.attrs.pad", f"{n.attrs['pad']} not smaller than the kernel {(kh, kw)}")
            if kh * kw > 1 << 16:
                raise r.fail(f"nodes.{n.name}.attrs.kernel", f"{(kh, kw)}: at most 65536 elements per window")
        if n.op == "dense" and (n.attrs["w"].ndim != 2 or n.attrs["bias"].shape != (n.attrs["w"].shape[1],)):
            raise r.fail(f"nodes.{n.name}.attrs", f"dense w {n.attrs['w'].shape} and bias "
                         f"{n.attrs['bias'].shape} do not fit")
    consumed = {n.src[0] for n in nodes if n.op == "bn"}
    for n in nodes:
        if n.op == "conv" and not n.attrs.get("logits") and n.name not in consumed:
            raise r.fail(f"nodes.{n.name}", "a conv that is not the classifier must be followed by a bn node")
    output = r.str("output", meta["output"])
    if output not in by_name:
        raise r.fail("output", f"names no node ({output!r})")
    mean, std = (meta[k] for k in ("input_mean", "input_std"))
    for k, v in (("input_mean", mean), ("input_std", std)):
        if not isinstance(v, list) or not v or len(v) > 4096:
            raise r.fail(k, "must be a non-empty list of floats")
        for j, e in enumerate(v):
            r.float(f"{k}[{j}]", e, positive=(k == "input_std"))
    if len(mean) != len(std):
        raise r.fail("input_std", f"{len(std)} values, input_mean has {len(mean)}")
    graph = Graph(nodes, mean, std, output)
    graph.rounding = r.str("rounding", meta["rounding"], ROUNDINGS)
    r.obj("solver_options", meta["solver_options"], (), ("acc_bits", "max_multiplier_bits", "common_shift"))
    opts = meta["solver_options"]
    if "acc_bits" in opts:
        r.int("solver_options.acc_bits", opts["acc_bits"], 2, 64)
    if "max_multiplier_bits" in opts and opts["max_multiplier_bits"] is not None:
        r.int("solver_options.max_multiplier_bits", opts["max_multiplier_bits"], 1, 64)
    if "common_shift" in opts:
        r.bool("solver_options.common_shift", opts["common_shift"])
    graph.solver_options = dict(opts)
    points = [n.name for n in nodes if n.op in POINTS]
    r.obj("acts", meta["acts"], points)
    graph.acts = {p: r.act(f"acts.{p}", meta["acts"][p]) for p in points}
    # integer parameters
    r.obj("q", meta["q"], [n.name for n in nodes if n.op in _Q_KEYS and (n.op != "conv" or n.name in consumed)])
    q = {}
    for n in nodes:
        if n.name not in meta["q"]:
            continue
        f = f"q.{n.name}"
        keys = _Q_KEYS[n.op]
        required = tuple(sorted(keys))
        e = r.obj(f, meta["q"][n.name], required, tuple(sorted(set(keys) - set(required))))
        out = {}
        try:
            for k, v in e.items():
                fk = f"{f}.{k}"
                if k in ("act", "act_in"):
                    out[k] = r.act(fk, v)
                elif k == "layer":
                    layer = (FixedPointAdd if n.op == "add" else FixedPointBN).from_dict(v)
                    out[k] = layer
                elif k == "layers" and n.op == "avgpool":
                    want = avgpool_windows(n.attrs["kernel"], n.attrs["pad"], n.attrs["count_include_pad"])
                    if not isinstance(v, list) or len(v) != len(want):
                        raise r.fail(fk, f"must be a list of {len(want)} layer records (window sizes {want})")
                    out[k] = []
                    for i, rec in enumerate(v):
                        try:
                            out[k].append(FixedPointRescale.from_dict(rec))
                        except ValueError as exc:
                            raise r.fail(f"{fk}[{i}]", str(exc)) from None
                    for i, (layer, w) in enumerate(zip(out[k], want)):
                        if layer.op.get("kind") != "avgpool" or layer.op.get("window") != w or layer.channels != 1:
                            raise r.fail(f"{fk}[{i}]", f"must be the one-channel avgpool layer of window {w}, got "
                                         f"{layer.op}")
                elif k == "layers":
                    if not isinstance(v, list) or len(v) not in (1, 2):
                        raise r.fail(fk, "must be a list of one or two layer records")
                    out[k] = [FixedPointBN.from_dict(rec) for rec in v]
                elif k == "w_q":
                    out[k] = array(fk, v, "i", (2, 3, 4))
                    if out[k].dtype != np.int8:
                        raise r.fail(fk, f"must be int8, got {out[k].dtype}")
                elif k == "w_scale":
                    out[k] = array(fk, v, "f", (1,))
                    if out[k].dtype != np.float64 or not (out[k] > 0).all():
                        raise r.fail(fk, "must be positive float64")
                elif k == "term_bound":
                    out[k] = r.int(fk, v, 0, 2 ** 53 - 1)
                else:
                    out[k] = r.bool(fk, v)
        except ValueError as exc:
            if str(exc).startswith(str(path)):
                raise
            raise r.fail(f, str(exc)) from None
        if "w_q" in out:
            w = n.attrs["w"]
            if out["w_q"].shape != w.shape or out["w_scale"].shape != (w.shape[-1],):
                raise r.fail(f, f"w_q {out['w_q'].shape} / w_scale {out['w_scale'].shape} do not fit w {w.shape}")
            shape = [1] * w.ndim
            shape[-1] = -1
            out["w_deq"] = (out["w_q"] * out["w_scale"].reshape(shape)).astype(np.float32)
        q[n.name] = out
    if used != set(arrays):
        raise r.fail("arrays", f"unused array(s) {', '.join(sorted(set(arrays) - used))}")
    for n in nodes:   # layers must fit the graph: channel counts and dtypes (so forward_int cannot misread them)
        e = q.get(n.name, {})
        if n.op == "bn":
            for layer in e["layers"]:
                if layer.channels != n.attrs["bn"].channels:
                    raise r.fail(f"q.{n.name}.layers", f"{layer.channels} channels, the BN has "
                                 f"{n.attrs['bn'].channels}")
        if n.op == "avgpool":
            for i, layer in enumerate(e["layers"]):
                if layer.in_dtype != np.int32 or layer.out_dtype != np.dtype(e["act"].dtype):
                    raise r.fail(f"q.{n.name}.layers[{i}]", f"must take int32 window sums to {e['act'].dtype}, "
                                 f"got {layer.in_dtype} -> {layer.out_dtype}")
        if n.op == "input" and (e["layer"].channels != len(mean) or e["layer"].in_dtype != np.uint8):
            raise r.fail(f"q.{n.name}.layer", "must be a uint8 layer with one channel per input channel")
    graph.q = q
    if check:
        _check(graph, path, r)
    return graph


def _check(graph, path, r):
    """Every layer exact against its source, and the quantization of the loaded floats + calibration equal to it."""
    from fxbn.network import Graph

    for n in graph.nodes:
        e = graph.q.get(n.name, {})
        layers = [e["layer"]] if "layer" in e else e.get("layers", [])
        for i, layer in enumerate(layers):
            field = f"q.{n.name}.layer" + (f"s[{i}]" if "layers" in e else "")
            if n.op == "add":
                bad = layer.check_exhaustive()
                if bad is not None:
                    raise r.fail(field, f"does not equal the exact reference at (x1, x2) = {tuple(bad)}")
            else:
                try:
                    layer.check_exact()
                except ValueError as exc:
                    raise r.fail(field, str(exc)) from None
    fresh = Graph(graph.nodes, graph.input_mean, graph.input_std, graph.output)
    fresh.acts = dict(graph.acts)
    try:
        fresh.quantize(rounding=graph.rounding, solver_options=graph.solver_options)
    except Exception as exc:  # noqa: BLE001 -- any failure to rebuild is a bad file, named
        raise r.fail("q", f"the float parameters and calibration do not quantize ({type(exc).__name__}: {exc})") \
            from None
    for n in graph.nodes:
        got, want = graph.q.get(n.name, {}), fresh.q.get(n.name, {})
        for k in sorted(set(want) & _Q_KEYS.get(n.op, set())):
            if k not in got:
                raise r.fail(f"q.{n.name}.{k}", "missing")
            a, b = got[k], want[k]
            if k == "layer":
                same = a.to_dict() == b.to_dict()
            elif k == "layers":
                same = [x.to_dict() for x in a] == [x.to_dict() for x in b]
            elif isinstance(b, np.ndarray):
                same = a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
            else:
                same = a == b
            if not same:
                raise r.fail(f"q.{n.name}.{k}", "differs from the quantization of the saved float parameters and "
                             "calibration (tampered or inconsistent)")


# ------------------------------------------------------------------------------- python -m verify --activations
ACTIVATIONS_FORMAT = "fxbn.activations"


def _act(act):
    return {"scale": float(act.scale), "zero_point": int(act.zero_point), "dtype": act.dtype, "qmin": int(act.qmin),
            "qmax": int(act.qmax)}


def _relu(act):
    if isinstance(act, tuple):                      # ("leaky", alpha)
        return [act[0], float(act[1])]
    return {"relu": True, "relu6": "relu6", None: False}[act]


def activations_json(graph, model=None, calibration=None):
    """The activations-file dict (verify/model.py schema) of a quantized :class:`fxbn.network.Graph`.

    Per BN node: ``in`` = the conv input's quantization with its exact integer range (``graph.q[bn]["act_in"]``,
    i.e. ``graph.act_of(conv input)``), ``out`` = the BN output's calibrated quantization (``graph.acts[bn]``),
    the fused activation, eps and the conv node's name; top level: the rounding and solver options the graph was
    quantized with (from its FixedPointBN layers).
    """
    layers, roundings, options = {}, set(), []
    for node in graph.bn_nodes():
        q = graph.q.get(node.name)
        if q is None or "act_in" not in q:
            raise ValueError(f"graph is not quantized (no parameters for {node.name}): call calibrate and quantize")
        layer = q["layers"][0]
        roundings.add(layer.rounding)
        options.append(dict(layer.solve_options))
        layers[node.name] = {"conv": node.src[0], "channels": layer.channels,
                             "in": _act(q["act_in"]), "out": _act(graph.acts[node.name]),
                             "relu": _relu(node.attrs["act"]), "eps": float(node.attrs["bn"].eps)}
    if len(roundings) != 1:
        raise ValueError(f"layers were quantized with several roundings: {sorted(roundings)}")
    out = {"format": ACTIVATIONS_FORMAT, "version": 1, "rounding": roundings.pop()}
    if options and any(o != options[0] for o in options):
        raise ValueError("layers were solved with different solver options")
    if options and options[0]:
        out["solver_options"] = options[0]
    if model is not None:
        out["model"] = [str(model)]
    if calibration is not None:
        out["calibration"] = calibration
    out["layers"] = layers
    return out
