"""Model files for ``python -m verify``: Conv/Linear -> BatchNorm pairs of a saved network, built into FixedPointBN
layers with :mod:`fxbn.importers` from an activation-quantization file.

Model files
-----------
- ``X.npz`` of named float arrays with PyTorch state_dict names (``conv1.weight``, ``bn1.running_mean``, ...):
  pairs by :func:`fxbn.importers.state_dict_conv_bn_pairs` (``X.convK`` <-> ``X.bnK``, ``X.conv`` <-> ``X.bn``) and
  the Sequential convention (``P.k`` BN after the ``P.(k-1).weight`` conv/linear of the same channel count).
- ``X.npz`` with Keras names (``<layer>/<weight>`` or ``<layer>/<layer>/<weight>:0``) plus its topology
  ``X.model.json`` beside it: pairs, activations and BN epsilons by :func:`fxbn.importers.keras_conv_bn_pairs`.
  Without a topology the naming convention ``X_bn`` <-> ``X`` is used (Keras MobileNet).
- ``X.onnx``: a float ONNX model, read by :func:`fxbn.onnx.importer.import_onnx` (needs onnx): every Conv -> BN of
  its graph (a Conv with no BN after it -- BN folded by the exporter -- pairs with an identity BN carrying the conv
  bias), named as the importer names the graph nodes (``python -m fxbn.onnx quantize --activations`` writes the
  matching activations file). The normalisation does not matter for these layers; symbolic H, W are taken as 224.
- ``X.pt`` / ``X.pth``: a torch state_dict (``torch.load(weights_only=True)``; needs torch). ``{"state_dict": ...}``
  wrappers and a ``module.`` prefix (DataParallel) are unwrapped.

Weights are quantized per channel (symmetric int8) exactly as the importers and ``experiments/`` do; a conv bias is
folded into the BN mean (rounded to float64 when that is inexact, as ``experiments/`` does: the layer's reference
is then that of the folded BN, and ``bias_fold_exact`` says so).

Activations file (``--activations FILE.json``)
----------------------------------------------
A model file has weights but no activation quantization. Schema (``null`` qmin/qmax: the dtype's range)::

    {"format": "fxbn.activations", "version": 1,
     "rounding": "half_up",                         # optional (default half_up, as the importers)
     "eps": 1e-05,                                  # optional (default: topology, else PyTorch 1e-5 / Keras 1e-3)
     "style": "torch",                              # optional: "torch", "keras" or "keras_tf" array names
     "solver_options": {"acc_bits": 64, "max_multiplier_bits": null, "common_shift": false},   # optional
     "layers": {
       "bn1": {                                     # BN layer name (state_dict prefix / Keras layer name)
         "conv": "conv1",                           # optional: checked against the pair found
         "in":  {"scale": 0.0207, "zero_point": -9, "dtype": "int8", "qmin": -128, "qmax": 127},
         "out": {"scale": 0.0412, "zero_point": -128, "dtype": "int8"},
         "relu": true,                              # optional: false, true, "relu6" or ["leaky", alpha]
         "eps": 1e-05, "rounding": "half_up"}}}     # optional per-layer overrides

``in`` is the quantization of the convolution's input activation with its integer range [qmin, qmax] (e.g.
[zero_point, 127] after a ReLU): the BN input is the exact accumulator sum(w_q * (a_q - zero_point)) and its
range the exact bound over that activation range. ``out`` is the BN (+ activation) output's quantization; its
qmin/qmax, when narrower than the dtype, become the output clamp. Command-line ``--eps`` / ``--rounding`` override
the file. ``python -m verify MODEL --write-activations-template OUT.json`` writes this file with every BN pair of
the model and null scales; ``experiments.activations`` writes it from a calibrated experiments graph.

Files written by ``python -m fxbn.calibrate`` / ``fxbn.importers.calibrate_torch`` record the traced data flow:
``"conv"`` of each conv -> BN layer, and ``"kind": "affine"`` with ``"input"`` (the node it reads) for a BN on a
quantized activation (pre-activation blocks, DenseNet), whose ``in`` is that activation's quantization; the layer
is then built on it (int8 input). :func:`apply_data_flow` lets that pairing override the state_dict naming
convention.
"""
import json
import math
import os
import re

import numpy as np

from fxbn import importers
from fxbn.api import DTYPE_RANGES, InfeasibleError

