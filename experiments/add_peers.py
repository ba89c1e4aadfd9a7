"""Residual adds of the real integer networks: every peer's int8 add against the exact reference, on the real
activations, and what the exact add changes end to end.

    python -m experiments.add_peers                                  # ResNet-20 and ResNet-56, all 10,000 images
    python -m experiments.add_peers --nets resnet50 --limit-imagenet 200 --calib 50
    python -m experiments.add_peers --nets resnet20 --limit-per-class 10 --peers litert onnxruntime torch

For each network (calibrated and quantized exactly as experiments.run does), every image runs twice through the
integer network (``fxbn.network.Graph.forward_int``):

1. with the exact adds (each ``add`` node a ``fxbn.FixedPointAdd``); an observer collects the integer inputs
   (x1, x2) at every add node, as a histogram of pairs, and counts fxbn's outputs that differ from the exact
   reference (``FixedPointAdd.reference``, Fractions) element by element;
2. with the experiments' previous approximate add (``experiments.qgraph.add_requant``, fixed 2^30 multipliers) in
   place of every exact add: the integer logits and top-1 of both runs are compared image by image.

Each peer is then run, in its real runtime, on every distinct (x1, x2) pair observed at each add node with the
node's per-tensor quantization parameters; its wrong outputs are counted with the pairs' multiplicities (an add is
an elementwise function of the pair, so this equals running it on the network's tensors; the test checks that on
a sample):

- ``litert_xnnpack`` / ``litert_builtin`` / ``litert_ref``: a one-op int8 ADD .tflite model (fused ReLU where the
  node has one; scales as the format's float32) run by ai-edge-litert's interpreter with its default XNNPACK
  delegate, with TFLite's optimized builtin kernels, and with its reference kernels (left shift 20, two frexp
  multipliers, double rounding);
- ``onnxruntime``: com.microsoft QLinearAdd (int8, float32 scales) in onnxruntime; ReLU nodes: QLinearAdd then
  max(y, z_out) (the integer ReLU a quantized graph fuses into the output range);
- ``torch``: torch.ops.quantized.add / add_relu on quint8 tensors (int8 values and zero points shifted by +128, which
  is exact; the output shifted back);
- ``add_requant``: the experiments' previous approximate add (numpy).

Writes experiments/results/add_peers_<net>.json.
"""
import argparse
import os

if __name__ == "__main__":  # one BLAS thread per worker process (set before numpy loads OpenBLAS)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import json
import math
import multiprocessing
import pathlib
import sys
import time

import numpy as np

from experiments import data, qgraph, run

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
PEERS = ("litert_xnnpack", "litert_builtin", "litert_ref", "onnxruntime", "torch", "add_requant")


# ---------------------------------------------------------------------------------------------- the peers
def add_params(graph, node):
    """(in activation 1, in activation 2, out activation, relu) of an add node: per-tensor scale, zero point."""
    a1, a2 = (graph.act_of(s) for s in node.src)
    return a1, a2, graph.acts[node.name], bool(node.attrs.get("relu"))


