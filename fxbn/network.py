"""An integer CNN graph (NHWC) run in three ways: float, fake-quant (float BN), and integer-only, with every
rescaling an exact fxbn layer (or, for checks, its exact reference).

>>> import numpy as np
>>> from fxbn.network import Graph, Node
>>> from fxbn.importers import BatchNormParams
>>> rng = np.random.default_rng(0)
>>> bn = BatchNormParams(np.ones(4), np.zeros(4), np.zeros(4), np.ones(4), 1e-5)
>>> g = Graph([Node("input", "input"),
...            Node("c1", "conv", ("input",), {"w": rng.normal(size=(3, 3, 3, 4)).astype(np.float32),
...                                             "stride": 1, "pad": (1, 1, 1, 1)}),
...            Node("b1", "bn", ("c1",), {"bn": bn, "act": "relu"}),
...            Node("c2", "conv", ("b1",), {"w": rng.normal(size=(1, 1, 4, 4)).astype(np.float32),
...                                          "stride": 1, "pad": (0, 0, 0, 0)}),
...            Node("b2", "bn", ("c2",), {"bn": bn, "act": None}),
...            Node("sum", "add", ("b1", "b2"), {"relu": True}),
...            Node("pool", "gap", ("sum",))],
...           input_mean=[0.5] * 3, input_std=[0.25] * 3)
>>> pixels = rng.integers(0, 256, size=(2, 8, 8, 3), dtype=np.uint8)
>>> _ = g.calibrate([pixels]); _ = g.quantize()
>>> type(g.q["sum"]["layer"]).__name__                      # the residual add is an exact FixedPointAdd
'FixedPointAdd'
>>> fx, ref, unit, diverged = g.forward_pair(pixels)      # fxbn's integer network vs the exact reference
>>> bool((fx == ref).all()), diverged
(True, [])

Nodes (in topological order; ``src`` names earlier nodes):
- ``input``: the float network input; in the integer run the uint8 image enters through an exact per-channel
  affine FixedPointBN (normalisation + quantization in one exact step).
- ``conv``: weights HWIO (depthwise: (kh, kw, C)), stride, explicit padding (top, bottom, left, right), optional
  bias. Always followed by a ``bn`` node, except the classifier (``logits=True``).
- ``bn``: BatchNorm of its conv with activation None / "relu" / "relu6" / ("leaky", alpha): a quantization point.
- ``add``: residual sum (+ optional ReLU): a quantization point, an exact :class:`fxbn.FixedPointAdd` of the two
  int8 inputs (minimal shift, proven for every pair of their integer ranges).
- ``maxpool``, ``shortcut_a`` (CIFAR option-A shortcut), ``gap`` (global average pool), ``dense`` (classifier).
- ``avgpool``: local average pooling, attrs ``kernel`` (kh, kw), ``stride`` (sh, sw), ``pad`` (top, bottom, left,
  right; each smaller than the kernel) and ``count_include_pad``: a quantization point.  The integer run sums each
  window exactly in int32 (padding: the input zero point when padding counts, so it adds the real value 0; else 0 and
  the window's divisor is its number N of input elements) and rescales the sum with one exact
  :func:`fxbn.from_avgpool` layer per window size N (:func:`avgpool_windows`: every N the geometry allows).

Integer semantics: activations int8 with calibrated per-tensor (scale, zero point); conv accumulators are exact
integers sum(w_q * (a_q - z)); BN + activation + requantization is one FixedPointBN (LeakyReLU: the max of two,
exact because rounding and clamping are monotone and leaky(v) = max(v, alpha*v) for 0 < alpha < 1); the
classifier's logits are exact integers (no requantization), so "bit-identical logits" compares integers.
"""
from dataclasses import dataclass, field

import numpy as np

import fxbn
from fxbn import importers
from fxbn.ops import from_add, from_avgpool

FLOAT32_EXACT = 2 ** 24  # |integer| below this: every float32 partial sum of integers is exact
FLOAT64_EXACT = 2 ** 53
POINTS = ("input", "bn", "add", "avgpool")   # the quantization points: ops whose output has its own quantization


@dataclass
class Node:
    name: str
    op: str
    src: tuple = ()
    attrs: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- kernels
