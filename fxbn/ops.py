"""Exact integer forms for the other rescalings of an integer network: requantization, average pooling, elementwise
multiply (one integer input each: the batchnorm form, solved exactly) and the two-input add (its own solver).

One-input ops are exact instances of the batchnorm form v = (gamma*(s_in*(x - z_in) - mean)/sqrt(var + eps) + beta)
/s_out + z_out, whose reference the core decides exactly (sqrt(var + eps) is never rounded; here it is the integer
sqrt(window^2) or 1):

=========  ======================  ===============================================================================
op         integer input x         batchnorm instance
=========  ======================  ===============================================================================
requant    accumulator acc         gamma=1, s_in=acc_scale, z_in=-bias, var=1: acc_scale*(acc + bias)/s_out + z_out
avgpool    window sum S of N       gamma=1, s_in=in_scale, z_in=N*z, var=N^2: in_scale*(S - N*z)/(N*s_out) + z_out
mul        (x1 - z1)*(x2 - z2)     gamma=s2, s_in=s1, z_in=0, var=1: s1*s2*P/s_out + z_out
=========  ======================  ===============================================================================

No quotient of floats is rounded anywhere: acc_scale/out_scale is generally not a float, and it is never formed.

>>> import numpy as np, fxbn
>>> rq = fxbn.from_requant([0.0004, 0.0011], 0.05, 3, bias=[120, -40], in_range=(-20000, 20000))
>>> acc = np.array([[1234, -5678], [20000, 0]], np.int32)            # (N, C) accumulators
>>> rq.apply(acc, axis=1).tolist()
[[14, -123], [127, 2]]
>>> bool((rq.apply(acc, axis=1) == rq.reference(acc, axis=1)).all())
True
>>> add = fxbn.from_add(in_scales=(0.0123, 0.05), in_zero_points=(3, -5), out_scale=0.07, out_zero_point=1)
>>> (add.multipliers, add.bias, add.shift)
((92123, 374487), 2382492, 19)
>>> x1 = np.array([[-128, 0, 127]], np.int8); x2 = np.array([100, -7, 127], np.int8)
>>> add.apply(x1, x2).tolist(), add.reference(x1, x2).tolist()
([[53, -1, 117]], [[53, -1, 117]])
"""
import math

import numpy as np

from fxbn import _core
from fxbn import ops_reference as oref
from fxbn import reference as ref
from fxbn.api import (DTYPE_RANGES, FixedPointBN, _channel_floats, _channel_ints, _dtype_name, _threads,
                      from_batchnorm)
from fxbn.errors import InfeasibleError

__all__ = ["from_requant", "from_avgpool", "from_mul", "from_add", "FixedPointAdd", "FixedPointRescale",
           "mul_input", "InfeasibleError"]

ADD_IN_DTYPES = ("int8", "uint8", "int16")
ADD_OUT_DTYPES = ("int8", "uint8", "int16", "uint16")
_ADD_DTYPE_SET = frozenset(np.dtype(d) for d in ADD_IN_DTYPES)
_MAX_WINDOW = 2 ** 26  # window^2 must be an exact double


class FixedPointRescale(FixedPointBN):
    """A FixedPointBN solved for a requantization, average pooling or multiply (see fxbn.ops).

    ``op`` records the op and the user's parameters; the layer itself is the exact batchnorm-form instance, so save,
    load and ``python -m verify`` treat it as any FixedPointBN.  A one-channel layer applies to the whole array
    (any shape; ``axis`` is ignored).
    """

    op = None

    def _flat(self, x):
        return self.channels == 1 and np.ndim(x) >= 0

    def apply(self, x, axis=1, out=None, threads=None):
        if self._flat(x):
            x = np.asarray(x)
            flat_out = None
            if out is not None:
                if not isinstance(out, np.ndarray) or out.shape != x.shape or out.dtype != self.out_dtype \
                        or not out.flags.c_contiguous or not out.flags.writeable:
                    raise ValueError(f"out must be a writeable C-contiguous {self.out_dtype} array of shape "
                                     f"{x.shape}")
                flat_out = out.reshape(1, 1, -1)
            y = super().apply(x.reshape(1, 1, -1), axis=1, out=flat_out, threads=threads)
            return out if out is not None else y.reshape(x.shape)
        return super().apply(x, axis=axis, out=out, threads=threads)

    __call__ = apply

    def reference(self, x, axis=1, engine="python"):
        if self._flat(x):
            x = np.asarray(x)
            return super().reference(x.reshape(1, 1, -1), axis=1, engine=engine).reshape(x.shape)
        return super().reference(x, axis=axis, engine=engine)

    def to_dict(self):
        d = super().to_dict()
        d["op"] = self.op
        return d

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise ValueError("not an fxbn layer record")
        layer = FixedPointBN.from_dict({k: v for k, v in d.items() if k != "op"})
        op = d.get("op")
        if not isinstance(op, dict) or op.get("kind") not in _OP_FIELDS:
            raise ValueError(f"op must be a dict with kind 'requant', 'avgpool' or 'mul', got {op!r}")
        _check_op(layer, op)
        return _as_rescale(layer, op)


_OP_FIELDS = {"requant": {"acc_scale", "out_scale", "out_zero_point", "bias"},
              "avgpool": {"window", "in_scale", "in_zero_point", "out_scale", "out_zero_point", "in_dtype"},
              "mul": {"in_scales", "in_zero_points", "out_scale", "out_zero_point", "in_dtypes"}}


