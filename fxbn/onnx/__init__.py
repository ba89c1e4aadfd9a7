"""FixedPointBN layers as integer-only ONNX: standard ops, integer tensors, bit-identical to FixedPointBN.apply.

One layer y = clamp(floor((A*x + B) / 2^s), qmin, qmax) becomes (opset ``OPSET``, default domain only)::

    x (int8|uint8|int16|int32) -Cast-> v (int32|int64) -Mul A-> -Add B-> acc
    m = Mod(acc, 2^s)          fmod=0: the remainder takes the divisor's sign, so 0 <= m < 2^s
    q = Div(Sub(acc, m), 2^s)  acc - m is a multiple of 2^s: truncating Div is exact, q = floor(acc / 2^s)
    y = Cast(Clip(q, qmin, qmax)) -> out dtype

A, B and 2^s are per-channel initializers broadcast along the channel axis (NCHW: shape (C, 1, ..., 1); NHWC:
(C,)).  ONNX's BitShift is defined for unsigned types only and Div truncates toward zero, hence the Mod/Sub/Div
floor division; ``verify.lemmas.onnx_floor_div`` proves in QF_BV, at 32 and 64 bits, that it is floor(acc / 2^s)
for every accumulator value and every s <= w - 2 (plain Div and fmod=1 are refuted), and ``onnx_layer`` the whole
Mul/Add/Mod/Sub/Div/Clip chain against clamp(floor((A*x + B) / 2^s)) under the solver's accumulator bound.  The
accumulator is int32 only when the layer's bounds prove it fits (every |A*x|, |A*x + B|, |B| and A within 32 bits
over in_range) and every s <= 30 (2^s must be an int32); otherwise int64 (s <= 62 always).

Outside a channel's in_range the layer's outputs are not proven (and the accumulator may wrap):
``FixedPointBN.apply`` raises there, a graph cannot, so the exported model has a second output ``out_of_range``
(int64 scalar: how many inputs lie outside their channel's range; 0 means every output is proven).

>>> import numpy as np, fxbn, fxbn.onnx
>>> layer = fxbn.from_affine([0.0123, -0.5], [3.25, 0.1], in_dtype="int8", rounding="half_up")
>>> model = fxbn.onnx.export_layer(layer, None, axis=1, rank=2)
>>> [n.op_type for n in model.graph.node]
['Cast', 'Mul', 'Add', 'Mod', 'Sub', 'Div', 'Clip', 'Cast', 'Constant']
>>> x = np.arange(-128, 128, dtype=np.int8).reshape(128, 2)
>>> y, bad = fxbn.onnx.run(model, x)                       # onnxruntime
>>> bool(np.array_equal(y, layer.apply(x, axis=1))), int(bad)
(True, 0)
"""
import json

import numpy as np

try:
    import onnx                      # the top-level onnx package (absolute import), not this module
    from onnx import TensorProto, helper, numpy_helper
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("fxbn.onnx needs the onnx package: pip install 'fxbn[onnx]' (onnx, onnxruntime)") from exc

__all__ = ["OPSET", "LayerGraph", "layer_nodes", "export_layer", "run", "check_layer", "accumulator_type",
           "check_inputs"]

OPSET = 18
"""The ONNX opset of the exported models (default domain only)."""

_ELEM = {"int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "int16": TensorProto.INT16,
         "uint16": TensorProto.UINT16, "int32": TensorProto.INT32, "int64": TensorProto.INT64}
_IN_DTYPES = ("int8", "uint8", "int16", "int32")


def _bits(v):
    """Signed width of the integer v."""
    return (v if v >= 0 else ~v).bit_length() + 1


