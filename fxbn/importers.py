"""Model import: Conv/Linear -> BatchNorm (-> ReLU/ReLU6) patterns to one FixedPointBN per BN.

The integer input of each BN is the convolution accumulator ``sum(w_q * (a_q - a_zero))`` of per-channel
symmetric int8 weights and per-tensor int8 activations; its real value is ``a_scale * w_scale[c] * acc``. The
importer passes ``in_scale = a_scale * w_scale[c]`` (refused when that float64 product is not exact; scales are
float32 values, as every deployment format stores them, and then it always is) and the EXACT per-channel
accumulator bound (from the quantized weights and the activation range) as ``in_range``: the solver then only has
to be exact where inputs can occur.

Sources: named NumPy arrays (PyTorch state_dict names or Keras ``layer/weight`` names, e.g. an ``.npz``), and,
optionally, a PyTorch ``nn.Module`` paired by its traced data flow (:func:`from_torch`, :func:`calibrate_torch`;
torch is imported only there). Keras topologies become torch modules with :mod:`fxbn.keras_torch`; the command
line ``python -m fxbn.calibrate`` calibrates a model file on an image directory.

>>> import numpy as np
>>> w_q, w_scale = quantize_weights(np.array([[[[0.5, -1.0]]], [[[0.25, 0.125]]]]))
>>> w_q.reshape(2, -1).tolist(), w_scale.tolist()     # float32 scales >= 1/127: 0.5 / w_scale < 63.5
([[63, -127], [127, 63]], [0.007874016650021076, 0.001968504162505269])
>>> accumulator_bounds(w_q, ActivationQuant(0.1, -128)).tolist()
[[-32385, 16065], [0, 48450]]
"""
import warnings
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from fxbn.api import DTYPE_RANGES, ZERO_POINT_RANGE, _channel_floats, _channel_ints, from_batchnorm

__all__ = ["ActivationQuant", "calibrate", "calibrate_values", "quantize_weights", "accumulator_bounds", "range_bits",
           "BatchNormParams", "bn_params", "fold_conv_bias", "fold_is_exact", "conv_bn_layer", "float32_at_least",
           "exact_scale_product",
           "state_dict_conv_bn_pairs", "keras_conv_bn_pairs", "from_named_arrays", "ImportedLayer", "ImportReport",
           "affine_bn_layer", "from_torch",
           "Calibration", "calibrate_torch"]


def float32_at_least(x):
    """The smallest float32 values >= x (float64 array in, float64 array out): a scale that float32 storage (ONNX,
    TFLite, PyTorch) keeps exactly and that still covers the range it was computed from."""
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore"):
        f = x.astype(np.float32)
    f = np.where(f.astype(np.float64) < x, np.nextafter(f, np.float32(np.inf)), f)
    return f.astype(np.float64)


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
        if not isinstance(self.dtype, str) or self.dtype not in DTYPE_RANGES:
            raise ValueError(f"activation dtype must be one of {', '.join(DTYPE_RANGES)}, got {self.dtype!r}")
        lo, hi = DTYPE_RANGES[self.dtype]
        # the values as given, never converted (1.7, True, longdouble 1/3 are refused)
        scale = _channel_floats("activation scale", self.scale)
        if scale.ndim or not scale > 0:
            raise ValueError(f"activation scale must be positive and finite, got {self.scale}")
        object.__setattr__(self, "scale", float(scale))
        for name in ("zero_point", "qmin", "qmax"):
            v = getattr(self, name)
            if v is None and name != "zero_point":
                v = lo if name == "qmin" else hi
            arr = _channel_ints(f"activation {name}", v, *ZERO_POINT_RANGE)
            if arr.ndim:
                raise ValueError(f"activation {name} must be one integer, got {v!r}")
            object.__setattr__(self, name, int(arr))
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


def calibrate(samples, *args, **kwargs):
    """Per-tensor activation quantization from observed values, or a whole torch module from data.

    ``calibrate(samples, method="minmax", percentile=99.99, dtype="int8")`` -> ActivationQuant (below);
    ``calibrate(module, batches, ...)`` with a torch ``nn.Module`` is :func:`calibrate_torch` (-> Calibration).
    """
    if hasattr(samples, "named_modules") and hasattr(samples, "forward"):
        return calibrate_torch(samples, *args, **kwargs)
    return calibrate_values(samples, *args, **kwargs)