def _check_op(layer, op):
    """The op record must state exactly the parameters the layer was solved for: the batchnorm-form source (and,
    for mul, the product range) it implies is rebuilt and compared with the layer's, so a record that says it
    computes one thing while the layer computes another is refused."""
    kind = op["kind"]
    keys = set(op) - {"kind"}
    if keys != _OP_FIELDS[kind]:
        raise ValueError(f"op of kind {kind!r} must have the fields {', '.join(sorted(_OP_FIELDS[kind]))}, got "
                         f"{', '.join(sorted(keys))}")
    c = layer.channels
    try:
        if kind == "requant":
            want = {"in_scale": _channel_floats("op.acc_scale", op["acc_scale"]),
                    "out_scale": _channel_floats("op.out_scale", op["out_scale"]),
                    "out_zero_point": _channel_ints("op.out_zero_point", op["out_zero_point"]),
                    "in_zero_point": -_channel_ints("op.bias", op["bias"], -2 ** 40, 2 ** 40),
                    "gamma": 1.0, "beta": 0.0, "mean": 0.0, "var": 1.0, "eps": 0.0}
        else:
            if c != 1 or layer.in_dtype != np.int32:
                raise ValueError(f"an op of kind {kind!r} is a one-channel int32 layer")
            so, zo = _one_float("op.out_scale", op["out_scale"]), _one_int("op.out_zero_point", op["out_zero_point"])
            if kind == "avgpool":
                n = _window_size(op["window"])
                _dtype_name(op["in_dtype"], "op.in_dtype", ADD_IN_DTYPES)
                want = {"in_scale": _one_float("op.in_scale", op["in_scale"]), "out_scale": so,
                        "in_zero_point": n * _one_int("op.in_zero_point", op["in_zero_point"]), "out_zero_point": zo,
                        "gamma": 1.0, "beta": 0.0, "mean": 0.0, "var": float(n * n), "eps": 0.0}
            else:
                s1, s2 = _pair("op.in_scales", op["in_scales"], _one_float)
                z1, z2 = _pair("op.in_zero_points", op["in_zero_points"], _zero_point)
                d1, d2 = _pair("op.in_dtypes", op["in_dtypes"], _dtype_item)
                (l1, h1), (l2, h2) = DTYPE_RANGES[d1], DTYPE_RANGES[d2]
                corners = [(a - z1) * (b - z2) for a in (l1, h1) for b in (l2, h2)]
                if layer.in_range.tolist() != [[min(corners), max(corners)]]:
                    raise ValueError(f"the layer's in_range {layer.in_range.tolist()} is not the product range "
                                     f"[{min(corners)}, {max(corners)}] of op.in_dtypes and op.in_zero_points")
                want = {"in_scale": s1, "gamma": s2, "out_scale": so, "in_zero_point": 0, "out_zero_point": zo,
                        "beta": 0.0, "mean": 0.0, "var": 1.0, "eps": 0.0}
    except ValueError as e:
        raise ValueError(f"op: {e}") from None
    src = layer.source
    if src.get("form") != "batchnorm":
        raise ValueError(f"op of kind {kind!r} needs a batchnorm-form source, got form {src.get('form')!r}")
    for key, value in want.items():
        value = np.asarray(value)
        if value.ndim and value.shape[0] not in (1, c) or \
                not np.array_equal(np.broadcast_to(value, (c,)), np.asarray(src[key])):
            raise ValueError(f"op does not match the layer: it implies source.{key} = {value.tolist()}, the layer "
                             f"has {np.asarray(src[key]).tolist()}")


def _as_rescale(layer, op):
    layer.__class__ = FixedPointRescale
    layer.op = op
    return layer


def _json_list(a):
    a = np.asarray(a)
    return [float(v) if a.dtype.kind == "f" else int(v) for v in a.reshape(-1).tolist()]


def _positive(name, value):
    arr = _channel_floats(name, value)
    bad = np.flatnonzero(np.atleast_1d(arr) <= 0)
    if bad.size:
        where = f"{name}[{bad[0]}]" if arr.ndim else name
        raise ValueError(f"{where} is {np.atleast_1d(arr)[bad[0]]}: scales must be positive")
    return arr


def _one_float(name, value):
    """The one float64 a scalar parameter denotes exactly (longdouble 1/3, strings and bools are refused)."""
    arr = _channel_floats(name, value)
    if arr.ndim:
        raise ValueError(f"{name} must be one number, got shape {arr.shape}")
    return float(arr)


def _one_int(name, value, lo=-2 ** 63, hi=2 ** 63 - 1):
    """The one integer a scalar parameter denotes (1.7, "5" and True are refused, not converted)."""
    arr = _channel_ints(name, value, lo, hi)
    if arr.ndim:
        raise ValueError(f"{name} must be one integer, got shape {arr.shape}")
    return int(arr)


def _one_positive(name, value):
    v = _one_float(name, value)
    if not v > 0:
        raise ValueError(f"{name} is {v}: scales must be positive")
    return v