def accumulator_type(layer, in_dtype=None):
    """The narrowest ONNX accumulator, "int32" or "int64", proven to hold every intermediate of the layer.

    int32 needs, per channel over in_range (intersected with in_dtype's values): A, A*lo, A*hi, A*lo + B,
    A*hi + B and B within 32 signed bits (A*x + B is affine in x, so its extremes are at the ends), and s <= 30
    (the divisor 2^s is an int32 initializer).  Computed here from the exact integers, independently of the
    layer's stored widths.

    >>> import fxbn, fxbn.onnx
    >>> fxbn.onnx.accumulator_type(fxbn.from_affine([0.3], [1.0], in_dtype="int8"))
    'int32'
    """
    lo, hi = _effective_range(layer, in_dtype or layer.in_dtype.name)
    for A, B, s, a, b in zip(layer.multiplier.tolist(), layer.bias.tolist(), layer.shift.tolist(), lo.tolist(),
                             hi.tolist()):
        if s > 30 or max(_bits(A), _bits(A * a), _bits(A * b), _bits(A * a + B), _bits(A * b + B), _bits(B)) > 32:
            return "int64"
    return "int32"


def _effective_range(layer, in_dtype):
    """Per-channel [lo, hi]: in_range intersected with in_dtype's values (what the graph can receive)."""
    info = np.iinfo(np.dtype(in_dtype))
    lo = np.maximum(layer.in_range[:, 0], info.min)
    hi = np.minimum(layer.in_range[:, 1], info.max)
    empty = np.flatnonzero(lo > hi)
    if empty.size:
        c = int(empty[0])
        raise ValueError(f"in_dtype {in_dtype} holds no value of the in_range of channel {c}, "
                         f"{layer.in_range[c].tolist()}")
    return lo, hi


class LayerGraph:
    """The nodes and initializers of one layer's subgraph (see ``layer_nodes``).

    Attributes
    ----------
    nodes : list of onnx.NodeProto
    initializers : list of onnx.TensorProto
    output : str
        Name of the output tensor (out dtype).
    out_of_range : str or None
        Name of the int64 scalar counting inputs outside in_range (None without ``range_check``).
    acc_dtype : str
        "int32" or "int64".
    """

    def __init__(self, nodes, initializers, output, out_of_range, acc_dtype):
        self.nodes, self.initializers = nodes, initializers
        self.output, self.out_of_range, self.acc_dtype = output, out_of_range, acc_dtype


def _normalise_axis(axis, rank):
    if not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank!r}")
    if not isinstance(axis, (int, np.integer)) or not -rank <= axis < rank:
        raise ValueError(f"axis {axis!r} is out of bounds for rank {rank}")
    return int(axis) % rank


