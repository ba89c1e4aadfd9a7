"""Model import: Conv/Linear -> BatchNorm (-> ReLU/ReLU6) patterns to one FixedPointBN per BN.

The integer input of each BN is the convolution accumulator ``sum(w_q * (a_q - a_zero))`` of per-channel
symmetric int8 weights and per-tensor int8 activations; its real value is ``a_scale * w_scale[c] * acc``. The
importer passes ``in_scale = a_scale * w_scale[c]`` and the EXACT per-channel accumulator bound (from the quantized
weights and the activation range) as ``in_range``: the solver then only has to be exact where inputs can occur.

Sources: named NumPy arrays (PyTorch state_dict names or Keras ``layer/weight`` names, e.g. an ``.npz``), and,
optionally, a PyTorch ``nn.Module`` (torch is imported only by :func:`from_torch`).

>>> import numpy as np
>>> w_q, w_scale = quantize_weights(np.array([[[[0.5, -1.0]]], [[[0.25, 0.125]]]]))
>>> w_q.reshape(2, -1).tolist(), w_scale.tolist()
([[64, -127], [127, 64]], [0.007874015748031496, 0.001968503937007874])
>>> accumulator_bounds(w_q, ActivationQuant(0.1, -128)).tolist()
[[-32385, 16320], [0, 48705]]
"""
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from fxbn.api import DTYPE_RANGES, from_batchnorm

__all__ = ["ActivationQuant", "calibrate", "quantize_weights", "accumulator_bounds", "range_bits", "BatchNormParams",
           "bn_params", "fold_conv_bias", "fold_is_exact", "conv_bn_layer", "state_dict_conv_bn_pairs", "keras_conv_bn_pairs",
           "from_named_arrays", "from_torch"]


@dataclass(frozen=True)
class ActivationQuant:
    """Per-tensor affine quantization real = scale * (q - zero_point), q in [qmin, qmax].

    qmin/qmax are the integer values the tensor can actually hold (e.g. [zero_point, 127] after a folded ReLU);
    they default to the dtype's range.
    """
    scale: float
    zero_point: int
    dtype: str = "int8"
    qmin: int = None
    qmax: int = None

    def __post_init__(self):
        lo, hi = DTYPE_RANGES[self.dtype]
        object.__setattr__(self, "qmin", lo if self.qmin is None else int(self.qmin))
        object.__setattr__(self, "qmax", hi if self.qmax is None else int(self.qmax))
        if not (self.scale > 0 and np.isfinite(self.scale)):
            raise ValueError(f"activation scale must be positive and finite, got {self.scale}")
        if not lo <= self.qmin <= self.qmax <= hi:
            raise ValueError(f"activation range [{self.qmin}, {self.qmax}] is not within {self.dtype} [{lo}, {hi}]")

    def with_range(self, qmin, qmax):
        """The same quantization with a narrower integer range (e.g. the clamp of the producing layer)."""
        return ActivationQuant(self.scale, self.zero_point, self.dtype, qmin, qmax)

    def quantize(self, x):
        """Round half up to the grid and clamp to [qmin, qmax] (float input; the fake-quant and input paths)."""
        q = np.floor(np.asarray(x, np.float64) / self.scale + 0.5) + self.zero_point
        return np.clip(q, self.qmin, self.qmax).astype(self.dtype)

    def dequantize(self, q):
        return (np.asarray(q, np.float64) - self.zero_point) * self.scale