def from_requant(acc_scale, out_scale, out_zero_point=0, *, bias=None, in_range=None, in_dtype="int32",
                 out_dtype="int8", rounding="half_even", relu=False, out_range=None, common_shift=False,
                 acc_bits=64, max_multiplier_bits=None):
    """Exact requantization of a convolution / linear accumulator, per channel.

    y = clamp(R(acc_scale*(acc + bias)/out_scale + out_zero_point), qmin, qmax) for every integer accumulator acc
    in in_range, with acc_scale/out_scale taken as the exact rational quotient of the two floats.

    Parameters
    ----------
    acc_scale : float or array_like
        Scale of the accumulator (s_in*s_w, per output channel for per-channel weights), > 0.
    out_scale : float or array_like
        Output scale, > 0.
    out_zero_point : int or array_like of int
    bias : int or array_like of int, optional
        Integer bias in accumulator units (added before requantization).
    in_range : (lo, hi) or (channels, 2), optional
        Accumulator values the layer is proven for (default: the in_dtype range; the exact accumulator bound of the
        convolution gives smaller shifts).
    Other keywords are as in :func:`fxbn.from_batchnorm`.

    Returns
    -------
    FixedPointRescale
        Applies to the accumulator array (channels on ``axis``); ``op`` holds these parameters.

    Examples
    --------
    >>> import numpy as np, fxbn
    >>> rq = fxbn.from_requant(0.0021, 0.017, -4, bias=37, in_range=(-3000, 3000))
    >>> (int(rq.multiplier[0]), int(rq.shift[0]))
    (16191, 17)
    >>> acc = np.arange(-3000, 3001, dtype=np.int32)
    >>> bool((rq.apply(acc) == rq.reference(acc)).all())
    True
    """
    acc_scale = _positive("acc_scale", acc_scale)
    out_scale = _positive("out_scale", out_scale)
    b = _channel_ints("bias", 0 if bias is None else bias)
    if np.any(np.abs(b) > 2 ** 40):
        raise ValueError("bias must be within 2^40 in magnitude")
    zo = _channel_ints("out_zero_point", out_zero_point)
    layer = from_batchnorm(1.0, 0.0, 0.0, 1.0, 0.0, in_scale=acc_scale, out_scale=out_scale, in_zero_point=-b,
                           out_zero_point=zo, in_range=in_range, in_dtype=in_dtype, out_dtype=out_dtype,
                           rounding=rounding, relu=relu, out_range=out_range, common_shift=common_shift,
                           acc_bits=acc_bits, max_multiplier_bits=max_multiplier_bits)
    op = {"kind": "requant", "acc_scale": _json_list(acc_scale), "out_scale": _json_list(out_scale),
          "out_zero_point": _json_list(zo), "bias": _json_list(b)}
    return _as_rescale(layer, op)


def _window_size(window):
    if isinstance(window, (bool, np.bool_)) or isinstance(window, (tuple, list)) and \
            any(isinstance(w, (bool, np.bool_)) for w in window):
        raise ValueError(f"window must be an int or a tuple of ints, got {window!r}")
    if isinstance(window, (tuple, list)):
        sizes = [int(w) for w in window]
        if not sizes or any(w != v for w, v in zip(sizes, window)):
            raise ValueError(f"window must be an int or a tuple of ints, got {window!r}")
        n = math.prod(sizes)
    else:
        if int(window) != window:
            raise ValueError(f"window must be an int or a tuple of ints, got {window!r}")
        n = int(window)
        sizes = [n]
    if any(w < 1 for w in sizes) or n > _MAX_WINDOW:
        raise ValueError(f"window sizes must be >= 1 with a product <= 2^26, got {window!r}")
    return n


def from_avgpool(window, in_scale, in_zero_point, out_scale, out_zero_point=0, *, in_dtype="int8",
                 in_range=None, out_dtype="int8", rounding="half_even", relu=False, out_range=None,
                 acc_bits=64, max_multiplier_bits=None):
    """Exact average pooling: the integer sum of a window of quantized inputs, divided and requantized.

    y = clamp(R(in_scale*(S - N*in_zero_point)/(N*out_scale) + out_zero_point), qmin, qmax) for every window sum S
    of N = prod(window) inputs of in_dtype (global pooling: window = H*W or (H, W)).

    Parameters
    ----------
    window : int or tuple of int
        Window size N or its extents (k, k); windows of a different size (padding excluded from the count) need
        their own layer.
    in_scale, in_zero_point : float, int
        Quantization of the pooled inputs.
    out_scale, out_zero_point : float, int
    in_dtype : {"int8", "uint8", "int16"}
        Type of the pooled inputs; the layer's input is the int32 window sum, proven for every sum of N of them
        (or for in_range, given as bounds of the sum).
    Other keywords are as in :func:`fxbn.from_affine`.

    Returns
    -------
    FixedPointRescale
        A one-channel layer applying to int32 window sums of any shape.

    Examples
    --------
    >>> import numpy as np, fxbn
    >>> pool = fxbn.from_avgpool((7, 7), 0.031, -3, 0.02, 5)
    >>> x = np.random.default_rng(0).integers(-128, 128, (2, 64, 7, 7), dtype=np.int8)
    >>> s = x.sum(axis=(2, 3), dtype=np.int32)                         # exact window sums, shape (2, 64)
    >>> bool((pool.apply(s) == pool.reference(s)).all()), pool.apply(s).shape
    (True, (2, 64))
    """
    n = _window_size(window)
    in_dtype = _dtype_name(in_dtype, "in_dtype", ("int8", "uint8", "int16"))
    s_in = _one_positive("in_scale", in_scale)
    s_out = _one_positive("out_scale", out_scale)
    zin = _one_int("in_zero_point", in_zero_point)
    zo = _one_int("out_zero_point", out_zero_point)
    if in_range is None:
        lo, hi = DTYPE_RANGES[in_dtype]
        in_range = (n * lo, n * hi)
    layer = from_batchnorm(1.0, 0.0, 0.0, float(n * n), 0.0, in_scale=s_in, out_scale=s_out,
                           in_zero_point=n * zin, out_zero_point=zo, in_range=in_range, in_dtype="int32",
                           out_dtype=out_dtype, rounding=rounding, relu=relu, out_range=out_range,
                           acc_bits=acc_bits, max_multiplier_bits=max_multiplier_bits)
    op = {"kind": "avgpool", "window": n, "in_scale": s_in, "in_zero_point": zin, "out_scale": s_out,
          "out_zero_point": zo, "in_dtype": in_dtype}
    return _as_rescale(layer, op)