def layer_nodes(layer, x, y, *, axis=1, rank=4, in_dtype=None, acc=None, range_check=True, prefix=None):
    """The integer-only ONNX subgraph of one FixedPointBN, to compose into larger graphs.

    Parameters
    ----------
    layer : FixedPointBN
    x, y : str
        Input tensor name (of ``in_dtype``) and output tensor name (the layer's out dtype).
    axis, rank : int
        Channel axis and rank of x (NCHW: axis=1, rank=4; NHWC: axis=-1).
    in_dtype : str, optional
        x's element type, one of int8, uint8, int16, int32 (default: the layer's in_dtype).
    acc : {None, "int32", "int64"}
        Accumulator type; None picks ``accumulator_type(layer, in_dtype)``.  "int32" where it is not proven raises
        ValueError.
    range_check : bool
        Also compute the int64 scalar ``<prefix>out_of_range``: the number of inputs outside their channel's
        in_range.  Without it the caller guarantees every input lies in in_range (e.g. exact accumulator bounds).
    prefix : str, optional
        Prefix of every internal name (default: y + "/").

    Returns
    -------
    LayerGraph
    """
    from fxbn.api import _require_layer

    _require_layer(layer, "layer_nodes")
    in_dtype = layer.in_dtype.name if in_dtype is None else np.dtype(in_dtype).name
    if in_dtype not in _IN_DTYPES:
        raise ValueError(f"in_dtype must be one of {', '.join(_IN_DTYPES)}, got {in_dtype}")
    out_dtype = layer.out_dtype.name
    if out_dtype not in _ELEM:
        raise ValueError(f"the layer's out_dtype {out_dtype} has no ONNX integer type here")
    a = _normalise_axis(axis, rank)
    proven = accumulator_type(layer, in_dtype)
    if acc is None:
        acc = proven
    elif acc not in ("int32", "int64"):
        raise ValueError(f"acc must be None, 'int32' or 'int64', got {acc!r}")
    elif acc == "int32" and proven != "int32":
        raise ValueError("acc='int32' is not proven for this layer: "
                         f"{_int32_obstacle(layer, in_dtype)}; use acc='int64' (or None)")
    if np.any(layer.shift > 62) or np.any(layer.shift < 0):
        raise ValueError("shifts must lie in [0, 62]")
    p = (y + "/") if prefix is None else prefix
    npacc = np.dtype(acc)
    shape = [layer.channels] + [1] * (rank - 1 - a)

    def init(name, values, dtype=npacc, shp=shape):
        return numpy_helper.from_array(np.asarray(values, dtype).reshape(shp), p + name)

    qmin, qmax = layer.out_range
    inits = [init("multiplier", layer.multiplier), init("bias", layer.bias),
             init("divisor", [1 << int(s) for s in layer.shift.tolist()]),
             init("qmin", qmin, shp=[]), init("qmax", qmax, shp=[])]
    n = helper.make_node
    nodes = [n("Cast", [x], [p + "v"], to=_ELEM[acc], name=p + "cast_in"),
             n("Mul", [p + "v", p + "multiplier"], [p + "ax"], name=p + "mul"),
             n("Add", [p + "ax", p + "bias"], [p + "acc"], name=p + "add"),
             n("Mod", [p + "acc", p + "divisor"], [p + "rem"], fmod=0, name=p + "mod"),
             n("Sub", [p + "acc", p + "rem"], [p + "multiple"], name=p + "sub"),
             n("Div", [p + "multiple", p + "divisor"], [p + "q"], name=p + "div"),
             n("Clip", [p + "q", p + "qmin", p + "qmax"], [p + "clipped"], name=p + "clip"),
             n("Cast", [p + "clipped"], [y], to=_ELEM[out_dtype], name=p + "cast_out")]
    oor = None
    if range_check:
        oor = p + "out_of_range"
        info = np.iinfo(np.dtype(in_dtype))
        lo, hi = layer.in_range[:, 0], layer.in_range[:, 1]
        checks = []
        if np.any(lo > info.min):
            inits.append(init("in_lo", np.maximum(lo, info.min)))
            nodes.append(n("Less", [p + "v", p + "in_lo"], [p + "below"], name=p + "below"))
            checks.append(p + "below")
        if np.any(hi < info.max):
            inits.append(init("in_hi", np.minimum(hi, info.max)))
            nodes.append(n("Greater", [p + "v", p + "in_hi"], [p + "above"], name=p + "above"))
            checks.append(p + "above")
        if not checks:                       # every value of in_dtype lies in every channel's range
            nodes.append(n("Constant", [], [oor], value=numpy_helper.from_array(np.array(0, np.int64)),
                           name=p + "out_of_range"))
        else:
            if len(checks) == 2:
                nodes.append(n("Or", checks, [p + "outside"], name=p + "outside"))
                flag = p + "outside"
            else:
                flag = checks[0]
            nodes += [n("Cast", [flag], [p + "outside_i64"], to=TensorProto.INT64, name=p + "outside_i64"),
                      n("ReduceSum", [p + "outside_i64"], [oor], keepdims=0, name=p + "out_of_range")]
    return LayerGraph(nodes, inits, y, oor, acc)


def _int32_obstacle(layer, in_dtype):
    lo, hi = _effective_range(layer, in_dtype)
    for c, (A, B, s, a, b) in enumerate(zip(layer.multiplier.tolist(), layer.bias.tolist(), layer.shift.tolist(),
                                            lo.tolist(), hi.tolist())):
        if s > 30:
            return f"channel {c} has shift {s} > 30 (2^s is not an int32)"
        w = max(_bits(A), _bits(A * a), _bits(A * b), _bits(A * a + B), _bits(A * b + B), _bits(B))
        if w > 32:
            return f"channel {c} needs {w} accumulator bits over [{a}, {b}]"
    return "no obstacle"  # pragma: no cover


