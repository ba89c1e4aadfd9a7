"""A quantized :class:`fxbn.network.Graph` as an integer-only ONNX model (``export_network``), and its float network as
a plain float ONNX model (``export_float``, for peers such as onnxruntime's quantize_static).

``export_network`` uses the graph read-only: the integer parameters (``graph.q``) of a calibrated and quantized graph
become an ONNX graph (opset ``fxbn.onnx.OPSET``, default domain only) from the uint8 pixels (N, H, W, 3) to the exact
int64 outputs, op for op the semantics of ``Graph.forward_int``.  Inside, tensors are NCHW and every quantized
activation q (int8 or uint8, zero point z) is held as the uint8 u = q + o (o = 128 for int8, 0 for uint8), so that
ONNX's ConvInteger (uint8 activations x int8 weights, activation zero point z + o) computes the exact accumulator
sum(w_q * (q - z)) of ``conv_int``:

- ``input``: Transpose to NCHW, then the exact per-channel FixedPointBN of the pixels (as ``bn`` below);
- ``conv`` (plain, depthwise as ``group = C``, Keras bias folded into the BN by ``Graph.quantize``): Pad with the
  zero point u, ConvInteger, int32 accumulator; proven to fit: the graph's term bound sum|w_q| * max|q - z| < 2^31;
- ``bn``: the FixedPointBN u = clamp(floor((A*x + B) / 2^s), qmin, qmax) + o on the accumulator as Mul A,
  Add (B + o*2^s), Div 2^s, Clip(qmin + o, qmax + o), Cast uint8 (``_div_clamp``: the offset makes the clamp's lower
  end >= 0, where truncating Div and floor agree after the clamp -- no Mod needed); int32 arithmetic where every
  intermediate over the layer's in_range (the exact accumulator bound) is proven to fit (``_bn_acc_type``), else
  int64; ReLU/ReLU6 are in the clamp; LeakyReLU: Max of the two layers' clamped values (exact: see fxbn.network);
- ``add``: the exact fxbn.FixedPointAdd: A1*u1 + A2*u2 + (B - o1*A1 - o2*A2 + o*2^shift), Div 2^shift, Clip, Cast;
  int32 when every intermediate over the input box (corners: it is affine) and 2^shift fit, else int64 (checked);
- ``avgpool``: Cast int32, Sub o, Pad (the zero point when padding counts, else 0), kh*kw strided Slices added:
  the exact window sums; then each position's exact from_avgpool layer as the ``bn`` chain (per-position
  multiplier, bias and divisor when border windows hold fewer inputs: ``_avgpool_nodes``);
- ``maxpool``: Pad with qmin + o, MaxPool (uint8); ``shortcut_a``: strided Slice, channel Pad with the zero point;
- ``gap``: ReduceSum of (u - z - o) (int32: H*W*255 < 2^31); of a logits conv: int64 ReduceSum of its logits;
- ``dense``: integer MatMul (int32 if sum|pooled|*|w| is proven < 2^31, else int64) + the integer bias;
- logits conv (Darknet): ConvInteger + Cast int64 + the integer bias per class.

The model's output ``logits`` is int64: the classifier's exact logits (N, K), or for a feature extractor (MobileNet
without top) the centred last activation q - z as (N, H, W, C), exactly ``Graph.forward_int(..)[0]``.
"""
import json

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import fxbn.onnx as fo
from fxbn.network import _bias_units

_ELEM = {"int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "int16": TensorProto.INT16,
         "int32": TensorProto.INT32, "int64": TensorProto.INT64}
_INT32 = 2 ** 31


