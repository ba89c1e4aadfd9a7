"""FixedPointBN and its constructors: exact, minimal-shift integer Batch Normalization.

>>> import numpy as np, fxbn
>>> layer = fxbn.from_affine([0.0123, -0.5], [3.25, 0.1], in_dtype="int8", rounding="half_up")
>>> layer.shift.tolist()
[13, 1]
>>> x = np.arange(-128, 128, dtype=np.int8).reshape(1, 1, 256).repeat(2, axis=1)
>>> bool((layer.apply(x) == layer.reference(x)).all())
True
"""
from fractions import Fraction

import numpy as np

from fxbn import _core
from fxbn import reference as ref
from fxbn.errors import InfeasibleError

__all__ = ["FixedPointBN", "from_affine", "from_batchnorm", "InfeasibleError", "DTYPE_RANGES"]

DTYPE_RANGES = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-(2 ** 15), 2 ** 15 - 1),
    "uint16": (0, 2 ** 16 - 1),
    "int32": (-(2 ** 31), 2 ** 31 - 1),
}
IN_DTYPES = ("int8", "uint8", "int16", "int32")
_IN_DTYPE_SET = frozenset(np.dtype(d) for d in IN_DTYPES)
OUT_DTYPES = ("int8", "uint8", "int16", "uint16")
_AFFINE_KEYS = ("a", "b")
_BN_FLOAT_KEYS = ("gamma", "beta", "mean", "var", "eps", "in_scale", "out_scale")
_BN_INT_KEYS = ("in_zero_point", "out_zero_point")


def _dtype_name(dtype, what, allowed):
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise ValueError(f"{what}: unknown dtype {dtype!r}; expected one of {', '.join(allowed)}") from None
    if name not in allowed:
        raise ValueError(f"{what}: dtype {name} is not supported; expected one of {', '.join(allowed)}")
    return name


def _channel_floats(name, value, channels=None):
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D per-channel array, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        where = f"{name}[{bad[0]}]" if arr.ndim else name
        raise ValueError(f"{where} is {arr.reshape(-1)[bad[0]]}: parameters must be finite")
    return arr


def _channel_ints(name, value):
    arr = np.asarray(value)
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D per-channel array, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integers, got {arr}")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _broadcast(named):
    """Broadcast 0-D / 1-D arrays to one channel count; name the mismatching parameter."""
    sizes = {k: v.shape[0] for k, v in named.items() if v.ndim == 1}
    counts = set(sizes.values())
    if len(counts) > 1:
        first = next(iter(sizes))
        other = next(k for k in sizes if sizes[k] != sizes[first])
        raise ValueError(f"mismatched lengths: {first} has {sizes[first]} channels, {other} has {sizes[other]}")
    channels = counts.pop() if counts else 1
    if channels == 0:
        raise ValueError("no channels: parameter arrays are empty")
    return channels, {k: np.ascontiguousarray(np.broadcast_to(v, (channels,))) for k, v in named.items()}


def _in_range(in_range, in_dtype, channels):
    dlo, dhi = DTYPE_RANGES[in_dtype]
    if in_range is None:
        return np.full(channels, dlo, np.int64), np.full(channels, dhi, np.int64)
    if isinstance(in_range, tuple) and len(in_range) == 2:
        lo, hi = (_channel_ints("in_range low", in_range[0]), _channel_ints("in_range high", in_range[1]))
    else:
        arr = _channel_ints_2d(in_range)
        lo, hi = arr[..., 0], arr[..., 1]
    if lo.ndim == 1 and lo.shape[0] != channels or hi.ndim == 1 and hi.shape[0] != channels:
        raise ValueError(f"in_range has {max(lo.size, hi.size)} channels, the parameters have {channels}")
    lo = np.ascontiguousarray(np.broadcast_to(lo, (channels,)), dtype=np.int64)
    hi = np.ascontiguousarray(np.broadcast_to(hi, (channels,)), dtype=np.int64)
    for c in range(channels):
        if lo[c] > hi[c]:
            raise ValueError(f"in_range of channel {c} is empty: [{lo[c]}, {hi[c]}]")
        if lo[c] < dlo or hi[c] > dhi:
            raise ValueError(f"in_range of channel {c}, [{lo[c]}, {hi[c]}], exceeds in_dtype {in_dtype} "
                             f"[{dlo}, {dhi}]")
    return lo, hi