def _pair(name, value, kind):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair, got {value!r}")
    return tuple(kind(f"{name}[{i}]", v) for i, v in enumerate(value))


def _zero_point(name, z):
    return _one_int(name, z, -2 ** 31, 2 ** 31)


def _dtype_item(name, d):
    return _dtype_name(d, name, ADD_IN_DTYPES)


def mul_input(x1, x2, in_zero_points):
    """The integer input of a from_mul layer: (x1 - z1)*(x2 - z2) as int32 (x2 broadcast against x1).

    x1 and x2 are int8, uint8 or int16 arrays (the types from_mul accepts); a product outside int32 raises
    ValueError naming its index (it would wrap into another layer input without an error).
    """
    z1, z2 = _pair("in_zero_points", in_zero_points, _zero_point)
    arrays = []
    for name, x in (("x1", x1), ("x2", x2)):
        x = np.asarray(x)
        if x.dtype not in _ADD_DTYPE_SET:
            raise ValueError(f"{name} has dtype {x.dtype}; expected one of {', '.join(ADD_IN_DTYPES)} "
                             "(integer inputs; convert explicitly)")
        arrays.append(x)
    try:
        shape = np.broadcast_shapes(arrays[0].shape, arrays[1].shape)
    except ValueError:
        shape = None
    if shape != arrays[0].shape:
        raise ValueError(f"x2 of shape {arrays[1].shape} does not broadcast to x1's shape {arrays[0].shape}")
    p = (arrays[0].astype(np.int64) - z1) * (arrays[1].astype(np.int64) - z2)     # |p| < 2^63: exact
    bad = np.flatnonzero((p < -2 ** 31) | (p > 2 ** 31 - 1))
    if bad.size:
        idx = ", ".join(str(int(i)) for i in np.unravel_index(bad[0], shape))
        raise ValueError(f"the product at [{idx}] is {int(p.reshape(-1)[bad[0]])}, outside int32")
    return p.astype(np.int32)


def from_mul(in_scales, in_zero_points, out_scale, out_zero_point=0, *, in_dtypes=("int8", "int8"),
             out_dtype="int8", rounding="half_even", relu=False, out_range=None, acc_bits=64,
             max_multiplier_bits=None):
    """Exact elementwise product of two quantized tensors.

    y = clamp(R(s1*(x1 - z1)*s2*(x2 - z2)/out_scale + out_zero_point), qmin, qmax); the layer's one integer input is
    the exact product P = (x1 - z1)*(x2 - z2) (:func:`mul_input`), proven for every P between the extreme products
    of the two input types.

    Returns
    -------
    FixedPointRescale
        A one-channel layer applying to int32 products of any shape.

    Examples
    --------
    >>> import numpy as np, fxbn
    >>> mul = fxbn.from_mul((0.02, 0.03), (4, -2), 0.01, 1)
    >>> x1 = np.array([-128, 5, 127], np.int8); x2 = np.array([3, -100, 127], np.int8)
    >>> p = fxbn.ops.mul_input(x1, x2, (4, -2))
    >>> mul.apply(p).tolist(), mul.reference(p).tolist()
    ([-39, -5, 127], [-39, -5, 127])
    """
    s1, s2 = _pair("in_scales", in_scales, _one_positive)
    z1, z2 = _pair("in_zero_points", in_zero_points, _zero_point)
    d1, d2 = _pair("in_dtypes", in_dtypes, _dtype_item)
    (l1, h1), (l2, h2) = DTYPE_RANGES[d1], DTYPE_RANGES[d2]
    corners = [(a - z1) * (b - z2) for a in (l1, h1) for b in (l2, h2)]
    lo, hi = min(corners), max(corners)
    if lo < -2 ** 31 or hi > 2 ** 31 - 1:
        raise ValueError(f"the product range [{lo}, {hi}] does not fit int32")
    so = _one_positive("out_scale", out_scale)
    zo = _zero_point("out_zero_point", out_zero_point)
    layer = from_batchnorm(s2, 0.0, 0.0, 1.0, 0.0, in_scale=s1, out_scale=so, in_zero_point=0, out_zero_point=zo,
                           in_range=(lo, hi), in_dtype="int32", out_dtype=out_dtype, rounding=rounding, relu=relu,
                           out_range=out_range, acc_bits=acc_bits, max_multiplier_bits=max_multiplier_bits)
    op = {"kind": "mul", "in_scales": [s1, s2], "in_zero_points": [z1, z2], "out_scale": so,
          "out_zero_point": zo, "in_dtypes": [d1, d2]}
    return _as_rescale(layer, op)