def peer_litert(x1, x2, a1, a2, out, relu, resolver="AUTO"):
    """One int8 ADD op in LiteRT (ai-edge-litert), quantization parameters per tensor.

    resolver: LiteRT's OpResolverType -- AUTO (the default: XNNPACK delegate), BUILTIN_WITHOUT_DEFAULT_DELEGATES
    (TFLite's optimized builtin kernels) or BUILTIN_REF (TFLite's reference kernels)."""
    import flatbuffers
    import tflite
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    n = len(x1)
    b = flatbuffers.Builder(1024)

    def vec(start, values, prepend):
        start(b, len(values))
        for v in reversed(values):
            prepend(v)
        return b.EndVector()

    buffers = []
    for _ in range(1):  # buffer 0: the empty buffer, by convention
        tflite.BufferStart(b)
        buffers.append(tflite.BufferEnd(b))
    tensors = []
    for name, act in (("x1", a1), ("x2", a2), ("y", out)):
        nm = b.CreateString(name)
        sh = vec(tflite.TensorStartShapeVector, [n], b.PrependInt32)
        sc = vec(tflite.QuantizationParametersStartScaleVector, [float(np.float32(act.scale))], b.PrependFloat32)
        zp = vec(tflite.QuantizationParametersStartZeroPointVector, [int(act.zero_point)], b.PrependInt64)
        tflite.QuantizationParametersStart(b)
        tflite.QuantizationParametersAddScale(b, sc)
        tflite.QuantizationParametersAddZeroPoint(b, zp)
        qp = tflite.QuantizationParametersEnd(b)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, sh)
        tflite.TensorAddType(b, tflite.TensorType.INT8)
        tflite.TensorAddBuffer(b, 0)
        tflite.TensorAddName(b, nm)
        tflite.TensorAddQuantization(b, qp)
        tensors.append(tflite.TensorEnd(b))
    tflite.AddOptionsStart(b)
    tflite.AddOptionsAddFusedActivationFunction(
        b, tflite.ActivationFunctionType.RELU if relu else tflite.ActivationFunctionType.NONE)
    opts = tflite.AddOptionsEnd(b)
    ins = vec(tflite.OperatorStartInputsVector, [0, 1], b.PrependInt32)
    outs = vec(tflite.OperatorStartOutputsVector, [2], b.PrependInt32)
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, 0)
    tflite.OperatorAddInputs(b, ins)
    tflite.OperatorAddOutputs(b, outs)
    tflite.OperatorAddBuiltinOptionsType(b, tflite.BuiltinOptions.AddOptions)
    tflite.OperatorAddBuiltinOptions(b, opts)
    op = tflite.OperatorEnd(b)

    def ovec(start, offsets):
        start(b, len(offsets))
        for o in reversed(offsets):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    tv = ovec(tflite.SubGraphStartTensorsVector, tensors)
    iv = vec(tflite.SubGraphStartInputsVector, [0, 1], b.PrependInt32)
    ov = vec(tflite.SubGraphStartOutputsVector, [2], b.PrependInt32)
    opv = ovec(tflite.SubGraphStartOperatorsVector, [op])
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tv)
    tflite.SubGraphAddInputs(b, iv)
    tflite.SubGraphAddOutputs(b, ov)
    tflite.SubGraphAddOperators(b, opv)
    sg = tflite.SubGraphEnd(b)
    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, tflite.BuiltinOperator.ADD)
    tflite.OperatorCodeAddBuiltinCode(b, tflite.BuiltinOperator.ADD)
    tflite.OperatorCodeAddVersion(b, 2)  # version 2: int8 ADD
    code = tflite.OperatorCodeEnd(b)
    cv = ovec(tflite.ModelStartOperatorCodesVector, [code])
    sgv = ovec(tflite.ModelStartSubgraphsVector, [sg])
    bv = ovec(tflite.ModelStartBuffersVector, buffers)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, cv)
    tflite.ModelAddSubgraphs(b, sgv)
    tflite.ModelAddBuffers(b, bv)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    it = Interpreter(model_content=bytes(b.Output()), num_threads=1,
                     experimental_op_resolver_type=getattr(OpResolverType, resolver))
    it.allocate_tensors()
    inp = it.get_input_details()
    it.set_tensor(inp[0]["index"], np.ascontiguousarray(x1, np.int8))
    it.set_tensor(inp[1]["index"], np.ascontiguousarray(x2, np.int8))
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