def calibrate_values(samples, method="minmax", percentile=99.99, dtype="int8"):
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
        The range always contains 0 (so zero padding and ReLU are exact); asymmetric, zero point an integer. The
        scale is the smallest float32 value >= range / (qmax - qmin) (held as a float64): deployment formats store
        scales as float32, and the product with a float32 weight scale is then exact (see :func:`conv_bn_layer`).
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
    scale = float(float32_at_least((hi - lo) / (qmax - qmin)))
    if not (scale > 0 and np.isfinite(scale)):
        raise ValueError(f"the calibrated range [{lo}, {hi}] gives the activation scale {scale}: it must be positive "
                         "and finite")
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
        round(w / w_scale[c]) with the returned scales (never above 2^(bits-1) - 1 in magnitude).
    w_scale : ndarray of float64, (channels,)
        Per channel the smallest float32 value >= peak |w| / qmax (1.0 for an all-zero channel), held as float64:
        the scale a deployment format stores (float32) is the one the weights were quantized with, and
        ``act.scale * w_scale[c]`` is exact in float64 for a float32 activation scale.
    """
    w = np.asarray(w, np.float64)
    bad = np.flatnonzero(~np.isfinite(w.reshape(-1)))
    if bad.size:     # NaN would become the weight 0 and inf an infinite scale: a conv that is not the model's
        idx = tuple(int(i) for i in np.unravel_index(bad[0], w.shape))
        raise ValueError(f"weight at {idx} is {w.reshape(-1)[bad[0]]}: weights must be finite")
    wc = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    qmax = 2 ** (bits - 1) - 1
    peak = np.abs(wc).max(axis=1)
    w_scale = np.where(peak > 0, float32_at_least(peak / qmax), 1.0)
    bad = np.flatnonzero(~np.isfinite(w_scale))
    if bad.size:
        raise ValueError(f"channel {int(bad[0])}: peak |w| = {peak[bad[0]]!r} gives a scale beyond float32")
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
    w_q = np.asarray(w_q)
    if w_q.dtype.kind not in "iu":
        raise ValueError(f"quantized weights must be an integer array, got dtype {w_q.dtype}")
    w = np.moveaxis(w_q.astype(np.int64), axis, 0)
    w = w.reshape(w.shape[0], -1)
    reach = max(abs(act.qmin - act.zero_point), abs(act.qmax - act.zero_point))
    if w.size and int(np.abs(w).max()) * reach * w.shape[1] >= 2 ** 62:    # every term and sum stays exact in int64
        raise ValueError("the accumulator bound does not fit int64 (weights or activation range too large)")
    lo_t, hi_t = w * (act.qmin - act.zero_point), w * (act.qmax - act.zero_point)
    term_lo, term_hi = np.minimum(lo_t, hi_t), np.maximum(lo_t, hi_t)
    if padded:
        term_lo, term_hi = np.minimum(term_lo, 0), np.maximum(term_hi, 0)
    bounds = np.stack([term_lo.sum(axis=1), term_hi.sum(axis=1)], axis=1)
    if bias_q is not None:
        bias = _channel_ints("bias_q", bias_q, -2 ** 61, 2 ** 61)
        bounds += bias.reshape(-1, 1)
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

    Raises
    ------
    ValueError
        When act_in.scale * w_scale[c] is not exactly a float64 for some channel c (the layer would then be exact
        for a rounded scale, not for the stated ones). Two float32 scales always multiply exactly: use float32
        values (:func:`quantize_weights` and :func:`calibrate_values` return such, as ONNX/TFLite/PyTorch store).
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
    in_scale = exact_scale_product(act_in.scale, w_scale, bn.channels)
    return from_batchnorm(bn.gamma, bn.beta, bn.mean, bn.var, bn.eps, in_scale=in_scale,
                          out_scale=act_out.scale, in_zero_point=0, out_zero_point=act_out.zero_point,
                          in_range=bounds, in_dtype="int32", out_dtype=act_out.dtype, rounding=rounding, relu=relu,
                          **solver_options)


def exact_scale_product(act_scale, w_scale, channels):
    """act_scale * w_scale[c] per channel as float64, each product checked exact with rationals (ValueError naming
    the first channel whose product rounds, and both scales)."""
    ws = _channel_floats("w_scale", w_scale)
    if ws.ndim > 1 or (ws.ndim == 1 and ws.shape[0] != channels):
        raise ValueError(f"w_scale has shape {ws.shape}; expected one scale or {channels} (one per channel)")
    if np.any(ws <= 0):
        c = int(np.flatnonzero(ws.reshape(-1) <= 0)[0])
        raise ValueError(f"w_scale[{c}] = {ws.reshape(-1)[c]!r}: weight scales must be positive")
    product = act_scale * ws
    exact_act = Fraction(act_scale)
    for c, (s, p) in enumerate(zip(np.atleast_1d(ws).tolist(), np.atleast_1d(product).tolist())):
        if Fraction(p) != exact_act * Fraction(s):
            raise ValueError(f"channel {c}: in_scale = act_in.scale * w_scale[{c}] = {act_scale!r} * {s!r} is not "
                             f"exactly a float64 (it would be rounded to {p!r}, and the layer exact only for that); "
                             "use float32 scales (their products are exact), e.g. quantize_weights' and "
                             "calibrate_values' scales, or float(np.float32(s))")
    return product


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
            if user["class_name"] == "Activation" and user["config"]["activation"] in ("relu", "relu6"):
                act = user["config"]["activation"]         # Keras 2.1 MobileNet: Activation('relu6')
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


def affine_bn_layer(bn, act_in, act_out, *, relu=False, rounding="half_up", **solver_options):
    """One FixedPointBN for a BN whose input is a quantized activation (not a conv accumulator).

    The BN input is ``act_in.scale * (q - act_in.zero_point)`` for the integer q in [act_in.qmin, act_in.qmax]
    (e.g. an int8 activation after ReLU in a pre-activation block BN -> ReLU -> Conv, or DenseNet's BN on a
    concatenation): the layer takes q itself (in_dtype = act_in.dtype), the simplest case for the solver.

    >>> bn = BatchNormParams(np.array([1.0, 2.0]), np.array([0.0, 0.5]), np.zeros(2), np.ones(2), 0.0)
    >>> layer = affine_bn_layer(bn, ActivationQuant(0.5, 0), ActivationQuant(0.25, 0))
    >>> layer.in_range.tolist(), layer.apply(np.array([[-2, 3]], np.int8)).tolist()
    ([[-128, 127], [-128, 127]], [[-4, 14]])
    """
    c = bn.channels
    return from_batchnorm(bn.gamma, bn.beta, bn.mean, bn.var, bn.eps, in_scale=act_in.scale,
                          in_zero_point=act_in.zero_point, out_scale=act_out.scale,
                          out_zero_point=act_out.zero_point, in_range=np.tile([act_in.qmin, act_in.qmax], (c, 1)),
                          in_dtype=act_in.dtype, out_dtype=act_out.dtype, rounding=rounding, relu=relu,
                          **solver_options)


@dataclass(frozen=True)
class ImportedLayer:
    """One imported BN: its integer layer and what it was built from.

    Attributes
    ----------
    bn : str
        The BN module / layer name.
    layer : FixedPointBN
    kind : {"conv_bn", "affine"}
        conv_bn: the input is the exact accumulator of conv `source` (in_dtype int32); affine: the input is the
        quantized tensor `source` itself (BN after an activation, a concatenation, the network input, ...).
    source : str
        The conv / linear module name (conv_bn), or the module (else graph node) whose output the BN reads
        (affine).
    w_q, w_scale : ndarray or None
        The quantized conv weights and their per-channel scales (conv_bn only).
    activation : None, "relu" or "relu6"
        The activation folded into the layer's clamp.
    follows : None or str
        An activation applied to the BN output that is NOT folded (e.g. "hardswish", "silu", "leaky_relu"): the
        integer layer covers the BN only; that activation still runs after it.
    """
    bn: str
    layer: object
    kind: str
    source: str
    w_q: object = None
    w_scale: object = None
    activation: object = None
    follows: object = None

    @property
    def conv(self):
        """The conv / linear module name (None for an affine layer)."""
        return self.source if self.kind == "conv_bn" else None


@dataclass
class ImportReport:
    """What an importer built and what it left out. A mapping BN name -> :class:`ImportedLayer`.

    Attributes
    ----------
    layers : dict str -> ImportedLayer
        In graph order.
    skipped : list of (str, str)
        (BN name, reason) for every BN that was not imported.
    notes : list of str
        Model-level remarks (e.g. no BN at all, BN already fused by torch.ao fuse_modules).
    """
    layers: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def __getitem__(self, name):
        return self.layers[name]

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    def __contains__(self, name):
        return name in self.layers

    def items(self):
        return self.layers.items()

    def summary(self):
        """Human-readable lines: one per layer (kind, source, folded / following activation), then the skipped."""
        lines = [f"{len(self.layers)} BN layer(s) imported, {len(self.skipped)} left out"]
        for name, info in self.layers.items():
            act = info.activation or "none"
            tail = f", then {info.follows} (not folded)" if info.follows else ""
            lines.append(f"  {name}: {info.kind} from {info.source}, folded activation {act}{tail}")
        for name, reason in self.skipped:
            lines.append(f"  LEFT OUT {name}: {reason}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def check(self):
        """Raise ValueError listing every BN left out (and the notes) when the import is not complete."""
        if self.skipped or not self.layers:
            raise ValueError("incomplete BN import:\n" + self.summary())
        return self


def _torch_bn_params(bn):
    """BatchNormParams of a torch BN module (affine=False: gamma 1, beta 0)."""
    mean, var = (t.detach().cpu().numpy() for t in (bn.running_mean, bn.running_var))
    c = mean.shape[0]
    gamma = np.ones(c) if bn.weight is None else bn.weight.detach().cpu().numpy()
    beta = np.zeros(c) if bn.bias is None else bn.bias.detach().cpu().numpy()
    return BatchNormParams(gamma, beta, mean, var, eps=float(bn.eps))


def from_torch(module, act_in, act_out, *, rounding="half_up", strict=False, exact_bias_fold=True, **solver_options):
    """One FixedPointBN per BatchNorm of a PyTorch module in eval mode, paired by the traced data flow (torch.fx).

    Each BN module called in ``forward`` is found in the ``torch.fx`` graph and built from the tensor it actually
    reads:

    - its input is the output of a Conv1d/2d/3d or Linear (through Identity/Dropout): a conv -> BN layer on the
      exact accumulator (in_dtype int32, in_range the exact bound, ``act_in[bn]`` = the conv's input);
    - anything else (a ReLU in a pre-activation block BN -> ReLU -> Conv, a DenseNet concatenation, the network
      input): an affine layer on that quantized tensor (``act_in[bn]`` = the BN's input, e.g. int8).

    A ReLU / ReLU6 (module, functional or hardtanh(0, 6)) that is the BN output's only consumer is folded into the
    clamp (``act_out[bn]`` is then its output's quantization); other activations (Hardswish, SiLU, ...) are
    reported as following, unfolded. Every BN that is not imported is named with the reason: transposed convs,
    track_running_stats=False, modules called twice or never, functional batch_norm; BN already fused by torch.ao
    ``fuse_modules`` and networks without BN give a note.

    Parameters
    ----------
    module : torch.nn.Module or torch.fx.GraphModule
        In eval mode; traced with ``torch.fx.symbolic_trace`` unless already a GraphModule.
    act_in, act_out : mapping BN module name -> ActivationQuant
        From :func:`calibrate_torch` (or your own): the layer input's and the BN (+ folded activation) output's
        quantization. A missing entry raises ValueError naming the BN and what it needs.
    rounding : str
    strict : bool
        Raise ValueError (listing them) when some BN is left out or none is imported; otherwise a warning.
    exact_bias_fold : bool
        A conv bias is folded into the BN mean; when that difference is not a float64, raise (True) or round it
        (False: the layer is then exact for the rounded BN, see :func:`fold_conv_bias`).
    solver_options
        Passed on to :func:`fxbn.from_batchnorm`.

    Returns
    -------
    ImportReport
        Mapping BN name -> ImportedLayer (``.layer``, ``.kind``, ``.source`` = conv name or input node, ``.w_q``,
        ``.w_scale``, ``.activation``, ``.follows``), plus ``.skipped`` [(BN name, reason)] and ``.notes``.
    """
    from fxbn import _torch_graph  # optional dependency: torch is imported only here

    if module.training:
        raise ValueError("module must be in eval mode (BN running statistics are what is folded)")
    _, plans, skipped, notes = _torch_graph.plan(module)
    return _build_torch(plans, skipped, notes, act_in, act_out, rounding, strict, exact_bias_fold, solver_options)


def _build_torch(plans, skipped, notes, act_in, act_out, rounding, strict, exact_bias_fold, solver_options):
    missing = [f"{p.bn} ({'conv input' if p.kind == 'conv_bn' else 'BN input'} node {p.in_node!r}, output node "
               f"{p.out_node!r})" for p in plans if p.bn not in act_in or p.bn not in act_out]
    if missing:
        raise ValueError(f"act_in / act_out have no entry for BN layer(s): {', '.join(missing)}; "
                         "calibrate_torch(module, batches) gives both")
    report = ImportReport(skipped=list(skipped), notes=list(notes))
    for p in plans:
        params = _torch_bn_params(p.module)
        relu = {"relu": True, "relu6": "relu6", None: False}[p.activation]
        if p.kind == "conv_bn":
            w = p.conv.weight.detach().cpu().numpy()
            w_q, w_scale = quantize_weights(w, axis=0)
            bias = None if p.conv.bias is None else p.conv.bias.detach().cpu().numpy()
            try:
                layer = conv_bn_layer(params, w_q, w_scale, act_in[p.bn], act_out[p.bn], relu=relu,
                                      rounding=rounding, conv_bias=bias, exact_bias_fold=exact_bias_fold,
                                      **solver_options)
            except ValueError as e:
                raise ValueError(f"BN {p.bn!r} (conv {p.source!r}): {e}") from None
            report.layers[p.bn] = ImportedLayer(p.bn, layer, "conv_bn", p.source, w_q, w_scale, p.activation,
                                                p.follows)
        else:
            try:
                layer = affine_bn_layer(params, act_in[p.bn], act_out[p.bn], relu=relu, rounding=rounding,
                                        **solver_options)
            except ValueError as e:
                raise ValueError(f"BN {p.bn!r} (affine on {p.source!r}): {e}") from None
            report.layers[p.bn] = ImportedLayer(p.bn, layer, "affine", p.source, activation=p.activation,
                                                follows=p.follows)
    if strict:
        report.check()
    elif report.skipped or not report.layers:
        warnings.warn("fxbn.importers: incomplete BN import:\n" + report.summary(), stacklevel=3)
    return report


@dataclass
class Calibration:
    """Activation quantization of every importable BN of a torch module, from :func:`calibrate_torch`.

    Attributes
    ----------
    act_in, act_out : dict BN name -> ActivationQuant
        The layer input's (conv input for conv_bn, BN input for affine) and the BN (+ folded activation) output's.
    layers : ImportReport or None
        The layers built from them (None when calibrate_torch was called with build=False).
    kinds : dict BN name -> (kind, source, activation, follows)
    method, percentile, batches : how it was calibrated
    """
    act_in: dict
    act_out: dict
    layers: object
    kinds: dict
    eps: dict
    method: str
    percentile: float
    batches: int

    def activations_json(self, model=None, rounding="half_up", calibration=None):
        """The ``python -m verify --activations`` file (schema: verify/model.py) as a dict.

        Affine layers carry ``"kind": "affine"`` and ``"input"`` (the node the BN reads) instead of a conv.
        """
        def act(a):
            return {"scale": float(a.scale), "zero_point": int(a.zero_point), "dtype": a.dtype, "qmin": int(a.qmin),
                    "qmax": int(a.qmax)}

        layers = {}
        for bn, (kind, source, activation, follows) in self.kinds.items():
            entry = {"conv": source} if kind == "conv_bn" else {"kind": "affine", "input": source}
            entry.update({"in": act(self.act_in[bn]), "out": act(self.act_out[bn]),
                          "relu": {"relu": True, "relu6": "relu6", None: False}[activation], "eps": self.eps[bn]})
            if follows:
                entry["comment"] = f"followed by {follows} (not folded)"
            layers[bn] = entry
        out = {"format": "fxbn.activations", "version": 1, "rounding": rounding}
        if model is not None:
            out["model"] = [str(model)]
        cal = {"method": self.method, "batches": self.batches}
        if self.method == "percentile":
            cal["percentile"] = self.percentile
        out["calibration"] = {**cal, **(calibration or {})}
        out["layers"] = layers
        return out


def calibrate_torch(module, batches, *, method="minmax", percentile=99.99, dtype="int8", max_samples=1 << 16,
                    build=True, rounding="half_up", strict=False, exact_bias_fold=True, **solver_options):
    """Calibrate a torch module on data and build its integer BN layers in one call.

    Runs `batches` through the module's torch.fx graph (the same graph :func:`from_torch` pairs by) and records,
    for every importable BN, its input tensor (the conv's input for a conv -> BN layer, the BN's own input for an
    affine one) and its output tensor (after a folded ReLU / ReLU6); each becomes a per-tensor
    :class:`ActivationQuant` by :func:`calibrate`.

    Parameters
    ----------
    module : torch.nn.Module (eval mode) or torch.fx.GraphModule
    batches : iterable of tensors / arrays (or tuples of them: the forward arguments)
        The inputs exactly as the module takes them (already scaled / normalised).
    method : {"minmax", "percentile"}
    percentile : float
        With method="percentile": the quantile pair (100 - p, p), computed on a uniform subsample of at most
        `max_samples` values per tensor and batch.
    dtype : {"int8", "uint8"}
    build : bool
        Also build the layers (:func:`from_torch` with `rounding`, `strict`, `exact_bias_fold` and
        `solver_options`).

    Returns
    -------
    Calibration
        ``.act_in``, ``.act_out``, ``.layers`` (an ImportReport), ``.activations_json()``.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU()).eval()
    >>> cal = calibrate_torch(net, [torch.randn(2, 3, 8, 8) for _ in range(3)])
    >>> info = cal.layers["1"]
    >>> info.kind, info.conv, info.activation, str(info.layer.in_dtype)
    ('conv_bn', '0', 'relu', 'int32')
    """
    from fxbn import _torch_graph

    if module.training:
        raise ValueError("module must be in eval mode (BN running statistics are what is folded)")
    if method not in ("minmax", "percentile"):
        raise ValueError(f"method must be 'minmax' or 'percentile', got {method!r}")
    if dtype not in ("int8", "uint8"):
        raise ValueError(f"dtype must be 'int8' or 'uint8', got {dtype!r}")
    gm, plans, skipped, notes = _torch_graph.plan(module)
    nodes = {n for p in plans for n in (p.in_node, p.out_node)}
    count = [0]

    def counted():
        for b in batches:
            count[0] += 1
            yield b

    stats = _torch_graph.record_ranges(gm, nodes, counted(), method, percentile, max_samples)
    quant = {}
    for name, s in stats.items():
        if s["min"] > s["max"]:
            raise ValueError(f"node {name!r} produced no values during calibration")
        samples = np.concatenate(s["samples"]) if method == "percentile" else np.array([s["min"], s["max"]])
        quant[name] = calibrate(samples, method, percentile, dtype)
    act_in = {p.bn: quant[p.in_node] for p in plans}
    act_out = {p.bn: quant[p.out_node] for p in plans}
    kinds = {p.bn: (p.kind, p.source, p.activation, p.follows) for p in plans}
    eps = {p.bn: float(p.module.eps) for p in plans}
    cal = Calibration(act_in, act_out, None, kinds, eps, method, percentile, count[0])
    if build:
        cal.layers = _build_torch(plans, skipped, notes, act_in, act_out, rounding, strict, exact_bias_fold,
                                  solver_options)
    return cal