ACTIVATIONS_FORMAT = "fxbn.activations"
ROUNDINGS = ("half_even", "half_up", "half_away", "floor")
DEFAULT_ROUNDING = "half_up"
DEFAULT_EPS = {"torch": 1e-5, "keras": 1e-3, "keras_tf": 1e-3}
TORCH_SUFFIXES = (".pt", ".pth")
ONNX_SUFFIXES = (".onnx",)
_TOP_KEYS = {"format", "version", "comment", "rounding", "eps", "style", "solver_options", "layers", "model",
             "calibration"}
_LAYER_KEYS = {"conv", "in", "out", "relu", "eps", "rounding", "channels", "comment", "kind", "input"}
_ACT_KEYS = {"scale", "zero_point", "dtype", "qmin", "qmax"}
_SOLVER_KEYS = {"acc_bits", "max_multiplier_bits", "common_shift"}


class ModelError(ValueError):
    """A model or activations file that cannot be used (the command line reports it as a usage error)."""


# ---------------------------------------------------------------------------------------------- model files
class Pair:
    """One Conv/Linear -> BN pair: names of its arrays and what the model file says about it."""

    def __init__(self, bn, conv, weight, weight_axis, bias=None, relu=None, eps=None, depthwise_keras=False):
        self.bn, self.conv, self.weight, self.weight_axis = bn, conv, weight, weight_axis
        self.bias, self.relu, self.eps, self.depthwise_keras = bias, relu, eps, depthwise_keras


class Model:
    """A model file: its named arrays, array naming style and Conv -> BN pairs (in file order)."""

    def __init__(self, path, arrays, style, pairs, topology=None, skipped=()):
        self.path, self.arrays, self.style, self.pairs = str(path), arrays, style, list(pairs)
        self.topology, self.skipped = topology, list(skipped)
        self.affine = []        # BNs on a quantized activation (recorded by a data-flow calibration)

    @property
    def name(self):
        base = os.path.basename(self.path)
        return base.split(".")[0] or base

    def bn_names(self):
        return [p.bn for p in self.pairs] + list(self.affine)


def topology_path(npz_path):
    """``X.model.json`` beside ``X.npz`` (None when absent)."""
    root = str(npz_path)[: -len(".npz")] if str(npz_path).endswith(".npz") else str(npz_path)
    cand = root + ".model.json"
    return cand if os.path.isfile(cand) else None


def _is_keras_topology(obj):
    if not isinstance(obj, dict):
        return False
    cfg = obj.get("model_config", obj)
    return isinstance(cfg, dict) and isinstance(cfg.get("config"), dict) and "layers" in cfg["config"]


def is_model_file(path):
    """Whether `path` is a model file (rather than a saved FixedPointBN): a .pt/.pth, an .npz without fxbn's
    ``meta`` entry, or a Keras topology .json."""
    path = str(path)
    low = path.lower()
    if low.endswith(TORCH_SUFFIXES + ONNX_SUFFIXES):
        return True
    if low.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as z:
                return "meta" not in z.files
        except Exception:       # not a readable npz: let the layer loader report it
            return False
    if low.endswith(".json"):
        try:
            with open(path, "rb") as f:
                obj = json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError, RecursionError):
            return False
        return isinstance(obj, dict) and obj.get("format") != "fxbn.FixedPointBN" and _is_keras_topology(obj)
    return False


def _npz_arrays(path):
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: cannot read as .npz of named arrays ({e})") from None
    bad = []
    arrays = {}
    for name in z.files:
        try:
            arrays[name] = z[name]
        except ValueError:      # object arrays need pickles: not a plain array file
            bad.append(name)
    z.close()
    if bad:
        raise ModelError(f"{path}: entries {', '.join(bad[:3])} are not plain numeric arrays")
    return arrays