def peer_onnxruntime(x1, x2, a1, a2, out, relu):
    """com.microsoft QLinearAdd (int8) in onnxruntime; ReLU as max(y, z_out) after it."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    inits = []
    for name, act in (("a", a1), ("b", a2), ("c", out)):
        inits.append(helper.make_tensor(f"{name}_scale", TensorProto.FLOAT, [], [float(act.scale)]))
        inits.append(helper.make_tensor(f"{name}_zp", TensorProto.INT8, [], [int(act.zero_point)]))
    node = helper.make_node("QLinearAdd", ["x1", "a_scale", "a_zp", "x2", "b_scale", "b_zp", "c_scale", "c_zp"],
                            ["y"], domain="com.microsoft")
    graph = helper.make_graph([node], "qlinearadd", [helper.make_tensor_value_info("x1", TensorProto.INT8, [None]),
                                                      helper.make_tensor_value_info("x2", TensorProto.INT8, [None])],
                              [helper.make_tensor_value_info("y", TensorProto.INT8, [None])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 9
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x1": np.ascontiguousarray(x1, np.int8), "x2": np.ascontiguousarray(x2, np.int8)})[0]
    return np.maximum(y, np.int8(out.zero_point)) if relu else y


def peer_torch(x1, x2, a1, a2, out, relu):
    """torch.ops.quantized.add / add_relu on quint8 (int8 values and zero points + 128, exactly)."""
    import torch

    def q(x, act):
        u = torch.from_numpy((np.asarray(x, np.int16) + 128).astype(np.uint8))
        return torch._make_per_tensor_quantized_tensor(u, float(act.scale), int(act.zero_point) + 128)

    fn = torch.ops.quantized.add_relu if relu else torch.ops.quantized.add
    y = fn(q(x1, a1), q(x2, a2), float(out.scale), int(out.zero_point) + 128)
    return (y.int_repr().numpy().astype(np.int16) - 128).astype(np.int8)


def emulate_tflite_add(x1, x2, a1, a2, out, relu):
    """TFLite's int8 ADD reference arithmetic written out in Python integers (for the tests: LiteRT's reference and
    builtin kernels must equal it): float32 scales; left shift 20; multipliers s_i/(2*max(s1, s2)) and
    2*max(s1, s2)/(2^20*s_out) as frexp 31-bit fractions; SaturatingRoundingDoublingHighMul (round half away) then
    RoundingDivideByPOT (round half away) for each of the three; + z_out; clamp (ReLU: at z_out)."""
    s1, s2, so = (float(np.float32(a.scale)) for a in (a1, a2, out))

    def quantize_multiplier(real):
        frac, exp = math.frexp(real)
        q = round(frac * (1 << 31))
        return (q // 2, exp + 1) if q == 1 << 31 else (q, exp)

    def scale(v, m, exp):                    # exp <= 0 here: the real multipliers are below 1
        ab = v * m
        s = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
        high = abs(s) >> 31
        high = high if s >= 0 else -high     # C++ integer division truncates toward zero
        e = -exp
        mask = (1 << e) - 1
        return (high >> e) + (1 if (high & mask) > (mask >> 1) + (1 if high < 0 else 0) else 0)

    twice = 2 * max(s1, s2)
    m1, m2, mo = (quantize_multiplier(r) for r in (s1 / twice, s2 / twice, twice / ((1 << 20) * so)))
    lo = max(-128, out.zero_point) if relu else -128
    y = [scale(scale((int(u) - a1.zero_point) << 20, *m1) + scale((int(v) - a2.zero_point) << 20, *m2), *mo)
         + out.zero_point for u, v in zip(np.asarray(x1).reshape(-1), np.asarray(x2).reshape(-1))]
    return np.clip(np.array(y, np.int64), lo, 127).astype(np.int8)


def peer_add_requant(x1, x2, a1, a2, out, relu):
    """The experiments' previous approximate add (fixed 2^30 multipliers)."""
    return qgraph.add_requant(np.asarray(x1), a1, np.asarray(x2), a2, out, relu)


PEER_FUNCS = {"litert_xnnpack": peer_litert,
              "litert_builtin": lambda *a: peer_litert(*a, resolver="BUILTIN_WITHOUT_DEFAULT_DELEGATES"),
              "litert_ref": lambda *a: peer_litert(*a, resolver="BUILTIN_REF"),
              "onnxruntime": peer_onnxruntime, "torch": peer_torch, "add_requant": peer_add_requant}