def calibrate(samples, method="minmax", percentile=99.99, dtype="int8"):
    """Per-tensor activation quantization from observed real values.

    Parameters
    ----------
    samples : array_like of float
        Real activations (any shape) observed on calibration data.
    method : {"minmax", "percentile"}
        minmax: the observed extremes; percentile: the `percentile` / (100 - `percentile`) quantiles (outliers then
        saturate).
    dtype : {"int8", "uint8"}

    Returns
    -------
    ActivationQuant
        The range always contains 0 (so zero padding and ReLU are exact); asymmetric, zero point an integer.
    """
    x = np.asarray(samples, np.float64).reshape(-1)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("calibration samples must be non-empty and finite")
    if method == "minmax":
        lo, hi = float(x.min()), float(x.max())
    elif method == "percentile":
        lo, hi = (float(v) for v in np.percentile(x, [100.0 - percentile, percentile]))
    else:
        raise ValueError(f"method must be 'minmax' or 'percentile', got {method!r}")
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    qmin, qmax = DTYPE_RANGES[dtype]
    if hi == lo:
        return ActivationQuant(1.0, 0 if qmin <= 0 <= qmax else qmin, dtype)
    scale = (hi - lo) / (qmax - qmin)
    zero_point = int(np.clip(np.round(qmin - lo / scale), qmin, qmax))
    return ActivationQuant(scale, zero_point, dtype)


def quantize_weights(w, axis=0, bits=8):
    """Per-channel symmetric quantization: w ~ w_scale[c] * w_q, w_q in [-(2^(bits-1) - 1), 2^(bits-1) - 1].

    Parameters
    ----------
    w : array_like of float
        Weights with output channels on `axis` (0 for PyTorch OIHW / Linear (out, in)).

    Returns
    -------
    w_q : ndarray of int8 (int16 if bits > 8), same shape as w
    w_scale : ndarray of float64, (channels,)
    """
    w = np.asarray(w, np.float64)
    wc = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    qmax = 2 ** (bits - 1) - 1
    peak = np.abs(wc).max(axis=1)
    w_scale = np.where(peak > 0, peak / qmax, 1.0)
    shape = [1] * w.ndim
    shape[axis] = -1
    w_q = np.clip(np.round(w / w_scale.reshape(shape)), -qmax, qmax)
    return w_q.astype(np.int8 if bits <= 8 else np.int16), w_scale


def accumulator_bounds(w_q, act, axis=0, padded=False, bias_q=None):
    """Exact per-output-channel range of sum(w_q * (a_q - z)) over all a_q in [act.qmin, act.qmax].

    Each term w * (a - z) ranges independently over [min, max] of w * (qmin - z), w * (qmax - z), so the bound
    is attained (by the activation pattern that takes each term's extreme): it is the tightest possible.

    Parameters
    ----------
    w_q : array_like of int
        Quantized weights, output channels on `axis`; the remaining axes are the terms summed per output.
    act : ActivationQuant
        The input activation's quantization and integer range.
    padded : bool
        Zero padding adds terms equal to 0 (a = z): include 0 in each term's range (only matters when z is outside
        [qmin, qmax], which a calibrated range containing 0 excludes).
    bias_q : array_like of int, optional
        Integer bias added to the accumulator.

    Returns
    -------
    ndarray of int64, shape (channels, 2)
    """
    w = np.moveaxis(np.asarray(w_q, np.int64), axis, 0)
    w = w.reshape(w.shape[0], -1)
    lo_t, hi_t = w * (act.qmin - act.zero_point), w * (act.qmax - act.zero_point)
    term_lo, term_hi = np.minimum(lo_t, hi_t), np.maximum(lo_t, hi_t)
    if padded:
        term_lo, term_hi = np.minimum(term_lo, 0), np.maximum(term_hi, 0)
    bounds = np.stack([term_lo.sum(axis=1), term_hi.sum(axis=1)], axis=1)
    if bias_q is not None:
        bounds += np.asarray(bias_q, np.int64).reshape(-1, 1)
    return bounds


def range_bits(bounds):
    """Signed two's-complement width needed for every integer in [lo, hi], per row of a (n, 2) array."""
    b = np.asarray(bounds, np.int64).reshape(-1, 2)

    def width(v):
        return (v if v >= 0 else ~v).bit_length() + 1

    return np.array([max(width(int(lo)), width(int(hi))) for lo, hi in b.tolist()], np.int64)