def _torch_arrays(path):
    try:
        import torch
    except ImportError:
        raise ModelError(f"{path}: reading a .pt/.pth state_dict needs torch (pip install torch), or save it as "
                         f".npz: np.savez(OUT, **{{k: v.numpy() for k, v in model.state_dict().items()}})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:          # pickles of whole modules are refused by weights_only=True
        raise ModelError(f"{path}: torch.load(weights_only=True) failed: {str(e).splitlines()[0][:300]} "
                         "(save model.state_dict(), not the module)") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: not a state_dict (got {type(obj).__name__}); save model.state_dict()")
    arrays = {}
    for k, v in obj.items():
        if torch.is_tensor(v):
            v = v.detach().cpu()
            if v.dtype == torch.bfloat16:
                v = v.float()           # exact: every bfloat16 is a float32
            arrays[str(k)] = v.numpy()
    if arrays and all(k.startswith("module.") for k in arrays):
        arrays = {k[len("module."):]: v for k, v in arrays.items()}
    return arrays


def detect_style(names):
    """"torch", "keras" or "keras_tf" from the BN array names (None: no BN arrays)."""
    names = list(names)
    if any(n.endswith(".running_mean") for n in names):
        return "torch"
    if any(re.fullmatch(r"(.+)/\1/moving_mean:0", n) for n in names):
        return "keras_tf"
    if any(n.endswith("/moving_mean") for n in names):
        return "keras"
    return None


def _bn_prefixes(names, style):
    suffix = {"torch": ".running_mean", "keras": "/moving_mean", "keras_tf": "/moving_mean:0"}[style]
    out = []
    for n in names:
        if n.endswith(suffix):
            p = n[: -len(suffix)]
            if style == "keras_tf":
                head, _, tail = p.partition("/")
                if head != tail:
                    continue
                p = head
            out.append(p)
    return out


def _keras_key(style, layer, weight):
    return f"{layer}/{weight}" if style == "keras" else f"{layer}/{layer}/{weight}:0"


def _torch_pairs(arrays):
    names = list(arrays)
    found = {bn: conv for conv, bn in importers.state_dict_conv_bn_pairs(names)}
    pairs, skipped = [], []
    for bn in _bn_prefixes(names, "torch"):
        conv_w = found.get(bn)
        if conv_w is None:      # nn.Sequential: BN "P.k" right after the conv/linear "P.(k-1)"
            head, _, last = bn.rpartition(".")
            if last.isdigit() and int(last) > 0:
                cand = f"{head}.{int(last) - 1}.weight" if head else f"{int(last) - 1}.weight"
                g = arrays.get(f"{bn}.weight", arrays.get(f"{bn}.running_mean"))
                w = arrays.get(cand)
                if w is not None and np.ndim(w) >= 2 and g is not None and np.shape(w)[0] == np.shape(g)[0]:
                    conv_w = cand
        if conv_w is None:
            skipped.append(bn)
            continue
        conv = conv_w[: -len(".weight")]
        pairs.append(Pair(bn, conv, conv_w, 0, bias=f"{conv}.bias" if f"{conv}.bias" in arrays else None))
    return pairs, skipped


def _keras_weight(arrays, style, conv, cls):
    if cls == "DepthwiseConv2D":
        return _keras_key(style, conv, "depthwise_kernel"), 2, True
    key = _keras_key(style, conv, "kernel")
    return key, (1 if cls == "Dense" else 3), False


def _keras_pairs(arrays, style, topology):
    if topology is None:        # naming convention X_bn <-> X (Keras MobileNet)
        pairs, skipped = [], []
        for bn in _bn_prefixes(arrays, style):
            conv = bn[: -len("_bn")] if bn.endswith("_bn") else None
            pair = None
            for cls in ("Conv2D", "DepthwiseConv2D"):
                key, axis, dw = _keras_weight(arrays, style, conv, cls) if conv else (None, 0, False)
                if key in arrays:
                    bias = _keras_key(style, conv, "bias")
                    pair = Pair(bn, conv, key, axis, bias=bias if bias in arrays else None, depthwise_keras=dw)
                    break
            if pair is None:
                skipped.append(bn)
            else:
                pairs.append(pair)
        return sorted(pairs, key=lambda p: [(int(t) if t.isdigit() else t) for t in re.split(r"(\d+)", p.bn)]), \
            skipped
    with open(topology, "rb") as f:
        model_json = json.loads(f.read().decode("utf-8"))
    if not _is_keras_topology(model_json):
        raise ModelError(f"{topology}: not a Keras model topology (no model_config.config.layers)")
    try:
        layers = {layer["name"]: layer for layer in model_json.get("model_config", model_json)["config"]["layers"]}
        triples = importers.keras_conv_bn_pairs(model_json)
    except (KeyError, IndexError, TypeError) as e:
        raise ModelError(f"{topology}: malformed Keras topology ({type(e).__name__}: {e})") from None
    paired = {bn for _, bn, _ in triples}
    skipped = [name for name, layer in layers.items() if layer["class_name"] == "BatchNormalization"
               and name not in paired]
    pairs = []
    for conv, bn, act in triples:
        cfg_conv, cfg_bn = layers[conv]["config"], layers[bn]["config"]
        key, axis, dw = _keras_weight(arrays, style, conv, layers[conv]["class_name"])
        relu = {"relu": True, "relu6": "relu6", None: False}.get(act, act)
        bias = _keras_key(style, conv, "bias") if cfg_conv.get("use_bias") else None
        eps = cfg_bn.get("epsilon")
        pairs.append(Pair(bn, conv, key, axis, bias=bias, relu=relu, eps=None if eps is None else float(eps),
                          depthwise_keras=dw))
    return pairs, skipped


def load_model(path, style=None):
    """Read a model file (see the module docstring) and find its Conv/Linear -> BN pairs.

    Raises ModelError naming the file when it is unreadable or holds no BN pair.
    """
    path = str(path)
    topology = None
    if path.lower().endswith(ONNX_SUFFIXES):
        return _onnx_model(path)
    if path.lower().endswith(".json"):          # the topology named: its arrays are X.npz beside X.model.json
        topology = path
        root = path[: -len(".model.json")] if path.endswith(".model.json") else path[: -len(".json")]
        path = root + ".npz"
        if not os.path.isfile(path):
            raise ModelError(f"{topology}: Keras topology without its weights {path}")
    elif path.lower().endswith(".npz"):
        topology = topology_path(path)
    if path.lower().endswith(TORCH_SUFFIXES):
        arrays = _torch_arrays(path)
    else:
        arrays = _npz_arrays(path)
    detected = detect_style(arrays)
    style = style or detected
    if style is None:
        raise ModelError(f"{path}: no BatchNorm arrays (expected PyTorch '<bn>.running_mean' or Keras "
                         "'<bn>/moving_mean' names)")
    if style not in DEFAULT_EPS:
        raise ModelError(f"style must be one of {', '.join(DEFAULT_EPS)}, got {style!r}")
    if style == "torch":
        pairs, skipped = _torch_pairs(arrays)
        topology = None
    else:
        pairs, skipped = _keras_pairs(arrays, style, topology)
    if not pairs:
        hint = "" if style == "torch" or topology else f" (Keras names need the topology {path[:-4]}.model.json)"
        raise ModelError(f"{path}: no Conv/Linear -> BatchNorm pair found among {len(arrays)} arrays{hint}")
    for p in pairs:
        if p.eps is None:
            p.eps = DEFAULT_EPS[style]
    return Model(path, arrays, style, pairs, topology, skipped)


def _onnx_model(path):
    """A float ONNX model's Conv -> BN pairs, through fxbn's ONNX importer (arrays named as a state_dict)."""
    try:
        import onnx
        from fxbn.onnx.importer import _load, import_onnx
    except ImportError:
        raise ModelError(f"{path}: reading an ONNX model needs onnx (pip install 'fxbn[onnx]')") from None
    try:
        model = _load(path)
        inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim] \
            if len(inputs) == 1 else []
        channels = dims[1] if len(dims) == 4 and dims[1] else 3
        size = None if len(dims) == 4 and dims[2] and dims[3] else 224
        graph = import_onnx(model, [0.0] * channels, [1.0] * channels, size=size)
    except ValueError as e:
        raise ModelError(f"{path}: {e}") from None
    del onnx
    arrays, pairs = {}, []
    for node in graph.bn_nodes():
        conv = graph.by_name[node.src[0]]
        bn = node.attrs["bn"]
        for k, field in zip(("weight", "bias", "running_mean", "running_var"), ("gamma", "beta", "mean", "var")):
            arrays[f"{node.name}.{k}"] = np.asarray(getattr(bn, field))
        w = np.asarray(conv.attrs["w"])
        arrays[f"{conv.name}.weight"] = w
        act = node.attrs["act"]
        relu = {None: False, "relu": True, "relu6": "relu6"}[act] if not isinstance(act, tuple) else tuple(act)
        pairs.append(Pair(node.name, conv.name, f"{conv.name}.weight", w.ndim - 1, relu=relu, eps=float(bn.eps)))
    if not pairs:
        raise ModelError(f"{path}: no Conv -> BatchNorm pair in the ONNX graph")
    return Model(path, arrays, "torch", pairs)