def export_layer(layer, path=None, *, axis=1, rank=4, in_dtype=None, acc=None, range_check=True,
                 name="fxbn_layer"):
    """One FixedPointBN as a standalone integer-only ONNX model (opset ``OPSET``), checked by onnx.checker.

    Inputs: ``x`` (in_dtype, channels on ``axis``, other dimensions symbolic).  Outputs: ``y`` (the layer's
    out_dtype, x's shape) and, with ``range_check``, ``out_of_range`` (int64 scalar, the number of inputs outside
    their channel's in_range; 0 means every output is proven).  The layer (exact integers and source) is stored in
    the model's metadata (``fxbn.layer``, with ``fxbn.axis``, ``fxbn.rank``, ``fxbn.acc``).

    Parameters
    ----------
    layer : FixedPointBN
    path : str or None
        Where to write the model (written to a temporary file, then renamed); None: only return it.
    axis, rank, in_dtype, acc, range_check
        As in ``layer_nodes``.
    name : str
        The graph's name.

    Returns
    -------
    onnx.ModelProto

    Examples
    --------
    >>> import fxbn, fxbn.onnx
    >>> layer = fxbn.from_affine([0.02, -0.013, 0.5], [1.5, 0.25, -3.0], in_dtype="int16", out_dtype="uint8",
    ...                          relu=True, rounding="half_up")
    >>> model = fxbn.onnx.export_layer(layer, axis=-1, rank=4)           # NHWC
    >>> [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    ['N', 'D1', 'D2', 3]
    """
    from fxbn.api import _require_layer

    _require_layer(layer, "export_layer")
    in_dtype = layer.in_dtype.name if in_dtype is None else np.dtype(in_dtype).name
    a = _normalise_axis(axis, rank)
    sub = layer_nodes(layer, "x", "y", axis=a, rank=rank, in_dtype=in_dtype, acc=acc, range_check=range_check,
                      prefix="")
    dims = ["N" if i == 0 else f"D{i}" for i in range(rank)]
    dims[a] = layer.channels
    inputs = [helper.make_tensor_value_info("x", _ELEM[in_dtype], dims)]
    outputs = [helper.make_tensor_value_info("y", _ELEM[layer.out_dtype.name], dims)]
    if range_check:
        outputs.append(helper.make_tensor_value_info("out_of_range", TensorProto.INT64, []))
    graph = helper.make_graph(sub.nodes, name, inputs, outputs, sub.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fxbn",
                              doc_string="y = clamp(floor((A*x + B) / 2^s), qmin, qmax), exact for every x in "
                                         "in_range (fxbn FixedPointBN)")
    model.ir_version = min(model.ir_version, 8)       # opset 18 needs IR >= 8; keeps older runtimes able to load
    helper.set_model_props(model, {"fxbn.layer": json.dumps(layer.to_dict()), "fxbn.axis": str(a),
                                   "fxbn.rank": str(rank), "fxbn.acc": sub.acc_dtype, "fxbn.in_dtype": in_dtype})
    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        _save_atomic(model, path)
    return model


def _save_atomic(model, path):
    from fxbn import atomic

    atomic.write_file(path, model.SerializeToString())


def model_layer(model):
    """(FixedPointBN, axis, rank) stored in an exported model's metadata, or None if it has none."""
    from fxbn.api import FixedPointBN

    props = {p.key: p.value for p in model.metadata_props}
    if "fxbn.layer" not in props:
        return None
    return FixedPointBN.from_dict(json.loads(props["fxbn.layer"])), int(props["fxbn.axis"]), int(props["fxbn.rank"])