def pad_nhwc(x, pad, value=0):
    t, b, l, r = pad
    if not any(pad):
        return x
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def conv_nhwc(x, w, stride, pad, depthwise=False, dtype=np.float32):
    """Convolution in `dtype` (x already centred: padding inserts 0)."""
    x = pad_nhwc(np.asarray(x, dtype), pad)
    if depthwise:
        kh, kw, c = w.shape
        n, h, wd, _ = x.shape
        ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
        out = np.zeros((n, ho, wo, c), dtype)
        for i in range(kh):
            for j in range(kw):
                out += x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :] \
                    * w[i, j].astype(dtype)
        return out
    kh, kw, _, o = w.shape
    n, h, wd, _ = x.shape
    ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
    w = np.ascontiguousarray(w, dtype)  # w[i, j] must have unit stride for BLAS (weights arrive transposed: ~20x)
    out = np.zeros((n, ho, wo, o), dtype)
    for i in range(kh):  # one matmul per kernel tap: faster than im2col for the narrow layers here
        for j in range(kw):
            out += x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :] @ w[i, j]
    return out


def conv_int(xc, w_q, stride, pad, depthwise, term_bound):
    """Exact integer convolution of centred activations xc = a_q - z with integer weights.

    term_bound is max over output channels of sum |w_q| * max |xc|: it bounds every partial sum, so a float
    matmul of the integer-valued arrays is exact when it is below 2^24 (float32) or 2^53 (float64) whatever
    order BLAS sums in; the result is then converted back to int32 without rounding.
    """
    if term_bound >= FLOAT64_EXACT:
        raise ValueError(f"accumulator bound {term_bound} too wide for an exact float64 convolution")
    dtype = np.float32 if term_bound < FLOAT32_EXACT else np.float64
    return conv_nhwc(xc, w_q, stride, pad, depthwise, dtype).astype(np.int32)


def maxpool_nhwc(x, k, stride, pad, pad_value):
    x = pad_nhwc(x, pad, pad_value)
    n, h, w, c = x.shape
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    out = None
    for i in range(k):
        for j in range(k):
            v = x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :]
            out = v.copy() if out is None else np.maximum(out, v)
    return out


def window_sums(x, kernel, stride, pad, value, dtype):
    """Sum of every (kh, kw) window of NHWC x (padded with ``value``), in ``dtype``."""
    x = pad_nhwc(np.asarray(x, dtype), pad, value)
    (kh, kw), (sh, sw) = kernel, stride
    ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"a {kh}x{kw} window does not fit the padded {x.shape[1]}x{x.shape[2]} map")
    out = np.zeros((x.shape[0], ho, wo, x.shape[3]), dtype)
    for i in range(kh):
        for j in range(kw):
            out += x[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]
    return out


def avgpool_counts(h, w, kernel, stride, pad):
    """(ho, wo) int64 array: how many input (not padding) elements each window of an h x w map holds."""
    (kh, kw), (sh, sw), (t, b, l, r) = kernel, stride, pad
    ho, wo = (h + t + b - kh) // sh + 1, (w + l + r - kw) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"a {kh}x{kw} window does not fit the padded {h + t + b}x{w + l + r} map")
    start = np.arange(ho) * sh - t
    rows = np.minimum(start + kh, h) - np.maximum(start, 0)
    start = np.arange(wo) * sw - l
    cols = np.minimum(start + kw, w) - np.maximum(start, 0)
    return np.outer(rows, cols).astype(np.int64)


def avgpool_windows(kernel, pad, count_include_pad):
    """Every window size N an average pooling can divide by, for any input size (sorted).

    Counting the padding: kh*kw.  Else a window starting at s >= -top and ending at s + kh <= h + bottom holds
    kh - a - b rows, 0 <= a <= top, 0 <= b <= bottom (at least 1: the pads are smaller than the kernel), and
    likewise columns; N is a product of the two.

    >>> avgpool_windows((3, 3), (1, 1, 1, 1), False)
    [1, 2, 3, 4, 6, 9]
    """
    (kh, kw), (t, b, l, r) = kernel, pad
    if count_include_pad or not any(pad):
        return [kh * kw]
    rows = {kh - i - j for i in range(t + 1) for j in range(b + 1) if kh - i - j >= 1}
    cols = {kw - i - j for i in range(l + 1) for j in range(r + 1) if kw - i - j >= 1}
    return sorted({m * n for m in rows for n in cols})