# ---------------------------------------------------------------------------------------------- activations
def _bn_array_names(style, bn):
    """Array names of (gamma, beta, running mean, running variance) of BN layer `bn`."""
    if style == "torch":
        return [f"{bn}.{w}" for w in ("weight", "bias", "running_mean", "running_var")]
    return [_keras_key(style, bn, w) for w in ("gamma", "beta", "moving_mean", "moving_variance")]


def _bn_channels(model, bn):
    arr = model.arrays.get(_bn_array_names(model.style, bn)[2])
    return None if arr is None or np.ndim(arr) != 1 else int(np.shape(arr)[0])


def activations_template(models):
    """The activations file for `models` with every BN pair and null scales / zero points (to fill in)."""
    layers = {}
    for m in models:
        for p in m.pairs:
            channels = _bn_channels(m, p.bn)
            layers[p.bn] = {
                "conv": p.conv, "channels": channels,
                "in": {"scale": None, "zero_point": None, "dtype": "int8", "qmin": None, "qmax": None},
                "out": {"scale": None, "zero_point": None, "dtype": "int8"},
                "relu": list(p.relu) if isinstance(p.relu, tuple) else (p.relu or False),
                "eps": p.eps,
            }
    return {"format": ACTIVATIONS_FORMAT, "version": 1,
            "comment": "Fill in scale and zero_point of every BN layer's conv input ('in', with its integer range "
                       "qmin/qmax; null = the dtype's range) and BN output ('out'), and 'relu' (false, true, "
                       "'relu6' or ['leaky', alpha]) where the model file does not record it (state_dicts and "
                       "Keras weights without topology do not); see verify/model.py.",
            "model": [m.path for m in models], "rounding": DEFAULT_ROUNDING, "layers": layers}