def _channel_ints_2d(value):
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError("in_range must hold integers")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"in_range must hold integers, got dtype {arr.dtype}")
    if arr.shape[-1:] != (2,) or arr.ndim > 2:
        raise ValueError(f"in_range must be (lo, hi) or a (channels, 2) array, got shape {arr.shape}")
    return arr.astype(np.int64)


def _out_range(out_dtype, out_range, relu, zero_point, out_scale, rounding):
    qmin, qmax = DTYPE_RANGES[out_dtype]
    if out_range is not None:
        lo, hi = (int(v) for v in out_range)
        if lo < qmin or hi > qmax or lo > hi:
            raise ValueError(f"out_range [{lo}, {hi}] must be a non-empty range within {out_dtype} [{qmin}, {qmax}]")
        qmin, qmax = lo, hi
    if relu not in (False, True, "relu", "relu6"):
        raise ValueError(f"relu must be False, True, 'relu' or 'relu6', got {relu!r}")
    if relu:
        zmin = set(int(z) for z in np.atleast_1d(zero_point))
        if len(zmin) != 1:
            raise ValueError("relu needs one output zero point shared by all channels")
        z = zmin.pop()
        qmin = max(qmin, z)
        if relu == "relu6":
            scales = set(float(s) for s in np.atleast_1d(out_scale))
            if out_scale is None or len(scales) != 1:
                raise ValueError("relu6 needs one output scale shared by all channels")
            qmax = min(qmax, ref.round_exact(z + Fraction(6) / Fraction(scales.pop()), rounding))
        if qmin > qmax:
            raise ValueError(f"relu leaves an empty output range [{qmin}, {qmax}]")
    return int(qmin), int(qmax)


def _limits(acc_bits, max_multiplier_bits):
    if not isinstance(acc_bits, (int, np.integer)) or not 2 <= acc_bits <= 64:
        raise ValueError(f"acc_bits must be an integer in [2, 64] (32 and 64 are the kernel's), got {acc_bits!r}")
    if max_multiplier_bits is None:
        max_multiplier_bits = 64
    if not isinstance(max_multiplier_bits, (int, np.integer)) or not 1 <= max_multiplier_bits <= 64:
        raise ValueError(f"max_multiplier_bits must be None or an integer in [1, 64], got {max_multiplier_bits!r}")
    return int(acc_bits), int(max_multiplier_bits)


def _options_record(acc_bits, max_multiplier_bits, common_shift):
    return {"acc_bits": int(acc_bits), "max_multiplier_bits": None if max_multiplier_bits >= 64 else
            int(max_multiplier_bits), "common_shift": bool(common_shift)}