def session(model, optimize=True, threads=1):
    """An onnxruntime CPU InferenceSession of a ModelProto or path, graph optimizations all on or all off."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


def run(model, x, optimize=True, threads=1):
    """Run an exported layer in onnxruntime: returns its outputs (y[, out_of_range]) as NumPy arrays."""
    sess = model if hasattr(model, "run") and hasattr(model, "get_inputs") else session(model, optimize, threads)
    return sess.run(None, {sess.get_inputs()[0].name: x})


def check_inputs(layer, in_dtype=None, budget=1 << 22, samples=4096, seed=0):
    """Per-channel test inputs (a (C, L) int64 array, rows padded by repetition): every value of the channel's range
    (in_range intersected with in_dtype) when all channels' values total at most ``budget``; otherwise both range
    ends and their neighbours, every reference breakpoint and its neighbours (where the output changes: the
    values any wrong division or multiplier shows up at first), 0, and ``samples`` uniform random values.

    Returns
    -------
    (values, exhaustive) : (ndarray of shape (C, L), bool)
    """
    in_dtype = layer.in_dtype.name if in_dtype is None else np.dtype(in_dtype).name
    lo, hi = _effective_range(layer, in_dtype)
    spans = hi - lo + 1
    rows = []
    exhaustive = bool(spans.sum() <= budget)
    if exhaustive:
        rows = [np.arange(a, b + 1, dtype=np.int64) for a, b in zip(lo.tolist(), hi.tolist())]
    else:
        rng = np.random.default_rng(seed)
        d, T = layer.reference_breakpoints("core")
        for c, (a, b) in enumerate(zip(lo.tolist(), hi.tolist())):
            t = np.asarray(T[c], np.int64) * (1 if d[c] >= 0 else -1)
            vals = np.concatenate([[a, a + 1, a + 2, b - 2, b - 1, b, 0], t - 1, t, t + 1,
                                   rng.integers(a, b, samples, endpoint=True)])
            rows.append(np.unique(vals[(vals >= a) & (vals <= b)]))
    width = max(len(r) for r in rows)
    out = np.empty((len(rows), width), np.int64)
    for c, r in enumerate(rows):
        out[c] = np.resize(r, width)
    return out, exhaustive


def _arrange(values, axis, rank):
    """(C, L) values -> an array of the given rank with channels on ``axis`` and L on another axis."""
    C, L = values.shape
    other = 0 if axis != 0 else rank - 1
    if rank == 1:
        raise ValueError("rank 1 holds only the channel axis: test inputs need rank >= 2")
    shape = [1] * rank
    shape[axis], shape[other] = C, L
    return np.ascontiguousarray(np.moveaxis(values.T.reshape([L, C] + [1] * (rank - 2)), [0, 1], [other, axis])
                                .reshape(shape))


def check_layer(model, layer, *, axis=None, rank=None, in_dtype=None, budget=1 << 22, samples=4096, seed=0,
                optimize=(True, False), threads=1):
    """Run an exported layer in onnxruntime against ``FixedPointBN.apply`` on ``check_inputs``' values.

    Returns
    -------
    dict
        ``inputs`` (values per run), ``exhaustive``, ``acc``, and per optimization setting (``"ORT_ENABLE_ALL"`` /
        ``"ORT_DISABLE_ALL"``): ``mismatches`` (outputs differing in value or dtype), ``out_of_range`` (the model's
        count; must be 0), ``first`` (channel, x, onnx y, fxbn y of the first mismatch, or None).
    """
    if isinstance(model, str):
        model = onnx.load(model)
    stored = model_layer(model)
    if axis is None or rank is None:
        if stored is None:
            raise ValueError("the model has no fxbn metadata: give axis and rank")
        axis = stored[1] if axis is None else axis
        rank = stored[2] if rank is None else rank
    props = {p.key: p.value for p in model.metadata_props}
    in_dtype = in_dtype or props.get("fxbn.in_dtype") or layer.in_dtype.name
    a = _normalise_axis(axis, rank)
    values, exhaustive = check_inputs(layer, in_dtype, budget, samples, seed)
    x = _arrange(values.astype(np.dtype(in_dtype)), a, rank)
    expected = layer.apply(x, axis=a)
    res = {"inputs": int(values.size), "exhaustive": exhaustive, "acc": props.get("fxbn.acc")}
    for opt in optimize:
        outs = run(model, x, optimize=opt, threads=threads)
        y = outs[0]
        bad = (y != expected) if y.shape == expected.shape else np.ones(expected.shape, bool)
        n_bad = int(bad.sum()) if y.dtype == expected.dtype else int(expected.size)
        first = None
        if n_bad and y.shape == expected.shape:
            idx = np.unravel_index(int(np.flatnonzero(bad)[0]), x.shape)
            first = {"channel": int(idx[a]), "x": int(x[idx]), "onnx": int(y[idx]), "fxbn": int(expected[idx])}
        res["ORT_ENABLE_ALL" if opt else "ORT_DISABLE_ALL"] = {
            "mismatches": n_bad, "out_of_range": int(outs[1]) if len(outs) > 1 else None, "first": first,
            "dtype": str(y.dtype)}
    return res