# ---------------------------------------------------------------------------------------------------- the add
def from_add(in_scales, in_zero_points, out_scale, out_zero_point=0, *, in_dtypes=("int8", "int8"),
             out_dtype="int8", rounding="half_even", relu=False, in_ranges=None, out_range=None, acc_bits=64,
             max_shift=40):
    """Exact two-input add: y = clamp((A1*x1 + A2*x2 + B) >> s, qmin, qmax) with the smallest s such that
    y = clamp(R((s1*(x1 - z1) + s2*(x2 - z2))/out_scale + out_zero_point), qmin, qmax) for EVERY pair (x1, x2).

    Solved exactly in the C++ core (a 3-variable integer feasibility problem per shift, no floating point in any
    decision); the result is checked on every pair of the box before it is returned.

    Parameters
    ----------
    in_scales : (float, float)
        s1, s2 > 0, taken as the exact rationals the floats denote.
    in_zero_points : (int, int)
    out_scale : float
    out_zero_point : int
    in_dtypes : (str, str)
        "int8", "uint8" or "int16" each.  The box has at most 2^25 pairs: int8 x int8 solves in ~20 ms, int16 x
        int8 in ~5 s; int16 x int16 needs in_ranges narrowing one input to at most 512 values.
    out_dtype : {"int8", "uint8", "int16", "uint16"}
    rounding : {"half_even", "half_up", "half_away", "floor"}
    relu : bool
        Fold a ReLU into the clamp (qmin = out_zero_point).
    in_ranges : ((l1, h1), (l2, h2)), optional
        Sub-box to prove (default: the dtype ranges).
    out_range : (qmin, qmax), optional
    acc_bits : int
        Accumulator limit (32 gives the kernel's faster path when the solution fits; 64 always works).
    max_shift : int
        At most 40.

    Returns
    -------
    FixedPointAdd

    Raises
    ------
    InfeasibleError
        No exact parameters: half_even ties along the line r1*x1 + r2*x2 = k + 1/2 - c (a tie pair is named).
    ValueError
        Bad parameters.

    Examples
    --------
    >>> import fxbn
    >>> fxbn.from_add((0.5, 0.25), (0, 0), 0.5, 0, rounding="half_up").multipliers
    (2, 1)
    >>> try:
    ...     fxbn.from_add((0.5, 0.5), (0, 0), 1.0, 0)               # (x1 + x2)/2: ties at every odd sum
    ... except fxbn.InfeasibleError as e:
    ...     print(str(e)[:60])
    no fixed-point parameters with shift <= 40 match the exact a
    """
    ref.check_rounding(rounding)
    s1, s2 = _pair("in_scales", in_scales, _one_positive)
    so = _one_positive("out_scale", out_scale)
    z1, z2 = _pair("in_zero_points", in_zero_points, _zero_point)
    zo = _zero_point("out_zero_point", out_zero_point)
    d1, d2 = _pair("in_dtypes", in_dtypes, _dtype_item)
    dout = _dtype_name(out_dtype, "out_dtype", ADD_OUT_DTYPES)
    box = _add_box(in_ranges, (d1, d2))
    qmin, qmax = _add_out_range(dout, out_range, relu, zo)
    if not isinstance(acc_bits, (int, np.integer)) or not 2 <= acc_bits <= 64:
        raise ValueError(f"acc_bits must be an integer in [2, 64], got {acc_bits!r}")
    if not isinstance(max_shift, (int, np.integer)) or not 0 <= max_shift <= 40:
        raise ValueError(f"max_shift must be an integer in [0, 40], got {max_shift!r}")
    a1, a2, b, s, _, _ = _core.solve_add_params((s1, s2, so), (z1, z2, zo), box, qmin, qmax, rounding,
                                                int(max_shift), int(acc_bits))
    source = {"form": "add", "in_scales": [s1, s2], "in_zero_points": [z1, z2], "out_scale": so,
              "out_zero_point": zo}
    return FixedPointAdd((a1, a2), b, s, ((box[0], box[1]), (box[2], box[3])), (qmin, qmax), rounding, source,
                         (d1, d2), dout, solve_options={"acc_bits": int(acc_bits), "max_shift": int(max_shift)})


def _add_box(in_ranges, dtypes):
    box = []
    for i, d in enumerate(dtypes):
        dlo, dhi = DTYPE_RANGES[d]
        if in_ranges is None:
            lo, hi = dlo, dhi
        else:
            try:
                lo, hi = in_ranges[i]
            except (TypeError, ValueError, IndexError):
                raise ValueError(f"in_ranges must be ((l1, h1), (l2, h2)), got {in_ranges!r}") from None
            lo, hi = _one_int(f"in_ranges[{i}][0]", lo), _one_int(f"in_ranges[{i}][1]", hi)
            if lo > hi or lo < dlo or hi > dhi:
                raise ValueError(f"in_ranges[{i}] = [{lo}, {hi}] must be non-empty and within {d} [{dlo}, {dhi}]")
        box += [lo, hi]
    if (box[1] - box[0] + 1) * (box[3] - box[2] + 1) > 2 ** 25:
        raise ValueError(f"the input box has {(box[1] - box[0] + 1) * (box[3] - box[2] + 1)} pairs; at most 2^25 "
                         "are supported (narrow in_ranges)")
    return tuple(box)