def shortcut_a(x, out_channels, pad_value=0):
    """CIFAR option A: x[:, ::2, ::2, :] with (out - in)/2 constant channels on each side."""
    y = x[:, ::2, ::2, :]
    extra = (out_channels - x.shape[-1]) // 2
    return np.pad(y, ((0, 0), (0, 0), (0, 0), (extra, extra)), constant_values=pad_value)


def same_padding(size, k, stride):
    """TensorFlow 'same' padding (before, after) for one spatial dimension."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def fake_quantize(v, act):
    """Quantize (round half up, clamp to the dtype) and dequantize, in float32."""
    q = np.floor(v * np.float32(1 / act.scale) + np.float32(0.5 + act.zero_point))
    np.clip(q, act.qmin, act.qmax, out=q)
    q -= np.float32(act.zero_point)
    q *= np.float32(act.scale)
    return q


def float_activation(v, act):
    if act is None:
        return v
    if act == "relu":
        return np.maximum(v, 0)
    if act == "relu6":
        return np.clip(v, 0, 6)
    return np.where(v >= 0, v, v * np.float32(act[1]))


def reference_fast(layer, x, guess=None):
    """FixedPointBN.reference(x, axis=-1, engine="core"), vectorised over all channels (channels last).

    The exact output is the unique y with T(y) <= x' < T(y + 1) (x' = d*x mirrored, T(qmin) = -inf,
    T(qmax + 1) = +inf; T the core's exact reference breakpoints): the same rule as y = qmin + #{k : T(k) <= x'}
    in fxbn.reference.outputs_from_breakpoints. A guess (any outputs, e.g. fxbn's; default: rounded float from
    layer.affine) is corrected step by step until every element satisfies the rule, so only the exact breakpoints
    decide the result, never the guess. tests/test_pipeline.py checks it against layer.reference(engine="python").
    """
    d, T = layer.reference_breakpoints("core")
    x = np.asarray(x)
    c, levels = layer.channels, T.shape[1]
    lo, hi = layer.in_range[:, 0], layer.in_range[:, 1]
    if np.any(x < lo) or np.any(x > hi):
        raise ValueError("input outside in_range")
    qmin, qmax = layer.out_range
    # int32 keys when the whole range (mirrored, and T <= hi + 1) stays clear of the int32 limits used as +-inf
    narrow = max(abs(int(lo.min())), abs(int(hi.max()))) < 2 ** 30
    kt = np.int32 if narrow else np.int64
    inf = np.iinfo(kt).max
    table = np.concatenate([np.full((c, 1), -inf), T, np.full((c, 1), inf)], axis=1).astype(kt).reshape(-1)
    base = (np.arange(c, dtype=np.int64) * (levels + 2)).astype(kt)
    xp = x.astype(kt, copy=False) * np.where(d == 0, 1, d).astype(kt)
    if guess is None:
        a, b = layer.affine
        guess = np.clip(np.floor(x * a + b + 0.5), qmin, qmax)
    idx = guess.astype(kt) + (base - qmin)
    for _ in range(levels + 1):
        up = table[idx + 1] <= xp
        down = table[idx] > xp
        if not (up.any() or down.any()):
            break
        idx += up
        idx -= down
    else:
        raise AssertionError("reference search did not converge")
    return (idx - base + qmin).astype(layer.out_dtype)


# ---------------------------------------------------------------------------------------------- the graph
class Graph:
    """Nodes plus their float parameters; quantized by :meth:`quantize` after :meth:`calibrate`."""

    def __init__(self, nodes, input_mean, input_std, output=None):
        self.nodes = list(nodes)
        self.by_name = {n.name: n for n in self.nodes}
        self.input_mean = np.asarray(input_mean, np.float64)  # float input = (pixel/255 - mean) / std
        self.input_std = np.asarray(input_std, np.float64)
        self.output = output or self.nodes[-1].name
        self.acts = {}      # quantization point -> ActivationQuant
        self.q = {}         # node -> integer parameters

    def bn_nodes(self):
        return [n for n in self.nodes if n.op == "bn"]

    def normalise(self, pixels):
        return ((np.asarray(pixels, np.float32) / np.float32(255) - self.input_mean.astype(np.float32))
                / self.input_std.astype(np.float32)).astype(np.float32)

    # ------------------------------------------------------------------ float and fake-quant
    def forward_float(self, pixels, fake_quant=False, record=None):
        """Float32 forward pass (fake_quant: int8-quantized weights and activations, BN in float32)."""
        val = {}
        for node in self.nodes:
            a = node.attrs
            if node.op == "input":
                v = self.normalise(pixels)
            elif node.op == "conv":
                x = val[node.src[0]]
                w = a["w"]
                if fake_quant:
                    w = self.q[node.name]["w_deq"]
                v = conv_nhwc(x, w, a["stride"], a["pad"], a.get("depthwise", False))
                if a.get("bias") is not None:
                    v = v + a["bias"].astype(np.float32)
            elif node.op == "bn":
                v = float_activation(a["bn"].apply_float(val[node.src[0]], axis=-1), a["act"])
            elif node.op == "add":
                v = val[node.src[0]] + val[node.src[1]]
                if a.get("relu"):
                    v = np.maximum(v, 0)
            elif node.op == "maxpool":
                v = maxpool_nhwc(val[node.src[0]], a["k"], a["stride"], a["pad"], -np.inf)
            elif node.op == "shortcut_a":
                v = shortcut_a(val[node.src[0]], a["out_channels"])
            elif node.op == "gap":
                v = val[node.src[0]].mean(axis=(1, 2))
            elif node.op == "avgpool":
                x = val[node.src[0]]
                v = window_sums(x, a["kernel"], a["stride"], a["pad"], 0, np.float32)
                if a["count_include_pad"]:
                    v /= np.float32(a["kernel"][0] * a["kernel"][1])
                else:
                    v /= avgpool_counts(x.shape[1], x.shape[2], a["kernel"], a["stride"], a["pad"]) \
                        .astype(np.float32)[None, :, :, None]
            elif node.op == "dense":
                w = self.q[node.name]["w_deq"] if fake_quant else a["w"]
                v = val[node.src[0]] @ w.astype(np.float32) + a["bias"].astype(np.float32)
            else:
                raise ValueError(f"unknown op {node.op}")
            if fake_quant and node.name in self.acts:
                v = fake_quantize(v, self.acts[node.name])
            if record is not None and node.name in record:
                record[node.name](v)
            val[node.name] = v
        return val[self.output]

    # ------------------------------------------------------------------ calibration and quantization
    def calibrate(self, batches, method="minmax", percentile=99.99, max_samples=2_000_000, seed=0):
        """Activation quantization of every quantization point from float activations of the given image batches."""
        points = [n.name for n in self.nodes if n.op in POINTS]
        rng = np.random.default_rng(seed)
        stats = {p: [] for p in points}

        def recorder(p):
            def rec(v):
                flat = v.reshape(-1)
                if method == "percentile" and flat.size > max_samples // 8:
                    flat = rng.choice(flat, max_samples // 8, replace=False)
                elif method == "minmax":
                    flat = np.array([flat.min(), flat.max()])
                stats[p].append(flat)
            return rec

        for pixels in batches:
            self.forward_float(pixels, record={p: recorder(p) for p in points})
        self.acts = {p: importers.calibrate(np.concatenate(stats[p]), method, percentile) for p in points}
        return self.acts

    def act_of(self, name):
        """Quantization (with the exact integer range) of a node's output, following range-preserving ops."""
        node = self.by_name[name]
        if node.op in ("maxpool", "shortcut_a", "gap"):
            return self.act_of(node.src[0])
        return self.q[name]["act"]

    def quantize(self, rounding="half_up", solver_options=None):
        """Integer parameters: int8 weights, a FixedPointBN per BN (exact accumulator bounds), the input layer."""
        solver_options = solver_options or {}
        self.rounding, self.solver_options = rounding, dict(solver_options)
        self.q = {}
        for node in self.nodes:
            a = node.attrs
            if node.op == "input":
                act = self.acts[node.name]
                # x = (p/255 - mean)/std, q = R(x/s + z): per channel an affine map of the uint8 pixel p; its
                # slope and offset are float64 roundings, and the reference is that of these two floats
                slope = 1.0 / (255.0 * self.input_std * act.scale)
                offset = -self.input_mean / (self.input_std * act.scale) + act.zero_point
                layer = fxbn.from_affine(slope, offset, in_dtype="uint8", out_dtype=act.dtype, rounding=rounding)
                self.q[node.name] = {"layer": layer, "act": act.with_range(*layer.out_range)}
            elif node.op == "conv":
                w = a["w"]
                # quantize_weights wants output channels on an axis: HWIO -> axis 3, depthwise (kh, kw, C) -> axis 2
                w_q, w_scale = importers.quantize_weights(w, axis=w.ndim - 1)
                shape = [1] * w.ndim
                shape[-1] = -1
                self.q[node.name] = {"w_q": w_q, "w_scale": w_scale,
                                     "w_deq": (w_q * w_scale.reshape(shape)).astype(np.float32)}
            elif node.op == "bn":
                conv = self.by_name[node.src[0]]
                cq = self.q[conv.name]
                act_in = self.act_of(conv.src[0])
                act_out = self.acts[node.name]
                w_q = cq["w_q"]
                w_terms = w_q.reshape(-1, w_q.shape[-1])
                cq["term_bound"] = int(np.abs(w_terms.astype(np.int64)).sum(axis=0).max()) \
                    * max(abs(act_in.qmin - act_in.zero_point), abs(act_in.qmax - act_in.zero_point))
                act = a["act"]
                relu = act if act in ("relu", "relu6") else False
                if relu == "relu":
                    relu = True
                bias = conv.attrs.get("bias")
                # Keras ResNet-50 convs have a bias before BN: folded into the BN mean (exactly when possible; the
                # reference is then that of the folded BN, recorded as bias_fold_exact)
                fold_exact = bias is None or importers.fold_is_exact(a["bn"], bias)
                layers = [importers.conv_bn_layer(a["bn"], w_q, cq["w_scale"], act_in, act_out, relu=relu,
                                                  axis=w_q.ndim - 1, rounding=rounding, conv_bias=bias,
                                                  exact_bias_fold=False, **solver_options)]
                if isinstance(act, tuple):  # leaky: second layer computes R(alpha*v), exact scaling (see module doc)
                    alpha = np.float64(np.float32(act[1]))
                    bn = a["bn"]
                    scaled = importers.BatchNormParams(np.asarray(bn.gamma, np.float64) * alpha,
                                                       np.asarray(bn.beta, np.float64) * alpha, bn.mean, bn.var,
                                                       bn.eps)
                    layers.append(importers.conv_bn_layer(scaled, w_q, cq["w_scale"], act_in, act_out,
                                                          axis=w_q.ndim - 1, rounding=rounding, conv_bias=bias,
                                                          exact_bias_fold=False, **solver_options))
                qmin = max(layer.out_range[0] for layer in layers)
                qmax = max(layer.out_range[1] for layer in layers)
                self.q[node.name] = {"layers": layers, "act": act_out.with_range(qmin, qmax), "act_in": act_in,
                                     "bias_fold_exact": fold_exact}
            elif node.op == "add":
                act = self.acts[node.name]
                a1, a2 = (self.act_of(s) for s in node.src)
                layer = from_add((a1.scale, a2.scale), (a1.zero_point, a2.zero_point), act.scale, act.zero_point,
                                 in_dtypes=(a1.dtype, a2.dtype), out_dtype=act.dtype,
                                 in_ranges=((a1.qmin, a1.qmax), (a2.qmin, a2.qmax)), rounding=rounding,
                                 relu=bool(a.get("relu")))
                self.q[node.name] = {"layer": layer, "act": act.with_range(*layer.out_range)}
            elif node.op == "avgpool":
                act_in, act = self.act_of(node.src[0]), self.acts[node.name]
                kh, kw = a["kernel"]
                lo, hi = act_in.qmin, act_in.qmax
                if a["count_include_pad"]:      # padding holds the zero point
                    lo, hi = min(lo, act_in.zero_point), max(hi, act_in.zero_point)
                if kh * kw * max(abs(lo), abs(hi)) >= 2 ** 31:
                    raise ValueError(f"node {node.name}: a {kh}x{kw} window sum may not fit int32")
                opts = {k: solver_options[k] for k in ("acc_bits", "max_multiplier_bits") if k in solver_options}
                layers = [from_avgpool(n, act_in.scale, act_in.zero_point, act.scale, act.zero_point,
                                       in_dtype=act_in.dtype, in_range=(n * lo, n * hi), out_dtype=act.dtype,
                                       rounding=rounding, **opts)
                          for n in avgpool_windows(a["kernel"], a["pad"], a["count_include_pad"])]
                qmin = min(layer.out_range[0] for layer in layers)
                qmax = max(layer.out_range[1] for layer in layers)
                self.q[node.name] = {"layers": layers, "act": act.with_range(qmin, qmax)}
            elif node.op == "dense" or (node.op == "conv" and a.get("logits")):
                pass
        for node in self.nodes:
            if node.op == "dense":
                act_in = self.act_of(node.src[0])
                w_q, w_scale = importers.quantize_weights(node.attrs["w"], axis=1)
                self.q[node.name] = {"w_q": w_q, "w_scale": w_scale, "w_deq": (w_q * w_scale).astype(np.float32),
                                     "act_in": act_in}
        return self.q

    # ------------------------------------------------------------------ persistence
    def save(self, path):
        """Save the calibrated, quantized graph (float parameters, calibration, integer layers) as one .npz (no
        pickle); read it back with :func:`fxbn.network.load`, which validates it and re-checks it (see
        :mod:`fxbn.network_io`)."""
        from fxbn import network_io

        network_io.save(self, path)

    # ------------------------------------------------------------------ integer
    def forward_int(self, pixels, bn="fxbn", observe=None, observe_add=None):
        """Integer-only forward pass from uint8 pixels (N, H, W, 3).

        Parameters
        ----------
        bn : {"fxbn", "reference", "reference_api"}
            BN (+ activation + requantization) by FixedPointBN.apply or by the exact reference (reference_fast,
            or FixedPointBN.reference(engine="core") itself: slower, for checks).
        observe : callable(node, accumulator, outputs), optional
            Called at each BN with the int32 accumulator and the int8 output.
        observe_add : callable(node, x1, x2, outputs), optional
            Called at each residual add with its two integer inputs (the arrays the add layer received) and its
            output.

        Returns
        -------
        (logits_int, logits_real) : int64 exact logits and their real value (logits_int * scale).
        """
        val = {}
        for node in self.nodes:
            val[node.name] = self._int_node(node, val, bn, pixels)
            if observe is not None and node.op == "bn":
                observe(node, val[node.src[0]], val[node.name])
            elif observe_add is not None and node.op == "add":
                observe_add(node, val[node.src[0]], val[node.src[1]], val[node.name])
        logits, unit = self._output(val)
        return logits, logits * unit

    def _output(self, val):
        """(int64 outputs, real unit): the logits, or for a feature extractor its centred last activation."""
        out = val[self.output]
        if isinstance(out, tuple):
            return out
        act = self.act_of(self.output)
        return out.astype(np.int64) - act.zero_point, act.scale

    def forward_pair(self, pixels, observe=None):
        """The fxbn and the exact-reference integer pipelines in lockstep.

        Each node is computed once while its inputs are the very same arrays in both pipelines, and separately
        after they diverge; a BN's two outputs are merged into one array only when they are equal element for
        element. The results are therefore exactly those of two independent forward_int runs.

        observe : callable(node, accumulator, fxbn_outputs, reference_outputs), optional
            Called at each BN of the fxbn pipeline (reference_outputs from the same accumulator).

        Returns
        -------
        (logits_fxbn, logits_reference, unit, diverged_nodes)
        """
        vf, vr, diverged = {}, {}, []
        for node in self.nodes:
            shared = all(vf[s] is vr[s] for s in node.src)
            if node.op in POINTS:
                f = self._int_node(node, vf, "fxbn", pixels)
                # fxbn's outputs serve only as the starting guess of the exact search (see reference_fast)
                r = self._int_node(node, vr, "reference", pixels, guess=f if shared else None)
                if shared and observe is not None and node.op == "bn":
                    observe(node, vf[node.src[0]], f, r)
                if shared and np.array_equal(f, r):
                    r = f
                elif shared:
                    diverged.append(node.name)
                vf[node.name], vr[node.name] = f, r
            elif shared:
                vf[node.name] = vr[node.name] = self._int_node(node, vf, "fxbn", pixels)
            else:
                vf[node.name] = self._int_node(node, vf, "fxbn", pixels)
                vr[node.name] = self._int_node(node, vr, "reference", pixels)
        (lf, unit), (lr, _) = self._output(vf), self._output(vr)
        return lf, lr, unit, diverged

    @staticmethod
    def _bn(layer, x, bn, guess=None):
        if bn == "fxbn":
            return layer.apply(x, axis=-1)
        if bn == "reference":
            return reference_fast(layer, x, guess)
        if bn == "reference_api":
            return layer.reference(x, axis=-1, engine="core")
        raise ValueError(f"bn must be 'fxbn', 'reference' or 'reference_api', got {bn!r}")

    def _int_node(self, node, val, bn, pixels=None, guess=None):
        a = node.attrs
        q = self.q.get(node.name, {})
        if node.op == "input":
            return self._bn(q["layer"], _pixels(pixels), bn, guess)
        if node.op == "conv":
            src = self.by_name[node.src[0]]
            act_in = self.act_of(src.name)
            xc = val[src.name].astype(np.int16) - np.int16(act_in.zero_point)
            if a.get("logits"):
                return self._logits_conv(node, xc, act_in)
            return conv_int(xc, q["w_q"], a["stride"], a["pad"], a.get("depthwise", False), q["term_bound"])
        if node.op == "bn":
            acc = val[node.src[0]]
            # a guess is the combined output; it only seeds the single-layer search
            outs = [self._bn(layer, acc, bn, guess if len(q["layers"]) == 1 else None) for layer in q["layers"]]
            return outs[0] if len(outs) == 1 else np.maximum(outs[0], outs[1])
        if node.op == "add":
            x1, x2 = (val[s] for s in node.src)
            if bn == "fxbn":
                return q["layer"].apply(x1, x2)
            if bn == "reference_api":
                return q["layer"].reference(x1, x2)
            if bn == "reference":
                return self._add_reference(q, x1, x2)
            raise ValueError(f"bn must be 'fxbn', 'reference' or 'reference_api', got {bn!r}")
        if node.op == "maxpool":
            return maxpool_nhwc(val[node.src[0]], a["k"], a["stride"], a["pad"], self.act_of(node.src[0]).qmin)
        if node.op == "shortcut_a":
            return shortcut_a(val[node.src[0]], a["out_channels"], self.act_of(node.src[0]).zero_point)
        if node.op == "gap":
            src = node.src[0]
            prev = self.by_name[src]
            if prev.op == "conv" and prev.attrs.get("logits"):
                logits, scale = val[src]
                return logits.sum(axis=(1, 2)), scale / (logits.shape[1] * logits.shape[2])
            # exact integer sum over positions; the 1/(H*W) goes into the classifier's scale
            act = self.act_of(src)
            x = val[src].astype(np.int64) - act.zero_point
            return x.sum(axis=(1, 2)), act.scale / (x.shape[1] * x.shape[2])
        if node.op == "avgpool":
            return self._avgpool(node, val[node.src[0]], q, bn, guess)
        if node.op == "dense":
            pooled, scale = val[node.src[0]]
            unit = scale * q["w_scale"]
            bias_q = _bias_units(node.name, a["bias"], unit)
            # int64 matmul (not BLAS): exact, and small (one row per image)
            return pooled @ q["w_q"].astype(np.int64) + bias_q, unit
        raise ValueError(f"unknown op {node.op}")

    def _avgpool(self, node, x, q, bn, guess=None):
        """Exact int32 window sums, each rescaled by the from_avgpool layer of its window size."""
        a = node.attrs
        act_in = self.act_of(node.src[0])
        cip = a["count_include_pad"]
        sums = window_sums(x, a["kernel"], a["stride"], a["pad"], act_in.zero_point if cip else 0, np.int32)
        layers = {layer.op["window"]: layer for layer in q["layers"]}
        if cip or not any(a["pad"]):
            n = a["kernel"][0] * a["kernel"][1]
            if n not in layers:
                raise ValueError(f"node {node.name}: no layer for the window size {n}")
            return self._bn(layers[n], sums, bn, guess)
        counts = avgpool_counts(x.shape[1], x.shape[2], a["kernel"], a["stride"], a["pad"])
        out = np.empty(sums.shape, q["layers"][0].out_dtype)
        for n in np.unique(counts).tolist():
            if n not in layers:
                raise ValueError(f"node {node.name}: no layer for the window size {n}")
            m = counts == n
            out[:, m, :] = self._bn(layers[n], sums[:, m, :], bn, None if guess is None else guess[:, m, :])
        return out

    @staticmethod
    def _add_reference(q, x1, x2):
        """FixedPointAdd.reference by lookup in the exact reference of the whole input box (computed once)."""
        layer = q["layer"]
        (l1, h1), (l2, h2) = layer.in_ranges
        if "reference_table" not in q:
            g1, g2 = np.meshgrid(np.arange(l1, h1 + 1), np.arange(l2, h2 + 1), indexing="ij")
            q["reference_table"] = layer.reference(g1.astype(layer.in_dtypes[0]), g2.astype(layer.in_dtypes[1]))
        x1, x2 = np.asarray(x1), np.broadcast_to(np.asarray(x2), np.shape(x1))
        if x1.size and (x1.min() < l1 or x1.max() > h1 or x2.min() < l2 or x2.max() > h2):
            raise ValueError(f"add inputs outside in_ranges {layer.in_ranges}")
        return q["reference_table"][x1.astype(np.intp) - l1, x2.astype(np.intp) - l2]

    def _logits_conv(self, node, xc, act_in):
        """Classifier as a 1x1 conv with bias (Darknet): exact integer accumulator + integer bias per position."""
        if "w_q" not in self.q.get(node.name, {}):
            w_q, w_scale = importers.quantize_weights(node.attrs["w"], axis=3)
            self.q[node.name] = {"w_q": w_q, "w_scale": w_scale}
        q = self.q[node.name]
        unit = act_in.scale * q["w_scale"]
        bound = int(np.abs(q["w_q"].astype(np.int64)).reshape(-1, q["w_q"].shape[-1]).sum(axis=0).max()) * 255
        acc = conv_int(xc, q["w_q"], node.attrs["stride"], node.attrs["pad"], False, bound).astype(np.int64)
        bias_q = _bias_units(node.name, node.attrs["bias"], unit)
        return acc + bias_q, unit