def load_activations(path):
    """Read and check an activations file (structure only; values are checked when the layers are built)."""
    try:
        with open(path, "rb") as f:
            acts = json.loads(f.read().decode("utf-8"))
    except OSError as e:
        raise ModelError(f"--activations {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise ModelError(f"--activations {path}: not valid JSON ({e})") from None
    if not isinstance(acts, dict) or not isinstance(acts.get("layers"), dict):
        raise ModelError(f"--activations {path}: expected an object with a 'layers' object (BN name -> "
                         "{'in': ..., 'out': ...}); see --write-activations-template")
    if acts.get("format", ACTIVATIONS_FORMAT) != ACTIVATIONS_FORMAT or acts.get("version", 1) != 1:
        raise ModelError(f"--activations {path}: format {acts.get('format')!r} version {acts.get('version')!r}, "
                         f"expected {ACTIVATIONS_FORMAT!r} version 1")
    unknown = set(acts) - _TOP_KEYS
    if unknown:
        raise ModelError(f"--activations {path}: unknown keys {', '.join(sorted(unknown))}")
    for name, entry in acts["layers"].items():
        if not isinstance(entry, dict):
            raise ModelError(f"--activations {path}: layer {name!r} must be an object")
        unknown = set(entry) - _LAYER_KEYS
        if unknown:
            raise ModelError(f"--activations {path}: layer {name!r} has unknown keys {', '.join(sorted(unknown))}")
    acts["_path"] = str(path)
    return acts


def apply_data_flow(models, acts):
    """Let the pairing an activations file records override the model file's naming convention.

    ``fxbn.importers.calibrate_torch`` / ``python -m fxbn.calibrate`` pair BN layers by the traced data flow and
    record it: ``"kind": "affine"`` (the BN reads a quantized activation: pre-activation blocks, DenseNet) and,
    for a conv -> BN layer, ``"conv"``. A state_dict alone only has names (``X.bnK`` <-> ``X.convK``), which is
    wrong for such networks: the recorded pairing wins when the model file has that BN (and that conv's weight).
    """
    for m in models:
        for bn, entry in acts["layers"].items():
            if not isinstance(entry, dict) or (bn not in m.bn_names() and bn not in m.skipped):
                continue
            kind = entry.get("kind", "conv_bn")
            current = next((p for p in m.pairs if p.bn == bn), None)
            if kind == "affine":
                m.pairs = [p for p in m.pairs if p.bn != bn]
                if bn not in m.affine:
                    m.affine.append(bn)
            elif kind == "conv_bn" and m.style == "torch" and isinstance(entry.get("conv"), str):
                conv = entry["conv"]
                if (current is None or current.conv != conv) and f"{conv}.weight" in m.arrays:
                    pair = Pair(bn, conv, f"{conv}.weight", 0,
                                bias=f"{conv}.bias" if f"{conv}.bias" in m.arrays else None)
                    m.pairs = [pair if p.bn == bn else p for p in m.pairs] if current else m.pairs + [pair]
            else:
                continue
            if bn in m.skipped:
                m.skipped.remove(bn)


def uncovered(models, acts):
    """BN names of `models` that `acts` has no entry for (in model order)."""
    have = acts["layers"]
    return [bn for m in models for bn in m.bn_names() if bn not in have]


def _act_quant(acts, bn, side):
    where = f"--activations {acts['_path']}: BN layer {bn!r}: '{side}'"
    entry = acts["layers"][bn].get(side)
    if not isinstance(entry, dict):
        raise ModelError(f"{where} is missing (an object with scale, zero_point, dtype)")
    unknown = set(entry) - _ACT_KEYS
    if unknown:
        raise ModelError(f"{where} has unknown keys {', '.join(sorted(unknown))}")
    scale, zp, dtype = entry.get("scale"), entry.get("zero_point"), entry.get("dtype", "int8")
    if scale is None or zp is None:
        raise ModelError(f"{where}: scale and zero_point must be filled in (got {json.dumps(scale)}, "
                         f"{json.dumps(zp)})")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (math.isfinite(scale) and scale > 0):
        raise ModelError(f"{where}: scale must be a positive finite number, got {scale!r}")
    if dtype not in DTYPE_RANGES:
        raise ModelError(f"{where}: dtype must be one of {', '.join(DTYPE_RANGES)}, got {dtype!r}")
    ints = {}
    for k in ("zero_point", "qmin", "qmax"):
        v = entry.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v)):
            raise ModelError(f"{where}: {k} must be an integer, got {v!r}")
        ints[k] = None if v is None else int(v)
    lo, hi = DTYPE_RANGES[dtype]
    if not lo <= ints["zero_point"] <= hi:
        raise ModelError(f"{where}: zero_point {ints['zero_point']} is outside {dtype} [{lo}, {hi}]")
    try:
        return importers.ActivationQuant(float(scale), ints["zero_point"], dtype, ints["qmin"], ints["qmax"])
    except ValueError as e:
        raise ModelError(f"{where}: {e}") from None


