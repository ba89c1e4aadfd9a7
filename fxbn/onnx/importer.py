"""A float ONNX model as an :class:`fxbn.network.Graph` (``import_onnx``), ready for calibrate / quantize / export.

>>> import numpy as np, onnx
>>> from onnx import helper, numpy_helper, TensorProto
>>> rng = np.random.default_rng(0)
>>> w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)          # OIHW
>>> inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.ones(4, np.float32), "g"),
...          numpy_helper.from_array(np.zeros(4, np.float32), "b"),
...          numpy_helper.from_array(np.linspace(-1, 1, 4).astype(np.float32), "m"),
...          numpy_helper.from_array(np.full(4, 2, np.float32), "v")]
>>> nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
...          helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"], name="bn"),
...          helper.make_node("Relu", ["n"], ["y"], name="relu")]
>>> g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
...                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], inits)
>>> graph = import_onnx(helper.make_model(g), input_mean=[0.5] * 3, input_std=[0.25] * 3)
>>> [(n.name, n.op) for n in graph.nodes], graph.by_name["bn"].attrs["act"], graph.input_hw
([('input', 'input'), ('conv', 'conv'), ('bn', 'bn')], 'relu', (8, 8))

Mapping (ONNX is NCHW; the graph is NHWC):

- the single float input (N, C, H, W) -> ``input`` (uint8 pixels normalised by ``input_mean`` / ``input_std``, which
  ONNX cannot record: arguments, as the image ``size`` when H, W are symbolic);
- ``Conv`` (group 1, or group = channels with one filter per channel: depthwise) -> ``conv`` with HWIO (depthwise
  (kh, kw, C)) weights; pads [t, l, b, r] -> (t, b, l, r); a conv bias is folded into the following BN's mean
  (mean - bias in float64, :func:`fxbn.importers.fold_conv_bias`);
- ``BatchNormalization`` after a Conv -> ``bn``;
- a Conv with no BN after it (BN already folded into the weights by the exporter) -> ``conv`` + an identity ``bn``
  (gamma 1, beta = the conv bias, mean 0, var 1, eps 0: the float map is exactly x + bias), so the integer network
  requantizes that accumulator with one exact FixedPointBN like any other;
- ``Relu`` / ``Clip(0, 6)`` / ``LeakyRelu`` fused into the BN before them (``Relu`` also into an ``Add``);
- ``Add`` of two tensors -> ``add`` (exact FixedPointAdd); ``Add`` of a constant after Conv/MatMul -> its bias;
- ``MaxPool`` -> ``maxpool``; ``GlobalAveragePool``, an ``AveragePool`` over the whole map, ``ReduceMean`` over H, W
  -> ``gap``; any other ``AveragePool`` (kernel, strides, pads or auto_pad VALID / SAME_*, count_include_pad 0 or 1;
  not ceil_mode or dilations) -> ``avgpool`` (a quantization point: exact window sums, one exact rescaling per
  window size); ``Flatten`` / ``Reshape`` / ``Squeeze`` of the pooled (N, C, 1, 1) tensor -> nothing;
- ``Gemm`` / ``MatMul`` (+ ``Add`` bias) after the pooling -> ``dense`` (the integer logits);
- ``Slice`` x[:, :, ::2, ::2] + ``Pad`` of the channels with 0 -> ``shortcut_a`` (CIFAR option-A shortcut);
- ``Pad`` of H, W with 0 before a Conv -> that conv's padding; ``Identity`` / ``Dropout`` -> nothing;
- shape arithmetic on constants (Constant, Shape, Gather, Concat, Reshape, Slice, Transpose, Cast, Unsqueeze,
  ConstantOfShape, ...) is evaluated at import; the batch dimension may stay symbolic.

Anything else raises ValueError naming the ONNX node (name and op_type) and what is not supported.
"""
import numpy as np

from fxbn import importers
from fxbn.network import Graph, Node

__all__ = ["import_onnx"]


class _Batch:
    """The symbolic batch dimension inside evaluated shape tensors."""

    def __repr__(self):
        return "N"


BATCH = _Batch()
_INT64_MAX = np.iinfo(np.int64).max


class _Value:
    """A data tensor of the ONNX graph: what produces it in the fxbn graph, and its (C, H, W) or (C,) shape."""

    def __init__(self, kind, shape, node=None, **extra):
        self.kind, self.shape, self.node = kind, tuple(int(s) for s in shape), node
        self.__dict__.update(extra)


def _where(node):
    return f"ONNX node {node.name or '(unnamed)'!r} ({node.op_type})"


def _attrs(node):
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _check_attrs(node, allowed, attrs):
    extra = set(attrs) - set(allowed)
    if extra:
        raise ValueError(f"{_where(node)}: unsupported attribute(s) {', '.join(sorted(extra))}")