class _Builder:
    def __init__(self, nhwc=False):
        self.nodes, self.inits = [], []
        self.nhwc = nhwc
        self.ch_shape = (-1,) if nhwc else (-1, 1, 1)          # per-channel constants
        self.spatial = [1, 2] if nhwc else [2, 3]

    def pads(self, t, bt, l, r):
        return [0, t, l, 0, 0, bt, r, 0] if self.nhwc else [0, 0, t, l, 0, 0, bt, r]

    def channel_pads(self, extra):
        return [0, 0, 0, extra, 0, 0, 0, extra] if self.nhwc else [0, extra, 0, 0, 0, extra, 0, 0]

    def const(self, name, value, dtype):
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def node(self, op, inputs, output, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


def _reserved(graph, names):
    for node in graph.nodes:
        if node.name in names or node.name.split("/")[0] in names:
            raise ValueError(f"node {node.name}: the names {', '.join(names)} (and '<name>/...') are the model's "
                             "inputs/outputs; rename the node")


def _offset(act):
    """o with u = q + o a uint8 for the activation's dtype."""
    name = np.dtype(act.dtype).name
    if name not in ("int8", "uint8"):
        raise ValueError(f"activation dtype {name}: only int8 and uint8 activations are exported")
    return 128 if name == "int8" else 0


def _fits32(*values):
    return all(-_INT32 <= int(v) < _INT32 for v in values)


def _add_acc_type(layer, offsets, out_off, p):
    """int32 or int64 for the add, and its bias B' = B - o1*A1 - o2*A2 + o*2^s (u_i = q_i + o_i in, u = y + o out):
    every intermediate A1*u1, A2*u2, their sum, + B', and 2^s, at the corners of the u box (all affine in (u1, u2),
    so the corners bound them)."""
    (a1, a2), s = layer.multipliers, layer.shift
    bias = layer.bias - offsets[0] * a1 - offsets[1] * a2 + (out_off << s)
    (l1, h1), (l2, h2) = layer.in_ranges
    vals = [bias, 1 << s]
    for u1 in (l1 + offsets[0], h1 + offsets[0]):
        for u2 in (l2 + offsets[1], h2 + offsets[1]):
            t1, t2 = a1 * u1, a2 * u2
            acc = t1 + t2 + bias
            vals += [t1, t2, t1 + t2, acc]
    if _fits32(*vals) and s <= 30:
        return np.int32, bias
    if not all(-2 ** 63 <= v < 2 ** 63 for v in vals):
        raise ValueError(f"node {p}: the add's accumulator does not fit int64")
    return np.int64, bias


def _bn_acc_type(layer, o, p, in_dtype="int32"):
    """int32 or int64 for ``_bn_nodes``: per channel A, A*lo, A*hi, A*lo + B', A*hi + B', B' = B + o*2^s and 2^s
    (A*x + B' is affine in x, so the ends of [lo, hi] bound it; lo/hi: in_range within in_dtype)."""
    lo, hi = fo._effective_range(layer, in_dtype)
    wide = False
    for A, B, s, a, b in zip(layer.multiplier.tolist(), layer.bias.tolist(), layer.shift.tolist(), lo.tolist(),
                             hi.tolist()):
        bias = B + (o << s)
        vals = [A, A * a, A * b, A * a + bias, A * b + bias, bias, 1 << s]
        if not all(-2 ** 63 <= v < 2 ** 63 for v in vals) or s > 62:
            raise ValueError(f"node {p}: channel accumulator does not fit int64")
        wide = wide or s > 30 or not _fits32(*vals)
    return np.int64 if wide else np.int32


def _div_clamp(b, t, shifts, lo, hi, p, acc, shape=()):
    """clamp(floor(t / 2^s), lo, hi) as Clip(Div(t, 2^s), lo, hi) for 0 <= lo <= hi: exact without a Mod.

    On t >= 0 the truncating Div is floor.  On t < 0 both trunc(t / 2^s) <= 0 and floor(t / 2^s) <= -1 lie at or
    below lo >= 0, so both clamp to lo.  (With lo < 0 the two differ: callers fold an offset o*2^s into t so that the
    clamp's lower end qmin + o is >= 0.)  ``verify.lemmas.onnx_div_clip`` proves it in QF_BV for every int32/int64 t
    and s <= w - 2 and refutes lo = -1; tests/test_onnx_nets.py also checks it exhaustively on small widths.
    """
    if lo < 0:
        raise ValueError(f"node {p}: the Div/Clip floor division needs a clamp lower end >= 0, got {lo}")
    if any(int(x) for x in np.ravel(shifts)):
        t = b.node("Div", [t, b.const(p + "/divisor", np.reshape([1 << int(x) for x in np.ravel(shifts)], shape),
                                      acc)], p + "/q")
    return b.node("Clip", [t, b.const(p + "/qmin", lo, acc), b.const(p + "/qmax", hi, acc)], p + "/clipped")


def _bn_nodes(b, layer, x, p, o, acc, in_dtype="int32"):
    """u = clamp(floor((A*x + B) / 2^s), qmin, qmax) + o as Mul A, Add (B + o*2^s), Div 2^s, Clip(qmin + o, qmax + o)
    in ``acc`` (int32/int64, proven by ``_bn_acc_type``); returns the clamped tensor.

    floor((A*x + B + o*2^s) / 2^s) = floor((A*x + B) / 2^s) + o, and qmin + o >= 0 (u is a uint8): ``_div_clamp``.
    """
    shape = b.ch_shape
    qmin, qmax = layer.out_range
    if qmin + o < 0 or qmax + o > 255:
        raise ValueError(f"node {p}: out_range {layer.out_range} + {o} is not a uint8 range")
    bias = [B + (o << s) for B, s in zip(layer.bias.tolist(), layer.shift.tolist())]
    if np.dtype(acc) != np.dtype(in_dtype):
        x = b.node("Cast", [x], p + "/wide", to=_ELEM[np.dtype(acc).name])
    t = b.node("Mul", [x, b.const(p + "/multiplier", np.reshape(layer.multiplier, shape), acc)], p + "/ax")
    t = b.node("Add", [t, b.const(p + "/bias", np.reshape(bias, shape), acc)], p + "/acc")
    return _div_clamp(b, t, layer.shift, qmin + o, qmax + o, p, acc, shape)


def _conv_taps(b, x, w_q, zp, zu, s, ho, wo, depthwise, p, out):
    """NHWC convolution of the (padded) uint8 x: per kernel tap a strided Slice and MatMulInteger (uint8 x int8,
    zero point zu, int32), summed by int32 Add -- the exact sum(w_q * (u - zu)) whose bound < 2^31 the caller
    checked.  Depthwise: x - zu once in int32, then per tap Slice and Mul by w_q[i, j] (C,), summed."""
    kh, kw = w_q.shape[:2]
    if depthwise:
        x = b.node("Cast", [x], p + "/wide", to=TensorProto.INT32)
        x = b.node("Sub", [x, b.const(p + "/zero_point32", zu, np.int32)], p + "/centred")
    terms = []
    for i in range(kh):
        for j in range(kw):
            tap = f"{p}/tap{i}{j}"
            xs = x
            if (i, j) != (0, 0) or s != 1 or kh * kw > 1:
                xs = b.node("Slice", [x, b.const(tap + "/starts", [i, j], np.int64),
                                      b.const(tap + "/ends", [i + s * (ho - 1) + 1, j + s * (wo - 1) + 1],
                                              np.int64), b.const(tap + "/axes", [1, 2], np.int64),
                                      b.const(tap + "/steps", [s, s], np.int64)], tap + "/x")
            if depthwise:
                terms.append(b.node("Mul", [xs, b.const(tap + "/w", w_q[i, j], np.int32)], tap + "/acc"))
            else:
                terms.append(b.node("MatMulInteger", [xs, b.const(tap + "/w", w_q[i, j], np.int8), zp],
                                    tap + "/acc"))
    total = terms[0]
    for k, t in enumerate(terms[1:], start=1):
        total = b.node("Add", [total, t], f"{p}/sum{k}")
    last = b.nodes[-1]
    assert last.output[0] == total
    last.output[0] = last.name = out
    return out


def _requant(b, layers, src, p, out_off, in_dtype="int32"):
    """The BN node: FixedPointBN layer(s) on the int32 NCHW accumulator ``src`` -> uint8 u = y + out_off."""
    acc = max((_bn_acc_type(layer, out_off, p, in_dtype) for layer in layers), key=lambda t: np.dtype(t).itemsize)
    clipped = [_bn_nodes(b, layer, src, p if len(layers) == 1 else f"{p}/l{k}", out_off, acc, in_dtype)
               for k, layer in enumerate(layers)]
    y = clipped[0] if len(clipped) == 1 else b.node("Max", clipped, p + "/leaky_max")
    return b.node("Cast", [y], p, to=TensorProto.UINT8)


def _avgpool_nodes(b, graph, node, shape, act_in):
    """Local average pooling: exact int32 window sums, then each position's exact from_avgpool layer.

    q = u - o as int32; Pad with the zero point (count_include_pad: padding adds the real value 0) or with 0 (else);
    the window sum S as kh*kw strided Slices added in int32 (|S| <= kh*kw*max|q| < 2^31, checked by
    ``Graph.quantize``).  Then the layer of each position's window size N: one window size (counting the padding, or
    no padding) is the ``bn`` chain of that layer; several (border windows hold fewer inputs) are the same chain with
    per-position constants (1, ho, wo, 1) -- multiplier A_N, bias B_N + o*2^s_N, divisor 2^s_N -- elementwise the
    chain of the layer of that position's N, all layers sharing one clamp (checked), so ``_div_clamp`` holds at
    each position.  Returns the output shape (C, ho, wo).
    """
    from fxbn.network import avgpool_counts

    a, q, p = node.attrs, graph.q[node.name], node.name
    zu, o_in, _, act = act_in
    c, h, w = shape
    (kh, kw), (sh, sw), (t, bt, l, r) = a["kernel"], a["stride"], a["pad"]
    cip = a["count_include_pad"]
    counts = avgpool_counts(h, w, a["kernel"], a["stride"], a["pad"])
    ho, wo = counts.shape
    if kh * kw * 255 >= _INT32:
        raise ValueError(f"node {p}: a {kh}x{kw} window sum may not fit int32")
    x = b.node("Cast", [node.src[0]], p + "/wide", to=TensorProto.INT32)
    if o_in:
        x = b.node("Sub", [x, b.const(p + "/offset", o_in, np.int32)], p + "/unoffset")
    if any(a["pad"]):
        x = b.node("Pad", [x, b.const(p + "/pads", b.pads(t, bt, l, r), np.int64),
                           b.const(p + "/pad_value", act.zero_point if cip else 0, np.int32)], p + "/padded")
    terms = []
    for i in range(kh):
        for j in range(kw):
            tap = f"{p}/tap{i}{j}"
            terms.append(b.node("Slice", [x, b.const(tap + "/starts", [i, j], np.int64),
                                          b.const(tap + "/ends", [i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1],
                                                  np.int64), b.const(tap + "/axes", b.spatial, np.int64),
                                          b.const(tap + "/steps", [sh, sw], np.int64)], tap + "/x"))
    total = terms[0]
    for k, term in enumerate(terms[1:], start=1):
        total = b.node("Add", [total, term], f"{p}/sum{k}")
    layers = {layer.op["window"]: layer for layer in q["layers"]}
    if cip:
        counts = np.full_like(counts, kh * kw)
    sizes = np.unique(counts).tolist()
    missing = [n for n in sizes if n not in layers]
    if missing:
        raise ValueError(f"node {p}: no layer for the window size(s) {missing}")
    o = _offset(q["act"])
    if len(sizes) == 1:
        _requant(b, [layers[sizes[0]]], total, p, o)
        return c, ho, wo
    used = [layers[n] for n in sizes]
    if len({layer.out_range for layer in used}) != 1:
        raise ValueError(f"node {p}: the window sizes' layers clamp to different ranges "
                         f"{sorted({layer.out_range for layer in used})}")
    qmin, qmax = used[0].out_range
    if qmin + o < 0 or qmax + o > 255:
        raise ValueError(f"node {p}: out_range {used[0].out_range} + {o} is not a uint8 range")
    acc = max((_bn_acc_type(layer, o, p) for layer in used), key=lambda d: np.dtype(d).itemsize)
    pos = (1, ho, wo, 1) if b.nhwc else (1, 1, ho, wo)
    mult = np.vectorize(lambda n: int(layers[n].multiplier[0]), otypes=[object])(counts)
    shift = np.vectorize(lambda n: int(layers[n].shift[0]), otypes=[object])(counts)
    bias = np.vectorize(lambda n: int(layers[n].bias[0]) + (o << int(layers[n].shift[0])), otypes=[object])(counts)
    if np.dtype(acc) != np.int32:
        total = b.node("Cast", [total], p + "/sum_wide", to=_ELEM[np.dtype(acc).name])
    y = b.node("Mul", [total, b.const(p + "/multiplier", mult.astype(np.int64).reshape(pos), acc)], p + "/ax")
    y = b.node("Add", [y, b.const(p + "/bias", bias.astype(np.int64).reshape(pos), acc)], p + "/acc")
    y = _div_clamp(b, y, shift, qmin + o, qmax + o, p, acc, pos)
    b.node("Cast", [y], p, to=TensorProto.UINT8)
    return c, ho, wo


def export_network(graph, size, path=None, name="fxbn_int_net", conv="matmul"):
    """ONNX model of a quantized fxbn.network.Graph for (N, size, size, 3) uint8 pixels; output ``logits`` int64.

    Parameters
    ----------
    graph : fxbn.network.Graph
        Calibrated and quantized (``graph.q``).
    size : int
        Input height and width.
    conv : {"matmul", "convinteger"}
        "matmul" (default, the faster in onnxruntime 1.32): NHWC tensors, each convolution as Pad + one strided
        Slice and MatMulInteger (uint8 x int8) per kernel tap, int32 Add (depthwise: int32 Mul per tap);
        "convinteger": NCHW tensors, one ConvInteger per convolution (group = C for depthwise).
    path : str, optional
        Where to write the model (atomically).
    name : str
        The ONNX graph's name.

    Returns
    -------
    onnx.ModelProto
        Checked by onnx.checker (full_check).  Metadata ``fxbn.logit_unit``: the real value of one logit step
        (per class; a scalar for a feature extractor).

    Raises
    ------
    ValueError
        Naming the node for anything not exportable exactly (an accumulator whose proven bound exceeds its type,
        activation dtypes other than int8/uint8, unknown ops).
    """
    _reserved(graph, ("pixels", "logits", "output"))
    if conv not in ("matmul", "convinteger"):
        raise ValueError(f"conv must be 'matmul' or 'convinteger', got {conv!r}")
    b = _Builder(nhwc=conv == "matmul")
    shapes = {}
    unit = None
    u_zp = {}                                   # node -> (u zero point z + o, o, qmin + o) of its activation

    def act_u(src):
        if src not in u_zp:
            act = graph.act_of(src)
            o = _offset(act)
            u_zp[src] = (act.zero_point + o, o, act.qmin + o, act)
        return u_zp[src]

    consumers = {}
    for node in graph.nodes:
        for s in node.src:
            consumers.setdefault(s, []).append(node)

    for node in graph.nodes:
        a, q, p = node.attrs, graph.q.get(node.name, {}), node.name
        if node.op == "input":
            x = "pixels" if b.nhwc else b.node("Transpose", ["pixels"], p + "/nchw", perm=[0, 3, 1, 2])
            _requant(b, [q["layer"]], x, p, _offset(q["act"]), in_dtype="uint8")
            shapes[p] = (3, size, size)
        elif node.op == "conv":
            src = node.src[0]
            zu, _, _, act = act_u(src)
            c, h, w = shapes[src]
            t, bt, l, r = a["pad"]
            s = a["stride"]
            if a.get("logits"):
                if "w_q" in q:
                    w_q, w_scale = q["w_q"], q["w_scale"]
                else:                           # Graph._logits_conv quantizes lazily: the same call, not stored
                    from fxbn import importers
                    w_q, w_scale = importers.quantize_weights(a["w"], axis=3)
                bound = int(np.abs(w_q.astype(np.int64)).reshape(-1, w_q.shape[-1]).sum(axis=0).max()) \
                    * max(abs(act.qmin - act.zero_point), abs(act.qmax - act.zero_point))
            else:
                w_q, bound = q["w_q"], q["term_bound"]
            if bound >= _INT32:
                raise ValueError(f"node {p}: accumulator bound {bound} does not fit ConvInteger's int32")
            depthwise = bool(a.get("depthwise"))
            if depthwise:
                kh, kw, cout = w_q.shape
                w_oihw = np.transpose(w_q, (2, 0, 1))[:, None, :, :]
            else:
                kh, kw, _, cout = w_q.shape
                w_oihw = np.transpose(w_q, (3, 2, 0, 1))
            zp = b.const(p + "/zero_point", zu, np.uint8)
            x = src
            if any(a["pad"]):
                x = b.node("Pad", [src, b.const(p + "/pads", b.pads(t, bt, l, r), np.int64), zp], p + "/padded")
            ho, wo = (h + t + bt - kh) // s + 1, (w + l + r - kw) // s + 1
            out = p if not a.get("logits") else p + "/acc"
            if b.nhwc:
                _conv_taps(b, x, w_q, zp, zu, s, ho, wo, depthwise, p, out)
            else:
                b.node("ConvInteger", [x, b.const(p + "/w", np.ascontiguousarray(w_oihw), np.int8), zp], out,
                       strides=[s, s], group=cout if depthwise else 1, kernel_shape=[kh, kw])
            if a.get("logits"):
                unit = act.scale * np.asarray(w_scale, np.float64)
                bias_q = _bias_units(node.name, a["bias"], unit)
                wide = b.node("Cast", [out], p + "/wide", to=TensorProto.INT64)
                b.node("Add", [wide, b.const(p + "/bias", bias_q.reshape(b.ch_shape), np.int64)], p)
            shapes[p] = (cout, ho, wo)
        elif node.op == "bn":
            o = _offset(q["act"])
            _requant(b, q["layers"], node.src[0], p, o)
            shapes[p] = shapes[node.src[0]]
        elif node.op == "add":
            layer = q["layer"]
            offs = [act_u(s_)[1] for s_ in node.src]
            o = _offset(q["act"])
            dtype, bias = _add_acc_type(layer, offs, o, p)
            elem = _ELEM[np.dtype(dtype).name]
            terms = []
            for k, (src, m) in enumerate(zip(node.src, layer.multipliers)):
                c_ = b.node("Cast", [src], f"{p}/in{k}", to=elem)
                terms.append(b.node("Mul", [c_, b.const(f"{p}/m{k}", m, dtype)], f"{p}/scaled{k}"))
            acc = b.node("Add", terms, p + "/acc")
            acc = b.node("Add", [acc, b.const(p + "/bias", bias, dtype)], p + "/biased")
            lo, hi = layer.out_range
            y = _div_clamp(b, acc, [layer.shift], lo + o, hi + o, p, dtype)
            b.node("Cast", [y], p, to=TensorProto.UINT8)
            shapes[p] = shapes[node.src[0]]
        elif node.op == "maxpool":
            src = node.src[0]
            _, _, qmin_u, _ = act_u(src)
            c, h, w = shapes[src]
            t, bt, l, r = a["pad"]
            k, s = a["k"], a["stride"]
            x = src
            if any(a["pad"]):
                x = b.node("Pad", [src, b.const(p + "/pads", b.pads(t, bt, l, r), np.int64),
                                   b.const(p + "/pad_value", qmin_u, np.uint8)], p + "/padded")
            if b.nhwc:                                  # ONNX MaxPool is NCHW
                x = b.node("Transpose", [x], p + "/nchw", perm=[0, 3, 1, 2])
                y = b.node("MaxPool", [x], p + "/pooled", kernel_shape=[k, k], strides=[s, s])
                b.node("Transpose", [y], p, perm=[0, 2, 3, 1])
            else:
                b.node("MaxPool", [x], p, kernel_shape=[k, k], strides=[s, s])
            shapes[p] = (c, (h + t + bt - k) // s + 1, (w + l + r - k) // s + 1)
        elif node.op == "avgpool":
            shapes[p] = _avgpool_nodes(b, graph, node, shapes[node.src[0]], act_u(node.src[0]))
        elif node.op == "shortcut_a":
            src = node.src[0]
            c, h, w = shapes[src]
            extra = (a["out_channels"] - c) // 2
            sl = b.node("Slice", [src, b.const(p + "/starts", [0, 0], np.int64),
                                  b.const(p + "/ends", [h, w], np.int64), b.const(p + "/axes", b.spatial, np.int64),
                                  b.const(p + "/steps", [2, 2], np.int64)], p + "/strided")
            zp = b.const(p + "/zero_point", act_u(src)[0], np.uint8)
            b.node("Pad", [sl, b.const(p + "/pads", b.channel_pads(extra), np.int64), zp], p)
            shapes[p] = (a["out_channels"], (h + 1) // 2, (w + 1) // 2)
        elif node.op == "gap":
            src = node.src[0]
            c, h, w = shapes[src]
            prev = graph.by_name[src]
            axes = b.const(p + "/axes", b.spatial, np.int64)
            if prev.op == "conv" and prev.attrs.get("logits"):
                b.node("ReduceSum", [src, axes], p, keepdims=0)                 # int64 logits
                unit = unit / (h * w)
            else:
                zu = act_u(src)[0]
                # int32: |u - zu| <= 255 per element, h*w*255 < 2^31 for any image this size
                if h * w * 255 >= _INT32:
                    raise ValueError(f"node {p}: a {h}x{w} pooling sum may not fit int32")
                c_ = b.node("Cast", [src], p + "/wide", to=TensorProto.INT32)
                c_ = b.node("Sub", [c_, b.const(p + "/z", zu, np.int32)], p + "/centred")
                b.node("ReduceSum", [c_, axes], p, keepdims=0)
            shapes[p] = (c,)
        elif node.op == "dense":
            src = node.src[0]
            pool_src = graph.by_name[src].src[0]
            _, h, w = shapes[pool_src]
            act = graph.act_of(pool_src)
            unit = act.scale / (h * w) * np.asarray(q["w_scale"], np.float64)
            bias_q = _bias_units(node.name, a["bias"], unit)
            w_q = q["w_q"].astype(np.int64)
            pooled_bound = h * w * max(abs(act.qmin - act.zero_point), abs(act.qmax - act.zero_point))
            bound = pooled_bound * int(np.abs(w_q).sum(axis=0).max())
            if bound < _INT32:
                mm = b.node("MatMul", [src, b.const(p + "/w", w_q, np.int32)], p + "/matmul32")
                mm = b.node("Cast", [mm], p + "/matmul", to=TensorProto.INT64)
            else:
                x = b.node("Cast", [src], p + "/wide", to=TensorProto.INT64)
                mm = b.node("MatMul", [x, b.const(p + "/w", w_q, np.int64)], p + "/matmul")
            b.node("Add", [mm, b.const(p + "/bias", bias_q, np.int64)], p)
            shapes[p] = (w_q.shape[1],)
        else:
            raise ValueError(f"node {p}: op {node.op!r} is not exported")
    out = graph.output
    out_node = graph.by_name[out]
    if out_node.op in ("dense", "gap"):
        if out_node.op == "gap" and unit is None:
            raise ValueError(f"node {out}: a pooled activation as the output is not exported")
        b.nodes.append(helper.make_node("Identity", [out], ["logits"], name="logits"))
        out_shape = ["N", shapes[out][0]]
    else:                                       # a feature extractor: the centred activation, NHWC
        zu, _, _, act = act_u(out)
        c_ = b.node("Cast", [out], "output/wide", to=TensorProto.INT64)
        c_ = b.node("Sub", [c_, b.const("output/z", zu, np.int64)], "output/centred")
        if b.nhwc:
            b.node("Identity", [c_], "logits")
        else:
            b.node("Transpose", [c_], "logits", perm=[0, 2, 3, 1])
        c, h, w = shapes[out]
        out_shape = ["N", h, w, c]
        unit = np.float64(act.scale)
    g = helper.make_graph(b.nodes, name, [helper.make_tensor_value_info("pixels", TensorProto.UINT8,
                                                                       ["N", size, size, 3])],
                          [helper.make_tensor_value_info("logits", TensorProto.INT64, out_shape)], b.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", fo.OPSET)], producer_name="fxbn",
                              doc_string="fxbn integer network: uint8 pixels -> exact int64 outputs (every "
                                         "rescaling an exact fixed-point layer)")
    model.ir_version = min(model.ir_version, 8)
    helper.set_model_props(model, {"fxbn.logit_unit": json.dumps(np.atleast_1d(unit).astype(float).tolist())})
    import onnx

    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        fo._save_atomic(model, path)
    return model


def logit_unit(model):
    """The real value of one step of each output (metadata ``fxbn.logit_unit``), as a float64 array."""
    props = {p.key: p.value for p in model.metadata_props}
    return np.asarray(json.loads(props["fxbn.logit_unit"]), np.float64)


def export_float(graph, size, path=None, name="fxbn_float_net"):
    """The graph's float network (its float parameters, BN folded into the conv in float64) as a float32 ONNX model.

    For peers (e.g. onnxruntime.quantization.quantize_static): input ``image`` float32 (N, 3, size, size), the
    normalised image ``graph.normalise(pixels)`` in NCHW; output ``output``: ``Graph.forward_float``'s output (the
    classifier's logits, or the last activation as NHWC).  Standard ops only (Conv, Relu, Clip, LeakyRelu, Add,
    AveragePool, MaxPool, Slice, Pad, GlobalAveragePool, Flatten, Gemm, Transpose); opset ``fxbn.onnx.OPSET``.
    """
    _reserved(graph, ("image", "output"))
    b = _Builder()
    f32 = np.float32
    shapes = {}
    for node in graph.nodes:
        a, p = node.attrs, node.name
        if node.op == "input":
            b.node("Identity", ["image"], p)
            shapes[p] = 3
        elif node.op == "conv":
            w = np.asarray(a["w"], np.float64)
            depthwise = bool(a.get("depthwise"))
            w_oihw = np.transpose(w, (2, 0, 1))[:, None] if depthwise else np.transpose(w, (3, 2, 0, 1))
            bias = np.zeros(w_oihw.shape[0]) if a.get("bias") is None else np.asarray(a["bias"], np.float64)
            bn_node = next((n for n in graph.nodes if n.op == "bn" and n.src[0] == p), None)
            out = p
            if bn_node is not None:             # fold the BN: W * g / sqrt(v + eps), (bias - mean) * ... + beta
                bn = bn_node.attrs["bn"]
                inv = np.asarray(bn.gamma, np.float64) / np.sqrt(np.asarray(bn.var, np.float64) + bn.eps)
                w_oihw = w_oihw * inv.reshape(-1, 1, 1, 1)
                bias = (bias - np.asarray(bn.mean, np.float64)) * inv + np.asarray(bn.beta, np.float64)
                out = bn_node.name + "/linear"
            t, bt, l, r = a["pad"]
            b.node("Conv", [node.src[0], b.const(p + "/w", w_oihw, f32), b.const(p + "/b", bias, f32)], out,
                   strides=[a["stride"]] * 2, pads=[t, l, bt, r], group=w_oihw.shape[0] if depthwise else 1,
                   kernel_shape=list(w_oihw.shape[2:]))
            shapes[p] = w_oihw.shape[0]
        elif node.op == "bn":
            x, act = p + "/linear", a["act"]
            if act is None:
                b.node("Identity", [x], p)
            elif act == "relu":
                b.node("Relu", [x], p)
            elif act == "relu6":
                b.node("Clip", [x, b.const(p + "/lo", 0, f32), b.const(p + "/hi", 6, f32)], p)
            else:
                b.node("LeakyRelu", [x], p, alpha=float(np.float32(act[1])))
            shapes[p] = shapes[node.src[0]]
        elif node.op == "add":
            if a.get("relu"):
                b.node("Relu", [b.node("Add", list(node.src), p + "/sum")], p)
            else:
                b.node("Add", list(node.src), p)
            shapes[p] = shapes[node.src[0]]
        elif node.op == "maxpool":
            t, bt, l, r = a["pad"]
            b.node("MaxPool", [node.src[0]], p, kernel_shape=[a["k"]] * 2, strides=[a["stride"]] * 2,
                   pads=[t, l, bt, r])
            shapes[p] = shapes[node.src[0]]
        elif node.op == "avgpool":
            t, bt, l, r = a["pad"]
            b.node("AveragePool", [node.src[0]], p, kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                   pads=[t, l, bt, r], count_include_pad=int(a["count_include_pad"]))
            shapes[p] = shapes[node.src[0]]
        elif node.op == "shortcut_a":
            src = node.src[0]
            extra = (a["out_channels"] - shapes[src]) // 2
            big = np.iinfo(np.int64).max
            sl = b.node("Slice", [src, b.const(p + "/starts", [0, 0], np.int64), b.const(p + "/ends", [big, big],
                                                                                          np.int64),
                                  b.const(p + "/axes", [2, 3], np.int64), b.const(p + "/steps", [2, 2], np.int64)],
                        p + "/strided")
            b.node("Pad", [sl, b.const(p + "/pads", [0, extra, 0, 0, 0, extra, 0, 0], np.int64)], p)
            shapes[p] = a["out_channels"]
        elif node.op == "gap":
            b.node("Flatten", [b.node("GlobalAveragePool", [node.src[0]], p + "/pooled")], p)
            shapes[p] = shapes[node.src[0]]
        elif node.op == "dense":
            b.node("Gemm", [node.src[0], b.const(p + "/w", a["w"], f32), b.const(p + "/b", a["bias"], f32)], p)
            shapes[p] = np.shape(a["w"])[1]
        else:
            raise ValueError(f"node {p}: op {node.op!r} is not exported")
    out = graph.output
    if graph.by_name[out].op in ("dense", "gap"):
        b.node("Identity", [out], "output")
        out_shape = ["N", shapes[out]]
    else:
        b.node("Transpose", [out], "output", perm=[0, 2, 3, 1])
        out_shape = ["N", "H", "W", shapes[out]]
    g = helper.make_graph(b.nodes, name, [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                       ["N", 3, size, size])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)], b.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", fo.OPSET)], producer_name="fxbn")
    model.ir_version = min(model.ir_version, 8)
    import onnx

    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        fo._save_atomic(model, path)
    return model