def _add_out_range(dout, out_range, relu, zo):
    qmin, qmax = DTYPE_RANGES[dout]
    if out_range is not None:
        if not isinstance(out_range, (tuple, list)) or len(out_range) != 2:
            raise ValueError(f"out_range must be a pair (qmin, qmax) of integers, got {out_range!r}")
        lo, hi = (_one_int(f"out_range[{i}]", v) for i, v in enumerate(out_range))
        if lo < qmin or hi > qmax or lo > hi:
            raise ValueError(f"out_range [{lo}, {hi}] must be a non-empty range within {dout} [{qmin}, {qmax}]")
        qmin, qmax = lo, hi
    if relu not in (False, True):
        raise ValueError(f"relu must be False or True, got {relu!r}")
    if relu:
        qmin = max(qmin, zo)
        if qmin > qmax:
            raise ValueError(f"relu leaves an empty output range [{qmin}, {qmax}]")
    return int(qmin), int(qmax)


def _bits(v):
    v = int(v)
    return (v if v >= 0 else ~v).bit_length() + 1


class FixedPointAdd:
    """y = clamp((A1*x1 + A2*x2 + B) >> shift, qmin, qmax), exact for every pair of in_ranges.

    Attributes
    ----------
    multipliers : (int, int)
    bias, shift : int
    in_ranges : ((l1, h1), (l2, h2))
    out_range : (int, int)
    rounding : str
    in_dtypes : (numpy.dtype, numpy.dtype)
    out_dtype : numpy.dtype
    multiplier_bits, accumulator_bits : int
        Signed widths of the widest multiplier and of the widest intermediate over the box.
    source : dict
        "form": "add" and the exact parameters (in_scales, in_zero_points, out_scale, out_zero_point).
    """

    def __init__(self, multipliers, bias, shift, in_ranges, out_range, rounding, source, in_dtypes=("int8", "int8"),
                 out_dtype="int8", solve_options=None):
        ref.check_rounding(rounding)
        # every integer as given, never converted: 1.7, "5" and True are refused, and each fits the kernel's int64
        a1, a2 = _pair("multipliers", multipliers, _one_int)
        self.multipliers = (a1, a2)
        self.bias = _one_int("bias", bias)
        self.shift = _one_int("shift", shift)
        if not 0 <= self.shift <= 62:
            raise ValueError(f"shift {self.shift} is outside [0, 62]")
        self.in_dtypes = _pair("in_dtypes", list(in_dtypes) if isinstance(in_dtypes, tuple) else in_dtypes,
                               lambda name, d: np.dtype(_dtype_name(d, name, ADD_IN_DTYPES)))
        self.out_dtype = np.dtype(_dtype_name(out_dtype, "out_dtype", ADD_OUT_DTYPES))
        (l1, h1), (l2, h2) = _pair("in_ranges", in_ranges, lambda name, r: _pair(name, r, _one_int))
        self.in_ranges = ((l1, h1), (l2, h2))
        for i, (lo, hi) in enumerate(self.in_ranges):
            dlo, dhi = DTYPE_RANGES[self.in_dtypes[i].name]
            if not dlo <= lo <= hi <= dhi:
                raise ValueError(f"in_ranges[{i}] = [{lo}, {hi}] must be non-empty and within {self.in_dtypes[i]}")
        self.out_range = _pair("out_range", out_range, _one_int)
        olo, ohi = DTYPE_RANGES[self.out_dtype.name]
        if not olo <= self.out_range[0] <= self.out_range[1] <= ohi:
            raise ValueError(f"out_range {self.out_range} must be non-empty and within {self.out_dtype}")
        self.rounding = rounding
        self.source = _check_add_source(source)
        self.solve_options = _check_add_options(solve_options)
        self.multiplier_bits = max(_bits(a1), _bits(a2))
        acc = [_bits(self.bias)]
        for x1 in (l1, h1):
            for x2 in (l2, h2):
                t1, t2 = a1 * x1, a2 * x2
                acc += [_bits(t1), _bits(t2), _bits(t1 + t2), _bits(t1 + t2 + self.bias)]
        self.accumulator_bits = max(acc)
        if self.accumulator_bits > 64:
            raise ValueError(f"the accumulator needs {self.accumulator_bits} bits over in_ranges (64 at most)")
        self._kernel = None

    def __repr__(self):
        return (f"FixedPointAdd(multipliers={self.multipliers}, bias={self.bias}, shift={self.shift}, "
                f"in_ranges={self.in_ranges}, out_range={self.out_range}, rounding={self.rounding}, "
                f"accumulator_bits={self.accumulator_bits})")

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_kernel"] = None
        return state

    @property
    def _box(self):
        (l1, h1), (l2, h2) = self.in_ranges
        return (l1, h1, l2, h2)

    @property
    def _exact_args(self):
        s = self.source
        return ((s["in_scales"][0], s["in_scales"][1], s["out_scale"]),
                (s["in_zero_points"][0], s["in_zero_points"][1], s["out_zero_point"]))

    # ---------------------------------------------------------------------------------------------- apply
    def _inputs(self, x1, x2):
        if type(x1) is not np.ndarray:
            x1 = np.asarray(x1)
        if type(x2) is not np.ndarray:
            x2 = np.asarray(x2)
        for name, x in (("x1", x1), ("x2", x2)):
            if x.dtype not in _ADD_DTYPE_SET:
                raise ValueError(f"{name} has dtype {x.dtype}; expected one of {', '.join(ADD_IN_DTYPES)} "
                                 "(integer inputs; convert explicitly)")
        shape = x1.shape
        if x2.shape == shape:  # the common case: no broadcasting
            return (x1 if x1.flags.c_contiguous else np.ascontiguousarray(x1),
                    x2 if x2.flags.c_contiguous else np.ascontiguousarray(x2), x1.size)
        try:
            full = np.broadcast_shapes(shape, x2.shape)
        except ValueError:
            raise ValueError(f"x2 of shape {x2.shape} does not broadcast to x1's shape {shape}") from None
        if full != shape:
            raise ValueError(f"x2 of shape {x2.shape} does not broadcast to x1's shape {shape} (x1 sets the "
                             "output shape)")
        x1c = np.ascontiguousarray(x1)
        tail = x2.shape
        while tail and tail[0] == 1:
            tail = tail[1:]
        if shape[len(shape) - len(tail):] == tail:  # x2 repeats along leading axes
            x2c = np.ascontiguousarray(x2).reshape(-1)
            period = max(1, x2c.size)
        else:
            x2c = np.ascontiguousarray(np.broadcast_to(x2, shape))
            period = x1.size
        return x1c, x2c, period

    def _range_error(self, x1c, x2, bad, which):
        if which == 1:
            idx = np.unravel_index(bad, x1c.shape)
            value, (lo, hi) = x1c[idx], self.in_ranges[0]
        else:
            idx = np.unravel_index(bad, x1c.shape)
            value, (lo, hi) = np.broadcast_to(np.asarray(x2), x1c.shape)[idx], self.in_ranges[1]
        where = ", ".join(str(int(i)) for i in idx)
        return ValueError(f"x{which} at [{where}] is {int(value)}, outside in_ranges[{which - 1}] = [{lo}, {hi}]: "
                          "outputs are proven only inside it")

    def _get_kernel(self):
        if self._kernel is None:
            self._kernel = _core.AddKernel(self.multipliers[0], self.multipliers[1], self.bias, self.shift,
                                           self._box, self.out_range[0], self.out_range[1],
                                           self.accumulator_bits <= 32)
            self._out_code = self.out_dtype.char.encode()   # the buffer format of out (run_same)
        return self._kernel

    def apply(self, x1, x2, out=None, threads=None):
        """The fixed-point add of two integer arrays; x2 is broadcast against x1 (NumPy rules; x1 sets the shape).

        Parameters
        ----------
        x1, x2 : ndarray of int8, uint8 or int16
        out : ndarray, optional
            Writeable C-contiguous output of x1's shape and the layer's out_dtype; left untouched on error.  It may
            be (or overlap) an input.
        threads : int, optional

        Raises
        ------
        ValueError
            An input outside its in_range (index and value named), or a bad shape / dtype.
        """
        kernel = self._kernel if self._kernel is not None else self._get_kernel()
        nt = 0 if threads is None else _threads(threads)
        # fast path (no broadcasting, contiguous arrays of one shape; checked in the core from the buffers):
        # None when the arguments do not qualify
        if type(x1) is np.ndarray and type(x2) is np.ndarray:
            if out is None:
                y = np.empty(x1.shape, self.out_dtype)
                r = kernel.run_same(x1, x2, y, nt, self._out_code, False)
            elif type(out) is np.ndarray:
                y = out
                r = kernel.run_same(x1, x2, out, nt, self._out_code, True)
            else:
                r = None
            if r is not None:
                if r[0] >= 0:
                    raise self._range_error(x1, x2, *r)
                return y
        x1c, x2c, period = self._inputs(x1, x2)
        if out is None:
            y = np.empty(x1c.shape, self.out_dtype)
            bad, which = kernel.run(x1c, x2c, y, x1c.size, period, nt)  # range check fused; y dropped on error
        else:
            if not isinstance(out, np.ndarray) or out.shape != x1c.shape or out.dtype != self.out_dtype \
                    or not out.flags.c_contiguous or not out.flags.writeable:
                raise ValueError(f"out must be a writeable C-contiguous {self.out_dtype} array of shape {x1c.shape}")
            # keep_y: out untouched on error (a read-only check first where the box is narrower than the dtypes;
            # an out overlapping an input goes through a temporary)
            y = out
            bad, which = kernel.run(x1c, x2c, out, x1c.size, period, nt, True)
        if bad >= 0:
            raise self._range_error(x1c, x2, bad, which)
        return y

    __call__ = apply

    # ---------------------------------------------------------------------------------------------- reference
    def reference(self, x1, x2):
        """The exact reference clamp(R((s1*(x1 - z1) + s2*(x2 - z2))/s_out + z_out)) (Fractions; independent of
        the C++ core), as an array of the out_dtype; inputs outside in_ranges raise ValueError as in apply."""
        x1c, x2c, period = self._inputs(x1, x2)
        bad, which = self._get_kernel().run(x1c, x2c, None, x1c.size, period, 1)
        if bad >= 0:
            raise self._range_error(x1c, x2, bad, which)
        s = self.source
        y = oref.add_outputs(x1c, np.broadcast_to(np.asarray(x2), x1c.shape), s["in_scales"], s["in_zero_points"],
                             s["out_scale"], s["out_zero_point"], *self.out_range, self.rounding)
        return y.astype(self.out_dtype)

    def check_exhaustive(self):
        """None when the parameters equal the exact reference on every pair of in_ranges (the C++ core's exact
        integer test), else the first mismatching (x1, x2)."""
        return _core.add_check(*self._exact_args, self._box, *self.out_range, self.rounding, self.multipliers[0],
                               self.multipliers[1], self.bias, self.shift)

    def feasible_at(self, shift):
        """Whether any integer (A1, A2, B) is exact at this shift (the core's decision; shift - 1 being infeasible
        is the minimality claim)."""
        return _core.add_feasible(*self._exact_args, self._box, *self.out_range, self.rounding,
                                  _one_int("shift", shift, 0, 62))

    # ---------------------------------------------------------------------------------------------- persistence
    def to_dict(self):
        """A JSON-ready dict with exact integers and the exact source floats."""
        return {
            "format": "fxbn.FixedPointAdd",
            "version": 1,
            "multipliers": list(self.multipliers),
            "bias": self.bias,
            "shift": self.shift,
            "in_ranges": [list(r) for r in self.in_ranges],
            "out_range": list(self.out_range),
            "rounding": self.rounding,
            "in_dtypes": [d.name for d in self.in_dtypes],
            "out_dtype": self.out_dtype.name,
            "source": dict(self.source),
            "solve_options": self.solve_options,
        }

    @classmethod
    def from_dict(cls, d):
        """Inverse of to_dict; checks the format, every field's type and range."""
        if not isinstance(d, dict) or d.get("format") != "fxbn.FixedPointAdd":
            raise ValueError("not an fxbn.FixedPointAdd record (missing format 'fxbn.FixedPointAdd')")
        if not _is_int(d.get("version")) or d.get("version") != 1:
            raise ValueError(f"unsupported fxbn.FixedPointAdd version {d.get('version')!r}")
        unknown = sorted(set(d) - _ADD_FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))} in an fxbn.FixedPointAdd record")
        missing = [k for k in ("multipliers", "bias", "shift", "in_ranges", "out_range", "rounding", "source",
                               "in_dtypes", "out_dtype") if k not in d]
        if missing:
            raise ValueError(f"record lacks {', '.join(missing)}")
        for k in ("bias", "shift"):
            if not _is_int(d[k]):
                raise ValueError(f"{k} must be an integer, got {d[k]!r}")
        if not (isinstance(d["multipliers"], list) and len(d["multipliers"]) == 2
                and all(_is_int(v) for v in d["multipliers"])):
            raise ValueError(f"multipliers must be two integers, got {d['multipliers']!r}")
        rng = d["in_ranges"]
        if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(r, list) and len(r) == 2
                                                                 and all(_is_int(v) for v in r) for r in rng)):
            raise ValueError(f"in_ranges must be [[l1, h1], [l2, h2]] of integers, got {rng!r}")
        if not (isinstance(d["out_range"], list) and len(d["out_range"]) == 2
                and all(_is_int(v) for v in d["out_range"])):
            raise ValueError(f"out_range must be two integers, got {d['out_range']!r}")
        if not (isinstance(d["in_dtypes"], list) and len(d["in_dtypes"]) == 2):
            raise ValueError(f"in_dtypes must be two dtype names, got {d['in_dtypes']!r}")
        return cls(d["multipliers"], d["bias"], d["shift"], rng, d["out_range"], d["rounding"], d["source"],
                   d["in_dtypes"], d["out_dtype"], solve_options=d.get("solve_options"))

    def save(self, path):
        """Save as JSON (.json) or npz (.npz), atomically."""
        from fxbn import io

        io.write_record(self.to_dict(), path)


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