def _load(path_or_model):
    import onnx

    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model
    try:
        return onnx.load(str(path_or_model))
    except Exception as exc:   # protobuf DecodeError, OSError: one message naming the file
        raise ValueError(f"{path_or_model}: cannot read as an ONNX model ({str(exc).splitlines()[0][:200]})") \
            from None


def import_onnx(path_or_model, input_mean, input_std, size=None, name_map=None):
    """Read a float ONNX image classifier (or feature extractor) into an :class:`fxbn.network.Graph`.

    Parameters
    ----------
    path_or_model : str, path or onnx.ModelProto
        A float model, NCHW input (N, C, H, W). Weights must be initializers or Constant nodes.
    input_mean, input_std : sequence of C floats
        The normalisation the model expects: float input = (pixel / 255 - mean) / std (ONNX does not record it).
    size : int or (int, int), optional
        Image height and width when the model's input leaves them symbolic (else it must match the model).
    name_map : dict, optional
        Filled with ONNX output tensor name -> graph node name (for diagnostics and tests).

    Returns
    -------
    Graph
        Float parameters only; ``graph.input_hw`` is the (H, W) the model runs on.

    Raises
    ------
    ValueError
        Naming the ONNX node (name, op_type) of anything not supported: other ops, non-constant weights, dynamic
        shapes other than the batch, attributes such as dilations != 1, Conv/MaxPool auto_pad SAME_*, ceil_mode,
        training mode.
    """
    from onnx import numpy_helper

    model = _load(path_or_model)
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for sparse in g.sparse_initializer:
        raise ValueError(f"sparse initializer {sparse.values.name!r} is not supported")
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1:
        raise ValueError(f"the model must have one image input, found {len(inputs)}: "
                         f"{', '.join(i.name for i in inputs) or 'none'}")
    if len(g.output) != 1:
        raise ValueError(f"the model must have one output, found {len(g.output)}: "
                         f"{', '.join(o.name for o in g.output)}")
    inp = inputs[0]
    ttype = inp.type.tensor_type
    if ttype.elem_type != 1:
        raise ValueError(f"input {inp.name!r}: element type {ttype.elem_type} is not float32 (1)")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim]
    if len(dims) != 4:
        raise ValueError(f"input {inp.name!r}: rank {len(dims)}, expected an NCHW image batch (N, C, H, W)")
    c = dims[1]
    if c is None:
        raise ValueError(f"input {inp.name!r}: the channel dimension is symbolic")
    if size is not None:
        hw = (int(size), int(size)) if np.ndim(size) == 0 else tuple(int(s) for s in size)
        if len(hw) != 2 or min(hw) < 1:
            raise ValueError(f"size must be a positive int or (height, width), got {size!r}")
        for want, got, what in zip(hw, dims[2:], ("height", "width")):
            if got is not None and got != want:
                raise ValueError(f"size {hw}: the model's input {inp.name!r} has {what} {got}")
    elif None in dims[2:]:
        raise ValueError(f"input {inp.name!r} has symbolic height/width {dims[2:]}: pass size")
    else:
        hw = (dims[2], dims[3])
    mean, std = np.asarray(input_mean, np.float64), np.asarray(input_std, np.float64)
    for what, v in (("input_mean", mean), ("input_std", std)):
        if v.shape != (c,) or not np.all(np.isfinite(v)):
            raise ValueError(f"{what} must be {c} finite numbers (one per input channel), got {v.tolist()}")
    if np.any(std <= 0):
        raise ValueError(f"input_std must be positive, got {std.tolist()}")

    b = _Builder(g, consts)
    b.values[inp.name] = _Value("node", (c,) + hw, "input")
    b.nodes.append(Node("input", "input"))
    b.names.add("input")
    for node in g.node:
        b.convert(node)
    out = g.output[0].name
    if out in b.consts:
        raise ValueError(f"output {out!r} is a constant")
    v = b.values[out]
    graph_out = b.materialize(v, None, final=True)
    graph = Graph(b.nodes, mean, std, output=graph_out)
    graph.input_hw = hw
    if name_map is not None:
        name_map.update({k: val.node for k, val in b.values.items() if getattr(val, "node", None)})
    return graph