def from_affine(a, b, *, in_range=None, in_dtype="int32", out_dtype="int8", rounding="half_even", relu=False,
                out_range=None, common_shift=False, acc_bits=64, max_multiplier_bits=None):
    """Exact fixed-point parameters for y = clamp(R(a*x + b), qmin, qmax), per channel.

    Parameters
    ----------
    a, b : float or array_like of float
        Per-channel slope and offset, taken as the exact rationals the floats denote.
    in_range : (lo, hi), (channels, 2) array, or None
        Integer inputs for which exactness is guaranteed (default: the whole in_dtype range).
    in_dtype : {"int8", "uint8", "int16", "int32"}
    out_dtype : {"int8", "uint8", "int16", "uint16"}
        Output type; [qmin, qmax] is its range unless out_range or relu narrow it.
    rounding : {"half_even", "half_up", "half_away", "floor"}
    relu : bool
        Fold a ReLU into the clamp (qmin >= 0; the output zero point is taken to be folded into b).
    out_range : (qmin, qmax), optional
    common_shift : bool
        One shift for all channels (the largest minimal shift, or more if the width limits need it).
    acc_bits : int
        Signed accumulator width every A*x, A*x + B and B must fit (64 or 32 for the kernel's paths).
    max_multiplier_bits : int, optional
        Signed width limit for A.

    Returns
    -------
    FixedPointBN

    Raises
    ------
    ValueError
        Bad parameters, naming the parameter and channel.
    InfeasibleError
        No exact parameters exist (ties under half_even, or the width limits), naming the channel.

    Examples
    --------
    >>> import fxbn
    >>> layer = fxbn.from_affine(0.25, -3.0, in_dtype="int8", rounding="floor")
    >>> (int(layer.multiplier[0]), int(layer.bias[0]), int(layer.shift[0]))
    (1, -12, 2)
    """
    ref.check_rounding(rounding)
    in_dtype = _dtype_name(in_dtype, "in_dtype", IN_DTYPES)
    out_dtype = _dtype_name(out_dtype, "out_dtype", OUT_DTYPES)
    channels, p = _broadcast({"a": _channel_floats("a", a), "b": _channel_floats("b", b)})
    lo, hi = _in_range(in_range, in_dtype, channels)
    qmin, qmax = _out_range(out_dtype, out_range, relu, 0, None, rounding)
    acc_bits, max_multiplier_bits = _limits(acc_bits, max_multiplier_bits)
    A, B, s, mb, ab = _core.solve_affine(p["a"], p["b"], lo, hi, qmin, qmax, rounding, acc_bits,
                                         max_multiplier_bits, bool(common_shift))
    source = {"form": "affine", "a": p["a"], "b": p["b"]}
    return FixedPointBN(A, B, s, np.stack([lo, hi], axis=1), (qmin, qmax), rounding, source, out_dtype, in_dtype,
                        multiplier_bits=mb, accumulator_bits=ab,
                        solve_options=_options_record(acc_bits, max_multiplier_bits, common_shift))


def from_batchnorm(gamma, beta, mean, var, eps, *, in_scale, out_scale, in_zero_point=0, out_zero_point=0,
                   in_range=None, in_dtype="int32", out_dtype="int8", rounding="half_even", relu=False,
                   out_range=None, common_shift=False, acc_bits=64, max_multiplier_bits=None):
    """Exact fixed-point parameters for quantized Batch Normalization, per channel.

    The reference is y = clamp(R(v), qmin, qmax) with, in exact real arithmetic (the square root included),
    v = (gamma*(in_scale*(x - in_zero_point) - mean)/sqrt(var + eps) + beta)/out_scale + out_zero_point.

    Parameters
    ----------
    gamma, beta, mean, var : array_like
        Per-channel BN parameters (running statistics), taken as exact rationals.
    eps : float or array_like
    in_scale, out_scale : float or array_like
        Quantization scales (> 0); in_scale may be per channel (e.g. activation scale times per-channel weight
        scale when x is a convolution accumulator).
    in_zero_point, out_zero_point : int or array_like of int
    relu : bool or "relu6"
        Fold ReLU (qmin = out_zero_point) or ReLU6 (also qmax = R(out_zero_point + 6/out_scale)) into the clamp.
    Other keywords are as in :func:`from_affine`.

    Examples
    --------
    >>> import fxbn
    >>> bn = fxbn.from_batchnorm([1.5], [0.2], [0.1], [4.0], 1e-5, in_scale=0.05, out_scale=0.1,
    ...                          in_dtype="int8")
    >>> bn.channels, int(bn.shift[0]) >= 0
    (1, True)
    """
    ref.check_rounding(rounding)
    in_dtype = _dtype_name(in_dtype, "in_dtype", IN_DTYPES)
    out_dtype = _dtype_name(out_dtype, "out_dtype", OUT_DTYPES)
    named = {k: _channel_floats(k, v) for k, v in zip(_BN_FLOAT_KEYS, (gamma, beta, mean, var, eps, in_scale,
                                                                        out_scale))}
    named.update({k: _channel_ints(k, v) for k, v in zip(_BN_INT_KEYS, (in_zero_point, out_zero_point))})
    channels, p = _broadcast(named)
    for name in ("in_scale", "out_scale"):
        bad = np.flatnonzero(p[name] <= 0)
        if bad.size:
            raise ValueError(f"{name} of channel {bad[0]} is {p[name][bad[0]]}: scales must be positive")
    for c in range(channels):
        if Fraction(float(p["var"][c])) + Fraction(float(p["eps"][c])) <= 0:
            raise ValueError(f"var + eps of channel {c} is not positive (var={p['var'][c]!r}, eps={p['eps'][c]!r})")
    lo, hi = _in_range(in_range, in_dtype, channels)
    qmin, qmax = _out_range(out_dtype, out_range, relu, p["out_zero_point"], p["out_scale"], rounding)
    acc_bits, max_multiplier_bits = _limits(acc_bits, max_multiplier_bits)
    A, B, s, mb, ab = _core.solve_batchnorm(*(p[k] for k in _BN_FLOAT_KEYS + _BN_INT_KEYS), lo, hi, qmin, qmax,
                                            rounding, acc_bits, max_multiplier_bits, bool(common_shift))
    source = dict(form="batchnorm", **p)
    return FixedPointBN(A, B, s, np.stack([lo, hi], axis=1), (qmin, qmax), rounding, source, out_dtype, in_dtype,
                        multiplier_bits=mb, accumulator_bits=ab,
                        solve_options=_options_record(acc_bits, max_multiplier_bits, common_shift))