@dataclass(frozen=True)
class BatchNormParams:
    """Running-statistics BN: gamma * (x - mean) / sqrt(var + eps) + beta, per channel (float arrays as stored)."""
    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float

    @property
    def channels(self):
        return int(np.asarray(self.gamma).shape[0])

    def apply_float(self, x, axis=1, dtype=np.float32):
        """Float BN as frameworks compute it (in `dtype`), channels on `axis`."""
        shape = [1] * np.ndim(x)
        shape[axis] = -1
        inv = (np.asarray(self.gamma, dtype) / np.sqrt(np.asarray(self.var, dtype) + dtype(self.eps))).reshape(shape)
        return (np.asarray(x, dtype) - np.asarray(self.mean, dtype).reshape(shape)) * inv \
            + np.asarray(self.beta, dtype).reshape(shape)


_BN_NAMES = {
    "torch": ("{p}.weight", "{p}.bias", "{p}.running_mean", "{p}.running_var"),
    "keras": ("{p}/gamma", "{p}/beta", "{p}/moving_mean", "{p}/moving_variance"),
    "keras_tf": ("{p}/{p}/gamma:0", "{p}/{p}/beta:0", "{p}/{p}/moving_mean:0", "{p}/{p}/moving_variance:0"),
}


def bn_params(arrays, prefix, eps, style="torch"):
    """BatchNormParams of layer `prefix` from named arrays (style "torch", "keras" or "keras_tf")."""
    if style not in _BN_NAMES:
        raise ValueError(f"style must be one of {', '.join(_BN_NAMES)}, got {style!r}")
    names = [n.format(p=prefix) for n in _BN_NAMES[style]]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise KeyError(f"BN layer {prefix!r}: missing arrays {', '.join(missing)}")
    return BatchNormParams(*(np.asarray(arrays[n]) for n in names), eps=float(eps))


def fold_conv_bias(bn, conv_bias, exact=True):
    """BN(x + bias) as BN'(x) with mean' = mean - bias in float64.

    The accumulator then carries no bias term, so the exact bound of the BN input stays that of the weights.
    With exact=True, None when some difference is not a float64 (then BN' is not the same real map); with
    exact=False the rounded fold is returned (relative error <= 2^-53 in mean'; the reference is that of BN').
    """
    mean = np.asarray(bn.mean, np.float64) - np.asarray(conv_bias, np.float64)
    if exact and not fold_is_exact(bn, conv_bias):
        return None
    return BatchNormParams(bn.gamma, bn.beta, mean, bn.var, bn.eps)


def fold_is_exact(bn, conv_bias):
    """Whether float64(mean - bias) equals mean - bias exactly for every channel."""
    mean = np.asarray(bn.mean, np.float64) - np.asarray(conv_bias, np.float64)
    return all(Fraction(m) == Fraction(m0) - Fraction(c) for m, m0, c in
               zip(mean.tolist(), np.asarray(bn.mean, np.float64).tolist(), np.asarray(conv_bias, np.float64).tolist()))


