"""A quantized :class:`fxbn.network.Graph` as an integer-only ONNX model (``export_network``).

Uses the graph read-only: the integer parameters (``graph.q``) of a calibrated and quantized graph become an NHWC ONNX
graph from the uint8 pixels to the exact int64 logits, op for op the semantics of ``Graph.forward_int``:

- ``input``: the exact per-channel FixedPointBN of the pixels (fxbn.onnx.layer_nodes, uint8 in);
- ``conv``: Pad with the input's zero point, then one Slice + MatMulInteger (int8 x int8 with the activation's zero
  point, int32 accumulation) per kernel tap, summed with int32 Add: the exact accumulator sum(w_q * (a - z)) of
  ``conv_int``, which stays within int32 (checked: the weights' term bound < 2^31);
- ``bn``: fxbn.onnx.layer_nodes on the int32 accumulator (in_range: the exact accumulator bound, so no range check);
- ``add``: the exact fxbn.FixedPointAdd in int64 -- A1*q1 + A2*q2 + B, the exact floor division by 2^shift of
  fxbn.onnx (Mod fmod=0, Sub, Div), Clip, Cast (|A_i*q_i + B| < 2^63: accumulator_bits <= 64 is checked);
- ``shortcut_a``: strided Slice and a channel Pad with the zero point; ``gap``: int64 ReduceSum of (a - z);
- ``dense``: int64 Mul + ReduceSum (exact integer matmul) + the integer bias.

Only ResNet-style graphs (no depthwise, leaky, maxpool or logits conv) are covered.
"""
import json

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import fxbn.onnx as fo