_ADD_FIELDS = frozenset(("format", "version", "multipliers", "bias", "shift", "in_ranges", "out_range", "rounding",
                         "in_dtypes", "out_dtype", "source", "solve_options"))


def _check_add_options(options):
    """solve_options of an add: the limits from_add was given (acc_bits in [2, 64], max_shift in [0, 40])."""
    if options is None:
        return {}
    if not isinstance(options, dict) or set(options) - {"acc_bits", "max_shift"}:
        raise ValueError(f"solve_options must be a dict with keys acc_bits and max_shift, got {options!r}")
    for key, (lo, hi) in (("acc_bits", (2, 64)), ("max_shift", (0, 40))):
        if key in options and not (_is_int(options[key]) and lo <= options[key] <= hi):
            raise ValueError(f"solve_options.{key} must be an integer in [{lo}, {hi}], got {options[key]!r}")
    return {k: int(v) for k, v in options.items()}


def _check_add_source(source):
    if not isinstance(source, dict) or source.get("form") != "add":
        raise ValueError("source must be a dict with form 'add'")
    unknown = sorted(set(source) - {"form", "in_scales", "in_zero_points", "out_scale", "out_zero_point"})
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))} in source")
    out = {"form": "add"}
    for k in ("in_scales", "in_zero_points"):
        v = source.get(k)
        if not (isinstance(v, (list, tuple)) and len(v) == 2):
            raise ValueError(f"source.{k} must be a pair, got {v!r}")
    for i, s in enumerate(source["in_scales"]):
        if not isinstance(s, (float, int)) or isinstance(s, bool) or not (math.isfinite(s) and s > 0):
            raise ValueError(f"source.in_scales[{i}] must be a positive finite number, got {s!r}")
    s_out = source.get("out_scale")
    if not isinstance(s_out, (float, int)) or isinstance(s_out, bool) or not (math.isfinite(s_out) and s_out > 0):
        raise ValueError(f"source.out_scale must be a positive finite number, got {s_out!r}")
    zs = list(source["in_zero_points"]) + [source.get("out_zero_point")]
    for i, z in enumerate(zs):
        if not _is_int(z) or abs(int(z)) > 2 ** 31:
            raise ValueError(f"source zero point {z!r} must be an integer within 2^31")
    out["in_scales"] = [float(s) for s in source["in_scales"]]
    out["in_zero_points"] = [int(z) for z in source["in_zero_points"]]
    out["out_scale"] = float(s_out)
    out["out_zero_point"] = int(source["out_zero_point"])
    return out

