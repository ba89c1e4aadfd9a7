"""A Keras model (topology ``model.json`` + named weight arrays) as an equivalent PyTorch module (needs torch).

The module takes the Keras input layout (NHWC) and computes the same float function in NCHW, so that
:func:`fxbn.importers.calibrate_torch` / :func:`fxbn.importers.from_torch` pair, calibrate and build its BN
layers by data flow, exactly as for a torch model. Module names are the Keras layer names (characters other than
letters, digits and ``_`` become ``_``). Weights keep their float32 values (HWIO kernels transposed to OIHW: the
per-channel weight quantization is the same numbers).

Layers: InputLayer, Conv2D (groups, dilation, fused activation), DepthwiseConv2D (any depth_multiplier),
BatchNormalization (center / scale off), Dense, Activation / ReLU (max_value 6 = ReLU6, also Keras 2.1
``Activation('relu6')``) / LeakyReLU / Softmax, Add, Concatenate, ZeroPadding2D, MaxPooling2D, AveragePooling2D
('same' padding averages the valid elements only, as TensorFlow), GlobalAveragePooling2D, GlobalMaxPooling2D,
Flatten (in NHWC order, so the following Dense weights are used as stored), Dropout. Anything else raises
ValueError naming the layer and its class.
"""
import json
import re

import numpy as np

_ACTIVATIONS = {"linear": None, None: None, "relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid",
                "tanh": "tanh", "softmax": "softmax", "swish": "silu", "silu": "silu", "elu": "elu", "selu": "selu",
                "hard_sigmoid": "hardsigmoid", "hard_swish": "hardswish", "hard_silu": "hardswish", "gelu": "gelu",
                "softplus": "softplus"}


def module_name(keras_name):
    """The torch module name used for Keras layer `keras_name`."""
    name = re.sub(r"\W", "_", str(keras_name))
    return name if name and not name[0].isdigit() else f"k_{name}"


def _channels_last(name, lc):
    """Layers whose meaning depends on data_format: only channels_last is modelled (the other would be read wrong)."""
    if lc.get("data_format") not in (None, "channels_last"):
        raise ValueError(f"Keras layer {name!r}: data_format {lc['data_format']!r} not supported")