def conv_bn_layer(bn, w_q, w_scale, act_in, act_out, *, relu=False, axis=0, padded=True, rounding="half_up",
                  conv_bias=None, exact_bias_fold=True, **solver_options):
    """One FixedPointBN for Conv/Linear (quantized weights) -> BN (-> ReLU / ReLU6) with exact accumulator bounds.

    Parameters
    ----------
    bn : BatchNormParams
    w_q, w_scale : quantized weights and their per-channel scales (see :func:`quantize_weights`)
    act_in : ActivationQuant
        Quantization and integer range of the convolution's input.
    act_out : ActivationQuant
        Quantization of the BN (+ activation) output; only scale, zero point and dtype are used.
    relu : False, True or "relu6"
    conv_bias : array_like, optional
        Float conv bias, folded into the BN mean: exactly (ValueError if that is impossible) or, with
        exact_bias_fold=False, rounded to float64 (see :func:`fold_conv_bias`).
    solver_options
        Passed on to :func:`fxbn.from_batchnorm` (e.g. max_multiplier_bits, acc_bits, common_shift).

    Returns
    -------
    layer : FixedPointBN
        in_dtype int32, in_range the exact accumulator bound, in_scale = act_in.scale * w_scale.
    """
    if conv_bias is not None:
        folded = fold_conv_bias(bn, conv_bias, exact=exact_bias_fold)
        if folded is None:
            raise ValueError("conv bias cannot be folded exactly into the BN mean (pass exact_bias_fold=False)")
        bn = folded
    bounds = accumulator_bounds(w_q, act_in, axis=axis, padded=padded)
    lo32, hi32 = DTYPE_RANGES["int32"]
    if bounds.min() < lo32 or bounds.max() > hi32:
        raise ValueError(f"accumulator bound [{bounds.min()}, {bounds.max()}] exceeds int32")
    return from_batchnorm(bn.gamma, bn.beta, bn.mean, bn.var, bn.eps, in_scale=act_in.scale * np.asarray(w_scale),
                          out_scale=act_out.scale, in_zero_point=0, out_zero_point=act_out.zero_point,
                          in_range=bounds, in_dtype="int32", out_dtype=act_out.dtype, rounding=rounding, relu=relu,
                          **solver_options)


def state_dict_conv_bn_pairs(names):
    """(conv weight name, BN prefix) pairs of a PyTorch state_dict by the naming convention convN <-> bnN.

    Recognises ``X.bnK`` with ``X.convK.weight`` (ResNet style) and ``X.bn`` with ``X.conv.weight``; BNs without
    a matching conv are skipped.
    """
    names = set(names)
    pairs = []
    for name in sorted(names):
        if not name.endswith(".running_mean"):
            continue
        prefix = name[: -len(".running_mean")]
        head, _, last = prefix.rpartition(".")
        conv_last = "conv" + last[2:] if last.startswith("bn") else None
        conv = f"{head}.{conv_last}.weight" if head else f"{conv_last}.weight"
        if conv_last is not None and conv in names:
            pairs.append((conv, prefix))
    return pairs


def keras_conv_bn_pairs(model_json):
    """(conv layer, BN layer, activation) triples of a Keras model topology (parsed model.json).

    activation is "relu", "relu6", ("leaky", alpha) or None: the single consumer of the BN when it is one.
    """
    config = model_json.get("model_config", model_json)["config"]
    layers = {layer["name"]: layer for layer in config["layers"]}
    consumers = {}
    for layer in config["layers"]:
        for node in layer["inbound_nodes"]:
            for inbound in node:
                consumers.setdefault(inbound[0], []).append(layer["name"])
    triples = []
    for layer in config["layers"]:
        if layer["class_name"] != "BatchNormalization":
            continue
        src = layers[layer["inbound_nodes"][0][0][0]]
        if src["class_name"] not in ("Conv2D", "DepthwiseConv2D", "Dense"):
            continue
        act = None
        users = consumers.get(layer["name"], [])
        if len(users) == 1:
            user = layers[users[0]]
            if user["class_name"] == "Activation" and user["config"]["activation"] == "relu":
                act = "relu"
            elif user["class_name"] == "ReLU":
                act = "relu6" if user["config"].get("max_value") == 6 else "relu"
            elif user["class_name"] == "LeakyReLU":
                act = ("leaky", float(user["config"]["alpha"]))
        triples.append((src["name"], layer["name"], act))
    return triples