_LITERT = ("ai_edge_litert", "tflite", "flatbuffers")
PEER_MODULES = {"litert_xnnpack": _LITERT, "litert_builtin": _LITERT, "litert_ref": _LITERT,
                "onnxruntime": ("onnx", "onnxruntime"), "torch": ("torch",), "add_requant": ()}


def peer_available(name):
    """None when the peer's packages import, else the reason."""
    import importlib

    for mod in PEER_MODULES[name]:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            return f"{mod} not installed ({exc})"
    return None


# ---------------------------------------------------------------------------------------------- observation
class RequantAdd:
    """Stands in for a node's FixedPointAdd in forward_int: the approximate add_requant with the node's parameters."""

    def __init__(self, a1, a2, out, relu):
        self.args = (a1, a2, out, relu)

    def apply(self, x1, x2):
        a1, a2, out, relu = self.args
        return qgraph.add_requant(np.asarray(x1), a1, np.broadcast_to(x2, np.shape(x1)), a2, out, relu)


class AddObserver:
    """observe_add for forward_int: histogram of input pairs per add node and fxbn's element-wise mismatches."""

    def __init__(self, graph):
        self.graph = graph
        self.hist, self.fxbn_wrong, self.outputs = {}, {}, {}

    def __call__(self, node, x1, x2, y):
        layer = self.graph.q[node.name]["layer"]
        (l1, _), (l2, h2) = layer.in_ranges
        x2 = np.broadcast_to(x2, np.shape(x1))
        # pair index within the node's input box (inputs outside it would have made apply raise)
        idx = (x1.astype(np.int64).reshape(-1) - l1) * (h2 - l2 + 1) + (x2.astype(np.int64).reshape(-1) - l2)
        size = (layer.in_ranges[0][1] - l1 + 1) * (h2 - l2 + 1)
        h = np.bincount(idx, minlength=size)
        self.hist[node.name] = self.hist.get(node.name, 0) + h
        ref = exact_outputs(self.graph, node.name, idx)
        wrong = int(np.count_nonzero(np.asarray(y).reshape(-1) != ref))
        self.fxbn_wrong[node.name] = self.fxbn_wrong.get(node.name, 0) + wrong
        self.outputs[node.name] = self.outputs.get(node.name, 0) + int(idx.size)


def reference_table(graph, name):
    """FixedPointAdd.reference (exact, Fractions) on every pair of the node's input box, computed once per node."""
    q = graph.q[name]
    if "reference_table" not in q:
        layer = q["layer"]
        (l1, h1), (l2, h2) = layer.in_ranges
        g1, g2 = np.meshgrid(np.arange(l1, h1 + 1), np.arange(l2, h2 + 1), indexing="ij")
        q["reference_table"] = layer.reference(g1.astype(layer.in_dtypes[0]), g2.astype(layer.in_dtypes[1]))
    return q["reference_table"]