def _pixels(pixels):
    """The uint8 image batch, its values checked rather than cast: another integer type is taken when every value
    lies in [0, 255]; floats and bools are refused (a cast would wrap 300 to 44 and truncate 1.7)."""
    x = np.asarray(pixels)
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind not in "iu":
        raise ValueError(f"pixels have dtype {x.dtype}; expected uint8 (or integers in [0, 255])")
    bad = np.flatnonzero((x < 0) | (x > 255)) if x.size else ()
    if len(bad):
        idx = ", ".join(str(int(i)) for i in np.unravel_index(bad[0], x.shape))
        raise ValueError(f"pixels[{idx}] is {x.reshape(-1)[bad[0]]}: pixels must lie in [0, 255]")
    return x.astype(np.uint8)


def _bias_units(name, bias, unit):
    """A float bias in accumulator units, rounded to int64; NaN, inf or a value beyond 2^62 units is an error (a
    cast would return -2^63)."""
    with np.errstate(over="ignore", invalid="ignore"):
        v = np.asarray(bias, np.float64) / unit
    bad = np.flatnonzero(~(np.abs(v) < 2.0 ** 62))
    if bad.size:
        c = int(bad[0])
        raise ValueError(f"node {name}: bias[{c}] = {np.asarray(bias).reshape(-1)[c]} is {v[c]} accumulator units: "
                         "not a finite value within 2^62")
    return np.round(v).astype(np.int64)


def load(path, *, check=True):
    """Read a graph written by :meth:`Graph.save`; see :func:`fxbn.network_io.load`."""
    from fxbn import network_io

    return network_io.load(path, check=check)