def from_named_arrays(arrays, pairs, act_in, act_out, *, eps, style="torch", relu=None, weight_axis=0,
                      rounding="half_up", **solver_options):
    """One FixedPointBN per (conv weight name, BN prefix) pair of named arrays (e.g. ``np.load("net.npz")``).

    Parameters
    ----------
    arrays : mapping name -> array
    pairs : list of (conv weight name, BN prefix)
    act_in, act_out : mapping BN prefix -> ActivationQuant
        The conv input's and the BN output's activation quantization (from :func:`calibrate`).
    relu : mapping BN prefix -> False / True / "relu6", optional
    weight_axis : int
        Output-channel axis of the stored weights (0 for PyTorch; convert Keras HWIO kernels first).

    Returns
    -------
    dict BN prefix -> (FixedPointBN, w_q, w_scale)
    """
    out = {}
    for conv, prefix in pairs:
        w_q, w_scale = quantize_weights(arrays[conv], axis=weight_axis)
        bn = bn_params(arrays, prefix, eps, style)
        layer = conv_bn_layer(bn, w_q, w_scale, act_in[prefix], act_out[prefix],
                              relu=(relu or {}).get(prefix, False), axis=weight_axis, rounding=rounding,
                              **solver_options)
        out[prefix] = (layer, w_q, w_scale)
    return out


def from_torch(module, act_in, act_out, *, rounding="half_up", **solver_options):
    """One FixedPointBN per Conv2d/Linear -> BatchNorm (-> ReLU/ReLU6) pattern of a PyTorch module in eval mode.

    Patterns are consecutive children of an ``nn.Sequential`` or, elsewhere, attributes named by the state_dict
    convention convN <-> bnN (ResNet blocks); a ReLU/ReLU6 counts when it directly follows the BN in a Sequential.

    Parameters
    ----------
    module : torch.nn.Module
    act_in, act_out : mapping BN module name -> ActivationQuant

    Returns
    -------
    dict BN module name -> (FixedPointBN, w_q, w_scale)
    """
    import torch  # optional dependency: only this function needs it
    from torch import nn

    if module.training:
        raise ValueError("module must be in eval mode (BN running statistics are what is folded)")
    modules = dict(module.named_modules())
    found = {}
    for name, mod in modules.items():
        if isinstance(mod, nn.Sequential):
            children = list(mod.named_children())
            for i in range(len(children) - 1):
                (_, conv), (bn_name, bn) = children[i], children[i + 1]
                if isinstance(conv, (nn.Conv2d, nn.Linear)) and isinstance(bn, (nn.BatchNorm2d, nn.BatchNorm1d)):
                    act = children[i + 2][1] if i + 2 < len(children) else None
                    relu = "relu6" if isinstance(act, nn.ReLU6) else isinstance(act, nn.ReLU)
                    found[f"{name}.{bn_name}" if name else bn_name] = (conv, bn, relu)
    for conv_name, bn_prefix in state_dict_conv_bn_pairs(k for k in module.state_dict()):
        conv_mod, bn_mod = modules.get(conv_name[: -len(".weight")]), modules.get(bn_prefix)
        if bn_prefix not in found and isinstance(conv_mod, (nn.Conv2d, nn.Linear)) \
                and isinstance(bn_mod, (nn.BatchNorm2d, nn.BatchNorm1d)):
            found[bn_prefix] = (conv_mod, bn_mod, False)
    out = {}
    with torch.no_grad():
        for bn_name, (conv, bn, relu) in sorted(found.items()):
            w_q, w_scale = quantize_weights(conv.weight.detach().cpu().numpy(), axis=0)
            params = BatchNormParams(*(t.detach().cpu().numpy() for t in (bn.weight, bn.bias, bn.running_mean,
                                                                           bn.running_var)), eps=float(bn.eps))
            bias = None if conv.bias is None else conv.bias.detach().cpu().numpy()
            layer = conv_bn_layer(params, w_q, w_scale, act_in[bn_name], act_out[bn_name], relu=relu,
                                  rounding=rounding, conv_bias=bias, **solver_options)
            out[bn_name] = (layer, w_q, w_scale)
    return out