def exact_outputs(graph, name, idx):
    """The exact reference at the pair indices idx of the node's box: from the whole-box table when it exists, else
    FixedPointAdd.reference on the pairs not seen before (cached), so a small sample costs only its distinct pairs."""
    q = graph.q[name]
    if "reference_table" in q:
        return q["reference_table"].reshape(-1)[idx]
    layer = q["layer"]
    (l1, h1), (l2, h2) = layer.in_ranges
    width = h2 - l2 + 1
    cache = q.setdefault("reference_cache", np.full((h1 - l1 + 1) * width, np.iinfo(np.int32).min, np.int32))
    todo = np.unique(idx)
    todo = todo[cache[todo] == np.iinfo(np.int32).min]
    if todo.size:
        cache[todo] = layer.reference((todo // width + l1).astype(layer.in_dtypes[0]),
                                      (todo % width + l2).astype(layer.in_dtypes[1]))
    return cache[idx].astype(layer.out_dtype)


def requant_graph_q(graph):
    """graph.q with every add layer replaced by the approximate add_requant (a new dict; graph.q is unchanged)."""
    q = dict(graph.q)
    for node in graph.nodes:
        if node.op == "add":
            a1, a2, _, relu = add_params(graph, node)
            q[node.name] = dict(graph.q[node.name], layer=RequantAdd(a1, a2, graph.q[node.name]["act"], relu))
    return q


_WORK = {}


def _batch(span):
    graph, pixels = _WORK["graph"], _WORK["pixels"]
    px = pixels[span[0]:span[1]]
    obs = AddObserver(graph)
    exact, exact_real = graph.forward_int(px, observe_add=obs)
    saved = graph.q
    graph.q = _WORK["requant_q"]
    try:
        approx, approx_real = graph.forward_int(px)
    finally:
        graph.q = saved
    return exact, approx, obs.hist, obs.fxbn_wrong, obs.outputs, exact_real, approx_real


def observe_network(graph, pixels, batch=100, workers=1):
    """Run every image through the exact and the add_requant integer networks.

    Returns (exact logits, approximate logits, {node: pair histogram}, {node: fxbn wrong}, {node: outputs},
    exact real logits, approximate real logits): the integer logits and the same times their per-class unit (the
    classifier's weights have per-output-channel scales, so only the real logits rank the classes)."""
    if len(pixels) > batch:   # many images: the whole box's reference, computed once before forking
        for node in graph.nodes:
            if node.op == "add":
                reference_table(graph, node.name)
    _WORK.update(graph=graph, pixels=pixels, requant_q=requant_graph_q(graph))
    spans = [(i, min(i + batch, len(pixels))) for i in range(0, len(pixels), batch)]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_batch, spans, chunksize=1)
    else:
        parts = [_batch(s) for s in spans]
    exact = np.concatenate([p[0] for p in parts])
    approx = np.concatenate([p[1] for p in parts])
    exact_real = np.concatenate([p[5] for p in parts])
    approx_real = np.concatenate([p[6] for p in parts])
    hist, wrong, outputs = {}, {}, {}
    for p in parts:
        for name in p[2]:
            hist[name] = hist.get(name, 0) + p[2][name]
            wrong[name] = wrong.get(name, 0) + p[3][name]
            outputs[name] = outputs.get(name, 0) + p[4][name]
    return exact, approx, hist, wrong, outputs, exact_real, approx_real