def _relu(value, where):
    if value in (False, True, "relu6", None):
        return bool(value) if value in (None, False, True) else value
    if value == "relu":
        return True
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == "leaky" \
            and isinstance(value[1], (int, float)) and not isinstance(value[1], bool) and 0 < value[1] < 1:
        return ("leaky", float(value[1]))
    raise ModelError(f"{where}: relu must be false, true, 'relu6' or ['leaky', alpha] (0 < alpha < 1), "
                     f"got {value!r}")


# ---------------------------------------------------------------------------------------------- building
def _float_param(arr, what, bn):
    a = np.asarray(arr)
    if a.dtype.kind not in "fiu":
        raise ModelError(f"BN layer {bn!r}: {what} has dtype {a.dtype}, expected floats")
    a = a.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(a.reshape(-1)))
    if bad.size:
        raise ModelError(f"BN layer {bn!r}: {what} is not finite at flat index {bad[0]} "
                         f"({a.reshape(-1)[bad[0]]})")
    return a


def _bn_and_weights(model, pair, eps):
    """(BatchNormParams, float64 weights with the output channels on pair.weight_axis, conv bias or None)."""
    bn = pair.bn
    arrays = model.arrays
    if pair.weight not in arrays:
        raise ModelError(f"BN layer {bn!r}: conv weight array {pair.weight!r} is missing")
    try:
        params = importers.bn_params(arrays, bn, eps, model.style)
    except KeyError as e:
        raise ModelError(str(e.args[0]) if e.args else str(e)) from None
    fields = {}
    for k, array_name in zip(("gamma", "beta", "mean", "var"), _bn_array_names(model.style, bn)):
        a = _float_param(getattr(params, k), f"{k} ({array_name})", bn)
        if a.ndim != 1:
            raise ModelError(f"BN layer {bn!r}: {k} has shape {a.shape}, expected one value per channel")
        fields[k] = np.asarray(getattr(params, k))
    sizes = {k: v.shape[0] for k, v in fields.items()}
    if len(set(sizes.values())) != 1:
        raise ModelError(f"BN layer {bn!r}: parameter lengths differ: "
                         + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    channels = sizes["gamma"]
    neg = np.flatnonzero(np.asarray(fields["var"], np.float64) < 0)
    if neg.size:
        raise ModelError(f"BN layer {bn!r}: running variance of channel {neg[0]} is negative "
                         f"({float(fields['var'][neg[0]])!r})")
    if not (math.isfinite(eps) and eps >= 0):
        raise ModelError(f"BN layer {bn!r}: eps must be finite and >= 0, got {eps!r}")
    w = _float_param(arrays[pair.weight], f"conv weight {pair.weight!r}", bn)
    if pair.depthwise_keras:
        if w.ndim != 4 or w.shape[3] != 1:
            raise ModelError(f"BN layer {bn!r}: depthwise kernel {pair.weight!r} has shape {w.shape}, expected "
                             "(kh, kw, channels, 1) (depth_multiplier > 1 is not supported)")
        w = w[:, :, :, 0]
    if w.ndim < 2 or w.ndim <= pair.weight_axis:
        raise ModelError(f"BN layer {bn!r}: conv weight {pair.weight!r} has shape {w.shape}, expected a "
                         "Conv/Linear weight")
    if w.shape[pair.weight_axis] != channels:
        raise ModelError(f"BN layer {bn!r}: conv weight {pair.weight!r} of shape {w.shape} has "
                         f"{w.shape[pair.weight_axis]} output channels, the BN has {channels}")
    bias = None
    if pair.bias is not None:
        if pair.bias not in arrays:
            raise ModelError(f"BN layer {bn!r}: conv bias array {pair.bias!r} is missing")
        bias = _float_param(arrays[pair.bias], f"conv bias {pair.bias!r}", bn)
        if bias.shape != (channels,):
            raise ModelError(f"BN layer {bn!r}: conv bias {pair.bias!r} has shape {bias.shape}, expected "
                             f"({channels},)")
    return importers.BatchNormParams(fields["gamma"], fields["beta"], fields["mean"], fields["var"], float(eps)), \
        w, bias


def _layer_name(model, bn, prefix):
    return f"{model.name}:{bn}" if prefix else bn


def _affine_layer(model, bn, acts, eps, rounding, top_solver, prefix):
    """A BN recorded as ``"kind": "affine"`` (its input is a quantized activation, not a conv accumulator, as
    found from the data flow by ``fxbn.importers.calibrate_torch``): the layer takes that activation itself."""
    entry = acts["layers"][bn]
    where = f"--activations {acts['_path']}: BN layer {bn!r}"
    act_in, act_out = _act_quant(acts, bn, "in"), _act_quant(acts, bn, "out")
    layer_eps = next((v for v in (eps, entry.get("eps"), acts.get("eps")) if v is not None),
                     DEFAULT_EPS[model.style])
    layer_rounding = rounding or entry.get("rounding") or acts.get("rounding") or DEFAULT_ROUNDING
    if layer_rounding not in ROUNDINGS:
        raise ModelError(f"{where}: rounding must be one of {', '.join(ROUNDINGS)}, got {layer_rounding!r}")
    if isinstance(layer_eps, bool) or not isinstance(layer_eps, (int, float)) or not math.isfinite(layer_eps) \
            or layer_eps < 0:
        raise ModelError(f"{where}: eps must be a finite number >= 0, got {layer_eps!r}")
    relu = _relu(entry.get("relu", False), where)
    if isinstance(relu, tuple):
        raise ModelError(f"{where}: a leaky activation cannot be folded into an affine layer")
    try:
        params = importers.bn_params(model.arrays, bn, float(layer_eps), model.style)
    except KeyError as e:
        raise ModelError(str(e.args[0]) if e.args else str(e)) from None
    for k in ("gamma", "beta", "mean", "var"):
        a = _float_param(getattr(params, k), k, bn)
        if a.ndim != 1 or a.shape[0] != np.shape(params.gamma)[0]:
            raise ModelError(f"BN layer {bn!r}: {k} has shape {a.shape}, expected one value per channel")
    options = dict(top_solver)
    lo, hi = DTYPE_RANGES[act_out.dtype]
    if (act_out.qmin, act_out.qmax) != (lo, hi):
        options["out_range"] = (act_out.qmin, act_out.qmax)
    try:
        layer = importers.affine_bn_layer(params, act_in, act_out, relu=relu, rounding=layer_rounding, **options)
    except (ValueError, InfeasibleError) as e:
        raise ModelError(f"BN layer {bn!r} ({model.path}): {e}") from None
    info = {"model": model.path, "bn": bn, "conv": None, "kind": "affine", "input": entry.get("input"),
            "activation": relu, "bias_fold_exact": True, "eps": float(layer_eps), "activations_file": acts["_path"]}
    return _layer_name(model, bn, prefix), layer, info


def build_layers(models, acts, eps=None, rounding=None, on_layer=None):
    """[(name, FixedPointBN, info)] for every BN pair of `models`, in model order.

    `acts` is a loaded activations file covering every BN (see :func:`uncovered`); `eps` / `rounding` override it.
    `on_layer(name, layer)` is called as soon as each layer is built (``python -m verify`` queues its z3 work then).
    A LeakyReLU BN gives two layers, ``<bn>`` (the BN) and ``<bn>.leaky`` (alpha times the BN): its output is
    their maximum, exact because both are (as in ``experiments/qgraph.py``).
    Raises ModelError naming the layer and what is wrong.
    """
    out = []
    prefix = len(models) > 1
    top_solver = acts.get("solver_options") or {}
    if not isinstance(top_solver, dict) or set(top_solver) - _SOLVER_KEYS:
        raise ModelError(f"--activations {acts['_path']}: solver_options takes {', '.join(sorted(_SOLVER_KEYS))}")
    for model in models:
        for bn in model.affine:
            out.append(_affine_layer(model, bn, acts, eps, rounding, top_solver, prefix))
            if on_layer is not None:
                on_layer(*out[-1][:2])
        for pair in model.pairs:
            bn = pair.bn
            entry = acts["layers"][bn]
            where = f"--activations {acts['_path']}: BN layer {bn!r}"
            if entry.get("kind", "conv_bn") != "conv_bn":
                raise ModelError(f"{where}: kind must be 'conv_bn' or 'affine', got {entry['kind']!r}")
            if entry.get("conv") is not None and entry["conv"] != pair.conv:
                raise ModelError(f"{where} names conv {entry['conv']!r}, but {model.path} pairs it with "
                                 f"{pair.conv!r}: the file is for another model")
            act_in, act_out = _act_quant(acts, bn, "in"), _act_quant(acts, bn, "out")
            layer_eps = next(v for v in (eps, entry.get("eps"), acts.get("eps"), pair.eps) if v is not None)
            layer_rounding = rounding or entry.get("rounding") or acts.get("rounding") or DEFAULT_ROUNDING
            if layer_rounding not in ROUNDINGS:
                raise ModelError(f"{where}: rounding must be one of {', '.join(ROUNDINGS)}, got {layer_rounding!r}")
            if isinstance(layer_eps, bool) or not isinstance(layer_eps, (int, float)):
                raise ModelError(f"{where}: eps must be a number, got {layer_eps!r}")
            relu = _relu(entry["relu"] if "relu" in entry else pair.relu, where)
            params, w, bias = _bn_and_weights(model, pair, float(layer_eps))
            options = dict(top_solver)
            lo, hi = DTYPE_RANGES[act_out.dtype]
            if (act_out.qmin, act_out.qmax) != (lo, hi):
                options["out_range"] = (act_out.qmin, act_out.qmax)
            axis = pair.weight_axis
            try:
                w_q, w_scale = importers.quantize_weights(w, axis=axis)
                fold_exact = bias is None or importers.fold_is_exact(params, bias)
                variants = [(bn, params, relu if not isinstance(relu, tuple) else False)]
                if isinstance(relu, tuple):       # leaky: R(alpha * v) as a second layer, as experiments/qgraph.py
                    alpha = np.float64(np.float32(relu[1]))
                    variants.append((f"{bn}.leaky", importers.BatchNormParams(
                        np.asarray(params.gamma, np.float64) * alpha, np.asarray(params.beta, np.float64) * alpha,
                        params.mean, params.var, params.eps), False))
                for name, p, r in variants:
                    layer = importers.conv_bn_layer(p, w_q, w_scale, act_in, act_out, relu=r, axis=axis,
                                                    rounding=layer_rounding, conv_bias=bias, exact_bias_fold=False,
                                                    **options)
                    info = {"model": model.path, "bn": bn, "conv": pair.conv, "weight": pair.weight,
                            "activation": list(relu) if isinstance(relu, tuple) else relu,
                            "bias_fold_exact": bool(fold_exact), "eps": float(layer_eps),
                            "activations_file": acts["_path"]}
                    out.append((_layer_name(model, name, prefix), layer, info))
            except (ValueError, InfeasibleError) as e:
                raise ModelError(f"BN layer {bn!r} ({model.path}): {e}") from None
            if on_layer is not None:
                for name, layer, _ in out[-len(variants):]:
                    on_layer(name, layer)
    return out