def _same_pad(size, k, stride, dilation=1):
    eff = (k - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def _inbound(layer):
    """Names of the layers feeding `layer` (Keras 2 lists and Keras 3 keras_history dicts)."""
    nodes = layer.get("inbound_nodes") or []
    if not nodes:
        return []
    node = nodes[0]
    if isinstance(node, list):
        return [entry[0] for entry in node]
    found = []

    def walk(obj):
        if isinstance(obj, dict):
            hist = obj.get("config", {}).get("keras_history") if obj.get("class_name") == "__keras_tensor__" else None
            if hist:
                found.append(hist[0])
                return
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    walk(node.get("args", []))
    return found


def _pair(v):
    return (int(v), int(v)) if isinstance(v, (int, float)) else (int(v[0]), int(v[1]))


def keras_to_torch(model_json, arrays, input_shape=None):
    """An ``nn.Module`` computing the Keras model's float function on NHWC input, in eval mode.

    Parameters
    ----------
    model_json : dict or str
        The parsed topology (``model.to_json()``), or its path.
    arrays : mapping
        Weights named ``<layer>/<weight>`` or ``<layer>/<layer>/<weight>:0`` (e.g. ``np.load("X.npz")``).
    input_shape : (height, width, channels), optional
        Needed when the topology leaves the input size open.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    if isinstance(model_json, (str, bytes)) or hasattr(model_json, "read_text"):
        with open(model_json, "rb") as f:
            model_json = json.loads(f.read().decode("utf-8"))
    cfg = model_json.get("model_config", model_json)
    if not isinstance(cfg, dict) or "config" not in cfg:
        raise ValueError("not a Keras model topology (expected model_config.config.layers)")
    sequential = cfg.get("class_name") == "Sequential"
    layers = cfg["config"]["layers"] if isinstance(cfg["config"], dict) else cfg["config"]

    def weight(layer, w, required=True):
        for key in (f"{layer}/{w}", f"{layer}/{layer}/{w}:0", f"{layer}/{w}:0"):
            if key in arrays:
                return np.asarray(arrays[key], np.float32)
        if required:
            raise ValueError(f"Keras layer {layer!r}: weight {w!r} not found (tried '{layer}/{w}' and "
                             f"'{layer}/{layer}/{w}:0')")
        return None

    class KerasModule(nn.Module):
        def __init__(self):
            super().__init__()
            self.ops = []           # (name, kind, inputs, extra)

        def forward(self, x):
            vals = {}
            for name, kind, inputs, extra in self.ops:
                args = [vals[i] for i in inputs]
                if kind == "input":
                    v = x.permute(0, 3, 1, 2)
                elif kind == "module":
                    v = getattr(self, extra)(args[0])
                elif kind == "pad":
                    v = F.pad(args[0], extra[0], value=extra[1])
                elif kind == "avgpool_same":
                    (pads, k, stride, count) = extra
                    s = F.avg_pool2d(F.pad(args[0], pads), k, stride, divisor_override=1)
                    v = s / getattr(self, count)
                elif kind == "add":
                    v = args[0]
                    for a in args[1:]:
                        v = v + a
                elif kind == "concat":
                    v = torch.cat(args, 1)
                elif kind == "flatten":
                    v = torch.flatten(args[0].permute(0, 2, 3, 1) if extra == 3 else args[0], 1)
                elif kind == "gap":
                    v = args[0].mean(dim=(2, 3))
                elif kind == "gmp":
                    v = args[0].amax(dim=(2, 3))
                elif kind == "softmax":
                    v = torch.softmax(args[0], 1)
                else:   # "identity"
                    v = args[0]
                vals[name] = v
            out = vals[self.output]
            return out.permute(0, 2, 3, 1) if self.output_rank == 3 else out

    m = KerasModule()
    shapes = {}         # keras name -> (C, H, W) or (features,)
    alias = {}          # keras name -> op name carrying its value
    prev = None

    def act_module(name, act, where):
        """Register an activation module after `name` (returns its op name) or None for linear."""
        if act not in _ACTIVATIONS:
            raise ValueError(f"Keras layer {where!r}: activation {act!r} not supported")
        kind = _ACTIVATIONS[act]
        if kind is None:
            return None
        if kind == "softmax":
            return ("softmax", None)
        mod = {"relu": nn.ReLU(), "relu6": nn.ReLU6(), "sigmoid": nn.Sigmoid(), "tanh": nn.Tanh(), "silu": nn.SiLU(),
               "elu": nn.ELU(), "selu": nn.SELU(), "hardsigmoid": nn.Hardsigmoid(), "hardswish": nn.Hardswish(),
               "gelu": nn.GELU(), "softplus": nn.Softplus()}[kind]
        return ("module", mod)

    def add_module_op(op_name, mod, src):
        mname = module_name(op_name)
        if hasattr(m, mname):
            raise ValueError(f"Keras layer names {op_name!r} collide as torch module {mname!r}")
        m.add_module(mname, mod)
        m.ops.append((op_name, "module", [src], mname))

    def emit_activation(name, act, src):
        a = act_module(name, act, name)
        if a is None:
            return src
        op = f"{name}__{_ACTIVATIONS[act]}"
        if a[0] == "softmax":
            m.ops.append((op, "softmax", [src], None))
        else:
            add_module_op(op, a[1], src)
        return op

    for layer in layers:
        cls, lc = layer["class_name"], layer.get("config", {})
        name = layer.get("name", lc.get("name"))
        if cls == "InputLayer":
            shape = lc.get("batch_input_shape") or lc.get("batch_shape")
            hwc = tuple(input_shape) if input_shape is not None else tuple(shape[1:])
            if len(hwc) != 3 or any(v is None for v in hwc):
                raise ValueError(f"input {name!r} has shape {shape}: pass input_shape=(height, width, channels)")
            m.ops.append((name, "input", [], None))
            alias[name], shapes[name] = name, (hwc[2], hwc[0], hwc[1])
            prev = name
            continue
        srcs = [alias[s] for s in _inbound(layer)] if not sequential else ([prev] if prev else [])
        if sequential and prev is None:
            shape = lc.get("batch_input_shape") or lc.get("batch_shape")
            if shape is None and input_shape is None:
                raise ValueError("Sequential model without batch_input_shape: pass input_shape")
            hwc = tuple(input_shape) if input_shape is not None else tuple(shape[1:])
            m.ops.append(("input", "input", [], None))
            shapes["input"] = (hwc[2], hwc[0], hwc[1])
            srcs = ["input"]
        if not srcs:
            raise ValueError(f"Keras layer {name!r} ({cls}) has no inbound layer")
        src = srcs[0]
        shp = shapes[src]
        out = name
        if cls in ("Conv2D", "DepthwiseConv2D"):
            kh, kw = _pair(lc["kernel_size"])
            sh, sw = _pair(lc.get("strides", 1))
            dh, dw = _pair(lc.get("dilation_rate", 1))
            if lc.get("data_format", "channels_last") != "channels_last":
                raise ValueError(f"Keras layer {name!r}: data_format {lc['data_format']!r} not supported")
            cin, h, w = shp
            if cls == "DepthwiseConv2D":
                k = weight(name, "depthwise_kernel")            # (kh, kw, C, multiplier)
                dm = k.shape[3]
                wt = k.transpose(2, 3, 0, 1).reshape(cin * dm, 1, kh, kw)
                cout, groups = cin * dm, cin
            else:
                k = weight(name, "kernel")                      # (kh, kw, C/groups, filters)
                groups = int(lc.get("groups", 1))
                wt = k.transpose(3, 2, 0, 1)
                cout = k.shape[3]
            bias = weight(name, "bias") if lc.get("use_bias", True) else None
            if lc["padding"] == "same":
                (pt, pb), (pl, pr) = _same_pad(h, kh, sh, dh), _same_pad(w, kw, sw, dw)
            elif lc["padding"] == "valid":
                pt = pb = pl = pr = 0
            else:
                raise ValueError(f"Keras layer {name!r}: padding {lc['padding']!r} not supported")
            if (pt, pl) == (pb, pr):
                conv_in, pad = src, (pt, pl)
            else:
                conv_in, pad = f"{name}__pad", (0, 0)
                m.ops.append((conv_in, "pad", [src], ((pl, pr, pt, pb), 0.0)))
            conv = nn.Conv2d(cin, cout, (kh, kw), (sh, sw), pad, (dh, dw), groups, bias=bias is not None)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(wt)))
                if bias is not None:
                    conv.bias.copy_(torch.from_numpy(bias))
            add_module_op(name, conv, conv_in)
            ho = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
            wo = (w + pl + pr - (kw - 1) * dw - 1) // sw + 1
            shapes[name] = (cout, ho, wo)
            out = emit_activation(name, lc.get("activation"), name)
        elif cls == "Dense":
            k = weight(name, "kernel")                          # (in, out)
            bias = weight(name, "bias") if lc.get("use_bias", True) else None
            if len(shp) != 1:
                raise ValueError(f"Keras layer {name!r}: Dense on a {len(shp) + 1}-d tensor (add Flatten or "
                                 "pooling) is not supported")
            lin = nn.Linear(k.shape[0], k.shape[1], bias=bias is not None)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(k.T)))
                if bias is not None:
                    lin.bias.copy_(torch.from_numpy(bias))
            add_module_op(name, lin, src)
            shapes[name] = (k.shape[1],)
            out = emit_activation(name, lc.get("activation"), name)
        elif cls == "BatchNormalization":
            axis = lc.get("axis", -1)
            axis = axis[0] if isinstance(axis, list) else axis
            if axis not in (-1, len(shp)):
                raise ValueError(f"Keras layer {name!r}: BatchNormalization axis {axis} (only the channel axis)")
            c = shp[0]
            scale, center = lc.get("scale", True), lc.get("center", True)
            bn = (nn.BatchNorm2d if len(shp) == 3 else nn.BatchNorm1d)(c, eps=float(lc.get("epsilon", 1e-3)))
            with torch.no_grad():
                bn.weight.copy_(torch.from_numpy(weight(name, "gamma")) if scale else torch.ones(c))
                bn.bias.copy_(torch.from_numpy(weight(name, "beta")) if center else torch.zeros(c))
                bn.running_mean.copy_(torch.from_numpy(weight(name, "moving_mean")))
                bn.running_var.copy_(torch.from_numpy(weight(name, "moving_variance")))
            add_module_op(name, bn, src)
            shapes[name] = shp
        elif cls in ("Activation", "ReLU", "LeakyReLU", "Softmax"):
            if cls == "Activation":
                out = emit_activation(name, lc["activation"], src)
                if out == src:
                    m.ops.append((name, "identity", [src], None))
                    out = name
            elif cls == "Softmax":
                m.ops.append((name, "softmax", [src], None))
            elif cls == "LeakyReLU":
                alpha = lc.get("alpha", lc.get("negative_slope", 0.3))
                add_module_op(name, nn.LeakyReLU(float(alpha)), src)
            else:
                mx, slope, thr = lc.get("max_value"), lc.get("negative_slope", 0.0), lc.get("threshold", 0.0)
                if slope or thr:
                    raise ValueError(f"Keras layer {name!r}: ReLU with negative_slope/threshold not supported")
                mod = nn.ReLU() if mx is None else (nn.ReLU6() if float(mx) == 6 else nn.Hardtanh(0.0, float(mx)))
                add_module_op(name, mod, src)
            shapes[out] = shapes[name] = shp
        elif cls in ("Add", "Concatenate"):
            if cls == "Concatenate" and lc.get("axis", -1) not in (-1, 3):
                raise ValueError(f"Keras layer {name!r}: Concatenate on axis {lc.get('axis')} not supported")
            m.ops.append((name, "add" if cls == "Add" else "concat", srcs, None))
            shapes[name] = shp if cls == "Add" else (sum(shapes[s][0] for s in srcs),) + tuple(shp[1:])
        elif cls == "ZeroPadding2D":
            p = lc["padding"]
            (t, b), (l, r) = ((p, p), (p, p)) if isinstance(p, int) else \
                ((p[0], p[0]), (p[1], p[1])) if isinstance(p[0], int) else (tuple(p[0]), tuple(p[1]))
            m.ops.append((name, "pad", [src], ((l, r, t, b), 0.0)))
            shapes[name] = (shp[0], shp[1] + t + b, shp[2] + l + r)
        elif cls in ("MaxPooling2D", "AveragePooling2D"):
            _channels_last(name, lc)
            if lc.get("padding", "valid") not in ("valid", "same"):
                raise ValueError(f"Keras layer {name!r}: padding {lc['padding']!r} not supported")
            kh, kw = _pair(lc["pool_size"])
            sh, sw = _pair(lc.get("strides") or lc["pool_size"])
            c, h, w = shp
            if lc.get("padding", "valid") == "same":
                (pt, pb), (pl, pr) = _same_pad(h, kh, sh), _same_pad(w, kw, sw)
            else:
                pt = pb = pl = pr = 0
            if cls == "MaxPooling2D":
                pin = src
                if pt or pb or pl or pr:
                    pin = f"{name}__pad"
                    m.ops.append((pin, "pad", [src], ((pl, pr, pt, pb), float("-inf"))))
                add_module_op(name, nn.MaxPool2d((kh, kw), (sh, sw)), pin)
            elif not (pt or pb or pl or pr):
                add_module_op(name, nn.AvgPool2d((kh, kw), (sh, sw)), src)
            else:       # TensorFlow divides by the number of real (unpadded) elements of each window
                ones = F.pad(torch.ones(1, 1, h, w), (pl, pr, pt, pb))
                count = F.avg_pool2d(ones, (kh, kw), (sh, sw), divisor_override=1)
                cname = module_name(name) + "__count"
                m.register_buffer(cname, count)
                m.ops.append((name, "avgpool_same", [src], ((pl, pr, pt, pb), (kh, kw), (sh, sw), cname)))
            shapes[name] = (c, (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1)
        elif cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
            _channels_last(name, lc)
            if lc.get("keepdims"):
                raise ValueError(f"Keras layer {name!r}: keepdims=True not supported")
            m.ops.append((name, "gap" if cls == "GlobalAveragePooling2D" else "gmp", [src], None))
            shapes[name] = (shp[0],)
        elif cls == "Flatten":
            _channels_last(name, lc)
            m.ops.append((name, "flatten", [src], len(shp)))
            shapes[name] = (int(np.prod(shp)),)
        elif cls in ("Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout"):
            m.ops.append((name, "identity", [src], None))
            shapes[name] = shp
        else:
            raise ValueError(f"Keras layer {name!r}: class {cls} is not supported by fxbn.keras_torch")
        alias[name] = out
        shapes.setdefault(out, shapes[name])
        prev = name
    if sequential:
        m.output = alias[prev]
    else:
        outs = cfg["config"].get("output_layers") or [[prev]]
        if len(outs) != 1:
            raise ValueError(f"models with {len(outs)} outputs are not supported")
        first = outs[0] if isinstance(outs[0], list) else outs
        m.output = alias[first[0]]
    m.output_rank = len(shapes[m.output])
    m.input_chw = next(shapes[op[0]] for op in m.ops if op[1] == "input")
    m.keras_names = {module_name(k): k for k in alias}
    return m.eval()