class _Builder:
    def __init__(self, g, consts):
        self.consts = consts
        self.values = {}
        self.nodes, self.names = [], set()
        self.uses = {}
        for node in g.node:
            for i in node.input:
                if i:
                    self.uses[i] = self.uses.get(i, 0) + 1
        for o in g.output:
            self.uses[o.name] = self.uses.get(o.name, 0) + 1

    # ------------------------------------------------------------------ helpers
    def fresh(self, name):
        base = name or "node"
        out, k = base, 1
        while out in self.names:
            k += 1
            out = f"{base}#{k}"
        self.names.add(out)
        return out

    def add(self, name, op, src, attrs=None):
        name = self.fresh(name)
        self.nodes.append(Node(name, op, tuple(src), attrs or {}))
        return name

    def const(self, node, i, what):
        name = node.input[i] if i < len(node.input) else ""
        if not name:
            return None
        if name not in self.consts:
            raise ValueError(f"{_where(node)}: {what} {name!r} is not a constant (weights must be initializers)")
        return self.consts[name]

    def value(self, node, i):
        name = node.input[i]
        if name in self.consts:
            raise ValueError(f"{_where(node)}: input {name!r} is a constant where a tensor is expected")
        if name not in self.values:
            raise ValueError(f"{_where(node)}: input {name!r} is not produced by a supported node")
        return self.values[name]

    def materialize(self, v, node, final=False):
        """The graph node computing value v as a usable tensor (quantization point or range-preserving op)."""
        where = "the output" if node is None else _where(node)
        if v.kind == "node":
            return v.node
        if v.kind == "conv":           # no BN after it: an identity BN carrying the conv bias
            if v.bn is None:
                ch = v.shape[0]
                bias = np.zeros(ch, np.float32) if v.bias is None else v.bias
                bn = importers.BatchNormParams(np.ones(ch, np.float32), bias, np.zeros(ch, np.float32),
                                               np.ones(ch, np.float32), 0.0)
                v.bn = self.add(v.node + "/bias", "bn", (v.node,), {"bn": bn, "act": None, "identity": True})
            return v.bn
        if v.kind == "dense":
            if v.dense is None:
                bias = np.zeros(v.w.shape[1], np.float32) if v.bias is None else v.bias
                v.dense = self.add(v.name, "dense", (v.src,), {"w": v.w, "bias": bias})
            if not final:
                raise ValueError(f"{where}: the classifier (Gemm/MatMul) output must be the model's output")
            return v.dense
        if v.kind == "strided":
            raise ValueError(f"{where}: a strided Slice is supported only as the option-A shortcut "
                             "(x[:, :, ::2, ::2] followed by a Pad of the channels with 0)")
        if v.kind == "padded":
            raise ValueError(f"{where}: a spatial Pad is supported only directly before a Conv")
        raise AssertionError(v.kind)

    def single_use(self, name):
        return self.uses.get(name, 0) == 1

    # ------------------------------------------------------------------ constant folding
    def fold(self, node):
        """Evaluate a node whose inputs are all constants (or shapes); True when done."""
        op, a = node.op_type, _attrs(node)
        ins = [self.consts[i] if i else None for i in node.input]
        if op == "Constant":
            if "value" in a:
                from onnx import numpy_helper

                val = numpy_helper.to_array(a["value"])
            elif "value_float" in a:
                val = np.array(a["value_float"], np.float32)
            elif "value_floats" in a:
                val = np.array(a["value_floats"], np.float32)
            elif "value_int" in a:
                val = np.array(a["value_int"], np.int64)
            elif "value_ints" in a:
                val = np.array(a["value_ints"], np.int64)
            else:
                raise ValueError(f"{_where(node)}: unsupported Constant form {', '.join(a)}")
        elif op == "Identity":
            val = ins[0]
        elif op == "Cast":
            from onnx import helper

            val = ins[0] if ins[0].dtype == object else ins[0].astype(helper.tensor_dtype_to_np_dtype(a["to"]))
        elif op == "Concat":
            val = np.concatenate([np.atleast_1d(x) for x in ins], axis=a.get("axis", 0))
        elif op == "Gather":
            val = np.take(ins[0], ins[1], axis=a.get("axis", 0))
        elif op == "Unsqueeze":
            axes = ins[1] if len(ins) > 1 else a["axes"]
            val = ins[0]
            for ax in sorted(int(x) % (val.ndim + len(axes)) for x in np.atleast_1d(axes)):
                val = np.expand_dims(val, ax)
        elif op == "Squeeze":
            axes = ins[1] if len(ins) > 1 else a.get("axes")
            val = np.squeeze(ins[0], axis=None if axes is None else tuple(int(x) for x in np.atleast_1d(axes)))
        elif op == "ConstantOfShape":
            from onnx import numpy_helper

            fill = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
            val = np.full([int(s) for s in ins[0]], fill.reshape(-1)[0], fill.dtype)
        elif op == "Reshape":
            shape = [int(s) for s in ins[1]]
            if not a.get("allowzero", 0):
                shape = [ins[0].shape[k] if s == 0 else s for k, s in enumerate(shape)]
            val = ins[0].reshape(shape)
        elif op == "Transpose":
            val = np.transpose(ins[0], a.get("perm"))
        elif op == "Slice":
            val = _slice_const(ins)
        elif op in ("Add", "Sub", "Mul") and all(x.dtype != object for x in ins):
            val = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op](ins[0], ins[1]).astype(ins[0].dtype)
        else:
            return False
        self.consts[node.output[0]] = np.asarray(val)
        return True

    # ------------------------------------------------------------------ conversion
    def convert(self, node):
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise ValueError(f"{_where(node)}: operator domain {node.domain!r} is not supported")
        data_in = [i for i in node.input if i and i not in self.consts]
        if op == "Shape" and data_in:
            v = self.value(node, 0)
            self.consts[node.output[0]] = np.array([BATCH] + list(v.shape), dtype=object) if v.kind != "dense" \
                else np.array([BATCH, v.w.shape[1]], dtype=object)
            return
        if not data_in and op != "Shape":
            if self.fold(node):
                return
            raise ValueError(f"{_where(node)}: operator {op} on constants is not supported")
        handler = getattr(self, "op_" + op, None)
        if handler is None:
            raise ValueError(f"{_where(node)}: operator {op} is not supported (supported: Conv, "
                             "BatchNormalization, Relu, Clip(0, 6), LeakyRelu, Add, MaxPool, AveragePool, "
                             "GlobalAveragePool, ReduceMean, Flatten, Reshape, Gemm, MatMul, option-A Slice+Pad)")
        if len(node.output) != 1 and op not in ("BatchNormalization", "Dropout", "MaxPool"):
            raise ValueError(f"{_where(node)}: {len(node.output)} outputs, expected 1")
        for extra in node.output[1:]:
            if extra and self.uses.get(extra):
                raise ValueError(f"{_where(node)}: its extra output {extra!r} is used (training mode or indices)")
        out = handler(node, _attrs(node))
        self.values[node.output[0]] = out

    def _name(self, node):
        return node.name or node.output[0]

    def op_Identity(self, node, a):
        return self.value(node, 0)

    def op_Dropout(self, node, a):
        if len(node.input) > 2 and node.input[2] and bool(np.asarray(self.const(node, 2, "training_mode"))):
            raise ValueError(f"{_where(node)}: training_mode is set")
        return self.value(node, 0)

    def op_Conv(self, node, a):
        _check_attrs(node, ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"), a)
        v = self.value(node, 0)
        w = self.const(node, 1, "weight")
        bias = self.const(node, 2, "bias")
        extra_pad = (0, 0, 0, 0)
        if v.kind == "padded":
            extra_pad, v = v.pad, v.src
        src = self.materialize(v, node)
        if len(v.shape) != 3:
            raise ValueError(f"{_where(node)}: input is not an (N, C, H, W) feature map")
        if w.ndim != 4:
            raise ValueError(f"{_where(node)}: weight of shape {w.shape}: only 2-D convolutions are supported")
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
            raise ValueError(f"{_where(node)}: auto_pad {a['auto_pad']!r} is not supported (explicit pads only)")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise ValueError(f"{_where(node)}: dilations {list(a['dilations'])} are not supported (only 1)")
        strides = list(a.get("strides", [1, 1]))
        if len(set(strides)) != 1:
            raise ValueError(f"{_where(node)}: strides {strides} differ (only equal strides are supported)")
        if "kernel_shape" in a and list(a["kernel_shape"]) != list(w.shape[2:]):
            raise ValueError(f"{_where(node)}: kernel_shape {list(a['kernel_shape'])} differs from the weight "
                             f"{list(w.shape[2:])}")
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if a.get("auto_pad") in (b"VALID", "VALID"):
            pads = [0, 0, 0, 0]
        if len(pads) != 4 or min(pads) < 0:
            raise ValueError(f"{_where(node)}: pads {pads} not supported")
        pad = (pads[0] + extra_pad[0], pads[2] + extra_pad[1], pads[1] + extra_pad[2], pads[3] + extra_pad[3])
        group = int(a.get("group", 1))
        cin, (h, wd) = v.shape[0], v.shape[1:]
        o = w.shape[0]
        w = np.asarray(w)
        if w.dtype != np.float32:
            raise ValueError(f"{_where(node)}: weight dtype {w.dtype}, expected float32")
        if group == 1:
            if w.shape[1] != cin:
                raise ValueError(f"{_where(node)}: weight has {w.shape[1]} input channels, the input {cin}")
            wt, depthwise = np.transpose(w, (2, 3, 1, 0)), False                         # OIHW -> HWIO
        elif group == cin and o == cin and w.shape[1] == 1:
            wt, depthwise = np.ascontiguousarray(np.transpose(w[:, 0], (1, 2, 0))), True  # (C,1,kh,kw) -> (kh,kw,C)
        else:
            raise ValueError(f"{_where(node)}: group {group} with weight {w.shape} (input {cin} channels): only "
                             "group 1 or depthwise (group = channels, one filter each) is supported")
        if bias is not None:
            bias = np.asarray(bias)
            if bias.shape != (o,) or bias.dtype != np.float32:
                raise ValueError(f"{_where(node)}: bias of shape {bias.shape} {bias.dtype}, expected ({o},) float32")
        kh, kw = w.shape[2:]
        s = strides[0]
        ho, wo = (h + pad[0] + pad[1] - kh) // s + 1, (wd + pad[2] + pad[3] - kw) // s + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"{_where(node)}: empty output for input {h}x{wd}")
        name = self.add(self._name(node), "conv", (src,), {"w": wt, "stride": s, "pad": pad, "depthwise": depthwise})
        return _Value("conv", (o, ho, wo), name, bias=bias, bn=None, onnx_out=node.output[0])

    def op_BatchNormalization(self, node, a):
        _check_attrs(node, ("epsilon", "momentum", "training_mode", "spatial"), a)
        if a.get("training_mode", 0) or a.get("spatial", 1) != 1:
            raise ValueError(f"{_where(node)}: training_mode / spatial=0 are not supported")
        v = self.value(node, 0)
        if v.kind != "conv" or v.bn is not None or not self.single_use(v.onnx_out):
            raise ValueError(f"{_where(node)}: BatchNormalization must directly follow a Conv whose output it "
                             "alone reads (fxbn folds BN into the conv's integer accumulator)")
        params = [np.asarray(self.const(node, i, what)) for i, what in
                  enumerate(("scale", "B", "mean", "var"), start=1)]
        ch = v.shape[0]
        for p, what in zip(params, ("scale", "B", "mean", "var")):
            if p.shape != (ch,) or p.dtype.kind != "f" or not np.all(np.isfinite(p)):
                raise ValueError(f"{_where(node)}: {what} must be {ch} finite floats, got {p.shape} {p.dtype}")
        # ONNX stores epsilon as float32: the exporter's decimal (1e-5, 1e-3) is the shortest one that rounds to it
        bn = importers.BatchNormParams(*params, eps=float(str(np.float32(a.get("epsilon", 1e-5)))))
        if v.bias is not None:
            bn = importers.fold_conv_bias(bn, v.bias, exact=False)
        v.bn = self.add(self._name(node), "bn", (v.node,), {"bn": bn, "act": None})
        return _Value("node", v.shape, v.bn)

    def _fuse(self, node, act):
        v = self.value(node, 0)
        name = node.input[0]
        if v.kind == "conv":
            if not self.single_use(v.onnx_out):
                raise ValueError(f"{_where(node)}: its input is also used elsewhere (cannot fuse the activation)")
            self.materialize(v, node)
            v = _Value("node", v.shape, v.bn)
        if v.kind != "node":
            self.materialize(v, node)
        target = next(n for n in self.nodes if n.name == v.node)
        if not self.single_use(name):
            raise ValueError(f"{_where(node)}: its input {name!r} is also used elsewhere: the activation cannot "
                             "be fused into the layer before it")
        if target.op == "bn" and target.attrs["act"] is None:
            target.attrs["act"] = act
        elif target.op == "add" and act == "relu" and not target.attrs.get("relu"):
            target.attrs["relu"] = True
        else:
            raise ValueError(f"{_where(node)}: an activation is supported only right after BatchNormalization / a "
                             f"Conv (Relu also after Add), not after {target.op!r}")
        return _Value("node", v.shape, target.name)

    def op_Relu(self, node, a):
        _check_attrs(node, (), a)
        return self._fuse(node, "relu")

    def op_LeakyRelu(self, node, a):
        _check_attrs(node, ("alpha",), a)
        alpha = float(str(np.float32(a.get("alpha", 0.01))))      # the float32 attribute's decimal (0.1)
        if not 0 < alpha < 1:
            raise ValueError(f"{_where(node)}: alpha {alpha} outside (0, 1)")
        return self._fuse(node, ("leaky", alpha))

    def op_Clip(self, node, a):
        _check_attrs(node, ("min", "max"), a)
        lo = a.get("min", None)
        hi = a.get("max", None)
        if len(node.input) > 1 and node.input[1]:
            lo = float(np.asarray(self.const(node, 1, "min")))
        if len(node.input) > 2 and node.input[2]:
            hi = float(np.asarray(self.const(node, 2, "max")))
        if lo == 0 and hi == 6:
            return self._fuse(node, "relu6")
        if lo == 0 and (hi is None or hi == np.inf):
            return self._fuse(node, "relu")
        raise ValueError(f"{_where(node)}: Clip({lo}, {hi}) is not supported (only Clip(0, 6) and Clip(0))")

    def op_Add(self, node, a):
        names = list(node.input)
        if len(names) != 2:
            raise ValueError(f"{_where(node)}: expected 2 inputs")
        consts = [n in self.consts for n in names]
        if all(consts):
            raise AssertionError("folded before")
        if any(consts):
            data = names[consts.index(False)]
            v = self.value(node, consts.index(False))
            bias = np.asarray(self.consts[names[consts.index(True)]])
            open_conv = v.kind == "conv" and v.bias is None and v.bn is None
            open_dense = v.kind == "dense" and v.bias is None and v.dense is None
            if not (open_conv or open_dense):
                raise ValueError(f"{_where(node)}: adding a constant is supported only as the bias of a Conv or "
                                 "MatMul (without a bias yet)")
            ch = v.shape[0]
            shapes = ((ch,), (1, ch)) if open_dense else ((ch, 1, 1), (1, ch, 1, 1))
            if bias.shape not in shapes or bias.dtype != np.float32:
                raise ValueError(f"{_where(node)}: constant {bias.shape} {bias.dtype} is not a per-channel float32 "
                                 "bias")
            if not self.single_use(data):
                raise ValueError(f"{_where(node)}: the tensor it biases is also used elsewhere")
            v.bias = bias.reshape(-1).copy()
            if open_conv:
                v.onnx_out = node.output[0]
            return v
        v1, v2 = self.value(node, 0), self.value(node, 1)
        if v1.shape != v2.shape or len(v1.shape) != 3:
            raise ValueError(f"{_where(node)}: shapes {v1.shape} and {v2.shape}: only same-shape feature maps "
                             "are added (no broadcasting)")
        s1, s2 = self.materialize(v1, node), self.materialize(v2, node)
        return _Value("node", v1.shape, self.add(self._name(node), "add", (s1, s2), {"relu": False}))

    def op_MaxPool(self, node, a):
        _check_attrs(node, ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order",
                            "strides"), a)
        v = self.value(node, 0)
        src = self.materialize(v, node)
        if a.get("ceil_mode", 0):
            raise ValueError(f"{_where(node)}: ceil_mode=1 is not supported")
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
            raise ValueError(f"{_where(node)}: auto_pad {a['auto_pad']!r} is not supported (explicit pads only)")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise ValueError(f"{_where(node)}: dilations {list(a['dilations'])} are not supported (only 1)")
        k = list(a["kernel_shape"])
        strides = list(a.get("strides", [1, 1]))
        pads = [0, 0, 0, 0] if a.get("auto_pad") in (b"VALID", "VALID") else list(a.get("pads", [0, 0, 0, 0]))
        if len(set(k)) != 1 or len(set(strides)) != 1:
            raise ValueError(f"{_where(node)}: kernel {k} / strides {strides}: only square kernels and equal "
                             "strides are supported")
        if max(pads) >= k[0]:
            raise ValueError(f"{_where(node)}: pads {pads} not smaller than the kernel")
        pad = (pads[0], pads[2], pads[1], pads[3])
        _, h, w = v.shape
        s = strides[0]
        ho, wo = (h + pad[0] + pad[1] - k[0]) // s + 1, (w + pad[2] + pad[3] - k[0]) // s + 1
        name = self.add(self._name(node), "maxpool", (src,), {"k": k[0], "stride": s, "pad": pad})
        return _Value("node", (v.shape[0], ho, wo), name)

    def _gap(self, node, keep):
        v = self.value(node, 0)
        src = self.materialize(v, node)
        if len(v.shape) != 3:
            raise ValueError(f"{_where(node)}: input is not a feature map")
        return _Value("node", (v.shape[0],), self.add(self._name(node), "gap", (src,)), pooled_4d=keep)

    def op_GlobalAveragePool(self, node, a):
        return self._gap(node, True)

    def op_AveragePool(self, node, a):
        _check_attrs(node, ("auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides",
                            "dilations"), a)
        v = self.value(node, 0)
        if len(v.shape) != 3:
            raise ValueError(f"{_where(node)}: input is not an (N, C, H, W) feature map")
        c, h, w = v.shape                   # after a Pad with 0 (older exporters' count_include_pad): padded size
        k = [int(x) for x in a.get("kernel_shape", [])]
        strides = [int(x) for x in a.get("strides", [1, 1])]
        pads = [int(x) for x in a.get("pads", [0, 0, 0, 0])]
        auto_pad = a.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if len(k) != 2 or min(k) < 1 or len(strides) != 2 or min(strides) < 1 or len(pads) != 4 or min(pads) < 0:
            raise ValueError(f"{_where(node)}: kernel_shape {k} / strides {strides} / pads {pads}: a 2-D pooling "
                             "with positive kernel and strides and non-negative pads is expected")
        if a.get("ceil_mode", 0):
            raise ValueError(f"{_where(node)}: ceil_mode=1 is not supported")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise ValueError(f"{_where(node)}: dilations {list(a['dilations'])} are not supported (only 1)")
        if auto_pad == "VALID":
            pads = [0, 0, 0, 0]
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):   # output ceil(in / stride); the odd pad at the end / start
            pads = [0, 0, 0, 0]
            for ax, size in enumerate((h, w)):
                total = max((-(-size // strides[ax]) - 1) * strides[ax] + k[ax] - size, 0)
                small, big = total // 2, total - total // 2
                pads[ax], pads[ax + 2] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
        elif auto_pad != "NOTSET":
            raise ValueError(f"{_where(node)}: auto_pad {auto_pad!r} is not supported")
        cip = bool(a.get("count_include_pad", 0))
        if v.kind == "padded":              # Pad(0) + AveragePool: zeros that count, i.e. count_include_pad padding
            if any(pads) and not cip:
                raise ValueError(f"{_where(node)}: a Pad before an AveragePool with its own pads and "
                                 "count_include_pad=0 is not supported")
            t, bt, l, r = v.pad
            pads = [pads[0] + t, pads[1] + l, pads[2] + bt, pads[3] + r]
            cip, v = True, v.src
            c, h, w = v.shape
        if k == [h, w] and not any(pads):
            return self._gap(node, True)               # the whole feature map: global average pooling
        if pads[0] >= k[0] or pads[2] >= k[0] or pads[1] >= k[1] or pads[3] >= k[1]:
            raise ValueError(f"{_where(node)}: pads {pads} not smaller than the kernel {k}")
        pad = (pads[0], pads[2], pads[1], pads[3])
        ho, wo = (h + pad[0] + pad[1] - k[0]) // strides[0] + 1, (w + pad[2] + pad[3] - k[1]) // strides[1] + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"{_where(node)}: empty output for input {h}x{w}")
        src = self.materialize(v, node)
        name = self.add(self._name(node), "avgpool", (src,),
                        {"kernel": tuple(k), "stride": tuple(strides), "pad": pad,
                         "count_include_pad": cip})
        return _Value("node", (c, ho, wo), name)

    def op_ReduceMean(self, node, a):
        _check_attrs(node, ("axes", "keepdims", "noop_with_empty_axes"), a)
        axes = a.get("axes")
        if len(node.input) > 1 and node.input[1]:
            axes = self.const(node, 1, "axes")
        if axes is None or sorted(int(x) % 4 for x in np.atleast_1d(axes)) != [2, 3]:
            raise ValueError(f"{_where(node)}: only a mean over H and W (axes 2, 3) is supported")
        return self._gap(node, bool(a.get("keepdims", 1)))

    def _flat(self, node, v):
        if v.kind == "node" and len(v.shape) == 1:
            return _Value("node", v.shape, v.node, pooled_4d=False)
        raise ValueError(f"{_where(node)}: flattening is supported only after global average pooling "
                         f"(got a tensor of shape {v.shape})")

    def op_Flatten(self, node, a):
        _check_attrs(node, ("axis",), a)
        if a.get("axis", 1) != 1:
            raise ValueError(f"{_where(node)}: axis {a['axis']} (only 1)")
        return self._flat(node, self.value(node, 0))

    def op_Squeeze(self, node, a):
        v = self.value(node, 0)
        axes = a.get("axes")
        if len(node.input) > 1 and node.input[1]:
            axes = self.const(node, 1, "axes")
        if axes is None or sorted(int(x) % 4 for x in np.atleast_1d(axes)) != [2, 3]:
            raise ValueError(f"{_where(node)}: only squeezing axes 2, 3 of the pooled tensor is supported")
        return self._flat(node, v)

    def op_Reshape(self, node, a):
        v = self.value(node, 0)
        shape = list(np.asarray(self.const(node, 1, "shape")).reshape(-1))
        if len(v.shape) != 1:
            raise ValueError(f"{_where(node)}: reshaping a feature map of shape {v.shape} is not supported")
        c = v.shape[0]
        ok = False
        if len(shape) == 2 and shape[1] is not BATCH:
            first, second = shape[0], int(shape[1])
            ok = second in (-1, c) and (first is BATCH or (first == 0 and not a.get("allowzero", 0))
                                        or (first == -1 and second == c))
        if not ok:
            raise ValueError(f"{_where(node)}: reshape of the pooled (N, {c}, 1, 1) tensor to {shape}: only a "
                             "flatten to (N, C) is supported")
        return self._flat(node, v)

    def _dense(self, node, v, w, bias):
        if not (v.kind == "node" and len(v.shape) == 1 and not getattr(v, "pooled_4d", False)
                and next(n for n in self.nodes if n.name == v.node).op == "gap"):
            raise ValueError(f"{_where(node)}: a classifier is supported only on the flattened global average pool")
        if w.ndim != 2 or w.shape[0] != v.shape[0] or w.dtype != np.float32:
            raise ValueError(f"{_where(node)}: weight {w.shape} {w.dtype} does not match {v.shape[0]} features")
        if bias is not None:
            bias = np.asarray(bias)
            if bias.size != w.shape[1] or bias.dtype != np.float32 or bias.ndim > 2:
                raise ValueError(f"{_where(node)}: bias {bias.shape} {bias.dtype} is not {w.shape[1]} float32")
            bias = bias.reshape(-1)
        return _Value("dense", (w.shape[1],), None, w=w, bias=bias, dense=None,
                      src=v.node, name=self._name(node))

    def op_Gemm(self, node, a):
        _check_attrs(node, ("alpha", "beta", "transA", "transB"), a)
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            raise ValueError(f"{_where(node)}: transA / alpha != 1 / beta != 1 are not supported")
        w = np.asarray(self.const(node, 1, "B"))
        if a.get("transB", 0):
            w = w.T
        return self._dense(node, self.value(node, 0), w, self.const(node, 2, "C"))

    def op_MatMul(self, node, a):
        return self._dense(node, self.value(node, 0), np.asarray(self.const(node, 1, "weight")), None)

    def op_Slice(self, node, a):
        v = self.value(node, 0)
        starts, ends = (np.asarray(self.const(node, i, w)).reshape(-1) for i, w in ((1, "starts"), (2, "ends")))
        axes = self.const(node, 3, "axes")
        steps = self.const(node, 4, "steps")
        axes = list(range(len(starts))) if axes is None else [int(x) % 4 for x in np.asarray(axes).reshape(-1)]
        steps = [1] * len(starts) if steps is None else [int(x) for x in np.asarray(steps).reshape(-1)]
        if v.kind == "strided":
            base, step = v.src, dict(v.steps)
        else:
            base, step = v, {}
        if len(base.shape) != 3:
            raise ValueError(f"{_where(node)}: slicing is supported only on feature maps")
        dims = {1: base.shape[0], 2: base.shape[1], 3: base.shape[2]}
        for ax, s0, e0, st in zip(axes, starts, ends, steps):
            if ax not in (2, 3) or int(s0) != 0 or st < 1 or int(e0) < dims[ax] or ax in step:
                raise ValueError(f"{_where(node)}: Slice axes {axes} starts {starts.tolist()} ends {ends.tolist()} "
                                 f"steps {steps}: only x[:, :, ::k, ::k] (whole H, W) is supported")
            step[ax] = st
        if all(s == 1 for s in step.values()):
            return base
        return _Value("strided", base.shape, None, src=base, steps=step)

    def op_Pad(self, node, a):
        _check_attrs(node, ("mode",), a)
        if a.get("mode", b"constant") not in (b"constant", "constant"):
            raise ValueError(f"{_where(node)}: mode {a['mode']!r} (only constant)")
        v = self.value(node, 0)
        pads = [int(p) for p in np.asarray(self.const(node, 1, "pads")).reshape(-1)]
        value = self.const(node, 2, "constant_value")
        axes = self.const(node, 3, "axes")
        if value is not None and float(np.asarray(value).reshape(-1)[0]) != 0:
            raise ValueError(f"{_where(node)}: constant_value {float(np.asarray(value))} (only 0)")
        if axes is not None:
            full = [0] * 8
            axes = [int(x) % 4 for x in np.asarray(axes).reshape(-1)]
            for k, ax in enumerate(axes):
                full[ax], full[4 + ax] = pads[k], pads[len(axes) + k]
            pads = full
        if len(pads) != 8 or min(pads) < 0 or pads[0] or pads[4]:
            raise ValueError(f"{_where(node)}: pads {pads} not supported")
        if v.kind == "strided":
            cb, ce = pads[1], pads[5]
            if v.steps != {2: 2, 3: 2} or cb != ce or pads[2] or pads[3] or pads[6] or pads[7]:
                raise ValueError(f"{_where(node)}: only the option-A shortcut (x[:, :, ::2, ::2] padded with the "
                                 f"same number of zero channels on each side) is supported; steps {v.steps}, "
                                 f"pads {pads}")
            src = self.materialize(v.src, node)
            c, h, w = v.src.shape
            name = self.add(self._name(node), "shortcut_a", (src,), {"out_channels": c + 2 * cb})
            return _Value("node", (c + 2 * cb, (h + 1) // 2, (w + 1) // 2), name)
        if pads[1] or pads[5] or len(v.shape) != 3:
            raise ValueError(f"{_where(node)}: padding channels is supported only in the option-A shortcut")
        c, h, w = v.shape
        return _Value("padded", (c, h + pads[2] + pads[6], w + pads[3] + pads[7]), None, src=v,
                      pad=(pads[2], pads[6], pads[3], pads[7]))


def _slice_const(ins):
    data, starts, ends = ins[0], ins[1], ins[2]
    axes = ins[3] if len(ins) > 3 and ins[3] is not None else np.arange(len(starts))
    steps = ins[4] if len(ins) > 4 and ins[4] is not None else np.ones(len(starts), np.int64)
    index = [slice(None)] * data.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        index[int(ax)] = slice(int(s), int(e), int(st))   # Python slicing clamps as ONNX Slice does
    return data[tuple(index)]