class FixedPointBN:
    """Per-channel y = clamp((multiplier*x + bias) >> shift, qmin, qmax), exact for every x in in_range.

    Attributes
    ----------
    multiplier, bias, shift : ndarray of int64
    in_range : ndarray of int64, shape (channels, 2)
    out_range : (int, int)
    rounding : str
    multiplier_bits, accumulator_bits : ndarray of int64
        Signed widths of the multiplier and of the largest intermediate (A*x, A*x + B, B) over in_range.
    source : dict
        The parameters the layer was solved for ("form": "affine" or "batchnorm", per-channel arrays).
    solve_options : dict
        The limits it was solved under: acc_bits, max_multiplier_bits (None: unlimited), common_shift; empty
        for layers built by hand.
    """

    def __init__(self, multiplier, bias, shift, in_range, out_range, rounding, source, out_dtype="int8",
                 in_dtype="int32", multiplier_bits=None, accumulator_bits=None, solve_options=None):
        self.solve_options = dict(solve_options or {})
        self.multiplier = np.ascontiguousarray(multiplier, dtype=np.int64)
        self.bias = np.ascontiguousarray(bias, dtype=np.int64)
        self.shift = np.ascontiguousarray(shift, dtype=np.int64)
        self.in_range = np.ascontiguousarray(in_range, dtype=np.int64).reshape(-1, 2)
        self.out_range = (int(out_range[0]), int(out_range[1]))
        self.rounding = rounding
        self.source = source
        self.out_dtype = np.dtype(out_dtype)
        self.in_dtype = np.dtype(in_dtype)
        n = self.multiplier.shape[0]
        for name in ("bias", "shift"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected ({n},)")
        if self.in_range.shape[0] != n:
            raise ValueError(f"in_range has {self.in_range.shape[0]} channels, expected {n}")
        if np.any((self.shift < 0) | (self.shift > 62)):
            c = int(np.flatnonzero((self.shift < 0) | (self.shift > 62))[0])
            raise ValueError(f"shift of channel {c} is {self.shift[c]}, expected 0..62")
        bits_a, bits_acc = self._widths()
        self.multiplier_bits = bits_a if multiplier_bits is None else np.asarray(multiplier_bits, np.int64)
        self.accumulator_bits = bits_acc if accumulator_bits is None else np.asarray(accumulator_bits, np.int64)
        if np.any(bits_acc > 64):
            c = int(np.flatnonzero(bits_acc > 64)[0])
            raise ValueError(f"channel {c}: multiplier*x + bias exceeds 64 bits over in_range")
        self._lo = np.ascontiguousarray(self.in_range[:, 0])
        self._hi = np.ascontiguousarray(self.in_range[:, 1])
        self._shift32 = self.shift.astype(np.int32)
        self._acc32 = bool(np.all(self.accumulator_bits <= 32))
        self._kernel = self._kernel_for = None  # built on first use (_run_kernel)
        self._breakpoints = {}
        self._covers_cache = {}

    def _widths(self):
        def bits(v):
            return (v if v >= 0 else ~v).bit_length() + 1

        wa, wacc = [], []
        for A, B, (lo, hi) in zip(self.multiplier.tolist(), self.bias.tolist(), self.in_range.tolist()):
            wa.append(bits(A))
            wacc.append(max(bits(A * lo), bits(A * hi), bits(A * lo + B), bits(A * hi + B), bits(B)))
        return np.array(wa, np.int64), np.array(wacc, np.int64)

    @property
    def channels(self):
        return int(self.multiplier.shape[0])

    @property
    def affine(self):
        """(a, b) as float64 arrays: the real map the layer reproduces (rounded; for peers and diagnostics)."""
        s = self.source
        if s["form"] == "affine":
            return np.asarray(s["a"], np.float64), np.asarray(s["b"], np.float64)
        inv = np.float64(1) / np.sqrt(np.asarray(s["var"], np.float64) + s["eps"])
        a = s["gamma"] * inv * s["in_scale"] / s["out_scale"]
        b = (s["beta"] - s["gamma"] * inv * (s["mean"] + s["in_scale"] * s["in_zero_point"])) / s["out_scale"] \
            + s["out_zero_point"]
        return a, b

    def __repr__(self):
        return (f"FixedPointBN(channels={self.channels}, form={self.source['form']}, rounding={self.rounding}, "
                f"shift={int(self.shift.min())}..{int(self.shift.max())}, "
                f"multiplier_bits<={int(self.multiplier_bits.max())}, "
                f"accumulator_bits<={int(self.accumulator_bits.max())}, out_range={self.out_range}, "
                f"out_dtype={self.out_dtype.name})")

    # ------------------------------------------------------------------ apply
    def _shape3(self, x, axis):
        x = np.asarray(x)
        if x.dtype not in _IN_DTYPE_SET:
            raise ValueError(f"x has dtype {x.dtype}; expected one of {', '.join(IN_DTYPES)} "
                             "(integer inputs; convert explicitly)")
        shape = x.shape
        ndim = len(shape)
        if ndim == 0:
            raise ValueError("x must have a channel axis")
        if not -ndim <= axis < ndim:
            raise ValueError(f"axis {axis} is out of bounds for x with {ndim} dimensions")
        axis %= ndim
        channels = len(self.multiplier)
        if shape[axis] != channels:
            raise ValueError(f"x has {shape[axis]} entries on axis {axis}, the layer has {channels} channels")
        outer = inner = 1
        for d in shape[:axis]:
            outer *= d
        for d in shape[axis + 1:]:
            inner *= d
        return x, axis, (outer, channels, inner)

    def _covers(self, dtype):
        """True when every channel's in_range contains every value of dtype (no input can be out of range)."""
        if dtype not in self._covers_cache:
            info = np.iinfo(dtype)
            self._covers_cache[dtype] = bool(np.all(self._lo <= info.min) and np.all(self._hi >= info.max))
        return self._covers_cache[dtype]

    def _run_kernel(self, x, y, outer, inner, threads):
        # the parameters are bound once per (multiplier, bias) object pair: a layer whose arrays were replaced gets
        # a new binding; in-place changes are seen anyway (the binding refers to the arrays)
        if self._kernel is None or self._kernel_for[0] is not self.multiplier or self._kernel_for[1] is not self.bias:
            self._kernel = _core.Kernel(self.multiplier, self.bias, self._shift32, self._lo, self._hi,
                                        *self.out_range, self._acc32)
            self._kernel_for = (self.multiplier, self.bias)
        return self._kernel.run(x, y, outer, inner, 0 if threads is None else int(threads))

    def __getstate__(self):  # copies and pickles rebind the kernel on first use
        state = self.__dict__.copy()
        state["_kernel"] = state["_kernel_for"] = None
        return state

    def _range_error(self, x, axis, flat):
        idx = np.unravel_index(flat, x.shape)
        c = int(idx[axis])
        value = x[idx]
        return ValueError(f"x[{', '.join(str(int(i)) for i in idx)}] = {int(value)} is outside the in_range of "
                          f"channel {c}, [{self._lo[c]}, {self._hi[c]}]: outputs are proven only inside it")

    def apply(self, x, axis=1, out=None, threads=None):
        """The fixed-point map on an integer array whose `axis` holds the channels.

        Parameters
        ----------
        x : ndarray of int8, uint8, int16 or int32
        axis : int
            Channel axis (1 for NCHW, -1 for NHWC and (N, C)).
        out : ndarray, optional
            C-contiguous output of x's shape and the layer's out_dtype; left untouched on error.
        threads : int, optional
            Threads to use (default: all).

        Raises
        ------
        ValueError
            An input outside its channel's in_range (first offending index and value), or a bad shape/dtype.
        """
        x, axis, (outer, _, inner) = self._shape3(x, axis)
        xc = np.ascontiguousarray(x)
        if out is None:
            y = np.empty(x.shape, self.out_dtype)
        else:
            if not isinstance(out, np.ndarray) or out.shape != x.shape or out.dtype != self.out_dtype \
                    or not out.flags.c_contiguous or not out.flags.writeable:
                raise ValueError(f"out must be a writeable C-contiguous {self.out_dtype} array of shape {x.shape}")
            # out is left untouched on error: check first (a read-only pass), unless every value of x's dtype is
            # inside every channel's range; without out= the kernel checks in the same pass
            if not self._covers(x.dtype):
                bad = _core.check_range(xc.reshape(outer, self.channels, inner), self._lo, self._hi)
                if bad >= 0:
                    raise self._range_error(xc, axis, bad)
            y = out
        bad = self._run_kernel(xc, y, outer, inner, threads)
        if bad >= 0:
            raise self._range_error(xc, axis, bad)
        return y

    __call__ = apply

    # ------------------------------------------------------------------ the exact reference
    def _channel_model(self, c):
        s = self.source
        if s["form"] == "affine":
            return ref.AffineChannel(float(s["a"][c]), float(s["b"][c]))
        return ref.BatchNormChannel(*(float(s[k][c]) for k in _BN_FLOAT_KEYS),
                                    *(int(s[k][c]) for k in _BN_INT_KEYS))

    def reference_breakpoints(self, engine="python"):
        """(direction int8[C], T int64[C, qmax - qmin]) of the exact reference, in mirrored coordinates.

        engine="python" uses fxbn.reference (Fractions, independent of the C++ core); engine="core" the C++ core.
        """
        if engine not in ("python", "core"):
            raise ValueError(f"engine must be 'python' or 'core', got {engine!r}")
        if engine not in self._breakpoints:
            qmin, qmax = self.out_range
            if engine == "core":
                s = self.source
                if s["form"] == "affine":
                    res = _core.breakpoints_affine(s["a"], s["b"], self._lo, self._hi, qmin, qmax, self.rounding)
                else:
                    res = _core.breakpoints_batchnorm(*(s[k] for k in _BN_FLOAT_KEYS + _BN_INT_KEYS), self._lo,
                                                      self._hi, qmin, qmax, self.rounding)
            else:
                d = np.empty(self.channels, np.int8)
                T = np.empty((self.channels, qmax - qmin), np.int64)
                for c in range(self.channels):
                    d[c], Tc = ref.breakpoints(self._channel_model(c), int(self._lo[c]), int(self._hi[c]), qmin,
                                               qmax, self.rounding)
                    T[c] = Tc
                res = (d, T)
            self._breakpoints[engine] = res
        return self._breakpoints[engine]

    def reference(self, x, axis=1, engine="python"):
        """The exact reference clamp(R(v(x)), qmin, qmax) for an integer array (channels on `axis`).

        Inputs outside in_range raise ValueError, as in apply.
        """
        x, axis, shape3 = self._shape3(x, axis)
        xc = np.ascontiguousarray(x)
        x3 = xc.reshape(shape3)
        bad = _core.check_range(x3, self._lo, self._hi)
        if bad >= 0:
            raise self._range_error(xc, axis, bad)
        d, T = self.reference_breakpoints(engine)
        y = np.empty(shape3, self.out_dtype)
        for c in range(self.channels):
            y[:, c, :] = ref.outputs_from_breakpoints(int(d[c]), T[c], x3[:, c, :], self.out_range[0])
        return y.reshape(x.shape)

    # ------------------------------------------------------------------ persistence
    def to_dict(self):
        """A JSON-ready dict with exact integers and the exact source floats (repr round-trips)."""
        src = {k: (v if isinstance(v, str) else [float(e) if np.asarray(v).dtype.kind == "f" else int(e)
                                                    for e in np.asarray(v).tolist()])
               for k, v in self.source.items()}
        return {
            "format": "fxbn.FixedPointBN",
            "version": 1,
            "channels": self.channels,
            "multiplier": [int(v) for v in self.multiplier.tolist()],
            "bias": [int(v) for v in self.bias.tolist()],
            "shift": [int(v) for v in self.shift.tolist()],
            "in_range": [[int(lo), int(hi)] for lo, hi in self.in_range.tolist()],
            "out_range": list(self.out_range),
            "rounding": self.rounding,
            "in_dtype": self.in_dtype.name,
            "out_dtype": self.out_dtype.name,
            "source": src,
            "solve_options": self.solve_options,
        }

    @classmethod
    def from_dict(cls, d):
        """Inverse of to_dict; checks the format and every array's length."""
        if not isinstance(d, dict) or d.get("format") != "fxbn.FixedPointBN":
            raise ValueError("not an fxbn.FixedPointBN record (missing format 'fxbn.FixedPointBN')")
        if d.get("version") != 1:
            raise ValueError(f"unsupported fxbn.FixedPointBN version {d.get('version')!r}")
        missing = [k for k in ("multiplier", "bias", "shift", "in_range", "out_range", "rounding", "source")
                   if k not in d]
        if missing:
            raise ValueError(f"record lacks {', '.join(missing)}")
        ref.check_rounding(d["rounding"])
        n = len(d["multiplier"])
        src = dict(d["source"])
        form = src.get("form")
        keys = {"affine": _AFFINE_KEYS, "batchnorm": _BN_FLOAT_KEYS + _BN_INT_KEYS}.get(form)
        if keys is None:
            raise ValueError(f"unknown source form {form!r}")
        for k in keys:
            if k not in src or len(src[k]) != n:
                raise ValueError(f"source.{k} must have {n} entries")
            src[k] = np.asarray(src[k], np.int64 if k in _BN_INT_KEYS else np.float64)
        for k in ("bias", "shift", "in_range"):
            if len(d[k]) != n:
                raise ValueError(f"{k} has {len(d[k])} entries, multiplier has {n}")
        return cls(np.array(d["multiplier"], np.int64), np.array(d["bias"], np.int64),
                   np.array(d["shift"], np.int64), np.array(d["in_range"], np.int64).reshape(n, 2),
                   d["out_range"], d["rounding"], src, d.get("out_dtype", "int8"), d.get("in_dtype", "int32"),
                   solve_options=d.get("solve_options"))

    def save(self, path):
        """Save as JSON (path ending .json) or NumPy npz (.npz); written to a temporary file, then renamed."""
        from fxbn import io

        io.save(self, path)

    def to_c(self, directory, name):
        """Write a C99 header and source for this layer (see :func:`fxbn.codegen.layer_to_c`); returns their paths.

        Examples
        --------
        >>> import fxbn, tempfile
        >>> fxbn.from_affine(0.5, 1.0, in_dtype="int8").to_c(tempfile.mkdtemp(), "half")[0].endswith("half.h")
        True
        """
        from fxbn import codegen

        return codegen.layer_to_c(self, directory, name)