def count_peers(graph, hist, peers):
    """Per add node and peer: outputs differing from the exact reference, weighted by the observed pair counts.

    fxbn (FixedPointAdd.apply) is counted the same way as the peers. Returns ({node: row}, {peer: error})."""
    rows, errors = {}, {}
    for node in graph.nodes:
        if node.op != "add":
            continue
        layer = graph.q[node.name]["layer"]
        (l1, _), (l2, h2) = layer.in_ranges
        h = hist[node.name]
        seen = np.flatnonzero(h)
        w = h[seen]
        x1 = (seen // (h2 - l2 + 1) + l1).astype(layer.in_dtypes[0])
        x2 = (seen % (h2 - l2 + 1) + l2).astype(layer.in_dtypes[1])
        ref = exact_outputs(graph, node.name, seen)
        a1, a2, out, relu = add_params(graph, node)
        row = {"outputs": int(w.sum()), "distinct_pairs": int(seen.size), "relu": relu,
               "multipliers": list(layer.multipliers), "shift": layer.shift, "wrong": {}, "max_error": {}}
        results = {"fxbn": layer.apply(x1, x2)}
        for peer in peers:
            if peer in errors:
                continue
            try:
                results[peer] = np.asarray(PEER_FUNCS[peer](x1, x2, a1, a2, out, relu)).reshape(-1)
            except Exception as exc:  # a runtime that cannot run the op is reported, not fatal
                errors[peer] = f"{type(exc).__name__}: {exc}"[:300]
        for name, y in results.items():
            diff = y.astype(np.int64) != ref.astype(np.int64)
            row["wrong"][name] = int(w[diff].sum())
            row["max_error"][name] = int(np.abs(y.astype(np.int64) - ref).max()) if seen.size else 0
            if diff.any():
                i = int(np.argmax(w * diff))
                row.setdefault("example", {})[name] = {"x1": int(x1[i]), "x2": int(x2[i]), "peer": int(y[i]),
                                                       "exact": int(ref[i]), "occurrences": int(w[i])}
        rows[node.name] = row
    box_counts(graph, ["fxbn"] + [p for p in peers if p not in errors], rows)
    return rows, errors


def box_counts(graph, peers, rows):
    """Per add node (when its whole-box reference table exists): each peer's wrong outputs over EVERY pair of the
    node's input box, i.e. how many inputs it gets wrong in principle (row["box_pairs"], row["box_wrong"])."""
    for node in graph.nodes:
        q = graph.q.get(node.name, {})
        if node.op != "add" or "reference_table" not in q:
            continue
        layer = q["layer"]
        (l1, h1), (l2, h2) = layer.in_ranges
        g1, g2 = np.meshgrid(np.arange(l1, h1 + 1), np.arange(l2, h2 + 1), indexing="ij")
        x1, x2 = g1.reshape(-1).astype(layer.in_dtypes[0]), g2.reshape(-1).astype(layer.in_dtypes[1])
        ref = q["reference_table"].reshape(-1)
        row = rows.setdefault(node.name, {})
        row["box_pairs"] = int(ref.size)
        row["box_wrong"] = {}
        for peer in peers:
            y = layer.apply(x1, x2) if peer == "fxbn" else PEER_FUNCS[peer](x1, x2, *add_params(graph, node))
            row["box_wrong"][peer] = int(np.count_nonzero(np.asarray(y).reshape(-1) != ref))


# ---------------------------------------------------------------------------------------------- one network
def run_network(name, args, data_root):
    t0 = time.perf_counter()
    graph = run.load_network(name, data_root)
    pixels, labels, calib, desc = run.load_images(name, data_root, args)
    graph.calibrate([calib[i:i + args.batch] for i in range(0, len(calib), args.batch)], method=args.method,
                    percentile=args.percentile)
    graph.quantize(rounding=args.rounding)
    t1 = time.perf_counter()
    exact, approx, hist, fx_wrong, outputs, exact_real, approx_real = observe_network(graph, pixels, args.batch,
                                                                                     args.workers)
    t2 = time.perf_counter()
    peers = []
    skipped = {}
    for p in args.peers:
        reason = peer_available(p)
        if reason:
            skipped[p] = reason
        else:
            peers.append(p)
    rows, errors = count_peers(graph, hist, peers)
    for node, row in rows.items():
        row["fxbn_in_network"] = fx_wrong[node]
        if row["outputs"] != outputs[node]:
            raise AssertionError(f"{node}: histogram holds {row['outputs']} pairs, observer saw {outputs[node]}")
    t3 = time.perf_counter()
    changed = np.any(exact.reshape(len(exact), -1) != approx.reshape(len(approx), -1), axis=1)
    top_exact, top_approx = exact_real.argmax(axis=1), approx_real.argmax(axis=1)
    e2e = {"images": int(len(pixels)), "logits_changed_images": int(changed.sum()),
           "logits_changed_values": int(np.count_nonzero(exact != approx)), "logits_values": int(exact.size),
           "top1_changed_images": int(np.count_nonzero(top_exact != top_approx))}
    if name in ("resnet20", "resnet56", "resnet50"):
        e2e["top1_exact_add"] = float(np.mean(top_exact == labels))
        e2e["top1_add_requant"] = float(np.mean(top_approx == labels))
    totals = {"outputs": sum(r["outputs"] for r in rows.values()),
              "fxbn_in_network": sum(r["fxbn_in_network"] for r in rows.values())}
    for p in ["fxbn"] + peers:
        if p not in errors:
            totals[p] = sum(r["wrong"][p] for r in rows.values())
    return {"network": name, "images": desc, "rounding": args.rounding, "peers": peers, "peers_skipped": skipped,
            "peer_errors": errors, "adds": rows, "totals": totals, "end_to_end": e2e,
            "wall_seconds": {"calibrate_quantize": t1 - t0, "networks": t2 - t1, "peers": t3 - t2,
                             "workers": args.workers}}


def box_only(name, args, data_root):
    """The recorded result of a network with each add's whole-box counts added (its layers must be the recorded)."""
    result = json.loads((args.out / f"add_peers_{name}.json").read_text())
    graph = run.load_network(name, data_root)
    _, _, calib, _ = run.load_images(name, data_root, args)
    graph.calibrate([calib[i:i + args.batch] for i in range(0, len(calib), args.batch)], method=args.method,
                    percentile=args.percentile)
    graph.quantize(rounding=args.rounding)
    for node in graph.nodes:
        if node.op == "add":
            layer, row = graph.q[node.name]["layer"], result["adds"][node.name]
            if list(layer.multipliers) != row["multipliers"] or layer.shift != row["shift"]:
                raise SystemExit(f"{name}: add {node.name} differs from the recorded run")
            reference_table(graph, node.name)
    box_counts(graph, ["fxbn"] + result["peers"], result["adds"])
    return result


def table(results):
    """README table: per network, add outputs checked, wrong outputs per peer on the real activations (and over every
    pair of the nodes' input boxes, when counted), images whose logits / top-1 change with add_requant."""
    peers = [p for p in PEERS if any(p in r["totals"] for r in results)]
    head = ["network", "images", "add nodes", "add outputs checked", "fxbn"] + peers + \
           ["images with changed logits", "top-1 changed (exact vs add_requant)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        t, e = r["totals"], r["end_to_end"]
        n = t["outputs"]
        rows = r["adds"].values()
        box = all("box_wrong" in row for row in rows)

        def cell(p, bold=False):
            if p not in t:
                return "not run"
            text = f"**{t[p]:,}**" if bold else (f"{t[p]:,} ({t[p] / n:.1e})" if t[p] else "0")
            if box:
                text += f" (box {sum(row['box_wrong'][p] for row in rows):,})"
            return text

        cells = [r["network"], f"{e['images']:,}", str(len(r["adds"])), f"{n:,}" + (
            f" (box {sum(row['box_pairs'] for row in rows):,} pairs)" if box else ""), cell("fxbn", True)]
        if t["fxbn_in_network"] != t["fxbn"]:
            cells[-1] += f" (in network {t['fxbn_in_network']})"
        cells += [cell(p) for p in peers]
        cells += [f"{e['logits_changed_images']:,} of {e['images']:,}", f"{e['top1_changed_images']:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", nargs="+", default=["resnet20", "resnet56"], choices=["resnet20", "resnet56", "resnet50"])
    p.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    data.add_run_arguments(p, RESULTS)
    p.add_argument("--box-only", action="store_true",
                   help="add the whole-box counts to an existing result (rebuilds the same layers, no images run)")
    p.add_argument("--table", action="store_true", help="print the table of the recorded results of --nets")
    args = p.parse_args(argv)
    if args.table:
        args.data = args.data if args.data.is_dir() else pathlib.Path(".")
    if not args.data.is_dir():
        sys.exit(f"data directory {args.data} not found (set FXBN_DATA)")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.table:
        results = [json.loads((args.out / f"add_peers_{n}.json").read_text()) for n in args.nets
                   if (args.out / f"add_peers_{n}.json").exists()]
        print(table(results))
        return
    for name in args.nets:
        r = box_only(name, args, args.data) if args.box_only else run_network(name, args, args.data)
        (args.out / f"add_peers_{name}.json").write_text(json.dumps(run.to_jsonable(r), indent=1))
        print(table([r]), flush=True)
        if r["totals"]["fxbn"] or r["totals"]["fxbn_in_network"]:
            sys.exit(f"{name}: fxbn add outputs differ from the exact reference")


if __name__ == "__main__":
    main()