_ELEM = {"int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "int16": TensorProto.INT16}


class _Builder:
    def __init__(self):
        self.nodes, self.inits = [], []

    def const(self, name, value, dtype):
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def node(self, op, inputs, output, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


def _floor_div_pow2(b, x, shift, p):
    """int64 floor(x / 2^shift): the Mod(fmod=0)/Sub/Div chain (verify.lemmas.onnx_floor_div)."""
    d = b.const(p + "/divisor", 1 << shift, np.int64)
    r = b.node("Mod", [x, d], p + "/rem", fmod=0)
    m = b.node("Sub", [x, r], p + "/multiple")
    return b.node("Div", [m, d], p + "/q")


def export_network(graph, size, path=None, name="fxbn_int_net"):
    """ONNX model of a quantized fxbn.network.Graph for (N, size, size, 3) uint8 pixels; output ``logits`` int64 (N, K).

    Raises ValueError naming the node for anything outside the supported ResNet-style subset.
    """
    b = _Builder()
    shapes, acts = {}, {}
    for node in graph.nodes:
        a, q, p = node.attrs, graph.q.get(node.name, {}), node.name
        if node.op == "input":
            layer = q["layer"]
            sub = fo.layer_nodes(layer, "pixels", p, axis=-1, rank=4, in_dtype="uint8", range_check=False,
                                 prefix=p + "/")
            b.nodes += sub.nodes
            b.inits += sub.initializers
            shapes[p] = (size, size, 3)
        elif node.op == "conv":
            if a.get("depthwise") or a.get("logits") or a.get("bias") is not None:
                raise ValueError(f"node {p}: only plain convolutions (no depthwise, bias or logits conv)")
            src = node.src[0]
            act = graph.act_of(src)
            w_q = q["w_q"]                                            # HWIO int8
            if q["term_bound"] >= 2 ** 31:
                raise ValueError(f"node {p}: accumulator bound {q['term_bound']} does not fit int32")
            kh, kw, cin, cout = w_q.shape
            h, w, _ = shapes[src]
            t, bt, l, r = a["pad"]
            s = a["stride"]
            ho, wo = (h + t + bt - kh) // s + 1, (w + l + r - kw) // s + 1
            zp = b.const(p + "/zero_point", act.zero_point, act.dtype)
            x = src
            if any(a["pad"]):
                pads = b.const(p + "/pads", [0, t, l, 0, 0, bt, r, 0], np.int64)
                x = b.node("Pad", [src, pads, zp], p + "/padded")
            total = None
            for i in range(kh):
                for j in range(kw):
                    tap = f"{p}/tap{i}{j}"
                    sl = b.node("Slice", [x, b.const(tap + "/starts", [i, j], np.int64),
                                          b.const(tap + "/ends", [i + s * (ho - 1) + 1, j + s * (wo - 1) + 1],
                                                  np.int64),
                                          b.const(tap + "/axes", [1, 2], np.int64),
                                          b.const(tap + "/steps", [s, s], np.int64)], tap + "/x")
                    prod = b.node("MatMulInteger", [sl, b.const(tap + "/w", w_q[i, j], np.int8), zp], tap + "/acc")
                    total = prod if total is None else b.node("Add", [total, prod], tap + "/sum")
            b.nodes[-1].output[0] = p                                 # the last Add (or MatMulInteger) is the conv
            b.nodes[-1].name = p
            shapes[p] = (ho, wo, cout)
        elif node.op == "bn":
            if len(q["layers"]) != 1:
                raise ValueError(f"node {p}: LeakyReLU (two layers) is not exported")
            sub = fo.layer_nodes(q["layers"][0], node.src[0], p, axis=-1, rank=4, in_dtype="int32",
                                 range_check=False, prefix=p + "/")
            b.nodes += sub.nodes
            b.inits += sub.initializers
            shapes[p] = shapes[node.src[0]]
        elif node.op == "add":
            layer = q["layer"]                                        # the exact fxbn.FixedPointAdd
            s1, s2 = node.src
            terms = []
            for k, (src, m) in enumerate(zip(node.src, layer.multipliers)):
                c = b.node("Cast", [src], f"{p}/in{k}", to=TensorProto.INT64)
                terms.append(b.node("Mul", [c, b.const(f"{p}/m{k}", m, np.int64)], f"{p}/scaled{k}"))
            acc = b.node("Add", terms, p + "/acc")
            acc = b.node("Add", [acc, b.const(p + "/bias", layer.bias, np.int64)], p + "/biased")
            y = _floor_div_pow2(b, acc, layer.shift, p) if layer.shift else acc
            lo, hi = layer.out_range
            y = b.node("Clip", [y, b.const(p + "/lo", lo, np.int64), b.const(p + "/hi", hi, np.int64)],
                       p + "/clipped")
            b.node("Cast", [y], p, to=_ELEM[layer.out_dtype.name])
            shapes[p] = shapes[s1]
        elif node.op == "shortcut_a":
            src = node.src[0]
            h, w, c = shapes[src]
            extra = (a["out_channels"] - c) // 2
            sl = b.node("Slice", [src, b.const(p + "/starts", [0, 0], np.int64),
                                  b.const(p + "/ends", [h, w], np.int64), b.const(p + "/axes", [1, 2], np.int64),
                                  b.const(p + "/steps", [2, 2], np.int64)], p + "/strided")
            zp = b.const(p + "/zero_point", graph.act_of(src).zero_point, graph.act_of(src).dtype)
            b.node("Pad", [sl, b.const(p + "/pads", [0, 0, 0, extra, 0, 0, 0, extra], np.int64), zp], p)
            shapes[p] = ((h + 1) // 2, (w + 1) // 2, a["out_channels"])
        elif node.op == "gap":
            src = node.src[0]
            if graph.by_name[src].op == "conv":
                raise ValueError(f"node {p}: pooling of a logits conv is not exported")
            c = b.node("Cast", [src], p + "/wide", to=TensorProto.INT64)
            c = b.node("Sub", [c, b.const(p + "/z", graph.act_of(src).zero_point, np.int64)], p + "/centred")
            b.node("ReduceSum", [c, b.const(p + "/axes", [1, 2], np.int64)], p, keepdims=0)
            shapes[p] = (shapes[src][2],)
        elif node.op == "dense":
            src = node.src[0]
            pooled_unit = graph.act_of(graph.by_name[src].src[0]).scale / (shapes[graph.by_name[src].src[0]][0]
                                                                          * shapes[graph.by_name[src].src[0]][1])
            unit = pooled_unit * q["w_scale"]
            bias_q = np.round(np.asarray(a["bias"], np.float64) / unit).astype(np.int64)
            u = b.node("Unsqueeze", [src, b.const(p + "/axis", [2], np.int64)], p + "/column")
            prod = b.node("Mul", [u, b.const(p + "/w", q["w_q"].astype(np.int64), np.int64)], p + "/products")
            mm = b.node("ReduceSum", [prod, b.const(p + "/axes", [1], np.int64)], p + "/matmul", keepdims=0)
            b.node("Add", [mm, b.const(p + "/bias", bias_q, np.int64)], p)
            b.logit_unit = np.broadcast_to(np.asarray(unit, np.float64), (q["w_q"].shape[1],))
            shapes[p] = (q["w_q"].shape[1],)
        else:
            raise ValueError(f"node {p}: op {node.op!r} is not exported")
    out = graph.output
    b.nodes.append(helper.make_node("Identity", [out], ["logits"], name="logits"))
    g = helper.make_graph(b.nodes, name, [helper.make_tensor_value_info("pixels", TensorProto.UINT8,
                                                                       ["N", size, size, 3])],
                          [helper.make_tensor_value_info("logits", TensorProto.INT64, ["N", shapes[out][0]])],
                          b.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", fo.OPSET)], producer_name="fxbn")
    model.ir_version = min(model.ir_version, 8)
    if getattr(b, "logit_unit", None) is not None:       # real logits = integer logits * unit (per class)
        helper.set_model_props(model, {"fxbn.logit_unit": json.dumps([float(u) for u in b.logit_unit])})
    import onnx

    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        fo._save_atomic(model, path)
    return model
